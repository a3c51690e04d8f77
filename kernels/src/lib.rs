//! facecast's own tract operators, where tract 0.23 spends its time on these networks in
//! scalar code or per-plane set-up: max pooling and resizing, which tract computes one output
//! value at a time, PRelu, which tract-onnx expands to several passes over the tensor,
//! depthwise convolutions, which tract convolves one channel plane at a time, one output value
//! at a time, and dense convolutions, which tract computes as matrix products of packed
//! copies of the input (an im2col copy for a KxK kernel, panels for a 1x1 one): for a few
//! input planes (first layers) and the 1x1 layers the packing took as long as the product.
//!
//! `facecast bench`'s per-operator profile (docs/performance.md) found max pooling at 18-24 ns per
//! output value (14% of FaceMesh, 20% of face-api's age/gender network), bilinear Resize at 21 ns
//! per output value (13% of the full-range BlazeFace detector), PRelu, as two element-wise chains,
//! at 20-26% of FaceMesh and Iris, and depthwise convolutions at 35-45% of the MobileNet-style
//! networks, 0.5 GMAC/s on BlazeFace's 6x6x384 planes. The kernels here compute tract's values
//! (the same comparisons, the same weights summed in the same order; the depthwise layers'
//! multiply-adds fused where the CPU can, a rounding apart: `fused_multiply_add`) in loops
//! the compiler vectorises: the resize a whole row at a time, the 2x2 pools (max, and the
//! average pools of dlib's ResNet and the gender network, which tract visits window by
//! window) a row of windows at a time; [`ChannelPrelu`] is one select per value. The other
//! pools and the convolutions read copies of the input planes, zero-padded (`f32::MIN`-padded
//! for a max pool) and split into their stride's phases (`phases.rs`), at each tap's offset,
//! a vector of neighbouring pixels at a time: max pools and depthwise convolutions a whole
//! output plane at a time, row by row or as one run of pixels (`pool.rs`, `depthwise.rs`),
//! the dense ones a panel of pixels and a block of output channels at a time, without packing
//! (`panels.rs`), with what follows them: the bias, a batch normalisation left as `Mul` and
//! `Add`, a residual `Add`, the ReLU or PRelu; a 1x1 convolution of stride 2 reads its planes
//! itself (tract downsampled them in two passes first); the 3x3 ones of stride 1 on planes of
//! 9x9 and up are computed by Winograd's F(2x2, 3x3) (`winograd.rs`), the one kernel here
//! whose values are not tract's within a rounding; a depthwise convolution takes in the ReLU
//! before it where it alone reads it (Xception's blocks). The `Add`s no convolution takes
//! in, chains of them and the ReLU after (face-api's dense blocks), are one pass each
//! (`sum.rs`).
//!
//! [`install`] swaps the pool, resize and convolution kernels in for the nodes they cover after
//! tract has decluttered the graph and before it optimises it (a dense convolution with the
//! bias, residual Add and ReLU or PRelu that follow it); facecast's ONNX front end wires
//! [`ChannelPrelu`]. Every other node keeps tract's kernels. This is a crate of its own so that
//! the dev profile optimises it like tract (tests run it at real speed) while facecast itself
//! stays quick to build.

pub use prelu::ChannelPrelu;

use tract_core::ops::cnn::{Conv, KernelFormat, PoolSpec};
use tract_core::ops::nn::DataFormat;
use tract_core::prelude::*;

/// Replaces the nodes of `model` that facecast's kernels compute; returns how many it replaced.
pub fn install(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in 0..model.nodes.len() {
        if let Some(patch) = depthwise::DepthwiseConv2d::patch_for(model, id)? {
            // Its input's ReLU left unread, as the panels' patches leave theirs.
            patch.apply(model)?;
            replaced += 1;
        } else if let Some(op) = kernel_for(model, id)? {
            model.nodes[id].op = op;
            replaced += 1;
        } else if let Some(patch) = panels::Conv2dPanels::patch_for(model, id)? {
            // The patch adds the kernel's node after the others and leaves the nodes it
            // replaces unread; tract's optimiser drops those.
            patch.apply(model)?;
            replaced += 1;
        } else if let Some(patch) = sum::SumChain::patch_for(model, id)? {
            // After the convolutions before it, which may have taken an Add in as their
            // residual.
            patch.apply(model)?;
            replaced += 1;
        }
    }
    Ok(replaced)
}

