//! Pixel conversions from what cameras and video pipes deliver to packed 8-bit RGB.
//!
//! All YUV conversions use BT.601 coefficients in fixed point; `Range` says whether luma spans
//! 16..=235 (video, the default for V4L2 YUV and Y4M) or 0..=255 (JPEG/JFIF, Y4M `XCOLORRANGE=FULL`).

use thiserror::Error;

/// Pixel layouts a source can deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// Packed 4:2:2, Y0 U Y1 V (V4L2 `YUYV`).
    Yuyv,
    /// Y plane, then interleaved U V at half width and height (V4L2 `NV12`).
    Nv12,
    /// Y, U and V planes; chroma subsampled by `1 << shift` in each direction
    /// (4:2:0 is shift 1, 1; 4:2:2 is 1, 0; 4:4:4 is 0, 0). Y4M's layouts.
    Planar { shift_x: u8, shift_y: u8 },
    /// 8-bit luma only (V4L2 `GREY`, Y4M `Cmono`).
    Grey,
    /// Packed RGB, already what we want.
    Rgb,
    /// Motion JPEG: each frame a JPEG image.
    Mjpeg,
}

/// Luma/chroma range of a YUV source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// Y in 16..=235, U/V in 16..=240 (BT.601 "studio swing").
    Limited,
    /// Y, U, V in 0..=255 (JFIF).
    Full,
}

#[derive(Debug, Error)]
pub enum PixelError {
    #[error("frame has {got} bytes, {format:?} at {width}x{height} needs {need}")]
    WrongSize {
        format: PixelFormat,
        width: u32,
        height: u32,
        got: usize,
        need: usize,
    },
    #[error("corrupt JPEG frame: {0}")]
    Jpeg(String),
    #[error("JPEG frame is {got_w}x{got_h}, the stream is {width}x{height}")]
    JpegSize {
        got_w: u32,
        got_h: u32,
        width: u32,
        height: u32,
    },
    #[error("{0:?} has odd width {1}: chroma cannot be shared by pixel pairs")]
    OddWidth(PixelFormat, u32),
}

impl PixelFormat {
    /// Bytes of one raw frame, or `None` for compressed formats.
    pub fn frame_bytes(self, width: u32, height: u32) -> Option<usize> {
        let (w, h) = (width as usize, height as usize);
        Some(match self {
            PixelFormat::Yuyv => w * h * 2,
            PixelFormat::Nv12 => w * h + 2 * w.div_ceil(2) * h.div_ceil(2),
            PixelFormat::Planar { shift_x, shift_y } => {
                let cw = (w + (1 << shift_x) - 1) >> shift_x;
                let ch = (h + (1 << shift_y) - 1) >> shift_y;
                w * h + 2 * cw * ch
            }
            PixelFormat::Grey => w * h,
            PixelFormat::Rgb => w * h * 3,
            PixelFormat::Mjpeg => return None,
        })
    }
}

/// Fixed-point (x 2^16) BT.601 YUV -> RGB coefficients for one range.
struct Coefficients {
    y_offset: i32,
    y_gain: i32,
    v_to_r: i32,
    u_to_g: i32,
    v_to_g: i32,
    u_to_b: i32,
}

const LIMITED: Coefficients = Coefficients {
    y_offset: 16,
    y_gain: 76309,  // 255 / 219
    v_to_r: 104597, // 1.402 * 255 / 224
    u_to_g: 25675,  // 0.344136 * 255 / 224
    v_to_g: 53279,  // 0.714136 * 255 / 224
    u_to_b: 132201, // 1.772 * 255 / 224
};

const FULL: Coefficients = Coefficients {
    y_offset: 0,
    y_gain: 65536,
    v_to_r: 91881,
    u_to_g: 22554,
    v_to_g: 46802,
    u_to_b: 116130,
};

impl Range {
    fn coefficients(self) -> &'static Coefficients {
        match self {
            Range::Limited => &LIMITED,
            Range::Full => &FULL,
        }
    }
}

#[inline(always)]
fn clamp_u8(v: i32) -> u8 {
    (v >> 16).clamp(0, 255) as u8
}

