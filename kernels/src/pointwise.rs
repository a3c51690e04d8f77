//! 1x1 convolutions of f32 NCHW planes, with their bias and ReLU: every output plane is a
//! weighted sum of the input planes, computed a panel of neighbouring pixels at a time.
//!
//! tract 0.23 declutters a 1x1 convolution into an `EinSum` (`NIHW,OI->NOHW`) and runs it as a
//! matrix product that packs the input planes into panels first: on FaceMesh's 96x96x16 layers
//! the packing took longer than the product (0.41 and 0.35 ms, 7 GFLOP/s together), and its
//! kernel choice for 16 output channels (`fma_mmm_f32_40x2`) uses 256-bit vectors. Here the
//! input planes are read in place: for a panel of pixels (one or two vectors of 16), a block of
//! output channels sums, over the input planes, each plane's panel times the channel's weight,
//! in registers, then adds the bias and clamps at zero once. The panel's input stays in L1
//! while every block of output channels reads it. No packing, no transposes.
//!
//! Each output is tract's: the products summed in input-plane order, each multiplied and added
//! in one rounding where the CPU can (as tract's matrix kernels do), then the bias added.

use std::sync::Arc;

use tract_core::internal::*;
use tract_core::ops::binary::{BinMiniOp, TypedBinOp};
use tract_core::ops::einsum::EinSum;
use tract_core::ops::math::{Add, Max};

/// Neighbouring pixels in one vector: one 512-bit vector, two 256-bit ones.
const LANES: usize = 16;

/// Output channels per block of the packed weights: the most any copy of the kernel sums at
/// once. A block's weights for one input plane are contiguous.
const BLOCK: usize = 8;

/// The 1x1 convolutions tract's declutter writes, channels first, batch of one or none
/// (`N` and no `N` have the same memory layout).
const EXPRESSIONS: [&str; 4] = [
    "NIHW,OI->NOHW",
    "NIHW,OI->OHW",
    "IHW,OI->NOHW",
    "IHW,OI->OHW",
];

#[derive(Debug, Clone, PartialEq)]
pub struct PointwiseConv {
    inputs: usize,
    outputs: usize,
    /// Pixels per plane.
    pixels: usize,
    output_shape: TVec<usize>,
    /// The weights in blocks of [`BLOCK`] output channels: output channel `o`'s weight for
    /// input plane `i` at `((o / BLOCK) * inputs + i) * BLOCK + o % BLOCK`; zero past the
    /// last output channel.
    weights: Arc<Vec<f32>>,
    /// One bias per output channel (zero without a bias), zero past the last one.
    bias: Arc<Vec<f32>>,
    /// Clamps the outputs at zero: a ReLU fused in.
    relu: bool,
}

