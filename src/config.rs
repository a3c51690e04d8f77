//! Configuration: `config/facecast.toml` documents every key. The file is read strictly
//! (unknown keys and wrong types are errors naming the file, line and key), then a few keys
//! people change per device may be overridden from the environment, then every value is range
//! checked. Only after all that does anything start.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::frame::MAX_RING_FRAMES;

/// More analysis threads than any board has cores only cost memory (a model state each).
const MAX_THREADS: usize = 64;

/// Environment variables that override a key, applied after the file is read.
pub const ENV_OVERRIDES: [(&str, &str); 5] = [
    ("FACECAST_DEVICE_ID", "device.id"),
    ("FACECAST_SOURCE", "source.uri"),
    ("FACECAST_MODELS_DIR", "models.dir"),
    ("FACECAST_MQTT_HOST", "mqtt.host"),
    ("FACECAST_MQTT_PASSWORD", "mqtt.password"),
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
    pub mqtt: MqttConfig,
    pub analysis: AnalysisConfig,
    pub identity: IdentityConfig,
    pub tracking: TrackingConfig,
    pub attributes: AttributesConfig,
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
    /// Threads analysing a frame's faces in parallel (0: one per CPU core).
    pub threads: usize,
    /// With two or more threads, a video is analysed in two stages one frame apart: more
    /// frames per second, each result later (docs/performance.md).
    pub overlap: bool,
}

impl PipelineConfig {
    /// The analysis threads to run: `threads`, or one per CPU core.
    pub fn analysis_threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            ring_frames: 4,
            max_frames: 0,
            threads: 0,
            overlap: false,
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
    /// At most this many faces per frame, the highest scores first. In a video, while this
    /// many faces are followed the detector does not run (there is no room for another).
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
    /// Manifest id of the iris model; not loaded when the mesh model finds the eyes itself.
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// Compute face descriptors and match them against the gallery (needs `analysis`).
    pub enabled: bool,
    /// Manifest id of the face descriptor model.
    pub model: String,
    /// The gallery file (created on the first enrolment, mode 0600).
    pub gallery: PathBuf,
    /// A face is a gallery identity when its descriptor is within this distance of one of the
    /// identity's samples (0.1-2; dlib's 0.6 for its network), `unknown` otherwise.
    pub match_distance: f32,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            enabled: true,
            model: "dlib_resnet".into(),
            gallery: "gallery.json".into(),
            match_distance: 0.6,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackingConfig {
    /// A face continues a track when its box overlaps the track's predicted box by at least
    /// this much (intersection over union, 0-1).
    pub min_iou: f32,
    /// A track not seen for this long (ms, 1-60000) is lost.
    pub lost_after_ms: u32,
    /// A lost track comes back when a new face's descriptor is within `reid_distance` (0.1-2)
    /// of it within `reid_window_s` seconds (0-3600); after that window its visit ends.
    pub reid_window_s: f32,
    pub reid_distance: f32,
    /// Identity (and the attributes) run when a track starts, then every this many frames of
    /// the track (1-10000), or sooner when the face's quality (size, frontality, sharpness)
    /// beats the best so far by `quality_gain` (0-10, a fraction).
    pub refresh_frames: u32,
    pub quality_gain: f32,
}

impl Default for TrackingConfig {
    fn default() -> Self {
        TrackingConfig {
            min_iou: 0.3,
            lost_after_ms: 1000,
            reid_window_s: 10.0,
            reid_distance: 0.5,
            refresh_frames: 30,
            quality_gain: 0.25,
        }
    }
}

/// Age, gender, expression and action units per face (needs `[analysis] enabled`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttributesConfig {
    /// Estimate age, gender and expression of every analysed face.
    pub enabled: bool,
    /// Manifest id of the age model (task `age` or `age_gender`); empty: no age.
    pub age_model: String,
    /// Manifest id of the gender model (task `gender` or `age_gender`); empty: no gender.
    pub gender_model: String,
    /// Manifest id of the expression model (task `emotion`); empty: no expression.
    pub emotion_model: String,
    /// Facial action units from the mesh (geometry only, no model).
    pub action_units: bool,
}

