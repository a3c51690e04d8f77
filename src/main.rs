//! The `facecast` command: parses arguments, reads the configuration and hands over to the
//! library. Exit codes: 0 success, 1 a run or check failed, 2 bad usage or configuration.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use facecast::capture::{list_devices, list_images};
use facecast::config::{Config, ENV_OVERRIDES};
use facecast::enrol::{self, GalleryService};
use facecast::model::{Manifest, Model};
use facecast::pipeline::FrameStats;
use facecast::publish::commands::{GalleryCommands, NoGallery};
use facecast::publish::Publisher;
use facecast::record::FrameRecord;
use facecast::track::TrackEvent;
use facecast::{annotate, pipeline};

const USAGE: &str = "\
facecast: a camera as a facial-analysis sensor

USAGE:
    facecast [--config PATH] <COMMAND> [OPTIONS]

COMMANDS:
    run [--source URI] [--frames N]   analyse frames from the configured source; one JSON
                                      record per frame on stdout, or to MQTT when
                                      [mqtt] host is set
    analyze [--annotate OUT] IMAGE... analyse images (files, directories or globs); one JSON
                                      line each; OUT is a PNG (one image) or a folder
    enroll --name NAME IMAGE...       add a person to the gallery from photos of them (one
                                      face per photo; several photos give several samples)
    gallery list                      list the gallery's people and their sample counts
    gallery remove NAME               remove a person from the gallery
    bench --clip Y4M [--threads N] [--overlap] [--max-faces N] [--model-runs N]
          [--fixtures DIR] [--json OUT]
                                      time the whole pipeline on a recorded clip (every
                                      stage and model, p50/p99, fps, peak memory, start-up),
                                      then each model alone on a real crop (N runs, default
                                      200, from DIR, default tests/fixtures/parity); JSON to
                                      OUT or stdout; --overlap: two stages one frame apart
                                      ([pipeline] overlap); --max-faces: [detector]
                                      max_faces. benches/run.sh runs it beside the peers
    bench --serve [--fixtures DIR]    time models on request, for a driver that takes turns
                                      with another runtime: reads `MODEL_ID RUNS [nodes]`
                                      lines, answers each with a JSON line of per-run ms
                                      (or of each node's ms, with `nodes`)
    devices                           list V4L2 cameras and their formats
    models [--verify]                 list the model manifest; --verify checks each file's
                                      sha256 and runs it once in tract

OPTIONS:
    --config PATH    configuration file (default: built-in defaults, as config/facecast.toml)
    -h, --help       this text
    -V, --version    the version

SOURCES:
    v4l2:/dev/video0   y4m:clip.y4m   y4m:- (stdin)   image:photos/   image:'shots/*.jpg'

ENVIRONMENT:
    RUST_LOG=info|debug|warn   log level (stderr)
";

enum Command {
    Run {
        source: Option<String>,
        frames: Option<u64>,
    },
    Analyze {
        images: Vec<String>,
        annotate: Option<PathBuf>,
    },
    Enroll {
        name: String,
        images: Vec<String>,
    },
    GalleryList,
    GalleryRemove {
        name: String,
    },
    Bench(facecast::bench::BenchOptions, Option<PathBuf>),
    BenchServe {
        fixtures: PathBuf,
    },
    Devices,
    Models {
        verify: bool,
    },
    Help,
    Version,
}

struct Args {
    config: Option<PathBuf>,
    command: Command,
}

fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_env();
    let mut config = None;
    let mut command_name: Option<String> = None;
    let (mut source, mut frames, mut annotate, mut verify) = (None, None, None, false);
    let mut name = None;
    let (mut clip, mut threads, mut model_runs, mut fixtures, mut json) =
        (None, 0, 200, PathBuf::from("tests/fixtures/parity"), None);
    let (mut overlap, mut serve) = (false, false);
    let mut max_faces = None;
    // Positional arguments after the command: images, or the gallery action and its name.
    let mut operands = Vec::new();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("config") => config = Some(parser.value()?.into()),
            Short('h') | Long("help") => command_name = Some("help".into()),
            Short('V') | Long("version") => command_name = Some("version".into()),
            Long("source") => source = Some(parser.value()?.string()?),
            Long("frames") => frames = Some(parser.value()?.parse()?),
            Long("annotate") => annotate = Some(parser.value()?.into()),
            Long("verify") => verify = true,
            Long("name") => name = Some(parser.value()?.string()?),
            Long("clip") => clip = Some(PathBuf::from(parser.value()?)),
            Long("threads") => threads = parser.value()?.parse()?,
            Long("overlap") => overlap = true,
            Long("serve") => serve = true,
            Long("max-faces") => max_faces = Some(parser.value()?.parse()?),
            Long("model-runs") => model_runs = parser.value()?.parse()?,
            Long("fixtures") => fixtures = parser.value()?.into(),
            Long("json") => json = Some(PathBuf::from(parser.value()?)),
            Value(value) if command_name.is_none() => command_name = Some(value.string()?),
            Value(value)
                if matches!(
                    command_name.as_deref(),
                    Some("analyze" | "enroll" | "gallery")
                ) =>
            {
                operands.push(value.string()?)
            }
            _ => return Err(arg.unexpected()),
        }
    }
    let command = match command_name.as_deref() {
        Some("run") => Command::Run { source, frames },
        Some("analyze") if !operands.is_empty() => Command::Analyze {
            images: operands,
            annotate,
        },
        Some("analyze") => return Err("analyze needs at least one image".into()),
        Some("enroll") => match (name, operands.is_empty()) {
            (Some(name), false) => Command::Enroll {
                name,
                images: operands,
            },
            _ => return Err("enroll needs --name NAME and at least one image".into()),
        },
        Some("gallery") => match operands.as_slice() {
            [action] if action == "list" => Command::GalleryList,
            [action, name] if action == "remove" => Command::GalleryRemove { name: name.clone() },
            _ => return Err("gallery needs `list` or `remove NAME`".into()),
        },
        Some("bench") if serve => Command::BenchServe { fixtures },
        Some("bench") => match clip {
            Some(clip) => Command::Bench(
                facecast::bench::BenchOptions {
                    clip,
                    threads,
                    overlap,
                    max_faces,
                    model_runs,
                    fixtures,
                },
                json,
            ),
            None => return Err("bench needs --clip Y4M (or --serve)".into()),
        },
        Some("devices") => Command::Devices,
        Some("models") => Command::Models { verify },
        Some("help") | None => Command::Help,
        Some("version") => Command::Version,
        Some(other) => return Err(format!("unknown command {other:?}").into()),
    };
    Ok(Args { config, command })
}

