//! Dense convolutions of f32 NCHW planes as sums of shifted planes, with the bias, residual and
//! activation that follow them: each output plane is, for every input plane and tap, the tap's
//! weight times the input plane shifted by the tap, computed a panel of neighbouring output
//! pixels at a time.
//!
//! tract 0.23 runs a convolution as a matrix product that first packs its input: an im2col
//! copy (one column per tap of every input plane) for a KxK kernel, the planes into panels for
//! a 1x1 kernel (which it declutters into an `EinSum`, `NIHW,OI->NOHW`). On FaceMesh's
//! 96x96x16 1x1 layers the packing took longer than the product (0.41 and 0.35 ms, 7 GFLOP/s
//! together); on the age network's first layer (7x7, stride 2) tract ran at 2-3 GFLOP/s.
//!
//! Here nothing is packed per tap. A 1x1 convolution reads its input planes in place. A KxK
//! one copies each input plane once into a zero-padded scratch plane, split by a stride S into
//! its S x S phases (every S-th row and column), so that each tap of every output pixel reads
//! the pixel at a fixed offset from the output pixel's own position: the panel then sums, for
//! each (input plane, tap), a row of the scratch at that tap's offset. The output is computed
//! at the scratch's width (columns past the output's are dropped); on planes of up to 8x8
//! pixels, where those columns are a large share, the scratch's rows are gathered first, the
//! output's pixels alone (dlib's 4x4 and 8x8 layers 0.8-0.9x the time). For a panel of pixels
//! (one to three vectors of 16), a block of output channels keeps its sums in registers while the
//! (input plane, tap) rows stream through, then adds the bias (then a batch normalisation's
//! scale and shift where the converter left them as `Mul` and `Add`, and a residual input, the
//! shortcut of a ResNet or MobileNet block) and applies the ReLU or PRelu that follows, in
//! registers. In tract each was a pass over the output of its own: BlazeFace's Add+Max chains
//! took 0.96 ms of its 10, FaceMesh's and Iris's PRelus and Adds 13-14% of their time.
//!
//! Each output is tract's: the products summed in tract's order (input plane, row, column),
//! each multiplied and added in one rounding where the CPU can (as tract's matrix kernels do),
//! then the bias added: on x86-64 the values are tract's exactly (the tests compare). Except
//! the 3x3 layers of stride 1 on planes of 9x9 and up (the ResNets'), which are computed by
//! Winograd's F(2x2, 3x3) (`winograd.rs`: 16 multiply-adds for four output pixels instead of
//! 36, its transforms rounding sums of their own), its matrix products by these panels.

use std::borrow::Cow;
use std::sync::Arc;

use tract_core::internal::*;
use tract_core::ops::array::{Pad, PadMode};
use tract_core::ops::binary::{BinMiniOp, TypedBinOp};
use tract_core::ops::cnn::Conv;
use tract_core::ops::einsum::EinSum;
use tract_core::ops::math::{Add, Max, Mul};
use tract_core::ops::Downsample;

use crate::phases::{copy_row, Phases, MAX_STRIDE};
use crate::winograd::Winograd;
use crate::{ChannelPrelu, ConvLayer, Window};

/// Neighbouring pixels in one vector: one 512-bit vector, two 256-bit ones.
const LANES: usize = 16;

/// Output channels per block of the packed weights: the most any copy of the kernel sums at
/// once. A block's weights for one (input plane, tap) are contiguous.
const BLOCK: usize = 8;

/// The 1x1 convolutions tract's declutter writes, channels first, batch of one or none
/// (`N` and no `N` have the same memory layout).
const EXPRESSIONS: [&str; 4] = [
    "NIHW,OI->NOHW",
    "NIHW,OI->OHW",
    "IHW,OI->NOHW",
    "IHW,OI->OHW",
];

/// The same with the output channels last, tract's fold of the transposition after a 1x1
/// convolution (BlazeFace's box regressors, `NHWO`), and of one output channel whose axis is
/// dropped (its classifiers: the layout of one plane).
const CHANNELS_LAST_EXPRESSIONS: [&str; 2] = ["NIHW,OI->NHWO", "NIHW,I->NHW"];

/// Weights below this magnitude are taken as zero. age_v1 has filters that training decayed
/// to nothing: 2,205 of the 9,408 weights of its first layer are below 1e-30 (1,332 of them
/// subnormal), and their products with the input are subnormal numbers, which the CPU
/// multiplies and adds on a slow path (the layer ran at 4 GFLOP/s, tract's at 2.3). Such a
/// product is below 1e-30 times the input, lost in any output of normal size.
const NEGLIGIBLE: f32 = 1e-30;

/// The largest kernel side computed here: the networks' first layers (7x7, stride 2) and their
/// 3x3 and 5x5 layers.
const MAX_KERNEL: usize = 7;

#[derive(Debug, Clone, PartialEq)]
pub struct Conv2dPanels {
    inputs: usize,
    outputs: usize,
    /// How the sums' rows are laid out: the input planes themselves, or a scratch copy.
    source: Source,
    /// Output pixels computed per plane: the output's, or its rows at the scratch's width.
    computed: usize,
    /// Where each summed row starts in the source, relative to the output pixel: one per
    /// input plane and tap, in tract's order (input plane, row, column).
    offsets: Arc<Vec<usize>>,
    output_shape: TVec<usize>,
    /// Which kernel sums, and so how the weights are packed.
    packing: Packing,
    /// The weights in blocks of the packing's output channels ([`BLOCK`] or
    /// [`CHANNEL_LANES`]): output channel `o`'s weight for summed row `k` (of `offsets`) at
    /// `((o / block) * offsets.len() + k) * block + o % block`; zero past the last output
    /// channel.
    weights: Arc<Vec<f32>>,
    /// One bias per output channel (zero without a bias), zero past the last one (to a whole
    /// number of what the kernel sums at once).
    bias: Arc<Vec<f32>>,
    /// A multiplication and an addition per output channel after the bias: a batch
    /// normalisation the converter left unfolded (FER's separable convolutions).
    scale_shift: Option<ScaleShift>,
    /// Adds a second input (a residual connection) to the sums: its channels, the output's, or
    /// fewer where the graph padded it with zero channels to the output's (BlazeFace: the
    /// panels add nothing past them, and the `Pad` node is gone).
    residual: Option<usize>,
    activation: Activation,
    /// The output's channels last: the planes' sums transposed into it.
    channels_last: bool,
}

/// Output channel `o`'s values `v` become `v * scale[o] + shift[o]`, rounded after each step as
/// tract's `Mul` and `Add` nodes round them.
#[derive(Debug, Clone, PartialEq)]
struct ScaleShift {
    scale: Arc<Vec<f32>>,
    shift: Arc<Vec<f32>>,
}

impl ScaleShift {
    /// Output channel `channel`'s scale and shift, in place on `values`.
    #[inline(always)]
    fn apply(&self, channel: usize, values: &mut [f32]) {
        let (scale, shift) = (self.scale[channel], self.shift[channel]);
        values.iter_mut().for_each(|v| *v = *v * scale + shift);
    }
}

/// The activation fused in after the bias (and the residual).
#[derive(Debug, Clone, PartialEq)]
enum Activation {
    Linear,
    /// `max(x, 0)`.
    Relu,
    /// `x > 0 ? x : slope · x`, one slope per output channel.
    Prelu(Arc<Vec<f32>>),
}

impl Activation {
    /// Output channel `channel`'s activation, in place on `values`.
    #[inline(always)]
    fn apply(&self, channel: usize, values: &mut [f32]) {
        match self {
            Activation::Linear => {}
            Activation::Relu => crate::relu(values),
            Activation::Prelu(slopes) => crate::prelu::prelu(values, slopes[channel]),
        }
    }
}

/// Where the summed rows are read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// A 1x1 convolution without stride: the input planes, in place.
    Planes,
    /// A zero-padded copy of the input planes, each split into its stride's phases.
    Phases(Phases),
    /// That copy's rows gathered, the output's pixels alone: one row per (input plane, tap),
    /// from the scratch's offsets `rows`, the output's pixels in its layout. On small planes
    /// the columns past the output's are a large share of the sums (8 of 24 on 4x4 planes, 16
    /// of 80 on 8x8) and the rows are short to gather.
    Gathered {
        phases: Phases,
        rows: Arc<Vec<usize>>,
    },
    /// A 3x3 convolution of stride 1 by Winograd's F(2x2, 3x3), from the input planes: its own
    /// transforms and matrix products ([`Winograd`]), then this layer's epilogue.
    Winograd(Winograd),
}

/// How the sums are vectorised.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Packing {
    /// Vectors of neighbouring pixels of one output plane, the weights broadcast: the panels.
    Pixels,
    /// Vectors of [`CHANNEL_LANES`] output channels, each pixel's input broadcast (AVX-512
    /// only), on small output planes ([`Layer::sums_by_channel_better`]). `positions`: each
    /// output pixel's place in the computed layout; the sums are written to the output
    /// directly.
    Channels { positions: Arc<Vec<usize>> },
}

/// Output channels per vector of the channel-vectorised sums.
const CHANNEL_LANES: usize = 16;

/// Vectors of output channels the channel-vectorised sums keep at once (with up to 12
/// pixels, 24 of AVX-512's 32 registers).
const CHANNEL_VECTORS: usize = 2;

/// Output planes up to this many pixels are summed by channel where the CPU can.
const BY_CHANNEL_PIXELS: usize = 16;

/// Output planes up to this many pixels, not whole vectors of them, are summed by channel
/// where each output sums at least [`BY_CHANNEL_ROWS`] rows ([`Layer::sums_by_channel_better`]).
const BY_CHANNEL_MORE_PIXELS: usize = 64;

/// See [`BY_CHANNEL_MORE_PIXELS`]: below this many summed rows per output, scattering each
/// pixel's vector of channels to the planes costs more than the panels' lost lanes.
const BY_CHANNEL_ROWS: usize = 256;

/// 3x3 convolutions of stride 1 on planes of at least this side are computed by
/// [`Winograd`]'s F(2x2, 3x3).
const WINOGRAD_SIDE: usize = 9;

/// Output planes up to this many pixels have their rows gathered ([`Source::Gathered`]) where
/// that makes fewer vectors of sums.
const GATHERED_PIXELS: usize = 64;

