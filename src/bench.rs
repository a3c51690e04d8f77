//! `facecast bench`: the whole pipeline on a recorded clip, with every stage and model timed
//! where it runs in production (see [`crate::perf`]), then each manifest model alone on a real
//! crop, as a peer runtime is timed on the same file. benches/run.sh runs it beside the peers
//! and benches/report.py turns the JSON into docs/performance.md's tables.

use std::collections::hash_map::{Entry, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::capture;
use crate::config::{Config, Encoding, Liveness};
use crate::frame::Frame;
use crate::geometry::Affine;
use crate::model::preprocess::{sample_into, Border};
use crate::model::{Manifest, Model};
use crate::perf;
use crate::pipeline::{self, Analyser, FrameStats, PipelineError, Sink};
use crate::publish::messages::encode;
use crate::record::FrameRecord;
use crate::track::TrackEvent;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// A YUV4MPEG2 clip, analysed frame by frame (none dropped).
    pub clip: PathBuf,
    /// Analysis threads (`[pipeline] threads`).
    pub threads: usize,
    /// Two stages one frame apart (`[pipeline] overlap`).
    pub overlap: bool,
    /// `[detector] max_faces` (the configuration's when `None`): the peers are told how many
    /// faces a clip holds, and so is facecast.
    pub max_faces: Option<usize>,
    /// Timed runs of each model alone (after a warm-up); 0 skips the models.
    pub model_runs: usize,
    /// Parity fixtures: `<model id>/<case>.png`, real crops at each model's input size.
    pub fixtures: PathBuf,
}

/// Runs the benchmark; `started` is when the process started, for the start-up time.
pub fn run(
    config: &Config,
    options: &BenchOptions,
    started: Instant,
) -> Result<Value, PipelineError> {
    let mut config = config.clone();
    config.source.uri = format!("y4m:{}", options.clip.display());
    config.source.live = Liveness::Recorded;
    config.pipeline.threads = options.threads;
    config.pipeline.overlap = options.overlap;
    if let Some(max_faces) = options.max_faces {
        config.detector.max_faces = max_faces;
        config.validate("--max-faces")?;
    }

    perf::enable();
    let analyser = Analyser::load(&config)?;
    let loaded = started.elapsed();
    let landmark_models: Vec<String> = analyser
        .landmark_model_ids()
        .into_iter()
        .map(String::from)
        .collect();
    let mut sink = BenchSink {
        encoding: config.mqtt.encoding,
        started,
        first_result: None,
        faces: 0,
    };
    let running = Instant::now();
    let summary = pipeline::run(&config, analyser, &mut sink)?;
    let wall = running.elapsed();
    let timings = perf::take();
    let peak_rss_kib = peak_rss_kib();

    let manifest = Manifest::load(&config.models.dir)?;
    // Model runs are kept under their manifest ids; stage names are chosen not to clash.
    let is_model = |name: &str| manifest.entry(name).is_ok();
    let mut stages = Map::new();
    let mut pipeline_models = Map::new();
    for (name, durations) in &timings {
        let entry = json!({
            "p50": round3(perf::quantile_ms(durations, 0.5)),
            "p99": round3(perf::quantile_ms(durations, 0.99)),
            "n": durations.len(),
        });
        if is_model(name) {
            pipeline_models.insert(name.clone(), entry);
        } else {
            stages.insert(name.clone(), entry);
        }
    }
    let frame_ms = timings
        .iter()
        .find(|(name, _)| name == "frame")
        .map(|(_, d)| d.as_slice())
        .unwrap_or_default();
    let mut report = json!({
        "peer": "facecast",
        "version": env!("CARGO_PKG_VERSION"),
        "clip": options.clip.file_stem().map(|s| s.to_string_lossy()),
        "threads": config.pipeline.analysis_threads(),
        "overlap": config.pipeline.overlap,
        "max_faces": config.detector.max_faces,
        "scope": scope(&config),
        "landmark_models": landmark_models,
        "frames": summary.analysed,
        "faces_per_frame": {"mean": round3(sink.faces as f64 / summary.analysed.max(1) as f64)},
        "fps": round3(summary.analysed as f64 / wall.as_secs_f64()),
        "frame_ms": {
            "p50": round3(perf::quantile_ms(frame_ms, 0.5)),
            "p99": round3(perf::quantile_ms(frame_ms, 0.99)),
        },
        "load_ms": round3(ms(loaded)),
        "startup_ms": sink.first_result.map(|d| round3(ms(d))),
        "peak_rss_kib": peak_rss_kib,
        "load1": load1(),
        "stages": stages,
        "pipeline_models": pipeline_models,
    });
    if options.model_runs > 0 {
        report["models"] = Value::Object(time_models(
            &manifest,
            &options.fixtures,
            options.model_runs,
        )?);
    }
    Ok(report)
}

