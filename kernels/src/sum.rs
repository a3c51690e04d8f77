//! Sums of tensors of one shape, and the ReLU that may follow: the chains of `Add`s of
//! face-api's dense blocks (each block's input to a layer is the sum of the outputs of the
//! layers before it).
//!
//! tract adds two tensors per node, each a pass over memory (the last `Add` and the ReLU
//! fused into one): on face-api's expression network the adds took 0.71 ms of its 3.9 (its
//! 32x56x56 Add+ReLU 0.08-0.11 ms, 1 ns per value of tensors that sit in the L2 cache). This
//! sums the whole chain in one pass, a block of values at a time, in the chain's order (each
//! `Add`'s own two operands commute exactly), then applies the ReLU as tract's `Max` does.

use tract_core::internal::*;
use tract_core::ops::math::Add;

use crate::panels::{relu_successor, single_binary_successor};

/// Values summed at a time: a block that stays in registers and L1 while every input is added.
const BLOCK: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SumChain {
    shape: TVec<usize>,
    /// `max(sum, 0)` after the sum.
    relu: bool,
}

impl SumChain {
    /// A patch replacing the `Add` node `id` of two computed f32 tensors of one fixed shape,
    /// and the `Add`s that alone read its sum (each adding another such tensor) and a ReLU
    /// (`Max` with zero) that alone reads theirs, by one node.
    pub fn patch_for(model: &TypedModel, id: usize) -> TractResult<Option<TypedModelPatch>> {
        let node = &model.nodes[id];
        let is_add = node
            .op_as::<tract_core::ops::binary::TypedBinOp>()
            .is_some_and(|op| op.0.is::<Add>());
        if !is_add || node.inputs.len() != 2 {
            return Ok(None);
        }
        let first = OutletId::new(id, 0);
        // Left unread by a patch that took it in (a convolution's residual Add).
        if node.outputs[0].successors.is_empty() && !model.output_outlets()?.contains(&first) {
            return Ok(None);
        }
        let fact = model.outlet_fact(first)?;
        let Some(shape) = fact.shape.as_concrete() else {
            return Ok(None);
        };
        let computed_like_output = |outlet: OutletId| -> TractResult<bool> {
            let input = model.outlet_fact(outlet)?;
            Ok(input.konst.is_none()
                && input.datum_type == f32::datum_type()
                && input.shape == fact.shape)
        };
        if fact.datum_type != f32::datum_type() {
            return Ok(None);
        }
        let mut inputs = node.inputs.clone();
        for &input in &inputs {
            if !computed_like_output(input)? {
                return Ok(None);
            }
        }
        let mut last = first;
        while let Some((add, other)) = single_binary_successor::<Add>(model, last)? {
            if !computed_like_output(other)? {
                break;
            }
            inputs.push(other);
            last = OutletId::new(add, 0);
        }
        let relu = relu_successor(model, last)?;
        if let Some(max) = relu {
            last = OutletId::new(max, 0);
        }
        let op = SumChain {
            shape: shape.into(),
            relu: relu.is_some(),
        };
        let mut patch = TypedModelPatch::new("facecast.SumChain");
        let taps = inputs
            .iter()
            .map(|&input| patch.tap_model(model, input))
            .collect::<TractResult<TVec<_>>>()?;
        let output = patch.wire_node(&node.name, op, &taps)?;
        patch.shunt_outside(model, last, output[0])?;
        Ok(Some(patch))
    }

    on_widest_vectors!(SumChain, fn sum => sum_portable(inputs: &[&[f32]], output: &mut [f32]));

    /// `output` the sum of `inputs` (in order), a block at a time, then the ReLU.
    #[inline(always)]
    fn sum_portable(&self, inputs: &[&[f32]], output: &mut [f32]) {
        for (block, out) in output.chunks_mut(BLOCK).enumerate() {
            let at = block * BLOCK;
            let len = out.len();
            let (first, second) = (&inputs[0][at..][..len], &inputs[1][at..][..len]);
            for ((o, &a), &b) in out.iter_mut().zip(first).zip(second) {
                *o = a + b;
            }
            for input in &inputs[2..] {
                for (o, &x) in out.iter_mut().zip(&input[at..][..len]) {
                    *o += x;
                }
            }
            if self.relu {
                crate::relu(out);
            }
        }
    }
}

