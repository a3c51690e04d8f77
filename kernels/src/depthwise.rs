//! Convolutions of f32 NCHW planes whose output channels each read one input plane: depthwise
//! layers (one filter per channel, or several) and the first layers of a grey input.
//!
//! tract 0.23 convolves such a layer one channel plane at a time, one output value at a time:
//! 0.5-1.3 GMAC/s on BlazeFace's and FaceMesh's layers. Here each input plane is copied into a
//! zero-padded scratch split into its stride's phases ([`Phases`], the dense panels' scratch),
//! in which every tap of every output pixel is at a fixed offset from the output pixel's own
//! position, rows included. The output plane is then computed in vectors of neighbouring
//! pixels, a tap being one multiply and add of the scratch shifted by the tap's offset, for
//! several vectors at once so that the sums do not wait on each other: rows of a vector or more
//! straight into the output, narrower planes as one run at the scratch's width whose columns
//! past the output's are dropped as the rows are copied out ([`PlaneRun`]).
//!
//! Two kernels came before this one: whole vectors of channels, channel-last (the planes
//! transposed in and out, which cost twice the sums on 14x14x128), and a row of output pixels at
//! a time (a vector per row: on 7x7 and 14x14 planes more than half or an eighth of its lanes
//! past the row). Computing the plane as one run wastes only the padding columns. Against them,
//! one layer alone (scratch benchmark, interleaved, release): 14x14x128 and x256 0.52-0.58x the
//! channel-last kernel's time, 24x24x128 0.25-0.36x, strided 48x48 and 96x96 0.41-0.62x the
//! better of the two; large planes of stride 1 even with the rows (0.93-1.06x); the smallest
//! planes slower (3x3x128 1.8x, 6x6 -> 3x3 3.5x: 0.014 and 0.03 ms), their few pixels no longer
//! covering a channel's set-up.
//!
//! Planes narrower than a vector, with AVX-512, are summed a vector of channels at a time
//! instead ([`ByChannel`]: squares of pixels by channels transposed in and out in registers):
//! one layer alone, 6x6x384 0.35x the time, 12x12x256 stride 2 0.41x, 3x3x128 0.17x, 12x12x128
//! 0.82x, 14x14x256 0.88x (round 16, gathering and scattering each pixel; 0.74-0.87x that
//! since round 18); on planes of 16 columns and more it is 1.1-1.7x slower than the rows.
//!
//! Each output is the bias plus the taps in tract's order (row, then column), each multiply
//! and add fused where the CPU has the instruction ([`crate::fused_multiply_add`]: one
//! rounding instead of two, within 1e-5 of tract's values, the tests compare; half the
//! arithmetic, which bounds these kernels: one layer alone, round 18, 3x3 layers on 28x28 to
//! 56x56 planes 0.66-0.82x the time, 5x5 0.58x, by channel 0.83-0.97x). Elsewhere they are
//! multiplied and added without fusing, as tract's depthwise kernel does on x86-64: the same
//! values as tract there (the tests compare).

use std::sync::Arc;

use tract_core::internal::*;

use crate::channels::ByChannel;
use crate::phases::{PlaneRun, TapStep, LANES, MAX_STRIDE};
use crate::ConvLayer;

/// The largest kernel side computed here (these networks': 3x3 and 5x5).
const MAX_KERNEL: usize = 7;

#[derive(Debug, Clone, PartialEq)]
pub struct DepthwiseConv2d {
    /// Input planes, one per group.
    groups: usize,
    /// Output channels per group (per input plane).
    group_outputs: usize,
    /// The output plane computed from an input plane's phases.
    run: PlaneRun,
    /// tract's OIHW kernel: output channel o's weight at tap t at `o * taps + t`.
    filters: Arc<Vec<f32>>,
    /// One bias per output channel.
    bias: Arc<Vec<f32>>,
    /// Where the planes are narrower than a vector and the CPU can (AVX-512): the layer
    /// summed by channel instead.
    by_channel: Option<Arc<ByChannel>>,
    /// Whether the input is taken through a ReLU first ([`DepthwiseConv2d::patch_for`]).
    relu_input: bool,
}

