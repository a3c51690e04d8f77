//! The `facecast` binary end to end, as a person or a script would use it.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use facecast::capture::{write_420_frame, Y4mHeader};

fn facecast(args: &[&str], stdin: Option<Vec<u8>>) -> Output {
    let mut child = Command::new(common::facecast_binary())
        .args(args)
        .current_dir(common::repo())
        .env("RUST_LOG", "warn")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        // Feed stdin from a thread so a full stdout pipe cannot deadlock the test.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        });
    }
    child.wait_with_output().unwrap()
}

fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("facecast-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn analyze_prints_one_record_per_image_and_draws_them() {
    let dir = temp_dir("annotate");
    let out = dir.join("grace.png");
    let output = facecast(
        &[
            "analyze",
            "tests/images/skimage/astronaut.png",
            "--annotate",
            out.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let records = json_lines(&output);
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record["v"], 1);
    assert_eq!(record["file"], "tests/images/skimage/astronaut.png");
    assert_eq!(
        (record["w"].as_u64(), record["h"].as_u64()),
        (Some(512), Some(512))
    );
    let faces = record["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 1, "{record}");
    assert_eq!(faces[0]["kp"].as_array().unwrap().len(), 6);
    let drawn = image::open(&out).unwrap();
    assert_eq!((drawn.width(), drawn.height()), (512, 512));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn run_reads_a_y4m_stream_from_stdin() {
    // A clip made of real photos, as `ffmpeg ... -f yuv4mpegpipe -` would send it.
    let (width, height) = (640, 480);
    let mut clip = Vec::new();
    Y4mHeader::write_420(&mut clip, width, height, 10).unwrap();
    let photos = [
        "face_recognition/obama.jpg",
        "dlib/dogs.jpg",
        "face_recognition/biden.jpg",
    ];
    for photo in photos {
        // Each photo scaled to fit the frame, aspect kept, on black, as ffmpeg's pad filter does.
        let photo = image::open(common::images().join(photo)).unwrap();
        let scaled = photo
            .resize(width, height, image::imageops::FilterType::Triangle)
            .to_rgb8();
        let mut frame = image::RgbImage::new(width, height);
        let (x, y) = ((width - scaled.width()) / 2, (height - scaled.height()) / 2);
        image::imageops::replace(&mut frame, &scaled, x as i64, y as i64);
        write_420_frame(&mut clip, frame.as_raw(), width, height).unwrap();
    }
    let output = facecast(&["run", "--source", "y4m:-"], Some(clip));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let records = json_lines(&output);
    let faces: Vec<usize> = records
        .iter()
        .map(|r| r["faces"].as_array().unwrap().len())
        .collect();
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![0, 1, 2]);
    assert_eq!(faces, vec![1, 0, 1]);
}

#[test]
fn run_stops_after_the_requested_frames_and_skips_corrupt_files() {
    let dir = temp_dir("corrupt");
    std::fs::copy(
        common::images().join("face_recognition/obama.jpg"),
        dir.join("a.jpg"),
    )
    .unwrap();
    std::fs::write(dir.join("b.jpg"), b"\xff\xd8 this is not really a JPEG").unwrap();
    std::fs::copy(
        common::images().join("face_recognition/biden.jpg"),
        dir.join("c.jpg"),
    )
    .unwrap();
    let source = format!("image:{}", dir.display());
    let output = facecast(&["run", "--source", &source], None);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(json_lines(&output).len(), 2);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("b.jpg"),
        "the corrupt file is named"
    );
    let output = facecast(&["run", "--source", &source, "--frames", "1"], None);
    assert_eq!(json_lines(&output).len(), 1);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_configuration_is_refused_with_file_line_and_key() {
    let dir = temp_dir("config");
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[source]\nuri = \"y4m:-\"\nframerate = 30\n").unwrap();
    let output = facecast(&["--config", path.to_str().unwrap(), "run"], None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bad.toml:3:1") && stderr.contains("framerate"),
        "{stderr}"
    );

    std::fs::write(&path, "[detector]\nmodel = \"no_such_model\"\n").unwrap();
    let output = facecast(
        &[
            "--config",
            path.to_str().unwrap(),
            "analyze",
            "tests/images/dlib/dogs.jpg",
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no_such_model") && stderr.contains("blazeface_full"),
        "{stderr}"
    );

    let output = facecast(&["run", "--source", "rtsp://camera"], None);
    assert_eq!(output.status.code(), Some(2));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn models_lists_and_verifies_the_manifest() {
    let output = facecast(&["models", "--verify"], None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("blazeface_full") && stdout.contains(" ok"),
        "{stdout}"
    );
    assert!(!stdout.contains("FAILED"), "{stdout}");
}

/// `facecast [--config CONFIG] bench` on the blink clip, each model timed `model_runs` times
/// alone: its JSON report.
fn bench_report(config: Option<&str>, model_runs: &str) -> serde_json::Value {
    let config = config.map_or(vec![], |path| vec!["--config", path]);
    let clip = "tests/images/derived/single_face_blink.y4m";
    let bench = ["bench", "--clip", clip, "--model-runs", model_runs];
    let output = facecast(&[&config[..], &bench].concat(), None);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn bench_times_the_pipeline_and_profiles_every_model_node_by_node() {
    let report = bench_report(None, "4");
    assert!(report["fps"].as_f64().unwrap() > 0.0, "{report}");
    assert_eq!(report["scope"], "full", "{report}");
    assert!(
        report["stages"]["identity"]["n"].as_u64() > Some(0),
        "{report}"
    );
    let manifest =
        facecast::model::Manifest::load(&common::models_dir()).expect("models/manifest.toml");
    for entry in &manifest.models {
        let model = &report["models"][&entry.id];
        assert!(
            model["p50"].as_f64().unwrap() > 0.0,
            "{}: {model}",
            entry.id
        );
        let (ops, nodes) = (
            model["ops"].as_array().unwrap(),
            model["nodes"].as_array().unwrap(),
        );
        assert!(
            !ops.is_empty() && !nodes.is_empty(),
            "{}: {model}",
            entry.id
        );
        // Most expensive first, and the shares are of one whole.
        for list in [ops, nodes] {
            let shares: Vec<f64> = list.iter().map(|o| o["share"].as_f64().unwrap()).collect();
            assert!(
                shares.windows(2).all(|w| w[0] >= w[1]),
                "{}: {shares:?}",
                entry.id
            );
            // Each share is rounded to three decimals: up to half a thousandth over apiece.
            let rounding = 0.0005 * shares.len() as f64;
            assert!(
                shares.iter().sum::<f64>() <= 1.0 + rounding,
                "{}: {shares:?}",
                entry.id
            );
        }
        assert!(nodes
            .iter()
            .all(|n| !n["detail"].as_str().unwrap().is_empty()));
    }
    // facecast's own operators are in the real networks' plans: every one of FaceMesh's
    // depthwise layers runs as ours, none as tract's, and its dense ones (1x1 and the first) as
    // ours, with the PRelus that follow them fused in.
    let mesh_ops: Vec<&str> = report["models"]["face_mesh"]["ops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["op"].as_str().unwrap())
        .collect();
    assert!(
        mesh_ops.contains(&"facecast.DepthwiseConv2d")
            && mesh_ops.contains(&"facecast.Conv2dPanels")
            && !mesh_ops.contains(&"DepthWiseConv")
            && !mesh_ops.contains(&"facecast.ChannelPrelu"),
        "{mesh_ops:?}"
    );
}

#[test]
fn bench_with_the_landmarks_configuration_runs_mediapipes_scope_only() {
    // benches/landmarks.toml: what mediapipe's face_mesh with iris does, timed beside it.
    let report = bench_report(Some("benches/landmarks.toml"), "0");
    assert_eq!(report["scope"], "landmarks", "{report}");
    let stages = report["stages"].as_object().unwrap();
    for stage in ["mesh", "eyes", "pose"] {
        assert!(stages.contains_key(stage), "{stage}: {report}");
    }
    for stage in ["identity", "attributes", "action_units"] {
        assert!(!stages.contains_key(stage), "{stage}: {report}");
    }
}

#[test]
fn bench_serve_times_the_models_it_is_asked_for_and_answers_bad_requests_plainly() {
    // benches/peers/peers.py paired drives it: one JSON answer per request line, in order, and a
    // bad request costs only its own answer.
    let requests =
        "gender_v1 3\nno_such_model 2\ngender_v1 x\nnonsense\ngender_v1 2\ngender_v1 2 nodes\n";
    let output = facecast(&["bench", "--serve"], Some(requests.as_bytes().to_vec()));
    assert!(output.status.success(), "{output:?}");
    let answers = json_lines(&output);
    assert_eq!(answers.len(), 6, "{answers:?}");
    let times = |answer: &serde_json::Value| -> Vec<f64> {
        let ms = answer["ms"]
            .as_array()
            .unwrap_or_else(|| panic!("{answer}"));
        ms.iter().map(|t| t.as_f64().unwrap()).collect()
    };
    for (answer, runs) in [(&answers[0], 3), (&answers[4], 2)] {
        assert_eq!(answer["id"], "gender_v1");
        let ms = times(answer);
        assert_eq!(ms.len(), runs, "{answer}");
        assert!(ms.iter().all(|&t| t > 0.0 && t < 10_000.0), "{answer}");
        assert!(answer["load_ms"].as_f64().unwrap() > 0.0, "{answer}");
    }
    // Loaded once: the second request reports the first's load time.
    assert_eq!(answers[0]["load_ms"], answers[4]["load_ms"]);
    // A profile: every node of the plan, the convolutions facecast's.
    let nodes = answers[5]["nodes"].as_array().unwrap();
    assert!(nodes.len() > 5, "{}", answers[5]);
    assert!(nodes.iter().all(|n| n["ms"].as_f64().unwrap() >= 0.0));
    assert!(nodes.iter().any(|n| n["op"] == "facecast.Conv2dPanels"));
    for (answer, says) in [
        (&answers[1], "no_such_model"),
        (&answers[2], "runs \"x\""),
        (&answers[3], "MODEL_ID RUNS"),
    ] {
        let error = answer["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{answer}"));
        assert!(error.contains(says), "{answer}");
    }
}

#[test]
fn devices_says_plainly_when_there_is_no_camera() {
    let output = facecast(&["devices"], None);
    assert!(output.status.success());
    if !std::path::Path::new("/dev/video0").exists() {
        assert!(String::from_utf8_lossy(&output.stdout).contains("no V4L2 devices"));
    }
}

#[test]
fn enroll_then_analyze_names_the_person_and_gallery_commands_manage_it() {
    let dir = temp_dir("gallery");
    let gallery = dir.join("gallery.json");
    let config = dir.join("facecast.toml");
    std::fs::write(
        &config,
        format!("[identity]\ngallery = \"{}\"\n", gallery.display()),
    )
    .unwrap();
    let config = config.to_str().unwrap();

    // A photo with several faces is refused and leaves no gallery behind.
    let refused = facecast(
        &[
            "--config",
            config,
            "enroll",
            "--name",
            "Group",
            "tests/images/pyfeat/multi_face.jpg",
        ],
        None,
    );
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("faces found"), "{stderr}");
    assert!(!gallery.exists());

    let enrolled = facecast(
        &[
            "--config",
            config,
            "enroll",
            "--name",
            "Barack Obama",
            "tests/images/face_recognition/obama.jpg",
            "tests/images/face_recognition/obama3.jpg",
        ],
        None,
    );
    assert!(
        enrolled.status.success(),
        "{}",
        String::from_utf8_lossy(&enrolled.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&gallery).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // Another photo of him is named; Biden is not.
    let analysed = facecast(
        &[
            "--config",
            config,
            "analyze",
            "tests/images/face_recognition/obama2.jpg",
            "tests/images/face_recognition/biden.jpg",
        ],
        None,
    );
    let records = json_lines(&analysed);
    assert_eq!(
        records[0]["faces"][0]["who"], "Barack Obama",
        "{}",
        records[0]
    );
    assert!(
        records[1]["faces"][0].get("who").is_none(),
        "{}",
        records[1]
    );

    let listed = facecast(&["--config", config, "gallery", "list"], None);
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    assert_eq!(listed.trim(), "Barack Obama\t2 samples");
    let removed = facecast(
        &["--config", config, "gallery", "remove", "Barack Obama"],
        None,
    );
    assert!(removed.status.success());
    let again = facecast(
        &["--config", config, "gallery", "remove", "Barack Obama"],
        None,
    );
    assert!(!again.status.success());
    std::fs::remove_dir_all(dir).unwrap();
}