impl Op for SumChain {
    fn name(&self) -> StaticName {
        "facecast.SumChain".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("relu {}", self.relu)])
    }

    op_as_typed_op!();
}

impl EvalOp for SumChain {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let views = inputs
            .iter()
            .map(|input| input.try_as_plain_ram())
            .collect::<TractResult<Vec<_>>>()?;
        let slices = views
            .iter()
            .map(|view| view.as_slice::<f32>())
            .collect::<TractResult<Vec<_>>>()?;
        let output = crate::output_planes(&self.shape, |output| self.sum(&slices, output))?;
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for SumChain {
    fn output_facts(&self, _: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(&self.shape)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_core::ops::math;

    /// `x` scaled by `factor`: a computed tensor of `x`'s shape.
    fn scaled(model: &mut TypedModel, x: OutletId, factor: f32, name: &str) -> OutletId {
        let factor = model
            .add_const(format!("{name}.factor"), tensor4(&[[[[factor]]]]))
            .unwrap();
        model.wire_node(name, math::mul(), &[x, factor]).unwrap()[0]
    }

    /// ReLU(((1.5x + -0.75x) + (x + 0.1)) + x), each sum its own `Add` (the middle one's
    /// operands the other way round), and 1.5x + -0.75x also an output if `shared`.
    fn chain_graph(shared: bool) -> TypedModel {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([1, 4, 9, 11])).unwrap();
        let a = scaled(&mut model, x, 1.5, "a");
        let b = scaled(&mut model, x, -0.75, "b");
        let tenth = model.add_const("tenth", tensor4(&[[[[0.1f32]]]])).unwrap();
        let c = model.wire_node("c", math::add(), &[x, tenth]).unwrap()[0];
        let ab = model.wire_node("ab", math::add(), &[a, b]).unwrap()[0];
        let abc = model.wire_node("abc", math::add(), &[c, ab]).unwrap()[0];
        let sum = model.wire_node("sum", math::add(), &[abc, x]).unwrap()[0];
        let zero = model.add_const("zero", tensor4(&[[[[0f32]]]])).unwrap();
        let relu = model.wire_node("relu", math::max(), &[sum, zero]).unwrap()[0];
        let outputs = if shared { vec![relu, ab] } else { vec![relu] };
        model.select_output_outlets(&outputs).unwrap();
        model
    }

    #[test]
    fn sums_a_chain_of_adds_and_its_relu_as_tract_does() {
        let mut ours = chain_graph(false);
        // One node for the three Adds and the Max; the Add of a constant is left to tract.
        assert_eq!(crate::install(&mut ours).unwrap(), 1);
        let optimised = ours.clone().into_optimized().unwrap();
        let ops: Vec<_> = optimised.nodes.iter().map(|n| n.op().name()).collect();
        assert!(ops.contains(&"facecast.SumChain".into()), "{ops:?}");
        assert!(!ops.iter().any(|op| op.contains("Max")), "{ops:?}");
        let values: Vec<f32> = (0..4 * 9 * 11)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let input = Tensor::from_shape(&[1, 4, 9, 11], &values).unwrap();
        let (ours, theirs) = (
            crate::tests::run(ours, &input),
            crate::tests::run(chain_graph(false), &input),
        );
        assert_eq!(ours, theirs);
        assert!(ours.contains(&0.0) && ours.iter().any(|&v| v > 0.0));
    }

    #[test]
    fn ends_the_chain_at_a_sum_read_elsewhere() {
        // 1.5x + -0.75x is an output too: its Add is a chain of its own, the rest another.
        let mut ours = chain_graph(true);
        assert_eq!(crate::install(&mut ours).unwrap(), 2);
        let input = Tensor::from_shape(&[1, 4, 9, 11], &[0.5f32; 4 * 9 * 11]).unwrap();
        let run = |model: TypedModel| {
            let plan = model.into_optimized().unwrap().into_runnable().unwrap();
            plan.run(tvec![input.clone().into_tvalue()]).unwrap()
        };
        assert_eq!(run(ours), run(chain_graph(true)));
    }
}
