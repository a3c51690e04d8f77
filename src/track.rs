//! Tracking: each face keeps a stable id from frame to frame, and each track is one visit.
//!
//! Faces are matched to tracks by the overlap of their boxes with where each track is expected
//! to be (its last box moved on by its velocity), greedily, best overlap first. A track not
//! seen for `lost_after_ms` is lost; a new face whose descriptor is close to a lost track's
//! (within `reid_window_s`) takes that track back, so a short occlusion or a person leaving
//! and returning does not make a new visit. A lost track that nobody reclaims ends: then its
//! `track_end` and `visit` events are sent.
//!
//! The expensive per-face work (the descriptor, and with it recognition) is scheduled per
//! track: when the track starts, every `refresh_frames` frames, and when the face is seen
//! clearly enough to beat the track's best view by `quality_gain`. The track's identity
//! comes from the mean of its descriptors, which is steadier than any single one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::analyse::action_units::Measures;
use crate::analyse::attribute_track::{AttributeTrack, TrackAttributes};
use crate::analyse::attributes::{top_emotion, Attributes};
use crate::analyse::identity::{distance, Embedding};
use crate::analyse::{AnalyseError, AnalysedFace};
use crate::config::TrackingConfig;
use crate::frame::Frame;
use crate::gallery::Match;
use crate::geometry::Rect;
use crate::record::unix_seconds;

/// Descriptors kept per track (the clearest views), for enrolling a person from a track.
pub const SAMPLES_PER_TRACK: usize = 5;
/// Longest gap between two sightings that still counts as time seen (and attending): a face
/// missed for longer was not watched in between.
const MAX_COUNTED_GAP: Duration = Duration::from_millis(500);

/// The per-track work the tracker schedules.
pub trait TrackAnalysis {
    /// The scheduled work on one face: its descriptor, when `describe` (`None` when identity
    /// is off or the face has no landmarks), and its age, gender and expression (`None` when
    /// they are off or the face has no landmarks).
    fn run(
        &mut self,
        frame: &Frame,
        face: &AnalysedFace,
        describe: bool,
    ) -> Result<Scheduled, AnalyseError>;
    /// The gallery person a descriptor belongs to.
    fn identify(&self, descriptor: &[f32]) -> Option<Match>;
    /// Whether action units follow every frame.
    fn action_units(&self) -> bool;
    /// Whether any scheduled work (descriptors or attributes) is on.
    fn scheduled(&self) -> bool;
}

/// What a face's record says about its track.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackedFace {
    pub id: u64,
    /// The recognised person, if any (`None`: unknown, or identity off).
    pub identity: Option<Match>,
    /// Seconds since the track started.
    pub age_s: f32,
    /// The track's smoothed age, gender, expression and action units, when estimated.
    pub attributes: Option<TrackAttributes>,
}

/// What happened to tracks, in the `events` topic's terms (docs/schema/events.json).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum TrackEvent {
    TrackStart {
        track: u64,
        frame: u64,
    },
    /// Sent when the track is given up for good (after the re-identification window), or
    /// when it turns out to be an earlier track coming back (`into`; no visit then).
    TrackEnd {
        track: u64,
        frame: u64,
        /// Seconds from the first to the last sighting.
        dur: f64,
        #[serde(skip_serializing_if = "Option::is_none")]
        into: Option<u64>,
    },
    /// The track was recognised as `name` (or changed to it).
    Identity {
        track: u64,
        name: String,
        /// Distance of the track's descriptor to the person's nearest sample.
        dist: f64,
    },
    Visit(Visit),
}

/// One visit, summarised when its track ends.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Visit {
    pub track: u64,
    /// The person, when recognised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Start, Unix seconds.
    pub start: f64,
    /// Dwell: seconds from the first to the last sighting.
    pub dur: f64,
    /// Share of the time seen with landmarks spent looking at the camera (absent without
    /// landmarks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub att: Option<f64>,
    /// Smoothed age (years) and gender at the end of the visit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gen: Option<&'static str>,
    /// The expression that dominated the visit: the most probable over all its estimates,
    /// weighted by their quality.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emo: Option<&'static str>,
}