/// Pixels converted at once: the arithmetic runs over arrays of this many samples, which the
/// compiler vectorises (for the baseline: SSE2, NEON). One pixel at a time (indexing the planes
/// per pixel) a 640x480 I420 frame took 2.25 ms; in blocks of 16, 0.76 ms, the same bytes
/// (release build, p50 of 300 each, docs/performance.md round 11).
const BLOCK: usize = 16;

/// Luma, U and V samples of [`BLOCK`] pixels.
type Samples = [[u8; BLOCK]; 3];

/// One block of pixels into `out` (`3 * BLOCK` bytes of RGB).
#[inline(always)]
fn convert_block(c: &Coefficients, [y, u, v]: &Samples, out: &mut [u8]) {
    let mut rgb = [[0u8; BLOCK]; 3];
    for i in 0..BLOCK {
        let luma = (y[i] as i32 - c.y_offset) * c.y_gain + (1 << 15);
        let (u, v) = (u[i] as i32 - 128, v[i] as i32 - 128);
        rgb[0][i] = clamp_u8(luma + c.v_to_r * v);
        rgb[1][i] = clamp_u8(luma - c.u_to_g * u - c.v_to_g * v);
        rgb[2][i] = clamp_u8(luma + c.u_to_b * u);
    }
    for (i, out) in out.chunks_exact_mut(3).enumerate() {
        out.copy_from_slice(&[rgb[0][i], rgb[1][i], rgb[2][i]]);
    }
}

/// One row of `width` pixels into `out`: whole blocks from `block(first)`, the samples of
/// pixels `first..first + BLOCK`, then the last pixels from `pixel(column)`, one pixel's
/// samples, padded to a block.
#[inline(always)]
fn convert_row(
    c: &Coefficients,
    width: usize,
    out: &mut [u8],
    block: impl Fn(usize) -> Samples,
    pixel: impl Fn(usize) -> [u8; 3],
) {
    let whole = width / BLOCK * BLOCK;
    for (first, out) in (0..whole)
        .step_by(BLOCK)
        .zip(out.chunks_exact_mut(3 * BLOCK))
    {
        convert_block(c, &block(first), out);
    }
    if whole < width {
        let mut samples = [[0u8; BLOCK]; 3];
        for (i, column) in (whole..width).enumerate() {
            let [y, u, v] = pixel(column);
            (samples[0][i], samples[1][i], samples[2][i]) = (y, u, v);
        }
        let mut last = [0u8; 3 * BLOCK];
        convert_block(c, &samples, &mut last);
        out[3 * whole..3 * width].copy_from_slice(&last[..3 * (width - whole)]);
    }
}

/// Samples `first..first + BLOCK` of `row`.
#[inline(always)]
fn block_of(row: &[u8], first: usize) -> [u8; BLOCK] {
    row[first..][..BLOCK].try_into().expect("BLOCK")
}

/// `BLOCK / 2` samples of `row` from `first`, each twice (chroma shared by pixel pairs).
#[inline(always)]
fn doubled(row: &[u8], first: usize) -> [u8; BLOCK] {
    let half: &[u8; BLOCK / 2] = row[first..][..BLOCK / 2].try_into().expect("BLOCK / 2");
    std::array::from_fn(|i| half[i / 2])
}

