//! Landmark models on rotated crops: FaceMesh (468 3-D points; with MediaPipe's attention mesh,
//! the eyes too) and Iris (eye contour and iris, one eye at a time, the other mirrored). Both
//! read their crop through a [`Roi`] and give points back in frame pixels; z is in the same
//! pixel scale, larger is farther.

use super::refinement;
use super::roi::Roi;
use crate::frame::Frame;
use crate::geometry::Affine;
use crate::model::manifest::InputSpec;
use crate::model::preprocess::{sample_into, Border};
use crate::model::{Model, ModelError, ModelPool, Task};

/// Points of one landmark model run, in frame pixels.
pub type Points = Vec<[f32; 3]>;

/// A crop sampled into a model's input, with the map back to the frame.
struct Crop {
    map: Affine,
    /// Frame pixels per tensor pixel, for z.
    z_scale: f32,
}

impl Crop {
    /// Samples `roi` (mirrored left-right if asked) into `tensor`.
    fn sample(
        frame: &Frame,
        roi: &Roi,
        mirrored: bool,
        spec: &InputSpec,
        tensor: &mut [f32],
    ) -> Crop {
        let size = spec.width() as f32;
        let map = roi.tensor_to_frame(size, mirrored);
        sample_into(frame, &map, spec, Border::Replicate, tensor);
        Crop {
            map,
            z_scale: roi.size / size,
        }
    }

    /// (x, y, z) triples in tensor pixels, as frame points.
    fn points(&self, values: &[f32]) -> Points {
        values
            .chunks_exact(3)
            .map(|p| {
                let (x, y) = self.map.apply(p[0], p[1]);
                [x, y, p[2] * self.z_scale]
            })
            .collect()
    }

    /// (x, y) pairs in tensor pixels, as frame points.
    fn points_2d(&self, values: &[f32]) -> Vec<[f32; 2]> {
        values
            .chunks_exact(2)
            .map(|p| self.map.apply(p[0], p[1]).into())
            .collect()
    }
}

/// FaceMesh: 468 points and a face-presence score per crop; with MediaPipe's attention mesh,
/// also the eyes (see [`refinement`]).
pub struct FaceMesh {
    pool: ModelPool,
    landmarks: usize,
    flag: usize,
    heads: Option<RefiningHeads>,
}

/// The outputs of the attention mesh's refining heads: lips, then the eye on the crop's left
/// and the other, for the contours and the irises.
struct RefiningHeads {
    lips: usize,
    contours: [usize; 2],
    irises: [usize; 2],
}

impl RefiningHeads {
    /// The heads of `model`, if its manifest entry lists them.
    fn of(model: &Model) -> Result<Option<RefiningHeads>, ModelError> {
        if !model.entry.outputs.iter().any(|o| o.role == "lips") {
            return Ok(None);
        }
        Ok(Some(RefiningHeads {
            lips: model.output_index("lips")?,
            contours: [
                model.output_index("left_eye")?,
                model.output_index("right_eye")?,
            ],
            irises: [
                model.output_index("left_iris")?,
                model.output_index("right_iris")?,
            ],
        }))
    }
}

/// One face's mesh.
#[derive(Debug, Clone)]
pub struct Mesh {
    pub points: Points,
    /// Probability that the crop holds a face.
    pub presence: f32,
    /// The subject's right and left eye, where the mesh model finds them (taken into
    /// [`super::FaceLandmarks::eyes`] when the face is completed).
    pub eyes: Option<[EyeLandmarks; 2]>,
}

impl FaceMesh {
    /// `threads` crops at once (see [`ModelPool`]).
    pub fn new(model: Model, threads: usize) -> Result<FaceMesh, ModelError> {
        model.expect_task(Task::Mesh)?;
        let landmarks = model.output_index("landmarks")?;
        let flag = model.output_index("face_flag")?;
        let heads = RefiningHeads::of(&model)?;
        Ok(FaceMesh {
            pool: ModelPool::new(model, threads)?,
            landmarks,
            flag,
            heads,
        })
    }

    /// Whether the model finds the eyes too (no iris model is then needed).
    pub fn finds_eyes(&self) -> bool {
        self.heads.is_some()
    }