/// The tracker's answer for one frame.
#[derive(Debug, Default)]
pub struct TrackUpdate {
    /// Each face's track, in the order of the faces.
    pub faces: Vec<TrackedFace>,
    pub events: Vec<TrackEvent>,
}

/// Running counts since the start (`trk` in `stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct TrackCounts {
    /// Faces being tracked now.
    #[serde(rename = "cur")]
    pub current: usize,
    /// Visits (tracks) started.
    pub visits: u64,
    /// Distinct gallery people recognised.
    pub known: usize,
    /// Visitors: each recognised person once, plus each visit nobody was recognised in.
    pub visitors: u64,
}

struct Track {
    id: u64,
    started_at: SystemTime,
    first_pts: Duration,
    last_pts: Duration,
    last_frame: u64,
    bbox: Rect,
    /// Box centre velocity, pixels per second.
    velocity: [f32; 2],
    frames_since_refresh: u32,
    best_quality: f32,
    /// Sum and count of the descriptors seen, for their mean.
    descriptor_sum: Vec<f32>,
    descriptors: u32,
    /// The clearest descriptors, with their quality.
    samples: Vec<(f32, Embedding)>,
    identity: Option<Match>,
    /// Time seen with landmarks, and the part of it spent attending.
    observed: Duration,
    attending: Duration,
    /// Smoothed attributes, and whether anything was estimated.
    attributes: AttributeTrack,
    estimated: bool,
    /// Quality-weighted sum of the expression probabilities over the visit.
    emotion_totals: [f32; 7],
}

impl Track {
    fn new(id: u64, frame: &Frame, bbox: Rect) -> Track {
        Track {
            id,
            started_at: frame.captured_at,
            first_pts: frame.pts,
            last_pts: frame.pts,
            last_frame: frame.seq,
            bbox,
            velocity: [0.0; 2],
            frames_since_refresh: 0,
            best_quality: 0.0,
            descriptor_sum: Vec::new(),
            descriptors: 0,
            samples: Vec::new(),
            identity: None,
            observed: Duration::ZERO,
            attending: Duration::ZERO,
            attributes: AttributeTrack::default(),
            estimated: false,
            emotion_totals: [0.0; 7],
        }
    }

    /// Where the box should be at `pts`.
    fn predicted(&self, pts: Duration) -> Rect {
        let dt = pts.saturating_sub(self.last_pts).as_secs_f32();
        Rect {
            x: self.bbox.x + self.velocity[0] * dt,
            y: self.bbox.y + self.velocity[1] * dt,
            ..self.bbox
        }
    }

    fn mean_descriptor(&self) -> Option<Vec<f32>> {
        (self.descriptors > 0).then(|| {
            let n = self.descriptors as f32;
            self.descriptor_sum.iter().map(|v| v / n).collect()
        })
    }

    fn add_descriptor(&mut self, descriptor: Embedding, quality: f32) {
        if self.descriptor_sum.len() != descriptor.len() {
            self.descriptor_sum = vec![0.0; descriptor.len()];
            self.descriptors = 0;
        }
        for (sum, v) in self.descriptor_sum.iter_mut().zip(&descriptor) {
            *sum += v;
        }
        self.descriptors += 1;
        self.samples.push((quality, descriptor));
        self.samples.sort_by(|a, b| b.0.total_cmp(&a.0));
        self.samples.truncate(SAMPLES_PER_TRACK);
    }

