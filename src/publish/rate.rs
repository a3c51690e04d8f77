//! Which analysed frames go to the `faces` topic: every one, at most N a second, or only on a
//! change. Pure: the caller passes the time.

use std::time::{Duration, Instant};

use crate::config::{FacesConfig, FacesRate};
use crate::geometry::Rect;

#[derive(Debug)]
pub struct FacesGate {
    config: FacesConfig,
    last_sent: Option<Instant>,
    /// Boxes of the last published frame, for `on_change`.
    last_boxes: Vec<Rect>,
}

impl FacesGate {
    pub fn new(config: &FacesConfig) -> Self {
        FacesGate {
            config: config.clone(),
            last_sent: None,
            last_boxes: Vec::new(),
        }
    }

    pub fn config(&self) -> &FacesConfig {
        &self.config
    }

    /// Changes the rate; the next frame is judged by the new one.
    pub fn set(&mut self, config: FacesConfig) {
        self.config = config;
    }

    /// Whether the frame with these boxes (left, top, width, height) is published.
    pub fn admit(&mut self, now: Instant, boxes: &[[f32; 4]]) -> bool {
        let boxes: Vec<Rect> = boxes
            .iter()
            .map(|&[x, y, w, h]| Rect { x, y, w, h })
            .collect();
        let admit = match self.config.rate {
            FacesRate::EveryFrame => true,
            FacesRate::PerSecond => self.last_sent.is_none_or(|last| {
                now.duration_since(last) >= Duration::from_secs_f32(1.0 / self.config.per_second)
            }),
            FacesRate::OnChange => {
                self.last_sent.is_none()
                    || boxes.len() != self.last_boxes.len()
                    || boxes.iter().any(|b| {
                        self.last_boxes
                            .iter()
                            .all(|last| b.iou(last) < self.config.change_iou)
                    })
            }
        };
        if admit {
            self.last_sent = Some(now);
            self.last_boxes = boxes;
        }
        admit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(rate: FacesRate) -> FacesGate {
        FacesGate::new(&FacesConfig {
            rate,
            per_second: 4.0,
            change_iou: 0.5,
        })
    }

    #[test]
    fn per_second_admits_at_most_the_rate() {
        let mut gate = gate(FacesRate::PerSecond);
        let start = Instant::now();
        // 30 fps for two seconds: 4 a second.
        let admitted = (0..60)
            .filter(|i| gate.admit(start + Duration::from_millis(i * 1000 / 30), &[]))
            .count();
        assert_eq!(admitted, 8);
    }

    #[test]
    fn on_change_admits_count_changes_and_moves_only() {
        let mut gate = gate(FacesRate::OnChange);
        let t = Instant::now();
        let face = [100.0, 100.0, 50.0, 50.0];
        let nudged = [102.0, 101.0, 50.0, 50.0];
        let moved = [140.0, 100.0, 50.0, 50.0];
        let steps = [
            (vec![], true),
            (vec![], false),
            (vec![face], true),
            (vec![nudged], false),
            (vec![moved], true),
            (vec![moved, face], true),
            (vec![face, moved], false),
            (vec![], true),
        ];
        for (i, (boxes, expected)) in steps.into_iter().enumerate() {
            assert_eq!(gate.admit(t, &boxes), expected, "step {i}");
        }
    }

    #[test]
    fn every_frame_admits_all_and_the_rate_can_change() {
        let mut gate = gate(FacesRate::EveryFrame);
        let t = Instant::now();
        assert!((0..5).all(|_| gate.admit(t, &[])));
        gate.set(FacesConfig {
            rate: FacesRate::PerSecond,
            per_second: 1.0,
            change_iou: 0.5,
        });
        assert!(!gate.admit(t + Duration::from_millis(500), &[]));
        assert!(gate.admit(t + Duration::from_secs(1), &[]));
    }
}
