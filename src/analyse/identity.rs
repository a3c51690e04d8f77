//! Face descriptors for recognition: dlib's 150x150 chip cut from five mesh points, through the
//! embedding network. Two descriptors of the same person lie close (Euclidean distance under
//! about 0.6 for dlib's network); the gallery (`crate::gallery`) matches by that distance.

use super::chip::{ChipCutter, Points5};
use crate::frame::Frame;
use crate::geometry::Affine;
use crate::model::preprocess::{sample_into, Border};
use crate::model::runner::values;
use crate::model::{Model, ModelError, Task};

/// Chip padding around dlib's mean face, as `dlib.get_face_chip`'s default (the Python API's;
/// the C++ default is 0.2), which the recognition network was used with.
const CHIP_PADDING: f64 = 0.25;

/// A face descriptor.
pub type Embedding = Vec<f32>;

/// Euclidean distance between two descriptors.
pub fn distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

pub struct Embedder {
    model: Model,
    output: usize,
    cutter: ChipCutter,
    chip: Frame,
}

impl Embedder {
    pub fn new(model: Model) -> Result<Embedder, ModelError> {
        model.expect_task(Task::Embed)?;
        let output = model.output_index("embedding")?;
        Ok(Embedder {
            model,
            output,
            cutter: ChipCutter::default(),
            chip: Frame::with_capacity(0, 0),
        })
    }

    pub fn model_id(&self) -> &str {
        &self.model.entry.id
    }

    /// The descriptor of the face whose five dlib points are `points`.
    pub fn embed(&mut self, frame: &Frame, points: &Points5) -> Result<Embedding, ModelError> {
        let (spec, input) = self.model.input();
        let size = spec.width();
        self.cutter
            .cut(frame, points, size, CHIP_PADDING, &mut self.chip);
        // The chip is already the network's input size: copy it, normalised.
        sample_into(&self.chip, &Affine::IDENTITY, spec, Border::Black, input);
        let outputs = self.model.run()?;
        values(&outputs[self.output])
            .map(<[f32]>::to_vec)
            .map_err(|e| ModelError::Run {
                id: self.model.entry.id.clone(),
                reason: format!("{e:#}"),
            })
    }

    /// The chip of the last [`Embedder::embed`] call (for inspection and tests).
    pub fn last_chip(&self) -> &Frame {
        &self.chip
    }
}