    pub fn model_id(&self) -> &str {
        self.pool.model_id()
    }

    /// The mesh in each crop, in order.
    pub fn run(&mut self, frame: &Frame, rois: &[Roi]) -> Result<Vec<Mesh>, ModelError> {
        let _span = crate::perf::span("mesh");
        let runs = self.pool.run_each(rois, |roi, spec, tensor| {
            Crop::sample(frame, roi, false, spec, tensor)
        })?;
        Ok(runs
            .into_iter()
            .map(|(crop, outputs)| {
                let mut points = crop.points(&outputs[self.landmarks]);
                let eyes = self.heads.as_ref().map(|heads| {
                    let points_of = |output: usize| crop.points_2d(&outputs[output]);
                    let (contours, irises) =
                        (heads.contours.map(points_of), heads.irises.map(points_of));
                    refinement::refine(
                        &mut points,
                        &refinement::Heads {
                            lips: &points_of(heads.lips),
                            contours: [&contours[0], &contours[1]],
                            irises: [&irises[0], &irises[1]],
                        },
                    )
                });
                Mesh {
                    points,
                    presence: 1.0 / (1.0 + (-outputs[self.flag][0]).exp()),
                    eyes,
                }
            })
            .collect())
    }
}

/// Iris: eye contour (71 points) and iris (centre, then 4 points on its edge) of one eye.
pub struct Iris {
    pool: ModelPool,
    contour: usize,
    iris: usize,
}

/// One eye to find: its corners as they appear in the image, and whether the crop is mirrored
/// (the iris model was trained on the eye on the image's left).
pub struct EyeCorners {
    pub left: [f32; 2],
    pub right: [f32; 2],
    pub mirrored: bool,
}

/// One eye's iris landmarks, in frame pixels.
#[derive(Debug, Clone)]
pub struct EyeLandmarks {
    pub contour: Points,
    /// Centre first, then four points on the iris edge.
    pub iris: Points,
}

impl EyeLandmarks {
    pub fn centre(&self) -> [f32; 2] {
        [self.iris[0][0], self.iris[0][1]]
    }

    /// The eye's outer and inner corners as the iris model places them (contour points 0 and 8,
    /// MediaPipe's mesh vertices 33 and 133 for the right eye).
    pub fn corners(&self) -> [[f32; 2]; 2] {
        [0, 8].map(|i| [self.contour[i][0], self.contour[i][1]])
    }

    /// Mean distance from the centre to the four edge points.
    pub fn radius(&self) -> f32 {
        let c = self.iris[0];
        self.iris[1..]
            .iter()
            .map(|p| (p[0] - c[0]).hypot(p[1] - c[1]))
            .sum::<f32>()
            / 4.0
    }
}

/// Eye crop side, in multiples of the eye-corner distance (MediaPipe's iris graph).
const EYE_ROI_SCALE: f32 = 2.3;

impl Iris {
    /// `threads` eyes at once (see [`ModelPool`]).
    pub fn new(model: Model, threads: usize) -> Result<Iris, ModelError> {
        model.expect_task(Task::Iris)?;
        let contour = model.output_index("eye_contour")?;
        let iris = model.output_index("iris")?;
        Ok(Iris {
            pool: ModelPool::new(model, threads)?,
            contour,
            iris,
        })
    }

    pub fn model_id(&self) -> &str {
        self.pool.model_id()
    }

    /// Each eye's landmarks, in order.
    pub fn run(
        &mut self,
        frame: &Frame,
        eyes: &[EyeCorners],
    ) -> Result<Vec<EyeLandmarks>, ModelError> {
        let _span = crate::perf::span("eyes");
        let runs = self.pool.run_each(eyes, |eye, spec, tensor| {
            let roi = Roi::around_pair(eye.left, eye.right, EYE_ROI_SCALE);
            Crop::sample(frame, &roi, eye.mirrored, spec, tensor)
        })?;
        Ok(runs
            .into_iter()
            .map(|(crop, outputs)| EyeLandmarks {
                contour: crop.points(&outputs[self.contour]),
                iris: crop.points(&outputs[self.iris]),
            })
            .collect())
    }
}
