//! Head pose, eye openness and gaze from the 3-D face mesh and the irises.
//!
//! Frames: the camera's is x right, y down, z away from the camera (pixels for x and y; the
//! mesh's z is in the same pixel scale). The head's axes come from the mesh itself: x from the
//! subject's right to left (the sum of the vectors between mirror-image mesh points), y from
//! forehead to chin, z = x * y (towards the back of the head). No canonical face model is needed
//! and a mirrored face gives exactly mirrored angles.
//!
//! Gaze: the eyeball centre is placed behind the middle of the eye corners, and the iris
//! centre seen in the image is where the gaze ray leaves an eyeball of 12 mm radius. Sizes in
//! centimetres come from the outer-eye-corner distance, taken as 9 cm (adult mean).

use serde::Serialize;

use super::landmarks::EyeLandmarks;

/// Mirror-image mesh vertex pairs, (subject's right, subject's left).
const SYMMETRIC_PAIRS: [(usize, usize); 22] = [
    (33, 263),
    (133, 362),
    (61, 291),
    (78, 308),
    (234, 454),
    (127, 356),
    (93, 323),
    (132, 361),
    (58, 288),
    (172, 397),
    (136, 365),
    (150, 379),
    (70, 300),
    (63, 293),
    (105, 334),
    (66, 296),
    (107, 336),
    (159, 386),
    (145, 374),
    (160, 387),
    (75, 305),
    (97, 326),
];
const FOREHEAD: usize = 10;
const CHIN: usize = 152;
const NOSE_BRIDGE: usize = 168;

/// Eye landmarks in the mesh: outer corner, inner corner, upper lid, lower lid.
pub const RIGHT_EYE: [usize; 4] = [33, 133, 159, 145];
pub const LEFT_EYE: [usize; 4] = [263, 362, 386, 374];

/// Adult mean distance between the outer eye corners (exocanthion to exocanthion).
const EYE_CORNERS_CM: f32 = 9.0;
/// Eyeball radius.
const EYEBALL_RADIUS_CM: f32 = 1.2;
/// How far the eyeball centre lies behind the middle of the two eye corners.
const EYEBALL_BEHIND_CORNERS_CM: f32 = 0.2;

type V3 = [f32; 3];

fn sub(a: V3, b: V3) -> V3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
fn add(a: V3, b: V3) -> V3 {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}
fn scale(a: V3, k: f32) -> V3 {
    [a[0] * k, a[1] * k, a[2] * k]
}
fn dot(a: V3, b: V3) -> f32 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
fn cross(a: V3, b: V3) -> V3 {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}
fn norm(a: V3) -> f32 {
    dot(a, a).sqrt()
}
fn unit(a: V3) -> V3 {
    scale(a, 1.0 / norm(a).max(f32::MIN_POSITIVE))
}

/// Yaw (positive: turned towards the image's right) and pitch (positive: up), in degrees, of
/// a direction pointing out of the face or eye towards the scene.
pub fn yaw_pitch(direction: V3) -> [f32; 2] {
    let yaw = direction[0].atan2(-direction[2]);
    let pitch = (-direction[1]).atan2(direction[0].hypot(direction[2]));
    [yaw.to_degrees(), pitch.to_degrees()]
}

/// The head's orientation and position.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HeadPose {
    /// Degrees; positive when the face turns towards the image's right (the subject's left).
    pub yaw: f32,
    /// Degrees; positive when the face turns up.
    pub pitch: f32,
    /// Degrees; positive when the head tilts clockwise in the image.
    pub roll: f32,
    /// Position of the bridge of the nose relative to the camera in centimetres (x right,
    /// y down, z away), from the assumed eye-corner distance and horizontal field of view.
    pub position_cm: [f32; 3],
}

/// What one face's geometry says.
#[derive(Debug, Clone, PartialEq)]
pub struct Geometry {
    pub pose: HeadPose,
    /// Unit gaze direction of the subject's right eye, left eye and both, camera frame.
    pub gaze_right: V3,
    pub gaze_left: V3,
    pub gaze: V3,
    /// Angle between the gaze and the line to the camera, degrees.
    pub gaze_off_camera: f32,
    /// Lid distance over eye width, per eye (right, left): about 0.3 open, under 0.1 closed.
    pub openness: [f32; 2],
}

impl Geometry {
    pub fn gaze_yaw_pitch(&self) -> [f32; 2] {
        yaw_pitch(self.gaze)
    }
}

