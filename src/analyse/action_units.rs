//! Facial action units (FACS) from the 3-D face mesh, without a network: no AU model ships in
//! any package registry (MODELS.md), so each AU is a geometric measure of the mesh.
//!
//! 1. Pose: the mesh is brought into the canonical face's frame (centimetres, x towards the
//!    subject's left, y up, z towards the viewer) by the similarity transform (rotation, scale,
//!    translation; Horn's closed form) that best fits the points expressions barely move (nose
//!    bridge, eye corners, temples, forehead) onto the canonical face mesh. Every measure is
//!    read in that frame, so head pose and distance drop out.
//! 2. Measures: heights, widths and depths of the brows, lids, cheeks, nose wings and lips
//!    ([`Measures`]); each AU is the movement of its measure away from a neutral face, in
//!    centimetres (AU5: in iris radii, the upper lid against the iris; AU45: the share of the
//!    neutral eye opening the upper lid closed).
//! 3. Neutral: per track, the median of the track's own frontal frames ([`NeutralBaseline`]);
//!    for a single image, or until a track has enough frames, the canonical face mesh itself
//!    (a population neutral).
//! 4. Intensity 0-5: linear between the AU's onset movement (0) and full movement (5); present
//!    from intensity 1 on. docs/action-units.md documents each measure and its calibration.

use super::canonical_mesh::CANONICAL_MESH;
use super::landmarks::EyeLandmarks;
use super::FaceLandmarks;

/// The action units measured, in output order. AU16 is there because the EMFACS prototype of
/// disgust (9+15+16) needs it.
pub const ACTION_UNITS: [u8; 18] = [
    1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 16, 17, 20, 23, 25, 26, 45,
];

/// Intensity from which an AU counts as present (FACS "A", trace, and above).
pub const PRESENT_FROM: f32 = 1.0;

/// Highest intensity (FACS "E", maximum).
pub const MAX_INTENSITY: f32 = 5.0;

/// Mesh vertices that expressions barely move: nose bridge and dorsum, eye corners, temples and
/// cheekbone sides, forehead. The pose is fitted on these alone.
const RIGID: [usize; 18] = [
    168, 6, 197, 195, 5, 4, 33, 133, 362, 263, 127, 356, 234, 454, 93, 323, 10, 151,
];

/// Mirror-image groups (subject's right, left) read by the measures.
const INNER_BROW: [usize; 8] = [107, 66, 55, 65, 336, 296, 285, 295];
const OUTER_BROW: [usize; 8] = [70, 63, 46, 53, 300, 293, 276, 283];
const UPPER_LID: [usize; 6] = [160, 159, 158, 387, 386, 385];
/// The apex of each upper lid, right then left: where the margin-reflex distance is measured.
const UPPER_LID_APEX: [usize; 2] = [159, 386];
const LOWER_LID: [usize; 6] = [144, 145, 153, 373, 374, 380];
const CHEEK: [usize; 8] = [118, 119, 101, 50, 347, 348, 330, 280];
const NOSE_WING: [usize; 8] = [64, 48, 102, 98, 294, 278, 331, 327];
const UPPER_LIP: [usize; 3] = [0, 37, 267];
const LOWER_LIP: [usize; 3] = [17, 84, 314];
const LIP_CORNERS: [usize; 2] = [61, 291];
/// Inner lip contour, upper then lower, pairwise one above the other.
const INNER_UPPER: [usize; 3] = [13, 82, 312];
const INNER_LOWER: [usize; 3] = [14, 87, 317];
const CHIN: [usize; 3] = [152, 175, 199];
/// Jaw line below the lip corners, both sides: it drops with the jaw as the chin does.
const JAW: [usize; 4] = [172, 136, 397, 365];
/// Subnasale, where the nose meets the upper lip.
const NOSE_BASE: usize = 2;
/// Number of geometric measures.
pub const MEASURE_COUNT: usize = 17;

/// Iris radius of the population neutral (cm): half the mean horizontal visible iris diameter of
/// adults, 11.7 mm (Rüfer, Schröder and Erb, Cornea 2005).
const NEUTRAL_IRIS_RADIUS: f32 = 0.585;
/// Height of the upper lid's margin above the pupil in the population neutral (cm): the
/// margin-reflex distance MRD1, normally 4-5 mm in adults.
const NEUTRAL_MRD1: f32 = 0.45;