impl Conv2dPanels {
    /// A patch replacing node `id` by this kernel, with what follows it when it does (each
    /// read by it alone): the bias `Add`, an `Add` of another tensor of the output's shape
    /// where the sums are laid out as the output (1x1, or no columns past the output's), and
    /// a ReLU (`Max` with zero) or a [`ChannelPrelu`]; if `id` is a dense convolution it computes:
    /// f32, channels first, batch of one, constant weights, fixed shapes, and either a 1x1
    /// convolution as tract declutters it (an `EinSum` of [`EXPRESSIONS`]) or a `Conv` of one
    /// group, no dilation, a kernel side up to [`MAX_KERNEL`] and a stride up to
    /// [`MAX_STRIDE`]. (The depthwise kernel, tried first, takes the convolutions of one input
    /// plane.)
    pub fn patch_for(model: &TypedModel, id: usize) -> TractResult<Option<TypedModelPatch>> {
        Self::patch_with(model, id, by_channel_available())
    }

    /// [`Self::patch_for`], summing small planes by channel if `by_channel` (which the CPU must
    /// then have: see [`by_channel_available`]).
    fn patch_with(
        model: &TypedModel,
        id: usize,
        by_channel: bool,
    ) -> TractResult<Option<TypedModelPatch>> {
        let Some(layer) = Layer::of(model, id)? else {
            return Ok(None);
        };
        let layer_input = layer.input;
        let [oh, ow] = layer.output;
        let summed_by_channel = by_channel
            && layer.outputs >= CHANNEL_LANES
            && !layer.channels_last
            && layer.sums_by_channel_better();
        let (source, computed, offsets, live_taps) = match layer.phases {
            None => {
                let pixels = oh * ow;
                let offsets = (0..layer.inputs).map(|i| i * pixels).collect();
                (Source::Planes, pixels, offsets, vec![true])
            }
            Some(phases)
                if !summed_by_channel && Winograd::covers(&phases.window, WINOGRAD_SIDE) =>
            {
                let [inputs, outputs] = [layer.inputs, layer.outputs];
                let winograd = Winograd::new(&phases.window, inputs, outputs, &layer.weights);
                (Source::Winograd(winograd), oh * ow, Vec::new(), Vec::new())
            }
            Some(phases) => {
                let live_taps = phases.live_taps();
                let offsets = phases.offsets(layer.inputs, &live_taps);
                // Gathered where that saves vectors of sums against rows padded on both sides
                // (not on 3x3 planes: 9 and 15 pixels are one vector either way), but not for
                // the sums by channel, which read each output pixel's own taps wherever they
                // are. (Against the phases' rows, which share their padding since round 18, a
                // 5x5 plane makes as many vectors as gathered; gathered, the sums are laid out
                // as the output and take a residual in.)
                let vectors = |width: usize| (oh * width).div_ceil(LANES);
                let [kw, sx] = [phases.window.kernel[1], phases.window.stride[1]];
                if oh * ow <= GATHERED_PIXELS
                    && vectors(ow) < vectors(ow + (kw - 1) / sx)
                    && !summed_by_channel
                {
                    let pixels = oh * ow;
                    let gathered = (0..offsets.len()).map(|k| k * pixels).collect();
                    let rows = Arc::new(offsets);
                    (
                        Source::Gathered { phases, rows },
                        pixels,
                        gathered,
                        live_taps,
                    )
                } else {
                    let computed = oh * phases.width;
                    (Source::Phases(phases), computed, offsets, live_taps)
                }
            }
        };
        let packing = if summed_by_channel {
            let width = computed / oh;
            let positions = (0..oh).flat_map(|y| (0..ow).map(move |x| y * width + x));
            Packing::Channels {
                positions: Arc::new(positions.collect()),
            }
        } else {
            Packing::Pixels
        };
        let mut last = OutletId::new(id, 0);
        let mut bias = layer.bias;
        if bias.is_none() {
            if let Some((add, other)) = single_binary_successor::<Add>(model, last)? {
                let values = if layer.channels_last {
                    last_axis_values(model, other, layer.outputs)?
                } else {
                    constant_values(model, other, layer.outputs)?
                };
                if let Some(values) = values {
                    bias = Some(values);
                    last = OutletId::new(add, 0);
                }
            }
        }
        // What else follows is taken in for channel-first outputs only.
        let channels_first = !layer.channels_last;
        let mut scale_shift = None;
        if let Some((mul, scale)) =
            single_binary_successor::<Mul>(model, last)?.filter(|_| channels_first)
        {
            let scaled = OutletId::new(mul, 0);
            if let (Some(scale), Some((add, shift))) = (
                constant_values(model, scale, layer.outputs)?,
                single_binary_successor::<Add>(model, scaled)?,
            ) {
                if let Some(shift) = constant_values(model, shift, layer.outputs)? {
                    let (scale, shift) = (Arc::new(scale), Arc::new(shift));
                    scale_shift = Some(ScaleShift { scale, shift });
                    last = OutletId::new(add, 0);
                }
            }
        }
        // A residual is added where the sums are computed in the output's layout (summed by
        // channel, they are written to the output's).
        let mut residual = None;
        if channels_first && (computed == oh * ow || packing != Packing::Pixels) {
            if let Some((add, other)) = single_binary_successor::<Add>(model, last)? {
                let (sum, other_fact) = (model.outlet_fact(last)?, model.outlet_fact(other)?);
                if other_fact.konst.is_none()
                    && other_fact.datum_type == f32::datum_type()
                    && other_fact.shape == sum.shape
                {
                    residual = Some(
                        zero_channel_padding(model, other, add)?.unwrap_or((other, layer.outputs)),
                    );
                    last = OutletId::new(add, 0);
                }
            }
        }
        let mut activation = Activation::Linear;
        if let Some(max) = relu_successor(model, last)?.filter(|_| channels_first) {
            activation = Activation::Relu;
            last = OutletId::new(max, 0);
        } else if let Some(prelu) = single_successor(model, last)?
            .filter(|next| channels_first && next.op_is::<ChannelPrelu>() && next.inputs[0] == last)
        {
            let slopes = model.outlet_fact(prelu.inputs[1])?.konst.clone();
            if let Some(slopes) = slopes.filter(|slopes| {
                slopes.datum_type() == f32::datum_type() && slopes.len() == layer.outputs
            }) {
                let slopes = slopes.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
                activation = Activation::Prelu(Arc::new(slopes));
                last = OutletId::new(prelu.id, 0);
            }
        }
        let Some(output_shape) = model.outlet_fact(last)?.shape.as_concrete() else {
            return Ok(None);
        };
        if output_shape.iter().product::<usize>() != layer.outputs * oh * ow {
            return Ok(None);
        }
        let rows = offsets.len();
        // The output channels of a block of weights, and of what each kernel sums at once:
        // the weights and bias are padded to a whole number of the latter.
        let (block, group) = match packing {
            Packing::Pixels => (BLOCK, BLOCK),
            Packing::Channels { .. } => (CHANNEL_LANES, CHANNEL_LANES * CHANNEL_VECTORS),
        };
        let padded = layer.outputs.next_multiple_of(group);
        // The weights of the live taps (the rows of `offsets`); Winograd's are its own.
        let packed = if matches!(source, Source::Winograd(_)) {
            Vec::new()
        } else {
            let filter_len = layer.inputs * live_taps.len();
            let filters = layer.weights.chunks_exact(filter_len).map(|filter| {
                let live = filter.iter().zip(live_taps.iter().cycle());
                live.filter_map(|(weight, &live)| live.then_some(weight))
            });
            pack(filters, rows, block, padded)
        };
        let mut bias = bias.unwrap_or_else(|| vec![0.0; layer.outputs]);
        bias.resize(padded, 0.0);
        let op = Conv2dPanels {
            inputs: layer.inputs,
            outputs: layer.outputs,
            source,
            computed,
            offsets: Arc::new(offsets),
            output_shape: output_shape.into(),
            packing,
            weights: Arc::new(packed),
            bias: Arc::new(bias),
            scale_shift,
            residual: residual.map(|(_, channels)| channels),
            activation,
            channels_last: layer.channels_last,
        };
        let node = &model.nodes[id];
        let mut patch = TypedModelPatch::new("facecast.Conv2dPanels");
        let mut inputs = tvec![patch.tap_model(model, layer_input)?];
        if let Some((residual, _)) = residual {
            inputs.push(patch.tap_model(model, residual)?);
        }
        let output = patch.wire_node(&node.name, op, &inputs)?;
        patch.shunt_outside(model, last, output[0])?;
        Ok(Some(patch))
    }

    /// Every output plane from `input` (and `residual`, the second input, if it is fused in):
    /// the rows to sum made if they are not the input's, the sums computed, and the columns
    /// past the output's dropped.
    fn convolve(&self, input: &[f32], residual: Option<&[f32]>, output: &mut [f32]) {
        if let Source::Winograd(winograd) = &self.source {
            return winograd.convolve(self, input, residual, output);
        }
        let source = self.rows(input);
        #[cfg(target_arch = "x86_64")]
        if let Packing::Channels { positions } = &self.packing {
            assert!(by_channel_available());
            // SAFETY: the CPU has the instructions (checked above).
            return unsafe { avx512::by_channel(self, &source, positions, residual, output) };
        }
        let pixels = output.len() / self.outputs;
        if self.channels_last {
            // A 1x1 layer read in place (`Layer::of`): its planes, then each pixel's channels.
            let mut planes = vec![0.0; output.len()];
            self.sums(&source, None, &mut planes);
            for (pixel, channels) in output.chunks_exact_mut(self.outputs).enumerate() {
                for (value, plane) in channels.iter_mut().zip(planes.chunks_exact(pixels)) {
                    *value = plane[pixel];
                }
            }
            return;
        }
        if self.computed == pixels {
            return self.sums(&source, residual, output);
        }
        // Rows computed at the scratch's width: no residual here, `patch_for` fuses one only
        // where the sums are laid out as the output.
        let ow = self.output_shape[self.output_shape.len() - 1];
        let width = self.computed / (pixels / ow);
        // Row by row where a row's vectors sum at most 1/8 more pixels than the scratch's
        // width (BlazeFace's and face-api's first layers, 96 and 56 columns: 0.67-0.8x the
        // time; the gender network's 32: 0.77-0.92x; dlib's 72, since round 17: 0.93x). On
        // dlib's 35 and 17 columns the masked last vectors cost more than the copy (1.3-1.5x),
        // and the gender network's rows of 16 were panels of one vector (1.16-1.22x).
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f")
            && ow > LANES
            && ow.next_multiple_of(LANES) * 8 <= width * 9
        {
            // SAFETY: the CPU has the instructions the function is compiled for.
            return unsafe { avx512::rows(self, &source, output, [width, ow]) };
        }
        let mut wide = vec![0.0; self.outputs * self.computed];
        self.sums(&source, None, &mut wide);
        for (to, from) in output.chunks_exact_mut(ow).zip(wide.chunks_exact(width)) {
            copy_row(to, &from[..ow]);
        }
    }

