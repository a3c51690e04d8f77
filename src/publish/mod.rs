//! MQTT output: the frame loop's records, events, status, stats and command responses under
//! `<prefix>/<device id>/`, versioned (`v`), JSON or CBOR. docs/mqtt.md describes the topics.
//!
//! Threads: the frame loop calls [`Publisher::frame`], which never blocks on the network: it
//! rate-limits, encodes, queues in the [`outbox`] and hands over what the window allows with
//! rumqttc's `try_publish`. The connection thread ([`mqtt`]) polls rumqttc and reports to the
//! outbox; a stats thread queues `stats` periodically; a command thread carries out `cmd`
//! requests so that a slow command never delays keep-alives.
//!
//! **Architecture invariant:** no thread but the connection thread waits on the network, and
//! every message is counted in the outbox from the moment it is made until it is sent or
//! dropped.

pub mod commands;
pub mod discovery;
pub mod messages;
mod mqtt;
pub mod outbox;
pub mod rate;
pub mod stats;

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use rumqttc::{Client, LastWill, QoS};
use serde::Serialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::config::{Config, Encoding};
use crate::pipeline::FrameStats;
use crate::record::{unix_seconds, FrameRecord, SCHEMA_VERSION};
use crate::track::TrackEvent;

use commands::{CommandHandler, GalleryCommands, Outcome};
use messages::{encode, round, Event, EventKind, Presence, Response, Stats, Status, TopicCounts};
use outbox::{Kind, Message, Outbox};
use rate::FacesGate;
use stats::StatsWindow;

/// Commands waiting for the command thread; more are refused as busy. With payloads of at
/// most [`commands::MAX_COMMAND_BYTES`], this bounds their memory to 2 MiB.
const COMMANDS_WAITING: usize = 128;
/// At a stop, how long to wait for the connection thread to finish disconnecting.
const DISCONNECT_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, Error)]
pub enum PublishError {
    #[error("{path}: {reason}")]
    Certificate { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot encode a payload: {0}")]
    Encode(String),
    #[error("cannot start the {0} thread: {1}")]
    Thread(&'static str, io::Error),
}

/// The topics of one device.
#[derive(Debug, Clone)]
pub struct Topics {
    pub faces: String,
    pub events: String,
    pub status: String,
    pub stats: String,
    pub cmd: String,
    pub response: String,
}

impl Topics {
    pub fn new(prefix: &str, device: &str) -> Self {
        let topic = |name: &str| format!("{prefix}/{device}/{name}");
        Topics {
            faces: topic("faces"),
            events: topic("events"),
            status: topic("status"),
            stats: topic("stats"),
            cmd: topic("cmd"),
            response: topic("cmd/response"),
        }
    }
}

fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// A `cmd` payload on its way to the command thread. Oversized ones travel as their size
/// only, so that a flood of large payloads cannot fill memory, and are answered in turn.
enum CommandPayload {
    Bytes(Vec<u8>),
    Oversized(usize),
}

/// QoS of each topic.
#[derive(Debug, Clone, Copy)]
struct TopicQos {
    faces: QoS,
    events: QoS,
    status: QoS,
    stats: QoS,
    commands: QoS,
}

/// What the frame loop, the connection, stats and command threads share.
struct Shared {
    device: String,
    /// `host:port`, for log lines.
    broker: String,
    encoding: Encoding,
    topics: Topics,
    qos: TopicQos,
    client: Client,
    outbox: Mutex<Outbox>,
    /// Signalled when messages leave the outbox or the connection changes.
    outbox_changed: Condvar,
    /// Queued at every connection: `online` status, discovery configs.
    on_connect: Vec<Message>,
    faces_gate: Arc<Mutex<FacesGate>>,
    window: Mutex<StatsWindow>,
    faces_skipped: AtomicU64,
    event_seq: AtomicU64,
    connections: AtomicU64,
    started: Instant,
    stop_timeout: Duration,
    stopping: AtomicBool,
    /// Held while a periodic `stats` is made and queued; a stop takes it once, so that no
    /// periodic report comes after the final one and `offline`.
    periodic_stats: Mutex<()>,
    /// `stopped` wakes sleeping threads; `connection_done` tells that the connection thread
    /// has ended.
    flags: Mutex<Flags>,
    flags_changed: Condvar,
}

#[derive(Default)]
struct Flags {
    stopped: bool,
    connection_done: bool,
    /// The first `stop` has finished.
    stop_done: bool,
}

/// A poisoned lock still guards valid state here (queues and counters), so keep going.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn lock_outbox(&self) -> MutexGuard<'_, Outbox> {
        lock(&self.outbox)
    }

