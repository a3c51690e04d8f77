//! YUV4MPEG2 streams: the format `ffmpeg -f yuv4mpegpipe` writes, so any file, network stream
//! or camera that ffmpeg reads can be piped into facecast.

use std::io::{BufRead, ErrorKind, Read, Write};
use std::time::Duration;

use super::{CaptureError, FrameSource, Grab};
use crate::frame::Frame;
use crate::pixel::{self, PixelFormat, Range};

/// The longest header line accepted; real headers are well under 100 bytes.
const MAX_HEADER: usize = 1024;

/// A stream's parameters, from its header line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Y4mHeader {
    pub width: u32,
    pub height: u32,
    pub fps: (u32, u32),
    pub format: PixelFormat,
    pub range: Range,
}

impl Y4mHeader {
    /// Parses the words after `YUV4MPEG2`.
    pub fn parse(line: &str) -> Result<Y4mHeader, CaptureError> {
        let unsupported =
            |why: String| CaptureError::Unsupported(format!("Y4M header {line:?}: {why}"));
        let mut words = line.split_ascii_whitespace();
        if words.next() != Some("YUV4MPEG2") {
            return Err(unsupported("does not start with YUV4MPEG2".into()));
        }
        let (mut width, mut height) = (0u32, 0u32);
        let mut fps = (0, 1);
        let mut format = PixelFormat::Planar {
            shift_x: 1,
            shift_y: 1,
        };
        let mut range = Range::Limited;
        for word in words {
            // The tag is one ASCII letter; a word starting with any other character (outside
            // bytes: it may be several bytes long) is no tag facecast needs.
            let Some((tag, value)) = word.split_at_checked(1) else {
                continue;
            };
            match tag {
                "W" => {
                    width = value
                        .parse()
                        .map_err(|_| unsupported(format!("width {value:?}")))?
                }
                "H" => {
                    height = value
                        .parse()
                        .map_err(|_| unsupported(format!("height {value:?}")))?
                }
                "F" => {
                    let (n, d) = value.split_once(':').unwrap_or((value, "1"));
                    fps = (n.parse().unwrap_or(0), d.parse().unwrap_or(1));
                }
                "C" => {
                    format = match value {
                        "420jpeg" | "420paldv" | "420mpeg2" | "420" => PixelFormat::Planar {
                            shift_x: 1,
                            shift_y: 1,
                        },
                        "422" => PixelFormat::Planar {
                            shift_x: 1,
                            shift_y: 0,
                        },
                        "444" => PixelFormat::Planar {
                            shift_x: 0,
                            shift_y: 0,
                        },
                        "mono" => PixelFormat::Grey,
                        other => {
                            return Err(unsupported(format!(
                                "colour space C{other} (8-bit 420, 422, 444 or mono only; \
                                 ask ffmpeg for -pix_fmt yuv420p)"
                            )))
                        }
                    }
                }
                "X" if value == "COLORRANGE=FULL" => range = Range::Full,
                "I" if value != "p" && value != "?" => {
                    return Err(unsupported(format!(
                        "interlaced (I{value}); deinterlace first, e.g. ffmpeg -vf yadif"
                    )))
                }
                _ => {} // aspect ratio, other extensions: not needed to read pixels
            }
        }
        if !(1..=16384).contains(&width) || !(1..=16384).contains(&height) {
            return Err(unsupported(format!("size {width}x{height}")));
        }
        Ok(Y4mHeader {
            width,
            height,
            fps,
            format,
            range,
        })
    }

    fn frame_bytes(&self) -> usize {
        self.format
            .frame_bytes(self.width, self.height)
            .expect("Y4M formats are raw")
    }

    /// Writes this header (4:2:0 only), for making clips from images.
    pub fn write_420(
        out: &mut impl Write,
        width: u32,
        height: u32,
        fps: u32,
    ) -> std::io::Result<()> {
        writeln!(
            out,
            "YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg"
        )
    }
}

/// Reads frames from a Y4M stream.
pub struct Y4mReader<R> {
    input: R,
    name: String,
    header: Y4mHeader,
    raw: Vec<u8>,
    line: Vec<u8>,
    ended: bool,
    /// Frames read so far: with the header's frame rate, each frame's time in the recording.
    frames: u64,
}

