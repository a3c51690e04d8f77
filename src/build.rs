//! Build script. It does something only with the `embed-models` feature: then it writes
//! `$OUT_DIR/embedded_models.rs`, which puts `models/manifest.toml` and a set of model files into
//! the binary (see `src/model/embedded.rs`).
//!
//! The set is the manifest ids named in `FACECAST_EMBED_MODELS` (comma-separated) when it is
//! set, otherwise every manifest id that `config/facecast.toml`, the documented default
//! configuration, names as a value (today the detector, mesh, iris, identity, age, gender and
//! expression models) and their reduced-precision copies (`variant_of`; today the five `*_int8`
//! copies of the mesh, identity, age, gender and expression models; 12 files, 40 MiB in all, see
//! cross/README.md), so that the precision stays a configuration choice. No model file is named
//! here: ids and files come from the manifest.
//!
//! It has no dependencies on purpose (a TOML crate here would change the features of the crates
//! the library shares with it, and so rebuild tract): it reads only the `id`, `file` and
//! `variant_of` lines of
//! each `[[model]]` in the generated manifest and the quoted values of the configuration; the
//! library parses the full manifest at run time, and a file that does not match it fails there.

use std::collections::BTreeSet;
use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=src/build.rs");
    if env::var_os("CARGO_FEATURE_EMBED_MODELS").is_none() {
        return;
    }
    println!("cargo:rerun-if-env-changed=FACECAST_EMBED_MODELS");
    println!("cargo:rerun-if-changed=models/manifest.toml");
    println!("cargo:rerun-if-changed=config/facecast.toml");
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let models = root.join("models");
    let manifest_path = models.join("manifest.toml");
    let entries = manifest_entries(&manifest_path);
    let known: BTreeSet<&str> = entries.iter().map(|e| e.id.as_str()).collect();

    let wanted: BTreeSet<String> = match env::var("FACECAST_EMBED_MODELS") {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .map(|id| id.trim().to_string())
            .filter(|id| !id.is_empty())
            .collect(),
        _ => {
            let config_path = root.join("config/facecast.toml");
            let text = read(&config_path);
            let named: BTreeSet<String> = text
                .lines()
                .filter_map(|line| string_value(line).map(|(_, value)| value))
                .filter(|value| known.contains(value.as_str()))
                .collect();
            let variants = entries
                .iter()
                .filter(|e| e.variant_of.as_ref().is_some_and(|of| named.contains(of)))
                .map(|e| e.id.clone());
            named.iter().cloned().chain(variants).collect()
        }
    };
    if wanted.is_empty() {
        fail(&manifest_path, "no model to embed");
    }
    for id in &wanted {
        if !known.contains(id.as_str()) {
            fail(
                &manifest_path,
                &format!("FACECAST_EMBED_MODELS names {id:?}, which the manifest does not have"),
            );
        }
    }

    let mut code = String::new();
    writeln!(
        code,
        "pub static MANIFEST: &str = include_str!({:?});",
        manifest_path.display().to_string()
    )
    .unwrap();
    code.push_str("pub static FILES: &[(&str, &[u8])] = &[\n");
    for Entry { id, file, .. } in entries.iter().filter(|e| wanted.contains(&e.id)) {
        let path = models.join(file);
        if !path.is_file() {
            fail(&path, &format!("model {id}: file missing"));
        }
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(
            code,
            "    ({file:?}, include_bytes!({:?})),",
            path.display().to_string()
        )
        .unwrap();
    }
    code.push_str("];\n");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("embedded_models.rs");
    fs::write(&out, code).unwrap_or_else(|e| fail(&out, &e.to_string()));
}

#[derive(Default)]
struct Entry {
    id: String,
    file: String,
    variant_of: Option<String>,
}

/// Every `[[model]]` table's own `id`, `file` and `variant_of` lines, before any of its
/// sub-tables (`[model.input]`, ...).
fn manifest_entries(path: &Path) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut current: Option<Entry> = None;
    let mut finish = |current: &mut Option<Entry>| {
        if let Some(entry) = current.take() {
            if entry.id.is_empty() || entry.file.is_empty() {
                fail(path, "a [[model]] without id or file");
            }
            entries.push(entry);
        }
    };
    let mut in_model = false;
    for line in read(path).lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_model = line == "[[model]]";
            if in_model {
                finish(&mut current);
                current = Some(Entry::default());
            }
            continue;
        }
        let (Some(entry), true) = (current.as_mut(), in_model) else {
            continue;
        };
        match string_value(line) {
            Some((key, value)) if key == "id" => entry.id = value,
            Some((key, value)) if key == "file" => entry.file = value,
            Some((key, value)) if key == "variant_of" => entry.variant_of = Some(value),
            _ => {}
        }
    }
    finish(&mut current);
    if entries.is_empty() {
        fail(path, "no [[model]] entries");
    }
    entries
}

/// `key = "value"` (a basic string without escapes) on one line, comments aside.
fn string_value(line: &str) -> Option<(String, String)> {
    let line = line.trim();
    if line.starts_with('#') {
        return None;
    }
    let (key, rest) = line.split_once('=')?;
    let rest = rest.trim().strip_prefix('"')?;
    let (value, _) = rest.split_once('"')?;
    Some((key.trim().to_string(), value.to_string()))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| fail(path, &e.to_string()))
}

fn fail(path: &Path, reason: &str) -> ! {
    panic!("embed-models: {}: {reason}", path.display())
}
