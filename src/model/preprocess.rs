//! The one place image pixels become model input: a region of a frame, given as an affine map
//! from tensor pixels to frame pixels, is sampled bilinearly and normalised as the manifest says.
//! Letterboxing, crops and rotated crops are all just different maps.

use super::manifest::{Colour, InputSpec, Layout};
use crate::frame::Frame;
use crate::geometry::Affine;

/// What samples outside the frame take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Border {
    /// Black, as MediaPipe pads the detector's letterbox.
    Black,
    /// The nearest edge pixel, as MediaPipe's landmark crops do (its default border mode):
    /// a face cut by the frame edge is continued rather than cut to black.
    Replicate,
}

/// BT.601 luma weights, for models that take grey input.
const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// Fills `out` (the input tensor's data, in the spec's layout) from `frame`.
/// `map` takes tensor coordinates (0..width, 0..height) to frame coordinates. Tensor pixel
/// (u, v) takes the bilinear frame value at `map(u, v)`, pixel indices used as coordinates, as
/// OpenCV's warpAffine/warpPerspective do in the MediaPipe pipelines these models were trained
/// and evaluated with (a pixel-centre convention shifts a downscaled image by half a tensor
/// pixel, enough to move borderline detections). Samples outside the frame follow `border`.
pub fn sample_into(frame: &Frame, map: &Affine, spec: &InputSpec, border: Border, out: &mut [f32]) {
    let _span = crate::perf::span("preprocess");
    let (tw, th, channels) = (spec.width(), spec.height(), spec.channels());
    debug_assert_eq!(out.len(), tw * th * channels);
    // At most three channels; an array keeps the per-frame path free of heap allocation.
    let mut scale = [1.0f32; 3];
    for (scale, std) in scale.iter_mut().zip(&spec.std) {
        *scale = 1.0 / std;
    }
    let plane = tw * th;
    for v in 0..th {
        for u in 0..tw {
            let (x, y) = map.apply(u as f32, v as f32);
            let rgb = bilinear(frame, x, y, border);
            let mut put = |c: usize, value: f32| {
                let normalised = (value - spec.mean[c]) * scale[c];
                let i = match spec.layout {
                    Layout::Nchw => c * plane + v * tw + u,
                    Layout::Nhwc => (v * tw + u) * channels + c,
                };
                out[i] = normalised;
            };
            match spec.colour {
                Colour::Rgb => (0..3).for_each(|c| put(c, rgb[c])),
                Colour::Bgr => (0..3).for_each(|c| put(c, rgb[2 - c])),
                Colour::Grey => put(0, LUMA[0] * rgb[0] + LUMA[1] * rgb[1] + LUMA[2] * rgb[2]),
            }
        }
    }
}

/// Sub-pixel steps of the sampling position, as OpenCV's `INTER_TAB_SIZE`.
const SUBPIXEL_STEPS: f32 = 32.0;
/// One step: dividing by a power of two and multiplying by its inverse are the same value.
const SUBPIXEL_STEP: f32 = 1.0 / SUBPIXEL_STEPS;

