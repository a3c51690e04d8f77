//! MediaPipe's attention mesh (`face_landmark_with_attention.tflite`) refines the lips and the
//! eyes and finds the irises with heads of its own, run on crops of its features: their points
//! replace the mesh's at fixed vertices, and the eyes need no iris model. This is MediaPipe's
//! LandmarksRefinementCalculator as face_landmark_front_cpu configures it with attention
//! (models/tools/mediapipe_ref/graphs/face_landmark_front_cpu.expanded.pbtxt): the heads give x
//! and y only; the refined points keep the mesh's z, and each iris takes the mean z of the first
//! 16 points of its eye's contour.

use super::landmarks::{EyeLandmarks, Points};

/// Contour points (the first ones of each eye's list) whose mean depth each iris takes.
const IRIS_DEPTH_FROM: usize = 16;

/// The lips head's 80 points, as mesh vertices.
const LIPS: [usize; 80] = [
    61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409, 78,
    95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415, 76, 77,
    90, 180, 85, 16, 315, 404, 320, 307, 306, 184, 74, 73, 72, 11, 302, 303, 304, 408, 62, 96, 89,
    179, 86, 15, 316, 403, 319, 325, 292, 183, 42, 41, 38, 12, 268, 271, 272, 407,
];
/// The eye heads' 71 contour points, as mesh vertices: the eye on the crop's left (the
/// subject's right, outer corner 33 first, inner corner 133 ninth), then the other (263, 362). The
/// iris model's contour has the same order.
const EYES: [[usize; 71]; 2] = [SUBJECT_RIGHT_EYE, SUBJECT_LEFT_EYE];

const SUBJECT_RIGHT_EYE: [usize; 71] = [
    33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173, 130, 25, 110, 24,
    23, 22, 26, 112, 243, 247, 30, 29, 27, 28, 56, 190, 226, 31, 228, 229, 230, 231, 232, 233, 244,
    113, 225, 224, 223, 222, 221, 189, 35, 124, 46, 53, 52, 65, 143, 111, 117, 118, 119, 120, 121,
    128, 245, 156, 70, 63, 105, 66, 107, 55, 193,
];
const SUBJECT_LEFT_EYE: [usize; 71] = [
    263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398, 359, 255, 339,
    254, 253, 252, 256, 341, 463, 467, 260, 259, 257, 258, 286, 414, 446, 261, 448, 449, 450, 451,
    452, 453, 464, 342, 445, 444, 443, 442, 441, 413, 265, 353, 276, 283, 282, 295, 372, 340, 346,
    347, 348, 349, 350, 357, 465, 383, 300, 293, 334, 296, 336, 285, 417,
];

/// What the refining heads found, in frame pixels: the lips, then each eye's contour and iris
/// (the crop's left eye first).
pub struct Heads<'a> {
    pub lips: &'a [[f32; 2]],
    pub contours: [&'a [[f32; 2]]; 2],
    pub irises: [&'a [[f32; 2]]; 2],
}

/// Writes the heads' points over the mesh's (x and y; z stays the mesh's) and returns the
/// subject's right and left eye.
pub fn refine(mesh: &mut Points, heads: &Heads) -> [EyeLandmarks; 2] {
    overwrite(mesh, &LIPS, heads.lips);
    [0, 1].map(|side| {
        let vertices = &EYES[side];
        overwrite(mesh, vertices, heads.contours[side]);
        let contour: Points = vertices.iter().map(|&v| mesh[v]).collect();
        let depth =
            contour[..IRIS_DEPTH_FROM].iter().map(|p| p[2]).sum::<f32>() / IRIS_DEPTH_FROM as f32;
        let iris = heads.irises[side]
            .iter()
            .map(|&[x, y]| [x, y, depth])
            .collect();
        EyeLandmarks { contour, iris }
    })
}

fn overwrite(mesh: &mut Points, vertices: &[usize], points: &[[f32; 2]]) {
    assert_eq!(
        vertices.len(),
        points.len(),
        "a refining head's point count"
    );
    for (&v, &[x, y]) in vertices.iter().zip(points) {
        mesh[v][0] = x;
        mesh[v][1] = y;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_replace_x_and_y_at_their_vertices_and_irises_take_the_contours_mean_depth() {
        // Each mesh point's z is its index, so that the depths say where they came from.
        let mut mesh: Points = (0..468).map(|i| [0.0, 0.0, i as f32]).collect();
        let numbered = |base: f32, n: usize| -> Vec<[f32; 2]> {
            (0..n)
                .map(|i| [base + i as f32, -base - i as f32])
                .collect()
        };
        let (lips, contours, irises) = (
            numbered(1000.0, 80),
            [numbered(2000.0, 71), numbered(3000.0, 71)],
            [numbered(4000.0, 5), numbered(5000.0, 5)],
        );
        let [right, left] = refine(
            &mut mesh,
            &Heads {
                lips: &lips,
                contours: [&contours[0], &contours[1]],
                irises: [&irises[0], &irises[1]],
            },
        );
        assert_eq!(mesh[61], [1000.0, -1000.0, 61.0]);
        assert_eq!(mesh[407], [1079.0, -1079.0, 407.0]);
        // The subject's right eye: outer corner 33 first, inner 133 ninth (the iris model's
        // contour order, which `EyeLandmarks::corners` reads).
        assert_eq!(right.contour[0], [2000.0, -2000.0, 33.0]);
        assert_eq!(right.contour[8], [2008.0, -2008.0, 133.0]);
        assert_eq!(left.contour[0], [3000.0, -3000.0, 263.0]);
        assert_eq!(left.contour[8], [3008.0, -3008.0, 362.0]);
        assert_eq!(mesh[263], left.contour[0]);
        let mean = |vertices: &[usize]| vertices.iter().sum::<usize>() as f32 / 16.0;
        assert_eq!(right.iris[0], [4000.0, -4000.0, mean(&EYES[0][..16])]);
        assert_eq!(left.iris[4], [5004.0, -5004.0, mean(&EYES[1][..16])]);
        // Points no head refines are the mesh's.
        assert_eq!(mesh[1], [0.0, 0.0, 1.0]);
    }
}
