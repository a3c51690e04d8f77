//! The output record: one per analysed frame, as a JSON line on stdout (and, later, the MQTT
//! `faces` payload). Keys are short and numbers rounded because the record is sent per frame;
//! `v` is the schema version, raised on any incompatible change (docs/schema/).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::analyse::attribute_track::TrackAttributes;
use crate::analyse::AnalysedFace;
use crate::config::OutputConfig;
use crate::detect::Face;
use crate::track::TrackedFace;

/// Version of the record layout.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Serialize)]
pub struct FrameRecord<'a> {
    /// Schema version.
    pub v: u32,
    /// Device id.
    pub dev: &'a str,
    /// Frame number in the source (dropped frames leave gaps).
    pub seq: u64,
    /// Capture time, Unix seconds with millisecond precision.
    pub ts: f64,
    /// Frame width and height in pixels; face coordinates are in these pixels.
    pub w: u32,
    pub h: u32,
    /// The image file, for still images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<&'a str>,
    pub faces: Vec<FaceRecord>,
}

#[derive(Debug, Serialize)]
pub struct FaceRecord {
    /// Track id: the same face keeps it from frame to frame (and back after a short absence).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// The recognised gallery person; absent when unknown or identity is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub who: Option<String>,
    /// Box: left, top, width, height (pixels, 0.1 px).
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    /// Detection score, 0..1 (3 decimals).
    pub score: f32,
    /// Keypoints as [x, y] (pixels, 0.1 px), in the detector's order.
    pub kp: Vec<[f32; 2]>,
    /// Head pose: yaw, pitch, roll in degrees (0.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pose: Option<[f32; 3]>,
    /// Head position relative to the camera, centimetres (0.1): x right, y down, z away.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pos: Option<[f32; 3]>,
    /// Gaze of both eyes: yaw, pitch in degrees (0.1), camera frame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gaze: Option<[f32; 2]>,
    /// Gaze within the attention cone around the camera.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub att: Option<bool>,
    /// The subject's right and left eye.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eyes: Option<[EyeRecord; 2]>,
    /// The 68 iBUG points (pixels, 0.1), when `output.landmarks68`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lm68: Option<Vec<[f32; 2]>>,
    /// The 468 mesh points (pixels, 0.1), when `output.mesh`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mesh: Option<Vec<[f32; 3]>>,
    /// Age in years (0.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age: Option<f32>,
    /// Adience age group: "0-2", "4-6", "8-13", "15-20", "25-32", "38-43", "48-53" or "60+".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ag: Option<&'static str>,
    /// Gender label ("female" or "male") and its probability (0.01).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gen: Option<(&'static str, f32)>,
    /// Expression.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emo: Option<EmotionRecord>,
    /// Action-unit intensities 0-5 (0.1), in `action_units::ACTION_UNITS` order, when
    /// `output.action_units`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub au: Option<[f32; 18]>,
}

/// A face's expression.
#[derive(Debug, Serialize)]
pub struct EmotionRecord {
    /// The most probable expression: angry, disgust, fear, happy, sad, surprise or neutral.
    pub top: &'static str,
    /// Probabilities (0.01) of angry, disgust, fear, happy, sad, surprise, neutral, when
    /// `output.emotion_probs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p: Option<[f32; 7]>,
}

/// One eye of a face.
#[derive(Debug, Serialize)]
pub struct EyeRecord {
    /// Iris centre x, y and radius (pixels, 0.1).
    pub iris: [f32; 3],
    /// This eye's gaze: yaw, pitch in degrees (0.1).
    pub gaze: [f32; 2],
    /// Openness: lid distance / eye width (0.01); about 0.3 open, under 0.1 closed.
    pub open: f32,
}

fn round(value: f32, decimals: i32) -> f32 {
    let k = 10f32.powi(decimals);
    (value * k).round() / k
}