impl DepthwiseConv2d {
    /// The replacement for node `id` if it is a convolution this kernel computes: f32,
    /// channels first, batch of one, 2-D, no dilation, constant weights and bias, fixed
    /// shapes, one input plane per output channel (a group per input plane), a kernel side up
    /// to [`MAX_KERNEL`] and a stride up to [`MAX_STRIDE`].
    pub fn for_node(model: &TypedModel, id: usize) -> TractResult<Option<DepthwiseConv2d>> {
        let Some(layer) = ConvLayer::of(model, id, |conv, window| {
            let spec = &conv.pool_spec;
            spec.input_channels == conv.group
                && spec.output_channels % conv.group == 0
                && window.kernel.iter().all(|&k| k <= MAX_KERNEL)
                && window.stride.iter().all(|&s| s <= MAX_STRIDE)
        })?
        else {
            return Ok(None);
        };
        let groups = layer.conv.group;
        let group_outputs = layer.conv.pool_spec.output_channels / groups;
        let weights = &layer.weights;
        let by_channel = (group_outputs == 1)
            .then(|| ByChannel::of(&layer.window, groups, &weights.kernel, &weights.bias))
            .flatten();
        Ok(Some(DepthwiseConv2d {
            run: PlaneRun::new(layer.window),
            groups,
            group_outputs,
            filters: Arc::new(layer.weights.kernel),
            bias: Arc::new(layer.weights.bias),
            by_channel: by_channel.map(Arc::new),
            relu_input: false,
        }))
    }

    /// A patch replacing node `id` by this kernel with the ReLU before it taken in, if `id` is
    /// a convolution [`Self::for_node`] takes whose input is a ReLU (a `Max` with constant
    /// zero) read by it alone. Xception's blocks (face-api's age and gender network, FER) add
    /// a shortcut, then pass the sum through a ReLU to a separable convolution and unchanged
    /// to the next shortcut: the convolution before the sum cannot take the ReLU in, and tract
    /// ran it as a pass of its own (2% of face-api's age and gender network). Here the
    /// scratch the input is copied into is passed through the ReLU, padding included (the
    /// padding's zero is its own ReLU).
    pub fn patch_for(model: &TypedModel, id: usize) -> TractResult<Option<TypedModelPatch>> {
        let Some(&relu) = model.nodes[id].inputs.first() else {
            return Ok(None);
        };
        let Some(relu_input) = crate::panels::relu_input(model, relu.node)? else {
            return Ok(None);
        };
        if crate::panels::single_successor(model, relu)?.is_none_or(|next| next.id != id) {
            return Ok(None);
        }
        let Some(mut op) = Self::for_node(model, id)? else {
            return Ok(None);
        };
        op.relu_input = true;
        let node = &model.nodes[id];
        let mut patch = TypedModelPatch::new("facecast.DepthwiseConv2d with its input's ReLU");
        let mut inputs = tvec![patch.tap_model(model, relu_input)?];
        for &input in &node.inputs[1..] {
            inputs.push(patch.tap_model(model, input)?);
        }
        let output = patch.wire_node(&node.name, op, &inputs)?;
        patch.shunt_outside(model, OutletId::new(id, 0), output[0])?;
        Ok(Some(patch))
    }

    /// Whether this layer's multiply-adds are fused ([`crate::fused_multiply_add`]; always
    /// in the AVX-512 kernels, by channel and the stacks').
    fn fused(&self) -> bool {
        crate::fused_multiply_add()
    }

    /// Every output plane from `input` (both channels first): by channel where
    /// [`DepthwiseConv2d::for_node`] chose it, else a plane at a time.
    fn convolve(&self, input: &[f32], output: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if let Some(by_channel) = &self.by_channel {
            // SAFETY: `by_channel` is set only where the CPU has AVX-512.
            return unsafe {
                crate::channels::avx512::compute(by_channel, self.relu_input, input, output)
            };
        }
        #[cfg(target_arch = "x86_64")]
        if self.run.stacks().is_some() && std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the instructions.
            return unsafe { avx512::convolve_stacks(self, input, output) };
        }
        self.convolve_planes(input, output)
    }

    on_widest_vectors!(
        DepthwiseConv2d,
        fn convolve_planes => convolve_portable(input: &[f32], output: &mut [f32])
    );

    /// Every output plane from `input` (both channels first), an input plane at a time
    /// ([`Self::each_plane`]).
    #[inline(always)]
    fn convolve_portable(&self, input: &[f32], output: &mut [f32]) {
        let mut planes = PortablePlanes {
            conv: self,
            values: self.run.values(),
            fused: self.fused(),
        };
        self.each_plane(input, output, &mut planes);
    }

    /// [`PlaneKernel::plane`] for each output plane: with the scratch of its input plane
    /// (through the ReLU if the layer takes it in; one scratch zeroed once for all, only the
    /// input's pixels written for each plane), and the plane's filter and bias.
    #[inline(always)]
    fn each_plane(&self, input: &[f32], output: &mut [f32], kernel: &mut impl PlaneKernel) {
        let phases = &self.run.phases;
        let [h, w] = phases.window.input;
        let [oh, ow] = phases.window.output;
        let mut scratch = self.run.scratch(0.0);
        let taps = self.run.offsets.len();
        let inputs = input.chunks_exact(h * w);
        let outputs = output.chunks_exact_mut(self.group_outputs * oh * ow);
        for (group, (input, out)) in inputs.zip(outputs).enumerate() {
            phases.fill_plane(input, &mut scratch);
            if self.relu_input {
                crate::relu(&mut scratch);
            }
            for (o, out) in out.chunks_exact_mut(oh * ow).enumerate() {
                let channel = group * self.group_outputs + o;
                let filter = &self.filters[channel * taps..][..taps];
                kernel.plane(&scratch, out, filter, self.bias[channel]);
            }
        }
    }
}