impl Default for AttributesConfig {
    fn default() -> Self {
        AttributesConfig {
            enabled: true,
            age_model: "faceapi_age_gender".into(),
            gender_model: "gender_v1".into(),
            emotion_model: "faceapi_expression".into(),
            action_units: true,
        }
    }
}

/// Optional, larger parts of each face's record.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Publish each eye's iris, gaze and openness (`eyes`, about 120 bytes per face); the
    /// face's `gaze` and `att` summarise them.
    pub eyes: bool,
    /// Publish all 468 mesh points (x, y, z) per face (about 10 kB per face).
    pub mesh: bool,
    /// Publish the 68 iBUG points per face.
    pub landmarks68: bool,
    /// Publish all seven expression probabilities per face, not only the top expression.
    pub emotion_probs: bool,
    /// Publish the action-unit intensities per face.
    pub action_units: bool,
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
        if let Some(host) = lookup("FACECAST_MQTT_HOST") {
            self.mqtt.host = host;
        }
        if let Some(password) = lookup("FACECAST_MQTT_PASSWORD") {
            self.mqtt.password = Secret(password);
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
        in_range(self.pipeline.threads, 0, MAX_THREADS)
            .map_err(|r| invalid("pipeline.threads", r))?;
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
        let i = &self.identity;
        if i.model.is_empty() {
            return Err(invalid(
                "identity.model",
                "must name a model id of the manifest".into(),
            ));
        }
        in_range(i.match_distance, 0.1, 2.0).map_err(|r| invalid("identity.match_distance", r))?;
        let t = &self.tracking;
        in_range(t.min_iou, 0.0, 1.0).map_err(|r| invalid("tracking.min_iou", r))?;
        in_range(t.lost_after_ms, 1, 60_000).map_err(|r| invalid("tracking.lost_after_ms", r))?;
        in_range(t.reid_window_s, 0.0, 3600.0).map_err(|r| invalid("tracking.reid_window_s", r))?;
        in_range(t.reid_distance, 0.1, 2.0).map_err(|r| invalid("tracking.reid_distance", r))?;
        in_range(t.refresh_frames, 1, 10_000).map_err(|r| invalid("tracking.refresh_frames", r))?;
        in_range(t.quality_gain, 0.0, 10.0).map_err(|r| invalid("tracking.quality_gain", r))?;
        self.mqtt
            .validate()
            .map_err(|(key, reason)| invalid(key, reason))?;
        Ok(())
    }
}

// ---- [mqtt] ------------------------------------------------------------------------------------

/// A value kept out of `Debug` output (logs, the configuration digest).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

/// How payloads are encoded on the wire; both follow the same schema (docs/schema/).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Json,
    Cbor,
}

/// Which analysed frames go to the `faces` topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FacesRate {
    /// Every analysed frame.
    EveryFrame,
    /// At most `per_second` frames a second.
    PerSecond,
    /// Only when the number of faces changes or a face moves (`change_iou`).
    OnChange,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Broker host name or address; empty: no MQTT, records go to stdout.
    pub host: String,
    pub port: u16,
    /// MQTT client id; empty: `facecast-<device id>`.
    pub client_id: String,
    /// User name; empty: connect without credentials.
    pub username: String,
    pub password: Secret,
    /// Topics are `<topic_prefix>/<device id>/<topic>`.
    pub topic_prefix: String,
    pub encoding: Encoding,
    pub keep_alive_ms: u64,
    /// First wait before reconnecting to an unreachable broker; doubles up to
    /// `reconnect_max_ms`.
    pub reconnect_initial_ms: u64,
    pub reconnect_max_ms: u64,
    /// Events (and command responses) held while the broker is unreachable; beyond this the
    /// oldest is dropped and counted.
    pub events_queue: usize,
    /// Face records held while the broker is unreachable; the oldest is dropped and counted.
    pub faces_queue: usize,
    /// Period of the `stats` message.
    pub stats_interval_ms: u64,
    /// At a stop, how long to wait for queued messages and `offline` to reach the broker.
    pub stop_timeout_ms: u64,
    pub qos: QosConfig,
    pub faces: FacesConfig,
    pub tls: TlsConfig,
    pub commands: CommandsConfig,
    pub homeassistant: HomeAssistantConfig,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            host: String::new(),
            port: 1883,
            client_id: String::new(),
            username: String::new(),
            password: Secret::default(),
            topic_prefix: "facecast".into(),
            encoding: Encoding::Json,
            keep_alive_ms: 30_000,
            reconnect_initial_ms: 500,
            reconnect_max_ms: 30_000,
            events_queue: 1000,
            faces_queue: 8,
            stats_interval_ms: 10_000,
            stop_timeout_ms: 3_000,
            qos: QosConfig::default(),
            faces: FacesConfig::default(),
            tls: TlsConfig::default(),
            commands: CommandsConfig::default(),
            homeassistant: HomeAssistantConfig::default(),
        }
    }
}