impl<R: BufRead + Send> Y4mReader<R> {
    /// Reads the stream header; `name` says where the stream comes from, in messages.
    pub fn new(mut input: R, name: String) -> Result<Self, CaptureError> {
        let mut line = Vec::new();
        read_line(&mut input, &mut line)
            .map_err(|e| CaptureError::io(format!("{name}: Y4M header"), e))?;
        let text = std::str::from_utf8(&line)
            .map_err(|_| CaptureError::Unsupported(format!("{name}: not a Y4M stream")))?;
        let header = Y4mHeader::parse(text)?;
        Ok(Y4mReader {
            input,
            name,
            raw: vec![0; header.frame_bytes()],
            header,
            line,
            ended: false,
            frames: 0,
        })
    }

    pub fn header(&self) -> Y4mHeader {
        self.header
    }
}

/// Reads up to and without the next `\n`; an empty `line` with `Ok` means end of stream.
fn read_line(input: &mut impl BufRead, line: &mut Vec<u8>) -> std::io::Result<()> {
    line.clear();
    input.take(MAX_HEADER as u64).read_until(b'\n', line)?;
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if !line.is_empty() {
        return Err(std::io::Error::new(
            ErrorKind::InvalidData,
            format!("header line longer than {MAX_HEADER} bytes or cut short"),
        ));
    }
    Ok(())
}

impl<R: BufRead + Send> FrameSource for Y4mReader<R> {
    fn describe(&self) -> String {
        let h = &self.header;
        format!(
            "y4m:{} {}x{} {:?} {:?} range at {}/{} fps",
            self.name, h.width, h.height, h.format, h.range, h.fps.0, h.fps.1
        )
    }

