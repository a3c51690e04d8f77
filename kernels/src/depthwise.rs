//! Depthwise convolution (one filter per channel) of f32 NCHW planes with small output planes
//! and many channels, computed channel-last.
//!
//! tract 0.23 convolves a depthwise layer one channel plane at a time, one output value at a
//! time. On the small, deep planes of these MobileNet-style networks (2x2 to 24x24 pixels, 64
//! to 384 channels) its per-plane work dominates: 0.5 GMAC/s on BlazeFace's 6x6x384 layers.
//! This kernel transposes the planes into a zero-padded channel-last scratch (row, column,
//! channel), computes each output pixel as vectors across the channels (a tap is one multiply
//! and add of a channel vector, summed in registers: no bounds, no per-plane set-up, and a
//! stride is only where the window starts), and transposes the result back.
//!
//! The transposes cost a pass over the input and the output each, which only small planes
//! repay: larger ones go to [`crate::rows`] ([`DepthwiseConv2d::for_node`]; per-layer figures in
//! docs/performance.md).
//!
//! Each output is the bias plus the taps in tract's order, multiplied and added without
//! fusing, as tract's kernel does on x86-64: the same values there (the tests compare).

use std::sync::Arc;

use tract_core::internal::*;

use crate::{ConvLayer, Window};

/// Layers with output planes up to this many pixels (and whole vectors of channels) are
/// computed here, larger ones by rows ([`crate::rows`]). Per layer (x86-64, AVX-512, against
/// tract's time): 0.24-0.92 at 24x24 and below but 1.07-1.3 at 28x28 and 1.8-11 at 48x48 and
/// up, where rows take 0.45-0.75; rows 1.3-1.6x this kernel's time on 16x16x64 and on 48x48 ->
/// 24x24 strided (docs/performance.md).
const MAX_OUTPUT_PIXELS: usize = 24 * 24;

/// Channels moved together into the channel-last scratch.
const BLOCK: usize = 8;

/// Channels multiplied and added together: one 512-bit vector, two 256-bit ones. A layer's
/// channels must be a multiple.
const LANES: usize = 16;

#[derive(Debug, Clone, PartialEq)]
pub struct DepthwiseConv2d {
    window: Window,
    channels: usize,
    /// The weights tap by tap: tap (ky, kx)'s weight for channel c at `(ky * kw + kx) * C + c`.
    taps: Arc<Vec<f32>>,
    /// One bias per channel.
    bias: Arc<Vec<f32>>,
}

impl DepthwiseConv2d {
    /// The replacement for node `id` if it is a depthwise convolution this kernel computes:
    /// f32, channels first, batch of one, 2-D, no dilation, constant weights and bias, fixed
    /// shapes, whole vectors of channels and an output plane small enough to gain.
    pub fn for_node(model: &TypedModel, id: usize) -> TractResult<Option<DepthwiseConv2d>> {
        let Some(ConvLayer {
            conv,
            window,
            weights,
        }) = ConvLayer::of(model, id, |conv, window| {
            let spec = &conv.pool_spec;
            let channels = spec.input_channels;
            conv.group == channels
                && spec.output_channels == channels
                && channels % LANES == 0
                && window.output[0] * window.output[1] <= MAX_OUTPUT_PIXELS
        })?
        else {
            return Ok(None);
        };
        let channels = conv.pool_spec.input_channels;
        let taps = window.kernel[0] * window.kernel[1];
        // OIHW with one input channel per group: [C, 1, kh, kw], each channel's taps together.
        let mut tap_major = vec![0.0; channels * taps];
        for (c, filter) in weights.kernel.chunks_exact(taps).enumerate() {
            for (t, &w) in filter.iter().enumerate() {
                tap_major[t * channels + c] = w;
            }
        }
        Ok(Some(DepthwiseConv2d {
            window,
            channels,
            taps: Arc::new(tap_major),
            bias: Arc::new(weights.bias),
        }))
    }

    /// `planes` (C planes, height by width), channel-last in a new scratch of the padded
    /// size, zero outside them.
    fn to_channel_last(&self, planes: &[f32]) -> Vec<f32> {
        let c = self.channels;
        let [h, w] = self.window.input;
        let [ph, pw] = self.window.reach();
        let mut padded = vec![0.0; ph * pw * c];
        let rows = h.min(ph - self.window.pad[0]);
        let columns = w.min(pw - self.window.pad[1]);
        let plane = h * w;
        let whole = columns - columns % BLOCK;
        for y in 0..rows {
            let row = ((y + self.window.pad[0]) * pw + self.window.pad[1]) * c;
            for channel in (0..c).step_by(BLOCK) {
                // Tiles of BLOCK pixels by BLOCK channels: BLOCK contiguous reads (a run of
                // each plane), then BLOCK contiguous writes (a run of each pixel's vector).
                for x in (0..whole).step_by(BLOCK) {
                    let tile: [[f32; BLOCK]; BLOCK] = std::array::from_fn(|j| {
                        planes[(channel + j) * plane + y * w + x..][..BLOCK]
                            .try_into()
                            .expect("BLOCK")
                    });
                    for i in 0..BLOCK {
                        let pixel: [f32; BLOCK] = std::array::from_fn(|j| tile[j][i]);
                        padded[row + (x + i) * c + channel..][..BLOCK].copy_from_slice(&pixel);
                    }
                }
                for x in whole..columns {
                    for j in 0..BLOCK {
                        padded[row + x * c + channel + j] =
                            planes[(channel + j) * plane + y * w + x];
                    }
                }
            }
        }
        padded
    }