fn main() -> ExitCode {
    let started = std::time::Instant::now();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("facecast: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let config = match &args.config {
        Some(path) => Config::load(path),
        None => Config::from_env(),
    };
    let mut config = match config {
        Ok(config) => config,
        Err(e) => {
            eprintln!("facecast: configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if let Command::Run { source, frames } = &args.command {
        if let Some(source) = source {
            config.source.uri = source.clone();
        }
        if let Some(frames) = frames {
            config.pipeline.max_frames = *frames;
        }
        if let Err(e) = config.validate("command line") {
            eprintln!("facecast: {e}");
            return ExitCode::from(2);
        }
    }
    match run(args.command, &config, started) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("facecast: {e:#}");
            ExitCode::FAILURE
        }
    }
}

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

fn run(command: Command, config: &Config, started: std::time::Instant) -> AnyResult<ExitCode> {
    match command {
        Command::Help => {
            print!("{USAGE}");
            for (variable, key) in ENV_OVERRIDES {
                println!("    {variable:<22} overrides {key}");
            }
        }
        Command::Version => println!("facecast {}", env!("CARGO_PKG_VERSION")),
        Command::Run { .. } => {
            let analyser = pipeline::Analyser::load(config)?;
            let summary = if config.mqtt.enabled() {
                run_mqtt(config, analyser)?
            } else {
                pipeline::run(config, analyser, &mut StdoutSink)?
            };
            log::info!(
                "{} frames captured, {} analysed, {} dropped, {} corrupt, {} failed, source reopened {} times",
                summary.captured,
                summary.analysed,
                summary.dropped,
                summary.corrupt,
                summary.failed,
                summary.reopened
            );
        }
        Command::Analyze { images, annotate } => {
            return analyze(config, &images, annotate.as_deref())
        }
        Command::Bench(options, json) => {
            let report = facecast::bench::run(config, &options, started)?;
            let text = serde_json::to_string_pretty(&report)?;
            match json {
                Some(path) => std::fs::write(path, text + "\n")?,
                None => println!("{text}"),
            }
        }
        Command::BenchServe { fixtures } => facecast::bench::serve(
            config,
            &fixtures,
            std::io::stdin().lock(),
            std::io::stdout(),
        )?,
        Command::Devices => {
            let cameras = list_devices();
            if cameras.is_empty() {
                println!("no V4L2 devices (/dev/video*) found");
            }
            for camera in cameras {
                println!("{}  {}", camera.path.display(), camera.name);
                for format in camera.formats {
                    let sizes: Vec<String> = format
                        .sizes
                        .iter()
                        .map(|(w, h)| format!("{w}x{h}"))
                        .collect();
                    println!(
                        "    {}  {}  {}",
                        format.fourcc,
                        format.description,
                        sizes.join(" ")
                    );
                }
            }
        }
        Command::Models { verify } => return models(config, verify),
        Command::Enroll { name, images } => return enroll(config, &name, &images),
        Command::GalleryList => {
            let gallery = pipeline::open_gallery(config)?;
            if gallery.people().is_empty() {
                println!("{}: no one enrolled", gallery.path().display());
            }
            for person in gallery.people() {
                println!("{}\t{} samples", person.name, person.samples.len());
            }
        }
        Command::GalleryRemove { name } => {
            let mut gallery = pipeline::open_gallery(config)?;
            if !gallery.forget(&name)? {
                eprintln!("facecast: {name:?} is not in {}", gallery.path().display());
                return Ok(ExitCode::FAILURE);
            }
            println!("removed {name:?}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Development output: records as JSON lines on stdout, track events in the log.
struct StdoutSink;

impl pipeline::Sink for StdoutSink {
    fn frame(&mut self, record: &FrameRecord, _: &FrameStats) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, record)?;
        out.write_all(b"\n")?;
        out.flush()
    }

    fn events(&mut self, events: &[TrackEvent]) -> std::io::Result<()> {
        for event in events {
            log::info!("event: {}", serde_json::to_string(event)?);
        }
        Ok(())
    }
}

/// Results to MQTT.
struct MqttSink<'a>(&'a mut Publisher);

impl pipeline::Sink for MqttSink<'_> {
    fn frame(&mut self, record: &FrameRecord, stats: &FrameStats) -> std::io::Result<()> {
        self.0.frame(record, stats);
        Ok(())
    }

    fn events(&mut self, events: &[TrackEvent]) -> std::io::Result<()> {
        self.0.events(events);
        Ok(())
    }
}

