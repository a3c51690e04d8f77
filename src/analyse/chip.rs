//! dlib's aligned face chip (`dlib.get_face_chip(img, shape5, size, padding)`), which dlib's
//! face-recognition ResNet and the Cydral age/gender networks were trained on. The networks
//! see the chip's pixels, so this reproduces dlib's arithmetic step for step rather than any
//! equivalent warp: Umeyama fit of five points to dlib's mean face, the rotated rectangle,
//! `pyramid_down<2>` for large faces, bilinear sampling truncated to bytes, black outside.
//! models/tools/dlib/chip_geometry.md is the specification (and chip_reference.py its numpy
//! twin, checked against dlib-bin pixel for pixel).

use crate::frame::Frame;

/// Five points in dlib's `shape_predictor_5_face_landmarks` order: outer and inner corner of
/// the eye on the image's right, outer and inner corner of the eye on the image's left, and
/// the bottom of the nose. Image pixels.
pub type Points5 = [[f64; 2]; 5];

/// dlib's mean positions of the five points in a unit face square (`get_face_chip_details`).
const MEAN_FACE: Points5 = [
    [0.8595674595992, 0.2134981538014],
    [0.6460604764104, 0.2289674387677],
    [0.1205750620789, 0.2137274526848],
    [0.3340850613712, 0.2290642403242],
    [0.4901123135679, 0.6277975316475],
];

/// iBUG-68 indices of the five points (eye corners 45, 42, 36, 39 and the nose's bottom 33),
/// through the mesh vertices that stand for them (see [`super::ibug68`]).
const IBUG_OF_POINTS5: [usize; 5] = [45, 42, 36, 39, 33];

/// dlib's five points from a face mesh. dlib rounds its points to whole pixels, so these are
/// rounded too: the chip then moves in the same steps as dlib's.
pub fn points5_from_mesh(mesh: &[[f32; 3]]) -> Points5 {
    IBUG_OF_POINTS5.map(|i| {
        let p = mesh[super::ibug68::MESH_INDEX[i]];
        [f64::from(p[0]).round(), f64::from(p[1]).round()]
    })
}

/// A rectangle with dlib's inclusive bounds (`drectangle`): width is `right - left + 1`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct DRect {
    left: f64,
    top: f64,
    right: f64,
    bottom: f64,
}

impl DRect {
    fn area(&self) -> f64 {
        if self.left > self.right || self.top > self.bottom {
            0.0
        } else {
            (self.right - self.left + 1.0) * (self.bottom - self.top + 1.0)
        }
    }

    fn centre(&self) -> [f64; 2] {
        [
            (self.left + self.right) / 2.0,
            (self.top + self.bottom) / 2.0,
        ]
    }

    /// The rectangle one `pyramid_down<2>` level down: dlib's `point_down` on both corners,
    /// whose two offsets really differ.
    fn down(&self) -> DRect {
        DRect {
            left: self.left / 2.0 - 1.25,
            top: self.top / 2.0 - 0.75,
            right: self.right / 2.0 - 1.25,
            bottom: self.bottom / 2.0 - 0.75,
        }
    }

    fn shifted(&self, dx: f64, dy: f64) -> DRect {
        DRect {
            left: self.left + dx,
            top: self.top + dy,
            right: self.right + dx,
            bottom: self.bottom + dy,
        }
    }
}

/// Where the chip comes from: a square `rect` turned by `angle` about its centre.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ChipDetails {
    rect: DRect,
    angle: f64,
}