/// What the pipeline analyses: "landmarks" (detection or tracking, mesh, irises, pose and
/// gaze: MediaPipe's face_mesh with iris), "full" with identity, attributes or action units.
fn scope(config: &Config) -> &'static str {
    let attributes = config.attributes.enabled || config.attributes.action_units;
    if config.identity.enabled || attributes {
        "full"
    } else {
        "landmarks"
    }
}

/// Encodes every record and event as the MQTT publisher would (the part of publishing done on
/// the analysis thread), and notes when the first result was ready.
struct BenchSink {
    encoding: Encoding,
    started: Instant,
    first_result: Option<Duration>,
    faces: u64,
}

impl Sink for BenchSink {
    fn frame(&mut self, record: &FrameRecord, _: &FrameStats) -> io::Result<()> {
        perf::time("encode", || encode(self.encoding, record)).map_err(io::Error::other)?;
        self.first_result
            .get_or_insert_with(|| self.started.elapsed());
        self.faces += record.faces.len() as u64;
        Ok(())
    }

    fn events(&mut self, events: &[TrackEvent]) -> io::Result<()> {
        for event in events {
            encode(self.encoding, event).map_err(io::Error::other)?;
        }
        Ok(())
    }
}

/// Each manifest model alone: loaded once (timed), fed a real crop from its parity fixtures (a
/// quantised copy takes its original's), warmed up, then timed `runs` times.
fn time_models(
    manifest: &Manifest,
    fixtures: &Path,
    runs: usize,
) -> Result<Map<String, Value>, PipelineError> {
    let mut models = Map::new();
    for entry in &manifest.models {
        let mut bench = ModelBench::load(manifest, fixtures, &entry.id)?;
        bench.time(runs.div_ceil(10))?;
        let durations = bench.time(runs)?;
        // Where the time goes, per operator: a node-by-node run is slower than a plain one
        // (a clock read per node), so only the shares are comparable with the times above.
        let profile_runs = runs.div_ceil(4);
        let profile = bench.model.profile(profile_runs)?;
        let profiled: f64 = profile.ops.iter().map(|op| ms(op.total)).sum();
        let timed = |total| {
            (
                round3(ms(total) / profile_runs as f64),
                round3(ms(total) / profiled),
            )
        };
        let ops: Vec<Value> = profile
            .ops
            .iter()
            .take(OPS_REPORTED)
            .map(|op| {
                let (ms, share) = timed(op.total);
                json!({"op": op.op, "nodes": op.nodes, "ms": ms, "share": share})
            })
            .collect();
        let nodes: Vec<Value> = profile
            .nodes
            .iter()
            .take(NODES_REPORTED)
            .map(|node| {
                let (ms, share) = timed(node.total);
                json!({"node": node.name, "op": node.op, "detail": node.detail, "ms": ms, "share": share})
            })
            .collect();
        models.insert(
            entry.id.clone(),
            json!({
                "p50": round3(perf::quantile_ms(&durations, 0.5)),
                "p99": round3(perf::quantile_ms(&durations, 0.99)),
                "runs": runs,
                "load_ms": round3(bench.load_ms),
                "ops": ops,
                "nodes": nodes,
            }),
        );
    }
    Ok(models)
}

/// One manifest model on its first parity crop, as a peer runtime is timed on the same file.
struct ModelBench {
    model: Model,
    /// Parsing and optimising the graph: what start-up spends on this model.
    load_ms: f64,
}

impl ModelBench {
    /// Loads model `id` and fills its input with the first crop of its parity fixtures (a
    /// quantised copy takes its original's); the crops are cut at the model's input size.
    fn load(manifest: &Manifest, fixtures: &Path, id: &str) -> Result<ModelBench, PipelineError> {
        let entry = manifest.entry(id)?;
        let crop = first_crop(&fixtures.join(entry.variant_of.as_deref().unwrap_or(id)))?;
        let loading = Instant::now();
        let mut model = Model::load(manifest, id, false)?;
        let load_ms = ms(loading.elapsed());
        let (spec, tensor) = model.input();
        sample_into(&crop, &Affine::IDENTITY, spec, Border::Black, tensor);
        Ok(ModelBench { model, load_ms })
    }

    /// `runs` runs, each timed.
    fn time(&mut self, runs: usize) -> Result<Vec<Duration>, PipelineError> {
        (0..runs)
            .map(|_| {
                let started = Instant::now();
                self.model.run()?;
                Ok(started.elapsed())
            })
            .collect()
    }
}

