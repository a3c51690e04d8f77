//! Small planes computed a vector of channels at a time (AVX-512): [`LANES`] channels' planes
//! gathered pixel by pixel into one padded scratch (a vector per pixel), each output pixel's
//! vector computed from the scratch's at the window's taps, and scattered back to the
//! channels' planes. On planes narrower than a vector the plane-by-plane kernels pay a scratch
//! fill, a run of mostly padding and a copy out per plane for a few dozen pixels (a 6x6 plane
//! of BlazeFace's 384: about 300 cycles); here the gathers and scatters replace the transposed
//! copies a channel-last kernel needs. The depthwise layers use it; the max pools did not gain
//! (face-api's and FER's 3x3 stride-2 pools on 14x14 to 30x30 inputs: 0.76-1.14x the time,
//! the gathers of four input pixels per output outweighing the phases' set-up).

use crate::phases::LANES;
use crate::Window;

/// Where a window's taps read a padded copy of a plane, a vector of channels per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ByChannel {
    pub window: Window,
    /// The scratch's width and height (the padded input, as far as the taps read).
    width: usize,
    height: usize,
    /// The scratch's pixels inside the input, with the input pixel each holds.
    inside: Vec<[usize; 2]>,
    /// Where each tap reads the scratch, from its output pixel's first tap (row-major).
    offsets: Vec<usize>,
}

impl ByChannel {
    /// The window's geometry, if `channels` fill a vector and its output planes are narrower
    /// than one, on a CPU with AVX-512 (the portable kernels' vectors are a plane's pixels).
    pub fn of(window: &Window, channels: usize) -> Option<ByChannel> {
        if channels < LANES || window.output[1] >= LANES || !crate::by_channel_available() {
            return None;
        }
        let [h, w] = window.input;
        let [oh, ow] = window.output;
        let [kh, kw] = window.kernel;
        let [sy, sx] = window.stride;
        let [top, left] = window.pad;
        let (height, width) = ((oh - 1) * sy + kh, (ow - 1) * sx + kw);
        let inside = (0..height)
            .flat_map(|y| (0..width).map(move |x| (y, x)))
            .filter_map(|(y, x)| {
                let (iy, ix) = (y.checked_sub(top)?, x.checked_sub(left)?);
                (iy < h && ix < w).then_some([y * width + x, iy * w + ix])
            })
            .collect();
        Some(ByChannel {
            window: window.clone(),
            width,
            height,
            inside,
            offsets: (0..kh)
                .flat_map(|ky| (0..kw).map(move |kx| ky * width + kx))
                .collect(),
        })
    }

    /// The taps a window has (row-major).
    pub fn taps(&self) -> usize {
        self.offsets.len()
    }
}

/// What an output vector of channels is: `start` (per block of [`LANES`] channels), then
/// `step` with each tap's pixels in the window's order.
#[cfg(target_arch = "x86_64")]
pub(crate) trait ChannelStep {
    /// The value the scratch's padding holds.
    const PADDING: f32;
    unsafe fn start(&self, block: usize) -> std::arch::x86_64::__m512;
    unsafe fn step(
        &self,
        block: usize,
        tap: usize,
        value: std::arch::x86_64::__m512,
        pixels: std::arch::x86_64::__m512,
    ) -> std::arch::x86_64::__m512;
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;

    use super::{ByChannel, ChannelStep, LANES};

    /// Every output plane of `channels` from `input` (both channels first), [`LANES`]
    /// channels at a time, each output vector `step.start` then `step.step` per tap.
    #[target_feature(enable = "avx512f")]
    pub(crate) fn compute<S: ChannelStep>(
        geometry: &ByChannel,
        channels: usize,
        input: &[f32],
        output: &mut [f32],
        step: &S,
    ) {
        let window = &geometry.window;
        let ([h, w], [oh, ow]) = (window.input, window.output);
        let [sy, sx] = window.stride;
        let width = geometry.width;
        assert!(input.len() == channels * h * w && output.len() == channels * oh * ow);
        let mut scratch = vec![S::PADDING; geometry.height * width * LANES];
        let reach = geometry.offsets.iter().max().map_or(0, |&o| o);
        assert!(((oh - 1) * sy * width + (ow - 1) * sx + reach + 1) * LANES <= scratch.len());
        let inside = |&[at, pixel]: &[usize; 2]| (at + 1) * LANES <= scratch.len() && pixel < h * w;
        assert!(geometry.inside.iter().all(inside));
        let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        // Lane c's value of a pixel, in planes of `len` pixels.
        let plane_offsets = |len: usize| _mm512_mullo_epi32(lanes, _mm512_set1_epi32(len as i32));
        let (input_planes, output_planes) = (plane_offsets(h * w), plane_offsets(oh * ow));
        for block in (0..channels).step_by(LANES) {
            let live = (u32::MAX >> (32 - (channels - block).min(LANES))) as __mmask16;
            // SAFETY (gathers and scatters): the live lanes are channels below `channels`, their
            // pixels inside their planes (checked above); the scratch holds every pixel read.
            for &[at, pixel] in &geometry.inside {
                unsafe {
                    let base = input.as_ptr().add(block * h * w + pixel);
                    let values = _mm512_mask_i32gather_ps::<4>(
                        _mm512_set1_ps(S::PADDING),
                        live,
                        input_planes,
                        base,
                    );
                    _mm512_storeu_ps(scratch.as_mut_ptr().add(at * LANES), values);
                }
            }
            for oy in 0..oh {
                for ox in 0..ow {
                    let first = oy * sy * width + ox * sx;
                    unsafe {
                        let mut value = step.start(block);
                        for (t, &offset) in geometry.offsets.iter().enumerate() {
                            let at = scratch.as_ptr().add((first + offset) * LANES);
                            value = step.step(block, t, value, _mm512_loadu_ps(at));
                        }
                        let base = output.as_mut_ptr().add(block * oh * ow + oy * ow + ox);
                        _mm512_mask_i32scatter_ps::<4>(base, live, output_planes, value);
                    }
                }
            }
        }
    }
}