    /// The rows the sums read, from the input planes: themselves, their scratch, or its
    /// gathered rows.
    fn rows<'a>(&self, input: &'a [f32]) -> Cow<'a, [f32]> {
        match &self.source {
            Source::Planes => Cow::Borrowed(input),
            Source::Phases(phases) => Cow::Owned(phases.fill(self.inputs, input, self.computed)),
            Source::Winograd(_) => unreachable!("transformed by Winograd::convolve"),
            Source::Gathered { phases, rows } => {
                let [oh, ow] = phases.window.output;
                let scratch = phases.fill(self.inputs, input, oh * phases.width);
                let mut gathered = vec![0.0; rows.len() * self.computed];
                let gathered_rows = gathered.chunks_exact_mut(self.computed);
                for (to, &start) in gathered_rows.zip(rows.iter()) {
                    for (y, to) in to.chunks_exact_mut(ow).enumerate() {
                        copy_row(to, &scratch[start + y * phases.width..][..ow]);
                    }
                }
                Cow::Owned(gathered)
            }
        }
    }

    /// Whether output channel `channel` has a residual channel to add.
    pub(crate) fn has_residual(&self, channel: usize) -> bool {
        self.residual.is_some_and(|channels| channel < channels)
    }

    /// Every output plane's sums (`computed` pixels each) from `source`: with AVX-512, eight
    /// output channels by three vectors of pixels summed in 24 of its 32 registers
    /// ([`avx512`]); elsewhere the portable panels of four output channels by one vector,
    /// which the compiler vectorises (for AVX2 in a copy of their own). Written portably, the
    /// eight by two panel's sums were not kept in registers: gathers and scatters, 10x slower
    /// than tract.
    pub(crate) fn sums(&self, source: &[f32], residual: Option<&[f32]>, output: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            fn avx2(
                this: &Conv2dPanels,
                source: &[f32],
                residual: Option<&[f32]>,
                output: &mut [f32],
            ) {
                this.planes::<4, 1, true>(source, residual, output)
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has the instructions the function is compiled for.
                return unsafe { avx512::planes(self, source, residual, output) };
            } else if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: as above.
                return unsafe { avx2(self, source, residual, output) };
            }
        }
        // Fused multiply-adds only where they are instructions: elsewhere they are calls.
        const FUSED: bool = cfg!(any(target_arch = "aarch64", target_feature = "fma"));
        self.planes::<4, 1, FUSED>(source, residual, output)
    }

    /// Every output plane's sums, R output channels by V vectors of pixels at a time, the
    /// last pixels (less than a vector) through a zero-padded copy of their rows.
    #[inline(always)]
    fn planes<const R: usize, const V: usize, const FUSED: bool>(
        &self,
        source: &[f32],
        residual: Option<&[f32]>,
        output: &mut [f32],
    ) {
        let computed = self.computed;
        let mut first = 0;
        while first + V * LANES <= computed {
            self.panel::<R, V, FUSED>(source, &self.offsets, first, residual, output, computed);
            first += V * LANES;
        }
        while first + LANES <= computed {
            self.panel::<R, 1, FUSED>(source, &self.offsets, first, residual, output, computed);
            first += LANES;
        }
        let rest = computed - first;
        if rest == 0 {
            return;
        }
        // The last pixels of every row and of every residual plane, padded to a vector.
        let padded = |planes: &[f32], starts: &[usize]| {
            let mut rows = vec![0.0; starts.len() * LANES];
            for (to, &start) in rows.chunks_exact_mut(LANES).zip(starts) {
                to[..rest].copy_from_slice(&planes[start + first..][..rest]);
            }
            rows
        };
        let rows = self.offsets.len();
        let last_rows = padded(source, &self.offsets);
        let last_residual = residual.map(|residual| {
            let channels = self.residual.unwrap_or(0);
            let starts: Vec<usize> = (0..channels).map(|o| o * computed).collect();
            padded(residual, &starts)
        });
        let offsets: Vec<usize> = (0..rows).map(|k| k * LANES).collect();
        let mut last_output = vec![0.0; self.outputs * LANES];
        self.panel::<R, 1, FUSED>(
            &last_rows,
            &offsets,
            0,
            last_residual.as_deref(),
            &mut last_output,
            LANES,
        );
        for (from, plane) in last_output
            .chunks_exact(LANES)
            .zip(output.chunks_exact_mut(computed))
        {
            plane[first..].copy_from_slice(&from[..rest]);
        }
    }

    /// Pixels `first..first + V * LANES` of every output plane (planes `output_plane` apart in
    /// `output`, and in `residual`, added if given) from the rows of `source` at `offsets`
    /// (shifted by `first`), R output channels at a time: their R by V vectors of sums stay in
    /// registers while the rows stream through.
    #[inline(always)]
    fn panel<const R: usize, const V: usize, const FUSED: bool>(
        &self,
        source: &[f32],
        offsets: &[usize],
        first: usize,
        residual: Option<&[f32]>,
        output: &mut [f32],
        output_plane: usize,
    ) {
        let width = V * LANES;
        let rows = offsets.len();
        for channel in (0..self.outputs).step_by(R) {
            let block = &self.weights[(channel / BLOCK) * rows * BLOCK + channel % BLOCK..];
            let mut sums = [[[0.0f32; LANES]; V]; R];
            for (k, &offset) in offsets.iter().enumerate() {
                let pixels = &source[offset + first..][..width];
                let vectors: [[f32; LANES]; V] = std::array::from_fn(|v| {
                    pixels[v * LANES..][..LANES].try_into().expect("LANES")
                });
                let weights: [f32; R] = block[k * BLOCK..][..R].try_into().expect("R");
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
                let at = (channel + r) * output_plane + first;
                let out = &mut output[at..][..width];
                out.copy_from_slice(sum.as_flattened());
                let residual = residual.filter(|_| self.has_residual(channel + r));
                self.finish(channel + r, out, residual.map(|r| &r[at..][..width]));
            }
        }
    }

    /// Output channel `channel`'s sums `values`, in place: the bias added, then the scale and
    /// shift, `residual` (the channel's, where it has one) and the activation.
    #[inline(always)]
    pub(crate) fn finish(&self, channel: usize, values: &mut [f32], residual: Option<&[f32]>) {
        let bias = self.bias[channel];
        for value in values.iter_mut() {
            *value += bias;
        }
        if let Some(scale_shift) = &self.scale_shift {
            scale_shift.apply(channel, values);
        }
        if let Some(residual) = residual {
            for (value, &r) in values.iter_mut().zip(residual) {
                *value += r;
            }
        }
        self.activation.apply(channel, values);
    }

    /// A 1x1 convolution from `inputs` planes of `pixels` values to `outputs` planes, with
    /// `weights` (output channel, then input channel) and nothing after it: one of
    /// [`Winograd`]'s matrix products.
    pub(crate) fn product(
        inputs: usize,
        outputs: usize,
        pixels: usize,
        weights: &[f32],
    ) -> Conv2dPanels {
        let padded = outputs.next_multiple_of(BLOCK);
        let filters = weights.chunks_exact(inputs).map(|filter| filter.iter());
        Conv2dPanels {
            inputs,
            outputs,
            source: Source::Planes,
            computed: pixels,
            offsets: Arc::new((0..inputs).map(|i| i * pixels).collect()),
            output_shape: tvec![outputs, pixels],
            packing: Packing::Pixels,
            weights: Arc::new(pack(filters, inputs, BLOCK, padded)),
            bias: Arc::new(vec![0.0; padded]),
            scale_shift: None,
            residual: None,
            activation: Activation::Linear,
            channels_last: false,
        }
    }
}

/// `filters`, one per output channel, each its summed rows' weights, packed in blocks of `block`
/// output channels: output channel `o`'s weight for row `k` at `((o / block) * rows + k) * block
/// + o % block`, `padded` output channels (zero past the filters), [`NEGLIGIBLE`] weights zero.
fn pack<'a, Filter: Iterator<Item = &'a f32>>(
    filters: impl Iterator<Item = Filter>,
    rows: usize,
    block: usize,
    padded: usize,
) -> Vec<f32> {
    let mut packed = vec![0.0; padded * rows];
    for (o, filter) in filters.enumerate() {
        for (k, &weight) in filter.enumerate() {
            let weight = if weight.abs() < NEGLIGIBLE {
                0.0
            } else {
                weight
            };
            packed[((o / block) * rows + k) * block + o % block] = weight;
        }
    }
    packed
}

/// A dense convolution node as the panels compute it.
struct Layer {
    /// The planes it convolves.
    input: OutletId,
    inputs: usize,
    outputs: usize,
    /// Output height and width.
    output: [usize; 2],
    /// The scratch's geometry, for a KxK kernel; none for a 1x1 one read in place.
    phases: Option<Phases>,
    /// tract's weights: output channel, then (input plane, row, column).
    weights: Vec<f32>,
    /// The bias, if the node adds it itself (a `Conv` does, an `EinSum` does not).
    bias: Option<Vec<f32>>,
    /// The output's channels last (pixel by pixel), with more than one.
    channels_last: bool,
}

impl Layer {
    /// Whether the sums by channel ([`Packing::Channels`]) beat the panels on this layer's
    /// output planes: on planes of up to [`BY_CHANNEL_PIXELS`] pixels, where a vector of
    /// pixels is mostly empty or is one vector whose every summed row costs a load per weight;
    /// and on planes of up to [`BY_CHANNEL_MORE_PIXELS`] that leave the panels' last vector
    /// partly empty (7x7: 49 pixels in 64 lanes) where the sums are long enough to hide the
    /// scatters. Alone, alternating: 256 -> 256 channels 1x1 on 7x7 planes 0.82x the time;
    /// on whole vectors it was not worth it (128 -> 128 3x3 on 8x8 0.97x, 64 -> 64 1.04x).
    fn sums_by_channel_better(&self) -> bool {
        let [oh, ow] = self.output;
        let pixels = oh * ow;
        let taps = self.phases.as_ref().map_or(1, |phases| {
            phases.live_taps().iter().filter(|&&live| live).count()
        });
        pixels <= BY_CHANNEL_PIXELS
            || (pixels <= BY_CHANNEL_MORE_PIXELS
                && pixels % LANES != 0
                && self.inputs * taps >= BY_CHANNEL_ROWS)
    }