/// `facecast bench --serve`: times models on request, for a driver that alternates runtimes
/// (benches/peers/peers.py paired). The machine's speed moves within seconds, so two
/// runtimes compared minutes apart, or even a model's 200 runs apart, are not comparable; taking
/// turns every few hundred milliseconds, with both processes loaded, they are. Each line of
/// `requests` is `MODEL_ID RUNS`, or `MODEL_ID RUNS nodes` for a node-by-node profile of the
/// runs; each answer, one JSON line on `answers`: `{"id", "ms": [one per run], "load_ms"}`
/// (the model is loaded on its first request and kept), with `nodes: [{"node", "op",
/// "detail", "ms"}]` (ms per run, every node of the plan, costliest first) for a profile, or `{"id",
/// "error"}`. Ends at the end of `requests`.
pub fn serve(
    config: &Config,
    fixtures: &Path,
    requests: impl io::BufRead,
    mut answers: impl io::Write,
) -> Result<(), PipelineError> {
    let manifest = Manifest::load(&config.models.dir)?;
    let mut loaded: HashMap<String, ModelBench> = HashMap::new();
    for line in requests.lines() {
        let line = line.map_err(|e| serve_error("reading a request", e))?;
        let answer = match line.split_whitespace().collect::<Vec<_>>()[..] {
            [id, runs, ref profile @ ..] if matches!(profile, [] | ["nodes"]) => {
                match runs.parse::<usize>() {
                    Ok(runs) => match answer(
                        &manifest,
                        fixtures,
                        &mut loaded,
                        id,
                        runs,
                        profile.len() == 1,
                    ) {
                        Ok(answer) => answer,
                        Err(e) => json!({"id": id, "error": e.to_string()}),
                    },
                    Err(e) => json!({"id": id, "error": format!("runs {runs:?}: {e}")}),
                }
            }
            _ => json!({"error": format!("expected `MODEL_ID RUNS [nodes]`, got {line:?}")}),
        };
        writeln!(answers, "{answer}")
            .and_then(|()| answers.flush())
            .map_err(|e| serve_error("writing an answer", e))?;
    }
    Ok(())
}

/// The answer to one request: the model loaded if it is not yet, then `runs` runs timed, or
/// profiled node by node.
fn answer(
    manifest: &Manifest,
    fixtures: &Path,
    loaded: &mut HashMap<String, ModelBench>,
    id: &str,
    runs: usize,
    nodes: bool,
) -> Result<Value, PipelineError> {
    let bench = match loaded.entry(id.to_string()) {
        Entry::Occupied(entry) => entry.into_mut(),
        Entry::Vacant(entry) => entry.insert(ModelBench::load(manifest, fixtures, id)?),
    };
    if nodes {
        let profile = bench.model.profile(runs)?;
        let nodes: Vec<Value> = profile
            .nodes
            .iter()
            .map(|node| {
                let ms = round3(ms(node.total) / runs.max(1) as f64 * 1e3) / 1e3;
                json!({"node": node.name, "op": node.op, "detail": node.detail, "ms": ms})
            })
            .collect();
        return Ok(json!({"id": id, "nodes": nodes, "load_ms": round3(bench.load_ms)}));
    }
    // Microseconds are the clock's resolution here.
    let times: Vec<f64> = bench
        .time(runs)?
        .into_iter()
        .map(|d| (ms(d) * 1e3).round() / 1e3)
        .collect();
    Ok(json!({"id": id, "ms": times, "load_ms": round3(bench.load_ms)}))
}

fn serve_error(doing: &str, e: io::Error) -> PipelineError {
    PipelineError::Capture(capture::CaptureError::io(
        format!("bench --serve: {doing}"),
        e,
    ))
}

/// Operators listed per model, most expensive first.
const OPS_REPORTED: usize = 8;

/// Nodes listed per model, most expensive first: enough to see which layers of a kind cost.
const NODES_REPORTED: usize = 16;

/// The first (by name) PNG crop in `dir`.
fn first_crop(dir: &Path) -> Result<Frame, PipelineError> {
    let missing = |why: String| {
        PipelineError::Capture(capture::CaptureError::io(
            format!("{}: model fixtures", dir.display()),
            io::Error::new(io::ErrorKind::NotFound, why),
        ))
    };
    let mut crops: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| missing(e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .collect();
    crops.sort();
    let path = crops.first().ok_or_else(|| missing("no PNG crop".into()))?;
    let mut frame = Frame::with_capacity(0, 0);
    capture::load_image(path, &mut frame)?;
    Ok(frame)
}

/// The process's peak resident memory (VmHWM) in KiB; 0 where /proc does not say.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The one-minute load average: other work on the machine skews every figure of a run.
fn load1() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn round3(v: f64) -> f64 {
    (v * 1e3).round() / 1e3
}