/// `get_face_chip_details`: the similarity that takes the mean face, placed in the chip with
/// `padding`, onto `points`, expressed as dlib's rectangle and angle.
fn chip_details(points: &Points5, size: usize, padding: f64) -> ChipDetails {
    let size_f = size as f64;
    let from = MEAN_FACE.map(|p| p.map(|v| (padding + v) / (2.0 * padding + 1.0) * size_f));
    let (m, t) = similarity(&from, points);
    let (px, py) = (m[0][0], m[1][0]);
    let angle = py.atan2(px);
    let scale = px.hypot(py);
    let half = size_f / 2.0;
    let centre = [
        m[0][0] * half + m[0][1] * half + t[0],
        m[1][0] * half + m[1][1] * half + t[1],
    ];
    // `centered_drect` takes one from the width and height before centring.
    let w = size_f * scale - 1.0;
    ChipDetails {
        rect: DRect {
            left: centre[0] - w / 2.0,
            top: centre[1] - w / 2.0,
            right: centre[0] + w / 2.0,
            bottom: centre[1] + w / 2.0,
        },
        angle,
    }
}

/// The least-squares similarity (rotation, uniform scale, translation; no reflection) with
/// `to ≈ m * from + t`. dlib fits it with Umeyama's SVD method; in two dimensions the best
/// rotation has the closed form used here, which is the same transform.
fn similarity(from: &Points5, to: &Points5) -> ([[f64; 2]; 2], [f64; 2]) {
    let n = from.len() as f64;
    let mean = |ps: &Points5| {
        let s = ps
            .iter()
            .fold([0.0, 0.0], |a, p| [a[0] + p[0], a[1] + p[1]]);
        [s[0] / n, s[1] / n]
    };
    let (mf, mt) = (mean(from), mean(to));
    let (mut dot, mut cross, mut spread) = (0.0, 0.0, 0.0);
    for (f, t) in from.iter().zip(to) {
        let (fx, fy) = (f[0] - mf[0], f[1] - mf[1]);
        let (tx, ty) = (t[0] - mt[0], t[1] - mt[1]);
        dot += fx * tx + fy * ty;
        cross += fx * ty - fy * tx;
        spread += fx * fx + fy * fy;
    }
    // m = c R with R the rotation by atan2(cross, dot) and c = |(dot, cross)| / spread.
    let (a, b) = if spread == 0.0 {
        (1.0, 0.0)
    } else {
        (dot / spread, cross / spread)
    };
    let m = [[a, -b], [b, a]];
    let t = [
        mt[0] - (m[0][0] * mf[0] + m[0][1] * mf[1]),
        mt[1] - (m[1][0] * mf[0] + m[1][1] * mf[1]),
    ];
    (m, t)
}

fn rotate(centre: [f64; 2], p: [f64; 2], angle: f64) -> [f64; 2] {
    let (sin, cos) = angle.sin_cos();
    let (x, y) = (p[0] - centre[0], p[1] - centre[1]);
    [cos * x - sin * y + centre[0], sin * x + cos * y + centre[1]]
}

/// An RGB image owned by the chip cutter (a crop or a pyramid level).
#[derive(Debug, Default)]
struct Rgb {
    width: usize,
    height: usize,
    data: Vec<u8>,
}

impl Rgb {
    fn at(&self, x: usize, y: usize, c: usize) -> u8 {
        self.data[(y * self.width + x) * 3 + c]
    }

    /// dlib's `pyramid_down<2>`: a 1-4-6-4-1 filter in each direction on integer sums, every
    /// other sample kept, the total divided by 256 with truncation.
    fn pyramid_down(&self) -> Rgb {
        if self.width <= 8 || self.height <= 8 {
            return Rgb::default();
        }
        let (ow, oh) = ((self.width - 3) / 2, (self.height - 3) / 2);
        const TAPS: [u32; 5] = [1, 4, 6, 4, 1];
        let mut rows = vec![0u32; self.height * ow * 3];
        for y in 0..self.height {
            for x in 0..ow {
                for c in 0..3 {
                    let sum = (0..5).map(|k| TAPS[k] * u32::from(self.at(2 * x + k, y, c)));
                    rows[(y * ow + x) * 3 + c] = sum.sum();
                }
            }
        }
        let mut data = vec![0u8; oh * ow * 3];
        for y in 0..oh {
            for x in 0..ow {
                for c in 0..3 {
                    let sum: u32 = (0..5)
                        .map(|k| TAPS[k] * rows[((2 * y + k) * ow + x) * 3 + c])
                        .sum();
                    data[(y * ow + x) * 3 + c] = (sum / 256) as u8;
                }
            }
        }
        Rgb {
            width: ow,
            height: oh,
            data,
        }
    }
}

