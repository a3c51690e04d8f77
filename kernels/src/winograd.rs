//! Dense 3x3 convolutions of stride 1, padded by one pixel on every side (the ResNets' layers),
//! by Winograd's minimal filtering F(2x2, 3x3) (Lavin and Gray, "Fast Algorithms for
//! Convolutional Neural Networks", 2016): each 2x2 tile of output pixels is computed from the
//! 4x4 tile of padded input under it, transformed (`V = Bᵀ d B`, additions only), as 16
//! products with the transformed filter (`U = G g Gᵀ`, made once) and transformed back
//! (`Y = Aᵀ (U ⊙ V) A`, additions only): 16 multiply-adds per input channel for four output
//! pixels instead of 36. Over the channels, each of the 16 positions of the transformed tile is
//! a matrix product (output channels by input channels, times the tiles), which the panels
//! compute as a 1x1 convolution of the transformed tiles' planes.
//!
//! The values are not tract's to the bit: the transforms round sums of their own, within 2e-6
//! of the output's range on the tests' layers. In the models (tests/model_parity.rs, which
//! allows 1e-3 of the range against the original framework) dlib's embedding is within 4e-7 of
//! the reference's range, age_v1's probabilities within 5.5e-6. The portable transforms and
//! products compute the same values as the AVX-512 ones: ARM and x86-64 agree.
//!
//! Every transform runs over a plane's tiles as one run of vectors: the input planes are split
//! into their even and odd rows and columns (the phases of a 4x4 window of stride 2), so that
//! each of a tile's 16 input pixels is at a fixed offset from the tile's place in the phases,
//! and the tiles are laid out at the phases' width (one column of tiles past the output's,
//! computed and dropped).

use std::cell::RefCell;
use std::sync::Arc;

use crate::panels::Conv2dPanels;
use crate::phases::Phases;
use crate::Window;

/// Tiles per vector of the transforms' runs (one 512-bit vector).
const LANES: usize = 16;

/// The positions of a transformed tile, each a matrix product.
const POSITIONS: usize = 16;

/// `G`, the filter's transform: `U = G g Gᵀ`.
const G: [[f64; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];

/// A 3x3 convolution of stride 1 computed by F(2x2, 3x3) (the module's doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Winograd {
    inputs: usize,
    outputs: usize,
    /// The input planes padded and split into their even and odd rows and columns: phase
    /// `(py, px)` of input plane `i` holds padded pixel `(2r + py, 2c + px)` at `(r, c)`, so
    /// that tile `(ty, tx)`'s input pixel `(2 dy + py, 2 dx + px)` is at `(ty + dy, tx + dx)`.
    phases: Phases,
    /// Output height and width.
    output: [usize; 2],
    /// Transformed values per plane: the tiles' rows at the phases' width, to whole vectors.
    tiles: usize,
    /// The matrix products of the 16 positions of a transformed tile (row-major), each a 1x1
    /// convolution of the transformed input planes of `tiles` values.
    products: Arc<Vec<Conv2dPanels>>,
}

impl Winograd {
    /// Whether a convolution of `window` is computed here: 3x3, stride 1, one pixel of padding
    /// on every side (the output's plane the input's), every side of it at least `min_side`.
    pub fn covers(window: &Window, min_side: usize) -> bool {
        window.kernel == [3, 3]
            && window.stride == [1, 1]
            && window.pad == [1, 1]
            && window.output == window.input
            && window.output.iter().all(|&side| side >= min_side)
    }

    /// The convolution of `window` (which it [`covers`](Self::covers)) from `inputs` to
    /// `outputs` channels, with tract's OIHW `weights`.
    pub fn new(window: &Window, inputs: usize, outputs: usize, weights: &[f32]) -> Winograd {
        assert_eq!(weights.len(), outputs * inputs * 9);
        let [oh, ow] = window.output;
        let tile_rows = oh.div_ceil(2);
        let tile_columns = ow.div_ceil(2);
        let phases = Phases::new(Window {
            output_shape: window.output_shape.clone(),
            input: window.input,
            output: [tile_rows, tile_columns],
            kernel: [4, 4],
            stride: [2, 2],
            pad: [1, 1],
        });
        let tiles = (tile_rows * phases.width).next_multiple_of(LANES);
        // U = G g Gᵀ per (output, input) channel, in f64 and rounded once; position (a, b)'s
        // product takes element (a, b) of every channel pair's.
        let mut transformed = vec![vec![0.0f32; outputs * inputs]; POSITIONS];
        for (pair, g) in weights.chunks_exact(9).enumerate() {
            for (position, values) in transformed.iter_mut().enumerate() {
                let (a, b) = (position / 4, position % 4);
                let mut u = 0.0;
                for k in 0..3 {
                    for l in 0..3 {
                        u += G[a][k] * f64::from(g[k * 3 + l]) * G[b][l];
                    }
                }
                values[pair] = u as f32;
            }
        }
        let products = transformed
            .iter()
            .map(|weights| Conv2dPanels::product(inputs, outputs, tiles, weights))
            .collect();
        Winograd {
            inputs,
            outputs,
            phases,
            output: [oh, ow],
            tiles,
            products: Arc::new(products),
        }
    }

