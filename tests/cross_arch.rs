//! The same results on every architecture. `make test-aarch64` runs this file twice: natively on
//! x86-64 with `FACECAST_CROSS_OUT=DIR`, which writes what it computed to `DIR/x86_64.json`, then
//! built for aarch64 and run under qemu with `FACECAST_X86_REFERENCE=DIR/x86_64.json`, which
//! computes the same things with tract's ARM kernels and compares them with the x86 file.
//!
//! What is computed, all from real photos and real models:
//! - the records `facecast analyze` prints for five photos (four with faces, one without), in
//!   three configurations: the default one (blazeface_full, face_mesh, iris) with the mesh and the
//!   68 points output, the int8 mesh (face_mesh_int8), and the short-range detector;
//! - every manifest model's raw outputs on a real face crop (its first parity fixture; an int8
//!   copy uses its original's).
//!
//! Tolerances (any larger difference fails the test): raw outputs within 1e-4 of each output's
//! range (or magnitude, for one value) on the crop; record numbers within one rounding step of
//! the record (see `tolerance`), with the same faces, keys and flags; except that with the int8
//! mesh the values that follow from the mesh are held to a mean mesh drift of 1 % of the
//! eye-corner distance per face (see `INT8_DERIVED`). With the `embed-models` feature the default and int8
//! configurations read their models from the built-in set instead of `models/`, so that
//! set is checked too. How many numbers differ, and by how much, is printed (`-- --nocapture`).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use facecast::config::Config;
use facecast::geometry::Affine;
use facecast::model::preprocess::{sample_into, Border};
use facecast::model::runner::values;
use facecast::model::{Manifest, Model};
use facecast::pipeline::{analyze_image, frame_record, Analyser};
use serde_json::{json, Value};

/// Four photos with faces (one to sixteen people, frontal and turned) and one without; with the
/// least number of faces the full-range and the short-range detector find in each (the
/// short-range one is for faces within about 2 m: none of insightface/t1.jpg's five).
const PHOTOS: &[(&str, usize, usize)] = &[
    ("dlib/bald_guys.jpg", 10, 1),
    ("insightface/t1.jpg", 5, 0),
    ("face_recognition/obama.jpg", 1, 1),
    ("skimage/astronaut.png", 1, 1),
    ("facedetect/640px-IceBlockNearJoekullsarlon.jpg", 0, 0),
];

/// Raw model outputs: largest difference as a fraction of the output's range on the crop.
const RAW_RELATIVE_TOLERANCE: f64 = 1e-4;

/// Record values that follow from the mesh. With the int8 mesh they are not held to rounding:
/// an activation within float error of a quantisation boundary rounds to the neighbouring int8
/// level on one architecture and not on the other, and the mesh moves by more than rounding.
/// The int8 mesh is held instead to the bound tests/model_parity.rs holds it to against the
/// fp32 mesh: [`INT8_MESH_DRIFT`].
const INT8_DERIVED: &[&str] = &["mesh", "lm68", "iris", "gaze", "pose", "pos", "open"];
/// Mean mesh point distance from x86, over the eye-corner distance, per face.
const INT8_MESH_DRIFT: f64 = 0.01;

/// Allowed difference for a record number under `key` (the innermost object key above it):
/// one rounding step of the record (src/record.rs rounds coordinates to 0.1 px, angles to 0.1
/// degree, scores to 0.001, openness to 0.01), since a difference of 1e-6 can move a value across
/// a rounding boundary. Integers (sizes, sequence numbers) must be equal; a key not listed here
/// gets 0.1 or 0.1 % of the value, whichever is larger.
fn tolerance(key: &str, x86: f64, int8: bool) -> f64 {
    if int8 && INT8_DERIVED.contains(&key) {
        // Compared by mesh drift instead (see `INT8_MESH_DRIFT`).
        return f64::INFINITY;
    }
    let step = match key {
        "box" | "kp" | "iris" | "mesh" | "lm68" => 0.1,
        "pose" | "gaze" | "pos" => 0.1,
        "score" => 0.001,
        "open" => 0.01,
        "v" | "seq" | "w" | "h" => return 0.0,
        _ => (1e-3 * x86.abs()).max(0.1),
    };
    // The decimal values are not exact in binary: allow their rounding error.
    step * 1.001
}

