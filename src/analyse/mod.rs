//! Per-face analysis after detection: the 468-point mesh on a crop rotated upright, the irises (the
//! iris model on a crop of each eye, or the mesh model's own heads where it has them: MediaPipe's
//! attention mesh), then head pose, gaze, attention and eye openness. Faces are followed from frame
//! to frame by their landmarks: the next frame's crop comes from this frame's mesh, and the
//! detector runs only every `detect_every` frames, when a face is lost, or when there is none.
//! While as many faces as the detector may return (`max_faces`) are followed, it does not run at
//! all: there is no room for a new face (MediaPipe's `max_num_faces` works the same way).

pub mod action_units;
pub mod attribute_track;
pub mod attributes;
pub mod canonical_mesh;
pub mod chip;
pub mod ibug68;
pub mod identity;
pub mod landmarks;
pub mod pose;
pub mod refinement;
pub mod roi;

use thiserror::Error;

use crate::config::AnalysisConfig;
use crate::detect::{DetectError, Detector, Face};
use crate::frame::Frame;
use crate::geometry::Rect;
use crate::model::{Manifest, Model, ModelError};
use landmarks::{EyeCorners, EyeLandmarks, FaceMesh, Iris, Mesh};
use pose::{Geometry, LEFT_EYE, RIGHT_EYE};
use roi::Roi;

#[derive(Debug, Error)]
pub enum AnalyseError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Detect(#[from] DetectError),
}

/// Everything known about one face in one frame.
#[derive(Debug, Clone)]
pub struct AnalysedFace {
    /// The detector's box, score and keypoints: this frame's detection, or the last one carried
    /// along with the face's movement when the detector did not run.
    pub detection: Face,
    /// Mesh, eyes, pose and gaze; `None` when analysis is off.
    pub landmarks: Option<FaceLandmarks>,
}

/// What the landmark models say about a face.
#[derive(Debug, Clone)]
pub struct FaceLandmarks {
    pub mesh: Mesh,
    /// The subject's right and left eye.
    pub eyes: [EyeLandmarks; 2],
    pub geometry: Geometry,
    /// The gaze is within the configured cone around the camera.
    pub attending: bool,
}

/// A face being followed: where to look next and its last detection.
struct Followed {
    roi: Roi,
    detection: Face,
    /// The landmark crop of the frame `detection` came from, to carry the detection along
    /// with the face; `None` until that frame's mesh is known.
    anchor: Option<Roi>,
}

/// Carries `face` (found when the mesh crop was `from`) to where the crop is now (`to`): the
/// same similarity transform that takes one crop to the other.
fn carry(face: &Face, from: &Roi, to: &Roi) -> Face {
    let k = to.size / from.size;
    let (sin, cos) = (to.rotation - from.rotation).sin_cos();
    let map = |p: [f32; 2]| {
        let (dx, dy) = ((p[0] - from.centre[0]) * k, (p[1] - from.centre[1]) * k);
        [
            to.centre[0] + cos * dx - sin * dy,
            to.centre[1] + sin * dx + cos * dy,
        ]
    };
    let b = &face.bbox;
    let centre = map([b.x + b.w / 2.0, b.y + b.h / 2.0]);
    let (w, h) = (b.w * k, b.h * k);
    Face {
        bbox: Rect {
            x: centre[0] - w / 2.0,
            y: centre[1] - h / 2.0,
            w,
            h,
        },
        score: face.score,
        keypoints: face.keypoints.iter().map(|&p| map(p)).collect(),
    }
}

fn mesh_bounds(points: &[[f32; 3]]) -> Rect {
    let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    for p in points {
        (x0, y0, x1, y1) = (x0.min(p[0]), y0.min(p[1]), x1.max(p[0]), y1.max(p[1]));
    }
    Rect::from_corners(x0, y0, x1, y1)
}

/// The landmark models, in two stages that may run on two threads, one frame apart: the
/// follower (detection when due, and the meshes, which give the next frame's crops) and the
/// eyes (the irises on crops from the meshes, then pose and gaze).
pub struct FaceAnalyser {
    pub follower: FaceFollower,
    pub eyes: EyeAnalyser,
}