/// What the mesh measures, in the canonical frame (cm; y up, z towards the viewer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Measure {
    /// Mean height of the inner brow points above the eye-corner line.
    InnerBrowHeight,
    /// Mean height of the outer brow points above the eye-corner line.
    OuterBrowHeight,
    /// Distance between the two inner brows (x).
    BrowGap,
    /// Mean height of the upper lids above the eye-corner line.
    UpperLidHeight,
    /// Height of the upper lid's apex above the iris centre, in iris radii (both eyes averaged):
    /// the margin-reflex distance MRD1 over the iris radius.
    UpperLidAboveIris,
    /// Mean height of the lower lids above the eye-corner line.
    LowerLidHeight,
    /// Mean height of the infraorbital cheek points above the eye-corner line.
    CheekHeight,
    /// Mean height of the nose wings above the eye-corner line.
    NoseWingHeight,
    /// Height of the upper lip's outer edge above the nose base (negative).
    UpperLipHeight,
    /// Height of the lip corners above the point halfway between nose base and jaw line.
    LipCornerHeight,
    /// Distance between the lip corners (x).
    MouthWidth,
    /// Depth of the lip corners relative to the lips' middle (z, larger towards the viewer).
    LipCornerDepth,
    /// Red-lip thickness of the upper lip, along y.
    UpperLipThickness,
    /// Red-lip thickness of the lower lip, along y.
    LowerLipThickness,
    /// Gap between the inner lip contours.
    LipGap,
    /// Mean height of the lower lip's outer edge.
    LowerLipHeight,
    /// Mean height of the chin.
    ChinHeight,
}

impl Measure {
    /// Every measure, in index order.
    pub const ALL: [Measure; MEASURE_COUNT] = [
        Measure::InnerBrowHeight,
        Measure::OuterBrowHeight,
        Measure::BrowGap,
        Measure::UpperLidHeight,
        Measure::UpperLidAboveIris,
        Measure::LowerLidHeight,
        Measure::CheekHeight,
        Measure::NoseWingHeight,
        Measure::UpperLipHeight,
        Measure::LipCornerHeight,
        Measure::MouthWidth,
        Measure::LipCornerDepth,
        Measure::UpperLipThickness,
        Measure::LowerLipThickness,
        Measure::LipGap,
        Measure::LowerLipHeight,
        Measure::ChinHeight,
    ];
}

/// The [`MEASURE_COUNT`] measures of one face, indexed by [`Measure`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measures(pub [f32; MEASURE_COUNT]);

/// An iris as the iris model places it, in the mesh's units (frame pixels): centre (x, y) and
/// radius.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IrisCircle {
    pub centre: [f32; 2],
    pub radius: f32,
}

impl From<&EyeLandmarks> for IrisCircle {
    fn from(eye: &EyeLandmarks) -> IrisCircle {
        IrisCircle {
            centre: eye.centre(),
            radius: eye.radius(),
        }
    }
}

/// The population neutral's irises (right, then left) in the canonical frame: centre (cm) and
/// radius (cm). The canonical face mesh has no irises, so each is placed from clinical norms:
/// [`NEUTRAL_MRD1`] below the upper lid's apex, at the apex's x and depth, of radius
/// [`NEUTRAL_IRIS_RADIUS`].
pub fn population_irises() -> [([f32; 3], f32); 2] {
    UPPER_LID_APEX.map(|i| {
        let [x, y, z] = CANONICAL_MESH[i];
        ([x, y - NEUTRAL_MRD1, z], NEUTRAL_IRIS_RADIUS)
    })
}

impl Measures {
    pub fn get(&self, measure: Measure) -> f32 {
        self.0[measure as usize]
    }