/// A level that dlib's pyramid could not make (a crop of 8 pixels or fewer): all black.
static EMPTY: Rgb = Rgb {
    width: 0,
    height: 0,
    data: Vec::new(),
};

/// Cuts dlib face chips; keeps its scratch images between calls.
#[derive(Debug, Default)]
pub struct ChipCutter {
    crop: Rgb,
}

impl ChipCutter {
    /// Writes the `size` x `size` chip of the face at `points` into `chip` (resized to fit),
    /// exactly as `dlib.get_face_chip(image, shape, size, padding)` cuts it.
    pub fn cut(
        &mut self,
        frame: &Frame,
        points: &Points5,
        size: usize,
        padding: f64,
        chip: &mut Frame,
    ) {
        let details = chip_details(points, size, padding);
        let rect = details.rect;
        let pixels = (size * size) as f64;
        let (width, height) = (frame.width as usize, frame.height as usize);

        // How many pyramid levels dlib builds, and how far it grows the crop for their filters.
        let (mut depth, mut grow) = (0, 2.0);
        let mut r = rect.down();
        while r.area() > pixels {
            r = r.down();
            depth += 1;
            grow = grow * 2.0 + 2.0;
        }

        // The crop: the rotated rectangle's bounds, grown, within the image, rounded half up.
        let centre = rect.centre();
        let corners = [
            [rect.left, rect.top],
            [rect.right, rect.top],
            [rect.left, rect.bottom],
            [rect.right, rect.bottom],
        ]
        .map(|p| rotate(centre, p, details.angle));
        let bound = |pick: fn(f64, f64) -> f64, axis: usize| {
            corners.iter().map(|p| p[axis]).reduce(pick).unwrap_or(0.0)
        };
        let round = |v: f64| (v + 0.5).floor() as i64;
        let left = round((bound(f64::min, 0) - grow).max(0.0));
        let top = round((bound(f64::min, 1) - grow).max(0.0));
        let right = round((bound(f64::max, 0) + grow).min(width as f64 - 1.0));
        let bottom = round((bound(f64::max, 1) + grow).min(height as f64 - 1.0));
        self.crop_from(frame, left, top, right, bottom);

        let mut levels = Vec::with_capacity(depth);
        for _ in 0..depth {
            let next = levels.last().unwrap_or(&self.crop).pyramid_down();
            levels.push(next);
        }
        // The level to sample: the smallest whose rectangle still holds the chip's pixels.
        let mut r = rect.shifted(-(left as f64), -(top as f64));
        let mut level = None;
        while r.down().area() > pixels {
            r = r.down();
            level = Some(level.map_or(0, |l| l + 1));
        }
        let source = match level {
            Some(l) => levels.get(l).unwrap_or(&EMPTY),
            None => &self.crop,
        };
        sample(source, &r, details.angle, size, chip);
    }

    /// Copies the inclusive pixel rectangle of `frame` into the crop (empty when it is).
    fn crop_from(&mut self, frame: &Frame, left: i64, top: i64, right: i64, bottom: i64) {
        let crop = &mut self.crop;
        crop.data.clear();
        if right < left || bottom < top {
            (crop.width, crop.height) = (0, 0);
            return;
        }
        let (l, t, r, b) = (left as usize, top as usize, right as usize, bottom as usize);
        (crop.width, crop.height) = (r - l + 1, b - t + 1);
        let stride = frame.width as usize * 3;
        for y in t..=b {
            crop.data
                .extend_from_slice(&frame.rgb[y * stride + l * 3..y * stride + (r + 1) * 3]);
        }
    }
}

