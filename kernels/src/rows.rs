//! 2-D convolution of f32 NCHW planes a row of output pixels at a time, for the layers whose
//! output channels each read one input plane: depthwise layers on larger planes, and first
//! layers of a grey input.
//!
//! tract 0.23 convolves a depthwise layer one channel plane at a time, one output value at a
//! time (1.3 GMAC/s on BlazeFace's 96x96x32 layers). Here each input plane is copied into a
//! zero-padded scratch plane and each output row is computed as vectors of neighbouring
//! pixels: a tap is one multiply and add of the scratch row shifted by the tap, for several
//! rows at once so that the sums do not wait on each other. A horizontal stride of 2 splits the scratch rows
//! into even and odd columns as they are copied, so that a tap still reads neighbours. No
//! transposes, no packing, any channel count.
//!
//! Small depthwise planes in whole vectors of channels are computed channel-last instead
//! ([`crate::depthwise`]), dense layers as sums of shifted planes ([`crate::panels`]: this
//! kernel took them too in round 8, up to 8 input planes per output, at 1.5-1.7x the panels'
//! time); per-layer figures in docs/performance.md. Each output is the bias plus the taps in
//! tract's order (row, then column), multiplied and added without fusing: tract's x86-64
//! depthwise kernel exactly (the tests compare bit for bit).

use std::sync::Arc;

use tract_core::internal::*;

use crate::{ConvLayer, Window};

/// Neighbouring output pixels summed together: one 512-bit vector, two 256-bit ones.
const LANES: usize = 16;

/// Output rows summed together: independent sums, so that each multiply-add need not wait for
/// the one before it.
const ROWS: usize = 4;

/// The largest kernel computed here: square, 3x3 or 5x5 (these networks' sizes).
const MAX_KERNEL: usize = 5;

/// The scratch row that one output vector's taps read: LANES pixels and the kernel's reach.
const ROW_WINDOW: usize = LANES + MAX_KERNEL - 1;

#[derive(Debug, Clone, PartialEq)]
pub struct Conv2dRows {
    window: Window,
    /// Input planes, one per group.
    groups: usize,
    /// Output channels per group (per input plane).
    group_outputs: usize,
    /// tract's OIHW kernel: output channel o's weight at tap (ky, kx) at `(o * K + ky) * K + kx`.
    filters: Arc<Vec<f32>>,
    /// One bias per output channel.
    bias: Arc<Vec<f32>>,
}

impl Conv2dRows {
    /// The replacement for node `id` if it is a convolution this kernel computes: f32,
    /// channels first, batch of one, 2-D, no dilation, constant weights and bias, fixed
    /// shapes, a 3x3 or 5x5 kernel, one input plane per output channel (a group per input
    /// plane) and a horizontal stride of 1 or 2.
    pub fn for_node(model: &TypedModel, id: usize) -> TractResult<Option<Conv2dRows>> {
        let Some(layer) = ConvLayer::of(model, id, |conv, window| {
            let spec = &conv.pool_spec;
            spec.input_channels == conv.group
                && spec.output_channels % conv.group == 0
                && window.stride[1] <= 2
                && matches!(window.kernel, [3, 3] | [5, 5])
        })?
        else {
            return Ok(None);
        };
        let groups = layer.conv.group;
        Ok(Some(Conv2dRows {
            window: layer.window,
            groups,
            group_outputs: layer.conv.pool_spec.output_channels / groups,
            filters: Arc::new(layer.weights.kernel),
            bias: Arc::new(layer.weights.bias),
        }))
    }

    /// Width of each column phase of the padded scratch rows: every output vector's row
    /// window ([`ROW_WINDOW`]) lies inside it, the last one's lanes past the output included
    /// (their sums are dropped).
    fn phase_width(&self) -> usize {
        self.window.output[1].div_ceil(LANES) * LANES + MAX_KERNEL - 1
    }

    /// Length of one padded scratch plane: the rows the windows reach, each of S column
    /// phases for a horizontal stride S.
    fn scratch_plane(&self) -> usize {
        self.window.reach()[0] * self.window.stride[1] * self.phase_width()
    }

