//! The frame loop: a capture thread fills the ring, the analysis thread detects faces and emits
//! one record per frame. With `[pipeline] overlap`, a video's analysis runs in two stages on two
//! threads, one frame apart: detection and meshes of frame N+1 beside the eyes, tracking and
//! record of frame N. Only start-up errors are fatal; a bad frame is counted and
//! skipped, a lost camera is reopened with backoff.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use thiserror::Error;

use std::sync::RwLock;

use crate::analyse::attributes::AttributeAnalyser;
use crate::analyse::identity::{Embedder, Embedding, Recogniser, SharedGallery};
use crate::analyse::{
    AnalyseError, AnalysedFace, EyeAnalyser, FaceAnalyser, FaceFollower, FaceLandmarks, MeshedFace,
};
use crate::capture::{self, CaptureError, FrameSource, Grab, SourceSpec};
use crate::config::{Config, ConfigError, IdentityConfig, OutputConfig, SourceConfig};
use crate::detect::{DetectError, Detector};
use crate::frame::{Frame, FrameRing, RingCounts, WhenFull};
use crate::gallery::{Gallery, GalleryError, Match};
use crate::model::{Manifest, Model, ModelError};
use crate::record::{unix_seconds, FaceRecord, FrameRecord, SCHEMA_VERSION};
use crate::track::{
    Scheduled, TrackAnalysis, TrackCounts, TrackEvent, TrackSamples, TrackedFace, Tracker,
};

