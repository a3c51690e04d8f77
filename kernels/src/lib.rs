//! facecast's own tract operators, where tract 0.23 spends its time on these networks in
//! scalar code: max pooling and resizing, which tract computes one output value at a time, and
//! PRelu, which tract-onnx expands to several passes over the tensor.
//!
//! `facecast bench`'s per-operator profile (docs/performance.md) found max pooling at 18-24 ns
//! per output value (14% of FaceMesh, 20% of face-api's age/gender network), bilinear Resize
//! at 21 ns per output value (13% of the full-range BlazeFace detector) and PRelu, as two
//! element-wise chains, at 20-26% of FaceMesh and Iris. The pool and resize kernels here
//! compute tract's values (the same comparisons, the same weights summed in the same order) a
//! whole row at a time, in loops the compiler vectorises; [`ChannelPrelu`] is one select per
//! value.
//!
//! [`install`] swaps the pool and resize kernels in for the nodes they cover after tract has
//! decluttered the graph and before it optimises it; facecast's ONNX front end wires
//! [`ChannelPrelu`]. Every other node keeps tract's kernels. This is a crate of its own so that
//! the dev profile optimises it like tract (tests run it at real speed) while facecast itself
//! stays quick to build.

mod max_pool;
mod prelu;
mod resize;

pub use prelu::ChannelPrelu;

use tract_core::prelude::*;

/// Replaces the nodes of `model` that facecast's kernels compute; returns how many it replaced.
pub fn install(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in 0..model.nodes.len() {
        if let Some(op) = kernel_for(model, id)? {
            model.nodes[id].op = op;
            replaced += 1;
        }
    }
    Ok(replaced)
}

/// facecast's kernel for node `id`, if it has one.
fn kernel_for(model: &TypedModel, id: usize) -> TractResult<Option<Box<dyn TypedOp>>> {
    if let Some(op) = max_pool::MaxPool2d::for_node(model, id)? {
        return Ok(Some(Box::new(op)));
    }
    Ok(resize::Resize2d::for_node(model, id)?.map(|op| Box::new(op) as Box<dyn TypedOp>))
}

/// The height and width axes of a concrete f32 NCHW (or CHW: tract drops a batch of one)
/// shape, or `None`.
fn plane_axes(fact: &TypedFact) -> Option<(usize, [usize; 2])> {
    let shape = fact.shape.as_concrete()?;
    if fact.datum_type != f32::datum_type() || !(3..=4).contains(&shape.len()) {
        return None;
    }
    let h = shape.len() - 2;
    Some((h, [shape[h], shape[h + 1]]))
}

#[cfg(test)]
mod tests {
    use tract_core::prelude::*;

    /// `model`'s one output for `input`, optimised as facecast loads a model.
    pub fn run(model: TypedModel, input: &Tensor) -> Vec<f32> {
        let plan = model.into_optimized().unwrap().into_runnable().unwrap();
        let outputs = plan.run(tvec![input.clone().into_tvalue()]).unwrap();
        let view = outputs[0].try_as_plain_ram().unwrap();
        view.as_slice::<f32>().unwrap().to_vec()
    }
}