/// Converts one raw frame into `rgb` (exactly `width * height * 3` bytes).
/// MJPEG is decoded by [`decode_jpeg_into`], not here.
pub fn to_rgb(
    format: PixelFormat,
    range: Range,
    src: &[u8],
    width: u32,
    height: u32,
    rgb: &mut [u8],
) -> Result<(), PixelError> {
    let _span = crate::perf::span("convert");
    let need = format.frame_bytes(width, height).unwrap_or(0);
    if format == PixelFormat::Mjpeg {
        return decode_jpeg_into(src, width, height, rgb);
    }
    if src.len() < need {
        return Err(PixelError::WrongSize {
            format,
            width,
            height,
            got: src.len(),
            need,
        });
    }
    let c = range.coefficients();
    let (w, h) = (width as usize, height as usize);
    match format {
        PixelFormat::Yuyv => {
            if w % 2 == 1 {
                return Err(PixelError::OddWidth(format, width));
            }
            for (row, out) in src[..need]
                .chunks_exact(2 * w)
                .zip(rgb.chunks_exact_mut(3 * w))
            {
                // Y0 U Y1 V: pixel x's luma at 2x, its pair's U and V at 4(x / 2) + 1 and + 3.
                let pixel = |x: usize| [row[2 * x], row[4 * (x / 2) + 1], row[4 * (x / 2) + 3]];
                let block = |first: usize| -> Samples {
                    let quads: &[u8; 2 * BLOCK] =
                        row[2 * first..][..2 * BLOCK].try_into().expect("BLOCK");
                    let at = |offset: fn(usize) -> usize| std::array::from_fn(|i| quads[offset(i)]);
                    [
                        at(|i| 2 * i),
                        at(|i| 4 * (i / 2) + 1),
                        at(|i| 4 * (i / 2) + 3),
                    ]
                };
                convert_row(c, w, out, block, pixel);
            }
        }
        PixelFormat::Nv12 => {
            let (luma, chroma) = src.split_at(w * h);
            let chroma_stride = 2 * w.div_ceil(2);
            for (row, out) in rgb.chunks_exact_mut(3 * w).enumerate() {
                let ys = &luma[row * w..][..w];
                let uv = &chroma[(row / 2) * chroma_stride..][..chroma_stride];
                let pixel = |x: usize| [ys[x], uv[2 * (x / 2)], uv[2 * (x / 2) + 1]];
                let block = |first: usize| -> Samples {
                    let pairs = block_of(uv, first);
                    let at = |offset: fn(usize) -> usize| std::array::from_fn(|i| pairs[offset(i)]);
                    [
                        block_of(ys, first),
                        at(|i| 2 * (i / 2)),
                        at(|i| 2 * (i / 2) + 1),
                    ]
                };
                convert_row(c, w, out, block, pixel);
            }
        }
        PixelFormat::Planar { shift_x, shift_y } => {
            let cw = (w + (1 << shift_x) - 1) >> shift_x;
            let ch = (h + (1 << shift_y) - 1) >> shift_y;
            let (luma, rest) = src.split_at(w * h);
            let (u_plane, v_plane) = rest.split_at(cw * ch);
            for (row, out) in rgb.chunks_exact_mut(3 * w).enumerate() {
                let ys = &luma[row * w..][..w];
                let chroma = (row >> shift_y) * cw..((row >> shift_y) + 1) * cw;
                let (us, vs) = (&u_plane[chroma.clone()], &v_plane[chroma]);
                let pixel = |x: usize| [ys[x], us[x >> shift_x], vs[x >> shift_x]];
                match shift_x {
                    0 => convert_row(
                        c,
                        w,
                        out,
                        |first| [ys, us, vs].map(|p| block_of(p, first)),
                        pixel,
                    ),
                    1 => convert_row(
                        c,
                        w,
                        out,
                        |first| {
                            [
                                block_of(ys, first),
                                doubled(us, first / 2),
                                doubled(vs, first / 2),
                            ]
                        },
                        pixel,
                    ),
                    // No source delivers these: correct, not fast.
                    _ => convert_row(
                        c,
                        w,
                        out,
                        |first| {
                            std::array::from_fn(|k| std::array::from_fn(|i| pixel(first + i)[k]))
                        },
                        pixel,
                    ),
                }
            }
        }
        PixelFormat::Grey => {
            for (&y, out) in src[..need].iter().zip(rgb.chunks_exact_mut(3)) {
                // Grey is shown as it is: a GREY camera's values are already full range.
                out.fill(y);
            }
        }
        PixelFormat::Rgb => rgb.copy_from_slice(&src[..need]),
        PixelFormat::Mjpeg => unreachable!("handled above"),
    }
    Ok(())
}

/// Whether a JPEG ends with its end-of-image marker (zero padding after it allowed). The
/// decoder fills a cut-short image with grey instead of failing, so a JPEG cut short (a partial
/// camera frame, a copy interrupted) must be caught before decoding.
pub fn jpeg_is_complete(src: &[u8]) -> bool {
    let end = src.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    end >= 2 && src[end - 2..end] == [0xFF, 0xD9]
}