    fn of(model: &TypedModel, id: usize) -> TractResult<Option<Layer>> {
        let node = &model.nodes[id];
        if node.op_is::<Conv>() {
            let Some(ConvLayer {
                conv,
                window,
                weights,
            }) = ConvLayer::of(model, id, |conv, window| {
                conv.group == 1
                    && window.kernel.iter().all(|&k| k <= MAX_KERNEL)
                    && window.stride.iter().all(|&s| s <= MAX_STRIDE)
            })?
            else {
                return Ok(None);
            };
            return Ok(Some(Layer {
                input: node.inputs[0],
                inputs: conv.pool_spec.input_channels,
                outputs: conv.pool_spec.output_channels,
                output: window.output,
                phases: Some(Phases::new(window)),
                weights: weights.kernel,
                bias: Some(weights.bias),
                channels_last: false,
            }));
        }
        let Some(einsum) = node.op_as::<EinSum>() else {
            return Ok(None);
        };
        let expression = einsum.axes.to_string();
        let channels_last = CHANNELS_LAST_EXPRESSIONS.contains(&expression.as_str());
        if einsum.q_params.is_some()
            || einsum.operating_dt != f32::datum_type()
            || !(EXPRESSIONS.contains(&expression.as_str()) || channels_last)
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
        // A 1x1 convolution of stride S is decluttered into two `Downsample`s and the `EinSum`:
        // the panels read every S-th row and column of the planes themselves, in a scratch
        // of that one phase (tract copied the planes twice, 13% of FER's time).
        let (input, phases) = match downsampled(model, node.inputs[0])? {
            Some((input, stride)) => {
                let Some(input_shape) = model.outlet_fact(input)?.shape.as_concrete() else {
                    return Ok(None);
                };
                let window = Window {
                    output_shape: shape.into(),
                    input: crate::plane(input_shape),
                    output: crate::plane(shape),
                    kernel: [1, 1],
                    stride: [stride, stride],
                    pad: [0, 0],
                };
                (input, Some(Phases::new(window)))
            }
            None => (node.inputs[0], None),
        };
        // Weights OI, or I for one output channel.
        let [outputs, inputs] = match *weights.shape() {
            [outputs, inputs] => [outputs, inputs],
            [inputs] => [1, inputs],
            _ => return Ok(None),
        };
        if planes.datum_type != f32::datum_type()
            || weights.datum_type() != f32::datum_type()
            || shape.len() < 3
            || inputs != shape[shape.len() - 3]
            || (channels_last && phases.is_some())
        {
            return Ok(None);
        }
        Ok(Some(Layer {
            input,
            inputs,
            outputs,
            output: crate::plane(shape),
            phases,
            weights: weights.try_as_plain_ram()?.as_slice::<f32>()?.to_vec(),
            bias: None,
            channels_last: channels_last && outputs > 1,
        }))
    }
}