impl PointwiseConv {
    /// A patch replacing node `id` by this kernel if `id` is a 1x1 convolution as tract
    /// declutters it (an f32 `EinSum` of fixed planes and constant weights, [`EXPRESSIONS`]),
    /// with the bias `Add` and the ReLU (`Max` with zero) that follow it, when they do.
    pub fn patch_for(model: &TypedModel, id: usize) -> TractResult<Option<TypedModelPatch>> {
        let node = &model.nodes[id];
        let Some(einsum) = node.op_as::<EinSum>() else {
            return Ok(None);
        };
        if einsum.q_params.is_some()
            || einsum.operating_dt != f32::datum_type()
            || !EXPRESSIONS.contains(&einsum.axes.to_string().as_str())
        {
            return Ok(None);
        }
        let planes = model.outlet_fact(node.inputs[0])?;
        let Some(weights) = model.outlet_fact(node.inputs[1])?.konst.clone() else {
            return Ok(None);
        };
        let Some(shape) = planes.shape.as_concrete() else {
            return Ok(None);
        };
        if planes.datum_type != f32::datum_type()
            || weights.datum_type() != f32::datum_type()
            || weights.rank() != 2
            || shape.len() < 3
            || weights.shape()[1] != shape[shape.len() - 3]
        {
            return Ok(None);
        }
        let [outputs, inputs] = [weights.shape()[0], weights.shape()[1]];
        let pixels = shape[shape.len() - 2] * shape[shape.len() - 1];
        let weights = weights.try_as_plain_ram()?;
        let weights = weights.as_slice::<f32>()?;

        let mut last = OutletId::new(id, 0);
        let mut bias = vec![0.0; outputs];
        if let Some((add, constant)) = single_binary_successor::<Add>(model, last)? {
            if let Some(values) = channel_values(&constant, outputs) {
                bias = values;
                last = OutletId::new(add, 0);
            }
        }
        let mut relu = false;
        if let Some((max, constant)) = single_binary_successor::<Max>(model, last)? {
            if channel_values(&constant, 1) == Some(vec![0.0]) {
                relu = true;
                last = OutletId::new(max, 0);
            }
        }
        let Some(output_shape) = model.outlet_fact(last)?.shape.as_concrete() else {
            return Ok(None);
        };
        if output_shape.iter().product::<usize>() != outputs * pixels {
            return Ok(None);
        }

        let blocks = outputs.div_ceil(BLOCK);
        let mut packed = vec![0.0; blocks * inputs * BLOCK];
        for (o, row) in weights.chunks_exact(inputs).enumerate() {
            for (i, &weight) in row.iter().enumerate() {
                packed[((o / BLOCK) * inputs + i) * BLOCK + o % BLOCK] = weight;
            }
        }
        bias.resize(blocks * BLOCK, 0.0);
        let op = PointwiseConv {
            inputs,
            outputs,
            pixels,
            output_shape: output_shape.into(),
            weights: Arc::new(packed),
            bias: Arc::new(bias),
            relu,
        };
        let mut patch = TypedModelPatch::new("facecast.PointwiseConv");
        let planes = patch.tap_model(model, node.inputs[0])?;
        let output = patch.wire_node(&node.name, op, &[planes])?;
        patch.shunt_outside(model, last, output[0])?;
        Ok(Some(patch))
    }

