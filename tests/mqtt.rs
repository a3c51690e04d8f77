//! facecast publishing to a real Mosquitto broker that each test starts on a free 127.0.0.1
//! port (Debian's `mosquitto`, installed by `make deps`). A rumqttc subscriber in the test
//! records everything; every message facecast publishes is validated against its JSON Schema
//! in docs/schema/.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use facecast::capture::{write_420_frame, Y4mHeader};
use rumqttc::{Client, Event, Incoming, MqttOptions, QoS};
use serde_json::Value;

const FRAME_W: u32 = 320;
const FRAME_H: u32 = 240;

// ---- the broker ---------------------------------------------------------------------------------

struct Broker {
    child: Option<Child>,
    config: PathBuf,
    dir: PathBuf,
    port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn mosquitto_binary() -> &'static str {
    // Debian installs it in /usr/sbin, which is not on every user's PATH.
    if Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    }
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "mosquitto did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Broker {
    /// A broker on a free port; `extra` is more mosquitto.conf text (other listeners).
    fn start(name: &str, extra: &str) -> Broker {
        let dir = temp_dir(&format!("broker-{name}"));
        // Started as root, mosquitto drops to its own user, which must still write its log and
        // persistence file here.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        let port = free_port();
        let config = dir.join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "per_listener_settings false\nallow_anonymous true\n\
                 persistence true\npersistence_location {}/\n\
                 log_dest file {}\nlog_type all\n\
                 listener {port} 127.0.0.1\n{extra}",
                dir.display(),
                dir.join("mosquitto.log").display()
            ),
        )
        .unwrap();
        let mut broker = Broker {
            child: None,
            config,
            dir,
            port,
        };
        broker.run();
        broker
    }

    fn run(&mut self) {
        let child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto (apt-get install mosquitto, or make deps)");
        self.child = Some(child);
        wait_for_port(self.port);
    }

    /// Stops the broker as an operator would (SIGTERM: it saves its sessions and exits).
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "TERM");
            child.wait().unwrap();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("facecast-mqtt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---- the subscriber ------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Received {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
}

