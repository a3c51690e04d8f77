//! Resizing of f32 planes (the last two axes), with tract's own tables.
//!
//! tract's `Resize` resamples one axis after the other: rows (vectorised, a row at a time) and
//! then columns, one output value at a time through a fresh copy of the tensor and tables
//! rebuilt on every run. This kernel builds tract's tables once (`Resize::plan_axis`) and sums
//! the same taps in the same order, so the values are tract's, bit for bit. Each pass is laid
//! out over the whole plane (every output value's taps, tap by tap), so that it runs as
//! vectors of gathered values whatever the width: a row at a time, BlazeFace's 6- and 12-wide
//! planes left most of each vector empty.

use tract_core::internal::*;
use tract_core::ops::nn::resize::{AxisPlan, Resize};

use crate::phases::LANES;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resize2d {
    output_shape: TVec<usize>,
    /// Input height and width.
    input: [usize; 2],
    /// Output height and width.
    output: [usize; 2],
    rows: RowPass,
    columns: Taps,
}

/// The resize along the rows: a row at a time (each output row a weighted sum of input rows),
/// or, on rows narrower than a vector, over the whole plane as the columns are.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RowPass {
    ByRow(Taps),
    Plane(Taps),
}

/// For each output position of a pass, `window` input positions and their weights, stored tap
/// by tap (`indices[k * len + x]` is output `x`'s tap `k`) so that one tap of every output
/// position is a run the pass sums as vectors.
#[derive(Debug, Clone)]
struct Taps {
    window: usize,
    /// Output positions.
    len: usize,
    /// Input positions, each below `reads` (checked when made).
    indices: Vec<u32>,
    weights: Vec<f32>,
    /// The length of the input the pass reads.
    reads: usize,
}

impl Taps {
    /// tract's plan for one axis of `len_in` positions, or `None` when it reads outside the
    /// input (an extrapolation value this kernel does not write).
    fn of(plan: AxisPlan, len_in: usize) -> Option<Taps> {
        if plan.extrapolated.contains(&true) || plan.indices.iter().any(|&i| i >= len_in) {
            return None;
        }
        let (window, len) = (plan.window, plan.extrapolated.len());
        fn by_tap<T: Copy>(values: &[T], window: usize, len: usize) -> Vec<T> {
            (0..window)
                .flat_map(|k| (0..len).map(move |x| values[x * window + k]))
                .collect()
        }
        Some(Taps {
            window,
            len,
            indices: by_tap(&plan.indices, window, len)
                .into_iter()
                .map(|i| i as u32)
                .collect(),
            weights: by_tap(&plan.weights, window, len),
            reads: len_in,
        })
    }

    /// These taps of an axis over a whole plane of `lines` lines across the axis (the columns
    /// of a row pass, the rows of a column pass): output value `at(line, x)` reads input
    /// `input_at(line, x's tap's position)`, every index below `reads`.
    fn over_plane(
        &self,
        lines: usize,
        at: impl Fn(usize, usize) -> usize,
        input_at: impl Fn(usize, usize) -> usize,
        reads: usize,
    ) -> Taps {
        let len = lines * self.len;
        let mut indices = vec![0; self.window * len];
        let mut weights = vec![0.0; self.window * len];
        for k in 0..self.window {
            for line in 0..lines {
                for x in 0..self.len {
                    let tap = k * self.len + x;
                    let index = input_at(line, self.indices[tap] as usize);
                    assert!(index < reads, "a tap outside the input");
                    indices[k * len + at(line, x)] = index as u32;
                    weights[k * len + at(line, x)] = self.weights[tap];
                }
            }
        }
        Taps {
            window: self.window,
            len,
            indices,
            weights,
            reads,
        }
    }

    /// Tap `k` of every output position: input positions and weights.
    fn tap(&self, k: usize) -> (&[u32], &[f32]) {
        let range = k * self.len..(k + 1) * self.len;
        (&self.indices[range.clone()], &self.weights[range])
    }