    /// Every output plane from `input`: with AVX-512, eight output channels by two vectors of
    /// pixels summed in 16 of its 32 registers ([`avx512`]); elsewhere the portable panels of
    /// four output channels by one vector, which the compiler vectorises (for AVX2 in a copy of
    /// their own). Written portably, the eight by two panel's sums were not kept in
    /// registers: gathers and scatters, 10x slower than tract.
    fn convolve(&self, input: &[f32], output: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            fn avx2(this: &PointwiseConv, input: &[f32], output: &mut [f32]) {
                this.planes::<4, 1, true>(input, output)
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has the instructions the function is compiled for.
                return unsafe { avx512::planes(self, input, output) };
            } else if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: as above.
                return unsafe { avx2(self, input, output) };
            }
        }
        // Fused multiply-adds only where they are instructions: elsewhere they are calls.
        const FUSED: bool = cfg!(any(target_arch = "aarch64", target_feature = "fma"));
        self.planes::<4, 1, FUSED>(input, output)
    }

    /// Every output plane, R output channels by V vectors of pixels at a time, the last
    /// pixels (less than a vector) through a zero-padded copy.
    #[inline(always)]
    fn planes<const R: usize, const V: usize, const FUSED: bool>(
        &self,
        input: &[f32],
        output: &mut [f32],
    ) {
        let pixels = self.pixels;
        let mut first = 0;
        while first + V * LANES <= pixels {
            self.panel::<R, V, FUSED>(input, pixels, first, output, pixels);
            first += V * LANES;
        }
        while first + LANES <= pixels {
            self.panel::<R, 1, FUSED>(input, pixels, first, output, pixels);
            first += LANES;
        }
        let rest = pixels - first;
        if rest == 0 {
            return;
        }
        let mut last_input = vec![0.0; self.inputs * LANES];
        for (to, plane) in last_input
            .chunks_exact_mut(LANES)
            .zip(input.chunks_exact(pixels))
        {
            to[..rest].copy_from_slice(&plane[first..]);
        }
        let mut last_output = vec![0.0; self.outputs * LANES];
        self.panel::<R, 1, FUSED>(&last_input, LANES, 0, &mut last_output, LANES);
        for (from, plane) in last_output
            .chunks_exact(LANES)
            .zip(output.chunks_exact_mut(pixels))
        {
            plane[first..].copy_from_slice(&from[..rest]);
        }
    }

    /// Pixels `first..first + V * LANES` of every output plane (planes `output_plane` apart in
    /// `output`) from the same pixels of the input planes (`input_plane` apart in `input`),
    /// R output channels at a time: their R by V vectors of sums stay in registers while the
    /// input planes stream through.
    #[inline(always)]
    fn panel<const R: usize, const V: usize, const FUSED: bool>(
        &self,
        input: &[f32],
        input_plane: usize,
        first: usize,
        output: &mut [f32],
        output_plane: usize,
    ) {
        let width = V * LANES;
        for channel in (0..self.outputs).step_by(R) {
            let block = &self.weights[(channel / BLOCK) * self.inputs * BLOCK + channel % BLOCK..];
            let mut sums = [[[0.0f32; LANES]; V]; R];
            for i in 0..self.inputs {
                let pixels = &input[i * input_plane + first..][..width];
                let vectors: [[f32; LANES]; V] = std::array::from_fn(|v| {
                    pixels[v * LANES..][..LANES].try_into().expect("LANES")
                });
                let weights: [f32; R] = block[i * BLOCK..][..R].try_into().expect("R");
                for (sum, &weight) in sums.iter_mut().zip(&weights) {
                    for (sum, vector) in sum.iter_mut().zip(&vectors) {
                        for (s, &x) in sum.iter_mut().zip(vector) {
                            *s = if FUSED {
                                weight.mul_add(x, *s)
                            } else {
                                *s + weight * x
                            };
                        }
                    }
                }
            }
            for (r, sum) in sums.iter().enumerate().take(self.outputs - channel) {
                let bias = self.bias[channel + r];
                let out = &mut output[(channel + r) * output_plane + first..][..width];
                for (to, &s) in out.iter_mut().zip(sum.as_flattened()) {
                    let value = s + bias;
                    *to = if self.relu { value.max(0.0) } else { value };
                }
            }
        }
    }
}

/// The panels in AVX-512 instructions: the sums of eight output channels (a block of the
/// packed weights) by two vectors of pixels in registers, the last pixels of a plane loaded
/// and stored under a mask.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{PointwiseConv, BLOCK, LANES};

    /// Every output plane of `conv` from `input`.
    #[target_feature(enable = "avx512f")]
    pub(super) fn planes(conv: &PointwiseConv, input: &[f32], output: &mut [f32]) {
        let pixels = conv.pixels;
        assert!(input.len() == conv.inputs * pixels && output.len() == conv.outputs * pixels);
        let mut first = 0;
        while first + 2 * LANES <= pixels {
            panel(conv, input, output, first, [u16::MAX; 2]);
            first += 2 * LANES;
        }
        while first < pixels {
            let lanes = (pixels - first).min(LANES);
            panel(
                conv,
                input,
                output,
                first,
                [(u32::MAX >> (32 - lanes)) as u16],
            );
            first += LANES;
        }
    }

    /// Pixels `first..` of every output plane, V vectors of them, the lanes of each vector
    /// in its mask: they must lie inside the planes.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn panel<const V: usize>(
        conv: &PointwiseConv,
        input: &[f32],
        output: &mut [f32],
        first: usize,
        masks: [__mmask16; V],
    ) {
        let pixels = conv.pixels;
        let inputs = conv.inputs;
        for channel in (0..conv.outputs).step_by(BLOCK) {
            // This block's weights: BLOCK per input plane.
            let block = &conv.weights[channel * inputs..][..inputs * BLOCK];
            let mut sums = [[_mm512_setzero_ps(); V]; BLOCK];
            for (i, weights) in block.chunks_exact(BLOCK).enumerate() {
                let plane = &input[i * pixels + first..];
                // SAFETY: the caller's masks keep every loaded lane inside the plane, and
                // masked-off lanes are not read.
                let vectors: [__m512; V] = std::array::from_fn(|v| unsafe {
                    _mm512_maskz_loadu_ps(masks[v], plane.as_ptr().add(v * LANES))
                });
                for (sums, &weight) in sums.iter_mut().zip(weights) {
                    let weight = _mm512_set1_ps(weight);
                    for (sum, &vector) in sums.iter_mut().zip(&vectors) {
                        *sum = _mm512_fmadd_ps(weight, vector, *sum);
                    }
                }
            }
            for (r, sums) in sums.iter().enumerate().take(conv.outputs - channel) {
                let bias = _mm512_set1_ps(conv.bias[channel + r]);
                let plane = &mut output[(channel + r) * pixels + first..];
                for (v, &sum) in sums.iter().enumerate() {
                    let mut value = _mm512_add_ps(sum, bias);
                    if conv.relu {
                        value = _mm512_max_ps(value, _mm512_setzero_ps());
                    }
                    // SAFETY: as for the loads.
                    unsafe {
                        _mm512_mask_storeu_ps(plane.as_mut_ptr().add(v * LANES), masks[v], value)
                    };
                }
            }
        }
    }
}

