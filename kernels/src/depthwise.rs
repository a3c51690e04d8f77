//! 3x3 depthwise convolution of f32 planes (NCHW or CHW), an output row at a time.
//!
//! Each plane is first copied into a zero-padded scratch plane whose rows are split into their
//! `stride` phases (as in [`crate::max_pool`]): then each of the nine taps of a whole output
//! row is one contiguous run, and an output row is a single loop of nine multiply-adds per
//! value that the compiler vectorises. The sum runs in one fixed order (bias, then the taps
//! row by row), so the values do not depend on threads; they differ from tract's, which sums
//! in another order, by rounding only.
//!
//! tract 0.23 visits the output of a depthwise convolution point by point through a zone
//! scanner (its vectorised kernels are for wasm only): about 1.8 GMAC/s here, against ~5 for
//! this row loop (docs/performance.md).

use tract_core::internal::*;
use tract_core::ops::cnn::{Conv, KernelFormat};
use tract_core::ops::nn::DataFormat;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Depthwise3x3 {
    output_shape: TVec<usize>,
    channels: usize,
    /// Input height and width.
    input: [usize; 2],
    /// Output height and width.
    output: [usize; 2],
    stride: [usize; 2],
    /// Zero padding before the first row and column.
    pad: [usize; 2],
}

const TAPS: usize = 9;

impl Depthwise3x3 {
    /// The replacement for node `id` if it is a depthwise 3x3 convolution this kernel computes
    /// (f32, channels first, OIHW kernel, no dilation, a bias input, fixed shapes).
    pub fn for_node(model: &TypedModel, id: usize) -> TractResult<Option<Depthwise3x3>> {
        let node = &model.nodes[id];
        let Some(conv) = node.op_as::<Conv>() else {
            return Ok(None);
        };
        let spec = &conv.pool_spec;
        let channels = spec.input_channels;
        if conv.q_params.is_some()
            || conv.group <= 1
            || conv.group != channels
            || spec.output_channels != channels
            || conv.kernel_fmt != KernelFormat::OIHW
            || !matches!(spec.data_format, DataFormat::NCHW | DataFormat::CHW)
            || spec.kernel_shape[..] != [3, 3]
            || spec.dilations().iter().any(|&d| d != 1)
            || node.inputs.len() != 3
        {
            return Ok(None);
        }
        let Some((h, input)) = crate::plane_axes(model.outlet_fact(node.inputs[0])?) else {
            return Ok(None);
        };
        let kernel = model.outlet_fact(node.inputs[1])?;
        let bias = model.outlet_fact(node.inputs[2])?;
        let (Some(kernel_shape), Some(bias_shape)) =
            (kernel.shape.as_concrete(), bias.shape.as_concrete())
        else {
            return Ok(None);
        };
        let bias_len: usize = bias_shape.iter().product();
        let input_shape = model
            .outlet_fact(node.inputs[0])?
            .shape
            .as_concrete()
            .unwrap();
        if kernel.datum_type != f32::datum_type()
            || bias.datum_type != f32::datum_type()
            || input_shape[h - 1] != channels
            || kernel_shape != [channels, 1, 3, 3]
            || (bias_len != channels && bias_len != 1)
        {
            return Ok(None);
        }
        let Some(output_shape) = model.outlet_fact(OutletId::new(id, 0))?.shape.as_concrete()
        else {
            return Ok(None);
        };
        let padding = spec.computed_padding(&input);
        let strides = spec.strides();
        let output = [padding[0].convoluted, padding[1].convoluted];
        // tract's idea of the output must be ours, or the graph around it would be wrong.
        if output_shape[output_shape.len() - 2..] != output {
            return Ok(None);
        }
        Ok(Some(Depthwise3x3 {
            output_shape: output_shape.into(),
            channels,
            input,
            output,
            stride: [strides[0], strides[1]],
            pad: [padding[0].pad_before, padding[1].pad_before],
        }))
    }

    /// Length of one phase of a padded row: enough for every output column's last tap.
    fn phase_len(&self) -> usize {
        self.output[1] + 2 / self.stride[1]
    }

