//! Landmark models on rotated crops: FaceMesh (468 3-D points) and Iris (eye contour and
//! iris, one eye at a time, the other mirrored). Both read their crop through a [`Roi`] and
//! give points back in frame pixels; z is in the same pixel scale, larger is farther.

use super::roi::Roi;
use crate::frame::Frame;
use crate::model::preprocess::{sample_into, Border};
use crate::model::runner::values;
use crate::model::{Model, ModelError, Task};

/// Points of one landmark model run, in frame pixels.
pub type Points = Vec<[f32; 3]>;

/// The outputs of one run on a crop, with the map back to the frame.
struct CropRun {
    outputs: tract_onnx::prelude::TVec<tract_onnx::prelude::TValue>,
    map: crate::geometry::Affine,
    /// Frame pixels per tensor pixel, for z.
    z_scale: f32,
}

impl CropRun {
    /// Runs `model` on the crop `roi` (mirrored left-right if asked).
    fn new(
        model: &mut Model,
        frame: &Frame,
        roi: &Roi,
        mirrored: bool,
    ) -> Result<CropRun, ModelError> {
        let size = model.entry.input.width() as f32;
        let map = roi.tensor_to_frame(size, mirrored);
        let (spec, tensor) = model.input();
        sample_into(frame, &map, spec, Border::Replicate, tensor);
        Ok(CropRun {
            outputs: model.run()?,
            map,
            z_scale: roi.size / size,
        })
    }

    fn values(&self, model: &Model, output: usize) -> Result<&[f32], ModelError> {
        values(&self.outputs[output]).map_err(|e| ModelError::Run {
            id: model.entry.id.clone(),
            reason: format!("{e:#}"),
        })
    }

    /// Output `output`, (x, y, z) triples in tensor pixels, as frame points.
    fn points(&self, model: &Model, output: usize) -> Result<Points, ModelError> {
        Ok(self
            .values(model, output)?
            .chunks_exact(3)
            .map(|p| {
                let (x, y) = self.map.apply(p[0], p[1]);
                [x, y, p[2] * self.z_scale]
            })
            .collect())
    }
}

/// FaceMesh: 468 points and a face-presence score per crop.
pub struct FaceMesh {
    model: Model,
    landmarks: usize,
    flag: usize,
}

/// One face's mesh.
#[derive(Debug, Clone)]
pub struct Mesh {
    pub points: Points,
    /// Probability that the crop holds a face.
    pub presence: f32,
}

impl FaceMesh {
    pub fn new(model: Model) -> Result<FaceMesh, ModelError> {
        model.expect_task(Task::Mesh)?;
        let landmarks = model.output_index("landmarks")?;
        let flag = model.output_index("face_flag")?;
        Ok(FaceMesh {
            model,
            landmarks,
            flag,
        })
    }

    /// A copy for another thread (the model's plan is shared).
    pub fn fork(&self) -> Result<FaceMesh, ModelError> {
        Ok(FaceMesh {
            model: self.model.fork()?,
            ..*self
        })
    }

    pub fn run(&mut self, frame: &Frame, roi: &Roi) -> Result<Mesh, ModelError> {
        let run = CropRun::new(&mut self.model, frame, roi, false)?;
        let logit = run.values(&self.model, self.flag)?[0];
        Ok(Mesh {
            points: run.points(&self.model, self.landmarks)?,
            presence: 1.0 / (1.0 + (-logit).exp()),
        })
    }
}

/// Iris: eye contour (71 points) and iris (centre, then 4 points on its edge) of one eye.
pub struct Iris {
    model: Model,
    contour: usize,
    iris: usize,
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
    pub fn new(model: Model) -> Result<Iris, ModelError> {
        model.expect_task(Task::Iris)?;
        let contour = model.output_index("eye_contour")?;
        let iris = model.output_index("iris")?;
        Ok(Iris {
            model,
            contour,
            iris,
        })
    }

    /// A copy for another thread (the model's plan is shared).
    pub fn fork(&self) -> Result<Iris, ModelError> {
        Ok(Iris {
            model: self.model.fork()?,
            ..*self
        })
    }

    /// The eye between corners `left` and `right` (as they appear in the image). The model
    /// was trained on the eye on the image's left; the other eye is mirrored (`mirrored`).
    pub fn run(
        &mut self,
        frame: &Frame,
        left: [f32; 2],
        right: [f32; 2],
        mirrored: bool,
    ) -> Result<EyeLandmarks, ModelError> {
        let roi = Roi::around_pair(left, right, EYE_ROI_SCALE);
        let run = CropRun::new(&mut self.model, frame, &roi, mirrored)?;
        Ok(EyeLandmarks {
            contour: run.points(&self.model, self.contour)?,
            iris: run.points(&self.model, self.iris)?,
        })
    }
}
