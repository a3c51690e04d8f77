//! Pooling of f32 planes (NCHW or CHW): max pools of any window up to stride 2, and 2x2
//! average (sum) pools.
//!
//! A max pool is computed as the depthwise convolutions are ([`PlaneRun`]): each plane copied
//! into a scratch split into its stride's phases, `f32::MIN` (tract's start value for a window,
//! so that a padded tap changes nothing) where the padding is, and each output pixel the
//! maximum of the scratch at the window's taps' offsets, vectors of pixels at a time.
//! The previous form, an output row at a time (its input rows' column-wise maxima, split into
//! the stride's phases, then the kernel width's folds), worked on rows too short for the
//! loops' vector bodies (28-56 values) and in the baseline CPU's vectors: face-api's 3x3
//! stride-2 pools take 0.81-0.87x its time (one layer alone, interleaved), 3-4x onnxruntime's
//! still (its NCHWc layout keeps 16 channels of a pixel in one vector). With AVX-512 the 3x3
//! stride-2 pools padded after the input only (face-api's, most of FER's, dlib's) skip the
//! phases: a vector of output pixels is permuted out of the input rows' own vectors
//! ([`avx512::max_3x3_stride_2`]; in the models 0.41-0.70x the time of the phases), each
//! input row's maxima over the windows' columns made once for the two output rows that read
//! it (since round 18: one layer alone, 0.74-0.79x the time on 56x56x64, 28x28x128 and
//! 72x72x32, 0.62x on 14x14x256, the input's copy included).

use tract_core::internal::*;
use tract_core::ops::cnn::{MaxPool, SumPool};

use crate::phases::{PlaneRun, TapStep, LANES, MAX_STRIDE};
use crate::Window;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaxPool2d {
    /// The output plane computed from an input plane's phases.
    run: PlaneRun,
    /// A 3x3 pool of stride 2 padded after the input only (face-api's, FER's, dlib's), which
    /// AVX-512 computes from the input rows themselves ([`avx512::max_3x3_stride_2`]).
    from_rows: bool,
}

impl MaxPool2d {
    /// The replacement for node `id` if it is a max pool this kernel computes (f32, channels
    /// first, 2-D, no dilation, no index output, fixed shapes, a stride up to [`MAX_STRIDE`]).
    pub fn for_node(model: &TypedModel, id: usize) -> TractResult<Option<MaxPool2d>> {
        let Some(pool) = model.nodes[id].op_as::<MaxPool>() else {
            return Ok(None);
        };
        if pool.with_index_outputs.is_some() {
            return Ok(None);
        }
        let Some(window) = Window::of(model, id, &pool.pool_spec)? else {
            return Ok(None);
        };
        if window.stride.iter().any(|&s| s > MAX_STRIDE) {
            return Ok(None);
        }
        let [oh, ow] = window.output;
        let from_rows = window.kernel == [3, 3]
            && window.stride == [2, 2]
            && window.pad == [0, 0]
            && 2 * (oh - 1) < window.input[0]
            && 2 * (ow - 1) < window.input[1];
        Ok(Some(MaxPool2d {
            run: PlaneRun::new(window),
            from_rows,
        }))
    }

    /// Every output plane from `input`.
    fn pool(&self, input: &[f32], output: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if self.from_rows && std::arch::is_x86_feature_detected!("avx512f") {
            let window = &self.run.phases.window;
            // SAFETY: the CPU has the instructions the function is compiled for.
            return unsafe { avx512::max_3x3_stride_2(input, window.input, output, window.output) };
        }
        self.pool_planes(input, output)
    }

    on_widest_vectors!(MaxPool2d, fn pool_planes => pool_portable(input: &[f32], output: &mut [f32]));

    /// Every output plane from `input`, a plane at a time through one scratch.
    #[inline(always)]
    fn pool_portable(&self, input: &[f32], output: &mut [f32]) {
        let phases = &self.run.phases;
        let [h, w] = phases.window.input;
        let [oh, ow] = phases.window.output;
        let planes = input
            .chunks_exact(h * w)
            .zip(output.chunks_exact_mut(oh * ow));
        if is_unpadded_2x2_stride_2(&phases.window) {
            for (plane, out) in planes {
                pool_2x2_stride_2(plane, w, out, ow, window_max);
            }
            return;
        }
        let mut scratch = self.run.scratch(f32::MIN);
        let mut values = self.run.values();
        for (plane, out) in planes {
            phases.fill_plane(plane, &mut scratch);
            self.run
                .compute(&scratch, &mut values, out, f32::MIN, &Maximum);
        }
    }
}