    /// The pass from `input` into `out`: each output value a sum from zero of its taps'
    /// products in tap order, a zero weight's tap skipped as tract skips it (here: adding zero,
    /// the same since a sum from +0 is never -0, and whatever the value it weighs).
    #[inline(always)]
    fn pass(&self, input: &[f32], out: &mut [f32]) {
        assert!(input.len() == self.reads && out.len() == self.len);
        out.fill(0.0);
        for k in 0..self.window {
            let (indices, weights) = self.tap(k);
            for ((o, &i), &weight) in out.iter_mut().zip(indices).zip(weights) {
                // SAFETY: every index is below `reads` (`over_plane`), the input's length.
                let v = unsafe { *input.get_unchecked(i as usize) };
                *o += if weight != 0.0 { weight * v } else { 0.0 };
            }
        }
    }
}

impl PartialEq for Taps {
    fn eq(&self, other: &Taps) -> bool {
        self.window == other.window
            && self.len == other.len
            && self.indices == other.indices
            && self.weights.len() == other.weights.len()
            && self
                .weights
                .iter()
                .zip(&other.weights)
                .all(|(a, b)| a.to_bits() == b.to_bits())
    }
}

impl Eq for Taps {}

impl Resize2d {
    /// The replacement for node `id` if it is a `Resize` of the last two axes of an f32 tensor
    /// of rank 3 or 4 with fixed shapes.
    pub fn for_node(model: &TypedModel, id: usize) -> TractResult<Option<Resize2d>> {
        let node = &model.nodes[id];
        let Some(resize) = node.op_as::<Resize>() else {
            return Ok(None);
        };
        let Some((input_shape, output_shape)) = crate::fixed_shapes(model, id)? else {
            return Ok(None);
        };
        let h = input_shape.len() - 2;
        if output_shape[..h] != input_shape[..h] {
            return Ok(None);
        }
        let (input, output) = (crate::plane(&input_shape), crate::plane(&output_shape));
        // The scales tract's eval uses: the scales input when it gives every axis, else the
        // ratio of the sizes.
        let given = match resize.optional_scales_input.map(|ix| node.inputs.get(ix)) {
            Some(Some(&scales)) => match &model.outlet_fact(scales)?.konst {
                Some(k) if k.len() == input_shape.len() => Some(
                    k.cast_to::<f32>()?
                        .try_as_plain_ram()?
                        .as_slice::<f32>()?
                        .to_vec(),
                ),
                Some(_) => None,
                None => return Ok(None),
            },
            _ => None,
        };
        let scale = |axis: usize| match &given {
            Some(scales) => scales[axis],
            None => output_shape[axis] as f32 / input_shape[axis] as f32,
        };
        let (Some(row_axis), Some(column_axis)) = (
            Taps::of(resize.plan_axis(scale(h), input[0], output[0]), input[0]),
            Taps::of(
                resize.plan_axis(scale(h + 1), input[1], output[1]),
                input[1],
            ),
        ) else {
            return Ok(None);
        };
        // Rows first, into a plane of the output's height and the input's width, then columns.
        let ([h, w], [oh, ow]) = (input, output);
        // Rows of a vector or more are summed as they are (contiguous runs of the input);
        // narrower ones over the whole plane.
        let rows = if w >= LANES {
            RowPass::ByRow(row_axis)
        } else {
            RowPass::Plane(row_axis.over_plane(w, |x, y| y * w + x, |x, y| y * w + x, h * w))
        };
        let columns = column_axis.over_plane(oh, |y, x| y * ow + x, |y, x| y * w + x, oh * w);
        Ok(Some(Resize2d {
            output_shape,
            input,
            output,
            rows,
            columns,
        }))
    }

    on_widest_vectors!(Resize2d, fn plane => plane_portable(input: &[f32], resized_rows: &mut [f32], out: &mut [f32]));

