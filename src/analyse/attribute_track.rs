//! Attributes smoothed over a track, so that a published value does not flicker from frame to
//! frame. One [`AttributeTrack`] per tracked face (the tracker holds it); pure state, no IO.
//!
//! - Age, p(male) and the seven expression probabilities: means weighted by each estimate's
//!   quality and by recency, an exponential forgetting of [`AGE_GENDER_MEMORY`] estimates for
//!   age and gender (they do not change within a track) and [`EMOTION_MEMORY`] for expressions
//!   (they do). A first estimate is taken as it is.
//! - Labels (Adience group, gender, top expression) change only when the smoothed value has
//!   moved past the boundary by a margin (hysteresis): [`AGE_GROUP_MARGIN_YEARS`],
//!   [`GENDER_MARGIN`], [`EMOTION_MARGIN`].
//! - Action units: the track's own neutral face ([`NeutralBaseline`]) learns from every frame;
//!   intensities are smoothed with a short memory ([`ACTION_UNIT_MEMORY`]) so that a blink
//!   (AU45, 100-400 ms) still shows.

use super::action_units::{ActionUnits, Measures, NeutralBaseline};
use super::attributes::{age_group, gender_of, top_emotion, Attributes, Emotion, AGE_GROUPS};

/// Estimates' effective memory (1 / forgetting rate), in estimates.
pub const AGE_GENDER_MEMORY: f32 = 20.0;
pub const EMOTION_MEMORY: f32 = 5.0;
/// Frames, for the action units (estimated every frame the mesh is).
pub const ACTION_UNIT_MEMORY: f32 = 2.0;
/// Hysteresis of the labels.
pub const AGE_GROUP_MARGIN_YEARS: f32 = 1.5;
pub const GENDER_MARGIN: f32 = 0.1;
pub const EMOTION_MARGIN: f32 = 0.1;

/// A quality- and recency-weighted mean: each update forgets `1 / memory` of the weight so far.
#[derive(Debug, Clone, Copy)]
struct Smoothed<const N: usize> {
    value: [f32; N],
    weight: f32,
    memory: f32,
}

impl<const N: usize> Smoothed<N> {
    fn new(memory: f32) -> Self {
        Smoothed {
            value: [0.0; N],
            weight: 0.0,
            memory,
        }
    }

    fn update(&mut self, x: &[f32; N], quality: f32) {
        if quality <= 0.0 || x.iter().any(|v| !v.is_finite()) {
            return;
        }
        self.weight = self.weight * (1.0 - 1.0 / self.memory) + quality;
        let k = quality / self.weight;
        for (v, x) in self.value.iter_mut().zip(x) {
            *v += k * (x - *v);
        }
    }

    fn get(&self) -> Option<[f32; N]> {
        (self.weight > 0.0).then_some(self.value)
    }
}

/// What a track publishes (or, from [`unsmoothed`], what one frame says).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TrackAttributes {
    /// Age (years), p(male) and expression probabilities: smoothed over the track.
    pub estimate: Attributes,
    /// Index into [`AGE_GROUPS`].
    pub age_group: Option<usize>,
    /// Gender label and its smoothed probability.
    pub gender: Option<(&'static str, f32)>,
    /// Top expression (with hysteresis) and its smoothed probability.
    pub emotion: Option<(Emotion, f32)>,
    /// Smoothed action-unit intensities against the track's neutral.
    pub action_units: Option<ActionUnits>,
}

impl TrackAttributes {
    /// The Adience label of the age group.
    pub fn age_group_label(&self) -> Option<&'static str> {
        self.age_group.map(|g| AGE_GROUPS[g])
    }
}

/// One track's attribute state.
#[derive(Debug, Clone)]
pub struct AttributeTrack {
    age: Smoothed<1>,
    male: Smoothed<1>,
    emotions: Smoothed<7>,
    action_units: Smoothed<18>,
    neutral: NeutralBaseline,
    current: TrackAttributes,
}

impl Default for AttributeTrack {
    fn default() -> Self {
        AttributeTrack {
            age: Smoothed::new(AGE_GENDER_MEMORY),
            male: Smoothed::new(AGE_GENDER_MEMORY),
            emotions: Smoothed::new(EMOTION_MEMORY),
            action_units: Smoothed::new(ACTION_UNIT_MEMORY),
            neutral: NeutralBaseline::default(),
            current: TrackAttributes::default(),
        }
    }
}

