//! Depthwise layers of small planes computed a vector of channels at a time (AVX-512):
//! [`LANES`] channels' planes gathered pixel by pixel into one padded scratch (a vector per
//! pixel), each output pixel's vector computed from the scratch's at the window's taps, and
//! scattered back to the channels' planes. On planes narrower than a vector the plane-by-plane kernels pay a scratch
//! fill, a run of mostly padding and a copy out per plane for a few dozen pixels (a 6x6 plane
//! of BlazeFace's 384: about 300 cycles); here the gathers and scatters replace the transposed
//! copies a channel-last kernel needs. (Max pools computed the same way did not gain: face-api's
//! and FER's 3x3 stride-2 pools on 14x14 to 30x30 inputs took 0.76-1.14x the time, the gathers
//! of four input pixels per output outweighing the phases' set-up.)

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
    /// The scratch's pixels inside the input, with the input pixel each holds.
    inside: Vec<[usize; 2]>,
    /// Where each tap reads the scratch, from its output pixel's first tap (row-major).
    offsets: Vec<usize>,
    /// The weights, [`LANES`] channels a vector: block `b`'s tap `t` at `(b * taps + t) *
    /// LANES`, zero past the last channel.
    weights: Vec<f32>,
    /// The bias, zero past the last channel.
    bias: Vec<f32>,
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
        let inside = (0..height)
            .flat_map(|y| (0..width).map(move |x| (y, x)))
            .filter_map(|(y, x)| {
                let (iy, ix) = (y.checked_sub(top)?, x.checked_sub(left)?);
                (iy < h && ix < w).then_some([y * width + x, iy * w + ix])
            })
            .collect();
        let taps = kh * kw;
        let blocks = channels.div_ceil(LANES);
        let mut weights = vec![0.0; blocks * taps * LANES];
        for (channel, filter) in filters.chunks_exact(taps).enumerate() {
            let (block, lane) = (channel / LANES, channel % LANES);
            for (t, &weight) in filter.iter().enumerate() {
                weights[(block * taps + t) * LANES + lane] = weight;
            }
        }
        let mut padded_bias = bias[..channels].to_vec();
        padded_bias.resize(blocks * LANES, 0.0);
        Some(ByChannel {
            window: window.clone(),
            channels,
            width,
            height,
            inside,
            offsets: (0..kh)
                .flat_map(|ky| (0..kw).map(move |kx| ky * width + kx))
                .collect(),
            weights,
            bias: padded_bias,
        })
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;

    use super::{ByChannel, LANES};
    use crate::panels::avx512::{lane_planes, mask};

    /// Every output plane from `input` (both channels first), [`LANES`] channels at a time:
    /// each output value the bias plus its taps' products in tract's order, multiplied and
    /// added without fusing, as the planes' kernel sums them (the same values).
    #[target_feature(enable = "avx512f")]
    pub(crate) fn compute(layer: &ByChannel, relu_input: bool, input: &[f32], output: &mut [f32]) {
        let window = &layer.window;
        let ([h, w], [oh, ow]) = (window.input, window.output);
        let [sy, sx] = window.stride;
        let (width, channels, taps) = (layer.width, layer.channels, layer.offsets.len());
        assert!(input.len() == channels * h * w && output.len() == channels * oh * ow);
        let blocks = channels.div_ceil(LANES);
        assert!(layer.weights.len() == blocks * taps * LANES && layer.bias.len() == blocks * LANES);
        let mut scratch = vec![0.0; layer.height * width * LANES];
        let reach = layer.offsets.iter().max().map_or(0, |&o| o);
        assert!(((oh - 1) * sy * width + (ow - 1) * sx + reach + 1) * LANES <= scratch.len());
        let inside = |&[at, pixel]: &[usize; 2]| (at + 1) * LANES <= scratch.len() && pixel < h * w;
        assert!(layer.inside.iter().all(inside));
        let (input_planes, output_planes) = (lane_planes(h * w), lane_planes(oh * ow));
        for block in (0..channels).step_by(LANES) {
            let live = mask(channels - block);
            // SAFETY (gathers and scatters): the live lanes are channels below `channels`, their
            // pixels inside their planes (checked above); the scratch holds every pixel read.
            for &[at, pixel] in &layer.inside {
                unsafe {
                    let base = input.as_ptr().add(block * h * w + pixel);
                    let mut values = _mm512_mask_i32gather_ps::<4>(
                        _mm512_setzero_ps(),
                        live,
                        input_planes,
                        base,
                    );
                    if relu_input {
                        values = _mm512_max_ps(values, _mm512_setzero_ps());
                    }
                    _mm512_storeu_ps(scratch.as_mut_ptr().add(at * LANES), values);
                }
            }
            let weights = &layer.weights[block * taps..][..taps * LANES];
            // SAFETY: the bias is padded to whole blocks.
            let bias = unsafe { _mm512_loadu_ps(layer.bias.as_ptr().add(block)) };
            for oy in 0..oh {
                for ox in 0..ow {
                    let first = oy * sy * width + ox * sx;
                    let mut sum = bias;
                    for (t, &offset) in layer.offsets.iter().enumerate() {
                        // SAFETY: inside the scratch (checked above) and the block's weights.
                        unsafe {
                            let x = _mm512_loadu_ps(scratch.as_ptr().add((first + offset) * LANES));
                            let weight = _mm512_loadu_ps(weights.as_ptr().add(t * LANES));
                            sum = _mm512_add_ps(sum, _mm512_mul_ps(weight, x));
                        }
                    }
                    unsafe {
                        let base = output.as_mut_ptr().add(block * oh * ow + oy * ow + ox);
                        _mm512_mask_i32scatter_ps::<4>(base, live, output_planes, sum);
                    }
                }
            }
        }
    }
}