    /// Hands what the outbox lets go to rumqttc, without blocking.
    fn pump(&self, outbox: &mut Outbox) {
        outbox.pump(|m| {
            self.client
                .try_publish(m.topic.as_str(), m.qos, m.retain, m.payload.clone())
                .is_ok()
        });
    }

    fn message<T: Serialize>(
        &self,
        kind: Kind,
        topic: &str,
        qos: QoS,
        retain: bool,
        value: &T,
    ) -> Result<Message, PublishError> {
        Ok(Message {
            kind,
            topic: topic.to_string(),
            payload: encode(self.encoding, value)?,
            qos,
            retain,
        })
    }

    /// Queues a message (logging one that cannot be encoded) and hands over what it can.
    fn queue(&self, message: Result<Message, PublishError>) {
        match message {
            Ok(message) => {
                let mut outbox = self.lock_outbox();
                outbox.push(message);
                self.pump(&mut outbox);
            }
            Err(e) => log::warn!("message not sent: {e}"),
        }
    }

    fn event(&self, what: EventKind) {
        let event = Event {
            v: SCHEMA_VERSION,
            dev: &self.device,
            seq: self.event_seq.fetch_add(1, Ordering::Relaxed),
            ts: unix_seconds(SystemTime::now()),
            what,
        };
        let qos = self.qos.events;
        self.queue(self.message(Kind::Event, &self.topics.events, qos, false, &event));
    }

    fn respond(&self, outcome: &Outcome) {
        let (err, data) = match &outcome.result {
            Ok(data) => (None, Some(data)),
            Err(reason) => (Some(reason.as_str()), None),
        };
        let response = Response {
            v: SCHEMA_VERSION,
            dev: &self.device,
            ts: unix_seconds(SystemTime::now()),
            id: outcome.id.as_ref(),
            ok: err.is_none(),
            err,
            data,
        };
        let (topic, qos) = (&self.topics.response, self.qos.commands);
        self.queue(self.message(Kind::Response, topic, qos, false, &response));
    }

    /// Answers a command that found the command queue full (at once, so possibly before
    /// answers to earlier commands).
    fn refuse_busy(&self, payload: &CommandPayload) {
        let id = match payload {
            CommandPayload::Bytes(bytes) => {
                commands::parse(bytes).map_or_else(|refused| refused.id, |request| request.id)
            }
            CommandPayload::Oversized(_) => None,
        };
        log::warn!("{COMMANDS_WAITING} commands already waiting; refused one");
        self.respond(&Outcome {
            id,
            result: Err(format!(
                "busy: {COMMANDS_WAITING} commands are waiting; try again"
            )),
        });
    }

    fn stats(&self) {
        let now = Instant::now();
        let period = lock(&self.window).finish(now);
        let (faces, events) = {
            let outbox = self.lock_outbox();
            (outbox.counts(Kind::Faces), outbox.counts(Kind::Event))
        };
        let topic_counts = |c: outbox::KindCounts, skip: Option<u64>| TopicCounts {
            made: c.made,
            sent: c.sent,
            drop: c.dropped,
            q: c.queued,
            skip,
        };
        let stats = Stats {
            v: SCHEMA_VERSION,
            dev: &self.device,
            ts: unix_seconds(SystemTime::now()),
            up: round(now.duration_since(self.started).as_secs_f64(), 1),
            dt: period.seconds,
            fps: period.fps,
            lat: period.latencies,
            frames: period.frames,
            ring: period.ring_depth,
            trk: period.tracks,
            faces: topic_counts(faces, Some(self.faces_skipped.load(Ordering::Relaxed))),
            events: topic_counts(events, None),
            conn: self.connections.load(Ordering::Relaxed),
            rss_kb: stats::resident_kb(),
            temp_c: stats::cpu_temperature(std::path::Path::new("/sys/class/thermal")),
        };
        let (topic, qos) = (&self.topics.stats, self.qos.stats);
        self.queue(self.message(Kind::Stats, topic, qos, false, &stats));
    }

