//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use facecast::analyse::AnalysedFace;
use facecast::frame::Frame;

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn images() -> PathBuf {
    repo().join("tests/images")
}

pub fn models_dir() -> PathBuf {
    repo().join("models")
}

/// The facecast binary under test: `FACECAST_BIN` when set (a copy of one's own build, since
/// worktrees sharing a target directory overwrite each other's `target/debug/facecast`), else
/// this build's.
pub fn facecast_binary() -> PathBuf {
    std::env::var_os("FACECAST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_facecast").into())
}

/// `facecast ARGS` from the repository, logging at info level, with no stdin and its stdout and
/// stderr captured; a test changes what it needs (a piped stdin, a log file).
pub fn facecast_command(args: &[&str]) -> Command {
    let mut command = Command::new(facecast_binary());
    command
        .args(args)
        .current_dir(repo())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// A photo of tests/images scaled into a `width` x `height` frame (aspect kept, centred, on
/// black), as RGB bytes.
pub fn letterboxed_photo(photo: &str, width: u32, height: u32) -> Vec<u8> {
    let photo = image::open(images().join(photo)).unwrap();
    let scaled = photo
        .resize(width, height, image::imageops::FilterType::Triangle)
        .to_rgb8();
    let mut frame = image::RgbImage::new(width, height);
    let x = (width - scaled.width()) / 2;
    let y = (height - scaled.height()) / 2;
    image::imageops::replace(&mut frame, &scaled, x as i64, y as i64);
    frame.into_raw()
}

/// An image file as a frame.
pub fn load_frame(path: &Path) -> Frame {
    let mut frame = Frame::with_capacity(0, 0);
    facecast::capture::load_image(path, &mut frame)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    frame
}

/// The only (or the largest) face with landmarks.
pub fn main_face(faces: &[AnalysedFace]) -> &AnalysedFace {
    faces
        .iter()
        .filter(|f| f.landmarks.is_some())
        .max_by(|a, b| a.detection.bbox.area().total_cmp(&b.detection.bbox.area()))
        .expect("a face with landmarks")
}

/// Reads a JSON file.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A JSON array of numbers, as f32.
pub fn f32s(array: &serde_json::Value) -> Vec<f32> {
    array
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {array}"))
        .iter()
        .map(|v| v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")) as f32)
        .collect()
}

/// Photos with no human face in them (see tests/images/PROVENANCE.md).
pub const NO_FACE_PHOTOS: &[&str] = &[
    "dlib/dogs.jpg",
    "facedetect/640px-IceBlockNearJoekullsarlon.jpg",
    "insightface/mask_black.jpg",
    "insightface/mask_blue.jpg",
    "insightface/mask_green.jpg",
    "insightface/mask_white.jpg",
    "pyfeat/free-mountain-vector-01.jpg",
];