/// Fills `chip` by mapping chip pixels (0, 0), (size-1, 0) and (0, size-1) onto the corners
/// of `rect` turned by `angle`, bilinear, truncated to bytes; samples whose 2x2 neighbourhood
/// leaves `source` are black (dlib's `interpolate_bilinear`).
fn sample(source: &Rgb, rect: &DRect, angle: f64, size: usize, chip: &mut Frame) {
    let centre = rect.centre();
    let origin = rotate(centre, [rect.left, rect.top], angle);
    let right = rotate(centre, [rect.right, rect.top], angle);
    let below = rotate(centre, [rect.left, rect.bottom], angle);
    let steps = (size - 1).max(1) as f64;
    let ex = [
        (right[0] - origin[0]) / steps,
        (right[1] - origin[1]) / steps,
    ];
    let ey = [
        (below[0] - origin[0]) / steps,
        (below[1] - origin[1]) / steps,
    ];
    let out = chip.resize(size as u32, size as u32);
    for row in 0..size {
        for col in 0..size {
            let (c, r) = (col as f64, row as f64);
            let x = origin[0] + c * ex[0] + r * ey[0];
            let y = origin[1] + c * ex[1] + r * ey[1];
            let (left, top) = (x.floor(), y.floor());
            let pixel = &mut out[(row * size + col) * 3..][..3];
            let inside = left >= 0.0
                && top >= 0.0
                && left + 1.0 < source.width as f64
                && top + 1.0 < source.height as f64;
            if !inside {
                pixel.fill(0);
                continue;
            }
            let (l, t) = (left as usize, top as usize);
            let (fx, fy) = (x - left, y - top);
            for (ch, value) in pixel.iter_mut().enumerate() {
                let at = |x: usize, y: usize| f64::from(source.at(x, y, ch));
                let v = (1.0 - fy) * ((1.0 - fx) * at(l, t) + fx * at(l + 1, t))
                    + fy * ((1.0 - fx) * at(l, t + 1) + fx * at(l + 1, t + 1));
                *value = v.clamp(0.0, 255.0) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similarity_recovers_a_known_transform() {
        // Turn the mean face by 30 degrees, scale by 2 and shift: the fit finds exactly that.
        let (sin, cos) = 30f64.to_radians().sin_cos();
        let to = MEAN_FACE.map(|p| {
            [
                2.0 * (cos * p[0] - sin * p[1]) + 5.0,
                2.0 * (sin * p[0] + cos * p[1]) - 3.0,
            ]
        });
        let (m, t) = similarity(&MEAN_FACE, &to);
        let expected = [[2.0 * cos, -2.0 * sin], [2.0 * sin, 2.0 * cos]];
        for (row, want) in m.iter().zip(expected) {
            for (v, w) in row.iter().zip(want) {
                assert!((v - w).abs() < 1e-12, "{m:?}");
            }
        }
        assert!(
            (t[0] - 5.0).abs() < 1e-12 && (t[1] + 3.0).abs() < 1e-12,
            "{t:?}"
        );
    }

    #[test]
    fn chip_details_match_the_specification() {
        // obama.jpg's dlib points: chip_geometry.md gives M = [[1.97649, 0.00878], ...].
        let points = [
            [570.0, 216.0],
            [528.0, 215.0],
            [424.0, 217.0],
            [463.0, 216.0],
            [496.0, 295.0],
        ];
        let details = chip_details(&points, 150, 0.25);
        let scale = (150.0 * 1.97649 - 1.0) / 2.0;
        let centre = details.rect.centre();
        assert!(
            (details.rect.right - centre[0] - scale).abs() < 0.01,
            "{details:?}"
        );
        assert!(
            (details.angle - (-0.00878f64).atan2(1.97649)).abs() < 1e-4,
            "{details:?}"
        );
    }

    #[test]
    fn pyramid_down_keeps_a_flat_image_flat_and_halves_it() {
        let flat = Rgb {
            width: 20,
            height: 12,
            data: vec![200; 20 * 12 * 3],
        };
        let down = flat.pyramid_down();
        assert_eq!((down.width, down.height), (8, 4));
        // 16 * 16 * 200 / 256 = 200: the filter sums to 256.
        assert!(down.data.iter().all(|&v| v == 200));
    }
}
