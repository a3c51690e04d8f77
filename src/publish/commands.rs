//! Remote commands on `cmd`, answered on `cmd/response` with the request's `id`.
//!
//! A request is a JSON (or CBOR) object: `{"id": "42", "cmd": "set_rate", ...}`. It is checked
//! completely (size, shape, id, command name, every field and its range) before anything
//! changes; a request that fails any check gets `ok: false` with the reason and changes
//! nothing. Parsing is serde on bounded input, so no payload can panic the process.
//!
//! The gallery commands (`enroll`, `forget`, `list`) go through the [`GalleryCommands`] trait, which
//! the identity module implements; until it exists, [`NoGallery`] answers each with
//! "identity is not available in this build".

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use thiserror::Error;

use crate::config::{FacesConfig, FacesRate};

use super::rate::FacesGate;

/// Larger payloads are refused unread.
pub const MAX_COMMAND_BYTES: usize = 16 * 1024;
const MAX_ID_CHARS: usize = 64;
const MAX_NAME_CHARS: usize = 64;

/// One person in the gallery.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GalleryEntry {
    pub name: String,
    /// Face samples stored for this person.
    pub samples: u32,
}

/// Where an enrolment takes its face from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EnrollFrom<'a> {
    /// The faces seen so far in a live track.
    Track(u64),
    /// An image file on the device.
    Image(&'a Path),
}

#[derive(Debug, Error)]
pub enum GalleryError {
    #[error("identity is not available in this build")]
    Unavailable,
    #[error("{0}")]
    Failed(String),
}

/// The known identities, as the commands see them.
pub trait GalleryCommands: Send {
    fn enroll(&mut self, name: &str, from: EnrollFrom<'_>) -> Result<GalleryEntry, GalleryError>;
    /// Whether `name` was there.
    fn forget(&mut self, name: &str) -> Result<bool, GalleryError>;
    fn list(&self) -> Result<Vec<GalleryEntry>, GalleryError>;
}

/// The gallery of a build without identity: every command is refused.
pub struct NoGallery;

impl GalleryCommands for NoGallery {
    fn enroll(&mut self, _: &str, _: EnrollFrom<'_>) -> Result<GalleryEntry, GalleryError> {
        Err(GalleryError::Unavailable)
    }

    fn forget(&mut self, _: &str) -> Result<bool, GalleryError> {
        Err(GalleryError::Unavailable)
    }

    fn list(&self) -> Result<Vec<GalleryEntry>, GalleryError> {
        Err(GalleryError::Unavailable)
    }
}

/// The commands, as the `cmd` field names them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Enrol `name` from a live track or from an image file on the device (exactly one).
    Enroll {
        name: String,
        #[serde(default)]
        track: Option<u64>,
        #[serde(default)]
        image: Option<PathBuf>,
    },
    Forget {
        name: String,
    },
    /// A struct variant, not a unit one: serde ignores unknown fields of unit variants.
    List {},
    /// Change the `faces` rate; absent numbers keep their current value.
    SetRate {
        rate: FacesRate,
        #[serde(default)]
        per_second: Option<f32>,
        #[serde(default)]
        change_iou: Option<f32>,
    },
}

/// A request that was understood.
#[derive(Debug, PartialEq)]
pub struct Request {
    pub id: Option<Value>,
    pub command: Command,
}

/// The answer to one payload: the request's id (if it had a usable one) and the outcome.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    pub id: Option<Value>,
    pub result: Result<Value, String>,
}

/// Reads a payload into a request, or says why not (with the id when one was readable).
pub fn parse(payload: &[u8]) -> Result<Request, Outcome> {
    let refuse = |id: Option<Value>, reason: String| Outcome {
        id,
        result: Err(reason),
    };
    if payload.len() > MAX_COMMAND_BYTES {
        return Err(oversized(payload.len()));
    }
    let value = decode(payload).map_err(|reason| refuse(None, reason))?;
    let Value::Object(mut fields) = value else {
        return Err(refuse(None, "a command is an object with \"cmd\"".into()));
    };
    let id = match fields.remove("id") {
        None => None,
        Some(id @ Value::String(_))
            if id
                .as_str()
                .is_some_and(|s| s.chars().count() <= MAX_ID_CHARS) =>
        {
            Some(id)
        }
        Some(id @ Value::Number(_)) if id.is_i64() || id.is_u64() => Some(id),
        Some(_) => {
            return Err(refuse(
                None,
                format!(
                    "\"id\" must be a string of at most {MAX_ID_CHARS} characters or an integer"
                ),
            ))
        }
    };
    let command: Command = serde_json::from_value(Value::Object(fields))
        .map_err(|e| refuse(id.clone(), e.to_string()))?;
    validate(&command).map_err(|reason| refuse(id.clone(), reason))?;
    Ok(Request { id, command })
}