/// facecast's kernel for node `id`, if it has one.
fn kernel_for(model: &TypedModel, id: usize) -> TractResult<Option<Box<dyn TypedOp>>> {
    if let Some(op) = pool::MaxPool2d::for_node(model, id)? {
        return Ok(Some(Box::new(op)));
    }
    if let Some(op) = pool::SumPool2x2::for_node(model, id)? {
        return Ok(Some(Box::new(op)));
    }
    if let Some(op) = depthwise::DepthwiseConv2d::for_node(model, id)? {
        return Ok(Some(Box::new(op)));
    }
    Ok(resize::Resize2d::for_node(model, id)?.map(|op| Box::new(op) as Box<dyn TypedOp>))
}

/// The shapes of node `id`'s first input and its output when both are fixed and the input is
/// f32 of rank 3 or 4: channel planes (NCHW, or CHW: tract drops a batch of one).
fn fixed_shapes(model: &TypedModel, id: usize) -> TractResult<Option<(TVec<usize>, TVec<usize>)>> {
    let input = model.outlet_fact(model.nodes[id].inputs[0])?;
    let output = model.outlet_fact(OutletId::new(id, 0))?;
    let (Some(input_shape), Some(output_shape)) =
        (input.shape.as_concrete(), output.shape.as_concrete())
    else {
        return Ok(None);
    };
    if input.datum_type != f32::datum_type() || !(3..=4).contains(&input_shape.len()) {
        return Ok(None);
    }
    Ok(Some((input_shape.into(), output_shape.into())))
}

/// Whether the depthwise layers fuse each multiply and add (one rounding) on this CPU: where
/// it has the instruction in the vectors the kernels run on (x86-64 with AVX-512, or AVX2 and
/// FMA; every aarch64), as onnxruntime does. It halves their arithmetic, which bounds them
/// (3x3 layers 0.66-0.82x the time, 5x5 0.58x: docs/performance.md, round 18), and every CPU
/// that fuses computes the same values (the ARM test compares with x86-64's: quantised
/// models round each layer's values to 8 bits, so one rounding apart in a layer can move an
/// output by a step). Elsewhere they multiply and add as tract does.
pub(crate) fn fused_multiply_add() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            || std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        cfg!(target_arch = "aarch64")
    }
}

