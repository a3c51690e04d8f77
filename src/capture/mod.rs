//! Frame sources behind one trait: V4L2 cameras, Y4M streams (files or stdin, so anything
//! ffmpeg reads can be piped in) and still images.

mod still;
mod v4l2;
mod y4m;

use std::path::PathBuf;

use thiserror::Error;

use crate::config::{Liveness, SourceConfig};
use crate::frame::Frame;
use crate::pixel::PixelError;

pub use still::{list_images, load_into as load_image, StillImages};
pub use v4l2::{list_devices, CameraFormatInfo, CameraInfo, V4l2Camera};
pub use y4m::{write_420_frame, Y4mHeader, Y4mReader};

/// What a source's `uri` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// `v4l2:/dev/videoN`
    V4l2(PathBuf),
    /// `y4m:PATH`
    Y4mFile(PathBuf),
    /// `y4m:-`
    Y4mStdin,
    /// `image:PATH`, a file, a directory or a glob pattern.
    Images(String),
}

impl SourceSpec {
    pub fn parse(uri: &str) -> Result<SourceSpec, CaptureError> {
        let bad = |why: &str| CaptureError::BadUri(format!("{uri:?}: {why}"));
        let (scheme, rest) = uri
            .split_once(':')
            .ok_or_else(|| bad("expected v4l2:/dev/videoN, y4m:PATH, y4m:- or image:PATH"))?;
        if rest.is_empty() {
            return Err(bad("the path after the scheme is empty"));
        }
        match scheme {
            "v4l2" => Ok(SourceSpec::V4l2(rest.into())),
            "y4m" if rest == "-" => Ok(SourceSpec::Y4mStdin),
            "y4m" => Ok(SourceSpec::Y4mFile(rest.into())),
            "image" => Ok(SourceSpec::Images(rest.into())),
            _ => Err(bad("unknown scheme; expected v4l2, y4m or image")),
        }
    }

    /// Whether frames arrive in real time whether or not we keep up.
    pub fn is_live(&self, liveness: Liveness) -> bool {
        match liveness {
            Liveness::Live => true,
            Liveness::Recorded => false,
            Liveness::Auto => matches!(self, SourceSpec::V4l2(_) | SourceSpec::Y4mStdin),
        }
    }

    /// Whether reopening after a failure can bring frames back (a camera replugged), as opposed
    /// to starting a recording over or reading a closed pipe.
    pub fn can_reopen(&self) -> bool {
        matches!(self, SourceSpec::V4l2(_))
    }
}

/// What [`FrameSource::grab`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grab {
    /// The frame buffer holds a new frame.
    Frame,
    /// The source has no more frames.
    End,
}

#[derive(Debug, Error)]
pub enum CaptureError {
    #[error("bad source: {0}")]
    BadUri(String),
    /// One frame was unusable; the source itself is fine.
    #[error("corrupt frame: {0}")]
    Corrupt(String),
    /// The source failed (device unplugged, stream stalled, pipe broken).
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    /// The source delivers something facecast cannot read.
    #[error("unsupported source: {0}")]
    Unsupported(String),
}

impl CaptureError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        CaptureError::Io {
            what: what.into(),
            source,
        }
    }
}

impl From<PixelError> for CaptureError {
    fn from(e: PixelError) -> Self {
        CaptureError::Corrupt(e.to_string())
    }
}

/// A source of frames.
pub trait FrameSource: Send {
    /// What is being read, with the format actually in use, for logs.
    fn describe(&self) -> String;

    /// Fills `frame` (pixels, size and capture time; the caller numbers it) with the next frame.
    fn grab(&mut self, frame: &mut Frame) -> Result<Grab, CaptureError>;
}

/// Opens the source that `spec` names.
pub fn open(
    spec: &SourceSpec,
    config: &SourceConfig,
) -> Result<Box<dyn FrameSource>, CaptureError> {
    Ok(match spec {
        SourceSpec::V4l2(path) => Box::new(V4l2Camera::open(path, config)?),
        SourceSpec::Y4mFile(path) => {
            let file = std::fs::File::open(path)
                .map_err(|e| CaptureError::io(format!("cannot open {}", path.display()), e))?;
            Box::new(Y4mReader::new(
                std::io::BufReader::new(file),
                path.display().to_string(),
            )?)
        }
        SourceSpec::Y4mStdin => Box::new(Y4mReader::new(
            std::io::BufReader::new(std::io::stdin()),
            "stdin".into(),
        )?),
        SourceSpec::Images(pattern) => Box::new(StillImages::open(pattern)?),
    })
}