impl Op for MaxPool2d {
    fn name(&self) -> StaticName {
        "facecast.MaxPool2d".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "kernel {:?} stride {:?} pad {:?}",
            self.run.phases.window.kernel,
            self.run.phases.window.stride,
            self.run.phases.window.pad
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for MaxPool2d {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let output_shape = &self.run.phases.window.output_shape;
        crate::computed_planes(&inputs[0], output_shape, |input, output| {
            self.pool(input, output)
        })
    }
}

impl TypedOp for MaxPool2d {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0]
            .datum_type
            .fact(&self.run.phases.window.output_shape)))
    }

    as_op!();
}

/// A max pool's step: the larger of the maxima so far and the pixels.
struct Maximum;

impl TapStep for Maximum {
    type Tap = ();

    #[inline(always)]
    fn tap(&self, _: usize) {}

    #[inline(always)]
    fn step(&self, maxima: &mut [f32; LANES], _: (), pixels: [f32; LANES]) {
        for (max, &x) in maxima.iter_mut().zip(&pixels) {
            *max = max_of(*max, x);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use crate::panels::avx512::mask;
    use crate::phases::LANES;

    /// A 3x3 max pool of stride 2 whose windows start inside the planes (padded after them
    /// only), a vector of output pixels at a time straight from the input rows: each input
    /// row's maxima over the windows' three columns (its 32 columns under the vector permuted
    /// into the windows' first and second columns, the 32 from two columns on into their
    /// third), then each output row the maximum of its three input rows', the last of which
    /// is the next output row's first. Folded from `f32::MIN` (tract's padding) by tract's
    /// comparison (a value replaces the maximum only if greater), row by row, this picks the
    /// same value as tract's fold in row-major order: the first of the window's largest
    /// values, NaNs skipped. The phases' copy of every plane was a third of the pool's time,
    /// which was 3-4x onnxruntime's; the windows' nine values folded one by one (round 17),
    /// every input row's maxima made twice, 1.5-2x the time of this.
    #[target_feature(enable = "avx512f")]
    pub(super) fn max_3x3_stride_2(
        input: &[f32],
        [h, w]: [usize; 2],
        output: &mut [f32],
        [oh, ow]: [usize; 2],
    ) {
        assert!(2 * (oh - 1) < h && 2 * (ow - 1) < w);
        assert!(input.len() / (h * w) * oh * ow == output.len());
        let planes = input
            .chunks_exact(h * w)
            .zip(output.chunks_exact_mut(oh * ow));
        for (plane, out) in planes {
            for x in (0..ow).step_by(LANES) {
                let lanes = mask(ow - x);
                let mut first = row_maxima(&plane[..w], x);
                for y in 0..oh {
                    let row = |r: usize| match plane.get(r * w..(r + 1) * w) {
                        Some(row) => row_maxima(row, x),
                        None => _mm512_set1_ps(f32::MIN),
                    };
                    let (second, third) = (row(2 * y + 1), row(2 * y + 2));
                    let maxima = _mm512_max_ps(third, _mm512_max_ps(second, first));
                    // SAFETY: the lanes stored are the output row's (inside `out`: checked
                    // above).
                    unsafe {
                        let to = out.as_mut_ptr().add(y * ow + x);
                        _mm512_mask_storeu_ps(to, lanes, maxima);
                    }
                    first = third;
                }
            }
        }
    }

    /// The maxima of `row` over the windows of output columns `x..x + LANES`: columns `2x`,
    /// `2x + 1` and `2x + 2` folded from `f32::MIN` in order, `f32::MIN` past the row.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn row_maxima(row: &[f32], x: usize) -> __m512 {
        let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odds = _mm512_add_epi32(evens, _mm512_set1_epi32(1));
        let padding = _mm512_set1_ps(f32::MIN);
        // The row's columns `from..from + LANES`, padding past the row: whole loads inside it.
        let columns = |from: usize| {
            if from + LANES <= row.len() {
                // SAFETY: inside the row.
                unsafe { _mm512_loadu_ps(row.as_ptr().add(from)) }
            } else {
                let lanes = mask(row.len().saturating_sub(from));
                // SAFETY: the lanes loaded are the row's (the pointer is not dereferenced
                // past them).
                unsafe { _mm512_mask_loadu_ps(padding, lanes, row.as_ptr().wrapping_add(from)) }
            }
        };
        let (first, third) = (2 * x, 2 * x + 2);
        let (a, b) = (columns(first), columns(first + LANES));
        let (c, d) = (columns(third), columns(third + LANES));
        let maxima = _mm512_max_ps(_mm512_permutex2var_ps(a, evens, b), padding);
        let maxima = _mm512_max_ps(_mm512_permutex2var_ps(a, odds, b), maxima);
        _mm512_max_ps(_mm512_permutex2var_ps(c, evens, d), maxima)
    }
}

/// Whether `window` is a 2x2 pool of stride 2 over the whole input, without padding: every
/// 2x2 pool of these networks.
fn is_unpadded_2x2_stride_2(window: &Window) -> bool {
    let [h, w] = window.input;
    window.kernel == [2, 2]
        && window.stride == [2, 2]
        && window.pad == [0, 0]
        && window.output == [h / 2, w / 2]
}

/// Every output value of a 2x2 stride-2 pool of one plane `w` wide: `reduce` of its window's
/// values in tract's order (upper pair, lower pair). Inlined so that each pool's reduction is
/// vectorised across the output row.
#[inline(always)]
fn pool_2x2_stride_2(
    input: &[f32],
    w: usize,
    out: &mut [f32],
    ow: usize,
    reduce: impl Fn([f32; 4]) -> f32,
) {
    for (rows, out_row) in input.chunks_exact(2 * w).zip(out.chunks_exact_mut(ow)) {
        let (upper, lower) = rows.split_at(w);
        for ((o, a), b) in out_row
            .iter_mut()
            .zip(upper.chunks_exact(2))
            .zip(lower.chunks_exact(2))
        {
            *o = reduce([a[0], a[1], b[0], b[1]]);
        }
    }
}

/// The maximum of a window's values with tract's start value and comparison.
#[inline(always)]
fn window_max(values: [f32; 4]) -> f32 {
    values.into_iter().fold(f32::MIN, max_of)
}

/// The larger of `max` and `value` by tract's comparison (a NaN value is skipped).
#[inline(always)]
fn max_of(max: f32, value: f32) -> f32 {
    if max < value {
        value
    } else {
        max
    }
}

/// tract's `SumPool` (an ONNX `AveragePool`, or a sum) over 2x2 windows of stride 2 without
/// padding (the pools of dlib's ResNet and the gender network). tract visits each window
/// through its generic patch iterator, 25-35 ns per output value here; this sums the same four
/// values in the same order and multiplies by the same reciprocal.
#[derive(Debug, Clone, PartialEq)]
pub struct SumPool2x2 {
    window: Window,
    /// `1 / 4` for an average, none for a sum.
    scale: Option<f32>,
}

// The scale is a constant of the node (a reciprocal or none), compared as a value.
impl Eq for SumPool2x2 {}

impl SumPool2x2 {
    /// The replacement for node `id` if it is a sum pool this kernel computes (f32, channels
    /// first, fixed shapes, [`is_unpadded_2x2_stride_2`]).
    pub fn for_node(model: &TypedModel, id: usize) -> TractResult<Option<SumPool2x2>> {
        let Some(pool) = model.nodes[id].op_as::<SumPool>() else {
            return Ok(None);
        };
        let Some(window) = Window::of(model, id, &pool.pool_spec)? else {
            return Ok(None);
        };
        if !is_unpadded_2x2_stride_2(&window) {
            return Ok(None);
        }
        // Every window is whole: its count, padding included or not, is 4.
        let scale = pool.normalize.then(|| 4f32.recip());
        Ok(Some(SumPool2x2 { window, scale }))
    }
}

impl Op for SumPool2x2 {
    fn name(&self) -> StaticName {
        "facecast.SumPool2x2".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{}, scale {:?}",
            self.window.describe(),
            self.scale
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for SumPool2x2 {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let (w, ow) = (self.window.input[1], self.window.output[1]);
        let output = crate::map_planes(
            &input,
            self.window.input,
            &self.window.output_shape,
            |input, out| {
                pool_2x2_stride_2(input, w, out, ow, |values| {
                    let sum = values.into_iter().sum::<f32>();
                    self.scale.map_or(sum, |scale| sum * scale)
                })
            },
        )?;
        Ok(tvec!(output))
    }
}

impl TypedOp for SumPool2x2 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].datum_type.fact(&self.window.output_shape)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A graph of one `MaxPool` on a [1, channels, h, w] input, padded `pad` = [before, after]
    /// on both axes.
    fn pool_graph(
        channels: usize,
        hw: [usize; 2],
        kernel: usize,
        stride: usize,
        pad: [usize; 2],
    ) -> TypedModel {
        let pool = MaxPool {
            pool_spec: crate::tests::pool_spec(channels, kernel, stride, pad),
            with_index_outputs: None,
        };
        crate::tests::graph(channels, hw, pool, vec![])
    }

