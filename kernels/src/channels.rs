//! Depthwise layers of small planes computed a vector of channels at a time (AVX-512):
//! [`LANES`] channels' planes transposed, [`LANES`] pixels at a time, into one padded scratch
//! (a vector per pixel), each output pixel's vector computed from the scratch's at the
//! window's taps, up to eight neighbouring pixels of a row at once, and transposed back into
//! the channels' planes. On planes narrower than a vector the plane-by-plane kernels pay a
//! scratch fill, a run of mostly padding and a copy out per plane for a few dozen pixels (a
//! 6x6 plane of BlazeFace's 384: about 300 cycles).
//!
//! Until round 18 each pixel was gathered in and scattered out on its own, its taps one
//! chain of dependent additions: in a C model of the loop, 20 cycles a pixel for the chain
//! alone, 7 with four pixels' chains side by side, 33-37 with the scatter (which also kept
//! the chains from overlapping). Now, one layer alone, alternating: 14x14x128 0.84x the time,
//! 14x14x256 0.79x, 7x7x256 0.84x, 6x6x384 0.87x, 12x12x256 stride 2 0.78x, 8x8x128 0.74x
//! (the 16x16 transposes run on the port the multiplies and adds share; gathering the input
//! instead of transposing it took 1.04-1.24x the time). Max pools computed by channel did
//! not gain: face-api's and FER's 3x3 stride-2 pools on 14x14 to 30x30 inputs took
//! 0.76-1.14x the time, the gathers of four input pixels per output outweighing the phases'
//! set-up.

use crate::phases::LANES;
use crate::Window;

/// A depthwise layer's window over a padded scratch of channel vectors, with its weights and
/// bias a vector of channels at a time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ByChannel {
    pub window: Window,
    channels: usize,
    /// The scratch's width and height (the padded input, as far as the taps read).
    width: usize,
    height: usize,
    /// Where each input pixel is in the scratch, if the taps read it.
    scratch_at: Vec<Option<usize>>,
    /// Where each tap reads the scratch, from its output pixel's first tap (row-major).
    offsets: Vec<usize>,
    /// The furthest of `offsets`: how far past its first tap an output pixel reads.
    reach: usize,
    /// The weights, [`LANES`] channels a vector: block `b`'s tap `t` at `b * taps + t`, zero
    /// past the last channel.
    weights: Vec<Lanes>,
    /// The bias, a vector per block, zero past the last channel.
    bias: Vec<Lanes>,
}

impl ByChannel {
    /// The layer of one filter per channel (`filters`, OIHW, and `bias`, of `channels`
    /// channels) by channel, if its channels fill a vector and its output planes are narrower
    /// than one, on a CPU with AVX-512 (the portable kernel's vectors are a plane's pixels).
    pub fn of(
        window: &Window,
        channels: usize,
        filters: &[f32],
        bias: &[f32],
    ) -> Option<ByChannel> {
        if channels < LANES || window.output[1] >= LANES || !crate::by_channel_available() {
            return None;
        }
        let [h, w] = window.input;
        let [oh, ow] = window.output;
        let [kh, kw] = window.kernel;
        let [sy, sx] = window.stride;
        let [top, left] = window.pad;
        let (height, width) = ((oh - 1) * sy + kh, (ow - 1) * sx + kw);
        let scratch_at = (0..h)
            .flat_map(|iy| (0..w).map(move |ix| (iy + top, ix + left)))
            .map(|(y, x)| (y < height && x < width).then_some(y * width + x))
            .collect();
        let taps = kh * kw;
        let blocks = channels.div_ceil(LANES);
        let mut weights = vec![Lanes::ZERO; blocks * taps];
        for (channel, filter) in filters.chunks_exact(taps).enumerate() {
            let (block, lane) = (channel / LANES, channel % LANES);
            for (t, &weight) in filter.iter().enumerate() {
                weights[block * taps + t].0[lane] = weight;
            }
        }
        let mut padded_bias = vec![Lanes::ZERO; blocks];
        for (channel, &bias) in bias[..channels].iter().enumerate() {
            padded_bias[channel / LANES].0[channel % LANES] = bias;
        }
        Some(ByChannel {
            window: window.clone(),
            channels,
            width,
            height,
            scratch_at,
            offsets: (0..kh)
                .flat_map(|ky| (0..kw).map(move |kx| ky * width + kx))
                .collect(),
            reach: (kh - 1) * width + kw - 1,
            weights,
            bias: padded_bias,
        })
    }
}

/// A vector's values, aligned as a vector: the scratch's pixels and the weights are loaded
/// whole (on a scratch 16 bytes past a vector's alignment every load split two cache lines:
/// 1.8x the time of the sums).
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C, align(64))]
pub(crate) struct Lanes([f32; LANES]);