#[derive(Debug, Error)]
pub enum PipelineError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Detect(#[from] DetectError),
    #[error(transparent)]
    Analyse(#[from] AnalyseError),
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Gallery(#[from] GalleryError),
    #[error("cannot enrol: {0}")]
    Enrol(String),
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
    /// Analysis of this frame, from its start to its record: detection, each face's landmarks,
    /// pose and gaze, tracking (with two stages, also the wait between them).
    pub analysis: Duration,
    /// The ring's counters after this frame was taken.
    pub ring: RingCounts,
    /// Totals so far: frames captured, unreadable, and whose analysis failed.
    pub captured: u64,
    pub corrupt: u64,
    pub failed: u64,
    /// Tracking's running counts after this frame.
    pub tracks: TrackCounts,
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
/// and gaze, then tracking with the per-track work (descriptors and recognition).
pub struct Analyser {
    detector: Detector,
    faces: Option<FaceAnalyser>,
    work: TrackWork,
    tracker: Tracker,
}

/// One frame's analysis.
#[derive(Debug, Default)]
pub struct Analysis {
    pub faces: Vec<AnalysedFace>,
    /// Each face's track, in the order of `faces`.
    pub tracks: Vec<TrackedFace>,
    pub events: Vec<TrackEvent>,
}

/// The per-track work the tracker schedules: descriptors and recognition, age, gender and
/// expression; action units are cheap and follow every frame.
struct TrackWork {
    recogniser: Option<Recogniser>,
    attributes: Option<AttributeAnalyser>,
    action_units: bool,
    /// Descriptor and attributes at once, on two threads (`[pipeline] threads` > 1).
    parallel: bool,
}

impl TrackWork {
    fn load(manifest: &Manifest, config: &Config) -> Result<TrackWork, PipelineError> {
        let verify = config.models.verify_sha256;
        // Descriptors are cut from the mesh's points: identity needs the landmarks.
        let recogniser = if config.analysis.enabled && config.identity.enabled {
            let identity = &config.identity;
            let model = Model::load(manifest, &identity.model, verify)?;
            let gallery = Gallery::open(&identity.gallery, descriptor_model(manifest, identity))?;
            Some(Recogniser::new(
                Embedder::new(model)?,
                Arc::new(RwLock::new(gallery)),
                identity.match_distance,
            ))
        } else {
            None
        };
        let attributes = if config.analysis.enabled && config.attributes.enabled {
            Some(AttributeAnalyser::new(
                manifest,
                &config.attributes,
                verify,
            )?)
        } else {
            None
        };
        Ok(TrackWork {
            recogniser,
            attributes,
            action_units: config.analysis.enabled && config.attributes.action_units,
            parallel: config.pipeline.analysis_threads() > 1,
        })
    }
}

impl TrackAnalysis for TrackWork {
    fn run(
        &mut self,
        frame: &Frame,
        face: &AnalysedFace,
        describe: bool,
    ) -> Result<Scheduled, AnalyseError> {
        let recogniser = self.recogniser.as_mut().filter(|_| describe);
        let attributes = self.attributes.as_mut().zip(face.landmarks.as_ref());
        let describe = |recogniser: Option<&mut Recogniser>| match recogniser {
            Some(recogniser) => crate::perf::time("identity", || recogniser.describe(frame, face)),
            None => Ok(None),
        };
        let estimate = |attributes: Option<(&mut AttributeAnalyser, &FaceLandmarks)>| {
            attributes
                .map(|(attributes, landmarks)| {
                    crate::perf::time("attributes", || {
                        attributes.estimate(frame, &landmarks.mesh.points)
                    })
                })
                .transpose()
        };
        // The descriptor and the attributes are a track's two costly pieces (a frame's p99):
        // with a second analysis thread they run at once.
        let (descriptor, estimate) =
            if self.parallel && recogniser.is_some() && attributes.is_some() {
                std::thread::scope(|scope| {
                    let estimated = scope.spawn(|| estimate(attributes));
                    let descriptor = describe(recogniser);
                    let estimate = estimated
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                    (descriptor, estimate)
                })
            } else {
                (describe(recogniser), estimate(attributes))
            };
        Ok(Scheduled {
            descriptor: descriptor?,
            estimate: estimate?,
        })
    }

    fn identify(&self, descriptor: &[f32]) -> Option<Match> {
        self.recogniser.as_ref()?.identify(descriptor)
    }

    fn action_units(&self) -> bool {
        self.action_units
    }

    fn scheduled(&self) -> bool {
        self.recogniser.is_some() || self.attributes.is_some()
    }
}

impl Analyser {
    pub fn load(config: &Config) -> Result<Analyser, PipelineError> {
        let manifest = Manifest::load(&config.models.dir)?;
        // Three loads at once, each on its own thread: start-up takes about the longest of them
        // rather than their sum (most of it is tract optimising each graph, single-threaded).
        // They are about even: the detector, the landmark models (FaceMesh and Iris), the
        // per-track models (`facecast bench` prints each model's load time).
        let (detector, faces, work) = std::thread::scope(|scope| {
            let work = scope.spawn(|| TrackWork::load(&manifest, config));
            let faces = scope.spawn(|| Self::load_faces(&manifest, config));
            let detector = detector_from(&manifest, config);
            let faces = faces
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            let work = work
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (detector, faces, work)
        });
        let (detector, faces, work) = (detector?, faces?, work?);
        Ok(Analyser {
            detector,
            faces,
            tracker: Tracker::new(&config.tracking, work.recogniser.is_some()),
            work,
        })
    }

    /// The landmark models, when analysis is on.
    fn load_faces(
        manifest: &Manifest,
        config: &Config,
    ) -> Result<Option<FaceAnalyser>, PipelineError> {
        if !config.analysis.enabled {
            return Ok(None);
        }
        Ok(Some(FaceAnalyser::new(
            manifest,
            &config.analysis,
            config.pipeline.analysis_threads(),
            config.models.verify_sha256,
        )?))
    }

    pub fn detector_id(&self) -> &str {
        self.detector.model_id()
    }

    /// The landmark models' manifest ids (none when analysis is off).
    pub fn landmark_model_ids(&self) -> Vec<&str> {
        self.faces
            .as_ref()
            .map(FaceAnalyser::model_ids)
            .unwrap_or_default()
    }

    /// Frames the detector ran on, when faces are followed by their landmarks; `None` when
    /// analysis is off (the detector then runs on every frame).
    pub fn detector_runs(&self) -> Option<u64> {
        self.faces
            .as_ref()
            .map(|faces| faces.follower.detector_runs())
    }

    /// The gallery recognition matches against, when identity is on.
    pub fn gallery(&self) -> Option<SharedGallery> {
        self.work.recogniser.as_ref().map(|r| r.gallery().clone())
    }

    /// The tracks' clearest descriptors, for enrolling from a track.
    pub fn track_samples(&self) -> TrackSamples {
        self.tracker.samples()
    }

    pub fn track_counts(&self) -> TrackCounts {
        self.tracker.counts()
    }

    /// The faces of `frame`, tracked; `continues` says whether it follows the previous frame
    /// in time.
    pub fn analyse(&mut self, frame: &Frame, continues: bool) -> Result<Analysis, PipelineError> {
        let (mut first, mut second) = self.stages();
        let located = first.run(frame, continues)?;
        second.run(frame, located, continues)
    }

    /// The analysis in its two stages, to run one after the other or on two threads.
    fn stages(&mut self) -> (FirstStage<'_>, SecondStage<'_>) {
        let (follower, eyes) = match &mut self.faces {
            Some(faces) => (Some(&mut faces.follower), Some(&mut faces.eyes)),
            None => (None, None),
        };
        (
            FirstStage {
                detector: &mut self.detector,
                follower,
            },
            SecondStage {
                eyes,
                tracker: &mut self.tracker,
                work: &mut self.work,
            },
        )
    }

    /// The descriptor of the one face in `frame` (an enrolment photo): an error when there is
    /// no face or more than one, or identity is off.
    pub fn describe_single_face(&mut self, frame: &Frame) -> Result<Embedding, PipelineError> {
        let Some(faces) = &mut self.faces else {
            return Err(PipelineError::Enrol(
                "face analysis is off ([analysis] enabled = false)".into(),
            ));
        };
        let found = faces.analyse(frame, &mut self.detector, false)?;
        let Some(recogniser) = &mut self.work.recogniser else {
            return Err(PipelineError::Enrol(
                "identity is off ([identity] enabled = false)".into(),
            ));
        };
        match found.as_slice() {
            [face] => recogniser
                .describe(frame, face)?
                .ok_or_else(|| PipelineError::Enrol("the face has no landmarks".into())),
            [] => Err(PipelineError::Enrol("no face found".into())),
            more => Err(PipelineError::Enrol(format!(
                "{} faces found; an enrolment photo must show one",
                more.len()
            ))),
        }
    }

    /// Ends every track (at the end of the source): their `track_end` and `visit` events.
    pub fn finish(&mut self) -> Vec<TrackEvent> {
        self.tracker.finish()
    }
}

/// A frame's first stage: detection when due and the meshes of the faces followed, or with
/// analysis off, detection alone.
struct FirstStage<'a> {
    detector: &'a mut Detector,
    follower: Option<&'a mut FaceFollower>,
}

/// What the first stage found in a frame.
enum Located {
    /// Faces with their meshes, their eyes still to find.
    Meshed(Vec<MeshedFace>),
    /// Analysis is off: the detector's faces are all there is.
    Detected(Vec<AnalysedFace>),
}

impl FirstStage<'_> {
    fn run(&mut self, frame: &Frame, continues: bool) -> Result<Located, PipelineError> {
        Ok(match &mut self.follower {
            Some(follower) => Located::Meshed(follower.follow(frame, self.detector, continues)?),
            None => Located::Detected(
                self.detector
                    .detect(frame)?
                    .into_iter()
                    .map(|detection| AnalysedFace {
                        detection,
                        landmarks: None,
                    })
                    .collect(),
            ),
        })
    }
}

/// A frame's second stage: the eyes, pose and gaze, then tracking with its per-track work.
struct SecondStage<'a> {
    /// Present exactly when the first stage meshes.
    eyes: Option<&'a mut EyeAnalyser>,
    tracker: &'a mut Tracker,
    work: &'a mut TrackWork,
}

