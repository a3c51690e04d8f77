//! The model set built into the binary by the `embed-models` feature, for single-file
//! deployment. `src/build.rs` chooses the set (the models `config/facecast.toml` names, or
//! `FACECAST_EMBED_MODELS`) and includes `models/manifest.toml` and those files; the manifest
//! code reads them from here instead of from a folder, so everything else is unchanged.

use std::path::Path;

/// The `models.dir` value that selects the built-in set.
pub const DIR: &str = "embedded";

#[cfg(feature = "embed-models")]
mod data {
    include!(concat!(env!("OUT_DIR"), "/embedded_models.rs"));
}

#[cfg(not(feature = "embed-models"))]
mod data {
    pub static MANIFEST: &str = "";
    pub static FILES: &[(&str, &[u8])] = &[];
}

/// The built-in manifest text; `None` in a build without the feature.
pub fn manifest() -> Option<&'static str> {
    (!data::FILES.is_empty()).then_some(data::MANIFEST)
}

/// A built-in model file, by its manifest `file` name.
pub fn file(name: &Path) -> Option<&'static [u8]> {
    data::FILES
        .iter()
        .find(|(file, _)| Path::new(file) == name)
        .map(|(_, bytes)| *bytes)
}