/// What [`DepthwiseConv2d::each_plane`] computes each output plane with. A trait rather than a
/// closure: a closure is compiled with its defining function's target features, and the
/// portable kernel's, inlined into the AVX-512 and AVX2 copies, was left without them (its
/// multiply-adds calls to libm: 14-33x the time).
trait PlaneKernel {
    /// Output plane `out` from `scratch` (its input plane's), `filter` and `bias`.
    fn plane(&mut self, scratch: &[f32], out: &mut [f32], filter: &[f32], bias: f32);
}

/// The plane runs of [`PlaneRun::compute`], through the run's buffer `values`.
struct PortablePlanes<'a> {
    conv: &'a DepthwiseConv2d,
    values: Vec<f32>,
    fused: bool,
}

impl PlaneKernel for PortablePlanes<'_> {
    #[inline(always)]
    fn plane(&mut self, scratch: &[f32], out: &mut [f32], filter: &[f32], bias: f32) {
        let run = &self.conv.run;
        if self.fused {
            let sum = WeightedSum::<true> { filter };
            run.compute(scratch, &mut self.values, out, bias, &sum);
        } else {
            let sum = WeightedSum::<false> { filter };
            run.compute(scratch, &mut self.values, out, bias, &sum);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{DepthwiseConv2d, PlaneKernel};
    use crate::phases::{LANES, STACK};

    /// Every output plane of a layer whose plane runs are stacks ([`PlaneRun::stacks`]), as
    /// `convolve_portable` computes them, each stack's sums in registers (the portable stacks
    /// kept some on the stack) and each tap's multiply and add fused.
    ///
    /// [`PlaneRun::stacks`]: crate::phases::PlaneRun::stacks
    #[target_feature(enable = "avx512f")]
    pub(super) fn convolve_stacks(conv: &DepthwiseConv2d, input: &[f32], output: &mut [f32]) {
        let stacks = conv.run.stacks().expect("a layer of stacks");
        let width = conv.run.phases.width;
        let [k, ow] = [
            conv.run.phases.window.kernel[0],
            conv.run.phases.window.output[1],
        ];
        let mut planes = Stacks {
            stacks,
            width,
            k,
            ow,
        };
        conv.each_plane(input, output, &mut planes);
    }

    /// Each output plane as the stacks from `stacks` ([`stack`]).
    struct Stacks<'a> {
        stacks: &'a [[usize; 2]],
        width: usize,
        k: usize,
        ow: usize,
    }

    impl PlaneKernel for Stacks<'_> {
        #[inline(always)]
        fn plane(&mut self, scratch: &[f32], out: &mut [f32], filter: &[f32], bias: f32) {
            let Stacks {
                stacks,
                width,
                k,
                ow,
            } = *self;
            // SAFETY: only `convolve_stacks`, which the CPU's AVX-512 let run, makes these.
            for &[at, to] in stacks {
                unsafe {
                    match k {
                        3 => stack::<3>(scratch, width, at, filter, bias, out, to, ow),
                        _ => stack::<5>(scratch, width, at, filter, bias, out, to, ow),
                    }
                }
            }
        }
    }

    /// The [`STACK`] output vectors from `to` in `out` (rows `ow` apart), from the scratch at
    /// `at` (rows `width` apart): each scratch row the stack's taps read loaded once and
    /// multiplied into every output row whose taps read it, each output the bias plus its
    /// taps in tract's order (row, then column), each multiply and add fused.
    #[target_feature(enable = "avx512f")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn stack<const K: usize>(
        scratch: &[f32],
        width: usize,
        at: usize,
        filter: &[f32],
        bias: f32,
        out: &mut [f32],
        to: usize,
        ow: usize,
    ) {
        assert!(at + (STACK + K - 2) * width + K - 1 + LANES <= scratch.len());
        assert!(to + (STACK - 1) * ow + LANES <= out.len() && filter.len() == K * K);
        let weights: [[__m512; K]; K] =
            std::array::from_fn(|ky| std::array::from_fn(|kx| _mm512_set1_ps(filter[ky * K + kx])));
        let mut sums = [_mm512_set1_ps(bias); STACK];
        for row in 0..STACK + K - 1 {
            for kx in 0..K {
                // SAFETY: inside the scratch (checked above).
                let pixels =
                    unsafe { _mm512_loadu_ps(scratch.as_ptr().add(at + row * width + kx)) };
                for (j, sum) in sums.iter_mut().enumerate() {
                    if let Some(weights) = row.checked_sub(j).and_then(|ky| weights.get(ky)) {
                        *sum = _mm512_fmadd_ps(weights[kx], pixels, *sum);
                    }
                }
            }
        }
        for (j, &sum) in sums.iter().enumerate() {
            // SAFETY: inside the output (checked above).
            unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(to + j * ow), sum) };
        }
    }
}