fn config(name: &str, models: &Path) -> Config {
    let mut config = Config::default();
    config.models.dir = models.to_path_buf();
    config.output.mesh = true;
    config.output.landmarks68 = true;
    // Detection and landmarks end to end; the descriptor and attribute networks are compared
    // output by output (raw_outputs in results_match_x86, and model_parity under qemu), which keeps
    // the emulated run short.
    config.identity.enabled = false;
    config.attributes.enabled = false;
    match name {
        "default" => {}
        "int8_mesh" => config.analysis.mesh_model = "face_mesh_int8".into(),
        "short_detector" => config.detector.model = "blazeface_short".into(),
        _ => unreachable!(),
    }
    config
}

/// Where this run reads the default model set from: the binary's built-in set when it has one
/// (the ARM run of `make test-aarch64`), else `models/`.
fn default_models_dir() -> PathBuf {
    if cfg!(feature = "embed-models") {
        facecast::model::embedded::DIR.into()
    } else {
        common::models_dir()
    }
}

/// The records of every photo under each configuration, keyed "config/photo"; computed once
/// for both tests (under qemu that matters).
fn records() -> &'static BTreeMap<String, Value> {
    static RECORDS: OnceLock<BTreeMap<String, Value>> = OnceLock::new();
    RECORDS.get_or_init(compute_records)
}

fn compute_records() -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for name in ["default", "int8_mesh", "short_detector"] {
        // The short-range detector is not in the built-in set.
        let dir = match name {
            "short_detector" => common::models_dir(),
            _ => default_models_dir(),
        };
        let config = config(name, &dir);
        let mut analyser = Analyser::load(&config).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (seq, (photo, _, _)) in PHOTOS.iter().enumerate() {
            let path = common::images().join(photo);
            let result = analyze_image(&mut analyser, &path, seq as u64)
                .unwrap_or_else(|e| panic!("{name} {photo}: {e}"));
            let record = frame_record(
                &config.device.id,
                &result.frame,
                &result.analysis,
                &config.output,
                Some(photo),
            );
            let mut value = serde_json::to_value(&record).unwrap();
            // Capture time: when the file was read, not a result.
            value.as_object_mut().unwrap().remove("ts");
            out.insert(format!("{name}/{photo}"), value);
        }
    }
    out
}

/// Every manifest model's outputs on a real crop, keyed "model/output".
fn raw_outputs() -> BTreeMap<String, Vec<f32>> {
    let manifest = Manifest::load(&common::models_dir()).expect("models/manifest.toml");
    let mut out = BTreeMap::new();
    for entry in &manifest.models {
        let fixture_of = entry.variant_of.as_deref().unwrap_or(&entry.id);
        let dir = common::repo()
            .join("tests/fixtures/parity")
            .join(fixture_of);
        let mut crops: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "png"))
            .collect();
        crops.sort();
        let crop = crops
            .first()
            .unwrap_or_else(|| panic!("{}: no crop", dir.display()));
        let frame = common::load_frame(crop);
        let mut model = Model::load(&manifest, &entry.id, true).unwrap_or_else(|e| panic!("{e}"));
        let (spec, tensor) = model.input();
        sample_into(&frame, &Affine::IDENTITY, spec, Border::Black, tensor);
        let outputs = model.run().unwrap_or_else(|e| panic!("{e}"));
        for (output, spec) in outputs.iter().zip(&entry.outputs) {
            let values = values(output).unwrap().to_vec();
            assert!(
                values.iter().all(|v| v.is_finite()),
                "{} {}",
                entry.id,
                spec.name
            );
            out.insert(format!("{}/{}", entry.id, spec.name), values);
        }
    }
    out
}

