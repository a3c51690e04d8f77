//! Soak: many frames through the whole pipeline (capture, detection, mesh, tracking, identity,
//! attributes, records), checking that memory stays flat and the counters add up.
//!
//! Ignored by default (20,000 frames take a long time); run it with `make soak`, or
//! `FACECAST_SOAK_FRAMES=N cargo test --release --test soak -- --ignored --nocapture`.
//! The binary is `FACECAST_BIN` when set (a release build), else this build's.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use facecast::capture::{write_420_frame, Y4mHeader};

const FRAME_W: u32 = 320;
const FRAME_H: u32 = 240;

/// Resident memory of `pid` in KiB, from /proc.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Real photos in Y4M frames: one face, two faces, none, so tracks start, end and come back.
fn clip_frames() -> Vec<Vec<u8>> {
    [
        "face_recognition/obama.jpg",
        "face_recognition/obama2.jpg",
        "face_recognition/biden.jpg",
        "dlib/dogs.jpg",
        "pyfeat/multi_face.jpg",
    ]
    .iter()
    .map(|photo| {
        let rgb = common::letterboxed_photo(photo, FRAME_W, FRAME_H);
        let mut bytes = Vec::new();
        write_420_frame(&mut bytes, &rgb, FRAME_W, FRAME_H).unwrap();
        bytes
    })
    .collect()
}

#[test]
#[ignore = "long: run with make soak"]
fn soak_memory_stays_flat_and_counters_add_up() {
    let frames: u64 = std::env::var("FACECAST_SOAK_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    // Memory is compared from here on: models loaded, ring filled, every code path run.
    let warm_up = (frames / 10).max(200).min(frames / 2);
    let dir = std::env::temp_dir().join(format!("facecast-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let gallery = dir.join("gallery.json");
    let config = dir.join("facecast.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nlive = \"recorded\"\n[identity]\ngallery = \"{}\"\n",
            gallery.display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_string();
    // Someone to recognise, so identity matching runs too.
    let enrolled = common::facecast_command(&[
        "--config",
        &config,
        "enroll",
        "--name",
        "Barack Obama",
        "tests/images/face_recognition/obama3.jpg",
    ])
    .output()
    .unwrap();
    assert!(enrolled.status.success());

    let stderr_path = dir.join("stderr");
    let mut child = common::facecast_command(&["--config", &config, "run", "--source", "y4m:-"])
        .stdin(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let clip = clip_frames();
    let writer = std::thread::spawn(move || {
        Y4mHeader::write_420(&mut stdin, FRAME_W, FRAME_H, 10).unwrap();
        // Each photo held for 7 frames, as a person stands in front of the camera.
        for i in 0..frames {
            stdin
                .write_all(&clip[(i as usize / 7) % clip.len()])
                .unwrap();
        }
    });

    let started = Instant::now();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let (mut records, mut faces, mut named) = (0u64, 0u64, 0u64);
    let (mut baseline, mut peak, mut last_sample) = (None, 0u64, Instant::now());
    let mut line = String::new();
    while stdout.read_line(&mut line).unwrap() > 0 {
        let record: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(record["seq"].as_u64(), Some(records), "{line}");
        for face in record["faces"].as_array().unwrap() {
            faces += 1;
            named += u64::from(face.get("who").is_some());
        }
        records += 1;
        line.clear();
        if records == warm_up {
            baseline = rss_kib(pid);
        }
        if baseline.is_some() && last_sample.elapsed() > Duration::from_millis(500) {
            peak = peak.max(rss_kib(pid).unwrap_or(0));
            last_sample = Instant::now();
        }
    }
    writer.join().unwrap();
    let status = child.wait().unwrap();
    let elapsed = started.elapsed();
    let log = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(status.success(), "{log}");
    let baseline = baseline.expect("RSS after warm-up");
    let growth = peak as f64 / baseline as f64 - 1.0;
    eprintln!(
        "soak: {records} frames in {elapsed:.0?} ({:.1} fps), {faces} faces ({named} named); \
         RSS {baseline} KiB after {warm_up} frames, peak {peak} KiB after ({:+.2}%)",
        records as f64 / elapsed.as_secs_f64(),
        100.0 * growth
    );
    assert_eq!(records, frames);
    let summary =
        format!("{frames} frames captured, {frames} analysed, 0 dropped, 0 corrupt, 0 failed");
    assert!(log.contains(&summary), "{log}");
    assert!(
        !log.contains(" WARN ") && !log.contains(" ERROR "),
        "warnings or errors in the log:\n{log}"
    );
    assert!(named > 0 && faces > named, "{faces} faces, {named} named");
    assert!(growth < 0.05, "RSS grew {:.2}%", 100.0 * growth);
    std::fs::remove_dir_all(dir).unwrap();
}
