//! The frame loop: a capture thread fills the ring, the analysis thread detects faces and emits
//! one record per frame. Only start-up errors are fatal; a bad frame is counted and skipped, a
//! lost camera is reopened with backoff.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use thiserror::Error;

use crate::analyse::action_units::{ActionUnits, Measures};
use crate::analyse::attribute_track::unsmoothed;
use crate::analyse::attributes::{AttributeAnalyser, Attributes};
use crate::analyse::{AnalyseError, AnalysedFace, FaceAnalyser};
use crate::capture::{self, CaptureError, FrameSource, Grab, SourceSpec};
use crate::config::{Config, OutputConfig, SourceConfig};
use crate::detect::{DetectError, Detector};
use crate::frame::{Frame, FrameRing, RingCounts, WhenFull};
use crate::model::{Manifest, Model, ModelError};
use crate::record::{unix_seconds, FaceRecord, FrameRecord, SCHEMA_VERSION};

#[derive(Debug, Error)]
pub enum PipelineError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Detect(#[from] DetectError),
    #[error(transparent)]
    Analyse(#[from] AnalyseError),
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("cannot start the capture thread: {0}")]
    Thread(io::Error),
}

/// What a run did, for the log line at the end and for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Frames the source delivered.
    pub captured: u64,
    /// Frames analysed (records emitted).
    pub analysed: u64,
    /// Frames dropped because analysis was behind a live source.
    pub dropped: u64,
    /// Frames the source delivered unreadable (skipped).
    pub corrupt: u64,
    /// Frames whose analysis failed (skipped).
    pub failed: u64,
    /// Times the source failed and was reopened.
    pub reopened: u64,
}

/// Timings and counters handed to `emit` with each record, for the `stats` output.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameStats {
    /// From capture to the start of analysis (time spent in the ring).
    pub waited: Duration,
    /// Analysis of this frame: detection, then each face's landmarks, pose and gaze.
    pub analysis: Duration,
    /// The ring's counters after this frame was taken.
    pub ring: RingCounts,
    /// Totals so far: frames captured, unreadable, and whose analysis failed.
    pub captured: u64,
    pub corrupt: u64,
    pub failed: u64,
}

/// Counters the capture thread updates while analysis reads them.
#[derive(Default)]
struct CaptureCounters {
    captured: AtomicU64,
    corrupt: AtomicU64,
    reopened: AtomicU64,
}

/// Loads the configured detector.
pub fn load_detector(config: &Config) -> Result<Detector, PipelineError> {
    let manifest = Manifest::load(&config.models.dir)?;
    detector_from(&manifest, config)
}

fn detector_from(manifest: &Manifest, config: &Config) -> Result<Detector, PipelineError> {
    let model = Model::load(
        manifest,
        &config.detector.model,
        config.models.verify_sha256,
    )?;
    Ok(Detector::new(model, &config.detector)?)
}

/// Everything run on a frame: detection, then (when enabled) each face's landmarks, pose
/// and gaze.
pub struct Analyser {
    detector: Detector,
    faces: Option<FaceAnalyser>,
    attributes: Option<AttributeAnalyser>,
    action_units: bool,
}

impl Analyser {
    pub fn load(config: &Config) -> Result<Analyser, PipelineError> {
        let manifest = Manifest::load(&config.models.dir)?;
        let faces = if config.analysis.enabled {
            Some(FaceAnalyser::new(
                &manifest,
                &config.analysis,
                config.models.verify_sha256,
            )?)
        } else {
            None
        };
        let attributes = if config.analysis.enabled && config.attributes.enabled {
            Some(AttributeAnalyser::new(
                &manifest,
                &config.attributes,
                config.models.verify_sha256,
            )?)
        } else {
            None
        };
        Ok(Analyser {
            detector: detector_from(&manifest, config)?,
            faces,
            attributes,
            action_units: config.analysis.enabled && config.attributes.action_units,
        })
    }

    pub fn detector_id(&self) -> &str {
        self.detector.model_id()
    }

    /// Frames the detector ran on, when faces are followed by their landmarks; `None` when
    /// analysis is off (the detector then runs on every frame).
    pub fn detector_runs(&self) -> Option<u64> {
        self.faces.as_ref().map(FaceAnalyser::detector_runs)
    }

