//! The zero-padded, stride-split scratch planes that the convolutions sum shifted rows of.

use crate::Window;

/// The largest stride whose phases [`Phases::fill_plane`] splits (1 or 2: these networks').
pub(crate) const MAX_STRIDE: usize = 2;

/// The scratch of a KxK convolution: input plane `i`'s phase `(py, px)` (its padded rows
/// `py, py + S, ...` and columns `px, px + S, ...`) is a `height` by `width` plane at
/// `(i * S * S + py * S + px) * height * width`. Output pixel `(y, x)`'s tap `(ky, kx)` is
/// phase `(ky % S, kx % S)`'s pixel `(y + ky / S, x + kx / S)`; the outputs are computed at
/// `width` per row, so that pixel is the output position plus a fixed offset. At stride 1 the
/// rows share their padding columns: padded column `c` of row `r` is at `r * width + c`, the
/// columns before the input's in the row above's zeros.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Phases {
    pub window: Window,
    pub height: usize,
    pub width: usize,
    /// Where [`Phases::fill_plane`] copies each input row that a tap reads.
    rows: Vec<RowCopy>,
}

/// An input row's place in its plane's phases: its even columns (every column, at stride 1)
/// go to `evens` values at `even_at`, its odd ones to `odds` values at `odd_at` (stride 2).
/// Worked out once: per row, at fill time, the divisions by the stride and the padding's
/// arithmetic were most of a stride-2 max pool's time (56 rows a plane on face-api's).
#[derive(Debug, Clone, PartialEq, Eq)]
struct RowCopy {
    y: usize,
    even_at: usize,
    evens: usize,
    odd_at: usize,
    odds: usize,
}

