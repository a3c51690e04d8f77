//! The one place image pixels become model input: a region of a frame, given as an affine map
//! from tensor pixels to frame pixels, is sampled bilinearly and normalised as the manifest says.
//! Letterboxing, crops and rotated crops are all just different maps.

use super::manifest::{Colour, InputSpec, Layout};
use crate::frame::Frame;
use crate::geometry::Affine;

/// What samples outside the frame take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Border {
    /// Black, as MediaPipe pads the detector's letterbox.
    Black,
    /// The nearest edge pixel, as MediaPipe's landmark crops do (its default border mode):
    /// a face cut by the frame edge is continued rather than cut to black.
    Replicate,
}

/// BT.601 luma weights, for models that take grey input.
const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// Tensor pixels whose sampling positions are computed before any is sampled: a batch of
/// independent multiply-adds and roundings that the compiler can vectorise.
const POSITION_BATCH: usize = 64;

/// Fills `out` (the input tensor's data, in the spec's layout) from `frame`.
/// `map` takes tensor coordinates (0..width, 0..height) to frame coordinates. Tensor pixel
/// (u, v) takes the bilinear frame value at `map(u, v)`, pixel indices used as coordinates, as
/// OpenCV's warpAffine/warpPerspective do in the MediaPipe pipelines these models were trained
/// and evaluated with (a pixel-centre convention shifts a downscaled image by half a tensor
/// pixel, enough to move borderline detections). Samples outside the frame follow `border`.
pub fn sample_into(frame: &Frame, map: &Affine, spec: &InputSpec, border: Border, out: &mut [f32]) {
    let _span = crate::perf::span("preprocess");
    let (tw, th, channels) = (spec.width(), spec.height(), spec.channels());
    debug_assert_eq!(out.len(), tw * th * channels);
    let levels = Levels::new(spec);
    let (pixel_stride, channel_stride) = match spec.layout {
        Layout::Nchw => (1, tw * th),
        Layout::Nhwc => (channels, 1),
    };
    // One tensor pixel, as `bilinear` and the levels' table make it.
    let sample = |out: &mut [f32], i: usize, x: i32, y: i32| {
        let values = levels.tensor_values(bilinear(frame, x, y, border));
        for (c, value) in values[..channels].iter().enumerate() {
            out[i * pixel_stride + c * channel_stride] = *value;
        }
    };
    #[cfg(target_arch = "x86_64")]
    let vectors = std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(target_arch = "x86_64")]
    if vectors {
        touch_rows(frame, map, [tw, th]);
    }
    let (mut xs, mut ys) = ([0i32; POSITION_BATCH], [0i32; POSITION_BATCH]);
    for v in 0..th {
        // 16 pixels at once, positions included, where none needs the border (nearly all of
        // a crop): 37k pixels of a face mesh crop took 0.7-0.9 ms a pixel at a time, a
        // quarter of the model's own time. The columns before `u` are done.
        #[cfg(target_arch = "x86_64")]
        let u = {
            let mut u = 0;
            while vectors && u + avx512::PIXELS <= tw {
                let at = [v * tw + u, pixel_stride, channel_stride];
                // SAFETY: the CPU has the instructions (checked above).
                if !unsafe { avx512::sample(frame, map, [u, v], &levels, out, at, channels) } {
                    for u in u..u + avx512::PIXELS {
                        let (x, y) = map.apply(u as f32, v as f32);
                        sample(out, v * tw + u, to_subpixel_steps(x), to_subpixel_steps(y));
                    }
                }
                u += avx512::PIXELS;
            }
            u
        };
        #[cfg(not(target_arch = "x86_64"))]
        let u = 0;
        for u0 in (u..tw).step_by(POSITION_BATCH) {
            let batch = POSITION_BATCH.min(tw - u0);
            for k in 0..batch {
                let (x, y) = map.apply((u0 + k) as f32, v as f32);
                (xs[k], ys[k]) = (to_subpixel_steps(x), to_subpixel_steps(y));
            }
            for k in 0..batch {
                sample(out, v * tw + u0 + k, xs[k], ys[k]);
            }
        }
    }
}