/// Runs the pipeline publishing to MQTT. SIGTERM and SIGINT stop it cleanly (queued messages
/// delivered within the stop timeout, `offline` published, DISCONNECT sent) and exit 0.
fn run_mqtt(config: &Config, analyser: pipeline::Analyser) -> AnyResult<pipeline::RunSummary> {
    let gallery: Box<dyn GalleryCommands> = match analyser.gallery() {
        Some(gallery) => Box::new(GalleryService::new(
            gallery,
            analyser.track_samples(),
            config,
        )),
        None => Box::new(NoGallery),
    };
    let mut models = vec![config.detector.model.clone()];
    models.extend(analyser.landmark_model_ids().into_iter().map(String::from));
    if config.analysis.enabled && config.identity.enabled {
        models.push(config.identity.model.clone());
    }
    let mut publisher = Publisher::start(config, &models, gallery)?;
    let stopper = publisher.stopper();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                log::info!("signal {signal}: stopping");
                stopper.stop();
                std::process::exit(0);
            }
        })?;
    let summary = pipeline::run(config, analyser, &mut MqttSink(&mut publisher));
    publisher.stop();
    Ok(summary?)
}

/// The image files the patterns (files, directories, globs) name; a pattern naming none is an
/// error.
fn image_files(patterns: &[String]) -> AnyResult<Vec<PathBuf>> {
    let mut files = Vec::new();
    for pattern in patterns {
        let found = list_images(pattern)?;
        if found.is_empty() {
            return Err(format!("{pattern}: no image files").into());
        }
        files.extend(found);
    }
    Ok(files)
}

