//! Depthwise convolution (one filter per channel) of f32 NCHW planes, in two ways.
//!
//! tract 0.23 convolves a depthwise layer one channel plane at a time, with per-plane set-up
//! and one output value at a time: 0.5 GMAC/s on BlazeFace's 6x6x384 layers, about 1.3 GMAC/s
//! on its 96x96x32 ones. Its strided layers cost more than the unstrided ones beside them, for
//! a quarter of the outputs.
//!
//! - **Channel-last** (small planes, channels in whole vectors): the planes are
//!   transposed into a zero-padded channel-last scratch (row, column, channel), each output
//!   pixel is computed as vectors across the channels (a tap is one multiply and add of a
//!   channel vector, summed in registers: no bounds, no per-plane set-up, and a stride is only
//!   where the window starts), and the result is transposed back. The transposes cost a pass
//!   over the input and the output each, which only small planes repay.
//! - **Plane rows** (larger planes, any channel count): each plane is copied into a
//!   zero-padded scratch plane and each output row is computed as vectors of neighbouring
//!   pixels, a tap being one multiply and add of the scratch row shifted by the tap, for
//!   several rows at once so that the sums do not wait on each other. A stride of 2 splits
//!   the scratch rows into even and odd columns as they are copied, so that a tap still reads
//!   neighbours. No transposes.
//!
//! [`DepthwiseConv2d::for_node`] chooses by the layer's shape (per-layer figures in
//! docs/performance.md); what neither covers (7x7 kernels, horizontal strides of 3 on
//! channels that do not fill whole vectors) stays with tract. Each output is the bias plus the taps in tract's order, multiplied and added without
//! fusing, as tract's kernel does on x86-64: the same values there (the tests compare).

use std::sync::Arc;

use tract_core::internal::*;
use tract_core::ops::cnn::{Conv, KernelFormat};

use crate::Window;

/// Layers with output planes up to this many pixels (and whole vectors of channels) are
/// computed channel-last, larger ones by plane rows. Per layer (x86-64, AVX-512, against
/// tract's time): channel-last 0.24-0.92 at 24x24 and below but 1.07-1.3 at 28x28 and 1.8-11
/// at 48x48 and up, where plane rows takes 0.45-0.75; plane rows 1.3-1.6x channel-last's time
/// at 16x16x64 and on 48x48 -> 24x24 strided (docs/performance.md).
const MAX_CHANNEL_LAST_PIXELS: usize = 24 * 24;

/// Output rows summed together by plane rows: independent sums, so that each multiply-add
/// need not wait for the one before it.
const ROWS: usize = 4;

/// The largest kernel plane rows computes: square, 3x3 or 5x5 (these networks' sizes).
const MAX_PLANE_ROWS_KERNEL: usize = 5;

/// The scratch row that one output vector's taps read: LANES pixels and the kernel's reach.
const ROW_WINDOW: usize = LANES + MAX_PLANE_ROWS_KERNEL - 1;

/// Channels moved together into the channel-last scratch.
const BLOCK: usize = 8;

/// Values multiplied and added together (channels, or pixels of a row): one 512-bit vector,
/// two 256-bit ones. Channel-last needs a multiple of it in channels (all of these networks'
/// depthwise layers but two of BlazeFace's small ones).
const LANES: usize = 16;

#[derive(Debug, Clone, PartialEq)]
pub struct DepthwiseConv2d {
    window: Window,
    channels: usize,
    strategy: Strategy,
    /// One bias per channel.
    bias: Arc<Vec<f32>>,
}

/// How the layer is computed, with its weights in the order that way reads them.
#[derive(Debug, Clone, PartialEq)]
enum Strategy {
    /// Tap (ky, kx)'s weight for channel c at `(ky * kw + kx) * C + c`.
    ChannelLast { taps: Arc<Vec<f32>> },
    /// Channel c's weight for tap (ky, kx) at `c * kh * kw + ky * kw + kx` (tract's OIHW).
    PlaneRows { filters: Arc<Vec<f32>> },
}

