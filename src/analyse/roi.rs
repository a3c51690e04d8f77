//! Rotated square regions of a frame, as MediaPipe's landmark graphs define them: the crop a
//! landmark model sees, and the map between its tensor and the frame.

use crate::detect::Face;
use crate::geometry::Affine;

/// A rotated square in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Roi {
    pub centre: [f32; 2],
    /// Side length in pixels.
    pub size: f32,
    /// Radians, clockwise in the image (y points down): the ROI's x axis points along
    /// (cos, sin).
    pub rotation: f32,
}

/// How much larger than the face box a mesh crop is (MediaPipe's RectTransformation).
const MESH_ROI_SCALE: f32 = 1.5;

impl Roi {
    /// The crop of the face mesh model for a detection: box centre, 1.5x the longer box side,
    /// rotated so that the eyes (keypoints 0 and 1) are level.
    pub fn for_mesh_from_detection(face: &Face) -> Roi {
        let b = &face.bbox;
        let rotation = match face.keypoints.as_slice() {
            [a, c, ..] => (c[1] - a[1]).atan2(c[0] - a[0]),
            _ => 0.0,
        };
        Roi {
            centre: [b.x + b.w / 2.0, b.y + b.h / 2.0],
            size: b.w.max(b.h) * MESH_ROI_SCALE,
            rotation,
        }
    }

    /// The next frame's mesh crop from this frame's landmarks: their axis-aligned bounding box,
    /// 1.5x its longer side, rotated so that `from` -> `to` is level.
    pub fn for_mesh_from_landmarks(points: &[[f32; 3]], from: usize, to: usize) -> Roi {
        let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
        for p in points {
            x0 = x0.min(p[0]);
            y0 = y0.min(p[1]);
            x1 = x1.max(p[0]);
            y1 = y1.max(p[1]);
        }
        let (a, b) = (points[from], points[to]);
        Roi {
            centre: [(x0 + x1) / 2.0, (y0 + y1) / 2.0],
            size: (x1 - x0).max(y1 - y0) * MESH_ROI_SCALE,
            rotation: (b[1] - a[1]).atan2(b[0] - a[0]),
        }
    }

    /// A square of `scale` times the distance between two points, centred between them and
    /// rotated so that `a` -> `b` is level (MediaPipe's eye crop for the iris model).
    pub fn around_pair(a: [f32; 2], b: [f32; 2], scale: f32) -> Roi {
        let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
        Roi {
            centre: [(a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0],
            size: dx.hypot(dy) * scale,
            rotation: dy.atan2(dx),
        }
    }

    /// The map from a `tensor_size`-wide square tensor to the frame. With `mirrored`, the
    /// tensor's x runs right to left across the ROI (for the iris model's other eye).
    pub fn tensor_to_frame(&self, tensor_size: f32, mirrored: bool) -> Affine {
        let k = self.size / tensor_size;
        let (sin, cos) = self.rotation.sin_cos();
        let sx = if mirrored { -k } else { k };
        // frame = centre + R * (sx * u - s/2 * sign, k * v - s/2)
        let half = self.size / 2.0;
        let (ox, oy) = (if mirrored { half } else { -half }, -half);
        Affine {
            a: cos * sx,
            b: -sin * k,
            c: self.centre[0] + cos * ox - sin * oy,
            d: sin * sx,
            e: cos * k,
            f: self.centre[1] + sin * ox + cos * oy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: (f32, f32), b: (f32, f32)) -> bool {
        (a.0 - b.0).abs() < 1e-3 && (a.1 - b.1).abs() < 1e-3
    }

    #[test]
    fn tensor_corners_map_to_the_rotated_square() {
        let roi = Roi {
            centre: [100.0, 50.0],
            size: 20.0,
            rotation: std::f32::consts::FRAC_PI_2,
        };
        let map = roi.tensor_to_frame(10.0, false);
        // Rotated a quarter turn clockwise: the tensor's x axis points down the image.
        assert!(close(map.apply(5.0, 5.0), (100.0, 50.0)));
        assert!(close(map.apply(10.0, 5.0), (100.0, 60.0)));
        assert!(close(map.apply(5.0, 0.0), (110.0, 50.0)));
        let mirrored = Roi {
            rotation: 0.0,
            ..roi
        }
        .tensor_to_frame(10.0, true);
        assert!(close(mirrored.apply(0.0, 0.0), (110.0, 40.0)));
        assert!(close(mirrored.apply(10.0, 10.0), (90.0, 60.0)));
    }
}
