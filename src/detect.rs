//! Face detection with BlazeFace-style SSD models: the whole frame letterboxed into the model's
//! input, per-anchor scores and box regressions decoded, overlapping detections merged by
//! weighted non-maximum suppression (as MediaPipe does), and everything mapped back to frame
//! pixels. Anchor layout and thresholds come from the manifest, so another SSD face model with
//! the same output convention is a manifest entry, not code.

use thiserror::Error;

use crate::config::DetectorConfig;
use crate::frame::Frame;
use crate::geometry::{Affine, Rect};
use crate::model::manifest::DetectorSpec;
use crate::model::preprocess::{sample_into, Border};
use crate::model::{Model, ModelError, Task};

/// One face found in a frame, in frame pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Face {
    pub bbox: Rect,
    pub score: f32,
    /// For BlazeFace: right eye, left eye, nose tip, mouth centre, right ear, left ear (the
    /// subject's right and left).
    pub keypoints: Vec<[f32; 2]>,
}

#[derive(Debug, Error)]
pub enum DetectError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("model {id}: {reason}")]
    Unsuitable { id: String, reason: String },
}

/// A detection in tensor pixels, before NMS.
#[derive(Debug, Clone)]
struct Candidate {
    score: f32,
    /// x0, y0, x1, y1, then keypoint x, y pairs.
    coords: Vec<f32>,
}

impl Candidate {
    fn rect(&self) -> Rect {
        Rect::from_corners(
            self.coords[0],
            self.coords[1],
            self.coords[2],
            self.coords[3],
        )
    }
}

pub struct Detector {
    model: Model,
    spec: DetectorSpec,
    /// Anchor centres in tensor pixels, in the model's output order.
    anchors: Vec<[f32; 2]>,
    max_faces: usize,
    candidates: Vec<Candidate>,
    /// Indices of the outputs with roles `boxes` and `scores`.
    boxes_output: usize,
    scores_output: usize,
}

impl Detector {
    /// Wraps a detection model; the configuration's thresholds override the manifest's.
    pub fn new(model: Model, config: &DetectorConfig) -> Result<Detector, DetectError> {
        let entry = &model.entry;
        let unsuitable = |reason: String| DetectError::Unsuitable {
            id: entry.id.clone(),
            reason,
        };
        if entry.task != Task::Detect {
            return Err(unsuitable(format!(
                "is a {:?} model, not a face detector",
                entry.task
            )));
        }
        let mut spec = entry
            .detector
            .clone()
            .ok_or_else(|| unsuitable("manifest entry has no [model.detector] table".into()))?;
        if let Some(score) = config.min_score {
            spec.min_score = score;
        }
        if let Some(iou) = config.nms_iou {
            spec.nms_iou = iou;
        }
        let (width, height) = (entry.input.width(), entry.input.height());
        let mut anchors = Vec::new();
        for grid in &spec.anchors {
            let (cols, rows) = (width.div_ceil(grid.stride), height.div_ceil(grid.stride));
            for row in 0..rows {
                for col in 0..cols {
                    let centre = [
                        (col as f32 + 0.5) * width as f32 / cols as f32,
                        (row as f32 + 0.5) * height as f32 / rows as f32,
                    ];
                    anchors.extend(std::iter::repeat_n(centre, grid.per_cell));
                }
            }
        }
        let per_anchor = 4 + 2 * spec.keypoints;
        let boxes_output = model.output_index("boxes")?;
        let scores_output = model.output_index("scores")?;
        let boxes = &entry.outputs[boxes_output].shape;
        let scores = &entry.outputs[scores_output].shape;
        if *boxes != [1, anchors.len(), per_anchor] || *scores != [1, anchors.len(), 1] {
            return Err(unsuitable(format!(
                "outputs {boxes:?} and {scores:?} do not fit {} anchors with {} keypoints",
                anchors.len(),
                spec.keypoints
            )));
        }
        Ok(Detector {
            model,
            spec,
            anchors,
            boxes_output,
            scores_output,
            max_faces: config.max_faces,
            candidates: Vec::new(),
        })
    }

    pub fn model_id(&self) -> &str {
        &self.model.entry.id
    }

    /// The most faces one detection returns (`[detector] max_faces`).
    pub fn max_faces(&self) -> usize {
        self.max_faces
    }

    /// The faces in `frame`, highest score first.
    pub fn detect(&mut self, frame: &Frame) -> Result<Vec<Face>, DetectError> {
        let input = &self.model.entry.input;
        let (tw, th) = (input.width() as u32, input.height() as u32);
        let to_frame = Affine::letterbox(frame.width, frame.height, tw, th);
        let (spec, tensor) = self.model.input();
        sample_into(frame, &to_frame, spec, Border::Black, tensor);
        let outputs = self.model.run()?;
        let boxes = self.model.output(&outputs, self.boxes_output)?;
        let scores = self.model.output(&outputs, self.scores_output)?;
        let input_size = [tw as f32, th as f32];
        let merged = crate::perf::time("decode", || {
            decode(
                &self.spec,
                input_size,
                &self.anchors,
                boxes,
                scores,
                &mut self.candidates,
            );
            weighted_nms(&mut self.candidates, self.spec.nms_iou, self.max_faces)
        });
        Ok(merged.into_iter().map(|c| to_face(&c, &to_frame)).collect())
    }
}