    /// The faces of `frame`; `continues` says whether it follows the previous frame in time.
    pub fn analyse(
        &mut self,
        frame: &Frame,
        continues: bool,
    ) -> Result<Vec<AnalysedFace>, PipelineError> {
        let mut analysed = match &mut self.faces {
            Some(faces) => faces.analyse(frame, &mut self.detector, continues)?,
            None => self
                .detector
                .detect(frame)?
                .into_iter()
                .map(|detection| AnalysedFace {
                    detection,
                    landmarks: None,
                    attributes: None,
                })
                .collect(),
        };
        for face in &mut analysed {
            let Some(landmarks) = &face.landmarks else {
                continue;
            };
            // Every face, every frame, unsmoothed, until tracking holds an AttributeTrack
            // per face and decides when to estimate.
            let estimate = match &mut self.attributes {
                Some(attributes) => attributes.estimate(frame, &landmarks.mesh.points)?,
                None => Attributes::default(),
            };
            let action_units = self.action_units.then(|| {
                ActionUnits::score(
                    &Measures::of_mesh(&landmarks.mesh.points),
                    &Measures::population_neutral(),
                )
            });
            if self.attributes.is_some() || action_units.is_some() {
                face.attributes = Some(unsmoothed(&estimate, action_units));
            }
        }
        Ok(analysed)
    }
}

/// The record of one analysed frame.
pub fn frame_record<'a>(
    device: &'a str,
    frame: &Frame,
    faces: &[AnalysedFace],
    output: &OutputConfig,
    file: Option<&'a str>,
) -> FrameRecord<'a> {
    FrameRecord {
        v: SCHEMA_VERSION,
        dev: device,
        seq: frame.seq,
        ts: unix_seconds(frame.captured_at),
        w: frame.width,
        h: frame.height,
        file,
        faces: faces.iter().map(|f| FaceRecord::new(f, output)).collect(),
    }
}

/// Doubling waits between attempts to reopen a source, capped.
struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(config: &SourceConfig) -> Self {
        let initial = Duration::from_millis(config.reopen_initial_ms);
        Backoff {
            initial,
            max: Duration::from_millis(config.reopen_max_ms),
            next: initial,
        }
    }

    fn wait(&mut self) {
        std::thread::sleep(self.next);
        self.next = (self.next * 2).min(self.max);
    }

    fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// Opens the source; a camera that is not there yet is waited for (with backoff) rather than
/// given up on, since a device may be plugged in after boot.
fn open_source(
    spec: &SourceSpec,
    config: &SourceConfig,
    backoff: &mut Backoff,
) -> Result<Box<dyn FrameSource>, CaptureError> {
    let mut attempts = 0;
    loop {
        match capture::open(spec, config) {
            Ok(source) => return Ok(source),
            Err(e @ CaptureError::Io { .. }) if spec.can_reopen() => {
                attempts += 1;
                if config.reopen_attempts != 0 && attempts >= config.reopen_attempts {
                    return Err(e);
                }
                log::warn!("{e}; retrying in {:?}", backoff.next);
                backoff.wait();
            }
            Err(e) => return Err(e),
        }
    }
}

fn capture_loop(
    mut source: Box<dyn FrameSource>,
    spec: SourceSpec,
    config: SourceConfig,
    ring: Arc<FrameRing>,
    counters: Arc<CaptureCounters>,
) {
    let mut seq = 0u64;
    // One backoff for the whole run: a camera that keeps failing right after each reopen waits
    // longer and longer; the first good frame resets it.
    let mut backoff = Backoff::new(&config);
    while let Some(mut frame) = ring.take_free() {
        match source.grab(&mut frame) {
            Ok(Grab::Frame) => {
                backoff.reset();
                frame.seq = seq;
                seq += 1;
                counters.captured.fetch_add(1, Ordering::Relaxed);
                ring.push_filled(frame);
            }
            Ok(Grab::End) => {
                ring.recycle(frame);
                log::info!("{}: end of source", source.describe());
                break;
            }
            Err(CaptureError::Corrupt(why)) => {
                seq += 1;
                counters.corrupt.fetch_add(1, Ordering::Relaxed);
                log::warn!("skipped a corrupt frame: {why}");
                ring.recycle(frame);
            }
            Err(e) => {
                ring.recycle(frame);
                if !spec.can_reopen() {
                    log::error!("source failed: {e}");
                    break;
                }
                log::warn!("source failed: {e}; reopening");
                drop(source);
                match open_source(&spec, &config, &mut backoff) {
                    Ok(reopened) => {
                        counters.reopened.fetch_add(1, Ordering::Relaxed);
                        log::info!("reopened {}", reopened.describe());
                        source = reopened;
                    }
                    Err(e) => {
                        log::error!("giving up on the source: {e}");
                        break;
                    }
                }
            }
        }
    }
    ring.close();
}

