//! Draws what was found onto a copy of the frame, for people who would rather look.

use image::{Rgb, RgbImage};

use crate::analyse::AnalysedFace;
use crate::frame::Frame;

const BOX: Rgb<u8> = Rgb([0, 255, 64]);
const MESH: Rgb<u8> = Rgb([200, 200, 200]);
const IRIS: Rgb<u8> = Rgb([0, 255, 255]);
/// Gaze: yellow when attending, orange otherwise.
const GAZE: [Rgb<u8>; 2] = [Rgb([255, 140, 0]), Rgb([255, 255, 0])];
/// Keypoint colours: eyes, nose, mouth, ears.
const KEYPOINTS: [Rgb<u8>; 6] = [
    Rgb([255, 64, 64]),
    Rgb([255, 64, 64]),
    Rgb([255, 220, 0]),
    Rgb([255, 0, 255]),
    Rgb([64, 160, 255]),
    Rgb([64, 160, 255]),
];

/// The frame with every face's box, keypoints, mesh, irises and gaze drawn on it.
pub fn draw(frame: &Frame, faces: &[AnalysedFace]) -> RgbImage {
    let mut image = RgbImage::from_raw(frame.width, frame.height, frame.rgb.clone())
        .expect("a frame's buffer matches its size");
    // Lines scale with the picture so they stay visible on large photos.
    let thickness = ((frame.width.max(frame.height) / 300).max(1)) as i64;
    for analysed in faces {
        if let Some(landmarks) = &analysed.landmarks {
            for p in &landmarks.mesh.points {
                fill(
                    &mut image,
                    p[0] as i64,
                    p[1] as i64,
                    p[0] as i64 + 1,
                    p[1] as i64 + 1,
                    MESH,
                );
            }
            for eye in &landmarks.eyes {
                let [x, y] = eye.centre();
                let r = eye.radius().max(1.0);
                // The iris as a ring of dots.
                for step in 0..24 {
                    let a = step as f32 / 24.0 * std::f32::consts::TAU;
                    let (px, py) = ((x + r * a.cos()) as i64, (y + r * a.sin()) as i64);
                    fill(&mut image, px, py, px + 1, py + 1, IRIS);
                }
                // The gaze, drawn as a line from the iris, as long as the face is wide.
                let g = landmarks.geometry.gaze;
                let length = analysed.detection.bbox.w * 0.5;
                for step in 0..64 {
                    let t = step as f32 / 63.0 * length;
                    let (px, py) = ((x + g[0] * t) as i64, (y + g[1] * t) as i64);
                    let colour = GAZE[landmarks.attending as usize];
                    fill(&mut image, px - 1, py - 1, px + 1, py + 1, colour);
                }
            }
        }
        let face = &analysed.detection;
        let b = &face.bbox;
        let (x0, y0, x1, y1) = (b.x as i64, b.y as i64, b.right() as i64, b.bottom() as i64);
        fill(&mut image, x0, y0, x1, y0 + thickness, BOX);
        fill(&mut image, x0, y1 - thickness, x1, y1, BOX);
        fill(&mut image, x0, y0, x0 + thickness, y1, BOX);
        fill(&mut image, x1 - thickness, y0, x1, y1, BOX);
        for (i, p) in face.keypoints.iter().enumerate() {
            let (x, y) = (p[0] as i64, p[1] as i64);
            let r = thickness + 1;
            fill(
                &mut image,
                x - r,
                y - r,
                x + r + 1,
                y + r + 1,
                KEYPOINTS[i % KEYPOINTS.len()],
            );
        }
    }
    image
}

/// Fills the rectangle [x0, x1) x [y0, y1), clipped to the image.
fn fill(image: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, colour: Rgb<u8>) {
    let (w, h) = (image.width() as i64, image.height() as i64);
    for y in y0.max(0)..y1.min(h) {
        for x in x0.max(0)..x1.min(w) {
            image.put_pixel(x as u32, y as u32, colour);
        }
    }
}
