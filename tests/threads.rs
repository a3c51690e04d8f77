//! Analysis threads change the speed, never the result: the same frames analysed with one
//! thread and with several give byte-identical records (faces, landmarks, pose, gaze, tracks,
//! and the per-track descriptors and attributes, which run at once with a second thread).

mod common;

use facecast::config::Config;
use facecast::frame::Frame;
use facecast::pipeline::{frame_record, Analyser};

/// A real group photo followed over two frames (the mesh carries the faces from one to the
/// next, so the second frame builds on the threads' own results), then a one-face photo.
fn frames() -> Vec<Frame> {
    let group = common::load_frame(&common::images().join("pyfeat/multi_face.jpg"));
    let single = common::load_frame(&common::images().join("face_recognition/obama.jpg"));
    vec![group.clone(), group, single]
}

fn records(threads: usize) -> (Vec<String>, usize) {
    let mut config = Config::default();
    config.models.dir = common::models_dir();
    // Descriptors (for re-identification) and attributes on, with an empty gallery.
    config.identity.gallery = std::env::temp_dir()
        .join(format!("facecast-threads-{}", std::process::id()))
        .join("absent-gallery.json");
    config.pipeline.threads = threads;
    let mut analyser = Analyser::load(&config).unwrap_or_else(|e| panic!("{e}"));
    let mut faces = 0;
    let records = frames()
        .iter()
        .enumerate()
        .map(|(i, frame)| {
            let analysis = analyser.analyse(frame, i > 0).unwrap();
            faces += analysis.faces.len();
            let record = frame_record("test", frame, &analysis, &config.output, None);
            serde_json::to_string(&record.faces).unwrap()
        })
        .collect();
    (records, faces)
}

#[test]
fn one_thread_and_several_give_identical_records() {
    let (one, faces) = records(1);
    assert!(
        faces >= 5,
        "the group photo's faces are found ({faces} in all)"
    );
    // Three threads for up to five faces: the shares are uneven, as they usually are.
    let (several, _) = records(3);
    assert!(
        one.iter()
            .filter(|faces| *faces != "[]")
            .all(|faces| faces.contains("\"age\"")),
        "faces carry the scheduled attributes: {one:#?}"
    );
    assert_eq!(one, several);
}
