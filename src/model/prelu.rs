//! tract's ONNX front end with PRelu wired as facecast's one-pass `ChannelPrelu` (one slope
//! per channel, as in FaceMesh and Iris), else as `max(x, 0) + slope · min(x, 0)`.
//!
//! tract-onnx 0.23 expands PRelu to `0 > x ? slope · x : x`: a comparison into a boolean
//! tensor, then a select (`Iff`) that is not vectorised. FaceMesh and Iris have a PRelu after
//! almost every convolution, and `facecast bench`'s per-operator profile put 48% of FaceMesh's
//! time and 58% of Iris's in those two operators (debug build; docs/performance.md). Max and
//! Min against a scalar, a per-channel Mul and an Add are the same value (for x > 0: x + slope
//! · 0; for x <= 0: 0 + slope · x, each step exact), on tract's vectorised element-wise
//! kernels, but two passes over the tensor; `ChannelPrelu` is one.

use facecast_kernels::ChannelPrelu;
use tract_onnx::model::{Onnx, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::tract_core::ops::math;

/// tract's ONNX parser with our PRelu.
pub fn onnx() -> Onnx {
    let mut onnx = tract_onnx::onnx();
    onnx.op_register.insert("PRelu", prelu);
    onnx
}

fn prelu(_: &ParsingContext, _: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((expand(Prelu), vec![]))
}

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct Prelu;

impl Expansion for Prelu {
    fn name(&self) -> StaticName {
        "Prelu".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 2)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        Ok(())
    }

    fn wire(
        &self,
        name: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let x = inputs[0];
        if ChannelPrelu::covers(model.outlet_fact(x)?, model.outlet_fact(inputs[1])?) {
            return model.wire_node(name, ChannelPrelu, inputs);
        }
        let rank = model.outlet_fact(x)?.rank();
        // ONNX broadcasts the slope from the right (usually [C, 1, 1]); tract's binary
        // operators want equal ranks.
        let mut slope = inputs[1];
        while model.outlet_fact(slope)?.rank() < rank {
            let axes = model.outlet_fact(slope)?.rank();
            slope = model.wire_node(
                format!("{name}.slope-axis-{axes}"),
                AxisOp::Add(0),
                &[slope],
            )?[0];
        }
        let zero = tensor0(0.0f32)
            .cast_to_dt(model.outlet_fact(x)?.datum_type)?
            .into_owned()
            .broadcast_into_rank(rank)?;
        let zero = model.add_const(format!("{name}.zero"), zero)?;
        let positive = model.wire_node(format!("{name}.positive"), math::max(), &[x, zero])?[0];
        let negative = model.wire_node(format!("{name}.negative"), math::min(), &[x, zero])?[0];
        let scaled = model.wire_node(format!("{name}.scaled"), math::mul(), &[negative, slope])?[0];
        model.wire_node(name, math::add(), &[positive, scaled])
    }
}