/// Decodes one JPEG frame into `rgb`, which must be `width * height * 3` bytes; a frame of
/// another size or a corrupt one is an error (the caller skips and counts it).
pub fn decode_jpeg_into(
    src: &[u8],
    width: u32,
    height: u32,
    rgb: &mut [u8],
) -> Result<(), PixelError> {
    use image::ImageDecoder;
    // The decoder fills a cut-short image with grey instead of failing, and USB cameras do
    // deliver partial frames: a frame must end with the end-of-image marker (some drivers pad
    // the buffer with zeros after it).
    if !jpeg_is_complete(src) {
        return Err(PixelError::Jpeg("truncated: no end-of-image marker".into()));
    }
    let decoder = image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(src))
        .map_err(|e| PixelError::Jpeg(e.to_string()))?;
    let (got_w, got_h) = decoder.dimensions();
    if (got_w, got_h) != (width, height) {
        return Err(PixelError::JpegSize {
            got_w,
            got_h,
            width,
            height,
        });
    }
    match decoder.color_type() {
        image::ColorType::Rgb8 => decoder
            .read_image(rgb)
            .map_err(|e| PixelError::Jpeg(e.to_string())),
        image::ColorType::L8 => {
            let pixels = (width * height) as usize;
            decoder
                .read_image(&mut rgb[..pixels])
                .map_err(|e| PixelError::Jpeg(e.to_string()))?;
            // Spread grey in place from the end so no source byte is overwritten early.
            for i in (0..pixels).rev() {
                let y = rgb[i];
                rgb[i * 3..i * 3 + 3].fill(y);
            }
            Ok(())
        }
        other => Err(PixelError::Jpeg(format!(
            "unsupported JPEG colour type {other:?}"
        ))),
    }
}