/// The first stage: finds the faces and their meshes, and follows them to the next frame.
pub struct FaceFollower {
    mesh: FaceMesh,
    config: AnalysisConfig,
    followed: Vec<Followed>,
    frames_since_detection: u32,
    detector_runs: u64,
}

/// A face found by the first stage, its eyes still to be found.
pub struct MeshedFace {
    detection: Face,
    mesh: Mesh,
}

/// The second stage: each meshed face's eyes, pose and gaze.
pub struct EyeAnalyser {
    /// `None` when the mesh model finds the eyes itself.
    iris: Option<Iris>,
    /// `[analysis]`'s two settings this stage reads.
    camera_hfov_deg: f32,
    attention_cone_deg: f32,
}

/// The subject's right eye, then the left (mirrored: the iris model was trained on the eye on
/// the image's left), from the mesh's eye corners.
fn eyes_of(mesh: &Mesh) -> [EyeCorners; 2] {
    let corner = |i: usize| [mesh.points[i][0], mesh.points[i][1]];
    [
        EyeCorners {
            left: corner(RIGHT_EYE[0]),
            right: corner(RIGHT_EYE[1]),
            mirrored: false,
        },
        EyeCorners {
            left: corner(LEFT_EYE[1]),
            right: corner(LEFT_EYE[0]),
            mirrored: true,
        },
    ]
}

impl FaceAnalyser {
    /// Loads the landmark models; `threads` (at least 1) analyse a frame's faces, and a face's
    /// two eyes, in parallel, sharing the models' plans.
    pub fn new(
        manifest: &Manifest,
        config: &AnalysisConfig,
        threads: usize,
        verify: bool,
    ) -> Result<FaceAnalyser, AnalyseError> {
        let mesh = FaceMesh::new(Model::load(manifest, &config.mesh_model, verify)?, threads)?;
        let iris = if mesh.finds_eyes() {
            None
        } else {
            Some(Iris::new(
                Model::load(manifest, &config.iris_model, verify)?,
                threads,
            )?)
        };
        Ok(FaceAnalyser {
            follower: FaceFollower {
                mesh,
                config: config.clone(),
                followed: Vec::new(),
                frames_since_detection: 0,
                detector_runs: 0,
            },
            eyes: EyeAnalyser {
                iris,
                camera_hfov_deg: config.camera_hfov_deg,
                attention_cone_deg: config.attention_cone_deg,
            },
        })
    }

    /// The manifest ids of the models loaded: the mesh, and the iris model where the mesh
    /// model does not find the eyes.
    pub fn model_ids(&self) -> Vec<&str> {
        let iris = self.eyes.iris.as_ref().map(Iris::model_id);
        std::iter::once(self.follower.mesh.model_id())
            .chain(iris)
            .collect()
    }

    /// Analyses one frame: both stages, one after the other.
    pub fn analyse(
        &mut self,
        frame: &Frame,
        detector: &mut Detector,
        continues: bool,
    ) -> Result<Vec<AnalysedFace>, AnalyseError> {
        let meshed = self.follower.follow(frame, detector, continues)?;
        self.eyes.complete(frame, meshed)
    }
}