impl From<&Face> for FaceRecord {
    fn from(face: &Face) -> Self {
        let b = &face.bbox;
        FaceRecord {
            id: None,
            who: None,
            bbox: [round(b.x, 1), round(b.y, 1), round(b.w, 1), round(b.h, 1)],
            score: round(face.score, 3),
            kp: face
                .keypoints
                .iter()
                .map(|p| [round(p[0], 1), round(p[1], 1)])
                .collect(),
            pose: None,
            pos: None,
            gaze: None,
            att: None,
            eyes: None,
            lm68: None,
            mesh: None,
            age: None,
            ag: None,
            gen: None,
            emo: None,
            au: None,
        }
    }
}

impl FaceRecord {
    /// The record of an analysed face and its track, with the optional parts `output` asks
    /// for.
    pub fn new(face: &AnalysedFace, track: Option<&TrackedFace>, output: &OutputConfig) -> Self {
        let mut record = FaceRecord::from(&face.detection);
        if let Some(track) = track {
            record.id = Some(track.id);
            record.who = track.identity.as_ref().map(|m| m.name.clone());
        }
        let Some(landmarks) = &face.landmarks else {
            return record;
        };
        let g = &landmarks.geometry;
        let r1 = |v: f32| round(v, 1);
        record.pose = Some([r1(g.pose.yaw), r1(g.pose.pitch), r1(g.pose.roll)]);
        record.pos = Some(g.pose.position_cm.map(r1));
        record.gaze = Some(g.gaze_yaw_pitch().map(r1));
        record.att = Some(landmarks.attending);
        let eye = |i: usize, gaze: [f32; 3]| {
            let landmarks = &landmarks.eyes[i];
            let centre = landmarks.centre();
            EyeRecord {
                iris: [r1(centre[0]), r1(centre[1]), r1(landmarks.radius())],
                gaze: crate::analyse::pose::yaw_pitch(gaze).map(r1),
                open: round(g.openness[i], 2),
            }
        };
        if output.eyes {
            record.eyes = Some([eye(0, g.gaze_right), eye(1, g.gaze_left)]);
        }
        let points = &landmarks.mesh.points;
        if output.landmarks68 {
            let lm68 = crate::analyse::ibug68::from_mesh(points);
            record.lm68 = Some(lm68.into_iter().map(|p| p.map(r1)).collect());
        }
        if output.mesh {
            record.mesh = Some(points.iter().map(|p| p.map(r1)).collect());
        }
        if let Some(attributes) = track.and_then(|t| t.attributes.as_ref()) {
            record.add_attributes(attributes, output);
        }
        record
    }

    fn add_attributes(&mut self, a: &TrackAttributes, output: &OutputConfig) {
        let r2 = |v: f32| round(v, 2);
        self.age = a.estimate.age_years.map(|y| round(y, 1));
        self.ag = a.age_group_label();
        self.gen = a.gender.map(|(label, p)| (label, r2(p)));
        self.emo = a.emotion.map(|(top, _)| EmotionRecord {
            top: top.label(),
            p: a.estimate
                .emotions
                .filter(|_| output.emotion_probs)
                .map(|p| p.map(r2)),
        });
        if output.action_units {
            self.au = a.action_units.map(|au| au.0.map(|i| round(i, 1)));
        }
    }
}

/// Unix seconds, rounded to milliseconds.
pub fn unix_seconds(t: SystemTime) -> f64 {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    ms as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Rect;

    #[test]
    fn record_is_compact_and_versioned() {
        let face = Face {
            bbox: Rect {
                x: 10.04,
                y: 20.06,
                w: 30.0,
                h: 31.5,
            },
            score: 0.987654,
            keypoints: vec![[1.26, 2.0]],
        };
        let record = FrameRecord {
            v: SCHEMA_VERSION,
            dev: "cam",
            seq: 7,
            ts: unix_seconds(UNIX_EPOCH + std::time::Duration::from_micros(1_500_250)),
            w: 640,
            h: 480,
            file: None,
            faces: vec![FaceRecord::from(&face)],
        };
        assert_eq!(
            serde_json::to_string(&record).unwrap(),
            r#"{"v":1,"dev":"cam","seq":7,"ts":1.5,"w":640,"h":480,"faces":[{"box":[10.0,20.1,30.0,31.5],"score":0.988,"kp":[[1.3,2.0]]}]}"#
        );
    }
}
