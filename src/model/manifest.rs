//! `models/manifest.toml`: what each model file is and how to feed it (see models/README.md).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{embedded, ModelError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema: u32,
    #[serde(rename = "model", default)]
    pub models: Vec<ModelEntry>,
    /// Folder the manifest was read from; model files are relative to it.
    #[serde(skip)]
    pub dir: PathBuf,
    /// Read from the set built into the binary (`embed-models`), not from `dir`.
    #[serde(skip)]
    pub embedded: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Detect,
    Mesh,
    Iris,
    Embed,
    AgeGender,
    Age,
    Gender,
    Emotion,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    Int8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Nchw,
    Nhwc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    Rgb,
    Bgr,
    Grey,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub id: String,
    pub task: Task,
    pub file: PathBuf,
    pub sha256: String,
    pub precision: Precision,
    /// For a reduced-precision copy: the id of the fp32 model it was made from.
    pub variant_of: Option<String>,
    pub licence: String,
    pub origin: String,
    pub upstream: String,
    pub converter: String,
    /// How the file was checked against its original framework; free-form beyond the basics.
    pub parity: Option<toml::Table>,
    pub input: InputSpec,
    #[serde(rename = "output")]
    pub outputs: Vec<OutputSpec>,
    pub detector: Option<DetectorSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub layout: Layout,
    pub colour: Colour,
    /// Per channel, in 0..=255 pixel units: tensor = (pixel - mean) / std.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl InputSpec {
    pub fn channels(&self) -> usize {
        match self.layout {
            Layout::Nchw => self.shape[1],
            Layout::Nhwc => self.shape[3],
        }
    }

    pub fn height(&self) -> usize {
        match self.layout {
            Layout::Nchw => self.shape[2],
            Layout::Nhwc => self.shape[1],
        }
    }

    pub fn width(&self) -> usize {
        match self.layout {
            Layout::Nchw => self.shape[3],
            Layout::Nhwc => self.shape[2],
        }
    }

    fn check(&self, id: &str) -> Result<(), String> {
        if self.shape.len() != 4 || self.shape[0] != 1 {
            return Err(format!(
                "{id}: input shape {:?} is not [1, ., ., .]",
                self.shape
            ));
        }
        let channels = self.channels();
        let expected = if self.colour == Colour::Grey { 1 } else { 3 };
        if channels != expected {
            return Err(format!(
                "{id}: {:?} input needs {expected} channels, shape has {channels}",
                self.colour
            ));
        }
        if self.mean.len() != channels || self.std.len() != channels || self.std.contains(&0.0) {
            return Err(format!(
                "{id}: mean and std need {channels} values each, std non-zero"
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub name: String,
    pub shape: Vec<usize>,
    /// What the task's decoder reads this output as (e.g. `boxes`, `scores`).
    pub role: String,
    pub meaning: String,
    /// Class names, for classifier outputs, in output order.
    pub labels: Option<Vec<String>>,
}

/// One grid of SSD anchors: a centre every `stride` input pixels, `per_cell` anchors each.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorGrid {
    pub stride: usize,
    pub per_cell: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorSpec {
    pub anchors: Vec<AnchorGrid>,
    /// Input pixels the regressors are expressed in.
    pub box_scale: f32,
    /// Score logits are clipped to +-this before the sigmoid.
    pub score_clip: f32,
    pub min_score: f32,
    pub nms_iou: f32,
    pub keypoints: usize,
}

impl Manifest {
    /// Reads `dir/manifest.toml`. `dir` = `embedded` selects the model set built into the
    /// binary (feature `embed-models`), as does any `dir` without a manifest in a binary that
    /// has one; that manifest lists only the built-in models.
    pub fn load(dir: &Path) -> Result<Manifest, ModelError> {
        let path = dir.join("manifest.toml");
        let built_in = embedded::manifest()
            .filter(|_| dir == Path::new(embedded::DIR) || !path.exists())
            .inspect(|_| match dir == Path::new(embedded::DIR) {
                true => log::info!("models: the set built into this binary"),
                false => log::info!(
                    "models: no {}: using the set built into this binary",
                    path.display()
                ),
            });
        let text = match built_in {
            Some(text) => text.to_string(),
            None if dir == Path::new(embedded::DIR) => {
                return Err(ModelError::Manifest {
                    path: dir.to_path_buf(),
                    reason: "this binary has no built-in models (feature embed-models)".into(),
                })
            }
            None => std::fs::read_to_string(&path).map_err(|e| ModelError::Manifest {
                path: path.clone(),
                reason: e.to_string(),
            })?,
        };
        let mut manifest: Manifest = toml::from_str(&text).map_err(|e| ModelError::Manifest {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if manifest.schema != 1 {
            return Err(ModelError::Manifest {
                path,
                reason: format!("schema {} (this facecast reads schema 1)", manifest.schema),
            });
        }
        for entry in &manifest.models {
            entry
                .input
                .check(&entry.id)
                .map_err(|reason| ModelError::Manifest {
                    path: path.clone(),
                    reason,
                })?;
        }
        manifest.dir = dir.to_path_buf();
        if built_in.is_some() {
            manifest.dir = embedded::DIR.into();
            manifest.embedded = true;
            manifest
                .models
                .retain(|m| embedded::file(&m.file).is_some());
        }
        Ok(manifest)
    }

    pub fn entry(&self, id: &str) -> Result<&ModelEntry, ModelError> {
        self.models
            .iter()
            .find(|m| m.id == id)
            .ok_or_else(|| ModelError::UnknownId {
                id: id.into(),
                known: self.models.iter().map(|m| m.id.clone()).collect(),
            })
    }

    pub fn path_of(&self, entry: &ModelEntry) -> PathBuf {
        self.dir.join(&entry.file)
    }

    /// Reads the entry's file, checking its sha256 when `verify` is set.
    pub fn read_file(&self, entry: &ModelEntry, verify: bool) -> Result<Vec<u8>, ModelError> {
        let path = self.path_of(entry);
        let bytes = match self.embedded {
            true => embedded::file(&entry.file)
                .ok_or_else(|| ModelError::Load {
                    id: entry.id.clone(),
                    reason: "not built into this binary".into(),
                })?
                .to_vec(),
            false => std::fs::read(&path).map_err(|e| ModelError::Load {
                id: entry.id.clone(),
                reason: format!("{}: {e}", path.display()),
            })?,
        };
        if verify {
            let digest = Sha256::digest(&bytes);
            let got: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            if !got.eq_ignore_ascii_case(&entry.sha256) {
                return Err(ModelError::Checksum {
                    path,
                    expected: entry.sha256.clone(),
                    got,
                });
            }
        }
        Ok(bytes)
    }
}
