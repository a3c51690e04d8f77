//! Analysis threads change the speed, never the result: the same frames analysed with one
//! thread and with several give byte-identical records (faces, landmarks, pose, gaze, tracks,
//! and the per-track descriptors and attributes, which run at once with a second thread), and
//! a video run in two stages on two threads gives the records of the one-thread run.

mod common;

use std::io;

use facecast::config::{Config, Liveness};
use facecast::frame::Frame;
use facecast::pipeline::{frame_record, run, Analyser, FrameStats, Sink};
use facecast::record::FrameRecord;
use facecast::track::TrackEvent;

/// A real group photo followed over two frames (the mesh carries the faces from one to the
/// next, so the second frame builds on the threads' own results), then a one-face photo.
fn frames() -> Vec<Frame> {
    let group = common::load_frame(&common::images().join("pyfeat/multi_face.jpg"));
    let single = common::load_frame(&common::images().join("face_recognition/obama.jpg"));
    vec![group.clone(), group, single]
}

/// The default analysis with `threads`: descriptors (for re-identification) and attributes on,
/// with an empty gallery.
fn config(threads: usize) -> Config {
    let mut config = Config::default();
    config.models.dir = common::models_dir();
    config.identity.gallery = std::env::temp_dir()
        .join(format!("facecast-threads-{}", std::process::id()))
        .join("absent-gallery.json");
    config.pipeline.threads = threads;
    config
}

fn records(threads: usize) -> (Vec<String>, usize) {
    let config = config(threads);
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

/// Every record's faces and every event's kind, in order.
#[derive(Default)]
struct Collected {
    records: Vec<String>,
    events: Vec<String>,
}

impl Sink for Collected {
    fn frame(&mut self, record: &FrameRecord, _: &FrameStats) -> io::Result<()> {
        let faces = serde_json::to_string(&record.faces).map_err(io::Error::other)?;
        self.records.push(format!("{} {faces}", record.seq));
        Ok(())
    }

    fn events(&mut self, events: &[TrackEvent]) -> io::Result<()> {
        // Visits carry wall-clock start times; their kind and track are what must agree.
        for event in events {
            let value = serde_json::to_value(event).map_err(io::Error::other)?;
            self.events
                .push(format!("{} {}", value["t"], value["track"]));
        }
        Ok(())
    }
}

fn run_clip(threads: usize, overlap: bool, max_frames: u64) -> Collected {
    let mut config = config(threads);
    let clip = common::images().join("derived/single_face_blink.y4m");
    config.source.uri = format!("y4m:{}", clip.display());
    config.source.live = Liveness::Recorded;
    config.pipeline.overlap = overlap;
    config.pipeline.max_frames = max_frames;
    let analyser = Analyser::load(&config).unwrap_or_else(|e| panic!("{e}"));
    let mut sink = Collected::default();
    let summary = run(&config, analyser, &mut sink).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(summary.analysed as usize, sink.records.len());
    assert_eq!(summary.failed, 0);
    sink
}

#[test]
fn a_video_in_two_stages_gives_the_one_thread_records() {
    // The first stage meshes frame N+1 while the second completes frame N.
    for max_frames in [0, 12] {
        let (one, two) = (
            run_clip(1, false, max_frames),
            run_clip(2, true, max_frames),
        );
        let expected = if max_frames == 0 { 41 } else { 12 };
        assert_eq!(one.records.len(), expected);
        assert!(
            one.records.iter().all(|r| r.contains("\"age\"")),
            "every frame has its face, with attributes: {:?}",
            one.records.first()
        );
        assert_eq!(one.records, two.records);
        assert_eq!(one.events, two.events);
        assert!(one.events.iter().any(|e| e.starts_with("\"track_start\"")));
    }
}
