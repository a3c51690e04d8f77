//! The zero-padded, stride-split scratch planes that the convolutions sum shifted rows of.

use crate::Window;

/// The largest stride whose phases [`Phases::fill_plane`] splits (1 or 2: these networks').
pub(crate) const MAX_STRIDE: usize = 2;

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
        let mut offsets = Vec::with_capacity(inputs * kh * kw);
        for i in 0..inputs {
            for ky in 0..kh {
                for kx in (0..kw).filter(|&kx| live[ky * kw + kx]) {
                    offsets.push(i * self.plane_len() + self.tap_offset(ky, kx));
                }
            }
        }
        offsets
    }

    /// Where tap `(ky, kx)` reads one plane's phases, from the output pixel's position.
    fn tap_offset(&self, ky: usize, kx: usize) -> usize {
        let [sy, sx] = self.window.stride;
        let phase = (ky % sy) * sx + kx % sx;
        phase * self.height * self.width + (ky / sy) * self.width + kx / sx
    }

    /// The length of scratch one plane's taps read for `computed` output pixels (past the
    /// output's columns and its last pixel: their values are dropped), and at least its phases.
    pub fn reach(&self, computed: usize) -> usize {
        let [kh, kw] = self.window.kernel;
        let taps = (0..kh).flat_map(|ky| (0..kw).map(move |kx| (ky, kx)));
        let last = taps.map(|(ky, kx)| self.tap_offset(ky, kx)).max();
        last.map_or(0, |offset| offset + computed)
            .max(self.plane_len())
    }

    /// The scratch for `inputs` planes: every phase of every plane, zero where the padding is.
    /// Past the last phase, room for `computed` outputs per plane, which read beyond their
    /// rows (past the output's columns) and planes (the sums of pixels past the plane's): their
    /// sums are dropped.
    pub fn fill(&self, inputs: usize, input: &[f32], computed: usize) -> Vec<f32> {
        let [h, w] = self.window.input;
        let plane_len = self.plane_len();
        let mut scratch = vec![0.0; (inputs - 1) * plane_len + self.reach(computed)];
        let planes = input.chunks_exact(h * w);
        for (plane, phases) in planes.zip(scratch.chunks_exact_mut(plane_len)) {
            self.fill_plane(plane, phases);
        }
        scratch
    }

    /// One input plane's phases into `phases` (at least [`Phases::plane_len`] long). Only the
    /// input's pixels are written, the same ones for every plane: a scratch zeroed once keeps
    /// its padding through any number of planes.
    #[inline(always)]
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
            // (Not `[0, 1].map(..)`: its call was not inlined, 30% of a max pool's time.)
            let (even_at, evens) = row_of(0);
            let (odd_at, odds) = if w > 1 { row_of(1) } else { (0, 0) };
            let (even, odd) = if even_at < odd_at {
                let (low, high) = phases.split_at_mut(odd_at);
                (&mut low[even_at..][..evens], &mut high[..odds])
            } else {
                let (low, high) = phases.split_at_mut(even_at);
                (&mut high[..evens], &mut low[odd_at..][..odds])
            };
            let paired = evens.min(odds).min(w / 2);
            let pairs = source[..2 * paired].chunks_exact(2);
            for ((e, o), pair) in even[..paired].iter_mut().zip(&mut odd[..paired]).zip(pairs) {
                (*e, *o) = (pair[0], pair[1]);
            }
            // What the pairs left: the last even column of an odd width, or columns of one
            // phase past the other's reach.
            for k in paired..evens {
                even[k] = source[2 * k];
            }
            for k in paired..odds {
                odd[k] = source[2 * k + 1];
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

/// Neighbouring output pixels computed together: one 512-bit vector, two 256-bit ones.
pub(crate) const LANES: usize = 16;

/// Vectors of pixels computed together at most: independent chains, so that each step need
/// not wait for the one before it (8 rather than 4: 0.85-0.94x the time of a depthwise layer on
/// planes of 48x48 and up).
const VECTORS: usize = 8;

/// What a [`PlaneRun`] does at each tap: `vectors` (the values so far of V vectors of output
/// pixels) with `pixels`, the scratch at the tap's offset from them (V vectors). Each
/// implementation converts each vector of `pixels` into an array first and loops over its
/// lanes itself, the form the compiler vectorises; the first form of this, a closure of one
/// value called per lane, was left scalar (depthwise layers 3.5-4x slower).
pub(crate) trait TapStep {
    fn step<const V: usize>(&self, vectors: &mut [[f32; LANES]; V], tap: usize, pixels: &[f32]);
}

/// One plane's output computed from its phases ([`Phases::fill_plane`]) as one run of pixels at
/// the scratch's width, whole vectors of them: each vector `start`, then [`TapStep::step`] for
/// each tap (row-major). Then the output's rows copied out of the run, the columns past the
/// output's dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlaneRun {
    pub phases: Phases,
    /// Where each tap reads the scratch, from the output pixel's position.
    pub offsets: Vec<usize>,
    /// Pixels computed: the output's rows at the scratch's width, in whole vectors.
    computed: usize,
}

impl PlaneRun {
    pub fn new(window: Window) -> PlaneRun {
        let phases = Phases::new(window);
        let [kh, kw] = phases.window.kernel;
        let [oh, _] = phases.window.output;
        PlaneRun {
            offsets: phases.offsets(1, &vec![true; kh * kw]),
            computed: (oh * phases.width).next_multiple_of(LANES),
            phases,
        }
    }

    /// A scratch for one plane's phases, `padding` everywhere (the padding's value).
    pub fn scratch(&self, padding: f32) -> Vec<f32> {
        vec![padding; self.phases.reach(self.computed)]
    }

    /// A buffer for one run's values.
    pub fn values(&self) -> Vec<f32> {
        vec![0.0; self.computed]
    }

    /// The run's `values` from `scratch` (a plane's phases), then the output plane `out`.
    #[inline(always)]
    pub fn compute(
        &self,
        scratch: &[f32],
        values: &mut [f32],
        out: &mut [f32],
        start: f32,
        step: &impl TapStep,
    ) {
        let mut first = 0;
        while first < values.len() {
            let vectors = (values.len() - first) / LANES;
            let run = &mut values[first..];
            first += match vectors.min(VECTORS) {
                8 => self.vectors::<8>(scratch, first, run, start, step),
                4..=7 => self.vectors::<4>(scratch, first, run, start, step),
                2 | 3 => self.vectors::<2>(scratch, first, run, start, step),
                _ => self.vectors::<1>(scratch, first, run, start, step),
            };
        }
        let [_, ow] = self.phases.window.output;
        for (to, from) in out
            .chunks_exact_mut(ow)
            .zip(values.chunks(self.phases.width))
        {
            copy_row(to, &from[..ow]);
        }
    }

    /// V vectors of the run from pixel `first` into `values`; returns the pixels computed.
    #[inline(always)]
    fn vectors<const V: usize>(
        &self,
        scratch: &[f32],
        first: usize,
        values: &mut [f32],
        start: f32,
        step: &impl TapStep,
    ) -> usize {
        let mut vectors = [[start; LANES]; V];
        for (tap, &offset) in self.offsets.iter().enumerate() {
            step.step(&mut vectors, tap, &scratch[offset + first..][..V * LANES]);
        }
        values[..V * LANES].copy_from_slice(vectors.as_flattened());
        V * LANES
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