    /// One channel plane; `resized_rows` holds the plane resized along its rows only.
    #[inline(always)]
    fn plane_portable(&self, input: &[f32], resized_rows: &mut [f32], out: &mut [f32]) {
        match &self.rows {
            RowPass::Plane(taps) => taps.pass(input, resized_rows),
            RowPass::ByRow(taps) => {
                let w = self.input[1];
                for (y, row) in resized_rows.chunks_exact_mut(w).enumerate() {
                    row.fill(0.0);
                    for k in 0..taps.window {
                        let (indices, weights) = taps.tap(k);
                        // A zero weight's tap skipped, as tract skips it.
                        if weights[y] != 0.0 {
                            let input = &input[indices[y] as usize * w..][..w];
                            for (r, &v) in row.iter_mut().zip(input) {
                                *r += weights[y] * v;
                            }
                        }
                    }
                }
            }
        }
        self.columns.pass(resized_rows, out);
    }
}

impl Op for Resize2d {
    fn name(&self) -> StaticName {
        "facecast.Resize2d".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{:?} -> {:?}", self.input, self.output)])
    }

    op_as_typed_op!();
}

impl EvalOp for Resize2d {
    op_out_of_plan!();

    /// `inputs` also holds the constant scales or sizes, read when the op was made.
    fn eval(&self, _: &EvalContext, mut inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = inputs.swap_remove(0);
        let mut resized_rows = vec![0.0; self.output[0] * self.input[1]];
        let output = crate::map_planes(&input, self.input, &self.output_shape, |input, out| {
            self.plane(input, &mut resized_rows, out)
        })?;
        Ok(tvec!(output))
    }
}

impl TypedOp for Resize2d {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].datum_type.fact(&self.output_shape)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_core::ops::nn::resize::{CoordTransformer, Interpolator, Nearest};

    /// A graph of one `Resize` of a [1, channels, h, w] input to [1, channels, out].
    fn resize_graph(
        channels: usize,
        hw: [usize; 2],
        out: [usize; 2],
        coord_transformer: CoordTransformer,
        interpolator: Interpolator,
    ) -> TypedModel {
        let mut model = TypedModel::default();
        let x = model
            .add_source("x", f32::fact([1, channels, hw[0], hw[1]]))
            .unwrap();
        let scales = tensor1(&[
            1.0f32,
            1.0,
            out[0] as f32 / hw[0] as f32,
            out[1] as f32 / hw[1] as f32,
        ]);
        let scales = model.add_const("scales", scales).unwrap();
        let resize = Resize {
            coord_transformer,
            interpolator,
            nearest: Nearest::Floor,
            optional_scales_input: Some(1),
            optional_sizes_input: None,
        };
        let y = model.wire_node("resize", resize, &[x, scales]).unwrap();
        model.select_output_outlets(&y).unwrap();
        model
    }

    #[test]
    fn equals_tract_bit_for_bit() {
        for (channels, hw, out, coord, interpolator) in [
            (
                3,
                [6, 6],
                [12, 12],
                CoordTransformer::HalfPixel,
                Interpolator::Linear,
            ),
            (
                2,
                [24, 24],
                [48, 48],
                CoordTransformer::HalfPixel,
                Interpolator::Linear,
            ),
            (
                2,
                [5, 7],
                [15, 14],
                CoordTransformer::AlignCorners,
                Interpolator::Linear,
            ),
            (
                2,
                [8, 6],
                [4, 9],
                CoordTransformer::Asymmetric,
                Interpolator::Linear,
            ),
            (
                1,
                [6, 5],
                [12, 10],
                CoordTransformer::HalfPixel,
                Interpolator::Cubic,
            ),
        ] {
            let graph = || resize_graph(channels, hw, out, coord.clone(), interpolator.clone());
            let mut ours = graph();
            assert_eq!(crate::install(&mut ours).unwrap(), 1);
            let values: Vec<f32> = (0..channels * hw[0] * hw[1])
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                .collect();
            let input = Tensor::from_shape(&[1, channels, hw[0], hw[1]], &values).unwrap();
            assert_eq!(
                crate::tests::run(ours, &input),
                crate::tests::run(graph(), &input),
                "{channels}x{hw:?} -> {out:?} {coord:?} {interpolator:?}"
            );
        }
    }
}
