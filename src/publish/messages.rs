//! Payloads of `status`, `events`, `stats` and `cmd/response` (`faces` carries
//! [`crate::record::FrameRecord`]). `docs/schema/<topic>.json` is the contract for each, and
//! tests/mqtt.rs checks every message of an end-to-end run against it. Keys are short and
//! numbers rounded for the same reason as in the frame record: size on the wire.

use serde::Serialize;

use crate::config::Encoding;
use crate::record::SCHEMA_VERSION;
use crate::track::{TrackCounts, TrackEvent};

use super::PublishError;

/// Encodes a payload as configured.
pub fn encode<T: Serialize>(encoding: Encoding, value: &T) -> Result<Vec<u8>, PublishError> {
    match encoding {
        Encoding::Json => {
            serde_json::to_vec(value).map_err(|e| PublishError::Encode(e.to_string()))
        }
        Encoding::Cbor => {
            let mut bytes = Vec::new();
            ciborium::into_writer(value, &mut bytes)
                .map_err(|e| PublishError::Encode(e.to_string()))?;
            Ok(bytes)
        }
    }
}

/// `value` rounded to `decimals` places.
pub fn round(value: f64, decimals: i32) -> f64 {
    let k = 10f64.powi(decimals);
    (value * k).round() / k
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    Online,
    Offline,
}

/// `status` (retained): `online` at each connection, `offline` at a stop or as last will.
#[derive(Debug, Serialize)]
pub struct Status<'a> {
    pub v: u32,
    pub dev: &'a str,
    pub state: Presence,
    /// When it was said; absent from the last will, which the broker sends later.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ts: Option<f64>,
    /// With `online`: facecast's version, the model ids in use, and a digest of the effective
    /// configuration (first 16 hex digits of its sha256; the password is not part of it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ver: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cfg: Option<&'a str>,
}

impl<'a> Status<'a> {
    pub fn offline(dev: &'a str, ts: Option<f64>) -> Self {
        Status {
            v: SCHEMA_VERSION,
            dev,
            state: Presence::Offline,
            ts,
            ver: None,
            models: None,
            cfg: None,
        }
    }
}

/// One message of `events`.
#[derive(Debug, Serialize)]
pub struct Event<'a> {
    pub v: u32,
    pub dev: &'a str,
    /// Event number since the process started (0, 1, ...): consumers drop repeats by it, and a
    /// gap means events were dropped (counted in `stats`).
    pub seq: u64,
    pub ts: f64,
    #[serde(flatten)]
    pub what: EventKind,
}

/// What happened: the face count changed, or something happened to a track.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum EventKind {
    /// The number of faces in the analysed frame changed from `was` to `n` at frame `frame`.
    Count { n: usize, was: usize, frame: u64 },
    /// Tracking's own events, tagged by their own `t`.
    #[serde(untagged)]
    Track(TrackEvent),
}

/// Mean and maximum of a stage's latency over the period, milliseconds (0.01 ms).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub avg: f64,
    pub max: f64,
}

/// Per-stage latencies: time in the ring between capture and analysis, analysis (detection,
/// landmarks, pose, gaze), and the frame loop's publish step (rate limit, encode, queue).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latencies {
    pub wait: Latency,
    pub ana: Latency,
    #[serde(rename = "pub")]
    pub publish: Latency,
}

/// Frame counters since the start.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct FrameCounts {
    /// Captured, analysed, dropped by the ring (analysis behind a live source), unreadable,
    /// analysis failed.
    pub cap: u64,
    pub ana: u64,
    pub drop: u64,
    pub bad: u64,
    pub fail: u64,
}

/// Counters of one topic's messages since the start: `made == sent + drop + q`, and for faces
/// `skip` counts frames the rate limit left out (not made).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct TopicCounts {
    pub made: u64,
    pub sent: u64,
    pub drop: u64,
    pub q: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip: Option<u64>,
}

/// `stats`: periodic health of the device.
#[derive(Debug, Serialize)]
pub struct Stats<'a> {
    pub v: u32,
    pub dev: &'a str,
    pub ts: f64,
    /// Seconds since the start, and seconds this report's averages cover.
    pub up: f64,
    pub dt: f64,
    /// Frames analysed per second over the period.
    pub fps: f64,
    pub lat: Latencies,
    pub frames: FrameCounts,
    /// Frames waiting in the ring now.
    pub ring: u64,
    /// Tracking: faces now, visits, visitors and recognised people since the start.
    pub trk: TrackCounts,
    pub faces: TopicCounts,
    pub events: TopicCounts,
    /// Connections to the broker made since the start.
    pub conn: u64,
    /// Resident memory, kB (`VmRSS`); absent where /proc has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_kb: Option<u64>,
    /// Hottest thermal zone, degrees Celsius (0.1); absent where the board exposes none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temp_c: Option<f64>,
}

/// `cmd/response`: the outcome of one command, with the request's `id` (null when the request
/// was too malformed to have one).
#[derive(Debug, Serialize)]
pub struct Response<'a> {
    pub v: u32,
    pub dev: &'a str,
    pub ts: f64,
    pub id: Option<&'a serde_json::Value>,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub err: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<&'a serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::track::Visit;

    #[test]
    fn events_are_flat_and_cbor_decodes_to_the_same_value() {
        let event = Event {
            v: SCHEMA_VERSION,
            dev: "cam",
            seq: 3,
            ts: 1.5,
            what: EventKind::Count {
                n: 2,
                was: 1,
                frame: 40,
            },
        };
        let json = encode(Encoding::Json, &event).unwrap();
        assert_eq!(
            String::from_utf8(json.clone()).unwrap(),
            r#"{"v":1,"dev":"cam","seq":3,"ts":1.5,"t":"count","n":2,"was":1,"frame":40}"#
        );
        let cbor = encode(Encoding::Cbor, &event).unwrap();
        assert!(cbor.len() < json.len());
        let decoded: serde_json::Value = ciborium::from_reader(cbor.as_slice()).unwrap();
        assert_eq!(
            decoded,
            serde_json::from_slice::<serde_json::Value>(&json).unwrap()
        );
    }

    #[test]
    fn track_events_carry_their_own_tag() {
        let visit = Event {
            v: SCHEMA_VERSION,
            dev: "cam",
            seq: 4,
            ts: 2.0,
            what: EventKind::Track(TrackEvent::Visit(Visit {
                track: 7,
                name: None,
                start: 1.0,
                dur: 3.5,
                att: Some(0.25),
                age: Some(34.0),
                gen: Some("female"),
                emo: Some("happy"),
            })),
        };
        assert_eq!(
            String::from_utf8(encode(Encoding::Json, &visit).unwrap()).unwrap(),
            r#"{"v":1,"dev":"cam","seq":4,"ts":2.0,"t":"visit","track":7,"start":1.0,"dur":3.5,"att":0.25,"age":34.0,"gen":"female","emo":"happy"}"#
        );
    }

    #[test]
    fn offline_status_is_minimal() {
        let json = encode(Encoding::Json, &Status::offline("cam", None)).unwrap();
        assert_eq!(json, br#"{"v":1,"dev":"cam","state":"offline"}"#);
    }
}