impl DepthwiseConv2d {
    /// The replacement for node `id` if it is a depthwise convolution this kernel computes:
    /// f32, channels first, batch of one, 2-D, no dilation, constant weights and bias, fixed
    /// shapes; channel-last for small output planes in whole vectors of channels, else plane
    /// rows for 3x3 and 5x5 kernels with a horizontal stride of 1 or 2.
    pub fn for_node(model: &TypedModel, id: usize) -> TractResult<Option<DepthwiseConv2d>> {
        let node = &model.nodes[id];
        let Some(conv) = node.op_as::<Conv>() else {
            return Ok(None);
        };
        let spec = &conv.pool_spec;
        let channels = spec.input_channels;
        if conv.q_params.is_some()
            || conv.kernel_fmt != KernelFormat::OIHW
            || conv.group != channels
            || spec.output_channels != channels
            || node.inputs.len() != 3
        {
            return Ok(None);
        }
        let Some(window) = Window::of(model, id, spec)? else {
            return Ok(None);
        };
        // The output's batch is the input's.
        let shape = &window.output_shape;
        if shape.len() == 4 && shape[0] != 1 {
            return Ok(None);
        }
        let channel_last =
            channels % LANES == 0 && window.output[0] * window.output[1] <= MAX_CHANNEL_LAST_PIXELS;
        let plane_rows = window.stride[1] <= 2 && matches!(window.kernel, [3, 3] | [5, 5]);
        if !(channel_last || plane_rows) {
            return Ok(None);
        }
        let (Some(kernel), Some(bias)) = (
            model.outlet_fact(node.inputs[1])?.konst.clone(),
            model.outlet_fact(node.inputs[2])?.konst.clone(),
        ) else {
            return Ok(None);
        };
        let taps = window.kernel[0] * window.kernel[1];
        // OIHW with one input channel per group: [C, 1, kh, kw], each channel's taps together.
        if kernel.datum_type() != f32::datum_type()
            || kernel.len() != channels * taps
            || bias.datum_type() != f32::datum_type()
            || !(bias.len() == channels || bias.len() == 1)
        {
            return Ok(None);
        }
        let kernel = kernel.try_as_plain_ram()?;
        let kernel = kernel.as_slice::<f32>()?;
        let strategy = if channel_last {
            let mut tap_major = vec![0.0; channels * taps];
            for (c, weights) in kernel.chunks_exact(taps).enumerate() {
                for (t, &w) in weights.iter().enumerate() {
                    tap_major[t * channels + c] = w;
                }
            }
            Strategy::ChannelLast {
                taps: Arc::new(tap_major),
            }
        } else {
            Strategy::PlaneRows {
                filters: Arc::new(kernel.to_vec()),
            }
        };
        let bias = bias.try_as_plain_ram()?;
        let bias = bias.as_slice::<f32>()?;
        let bias = if bias.len() == 1 {
            vec![bias[0]; channels]
        } else {
            bias.to_vec()
        };
        Ok(Some(DepthwiseConv2d {
            window,
            channels,
            strategy,
            bias: Arc::new(bias),
        }))
    }

    /// Height and width of the padded channel-last input: the rows and columns the output's
    /// windows reach, padding included.
    fn padded(&self) -> [usize; 2] {
        [0, 1].map(|a| (self.window.output[a] - 1) * self.window.stride[a] + self.window.kernel[a])
    }