/// MQTT quality of service per topic: 0 at most once, 1 at least once, 2 exactly once.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QosConfig {
    pub faces: u8,
    pub events: u8,
    pub status: u8,
    pub stats: u8,
    /// `cmd` (subscription) and `cmd/response`.
    pub commands: u8,
}

impl Default for QosConfig {
    fn default() -> Self {
        QosConfig {
            faces: 0,
            events: 1,
            status: 1,
            stats: 0,
            commands: 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FacesConfig {
    pub rate: FacesRate,
    /// With `rate = "per_second"`: frames per second published.
    pub per_second: f32,
    /// With `rate = "on_change"`: a face whose box overlaps every previously published box by
    /// less than this IoU counts as a change.
    pub change_iou: f32,
}

impl Default for FacesConfig {
    fn default() -> Self {
        FacesConfig {
            rate: FacesRate::EveryFrame,
            per_second: 5.0,
            change_iou: 0.5,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub enabled: bool,
    /// PEM file of the CA certificates the broker's certificate must chain to.
    pub ca_file: PathBuf,
    /// PEM client certificate and key, for brokers that require one (both or neither).
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommandsConfig {
    /// Subscribe to `cmd` and act on commands.
    pub enabled: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HomeAssistantConfig {
    /// Publish Home Assistant MQTT discovery configs (needs `encoding = "json"`).
    pub discovery: bool,
    /// Home Assistant's discovery prefix.
    pub prefix: String,
}

impl Default for HomeAssistantConfig {
    fn default() -> Self {
        HomeAssistantConfig {
            discovery: false,
            prefix: "homeassistant".into(),
        }
    }
}

/// A topic level: not empty, no MQTT wildcards, no leading or trailing `/`.
fn check_topic_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty()
        || prefix.starts_with('/')
        || prefix.ends_with('/')
        || prefix.contains(['+', '#', '\0'])
    {
        return Err(format!(
            "{prefix:?} must be a non-empty topic without + # or a leading or trailing /"
        ));
    }
    Ok(())
}

impl MqttConfig {
    /// Whether MQTT is configured at all.
    pub fn enabled(&self) -> bool {
        !self.host.is_empty()
    }

    /// Range checks of the `[mqtt]` section, as (key, reason).
    fn validate(&self) -> Result<(), (&'static str, String)> {
        if !self.enabled() {
            return Ok(());
        }
        if self.port == 0 {
            return Err(("mqtt.port", "must be between 1 and 65535".into()));
        }
        if self.client_id.len() > 64 {
            return Err(("mqtt.client_id", "must be at most 64 bytes".into()));
        }
        check_topic_prefix(&self.topic_prefix).map_err(|r| ("mqtt.topic_prefix", r))?;
        in_range(self.keep_alive_ms, 1_000, 3_600_000).map_err(|r| ("mqtt.keep_alive_ms", r))?;
        in_range(self.reconnect_initial_ms, 10, 600_000)
            .map_err(|r| ("mqtt.reconnect_initial_ms", r))?;
        in_range(self.reconnect_max_ms, self.reconnect_initial_ms, 3_600_000)
            .map_err(|r| ("mqtt.reconnect_max_ms", r))?;
        in_range(self.events_queue, 1, 1_000_000).map_err(|r| ("mqtt.events_queue", r))?;
        in_range(self.faces_queue, 1, 10_000).map_err(|r| ("mqtt.faces_queue", r))?;
        in_range(self.stats_interval_ms, 100, 86_400_000)
            .map_err(|r| ("mqtt.stats_interval_ms", r))?;
        in_range(self.stop_timeout_ms, 0, 60_000).map_err(|r| ("mqtt.stop_timeout_ms", r))?;
        for (key, qos) in [
            ("mqtt.qos.faces", self.qos.faces),
            ("mqtt.qos.events", self.qos.events),
            ("mqtt.qos.status", self.qos.status),
            ("mqtt.qos.stats", self.qos.stats),
            ("mqtt.qos.commands", self.qos.commands),
        ] {
            in_range(qos, 0, 2).map_err(|r| (key, r))?;
        }
        if !(self.faces.per_second >= 0.01 && self.faces.per_second <= 240.0) {
            return Err((
                "mqtt.faces.per_second",
                format!(
                    "must be between 0.01 and 240, got {}",
                    self.faces.per_second
                ),
            ));
        }
        if !(self.faces.change_iou > 0.0 && self.faces.change_iou <= 1.0) {
            return Err((
                "mqtt.faces.change_iou",
                format!("must be in (0, 1], got {}", self.faces.change_iou),
            ));
        }
        if self.tls.enabled && self.tls.ca_file.as_os_str().is_empty() {
            return Err(("mqtt.tls.ca_file", "is needed when TLS is enabled".into()));
        }
        if self.tls.cert_file.as_os_str().is_empty() != self.tls.key_file.as_os_str().is_empty() {
            return Err((
                "mqtt.tls.key_file",
                "cert_file and key_file go together (both or neither)".into(),
            ));
        }
        if self.homeassistant.discovery {
            if self.encoding != Encoding::Json {
                return Err((
                    "mqtt.homeassistant.discovery",
                    "needs encoding = \"json\" (Home Assistant reads JSON only)".into(),
                ));
            }
            check_topic_prefix(&self.homeassistant.prefix)
                .map_err(|r| ("mqtt.homeassistant.prefix", r))?;
        }
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
            ("[pipeline]\nthreads = 65\n", "pipeline.threads"),
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
    fn mqtt_values_are_checked_only_when_a_broker_is_set() {
        // Without a host, MQTT is off and its other keys do not matter.
        parse("[mqtt]\nport = 0\n").unwrap();
        for (text, key) in [
            ("port = 0", "mqtt.port"),
            ("topic_prefix = \"a/#\"", "mqtt.topic_prefix"),
            ("topic_prefix = \"/a\"", "mqtt.topic_prefix"),
            ("events_queue = 0", "mqtt.events_queue"),
            ("keep_alive_ms = 500", "mqtt.keep_alive_ms"),
            ("qos.events = 3", "mqtt.qos.events"),
            ("faces.per_second = 0", "mqtt.faces.per_second"),
            ("tls.enabled = true", "mqtt.tls.ca_file"),
            ("tls.cert_file = \"c.pem\"", "mqtt.tls.key_file"),
            (
                "encoding = \"cbor\"\nhomeassistant.discovery = true",
                "mqtt.homeassistant.discovery",
            ),
        ] {
            let err = parse(&format!("[mqtt]\nhost = \"127.0.0.1\"\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("test.toml: {key}: ")),
                "{text:?} gave {err}"
            );
        }
        let err = parse("[mqtt]\nencoding = \"xml\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("xml"), "{err}");
    }

    #[test]
    fn password_stays_out_of_debug_output() {
        let config = parse("[mqtt]\nhost = \"b\"\npassword = \"hunter2\"\n").unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
        assert_eq!(config.mqtt.password.0, "hunter2");
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut config = parse("[device]\nid = \"lobby\"\n").unwrap();
        config.apply_env(|name| match name {
            "FACECAST_DEVICE_ID" => Some("kiosk-7".into()),
            "FACECAST_SOURCE" => Some("y4m:-".into()),
            "FACECAST_MQTT_HOST" => Some("broker.lan".into()),
            _ => None,
        });
        assert_eq!(config.device.id, "kiosk-7");
        assert_eq!(config.mqtt.host, "broker.lan");
        assert_eq!(config.source.uri, "y4m:-");
        assert_eq!(config.models.dir, PathBuf::from("models"));
    }
}