/// Turns raw outputs into candidates above the score threshold, in tensor pixels.
/// `input_size` is the model input's width and height in pixels.
fn decode(
    spec: &DetectorSpec,
    input_size: [f32; 2],
    anchors: &[[f32; 2]],
    boxes: &[f32],
    scores: &[f32],
    out: &mut Vec<Candidate>,
) {
    out.clear();
    let per_anchor = 4 + 2 * spec.keypoints;
    // Compare logits rather than take a sigmoid of every anchor: the sigmoid is monotonic.
    let min_logit = (spec.min_score / (1.0 - spec.min_score)).ln();
    for (i, (anchor, &logit)) in anchors.iter().zip(scores).enumerate() {
        let logit = logit.clamp(-spec.score_clip, spec.score_clip);
        if logit < min_logit {
            continue;
        }
        let raw = &boxes[i * per_anchor..(i + 1) * per_anchor];
        // Regressions are relative to the anchor, in pixels of a `box_scale`-wide input.
        let (kx, ky) = (
            input_size[0] / spec.box_scale,
            input_size[1] / spec.box_scale,
        );
        let (cx, cy) = (anchor[0] + raw[0] * kx, anchor[1] + raw[1] * ky);
        let (w, h) = (raw[2] * kx, raw[3] * ky);
        let mut coords = Vec::with_capacity(4 + 2 * spec.keypoints);
        coords.extend_from_slice(&[cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]);
        for kp in raw[4..].chunks_exact(2) {
            coords.push(anchor[0] + kp[0] * kx);
            coords.push(anchor[1] + kp[1] * ky);
        }
        out.push(Candidate {
            score: 1.0 / (1.0 + (-logit).exp()),
            coords,
        });
    }
}

/// MediaPipe's weighted non-maximum suppression: the best remaining detection absorbs every
/// detection overlapping it by more than `iou`; its box and keypoints become the score-weighted
/// mean of the group, its score stays the best one's. Averaging, rather than keeping only the
/// best box, steadies boxes from frame to frame.
fn weighted_nms(candidates: &mut Vec<Candidate>, iou: f32, max: usize) -> Vec<Candidate> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept = Vec::new();
    let mut remaining: Vec<Candidate> = std::mem::take(candidates);
    while !remaining.is_empty() && kept.len() < max {
        let best = remaining[0].rect();
        let (group, rest): (Vec<Candidate>, Vec<Candidate>) = remaining
            .into_iter()
            .partition(|c| c.rect().iou(&best) > iou);
        let total: f32 = group.iter().map(|c| c.score).sum();
        let mut coords = vec![0.0; group[0].coords.len()];
        for c in &group {
            for (acc, v) in coords.iter_mut().zip(&c.coords) {
                *acc += v * c.score / total;
            }
        }
        kept.push(Candidate {
            score: group[0].score,
            coords,
        });
        remaining = rest;
    }
    kept
}

fn to_face(c: &Candidate, to_frame: &Affine) -> Face {
    // A face cut by the frame edge keeps its whole box, partly outside the frame: its size and
    // centre stay right for cropping and tracking.
    let (x0, y0) = to_frame.apply(c.coords[0], c.coords[1]);
    let (x1, y1) = to_frame.apply(c.coords[2], c.coords[3]);
    let bbox = Rect::from_corners(x0, y0, x1, y1);
    let keypoints = c.coords[4..]
        .chunks_exact(2)
        .map(|p| {
            let (x, y) = to_frame.apply(p[0], p[1]);
            [x, y]
        })
        .collect();
    Face {
        bbox,
        score: c.score,
        keypoints,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(score: f32, x0: f32, y0: f32, x1: f32, y1: f32) -> Candidate {
        Candidate {
            score,
            coords: vec![x0, y0, x1, y1, (x0 + x1) / 2.0, (y0 + y1) / 2.0],
        }
    }

    #[test]
    fn weighted_nms_merges_overlaps_and_keeps_separate_faces() {
        let mut candidates = vec![
            candidate(0.6, 12.0, 10.0, 32.0, 30.0),
            candidate(0.9, 10.0, 10.0, 30.0, 30.0),
            candidate(0.8, 60.0, 60.0, 80.0, 80.0),
        ];
        let kept = weighted_nms(&mut candidates, 0.3, 10);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].score, 0.9);
        // x0 = (0.9 * 10 + 0.6 * 12) / 1.5
        assert!(
            (kept[0].coords[0] - 10.8).abs() < 1e-4,
            "{:?}",
            kept[0].coords
        );
        assert_eq!(kept[1].coords[0], 60.0);
        let mut again = vec![
            candidate(0.9, 0.0, 0.0, 1.0, 1.0),
            candidate(0.8, 5.0, 5.0, 6.0, 6.0),
        ];
        assert_eq!(weighted_nms(&mut again, 0.3, 1).len(), 1, "max faces");
    }

    #[test]
    fn decode_applies_anchor_offsets_and_threshold() {
        let spec = DetectorSpec {
            anchors: vec![],
            box_scale: 128.0,
            score_clip: 100.0,
            min_score: 0.5,
            nms_iou: 0.3,
            keypoints: 1,
        };
        let anchors = [[4.0, 4.0], [12.0, 4.0]];
        // Anchor 0: centre moved by (2, -1), 10x8 box, keypoint at the anchor; anchor 1 below threshold.
        let boxes = [
            2.0, -1.0, 10.0, 8.0, 0.0, 0.0, /**/ 0.0, 0.0, 5.0, 5.0, 0.0, 0.0,
        ];
        let scores = [2.0, -3.0];
        let mut out = Vec::new();
        decode(&spec, [128.0, 128.0], &anchors, &boxes, &scores, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].coords, vec![1.0, -1.0, 11.0, 7.0, 4.0, 4.0]);
        assert!((out[0].score - 0.880797).abs() < 1e-5);
    }
}