/// The manifest's normalisation of each channel, as a table over the 256 pixel levels (the
/// same arithmetic, done once per level instead of once per tensor value).
struct Levels {
    colour: Colour,
    table: [[f32; 256]; 3],
    /// Each channel's mean and 1/std (the table's arithmetic); grey's are the first: luma is
    /// not a whole level, so it is normalised per pixel.
    normalise: [(f32, f32); 3],
}

impl Levels {
    fn new(spec: &InputSpec) -> Levels {
        let mut table = [[0.0f32; 256]; 3];
        let mut normalise = [(0.0, 1.0); 3];
        for (c, (mean, std)) in spec.mean.iter().zip(&spec.std).enumerate().take(3) {
            let scale = 1.0 / std;
            for (level, value) in table[c].iter_mut().enumerate() {
                *value = (level as f32 - mean) * scale;
            }
            normalise[c] = (*mean, scale);
        }
        Levels {
            colour: spec.colour,
            table,
            normalise,
        }
    }

    /// The tensor's channel values for one RGB pixel (only the first for grey).
    fn tensor_values(&self, [r, g, b]: [u8; 3]) -> [f32; 3] {
        let t = &self.table;
        match self.colour {
            Colour::Rgb => [t[0][r as usize], t[1][g as usize], t[2][b as usize]],
            Colour::Bgr => [t[0][b as usize], t[1][g as usize], t[2][r as usize]],
            Colour::Grey => {
                let luma = LUMA[0] * r as f32 + LUMA[1] * g as f32 + LUMA[2] * b as f32;
                let (mean, scale) = self.normalise[0];
                [(luma - mean) * scale, 0.0, 0.0]
            }
        }
    }
}

/// Sub-pixel steps of the sampling position, as OpenCV's `INTER_TAB_SIZE` (2^5).
const SUBPIXEL_BITS: u32 = 5;
const SUBPIXEL_STEPS: f32 = (1 << SUBPIXEL_BITS) as f32;
/// Bilinear weights are products of two sub-pixel fractions: whole 1/1024ths.
const WEIGHT_BITS: u32 = 2 * SUBPIXEL_BITS;

/// Sub-pixel steps far outside any frame: keeps the truncation and the +-1 from overflowing.
const SUBPIXEL_LIMIT: f32 = 1e9;

/// A coordinate in whole 1/32-pixel steps, rounded half away from zero (`f32::round`, without
/// its libm call: the truncation and one comparison each way are exact below 2^23).
fn to_subpixel_steps(coordinate: f32) -> i32 {
    let steps = (coordinate * SUBPIXEL_STEPS).clamp(-SUBPIXEL_LIMIT, SUBPIXEL_LIMIT);
    let whole = steps as i32;
    let fraction = steps - whole as f32;
    whole + (fraction >= 0.5) as i32 - (fraction <= -0.5) as i32
}

/// Bilinear RGB at a position in 1/32-pixel steps. Like OpenCV's 8-bit warp, the weights are
/// whole 1/1024ths and the result is rounded to a whole level, so that the tensor matches the
/// one MediaPipe builds from the same frame to within one level.
fn bilinear(frame: &Frame, x: i32, y: i32, border: Border) -> [u8; 3] {
    const STEP_MASK: i32 = (1 << SUBPIXEL_BITS) - 1;
    const ONE: i32 = 1 << SUBPIXEL_BITS;
    let (x0, y0) = (x >> SUBPIXEL_BITS, y >> SUBPIXEL_BITS);
    let (fx, fy) = (x & STEP_MASK, y & STEP_MASK);
    // Top-left, top-right, bottom-left, bottom-right; they sum to ONE^2 = 1024.
    let weights = [
        (ONE - fx) * (ONE - fy),
        fx * (ONE - fy),
        (ONE - fx) * fy,
        fx * fy,
    ];
    let (w, h) = (frame.width as i32, frame.height as i32);
    let mut taps = [[0u8; 3]; 4];
    // Nearly every sample lies inside the frame: reading its two rows directly, without the
    // per-tap border checks, is a fifth of the sampler's time (19.8 against 24.5 ns a pixel).
    if x0 >= 0 && y0 >= 0 && x0 + 1 < w && y0 + 1 < h {
        let stride = w as usize * 3;
        let i = y0 as usize * stride + x0 as usize * 3;
        for (row, start) in [i, i + stride].into_iter().enumerate() {
            let pair = &frame.rgb[start..start + 6];
            taps[2 * row] = [pair[0], pair[1], pair[2]];
            taps[2 * row + 1] = [pair[3], pair[4], pair[5]];
        }
    } else {
        for (k, tap) in taps.iter_mut().enumerate() {
            let (mut px, mut py) = (x0 + (k as i32 & 1), y0 + (k as i32 >> 1));
            if px < 0 || py < 0 || px >= w || py >= h {
                match border {
                    Border::Black => continue,
                    Border::Replicate => (px, py) = (px.clamp(0, w - 1), py.clamp(0, h - 1)),
                }
            }
            *tap = frame.pixel(px as u32, py as u32);
        }
    }
    let mut rgb = [0u8; 3];
    for (c, level) in rgb.iter_mut().enumerate() {
        let sum: i32 = (0..4).map(|k| weights[k] * taps[k][c] as i32).sum();
        // Rounded half up; at most 255 since the weights sum to one.
        *level = ((sum + (1 << (WEIGHT_BITS - 1))) >> WEIGHT_BITS) as u8;
    }
    rgb
}