/// The head's axes (x: right to left of the subject, y: forehead to chin, z: backwards).
fn head_axes(mesh: &[[f32; 3]]) -> [V3; 3] {
    let across = SYMMETRIC_PAIRS
        .iter()
        .fold([0.0; 3], |acc, &(r, l)| add(acc, sub(mesh[l], mesh[r])));
    let x = unit(across);
    let down = sub(mesh[CHIN], mesh[FOREHEAD]);
    let y = unit(sub(down, scale(x, dot(down, x))));
    [x, y, cross(x, y)]
}

/// Gaze of one eye: unit vector from the eyeball centre through the iris centre. The corners
/// come from the iris model, which places them and the iris in the same crop: their offset is
/// then free of the mesh's own small errors.
fn eye_gaze(eye: &EyeLandmarks, back: V3, px_per_cm: f32) -> V3 {
    let [outer, inner] = eye.corners();
    let middle = [
        (outer[0] + inner[0]) / 2.0,
        (outer[1] + inner[1]) / 2.0,
        0.0,
    ];
    let centre = add(middle, scale(back, EYEBALL_BEHIND_CORNERS_CM * px_per_cm));
    let iris = eye.centre();
    let radius = EYEBALL_RADIUS_CM * px_per_cm;
    let (mut dx, mut dy) = (
        (iris[0] - centre[0]) / radius,
        (iris[1] - centre[1]) / radius,
    );
    // An iris seen beyond the eyeball's rim (noise, or an eye model far off) is pulled back
    // onto a ray 85 degrees from the camera axis.
    let off = dx.hypot(dy);
    let limit = 85f32.to_radians().sin();
    if off > limit {
        (dx, dy) = (dx * limit / off, dy * limit / off);
    }
    [dx, dy, -(1.0 - dx * dx - dy * dy).sqrt()]
}

/// Lid distance over eye width.
fn openness(mesh: &[[f32; 3]], eye: [usize; 4]) -> f32 {
    norm(sub(mesh[eye[2]], mesh[eye[3]]))
        / norm(sub(mesh[eye[0]], mesh[eye[1]])).max(f32::MIN_POSITIVE)
}