/// Defines method `$name` of `$ty`: its `#[inline(always)]` method `$portable` (same
/// arguments) compiled again for AVX-512 and for AVX2 with FMA (each copy's `f32::mul_add` one
/// instruction: see [`fused_multiply_add`]), the copy chosen by the CPU it runs on.
/// The compiler vectorises portable code for the build's baseline (SSE2 on x86-64); the
/// depthwise kernel's sums ran 1.4-2.4x faster in the AVX-512 copy (measured on its layers).
/// (A generic function taking the sums as a closure lost the vectorisation: the closure was
/// compiled apart, for the baseline.)
macro_rules! on_widest_vectors {
    ($ty:ty, fn $name:ident => $portable:ident($($arg:ident: $arg_ty:ty),*)) => {
        fn $name(&self, $($arg: $arg_ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512(this: &$ty, $($arg: $arg_ty),*) {
                    this.$portable($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2(this: &$ty, $($arg: $arg_ty),*) {
                    this.$portable($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the instructions the function is compiled for.
                    return unsafe { avx512(self, $($arg),*) };
                } else if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: as above.
                    return unsafe { avx2(self, $($arg),*) };
                }
            }
            self.$portable($($arg),*)
        }
    };
}

mod channels;
mod depthwise;
mod panels;
mod phases;
mod pool;
mod prelu;
mod resize;
mod sum;
mod winograd;

use panels::by_channel_available;

/// The 2-D window of a pooling or convolution node over channel planes, with fixed shapes:
/// the geometry the max pool and convolution kernels share.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Window {
    output_shape: TVec<usize>,
    /// Input height and width.
    input: [usize; 2],
    /// Output height and width.
    output: [usize; 2],
    /// Kernel height and width.
    kernel: [usize; 2],
    stride: [usize; 2],
    /// Padding before the first row and column.
    pad: [usize; 2],
}

impl Window {
    /// Node `id`'s window under `spec`, if it is one these kernels compute: channels first,
    /// 2-D, no dilation, fixed f32 shapes ([`fixed_shapes`]), and tract's output plane equal to
    /// ours.
    fn of(model: &TypedModel, id: usize, spec: &PoolSpec) -> TractResult<Option<Window>> {
        if !matches!(spec.data_format, DataFormat::NCHW | DataFormat::CHW)
            || spec.kernel_shape.len() != 2
            || spec.dilations().iter().any(|&d| d != 1)
        {
            return Ok(None);
        }
        let Some((input_shape, output_shape)) = fixed_shapes(model, id)? else {
            return Ok(None);
        };
        let input = plane(&input_shape);
        let padding = spec.computed_padding(&input);
        let strides = spec.strides();
        let output = [padding[0].convoluted, padding[1].convoluted];
        // tract's idea of the output must be ours, or the graph around it would be wrong.
        if plane(&output_shape) != output {
            return Ok(None);
        }
        Ok(Some(Window {
            output_shape,
            input,
            output,
            kernel: [spec.kernel_shape[0], spec.kernel_shape[1]],
            stride: [strides[0], strides[1]],
            pad: [padding[0].pad_before, padding[1].pad_before],
        }))
    }

    /// The batch size: 1 when tract has dropped the batch axis (CHW).
    fn batch(&self) -> usize {
        if self.output_shape.len() == 4 {
            self.output_shape[0]
        } else {
            1
        }
    }

    /// The planes and the window, for an operator's description in tract's profiles.
    fn describe(&self) -> String {
        format!(
            "{:?} -> {:?}, kernel {:?} stride {:?} pad {:?}",
            self.input, self.output, self.kernel, self.stride, self.pad
        )
    }
}

/// A convolution node these kernels may take: its operator, window and weights.
struct ConvLayer<'a> {
    conv: &'a Conv,
    window: Window,
    weights: ConvWeights,
}

impl<'a> ConvLayer<'a> {
    /// Node `id` if it is a `Conv` of one image (a batch of one) over a window these kernels
    /// compute ([`Window::of`]) with constant weights ([`ConvWeights::of`]), and `takes`
    /// accepts its operator and window (asked before the weights are copied).
    fn of(
        model: &'a TypedModel,
        id: usize,
        takes: impl FnOnce(&Conv, &Window) -> bool,
    ) -> TractResult<Option<ConvLayer<'a>>> {
        let Some(conv) = model.nodes[id].op_as::<Conv>() else {
            return Ok(None);
        };
        let Some(window) = Window::of(model, id, &conv.pool_spec)? else {
            return Ok(None);
        };
        if window.batch() != 1 || !takes(conv, &window) {
            return Ok(None);
        }
        let Some(weights) = ConvWeights::of(model, id, conv, &window)? else {
            return Ok(None);
        };
        Ok(Some(ConvLayer {
            conv,
            window,
            weights,
        }))
    }
}

/// A convolution node's constant weights.
struct ConvWeights {
    /// tract's OIHW kernel: output channel, input channel of its group, row, column.
    kernel: Vec<f32>,
    /// One bias per output channel.
    bias: Vec<f32>,
}