    /// The measures of a mesh already in the canonical frame.
    fn of_canonical(p: &[[f32; 3]]) -> Measures {
        let mean = |ids: &[usize], axis: usize| {
            ids.iter().map(|&i| p[i][axis]).sum::<f32>() / ids.len() as f32
        };
        let (x, y, z) = (0, 1, 2);
        let half = |ids: &[usize]| ids.len() / 2;
        let gap_x = |ids: &[usize]| {
            let n = half(ids);
            mean(&ids[n..], x) - mean(&ids[..n], x)
        };
        // Local references take out what the rigid fit leaves and what differs between faces
        // more than between expressions: heights around the eyes from the eye-corner line, the
        // upper lip from the nose base, the lip corners from halfway between nose base and jaw.
        let eye_line = mean(&[33, 133, 362, 263], y);
        // Halfway between the nose base and the jaw line: a dropping jaw takes the lip corners
        // down about half as far as the jaw, and the lips themselves may move.
        let mouth_level = (p[NOSE_BASE][y] + mean(&JAW, y)) / 2.0;
        let mut m = [0.0; MEASURE_COUNT];
        m[Measure::InnerBrowHeight as usize] = mean(&INNER_BROW, y) - eye_line;
        m[Measure::OuterBrowHeight as usize] = mean(&OUTER_BROW, y) - eye_line;
        m[Measure::BrowGap as usize] = gap_x(&INNER_BROW[..]);
        m[Measure::UpperLidHeight as usize] = mean(&UPPER_LID, y) - eye_line;
        // UpperLidAboveIris needs the irises: set by `of_mesh`.
        m[Measure::LowerLidHeight as usize] = mean(&LOWER_LID, y) - eye_line;
        m[Measure::CheekHeight as usize] = mean(&CHEEK, y) - eye_line;
        m[Measure::NoseWingHeight as usize] = mean(&NOSE_WING, y) - eye_line;
        m[Measure::UpperLipHeight as usize] = mean(&UPPER_LIP, y) - p[NOSE_BASE][y];
        m[Measure::LipCornerHeight as usize] = mean(&LIP_CORNERS, y) - mouth_level;
        m[Measure::MouthWidth as usize] = p[LIP_CORNERS[1]][x] - p[LIP_CORNERS[0]][x];
        m[Measure::LipCornerDepth as usize] =
            mean(&LIP_CORNERS, z) - (mean(&UPPER_LIP, z) + mean(&LOWER_LIP, z)) / 2.0;
        m[Measure::UpperLipThickness as usize] = mean(&UPPER_LIP, y) - mean(&INNER_UPPER, y);
        m[Measure::LowerLipThickness as usize] = mean(&INNER_LOWER, y) - mean(&LOWER_LIP, y);
        m[Measure::LipGap as usize] = mean(&INNER_UPPER, y) - mean(&INNER_LOWER, y);
        m[Measure::LowerLipHeight as usize] = mean(&LOWER_LIP, y);
        m[Measure::ChinHeight as usize] = mean(&CHIN, y);
        Measures(m)
    }

    /// The measures of a face mesh in any pose and scale (468 points, frame pixels or any
    /// other units, x right, y down or up) and its irises (subject's right, then left, in the
    /// same units): fitted into the canonical frame first.
    pub fn of_mesh(mesh: &[[f32; 3]], irises: &[IrisCircle; 2]) -> Measures {
        let fit = Similarity::fit(mesh, &RIGID);
        let canonical: Vec<[f32; 3]> = mesh.iter().map(|&p| fit.apply(p)).collect();
        let mut measures = Measures::of_canonical(&canonical);
        // The iris model's depth is not in the mesh's scale, so the lid-to-iris offset is read
        // in the image and taken to lie along the face's vertical: the image part of the
        // canonical y axis, `up`, shortens it by |up|^2 (cos^2 of the head's pitch when upright).
        let up = fit.canonical_y_in_image();
        let foreshortening = (up[0] * up[0] + up[1] * up[1]).max(f32::MIN_POSITIVE);
        let lid_above_iris = UPPER_LID_APEX
            .iter()
            .zip(irises)
            .map(|(&apex, iris)| {
                let offset = [
                    mesh[apex][0] - iris.centre[0],
                    mesh[apex][1] - iris.centre[1],
                ];
                let along_up = offset[0] * up[0] + offset[1] * up[1];
                along_up / foreshortening / iris.radius.max(f32::MIN_POSITIVE)
            })
            .sum::<f32>()
            / 2.0;
        measures.0[Measure::UpperLidAboveIris as usize] = lid_above_iris;
        measures
    }