/// Pose, gaze and openness of one face: `mesh` in frame pixels, the irises of the subject's
/// right and left eye, the frame size and the camera's horizontal field of view.
pub fn analyse(
    mesh: &[[f32; 3]],
    right_eye: &EyeLandmarks,
    left_eye: &EyeLandmarks,
    frame_size: [f32; 2],
    hfov_deg: f32,
) -> Geometry {
    let [x, _, z] = head_axes(mesh);
    let facing = scale(z, -1.0);
    let [yaw, pitch] = yaw_pitch(facing);
    let roll = x[1].atan2(x[0]).to_degrees();

    let px_per_cm = norm(sub(mesh[LEFT_EYE[0]], mesh[RIGHT_EYE[0]])) / EYE_CORNERS_CM;
    let focal_px = frame_size[0] / 2.0 / (hfov_deg.to_radians() / 2.0).tan();
    let bridge = mesh[NOSE_BRIDGE];
    let distance = focal_px / px_per_cm;
    let position_cm = [
        (bridge[0] - frame_size[0] / 2.0) / px_per_cm,
        (bridge[1] - frame_size[1] / 2.0) / px_per_cm,
        distance,
    ];

    let gaze_right = eye_gaze(right_eye, z, px_per_cm);
    let gaze_left = eye_gaze(left_eye, z, px_per_cm);
    let gaze = unit(add(gaze_right, gaze_left));
    // Under the weak-perspective view of one face, the image-plane offsets measure the gaze
    // against the line of sight to the camera, which is then the camera axis's reverse.
    let gaze_off_camera = (-gaze[2]).clamp(-1.0, 1.0).acos().to_degrees();
    Geometry {
        pose: HeadPose {
            yaw,
            pitch,
            roll,
            position_cm,
        },
        gaze_right,
        gaze_left,
        gaze,
        gaze_off_camera,
        openness: [openness(mesh, RIGHT_EYE), openness(mesh, LEFT_EYE)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A symmetric toy mesh: every listed vertex placed by its pair, frontal, eyes level.
    fn frontal_mesh() -> Vec<[f32; 3]> {
        let mut mesh = vec![[100.0, 100.0, 0.0]; 468];
        for (i, &(r, l)) in SYMMETRIC_PAIRS.iter().enumerate() {
            let dx = 10.0 + i as f32;
            let y = 80.0 + 2.0 * i as f32;
            mesh[r] = [100.0 - dx, y, 5.0];
            mesh[l] = [100.0 + dx, y, 5.0];
        }
        mesh[FOREHEAD] = [100.0, 40.0, 2.0];
        mesh[CHIN] = [100.0, 160.0, 2.0];
        mesh[RIGHT_EYE[0]] = [55.0, 90.0, 5.0];
        mesh[LEFT_EYE[0]] = [145.0, 90.0, 5.0];
        mesh[RIGHT_EYE[1]] = [85.0, 90.0, 5.0];
        mesh[LEFT_EYE[1]] = [115.0, 90.0, 5.0];
        mesh
    }

    fn rotate(mesh: &[[f32; 3]], yaw_deg: f32, roll_deg: f32) -> Vec<[f32; 3]> {
        let (sy, cy) = yaw_deg.to_radians().sin_cos();
        let (sr, cr) = roll_deg.to_radians().sin_cos();
        mesh.iter()
            .map(|p| {
                let (x, y, z) = (p[0] - 100.0, p[1] - 100.0, p[2]);
                // Yaw about the vertical axis (turning towards +x brings the face's front, -z, to +x).
                let (x, z) = (x * cy - z * sy, x * sy + z * cy);
                let (x, y) = (x * cr - y * sr, x * sr + y * cr);
                [x + 100.0, y + 100.0, z]
            })
            .collect()
    }

    /// An eye whose corners are 30 px apart around `middle`, with the iris at `iris`.
    fn eye(middle: [f32; 2], iris: [f32; 2]) -> EyeLandmarks {
        let mut contour = vec![[middle[0], middle[1], 0.0]; 71];
        contour[0] = [middle[0] - 15.0, middle[1], 0.0];
        contour[8] = [middle[0] + 15.0, middle[1], 0.0];
        EyeLandmarks {
            contour,
            iris: vec![[iris[0], iris[1], 0.0]; 5],
        }
    }

    fn eye_at(iris: [f32; 2]) -> EyeLandmarks {
        // The eye's middle is where the frontal mesh puts it.
        let middle = if iris[0] < 100.0 {
            [70.0, 90.0]
        } else {
            [130.0, 90.0]
        };
        eye(middle, iris)
    }

    #[test]
    fn frontal_face_looking_ahead() {
        let mesh = frontal_mesh();
        let g = analyse(
            &mesh,
            &eye_at([70.0, 90.0]),
            &eye_at([130.0, 90.0]),
            [200.0, 200.0],
            60.0,
        );
        assert!(
            g.pose.yaw.abs() < 0.01 && g.pose.pitch.abs() < 0.01 && g.pose.roll.abs() < 0.01,
            "{g:?}"
        );
        assert!(g.gaze_off_camera < 0.01, "{g:?}");
        // 90 px between the corners is 9 cm: 10 px/cm; f = 100 / tan 30deg = 173 px -> 17.3 cm.
        assert!((g.pose.position_cm[2] - 17.32).abs() < 0.05, "{g:?}");
    }

    #[test]
    fn known_rotations_are_recovered() {
        let mesh = frontal_mesh();
        let eyes = (eye_at([70.0, 90.0]), eye_at([130.0, 90.0]));
        for (yaw, roll) in [(20.0, 0.0), (-35.0, 0.0), (0.0, 15.0), (0.0, -30.0)] {
            let turned = rotate(&mesh, yaw, roll);
            let g = analyse(&turned, &eyes.0, &eyes.1, [200.0, 200.0], 60.0);
            assert!((g.pose.yaw - yaw).abs() < 0.1, "yaw {yaw}: {:?}", g.pose);
            assert!(
                (g.pose.roll - roll).abs() < 0.1,
                "roll {roll}: {:?}",
                g.pose
            );
        }
    }

    #[test]
    fn iris_moved_sideways_turns_the_gaze() {
        let mesh = frontal_mesh();
        // 6 px at 10 px/cm on a 12 mm eyeball: asin(0.5) = 30 degrees to the image's right.
        let g = analyse(
            &mesh,
            &eye_at([76.0, 90.0]),
            &eye_at([136.0, 90.0]),
            [200.0, 200.0],
            60.0,
        );
        let [yaw, pitch] = g.gaze_yaw_pitch();
        assert!(
            (yaw - 30.0).abs() < 0.1 && pitch.abs() < 0.1,
            "{yaw} {pitch}"
        );
        assert!((g.gaze_off_camera - 30.0).abs() < 0.1);
    }
}