impl ConvWeights {
    /// The weights of node `id`, `conv` over `window` (inputs: the planes, the kernel, the
    /// bias), if they are unquantised constant f32 in the OIHW layout.
    fn of(
        model: &TypedModel,
        id: usize,
        conv: &Conv,
        window: &Window,
    ) -> TractResult<Option<ConvWeights>> {
        let node = &model.nodes[id];
        if conv.q_params.is_some()
            || conv.kernel_fmt != KernelFormat::OIHW
            || node.inputs.len() != 3
        {
            return Ok(None);
        }
        let (Some(kernel), Some(bias)) = (
            model.outlet_fact(node.inputs[1])?.konst.clone(),
            model.outlet_fact(node.inputs[2])?.konst.clone(),
        ) else {
            return Ok(None);
        };
        let spec = &conv.pool_spec;
        let outputs = spec.output_channels;
        let filter = spec.input_channels / conv.group * window.kernel[0] * window.kernel[1];
        if kernel.datum_type() != f32::datum_type()
            || kernel.len() != outputs * filter
            || bias.datum_type() != f32::datum_type()
            || !(bias.len() == outputs || bias.len() == 1)
        {
            return Ok(None);
        }
        let kernel = kernel.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
        let bias = bias.try_as_plain_ram()?;
        let bias = bias.as_slice::<f32>()?;
        let bias = if bias.len() == 1 {
            vec![bias[0]; outputs]
        } else {
            bias.to_vec()
        };
        Ok(Some(ConvWeights { kernel, bias }))
    }
}

/// A new f32 tensor of `shape`, every value of which `fill` writes.
fn output_planes(shape: &[usize], fill: impl FnOnce(&mut [f32])) -> TractResult<Tensor> {
    // SAFETY: f32 has no invalid values, and every caller's `fill` writes every value before
    // anything reads it (the convolutions' outputs, pixel by pixel or row by row). Zeroing it
    // first cost 10-15% of a 96x96x16 depthwise layer.
    let mut output = unsafe { Tensor::uninitialized::<f32>(shape)? };
    fill(output.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?);
    Ok(output)
}

/// The one output of an operator that reads `input`'s values whole: a new f32 tensor of
/// `output_shape` ([`output_planes`]) that `compute` fills from them.
fn computed_planes(
    input: &TValue,
    output_shape: &[usize],
    compute: impl FnOnce(&[f32], &mut [f32]),
) -> TractResult<TVec<TValue>> {
    let input = input.try_as_plain_ram()?;
    let input = input.as_slice::<f32>()?;
    let output = output_planes(output_shape, |output| compute(input, output))?;
    Ok(tvec!(output.into_tvalue()))
}

/// tract's ReLU (a `Max` with zero) of `values`, in place: what the panels, the sums of
/// `Add`s and the depthwise layers apply after or before their own work.
#[inline(always)]
fn relu(values: &mut [f32]) {
    values.iter_mut().for_each(|v| *v = v.max(0.0));
}

/// The height and width of a plane: the last two axes of `shape`.
fn plane(shape: &[usize]) -> [usize; 2] {
    [shape[shape.len() - 2], shape[shape.len() - 1]]
}

/// A new tensor of `output_shape` filled plane by plane: `each` gets one plane of `input`
/// (planes of `input_plane`, height by width) and the output plane at the same place.
fn map_planes(
    input: &TValue,
    input_plane: [usize; 2],
    output_shape: &[usize],
    mut each: impl FnMut(&[f32], &mut [f32]),
) -> TractResult<TValue> {
    let input = input.try_as_plain_ram()?;
    let input = input.as_slice::<f32>()?;
    let [oh, ow] = plane(output_shape);
    let mut output = Tensor::zero::<f32>(output_shape)?;
    {
        let mut view = output.try_as_plain_ram_mut()?;
        let planes = input
            .chunks_exact(input_plane[0] * input_plane[1])
            .zip(view.as_slice_mut::<f32>()?.chunks_exact_mut(oh * ow));
        for (input, out) in planes {
            each(input, out);
        }
    }
    Ok(output.into_tvalue())
}

