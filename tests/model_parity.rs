//! Every model in the manifest: the file exists, matches its sha256, loads and runs in tract
//! with its declared input; and on the committed parity fixtures (real face crops with the
//! original framework's outputs) tract agrees with the original within 1e-3 of each output's
//! range. The figures are printed (`cargo test --test model_parity -- --nocapture`).

mod common;

use facecast::geometry::Affine;
use facecast::model::preprocess::{sample_into, Border};
use facecast::model::runner::values;
use facecast::model::{Manifest, Model};

/// Largest difference allowed, as a fraction of the reference output's range.
const RELATIVE_TOLERANCE: f32 = 1e-3;

#[test]
fn every_manifest_entry_loads_verifies_and_runs() {
    let manifest = Manifest::load(&common::models_dir()).expect("models/manifest.toml");
    assert!(!manifest.models.is_empty());
    for entry in &manifest.models {
        let mut model = Model::load(&manifest, &entry.id, true).unwrap_or_else(|e| panic!("{e}"));
        let outputs = model.run().unwrap_or_else(|e| panic!("{e}"));
        for (output, spec) in outputs.iter().zip(&entry.outputs) {
            assert_eq!(
                output.shape(),
                spec.shape.as_slice(),
                "{} {}",
                entry.id,
                spec.name
            );
            let values = values(output).unwrap();
            assert!(
                values.iter().all(|v| v.is_finite()),
                "{} {} not finite",
                entry.id,
                spec.name
            );
        }
    }
}

