//! Faults from outside, end to end through the binary: a source that ends, stalls, is cut
//! mid-frame or loses sync; corrupt frames; a gallery write that fails; `kill -9` during
//! enrolment. Each asserts that the process survives (or stops cleanly), says what happened,
//! counts it, and loses nothing it had.
//!
//! The binary is this build's, or `FACECAST_BIN` (a copy kept apart from a shared target
//! directory that other checkouts build into).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use facecast::capture::{write_420_frame, Y4mHeader};

const FRAME_W: u32 = 320;
const FRAME_H: u32 = 240;

/// Runs facecast to the end with `stdin` fed from a thread (so full pipes cannot deadlock).
fn facecast(args: &[&str], stdin: Option<Vec<u8>>) -> Output {
    let mut command = common::facecast_command(args);
    if stdin.is_some() {
        command.stdin(Stdio::piped());
    }
    let mut child = command.spawn().unwrap();
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        });
    }
    child.wait_with_output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn seqs(records: &[serde_json::Value]) -> Vec<u64> {
    records.iter().map(|r| r["seq"].as_u64().unwrap()).collect()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("facecast-faults-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `facecast run` on a Y4M `stream` given on stdin, with `config`.
fn run_y4m(config: &Path, stream: Vec<u8>) -> Output {
    facecast(
        &[
            "--config",
            config.to_str().unwrap(),
            "run",
            "--source",
            "y4m:-",
        ],
        Some(stream),
    )
}

/// A config in `dir` that reads every frame of a stream (no live drops to muddy the counts).
fn recorded_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("facecast.toml");
    std::fs::write(&path, format!("[source]\nlive = \"recorded\"\n{extra}")).unwrap();
    path
}

/// A real photo with one face, scaled into a Y4M frame (4:2:0) on black.
fn photo_frame() -> Vec<u8> {
    let rgb = common::letterboxed_photo("face_recognition/obama.jpg", FRAME_W, FRAME_H);
    let mut bytes = Vec::new();
    write_420_frame(&mut bytes, &rgb, FRAME_W, FRAME_H).unwrap();
    bytes
}

fn y4m_header() -> Vec<u8> {
    let mut bytes = Vec::new();
    Y4mHeader::write_420(&mut bytes, FRAME_W, FRAME_H, 10).unwrap();
    bytes
}

/// The counters of the run's closing log line: captured, analysed, dropped, corrupt, failed.
fn summary(stderr: &str) -> [u64; 5] {
    let line = stderr
        .lines()
        .find(|l| l.contains("frames captured"))
        .unwrap_or_else(|| panic!("no summary line in:\n{stderr}"));
    let number_before = |word: &str| -> u64 {
        let at = line
            .find(word)
            .unwrap_or_else(|| panic!("{word} in {line}"));
        line[..at]
            .split_whitespace()
            .last()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{word} in {line}"))
    };
    [
        number_before(" frames captured"),
        number_before(" analysed"),
        number_before(" dropped"),
        number_before(" corrupt"),
        number_before(" failed"),
    ]
}

// ---- the source ---------------------------------------------------------------------------

#[test]
fn stream_cut_mid_frame_keeps_the_whole_frames_and_counts_the_cut_one() {
    let dir = temp_dir("cut");
    let config = recorded_config(&dir, "");
    let frame = photo_frame();
    let mut stream = y4m_header();
    stream.extend_from_slice(&frame);
    stream.extend_from_slice(&frame);
    // The third frame stops half way, as when ffmpeg is killed.
    stream.extend_from_slice(&frame[..frame.len() / 2]);
    let output = run_y4m(&config, stream);
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    let records = json_lines(&output.stdout);
    assert_eq!(seqs(&records), vec![0, 1], "{log}");
    assert!(records
        .iter()
        .all(|r| r["faces"].as_array().unwrap().len() == 1));
    assert!(log.contains("stream ends inside a frame"), "{log}");
    assert_eq!(summary(&log), [2, 2, 0, 1, 0], "{log}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn stream_that_ends_between_frames_or_before_any_stops_cleanly() {
    let dir = temp_dir("end");
    let config = recorded_config(&dir, "");
    let config = config.to_str().unwrap();
    let mut stream = y4m_header();
    stream.extend_from_slice(&photo_frame());
    let output = facecast(
        &["--config", config, "run", "--source", "y4m:-"],
        Some(stream),
    );
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    assert_eq!(seqs(&json_lines(&output.stdout)), vec![0]);
    assert!(log.contains("end of source"), "{log}");
    assert_eq!(summary(&log), [1, 1, 0, 0, 0], "{log}");

    // Nothing at all, then a header cut short: refused at start, with the reason.
    let output = facecast(
        &["--config", config, "run", "--source", "y4m:-"],
        Some(Vec::new()),
    );
    assert!(!output.status.success());
    assert!(stderr(&output).contains("Y4M"), "{}", stderr(&output));
    let output = facecast(
        &["--config", config, "run", "--source", "y4m:-"],
        Some(b"YUV4MPEG2 W320 H2".to_vec()),
    );
    assert!(!output.status.success());
    assert!(stderr(&output).contains("cut short"), "{}", stderr(&output));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn stalled_stream_is_waited_for_and_resumes() {
    let dir = temp_dir("stall");
    let config = recorded_config(&dir, "");
    let mut child = common::facecast_command(&[
        "--config",
        config.to_str().unwrap(),
        "run",
        "--source",
        "y4m:-",
    ])
    .stdin(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut stderr_pipe = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    let frame = photo_frame();
    stdin.write_all(&y4m_header()).unwrap();
    stdin.write_all(&frame).unwrap();
    // Half of the next frame, then nothing for a while: a network stream that stalls.
    stdin.write_all(&frame[..frame.len() / 2]).unwrap();
    stdin.flush().unwrap();
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let first: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(first["seq"], 0);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        child.try_wait().unwrap().is_none(),
        "facecast gave up on a stalled stream"
    );
    // The stream comes back: the rest of that frame and one more.
    stdin.write_all(&frame[frame.len() / 2..]).unwrap();
    stdin.write_all(&frame).unwrap();
    drop(stdin);
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).unwrap();
    let status = child.wait().unwrap();
    let log = log.join().unwrap();
    assert!(status.success(), "{log}");
    assert_eq!(seqs(&json_lines(&rest)), vec![1, 2], "{log}");
    assert_eq!(summary(&log), [3, 3, 0, 0, 0], "{log}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn broken_frame_header_stops_the_stream_with_a_clear_message() {
    let dir = temp_dir("sync");
    let config = recorded_config(&dir, "");
    let frame = photo_frame();
    let mut stream = y4m_header();
    stream.extend_from_slice(&frame);
    // A frame whose marker is damaged: every later byte is misaligned, so reading stops there
    // rather than analysing garbage.
    let mut broken = frame.clone();
    broken[..5].copy_from_slice(b"FRXME");
    stream.extend_from_slice(&broken);
    stream.extend_from_slice(&frame);
    let output = run_y4m(&config, stream);
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    assert_eq!(seqs(&json_lines(&output.stdout)), vec![0], "{log}");
    assert!(log.contains("lost frame sync"), "{log}");
    assert_eq!(summary(&log), [1, 1, 0, 0, 0], "{log}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn corrupt_images_are_skipped_named_and_counted() {
    let dir = temp_dir("corrupt");
    let photos = common::images().join("face_recognition");
    std::fs::copy(photos.join("obama.jpg"), dir.join("a.jpg")).unwrap();
    let whole = std::fs::read(photos.join("biden.jpg")).unwrap();
    // A JPEG cut in half (a copy interrupted), an empty file, random bytes named .jpg, a PNG
    // whose data is overwritten.
    std::fs::write(dir.join("b.jpg"), &whole[..whole.len() / 2]).unwrap();
    std::fs::write(dir.join("c.jpg"), b"").unwrap();
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(dir.join("d.jpg"), &noise).unwrap();
    let mut png = std::fs::read(common::images().join("skimage/astronaut.png")).unwrap();
    let middle = png.len() / 2;
    png[middle..middle + 4096].copy_from_slice(&noise);
    std::fs::write(dir.join("e.png"), &png).unwrap();
    std::fs::write(dir.join("f.jpg"), &whole).unwrap();
    let source = format!("image:{}", dir.display());
    let output = facecast(&["run", "--source", &source], None);
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    let records = json_lines(&output.stdout);
    assert_eq!(records.len(), 2, "{log}");
    for name in ["b.jpg", "c.jpg", "d.jpg", "e.png"] {
        assert!(log.contains(name), "{name} is not named in:\n{log}");
    }
    assert_eq!(summary(&log), [2, 2, 0, 4, 0], "{log}");
    std::fs::remove_dir_all(dir).unwrap();
}

// ---- the gallery --------------------------------------------------------------------------

/// A config whose gallery is `dir/gallery.json`.
fn gallery_config(dir: &Path) -> (PathBuf, PathBuf) {
    let gallery = dir.join("gallery.json");
    let config = dir.join("facecast.toml");
    std::fs::write(
        &config,
        format!("[identity]\ngallery = \"{}\"\n", gallery.display()),
    )
    .unwrap();
    (config, gallery)
}

fn enroll_args<'a>(config: &'a str, name: &'a str) -> Vec<&'a str> {
    vec![
        "--config",
        config,
        "enroll",
        "--name",
        name,
        "tests/images/face_recognition/obama2.jpg",
    ]
}

/// `facecast gallery list`: the names, or the failure.
fn gallery_list(config: &str) -> Result<Vec<String>, String> {
    let output = facecast(&["--config", config, "gallery", "list"], None);
    if !output.status.success() {
        return Err(stderr(&output));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.contains('\t'))
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect())
}

#[test]
fn failed_gallery_write_is_reported_and_the_old_gallery_stays() {
    let dir = temp_dir("gallery-write");
    let (config, gallery) = gallery_config(&dir);
    let config = config.to_str().unwrap();
    let enrolled = facecast(&enroll_args(config, "Barack Obama"), None);
    assert!(enrolled.status.success(), "{}", stderr(&enrolled));
    let before = std::fs::read(&gallery).unwrap();

    // A file-size limit below the new gallery's size: the write fails part way, as on a full
    // disk (and unlike permissions, it stops root too). SIGXFSZ is ignored so the write
    // returns EFBIG instead of killing the process; both are inherited through exec.
    let limit_blocks = 1; // 512 or 1024 bytes depending on the shell; the gallery is larger
    let script = format!("ulimit -f {limit_blocks}; trap '' XFSZ; exec \"$0\" \"$@\"",);
    let output = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(common::facecast_binary())
        .args(enroll_args(config, "Second Person"))
        .current_dir(common::repo())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let log = stderr(&output);
    assert!(!output.status.success(), "the failed save was not reported");
    assert!(log.contains(gallery.to_str().unwrap()), "{log}");
    assert!(
        log.to_lowercase().contains("too large") || log.contains("27"),
        "the reason (EFBIG) is given: {log}"
    );
    assert_eq!(std::fs::read(&gallery).unwrap(), before);
    assert_eq!(gallery_list(config).unwrap(), vec!["Barack Obama"]);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Waits for `child` up to `timeout`; whether it exited.
fn wait_up_to(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

#[test]
fn kill_9_during_enrolment_leaves_the_old_or_the_new_gallery_50_times() {
    const KILLS: usize = 50;
    let dir = temp_dir("kill");
    let (config, gallery) = gallery_config(&dir);
    let config = config.to_str().unwrap();

    // How long one enrolment takes here, to aim the kills around its save at the end: the
    // faster of two (the first one, with cold caches, once took 1.4x the later ones, and
    // every kill landed after the save). The machine's speed also moves by up to 1.5x within
    // seconds, so the delays span half a run to one and a half.
    let mut names = Vec::new();
    let mut full = Duration::MAX;
    for name in ["Person 0", "Person 1"] {
        let started = Instant::now();
        let enrolled = facecast(&enroll_args(config, name), None);
        full = full.min(started.elapsed());
        assert!(enrolled.status.success(), "{}", stderr(&enrolled));
        names.push(name.to_string());
    }

    let (mut old_kept, mut new_kept) = (0, 0);
    for attempt in 1..=KILLS {
        let before = std::fs::read(&gallery).unwrap();
        let name = format!("Person {}", attempt + 1);
        // Delays from 50% to 150% of a full run, spread evenly: the first kills land in model
        // loading and descriptor work, the last after the save, a band of them around the
        // write and rename.
        let fraction = 0.5 + (attempt - 1) as f64 / (KILLS - 1) as f64;
        let delay = full.mul_f64(fraction);
        let mut child = common::facecast_command(&enroll_args(config, &name))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if !wait_up_to(&mut child, delay) {
            child.kill().unwrap(); // SIGKILL
        }
        child.wait().unwrap();

        let bytes = std::fs::read(&gallery).unwrap();
        let people = facecast::gallery::validate_file(&bytes)
            .unwrap_or_else(|e| panic!("attempt {attempt}: the gallery no longer loads: {e}"));
        let listed = gallery_list(config)
            .unwrap_or_else(|e| panic!("attempt {attempt}: gallery list fails: {e}"));
        assert_eq!(listed.len(), people);
        if bytes == before {
            assert_eq!(listed, names, "attempt {attempt}");
            old_kept += 1;
        } else {
            names.push(name);
            assert_eq!(listed, names, "attempt {attempt}: neither old nor new");
            new_kept += 1;
        }
    }
    // A kill between creating the temporary file and renaming it leaves that file behind; it
    // is never read, but it holds descriptors: the next save removes it.
    let temporaries = || {
        std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().ends_with(".tmp")
            })
            .count()
    };
    let leftovers = temporaries();
    let removed = facecast(&["--config", config, "gallery", "remove", "Person 0"], None);
    assert!(removed.status.success(), "{}", stderr(&removed));
    assert_eq!(
        temporaries(),
        0,
        "abandoned temporary files outlive the next save"
    );
    eprintln!(
        "{KILLS} kills over {:?}-{:?}: {old_kept} left the old gallery, {new_kept} the new one, \
         {leftovers} temporary files left (removed by the next save)",
        full.mul_f64(0.5),
        full.mul_f64(1.5)
    );
    // The kills must have landed on both sides of the save for the test to mean anything.
    assert!(
        old_kept > 0 && new_kept > 0,
        "{old_kept} old, {new_kept} new"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