impl Lanes {
    const ZERO: Lanes = Lanes([0.0; LANES]);
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;

    use super::{ByChannel, Lanes, LANES};
    use crate::panels::avx512::mask;

    /// Output pixels of a row summed side by side: their chains of additions do not wait on
    /// each other.
    const CHAINS: usize = 8;

    /// Every output plane from `input` (both channels first), [`LANES`] channels at a time:
    /// each output value the bias plus its taps' products in tract's order, each multiply
    /// and add fused (as the depthwise stacks: see the depthwise module's doc).
    #[target_feature(enable = "avx512f")]
    pub(crate) fn compute(layer: &ByChannel, relu_input: bool, input: &[f32], output: &mut [f32]) {
        let window = &layer.window;
        let ([h, w], [oh, ow]) = (window.input, window.output);
        let [sy, sx] = window.stride;
        let (width, channels, taps) = (layer.width, layer.channels, layer.offsets.len());
        assert!(input.len() == channels * h * w && output.len() == channels * oh * ow);
        let blocks = channels.div_ceil(LANES);
        assert!(layer.weights.len() == blocks * taps && layer.bias.len() == blocks);
        let mut scratch = vec![Lanes::ZERO; layer.height * width];
        assert!((oh - 1) * sy * width + (ow - 1) * sx + layer.reach < scratch.len());
        assert!(layer.scratch_at.len() == h * w);
        assert!(layer
            .scratch_at
            .iter()
            .flatten()
            .all(|&at| at < scratch.len()));
        // The output pixels not yet stored, a vector of channels each, in their slots.
        let mut square = [_mm512_setzero_ps(); LANES];
        for (b, block) in (0..channels).step_by(LANES).enumerate() {
            let live = (channels - block).min(LANES);
            for first in (0..h * w).step_by(LANES) {
                let pixels = (h * w - first).min(LANES);
                // SAFETY: the live channels' planes hold these pixels (checked above).
                let values =
                    unsafe { load_square(&input[block * h * w..], h * w, first, live, pixels) };
                for (&value, &at) in values.iter().zip(&layer.scratch_at[first..][..pixels]) {
                    let Some(at) = at else { continue };
                    let value = match relu_input {
                        true => _mm512_max_ps(value, _mm512_setzero_ps()),
                        false => value,
                    };
                    // SAFETY: inside the scratch (checked above), a vector's alignment.
                    unsafe { _mm512_store_ps(scratch[at].0.as_mut_ptr(), value) };
                }
            }
            let weights = &layer.weights[b * taps..][..taps];
            // SAFETY: a vector's values, aligned.
            let bias = unsafe { _mm512_load_ps(layer.bias[b].0.as_ptr()) };
            let planes = &mut output[block * oh * ow..];
            let mut pixel = 0;
            for oy in 0..oh {
                // The row in pieces of nearly equal length, up to CHAINS pixels each.
                let pieces = ow.div_ceil(CHAINS);
                for piece in 0..pieces {
                    let (ox, end) = (ow * piece / pieces, ow * (piece + 1) / pieces);
                    let first = oy * sy * width + ox * sx;
                    macro_rules! sums {
                        ($($n:literal)*) => {
                            match end - ox {
                                $($n => pad(sums::<$n>(layer, &scratch, weights, bias, first)),)*
                                n => unreachable!("{n} pixels in a piece"),
                            }
                        };
                    }
                    let (sums, n) = sums!(1 2 3 4 5 6 7 8);
                    for &sum in &sums[..n] {
                        square[pixel % LANES] = sum;
                        if pixel % LANES == LANES - 1 || pixel + 1 == oh * ow {
                            let first = pixel / LANES * LANES;
                            // SAFETY: the live channels' output planes hold these pixels.
                            unsafe {
                                store_square(
                                    square,
                                    planes,
                                    oh * ow,
                                    first,
                                    live,
                                    pixel + 1 - first,
                                )
                            };
                        }
                        pixel += 1;
                    }
                }
            }
        }
    }

    /// `N` sums as the first of [`CHAINS`] (the rest unused), and `N`.
    #[inline(always)]
    fn pad<const N: usize>(sums: [__m512; N]) -> ([__m512; CHAINS], usize) {
        let mut padded = [sums[0]; CHAINS];
        padded[..N].copy_from_slice(&sums);
        (padded, N)
    }