/// The node that alone reads `outlet`, if it is a binary `Mini` of `outlet` and a constant, and
/// `outlet` is not a model output: the node and the constant.
fn single_binary_successor<Mini: BinMiniOp>(
    model: &TypedModel,
    outlet: OutletId,
) -> TractResult<Option<(usize, Arc<Tensor>)>> {
    let successors = &model.nodes[outlet.node].outputs[outlet.slot].successors;
    if successors.len() != 1 || model.output_outlets()?.contains(&outlet) {
        return Ok(None);
    }
    let next = &model.nodes[successors[0].node];
    let is_op = next
        .op_as::<TypedBinOp>()
        .is_some_and(|op| op.0.is::<Mini>());
    if !is_op || next.inputs.len() != 2 {
        return Ok(None);
    }
    let other = next.inputs[1 - successors[0].slot];
    let constant = model.outlet_fact(other)?.konst.clone();
    Ok(constant.map(|constant| (next.id, constant)))
}

/// `constant`'s values if it is f32 and holds one per channel of `channels` planes (shape
/// `[.., channels, 1, 1]`, ones elsewhere), or a single one (repeated for every channel).
fn channel_values(constant: &Tensor, channels: usize) -> Option<Vec<f32>> {
    let shape = constant.shape();
    let per_channel = shape.len() >= 3
        && shape[shape.len() - 3] == channels
        && shape.iter().product::<usize>() == channels;
    if constant.datum_type() != f32::datum_type() || !(per_channel || constant.len() == 1) {
        return None;
    }
    let values = constant.try_as_plain_ram().ok()?;
    let values = values.as_slice::<f32>().ok()?;
    Some(if values.len() == 1 {
        vec![values[0]; channels]
    } else {
        values.to_vec()
    })
}

// tract compares operators to merge equal nodes; weights compare as values, as tract's own
// tensors do (it declares `Tensor: Eq` too).
impl Eq for PointwiseConv {}