impl AttributeTrack {
    /// Takes one raw estimate of [`super::attributes::AttributeAnalyser::estimate`];
    /// `quality` (0-1, e.g. [`estimate_quality`]) weighs it against the others.
    pub fn update(&mut self, estimate: &Attributes, quality: f32) {
        if let Some(age) = estimate.age_years {
            self.age.update(&[age], quality);
        }
        if let Some(male) = estimate.male {
            self.male.update(&[male], quality);
        }
        if let Some(p) = estimate.emotions {
            self.emotions.update(&p, quality);
        }
        let c = &mut self.current;
        c.estimate.age_years = self.age.get().map(|[a]| a);
        c.estimate.male = self.male.get().map(|[m]| m);
        c.estimate.emotions = self.emotions.get();
        if let Some(age) = c.estimate.age_years {
            let group = age_group(age);
            let keep = c.age_group.is_some_and(|g| {
                g == group
                    || (age_group(age - AGE_GROUP_MARGIN_YEARS) <= g
                        && g <= age_group(age + AGE_GROUP_MARGIN_YEARS))
            });
            if !keep {
                c.age_group = Some(group);
            }
        }
        if let Some(male) = c.estimate.male {
            let (label, p) = gender_of(male);
            let label = match c.gender {
                Some((old, _)) if old != label && p < 0.5 + GENDER_MARGIN => old,
                _ => label,
            };
            c.gender = Some((label, if label == "male" { male } else { 1.0 - male }));
        }
        if let Some(p) = c.estimate.emotions {
            let (top, best) = top_emotion(&p);
            let old = c.emotion.map(|(e, _)| e);
            let chosen = match old {
                Some(e) if e != top && best < p[e as usize] + EMOTION_MARGIN => e,
                _ => top,
            };
            c.emotion = Some((chosen, p[chosen as usize]));
        }
    }

    /// Takes one frame's mesh measures; `yaw_pitch` is the head pose in degrees. Call on every
    /// frame the face has a mesh (cheap), not only when [`Self::update`] runs.
    pub fn update_action_units(&mut self, measures: &Measures, yaw_pitch: [f32; 2]) {
        self.neutral.observe(measures, yaw_pitch);
        let now = ActionUnits::score(measures, &self.neutral.neutral());
        self.action_units.update(&now.0, 1.0);
        self.current.action_units = self.action_units.get().map(ActionUnits);
    }

    /// What the track says now.
    pub fn current(&self) -> &TrackAttributes {
        &self.current
    }
}

/// How much an estimate is worth: a face seen frontally and sharply counts more. From the
/// mesh's presence score and the head's turn: cos(yaw) * cos(pitch), 0 beyond 60 degrees.
pub fn estimate_quality(presence: f32, yaw_pitch: [f32; 2]) -> f32 {
    let frontal = yaw_pitch
        .iter()
        .map(|a| {
            if a.abs() >= 60.0 {
                0.0
            } else {
                a.to_radians().cos()
            }
        })
        .product::<f32>();
    (presence * frontal).clamp(0.0, 1.0)
}

/// The raw estimate of one frame as a track state of its own: labels without hysteresis, for
/// faces not (yet) followed by a tracker.
pub fn unsmoothed(estimate: &Attributes, action_units: Option<ActionUnits>) -> TrackAttributes {
    TrackAttributes {
        estimate: *estimate,
        age_group: estimate.age_years.map(age_group),
        gender: estimate.gender(),
        emotion: estimate.top_emotion(),
        action_units,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn estimate(age: f32, male: f32, happy: f32) -> Attributes {
        let rest = (1.0 - happy) / 6.0;
        let mut emotions = [rest; 7];
        emotions[Emotion::Happy as usize] = happy;
        Attributes {
            age_years: Some(age),
            male: Some(male),
            emotions: Some(emotions),
        }
    }

    #[test]
    fn noisy_estimates_do_not_flicker() {
        let mut track = AttributeTrack::default();
        // Age alternating around the 22.5 boundary between 15-20 and 25-32; gender around
        // 0.5; happy around the neutral level.
        let mut groups = Vec::new();
        let mut genders = Vec::new();
        let mut tops = Vec::new();
        for i in 0..40 {
            let s = if i % 2 == 0 { 1.0 } else { -1.0 };
            track.update(
                &estimate(23.5 + 3.0 * s, 0.55 + 0.1 * s, 0.15 + 0.05 * s),
                1.0,
            );
            let c = track.current();
            groups.push(c.age_group_label().unwrap());
            genders.push(c.gender.unwrap().0);
            tops.push(c.emotion.unwrap().0);
        }
        fn changes<T: PartialEq>(v: &[T]) -> usize {
            v.windows(2).filter(|w| w[0] != w[1]).count()
        }
        assert!(changes(&groups) <= 1, "{groups:?}");
        assert!(changes(&genders) <= 1, "{genders:?}");
        assert!(changes(&tops) <= 1, "{tops:?}");
        let age = track.current().estimate.age_years.unwrap();
        assert!((age - 23.5).abs() < 1.0, "{age}");
    }

    #[test]
    fn a_lasting_change_comes_through_and_quality_weighs() {
        let mut track = AttributeTrack::default();
        for _ in 0..10 {
            track.update(&estimate(30.0, 0.9, 0.05), 1.0);
        }
        assert_ne!(track.current().emotion.unwrap().0, Emotion::Happy);
        for _ in 0..10 {
            track.update(&estimate(30.0, 0.9, 0.9), 1.0);
        }
        assert_eq!(track.current().emotion.unwrap().0, Emotion::Happy);
        // A worthless estimate changes nothing; a poor one little.
        let before = track.current().estimate.age_years.unwrap();
        track.update(&estimate(80.0, 0.1, 0.0), 0.0);
        assert_eq!(track.current().estimate.age_years.unwrap(), before);
        track.update(&estimate(80.0, 0.1, 0.0), 0.05);
        assert!(track.current().estimate.age_years.unwrap() < before + 5.0);
        assert_eq!(track.current().gender.unwrap().0, "male");
    }
}