/// Runs the loop until the source ends, `config.pipeline.max_frames` frames were analysed, or
/// `emit` fails (e.g. stdout closed). `emit` receives each frame's record and statistics.
pub fn run(
    config: &Config,
    mut emit: impl FnMut(&FrameRecord, &FrameStats) -> io::Result<()>,
) -> Result<RunSummary, PipelineError> {
    let spec = SourceSpec::parse(&config.source.uri)?;
    let mut analyser = Analyser::load(config)?;
    let source = open_source(&spec, &config.source, &mut Backoff::new(&config.source))?;
    log::info!(
        "reading {}; detector {}",
        source.describe(),
        analyser.detector_id()
    );
    // Still images are unrelated to each other; frames of a stream follow each other.
    let continues = !matches!(spec, SourceSpec::Images(_));

    let when_full = if spec.is_live(config.source.live) {
        WhenFull::DropOldest
    } else {
        WhenFull::Wait
    };
    let ring = Arc::new(FrameRing::new(
        config.pipeline.ring_frames,
        config.source.width,
        config.source.height,
        when_full,
    ));
    let counters = Arc::new(CaptureCounters::default());
    let capture = {
        let (ring, counters, source_config) =
            (ring.clone(), counters.clone(), config.source.clone());
        std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || capture_loop(source, spec, source_config, ring, counters))
            .map_err(PipelineError::Thread)?
    };

    let mut summary = RunSummary::default();
    while let Some(frame) = ring.pop_filled() {
        let started = Instant::now();
        let waited = SystemTime::now()
            .duration_since(frame.captured_at)
            .unwrap_or_default();
        match analyser.analyse(&frame, continues) {
            Ok(faces) => {
                let stats = FrameStats {
                    waited,
                    analysis: started.elapsed(),
                    ring: ring.counts(),
                    captured: counters.captured.load(Ordering::Relaxed),
                    corrupt: counters.corrupt.load(Ordering::Relaxed),
                    failed: summary.failed,
                };
                let record = frame_record(&config.device.id, &frame, &faces, &config.output, None);
                if let Err(e) = emit(&record, &stats) {
                    log::info!("output closed ({e}); stopping");
                    ring.recycle(frame);
                    break;
                }
            }
            Err(e) => {
                summary.failed += 1;
                log::warn!("frame {}: {e}", frame.seq);
            }
        }
        ring.recycle(frame);
        summary.analysed += 1;
        if config.pipeline.max_frames != 0 && summary.analysed >= config.pipeline.max_frames {
            break;
        }
    }
    ring.close();
    // A capture thread blocked reading stdin cannot be woken; it ends with the process.
    if capture.is_finished() {
        let _ = capture.join();
    }
    let ring_counts = ring.counts();
    summary.captured = counters.captured.load(Ordering::Relaxed);
    summary.corrupt = counters.corrupt.load(Ordering::Relaxed);
    summary.reopened = counters.reopened.load(Ordering::Relaxed);
    summary.dropped = ring_counts.dropped;
    Ok(summary)
}

/// One analysed still image.
pub struct ImageResult {
    pub path: PathBuf,
    pub frame: Frame,
    pub faces: Vec<AnalysedFace>,
}

/// Analyses one image file.
pub fn analyze_image(
    analyser: &mut Analyser,
    path: &Path,
    seq: u64,
) -> Result<ImageResult, PipelineError> {
    let mut frame = Frame::with_capacity(0, 0);
    capture::load_image(path, &mut frame)?;
    frame.seq = seq;
    let faces = analyser.analyse(&frame, false)?;
    Ok(ImageResult {
        path: path.to_path_buf(),
        frame,
        faces,
    })
}