impl Op for PointwiseConv {
    fn name(&self) -> StaticName {
        "facecast.PointwiseConv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} -> {} channels, {} pixels, bias, {}",
            self.inputs,
            self.outputs,
            self.pixels,
            if self.relu { "ReLU" } else { "no ReLU" }
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for PointwiseConv {
    op_out_of_plan!();

    /// Input: the planes (the weights, bias and ReLU were read once by
    /// [`PointwiseConv::patch_for`]).
    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = inputs[0].try_as_plain_ram()?;
        let input = input.as_slice::<f32>()?;
        let output =
            crate::output_planes(&self.output_shape, |planes| self.convolve(input, planes))?;
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for PointwiseConv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].datum_type.fact(&self.output_shape)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use tract_core::prelude::*;

    use super::PointwiseConv;
    use crate::tests::{assert_close, conv_graph, installed, ours_and_theirs};

    /// A 1x1 convolution of `inputs` planes of `hw` to `outputs`, its bias and, if `relu`, a
    /// ReLU, decluttered as facecast loads a model (when the convolution becomes an `EinSum`).
    fn pointwise_graph(inputs: usize, outputs: usize, hw: [usize; 2], relu: bool) -> TypedModel {
        let mut model = conv_graph([inputs, outputs, 1], hw, 1, 1, [0, 0]);
        if relu {
            let conv = model.output_outlets().unwrap()[0];
            let zero = model.add_const("zero", tensor4(&[[[[0.0f32]]]])).unwrap();
            let max = tract_core::ops::math::max();
            let y = model.wire_node("relu", max, &[conv, zero]).unwrap();
            model.select_output_outlets(&y).unwrap();
        }
        model.into_decluttered().unwrap()
    }

    #[test]
    fn pointwise_layers_equal_tract() {
        // Channel counts in and out of whole blocks, planes in and out of whole vectors and
        // panels, smaller than one vector, with and without a ReLU.
        for (inputs, outputs, hw, relu) in [
            (16, 16, [96, 96], false),
            (32, 64, [24, 24], true),
            (128, 128, [12, 12], false),
            (96, 96, [6, 6], true),
            (3, 5, [7, 9], false),
            (13, 21, [17, 19], true),
            (8, 3, [3, 3], false),
        ] {
            let case = format!("{inputs}->{outputs} {hw:?} relu {relu}");
            let (ours, theirs) =
                ours_and_theirs(inputs, hw, || pointwise_graph(inputs, outputs, hw, relu));
            // Fused multiply-adds in tract's order, then the bias, as tract's x86-64 kernels.
            if cfg!(target_arch = "x86_64") {
                assert_eq!(ours, theirs, "{case}");
            } else {
                assert_close(&ours, &theirs, &case);
            }
            if relu {
                assert!(ours.iter().all(|&v| v >= 0.0), "{case}");
            }
        }
    }

    #[test]
    fn portable_panels_equal_the_dispatched_kernel() {
        // The CPU's copy (AVX-512 on the development machine) against the portable panels,
        // which run on other CPUs, with fused multiply-adds as on AArch64.
        for (inputs, outputs, hw) in [(16, 16, [24, 24]), (13, 21, [17, 19]), (8, 3, [3, 3])] {
            let mut model = pointwise_graph(inputs, outputs, hw, true);
            crate::install(&mut model).unwrap();
            let node = model
                .nodes
                .iter()
                .find(|n| n.op_is::<PointwiseConv>())
                .unwrap();
            let conv = node.op_as::<PointwiseConv>().unwrap();
            let input: Vec<f32> = (0..inputs * hw[0] * hw[1])
                .map(|i| ((i * 13 % 29) as f32 - 14.0) / 3.0)
                .collect();
            let mut dispatched = vec![0.0; outputs * hw[0] * hw[1]];
            conv.convolve(&input, &mut dispatched);
            let mut portable = vec![0.0; dispatched.len()];
            conv.planes::<4, 1, true>(&input, &mut portable);
            assert_eq!(portable, dispatched, "{inputs}->{outputs} {hw:?}");
        }
    }

    #[test]
    fn fuses_the_bias_and_relu_and_leaves_other_convolutions_to_tract() {
        let fused = pointwise_graph(16, 32, [8, 8], true);
        let ops = fused.nodes.len();
        let mut model = fused.clone();
        crate::install(&mut model).unwrap();
        let model = model.into_optimized().unwrap();
        let names: Vec<_> = model.nodes.iter().map(|n| n.op().name()).collect();
        assert!(
            names.iter().any(|n| n == "facecast.PointwiseConv"),
            "{names:?}"
        );
        // Source, then our one node: the EinSum, the bias Add and the Max are gone.
        assert_eq!(model.nodes.len(), 2, "{names:?} (from {ops} nodes)");
        // A 3x3 convolution stays a convolution (here tract's: 16 input planes per output).
        let dense = conv_graph([16, 32, 1], [8, 8], 3, 1, [1, 1])
            .into_decluttered()
            .unwrap();
        assert!(!installed(dense).contains(&"facecast.PointwiseConv".to_string()));
    }
}