/// A depthwise filter's step: the tap's weight times the pixels, added to the sums, in one
/// rounding if FUSED ([`crate::fused_multiply_add`]).
struct WeightedSum<'a, const FUSED: bool> {
    filter: &'a [f32],
}

impl<const FUSED: bool> TapStep for WeightedSum<'_, FUSED> {
    type Tap = f32;

    #[inline(always)]
    fn tap(&self, tap: usize) -> f32 {
        self.filter[tap]
    }

    #[inline(always)]
    fn step(&self, sum: &mut [f32; LANES], weight: f32, pixels: [f32; LANES]) {
        for (s, &x) in sum.iter_mut().zip(&pixels) {
            *s = if FUSED {
                weight.mul_add(x, *s)
            } else {
                *s + weight * x
            };
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
        Ok(vec![format!(
            "{} planes of {} channels each, {}{}{}{}",
            self.groups,
            self.group_outputs,
            self.run.phases.window.describe(),
            if self.by_channel.is_some() {
                ", by channel"
            } else {
                ""
            },
            if self.fused() {
                ", fused multiply-adds"
            } else {
                ""
            },
            if self.relu_input {
                ", input through a ReLU"
            } else {
                ""
            }
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for DepthwiseConv2d {
    op_out_of_plan!();

    /// Inputs: the planes, then tract's kernel and bias (constants, read once by
    /// [`DepthwiseConv2d::for_node`]).
    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let output_shape = &self.run.phases.window.output_shape;
        crate::computed_planes(&inputs[0], output_shape, |input, output| {
            self.convolve(input, output)
        })
    }
}

impl TypedOp for DepthwiseConv2d {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0]
            .datum_type
            .fact(&self.run.phases.window.output_shape)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use tract_core::internal::*;

    use super::DepthwiseConv2d;
    use crate::tests::{assert_close, conv_graph, installed, ours_and_theirs};

    #[test]
    fn depthwise_layers_equal_tract() {
        // (channels, input [h, w], square kernel, stride, padding [before, after]): planes of
        // 2x2 to 96x96, rows not a multiple of a vector nor of the vectors summed together,
        // strides of 1 and 2 with either padding parity, 3x3 and 5x5 kernels, channel counts in
        // and out of whole vectors.
        for (channels, hw, kernel, stride, pad) in [
            (384, [6, 6], 3, 1, [1, 1]),
            (64, [24, 24], 3, 1, [1, 1]),
            (16, [7, 9], 3, 2, [1, 1]),
            (48, [12, 12], 5, 1, [2, 2]),
            (16, [2, 2], 3, 1, [1, 1]),
            (128, [6, 6], 3, 2, [0, 0]),
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
            let groups = [channels; 3];
            let (ours, theirs) =
                ours_and_theirs(channels, hw, || conv_graph(groups, hw, kernel, stride, pad));
            let case = format!("{channels}x{hw:?} k{kernel} s{stride} p{pad:?}");
            let layer = layer_of(conv_graph(groups, hw, kernel, stride, pad));
            assert_as_tract(&layer, &ours, &theirs, &case);
        }
    }

    /// The depthwise layer of `model`.
    fn layer_of(mut model: TypedModel) -> DepthwiseConv2d {
        model.declutter().unwrap();
        (0..model.nodes.len())
            .find_map(|id| DepthwiseConv2d::for_node(&model, id).unwrap())
            .expect("a depthwise layer")
    }

    /// `ours` against tract's values: equal where `layer` multiplies and adds as tract's
    /// x86-64 kernel does, a rounding apart where it fuses them (or tract may: elsewhere).
    fn assert_as_tract(layer: &DepthwiseConv2d, ours: &[f32], theirs: &[f32], case: &str) {
        if cfg!(target_arch = "x86_64") && !layer.fused() {
            assert_eq!(ours, theirs, "{case}");
        } else {
            assert_close(ours, theirs, case);
        }
    }

    #[test]
    fn sums_planes_narrower_than_a_vector_by_channel_where_the_cpu_can() {
        // (channels, plane side, by channel): a vector of channels or more on planes narrower
        // than a vector; the wider planes keep the stacks of rows.
        for (channels, side, by_channel) in [
            (32, 6, true),
            (16, 14, true),
            (8, 6, false),
            (32, 24, false),
        ] {
            let mut model = conv_graph([channels; 3], [side, side], 3, 1, [1, 1]);
            model.declutter().unwrap();
            let conv = (0..model.nodes.len())
                .find_map(|id| super::DepthwiseConv2d::for_node(&model, id).unwrap())
                .expect("a depthwise layer");
            assert_eq!(
                conv.by_channel.is_some(),
                by_channel && crate::by_channel_available(),
                "{channels}x{side}x{side}"
            );
        }
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

    /// Xception's block: `x + x` read by a ReLU before a depthwise layer of `channels` on
    /// `hw` planes and by a second output (the next shortcut); the ReLU read by the layer
    /// alone unless `relu_shared`.
    fn relu_then_depthwise(channels: usize, hw: [usize; 2], relu_shared: bool) -> TypedModel {
        use tract_core::ops::math;
        let mut model = conv_graph([channels; 3], hw, 3, 1, [1, 1]);
        let conv = model.node_id_by_name("op").unwrap();
        let x = model.nodes[conv].inputs[0];
        let sum = model.wire_node("sum", math::add(), &[x, x]).unwrap()[0];
        let zero = model.add_const("zero", tensor4(&[[[[0f32]]]])).unwrap();
        let relu = model.wire_node("relu", math::max(), &[sum, zero]).unwrap()[0];
        model.add_edge(relu, InletId::new(conv, 0)).unwrap();
        let mut outputs = vec![OutletId::new(conv, 0), sum];
        if relu_shared {
            outputs.push(relu);
        }
        model.select_output_outlets(&outputs).unwrap();
        model
    }

    /// Whether [`crate::install`] makes `model`'s depthwise layer take its input's ReLU in.
    fn relu_taken_in(mut model: TypedModel) -> bool {
        crate::install(&mut model).unwrap();
        let model = model.into_decluttered().unwrap();
        let mut layers = model
            .nodes
            .iter()
            .filter_map(|n| n.op_as::<DepthwiseConv2d>());
        layers.next().unwrap().relu_input
    }

    #[test]
    fn takes_in_the_relu_before_it_read_by_it_alone() {
        // Planes by rows and by channel (with AVX-512).
        for (channels, hw) in [(16, [20, 24]), (32, [7, 9])] {
            assert!(relu_taken_in(relu_then_depthwise(channels, hw, false)));
            let (ours, theirs) =
                ours_and_theirs(channels, hw, || relu_then_depthwise(channels, hw, false));
            let layer = layer_of(relu_then_depthwise(channels, hw, false));
            assert_as_tract(&layer, &ours, &theirs, &format!("{channels}x{hw:?}"));
            assert!(ours.iter().any(|&v| v != 0.0));
        }
        // A ReLU read by others too is left out.
        assert!(!relu_taken_in(relu_then_depthwise(16, [20, 24], true)));
    }

    #[test]
    fn leaves_large_kernels_strides_and_dense_layers_to_others() {
        for ([inputs, outputs, groups], kernel, stride) in [
            ([24, 24, 24], 3, 3),
            ([32, 32, 32], 9, 1),
            ([16, 32, 1], 3, 1),
            ([3, 32, 1], 3, 1),
            ([8, 6, 2], 3, 1),
        ] {
            let model = conv_graph([inputs, outputs, groups], [48, 48], kernel, stride, [1, 1]);
            let ops = installed(model);
            assert!(
                !ops.contains(&"facecast.DepthwiseConv2d".to_string()),
                "{inputs}->{outputs}/{groups} k{kernel} s{stride}: {ops:?}"
            );
        }
    }
}