/// The panels in AVX-512 instructions: the sums of eight output channels (a block of the
/// packed weights) by up to three vectors of pixels in registers, the last pixels of a plane
/// loaded and stored under a mask.
///
/// Optional values of vectors are made with `match`, not `Option::map`: a closure of intrinsics
/// called through `map` (which has not the target features) is not inlined, and was a call per
/// output channel in the epilogues (1x1 layers 0.71-0.91x the time without it).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::manual_map)]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;

    use super::{
        Activation, Conv2dPanels, ScaleShift, BLOCK, CHANNEL_LANES, CHANNEL_VECTORS, LANES,
    };

    /// What follows a vector of sums, lane by lane: the bias, a batch normalisation's scale and
    /// shift, the PRelu's slope (the panels broadcast one channel's to every lane; the sums by
    /// channel load a vector of channels').
    struct Epilogue {
        bias: __m512,
        scale_shift: Option<[__m512; 2]>,
        slope: __m512,
    }

    impl Epilogue {
        /// Output channel `channel`'s, broadcast to every lane (the panels).
        #[target_feature(enable = "avx512f")]
        #[inline]
        fn of_channel(conv: &Conv2dPanels, channel: usize) -> Epilogue {
            Epilogue {
                bias: _mm512_set1_ps(conv.bias[channel]),
                scale_shift: match &conv.scale_shift {
                    Some(ScaleShift { scale, shift }) => Some([
                        _mm512_set1_ps(scale[channel]),
                        _mm512_set1_ps(shift[channel]),
                    ]),
                    None => None,
                },
                slope: match &conv.activation {
                    Activation::Prelu(slopes) => _mm512_set1_ps(slopes[channel]),
                    _ => _mm512_setzero_ps(),
                },
            }
        }

        /// Output channels `channel..` in the lanes of `live` (the sums by channel).
        #[target_feature(enable = "avx512f")]
        #[inline]
        fn of_lanes(conv: &Conv2dPanels, channel: usize, live: __mmask16) -> Epilogue {
            // SAFETY: the bias is padded to whole groups; the others are read under `live`,
            // output channels all.
            let lanes = |values: &[f32]| unsafe {
                _mm512_maskz_loadu_ps(live, values.as_ptr().add(channel))
            };
            Epilogue {
                bias: lanes(&conv.bias),
                scale_shift: match &conv.scale_shift {
                    Some(ScaleShift { scale, shift }) => Some([lanes(scale), lanes(shift)]),
                    None => None,
                },
                slope: match &conv.activation {
                    Activation::Prelu(slopes) => lanes(slopes),
                    _ => _mm512_setzero_ps(),
                },
            }
        }

        /// `sum` finished in tract's order and roundings: the bias, the scale and shift, the
        /// residual, then the activation (as `Activation::apply`: PRelu multiplies the lanes
        /// not above zero by the slope).
        #[target_feature(enable = "avx512f")]
        #[inline]
        fn apply(&self, sum: __m512, residual: Option<__m512>, activation: &Activation) -> __m512 {
            let mut value = _mm512_add_ps(sum, self.bias);
            if let Some([scale, shift]) = self.scale_shift {
                value = _mm512_add_ps(_mm512_mul_ps(value, scale), shift);
            }
            if let Some(residual) = residual {
                value = _mm512_add_ps(value, residual);
            }
            match activation {
                Activation::Linear => value,
                Activation::Relu => _mm512_max_ps(value, _mm512_setzero_ps()),
                Activation::Prelu(_) => {
                    let scaled = _mm512_cmp_ps_mask::<_CMP_NGT_UQ>(value, _mm512_setzero_ps());
                    _mm512_mask_mul_ps(value, scaled, value, self.slope)
                }
            }
        }
    }

    /// Vectors of pixels per panel, over whole planes and along [`rows`]: three (24 sums in
    /// registers) load 11 values per 24 multiply-adds, two 10 per 16 (1x1 layers 0.71-0.91x
    /// the time with three, first layers by rows 0.9-1.0x).
    const PLANE_VECTORS: usize = 3;

    /// Pixels summed at once by channel: the broadcasts and weight loads of a summed row are
    /// shared by this many pixels and [`CHANNEL_VECTORS`] vectors of channels.
    const BY_CHANNEL_CHUNK: usize = 12;

    /// Every output plane, summed by channel ([`super::Packing::Channels`]): for
    /// [`CHANNEL_VECTORS`] vectors of output channels and up to [`BY_CHANNEL_CHUNK`] pixels at
    /// a time, each summed row's weights loaded once and each pixel's input broadcast, in the
    /// panels' order (the same values); then the bias, scale and shift, residual and activation
    /// a vector of channels at a time, stored to the output planes (`positions.len()` pixels
    /// each, as `residual`).
    #[target_feature(enable = "avx512f")]
    pub(super) fn by_channel(
        conv: &Conv2dPanels,
        source: &[f32],
        positions: &[usize],
        residual: Option<&[f32]>,
        output: &mut [f32],
    ) {
        let pixels = positions.len();
        // Every broadcast reads a computed pixel at a row's offset.
        let reach = conv.offsets.iter().max().map_or(0, |&offset| offset);
        assert!(positions.iter().all(|&p| reach + p < source.len()));
        assert!(output.len() == conv.outputs * pixels);
        let residual_len = conv.residual.unwrap_or(0) * pixels;
        assert!(residual.is_none_or(|residual| residual.len() == residual_len));
        // Chunks of nearly equal size (16 pixels: two of 8), inside each group of channels:
        // the group's weights (rows x 32, 295 KB for dlib's 256 -> 256 3x3 layers) are read
        // from memory for the first chunk and from the cache for the others.
        let chunks = pixels.div_ceil(BY_CHANNEL_CHUNK);
        for channel in (0..conv.outputs).step_by(CHANNEL_LANES * CHANNEL_VECTORS) {
            let mut first = 0;
            for chunk in 0..chunks {
                let last = pixels * (chunk + 1) / chunks;
                let chunk = &positions[first..last];
                macro_rules! sums {
                    ($($n:literal)*) => {
                        match chunk.len() {
                            $($n => channel_sums::<$n>(
                                conv, source, chunk, first, channel, residual, output,
                            ),)*
                            n => unreachable!("{n} pixels in a chunk"),
                        }
                    };
                }
                sums!(1 2 3 4 5 6 7 8 9 10 11 12);
                first = last;
            }
        }
    }

    /// Output pixels `first..first + N` (at `positions` in the computed layout) of the group
    /// of output planes from `channel` ([`CHANNEL_VECTORS`] vectors of them), by channel.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn channel_sums<const N: usize>(
        conv: &Conv2dPanels,
        source: &[f32],
        positions: &[usize],
        first: usize,
        channel: usize,
        residual: Option<&[f32]>,
        output: &mut [f32],
    ) {
        const { assert!(N <= BY_CHANNEL_CHUNK) };
        let rows = conv.offsets.len();
        let pixels = output.len() / conv.outputs;
        let positions: [usize; N] = positions.try_into().expect("N positions");
        let group = CHANNEL_LANES * CHANNEL_VECTORS;
        let weights = &conv.weights[channel * rows..][..rows * group];
        let zero = [[_mm512_setzero_ps(); N]; CHANNEL_VECTORS];
        let sums = conv
            .offsets
            .iter()
            .enumerate()
            .fold(zero, |mut sums, (k, &offset)| {
                // SAFETY: inside the block (`rows * group` weights, CHANNEL_LANES per vector
                // and row).
                let w: [__m512; CHANNEL_VECTORS] = std::array::from_fn(|v| unsafe {
                    let block = weights.as_ptr().add(v * rows * CHANNEL_LANES);
                    _mm512_loadu_ps(block.add(k * CHANNEL_LANES))
                });
                for (j, &position) in positions.iter().enumerate() {
                    // SAFETY: `by_channel` checked every position at every offset.
                    let x = _mm512_set1_ps(unsafe { *source.get_unchecked(offset + position) });
                    for (sums, &w) in sums.iter_mut().zip(&w) {
                        sums[j] = _mm512_fmadd_ps(w, x, sums[j]);
                    }
                }
                sums
            });
        for (v, sums) in sums.iter().enumerate() {
            let channel = channel + v * CHANNEL_LANES;
            if channel >= conv.outputs {
                break;
            }
            let live = mask(conv.outputs - channel);
            // Channel `channel + lane`'s value of pixel `first` in planes of `pixels`.
            let at = _mm512_add_epi32(
                lane_planes(pixels),
                _mm512_set1_epi32((channel * pixels + first) as i32),
            );
            let epilogue = Epilogue::of_lanes(conv, channel, live);
            // The residual's channels (fewer than the output's where the graph padded it).
            let with_residual = match residual {
                Some(residual) if conv.has_residual(channel) => {
                    Some((residual, mask(conv.residual.unwrap_or(0) - channel)))
                }
                _ => None,
            };
            for (j, &sum) in sums.iter().enumerate() {
                let at = _mm512_add_epi32(at, _mm512_set1_epi32(j as i32));
                let residual = match with_residual {
                    // SAFETY: the lanes read are residual channels' pixels.
                    Some((residual, lanes)) => Some(unsafe {
                        _mm512_mask_i32gather_ps::<4>(
                            _mm512_setzero_ps(),
                            lanes,
                            at,
                            residual.as_ptr(),
                        )
                    }),
                    None => None,
                };
                let value = epilogue.apply(sum, residual, &conv.activation);
                // SAFETY: the lanes stored are output channels' pixels.
                unsafe { _mm512_mask_i32scatter_ps::<4>(output.as_mut_ptr(), live, at, value) };
            }
        }
    }

    /// Every output plane's sums for `conv` from `source`.
    #[target_feature(enable = "avx512f")]
    pub(super) fn planes(
        conv: &Conv2dPanels,
        source: &[f32],
        residual: Option<&[f32]>,
        output: &mut [f32],
    ) {
        let computed = conv.computed;
        assert!(reaches(conv, source) && output.len() == conv.outputs * computed);
        let residual_len = conv.residual.unwrap_or(0) * computed;
        assert!(residual.is_none_or(|residual| residual.len() == residual_len));
        // The last pixels in one masked panel, of as many vectors as they need: every panel
        // reads all the weights, which on small planes cost more than the sums (256 -> 256
        // channels, 3x3, on 4x4 planes: 2.4 MB of weights for 24 pixels).
        for first in (0..computed).step_by(PLANE_VECTORS * LANES) {
            let at = Place {
                source: first,
                output: first,
                plane: computed,
            };
            panel_of(conv, source, residual, output, at, computed - first);
        }
    }

    /// Every output plane of `conv` from `source`, rows computed at the scratch's `width`
    /// (`[width, ow]`): each output row's panels written straight to the output's row, the
    /// last one of a row under a mask. The sums at the scratch's width and a copy of the
    /// output's columns out of them took a third more time on BlazeFace's first layer.
    #[target_feature(enable = "avx512f")]
    pub(super) fn rows(
        conv: &Conv2dPanels,
        source: &[f32],
        output: &mut [f32],
        [width, ow]: [usize; 2],
    ) {
        let computed = conv.computed;
        let oh = computed / width;
        assert!(reaches(conv, source) && output.len() == conv.outputs * oh * ow && ow <= width);
        for y in 0..oh {
            for x in (0..ow).step_by(PLANE_VECTORS * LANES) {
                let at = Place {
                    source: y * width + x,
                    output: y * ow + x,
                    plane: oh * ow,
                };
                panel_of(conv, source, None, output, at, ow - x);
            }
        }
    }

    /// Whether `source` holds every computed pixel (below `computed`) at every summed row's
    /// offset: every lane the panels load.
    fn reaches(conv: &Conv2dPanels, source: &[f32]) -> bool {
        let reach = conv
            .offsets
            .iter()
            .max()
            .map(|&offset| offset + conv.computed);
        reach.unwrap_or(0) <= source.len()
    }

    /// Where a panel's pixels are: its first in the summed rows and in its output plane, and
    /// the output planes' length.
    #[derive(Clone, Copy)]
    struct Place {
        source: usize,
        output: usize,
        plane: usize,
    }

    /// The panel of `lanes` pixels (one or two vectors, the last under a mask) at `at`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn panel_of(
        conv: &Conv2dPanels,
        source: &[f32],
        residual: Option<&[f32]>,
        output: &mut [f32],
        at: Place,
        lanes: usize,
    ) {
        if lanes > 2 * LANES {
            let masks = [u16::MAX, u16::MAX, mask(lanes - 2 * LANES)];
            panel(conv, source, residual, output, at, masks);
        } else if lanes > LANES {
            let masks = [u16::MAX, mask(lanes - LANES)];
            panel(conv, source, residual, output, at, masks);
        } else {
            panel(conv, source, residual, output, at, [mask(lanes)]);
        }
    }

    /// The mask of a vector's first `lanes` lanes (none for zero, all of them from [`LANES`]
    /// up).
    pub(crate) fn mask(lanes: usize) -> __mmask16 {
        ((1u32 << lanes.min(LANES)) - 1) as u16
    }

    /// Lane `c` at `c * len`: where a vector of channels' values of one pixel are in their
    /// planes of `len` values (the gathers' and scatters' offsets).
    #[target_feature(enable = "avx512f")]
    pub(crate) fn lane_planes(len: usize) -> __m512i {
        let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        _mm512_mullo_epi32(lanes, _mm512_set1_epi32(len as i32))
    }

    /// The pixels at `at` of every output plane, V vectors of them, the lanes of each vector
    /// in its mask: they must be computed pixels (checked by [`planes`] and [`rows`]).
    /// `residual`, if given, is laid out as `output`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn panel<const V: usize>(
        conv: &Conv2dPanels,
        source: &[f32],
        residual: Option<&[f32]>,
        output: &mut [f32],
        at: Place,
        masks: [__mmask16; V],
    ) {
        let rows = conv.offsets.len();
        for channel in (0..conv.outputs).step_by(BLOCK) {
            // This block's weights: BLOCK per summed row.
            let block = &conv.weights[channel * rows..][..rows * BLOCK];
            // The sums folded by value: kept in registers (as a mutable array, LLVM stored
            // them to the stack every row with three vectors).
            let zero = [[_mm512_setzero_ps(); V]; BLOCK];
            let rows = block.chunks_exact(BLOCK).zip(conv.offsets.iter());
            let sums = rows.fold(zero, |mut sums, (weights, &offset)| {
                // SAFETY: the masks keep every loaded lane at a computed pixel, which `planes`
                // checked lies inside `source` at every row's offset; masked-off lanes are not
                // read.
                let vectors: [__m512; V] = std::array::from_fn(|v| unsafe {
                    let row = source.as_ptr().add(offset + at.source + v * LANES);
                    _mm512_maskz_loadu_ps(masks[v], row)
                });
                for (sums, &weight) in sums.iter_mut().zip(weights) {
                    let weight = _mm512_set1_ps(weight);
                    for (sum, &vector) in sums.iter_mut().zip(&vectors) {
                        *sum = _mm512_fmadd_ps(weight, vector, *sum);
                    }
                }
                sums
            });
            for (r, sums) in sums.iter().enumerate().take(conv.outputs - channel) {
                let channel = channel + r;
                let epilogue = Epilogue::of_channel(conv, channel);
                let plane = channel * at.plane..(channel + 1) * at.plane;
                let residual = match residual {
                    Some(residual) if conv.has_residual(channel) => Some(&residual[plane.clone()]),
                    _ => None,
                };
                let plane = &mut output[plane];
                for (v, &sum) in sums.iter().enumerate() {
                    let at = at.output + v * LANES;
                    let residual = match residual {
                        // SAFETY: the loaded lanes are computed pixels, inside the plane.
                        Some(residual) => Some(unsafe {
                            _mm512_maskz_loadu_ps(masks[v], residual.as_ptr().add(at))
                        }),
                        None => None,
                    };
                    let value = epilogue.apply(sum, residual, &conv.activation);
                    // SAFETY: the stored lanes are computed pixels, inside the plane.
                    unsafe { _mm512_mask_storeu_ps(plane.as_mut_ptr().add(at), masks[v], value) };
                }
            }
        }
    }
}

/// Whether this CPU sums small planes by channel ([`Packing::Channels`]: AVX-512 only; the
/// portable copy was not vectorised as written).
pub(crate) fn by_channel_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// If `outlet` is planes taken every S-th row and column by two `Downsample`s (rows, then
/// columns, each read by the next alone, S up to [`MAX_STRIDE`]): the planes and S.
fn downsampled(model: &TypedModel, outlet: OutletId) -> TractResult<Option<(OutletId, usize)>> {
    let rank = model.outlet_fact(outlet)?.rank();
    let mut source = outlet;
    let mut stride = None;
    // The columns' Downsample reads the rows' one.
    for axis in [rank - 1, rank - 2] {
        let node = &model.nodes[source.node];
        let Some(down) = node.op_as::<Downsample>() else {
            return Ok(None);
        };
        let read_alone = single_successor(model, source)?.is_some();
        if down.axis != axis
            || down.modulo != 0
            || !read_alone
            || stride.is_some_and(|s| s != down.stride)
        {
            return Ok(None);
        }
        stride = Some(down.stride);
        source = node.inputs[0];
    }
    Ok(stride
        .and_then(|s| usize::try_from(s).ok())
        .filter(|s| (2..=MAX_STRIDE).contains(s))
        .map(|s| (source, s)))
}