    on_widest_vectors!(Conv2dRows, fn convolve => convolve_portable(input: &[f32], output: &mut [f32]));

    /// Every output plane from `input` (both channels first), an input plane at a time through
    /// one zero-padded scratch plane: its borders stay zero, only the inside is overwritten for
    /// each input plane.
    #[inline(always)]
    fn convolve_portable(&self, input: &[f32], output: &mut [f32]) {
        let [h, w] = self.window.input;
        let [oh, ow] = self.window.output;
        let mut scratch = vec![0.0; self.scratch_plane()];
        let inputs = input.chunks_exact(h * w);
        let outputs = output.chunks_exact_mut(self.group_outputs * oh * ow);
        for (group, (plane, out)) in inputs.zip(outputs).enumerate() {
            let first = group * self.group_outputs;
            match (self.window.kernel, self.window.stride[1]) {
                ([3, 3], 1) => self.group::<3, 1>(plane, &mut scratch, first, out),
                ([3, 3], 2) => self.group::<3, 2>(plane, &mut scratch, first, out),
                ([5, 5], 1) => self.group::<5, 1>(plane, &mut scratch, first, out),
                ([5, 5], 2) => self.group::<5, 2>(plane, &mut scratch, first, out),
                (kernel, stride) => unreachable!("rows of a {kernel:?} kernel, stride {stride}"),
            }
        }
    }