#[cfg(test)]
mod tests {
    use tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec, PoolSpec};
    use tract_core::ops::nn::DataFormat;
    use tract_core::prelude::*;

    /// The window of the operators under test: a square `kernel`, `stride` on both axes,
    /// padding `pad` = [before, after] on both axes, NCHW, `channels` in and out.
    pub fn pool_spec(channels: usize, kernel: usize, stride: usize, pad: [usize; 2]) -> PoolSpec {
        PoolSpec {
            data_format: DataFormat::NCHW,
            kernel_shape: tvec!(kernel, kernel),
            padding: PaddingSpec::Explicit(tvec!(pad[0], pad[0]), tvec!(pad[1], pad[1])),
            dilations: None,
            strides: Some(tvec!(stride, stride)),
            input_channels: channels,
            output_channels: channels,
        }
    }

    /// A graph of `op` on a [1, channels, h, w] input, with `constants` as its further inputs.
    pub fn graph(
        channels: usize,
        hw: [usize; 2],
        op: impl Into<Box<dyn TypedOp>>,
        constants: Vec<Tensor>,
    ) -> TypedModel {
        let mut model = TypedModel::default();
        let mut inputs = vec![model
            .add_source("x", f32::fact([1, channels, hw[0], hw[1]]))
            .unwrap()];
        for (i, constant) in constants.into_iter().enumerate() {
            inputs.push(model.add_const(format!("c{i}"), constant).unwrap());
        }
        let y = model.wire_node("op", op, &inputs).unwrap();
        model.select_output_outlets(&y).unwrap();
        model
    }

    /// Our kernel's and tract's outputs for one input of varied values: `make` builds the
    /// graph twice, and [`crate::install`] must replace one node of it (or two: a residual
    /// `Add` a convolution does not take in becomes a [`crate::sum::SumChain`]).
    pub fn ours_and_theirs(
        channels: usize,
        hw: [usize; 2],
        make: impl Fn() -> TypedModel,
    ) -> (Vec<f32>, Vec<f32>) {
        let mut ours = make();
        assert!((1..=2).contains(&crate::install(&mut ours).unwrap()));
        let values: Vec<f32> = (0..channels * hw[0] * hw[1])
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let input = Tensor::from_shape(&[1, channels, hw[0], hw[1]], &values).unwrap();
        (run(ours, &input), run(make(), &input))
    }

    /// A graph of one `Conv` of `groups` groups on a [1, inputs, h, w] input to `outputs`
    /// channels, padded `pad` = [before, after] on both axes, with varied weights and biases.
    pub fn conv_graph(
        [inputs, outputs, groups]: [usize; 3],
        hw: [usize; 2],
        kernel: usize,
        stride: usize,
        pad: [usize; 2],
    ) -> TypedModel {
        let weights: Vec<f32> = (0..outputs * inputs / groups * kernel * kernel)
            .map(|i| ((i * 29 % 31) as f32 - 15.0) / 16.0)
            .collect();
        let shape = [outputs, inputs / groups, kernel, kernel];
        let weights = Tensor::from_shape(&shape, &weights).unwrap();
        let bias: Vec<f32> = (0..outputs).map(|i| (i % 5) as f32 / 4.0).collect();
        let mut pool_spec = pool_spec(inputs, kernel, stride, pad);
        pool_spec.output_channels = outputs;
        let conv = Conv {
            pool_spec,
            kernel_fmt: KernelFormat::OIHW,
            group: groups,
            q_params: None,
        };
        graph(inputs, hw, conv, vec![weights, tensor1(&bias)])
    }

    /// Within 1e-5, relative to the larger of 1 and tract's value.
    pub fn assert_close(ours: &[f32], theirs: &[f32], case: &str) {
        assert_eq!(ours.len(), theirs.len(), "{case}");
        for (a, b) in ours.iter().zip(theirs) {
            assert!(
                (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                "{case}: {a} vs {b}"
            );
        }
    }

    /// The operators [`crate::install`] puts into `model`.
    pub fn installed(mut model: TypedModel) -> Vec<String> {
        crate::install(&mut model).unwrap();
        let ops = model.nodes.iter().map(|n| n.op().name().to_string());
        ops.filter(|name| name.starts_with("facecast.")).collect()
    }

    /// `model`'s one output for `input`, optimised as facecast loads a model.
    pub fn run(model: TypedModel, input: &Tensor) -> Vec<f32> {
        let plan = model.into_optimized().unwrap().into_runnable().unwrap();
        let outputs = plan.run(tvec![input.clone().into_tvalue()]).unwrap();
        let view = outputs[0].try_as_plain_ram().unwrap();
        view.as_slice::<f32>().unwrap().to_vec()
    }
}
