//! V4L2 cameras through the `v4l` crate: format negotiation and mmap streaming.
//!
//! There is no /dev/video* on the development machine; everything below the ioctls (format
//! choice, stride handling, pixel conversion) is tested without one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use v4l::buffer::Type;
use v4l::format::quantization::Quantization;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, FourCC};

use super::{CaptureError, FrameSource, Grab};
use crate::config::{CameraFormat, SourceConfig};
use crate::frame::Frame;
use crate::pixel::{self, PixelFormat, Range};

/// Buffers the driver fills while we convert; 4 is what most UVC drivers are happy with.
const DRIVER_BUFFERS: u32 = 4;
/// A camera that delivers nothing for this long is treated as lost and reopened.
const FRAME_TIMEOUT: Duration = Duration::from_secs(3);

/// The formats facecast reads, in the order `auto` prefers them: uncompressed first (no decode
/// cost, no JPEG artefacts), then MJPEG (what cheap USB cameras offer at high resolutions).
const PREFERENCE: [(CameraFormat, [u8; 4], PixelFormat); 4] = [
    (CameraFormat::Yuyv, *b"YUYV", PixelFormat::Yuyv),
    (CameraFormat::Mjpeg, *b"MJPG", PixelFormat::Mjpeg),
    (CameraFormat::Nv12, *b"NV12", PixelFormat::Nv12),
    (CameraFormat::Grey, *b"GREY", PixelFormat::Grey),
];

/// Picks the fourcc to request: the configured one if offered, else (auto) the first preferred
/// one the camera offers.
pub fn choose_format(
    wanted: CameraFormat,
    offered: &[[u8; 4]],
) -> Result<([u8; 4], PixelFormat), String> {
    let candidates = PREFERENCE
        .iter()
        .filter(|(name, _, _)| wanted == CameraFormat::Auto || *name == wanted);
    for (_, fourcc, format) in candidates {
        if offered.contains(fourcc) {
            return Ok((*fourcc, *format));
        }
    }
    let offered: Vec<String> = offered
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    Err(format!(
        "camera offers {offered:?}; facecast reads YUYV, MJPG, NV12 and GREY (asked for {wanted:?})"
    ))
}

fn pixel_format_of(fourcc: [u8; 4]) -> Option<PixelFormat> {
    PREFERENCE
        .iter()
        .find(|(_, f, _)| *f == fourcc)
        .map(|(_, _, p)| *p)
}

/// Copies rows of `row_bytes` out of a buffer whose rows are `stride` bytes apart.
pub fn unpad_rows(src: &[u8], stride: usize, row_bytes: usize, rows: usize, dst: &mut Vec<u8>) {
    dst.clear();
    for row in src.chunks(stride).take(rows) {
        dst.extend_from_slice(&row[..row_bytes.min(row.len())]);
    }
}

pub struct V4l2Camera {
    path: PathBuf,
    // Field order matters: the stream must be dropped before the device it streams from.
    stream: Option<Stream<'static>>,
    _device: Device,
    width: u32,
    height: u32,
    fourcc: [u8; 4],
    format: PixelFormat,
    range: Range,
    stride: usize,
    unpadded: Vec<u8>,
}

impl V4l2Camera {
    pub fn open(path: &Path, config: &SourceConfig) -> Result<Self, CaptureError> {
        let what = |step: &str| format!("{}: {step}", path.display());
        let device = Device::with_path(path).map_err(|e| CaptureError::io(what("open"), e))?;
        let offered: Vec<[u8; 4]> = device
            .enum_formats()
            .map_err(|e| CaptureError::io(what("list formats"), e))?
            .iter()
            .map(|d| d.fourcc.repr)
            .collect();
        let (fourcc, _) =
            choose_format(config.format, &offered).map_err(CaptureError::Unsupported)?;
        let mut request = device
            .format()
            .map_err(|e| CaptureError::io(what("get format"), e))?;
        request.width = config.width;
        request.height = config.height;
        request.fourcc = FourCC::new(&fourcc);
        let granted = device
            .set_format(&request)
            .map_err(|e| CaptureError::io(what("set format"), e))?;
        let format = pixel_format_of(granted.fourcc.repr).ok_or_else(|| {
            CaptureError::Unsupported(format!("driver granted format {} instead", granted.fourcc))
        })?;
        let params = device
            .set_params(&v4l::video::capture::Parameters::with_fps(config.fps))
            .map_err(|e| CaptureError::io(what("set frame rate"), e))?;
        log::info!(
            "{}: asked for {}x{} {} at {} fps; driver granted {}x{} {} at {}/{} s per frame",
            path.display(),
            config.width,
            config.height,
            String::from_utf8_lossy(&fourcc),
            config.fps,
            granted.width,
            granted.height,
            granted.fourcc,
            params.interval.numerator,
            params.interval.denominator
        );
        let mut stream = Stream::with_buffers(&device, Type::VideoCapture, DRIVER_BUFFERS)
            .map_err(|e| CaptureError::io(what("start mmap streaming"), e))?;
        stream.set_timeout(FRAME_TIMEOUT);
        let range = match granted.quantization {
            Quantization::FullRange => Range::Full,
            _ => Range::Limited,
        };
        Ok(V4l2Camera {
            path: path.into(),
            stream: Some(stream),
            _device: device,
            width: granted.width,
            height: granted.height,
            fourcc: granted.fourcc.repr,
            format,
            range,
            stride: granted.stride as usize,
            unpadded: Vec::new(),
        })
    }
}