#[test]
fn tract_matches_the_original_framework_on_real_crops() {
    let manifest = Manifest::load(&common::models_dir()).expect("models/manifest.toml");
    let mut checked = 0;
    // Quantised copies are checked against their fp32 original instead (below).
    let originals: Vec<_> = manifest
        .models
        .iter()
        .filter(|m| m.variant_of.is_none())
        .collect();
    for entry in originals.iter().copied() {
        let dir = fixture_dir(&entry.id);
        let mut cases: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: every model needs parity fixtures: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        cases.sort();
        assert!(!cases.is_empty(), "{}: no parity cases", dir.display());
        let mut model = Model::load(&manifest, &entry.id, false).unwrap();
        // Per output: every case's (ours, reference) values; the tolerance is relative to the
        // reference's range over all cases (a single score per case has no range of its own).
        let mut compared: Vec<(String, Vec<f32>, Vec<f32>)> = Vec::new();
        for case in &cases {
            let fixture = common::read_json(case);
            let image = case.with_extension("png");
            let frame = common::load_frame(&image);
            let input = &entry.input;
            assert_eq!(
                (frame.width as usize, frame.height as usize),
                (input.width(), input.height()),
                "{}: the fixture image must be the model's input size",
                image.display()
            );
            let (spec, tensor) = model.input();
            sample_into(&frame, &Affine::IDENTITY, spec, Border::Black, tensor);
            let outputs = model.run().unwrap();
            for reference in fixture["outputs"].as_array().expect("outputs") {
                let name = reference["name"].as_str().unwrap();
                let index = entry
                    .outputs
                    .iter()
                    .position(|o| o.name == name)
                    .unwrap_or_else(|| panic!("{}: no output {name}", entry.id));
                let want = common::f32s(&reference["data"]);
                let got = values(&outputs[index]).unwrap();
                assert_eq!(got.len(), want.len(), "{} {name}", entry.id);
                match compared.iter_mut().find(|c| c.0 == name) {
                    Some(c) => {
                        c.1.extend_from_slice(got);
                        c.2.extend(want);
                    }
                    None => compared.push((name.to_string(), got.to_vec(), want)),
                }
            }
        }
        let mut worst = 0.0f32;
        for (name, got, want) in &compared {
            let (lo, hi) = want
                .iter()
                .fold((f32::MAX, f32::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
            let range = hi - lo;
            assert!(
                range > 0.0,
                "{} {name}: the fixtures' reference values do not vary",
                entry.id
            );
            let max_diff = got
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            println!(
                "{:<20} {:<16} max |diff| {max_diff:.2e}, range {range:.3e}, relative {:.2e}",
                entry.id,
                name,
                max_diff / range
            );
            assert!(
                max_diff <= RELATIVE_TOLERANCE * range,
                "{} {name}: max |diff| {max_diff} exceeds {RELATIVE_TOLERANCE} of the range {range}",
                entry.id
            );
            worst = worst.max(max_diff / range);
        }
        println!(
            "{:<20} {} cases, worst relative difference {worst:.2e}",
            entry.id,
            cases.len()
        );
        checked += 1;
    }
    assert_eq!(checked, originals.len());
}

fn fixture_dir(id: &str) -> std::path::PathBuf {
    common::repo().join("tests/fixtures/parity").join(id)
}

/// The fixture crops of a model, sorted.
fn fixture_images(id: &str) -> Vec<std::path::PathBuf> {
    let mut images: Vec<_> = std::fs::read_dir(fixture_dir(id))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .collect();
    images.sort();
    images
}

/// Runs `model` on a fixture crop; all outputs, flat.
fn run_on(model: &mut Model, image: &std::path::Path) -> Vec<Vec<f32>> {
    let frame = common::load_frame(image);
    let (spec, tensor) = model.input();
    sample_into(&frame, &Affine::IDENTITY, spec, Border::Black, tensor);
    model
        .run()
        .unwrap()
        .iter()
        .map(|o| values(o).unwrap().to_vec())
        .collect()
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap()
}

/// Each int8 copy against its fp32 original in tract, on the original's real fixture crops:
/// embeddings by cosine (>= 0.99), landmarks by mean drift over the eye-corner distance
/// (<= 0.01), classifiers by top-1 agreement (all crops), ages by the expected age (<= 3 years;
/// models/tools/int8/RESULTS.md has the figures on 82 crops).
#[test]
fn quantised_models_agree_with_their_fp32_originals() {
    use facecast::model::Task;
    let manifest = Manifest::load(&common::models_dir()).expect("models/manifest.toml");
    let variants: Vec<_> = manifest
        .models
        .iter()
        .filter(|m| m.variant_of.is_some())
        .collect();
    for entry in &variants {
        let original = entry.variant_of.as_deref().unwrap();
        let mut quantised = Model::load(&manifest, &entry.id, true).unwrap();
        let mut reference = Model::load(&manifest, original, true).unwrap();
        let mut worst = 0.0f32;
        for image in fixture_images(original) {
            let (ours, theirs) = (
                run_on(&mut quantised, &image),
                run_on(&mut reference, &image),
            );
            for (index, spec) in entry.outputs.iter().enumerate() {
                let (q, f) = (&ours[index], &theirs[index]);
                let case = format!("{} {} {}", entry.id, spec.name, image.display());
                match (entry.task, spec.role.as_str()) {
                    (Task::Embed, _) => {
                        let dot: f32 = q.iter().zip(f).map(|(a, b)| a * b).sum();
                        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
                        let cosine = dot / (norm(q) * norm(f));
                        assert!(cosine >= 0.99, "{case}: cosine {cosine}");
                        worst = worst.max(1.0 - cosine);
                    }
                    (Task::Mesh, "landmarks") => {
                        let point = |v: &[f32], i: usize| [v[3 * i], v[3 * i + 1]];
                        let d = |a: [f32; 2], b: [f32; 2]| (a[0] - b[0]).hypot(a[1] - b[1]);
                        let scale = d(point(f, 33), point(f, 263));
                        let drift = (0..f.len() / 3)
                            .map(|i| d(point(q, i), point(f, i)))
                            .sum::<f32>()
                            / (f.len() / 3) as f32
                            / scale;
                        assert!(drift <= 0.01, "{case}: drift {drift}");
                        worst = worst.max(drift);
                    }
                    (Task::Mesh, _) => assert_eq!(q[0] > 0.0, f[0] > 0.0, "{case}: face flag"),
                    (_, "age_years") => {
                        let diff = (q[0] - f[0]).abs();
                        assert!(diff <= 3.0, "{case}: age off by {diff} years");
                    }
                    (_, "age_probs") => {
                        let labels = spec.labels.as_ref().expect("age labels");
                        let years = |p: &[f32]| -> f32 {
                            p.iter()
                                .zip(labels)
                                .map(|(p, l)| p * l.parse::<f32>().unwrap())
                                .sum()
                        };
                        let diff = (years(q) - years(f)).abs();
                        assert!(diff <= 3.0, "{case}: expected age off by {diff} years");
                    }
                    _ => assert_eq!(argmax(q), argmax(f), "{case}: top-1 differs"),
                }
            }
        }
        println!("{:<24} agrees with {original} on its fixtures (worst embedding 1-cos / mesh drift {worst:.4})", entry.id);
    }
    assert!(!variants.is_empty());
}