fn analyze(config: &Config, patterns: &[String], annotate: Option<&Path>) -> AnyResult<ExitCode> {
    let files = image_files(patterns)?;
    if let Some(dir) = annotate.filter(|_| files.len() > 1) {
        std::fs::create_dir_all(dir)?;
    }
    let mut analyser = pipeline::Analyser::load(config)?;
    let mut failures = 0;
    let mut out = std::io::stdout().lock();
    for (seq, path) in files.iter().enumerate() {
        let result = match pipeline::analyze_image(&mut analyser, path, seq as u64) {
            Ok(result) => result,
            Err(e) => {
                eprintln!("facecast: {}: {e}", path.display());
                failures += 1;
                continue;
            }
        };
        let file = path.to_string_lossy();
        let record = pipeline::frame_record(
            &config.device.id,
            &result.frame,
            &result.analysis,
            &config.output,
            Some(&file),
        );
        serde_json::to_writer(&mut out, &record)?;
        out.write_all(b"\n")?;
        if let Some(target) = annotate {
            let target = if files.len() > 1 {
                let stem = path.file_stem().unwrap_or_default().to_string_lossy();
                target.join(format!("{stem}.png"))
            } else {
                target.to_path_buf()
            };
            annotate::draw(&result.frame, &result.analysis.faces).save(&target)?;
        }
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `enroll`: each photo's one face becomes a sample of `name`. Photos that fail are reported
/// and left out; the exit code says whether any failed.
fn enroll(config: &Config, name: &str, patterns: &[String]) -> AnyResult<ExitCode> {
    let files = image_files(patterns)?;
    let mut gallery = pipeline::open_gallery(config)?;
    facecast::gallery::check_name(name)?;
    let mut analyser = pipeline::Analyser::load(config)?;
    let mut samples = Vec::new();
    for path in &files {
        match enrol::describe_photo(&mut analyser, path) {
            Ok(descriptor) => samples.push(descriptor),
            Err(e) => eprintln!("facecast: {}: {e}", path.display()),
        }
    }
    if samples.is_empty() {
        return Err(format!("no usable photo of {name:?}; the gallery is unchanged").into());
    }
    let count = gallery.enroll(name, &samples)?;
    println!(
        "{name:?}: {} samples added, {count} in all ({})",
        samples.len(),
        gallery.path().display()
    );
    Ok(if samples.len() == files.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn models(config: &Config, verify: bool) -> AnyResult<ExitCode> {
    let manifest = Manifest::load(&config.models.dir)?;
    let mut failures = 0;
    for entry in &manifest.models {
        let status = if verify {
            match Model::load(&manifest, &entry.id, true).and_then(|mut m| m.run().map(|_| ())) {
                Ok(()) => "ok".to_string(),
                Err(e) => {
                    failures += 1;
                    format!("FAILED: {e}")
                }
            }
        } else {
            String::new()
        };
        println!(
            "{:<22} {:<10} {:?} {:<32} {:<12} {:?} {}",
            entry.id,
            format!("{:?}", entry.task),
            entry.precision,
            entry.file.display(),
            entry.licence,
            entry.input.shape,
            status
        );
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
