//! The zero-padded, stride-split scratch planes that the convolutions sum shifted rows of.

use crate::Window;

/// The scratch of a KxK convolution: input plane `i`'s phase `(py, px)` (its padded rows
/// `py, py + S, ...` and columns `px, px + S, ...`) is a `height` by `width` plane at
/// `(i * S * S + py * S + px) * height * width`. Output pixel `(y, x)`'s tap `(ky, kx)` is
/// phase `(ky % S, kx % S)`'s pixel `(y + ky / S, x + kx / S)`; the outputs are computed at
/// `width` per row, so that pixel is the output position plus a fixed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Phases {
    pub window: Window,
    pub height: usize,
    pub width: usize,
}

impl Phases {
    pub fn new(window: Window) -> Phases {
        let [kh, kw] = window.kernel;
        let [sy, sx] = window.stride;
        let [oh, ow] = window.output;
        Phases {
            height: oh + (kh - 1) / sy,
            width: ow + (kw - 1) / sx,
            window,
        }
    }

    /// Length of one input plane's phases.
    pub fn plane_len(&self) -> usize {
        self.window.stride[0] * self.window.stride[1] * self.height * self.width
    }

    /// Whether each tap (row-major) reads the input for some output pixel: a tap that reads
    /// only padding adds nothing. dlib's last 3x3 convolution pads a 1x1 plane: eight of its
    /// nine taps are padding (8/9 of the layer's 2.4 MB of weights and of its products).
    pub fn live_taps(&self) -> Vec<bool> {
        let live = |axis: usize, k: usize| {
            let window = &self.window;
            (0..window.output[axis]).any(|o| {
                (o * window.stride[axis] + k)
                    .checked_sub(window.pad[axis])
                    .is_some_and(|i| i < window.input[axis])
            })
        };
        let [kh, kw] = self.window.kernel;
        (0..kh)
            .flat_map(|ky| (0..kw).map(move |kx| (ky, kx)))
            .map(|(ky, kx)| live(0, ky) && live(1, kx))
            .collect()
    }

    /// Scratch offsets of every (input plane, live tap), in tract's order; `live` is
    /// [`Phases::live_taps`].
    pub fn offsets(&self, inputs: usize, live: &[bool]) -> Vec<usize> {
        let [kh, kw] = self.window.kernel;
        let [sy, sx] = self.window.stride;
        let mut offsets = Vec::with_capacity(inputs * kh * kw);
        for i in 0..inputs {
            for ky in 0..kh {
                for kx in (0..kw).filter(|&kx| live[ky * kw + kx]) {
                    let phase = (i * sy + ky % sy) * sx + kx % sx;
                    let shift = (ky / sy) * self.width + kx / sx;
                    offsets.push(phase * self.height * self.width + shift);
                }
            }
        }
        offsets
    }

    /// The scratch for `inputs` planes: every phase of every plane, zero where the padding is.
    /// Past the last phase, room for `computed` outputs per plane, which read beyond their
    /// rows (past the output's columns) and planes (the sums of pixels past the plane's): their
    /// sums are dropped.
    pub fn fill(&self, inputs: usize, input: &[f32], computed: usize) -> Vec<f32> {
        let [h, w] = self.window.input;
        let plane_len = self.plane_len();
        let reach = self.offsets(
            1,
            &vec![true; self.window.kernel[0] * self.window.kernel[1]],
        );
        let reach = reach.iter().max().map_or(0, |&offset| offset + computed);
        let mut scratch = vec![0.0; (inputs - 1) * plane_len + reach.max(plane_len)];
        let planes = input.chunks_exact(h * w);
        for (plane, phases) in planes.zip(scratch.chunks_exact_mut(plane_len)) {
            self.fill_plane(plane, phases);
        }
        scratch
    }