/// Bilinear RGB at pixel-index coordinates; outside the frame counts as black. Like OpenCV's
/// 8-bit warp, the position is rounded to 1/32 pixel and the result to a whole pixel value, so
/// that the tensor matches the one MediaPipe builds from the same frame to within one level.
fn bilinear(frame: &Frame, x: f32, y: f32, border: Border) -> [f32; 3] {
    let (w, h) = (frame.width as i64, frame.height as i64);
    let (xq, yq) = ((x * SUBPIXEL_STEPS).round(), (y * SUBPIXEL_STEPS).round());
    let x0 = (xq * SUBPIXEL_STEP).floor();
    let y0 = (yq * SUBPIXEL_STEP).floor();
    let (fx, fy) = (xq * SUBPIXEL_STEP - x0, yq * SUBPIXEL_STEP - y0);
    let (x0, y0) = (x0 as i64, y0 as i64);
    let mut acc = [0.0f32; 3];
    for (dy, wy) in [(0, 1.0 - fy), (1, fy)] {
        for (dx, wx) in [(0, 1.0 - fx), (1, fx)] {
            let weight = wx * wy;
            let (mut px, mut py) = (x0 + dx, y0 + dy);
            if weight == 0.0 {
                continue;
            }
            if px < 0 || py < 0 || px >= w || py >= h {
                match border {
                    Border::Black => continue,
                    Border::Replicate => (px, py) = (px.clamp(0, w - 1), py.clamp(0, h - 1)),
                }
            }
            let p = frame.pixel(px as u32, py as u32);
            for c in 0..3 {
                acc[c] += weight * p[c] as f32;
            }
        }
    }
    acc.map(f32::round)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(layout: Layout, colour: Colour, size: usize) -> InputSpec {
        let channels = if colour == Colour::Grey { 1 } else { 3 };
        let shape = match layout {
            Layout::Nchw => vec![1, channels, size, size],
            Layout::Nhwc => vec![1, size, size, channels],
        };
        InputSpec {
            name: "input".into(),
            shape,
            layout,
            colour,
            mean: vec![127.5; channels],
            std: vec![127.5; channels],
        }
    }

    fn frame_2x2() -> Frame {
        let mut frame = Frame::with_capacity(2, 2);
        frame.resize(2, 2).copy_from_slice(&[
            255, 0, 0, /**/ 0, 255, 0, //
            0, 0, 255, /**/ 255, 255, 255,
        ]);
        frame
    }

    #[test]
    fn identity_map_copies_pixels_in_each_layout() {
        let frame = frame_2x2();
        let mut nchw = vec![0.0; 12];
        sample_into(
            &frame,
            &Affine::IDENTITY,
            &spec(Layout::Nchw, Colour::Rgb, 2),
            Border::Black,
            &mut nchw,
        );
        // Red plane: 255, 0, 0, 255 -> 1, -1, -1, 1.
        assert_eq!(&nchw[..4], &[1.0, -1.0, -1.0, 1.0]);
        let mut nhwc = vec![0.0; 12];
        sample_into(
            &frame,
            &Affine::IDENTITY,
            &spec(Layout::Nhwc, Colour::Bgr, 2),
            Border::Black,
            &mut nhwc,
        );
        // First pixel red, as BGR: -1, -1, 1.
        assert_eq!(&nhwc[..3], &[-1.0, -1.0, 1.0]);
    }

    #[test]
    fn grey_uses_luma_and_padding_is_black() {
        let frame = frame_2x2();
        let mut grey = vec![0.0; 4];
        sample_into(
            &frame,
            &Affine::IDENTITY,
            &spec(Layout::Nchw, Colour::Grey, 2),
            Border::Black,
            &mut grey,
        );
        let red: f32 = (0.299 * 255.0 - 127.5) / 127.5;
        assert!((grey[0] - red).abs() < 1e-5, "{grey:?}");
        assert!((grey[3] - 1.0).abs() < 1e-5, "{grey:?}");
        // Shift the map so that the tensor's left column falls outside the frame: black (-1).
        let shifted = Affine {
            c: -2.0,
            ..Affine::IDENTITY
        };
        sample_into(
            &frame,
            &shifted,
            &spec(Layout::Nchw, Colour::Grey, 2),
            Border::Black,
            &mut grey,
        );
        assert_eq!(grey[0], -1.0);
        // Replicated, the left column repeats the frame's left edge: red and blue -> luma.
        sample_into(
            &frame,
            &shifted,
            &spec(Layout::Nchw, Colour::Grey, 2),
            Border::Replicate,
            &mut grey,
        );
        assert!((grey[0] - red).abs() < 1e-5, "{grey:?}");
    }

    #[test]
    fn upsampling_interpolates_between_pixels() {
        // Red 0 then 100 across a 2x2 frame (both rows alike), sampled every quarter pixel:
        // tensor pixel u takes the frame at x = u / 4.
        let mut frame = Frame::with_capacity(2, 2);
        frame
            .resize(2, 2)
            .copy_from_slice(&[0, 0, 0, 100, 0, 0, 0, 0, 0, 100, 0, 0]);
        let quarter = Affine {
            a: 0.25,
            e: 0.25,
            ..Affine::IDENTITY
        };
        let mut tensor = vec![0.0; 4 * 4 * 3];
        sample_into(
            &frame,
            &quarter,
            &spec(Layout::Nchw, Colour::Rgb, 4),
            Border::Black,
            &mut tensor,
        );
        let red: Vec<f32> = tensor[..4]
            .iter()
            .map(|v| (v * 127.5 + 127.5).round())
            .collect();
        assert_eq!(red, vec![0.0, 25.0, 50.0, 75.0]);
    }
}