/// Compares `got` with `want` in structure and values; records the largest difference per key
/// in `worst` and every violation in `errors`.
/// Mean distance between two meshes' points (x, y), over the distance between the eye corners
/// (points 33 and 263) of `want`: the measure tests/model_parity.rs holds int8 copies to.
fn mesh_drift(got: &Value, want: &Value) -> f64 {
    let points = |v: &Value| -> Vec<[f64; 2]> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| [p[0].as_f64().unwrap(), p[1].as_f64().unwrap()])
            .collect()
    };
    let (g, w) = (points(got), points(want));
    let d = |a: [f64; 2], b: [f64; 2]| (a[0] - b[0]).hypot(a[1] - b[1]);
    let scale = d(w[33], w[263]);
    g.iter().zip(&w).map(|(a, b)| d(*a, *b)).sum::<f64>() / w.len() as f64 / scale
}

fn compare(
    at: &str,
    key: &str,
    (got, want): (&Value, &Value),
    int8: bool,
    worst: &mut BTreeMap<String, (f64, usize, usize)>,
    errors: &mut Vec<String>,
) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            let (gk, wk): (Vec<_>, Vec<_>) = (g.keys().collect(), w.keys().collect());
            if gk != wk {
                errors.push(format!("{at}: keys {gk:?} on this target, {wk:?} on x86"));
                return;
            }
            for (k, v) in g {
                compare(&format!("{at}.{k}"), k, (v, &w[k]), int8, worst, errors);
            }
        }
        (Value::Array(g), Value::Array(w)) => {
            if g.len() != w.len() {
                errors.push(format!(
                    "{at}: {} items on this target, {} on x86",
                    g.len(),
                    w.len()
                ));
                return;
            }
            for (i, (a, b)) in g.iter().zip(w).enumerate() {
                compare(&format!("{at}[{i}]"), key, (a, b), int8, worst, errors);
            }
        }
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            let diff = (a - b).abs();
            let slot = worst.entry(key.to_string()).or_insert((0.0, 0, 0));
            slot.0 = slot.0.max(diff);
            slot.1 += 1;
            slot.2 += usize::from(diff > 0.0);
            let allowed = tolerance(key, b, int8);
            if diff > allowed {
                errors.push(format!(
                    "{at}: {a} on this target, {b} on x86 (allowed {allowed})"
                ));
            }
        }
        _ if got == want => {}
        // Attention follows the gaze, compared by mesh drift for the int8 mesh.
        (Value::Bool(_), Value::Bool(_)) if int8 && key == "att" => {}
        _ => errors.push(format!("{at}: {got} on this target, {want} on x86")),
    }
}

fn arch() -> &'static str {
    std::env::consts::ARCH
}

/// Every photo gives at least the faces it has for each detector (none on the photo without),
/// each with its mesh and 68 points: whatever the architecture, the results are results.
#[test]
fn real_photos_give_faces_on_this_target() {
    for (key, record) in records() {
        let (config, photo) = key.split_once('/').unwrap();
        let &(_, full, short) = PHOTOS.iter().find(|p| p.0 == photo).unwrap();
        let least = if config == "short_detector" {
            short
        } else {
            full
        };
        let faces = record["faces"].as_array().unwrap();
        assert!(
            faces.len() >= least,
            "{key}: {} faces, expected at least {least}",
            faces.len()
        );
        if full == 0 {
            assert!(faces.is_empty(), "{key}: a face on a photo without one");
        }
        for face in faces {
            assert_eq!(face["mesh"].as_array().unwrap().len(), 468, "{key}");
            assert_eq!(face["lm68"].as_array().unwrap().len(), 68, "{key}");
        }
    }
}