    /// The measures of an analysed face: its mesh and the iris model's irises.
    pub fn of_face(landmarks: &FaceLandmarks) -> Measures {
        let irises = [
            IrisCircle::from(&landmarks.eyes[0]),
            IrisCircle::from(&landmarks.eyes[1]),
        ];
        Measures::of_mesh(&landmarks.mesh.points, &irises)
    }

    /// The canonical face mesh's own measures, with [`population_irises`].
    pub fn canonical() -> Measures {
        let irises = population_irises().map(|([x, y, _], radius)| IrisCircle {
            centre: [x, y],
            radius,
        });
        Measures::of_mesh(&CANONICAL_MESH, &irises)
    }

    /// The population neutral, for single images and young tracks.
    pub fn population_neutral() -> Measures {
        Measures::canonical()
    }
}

/// `q = scale * R p + t`, taking mesh points into the canonical frame.
#[derive(Debug, Clone, Copy)]
struct Similarity {
    scale: f64,
    rotation: [[f64; 3]; 3],
    /// Centroids of the fitted points, mesh and canonical.
    from: [f64; 3],
    to: [f64; 3],
}

impl Similarity {
    /// The least-squares similarity taking `mesh[ids]` onto `CANONICAL_MESH[ids]` (Horn 1987,
    /// unit quaternions; scale as the ratio of the two point sets' spreads).
    fn fit(mesh: &[[f32; 3]], ids: &[usize]) -> Similarity {
        let centroid = |points: &dyn Fn(usize) -> [f32; 3]| {
            let mut c = [0.0f64; 3];
            for &i in ids {
                for (k, v) in c.iter_mut().enumerate() {
                    *v += points(i)[k] as f64 / ids.len() as f64;
                }
            }
            c
        };
        let from = centroid(&|i| mesh[i]);
        let to = centroid(&|i| CANONICAL_MESH[i]);
        // Cross-covariance s[a][b] = sum (p_a - from_a)(q_b - to_b) and the two spreads.
        let mut s = [[0.0f64; 3]; 3];
        let (mut spread_p, mut spread_q) = (0.0, 0.0);
        for &i in ids {
            let p: [f64; 3] = std::array::from_fn(|k| mesh[i][k] as f64 - from[k]);
            let q: [f64; 3] = std::array::from_fn(|k| CANONICAL_MESH[i][k] as f64 - to[k]);
            for a in 0..3 {
                for b in 0..3 {
                    s[a][b] += p[a] * q[b];
                }
                spread_p += p[a] * p[a];
                spread_q += q[a] * q[a];
            }
        }
        let [[sxx, sxy, sxz], [syx, syy, syz], [szx, szy, szz]] = s;
        let n = [
            [sxx + syy + szz, syz - szy, szx - sxz, sxy - syx],
            [syz - szy, sxx - syy - szz, sxy + syx, szx + sxz],
            [szx - sxz, sxy + syx, -sxx + syy - szz, syz + szy],
            [sxy - syx, szx + sxz, syz + szy, -sxx - syy + szz],
        ];
        let [w, x, y, z] = largest_eigenvector(n);
        let rotation = [
            [
                w * w + x * x - y * y - z * z,
                2.0 * (x * y - w * z),
                2.0 * (x * z + w * y),
            ],
            [
                2.0 * (x * y + w * z),
                w * w - x * x + y * y - z * z,
                2.0 * (y * z - w * x),
            ],
            [
                2.0 * (x * z - w * y),
                2.0 * (y * z + w * x),
                w * w - x * x - y * y + z * z,
            ],
        ];
        Similarity {
            scale: (spread_q / spread_p.max(f64::MIN_POSITIVE)).sqrt(),
            rotation,
            from,
            to,
        }
    }

    /// The canonical y axis (up the face) as a direction in the mesh's frame, x and y only: the
    /// canonical y of a mesh offset (dx, dy, 0) is `scale` times its dot product with this.
    fn canonical_y_in_image(&self) -> [f32; 2] {
        [self.rotation[1][0] as f32, self.rotation[1][1] as f32]
    }

