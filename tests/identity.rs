//! Face descriptors and recognition on real photos, against dlib itself. Figures are printed
//! with `cargo test --test identity -- --nocapture` and recorded in docs/accuracy.md.

mod common;

use facecast::analyse::chip::{points5_from_mesh, ChipCutter, Points5};
use facecast::analyse::identity::{distance, Embedder, Embedding};
use facecast::config::Config;
use facecast::frame::Frame;
use facecast::model::{Manifest, Model};
use facecast::pipeline::Analyser;
use serde_json::Value;

fn embedder() -> Embedder {
    let manifest = Manifest::load(&common::models_dir()).unwrap();
    Embedder::new(Model::load(&manifest, "dlib_resnet", false).unwrap()).unwrap()
}

fn analyser() -> Analyser {
    let mut config = Config::default();
    config.models.dir = common::models_dir();
    Analyser::load(&config).unwrap_or_else(|e| panic!("{e}"))
}

fn numbers(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

fn points5(value: &Value) -> Points5 {
    let points: Vec<Vec<f64>> = value.as_array().unwrap().iter().map(numbers).collect();
    std::array::from_fn(|i| [points[i][0], points[i][1]])
}

/// dlib's faces per photo: box (left, top, right, bottom), five points, descriptor.
struct DlibFace {
    bbox: [f64; 4],
    points: Points5,
    descriptor: Vec<f32>,
}

fn dlib_faces() -> Vec<(String, Vec<DlibFace>)> {
    let doc = common::read_json(&common::repo().join("tests/fixtures/dlib/descriptors.json"));
    doc["images"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(image, faces)| {
            let faces = faces
                .as_array()
                .unwrap()
                .iter()
                .map(|f| DlibFace {
                    bbox: numbers(&f["box"]).try_into().unwrap(),
                    points: points5(&f["points5"]),
                    descriptor: numbers(&f["descriptor"])
                        .iter()
                        .map(|&v| v as f32)
                        .collect(),
                })
                .collect();
            (image.clone(), faces)
        })
        .collect()
}

#[test]
fn chips_match_dlibs_own_chips() {
    let dir = common::repo().join("tests/fixtures/parity/dlib_resnet");
    let mut cutter = ChipCutter::default();
    let mut chip = Frame::with_capacity(0, 0);
    let mut worst_mean: f64 = 0.0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let doc = common::read_json(&path);
        let photo = doc["source"].as_str().unwrap().split(':').next().unwrap();
        let frame = common::load_frame(&common::repo().join(photo));
        cutter.cut(
            &frame,
            &points5(&doc["dlib"]["points5"]),
            150,
            0.25,
            &mut chip,
        );
        let theirs = common::load_frame(&path.with_extension("png"));
        assert_eq!((chip.width, chip.height), (theirs.width, theirs.height));
        let diffs: Vec<i32> = chip
            .rgb
            .iter()
            .zip(&theirs.rgb)
            .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
            .collect();
        let mean = diffs.iter().sum::<i32>() as f64 / diffs.len() as f64;
        let max = diffs.iter().max().unwrap();
        println!("{photo}: chip vs dlib's: mean |diff| {mean:.3}, max {max}");
        worst_mean = worst_mean.max(mean);
        assert!(*max <= 4, "{photo}: max difference {max}");
    }
    // dlib decodes JPEG with libjpeg, facecast with zune-jpeg: the photos themselves differ by
    // up to 0.2 levels on average, and the chip carries that difference, nothing more.
    assert!(worst_mean < 0.5, "worst mean difference {worst_mean}");
}

#[test]
fn descriptors_match_dlib_from_dlibs_points() {
    let mut embedder = embedder();
    let (mut worst, mut faces) = (0.0f32, 0);
    for (image, expected) in dlib_faces() {
        let frame = common::load_frame(&common::images().join(&image));
        for face in &expected {
            let ours = embedder.embed(&frame, &face.points).unwrap();
            let d = distance(&ours, &face.descriptor);
            worst = worst.max(d);
            faces += 1;
            assert!(d <= 0.02, "{image} face at {:?}: distance {d}", face.bbox);
        }
    }
    println!("descriptors from dlib's points: {faces} faces, worst distance to dlib's {worst:.4}");
}

/// Our descriptor of each face dlib found, from our own detector and mesh: the face whose box
/// holds dlib's box centre.
fn pipeline_descriptors(
    analyser: &mut Analyser,
    embedder: &mut Embedder,
    frame: &Frame,
    dlib: &[DlibFace],
) -> Vec<Option<Embedding>> {
    let faces = analyser.analyse(frame, false).unwrap();
    dlib.iter()
        .map(|d| {
            let (cx, cy) = ((d.bbox[0] + d.bbox[2]) / 2.0, (d.bbox[1] + d.bbox[3]) / 2.0);
            let face = faces.iter().find(|f| {
                let b = &f.detection.bbox;
                (b.x as f64..(b.x + b.w) as f64).contains(&cx)
                    && (b.y as f64..(b.y + b.h) as f64).contains(&cy)
            })?;
            let mesh = &face.landmarks.as_ref()?.mesh.points;
            Some(embedder.embed(frame, &points5_from_mesh(mesh)).unwrap())
        })
        .collect()
}

#[test]
fn descriptors_from_the_mesh_stay_close_to_dlibs() {
    let (mut analyser, mut embedder) = (analyser(), embedder());
    let mut distances = Vec::new();
    let mut missed = Vec::new();
    for (image, expected) in dlib_faces() {
        let frame = common::load_frame(&common::images().join(&image));
        let ours = pipeline_descriptors(&mut analyser, &mut embedder, &frame, &expected);
        for (face, ours) in expected.iter().zip(ours) {
            match ours {
                Some(ours) => distances.push((distance(&ours, &face.descriptor), image.clone())),
                None => missed.push(format!("{image} {:?}", face.bbox)),
            }
        }
    }
    distances.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = distances.len();
    println!(
        "descriptors from mesh points vs dlib's: {n} faces (dlib's faces we did not find: {missed:?}); median {:.3}, worst {:.3} ({})",
        distances[n / 2].0,
        distances[n - 1].0,
        distances[n - 1].1
    );
    // The mesh's eye corners and nose bottom are not dlib's five points (they sit about 3% of
    // the eye span apart on average), so the chip moves a little and the descriptor with it:
    // far less than the 0.6 that separates people.
    assert!(distances[n / 2].0 < 0.15, "{distances:?}");
    assert!(distances[n - 1].0 < 0.35, "{distances:?}");
}