impl Drop for V4l2Camera {
    fn drop(&mut self) {
        // v4l's stream panics in drop when stopping fails with anything but ENODEV (a camera
        // in a bad state); a failing camera must not take the process down with it.
        if let Some(stream) = self.stream.take() {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(stream))).is_err() {
                log::warn!("{}: stopping the stream failed", self.path.display());
            }
        }
    }
}

impl FrameSource for V4l2Camera {
    fn describe(&self) -> String {
        format!(
            "v4l2:{} {}x{} {} ({:?} range)",
            self.path.display(),
            self.width,
            self.height,
            String::from_utf8_lossy(&self.fourcc),
            self.range
        )
    }

    fn grab(&mut self, frame: &mut Frame) -> Result<Grab, CaptureError> {
        let stream = self
            .stream
            .as_mut()
            .expect("stream lives as long as the camera");
        let (buffer, meta) = stream
            .next()
            .map_err(|e| CaptureError::io(format!("{}: capture", self.path.display()), e))?;
        let used = (meta.bytesused as usize).min(buffer.len());
        let data = &buffer[..used];
        let rgb = frame.resize(self.width, self.height);
        let packed_row = match self.format {
            PixelFormat::Yuyv => self.width as usize * 2,
            PixelFormat::Grey | PixelFormat::Nv12 => self.width as usize,
            _ => self.stride,
        };
        if self.format != PixelFormat::Mjpeg && self.stride > packed_row {
            let rows = match self.format {
                PixelFormat::Nv12 => self.height as usize * 3 / 2,
                _ => self.height as usize,
            };
            unpad_rows(data, self.stride, packed_row, rows, &mut self.unpadded);
            pixel::to_rgb(
                self.format,
                self.range,
                &self.unpadded,
                self.width,
                self.height,
                rgb,
            )?;
        } else {
            pixel::to_rgb(self.format, self.range, data, self.width, self.height, rgb)?;
        }
        frame.stamp_now();
        Ok(Grab::Frame)
    }
}

/// One camera as `facecast devices` lists it.
#[derive(Debug)]
pub struct CameraInfo {
    pub path: PathBuf,
    pub name: String,
    pub formats: Vec<CameraFormatInfo>,
}

/// A pixel format a camera offers.
#[derive(Debug)]
pub struct CameraFormatInfo {
    pub fourcc: String,
    pub description: String,
    /// Discrete frame sizes (width, height) the camera lists for it.
    pub sizes: Vec<(u32, u32)>,
}

/// Every V4L2 node with its formats; a node that cannot be queried is listed without them.
pub fn list_devices() -> Vec<CameraInfo> {
    let mut nodes = v4l::context::enum_devices();
    nodes.sort_by_key(|n| n.index());
    nodes
        .into_iter()
        .map(|node| {
            let path = node.path().to_path_buf();
            let name = node.name().unwrap_or_else(|| "?".into());
            let formats = Device::with_path(&path)
                .and_then(|dev| {
                    let mut formats = Vec::new();
                    for desc in dev.enum_formats()? {
                        let sizes = dev
                            .enum_framesizes(desc.fourcc)
                            .unwrap_or_default()
                            .into_iter()
                            .flat_map(|s| s.size.to_discrete())
                            .map(|d| (d.width, d.height))
                            .collect();
                        formats.push(CameraFormatInfo {
                            fourcc: desc.fourcc.to_string(),
                            description: desc.description.clone(),
                            sizes,
                        });
                    }
                    Ok(formats)
                })
                .unwrap_or_default();
            CameraInfo {
                path,
                name,
                formats,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_prefers_uncompressed_then_mjpeg() {
        assert_eq!(
            choose_format(CameraFormat::Auto, &[*b"MJPG", *b"YUYV"])
                .unwrap()
                .0,
            *b"YUYV"
        );
        assert_eq!(
            choose_format(CameraFormat::Auto, &[*b"H264", *b"MJPG"])
                .unwrap()
                .0,
            *b"MJPG"
        );
        assert_eq!(
            choose_format(CameraFormat::Mjpeg, &[*b"YUYV", *b"MJPG"])
                .unwrap()
                .0,
            *b"MJPG"
        );
        let err = choose_format(CameraFormat::Auto, &[*b"H264"]).unwrap_err();
        assert!(err.contains("H264"), "{err}");
        assert!(choose_format(CameraFormat::Grey, &[*b"YUYV"]).is_err());
    }

    #[test]
    fn padded_rows_are_compacted() {
        // 2 rows of 4 bytes, each padded to a stride of 6.
        let src = [1, 2, 3, 4, 0, 0, 5, 6, 7, 8, 0, 0];
        let mut out = Vec::new();
        unpad_rows(&src, 6, 4, 2, &mut out);
        assert_eq!(out, [1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn a_missing_device_is_an_io_error() {
        let err = V4l2Camera::open(Path::new("/dev/video-none"), &SourceConfig::default())
            .err()
            .unwrap();
        assert!(matches!(err, CaptureError::Io { .. }), "{err}");
        assert!(err.to_string().contains("/dev/video-none"));
    }
}