    /// What the layer is, for tract's node listings.
    pub fn describe(&self) -> String {
        let [oh, ow] = self.output;
        format!("3x3 on {oh}x{ow}, stride 1, padded 1, Winograd F(2x2, 3x3)")
    }

    /// The output planes of `conv` (whose source this is) from `input`, with its epilogue (bias,
    /// scale and shift, `residual`, activation).
    pub fn convolve(
        &self,
        conv: &Conv2dPanels,
        input: &[f32],
        residual: Option<&[f32]>,
        output: &mut [f32],
    ) {
        BUFFERS.with_borrow_mut(|buffers| {
            let [scratch, transformed, products, rows, tiles] = buffers.take(self, input);
            self.transform_input(scratch, rows, transformed);
            let inputs = transformed.chunks_exact(self.inputs * self.tiles);
            let planes = products.chunks_exact_mut(self.outputs * self.tiles);
            for ((product, input), planes) in self.products.iter().zip(inputs).zip(planes) {
                product.sums(input, None, planes);
            }
            let [oh, ow] = self.output;
            for (channel, plane) in output.chunks_exact_mut(oh * ow).enumerate() {
                self.transform_output(channel, products, rows, tiles);
                self.interleave(tiles, plane);
                let residual = residual.filter(|_| conv.has_residual(channel));
                let residual = residual.map(|residual| &residual[channel * oh * ow..][..oh * ow]);
                conv.finish(channel, plane, residual);
            }
        });
    }

    on_widest_vectors!(Winograd, fn transform_input
        => transform_input_portable(scratch: &[f32], rows: &mut [f32], transformed: &mut [f32]));

    /// `V = Bᵀ d B` of every tile of every input plane, from their phases in `scratch`: value
    /// `(i, j)` of input plane `c`'s tile at `p` (its place in the tiles' rows) to
    /// `transformed[((4 i + j) * inputs + c) * tiles + p]`. `rows` (16 runs of tiles) holds
    /// `Bᵀ` over each row of the 4x4 inputs. Each step is a run over all of a plane's tiles,
    /// the form the compiler vectorises (written a vector of tiles at a time, the 16 vectors'
    /// arrays went through the stack: 4x slower).
    #[inline(always)]
    fn transform_input_portable(&self, scratch: &[f32], rows: &mut [f32], transformed: &mut [f32]) {
        let tiles = self.tiles;
        let phase_len = self.phases.height * self.phases.width;
        let width = self.phases.width;
        for c in 0..self.inputs {
            let planes = &scratch[c * self.phases.plane_len()..];
            for dy in 0..4 {
                // Input row dy of every tile: column dx in phase (dy % 2, dx % 2), a row
                // down for dy >= 2, a column right for dx >= 2.
                let column = |dx: usize| {
                    let phase = (dy % 2) * 2 + dx % 2;
                    &planes[phase * phase_len + (dy / 2) * width + dx / 2..][..tiles]
                };
                let [d0, d1, d2, d3] = [column(0), column(1), column(2), column(3)];
                let mut h = rows[dy * 4 * tiles..][..4 * tiles].chunks_exact_mut(tiles);
                let mut next = || h.next().expect("4 runs");
                difference(next(), d0, d2);
                sum(next(), d1, d2);
                difference(next(), d2, d1);
                difference(next(), d1, d3);
            }
            for j in 0..4 {
                let h = |dy: usize| &rows[(dy * 4 + j) * tiles..][..tiles];
                let at = |i: usize| ((4 * i + j) * self.inputs + c) * tiles;
                difference(&mut transformed[at(0)..][..tiles], h(0), h(2));
                sum(&mut transformed[at(1)..][..tiles], h(1), h(2));
                difference(&mut transformed[at(2)..][..tiles], h(2), h(1));
                difference(&mut transformed[at(3)..][..tiles], h(1), h(3));
            }
        }
    }