    fn grab(&mut self, frame: &mut Frame) -> Result<Grab, CaptureError> {
        if self.ended {
            return Ok(Grab::End);
        }
        read_line(&mut self.input, &mut self.line)
            .map_err(|e| CaptureError::io(format!("{}: frame header", self.name), e))?;
        if self.line.is_empty() {
            self.ended = true;
            return Ok(Grab::End);
        }
        if !self.line.starts_with(b"FRAME") {
            // Without a frame marker where one must be, every later byte is misaligned.
            self.ended = true;
            return Err(CaptureError::io(
                format!("{}: lost frame sync", self.name),
                std::io::Error::new(ErrorKind::InvalidData, "expected FRAME"),
            ));
        }
        let mut filled = 0;
        while filled < self.raw.len() {
            match self.input.read(&mut self.raw[filled..]) {
                Ok(0) => {
                    self.ended = true;
                    return Err(CaptureError::Corrupt(format!(
                        "{}: stream ends inside a frame ({filled} of {} bytes)",
                        self.name,
                        self.raw.len()
                    )));
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(CaptureError::io(format!("{}: frame data", self.name), e)),
            }
        }
        let h = self.header;
        let rgb = frame.resize(h.width, h.height);
        pixel::to_rgb(h.format, h.range, &self.raw, h.width, h.height, rgb)?;
        frame.stamp_now();
        let (num, den) = self.header.fps;
        if num > 0 && den > 0 {
            frame.pts =
                Duration::from_secs_f64(self.frames as f64 * f64::from(den) / f64::from(num));
        }
        self.frames += 1;
        Ok(Grab::Frame)
    }
}

/// Writes one RGB image as a 4:2:0 Y4M frame (BT.601, limited range), for making clips.
pub fn write_420_frame(
    out: &mut impl Write,
    rgb: &[u8],
    width: u32,
    height: u32,
) -> std::io::Result<()> {
    out.write_all(b"FRAME\n")?;
    out.write_all(&pixel::rgb_to_i420(rgb, width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(frames: usize) -> (Vec<u8>, image::RgbImage) {
        let photo = image::open(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/images/skimage/astronaut.png"
        ))
        .unwrap()
        .to_rgb8();
        let photo = image::imageops::resize(&photo, 96, 64, image::imageops::FilterType::Triangle);
        let mut out = Vec::new();
        Y4mHeader::write_420(&mut out, 96, 64, 25).unwrap();
        for _ in 0..frames {
            write_420_frame(&mut out, photo.as_raw(), 96, 64).unwrap();
        }
        (out, photo)
    }

    #[test]
    fn reads_every_frame_of_a_clip_made_from_a_photo() {
        let (bytes, photo) = clip(3);
        let mut reader = Y4mReader::new(std::io::Cursor::new(bytes), "clip".into()).unwrap();
        assert_eq!(reader.header().fps, (25, 1));
        let mut frame = Frame::with_capacity(96, 64);
        for _ in 0..3 {
            assert_eq!(reader.grab(&mut frame).unwrap(), Grab::Frame);
            // 4:2:0 halves chroma resolution: colours blur at edges, so compare on average.
            let err: f64 = frame
                .rgb
                .iter()
                .zip(photo.as_raw())
                .map(|(a, b)| (*a as f64 - *b as f64).abs())
                .sum::<f64>()
                / frame.rgb.len() as f64;
            assert!(err < 6.0, "mean abs error {err}");
        }
        assert_eq!(reader.grab(&mut frame).unwrap(), Grab::End);
        assert_eq!(reader.grab(&mut frame).unwrap(), Grab::End);
    }

    #[test]
    fn truncated_frame_is_reported_then_the_stream_ends() {
        let (mut bytes, _) = clip(2);
        bytes.truncate(bytes.len() - 100);
        let mut reader = Y4mReader::new(std::io::Cursor::new(bytes), "cut".into()).unwrap();
        let mut frame = Frame::with_capacity(96, 64);
        assert_eq!(reader.grab(&mut frame).unwrap(), Grab::Frame);
        let err = reader.grab(&mut frame).unwrap_err();
        assert!(matches!(err, CaptureError::Corrupt(_)), "{err}");
        assert_eq!(reader.grab(&mut frame).unwrap(), Grab::End);
    }

    #[test]
    fn header_variants() {
        let h = Y4mHeader::parse("YUV4MPEG2 W640 H480 F30000:1001 Ip A1:1 C422 XCOLORRANGE=FULL")
            .unwrap();
        assert_eq!((h.width, h.height, h.fps), (640, 480, (30000, 1001)));
        assert_eq!(
            h.format,
            PixelFormat::Planar {
                shift_x: 1,
                shift_y: 0
            }
        );
        assert_eq!(h.range, Range::Full);
        assert_eq!(
            Y4mHeader::parse("YUV4MPEG2 W8 H8 Cmono").unwrap().format,
            PixelFormat::Grey
        );
        for bad in [
            "YUV4MPEG2 W640 C420",
            "YUV4MPEG2 W640 H480 C420p10",
            "YUV4MPEG2 W640 H480 It",
            "MPEG W640 H480",
            "YUV4MPEG2 Wx H480",
        ] {
            assert!(Y4mHeader::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_word_starting_with_a_multibyte_character_is_skipped_not_a_panic() {
        // Found by fuzzing (fuzz/corpus/y4m_stream/seed-regression-multibyte-tag): splitting
        // the tag off at byte 1 panicked inside the character.
        let h = Y4mHeader::parse("YUV4MPEG2 W48 H40 \u{edfba}x \u{e9}F Ip").unwrap();
        assert_eq!((h.width, h.height), (48, 40));
        let stream = "YUV4MPEG2 W4 H2 Cmono \u{edfba}\nFRAME\n12345678";
        let mut reader = Y4mReader::new(stream.as_bytes(), "test".into()).unwrap();
        let mut frame = Frame::with_capacity(0, 0);
        assert_eq!(reader.grab(&mut frame).unwrap(), Grab::Frame);
    }

    #[test]
    fn garbage_instead_of_frame_marker_is_an_error() {
        let mut bytes = b"YUV4MPEG2 W2 H2 C444\n".to_vec();
        bytes.extend_from_slice(b"JUNK\n123456789012");
        let mut reader = Y4mReader::new(std::io::Cursor::new(bytes), "junk".into()).unwrap();
        let mut frame = Frame::with_capacity(2, 2);
        assert!(matches!(
            reader.grab(&mut frame),
            Err(CaptureError::Io { .. })
        ));
        assert_eq!(reader.grab(&mut frame).unwrap(), Grab::End);
    }
}
