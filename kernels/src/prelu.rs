//! PRelu with one slope per channel, `x > 0 ? x : slope · x`, in one pass over the tensor.
//!
//! tract-onnx 0.23 expands PRelu to a comparison into a boolean tensor and a select (`Iff`)
//! that is not vectorised. facecast's ONNX front end first wired it as `max(x, 0) + slope ·
//! min(x, 0)` on tract's element-wise kernels (the same values), which tract runs as two
//! chains, each a full pass over the tensor: still 20-26% of FaceMesh's and Iris's time. This
//! operator is one select per value, with the same result: for x > 0, x; otherwise slope · x.

use tract_core::internal::*;

/// PRelu over `[N, C, ...]` tensors with `C` slopes (the second input, any shape of `C`
/// values).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelPrelu;

impl ChannelPrelu {
    /// Whether this operator computes PRelu for `x` with `slope`: f32, a channel axis, one
    /// constant slope per channel.
    pub fn covers(x: &TypedFact, slope: &TypedFact) -> bool {
        let channels = match x.shape.as_concrete() {
            Some(shape) if shape.len() >= 2 => shape[1],
            _ => return false,
        };
        x.datum_type == f32::datum_type()
            && slope.datum_type == f32::datum_type()
            && slope.konst.as_ref().is_some_and(|k| k.len() == channels)
    }
}

/// PRelu with one `slope`, in place: for x > 0, x; otherwise slope · x.
#[inline(always)]
pub(crate) fn prelu(values: &mut [f32], slope: f32) {
    for v in values {
        *v = if *v > 0.0 { *v } else { slope * *v };
    }
}

impl Op for ChannelPrelu {
    fn name(&self) -> StaticName {
        "facecast.ChannelPrelu".into()
    }

    op_as_typed_op!();
}

impl EvalOp for ChannelPrelu {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (x, slope) = args_2!(inputs);
        let mut x = x.into_tensor();
        let channels = x.shape()[1];
        let plane: usize = x.shape()[2..].iter().product();
        let slope = slope.try_as_plain_ram()?;
        let slope = slope.as_slice::<f32>()?;
        ensure!(
            slope.len() == channels,
            "{} slopes for {channels} channels",
            slope.len()
        );
        {
            let mut view = x.try_as_plain_ram_mut()?;
            for (p, values) in view
                .as_slice_mut::<f32>()?
                .chunks_exact_mut(plane.max(1))
                .enumerate()
            {
                prelu(values, slope[p % channels]);
            }
        }
        Ok(tvec!(x.into_tvalue()))
    }
}

impl TypedOp for ChannelPrelu {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].without_value()))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_max_plus_slope_times_min() {
        let (channels, plane) = (3, 7);
        let values: Vec<f32> = (0..2 * channels * plane)
            .map(|i| ((i * 13 % 17) as f32 - 8.0) / 5.0)
            .collect();
        let slopes = [0.25f32, -0.5, 1.5];
        let x = Tensor::from_shape(&[2, channels, 1, plane], &values).unwrap();
        let slope = Tensor::from_shape(&[channels, 1, 1], &slopes).unwrap();
        let out = ChannelPrelu
            .eval(
                &EvalContext::out_of_plan(),
                tvec![x.into_tvalue(), slope.into_tvalue()],
            )
            .unwrap();
        let out = out[0].try_as_plain_ram().unwrap();
        let out = out.as_slice::<f32>().unwrap();
        for (i, (&o, &x)) in out.iter().zip(&values).enumerate() {
            let s = slopes[i / plane % channels];
            assert_eq!(o, x.max(0.0) + s * x.min(0.0), "value {i}");
        }
    }
}