/// Records every message on `facecast/#` and `homeassistant/#`. Its session persists (as the
/// broker's does), so messages published while it reconnects after a broker restart wait for
/// it; it resubscribes at every connection all the same.
struct Subscriber {
    client: Client,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Subscriber {
    fn connect(port: u16, name: &str) -> Subscriber {
        let mut options = MqttOptions::new(format!("test-{name}"), "127.0.0.1", port);
        options
            .set_clean_session(false)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut connection) = Client::new(options, 256);
        let received = Arc::new(Mutex::new(Vec::new()));
        let (sub_client, sink) = (client.clone(), received.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        for topic in ["facecast/#", "homeassistant/#"] {
                            let _ = sub_client.try_subscribe(topic, QoS::AtLeastOnce);
                        }
                    }
                    Ok(Event::Incoming(Incoming::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        sink.lock().unwrap().push(Received {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                        })
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("test subscriber connected");
        Subscriber { client, received }
    }

    fn messages(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn on(&self, topic: &str) -> Vec<Received> {
        self.messages()
            .into_iter()
            .filter(|m| m.topic == topic)
            .collect()
    }

    /// Waits until `check` holds for the messages so far.
    fn wait_for(&self, what: &str, timeout: Duration, check: impl Fn(&[Received]) -> bool) {
        let deadline = Instant::now() + timeout;
        while !check(&self.messages()) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .unwrap();
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.client.try_disconnect();
    }
}

// ---- facecast ------------------------------------------------------------------------------------

struct Facecast {
    child: Child,
    stdin: Option<ChildStdin>,
    stderr_path: PathBuf,
}

impl Facecast {
    /// `facecast run --source y4m:-` with `[mqtt]` settings; frames are written by the test.
    fn start(dir: &Path, device: &str, mqtt: &str) -> Facecast {
        let config = dir.join(format!("{device}.toml"));
        std::fs::write(
            &config,
            format!(
                "[device]\nid = \"{device}\"\n[source]\nuri = \"y4m:-\"\n\
                 [identity]\ngallery = \"{}\"\n\
                 [mqtt]\nhost = \"127.0.0.1\"\nreconnect_initial_ms = 100\n\
                 reconnect_max_ms = 800\n{mqtt}\n",
                dir.join(format!("{device}-gallery.json")).display()
            ),
        )
        .unwrap();
        let stderr_path = dir.join(format!("{device}.stderr"));
        let mut child = common::facecast_command(&["--config", config.to_str().unwrap(), "run"])
            .stdin(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        Y4mHeader::write_420(&mut stdin, FRAME_W, FRAME_H, 10).unwrap();
        Facecast {
            child,
            stdin: Some(stdin),
            stderr_path,
        }
    }

    fn send(&mut self, frame: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        write_420_frame(stdin, frame, FRAME_W, FRAME_H).unwrap();
        stdin.flush().unwrap();
    }

    /// Ends the source; facecast then stops by itself.
    fn close(&mut self) {
        self.stdin.take();
    }

    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "facecast did not stop; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Facecast {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Real photos scaled into the frame (aspect kept, on black), as RGB: one face, none, several.
fn photo_frames() -> Vec<(&'static str, Vec<u8>)> {
    [
        "face_recognition/obama.jpg",
        "dlib/dogs.jpg",
        "pyfeat/multi_face.jpg",
    ]
    .into_iter()
    .map(|name| (name, common::letterboxed_photo(name, FRAME_W, FRAME_H)))
    .collect()
}

// ---- payloads and schemas -----------------------------------------------------------------------

fn decode(payload: &[u8], cbor: bool) -> Value {
    if cbor {
        ciborium::from_reader(payload).expect("CBOR payload")
    } else {
        serde_json::from_slice(payload).expect("JSON payload")
    }
}

/// The schema file of a topic.
fn schema_for(topic: &str) -> &'static str {
    if topic.starts_with("homeassistant/") {
        return "homeassistant";
    }
    match topic.rsplit('/').next().unwrap() {
        "faces" => "faces",
        "events" => "events",
        "status" => "status",
        "stats" => "stats",
        "response" => "response",
        other => panic!("unexpected topic {topic} ({other})"),
    }
}

struct Schemas(BTreeMap<&'static str, jsonschema::Validator>);

impl Schemas {
    fn load() -> Schemas {
        let mut validators = BTreeMap::new();
        for name in [
            "faces",
            "events",
            "status",
            "stats",
            "response",
            "command",
            "homeassistant",
        ] {
            let path = common::repo().join(format!("docs/schema/{name}.json"));
            let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let validator = jsonschema::validator_for(&schema)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            validators.insert(name, validator);
        }
        Schemas(validators)
    }

    fn check(&self, schema: &str, value: &Value) {
        let errors: Vec<String> = self.0[schema]
            .iter_errors(value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{schema}: {value}\n{}",
            errors.join("\n")
        );
    }

    /// Validates every message (the Home Assistant configs are JSON whatever the encoding);
    /// returns how many per schema.
    fn check_all(&self, messages: &[Received], cbor: bool) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        // The test's own commands are not facecast's to validate.
        for message in messages.iter().filter(|m| !m.topic.ends_with("/cmd")) {
            let schema = schema_for(&message.topic);
            let value = decode(&message.payload, cbor && schema != "homeassistant");
            self.check(schema, &value);
            *counts.entry(schema).or_insert(0) += 1;
        }
        counts
    }
}

fn values(messages: &[Received], cbor: bool) -> Vec<Value> {
    messages.iter().map(|m| decode(&m.payload, cbor)).collect()
}

fn last_stats(subscriber: &Subscriber, device: &str, cbor: bool) -> Value {
    let stats = subscriber.on(&format!("facecast/{device}/stats"));
    decode(&stats.last().expect("a stats message").payload, cbor)
}

/// Bytes the faces add to a record, per face, measured on the wire: each payload's length minus
/// the length of the same record with no faces (whatever fields a face has).
fn bytes_per_face(messages: &[Received], cbor: bool) -> (usize, f64) {
    let (mut faces, mut bytes) = (0, 0);
    for message in messages {
        let empty = if cbor {
            let mut record: ciborium::Value = ciborium::from_reader(&message.payload[..]).unwrap();
            let fields = record.as_map_mut().unwrap();
            let (_, list) = fields
                .iter_mut()
                .find(|(k, _)| k.as_text() == Some("faces"))
                .unwrap();
            faces += list.as_array().unwrap().len();
            *list = ciborium::Value::Array(Vec::new());
            let mut encoded = Vec::new();
            ciborium::into_writer(&record, &mut encoded).unwrap();
            encoded.len()
        } else {
            let mut record: Value = serde_json::from_slice(&message.payload).unwrap();
            faces += record["faces"].as_array().unwrap().len();
            record["faces"] = Value::Array(Vec::new());
            serde_json::to_vec(&record).unwrap().len()
        };
        bytes += message.payload.len() - empty;
    }
    assert!(faces > 0, "no faces to measure");
    (faces, bytes as f64 / faces as f64)
}

/// The length of `value` as facecast writes it in JSON, where every fraction is an f32
/// (serde_json writes an f32 in its shortest form, which a decoded f64 would not keep).
fn json_len_as_f32(value: &Value) -> usize {
    match value {
        Value::Number(n) if n.is_f64() => serde_json::to_string(&(n.as_f64().unwrap() as f32))
            .unwrap()
            .len(),
        Value::Array(items) => {
            2 + items.iter().map(json_len_as_f32).sum::<usize>() + items.len().saturating_sub(1)
        }
        Value::Object(fields) => {
            2 + fields
                .iter()
                .map(|(k, v)| serde_json::to_string(k).unwrap().len() + 1 + json_len_as_f32(v))
                .sum::<usize>()
                + fields.len().saturating_sub(1)
        }
        other => serde_json::to_string(other).unwrap().len(),
    }
}

/// Per face, the bytes the faces of these records (`cbor`: CBOR payloads) take in JSON.
fn json_bytes_per_face(messages: &[Received], cbor: bool) -> f64 {
    let (mut faces, mut bytes) = (0, 0);
    for message in messages {
        let list = decode(&message.payload, cbor)["faces"].clone();
        let n = list.as_array().unwrap().len();
        faces += n;
        // The list without its brackets, as in bytes_per_face.
        bytes += json_len_as_f32(&list) - 2;
    }
    bytes as f64 / faces as f64
}

/// The `offline` of a clean stop (with `ts`; the last will has none) has arrived.
fn stopped_cleanly(device: &str, cbor: bool) -> impl Fn(&[Received]) -> bool + '_ {
    move |messages| {
        messages.iter().any(|m| {
            if m.topic != format!("facecast/{device}/status") {
                return false;
            }
            let status = decode(&m.payload, cbor);
            status["state"] == "offline" && status["ts"].is_number()
        })
    }
}

// ---- the tests -----------------------------------------------------------------------------------

/// 100 payloads that are not valid commands, of every kind of wrong.
fn malformed_commands() -> Vec<Vec<u8>> {
    let mut payloads: Vec<Vec<u8>> = [
        "",
        "{",
        "null",
        "[]",
        "42",
        "\"set_rate\"",
        "{}",
        "{\"id\":1}",
        "{\"id\":2,\"cmd\":null}",
        "{\"id\":3,\"cmd\":\"reboot\"}",
        "{\"id\":4,\"cmd\":\"SET_RATE\",\"rate\":\"on_change\"}",
        "{\"id\":5,\"cmd\":\"set_rate\"}",
        "{\"id\":6,\"cmd\":\"set_rate\",\"rate\":\"warp\"}",
        "{\"id\":7,\"cmd\":\"set_rate\",\"rate\":\"per_second\",\"per_second\":0}",
        "{\"id\":8,\"cmd\":\"set_rate\",\"rate\":\"per_second\",\"per_second\":1e309}",
        "{\"id\":9,\"cmd\":\"set_rate\",\"rate\":\"on_change\",\"change_iou\":1.5}",
        "{\"id\":10,\"cmd\":\"set_rate\",\"rate\":\"on_change\",\"extra\":true}",
        "{\"id\":11,\"cmd\":\"enroll\"}",
        "{\"id\":12,\"cmd\":\"enroll\",\"name\":\"A\"}",
        "{\"id\":13,\"cmd\":\"enroll\",\"name\":\"A\",\"track\":1,\"image\":\"/x.jpg\"}",
        "{\"id\":14,\"cmd\":\"enroll\",\"name\":\"\",\"track\":1}",
        "{\"id\":15,\"cmd\":\"enroll\",\"name\":\"A\",\"track\":-1}",
        "{\"id\":16,\"cmd\":\"forget\"}",
        "{\"id\":17,\"cmd\":\"forget\",\"name\":[\"A\"]}",
        "{\"id\":18,\"cmd\":\"list\",\"all\":true}",
        "{\"id\":[1],\"cmd\":\"list\"}",
        "{\"id\":1.5,\"cmd\":\"list\"}",
        "{\"cmd\":\"set_rate\",\"rate\":\"on_change\",\"cmd\":\"list\"}",
        "{\"id\":\"\u{0}\",\"cmd\":7}",
        "\u{feff}{\"id\":19,\"cmd\":\"list\"}",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    payloads.push(format!("{{\"id\":\"{}\",\"cmd\":\"list\"}}", "x".repeat(65)).into_bytes());
    payloads.push(vec![b'['; 20_000]);
    payloads.push(format!("{{\"id\":20,\"cmd\":\"{}\"}}", "a".repeat(17_000)).into_bytes());
    payloads.push(vec![0xff, 0xfe, 0x00, 0x7b]);
    payloads.push(vec![0xa1, 0x63, b'c', b'm', b'd']); // CBOR map cut short
    payloads.push(vec![0x9f; 64]); // nested indefinite CBOR arrays, never closed
                                   // Deterministic pseudo-random bytes, and valid commands cut at every length.
    let valid = br#"{"id":"cut","cmd":"set_rate","rate":"per_second","per_second":3}"#;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    while payloads.len() < 100 {
        let n = payloads.len();
        if n.is_multiple_of(2) {
            payloads.push(valid[..(n * 7) % (valid.len() - 1) + 1].to_vec());
        } else {
            let bytes = (0..(n % 40) + 1)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            payloads.push(bytes);
        }
    }
    payloads
}

#[test]
fn round_trip_commands_discovery_and_every_message_valid() {
    let dir = temp_dir("roundtrip");
    let broker = Broker::start("roundtrip", "");
    let subscriber = Subscriber::connect(broker.port, "roundtrip");
    let schemas = Schemas::load();
    let mut facecast = Facecast::start(
        &dir,
        "lobby",
        &format!(
            "port = {}\nstats_interval_ms = 300\n[mqtt.commands]\nenabled = true\n\
             [mqtt.homeassistant]\ndiscovery = true\n",
            broker.port
        ),
    );
    let status = "facecast/lobby/status";
    subscriber.wait_for("online", Duration::from_secs(60), |m| {
        m.iter()
            .any(|m| m.topic == status && decode(&m.payload, false)["state"] == "online")
    });

    let frames = photo_frames();
    for round in 0..4 {
        for (_, frame) in &frames {
            facecast.send(frame);
        }
        subscriber.wait_for("faces", Duration::from_secs(60), |m| {
            m.iter()
                .filter(|m| m.topic == "facecast/lobby/faces")
                .count()
                >= (round + 1) * 3
        });
    }

    // Commands: the valid ones, then 100 malformed ones; each is answered, none changes the rate.
    let cmd = "facecast/lobby/cmd";
    let responses = "facecast/lobby/cmd/response";
    let obama = common::images().join("face_recognition/obama.jpg");
    let enroll_photo = format!(
        r#"{{"id":2,"cmd":"enroll","name":"Barack Obama","image":"{}"}}"#,
        obama.display()
    );
    let valid = [
        r#"{"id":"list-1","cmd":"list"}"#,
        &enroll_photo,
        r#"{"id":"rate","cmd":"set_rate","rate":"on_change"}"#,
    ];
    for command in valid {
        schemas.check("command", &serde_json::from_str(command).unwrap());
    }
    subscriber.publish(cmd, valid[0]);
    subscriber.publish(cmd, valid[1]);
    let malformed = malformed_commands();
    assert_eq!(malformed.len(), 100);
    for payload in &malformed {
        subscriber.publish(cmd, payload.clone());
    }
    subscriber.publish(cmd, valid[2]);
    subscriber.wait_for("103 responses", Duration::from_secs(30), |m| {
        m.iter().filter(|m| m.topic == responses).count() >= 103
    });
    let answers = values(&subscriber.on(responses), false);
    assert_eq!(answers.len(), 103);
    assert_eq!(answers[0]["id"], "list-1");
    assert_eq!(answers[0]["ok"], true, "{}", answers[0]);
    assert_eq!(answers[0]["data"]["names"], serde_json::json!([]));
    assert_eq!(answers[1]["id"], 2);
    assert_eq!(answers[1]["ok"], true, "{}", answers[1]);
    assert_eq!(
        answers[1]["data"],
        serde_json::json!({"name": "Barack Obama", "samples": 1})
    );
    for (answer, payload) in answers[2..102].iter().zip(&malformed) {
        assert_eq!(
            answer["ok"],
            false,
            "{:?} was accepted: {answer}",
            String::from_utf8_lossy(payload)
        );
    }
    // Ids are echoed where the request had a readable one.
    assert_eq!(
        answers[5]["id"],
        Value::Null,
        "the \"42\" payload has no id"
    );
    assert_eq!(answers[2 + 9]["id"], 3);
    let last = &answers[102];
    assert_eq!(last["id"], "rate");
    assert_eq!(last["ok"], true);
    // Nothing malformed changed the rate: per_second is still the configured default.
    assert_eq!(last["data"]["per_second"], 5.0);
    assert_eq!(last["data"]["rate"], "on_change");

    // Enrol from a track: the track of the face in the last record with one.
    let faces = values(&subscriber.on("facecast/lobby/faces"), false);
    let track = faces
        .iter()
        .rev()
        .flat_map(|r| r["faces"].as_array().unwrap().iter())
        .find_map(|f| f["id"].as_u64())
        .expect("faces carry track ids");
    let gallery_commands = [
        format!(r#"{{"id":"t","cmd":"enroll","name":"Visitor","track":{track}}}"#),
        r#"{"id":"gone","cmd":"enroll","name":"Nobody","track":999999}"#.to_string(),
        r#"{"id":"f","cmd":"forget","name":"Visitor"}"#.to_string(),
        r#"{"id":"l","cmd":"list"}"#.to_string(),
    ];
    for command in &gallery_commands {
        subscriber.publish(cmd, command.as_str());
    }
    subscriber.wait_for("gallery responses", Duration::from_secs(30), |m| {
        m.iter().filter(|m| m.topic == responses).count() >= 107
    });
    let answers = values(&subscriber.on(responses), false);
    assert_eq!(answers[103]["ok"], true, "{}", answers[103]);
    assert_eq!(answers[103]["data"]["name"], "Visitor");
    assert_eq!(answers[104]["ok"], false, "{}", answers[104]);
    assert!(answers[104]["err"].as_str().unwrap().contains("999999"));
    assert_eq!(answers[105]["data"]["forgotten"], true, "{}", answers[105]);
    assert_eq!(
        answers[106]["data"]["names"],
        serde_json::json!([{"name": "Barack Obama", "samples": 1}])
    );

    // The enrolled face is recognised when its track next refreshes (refresh_frames = 30).
    for _ in 0..32 {
        facecast.send(&frames[0].1);
    }
    subscriber.wait_for("identity event", Duration::from_secs(60), |m| {
        m.iter().any(|m| {
            m.topic == "facecast/lobby/events" && decode(&m.payload, false)["t"] == "identity"
        })
    });

    // With on_change, the same frame again publishes nothing new on faces.
    let faces_before = subscriber.on("facecast/lobby/faces").len();
    facecast.send(&frames[1].1);
    facecast.send(&frames[1].1);
    facecast.send(&frames[0].1);
    subscriber.wait_for(
        "faces after the rate change",
        Duration::from_secs(30),
        |m| {
            m.iter()
                .filter(|m| m.topic == "facecast/lobby/faces")
                .count()
                > faces_before
        },
    );

    facecast.close();
    let exit = facecast.wait(Duration::from_secs(60));
    assert!(exit.success(), "{exit:?}\n{}", facecast.stderr());
    subscriber.wait_for(
        "offline",
        Duration::from_secs(10),
        stopped_cleanly("lobby", false),
    );

    let messages = subscriber.messages();
    let counts = schemas.check_all(&messages, false);
    for schema in [
        "faces",
        "events",
        "status",
        "stats",
        "response",
        "homeassistant",
    ] {
        assert!(
            counts.get(schema).is_some_and(|&n| n > 0),
            "no {schema} message: {counts:?}"
        );
    }
    assert_eq!(counts["homeassistant"], 3);

    // Faces: one per frame before the rate change; after it, only changes: the first of the 32
    // frames of obama.jpg (12), then a few where the box moved, the face count changed (dogs,
    // 44-45) and obama again (46).
    let faces = values(&subscriber.on("facecast/lobby/faces"), false);
    let seqs: Vec<u64> = faces.iter().map(|f| f["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs[..13], (0..13).collect::<Vec<u64>>());
    assert!(
        seqs.len() <= 13 + 4 && seqs.last() == Some(&46),
        "on_change let through {seqs:?}"
    );
    let face_counts: Vec<usize> = faces[..3]
        .iter()
        .map(|f| f["faces"].as_array().unwrap().len())
        .collect();
    assert_eq!(face_counts[..2], [1, 0]);
    assert!(face_counts[2] >= 3, "multi_face.jpg: {face_counts:?}");

    // Events, numbered from 0: the first frame's track starts, then its count changes; the
    // enrolled person is recognised; every visit ends with the source.
    let events = values(&subscriber.on("facecast/lobby/events"), false);
    let event_seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(event_seqs, (0..events.len() as u64).collect::<Vec<_>>());
    assert_eq!(events[0]["t"], "track_start");
    assert_eq!(events[1]["t"], "count");
    assert_eq!(
        (events[1]["n"].as_u64(), events[1]["was"].as_u64()),
        (Some(1), Some(0))
    );
    let of_kind = |t: &str| events.iter().filter(|e| e["t"] == t).collect::<Vec<_>>();
    let identities = of_kind("identity");
    assert!(
        identities.iter().all(|e| e["name"] == "Barack Obama"),
        "{identities:?}"
    );
    let (starts, ends, visits) = (
        of_kind("track_start"),
        of_kind("track_end"),
        of_kind("visit"),
    );
    assert_eq!(starts.len(), ends.len(), "every track ended: {events:?}");
    assert_eq!(starts.len(), visits.len());
    assert!(
        visits.iter().any(|v| v["name"] == "Barack Obama"),
        "{visits:?}"
    );

    // Status: retained online with version, models and digest; offline with ts at the stop.
    let statuses = values(&subscriber.on(status), false);
    let online = &statuses[0];
    assert_eq!(
        online["models"],
        serde_json::json!(["blazeface_full", "face_mesh", "iris", "dlib_resnet"])
    );
    assert_eq!(online["ver"], env!("CARGO_PKG_VERSION"));
    let offline = statuses.last().unwrap();
    assert_eq!(offline["state"], "offline");
    assert!(
        offline["ts"].is_number(),
        "a clean stop says when: {offline}"
    );

    // The final stats add up.
    let stats = last_stats(&subscriber, "lobby", false);
    let frames_analysed = stats["frames"]["ana"].as_u64().unwrap();
    // 47 frames sent; the 32 sent at once may outrun analysis, and a live source (stdin)
    // drops the oldest waiting frames then: every frame is analysed or counted as dropped.
    assert_eq!(stats["frames"]["cap"], 47);
    assert_eq!(
        frames_analysed + stats["frames"]["drop"].as_u64().unwrap(),
        47
    );
    let tracking = &stats["trk"];
    assert_eq!(tracking["visits"].as_u64(), Some(starts.len() as u64));
    assert_eq!(tracking["known"], 1);
    let f = &stats["faces"];
    assert_eq!(f["made"], f["sent"]);
    assert_eq!(
        f["made"].as_u64().unwrap() + f["skip"].as_u64().unwrap(),
        frames_analysed
    );
    assert_eq!(f["made"].as_u64().unwrap(), faces.len() as u64);
    assert_eq!(
        stats["events"]["sent"].as_u64().unwrap(),
        events.len() as u64
    );
    assert!(stats["rss_kb"].as_u64().unwrap() > 1000);

    let faces_messages = subscriber.on("facecast/lobby/faces");
    let (n, json_bytes) = bytes_per_face(&faces_messages, false);
    // The re-encoding the CBOR test compares with gives the wire's own bytes.
    assert!((json_bytes_per_face(&faces_messages, false) - json_bytes).abs() < 1e-9);
    println!("JSON: {json_bytes:.1} bytes per face over {n} faces");
    // The aim: at most 300 bytes for the default fields (docs/mqtt.md, "Size").
    assert!(json_bytes <= 300.0, "{json_bytes} bytes per face");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cbor_follows_the_same_schemas_in_fewer_bytes() {
    let dir = temp_dir("cbor");
    let broker = Broker::start("cbor", "");
    let subscriber = Subscriber::connect(broker.port, "cbor");
    let schemas = Schemas::load();
    let mut facecast = Facecast::start(
        &dir,
        "cbor-cam",
        &format!(
            "port = {}\nencoding = \"cbor\"\nstats_interval_ms = 300\n",
            broker.port
        ),
    );
    let frames = photo_frames();
    for round in 0..3 {
        for (_, frame) in &frames {
            facecast.send(frame);
        }
        // A live source drops frames analysis has no time for: wait for each batch.
        subscriber.wait_for("faces", Duration::from_secs(60), |m| {
            m.iter()
                .filter(|m| m.topic == "facecast/cbor-cam/faces")
                .count()
                >= (round + 1) * 3
        });
    }
    facecast.close();
    let exit = facecast.wait(Duration::from_secs(120));
    assert!(exit.success(), "{exit:?}\n{}", facecast.stderr());
    subscriber.wait_for(
        "offline",
        Duration::from_secs(10),
        stopped_cleanly("cbor-cam", true),
    );

    let messages = subscriber.messages();
    let counts = schemas.check_all(&messages, true);
    assert_eq!(counts.get("faces"), Some(&9), "{counts:?}");
    let faces = subscriber.on("facecast/cbor-cam/faces");
    let (n, cbor_bytes) = bytes_per_face(&faces, true);
    let json_bytes = json_bytes_per_face(&faces, true);
    let cbor_total: usize = faces.iter().map(|m| m.payload.len()).sum();
    println!(
        "CBOR: {cbor_bytes:.1} bytes per face over {n} faces (the same faces in JSON: \
         {json_bytes:.1}); {} records, {cbor_total} bytes",
        faces.len()
    );
    assert!(cbor_bytes < json_bytes);
    // 212.8 with the default fields when measured (docs/mqtt.md, "Size"): the bound catches
    // growth going unnoticed.
    assert!(cbor_bytes <= 250.0, "{cbor_bytes} bytes per face");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn last_will_when_killed_and_offline_when_stopped() {
    let dir = temp_dir("will");
    let broker = Broker::start("will", "");
    let subscriber = Subscriber::connect(broker.port, "will");
    let schemas = Schemas::load();
    let config = format!("port = {}\n", broker.port);
    let online = |device: &'static str| {
        move |m: &[Received]| {
            m.iter().any(|m| {
                m.topic == format!("facecast/{device}/status")
                    && decode(&m.payload, false)["state"] == "online"
            })
        }
    };
    let offline = |device: &'static str| {
        move |m: &[Received]| {
            m.iter().any(|m| {
                m.topic == format!("facecast/{device}/status")
                    && decode(&m.payload, false)["state"] == "offline"
            })
        }
    };

    // kill -9: no DISCONNECT, so the broker publishes the last will (offline, no ts).
    let mut killed = Facecast::start(&dir, "killed", &config);
    subscriber.wait_for("online", Duration::from_secs(60), online("killed"));
    signal(&killed.child, "KILL");
    killed.wait(Duration::from_secs(10));
    subscriber.wait_for("last will", Duration::from_secs(10), offline("killed"));
    let will = decode(
        &subscriber
            .on("facecast/killed/status")
            .last()
            .unwrap()
            .payload,
        false,
    );
    assert_eq!(
        will,
        serde_json::json!({"v": 1, "dev": "killed", "state": "offline"})
    );

    // SIGTERM: facecast says offline itself (with ts) and disconnects cleanly.
    let mut stopped = Facecast::start(&dir, "stopped", &config);
    subscriber.wait_for("online", Duration::from_secs(60), online("stopped"));
    signal(&stopped.child, "TERM");
    let exit = stopped.wait(Duration::from_secs(20));
    assert!(exit.success(), "{exit:?}\n{}", stopped.stderr());
    subscriber.wait_for(
        "offline",
        Duration::from_secs(10),
        stopped_cleanly("stopped", false),
    );
    assert!(
        broker.log().contains("facecast-stopped disconnected"),
        "a clean DISCONNECT:\n{}",
        broker.log()
    );

    // A new subscriber gets the retained status.
    let late = Subscriber::connect(broker.port, "late");
    late.wait_for("retained status", Duration::from_secs(10), |m| {
        m.iter()
            .any(|m| m.topic == "facecast/killed/status" && m.retain)
    });
    schemas.check_all(&subscriber.messages(), false);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn broker_restart_loses_no_event_and_the_counters_add_up() {
    let dir = temp_dir("restart");
    let mut broker = Broker::start("restart", "");
    let subscriber = Subscriber::connect(broker.port, "restart");
    let schemas = Schemas::load();
    // The outage is counted in frames sent at 10 a second: this test is about delivery, so
    // the face-crop attribute models, which slow each frame down, stay off.
    let mut facecast = Facecast::start(
        &dir,
        "restart",
        &format!(
            "port = {}\nstats_interval_ms = 500\nfaces_queue = 4\n\
             [attributes]\nenabled = false\n",
            broker.port
        ),
    );
    subscriber.wait_for("online", Duration::from_secs(60), |m| {
        m.iter().any(|m| m.topic == "facecast/restart/status")
    });
    // One face, none, one, none...: every frame makes a count event.
    let frames = photo_frames();
    let pace = Duration::from_millis(100);
    let mut sent = 0;
    let mut send_for = |facecast: &mut Facecast, duration: Duration| {
        let until = Instant::now() + duration;
        while Instant::now() < until {
            facecast.send(&frames[sent % 2].1);
            sent += 1;
            std::thread::sleep(pace);
        }
    };
    send_for(&mut facecast, Duration::from_secs(2));
    broker.stop();
    let outage_start = unix_now();
    send_for(&mut facecast, Duration::from_secs(4));
    let outage_end = unix_now();
    broker.run();
    send_for(&mut facecast, Duration::from_secs(2));
    facecast.close();
    let exit = facecast.wait(Duration::from_secs(60));
    assert!(exit.success(), "{exit:?}\n{}", facecast.stderr());
    subscriber.wait_for(
        "offline",
        Duration::from_secs(20),
        stopped_cleanly("restart", false),
    );

    let stderr = facecast.stderr();
    assert!(stderr.contains("lost the MQTT broker"), "{stderr}");
    let messages = subscriber.messages();
    schemas.check_all(&messages, false);
    let stats = last_stats(&subscriber, "restart", false);
    let made = stats["events"]["made"].as_u64().unwrap();
    let events = values(&subscriber.on("facecast/restart/events"), false);
    let during_outage = events
        .iter()
        .filter(|e| (outage_start..outage_end).contains(&e["ts"].as_f64().unwrap()))
        .count();
    assert!(
        during_outage >= 3,
        "{during_outage} events made while the broker was down"
    );
    assert_eq!(stats["events"]["sent"].as_u64(), Some(made), "{stats}");
    assert_eq!(stats["events"]["drop"].as_u64(), Some(0), "{stats}");
    assert_eq!(stats["events"]["q"].as_u64(), Some(0), "{stats}");
    assert!(stats["conn"].as_u64().unwrap() >= 2, "{stats}");

    // Every event arrived; repeats (sent again after the connection dropped before the
    // broker's acknowledgement) are removed by seq, as a consumer does.
    let distinct: BTreeSet<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(distinct, (0..made).collect::<BTreeSet<_>>());
    // In order: after the repeats are removed, seq only rises.
    let mut seen = BTreeSet::new();
    let first_arrivals: Vec<u64> = events
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .filter(|seq| seen.insert(*seq))
        .collect();
    assert!(
        first_arrivals.windows(2).all(|w| w[0] < w[1]),
        "{first_arrivals:?}"
    );
    println!(
        "{made} events ({during_outage} while the broker was down), {} received with {} repeats",
        events.len(),
        events.len() as u64 - made
    );

    // Faces: what was not sent was dropped oldest-first and counted.
    let faces = &stats["faces"];
    let (f_made, f_sent, f_drop) = (
        faces["made"].as_u64().unwrap(),
        faces["sent"].as_u64().unwrap(),
        faces["drop"].as_u64().unwrap(),
    );
    assert_eq!(f_made, f_sent + f_drop, "{stats}");
    assert!(
        f_drop > 0,
        "4 s without a broker at 10 fps must drop faces: {stats}"
    );
    assert_eq!(
        f_made + faces["skip"].as_u64().unwrap(),
        stats["frames"]["ana"].as_u64().unwrap()
    );
    let received_faces = subscriber.on("facecast/restart/faces").len() as u64;
    assert!(received_faces <= f_sent, "{received_faces} > {f_sent}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A CA, a broker certificate for 127.0.0.1 and a client certificate, all made here.
struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn make_ca(name: &str) -> (rcgen::CertifiedIssuer<'static, rcgen::KeyPair>, String) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let issuer =
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let pem = issuer.pem();
    (issuer, pem)
}

fn make_pki() -> Pki {
    let (ca, ca_pem) = make_ca("facecast test CA");
    let leaf = |names: Vec<String>, ip: bool, cn: &str| {
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        if ip {
            params
                .subject_alt_names
                .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
        }
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["localhost".into()], true, "127.0.0.1");
    let (client_cert, client_key) = leaf(vec![], false, "facecast-device");
    Pki {
        ca: ca_pem,
        server_cert,
        server_key,
        client_cert,
        client_key,
    }
}

#[test]
fn tls_with_test_certificates_and_a_refused_one() {
    let dir = temp_dir("tls");
    let pki = make_pki();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let ca = write("ca.pem", &pki.ca);
    let server_cert = write("server.pem", &pki.server_cert);
    let server_key = write("server.key", &pki.server_key);
    let client_cert = write("client.pem", &pki.client_cert);
    let client_key = write("client.key", &pki.client_key);
    let (_, rogue_pem) = make_ca("rogue CA");
    let rogue_ca = write("rogue.pem", &rogue_pem);

    // A plain listener for the test's subscriber, and a TLS one that requires client
    // certificates from the same CA.
    let tls_port = free_port();
    let broker = Broker::start(
        "tls",
        &format!(
            "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n\
             require_certificate true\n",
            ca.display(),
            server_cert.display(),
            server_key.display()
        ),
    );
    wait_for_port(tls_port);
    let subscriber = Subscriber::connect(broker.port, "tls");
    let tls = |device_ca: &Path| {
        format!(
            "port = {tls_port}\n[mqtt.tls]\nenabled = true\nca_file = \"{}\"\n\
             cert_file = \"{}\"\nkey_file = \"{}\"\n",
            device_ca.display(),
            client_cert.display(),
            client_key.display()
        )
    };

    let mut good = Facecast::start(&dir, "tls-good", &tls(&ca));
    subscriber.wait_for("online over TLS", Duration::from_secs(60), |m| {
        m.iter().any(|m| m.topic == "facecast/tls-good/status")
    });
    for (_, frame) in photo_frames() {
        good.send(&frame);
    }
    subscriber.wait_for("faces over TLS", Duration::from_secs(60), |m| {
        m.iter()
            .filter(|m| m.topic == "facecast/tls-good/faces")
            .count()
            == 3
    });
    signal(&good.child, "TERM");
    assert!(good.wait(Duration::from_secs(20)).success());

    // A broker whose certificate does not chain to the configured CA is refused: nothing is
    // published, the refusal is logged and retried, and the process keeps running.
    let mut refused = Facecast::start(&dir, "tls-rogue", &tls(&rogue_ca));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !refused.stderr().contains("cannot connect") {
        assert!(Instant::now() < deadline, "{}", refused.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    let stderr = refused.stderr();
    assert!(
        stderr.to_lowercase().contains("certificate"),
        "the reason is given: {stderr}"
    );
    assert!(
        stderr.matches("cannot connect").count() >= 2,
        "retried: {stderr}"
    );
    assert!(refused.child.try_wait().unwrap().is_none(), "still running");
    assert!(subscriber.on("facecast/tls-rogue/status").is_empty());
    signal(&refused.child, "TERM");
    assert!(refused.wait(Duration::from_secs(20)).success());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn stdout_stays_json_lines_without_a_broker() {
    // No [mqtt] host: the record goes to stdout as before, and no connection is tried.
    let output = common::facecast_command(&[
        "run",
        "--source",
        "image:tests/images/face_recognition/obama.jpg",
    ])
    .output()
    .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let record: Value = serde_json::from_str(stdout.trim()).unwrap();
    Schemas::load().check("faces", &record);
    assert!(!String::from_utf8_lossy(&output.stderr).contains("MQTT"));
}

#[test]
fn commands_are_off_by_default_and_heard_only_on_the_devices_own_topic() {
    let dir = temp_dir("commands-off");
    let broker = Broker::start("commands-off", "");
    let subscriber = Subscriber::connect(broker.port, "commands-off");
    let port = format!("port = {}\n", broker.port);
    // "porch" has no [mqtt.commands]: the default must be off. "hall" enables them.
    let _porch = Facecast::start(&dir, "porch", &port);
    let _hall = Facecast::start(
        &dir,
        "hall",
        &format!("{port}[mqtt.commands]\nenabled = true\n"),
    );
    for device in ["porch", "hall"] {
        let status = format!("facecast/{device}/status");
        subscriber.wait_for(device, Duration::from_secs(60), |m| {
            m.iter()
                .any(|m| m.topic == status && decode(&m.payload, false)["state"] == "online")
        });
    }
    let forget = r#"{"id":"f","cmd":"forget","name":"Nobody"}"#;
    subscriber.publish("facecast/porch/cmd", forget);
    // Another device's topic, and look-alikes of hall's own: not hall's business.
    subscriber.publish("facecast/other/cmd", forget);
    subscriber.publish("facecast/hall/cmd/extra", forget);
    subscriber.publish("facecast/hall/command", forget);
    subscriber.publish("facecast/hall/cmd", r#"{"id":"last","cmd":"list"}"#);
    subscriber.wait_for("hall's answer", Duration::from_secs(30), |m| {
        m.iter().any(|m| m.topic == "facecast/hall/cmd/response")
    });
    // Give a wrongly subscribed device time to answer too.
    std::thread::sleep(Duration::from_secs(1));
    let responses: Vec<_> = subscriber
        .messages()
        .into_iter()
        .filter(|m| m.topic.ends_with("/response"))
        .collect();
    assert_eq!(
        responses.len(),
        1,
        "{:?}",
        responses.iter().map(|m| &m.topic).collect::<Vec<_>>()
    );
    assert_eq!(decode(&responses[0].payload, false)["id"], "last");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn broker_unreachable_at_start_is_waited_for_and_nothing_queued_is_lost() {
    let dir = temp_dir("late-broker");
    let mut broker = Broker::start("late-broker", "");
    // The subscriber's session (persistent, saved by the broker when it stops) exists before
    // facecast can connect: what facecast sends the moment the broker is back is queued for it.
    // Connected only after the broker's return, it lost the queued events whenever facecast's
    // retry came first (CI, once).
    let subscriber = Subscriber::connect(broker.port, "late-broker");
    // The broker's port, with no broker on it yet.
    broker.stop();
    let mut facecast = Facecast::start(
        &dir,
        "late",
        &format!(
            "port = {}\nstats_interval_ms = 500\n[attributes]\nenabled = false\n",
            broker.port
        ),
    );
    let frames = photo_frames();
    for sent in 0..20 {
        facecast.send(&frames[sent % 2].1);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        facecast.child.try_wait().unwrap().is_none(),
        "facecast stopped without a broker:\n{}",
        facecast.stderr()
    );
    let broker_started = unix_now();
    broker.run();
    // Status is retained: seen even if facecast connected before the subscriber.
    subscriber.wait_for("online", Duration::from_secs(30), |m| {
        m.iter().any(|m| {
            m.topic == "facecast/late/status" && decode(&m.payload, false)["state"] == "online"
        })
    });
    for sent in 0..10 {
        facecast.send(&frames[sent % 2].1);
        std::thread::sleep(Duration::from_millis(100));
    }
    facecast.close();
    let exit = facecast.wait(Duration::from_secs(60));
    let stderr = facecast.stderr();
    assert!(exit.success(), "{exit:?}\n{stderr}");
    assert!(
        stderr.contains("cannot connect to the MQTT broker"),
        "{stderr}"
    );
    subscriber.wait_for(
        "offline",
        Duration::from_secs(20),
        stopped_cleanly("late", false),
    );
    let stats = last_stats(&subscriber, "late", false);
    // y4m:- is live: frames analysis could not keep up with were dropped, and counted.
    let frames_seen = &stats["frames"];
    assert_eq!(frames_seen["cap"].as_u64(), Some(30), "{stats}");
    assert_eq!(
        frames_seen["ana"].as_u64().unwrap() + frames_seen["drop"].as_u64().unwrap(),
        30,
        "{stats}"
    );
    let made = stats["events"]["made"].as_u64().unwrap();
    assert_eq!(stats["events"]["sent"].as_u64(), Some(made), "{stats}");
    assert_eq!(stats["events"]["drop"].as_u64(), Some(0), "{stats}");
    // Every event arrived, those made before there was a broker too.
    let events = values(&subscriber.on("facecast/late/events"), false);
    let distinct: BTreeSet<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(distinct, (0..made).collect::<BTreeSet<_>>());
    let before_broker = events
        .iter()
        .filter(|e| e["ts"].as_f64().unwrap() < broker_started)
        .count();
    assert!(before_broker >= 1, "no event made before the broker came");
    std::fs::remove_dir_all(&dir).unwrap();
}