    /// `pixels` (channel-last, one C vector per output pixel) into `planes`, in tiles of
    /// BLOCK pixels by BLOCK channels: BLOCK contiguous reads, then BLOCK contiguous writes.
    fn to_planes(&self, pixels: &[f32], planes: &mut [f32]) {
        let c = self.channels;
        let count = self.window.output[0] * self.window.output[1];
        let whole = count - count % BLOCK;
        for channel in (0..c).step_by(BLOCK) {
            for p in (0..whole).step_by(BLOCK) {
                let mut tile = [[0f32; BLOCK]; BLOCK];
                for (i, row) in tile.iter_mut().enumerate() {
                    *row = pixels[(p + i) * c + channel..][..BLOCK]
                        .try_into()
                        .expect("BLOCK");
                }
                for j in 0..BLOCK {
                    let column: [f32; BLOCK] = std::array::from_fn(|i| tile[i][j]);
                    planes[(channel + j) * count + p..][..BLOCK].copy_from_slice(&column);
                }
            }
            for p in whole..count {
                for j in 0..BLOCK {
                    planes[(channel + j) * count + p] = pixels[p * c + channel + j];
                }
            }
        }
    }

    /// Every output pixel of `padded` (channel-last) into `pixels` (channel-last): the bias,
    /// plus each tap's weights times the input pixel under the tap, a vector of channels at a
    /// time, summed in registers and stored once.
    #[inline(always)]
    fn convolve_portable(&self, padded: &[f32], pixels: &mut [f32]) {
        let c = self.channels;
        let [_, pw] = self.window.reach();
        let [kh, kw] = self.window.kernel;
        let [sy, sx] = self.window.stride;
        let ow = self.window.output[1];
        // Where each tap's input pixel sits, from the window's top-left one.
        let offsets: Vec<usize> = (0..kh)
            .flat_map(|ky| (0..kw).map(move |kx| (ky * pw + kx) * c))
            .collect();
        for (p, out) in pixels.chunks_exact_mut(c).enumerate() {
            let corner = ((p / ow) * sy * pw + (p % ow) * sx) * c;
            let window = &padded[corner..];
            for start in (0..c).step_by(LANES) {
                let mut sum: [f32; LANES] = self.bias[start..][..LANES].try_into().expect("LANES");
                for (&offset, weights) in offsets.iter().zip(self.taps.chunks_exact(c)) {
                    let w: [f32; LANES] = weights[start..][..LANES].try_into().expect("LANES");
                    let x: [f32; LANES] =
                        window[offset + start..][..LANES].try_into().expect("LANES");
                    for i in 0..LANES {
                        sum[i] += w[i] * x[i];
                    }
                }
                out[start..][..LANES].copy_from_slice(&sum);
            }
        }
    }

    on_widest_vectors!(DepthwiseConv2d, fn convolve => convolve_portable(padded: &[f32], pixels: &mut [f32]));
}

// tract compares operators to merge equal nodes; weights compare as values, as tract's own
// tensors do (it declares `Tensor: Eq` too).
impl Eq for DepthwiseConv2d {}

impl Op for DepthwiseConv2d {
    fn name(&self) -> StaticName {
        "facecast.DepthwiseConv2d".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} channels, {}",
            self.channels,
            self.window.describe()
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for DepthwiseConv2d {
    op_out_of_plan!();

    /// Inputs: the planes, then tract's kernel and bias (constants, read once by
    /// [`DepthwiseConv2d::for_node`]).
    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = inputs[0].try_as_plain_ram()?;
        let input = input.as_slice::<f32>()?;
        let padded = self.to_channel_last(input);
        let [oh, ow] = self.window.output;
        let mut pixels = vec![0.0; oh * ow * self.channels];
        self.convolve(&padded, &mut pixels);
        // The output is allocated after the scratch, which is then freed below it: freed last,
        // at the top of the heap, the allocator gave its pages back and faulted them in again
        // on every run (a 16x16x64 layer 1.35x slower).
        let output = crate::output_planes(&self.window.output_shape, |planes| {
            self.to_planes(&pixels, planes)
        })?;
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for DepthwiseConv2d {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].datum_type.fact(&self.window.output_shape)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use crate::tests::{conv_graph, depthwise_layers_equal_tract, installed};

    #[test]
    fn equals_tract_on_sizes_strides_and_paddings() {
        depthwise_layers_equal_tract(&[
            (384, [6, 6], 3, 1, [1, 1]),
            (64, [24, 24], 3, 1, [1, 1]),
            (16, [7, 9], 3, 2, [1, 1]),
            (48, [12, 12], 5, 1, [2, 2]),
            (16, [2, 2], 3, 1, [1, 1]),
            (32, [11, 10], 3, 3, [0, 2]),
        ]);
    }

    #[test]
    fn leaves_large_planes_and_odd_channel_counts_to_rows() {
        for (channels, hw, stride) in [(32, [48, 48], 1), (24, [12, 12], 1), (24, [12, 12], 2)] {
            let ops = installed(conv_graph([channels; 3], hw, 3, stride, [1, 1]));
            assert_eq!(ops, ["facecast.Conv2dRows"], "{channels}x{hw:?} s{stride}");
        }
    }
}
