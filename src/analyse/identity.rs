//! Face descriptors for recognition: dlib's 150x150 chip cut from five mesh points, through the
//! embedding network. Two descriptors of the same person lie close (Euclidean distance under
//! about 0.6 for dlib's network); the gallery (`crate::gallery`) matches by that distance.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::chip::{points5_from_mesh, ChipCutter, Points5};
use super::AnalysedFace;
use crate::frame::Frame;
use crate::gallery::{Gallery, Match};
use crate::geometry::Affine;
use crate::model::preprocess::{sample_into, Border};
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
        self.model
            .output(&outputs, self.output)
            .map(<[f32]>::to_vec)
    }

    /// The chip of the last [`Embedder::embed`] call (for inspection and tests).
    pub fn last_chip(&self) -> &Frame {
        &self.chip
    }
}

/// The gallery as the analysis and command threads share it.
pub type SharedGallery = Arc<RwLock<Gallery>>;

/// Descriptors and gallery matching, as the tracker schedules them.
pub struct Recogniser {
    embedder: Embedder,
    gallery: SharedGallery,
    match_distance: f32,
    /// When the gallery file was last checked for changes by other processes.
    checked: Instant,
}

/// How often the gallery file is checked for changes made by other processes (`enroll`).
const GALLERY_CHECK: Duration = Duration::from_secs(2);

impl Recogniser {
    pub fn new(embedder: Embedder, gallery: SharedGallery, match_distance: f32) -> Self {
        Recogniser {
            embedder,
            gallery,
            match_distance,
            checked: Instant::now(),
        }
    }

    pub fn gallery(&self) -> &SharedGallery {
        &self.gallery
    }

    /// The gallery person a descriptor belongs to, within the match distance.
    pub fn identify(&self, descriptor: &[f32]) -> Option<Match> {
        // A poisoned lock still holds a valid gallery (writes replace it whole).
        let gallery = self.gallery.read().unwrap_or_else(|e| e.into_inner());
        gallery.best_match(descriptor, self.match_distance)
    }

    /// The descriptor of an analysed face (from its mesh), if it has landmarks.
    pub fn describe(
        &mut self,
        frame: &Frame,
        face: &AnalysedFace,
    ) -> Result<Option<Embedding>, ModelError> {
        let Some(landmarks) = &face.landmarks else {
            return Ok(None);
        };
        if self.checked.elapsed() >= GALLERY_CHECK {
            self.checked = Instant::now();
            // A poisoned lock still holds a whole gallery: saves replace it only on success.
            let mut gallery = self.gallery.write().unwrap_or_else(|e| e.into_inner());
            gallery.refresh();
        }
        let points = points5_from_mesh(&landmarks.mesh.points);
        self.embedder.embed(frame, &points).map(Some)
    }
}