    /// One input plane's phases into `phases` (at least [`Phases::plane_len`] long). Only the
    /// input's pixels are written, the same ones for every plane: a scratch zeroed once keeps
    /// its padding through any number of planes.
    pub fn fill_plane(&self, plane: &[f32], phases: &mut [f32]) {
        let [h, w] = self.window.input;
        let [kh, kw] = self.window.kernel;
        let [sy, sx] = self.window.stride;
        let [top, left] = self.window.pad;
        let phase_len = self.height * self.width;
        for (y, source) in plane[..h * w].chunks_exact(w).enumerate() {
            // Input row y is padded row y + top: phase row (y + top) % sy, its row r.
            let (py, r) = ((y + top) % sy, (y + top) / sy);
            if r >= self.height {
                break;
            }
            // A phase of rows no tap reads (a 1x1 kernel's odd rows, stride 2).
            if py >= kh {
                continue;
            }
            // Input column x is padded column x + left: phase (x + left) % sx, its column
            // (x + left) / sx. Each phase's row of row y: where it starts, its first input
            // column and how many of its columns the input fills.
            let row_of = |x: usize| {
                let phase = py * sx + (x + left) % sx;
                let column = (x + left) / sx;
                let count = (w - x).div_ceil(sx).min(self.width.saturating_sub(column));
                (phase * phase_len + r * self.width + column, count)
            };
            if sx == 1 {
                let (at, count) = row_of(0);
                copy_row(&mut phases[at..][..count], &source[..count]);
                continue;
            }
            if kw == 1 {
                // A 1x1 kernel reads the even columns' phase alone.
                let (at, count) = row_of(0);
                let pairs = source.chunks(2);
                for (e, pair) in phases[at..][..count].iter_mut().zip(pairs) {
                    *e = pair[0];
                }
                continue;
            }
            // Stride 2: the row's even and odd columns go to two phases, split in one pass
            // (2.4x faster than reading every other value twice, on Iris's 64x32x32).
            let [(even_at, evens), (odd_at, odds)] =
                [0, 1].map(|x| if x < w { row_of(x) } else { (0, 0) });
            let (even, odd) = if even_at < odd_at {
                let (low, high) = phases.split_at_mut(odd_at);
                (&mut low[even_at..][..evens], &mut high[..odds])
            } else {
                let (low, high) = phases.split_at_mut(even_at);
                (&mut high[..evens], &mut low[odd_at..][..odds])
            };
            let pairs = source.chunks_exact(2);
            for ((e, o), pair) in even.iter_mut().zip(odd.iter_mut()).zip(pairs) {
                (*e, *o) = (pair[0], pair[1]);
            }
            // What the pairs left: the last even column of an odd width, or columns of one
            // phase past the other's reach.
            let paired = evens.min(odds).min(w / 2);
            for (k, e) in even.iter_mut().enumerate().skip(paired) {
                *e = source[2 * k];
            }
            for (k, o) in odd.iter_mut().enumerate().skip(paired) {
                *o = source[2 * k + 1];
            }
            // What the pairs left: the last even column of an odd width, or columns of one
            // phase past the other's reach.
            for k in paired..evens {
                even[k] = source[2 * k];
            }
            for k in paired..odds {
                odd[k] = source[2 * k + 1];
            }
        }
    }
}

/// `to.copy_from_slice(from)` for the short rows of the scratch and the outputs (3 to 100
/// values): in fixed-size pieces that compile to a few vector moves, the last one overlapping
/// the one before, where `copy_from_slice` calls `memmove` (a call per row cost more than
/// the copy: a 56x56x64 depthwise layer copies 7,168 rows).
#[inline(always)]
pub(crate) fn copy_row(to: &mut [f32], from: &[f32]) {
    #[inline(always)]
    fn pieces<const N: usize>(to: &mut [f32], from: &[f32]) {
        let len = to.len();
        let mut at = 0;
        while at < len {
            let start = at.min(len - N);
            let piece: [f32; N] = from[start..][..N].try_into().expect("N");
            to[start..][..N].copy_from_slice(&piece);
            at += N;
        }
    }
    assert_eq!(to.len(), from.len());
    match to.len() {
        16.. => pieces::<16>(to, from),
        8.. => pieces::<8>(to, from),
        4.. => pieces::<4>(to, from),
        _ => {
            for (t, &f) in to.iter_mut().zip(from) {
                *t = f;
            }
        }
    }
}