/// On x86: writes this run's results for the ARM run (only with `FACECAST_CROSS_OUT`). On any
/// other architecture: compares them with the x86 results in `FACECAST_X86_REFERENCE`.
#[test]
fn results_match_x86() {
    let mine = json!({
        "arch": arch(),
        "records": records(),
        "raw": raw_outputs(),
    });
    if let Ok(dir) = std::env::var("FACECAST_CROSS_OUT") {
        let path = Path::new(&dir).join(format!("{}.json", arch()));
        std::fs::write(&path, serde_json::to_vec(&mine).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        println!("wrote {}", path.display());
    }
    if arch() == "x86_64" {
        // The reference itself: nothing to compare with.
        return;
    }
    let reference = std::env::var("FACECAST_X86_REFERENCE").unwrap_or_else(|_| {
        panic!("FACECAST_X86_REFERENCE is not set: `make test-aarch64` makes the x86 reference")
    });
    let want = common::read_json(Path::new(&reference));
    assert_eq!(
        want["arch"], "x86_64",
        "{reference} is not an x86-64 reference"
    );

    let mut errors = Vec::new();
    let (got_records, want_records) = (
        mine["records"].as_object().unwrap(),
        want["records"].as_object().unwrap(),
    );
    assert_eq!(
        got_records.keys().collect::<Vec<_>>(),
        want_records.keys().collect::<Vec<_>>(),
        "records differ"
    );
    let mut worst: BTreeMap<&str, BTreeMap<String, (f64, usize, usize)>> = BTreeMap::new();
    let mut worst_drift = 0.0f64;
    for (name, got) in got_records {
        let config = name.split_once('/').unwrap().0;
        let int8 = config == "int8_mesh";
        let want = &want_records[name];
        let slot = worst.entry(config).or_default();
        compare(
            &format!("records {name}"),
            "",
            (got, want),
            int8,
            slot,
            &mut errors,
        );
        if int8 {
            let faces = |r: &Value| r["faces"].as_array().unwrap().clone();
            for (i, (g, w)) in faces(got).iter().zip(faces(want)).enumerate() {
                let drift = mesh_drift(&g["mesh"], &w["mesh"]);
                worst_drift = worst_drift.max(drift);
                if drift > INT8_MESH_DRIFT {
                    errors.push(format!(
                        "records {name} face {i}: int8 mesh drift {drift:.4} of the eye-corner distance from x86 (allowed {INT8_MESH_DRIFT})"
                    ));
                }
            }
        }
    }
    for (config, keys) in &worst {
        for (key, (max, count, differ)) in keys {
            println!(
                "records {config:<14} {key:<6} {differ:>6} of {count:>6} numbers differ from x86_64, by at most {max:.3}",
            );
        }
    }
    println!(
        "records int8_mesh: worst mean mesh drift from x86_64 {worst_drift:.4} of the eye-corner distance"
    );

    let (got_raw, want_raw) = (
        mine["raw"].as_object().unwrap(),
        want["raw"].as_object().unwrap(),
    );
    assert_eq!(
        got_raw.keys().collect::<Vec<_>>(),
        want_raw.keys().collect::<Vec<_>>(),
        "model outputs differ"
    );
    let mut worst_raw = 0.0f64;
    for (name, got) in got_raw {
        let as_f64 = |v: &Value| -> Vec<f64> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        let (got, want) = (as_f64(got), as_f64(&want_raw[name]));
        assert_eq!(got.len(), want.len(), "{name}");
        let (lo, hi) = want
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        // A one-value output (a score, an age) has no range: its magnitude is the scale.
        let range = (hi - lo).max(hi.abs()).max(lo.abs()).max(f64::EPSILON);
        let max_diff = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        println!(
            "raw {name:<40} max |diff| {max_diff:.2e}, range {range:.3e}, relative {:.2e}",
            max_diff / range
        );
        worst_raw = worst_raw.max(max_diff / range);
        if max_diff > RAW_RELATIVE_TOLERANCE * range {
            errors.push(format!(
                "raw {name}: max |diff| {max_diff:.3e} exceeds {RAW_RELATIVE_TOLERANCE} of the range {range:.3e}"
            ));
        }
    }
    println!(
        "{} records, {} model outputs compared with x86_64; worst raw relative difference {worst_raw:.2e}",
        want["records"].as_object().unwrap().len(),
        got_raw.len()
    );
    assert!(
        errors.is_empty(),
        "{} differences beyond tolerance, first ones:\n{}",
        errors.len(),
        errors
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