    on_widest_vectors!(Winograd, fn transform_output
    => transform_output_portable(
        channel: usize, products: &[f32], rows: &mut [f32], tiles: &mut [f32]
    ));

    /// `Y = Aᵀ M A` of every tile of output channel `channel` from the 16 products' planes:
    /// output pixel `(a, b)` of the tile at `p` to `tiles[(2 a + b) * self.tiles + p]`. `rows`
    /// (8 runs of tiles) holds `Aᵀ` over the rows.
    #[inline(always)]
    fn transform_output_portable(
        &self,
        channel: usize,
        products: &[f32],
        rows: &mut [f32],
        tiles: &mut [f32],
    ) {
        let n = self.tiles;
        let m = |position: usize| &products[(position * self.outputs + channel) * n..][..n];
        for j in 0..4 {
            sum3(&mut rows[j * n..][..n], m(j), m(4 + j), m(8 + j));
            difference3(&mut rows[(4 + j) * n..][..n], m(4 + j), m(8 + j), m(12 + j));
        }
        for a in 0..2 {
            let t = |j: usize| &rows[(4 * a + j) * n..][..n];
            sum3(&mut tiles[(2 * a) * n..][..n], t(0), t(1), t(2));
            difference3(&mut tiles[(2 * a + 1) * n..][..n], t(1), t(2), t(3));
        }
    }

    /// One output plane from its tiles' pixels ([`Self::transform_output`]): tile row `ty`'s
    /// pixels `(a, b)` to output row `2 ty + a`, columns `2 tx + b`, the pixels past the
    /// output's (of an odd height or width) dropped.
    fn interleave(&self, tiles: &[f32], plane: &mut [f32]) {
        let [oh, ow] = self.output;
        let width = self.phases.width;
        for (y, row) in plane.chunks_exact_mut(ow).enumerate() {
            let (ty, a) = (y / 2, y % 2);
            let left = &tiles[(2 * a) * self.tiles + ty * width..][..ow.div_ceil(2)];
            let right = &tiles[(2 * a + 1) * self.tiles + ty * width..][..ow / 2];
            let mut pairs = row.chunks_exact_mut(2);
            for ((pair, &l), &r) in (&mut pairs).zip(left).zip(right) {
                pair[0] = l;
                pair[1] = r;
            }
            if let [last] = pairs.into_remainder() {
                *last = left[ow / 2];
            }
        }
        debug_assert_eq!(plane.len(), oh * ow);
    }
}

thread_local! {
    /// Each thread's buffers for [`Winograd::convolve`]: hundreds of kilobytes a layer, which,
    /// allocated per run, had their pages faulted in again every time (40% of a layer's time).
    static BUFFERS: RefCell<Buffers> = RefCell::default();
}

#[derive(Default)]
struct Buffers {
    /// The input planes' phases ([`Winograd::phases`]).
    scratch: Vec<f32>,
    /// Whose phases `scratch` holds (phases and input channels): only the input's pixels are
    /// written, and another layer's are where this one's padding must be zero.
    scratch_of: Option<(Phases, usize)>,
    /// The transformed input planes.
    transformed: Vec<f32>,
    /// The matrix products' planes.
    products: Vec<f32>,
    /// The transforms' runs between their two steps.
    rows: Vec<f32>,
    /// One output channel's tiles, transformed back.
    tiles: Vec<f32>,
}

impl Buffers {
    /// The scratch of `winograd`'s run on `input`, filled, and its other buffers, each long
    /// enough (they are written whole before they are read).
    fn take(&mut self, winograd: &Winograd, input: &[f32]) -> [&mut [f32]; 5] {
        let phases = &winograd.phases;
        let inputs = winograd.inputs;
        let len = phases.scratch_len(inputs, winograd.tiles);
        if !matches!(&self.scratch_of, Some(owner) if owner.0 == *phases && owner.1 == inputs) {
            self.scratch.clear();
            self.scratch.resize(len, 0.0);
            self.scratch_of = Some((phases.clone(), inputs));
        }
        phases.fill_planes(input, &mut self.scratch[..len]);
        let tiles = winograd.tiles;
        [
            &mut self.scratch[..len],
            at_least(&mut self.transformed, POSITIONS * inputs * tiles),
            at_least(&mut self.products, POSITIONS * winograd.outputs * tiles),
            at_least(&mut self.rows, POSITIONS * tiles),
            at_least(&mut self.tiles, 4 * tiles),
        ]
    }
}