    /// Takes in this frame's sighting of the face.
    fn seen(&mut self, frame: &Frame, face: &AnalysedFace) {
        let dt = frame.pts.saturating_sub(self.last_pts);
        let b = &face.detection.bbox;
        if !dt.is_zero() {
            let secs = dt.as_secs_f32();
            let moved = [
                (b.x + b.w / 2.0 - self.bbox.x - self.bbox.w / 2.0) / secs,
                (b.y + b.h / 2.0 - self.bbox.y - self.bbox.h / 2.0) / secs,
            ];
            // Half the old velocity, half the new: steady under the detector's jitter.
            self.velocity = [0, 1].map(|i| 0.5 * self.velocity[i] + 0.5 * moved[i]);
        }
        if let Some(landmarks) = &face.landmarks {
            let counted = dt.min(MAX_COUNTED_GAP);
            self.observed += counted;
            if landmarks.attending {
                self.attending += counted;
            }
        }
        self.bbox = *b;
        self.last_pts = frame.pts;
        self.last_frame = frame.seq;
        self.frames_since_refresh += 1;
    }

    fn dwell(&self) -> Duration {
        self.last_pts.saturating_sub(self.first_pts)
    }

    fn view(&self, pts: Duration) -> TrackedFace {
        TrackedFace {
            id: self.id,
            identity: self.identity.clone(),
            age_s: pts.saturating_sub(self.first_pts).as_secs_f32(),
            attributes: self.estimated.then(|| *self.attributes.current()),
        }
    }

    /// Takes one estimate of the face's age, gender and expression.
    fn add_estimate(&mut self, estimate: &Attributes, quality: f32) {
        self.attributes.update(estimate, quality);
        if let Some(p) = estimate.emotions {
            for (total, p) in self.emotion_totals.iter_mut().zip(p) {
                *total += quality * p;
            }
        }
        self.estimated = true;
    }

    /// The per-frame action units, from this frame's mesh and irises.
    fn add_action_units(&mut self, face: &AnalysedFace) {
        if let Some(landmarks) = &face.landmarks {
            let pose = &landmarks.geometry.pose;
            crate::perf::time("action_units", || {
                let measures = Measures::of_face(landmarks);
                self.attributes
                    .update_action_units(&measures, [pose.yaw, pose.pitch]);
            });
            self.estimated = true;
        }
    }

