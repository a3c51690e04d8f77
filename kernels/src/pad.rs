//! Zero padding of f32 tensors of fixed shape (ONNX `Pad`, constant zero): dlib's ResNet pads
//! a shortcut's channels (32 -> 64, 128 -> 256) and its small planes' last row and column.
//! tract 0.23 pads through ndarray's generic slicing, 6-15 us for a few thousand values (a
//! 256x1x1 tensor to 256x2x2: 12 us, 30 ns a value); here the output is zeroed and each input
//! row copied to its place.

use tract_core::internal::*;
use tract_core::ops::array::{Pad, PadMode};

use crate::phases::copy_row;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ZeroPad {
    input: TVec<usize>,
    /// Values before and after the input's on each axis.
    pads: TVec<(usize, usize)>,
}

impl ZeroPad {
    /// The replacement for node `id` if it is a `Pad` with zero of an f32 tensor of fixed
    /// shape.
    pub fn for_node(model: &TypedModel, id: usize) -> TractResult<Option<ZeroPad>> {
        let node = &model.nodes[id];
        let Some(pad) = node.op_as::<Pad>() else {
            return Ok(None);
        };
        let PadMode::Constant(value) = &pad.mode else {
            return Ok(None);
        };
        let input = model.outlet_fact(node.inputs[0])?;
        let Some(shape) = input.shape.as_concrete() else {
            return Ok(None);
        };
        let zero = value.len() == 1 && value.cast_to_scalar::<f32>()? == 0.0;
        let empty = shape.is_empty() || shape.contains(&0);
        if !zero || input.datum_type != f32::datum_type() || empty {
            return Ok(None);
        }
        Ok(Some(ZeroPad {
            input: shape.into(),
            pads: pad.pads.iter().copied().collect(),
        }))
    }

    fn output_shape(&self) -> TVec<usize> {
        let padded = self.input.iter().zip(&self.pads);
        padded
            .map(|(&d, &(before, after))| before + d + after)
            .collect()
    }
}

impl Op for ZeroPad {
    fn name(&self) -> StaticName {
        "facecast.ZeroPad".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{:?} padded {:?}", self.input, self.pads)])
    }

    op_as_typed_op!();
}

impl EvalOp for ZeroPad {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = inputs[0].try_as_plain_ram()?;
        let input = input.as_slice::<f32>()?;
        let shape = self.output_shape();
        let mut output = Tensor::zero::<f32>(&shape)?;
        {
            let mut view = output.try_as_plain_ram_mut()?;
            let values = view.as_slice_mut::<f32>()?;
            let rank = shape.len();
            let row = self.input[rank - 1];
            // Each input row (all its axes but the last) to its place in the output.
            for (r, from) in input.chunks_exact(row).enumerate() {
                let (mut at, mut rest, mut stride) = (self.pads[rank - 1].0, r, shape[rank - 1]);
                for axis in (0..rank - 1).rev() {
                    let index = rest % self.input[axis];
                    rest /= self.input[axis];
                    at += (index + self.pads[axis].0) * stride;
                    stride *= shape[axis];
                }
                copy_row(&mut values[at..][..row], from);
            }
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for ZeroPad {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].datum_type.fact(self.output_shape())))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use tract_core::internal::*;
    use tract_core::ops::array::{Pad, PadMode};

    /// A graph padding a `shape` input with zeros by `pads`.
    fn pad_graph(shape: &[usize], pads: &[(usize, usize)]) -> TypedModel {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact(shape)).unwrap();
        let pad = Pad::new(pads.to_vec(), PadMode::Constant(Arc::new(0.0f32.into())));
        let y = model.wire_node("pad", pad, &[x]).unwrap();
        model.select_output_outlets(&y).unwrap();
        model
    }

    #[test]
    fn pads_as_tract_does() {
        // dlib's: a shortcut's channels, a plane's last row and column; and pads before and
        // after every axis, of rank 3 and 4.
        for (shape, pads) in [
            (vec![1, 32, 17, 17], vec![(0, 0), (0, 32), (0, 0), (0, 0)]),
            (vec![1, 256, 3, 3], vec![(0, 0), (0, 0), (0, 1), (0, 1)]),
            (vec![1, 256, 1, 1], vec![(0, 0), (0, 0), (0, 1), (0, 1)]),
            (vec![1, 3, 5, 7], vec![(0, 1), (2, 1), (1, 3), (2, 2)]),
            (vec![4, 6, 5], vec![(1, 0), (0, 2), (3, 1)]),
        ] {
            let make = || pad_graph(&shape, &pads);
            let mut ours = make();
            assert_eq!(crate::install(&mut ours).unwrap(), 1, "{shape:?}");
            let len = shape.iter().product::<usize>();
            let values: Vec<f32> = (0..len).map(|i| i as f32 - 7.5).collect();
            let input = Tensor::from_shape(&shape, &values).unwrap();
            let (ours, theirs) = (
                crate::tests::run(ours, &input),
                crate::tests::run(make(), &input),
            );
            assert_eq!(ours, theirs, "{shape:?} {pads:?}");
        }
    }

    #[test]
    fn leaves_other_pads_to_tract() {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([1, 2, 3, 3])).unwrap();
        let pads = vec![(0, 0), (0, 0), (1, 1), (1, 1)];
        let pad = Pad::new(pads, PadMode::Constant(Arc::new(1.0f32.into())));
        let y = model.wire_node("pad", pad, &[x]).unwrap();
        model.select_output_outlets(&y).unwrap();
        assert_eq!(crate::install(&mut model).unwrap(), 0);
    }
}