/// If `outlet` is planes padded with zero channels after their own (a `Pad` of constant zero
/// on the channel axis alone, after), read by node `reader` alone: the planes and their
/// channels. BlazeFace pads a block's shortcut so to the block's channels before adding it.
fn zero_channel_padding(
    model: &TypedModel,
    outlet: OutletId,
    reader: usize,
) -> TractResult<Option<(OutletId, usize)>> {
    let node = &model.nodes[outlet.node];
    let Some(pad) = node.op_as::<Pad>() else {
        return Ok(None);
    };
    let PadMode::Constant(value) = &pad.mode else {
        return Ok(None);
    };
    let rank = pad.pads.len();
    let Some(channel_axis) = rank.checked_sub(3) else {
        return Ok(None);
    };
    let zero = value.cast_to_scalar::<f32>().is_ok_and(|v| v == 0.0);
    let channels_only = pad
        .pads
        .iter()
        .enumerate()
        .all(|(axis, &(before, after))| before == 0 && (after == 0 || axis == channel_axis));
    let read_by_reader_alone = single_successor(model, outlet)?.is_some_and(|n| n.id == reader);
    let input = node.inputs[0];
    let shape = model
        .outlet_fact(input)?
        .shape
        .as_concrete()
        .map(|s| s.to_vec());
    Ok(match shape {
        Some(shape) if zero && channels_only && read_by_reader_alone => {
            Some((input, shape[channel_axis]))
        }
        _ => None,
    })
}

/// The node that alone reads `outlet`, if `outlet` is not a model output.
pub(crate) fn single_successor(
    model: &TypedModel,
    outlet: OutletId,
) -> TractResult<Option<&TypedNode>> {
    let successors = &model.nodes[outlet.node].outputs[outlet.slot].successors;
    if successors.len() != 1 || model.output_outlets()?.contains(&outlet) {
        return Ok(None);
    }
    Ok(Some(&model.nodes[successors[0].node]))
}

/// The node that alone reads `outlet`, if it is a binary `Mini` and `outlet` is not a model
/// output: the node and its other input.
pub(crate) fn single_binary_successor<Mini: BinMiniOp>(
    model: &TypedModel,
    outlet: OutletId,
) -> TractResult<Option<(usize, OutletId)>> {
    let Some(next) = single_successor(model, outlet)? else {
        return Ok(None);
    };
    let is_op = next
        .op_as::<TypedBinOp>()
        .is_some_and(|op| op.0.is::<Mini>());
    if !is_op || next.inputs.len() != 2 {
        return Ok(None);
    }
    let other = if next.inputs[0] == outlet {
        next.inputs[1]
    } else {
        next.inputs[0]
    };
    Ok(Some((next.id, other)))
}

/// The node that alone reads `outlet`, if it is a ReLU of it ([`relu_input`]) and `outlet` is
/// not a model output.
pub(crate) fn relu_successor(model: &TypedModel, outlet: OutletId) -> TractResult<Option<usize>> {
    let Some(next) = single_successor(model, outlet)? else {
        return Ok(None);
    };
    Ok((relu_input(model, next.id)? == Some(outlet)).then_some(next.id))
}

/// If node `id` is a ReLU (a `Max` with constant zero): what it reads.
pub(crate) fn relu_input(model: &TypedModel, id: usize) -> TractResult<Option<OutletId>> {
    let node = &model.nodes[id];
    let is_max = node
        .op_as::<TypedBinOp>()
        .is_some_and(|op| op.0.is::<Max>());
    let &[a, b] = &node.inputs[..] else {
        return Ok(None);
    };
    if !is_max {
        return Ok(None);
    }
    for (input, other) in [(a, b), (b, a)] {
        if constant_values(model, other, 1)? == Some(vec![0.0]) {
            return Ok(Some(input));
        }
    }
    Ok(None)
}

/// The values of constant `outlet` if [`channel_values`] takes them.
fn constant_values(
    model: &TypedModel,
    outlet: OutletId,
    channels: usize,
) -> TractResult<Option<Vec<f32>>> {
    let constant = model.outlet_fact(outlet)?.konst.clone();
    Ok(constant.and_then(|constant| channel_values(&constant, channels)))
}