    fn apply(&self, p: [f32; 3]) -> [f32; 3] {
        let d: [f64; 3] = std::array::from_fn(|k| p[k] as f64 - self.from[k]);
        std::array::from_fn(|r| {
            let rotated: f64 = (0..3).map(|c| self.rotation[r][c] * d[c]).sum();
            (self.to[r] + self.scale * rotated) as f32
        })
    }
}

/// Unit eigenvector of the largest eigenvalue of a symmetric 4x4 matrix (cyclic Jacobi).
fn largest_eigenvector(mut a: [[f64; 4]; 4]) -> [f64; 4] {
    let mut v = [[0.0f64; 4]; 4];
    for (i, row) in v.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    for _sweep in 0..50 {
        let off: f64 = (0..4)
            .flat_map(|i| (0..4).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum();
        if off < 1e-22 {
            break;
        }
        for p in 0..4 {
            for q in p + 1..4 {
                if a[p][q].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for row in a.iter_mut() {
                    let (akp, akq) = (row[p], row[q]);
                    row[p] = c * akp - s * akq;
                    row[q] = s * akp + c * akq;
                }
                let (row_p, row_q) = (a[p], a[q]);
                for k in 0..4 {
                    a[p][k] = c * row_p[k] - s * row_q[k];
                    a[q][k] = s * row_p[k] + c * row_q[k];
                }
                for row in v.iter_mut() {
                    let (vp, vq) = (row[p], row[q]);
                    row[p] = c * vp - s * vq;
                    row[q] = s * vp + c * vq;
                }
            }
        }
    }
    let best = (0..4)
        .max_by(|&i, &j| a[i][i].total_cmp(&a[j][j]))
        .unwrap_or(0);
    std::array::from_fn(|k| v[k][best])
}

/// How one AU is read from the measures and scaled to 0-5.
struct AuScale {
    au: u8,
    /// Movement (cm; AU5: iris radii; AU45: closed fraction) at which the AU starts:
    /// intensity 0 below it.
    onset: f32,
    /// Movement at intensity 5.
    full: f32,
}

/// Calibration of each AU, in [`ACTION_UNITS`] order (docs/action-units.md says where each
/// number comes from).
#[rustfmt::skip]
const SCALES: [AuScale; 18] = [
    AuScale { au: 1, onset: 0.10, full: 1.00 },
    AuScale { au: 2, onset: 0.10, full: 1.00 },
    AuScale { au: 4, onset: 0.05, full: 0.60 },
    AuScale { au: 5, onset: 0.05, full: 0.50 },
    AuScale { au: 6, onset: 0.05, full: 0.50 },
    AuScale { au: 7, onset: 0.03, full: 0.25 },
    AuScale { au: 9, onset: 0.04, full: 0.40 },
    AuScale { au: 10, onset: 0.05, full: 0.50 },
    AuScale { au: 12, onset: 0.08, full: 0.80 },
    AuScale { au: 14, onset: 0.04, full: 0.40 },
    AuScale { au: 15, onset: 0.05, full: 0.50 },
    AuScale { au: 16, onset: 0.05, full: 0.50 },
    AuScale { au: 17, onset: 0.04, full: 0.40 },
    AuScale { au: 20, onset: 0.06, full: 0.60 },
    AuScale { au: 23, onset: 0.04, full: 0.40 },
    AuScale { au: 25, onset: 0.15, full: 1.50 },
    AuScale { au: 26, onset: 0.15, full: 1.50 },
    AuScale { au: 45, onset: 0.15, full: 0.90 },
];

/// The movement of `au` between `neutral` and `now` (positive: the AU's direction).
fn movement(au: u8, now: &Measures, neutral: &Measures) -> f32 {
    let d = |m: Measure| now.get(m) - neutral.get(m);
    use Measure::*;
    match au {
        1 => d(InnerBrowHeight),
        2 => d(OuterBrowHeight),
        // Brows lowered and drawn together.
        4 => -d(InnerBrowHeight) - d(BrowGap),
        // The upper lid raised against the iris: more of the iris, and sclera above it, shows.
        // Against the iris rather than the eye corners, the measure cancels the eye's size and
        // shape and what glasses magnify.
        5 => d(UpperLidAboveIris),
        6 => d(CheekHeight),
        7 => d(LowerLidHeight),
        9 => d(NoseWingHeight),
        10 => d(UpperLipHeight),
        // Corners up (AU12) or down (AU15); the lateral part of a pull that is not upward is
        // the lip stretcher (AU20), so an oblique smile does not read as AU20.
        12 => d(LipCornerHeight),
        15 => -d(LipCornerHeight),
        20 => d(MouthWidth) / 2.0 - d(LipCornerHeight).max(0.0),
        // Corners pulled back into the cheeks.
        14 => -d(LipCornerDepth),
        // Lower lip pulled down, beyond what a dropping jaw takes it (that is AU26).
        16 => -d(LowerLipHeight) + d(ChinHeight).min(0.0),
        17 => d(ChinHeight),
        // Both lips thinner (one lip rolled in while the lips part is not AU23).
        23 => (-d(UpperLipThickness)).min(-d(LowerLipThickness)),
        25 => d(LipGap),
        26 => -d(ChinHeight),
        // The share of the neutral eye opening the upper lid came down (a lower lid pushed up
        // by AU6 or AU7 narrows the eye but is no blink).
        45 => {
            let opening = neutral.get(UpperLidHeight) - neutral.get(LowerLidHeight);
            -d(UpperLidHeight) / opening.max(f32::MIN_POSITIVE)
        }
        _ => 0.0,
    }
}

/// AU intensities of one face, in [`ACTION_UNITS`] order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActionUnits(pub [f32; 18]);

impl ActionUnits {
    /// Intensities of `now` against `neutral`.
    pub fn score(now: &Measures, neutral: &Measures) -> ActionUnits {
        ActionUnits(std::array::from_fn(|i| {
            let scale = &SCALES[i];
            let m = movement(scale.au, now, neutral);
            let t = (m - scale.onset) / (scale.full - scale.onset);
            MAX_INTENSITY * t.clamp(0.0, 1.0)
        }))
    }

    /// Intensity of AU `au` (0 for an AU not measured).
    pub fn intensity(&self, au: u8) -> f32 {
        ACTION_UNITS
            .iter()
            .position(|&a| a == au)
            .map_or(0.0, |i| self.0[i])
    }

    /// Whether AU `au` is present (intensity at least [`PRESENT_FROM`]).
    pub fn present(&self, au: u8) -> bool {
        self.intensity(au) >= PRESENT_FROM
    }
}

/// Frames a track's neutral is the median of (the most recent ones).
const BASELINE_FRAMES: usize = 150;
/// Frames before a track's own neutral replaces the population neutral.
const BASELINE_MIN_FRAMES: usize = 15;
/// Only faces turned less than this (yaw and pitch, degrees) teach the neutral: the mesh's
/// far side is a guess on a turned face.
const BASELINE_MAX_TURN_DEG: f32 = 25.0;

/// A track's neutral face: the per-measure median of its recent frontal frames. People are
/// neutral most of the time, so the median is their own neutral, free of the population
/// neutral's error for this face (someone whose brows sit high does not show AU1 all the time).
/// Fixed memory: the last [`BASELINE_FRAMES`] frames.
#[derive(Debug, Clone)]
pub struct NeutralBaseline {
    frames: Vec<Measures>,
    /// Where the next frame goes once `frames` is full.
    next: usize,
    population: Measures,
}

impl Default for NeutralBaseline {
    fn default() -> Self {
        NeutralBaseline {
            frames: Vec::with_capacity(BASELINE_FRAMES),
            next: 0,
            population: Measures::population_neutral(),
        }
    }
}

impl NeutralBaseline {
    /// Learns from one frame of the track; `yaw_pitch` is the head pose in degrees.
    pub fn observe(&mut self, measures: &Measures, yaw_pitch: [f32; 2]) {
        if yaw_pitch.iter().any(|a| a.abs() > BASELINE_MAX_TURN_DEG) {
            return;
        }
        if self.frames.len() < BASELINE_FRAMES {
            self.frames.push(*measures);
        } else {
            self.frames[self.next] = *measures;
            self.next = (self.next + 1) % BASELINE_FRAMES;
        }
    }

    /// Frontal frames learnt from (at most [`BASELINE_FRAMES`]).
    pub fn frames(&self) -> usize {
        self.frames.len()
    }

    /// The neutral to score against: the track's own once it has enough frames, else the
    /// population's.
    pub fn neutral(&self) -> Measures {
        if self.frames.len() < BASELINE_MIN_FRAMES {
            return self.population;
        }
        let mut column = Vec::with_capacity(self.frames.len());
        Measures(std::array::from_fn(|k| {
            column.clear();
            column.extend(self.frames.iter().map(|m| m.0[k]));
            column.sort_by(f32::total_cmp);
            column[column.len() / 2]
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The canonical mesh seen by a camera: turned, scaled to pixels, y down, z away.
    fn in_camera(
        points: &[[f32; 3]],
        yaw_deg: f32,
        pitch_deg: f32,
        roll_deg: f32,
    ) -> Vec<[f32; 3]> {
        let (sy, cy) = yaw_deg.to_radians().sin_cos();
        let (sp, cp) = pitch_deg.to_radians().sin_cos();
        let (sr, cr) = roll_deg.to_radians().sin_cos();
        points
            .iter()
            .map(|&[x, y, z]| {
                let (x, z) = (x * cy + z * sy, -x * sy + z * cy);
                let (y, z) = (y * cp - z * sp, y * sp + z * cp);
                let (x, y) = (x * cr - y * sr, x * sr + y * cr);
                [320.0 + 14.0 * x, 240.0 - 14.0 * y, 500.0 - 14.0 * z]
            })
            .collect()
    }

    /// The population irises seen by the same camera as [`in_camera`].
    fn irises_in_camera(yaw_deg: f32, pitch_deg: f32, roll_deg: f32) -> [IrisCircle; 2] {
        population_irises().map(|(centre, radius)| {
            let [x, y, _] = in_camera(&[centre], yaw_deg, pitch_deg, roll_deg)[0];
            IrisCircle {
                centre: [x, y],
                radius: 14.0 * radius,
            }
        })
    }

    #[test]
    fn canonical_face_in_any_pose_is_neutral() {
        let neutral = Measures::population_neutral();
        for (yaw, pitch, roll) in [(0.0, 0.0, 0.0), (30.0, -10.0, 5.0), (-40.0, 15.0, -20.0)] {
            let seen = Measures::of_mesh(
                &in_camera(&CANONICAL_MESH, yaw, pitch, roll),
                &irises_in_camera(yaw, pitch, roll),
            );
            for k in 0..MEASURE_COUNT {
                assert!(
                    (seen.0[k] - neutral.0[k]).abs() < 1e-3,
                    "pose {yaw} {pitch} {roll}: measure {k}: {} vs {}",
                    seen.0[k],
                    neutral.0[k]
                );
            }
            let aus = ActionUnits::score(&seen, &neutral);
            assert!(aus.0.iter().all(|&i| i == 0.0), "{aus:?}");
        }
    }

    #[test]
    fn track_neutral_is_the_median_of_frontal_frames() {
        let mut baseline = NeutralBaseline::default();
        let population = Measures::population_neutral();
        let mut raised = population;
        raised.0[Measure::InnerBrowHeight as usize] += 0.5;
        for i in 0..BASELINE_MIN_FRAMES - 1 {
            baseline.observe(if i % 3 == 0 { &population } else { &raised }, [0.0, 0.0]);
        }
        // Turned faces are not learnt from.
        baseline.observe(&population, [40.0, 0.0]);
        assert_eq!(baseline.neutral(), population);
        baseline.observe(&raised, [5.0, -5.0]);
        assert_eq!(baseline.frames(), BASELINE_MIN_FRAMES);
        assert_eq!(baseline.neutral(), raised);
        for _ in 0..2 * BASELINE_FRAMES {
            baseline.observe(&population, [0.0, 0.0]);
        }
        assert_eq!(baseline.frames(), BASELINE_FRAMES);
        assert_eq!(baseline.neutral(), population);
    }
}
