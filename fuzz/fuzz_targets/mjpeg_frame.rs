//! One MJPEG frame from a camera, decoded by the same entry the V4L2 source calls.
#![no_main]

use facecast::pixel::{self, PixelFormat, Range};
use image::ImageDecoder;
use libfuzzer_sys::fuzz_target;

/// Frames up to 1024x1024 are decoded; cameras negotiate their size before streaming, so a
/// frame claiming a larger size is refused by the size check, which is exercised below.
const MAX_PIXELS: u64 = 1024 * 1024;

fuzz_target!(|data: &[u8]| {
    // The size the driver negotiated: taken from the frame's own header when it has one, so the
    // decoder gets past the size check and decodes; and a wrong one, which must be refused.
    let size = image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(data))
        .map(|d| d.dimensions())
        .unwrap_or((16, 16));
    let (width, height) = size;
    if u64::from(width) * u64::from(height) > MAX_PIXELS || width == 0 || height == 0 {
        return;
    }
    let mut rgb = vec![0u8; width as usize * height as usize * 3];
    let _ = pixel::to_rgb(
        PixelFormat::Mjpeg,
        Range::Full,
        data,
        width,
        height,
        &mut rgb,
    );
    let mut other = vec![0u8; (width as usize + 1) * height as usize * 3];
    assert!(pixel::decode_jpeg_into(data, width + 1, height, &mut other).is_err());
});