/// The values of constant `outlet` if it is f32 and holds one per channel along its last axis
/// (shape `[.., channels]`, ones elsewhere): the bias of a channel-last output.
fn last_axis_values(
    model: &TypedModel,
    outlet: OutletId,
    channels: usize,
) -> TractResult<Option<Vec<f32>>> {
    let Some(constant) = model.outlet_fact(outlet)?.konst.clone() else {
        return Ok(None);
    };
    let shape = constant.shape();
    if constant.datum_type() != f32::datum_type()
        || shape.last() != Some(&channels)
        || constant.len() != channels
    {
        return Ok(None);
    }
    Ok(Some(
        constant.try_as_plain_ram()?.as_slice::<f32>()?.to_vec(),
    ))
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
impl Eq for Conv2dPanels {}

impl Op for Conv2dPanels {
    fn name(&self) -> StaticName {
        "facecast.Conv2dPanels".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let window = match &self.source {
            Source::Planes => format!("1x1 on {} pixels", self.computed),
            Source::Phases(phases) => phases.window.describe(),
            Source::Gathered { phases, .. } => format!("{}, gathered", phases.window.describe()),
            Source::Winograd(winograd) => winograd.describe(),
        };
        let by_channel = match self.packing {
            Packing::Pixels => "",
            Packing::Channels { .. } => ", by channel",
        };
        let scale_shift = match self.scale_shift {
            Some(_) => ", scale and shift",
            None => "",
        };
        let residual = match self.residual {
            Some(channels) if channels < self.outputs => format!(", + residual of {channels}"),
            Some(_) => ", + residual".to_string(),
            None => String::new(),
        };
        let activation = match self.activation {
            Activation::Linear => "",
            Activation::Relu => ", ReLU",
            Activation::Prelu(_) => ", PRelu",
        };
        Ok(vec![format!(
            "{} -> {} channels, {window}{by_channel}{scale_shift}{residual}{activation}",
            self.inputs, self.outputs
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for Conv2dPanels {
    op_out_of_plan!();

    /// Inputs: the planes, and the residual if one is fused in (the weights, bias and
    /// activation were read once by [`Conv2dPanels::patch_for`]).
    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(inputs.len() == 1 + self.residual.is_some() as usize);
        let input = inputs[0].try_as_plain_ram()?;
        let input = input.as_slice::<f32>()?;
        let residual = inputs.get(1).map(|r| r.try_as_plain_ram()).transpose()?;
        let residual = residual.as_ref().map(|r| r.as_slice::<f32>()).transpose()?;
        let output = crate::output_planes(&self.output_shape, |planes| {
            self.convolve(input, residual, planes)
        })?;
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for Conv2dPanels {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].datum_type.fact(&self.output_shape)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tract_core::ops::array::{Pad, PadMode};
    use tract_core::ops::Downsample;
    use tract_core::prelude::*;

    use super::{Activation, Conv2dPanels, CHANNELS_LAST_EXPRESSIONS};
    use crate::tests::{assert_close, conv_graph, installed, ours_and_theirs};
    use crate::ChannelPrelu;
    use tract_core::internal::AxisOp;
    use tract_core::ops::einsum::EinSum;

    /// The activation after a test layer.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Act {
        Linear,
        Relu,
        Prelu,
    }

    /// What follows a test layer's convolution and bias: whether a per-channel `Mul` and `Add`
    /// (a batch normalisation) follow, whether the input is added as a residual (taken every
    /// `stride`-th row and column: the output's plane), and the activation.
    type Tail = (bool, bool, Act);

    /// A dense convolution ([inputs, outputs], input `hw`, square `kernel`, `stride`, `pad` =
    /// [before, after]) with its bias and `tail`, decluttered as facecast loads a model (a 1x1
    /// convolution becomes an `EinSum` and a bias `Add`).
    fn dense_graph(
        [inputs, outputs]: [usize; 2],
        hw: [usize; 2],
        [kernel, stride]: [usize; 2],
        pad: [usize; 2],
        (batch_norm, residual, act): Tail,
    ) -> TypedModel {
        let mut model = conv_graph([inputs, outputs, 1], hw, kernel, stride, pad);
        let mut y = model.output_outlets().unwrap()[0];
        if batch_norm {
            let per_channel = |model: &mut TypedModel, name: &str, f: fn(usize) -> f32| {
                let values: Vec<f32> = (0..outputs).map(f).collect();
                let values = Tensor::from_shape(&[1, outputs, 1, 1], &values).unwrap();
                model.add_const(name, values).unwrap()
            };
            let scale = per_channel(&mut model, "scales", |o| (o % 5) as f32 / 3.0 + 0.3);
            let shift = per_channel(&mut model, "shifts", |o| (o % 3) as f32 / 2.0 - 0.5);
            let mul = tract_core::ops::math::mul();
            y = model.wire_node("scale", mul, &[y, scale]).unwrap()[0];
            let add = tract_core::ops::math::add();
            y = model.wire_node("shift", add, &[y, shift]).unwrap()[0];
        }
        if residual {
            // The input, downsampled to the output's plane and padded with zero channels to
            // the output's (as BlazeFace pads its blocks' shortcuts) if it has fewer.
            let mut x = model.input_outlets().unwrap()[0];
            for axis in [2, 3].into_iter().filter(|_| stride > 1) {
                let down = Downsample::new(axis, stride as isize, 0);
                x = model.wire_node(format!("down{axis}"), down, &[x]).unwrap()[0];
            }
            if inputs < outputs {
                let pads = vec![(0, 0), (0, outputs - inputs), (0, 0), (0, 0)];
                let pad = Pad::new(pads, PadMode::Constant(Arc::new(tensor0(0f32))));
                x = model.wire_node("channel_padding", pad, &[x]).unwrap()[0];
            }
            let add = tract_core::ops::math::add();
            y = model.wire_node("residual", add, &[x, y]).unwrap()[0];
        }
        y = match act {
            Act::Linear => y,
            Act::Relu => {
                let zero = model.add_const("zero", tensor4(&[[[[0.0f32]]]])).unwrap();
                let max = tract_core::ops::math::max();
                model.wire_node("relu", max, &[y, zero]).unwrap()[0]
            }
            Act::Prelu => {
                let slopes: Vec<f32> = (0..outputs).map(|o| (o % 7) as f32 / 4.0 - 0.5).collect();
                let slopes = Tensor::from_shape(&[outputs, 1, 1], &slopes).unwrap();
                let slopes = model.add_const("slopes", slopes).unwrap();
                model
                    .wire_node("prelu", ChannelPrelu, &[y, slopes])
                    .unwrap()[0]
            }
        };
        model.select_output_outlets(&[y]).unwrap();
        model.into_decluttered().unwrap()
    }

    /// A layer: [inputs, outputs], input [h, w], [kernel, stride], padding [before, after],
    /// what follows it.
    type Case = ([usize; 2], [usize; 2], [usize; 2], [usize; 2], Tail);

    const NONE: Tail = (false, false, Act::Linear);
    const RELU: Tail = (false, false, Act::Relu);
    const PRELU: Tail = (false, false, Act::Prelu);
    const RESIDUAL: Tail = (false, true, Act::Linear);
    const RESIDUAL_RELU: Tail = (false, true, Act::Relu);
    const RESIDUAL_PRELU: Tail = (false, true, Act::Prelu);
    const NORM_RELU: Tail = (true, false, Act::Relu);
    const NORM_RESIDUAL: Tail = (true, true, Act::Linear);

    const CASES: [Case; 39] = [
        // 1x1: channel counts in and out of whole blocks, planes in and out of whole vectors
        // and panels, smaller than one vector, with and without a ReLU.
        ([16, 16], [96, 96], [1, 1], [0, 0], NONE),
        ([32, 64], [24, 24], [1, 1], [0, 0], RELU),
        ([128, 128], [12, 12], [1, 1], [0, 0], NONE),
        ([96, 96], [6, 6], [1, 1], [0, 0], RELU),
        ([3, 5], [7, 9], [1, 1], [0, 0], NONE),
        ([13, 21], [17, 19], [1, 1], [0, 0], RELU),
        ([8, 3], [3, 3], [1, 1], [0, 0], NONE),
        // 1x1 of stride 2 (tract's two Downsamples read by the panels): even and odd sizes.
        ([16, 32], [30, 30], [1, 2], [0, 0], RELU),
        ([8, 16], [15, 17], [1, 2], [0, 0], NONE),
        // KxK: ResNet layers, first layers (7x7 and 3x3, stride 2, RGB: their 32 and 96
        // columns summed row by row with AVX-512, the others at the scratch's width), 5x5,
        // odd sizes, padding before and after only.
        ([32, 32], [35, 35], [3, 1], [1, 1], RELU),
        ([24, 40], [9, 9], [3, 1], [1, 1], NONE),
        ([3, 64], [64, 64], [7, 2], [3, 3], RELU),
        ([3, 16], [192, 192], [3, 2], [0, 1], NONE),
        ([3, 24], [65, 67], [5, 2], [1, 2], NONE),
        ([16, 8], [21, 17], [3, 2], [1, 0], RELU),
        ([10, 12], [13, 11], [5, 1], [2, 2], NONE),
        // Taps that read only padding (dropped): dlib's 3x3 on a 1x1 plane; a 5x5's outer
        // rows and columns on a 2x2 plane.
        ([24, 40], [1, 1], [3, 1], [1, 1], RELU),
        ([8, 16], [2, 2], [5, 1], [2, 2], NONE),
        // Residuals and PRelu, as in FaceMesh, Iris and BlazeFace: 1x1 (in whole vectors and
        // with a last part), 2x2 stride 2 (computed in the output's layout), 3x3 (Winograd's:
        // its output transform adds the residual), PRelu alone after a KxK.
        ([16, 16], [96, 96], [1, 1], [0, 0], RESIDUAL_PRELU),
        ([64, 64], [32, 32], [2, 2], [0, 0], RESIDUAL_PRELU),
        ([13, 13], [17, 19], [1, 1], [0, 0], RESIDUAL_RELU),
        ([24, 24], [12, 12], [1, 1], [0, 0], RESIDUAL),
        ([32, 32], [35, 35], [3, 1], [1, 1], RESIDUAL_PRELU),
        ([3, 16], [64, 64], [3, 2], [0, 1], PRELU),
        ([24, 40], [9, 9], [3, 1], [1, 1], PRELU),
        // A residual padded with zero channels (BlazeFace's shortcuts), stride 1 and 2.
        ([16, 24], [12, 12], [1, 1], [0, 0], RESIDUAL_RELU),
        ([24, 32], [16, 16], [2, 2], [0, 0], RESIDUAL),
        // Small planes, their rows gathered (dlib's last layers): with a residual, stride 2.
        ([32, 32], [4, 4], [3, 1], [1, 1], RESIDUAL_RELU),
        ([24, 24], [8, 8], [3, 1], [1, 1], RESIDUAL),
        ([16, 24], [8, 8], [3, 2], [0, 0], RELU),
        // Planes of up to 16 pixels summed by channel (with AVX-512): 3x3 computed wider than
        // the output (its residual added all the same), a stride-2 layer after a batch
        // normalisation, a 1x1 on 16 pixels, a residual padded with zero channels; channel
        // counts short of a whole group of vectors. (dlib's stride-2 layer to one pixel is not
        // here: tract sums its 2,304 products in another order, a matrix-vector kernel's.)
        ([40, 40], [3, 3], [3, 1], [1, 1], RESIDUAL_PRELU),
        ([32, 48], [4, 4], [3, 2], [1, 1], NORM_RELU),
        ([48, 48], [4, 4], [1, 1], [0, 0], RESIDUAL),
        ([16, 32], [3, 3], [1, 1], [0, 0], RESIDUAL_RELU),
        // Up to 64 pixels summed by channel (with AVX-512), over several chunks of pixels:
        // face-api's 7x7 1x1 layers, a 3x3 of 288 rows on 35 pixels with a residual.
        ([256, 48], [7, 7], [1, 1], [0, 0], RELU),
        ([32, 40], [5, 7], [3, 1], [1, 1], RESIDUAL),
        // A batch normalisation left as Mul and Add (FER): before a ReLU, before a residual,
        // after a KxK convolution's own bias.
        ([16, 16], [60, 60], [1, 1], [0, 0], NORM_RELU),
        ([32, 32], [15, 15], [1, 1], [0, 0], NORM_RESIDUAL),
        ([8, 8], [30, 30], [3, 1], [1, 1], NORM_RELU),
    ];

    #[test]
    fn dense_layers_equal_tract() {
        for ([inputs, outputs], hw, [kernel, stride], pad, tail) in CASES {
            let case = format!("{inputs}->{outputs} {hw:?} k{kernel} s{stride} p{pad:?} {tail:?}");
            let graph = || dense_graph([inputs, outputs], hw, [kernel, stride], pad, tail);
            let (ours, theirs) = ours_and_theirs(inputs, hw, graph);
            let winograd = matches!(panels_of(graph()).source, super::Source::Winograd(_));
            // Fused multiply-adds in tract's order, then the bias, as tract's x86-64 kernels;
            // Winograd's transforms round sums of their own.
            if winograd {
                crate::winograd::tests::assert_within_rounding(&ours, &theirs, &case);
            } else if cfg!(target_arch = "x86_64") {
                assert_eq!(ours, theirs, "{case}");
            } else {
                assert_close(&ours, &theirs, &case);
            }
            if tail.2 == Act::Relu {
                assert!(ours.iter().all(|&v| v >= 0.0), "{case}");
            }
        }
    }

    /// The panels node of `model` once installed.
    fn panels_of(mut model: TypedModel) -> Conv2dPanels {
        crate::install(&mut model).unwrap();
        let node = model.nodes.iter().find(|n| n.op_is::<Conv2dPanels>());
        node.unwrap().op_as::<Conv2dPanels>().unwrap().clone()
    }

    /// The panels node of `model` as a CPU without AVX-512 packs it: every plane by pixel.
    fn pixel_panels_of(model: TypedModel) -> Conv2dPanels {
        let patch = (0..model.nodes.len())
            .find_map(|id| Conv2dPanels::patch_with(&model, id, false).unwrap())
            .expect("a dense layer");
        let node = patch.model.nodes.iter().find(|n| n.op_is::<Conv2dPanels>());
        node.unwrap().op_as::<Conv2dPanels>().unwrap().clone()
    }

    #[test]
    fn sums_small_planes_by_channel_where_the_cpu_can() {
        use super::{by_channel_available, Packing};
        for (channels, hw, kernel, tail, by_channel) in [
            ([32, 32], [4, 4], 3, RESIDUAL, true),
            // Computed wider than the output, yet written in its layout: the residual is added.
            ([32, 32], [3, 3], 3, RESIDUAL, true),
            ([24, 40], [1, 1], 3, RELU, true),
            ([48, 48], [4, 4], 1, RESIDUAL, true),
            // Up to 64 pixels, not whole vectors of them, summing 256 rows or more.
            ([32, 32], [5, 5], 3, RESIDUAL, true),
            ([256, 32], [7, 7], 1, RELU, true),
            // Fewer rows, whole vectors of pixels, more than 64, or fewer than a vector of
            // channels.
            ([16, 16], [5, 5], 3, RESIDUAL, false),
            ([256, 32], [8, 8], 1, RELU, false),
            ([256, 32], [9, 9], 1, RELU, false),
            ([8, 8], [4, 4], 3, RESIDUAL, false),
        ] {
            let model = dense_graph(channels, hw, [kernel, 1], [kernel / 2; 2], tail);
            let conv = panels_of(model);
            let case = format!("{channels:?} {hw:?}");
            let expected = by_channel && by_channel_available();
            let packing = &conv.packing;
            assert_eq!(
                matches!(packing, Packing::Channels { .. }),
                expected,
                "{case}"
            );
            assert_eq!(
                conv.residual.is_some(),
                tail.1 && (expected || hw != [3, 3]),
                "{case}"
            );
            // The sums by channel read each pixel's taps in the phases: nothing gathered.
            if expected {
                assert!(
                    !matches!(conv.source, super::Source::Gathered { .. }),
                    "{case}"
                );
            }
        }
    }

    #[test]
    fn computes_3x3_layers_of_stride_1_by_winograd_from_9x9_up() {
        // dlib's ResNet layers with their residual and ReLU; odd and even sides; channel
        // counts short of a block; a batch normalisation left as Mul and Add; on 8x8 planes
        // the direct sums, gathered.
        for ([inputs, outputs], hw, tail, winograd) in [
            ([32, 32], [35, 35], RESIDUAL_RELU, true),
            ([64, 64], [17, 17], RESIDUAL_RELU, true),
            ([13, 21], [10, 12], NONE, true),
            ([8, 8], [30, 30], NORM_RELU, true),
            ([24, 40], [9, 9], PRELU, true),
            ([24, 24], [8, 8], RESIDUAL, false),
        ] {
            let case = format!("{inputs}->{outputs} {hw:?} {tail:?}");
            let graph = || dense_graph([inputs, outputs], hw, [3, 1], [1, 1], tail);
            let conv = panels_of(graph());
            assert_eq!(
                matches!(conv.source, super::Source::Winograd(_)),
                winograd,
                "{case}"
            );
            assert_eq!(conv.residual.is_some(), tail.1, "{case}");
            let (ours, theirs) = ours_and_theirs(inputs, hw, graph);
            crate::winograd::tests::assert_within_rounding(&ours, &theirs, &case);
        }
    }

    #[test]
    fn portable_panels_equal_the_dispatched_kernel() {
        // The CPU's copy (AVX-512 on the development machine) against the portable panels,
        // which run on other CPUs, with fused multiply-adds as on AArch64.
        for ([inputs, outputs], hw, [kernel, stride], pad, tail) in CASES {
            let conv = pixel_panels_of(dense_graph(
                [inputs, outputs],
                hw,
                [kernel, stride],
                pad,
                tail,
            ));
            let varied = |len: usize, step: usize| -> Vec<f32> {
                (0..len)
                    .map(|i| ((i * step % 29) as f32 - 14.0) / 3.0)
                    .collect()
            };
            if matches!(conv.source, super::Source::Winograd(_)) {
                // Its products are panels of their own (tested in winograd.rs).
                continue;
            }
            let input = varied(inputs * hw[0] * hw[1], 13);
            let source = conv.rows(&input);
            let residual = conv
                .residual
                .map(|channels| varied(channels * conv.computed, 7));
            let mut dispatched = vec![0.0; outputs * conv.computed];
            conv.sums(&source, residual.as_deref(), &mut dispatched);
            let mut portable = vec![0.0; dispatched.len()];
            conv.planes::<4, 1, true>(&source, residual.as_deref(), &mut portable);
            assert_eq!(
                portable, dispatched,
                "{inputs}->{outputs} {hw:?} k{kernel} {tail:?}"
            );
        }
    }

    #[test]
    fn gathers_the_rows_of_small_planes_and_adds_their_residual() {
        // 3x3: one vector of sums either way; 9x9: more than 64 pixels.
        for (hw, gathered) in [
            ([4, 4], true),
            ([8, 8], true),
            ([3, 3], false),
            ([9, 9], false),
        ] {
            let conv = panels_of(dense_graph([8, 8], hw, [3, 1], [1, 1], RESIDUAL));
            assert_eq!(
                matches!(conv.source, super::Source::Gathered { .. }),
                gathered,
                "{hw:?}"
            );
            // Gathered, the sums are laid out as the output: the residual is added in them (as
            // Winograd's output transform does, from 9x9 up).
            let winograd = matches!(conv.source, super::Source::Winograd(_));
            assert_eq!(conv.residual.is_some(), gathered || winograd, "{hw:?}");
        }
    }

    #[test]
    fn adds_a_residual_padded_with_zero_channels_without_the_padding() {
        let model = || dense_graph([16, 24], [12, 12], [1, 1], [0, 0], RESIDUAL_RELU);
        assert_eq!(panels_of(model()).residual, Some(16));
        let mut installed = model();
        crate::install(&mut installed).unwrap();
        let plan = installed.into_optimized().unwrap();
        assert!(plan.nodes.iter().all(|n| !n.op_is::<Pad>()));
    }

    #[test]
    fn drops_the_taps_that_read_only_padding() {
        let conv = panels_of(dense_graph([24, 40], [1, 1], [3, 1], [1, 1], RELU));
        assert_eq!(conv.offsets.len(), 24, "the centre tap of each input plane");
        let conv = panels_of(dense_graph([8, 16], [2, 2], [5, 1], [2, 2], NONE));
        assert_eq!(
            conv.offsets.len(),
            8 * 3 * 3,
            "rows and columns 1..=3 of the 5x5"
        );
    }

    #[test]
    fn reads_the_planes_of_a_strided_1x1_convolution_itself() {
        let mut model = dense_graph([16, 32], [30, 30], [1, 2], [0, 0], RELU);
        crate::install(&mut model).unwrap();
        let model = model.into_optimized().unwrap();
        let names: Vec<_> = model.nodes.iter().map(|n| n.op().name()).collect();
        assert_eq!(names, ["Source", "facecast.Conv2dPanels"], "{names:?}");
    }

    #[test]
    fn fuses_a_batch_normalisation_left_as_mul_and_add() {
        let graph = dense_graph([16, 16], [15, 15], [1, 1], [0, 0], (true, true, Act::Relu));
        let conv = panels_of(graph);
        assert!(
            conv.scale_shift.is_some()
                && conv.residual.is_some()
                && conv.activation == Activation::Relu
        );
    }

    #[test]
    fn fuses_the_bias_and_relu() {
        for kernel in [1, 3] {
            let fused = dense_graph([16, 32], [8, 8], [kernel, 1], [kernel / 2; 2], RELU);
            let nodes = fused.nodes.len();
            let mut model = fused.clone();
            crate::install(&mut model).unwrap();
            let model = model.into_optimized().unwrap();
            let names: Vec<_> = model.nodes.iter().map(|n| n.op().name()).collect();
            // The source, then our one node: the convolution (or EinSum and bias Add) and the
            // Max are gone.
            assert_eq!(
                names,
                ["Source", "facecast.Conv2dPanels"],
                "from {nodes} nodes"
            );
        }
    }

    #[test]
    fn fuses_a_residual_and_prelu_where_the_sums_are_laid_out_as_the_output() {
        // 1x1 and 2x2 stride 2: the Add and the PRelu are in the panels' node.
        for ([kernel, stride], hw) in [([1, 1], [12, 12]), ([2, 2], [16, 16])] {
            let graph = dense_graph(
                [8, 8],
                hw,
                [kernel, stride],
                [0, 0],
                (false, true, Act::Prelu),
            );
            let conv = panels_of(graph.clone());
            assert!(conv.residual.is_some(), "k{kernel}");
            assert!(matches!(conv.activation, Activation::Prelu(_)), "k{kernel}");
            let mut model = graph;
            crate::install(&mut model).unwrap();
            let model = model.into_optimized().unwrap();
            let names: Vec<_> = model.nodes.iter().map(|n| n.op().name()).collect();
            // The downsampled residual's nodes, if any, then our one node.
            assert_eq!(names.last().unwrap(), "facecast.Conv2dPanels", "{names:?}");
            assert!(
                !names
                    .iter()
                    .any(|n| n.contains("Add") || n.contains("Prelu")),
                "{names:?}"
            );
        }
        // 5x5 stride 1, padded: the sums are rows of the scratch's width; tract adds. (A 3x3
        // one is Winograd's, which adds it: `computes_3x3_layers_of_stride_1_by_winograd...`.)
        let graph = dense_graph([8, 8], [9, 9], [5, 1], [2, 2], (false, true, Act::Prelu));
        let conv = panels_of(graph);
        assert!(conv.residual.is_none() && conv.activation == Activation::Linear);
    }

    #[test]
    fn fuses_nothing_into_a_unary_successor() {
        // A successor of one input (here a sigmoid) is neither a residual nor an activation.
        let make = || {
            let mut model = conv_graph([8, 8, 1], [10, 10], 1, 1, [0, 0]);
            let y = model.output_outlets().unwrap()[0];
            let sigmoid = tract_core::ops::nn::sigmoid();
            let y = model.wire_node("sigmoid", sigmoid, &[y]).unwrap();
            model.select_output_outlets(&y).unwrap();
            model.into_decluttered().unwrap()
        };
        let (ours, theirs) = ours_and_theirs(8, [10, 10], make);
        assert_eq!(ours, theirs);
        let conv = panels_of(make());
        assert!(conv.residual.is_none() && conv.activation == Activation::Linear);
    }

    #[test]
    fn writes_channels_last_heads_pixel_by_pixel() {
        // BlazeFace's output heads: a 1x1 layer transposed to channels last (its box
        // regressors) or of one channel whose axis is dropped (its classifiers), each followed
        // by its bias; tract folds the axis change into the EinSum.
        for (outputs, axis_op) in [(16, AxisOp::Move(1, 3)), (1, AxisOp::Rm(1))] {
            let make = || {
                let mut model = conv_graph([24, outputs, 1], [12, 10], 1, 1, [0, 0]);
                let y = model.output_outlets().unwrap()[0];
                let y = model.wire_node("head", axis_op.clone(), &[y]).unwrap();
                model.select_output_outlets(&y).unwrap();
                model.into_decluttered().unwrap()
            };
            let expressions: Vec<String> = make()
                .nodes
                .iter()
                .filter_map(|n| n.op_as::<EinSum>().map(|e| e.axes.to_string()))
                .collect();
            assert!(
                expressions
                    .iter()
                    .all(|e| CHANNELS_LAST_EXPRESSIONS.contains(&e.as_str())),
                "{expressions:?}"
            );
            let (ours, theirs) = ours_and_theirs(24, [12, 10], make);
            assert_eq!(ours, theirs, "{outputs} channels");
            let conv = panels_of(make());
            assert_eq!(conv.channels_last, outputs > 1);
            // (The one channel's bias is zero: tract drops its Add.)
            assert!(
                outputs == 1 || conv.bias.iter().any(|&b| b != 0.0),
                "the bias taken in"
            );
        }
    }

    #[test]
    fn leaves_grouped_layers_and_large_windows_to_tract() {
        for ([inputs, outputs, groups], kernel, stride) in [
            ([32, 32, 2], 3, 1),
            ([16, 32, 1], 9, 1),
            ([16, 32, 1], 3, 3),
        ] {
            let model = conv_graph([inputs, outputs, groups], [24, 24], kernel, stride, [1, 1]);
            let ops = installed(model.into_decluttered().unwrap());
            assert!(
                ops.is_empty(),
                "{inputs}->{outputs}/{groups} k{kernel} s{stride}: {ops:?}"
            );
        }
    }
}