    /// The sums of `N` neighbouring output pixels of a row from `first` (the first one's
    /// first tap in the scratch), side by side, each the bias plus its taps in order (fused
    /// multiply-adds).
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn sums<const N: usize>(
        layer: &ByChannel,
        scratch: &[Lanes],
        weights: &[Lanes],
        bias: __m512,
        first: usize,
    ) -> [__m512; N] {
        let sx = layer.window.stride[1];
        // No offset reaches past `reach` (`ByChannel::of` makes both).
        assert!(first + (N - 1) * sx + layer.reach < scratch.len());
        assert!(weights.len() == layer.offsets.len());
        let mut sums = [bias; N];
        for (weight, &offset) in weights.iter().zip(&layer.offsets) {
            // SAFETY: inside the scratch (checked above), vectors' alignment.
            unsafe {
                let weight = _mm512_load_ps(weight.0.as_ptr());
                let at = scratch.as_ptr().add(first + offset);
                for (j, sum) in sums.iter_mut().enumerate() {
                    let x = _mm512_load_ps((*at.add(j * sx)).0.as_ptr());
                    *sum = _mm512_fmadd_ps(weight, x, *sum);
                }
            }
        }
        sums
    }

    /// Pixels `first..first + pixels` of `channels` planes of `plane` values from the start
    /// of `values`, as one vector per pixel of the channels' values (zero past them).
    ///
    /// # Safety
    /// The planes must hold the pixels inside `values`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load_square(
        values: &[f32],
        plane: usize,
        first: usize,
        channels: usize,
        pixels: usize,
    ) -> [__m512; LANES] {
        debug_assert!((channels - 1) * plane + first + pixels <= values.len());
        let lanes = mask(pixels);
        // Rows past `channels` are loaded under an empty mask: zero, their memory not read.
        // (A loop over the live rows kept the square on the stack.)
        let row = |c: usize| {
            let lanes = if c < channels { lanes } else { 0 };
            _mm512_maskz_loadu_ps(lanes, values.as_ptr().wrapping_add(c * plane + first))
        };
        transpose(std::array::from_fn(row))
    }

    /// One vector per pixel of `first..first + pixels` (the values of `channels` channels)
    /// into the channels' planes of `plane` values from the start of `values`.
    ///
    /// # Safety
    /// The planes must hold the pixels inside `values`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn store_square(
        square: [__m512; LANES],
        values: &mut [f32],
        plane: usize,
        first: usize,
        channels: usize,
        pixels: usize,
    ) {
        debug_assert!((channels - 1) * plane + first + pixels <= values.len());
        let lanes = mask(pixels);
        // Rows past `channels` are stored under an empty mask: nothing written.
        for (c, row) in transpose(square).into_iter().enumerate() {
            let lanes = if c < channels { lanes } else { 0 };
            let at = values.as_mut_ptr().wrapping_add(c * plane + first);
            _mm512_mask_storeu_ps(at, lanes, row);
        }
    }

    /// A 16x16 square of values transposed: lane `j` of vector `i` to lane `i` of vector `j`
    /// (pairs of lanes interleaved, then pairs of pairs, then quarters of vectors twice).
    /// Written out: as loops over the vectors' indices the compiler kept the square on the
    /// stack and chose its vectors at run time.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn transpose(r: [__m512; LANES]) -> [__m512; LANES] {
        macro_rules! pairs {
            ($lo:ident, $hi:ident, $into:ident, $back:ident, $v:ident: $(($a:literal, $b:literal)),*) => {
                [$($back($lo($into($v[$a]), $into($v[$b]))), $back($hi($into($v[$a]), $into($v[$b])))),*]
            };
        }
        use std::convert::identity as same;
        let t = pairs!(_mm512_unpacklo_ps, _mm512_unpackhi_ps, same, same, r:
            (0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11), (12, 13), (14, 15));
        let r = pairs!(_mm512_unpacklo_pd, _mm512_unpackhi_pd, _mm512_castps_pd, _mm512_castpd_ps, t:
            (0, 2), (1, 3), (4, 6), (5, 7), (8, 10), (9, 11), (12, 14), (13, 15));
        // Vector j of each four now holds, per quarter q, column 4q + j of its four rows.
        macro_rules! quarters {
            ($v:ident: $(($a:literal, $b:literal)),*) => {
                [$(_mm512_shuffle_f32x4::<0x88>($v[$a], $v[$b]),)* $(_mm512_shuffle_f32x4::<0xdd>($v[$a], $v[$b]),)*]
            };
        }
        let t0 = quarters!(r: (0, 4), (1, 5), (2, 6), (3, 7));
        let t1 = quarters!(r: (8, 12), (9, 13), (10, 14), (11, 15));
        let t = [
            t0[0], t0[1], t0[2], t0[3], t0[4], t0[5], t0[6], t0[7], t1[0], t1[1], t1[2], t1[3],
            t1[4], t1[5], t1[6], t1[7],
        ];
        quarters!(t: (0, 8), (1, 9), (2, 10), (3, 11), (4, 12), (5, 13), (6, 14), (7, 15))
    }
}