    #[test]
    fn equals_tract_on_kernels_strides_and_paddings() {
        for (channels, hw, kernel, stride, pad) in [
            (3, [96, 96], 2, 2, [0, 0]),
            (2, [7, 9], 2, 2, [0, 0]),
            (2, [7, 9], 2, 2, [0, 1]),
            (4, [56, 56], 3, 2, [0, 1]),
            (2, [14, 13], 3, 2, [1, 1]),
            (3, [8, 8], 3, 1, [1, 1]),
            (1, [4, 4], 2, 1, [0, 0]),
            (64, [56, 56], 3, 2, [0, 1]),
            // 3x3 stride 2 from the rows themselves (with AVX-512): output rows not a whole
            // number of the rows computed together, rows of one to three vectors of output.
            (3, [15, 37], 3, 2, [0, 0]),
            (2, [9, 70], 3, 2, [0, 1]),
            (2, [3, 3], 3, 2, [0, 0]),
            (5, [15, 17], 5, 1, [2, 2]),
            (2, [3, 3], 3, 1, [1, 1]),
        ] {
            let (ours, theirs) = crate::tests::ours_and_theirs(channels, hw, || {
                pool_graph(channels, hw, kernel, stride, pad)
            });
            assert_eq!(
                ours, theirs,
                "{channels}x{hw:?} k{kernel} s{stride} p{pad:?}"
            );
        }
    }