    fn end_events(&self) -> [TrackEvent; 2] {
        let dur = round3(self.dwell().as_secs_f64());
        let att = (!self.observed.is_zero())
            .then(|| round3(self.attending.as_secs_f64() / self.observed.as_secs_f64()));
        let current = self.attributes.current();
        let emo = (self.emotion_totals.iter().sum::<f32>() > 0.0)
            .then(|| top_emotion(&self.emotion_totals).0.label());
        [
            TrackEvent::TrackEnd {
                track: self.id,
                frame: self.last_frame,
                dur,
                into: None,
            },
            TrackEvent::Visit(Visit {
                track: self.id,
                name: self.identity.as_ref().map(|m| m.name.clone()),
                start: unix_seconds(self.started_at),
                dur,
                att,
                age: current.estimate.age_years.map(|a| a.round()),
                gen: current.gender.map(|(label, _)| label),
                emo,
            }),
        ]
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

pub struct Tracker {
    config: TrackingConfig,
    /// Whether lost tracks can come back (descriptors are available).
    reidentify: bool,
    live: Vec<Track>,
    lost: Vec<Track>,
    next_id: u64,
    last_pts: Option<Duration>,
    visits: u64,
    unrecognised_visits: u64,
    known: BTreeSet<String>,
    samples: TrackSamples,
}

/// The clearest descriptors of each live or lost track, best first, shared with the threads
/// that enrol people from tracks.
#[derive(Debug, Clone, Default)]
pub struct TrackSamples(Arc<Mutex<BTreeMap<u64, Vec<Embedding>>>>);

impl TrackSamples {
    pub fn get(&self, track: u64) -> Option<Vec<Embedding>> {
        self.lock().get(&track).cloned()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Vec<Embedding>>> {
        // A poisoned lock still holds whole entries.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, track: &Track) {
        let samples = track.samples.iter().map(|(_, d)| d.clone()).collect();
        self.lock().insert(track.id, samples);
    }

    fn remove(&self, track: u64) {
        self.lock().remove(&track);
    }
}

impl Tracker {
    /// `reidentify`: whether descriptors are computed, so that lost tracks can come back.
    pub fn new(config: &TrackingConfig, reidentify: bool) -> Tracker {
        Tracker {
            config: config.clone(),
            reidentify,
            live: Vec::new(),
            lost: Vec::new(),
            next_id: 0,
            last_pts: None,
            visits: 0,
            unrecognised_visits: 0,
            known: BTreeSet::new(),
            samples: TrackSamples::default(),
        }
    }

    /// Assigns `faces` of `frame` to tracks, runs the scheduled per-track work, and returns
    /// each face's track (in the order of `faces`) and what happened. `continues`: whether the
    /// frame follows the previous one in time; when not (unrelated stills, or a source whose
    /// clock went back), every track ends first.
    pub fn update(
        &mut self,
        frame: &Frame,
        faces: &[AnalysedFace],
        continues: bool,
        analysis: &mut dyn TrackAnalysis,
    ) -> Result<TrackUpdate, AnalyseError> {
        let mut events = Vec::new();
        let clock_went_back = self.last_pts.is_some_and(|last| frame.pts < last);
        if !continues || clock_went_back {
            events.extend(self.finish());
        }
        self.last_pts = Some(frame.pts);

        // Match faces to live tracks, best overlap with the predicted box first.
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (t, track) in self.live.iter().enumerate() {
            let predicted = track.predicted(frame.pts);
            for (f, face) in faces.iter().enumerate() {
                let iou = predicted.iou(&face.detection.bbox);
                if iou >= self.config.min_iou {
                    pairs.push((iou, t, f));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut track_of_face: Vec<Option<usize>> = vec![None; faces.len()];
        let mut matched_track = vec![false; self.live.len()];
        for (_, t, f) in pairs {
            if !matched_track[t] && track_of_face[f].is_none() {
                matched_track[t] = true;
                track_of_face[f] = Some(t);
            }
        }

        // Tracks not seen for too long are lost (or end, when they cannot come back).
        let lost_after = Duration::from_millis(self.config.lost_after_ms.into());
        let mut index_after_removal = Vec::with_capacity(self.live.len());
        let mut kept = Vec::with_capacity(self.live.len());
        for (t, track) in std::mem::take(&mut self.live).into_iter().enumerate() {
            if !matched_track[t] && frame.pts.saturating_sub(track.last_pts) > lost_after {
                index_after_removal.push(None);
                self.lose(track, &mut events);
            } else {
                index_after_removal.push(Some(kept.len()));
                kept.push(track);
            }
        }
        self.live = kept;
        for t in track_of_face.iter_mut() {
            *t = t.and_then(|t| index_after_removal[t]);
        }

        // Faces of continuing tracks: take the sighting in, refresh when it is time.
        for (f, face) in faces.iter().enumerate() {
            let Some(t) = track_of_face[f] else { continue };
            let track = &mut self.live[t];
            track.seen(frame, face);
            if analysis.action_units() {
                track.add_action_units(face);
            }
            let quality = face_quality(frame, face);
            let due = track.frames_since_refresh >= self.config.refresh_frames
                || quality > track.best_quality * (1.0 + self.config.quality_gain);
            if due && analysis.scheduled() {
                track.frames_since_refresh = 0;
                track.best_quality = track.best_quality.max(quality);
                let done = analysis.run(frame, face, true)?;
                done.apply(track, quality, analysis, &mut events, &mut self.known);
                self.samples.set(track);
                self.merge_late(t, frame, &mut events);
            }
        }

        // Faces without a track: a live track whose box jumped (a detection after a stretch
        // of following), a lost track coming back, or a new visit. Descriptors tell.
        let mut unmatched: Vec<usize> = (0..self.live.len())
            .filter(|t| !track_of_face.contains(&Some(*t)))
            .collect();
        for (f, face) in faces.iter().enumerate() {
            if track_of_face[f].is_some() {
                continue;
            }
            // The attributes are estimated with the descriptor (at once, on two threads) before
            // the descriptor says whether the face is a live track that jumped: then they are
            // not used. Rare (a detection after a stretch of following), and a new track's
            // first frame, the start-up cost, gains the parallel run.
            let done = analysis.run(frame, face, self.reidentify)?;
            let jumped = done
                .descriptor
                .as_deref()
                .and_then(|d| self.nearest(&unmatched, d, |t| &self.live[t]));
            if let Some(t) = jumped {
                unmatched.retain(|&u| u != t);
                self.live[t].seen(frame, face);
                track_of_face[f] = Some(t);
                continue;
            }
            let quality = face_quality(frame, face);
            let reclaimed = done
                .descriptor
                .as_deref()
                .and_then(|d| self.reclaim(d, frame));
            let mut track = match reclaimed {
                Some(mut track) => {
                    log::debug!("track {} re-identified", track.id);
                    track.seen(frame, face);
                    track
                }
                None => {
                    let track = Track::new(self.next_id, frame, face.detection.bbox);
                    self.next_id += 1;
                    self.visits += 1;
                    events.push(TrackEvent::TrackStart {
                        track: track.id,
                        frame: frame.seq,
                    });
                    track
                }
            };
            if analysis.action_units() {
                track.add_action_units(face);
            }
            track.frames_since_refresh = 0;
            track.best_quality = track.best_quality.max(quality);
            done.apply(&mut track, quality, analysis, &mut events, &mut self.known);
            self.samples.set(&track);
            track_of_face[f] = Some(self.live.len());
            self.live.push(track);
        }
        let tracked = track_of_face
            .iter()
            .map(|t| {
                let t = t.expect("every face has a track by now");
                self.live[t].view(frame.pts)
            })
            .collect();

        // Lost tracks nobody reclaimed in time end.
        let window = Duration::from_secs_f32(self.config.reid_window_s);
        let (expired, waiting): (Vec<Track>, Vec<Track>) = std::mem::take(&mut self.lost)
            .into_iter()
            .partition(|t| frame.pts.saturating_sub(t.last_pts) > window);
        self.lost = waiting;
        for track in expired {
            self.end(track, &mut events);
        }
        Ok(TrackUpdate {
            faces: tracked,
            events,
        })
    }

    /// Ends every track (the stream ended or jumped): their `track_end` and `visit` events.
    pub fn finish(&mut self) -> Vec<TrackEvent> {
        let mut events = Vec::new();
        let tracks: Vec<Track> = self.live.drain(..).chain(self.lost.drain(..)).collect();
        for track in tracks {
            self.end(track, &mut events);
        }
        events
    }

    pub fn counts(&self) -> TrackCounts {
        TrackCounts {
            current: self.live.len(),
            visits: self.visits,
            known: self.known.len(),
            visitors: self.known.len() as u64 + self.unrecognised_visits,
        }
    }

    /// The tracks' clearest descriptors, readable from other threads (MQTT `enroll` by track).
    pub fn samples(&self) -> TrackSamples {
        self.samples.clone()
    }

    fn lose(&mut self, track: Track, events: &mut Vec<TrackEvent>) {
        if self.reidentify && track.descriptors > 0 {
            self.lost.push(track);
        } else {
            self.end(track, events);
        }
    }

    fn end(&mut self, track: Track, events: &mut Vec<TrackEvent>) {
        self.samples.remove(track.id);
        if track.identity.is_none() {
            self.unrecognised_visits += 1;
        }
        let [end, visit] = track.end_events();
        log::info!(
            "track {} ended: {}",
            track.id,
            serde_json::to_string(&visit).unwrap_or_default()
        );
        events.push(end);
        events.push(visit);
    }

    /// A young track (within the re-identification window of its start) whose descriptors
    /// turn out to be a lost track's gives way to it: a face that came back but was first
    /// seen too poorly to tell (half out of the frame, turned away). The lost track goes on
    /// under its own id with the young one's sightings; the young one ends without a visit.
    fn merge_late(&mut self, t: usize, frame: &Frame, events: &mut Vec<TrackEvent>) {
        let window = Duration::from_secs_f32(self.config.reid_window_s);
        let young = &self.live[t];
        if frame.pts.saturating_sub(young.first_pts) > window {
            return;
        }
        // Its clearest view, not its mean: the first views were the poor ones.
        let Some((_, clearest)) = young.samples.first() else {
            return;
        };
        let Some(old) = self.reclaim(&clearest.clone(), frame) else {
            return;
        };
        let young = std::mem::replace(&mut self.live[t], old);
        let old = &mut self.live[t];
        log::debug!("track {} is track {} coming back", young.id, old.id);
        old.bbox = young.bbox;
        old.velocity = young.velocity;
        old.last_pts = young.last_pts;
        old.last_frame = young.last_frame;
        old.frames_since_refresh = 0;
        old.best_quality = old.best_quality.max(young.best_quality);
        old.observed += young.observed;
        old.attending += young.attending;
        if old.descriptor_sum.len() == young.descriptor_sum.len() {
            for (sum, v) in old.descriptor_sum.iter_mut().zip(&young.descriptor_sum) {
                *sum += v;
            }
            old.descriptors += young.descriptors;
        }
        old.samples.extend(young.samples.iter().cloned());
        old.samples.sort_by(|a, b| b.0.total_cmp(&a.0));
        old.samples.truncate(SAMPLES_PER_TRACK);
        for (total, t) in old.emotion_totals.iter_mut().zip(young.emotion_totals) {
            *total += t;
        }
        self.samples.remove(young.id);
        self.samples.set(&self.live[t]);
        // Not a visit after all.
        self.visits -= 1;
        events.push(TrackEvent::TrackEnd {
            track: young.id,
            frame: frame.seq,
            dur: round3(young.dwell().as_secs_f64()),
            into: Some(self.live[t].id),
        });
    }

    /// Takes back the lost track whose descriptor is nearest `descriptor`, within the
    /// re-identification distance and window.
    fn reclaim(&mut self, descriptor: &[f32], frame: &Frame) -> Option<Track> {
        let window = Duration::from_secs_f32(self.config.reid_window_s);
        let in_window: Vec<usize> = (0..self.lost.len())
            .filter(|&i| frame.pts.saturating_sub(self.lost[i].last_pts) <= window)
            .collect();
        let index = self.nearest(&in_window, descriptor, |i| &self.lost[i])?;
        Some(self.lost.swap_remove(index))
    }

    /// Of the `candidates` (indices that `track` resolves), the one whose mean descriptor is
    /// nearest `descriptor` within the re-identification distance.
    fn nearest<'a>(
        &self,
        candidates: &[usize],
        descriptor: &[f32],
        track: impl Fn(usize) -> &'a Track,
    ) -> Option<usize> {
        candidates
            .iter()
            .filter_map(|&i| Some((i, distance(&track(i).mean_descriptor()?, descriptor))))
            .filter(|(_, d)| *d <= self.config.reid_distance)
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i)
    }
}

/// One run of a track's scheduled work (see [`TrackAnalysis::run`]).
#[derive(Debug, Default)]
pub struct Scheduled {
    pub descriptor: Option<Embedding>,
    pub estimate: Option<Attributes>,
}

impl Scheduled {
    /// Adds the descriptor and recognises the track, then the attributes, each weighted by
    /// the view's `quality`.
    fn apply(
        self,
        track: &mut Track,
        quality: f32,
        analysis: &dyn TrackAnalysis,
        events: &mut Vec<TrackEvent>,
        known: &mut BTreeSet<String>,
    ) {
        if let Some(descriptor) = self.descriptor {
            track.add_descriptor(descriptor, quality);
            recognise(track, analysis, events, known);
        }
        if let Some(estimate) = &self.estimate {
            track.add_estimate(estimate, quality);
        }
    }
}

/// Matches the track's mean descriptor against the gallery; an event when the identity
/// changes. `known` collects the people recognised.
fn recognise(
    track: &mut Track,
    analysis: &dyn TrackAnalysis,
    events: &mut Vec<TrackEvent>,
    known: &mut BTreeSet<String>,
) {
    let Some(mean) = track.mean_descriptor() else {
        return;
    };
    let identity = analysis.identify(&mean);
    let changed = identity.as_ref().map(|m| &m.name) != track.identity.as_ref().map(|m| &m.name);
    if let (true, Some(m)) = (changed, &identity) {
        events.push(TrackEvent::Identity {
            track: track.id,
            name: m.name.clone(),
            dist: round3(f64::from(m.distance)),
        });
        known.insert(m.name.clone());
    }
    track.identity = identity;
}

/// How well a face can be recognised in this view, 0-1: large enough (the descriptor's chip
/// is 150 pixels), turned towards the camera, and sharp.
pub fn face_quality(frame: &Frame, face: &AnalysedFace) -> f32 {
    let b = &face.detection.bbox;
    let size = (b.w.min(b.h) / 112.0).clamp(0.0, 1.0);
    let frontal = face.landmarks.as_ref().map_or(0.5, |l| {
        let pose = &l.geometry.pose;
        (pose.yaw.to_radians().cos() * pose.pitch.to_radians().cos()).max(0.0)
    });
    let sharp = sharpness(frame, b);
    size * frontal * sharp / (sharp + SHARPNESS_HALF)
}

/// Laplacian variance at which sharpness counts as one half.
const SHARPNESS_HALF: f32 = 100.0;

/// Variance of the grey-level Laplacian over the middle of `bbox`, at the frame's own
/// resolution (at most 48x48 places sampled): blur and heavy compression lower it.
fn sharpness(frame: &Frame, bbox: &Rect) -> f32 {
    let (w, h) = (frame.width as i64, frame.height as i64);
    let grey = |x: i64, y: i64| {
        let p = frame.pixel(x as u32, y as u32);
        (77 * i32::from(p[0]) + 150 * i32::from(p[1]) + 29 * i32::from(p[2])) as f32 / 256.0
    };
    let x0 = ((bbox.x + 0.2 * bbox.w) as i64).max(1);
    let x1 = ((bbox.x + 0.8 * bbox.w) as i64).min(w - 2);
    let y0 = ((bbox.y + 0.2 * bbox.h) as i64).max(1);
    let y1 = ((bbox.y + 0.8 * bbox.h) as i64).min(h - 2);
    if x1 <= x0 || y1 <= y0 {
        return 0.0;
    }
    let step_x = ((x1 - x0) / 48).max(1) as usize;
    let step_y = ((y1 - y0) / 48).max(1) as usize;
    let (mut sum, mut sum_sq, mut n) = (0.0f64, 0.0f64, 0.0f64);
    for y in (y0..=y1).step_by(step_y) {
        for x in (x0..=x1).step_by(step_x) {
            let lap = 4.0 * grey(x, y)
                - grey(x - 1, y)
                - grey(x + 1, y)
                - grey(x, y - 1)
                - grey(x, y + 1);
            let lap = f64::from(lap);
            sum += lap;
            sum_sq += lap * lap;
            n += 1.0;
        }
    }
    let mean = sum / n;
    (sum_sq / n - mean * mean) as f32
}
