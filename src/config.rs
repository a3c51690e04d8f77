//! Configuration: `config/facecast.toml` documents every key. The file is read strictly
//! (unknown keys and wrong types are errors naming the file, line and key), then a few keys
//! people change per device may be overridden from the environment, then every value is range
//! checked. Only after all that does anything start.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::frame::MAX_RING_FRAMES;

/// Environment variables that override a key, applied after the file is read.
pub const ENV_OVERRIDES: [(&str, &str); 3] = [
    ("FACECAST_DEVICE_ID", "device.id"),
    ("FACECAST_SOURCE", "source.uri"),
    ("FACECAST_MODELS_DIR", "models.dir"),
];

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{origin}: {key}: {reason}")]
    Invalid {
        origin: String,
        key: &'static str,
        reason: String,
    },
}

/// The whole configuration. Every section has defaults, so an empty file is valid.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub device: DeviceConfig,
    pub source: SourceConfig,
    pub pipeline: PipelineConfig,
    pub models: ModelsConfig,
    pub detector: DetectorConfig,
    pub analysis: AnalysisConfig,
    pub output: OutputConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceConfig {
    /// Names this device in every output record.
    pub id: String,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        DeviceConfig {
            id: "facecast".into(),
        }
    }
}

/// Which pixel format to ask a V4L2 camera for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CameraFormat {
    /// The first of YUYV, MJPEG, NV12, GREY the camera offers at the requested size.
    Auto,
    Yuyv,
    Mjpeg,
    Nv12,
    Grey,
}

/// Whether the source runs in real time (drop old frames when behind) or is a recording
/// (analyse every frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Liveness {
    /// Cameras and `y4m:-` are live; files are not.
    Auto,
    Live,
    Recorded,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// `v4l2:/dev/videoN`, `y4m:PATH`, `y4m:-` (stdin) or `image:PATH` (file, directory or glob).
    pub uri: String,
    /// Requested capture width in pixels (V4L2; the driver may grant another).
    pub width: u32,
    /// Requested capture height in pixels.
    pub height: u32,
    /// Requested frames per second.
    pub fps: u32,
    pub format: CameraFormat,
    pub live: Liveness,
    /// First wait before reopening a source that failed; doubles up to `reopen_max_ms`.
    pub reopen_initial_ms: u64,
    pub reopen_max_ms: u64,
    /// Give up after this many failed reopen attempts in a row (0: never give up).
    pub reopen_attempts: u32,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            uri: "v4l2:/dev/video0".into(),
            width: 640,
            height: 480,
            fps: 30,
            format: CameraFormat::Auto,
            live: Liveness::Auto,
            reopen_initial_ms: 500,
            reopen_max_ms: 10_000,
            reopen_attempts: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Frame buffers between capture and analysis (2..=16).
    pub ring_frames: usize,
    /// Stop after this many analysed frames (0: run until the source ends).
    pub max_frames: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            ring_frames: 4,
            max_frames: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// Folder holding `manifest.toml` and the model files.
    pub dir: PathBuf,
    /// Check every model file's sha256 against the manifest when loading it.
    pub verify_sha256: bool,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        ModelsConfig {
            dir: "models".into(),
            verify_sha256: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Manifest id of the face detector.
    pub model: String,
    /// Minimum face score; unset: the manifest's value for the model.
    pub min_score: Option<f32>,
    /// Overlap (IoU) above which detections are merged; unset: the manifest's value.
    pub nms_iou: Option<f32>,
    /// At most this many faces per frame, the highest scores first.
    pub max_faces: usize,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            model: "blazeface_full".into(),
            min_score: None,
            nms_iou: None,
            max_faces: 16,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalysisConfig {
    /// Run the face mesh, irises, head pose and gaze on every face (false: detection only).
    pub enabled: bool,
    /// Manifest id of the 468-point face mesh model.
    pub mesh_model: String,
    /// Manifest id of the iris model.
    pub iris_model: String,
    /// In a video, run the detector every this many frames (1-300); in between, faces are
    /// followed by their landmarks. A lost face triggers detection on the next frame.
    pub detect_every: u32,
    /// A followed face whose mesh presence score falls below this (0-1) is lost.
    pub min_presence: f32,
    /// The camera's horizontal field of view, degrees (10-170): turns face size into distance.
    pub camera_hfov_deg: f32,
    /// A face is attending when its gaze is within this many degrees of the camera (1-90).
    pub attention_cone_deg: f32,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            enabled: true,
            mesh_model: "face_mesh".into(),
            iris_model: "iris".into(),
            detect_every: 5,
            min_presence: 0.5,
            camera_hfov_deg: 60.0,
            attention_cone_deg: 15.0,
        }
    }
}

/// Optional, larger parts of each face's record.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Publish all 468 mesh points (x, y, z) per face (about 10 kB per face).
    pub mesh: bool,
    /// Publish the 68 iBUG points per face.
    pub landmarks68: bool,
}