    /// Length of a padded row (all its phases).
    fn padded_width(&self) -> usize {
        self.phase_len() * self.stride[1]
    }

    /// Rows of the padded plane that some output row reads.
    fn padded_height(&self) -> usize {
        (self.output[0] - 1) * self.stride[0] + 3
    }

    /// Copies `input` (one plane) into `scratch`: zero padded, each row split into its phases.
    fn fill_scratch(&self, input: &[f32], scratch: &mut [f32], row: &mut [f32]) {
        let [h, w] = self.input;
        let stride = self.stride[1];
        let phase_len = self.phase_len();
        for (r, phased) in scratch.chunks_exact_mut(row.len()).enumerate() {
            row.fill(0.0);
            if let Some(iy) = r.checked_sub(self.pad[0]).filter(|&iy| iy < h) {
                let copied = w.min(row.len() - self.pad[1]);
                row[self.pad[1]..][..copied].copy_from_slice(&input[iy * w..][..copied]);
            }
            match stride {
                1 => phased.copy_from_slice(row),
                // The common stride, written so that it vectorises.
                2 => {
                    let (even, odd) = phased.split_at_mut(phase_len);
                    for ((e, o), pair) in even.iter_mut().zip(odd).zip(row.chunks_exact(2)) {
                        *e = pair[0];
                        *o = pair[1];
                    }
                }
                _ => split_phases(row, stride, phase_len, phased),
            }
        }
    }

    /// Where tap `t` (row `t / 3`, column `t % 3`) of output column 0 sits in the scratch
    /// plane, counted from the output row's first padded row: column `kx` of every window
    /// is in phase `kx % stride`, from `kx / stride` on.
    fn tap_offsets(&self) -> [usize; TAPS] {
        let (width, phase_len, sx) = (self.padded_width(), self.phase_len(), self.stride[1]);
        std::array::from_fn(|t| (t / 3) * width + (t % 3 % sx) * phase_len + t % 3 / sx)
    }

    /// One channel plane from its phased scratch copy.
    fn plane(
        &self,
        scratch: &[f32],
        kernel: &[f32],
        bias: f32,
        offsets: &[usize; TAPS],
        out: &mut [f32],
    ) {
        let row_step = self.stride[0] * self.padded_width();
        let k: [f32; TAPS] = kernel.try_into().expect("a 3x3 kernel");
        for (oy, out_row) in out.chunks_exact_mut(self.output[1]).enumerate() {
            let rows = &scratch[oy * row_step..];
            // Every tap sliced to the row's length: the loop below has no bounds checks and
            // vectorises.
            let n = out_row.len();
            let t: [&[f32]; TAPS] = std::array::from_fn(|i| &rows[offsets[i]..][..n]);
            for x in 0..n {
                out_row[x] = bias
                    + k[0] * t[0][x]
                    + k[1] * t[1][x]
                    + k[2] * t[2][x]
                    + k[3] * t[3][x]
                    + k[4] * t[4][x]
                    + k[5] * t[5][x]
                    + k[6] * t[6][x]
                    + k[7] * t[7][x]
                    + k[8] * t[8][x];
            }
        }
    }
}

/// `row` split into its `stride` phases of `phase_len` values each, one after the other.
fn split_phases(row: &[f32], stride: usize, phase_len: usize, phased: &mut [f32]) {
    for (j, values) in row.chunks_exact(stride).enumerate() {
        for (p, &v) in values.iter().enumerate() {
            phased[p * phase_len + j] = v;
        }
    }
}