    /// `planes` (C planes, height by width), channel-last in a new scratch of the padded
    /// size, zero outside them.
    fn to_channel_last(&self, planes: &[f32]) -> Vec<f32> {
        let c = self.channels;
        let [h, w] = self.window.input;
        let [ph, pw] = self.padded();
        let mut padded = vec![0.0; ph * pw * c];
        let rows = h.min(ph - self.window.pad[0]);
        let columns = w.min(pw - self.window.pad[1]);
        let plane = h * w;
        for y in 0..rows {
            for x in 0..columns {
                let src = y * w + x;
                let dst = &mut padded
                    [((y + self.window.pad[0]) * pw + x + self.window.pad[1]) * c..][..c];
                // BLOCK channels at a time: a contiguous run of the pixel's vector, read from
                // BLOCK planes whose next values the following pixel reads.
                for (block, out) in dst.chunks_exact_mut(BLOCK).enumerate() {
                    let first = block * BLOCK * plane + src;
                    for (j, o) in out.iter_mut().enumerate() {
                        *o = planes[first + j * plane];
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
    fn convolve_channel_last_portable(&self, taps: &[f32], padded: &[f32], pixels: &mut [f32]) {
        let c = self.channels;
        let [_, pw] = self.padded();
        let [kh, kw] = self.window.kernel;
        let [sy, sx] = self.window.stride;
        let ow = self.window.output[1];
        // Where each tap's input pixel sits, from the window's top-left one.
        let offsets: Vec<usize> = (0..kh)
            .flat_map(|ky| (0..kw).map(move |kx| (ky * pw + kx) * c))
            .collect();
        {
            for (p, out) in pixels.chunks_exact_mut(c).enumerate() {
                let corner = ((p / ow) * sy * pw + (p % ow) * sx) * c;
                let window = &padded[corner..];
                for start in (0..c).step_by(LANES) {
                    let mut sum: [f32; LANES] =
                        self.bias[start..][..LANES].try_into().expect("LANES");
                    for (&offset, weights) in offsets.iter().zip(taps.chunks_exact(c)) {
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
    }

    /// A new output tensor, every value of which `fill` writes.
    fn output(&self, fill: impl FnOnce(&mut [f32])) -> TractResult<Tensor> {
        // SAFETY: f32 has no invalid values, and both ways of computing the layer write every
        // output value before it is read (`to_planes`: every channel of every pixel;
        // `convolve_plane_rows`: every row of every plane). Zeroing it first cost 10-15% of a
        // 96x96x16 layer.
        let mut output = unsafe { Tensor::uninitialized::<f32>(&self.window.output_shape)? };
        fill(output.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?);
        Ok(output)
    }

    on_widest_vectors!(DepthwiseConv2d, fn convolve_channel_last
        => convolve_channel_last_portable(taps: &[f32], padded: &[f32], pixels: &mut [f32]));

    on_widest_vectors!(DepthwiseConv2d, fn convolve_plane_rows
        => convolve_plane_rows_portable(filters: &[f32], planes: &[f32], output: &mut [f32]));

    /// Width of each column phase of plane rows' padded scratch rows: every output vector's
    /// row window ([`ROW_WINDOW`]) lies inside it, the last one's lanes past the output
    /// included (their sums are dropped).
    fn phase_width(&self) -> usize {
        self.window.output[1].div_ceil(LANES) * LANES + MAX_PLANE_ROWS_KERNEL - 1
    }

    /// Every output plane of `planes` into `output` (both channels first), a plane at a time
    /// through one zero-padded scratch plane: its borders stay zero, only the inside is
    /// overwritten for each channel. With a horizontal stride S the scratch rows are split
    /// into S column phases (columns p, p + S, p + 2S, ... of the padded row), so that the
    /// pixels one tap reads for neighbouring outputs are neighbours.
    #[inline(always)]
    fn convolve_plane_rows_portable(&self, filters: &[f32], planes: &[f32], output: &mut [f32]) {
        let [h, w] = self.window.input;
        let [oh, ow] = self.window.output;
        let [ph, _] = self.padded();
        let phases = self.window.stride[1];
        let mut padded = vec![0.0; ph * phases * self.phase_width()];
        let planes = planes.chunks_exact(h * w);
        let outputs = output.chunks_exact_mut(oh * ow);
        let taps = self.window.kernel[0] * self.window.kernel[1];
        let filters = filters.chunks_exact(taps);
        for (((plane, out), filter), &bias) in planes.zip(outputs).zip(filters).zip(&*self.bias) {
            match (self.window.kernel, phases) {
                ([3, 3], 1) => self.plane::<3, 1>(plane, &mut padded, filter, bias, out),
                ([3, 3], 2) => self.plane::<3, 2>(plane, &mut padded, filter, bias, out),
                ([5, 5], 1) => self.plane::<5, 1>(plane, &mut padded, filter, bias, out),
                ([5, 5], 2) => self.plane::<5, 2>(plane, &mut padded, filter, bias, out),
                (kernel, _) => unreachable!("plane rows of a {kernel:?} kernel, stride {phases}"),
            }
        }
    }

    /// One output plane: `plane` into the inside of its padded scratch, then the output
    /// ROWS rows at a time, for a K by K kernel and a horizontal stride of S.
    #[inline(always)]
    fn plane<const K: usize, const S: usize>(
        &self,
        plane: &[f32],
        padded: &mut [f32],
        filter: &[f32],
        bias: f32,
        out: &mut [f32],
    ) {
        let [h, w] = self.window.input;
        let [top, left] = self.window.pad;
        let [ph, reached] = self.padded();
        let phase_width = self.phase_width();
        for y in 0..h.min(ph - top) {
            let source = &plane[y * w..][..w.min(reached - left)];
            let row = &mut padded[(y + top) * S * phase_width..][..S * phase_width];
            if S == 1 {
                row[left..][..source.len()].copy_from_slice(source);
            } else {
                for phase in 0..S {
                    // The first pixel of the source row in this phase.
                    let first = (phase + S - left % S) % S;
                    let phase_row = &mut row[phase * phase_width + (first + left) / S..];
                    let pixels = source.iter().skip(first).step_by(S);
                    for (to, &value) in phase_row.iter_mut().zip(pixels) {
                        *to = value;
                    }
                }
            }
        }
        let padded = &*padded;
        let oh = self.window.output[0];
        let mut y = 0;
        while y + ROWS <= oh {
            self.output_rows::<ROWS, K, S>(padded, filter, bias, y, out);
            y += ROWS;
        }
        for y in y..oh {
            self.output_rows::<1, K, S>(padded, filter, bias, y, out);
        }
    }

    /// Output rows `y..y + R` of one plane from its padded scratch `padded` (rows of S column
    /// phases of [`Self::phase_width`]), a vector of pixels at a time: the bias, plus each
    /// tap's weight times the scratch row under the tap, in the tap's column phase, shifted
    /// by the tap's column. K and S are constants so that the taps unroll and every index is
    /// known in range once the row window is.
    #[inline(always)]
    fn output_rows<const R: usize, const K: usize, const S: usize>(
        &self,
        padded: &[f32],
        filter: &[f32],
        bias: f32,
        y: usize,
        out: &mut [f32],
    ) {
        let phase_width = self.phase_width();
        let stride_y = self.window.stride[0];
        let ow = self.window.output[1];
        let filter = &filter[..K * K];
        for x in (0..ow).step_by(LANES) {
            let mut sums = [[bias; LANES]; R];
            for ky in 0..K {
                for (r, sum) in sums.iter_mut().enumerate() {
                    let row = ((y + r) * stride_y + ky) * S;
                    for kx in 0..K {
                        let weight = filter[ky * K + kx];
                        let window: &[f32; ROW_WINDOW] = padded[(row + kx % S) * phase_width + x..]
                            [..ROW_WINDOW]
                            .try_into()
                            .expect("ROW_WINDOW");
                        // Into a vector first: summed straight from the row, the compiler
                        // left the lanes scalar.
                        let shifted: [f32; LANES] =
                            window[kx / S..][..LANES].try_into().expect("LANES");
                        for i in 0..LANES {
                            sum[i] += weight * shifted[i];
                        }
                    }
                }
            }
            for (r, sum) in sums.iter().enumerate() {
                let out = &mut out[(y + r) * ow + x..];
                if x + LANES <= ow {
                    out[..LANES].copy_from_slice(sum);
                } else {
                    out[..ow - x].copy_from_slice(&sum[..ow - x]);
                }
            }
        }
    }
}

// tract compares operators to merge equal nodes; weights compare as values, as tract's own
// tensors do (it declares `Tensor: Eq` too).
impl Eq for DepthwiseConv2d {}

impl Op for DepthwiseConv2d {
    fn name(&self) -> StaticName {
        "facecast.DepthwiseConv2d".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let strategy = match self.strategy {
            Strategy::ChannelLast { .. } => "channel-last",
            Strategy::PlaneRows { .. } => "plane rows",
        };
        Ok(vec![format!(
            "{strategy}, {} channels, {:?} -> {:?}, kernel {:?} stride {:?} pad {:?}",
            self.channels,
            self.window.input,
            self.window.output,
            self.window.kernel,
            self.window.stride,
            self.window.pad
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
        let output = match &self.strategy {
            Strategy::ChannelLast { taps } => {
                let padded = self.to_channel_last(input);
                let [oh, ow] = self.window.output;
                let mut pixels = vec![0.0; oh * ow * self.channels];
                self.convolve_channel_last(taps, &padded, &mut pixels);
                // The output is allocated after the scratch, which is then freed below it: freed
                // last, at the top of the heap, the allocator gave its pages back and faulted
                // them in again on every run (a 16x16x64 layer 1.35x slower).
                self.output(|planes| self.to_planes(&pixels, planes))?
            }
            Strategy::PlaneRows { filters } => {
                self.output(|planes| self.convolve_plane_rows(filters, input, planes))?
            }
        };
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
    use super::*;

    /// A graph of one depthwise `Conv` on a [1, channels, h, w] input, padded `pad` =
    /// [before, after] on both axes, with varied weights and biases.
    fn depthwise_graph(
        channels: usize,
        hw: [usize; 2],
        kernel: usize,
        stride: usize,
        pad: [usize; 2],
    ) -> TypedModel {
        let weights: Vec<f32> = (0..channels * kernel * kernel)
            .map(|i| ((i * 29 % 31) as f32 - 15.0) / 16.0)
            .collect();
        let weights = Tensor::from_shape(&[channels, 1, kernel, kernel], &weights).unwrap();
        let bias: Vec<f32> = (0..channels).map(|i| (i % 5) as f32 / 4.0).collect();
        let conv = Conv {
            pool_spec: crate::tests::pool_spec(channels, kernel, stride, pad),
            kernel_fmt: KernelFormat::OIHW,
            group: channels,
            q_params: None,
        };
        crate::tests::graph(channels, hw, conv, vec![weights, tensor1(&bias)])
    }

    #[test]
    fn equals_tract_on_sizes_strides_and_paddings() {
        for (channels, hw, kernel, stride, pad) in [
            (384, [6, 6], 3, 1, [1, 1]),
            (64, [24, 24], 3, 1, [1, 1]),
            (32, [96, 96], 3, 2, [0, 1]),
            (16, [7, 9], 3, 2, [1, 1]),
            (48, [12, 12], 5, 1, [2, 2]),
            (16, [2, 2], 3, 1, [1, 1]),
            (32, [11, 10], 3, 3, [0, 2]),
            // Plane rows: larger planes, any channel count, rows not a multiple of ROWS nor
            // columns of LANES, strides of 1 and 2 with either padding parity.
            (16, [96, 96], 3, 1, [1, 1]),
            (32, [48, 48], 3, 1, [1, 1]),
            (24, [12, 12], 3, 1, [1, 1]),
            (3, [30, 37], 5, 1, [2, 2]),
            (5, [27, 19], 3, 1, [0, 2]),
            (32, [96, 96], 3, 2, [0, 1]),
            (8, [61, 75], 3, 2, [1, 1]),
            (24, [12, 12], 3, 2, [1, 1]),
            (6, [40, 41], 5, 2, [2, 1]),
        ] {
            let (ours, theirs) = crate::tests::ours_and_theirs(channels, hw, || {
                depthwise_graph(channels, hw, kernel, stride, pad)
            });
            let case = format!("{channels}x{hw:?} k{kernel} s{stride} p{pad:?}");
            // The same multiply-adds in the same order as tract's x86-64 kernel; elsewhere
            // tract may fuse them, a rounding apart.
            if cfg!(target_arch = "x86_64") {
                assert_eq!(ours, theirs, "{case}");
            } else {
                assert_eq!(ours.len(), theirs.len(), "{case}");
                for (a, b) in ours.iter().zip(&theirs) {
                    assert!(
                        (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                        "{case}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn leaves_large_kernels_and_strides_to_tract() {
        for (channels, kernel, stride) in [(24, 3, 3), (32, 7, 1)] {
            let mut model = depthwise_graph(channels, [48, 48], kernel, stride, [1, 1]);
            assert_eq!(
                crate::install(&mut model).unwrap(),
                0,
                "{channels} channels k{kernel} s{stride}"
            );
        }
    }
}