impl Config {
    /// Reads `path`, applies environment overrides and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let mut config = Config::parse(&text, path)?;
        config.apply_env(|name| std::env::var(name).ok());
        config.validate(&path.display().to_string())?;
        Ok(config)
    }

    /// The defaults with environment overrides, for running without a file.
    pub fn from_env() -> Result<Config, ConfigError> {
        let mut config = Config::default();
        config.apply_env(|name| std::env::var(name).ok());
        config.validate("built-in defaults")?;
        Ok(config)
    }

    /// Parses TOML text strictly; `path` only names the text in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|span| line_column(text, span.start))
                .unwrap_or((0, 0));
            ConfigError::Parse {
                path: path.into(),
                line,
                column,
                message: e.message().to_string(),
            }
        })
    }

    /// Applies the [`ENV_OVERRIDES`] that `lookup` finds.
    pub fn apply_env(&mut self, lookup: impl Fn(&str) -> Option<String>) {
        if let Some(id) = lookup("FACECAST_DEVICE_ID") {
            self.device.id = id;
        }
        if let Some(uri) = lookup("FACECAST_SOURCE") {
            self.source.uri = uri;
        }
        if let Some(dir) = lookup("FACECAST_MODELS_DIR") {
            self.models.dir = dir.into();
        }
    }

    /// Range checks; `origin` names where the values came from in errors.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, reason: String| ConfigError::Invalid {
            origin: origin.to_string(),
            key,
            reason,
        };
        let id = &self.device.id;
        if id.is_empty()
            || id.len() > 64
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(invalid(
                "device.id",
                format!(
                    "{id:?} must be 1 to 64 characters of A-Z a-z 0-9 - _ . (it names MQTT topics)"
                ),
            ));
        }
        crate::capture::SourceSpec::parse(&self.source.uri)
            .map_err(|e| invalid("source.uri", e.to_string()))?;
        in_range(self.source.width, 16, 8192).map_err(|r| invalid("source.width", r))?;
        in_range(self.source.height, 16, 8192).map_err(|r| invalid("source.height", r))?;
        in_range(self.source.fps, 1, 240).map_err(|r| invalid("source.fps", r))?;
        in_range(self.source.reopen_initial_ms, 1, 600_000)
            .map_err(|r| invalid("source.reopen_initial_ms", r))?;
        in_range(
            self.source.reopen_max_ms,
            self.source.reopen_initial_ms,
            3_600_000,
        )
        .map_err(|r| invalid("source.reopen_max_ms", r))?;
        in_range(self.pipeline.ring_frames, 2, MAX_RING_FRAMES)
            .map_err(|r| invalid("pipeline.ring_frames", r))?;
        if self.detector.model.is_empty() {
            return Err(invalid(
                "detector.model",
                "must name a model id of the manifest".into(),
            ));
        }
        if let Some(score) = self.detector.min_score {
            if !(0.0..=1.0).contains(&score) {
                return Err(invalid(
                    "detector.min_score",
                    format!("must be between 0 and 1, got {score}"),
                ));
            }
        }
        if let Some(iou) = self.detector.nms_iou {
            if !(iou > 0.0 && iou <= 1.0) {
                return Err(invalid(
                    "detector.nms_iou",
                    format!("must be in (0, 1], got {iou}"),
                ));
            }
        }
        in_range(self.detector.max_faces, 1, 256).map_err(|r| invalid("detector.max_faces", r))?;
        let a = &self.analysis;
        in_range(a.detect_every, 1, 300).map_err(|r| invalid("analysis.detect_every", r))?;
        in_range(a.min_presence, 0.0, 1.0).map_err(|r| invalid("analysis.min_presence", r))?;
        in_range(a.camera_hfov_deg, 10.0, 170.0)
            .map_err(|r| invalid("analysis.camera_hfov_deg", r))?;
        in_range(a.attention_cone_deg, 1.0, 90.0)
            .map_err(|r| invalid("analysis.attention_cone_deg", r))?;
        Ok(())
    }
}

fn in_range<T: PartialOrd + std::fmt::Display>(value: T, min: T, max: T) -> Result<(), String> {
    if value < min || value > max {
        Err(format!("must be between {min} and {max}, got {value}"))
    } else {
        Ok(())
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let config = Config::parse(text, Path::new("test.toml"))?;
        config.validate("test.toml")?;
        Ok(config)
    }

    #[test]
    fn documented_default_file_equals_built_in_defaults() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/facecast.toml"));
        let text = std::fs::read_to_string(path).unwrap();
        let file = Config::parse(&text, path).unwrap();
        file.validate("config/facecast.toml").unwrap();
        // Debug output covers every field, so this compares the whole tree.
        assert_eq!(format!("{file:?}"), format!("{:?}", Config::default()));
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err = parse("[source]\nwidth = 640\nwdth = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("test.toml:3:1:"), "{err}");
        assert!(err.contains("wdth"), "{err}");
    }

    #[test]
    fn wrong_type_is_rejected() {
        let err = parse("[source]\nfps = \"fast\"\n").unwrap_err().to_string();
        assert!(err.starts_with("test.toml:2:7:"), "{err}");
    }

    #[test]
    fn unknown_enum_value_is_rejected() {
        let err = parse("[source]\nformat = \"h264\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("h264") || err.contains("unknown variant"),
            "{err}"
        );
    }

    #[test]
    fn out_of_range_values_name_the_key() {
        for (text, key) in [
            ("[pipeline]\nring_frames = 1\n", "pipeline.ring_frames"),
            ("[pipeline]\nring_frames = 17\n", "pipeline.ring_frames"),
            ("[source]\nfps = 0\n", "source.fps"),
            ("[detector]\nmin_score = 1.5\n", "detector.min_score"),
            ("[device]\nid = \"a/b\"\n", "device.id"),
            ("[source]\nuri = \"rtsp://camera\"\n", "source.uri"),
            (
                "[source]\nreopen_initial_ms = 900\nreopen_max_ms = 100\n",
                "source.reopen_max_ms",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("test.toml: {key}: ")),
                "{text:?} gave {err}"
            );
        }
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut config = parse("[device]\nid = \"lobby\"\n").unwrap();
        config.apply_env(|name| match name {
            "FACECAST_DEVICE_ID" => Some("kiosk-7".into()),
            "FACECAST_SOURCE" => Some("y4m:-".into()),
            _ => None,
        });
        assert_eq!(config.device.id, "kiosk-7");
        assert_eq!(config.source.uri, "y4m:-");
        assert_eq!(config.models.dir, PathBuf::from("models"));
    }
}