impl SecondStage<'_> {
    fn run(
        &mut self,
        frame: &Frame,
        located: Located,
        continues: bool,
    ) -> Result<Analysis, PipelineError> {
        let faces = match located {
            Located::Meshed(meshed) => self
                .eyes
                .as_mut()
                .expect("the first stage meshes only with the eyes' analyser beside it")
                .complete(frame, meshed)?,
            Located::Detected(faces) => faces,
        };
        // The tracker's time includes the per-track work it schedules (identity, attributes,
        // action units), which is also timed on its own.
        let update = crate::perf::time("track", || {
            self.tracker
                .update(frame, &faces, continues, &mut *self.work)
        })?;
        Ok(Analysis {
            faces,
            tracks: update.faces,
            events: update.events,
        })
    }
}

/// The model id a gallery records: a variant's descriptors compare with its original's.
fn descriptor_model<'a>(manifest: &'a Manifest, identity: &'a IdentityConfig) -> &'a str {
    manifest
        .entry(&identity.model)
        .ok()
        .and_then(|e| e.variant_of.as_deref())
        .unwrap_or(&identity.model)
}

/// The configured gallery, for the `enroll` and `gallery` commands.
pub fn open_gallery(config: &Config) -> Result<Gallery, PipelineError> {
    let manifest = Manifest::load(&config.models.dir)?;
    let model = descriptor_model(&manifest, &config.identity);
    Ok(Gallery::open(&config.identity.gallery, model)?)
}