/// Encodes packed RGB as planar 4:2:0 YUV (BT.601, limited range), chroma averaged over each
/// 2x2 block. The inverse of [`to_rgb`] for `Planar { 1, 1 }`: it makes Y4M clips from photos.
pub fn rgb_to_i420(rgb: &[u8], width: u32, height: u32) -> Vec<u8> {
    let (w, h) = (width as usize, height as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let mut out = vec![0u8; w * h + 2 * cw * ch];
    let (luma, chroma) = out.split_at_mut(w * h);
    let (u_plane, v_plane) = chroma.split_at_mut(cw * ch);
    let px = |x: usize, y: usize| {
        let i = (y * w + x) * 3;
        (rgb[i] as i32, rgb[i + 1] as i32, rgb[i + 2] as i32)
    };
    for y in 0..h {
        for x in 0..w {
            let (r, g, b) = px(x, y);
            luma[y * w + x] = (16 + ((16829 * r + 33039 * g + 6416 * b + 32768) >> 16)) as u8;
        }
    }
    for cy in 0..ch {
        for cx in 0..cw {
            let (mut r, mut g, mut b, mut n) = (0, 0, 0, 0);
            for y in (2 * cy)..(2 * cy + 2).min(h) {
                for x in (2 * cx)..(2 * cx + 2).min(w) {
                    let p = px(x, y);
                    (r, g, b, n) = (r + p.0, g + p.1, b + p.2, n + 1);
                }
            }
            let (r, g, b) = (r / n, g / n, b / n);
            u_plane[cy * cw + cx] =
                (128 + ((-9714 * r - 19070 * g + 28784 * b + 32768) >> 16)) as u8;
            v_plane[cy * cw + cx] =
                (128 + ((28784 * r - 24103 * g - 4681 * b + 32768) >> 16)) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BT.601 100% colour bars, studio swing (ITU-R BT.601 / EBU bars): Y, Cb, Cr -> RGB.
    const LIMITED_BARS: [([u8; 3], [u8; 3]); 8] = [
        ([235, 128, 128], [255, 255, 255]),
        ([210, 16, 146], [255, 255, 0]),
        ([170, 166, 16], [0, 255, 255]),
        ([145, 54, 34], [0, 255, 0]),
        ([106, 202, 222], [255, 0, 255]),
        ([81, 90, 240], [255, 0, 0]),
        ([41, 240, 110], [0, 0, 255]),
        ([16, 128, 128], [0, 0, 0]),
    ];

    /// The same colours in JFIF full range (ITU-T T.871).
    const FULL_BARS: [([u8; 3], [u8; 3]); 4] = [
        ([255, 128, 128], [255, 255, 255]),
        ([76, 85, 255], [254, 0, 0]),
        ([150, 44, 21], [0, 255, 1]),
        ([29, 255, 107], [0, 0, 254]),
    ];

    fn assert_close(got: &[u8], want: &[u8], what: &str) {
        for (g, w) in got.iter().zip(want) {
            assert!(
                (*g as i32 - *w as i32).abs() <= 2,
                "{what}: got {got:?}, want {want:?}"
            );
        }
    }

    #[test]
    fn yuyv_matches_colour_bars() {
        for (yuv, want) in LIMITED_BARS {
            let src = [yuv[0], yuv[1], yuv[0], yuv[2]];
            let mut rgb = [0u8; 6];
            to_rgb(PixelFormat::Yuyv, Range::Limited, &src, 2, 1, &mut rgb).unwrap();
            assert_close(&rgb[..3], &want, "yuyv left");
            assert_close(&rgb[3..], &want, "yuyv right");
        }
    }

    #[test]
    fn full_range_matches_jfif() {
        for (yuv, want) in FULL_BARS {
            let src = [yuv[0], yuv[1], yuv[0], yuv[2]];
            let mut rgb = [0u8; 6];
            to_rgb(PixelFormat::Yuyv, Range::Full, &src, 2, 1, &mut rgb).unwrap();
            assert_close(&rgb[..3], &want, "full range");
        }
    }

    /// A 4x2 image, left half one bar, right half another: chroma must come from the right block.
    fn two_bar_planes(a: [u8; 3], b: [u8; 3]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let luma = vec![a[0], a[0], b[0], b[0], a[0], a[0], b[0], b[0]];
        (luma, vec![a[1], b[1]], vec![a[2], b[2]])
    }

    #[test]
    fn nv12_and_i420_agree_with_bars() {
        let (a, want_a) = LIMITED_BARS[5];
        let (b, want_b) = LIMITED_BARS[6];
        let (luma, u, v) = two_bar_planes(a, b);

        let mut nv12 = luma.clone();
        nv12.extend_from_slice(&[u[0], v[0], u[1], v[1]]);
        let mut i420 = luma;
        i420.extend_from_slice(&u);
        i420.extend_from_slice(&v);

        for (format, src) in [
            (PixelFormat::Nv12, nv12),
            (
                PixelFormat::Planar {
                    shift_x: 1,
                    shift_y: 1,
                },
                i420,
            ),
        ] {
            let mut rgb = [0u8; 4 * 2 * 3];
            to_rgb(format, Range::Limited, &src, 4, 2, &mut rgb).unwrap();
            for row in 0..2 {
                for col in 0..4 {
                    let want = if col < 2 { want_a } else { want_b };
                    let i = (row * 4 + col) * 3;
                    assert_close(&rgb[i..i + 3], &want, &format!("{format:?} ({col},{row})"));
                }
            }
        }
    }

    #[test]
    fn i420_encoding_inverts_decoding() {
        for (yuv, rgb) in LIMITED_BARS {
            let block: Vec<u8> = rgb.iter().cycle().take(12).copied().collect();
            let encoded = rgb_to_i420(&block, 2, 2);
            for (got, want) in [
                (encoded[0], yuv[0]),
                (encoded[4], yuv[1]),
                (encoded[5], yuv[2]),
            ] {
                assert!(
                    (got as i32 - want as i32).abs() <= 1,
                    "{rgb:?}: {encoded:?} vs {yuv:?}"
                );
            }
        }
    }

    /// The conversion one pixel at a time, as facecast first wrote it: pixel (x, y)'s samples
    /// by index, then the BT.601 arithmetic.
    fn per_pixel(format: PixelFormat, c: &Coefficients, src: &[u8], w: usize, h: usize) -> Vec<u8> {
        let (luma, chroma) = src.split_at(w * h);
        let samples = |x: usize, y: usize| -> [u8; 3] {
            let l = luma[y * w + x];
            match format {
                PixelFormat::Yuyv => {
                    let pair = &src[(y * w + x / 2 * 2) * 2..];
                    [src[(y * w + x) * 2], pair[1], pair[3]]
                }
                PixelFormat::Nv12 => {
                    let at = (y / 2) * 2 * w.div_ceil(2) + x / 2 * 2;
                    [l, chroma[at], chroma[at + 1]]
                }
                PixelFormat::Planar { shift_x, shift_y } => {
                    let cw = (w + (1 << shift_x) - 1) >> shift_x;
                    let ch = (h + (1 << shift_y) - 1) >> shift_y;
                    let at = (y >> shift_y) * cw + (x >> shift_x);
                    [l, chroma[at], chroma[cw * ch + at]]
                }
                _ => unreachable!("YUV layouts only"),
            }
        };
        let mut rgb = vec![0u8; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                let [l, u, v] = samples(x, y).map(|s| s as i32);
                let l = (l - c.y_offset) * c.y_gain + (1 << 15);
                let (u, v) = (u - 128, v - 128);
                let out = &mut rgb[(y * w + x) * 3..][..3];
                out[0] = clamp_u8(l + c.v_to_r * v);
                out[1] = clamp_u8(l - c.u_to_g * u - c.v_to_g * v);
                out[2] = clamp_u8(l + c.u_to_b * u);
            }
        }
        rgb
    }

    #[test]
    fn blocks_equal_the_per_pixel_conversion() {
        let planar = |shift_x, shift_y| PixelFormat::Planar { shift_x, shift_y };
        let layouts = [
            PixelFormat::Yuyv,
            PixelFormat::Nv12,
            planar(1, 1),
            planar(1, 0),
            planar(0, 0),
            planar(2, 0),
        ];
        let mut seed = 7u64;
        for format in layouts {
            // Whole blocks, a block and a bit, less than a block, odd sizes.
            for (w, h) in [(64, 4), (34, 3), (6, 2), (37, 5), (640, 2)] {
                if format == PixelFormat::Yuyv && w % 2 == 1 {
                    continue;
                }
                let need = format.frame_bytes(w, h).unwrap();
                let src: Vec<u8> = (0..need)
                    .map(|_| {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                        (seed >> 56) as u8
                    })
                    .collect();
                for range in [Range::Limited, Range::Full] {
                    let mut rgb = vec![0u8; (w * h * 3) as usize];
                    to_rgb(format, range, &src, w, h, &mut rgb).unwrap();
                    let want =
                        per_pixel(format, range.coefficients(), &src, w as usize, h as usize);
                    assert!(rgb == want, "{format:?} {range:?} {w}x{h}");
                }
            }
        }
    }

    #[test]
    fn grey_spreads_to_three_channels() {
        let mut rgb = [0u8; 6];
        to_rgb(PixelFormat::Grey, Range::Full, &[7, 200], 2, 1, &mut rgb).unwrap();
        assert_eq!(rgb, [7, 7, 7, 200, 200, 200]);
    }

    #[test]
    fn short_frame_is_an_error_not_a_panic() {
        let mut rgb = [0u8; 12];
        let err = to_rgb(
            PixelFormat::Yuyv,
            Range::Limited,
            &[1, 2, 3],
            2,
            2,
            &mut rgb,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                PixelError::WrongSize {
                    need: 8,
                    got: 3,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn mjpeg_decodes_and_rejects_garbage() {
        // A real photo, encoded as a camera would send it.
        let photo = image::open(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/images/skimage/astronaut.png"
        ))
        .expect("test photo")
        .to_rgb8();
        let small = image::imageops::resize(&photo, 64, 48, image::imageops::FilterType::Triangle);
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
            .encode_image(&small)
            .unwrap();

        let mut rgb = vec![0u8; 64 * 48 * 3];
        to_rgb(PixelFormat::Mjpeg, Range::Full, &jpeg, 64, 48, &mut rgb).unwrap();
        let mean_err: f64 = rgb
            .iter()
            .zip(small.as_raw())
            .map(|(a, b)| (*a as f64 - *b as f64).abs())
            .sum::<f64>()
            / rgb.len() as f64;
        assert!(mean_err < 4.0, "JPEG round trip mean error {mean_err}");

        let err = to_rgb(
            PixelFormat::Mjpeg,
            Range::Full,
            &jpeg[..jpeg.len() / 3],
            64,
            48,
            &mut rgb,
        );
        assert!(err.is_err(), "a truncated JPEG must be reported");
        let err = to_rgb(PixelFormat::Mjpeg, Range::Full, &jpeg, 32, 48, &mut rgb);
        assert!(matches!(err, Err(PixelError::JpegSize { .. })));
    }
}
