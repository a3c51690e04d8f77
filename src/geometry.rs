//! Boxes, points and the affine maps between image and tensor coordinates.

use serde::Serialize;

/// An axis-aligned box in pixels: left, top, width, height.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rect {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

impl Rect {
    pub fn from_corners(x0: f32, y0: f32, x1: f32, y1: f32) -> Rect {
        Rect {
            x: x0,
            y: y0,
            w: x1 - x0,
            h: y1 - y0,
        }
    }

    pub fn right(&self) -> f32 {
        self.x + self.w
    }

    pub fn bottom(&self) -> f32 {
        self.y + self.h
    }

    pub fn area(&self) -> f32 {
        self.w.max(0.0) * self.h.max(0.0)
    }

    /// Intersection over union; 0 for boxes that do not overlap or have no area.
    pub fn iou(&self, other: &Rect) -> f32 {
        let w = self.right().min(other.right()) - self.x.max(other.x);
        let h = self.bottom().min(other.bottom()) - self.y.max(other.y);
        if w <= 0.0 || h <= 0.0 {
            return 0.0;
        }
        let inter = w * h;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }
}

/// `x' = a*x + b*y + c`, `y' = d*x + e*y + f`: maps one coordinate frame to another.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine {
    pub a: f32,
    pub b: f32,
    pub c: f32,
    pub d: f32,
    pub e: f32,
    pub f: f32,
}

impl Affine {
    pub const IDENTITY: Affine = Affine {
        a: 1.0,
        b: 0.0,
        c: 0.0,
        d: 0.0,
        e: 1.0,
        f: 0.0,
    };

    pub fn apply(&self, x: f32, y: f32) -> (f32, f32) {
        (
            self.a * x + self.b * y + self.c,
            self.d * x + self.e * y + self.f,
        )
    }

    /// The map from a `dst_w` x `dst_h` tensor to an image of `src_w` x `src_h` that fits the
    /// whole image, aspect kept, centred, the rest padding ("letterbox").
    pub fn letterbox(src_w: u32, src_h: u32, dst_w: u32, dst_h: u32) -> Affine {
        let scale = (dst_w as f32 / src_w as f32).min(dst_h as f32 / src_h as f32);
        let pad_x = (dst_w as f32 - src_w as f32 * scale) / 2.0;
        let pad_y = (dst_h as f32 - src_h as f32 * scale) / 2.0;
        Affine {
            a: 1.0 / scale,
            b: 0.0,
            c: -pad_x / scale,
            d: 0.0,
            e: 1.0 / scale,
            f: -pad_y / scale,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_known_boxes() {
        let a = Rect::from_corners(0.0, 0.0, 10.0, 10.0);
        let b = Rect::from_corners(5.0, 0.0, 15.0, 10.0);
        assert!((a.iou(&b) - 50.0 / 150.0).abs() < 1e-6);
        assert_eq!(a.iou(&a), 1.0);
        assert_eq!(a.iou(&Rect::from_corners(20.0, 20.0, 30.0, 30.0)), 0.0);
    }

    #[test]
    fn letterbox_maps_tensor_corners_to_image_and_padding_outside() {
        // A 640x480 image in a 128x128 tensor: scale 0.2, 16 rows of padding above and below.
        let map = Affine::letterbox(640, 480, 128, 128);
        assert_eq!(map.apply(0.0, 16.0), (0.0, 0.0));
        assert_eq!(map.apply(128.0, 112.0), (640.0, 480.0));
        assert!(map.apply(64.0, 0.0).1 < 0.0);
    }
}
