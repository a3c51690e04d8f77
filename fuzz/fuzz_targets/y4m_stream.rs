//! A Y4M stream on stdin or in a file: the header, then every frame until the reader stops.
#![no_main]

use facecast::capture::{FrameSource, Grab, Y4mHeader, Y4mReader};
use facecast::frame::Frame;
use libfuzzer_sys::fuzz_target;

/// Streams up to 1024x1024 are read; a larger header is still parsed but not opened, because
/// the reader allocates a whole frame at open (a 16384x16384 stream is legal and needs ~1.2 GB),
/// which would make every such input an out-of-memory report instead of a finding.
const MAX_PIXELS: u64 = 1024 * 1024;

/// Enough frames for the reader to see every state (good frame, corrupt frame, cut-short frame,
/// lost sync, end) on inputs libFuzzer keeps short.
const MAX_FRAMES: usize = 64;

fuzz_target!(|data: &[u8]| {
    let first_line = data.split(|&b| b == b'\n').next().unwrap_or_default();
    if let Ok(text) = std::str::from_utf8(first_line) {
        if let Ok(header) = Y4mHeader::parse(text) {
            if u64::from(header.width) * u64::from(header.height) > MAX_PIXELS {
                return;
            }
        }
    }
    let Ok(mut reader) = Y4mReader::new(data, "fuzz".into()) else {
        return;
    };
    let mut frame = Frame::with_capacity(0, 0);
    for _ in 0..MAX_FRAMES {
        match reader.grab(&mut frame) {
            Ok(Grab::Frame) => {
                let header = reader.header();
                assert_eq!(
                    frame.rgb.len(),
                    header.width as usize * header.height as usize * 3
                );
            }
            Ok(Grab::End) => break,
            // A corrupt frame is skipped by the pipeline and the next one read, as here.
            Err(_) => {}
        }
    }
});