/// The record of one analysed frame.
pub fn frame_record<'a>(
    device: &'a str,
    frame: &Frame,
    analysis: &Analysis,
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
        faces: analysis
            .faces
            .iter()
            .enumerate()
            .map(|(i, f)| FaceRecord::new(f, analysis.tracks.get(i), output))
            .collect(),
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

/// Where a run's output goes.
pub trait Sink {
    /// One analysed frame's record and statistics.
    fn frame(&mut self, record: &FrameRecord, stats: &FrameStats) -> io::Result<()>;
    /// Track events, in order: a frame's (before its record), or the last ones at the end.
    fn events(&mut self, events: &[TrackEvent]) -> io::Result<()>;
}

/// Runs the loop until the source ends, `config.pipeline.max_frames` frames were analysed, or
/// the sink fails (e.g. stdout closed); then ends the remaining tracks.
pub fn run(
    config: &Config,
    mut analyser: Analyser,
    sink: &mut dyn Sink,
) -> Result<RunSummary, PipelineError> {
    let spec = SourceSpec::parse(&config.source.uri)?;
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

    let mut delivery = Delivery {
        config,
        ring: &ring,
        counters: &counters,
        sink,
        summary: RunSummary::default(),
    };
    if continues && config.pipeline.overlap && config.pipeline.analysis_threads() > 1 {
        run_two_stages(&mut analyser, &mut delivery, continues)?;
    } else {
        while let Some(frame) = ring.pop_filled() {
            let started = Started::now(&frame);
            let analysis = analyser.analyse(&frame, continues);
            let counts = analyser.track_counts();
            if !delivery.deliver(frame, started, analysis, counts) {
                break;
            }
        }
    }
    let Delivery {
        sink, mut summary, ..
    } = delivery;
    ring.close();
    if let Err(e) = sink.events(&analyser.finish()) {
        log::warn!("the last track events were not sent: {e}");
    }
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

/// The two stages on two threads, one frame apart (see [`FirstStage`], [`SecondStage`]):
/// this thread completes, tracks and delivers frame N while the other finds the faces and
/// meshes of frame N+1 (they need only frame N's meshes). The frames keep their order.
fn run_two_stages(
    analyser: &mut Analyser,
    delivery: &mut Delivery,
    continues: bool,
) -> Result<(), PipelineError> {
    let (mut first, mut second) = analyser.stages();
    let ring = delivery.ring;
    let max_frames = delivery.config.pipeline.max_frames;
    std::thread::scope(|scope| {
        // One frame may wait between the stages, so that a slow frame in either (a detection,
        // a new track's descriptor) does not stall the other: 22% more frames per second than
        // with none for one face (docs/performance.md), one frame more of latency.
        let (located, completing) = mpsc::sync_channel(1);
        let first_stage = std::thread::Builder::new()
            .name("first stage".into())
            .spawn_scoped(scope, move || {
                let mut popped = 0;
                while let Some(frame) = ring.pop_filled() {
                    let started = Started::now(&frame);
                    let found = first.run(&frame, continues);
                    if let Err(mpsc::SendError((frame, ..))) = located.send((frame, started, found))
                    {
                        // The second stage stopped (its output closed).
                        ring.recycle(frame);
                        break;
                    }
                    popped += 1;
                    if max_frames != 0 && popped >= max_frames {
                        break;
                    }
                }
            });
        // Like the capture thread's, a thread that cannot start is a start-up error.
        if let Err(e) = first_stage {
            ring.close();
            return Err(PipelineError::Thread(e));
        }
        for (frame, started, found) in completing {
            let analysis = found.and_then(|found| second.run(&frame, found, continues));
            let counts = second.tracker.counts();
            if !delivery.deliver(frame, started, analysis, counts) {
                break;
            }
        }
        // Wakes the first stage if it waits for a frame that will not come.
        ring.close();
        Ok(())
    })
}

/// When a frame's analysis started, and how long the frame had waited for it since capture.
struct Started {
    at: Instant,
    waited: Duration,
}

impl Started {
    fn now(frame: &Frame) -> Started {
        Started {
            at: Instant::now(),
            waited: SystemTime::now()
                .duration_since(frame.captured_at)
                .unwrap_or_default(),
        }
    }
}

/// Hands each analysed frame to the sink and keeps the run's counts.
struct Delivery<'a> {
    config: &'a Config,
    ring: &'a FrameRing,
    counters: &'a CaptureCounters,
    sink: &'a mut dyn Sink,
    summary: RunSummary,
}