impl FaceFollower {
    /// The faces of one frame with their meshes. `continues` says whether it follows the
    /// previous frame in time (a video); for unrelated stills every frame is detected afresh.
    pub fn follow(
        &mut self,
        frame: &Frame,
        detector: &mut Detector,
        continues: bool,
    ) -> Result<Vec<MeshedFace>, AnalyseError> {
        // MediaPipe face_mesh's scope without irises: benches compare the two on it.
        let _span = crate::perf::span("follow");
        if !continues {
            self.followed.clear();
        }
        let due = self.frames_since_detection.saturating_add(1) >= self.config.detect_every;
        let full = self.followed.len() >= detector.max_faces();
        let detect_now = self.followed.is_empty() || (due && !full);
        if detect_now {
            self.frames_since_detection = 0;
            self.detector_runs += 1;
            for face in crate::perf::time("detect", || detector.detect(frame))? {
                let roi = Roi::for_mesh_from_detection(&face);
                // A face already followed keeps its crop; the detection refreshes its box.
                match self.followed.iter_mut().find(|f| same_face(&f.roi, &roi)) {
                    Some(followed) => {
                        followed.detection = face;
                        followed.anchor = None;
                    }
                    None => self.followed.push(Followed {
                        roi,
                        detection: face,
                        anchor: None,
                    }),
                }
            }
        } else {
            // Saturating: while the room is full it counts on for as long as the device runs.
            self.frames_since_detection = self.frames_since_detection.saturating_add(1);
        }

        let rois: Vec<Roi> = self.followed.iter().map(|f| f.roi).collect();
        let meshes = self.mesh.run(frame, &rois)?;
        let mut faces: Vec<MeshedFace> = Vec::new();
        let mut kept = Vec::new();
        let mut lost_one = false;
        for (followed, mesh) in std::mem::take(&mut self.followed).into_iter().zip(meshes) {
            if mesh.presence < self.config.min_presence {
                lost_one = true;
                continue;
            }
            // Two crops that drifted onto the same face: the first one keeps it.
            let bounds = mesh_bounds(&mesh.points);
            let duplicate = faces
                .iter()
                .any(|f| mesh_bounds(&f.mesh.points).iou(&bounds) > 0.5);
            if duplicate {
                continue;
            }
            let p = &mesh.points;
            let next = Roi::for_mesh_from_landmarks(p, RIGHT_EYE[0], LEFT_EYE[0]);
            let anchor = followed.anchor.unwrap_or(next);
            let detection = carry(&followed.detection, &anchor, &next);
            kept.push(Followed {
                roi: next,
                detection: followed.detection,
                anchor: Some(anchor),
            });
            faces.push(MeshedFace { detection, mesh });
        }
        self.followed = kept;
        if lost_one {
            // Look for the lost face (or a new one) on the next frame.
            self.frames_since_detection = self.config.detect_every;
        }
        Ok(faces)
    }

    /// How many frames the detector has run on.
    pub fn detector_runs(&self) -> u64 {
        self.detector_runs
    }
}

impl EyeAnalyser {
    /// Completes the first stage's faces of `frame`: eyes (as many at once as there are
    /// analysis threads), then pose, gaze and attention.
    pub fn complete(
        &mut self,
        frame: &Frame,
        faces: Vec<MeshedFace>,
    ) -> Result<Vec<AnalysedFace>, AnalyseError> {
        // The iris model, for the faces whose mesh model did not find the eyes.
        let eye_corners: Vec<EyeCorners> = faces
            .iter()
            .filter(|f| f.mesh.eyes.is_none())
            .flat_map(|f| eyes_of(&f.mesh))
            .collect();
        let mut found = match &mut self.iris {
            Some(iris) => iris.run(frame, &eye_corners)?,
            None => Vec::new(),
        }
        .into_iter();
        let size = [frame.width as f32, frame.height as f32];
        Ok(faces
            .into_iter()
            .map(
                |MeshedFace {
                     detection,
                     mut mesh,
                 }| {
                    let [right, left] = mesh.eyes.take().unwrap_or_else(|| {
                        [found.next(), found.next()].map(|eye| {
                            eye.expect("an iris model run for each eye the mesh did not find")
                        })
                    });
                    let geometry = crate::perf::time("pose", || {
                        pose::analyse(&mesh.points, &right, &left, size, self.camera_hfov_deg)
                    });
                    let attending = geometry.gaze_off_camera <= self.attention_cone_deg;
                    AnalysedFace {
                        detection,
                        landmarks: Some(FaceLandmarks {
                            mesh,
                            eyes: [right, left],
                            geometry,
                            attending,
                        }),
                    }
                },
            )
            .collect())
    }
}

/// Two crops are of the same face when their centres are within half a crop of each other.
fn same_face(a: &Roi, b: &Roi) -> bool {
    let d = (a.centre[0] - b.centre[0]).hypot(a.centre[1] - b.centre[1]);
    d < 0.5 * a.size.min(b.size)
}