impl Phases {
    pub fn new(window: Window) -> Phases {
        let [kh, kw] = window.kernel;
        let [sy, sx] = window.stride;
        let [oh, ow] = window.output;
        let [h, w] = window.input;
        let [top, left] = window.pad;
        let height = oh + (kh - 1) / sy;
        // At stride 1 a row's padding on the right is the next row's on the left: each row is
        // its input row and as many zeros as the wider side's padding (the columns a row's
        // last taps read past the input, and its next row's first taps before it), instead of
        // both sides' (dlib's 17x17 planes: rows of 18 instead of 19; the panels sum every
        // column of a row, the output's and the rest).
        let width = if sx == 1 {
            (left + w).max((ow + kw - 1).saturating_sub(left)).max(ow)
        } else {
            ow + (kw - 1) / sx
        };
        let phase_len = height * width;
        let rows = (0..h)
            .filter_map(|y| {
                // Input row y is padded row y + top: phase row (y + top) % sy, its row r;
                // rows past the phases' and phases of rows no tap reads (a 1x1 kernel's odd
                // rows, stride 2) are not copied.
                let (py, r) = ((y + top) % sy, (y + top) / sy);
                if r >= height || py >= kh {
                    return None;
                }
                // Input column x is padded column x + left: phase (x + left) % sx, its
                // column (x + left) / sx. Where the row's part in the phase of column x
                // starts, and how many of its columns the input fills.
                let part = |x: usize| {
                    if x >= w || (sx > 1 && kw == 1 && x > 0) {
                        // No such column; a 1x1 kernel reads the even columns' phase alone.
                        return (0, 0);
                    }
                    let phase = py * sx + (x + left) % sx;
                    let column = (x + left) / sx;
                    let count = (w - x).div_ceil(sx).min(width.saturating_sub(column));
                    (phase * phase_len + r * width + column, count)
                };
                let ((even_at, evens), (odd_at, odds)) = (part(0), part(1));
                let odd = if sx == 1 { (0, 0) } else { (odd_at, odds) };
                Some(RowCopy {
                    y,
                    even_at,
                    evens,
                    odd_at: odd.0,
                    odds: odd.1,
                })
            })
            .collect();
        Phases {
            height,
            width,
            rows,
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
        let mut scratch = vec![0.0; self.scratch_len(inputs, computed)];
        self.fill_planes(input, &mut scratch);
        scratch
    }

    /// The length of [`Phases::fill`]'s scratch.
    pub fn scratch_len(&self, inputs: usize, computed: usize) -> usize {
        (inputs - 1) * self.plane_len() + self.reach(computed)
    }

    /// Each input plane of `input` into its phases in `scratch` ([`Phases::fill_plane`]): a
    /// scratch zeroed once, or last filled by these phases, keeps its padding.
    pub fn fill_planes(&self, input: &[f32], scratch: &mut [f32]) {
        let [h, w] = self.window.input;
        let planes = input.chunks_exact(h * w);
        for (plane, phases) in planes.zip(scratch.chunks_exact_mut(self.plane_len())) {
            self.fill_plane(plane, phases);
        }
    }

    /// One input plane's phases into `phases` (at least [`Phases::plane_len`] long). Only the
    /// input's pixels are written, the same ones for every plane: a scratch zeroed once keeps
    /// its padding through any number of planes.
    #[inline(always)]
    pub fn fill_plane(&self, plane: &[f32], phases: &mut [f32]) {
        let [h, w] = self.window.input;
        let plane = &plane[..h * w];
        for row in &self.rows {
            let source = &plane[row.y * w..][..w];
            if row.odds == 0 {
                if self.window.stride[1] == 1 {
                    copy_row(
                        &mut phases[row.even_at..][..row.evens],
                        &source[..row.evens],
                    );
                } else {
                    let evens = phases[row.even_at..][..row.evens].iter_mut();
                    for (e, pair) in evens.zip(source.chunks(2)) {
                        *e = pair[0];
                    }
                }
                continue;
            }
            // Stride 2: the row's even and odd columns go to two phases, split in one pass
            // (2.4x faster than reading every other value twice, on Iris's 64x32x32).
            let (even, odd) = if row.even_at < row.odd_at {
                let (low, high) = phases.split_at_mut(row.odd_at);
                (&mut low[row.even_at..][..row.evens], &mut high[..row.odds])
            } else {
                let (low, high) = phases.split_at_mut(row.even_at);
                (&mut high[..row.evens], &mut low[row.odd_at..][..row.odds])
            };
            let paired = row.evens.min(row.odds).min(w / 2);
            let pairs = source[..2 * paired].chunks_exact(2);
            for ((e, o), pair) in even[..paired].iter_mut().zip(&mut odd[..paired]).zip(pairs) {
                (*e, *o) = (pair[0], pair[1]);
            }
            // What the pairs left: the last even column of an odd width, or columns of one
            // phase past the other's reach.
            for k in paired..row.evens {
                even[k] = source[2 * k];
            }
            for k in paired..row.odds {
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

/// What a [`PlaneRun`] does at each tap: `vector` (the values so far of a vector of output
/// pixels) with `pixels`, the scratch at the tap's offset from them, and the tap's own value
/// (a weight, or nothing), taken once per tap for all the vectors. Each implementation loops
/// over the lanes itself, the form the compiler vectorises; the first form of this, a closure
/// of one value called per lane, was left scalar (depthwise layers 3.5-4x slower).
pub(crate) trait TapStep {
    type Tap: Copy;
    fn tap(&self, tap: usize) -> Self::Tap;
    fn step(&self, vector: &mut [f32; LANES], tap: Self::Tap, pixels: [f32; LANES]);
}

/// One plane's output computed from its phases ([`Phases::fill_plane`]), vectors of
/// neighbouring output pixels: each vector `start`, then [`TapStep::step`] for each tap
/// (row-major). Output pixel `(y, x)` reads the scratch from position `y * width + x`.
///
/// On output rows of a vector or more, each row is covered by vectors written straight into
/// the output, the last one ending at the row's end (overlapping the one before it, where the
/// width is not a multiple of a vector: those pixels are computed twice, to the same values).
/// On narrower rows, the output is computed as one run of pixels at the scratch's width (whole
/// vectors of them, into a buffer), then the output's rows copied out of the run and the
/// columns past the output's dropped. The run computed every plane until round 15: its buffer,
/// written and then copied out, cost more than the vectors it saved on planes of 24x24 and up
/// (one layer alone, interleaved: 0.87-0.91x the time on 96x96, 48x48 and 64x64).
///
/// At stride 1 with a square kernel of 3 or 5, the vectors are stacks of [`STACK`] rows: the
/// scratch rows a stack's taps read are shared by its vectors (tap `(ky, kx)` of row `j` reads
/// what tap `(ky - 1, kx)` of row `j + 1` reads), each loaded once for all of them.
///
/// (Batches of small planes in one list of vectors, so that more sums are in flight, each
/// vector with its plane's weight: 1.06-1.6x the time on every shape, the weights no longer
/// loaded once per tap.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlaneRun {
    pub phases: Phases,
    /// Where each tap reads the scratch, from the output pixel's position.
    pub offsets: Vec<usize>,
    /// Where each vector of output pixels starts (the top one of a stack): in the scratch
    /// (before a tap's offset) and in the output (or the run's buffer).
    vectors: Vec<[usize; 2]>,
    /// Pixels of the run's buffer, or none when the vectors are written into the output.
    run: Option<usize>,
    /// Whether the vectors are stacks of [`STACK`] rows.
    stacked: bool,
}

/// Output rows computed together by a stack of vectors (see [`PlaneRun`]).
pub(crate) const STACK: usize = 8;

impl PlaneRun {
    pub fn new(window: Window) -> PlaneRun {
        let phases = Phases::new(window);
        let [kh, kw] = phases.window.kernel;
        let [oh, ow] = phases.window.output;
        let stacked = phases.window.stride == [1, 1]
            && kh == kw
            && matches!(kh, 3 | 5)
            && ow >= LANES
            && oh >= STACK;
        let (vectors, run) = if ow >= LANES {
            // Each row's vectors (the last one ending at the row's end), or each stack's, the
            // last stack ending at the last row.
            let (ys, last) = if stacked {
                ((0..oh).step_by(STACK), oh - STACK)
            } else {
                ((0..oh).step_by(1), oh - 1)
            };
            let row = |y: usize| {
                let y = y.min(last);
                let xs = (0..ow).step_by(LANES).map(move |x| x.min(ow - LANES));
                xs.map(move |x| [y * phases.width + x, y * ow + x])
            };
            (ys.flat_map(row).collect(), None)
        } else {
            let computed = (oh * phases.width).next_multiple_of(LANES);
            let starts = (0..computed).step_by(LANES).map(|x| [x, x]).collect();
            (starts, Some(computed))
        };
        PlaneRun {
            offsets: phases.offsets(1, &vec![true; kh * kw]),
            vectors,
            run,
            stacked,
            phases,
        }
    }

    /// A scratch for one plane's phases, `padding` everywhere (the padding's value).
    pub fn scratch(&self, padding: f32) -> Vec<f32> {
        vec![padding; self.scratch_len()]
    }

    /// The scratch every vector reads at every tap's offset.
    fn scratch_len(&self) -> usize {
        let below = if self.stacked {
            (STACK - 1) * self.phases.width
        } else {
            0
        };
        let computed = self.vectors.last().map_or(0, |&[at, _]| at + below + LANES);
        self.phases.reach(computed)
    }

    /// Where each stack of [`STACK`] vectors starts, in the scratch and in the output plane,
    /// if the vectors are stacks: a stride-1 KxK window, K = 3 or 5 (for the depthwise
    /// layers' AVX-512 kernel).
    #[cfg(target_arch = "x86_64")]
    pub fn stacks(&self) -> Option<&[[usize; 2]]> {
        self.stacked.then_some(&self.vectors[..])
    }

    /// A buffer for one run's values (empty when the vectors are written into the output).
    pub fn values(&self) -> Vec<f32> {
        vec![0.0; self.run.unwrap_or(0)]
    }

    /// The output plane `out` from `scratch` (a plane's phases), through `values` when the
    /// plane is computed as a run.
    #[inline(always)]
    pub fn compute(
        &self,
        scratch: &[f32],
        values: &mut [f32],
        out: &mut [f32],
        start: f32,
        step: &impl TapStep,
    ) {
        assert!(scratch.len() >= self.scratch_len(), "a PlaneRun::scratch");
        let target = if self.run.is_some() {
            &mut *values
        } else {
            &mut *out
        };
        if self.stacked {
            for &vector in &self.vectors {
                match self.phases.window.kernel[0] {
                    3 => self.stack::<3, _>(scratch, vector, target, start, step),
                    _ => self.stack::<5, _>(scratch, vector, target, start, step),
                }
            }
            return;
        }
        let mut vectors = &self.vectors[..];
        while !vectors.is_empty() {
            vectors = match vectors.len().min(VECTORS) {
                8 => self.vectors::<8, _>(scratch, vectors, target, start, step),
                4..=7 => self.vectors::<4, _>(scratch, vectors, target, start, step),
                2 | 3 => self.vectors::<2, _>(scratch, vectors, target, start, step),
                _ => self.vectors::<1, _>(scratch, vectors, target, start, step),
            };
        }
        if self.run.is_none() {
            return;
        }
        let [_, ow] = self.phases.window.output;
        for (to, from) in out
            .chunks_exact_mut(ow)
            .zip(values.chunks(self.phases.width))
        {
            copy_row(to, &from[..ow]);
        }
    }

    /// The first V of `vectors` into `target`; returns the vectors left.
    #[inline(always)]
    fn vectors<'v, const V: usize, S: TapStep>(
        &self,
        scratch: &[f32],
        vectors: &'v [[usize; 2]],
        target: &mut [f32],
        start: f32,
        step: &S,
    ) -> &'v [[usize; 2]] {
        let (these, rest) = vectors.split_at(V);
        let starts: [usize; V] = std::array::from_fn(|j| these[j][0]);
        let mut sums = [[start; LANES]; V];
        for (tap, &offset) in self.offsets.iter().enumerate() {
            let tap = step.tap(tap);
            for (sum, &at) in sums.iter_mut().zip(&starts) {
                // SAFETY: `compute` checked that the scratch holds every vector's pixels at
                // every tap's offset.
                let pixels = unsafe {
                    scratch
                        .as_ptr()
                        .add(offset + at)
                        .cast::<[f32; LANES]>()
                        .read_unaligned()
                };
                step.step(sum, tap, pixels);
            }
        }
        for (sum, &[_, to]) in sums.iter().zip(these) {
            target[to..][..LANES].copy_from_slice(sum);
        }
        rest
    }

    /// The stack of [`STACK`] vectors from `at` in the scratch (`to` in `target`), of a
    /// stride-1 KxK window: each scratch row its taps read loaded once, and stepped into the
    /// sums of every row whose taps read it (tap `(ky, kx)` of the stack's row `j` reads the
    /// scratch's row `j + ky`), each row's taps in order.
    #[inline(always)]
    fn stack<const K: usize, S: TapStep>(
        &self,
        scratch: &[f32],
        [at, to]: [usize; 2],
        target: &mut [f32],
        start: f32,
        step: &S,
    ) {
        let width = self.phases.width;
        let taps: [[S::Tap; K]; K] =
            std::array::from_fn(|ky| std::array::from_fn(|kx| step.tap(ky * K + kx)));
        let mut sums = [[start; LANES]; STACK];
        for row in 0..STACK + K - 1 {
            for (kx, _) in taps[0].iter().enumerate() {
                // SAFETY: `compute` checked that the scratch holds the stack's last row at the
                // last tap's offset.
                let pixels = unsafe {
                    scratch
                        .as_ptr()
                        .add(at + row * width + kx)
                        .cast::<[f32; LANES]>()
                        .read_unaligned()
                };
                for (j, sum) in sums.iter_mut().enumerate() {
                    if let Some(taps) = row.checked_sub(j).and_then(|ky| taps.get(ky)) {
                        step.step(sum, taps[kx], pixels);
                    }
                }
            }
        }
        let [_, ow] = self.phases.window.output;
        for (j, sum) in sums.iter().enumerate() {
            target[to + j * ow..][..LANES].copy_from_slice(sum);
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