/// The answer to a payload of `bytes` bytes, over [`MAX_COMMAND_BYTES`].
pub fn oversized(bytes: usize) -> Outcome {
    Outcome {
        id: None,
        result: Err(format!(
            "command of {bytes} bytes; at most {MAX_COMMAND_BYTES}"
        )),
    }
}

/// JSON when the payload looks like a JSON object, CBOR otherwise.
fn decode(payload: &[u8]) -> Result<Value, String> {
    let first = payload.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{') {
        serde_json::from_slice(payload).map_err(|e| format!("not valid JSON: {e}"))
    } else {
        let mut rest = payload;
        let value = ciborium::from_reader(&mut rest).map_err(|e| {
            let why = match e {
                ciborium::de::Error::Io(_) => "it ends early".to_string(),
                ciborium::de::Error::Syntax(at) => format!("syntax error at byte {at}"),
                ciborium::de::Error::Semantic(_, why) => why,
                ciborium::de::Error::RecursionLimitExceeded => "nested too deeply".into(),
            };
            format!("neither a JSON object nor valid CBOR: {why}")
        })?;
        if !rest.is_empty() {
            return Err(format!(
                "neither a JSON object nor valid CBOR: extra bytes after the CBOR value ({})",
                rest.len()
            ));
        }
        Ok(value)
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if chars == 0
        || chars > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
        || name.trim() != name
    {
        return Err(format!(
            "\"name\" must be 1 to {MAX_NAME_CHARS} characters, no control characters, no \
             leading or trailing spaces"
        ));
    }
    Ok(())
}

fn validate(command: &Command) -> Result<(), String> {
    match command {
        Command::Enroll { name, track, image } => {
            check_name(name)?;
            match (track, image) {
                (Some(_), None) => Ok(()),
                (None, Some(path)) if !path.as_os_str().is_empty() => Ok(()),
                _ => Err("enroll needs exactly one of \"track\" or \"image\" (a file path)".into()),
            }
        }
        Command::Forget { name } => check_name(name),
        Command::List {} => Ok(()),
        Command::SetRate {
            per_second,
            change_iou,
            ..
        } => {
            if let Some(n) = per_second {
                if !(0.01..=240.0).contains(n) {
                    return Err(format!(
                        "\"per_second\" must be between 0.01 and 240, got {n}"
                    ));
                }
            }
            if let Some(iou) = change_iou {
                if !(*iou > 0.0 && *iou <= 1.0) {
                    return Err(format!("\"change_iou\" must be in (0, 1], got {iou}"));
                }
            }
            Ok(())
        }
    }
}

/// Carries out commands against the gallery and the `faces` rate.
pub struct CommandHandler {
    gallery: Box<dyn GalleryCommands>,
    faces_gate: Arc<Mutex<FacesGate>>,
}

impl CommandHandler {
    pub fn new(gallery: Box<dyn GalleryCommands>, faces_gate: Arc<Mutex<FacesGate>>) -> Self {
        CommandHandler {
            gallery,
            faces_gate,
        }
    }

    /// Parses and carries out one payload.
    pub fn handle(&mut self, payload: &[u8]) -> Outcome {
        match parse(payload) {
            Ok(request) => Outcome {
                result: self.execute(request.command),
                id: request.id,
            },
            Err(refused) => refused,
        }
    }

    fn execute(&mut self, command: Command) -> Result<Value, String> {
        let gallery_error = |e: GalleryError| e.to_string();
        match command {
            Command::Enroll { name, track, image } => {
                let from = match (&track, &image) {
                    (Some(track), _) => EnrollFrom::Track(*track),
                    (None, Some(path)) => EnrollFrom::Image(path),
                    (None, None) => return Err("enroll needs \"track\" or \"image\"".into()),
                };
                let entry = self.gallery.enroll(&name, from).map_err(gallery_error)?;
                serde_json::to_value(entry).map_err(|e| e.to_string())
            }
            Command::Forget { name } => {
                let existed = self.gallery.forget(&name).map_err(gallery_error)?;
                Ok(json!({ "name": name, "forgotten": existed }))
            }
            Command::List {} => {
                let entries = self.gallery.list().map_err(gallery_error)?;
                let entries = serde_json::to_value(entries).map_err(|e| e.to_string())?;
                Ok(json!({ "names": entries }))
            }
            Command::SetRate {
                rate,
                per_second,
                change_iou,
            } => {
                // A poisoned lock still holds a valid rate setting.
                let mut gate = self.faces_gate.lock().unwrap_or_else(|e| e.into_inner());
                let current = gate.config().clone();
                let config = FacesConfig {
                    rate,
                    per_second: per_second.unwrap_or(current.per_second),
                    change_iou: change_iou.unwrap_or(current.change_iou),
                };
                log::info!("faces rate set to {config:?} by command");
                gate.set(config.clone());
                Ok(rate_data(&config))
            }
        }
    }
}

fn rate_data(config: &FacesConfig) -> Value {
    let rate = match config.rate {
        FacesRate::EveryFrame => "every_frame",
        FacesRate::PerSecond => "per_second",
        FacesRate::OnChange => "on_change",
    };
    let mut data = Map::new();
    data.insert("rate".into(), rate.into());
    data.insert("per_second".into(), json!(config.per_second));
    data.insert("change_iou".into(), json!(config.change_iou));
    Value::Object(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handler() -> (CommandHandler, Arc<Mutex<FacesGate>>) {
        let gate = Arc::new(Mutex::new(FacesGate::new(&FacesConfig::default())));
        (CommandHandler::new(Box::new(NoGallery), gate.clone()), gate)
    }

    #[test]
    fn set_rate_changes_the_rate_and_answers_with_it() {
        let (mut handler, gate) = handler();
        let outcome =
            handler.handle(br#"{"id":"a1","cmd":"set_rate","rate":"per_second","per_second":2}"#);
        assert_eq!(outcome.id, Some(json!("a1")));
        assert_eq!(
            outcome.result,
            Ok(json!({"rate":"per_second","per_second":2.0,"change_iou":0.5}))
        );
        assert_eq!(gate.lock().unwrap().config().rate, FacesRate::PerSecond);
    }

    #[test]
    fn gallery_commands_say_identity_is_not_available() {
        let (mut handler, _) = handler();
        for payload in [
            r#"{"id":1,"cmd":"enroll","name":"Ada","track":3}"#,
            r#"{"id":1,"cmd":"enroll","name":"Ada","image":"/data/ada.jpg"}"#,
            r#"{"id":1,"cmd":"forget","name":"Ada"}"#,
            r#"{"id":1,"cmd":"list"}"#,
        ] {
            let outcome = handler.handle(payload.as_bytes());
            assert_eq!(outcome.id, Some(json!(1)));
            assert_eq!(
                outcome.result,
                Err("identity is not available in this build".into()),
                "{payload}"
            );
        }
    }

    #[test]
    fn malformed_requests_are_refused_and_change_nothing() {
        let (mut handler, gate) = handler();
        let cases: [(&[u8], Option<Value>, &str); 14] = [
            (
                br#"{"id":7,"cmd":"list","all":true}"#,
                Some(json!(7)),
                "unknown field",
            ),
            (
                br#"{"id":7,"cmd":"forget","name":"A","x":0}"#,
                Some(json!(7)),
                "unknown field",
            ),
            (b"", None, "CBOR"),
            (b"{\"cmd\":", None, "not valid JSON"),
            (b"[1,2]", None, "CBOR"),
            (b"\"set_rate\"", None, "CBOR"),
            (br#"{"id":{"a":1},"cmd":"list"}"#, None, "\"id\""),
            (
                br#"{"id":"x","cmd":"reboot"}"#,
                Some(json!("x")),
                "unknown variant",
            ),
            (br#"{"id":"x"}"#, Some(json!("x")), "missing field `cmd`"),
            (
                br#"{"id":7,"cmd":"set_rate","rate":"fast"}"#,
                Some(json!(7)),
                "unknown variant",
            ),
            (
                br#"{"id":7,"cmd":"set_rate","rate":"per_second","per_second":-1}"#,
                Some(json!(7)),
                "per_second",
            ),
            (
                br#"{"id":7,"cmd":"set_rate","rate":"on_change","bogus":1}"#,
                Some(json!(7)),
                "unknown field",
            ),
            (
                br#"{"id":7,"cmd":"enroll","name":"A"}"#,
                Some(json!(7)),
                "exactly one",
            ),
            (
                br#"{"id":7,"cmd":"forget","name":""}"#,
                Some(json!(7)),
                "\"name\"",
            ),
        ];
        for (payload, id, reason) in cases {
            let outcome = handler.handle(payload);
            assert_eq!(outcome.id, id, "{}", String::from_utf8_lossy(payload));
            let err = outcome.result.unwrap_err();
            assert!(
                err.contains(reason),
                "{}: {err}",
                String::from_utf8_lossy(payload)
            );
        }
        // CBOR headers announcing 2^64 - 1 bytes, text characters, items and pairs.
        for header in [0x5b, 0x7b, 0x9b, 0xbb] {
            let mut payload = vec![header];
            payload.extend([0xff; 8]);
            assert!(handler.handle(&payload).result.is_err());
        }
        let big = vec![b' '; MAX_COMMAND_BYTES + 1];
        assert!(handler.handle(&big).result.unwrap_err().contains("bytes"));
        assert_eq!(*gate.lock().unwrap().config(), FacesConfig::default());
    }

    #[test]
    fn cbor_requests_are_understood() {
        let mut payload = Vec::new();
        ciborium::into_writer(
            &json!({"id": 5, "cmd": "set_rate", "rate": "on_change"}),
            &mut payload,
        )
        .unwrap();
        let (mut handler, gate) = handler();
        assert!(handler.handle(&payload).result.is_ok());
        assert_eq!(gate.lock().unwrap().config().rate, FacesRate::OnChange);
    }
}