    #[test]
    fn picks_the_value_tract_picks_among_equal_maxima_and_nans() {
        // Windows of zeros of both signs, NaNs, infinities and f32::MIN: the value kept among
        // equal maxima (+0 and -0) and past NaNs depends on the order of the comparisons.
        let specials = [
            0.0,
            -0.0,
            f32::NAN,
            f32::NEG_INFINITY,
            f32::MIN,
            -1.0,
            0.0,
            -0.0,
            2.0,
        ];
        for (channels, hw, pad) in [(3, [15, 37], [0, 0]), (2, [9, 70], [0, 1])] {
            let values: Vec<f32> = (0..channels * hw[0] * hw[1])
                .map(|i| specials[(i * 7 + i / 5) % specials.len()])
                .collect();
            let input = Tensor::from_shape(&[1, channels, hw[0], hw[1]], &values).unwrap();
            let make = || pool_graph(channels, hw, 3, 2, pad);
            let mut ours = make();
            assert_eq!(crate::install(&mut ours).unwrap(), 1);
            let bits = |values: Vec<f32>| values.into_iter().map(f32::to_bits).collect::<Vec<_>>();
            let (ours, theirs) = (
                crate::tests::run(ours, &input),
                crate::tests::run(make(), &input),
            );
            assert!(ours.iter().any(|&v| v.to_bits() == (-0.0f32).to_bits()));
            assert_eq!(bits(ours), bits(theirs), "{channels}x{hw:?} p{pad:?}");
        }
    }

    #[test]
    fn leaves_strides_past_2_to_tract() {
        let mut model = pool_graph(2, [10, 11], 3, 3, [0, 2]);
        assert_eq!(crate::install(&mut model).unwrap(), 0);
    }

    #[test]
    fn sum_pools_equal_tract_and_only_2x2_stride_2_are_taken() {
        for (hw, normalize) in [([8, 8], true), ([7, 9], true), ([6, 4], false)] {
            let make = || {
                let pool = SumPool::new(crate::tests::pool_spec(3, 2, 2, [0, 0]), false, normalize);
                crate::tests::graph(3, hw, pool, vec![])
            };
            let (ours, theirs) = crate::tests::ours_and_theirs(3, hw, make);
            assert_eq!(ours, theirs, "{hw:?} normalize {normalize}");
        }
        for (kernel, stride, pad) in [(3, 2, [0, 0]), (2, 1, [0, 0]), (2, 2, [1, 1])] {
            let pool = SumPool::new(crate::tests::pool_spec(3, kernel, stride, pad), true, true);
            let mut model = crate::tests::graph(3, [8, 8], pool, vec![]);
            assert_eq!(
                crate::install(&mut model).unwrap(),
                0,
                "k{kernel} s{stride} p{pad:?}"
            );
        }
    }
}