impl Delivery<'_> {
    /// Sends one frame's record (or counts its failure) and gives the frame back to the ring;
    /// `false` when the run should stop (the output closed, or `max_frames` reached).
    fn deliver(
        &mut self,
        frame: Frame,
        started: Started,
        analysis: Result<Analysis, PipelineError>,
        tracks: TrackCounts,
    ) -> bool {
        let analysed_in = started.at.elapsed();
        crate::perf::record("frame", analysed_in);
        let mut go_on = true;
        match analysis {
            Ok(analysis) => {
                let stats = FrameStats {
                    waited: started.waited,
                    analysis: analysed_in,
                    ring: self.ring.counts(),
                    captured: self.counters.captured.load(Ordering::Relaxed),
                    corrupt: self.counters.corrupt.load(Ordering::Relaxed),
                    failed: self.summary.failed,
                    tracks,
                };
                let record = crate::perf::time("record", || {
                    frame_record(
                        &self.config.device.id,
                        &frame,
                        &analysis,
                        &self.config.output,
                        None,
                    )
                });
                let sent = self
                    .sink
                    .events(&analysis.events)
                    .and_then(|()| self.sink.frame(&record, &stats));
                if let Err(e) = sent {
                    log::info!("output closed ({e}); stopping");
                    go_on = false;
                }
            }
            Err(e) => {
                self.summary.failed += 1;
                log::warn!("frame {}: {e}", frame.seq);
            }
        }
        self.ring.recycle(frame);
        if go_on {
            self.summary.analysed += 1;
        }
        let max = self.config.pipeline.max_frames;
        go_on && (max == 0 || self.summary.analysed < max)
    }
}

/// One analysed still image.
pub struct ImageResult {
    pub path: PathBuf,
    pub frame: Frame,
    pub analysis: Analysis,
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
    let analysis = analyser.analyse(&frame, false)?;
    Ok(ImageResult {
        path: path.to_path_buf(),
        frame,
        analysis,
    })
}
