//! Enrolment: people go into the gallery from photos (the `enroll` command, or MQTT `enroll`
//! with `image`) or from the clearest views of a live track (MQTT `enroll` with `track`).

use std::path::Path;

use crate::analyse::identity::{Embedding, SharedGallery};
use crate::capture;
use crate::config::Config;
use crate::frame::Frame;
use crate::gallery;
use crate::pipeline::{Analyser, PipelineError};
use crate::publish::commands::{EnrollFrom, GalleryCommands, GalleryEntry, GalleryError};
use crate::track::TrackSamples;

/// The descriptor of the one face in the photo at `path`.
pub fn describe_photo(analyser: &mut Analyser, path: &Path) -> Result<Embedding, PipelineError> {
    let mut frame = Frame::with_capacity(0, 0);
    capture::load_image(path, &mut frame)?;
    analyser.describe_single_face(&frame)
}

/// The gallery commands of a running facecast, on the gallery recognition uses.
pub struct GalleryService {
    gallery: SharedGallery,
    samples: TrackSamples,
    config: Config,
    /// Models for enrolling from photos, loaded on the first such request (most devices
    /// never get one, and the models take memory).
    photo_analyser: Option<Analyser>,
}

impl GalleryService {
    pub fn new(gallery: SharedGallery, samples: TrackSamples, config: &Config) -> Self {
        GalleryService {
            gallery,
            samples,
            config: config.clone(),
            photo_analyser: None,
        }
    }

    fn photo_descriptor(&mut self, path: &Path) -> Result<Embedding, GalleryError> {
        let failed = |e: PipelineError| GalleryError::Failed(format!("{}: {e}", path.display()));
        if self.photo_analyser.is_none() {
            self.photo_analyser = Some(Analyser::load(&self.config).map_err(failed)?);
        }
        let analyser = self.photo_analyser.as_mut().expect("loaded above");
        describe_photo(analyser, path).map_err(failed)
    }

    fn with_gallery<T>(
        &self,
        f: impl FnOnce(&mut gallery::Gallery) -> Result<T, gallery::GalleryError>,
    ) -> Result<T, GalleryError> {
        // A poisoned lock still holds a whole gallery: saves replace it only on success.
        let mut gallery = self.gallery.write().unwrap_or_else(|e| e.into_inner());
        f(&mut gallery).map_err(|e| GalleryError::Failed(e.to_string()))
    }
}

impl GalleryCommands for GalleryService {
    fn enroll(&mut self, name: &str, from: EnrollFrom<'_>) -> Result<GalleryEntry, GalleryError> {
        gallery::check_name(name).map_err(|e| GalleryError::Failed(e.to_string()))?;
        let samples = match from {
            EnrollFrom::Track(track) => self
                .samples
                .get(track)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    GalleryError::Failed(format!(
                        "track {track} is not being tracked, or has no clear view of the face yet"
                    ))
                })?,
            EnrollFrom::Image(path) => vec![self.photo_descriptor(path)?],
        };
        let count = self.with_gallery(|g| g.enroll(name, &samples))?;
        log::info!("enrolled {name:?} ({count} samples) by command");
        Ok(GalleryEntry {
            name: name.into(),
            samples: count as u32,
        })
    }

    fn forget(&mut self, name: &str) -> Result<bool, GalleryError> {
        let existed = self.with_gallery(|g| g.forget(name))?;
        if existed {
            log::info!("forgot {name:?} by command");
        }
        Ok(existed)
    }

    fn list(&self) -> Result<Vec<GalleryEntry>, GalleryError> {
        self.with_gallery(|g| {
            g.refresh();
            Ok(g.people()
                .iter()
                .map(|p| GalleryEntry {
                    name: p.name.clone(),
                    samples: p.samples.len() as u32,
                })
                .collect())
        })
    }
}