/// Bytes per cache line.
#[cfg(target_arch = "x86_64")]
const CACHE_LINE: usize = 64;

/// Reads a byte of every cache line of the frame rows the crop `map` reads (the bounding box
/// of the tensor's corners in the frame), before the gathers read them. The frame comes from
/// the capture thread, mostly not in this core's caches, and the gathers wait for their lines
/// one after another, where plain loads in order keep many in flight: the face mesh's 192x192
/// crop took 0.40 ms a frame, 0.12 ms after this pass (the pass itself 3 us). Prefetch
/// instructions in its place left the crop at 0.30 ms.
#[cfg(target_arch = "x86_64")]
fn touch_rows(frame: &Frame, map: &Affine, [tw, th]: [usize; 2]) {
    let (last_u, last_v) = (tw.saturating_sub(1) as f32, th.saturating_sub(1) as f32);
    let corners =
        [(0.0, 0.0), (last_u, 0.0), (0.0, last_v), (last_u, last_v)].map(|(u, v)| map.apply(u, v));
    // The pixels from the lowest coordinate's through the pixel after the highest one's (a
    // bilinear tap's neighbour), within `0..limit`; NaN coordinates are left out, all NaN
    // gives nothing (f32::min and max ignore a NaN, and the casts saturate).
    let pixels = |coordinates: [f32; 4], limit: usize| {
        let low = coordinates.into_iter().fold(f32::INFINITY, f32::min);
        let high = coordinates.into_iter().fold(f32::NEG_INFINITY, f32::max);
        (low.floor().max(0.0) as usize).min(limit)
            ..(high.floor() as usize).saturating_add(2).min(limit)
    };
    let columns = pixels(corners.map(|c| c.0), frame.width as usize);
    let rows = pixels(corners.map(|c| c.1), frame.height as usize);
    let stride = frame.width as usize * 3;
    let mut read = 0u8;
    for row in rows {
        let start = row * stride + columns.start * 3;
        let end = row * stride + columns.end * 3;
        for at in (start - start % CACHE_LINE..end).step_by(CACHE_LINE) {
            read ^= frame.rgb[at];
        }
    }
    // Used, so that the loads are not optimised away.
    std::hint::black_box(read);
}