    /// One group's output planes (output channels from `first`), for a K by K kernel and a
    /// horizontal stride of S: its input plane into the scratch plane, then ROWS output rows
    /// of every output channel at a time, while those scratch rows are in cache.
    #[inline(always)]
    fn group<const K: usize, const S: usize>(
        &self,
        plane: &[f32],
        scratch: &mut [f32],
        first: usize,
        out: &mut [f32],
    ) {
        let [h, w] = self.window.input;
        let [top, left] = self.window.pad;
        let [reach_y, reach_x] = self.window.reach();
        let phase_width = self.phase_width();
        for y in 0..h.min(reach_y - top) {
            let source = &plane[y * w..][..w.min(reach_x - left)];
            let row = &mut scratch[(y + top) * S * phase_width..][..S * phase_width];
            if S == 1 {
                row[left..][..source.len()].copy_from_slice(source);
                continue;
            }
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
        let scratch = &*scratch;
        let [oh, ow] = self.window.output;
        let mut y = 0;
        while y + ROWS <= oh {
            for (o, out) in out.chunks_exact_mut(oh * ow).enumerate() {
                self.output_rows::<ROWS, K, S>(scratch, first + o, y, out);
            }
            y += ROWS;
        }
        for y in y..oh {
            for (o, out) in out.chunks_exact_mut(oh * ow).enumerate() {
                self.output_rows::<1, K, S>(scratch, first + o, y, out);
            }
        }
    }

    /// Output rows `y..y + R` of output channel `channel` into its plane `out`, from its
    /// group's padded scratch plane (rows of S column phases of [`Self::phase_width`]), a
    /// vector of pixels at a time: the bias, plus, for each tap, the tap's weight times the
    /// scratch row under the tap, in the tap's column phase, shifted by the tap's column. K and S are constants so that the taps unroll and every index is known in
    /// range once the row window is.
    #[inline(always)]
    fn output_rows<const R: usize, const K: usize, const S: usize>(
        &self,
        scratch: &[f32],
        channel: usize,
        y: usize,
        out: &mut [f32],
    ) {
        let phase_width = self.phase_width();
        let stride_y = self.window.stride[0];
        let ow = self.window.output[1];
        let filter = &self.filters[channel * K * K..][..K * K];
        let bias = self.bias[channel];
        for x in (0..ow).step_by(LANES) {
            let mut sums = [[bias; LANES]; R];
            for ky in 0..K {
                for (r, sum) in sums.iter_mut().enumerate() {
                    let row = ((y + r) * stride_y + ky) * S;
                    // The row window in each column phase, bounds checked once.
                    let windows: [&[f32; ROW_WINDOW]; S] = std::array::from_fn(|phase| {
                        scratch[(row + phase) * phase_width + x..][..ROW_WINDOW]
                            .try_into()
                            .expect("ROW_WINDOW")
                    });
                    for kx in 0..K {
                        let weight = filter[ky * K + kx];
                        // Into a vector first: summed straight from the row, the compiler left
                        // the lanes scalar.
                        let shifted: [f32; LANES] = windows[kx % S][kx / S..][..LANES]
                            .try_into()
                            .expect("LANES");
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
impl Eq for Conv2dRows {}

impl Op for Conv2dRows {
    fn name(&self) -> StaticName {
        "facecast.Conv2dRows".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} planes of {} channels each, {}",
            self.groups,
            self.group_outputs,
            self.window.describe()
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for Conv2dRows {
    op_out_of_plan!();

    /// Inputs: the planes, then tract's kernel and bias (constants, read once by
    /// [`Conv2dRows::for_node`]).
    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = inputs[0].try_as_plain_ram()?;
        let input = input.as_slice::<f32>()?;
        let output = crate::output_planes(&self.window.output_shape, |planes| {
            self.convolve(input, planes)
        })?;
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for Conv2dRows {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].datum_type.fact(&self.window.output_shape)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use crate::tests::{assert_close, conv_graph, installed, ours_and_theirs};

    #[test]
    fn depthwise_layers_equal_tract() {
        // Rows not a multiple of ROWS nor columns of LANES, strides of 1 and 2 with either
        // padding parity, 5x5 kernels, channel counts in and out of whole vectors.
        crate::tests::depthwise_layers_equal_tract(&[
            (16, [96, 96], 3, 1, [1, 1]),
            (32, [48, 48], 3, 1, [1, 1]),
            (24, [12, 12], 3, 1, [1, 1]),
            (3, [30, 37], 5, 1, [2, 2]),
            (5, [27, 19], 3, 1, [0, 2]),
            (32, [96, 96], 3, 2, [0, 1]),
            (8, [61, 75], 3, 2, [1, 1]),
            (24, [12, 12], 3, 2, [1, 1]),
            (6, [40, 41], 5, 2, [2, 1]),
        ]);
    }

    #[test]
    fn several_outputs_per_plane_equal_tract_to_a_rounding() {
        for ([inputs, outputs, groups], hw, kernel, stride, pad) in [
            // First layers of a grey input, to 8 filters.
            ([1, 8, 1], [20, 20], 3, 1, [0, 0]),
            ([1, 8, 1], [21, 20], 3, 2, [0, 1]),
            ([1, 8, 1], [30, 30], 5, 1, [2, 2]),
            // Four planes, three outputs each.
            ([4, 12, 4], [17, 21], 3, 1, [1, 1]),
        ] {
            let (ours, theirs) = ours_and_theirs(inputs, hw, || {
                conv_graph([inputs, outputs, groups], hw, kernel, stride, pad)
            });
            let case = format!("{inputs}->{outputs}/{groups} {hw:?} k{kernel} s{stride} p{pad:?}");
            // tract's matrix products fuse each multiply and add.
            assert_close(&ours, &theirs, &case);
        }
    }

    #[test]
    fn leaves_large_kernels_strides_and_dense_layers_to_others() {
        for ([inputs, outputs, groups], kernel, stride) in [
            ([24, 24, 24], 3, 3),
            ([32, 32, 32], 7, 1),
            ([16, 32, 1], 3, 1),
            ([3, 32, 1], 3, 1),
            ([8, 6, 2], 3, 1),
        ] {
            let model = conv_graph([inputs, outputs, groups], [48, 48], kernel, stride, [1, 1]);
            let ops = installed(model);
            assert!(
                !ops.contains(&"facecast.Conv2dRows".to_string()),
                "{inputs}->{outputs}/{groups} k{kernel} s{stride}: {ops:?}"
            );
        }
    }
}
