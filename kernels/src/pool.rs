//! Pooling of f32 planes (NCHW or CHW): max pools of any window, an output row at a time,
//! and 2x2 average (sum) pools.
//!
//! An output row's windows span `kernel height` input rows: their column-wise maxima come
//! first (one contiguous fold per row), into a row padded with `f32::MIN` (tract's start value
//! for a window, so a padded tap changes nothing). That row is split into its `stride` phases,
//! so that the tap at column `kx` of every window is the contiguous run
//! `phase[kx % stride][kx / stride..]`, and the output row is the fold of `kernel width` such
//! runs. Taking the rows' maxima first makes every output row two passes over its input rows
//! and one over its own length; pooling each input row first (the previous form) made six
//! passes per input row, each too short for the loops' vector bodies (3x3 stride-2 pools,
//! 64x56x56: 0.19 -> 0.085 ms in a stand-alone release loop).

use tract_core::internal::*;
use tract_core::ops::cnn::{MaxPool, SumPool};

use crate::Window;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaxPool2d {
    window: Window,
}

impl MaxPool2d {
    /// The replacement for node `id` if it is a max pool this kernel computes (f32, channels
    /// first, 2-D, no dilation, no index output, fixed shapes).
    pub fn for_node(model: &TypedModel, id: usize) -> TractResult<Option<MaxPool2d>> {
        let Some(pool) = model.nodes[id].op_as::<MaxPool>() else {
            return Ok(None);
        };
        if pool.with_index_outputs.is_some() {
            return Ok(None);
        }
        Ok(Window::of(model, id, &pool.pool_spec)?.map(|window| MaxPool2d { window }))
    }

    /// Length of a padded row: every window's columns, the input's, and whole strides.
    fn padded_len(&self) -> usize {
        let window = &self.window;
        let reach = (window.output[1] - 1) * window.stride[1] + window.kernel[1];
        let len = reach.max(window.pad[1] + window.input[1]);
        len.next_multiple_of(window.stride[1])
    }

    /// One channel plane.
    fn plane(&self, input: &[f32], scratch: &mut Scratch, out: &mut [f32]) {
        let [h, w] = self.window.input;
        let ow = self.window.output[1];
        let [kh, kw] = self.window.kernel;
        let [sy, sx] = self.window.stride;
        let [top, left] = self.window.pad;
        if is_unpadded_2x2_stride_2(&self.window) {
            return pool_2x2_stride_2(input, w, out, ow, window_max);
        }
        let Scratch { padded, phases } = scratch;
        let phase_len = padded.len() / sx;
        for (oy, out_row) in out.chunks_exact_mut(ow).enumerate() {
            // The window's input rows: padded rows oy * sy .. + kh, less the padding.
            let first = (oy * sy).saturating_sub(top).min(h);
            let last = (oy * sy + kh).saturating_sub(top).min(h);
            let maxima = &mut padded[left..][..w];
            if first == last {
                maxima.fill(f32::MIN);
            } else {
                maxima.copy_from_slice(&input[first * w..][..w]);
                for row in input[..last * w].chunks_exact(w).skip(first + 1) {
                    fold_max(maxima, row);
                }
            }
            match sx {
                1 => phases.copy_from_slice(padded),
                // The common stride, written so that it vectorises.
                2 => {
                    let (even, odd) = phases.split_at_mut(phase_len);
                    for ((e, o), pair) in even.iter_mut().zip(odd).zip(padded.chunks_exact(2)) {
                        *e = pair[0];
                        *o = pair[1];
                    }
                }
                _ => {
                    for (j, values) in padded.chunks_exact(sx).enumerate() {
                        for (p, &v) in values.iter().enumerate() {
                            phases[p * phase_len + j] = v;
                        }
                    }
                }
            }
            let tap = |kx: usize| &phases[(kx % sx) * phase_len + kx / sx..][..ow];
            out_row.copy_from_slice(tap(0));
            for kx in 1..kw {
                fold_max(out_row, tap(kx));
            }
        }
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
    values
        .into_iter()
        .fold(f32::MIN, |m, v| if m < v { v } else { m })
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

/// Rows reused across the planes of one run.
struct Scratch {
    /// An output row's column-wise maxima, at the input's columns shifted by the left
    /// padding; `f32::MIN` in the padding.
    padded: Vec<f32>,
    /// `padded` split into its stride's phases.
    phases: Vec<f32>,
}

/// `acc = max(acc, v)` elementwise, with tract's comparison (a NaN tap is skipped).
fn fold_max(acc: &mut [f32], values: &[f32]) {
    for (a, &v) in acc.iter_mut().zip(values) {
        *a = if *a < v { v } else { *a };
    }
}

impl Op for MaxPool2d {
    fn name(&self) -> StaticName {
        "facecast.MaxPool2d".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "kernel {:?} stride {:?} pad {:?}",
            self.window.kernel, self.window.stride, self.window.pad
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for MaxPool2d {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let padded = vec![f32::MIN; self.padded_len()];
        let mut scratch = Scratch {
            phases: padded.clone(),
            padded,
        };
        let output = crate::map_planes(
            &input,
            self.window.input,
            &self.window.output_shape,
            |input, out| self.plane(input, &mut scratch, out),
        )?;
        Ok(tvec!(output))
    }
}

impl TypedOp for MaxPool2d {
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
            (2, [10, 11], 3, 3, [0, 2]),
            (1, [4, 4], 2, 1, [0, 0]),
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