    fn count_connection(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    /// The stop has delivered what it could and the connection is to end.
    fn is_stopped(&self) -> bool {
        lock(&self.flags).stopped
    }

    /// Sleeps `duration` unless the publisher stops first; false when it stopped.
    fn sleep_unless_stopping(&self, duration: Duration) -> bool {
        let flags = lock(&self.flags);
        let (flags, _) = self
            .flags_changed
            .wait_timeout_while(flags, duration, |f| !f.stopped)
            .unwrap_or_else(|e| e.into_inner());
        !flags.stopped
    }

    fn connection_ended(&self) {
        lock(&self.flags).connection_done = true;
        self.flags_changed.notify_all();
    }

    /// Waits until the outbox is empty or `deadline`; whether it emptied.
    fn wait_idle(&self, deadline: Instant) -> bool {
        let mut outbox = self.lock_outbox();
        while !outbox.is_idle() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            outbox = self
                .outbox_changed
                .wait_timeout(outbox, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Delivers what is queued, then final stats and `offline`, then disconnects; bounded by
    /// the configured stop timeout. The first call does it; later ones wait for it to finish.
    fn stop(&self) {
        if self.stopping.swap(true, Ordering::Relaxed) {
            let flags = lock(&self.flags);
            let _ = self.flags_changed.wait_timeout_while(
                flags,
                self.stop_timeout + DISCONNECT_WAIT,
                |f| !f.stop_done,
            );
            return;
        }
        // A periodic report being made finishes now; none starts after this.
        drop(lock(&self.periodic_stats));
        let deadline = Instant::now() + self.stop_timeout;
        // In turn, so that the final stats arrive after everything they count and before
        // `offline`.
        self.wait_idle(deadline);
        self.stats();
        self.wait_idle(deadline);
        let offline = Status::offline(&self.device, Some(unix_seconds(SystemTime::now())));
        let (topic, qos) = (&self.topics.status, self.qos.status);
        self.queue(self.message(Kind::Offline, topic, qos, true, &offline));
        if !self.wait_idle(deadline) {
            let events = self.lock_outbox().counts(Kind::Event);
            log::warn!(
                "stopping with {} events not delivered to the MQTT broker {}",
                events.queued,
                self.broker
            );
        }
        lock(&self.flags).stopped = true;
        self.flags_changed.notify_all();
        if let Err(e) = self.client.try_disconnect() {
            log::debug!("disconnect not sent: {e}");
        }
        let flags = lock(&self.flags);
        let (mut flags, _) = self
            .flags_changed
            .wait_timeout_while(flags, DISCONNECT_WAIT, |f| !f.connection_done)
            .unwrap_or_else(|e| e.into_inner());
        flags.stop_done = true;
        drop(flags);
        self.flags_changed.notify_all();
    }
}

/// Stops a [`Publisher`] from another thread (a signal handler).
#[derive(Clone)]
pub struct Stopper(Arc<Shared>);

impl Stopper {
    /// See [`Publisher::stop`].
    pub fn stop(&self) {
        self.0.stop();
    }
}

/// The MQTT output of one run.
pub struct Publisher {
    shared: Arc<Shared>,
    /// Faces in the previous analysed frame, for `count` events.
    faces_before: usize,
}

/// First 16 hex digits of the sha256 of the effective configuration (secrets excluded).
pub fn config_digest(config: &Config) -> String {
    let digest = Sha256::digest(format!("{config:?}").as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

impl Publisher {
    /// Starts the connection, stats and command threads; connecting happens in the background
    /// (an unreachable broker is retried, never fatal). `models` names the models in use for
    /// the `online` status; `gallery` serves the identity commands.
    pub fn start(
        config: &Config,
        models: &[String],
        gallery: Box<dyn GalleryCommands>,
    ) -> Result<Publisher, PublishError> {
        let mqtt = &config.mqtt;
        let device = config.device.id.clone();
        let topics = Topics::new(&mqtt.topic_prefix, &device);
        let qos = TopicQos {
            faces: qos(mqtt.qos.faces),
            events: qos(mqtt.qos.events),
            status: qos(mqtt.qos.status),
            stats: qos(mqtt.qos.stats),
            commands: qos(mqtt.qos.commands),
        };
        let offline = encode(mqtt.encoding, &Status::offline(&device, None))?;
        let will = LastWill::new(&topics.status, offline, qos.status, true);
        let (client, connection) = mqtt::client(mqtt, &device, will)?;

        let digest = config_digest(config);
        let online = Status {
            v: SCHEMA_VERSION,
            dev: &device,
            state: Presence::Online,
            ts: Some(unix_seconds(SystemTime::now())),
            ver: Some(env!("CARGO_PKG_VERSION")),
            models: Some(models),
            cfg: Some(&digest),
        };
        let mut on_connect = vec![Message {
            kind: Kind::Connect,
            topic: topics.status.clone(),
            payload: encode(mqtt.encoding, &online)?,
            qos: qos.status,
            retain: true,
        }];
        if mqtt.homeassistant.discovery {
            for (topic, config) in discovery::configs(&mqtt.homeassistant.prefix, &device, &topics)
            {
                on_connect.push(Message {
                    kind: Kind::Connect,
                    topic,
                    payload: encode(Encoding::Json, &config)?,
                    qos: qos.status,
                    retain: true,
                });
            }
        }

        let now = Instant::now();
        let shared = Arc::new(Shared {
            broker: format!("{}:{}", mqtt.host, mqtt.port),
            device,
            encoding: mqtt.encoding,
            topics,
            qos,
            client,
            outbox: Mutex::new(Outbox::new(mqtt.events_queue, mqtt.faces_queue)),
            outbox_changed: Condvar::new(),
            on_connect,
            faces_gate: Arc::new(Mutex::new(FacesGate::new(&mqtt.faces))),
            window: Mutex::new(StatsWindow::new(now)),
            faces_skipped: AtomicU64::new(0),
            event_seq: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            started: now,
            stop_timeout: Duration::from_millis(mqtt.stop_timeout_ms),
            stopping: AtomicBool::new(false),
            periodic_stats: Mutex::new(()),
            flags: Mutex::new(Flags::default()),
            flags_changed: Condvar::new(),
        });

        let commands = if mqtt.commands.enabled {
            let (sender, receiver) = sync_channel::<CommandPayload>(COMMANDS_WAITING);
            let mut handler = CommandHandler::new(gallery, shared.faces_gate.clone());
            let shared = shared.clone();
            spawn("mqtt-commands", move || {
                for payload in receiver {
                    let outcome = match payload {
                        CommandPayload::Bytes(bytes) => handler.handle(&bytes),
                        CommandPayload::Oversized(bytes) => commands::oversized(bytes),
                    };
                    shared.respond(&outcome);
                }
            })?;
            Some(sender)
        } else {
            None
        };
        let backoff = (
            Duration::from_millis(mqtt.reconnect_initial_ms),
            Duration::from_millis(mqtt.reconnect_max_ms),
        );
        {
            let shared = shared.clone();
            spawn("mqtt-connection", move || {
                mqtt::run(connection, shared, commands, backoff)
            })?;
        }
        {
            let shared = shared.clone();
            let interval = Duration::from_millis(mqtt.stats_interval_ms);
            spawn("mqtt-stats", move || {
                while shared.sleep_unless_stopping(interval) {
                    let _periodic = lock(&shared.periodic_stats);
                    if shared.stopping.load(Ordering::Relaxed) {
                        break;
                    }
                    shared.stats();
                }
            })?;
        }
        log::info!(
            "publishing to {} under {}/{}/ ({:?})",
            shared.broker,
            mqtt.topic_prefix,
            shared.device,
            mqtt.encoding
        );
        Ok(Publisher {
            shared,
            faces_before: 0,
        })
    }

    /// Publishes one analysed frame: a `count` event when the number of faces changed, the
    /// record on `faces` when the rate lets it through. Never blocks on the network.
    pub fn frame(&mut self, record: &FrameRecord, frame_stats: &FrameStats) {
        let started = Instant::now();
        let shared = &self.shared;
        let faces = record.faces.len();
        if faces != self.faces_before {
            shared.event(EventKind::Count {
                n: faces,
                was: self.faces_before,
                frame: record.seq,
            });
            self.faces_before = faces;
        }
        let boxes: Vec<[f32; 4]> = record.faces.iter().map(|f| f.bbox).collect();
        if lock(&shared.faces_gate).admit(started, &boxes) {
            let (topic, qos) = (&shared.topics.faces, shared.qos.faces);
            shared.queue(shared.message(Kind::Faces, topic, qos, false, record));
        } else {
            shared.faces_skipped.fetch_add(1, Ordering::Relaxed);
        }
        lock(&shared.window).add(frame_stats, started.elapsed());
    }

    /// Publishes track events, in order, on `events`. Never blocks on the network.
    pub fn events(&self, events: &[TrackEvent]) {
        for event in events {
            self.shared.event(EventKind::Track(event.clone()));
        }
    }

    /// A handle that stops this publisher from another thread.
    pub fn stopper(&self) -> Stopper {
        Stopper(self.shared.clone())
    }

    /// Delivers what is queued (within `mqtt.stop_timeout_ms`), publishes final `stats` and
    /// retained `offline`, and disconnects cleanly (so the broker does not send the last
    /// will). Later calls, from any thread, do nothing.
    pub fn stop(&self) {
        self.shared.stop();
    }
}

fn spawn(name: &'static str, f: impl FnOnce() + Send + 'static) -> Result<(), PublishError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map(drop)
        .map_err(|e| PublishError::Thread(name, e))
}
