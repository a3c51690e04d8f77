//! Max pooling of f32 planes (NCHW or CHW), a row at a time.
//!
//! Each input row is padded with `f32::MIN` (tract's start value for a window, so a padded tap
//! changes nothing) and split into its `stride` phases: the tap at column `kx` of every window
//! in the row is then the contiguous run `phase[kx % stride][kx / stride..]`. A row's
//! horizontal maxima are a fold of `kernel width` such runs, and an output row is the fold of
//! `kernel height` rows of horizontal maxima. Every loop runs over contiguous slices.

use tract_core::internal::*;
use tract_core::ops::cnn::MaxPool;

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

    /// Length of one phase of a padded row: enough for every window's last tap.
    fn phase_len(&self) -> usize {
        self.window.output[1] + (self.window.kernel[1] - 1) / self.window.stride[1]
    }

    /// Where column tap `kx` of output column 0 sits in a phased row: phase `kx % stride`,
    /// from `kx / stride` on.
    fn tap_offsets(&self) -> Vec<usize> {
        let (stride, phase_len) = (self.window.stride[1], self.phase_len());
        (0..self.window.kernel[1])
            .map(|kx| (kx % stride) * phase_len + kx / stride)
            .collect()
    }

    /// The horizontal maxima of one input `row` into `out` (one value per output column).
    fn row_maxima(&self, row: &[f32], scratch: &mut Scratch, out: &mut [f32]) {
        let padded = &mut scratch.padded;
        padded.fill(f32::MIN);
        let copied = row.len().min(padded.len() - self.window.pad[1]);
        padded[self.window.pad[1]..][..copied].copy_from_slice(&row[..copied]);
        let phase_len = self.phase_len();
        let phases = &mut scratch.phases;
        match self.window.stride[1] {
            1 => phases.copy_from_slice(padded),
            // The common stride, written so that it vectorises.
            2 => {
                let (even, odd) = phases.split_at_mut(phase_len);
                for ((e, o), pair) in even.iter_mut().zip(odd).zip(padded.chunks_exact(2)) {
                    *e = pair[0];
                    *o = pair[1];
                }
            }
            stride => {
                for (j, values) in padded.chunks_exact(stride).enumerate() {
                    for (p, &v) in values.iter().enumerate() {
                        phases[p * phase_len + j] = v;
                    }
                }
            }
        }
        out.copy_from_slice(&phases[scratch.taps[0]..][..out.len()]);
        for &tap in &scratch.taps[1..] {
            fold_max(out, &phases[tap..][..out.len()]);
        }
    }

    /// One channel plane.
    fn plane(&self, input: &[f32], scratch: &mut Scratch, out: &mut [f32]) {
        let [_, w] = self.window.input;
        let ow = self.window.output[1];
        let [h, _] = self.window.input;
        let unpadded_halves = self.window.pad == [0, 0] && self.window.output == [h / 2, w / 2];
        if self.window.kernel == [2, 2] && self.window.stride == [2, 2] && unpadded_halves {
            return pool_2x2_stride_2(input, w, out, ow);
        }
        let mut maxima = std::mem::take(&mut scratch.row_maxima);
        for (row, maxima) in input.chunks_exact(w).zip(maxima.chunks_exact_mut(ow)) {
            self.row_maxima(row, scratch, maxima);
        }
        scratch.row_maxima = maxima;
        for (oy, out_row) in out.chunks_exact_mut(ow).enumerate() {
            out_row.fill(f32::MIN);
            for ky in 0..self.window.kernel[0] {
                let Some(iy) = (oy * self.window.stride[0] + ky)
                    .checked_sub(self.window.pad[0])
                    .filter(|&iy| iy < self.window.input[0])
                else {
                    continue;
                };
                fold_max(out_row, &scratch.row_maxima[iy * ow..][..ow]);
            }
        }
    }
}

/// The most common pool (every 2x2 pool of these networks): each output value is the
/// maximum of two pairs of neighbours in two rows, with tract's start value and comparison.
fn pool_2x2_stride_2(input: &[f32], w: usize, out: &mut [f32], ow: usize) {
    for (rows, out_row) in input.chunks_exact(2 * w).zip(out.chunks_exact_mut(ow)) {
        let (upper, lower) = rows.split_at(w);
        for ((o, a), b) in out_row
            .iter_mut()
            .zip(upper.chunks_exact(2))
            .zip(lower.chunks_exact(2))
        {
            let mut m = f32::MIN;
            for v in [a[0], a[1], b[0], b[1]] {
                m = if m < v { v } else { m };
            }
            *o = m;
        }
    }
}

/// Buffers and offsets reused across the planes of one run.
struct Scratch {
    padded: Vec<f32>,
    phases: Vec<f32>,
    /// [`MaxPool2d::tap_offsets`].
    taps: Vec<usize>,
    /// One row of horizontal maxima per input row.
    row_maxima: Vec<f32>,
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
        let phase_len = self.phase_len();
        let mut scratch = Scratch {
            padded: vec![0.0; phase_len * self.window.stride[1]],
            phases: vec![0.0; phase_len * self.window.stride[1]],
            taps: self.tap_offsets(),
            row_maxima: vec![0.0; self.window.input[0] * self.window.output[1]],
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
}