impl Op for Depthwise3x3 {
    fn name(&self) -> StaticName {
        "facecast.Depthwise3x3".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} channels {:?} stride {:?} pad {:?}",
            self.channels, self.input, self.stride, self.pad
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for Depthwise3x3 {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (input, kernel, bias) = args_3!(inputs);
        let input = input.try_as_plain_ram()?;
        let input = input.as_slice::<f32>()?;
        let kernel = kernel.try_as_plain_ram()?;
        let kernel = kernel.as_slice::<f32>()?;
        let bias = bias.try_as_plain_ram()?;
        let bias = bias.as_slice::<f32>()?;
        let mut output = Tensor::zero::<f32>(&self.output_shape)?;
        let offsets = self.tap_offsets();
        let mut row = vec![0.0; self.padded_width()];
        let mut scratch = vec![0.0; self.padded_height() * row.len()];
        {
            let mut view = output.try_as_plain_ram_mut()?;
            let planes = input
                .chunks_exact(self.input[0] * self.input[1])
                .zip(
                    view.as_slice_mut::<f32>()?
                        .chunks_exact_mut(self.output[0] * self.output[1]),
                )
                .enumerate();
            for (p, (input, out)) in planes {
                let c = p % self.channels;
                let bias = if bias.len() == 1 { bias[0] } else { bias[c] };
                self.fill_scratch(input, &mut scratch, &mut row);
                self.plane(&scratch, &kernel[c * TAPS..][..TAPS], bias, &offsets, out);
            }
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for Depthwise3x3 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].datum_type.fact(&self.output_shape)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_core::ops::cnn::{PaddingSpec, PoolSpec};

    /// A graph of one depthwise 3x3 `Conv` on a [1, channels, h, w] input, padded `pad` =
    /// [before, after] on both axes.
    fn conv_graph(channels: usize, hw: [usize; 2], stride: usize, pad: [usize; 2]) -> TypedModel {
        let mut model = TypedModel::default();
        let x = model
            .add_source("x", f32::fact([1, channels, hw[0], hw[1]]))
            .unwrap();
        let weights: Vec<f32> = (0..channels * TAPS)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
            .collect();
        let k = Tensor::from_shape(&[channels, 1, 3, 3], &weights).unwrap();
        let k = model.add_const("k", k).unwrap();
        let bias: Vec<f32> = (0..channels).map(|c| c as f32 / 3.0 - 1.0).collect();
        let b = model
            .add_const("b", Tensor::from_shape(&[channels], &bias).unwrap())
            .unwrap();
        let conv = Conv {
            pool_spec: PoolSpec {
                data_format: DataFormat::NCHW,
                kernel_shape: tvec!(3, 3),
                padding: PaddingSpec::Explicit(tvec!(pad[0], pad[0]), tvec!(pad[1], pad[1])),
                dilations: None,
                strides: Some(tvec!(stride, stride)),
                input_channels: channels,
                output_channels: channels,
            },
            kernel_fmt: KernelFormat::OIHW,
            group: channels,
            q_params: None,
        };
        let y = model.wire_node("conv", conv, &[x, k, b]).unwrap();
        model.select_output_outlets(&y).unwrap();
        model
    }

    #[test]
    fn matches_tract_on_strides_paddings_and_small_planes() {
        for (channels, hw, stride, pad) in [
            (4, [12, 12], 1, [1, 1]),
            (3, [9, 7], 2, [1, 1]),
            (16, [96, 96], 2, [0, 1]),
            (2, [11, 10], 2, [0, 1]),
            (3, [4, 4], 1, [0, 0]),
            (6, [3, 3], 2, [1, 1]),
            (5, [2, 2], 1, [1, 1]),
            (2, [10, 9], 3, [1, 1]),
        ] {
            let mut ours = conv_graph(channels, hw, stride, pad);
            assert_eq!(crate::install(&mut ours).unwrap(), 1);
            let values: Vec<f32> = (0..channels * hw[0] * hw[1])
                .map(|i| ((i * 13 % 17) as f32 - 8.0) / 5.0)
                .collect();
            let input = Tensor::from_shape(&[1, channels, hw[0], hw[1]], &values).unwrap();
            let ours = crate::tests::run(ours, &input);
            let theirs = crate::tests::run(conv_graph(channels, hw, stride, pad), &input);
            assert_eq!(ours.len(), theirs.len());
            let worst = ours
                .iter()
                .zip(&theirs)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                worst <= 1e-5,
                "{channels}x{hw:?} s{stride} p{pad:?}: differs by {worst}"
            );
        }
    }
}
