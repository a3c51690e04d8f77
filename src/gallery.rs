//! The gallery: enrolled people, each with one or more face descriptors, in one JSON file.
//!
//! The file is replaced atomically (written beside itself, flushed to disk, renamed over the
//! old one, directory synced), so a crash or a full disk leaves either the old or the new
//! gallery, never a torn one. It is created with mode 0600: descriptors identify people.
//! Descriptors only compare within one network, so the file names the model that made them
//! and refuses to be used with another (an int8 variant counts as its original).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::analyse::identity::{distance, Embedding};

/// Version of the file layout.
const FILE_VERSION: u32 = 1;
/// Longest name accepted (characters), as for MQTT commands.
pub const MAX_NAME_CHARS: usize = 64;
/// Samples kept per person: enough to cover glasses, light and pose, few enough to match fast.
pub const MAX_SAMPLES: usize = 16;

#[derive(Debug, Error)]
pub enum GalleryError {
    #[error("{path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}: cannot save the gallery ({source}); the previous gallery is unchanged")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid name {0:?}: 1 to 64 characters, not only spaces, no control characters")]
    BadName(String),
    #[error("descriptor has {got} numbers, the gallery's have {want}")]
    BadDescriptor { got: usize, want: usize },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Person {
    pub name: String,
    pub samples: Vec<Embedding>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GalleryFile {
    v: u32,
    /// The descriptor model's id (its original's id for a variant).
    model: String,
    people: Vec<Person>,
}

/// The closest enrolled person within the match distance.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub name: String,
    pub distance: f32,
}

#[derive(Debug)]
pub struct Gallery {
    path: PathBuf,
    model: String,
    people: Vec<Person>,
    /// Modification time of the file when it was last read or written, to notice other writers.
    seen_modified: Option<std::time::SystemTime>,
}

/// Checks a person's name.
pub fn check_name(name: &str) -> Result<(), GalleryError> {
    let ok = !name.trim().is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && !name.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(GalleryError::BadName(name.into()))
    }
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Gallery {
    /// Opens the gallery at `path` for descriptors of `model`; a missing file is an empty
    /// gallery (the file appears with the first enrolment).
    pub fn open(path: &Path, model: &str) -> Result<Gallery, GalleryError> {
        let mut gallery = Gallery {
            path: path.into(),
            model: model.into(),
            people: Vec::new(),
            seen_modified: None,
        };
        gallery.reload()?;
        Ok(gallery)
    }

    /// Re-reads the file (kept as it is when the file is absent).
    fn reload(&mut self) -> Result<(), GalleryError> {
        let read_error = |reason: String| GalleryError::Read {
            path: self.path.clone(),
            reason,
        };
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.people.clear();
                self.seen_modified = None;
                return Ok(());
            }
            Err(e) => return Err(read_error(e.to_string())),
        };
        let file = parse(&bytes).map_err(read_error)?;
        if file.model != self.model {
            return Err(read_error(format!(
                "holds descriptors of model {:?}, not of {:?}: enrol again with this model or \
                 configure that one",
                file.model, self.model
            )));
        }
        self.people = file.people;
        self.seen_modified = modified(&self.path);
        Ok(())
    }

    /// Re-reads the file if another process (e.g. `facecast enroll`) changed it since; a
    /// file that became unreadable keeps the gallery as it was, with a warning.
    pub fn refresh(&mut self) {
        if modified(&self.path) == self.seen_modified {
            return;
        }
        match self.reload() {
            Ok(()) => log::info!(
                "{}: gallery changed on disk; {} people",
                self.path.display(),
                self.people.len()
            ),
            Err(e) => {
                log::warn!("{e}; keeping the gallery in memory");
                self.seen_modified = modified(&self.path);
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn people(&self) -> &[Person] {
        &self.people
    }

    /// The closest person whose nearest sample is within `max_distance` of `descriptor`.
    pub fn best_match(&self, descriptor: &[f32], max_distance: f32) -> Option<Match> {
        self.people
            .iter()
            .filter_map(|person| {
                let nearest = person
                    .samples
                    .iter()
                    .map(|s| distance(s, descriptor))
                    .reduce(f32::min)?;
                Some(Match {
                    name: person.name.clone(),
                    distance: nearest,
                })
            })
            .filter(|m| m.distance <= max_distance)
            .min_by(|a, b| a.distance.total_cmp(&b.distance))
    }

    /// Adds samples to `name` (created if new) and saves. When a person would exceed
    /// [`MAX_SAMPLES`], the oldest samples go. Returns the person's sample count.
    pub fn enroll(&mut self, name: &str, samples: &[Embedding]) -> Result<usize, GalleryError> {
        check_name(name)?;
        let width = self
            .people
            .iter()
            .flat_map(|p| p.samples.first())
            .map(Vec::len)
            .next();
        for sample in samples {
            let want = width.unwrap_or(samples[0].len());
            if sample.len() != want || sample.iter().any(|v| !v.is_finite()) {
                return Err(GalleryError::BadDescriptor {
                    got: sample.len(),
                    want,
                });
            }
        }
        let mut people = self.people.clone();
        let index = match people.iter().position(|p| p.name == name) {
            Some(i) => i,
            None => {
                people.push(Person {
                    name: name.into(),
                    samples: Vec::new(),
                });
                people.len() - 1
            }
        };
        let person = &mut people[index];
        person.samples.extend_from_slice(samples);
        let excess = person.samples.len().saturating_sub(MAX_SAMPLES);
        person.samples.drain(..excess);
        let count = person.samples.len();
        self.save(people)?;
        Ok(count)
    }

    /// Removes `name` and saves; whether it was there.
    pub fn forget(&mut self, name: &str) -> Result<bool, GalleryError> {
        let people: Vec<Person> = self
            .people
            .iter()
            .filter(|p| p.name != name)
            .cloned()
            .collect();
        if people.len() == self.people.len() {
            return Ok(false);
        }
        self.save(people)?;
        Ok(true)
    }

    /// Writes `people` to the file atomically, then adopts them; on failure nothing changes.
    fn save(&mut self, people: Vec<Person>) -> Result<(), GalleryError> {
        let file = GalleryFile {
            v: FILE_VERSION,
            model: self.model.clone(),
            people,
        };
        let bytes = serde_json::to_vec(&file).expect("a gallery always serialises");
        write_atomically(&self.path, &bytes).map_err(|source| GalleryError::Write {
            path: self.path.clone(),
            source,
        })?;
        self.people = file.people;
        self.seen_modified = modified(&self.path);
        Ok(())
    }
}

/// Reads a gallery file's bytes (outside input: bounded checks, no panics).
fn parse(bytes: &[u8]) -> Result<GalleryFile, String> {
    let file: GalleryFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if file.v != FILE_VERSION {
        return Err(format!(
            "gallery file version {} (this facecast reads {FILE_VERSION})",
            file.v
        ));
    }
    let width = file.people.iter().flat_map(|p| p.samples.first()).next();
    for person in &file.people {
        check_name(&person.name).map_err(|e| e.to_string())?;
        if file.people.iter().filter(|p| p.name == person.name).count() > 1 {
            return Err(format!("{:?} is in the gallery twice", person.name));
        }
        for sample in &person.samples {
            if Some(sample.len()) != width.map(Vec::len) || sample.iter().any(|v| !v.is_finite()) {
                return Err(format!("{:?} has a malformed descriptor", person.name));
            }
        }
    }
    Ok(file)
}

/// Checks bytes as a gallery file; for fuzzing and tools.
pub fn validate_file(bytes: &[u8]) -> Result<usize, String> {
    parse(bytes).map(|f| f.people.len())
}

/// Replaces `path` with `bytes` so that readers see the old or the new content, never part.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    remove_abandoned_temporaries(dir, &name);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        // The rename itself is durable once the directory is.
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

/// Removes the temporary files of saves whose process died before renaming them (power cut,
/// `kill -9`): never read back, they still hold descriptors, which erasing must not leave
/// behind. Files of live processes (a save under way) are left alone.
fn remove_abandoned_temporaries(dir: &Path, name: &str) {
    let prefix = format!(".{name}.");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .and_then(|f| f.strip_suffix(".tmp"))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            if let Err(e) = std::fs::remove_file(entry.path()) {
                log::warn!("cannot remove {}: {e}", entry.path().display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("facecast-gallery-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn sample(v: f32) -> Embedding {
        vec![v; 4]
    }

    #[test]
    fn enrol_match_forget_round_trip_through_the_file() {
        let dir = temp_dir("round-trip");
        let path = dir.join("gallery.json");
        let mut gallery = Gallery::open(&path, "m").unwrap();
        assert!(gallery.people().is_empty() && !path.exists());
        assert_eq!(
            gallery.enroll("Ada", &[sample(0.0), sample(0.1)]).unwrap(),
            2
        );
        gallery.enroll("Bob", &[sample(1.0)]).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let reopened = Gallery::open(&path, "m").unwrap();
        assert_eq!(reopened.people(), gallery.people());
        // sample(0.12) is 0.04 from Ada's nearest sample, 1.76 from Bob's.
        let found = reopened.best_match(&sample(0.12), 0.6).unwrap();
        assert_eq!(found.name, "Ada");
        assert!((found.distance - 0.04).abs() < 1e-5);
        assert_eq!(reopened.best_match(&sample(0.55), 0.6), None);

        assert!(gallery.forget("Ada").unwrap());
        assert!(!gallery.forget("Ada").unwrap());
        assert_eq!(Gallery::open(&path, "m").unwrap().people().len(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_names_descriptors_and_files_are_refused() {
        let dir = temp_dir("refused");
        let path = dir.join("gallery.json");
        let mut gallery = Gallery::open(&path, "m").unwrap();
        for name in ["", "   ", "a\nb", &"x".repeat(65)] {
            assert!(gallery.enroll(name, &[sample(0.0)]).is_err(), "{name:?}");
        }
        gallery.enroll("Ada", &[sample(0.0)]).unwrap();
        assert!(gallery.enroll("Ada", &[vec![0.0; 3]]).is_err());
        assert!(gallery.enroll("Ada", &[vec![f32::NAN; 4]]).is_err());
        // Another model's gallery is refused with both names in the message.
        let other = Gallery::open(&path, "other").unwrap_err().to_string();
        assert!(
            other.contains("\"m\"") && other.contains("\"other\""),
            "{other}"
        );
        for bad in [
            &b"not json"[..],
            br#"{"v":2,"model":"m","people":[]}"#,
            br#"{"v":1,"model":"m","people":[{"name":"A","samples":[[1,2],[1]]}]}"#,
            br#"{"v":1,"model":"m","people":[{"name":"A","samples":[]},{"name":"A","samples":[]}]}"#,
        ] {
            assert!(validate_file(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_failed_save_leaves_the_old_gallery() {
        let dir = temp_dir("read-only");
        let path = dir.join("gallery.json");
        let mut gallery = Gallery::open(&path, "m").unwrap();
        gallery.enroll("Ada", &[sample(0.0)]).unwrap();
        let before = std::fs::read(&path).unwrap();
        // A directory where the temporary file would go makes the write fail, as a full or
        // read-only disk would (permissions do not stop root, who runs the tests in CI).
        let blocker = dir.join(format!(".gallery.json.{}.tmp", std::process::id()));
        std::fs::create_dir(&blocker).unwrap();
        let error = gallery.enroll("Bob", &[sample(1.0)]).unwrap_err();
        assert!(error.to_string().contains("unchanged"), "{error}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(gallery.people().len(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_save_removes_temporaries_left_by_dead_processes_only() {
        let dir = temp_dir("abandoned");
        let path = dir.join("gallery.json");
        // Beyond Linux's largest pid (2^22): no such process.
        let abandoned = dir.join(".gallery.json.4194305.tmp");
        // pid 1 is always alive: its save may be under way.
        let live = dir.join(".gallery.json.1.tmp");
        let unrelated = dir.join(".other.json.4194305.tmp");
        for file in [&abandoned, &live, &unrelated] {
            std::fs::write(file, b"{}").unwrap();
        }
        let mut gallery = Gallery::open(&path, "m").unwrap();
        gallery.enroll("Ada", &[sample(0.0)]).unwrap();
        assert!(!abandoned.exists());
        assert!(live.exists() && unrelated.exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn oldest_samples_go_beyond_the_limit() {
        let dir = temp_dir("limit");
        let mut gallery = Gallery::open(&dir.join("g.json"), "m").unwrap();
        let samples: Vec<Embedding> = (0..MAX_SAMPLES + 3).map(|i| sample(i as f32)).collect();
        assert_eq!(gallery.enroll("Ada", &samples).unwrap(), MAX_SAMPLES);
        assert_eq!(gallery.people()[0].samples[0], sample(3.0));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