/// The first `len` values of `buffer`, grown to them if it is shorter.
fn at_least(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    &mut buffer[..len]
}

/// `to = a + b`, value by value. (Functions, not closures, so that each is inlined into, and
/// vectorised for, the copy of the transform that calls it: [`on_widest_vectors`].)
#[inline(always)]
fn sum(to: &mut [f32], a: &[f32], b: &[f32]) {
    for ((to, a), b) in to.iter_mut().zip(a).zip(b) {
        *to = a + b;
    }
}

/// `to = a - b`, value by value.
#[inline(always)]
fn difference(to: &mut [f32], a: &[f32], b: &[f32]) {
    for ((to, a), b) in to.iter_mut().zip(a).zip(b) {
        *to = a - b;
    }
}

/// `to = a + b + c`, value by value.
#[inline(always)]
fn sum3(to: &mut [f32], a: &[f32], b: &[f32], c: &[f32]) {
    for (((to, a), b), c) in to.iter_mut().zip(a).zip(b).zip(c) {
        *to = a + b + c;
    }
}

/// `to = a - b - c`, value by value.
#[inline(always)]
fn difference3(to: &mut [f32], a: &[f32], b: &[f32], c: &[f32]) {
    for (((to, a), b), c) in to.iter_mut().zip(a).zip(b).zip(c) {
        *to = a - b - c;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use tract_core::prelude::tvec;

    use super::{Winograd, POSITIONS};
    use crate::Window;

    /// The largest difference between Winograd's outputs and tract's, as a fraction of the
    /// range of tract's: the transforms' roundings.
    const TOLERANCE: f32 = 2e-6;

    /// `ours` (Winograd's) within [`TOLERANCE`] of `theirs` (tract's direct sums).
    pub fn assert_within_rounding(ours: &[f32], theirs: &[f32], case: &str) {
        assert_eq!(ours.len(), theirs.len(), "{case}");
        let (min, max) = theirs.iter().fold((f32::MAX, f32::MIN), |(min, max), &v| {
            (min.min(v), max.max(v))
        });
        let worst = ours
            .iter()
            .zip(theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        eprintln!("{case}: worst {:.2e} of the range", worst / (max - min));
        assert!(
            worst <= TOLERANCE * (max - min),
            "{case}: {worst} in {min}..{max}"
        );
    }

    #[test]
    fn portable_transforms_equal_the_dispatched_ones() {
        // The CPU's copies (AVX-512 on the development machine) against the portable ones,
        // which run on other CPUs: additions only, the same values.
        let [inputs, outputs, side] = [5, 13, 11];
        let window = Window {
            output_shape: tvec![1, outputs, side, side],
            input: [side, side],
            output: [side, side],
            kernel: [3, 3],
            stride: [1, 1],
            pad: [1, 1],
        };
        let varied = |len: usize, step: usize| -> Vec<f32> {
            (0..len)
                .map(|i| ((i * step % 29) as f32 - 14.0) / 3.0)
                .collect()
        };
        let winograd = Winograd::new(&window, inputs, outputs, &varied(outputs * inputs * 9, 5));
        let input = varied(inputs * side * side, 13);
        let scratch = winograd.phases.fill(inputs, &input, winograd.tiles);
        let transformed = || vec![0.0; POSITIONS * inputs * winograd.tiles];
        let (mut dispatched, mut portable) = (transformed(), transformed());
        let mut rows = vec![0.0; POSITIONS * winograd.tiles];
        winograd.transform_input(&scratch, &mut rows, &mut dispatched);
        winograd.transform_input_portable(&scratch, &mut rows, &mut portable);
        assert_eq!(dispatched, portable);
        let products = varied(POSITIONS * outputs * winograd.tiles, 7);
        let tiles = || vec![0.0; 4 * winograd.tiles];
        let (mut dispatched, mut portable) = (tiles(), tiles());
        for channel in 0..outputs {
            winograd.transform_output(channel, &products, &mut rows, &mut dispatched);
            winograd.transform_output_portable(channel, &products, &mut rows, &mut portable);
            assert_eq!(dispatched, portable, "output channel {channel}");
        }
    }
}