/// The sampler 16 tensor pixels at a time, in AVX-512 instructions: the same integer
/// arithmetic as [`bilinear`] and the same float arithmetic as [`Levels`], so the same values.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Levels, LUMA, SUBPIXEL_BITS, SUBPIXEL_LIMIT, SUBPIXEL_STEPS, WEIGHT_BITS};
    use crate::frame::Frame;
    use crate::geometry::Affine;
    use crate::model::manifest::Colour;

    /// [`super::to_subpixel_steps`] of 16 coordinates. A NaN becomes the lower limit here (0
    /// there): either way the pixel is not inside the frame, and the scalar path samples it.
    #[target_feature(enable = "avx512f")]
    fn subpixel_steps(coordinate: __m512) -> __m512i {
        let steps = _mm512_mul_ps(coordinate, _mm512_set1_ps(SUBPIXEL_STEPS));
        let steps = _mm512_min_ps(
            _mm512_max_ps(steps, _mm512_set1_ps(-SUBPIXEL_LIMIT)),
            _mm512_set1_ps(SUBPIXEL_LIMIT),
        );
        let whole = _mm512_cvttps_epi32(steps);
        let fraction = _mm512_sub_ps(steps, _mm512_cvtepi32_ps(whole));
        let up = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(fraction, _mm512_set1_ps(0.5));
        let down = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(fraction, _mm512_set1_ps(-0.5));
        let one = _mm512_set1_epi32(1);
        let whole = _mm512_mask_add_epi32(whole, up, whole, one);
        _mm512_mask_sub_epi32(whole, down, whole, one)
    }

    /// The left and right taps of 16 pixels in one row of the frame (the left ones' first bytes
    /// at `at`): each pair read as one 8-byte lane, eight lanes a gather. (Four gathers of 16
    /// 4-byte lanes, one per tap, were 80% of the sampler's time on AMD's Zen 4, where a
    /// gather costs about a load per lane.) `at` + 8 must lie in the frame for every lane.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn row_taps(frame: &Frame, at: __m512i) -> [__m512i; 2] {
        let base = frame.rgb.as_ptr().cast();
        // SAFETY: every 8-byte read lies in `frame.rgb` (the caller's condition).
        let (low, high) = unsafe {
            (
                _mm512_i32gather_epi64::<1>(_mm512_castsi512_si256(at), base),
                _mm512_i32gather_epi64::<1>(_mm512_extracti64x4_epi64::<1>(at), base),
            )
        };
        // The left tap's bytes are the lane's first four, the right one's the four from its
        // fourth byte; each to a 32-bit lane of its own.
        let halves = |low: __m512i, high: __m512i| {
            let low = _mm512_cvtepi64_epi32(low);
            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(low), _mm512_cvtepi64_epi32(high))
        };
        [
            halves(low, high),
            halves(_mm512_srli_epi64::<24>(low), _mm512_srli_epi64::<24>(high)),
        ]
    }

    /// Tensor pixels per call.
    pub(super) const PIXELS: usize = 16;

    /// Tensor pixels `u..u + 16` of row `v` (the output's `at[0]..`, `at[1]` apart in `out`,
    /// their channels `at[2]` apart), at the frame positions `map` gives them; false, with
    /// nothing written, if any of them needs the border.
    #[target_feature(enable = "avx512f")]
    pub(super) fn sample(
        frame: &Frame,
        map: &Affine,
        [u, v]: [usize; 2],
        levels: &Levels,
        out: &mut [f32],
        [first, pixel_stride, channel_stride]: [usize; 3],
        channels: usize,
    ) -> bool {
        let (w, h) = (frame.width as i32, frame.height as i32);
        let Ok(len) = i32::try_from(frame.rgb.len()) else {
            return false;
        };
        // `Affine::apply` and `to_subpixel_steps`, 16 at a time with the same roundings: the
        // columns are whole numbers (exact as f32), the products and sums taken in its order.
        let lanes = _mm512_setr_ps(
            0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0,
        );
        let us = _mm512_add_ps(_mm512_set1_ps(u as f32), lanes);
        let v = v as f32;
        let [x, y] = [(map.a, map.b * v, map.c), (map.d, map.e * v, map.f)].map(|(a, bv, c)| {
            let coordinate = _mm512_add_ps(
                _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(a), us), _mm512_set1_ps(bv)),
                _mm512_set1_ps(c),
            );
            subpixel_steps(coordinate)
        });
        let [x0, y0] = [x, y].map(|p| _mm512_srai_epi32::<SUBPIXEL_BITS>(p));
        let steps = _mm512_set1_epi32((1 << SUBPIXEL_BITS) - 1);
        let [fx, fy] = [x, y].map(|p| _mm512_and_si512(p, steps));
        let one = _mm512_set1_epi32(1);
        let zero = _mm512_setzero_si512();
        // `bilinear`'s fast case: both rows and columns inside the frame.
        let inside = _mm512_cmpge_epi32_mask(x0, zero)
            & _mm512_cmpge_epi32_mask(y0, zero)
            & _mm512_cmplt_epi32_mask(_mm512_add_epi32(x0, one), _mm512_set1_epi32(w))
            & _mm512_cmplt_epi32_mask(_mm512_add_epi32(y0, one), _mm512_set1_epi32(h));
        if inside != u16::MAX {
            return false;
        }
        let stride = w * 3;
        let top_left_at = _mm512_add_epi32(
            _mm512_mullo_epi32(y0, _mm512_set1_epi32(stride)),
            _mm512_mullo_epi32(x0, _mm512_set1_epi32(3)),
        );
        // Each row's two taps are read as 8 bytes (their RGBs and two more): the last must lie
        // in the frame.
        let last = _mm512_add_epi32(top_left_at, _mm512_set1_epi32(stride + 8));
        if _mm512_cmpgt_epi32_mask(last, _mm512_set1_epi32(len)) != 0 {
            return false;
        }
        // Top-left, top-right, bottom-left, bottom-right, as `bilinear`, each tap's RGB in the
        // low bytes of a lane.
        let [top_left, top_right] = row_taps(frame, top_left_at);
        let [bottom_left, bottom_right] = row_taps(
            frame,
            _mm512_add_epi32(top_left_at, _mm512_set1_epi32(stride)),
        );
        let taps = [top_left, top_right, bottom_left, bottom_right];
        let full = _mm512_set1_epi32(1 << SUBPIXEL_BITS);
        let [gx, gy] = [fx, fy].map(|f| _mm512_sub_epi32(full, f));
        let weights = [
            _mm512_mullo_epi32(gx, gy),
            _mm512_mullo_epi32(fx, gy),
            _mm512_mullo_epi32(gx, fy),
            _mm512_mullo_epi32(fx, fy),
        ];
        let byte = _mm512_set1_epi32(0xff);
        let half = _mm512_set1_epi32(1 << (WEIGHT_BITS - 1));
        // The R, G and B levels, rounded as `bilinear` rounds them.
        let rgb = [0u32, 8, 16].map(|shift| {
            let mut sum = half;
            for (tap, weight) in taps.iter().zip(weights) {
                let level = _mm512_and_si512(
                    _mm512_srlv_epi32(*tap, _mm512_set1_epi32(shift as i32)),
                    byte,
                );
                sum = _mm512_add_epi32(sum, _mm512_mullo_epi32(weight, level));
            }
            _mm512_cvtepi32_ps(_mm512_srai_epi32::<WEIGHT_BITS>(sum))
        });
        let normalised = |level: __m512, c: usize| {
            let (mean, scale) = levels.normalise[c];
            _mm512_mul_ps(
                _mm512_sub_ps(level, _mm512_set1_ps(mean)),
                _mm512_set1_ps(scale),
            )
        };
        let [r, g, b] = rgb;
        let values = match levels.colour {
            Colour::Rgb => [normalised(r, 0), normalised(g, 1), normalised(b, 2)],
            Colour::Bgr => [normalised(b, 0), normalised(g, 1), normalised(r, 2)],
            Colour::Grey => {
                let luma = |c: usize, level| _mm512_mul_ps(_mm512_set1_ps(LUMA[c]), level);
                let luma = _mm512_add_ps(_mm512_add_ps(luma(0, r), luma(1, g)), luma(2, b));
                [normalised(luma, 0), r, r]
            }
        };
        for (c, value) in values.into_iter().enumerate().take(channels) {
            let mut pixels = [0.0f32; PIXELS];
            // SAFETY: 16 values.
            unsafe { _mm512_storeu_ps(pixels.as_mut_ptr(), value) };
            let start = first * pixel_stride + c * channel_stride;
            if pixel_stride == 1 {
                out[start..][..PIXELS].copy_from_slice(&pixels);
            } else {
                for (k, value) in pixels.into_iter().enumerate() {
                    out[start + k * pixel_stride] = value;
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(layout: Layout, colour: Colour, size: usize) -> InputSpec {
        let channels = if colour == Colour::Grey { 1 } else { 3 };
        let shape = match layout {
            Layout::Nchw => vec![1, channels, size, size],
            Layout::Nhwc => vec![1, size, size, channels],
        };
        InputSpec {
            name: "input".into(),
            shape,
            layout,
            colour,
            mean: vec![127.5; channels],
            std: vec![127.5; channels],
        }
    }

    fn frame_2x2() -> Frame {
        let mut frame = Frame::with_capacity(2, 2);
        frame.resize(2, 2).copy_from_slice(&[
            255, 0, 0, /**/ 0, 255, 0, //
            0, 0, 255, /**/ 255, 255, 255,
        ]);
        frame
    }

    #[test]
    fn identity_map_copies_pixels_in_each_layout() {
        let frame = frame_2x2();
        let mut nchw = vec![0.0; 12];
        sample_into(
            &frame,
            &Affine::IDENTITY,
            &spec(Layout::Nchw, Colour::Rgb, 2),
            Border::Black,
            &mut nchw,
        );
        // Red plane: 255, 0, 0, 255 -> 1, -1, -1, 1.
        assert_eq!(&nchw[..4], &[1.0, -1.0, -1.0, 1.0]);
        let mut nhwc = vec![0.0; 12];
        sample_into(
            &frame,
            &Affine::IDENTITY,
            &spec(Layout::Nhwc, Colour::Bgr, 2),
            Border::Black,
            &mut nhwc,
        );
        // First pixel red, as BGR: -1, -1, 1.
        assert_eq!(&nhwc[..3], &[-1.0, -1.0, 1.0]);
    }

    #[test]
    fn grey_uses_luma_and_padding_is_black() {
        let frame = frame_2x2();
        let mut grey = vec![0.0; 4];
        sample_into(
            &frame,
            &Affine::IDENTITY,
            &spec(Layout::Nchw, Colour::Grey, 2),
            Border::Black,
            &mut grey,
        );
        let red: f32 = (0.299 * 255.0 - 127.5) / 127.5;
        assert!((grey[0] - red).abs() < 1e-5, "{grey:?}");
        assert!((grey[3] - 1.0).abs() < 1e-5, "{grey:?}");
        // Shift the map so that the tensor's left column falls outside the frame: black (-1).
        let shifted = Affine {
            c: -2.0,
            ..Affine::IDENTITY
        };
        sample_into(
            &frame,
            &shifted,
            &spec(Layout::Nchw, Colour::Grey, 2),
            Border::Black,
            &mut grey,
        );
        assert_eq!(grey[0], -1.0);
        // Replicated, the left column repeats the frame's left edge: red and blue -> luma.
        sample_into(
            &frame,
            &shifted,
            &spec(Layout::Nchw, Colour::Grey, 2),
            Border::Replicate,
            &mut grey,
        );
        assert!((grey[0] - red).abs() < 1e-5, "{grey:?}");
    }

    #[test]
    fn subpixel_steps_round_as_f32_round() {
        let mut coordinate = -700.0f32;
        while coordinate < 700.0 {
            let steps = (coordinate * SUBPIXEL_STEPS).round() as i32;
            assert_eq!(to_subpixel_steps(coordinate), steps, "{coordinate}");
            // Steps of 1/64 px hit every half-way case; the odd offset covers the rest.
            coordinate += 1.0 / 64.0 + 1e-4;
        }
        for half in [0.5f32, 1.5, -0.5, -1.5, 100.5, -100.5] {
            let coordinate = half / SUBPIXEL_STEPS;
            assert_eq!(to_subpixel_steps(coordinate), half.round() as i32);
        }
        assert_eq!(to_subpixel_steps(f32::INFINITY), 1_000_000_000);
        assert_eq!(to_subpixel_steps(f32::NAN), 0);
    }

    #[test]
    fn upsampling_interpolates_between_pixels() {
        // Red 0 then 100 across a 2x2 frame (both rows alike), sampled every quarter pixel:
        // tensor pixel u takes the frame at x = u / 4.
        let mut frame = Frame::with_capacity(2, 2);
        frame
            .resize(2, 2)
            .copy_from_slice(&[0, 0, 0, 100, 0, 0, 0, 0, 0, 100, 0, 0]);
        let quarter = Affine {
            a: 0.25,
            e: 0.25,
            ..Affine::IDENTITY
        };
        let mut tensor = vec![0.0; 4 * 4 * 3];
        sample_into(
            &frame,
            &quarter,
            &spec(Layout::Nchw, Colour::Rgb, 4),
            Border::Black,
            &mut tensor,
        );
        let red: Vec<f32> = tensor[..4]
            .iter()
            .map(|v| (v * 127.5 + 127.5).round())
            .collect();
        assert_eq!(red, vec![0.0, 25.0, 50.0, 75.0]);
    }

    /// Every value of `sample_into` as `bilinear` and the levels' table make it one pixel at
    /// a time (100x100 tensor pixels).
    fn assert_equals_scalar_samples(frame: &Frame, map: &Affine, spec: &InputSpec, border: Border) {
        let mut sampled = vec![0.0; 100 * 100 * spec.channels()];
        sample_into(frame, map, spec, border, &mut sampled);
        let levels = Levels::new(spec);
        let (pixel_stride, channel_stride) = match spec.layout {
            Layout::Nchw => (1, 100 * 100),
            Layout::Nhwc => (spec.channels(), 1),
        };
        for (i, (v, u)) in (0..100)
            .flat_map(|v| (0..100).map(move |u| (v, u)))
            .enumerate()
        {
            let (x, y) = map.apply(u as f32, v as f32);
            let (x, y) = (to_subpixel_steps(x), to_subpixel_steps(y));
            let values = levels.tensor_values(bilinear(frame, x, y, border));
            for (c, &value) in values[..spec.channels()].iter().enumerate() {
                let got = sampled[i * pixel_stride + c * channel_stride];
                assert_eq!(got, value, "{map:?} pixel ({u}, {v}) channel {c}");
            }
        }
    }

    fn varied_frame(w: u32, h: u32) -> Frame {
        let mut frame = Frame::with_capacity(w, h);
        for (i, level) in frame.resize(w, h).iter_mut().enumerate() {
            *level = (i * 7919 % 251) as u8;
        }
        frame
    }

    #[test]
    fn pixels_sampled_sixteen_at_a_time_equal_the_scalar_samples() {
        // A rotated, scaled crop of a 61x47 frame of varied levels, part of it past the
        // frame's edge (those chunks of 16 take the scalar path), in each colour and layout.
        let frame = varied_frame(61, 47);
        let (cos, sin) = (0.3f32.cos() * 0.37, 0.3f32.sin() * 0.37);
        let map = Affine {
            a: cos,
            b: -sin,
            c: 20.3,
            d: sin,
            e: cos,
            f: -3.1,
        };
        for (layout, colour, border) in [
            (Layout::Nchw, Colour::Rgb, Border::Replicate),
            (Layout::Nhwc, Colour::Bgr, Border::Black),
            (Layout::Nchw, Colour::Grey, Border::Replicate),
        ] {
            let mut spec = spec(layout, colour, 100);
            spec.mean = vec![127.5, 110.0, 90.0][..spec.channels()].to_vec();
            spec.std = vec![127.5, 60.0, 77.0][..spec.channels()].to_vec();
            assert_equals_scalar_samples(&frame, &map, &spec, border);
        }
    }

    #[test]
    fn crops_far_outside_the_frame_or_not_finite_sample_as_one_pixel_at_a_time() {
        // Maps that a lost track or a degenerate box could give: the rows read ahead of the
        // gathers (their bounding box) must stay within the frame, whatever the corners.
        let frame = varied_frame(61, 47);
        let scaled = |k: f32, c: f32, f: f32| Affine {
            a: k,
            b: 0.0,
            c,
            d: 0.0,
            e: k,
            f,
        };
        let spec = spec(Layout::Nchw, Colour::Rgb, 100);
        for map in [
            scaled(0.5, -1e6, 10.0),
            scaled(0.5, 10.0, 1e7),
            scaled(f32::INFINITY, 0.0, 0.0),
            scaled(1e30, -1e30, 1e30),
            scaled(f32::NAN, 3.0, 3.0),
            scaled(0.5, f32::NAN, f32::NEG_INFINITY),
        ] {
            for border in [Border::Black, Border::Replicate] {
                assert_equals_scalar_samples(&frame, &map, &spec, border);
            }
        }
    }
}
