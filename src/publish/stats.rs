//! What goes into `stats`: per-stage latencies accumulated over a period, the latest frame
//! counters, and readings of the system (resident memory, CPU temperature).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::pipeline::FrameStats;
use crate::track::TrackCounts;

use super::messages::{round, FrameCounts, Latencies, Latency};

/// Sum, maximum and count of one stage's durations.
#[derive(Debug, Clone, Copy, Default)]
struct Accumulated {
    sum: Duration,
    max: Duration,
    count: u32,
}

impl Accumulated {
    fn add(&mut self, d: Duration) {
        self.sum += d;
        self.max = self.max.max(d);
        self.count += 1;
    }

    fn latency(&self) -> Latency {
        let ms = |d: Duration| round(d.as_secs_f64() * 1000.0, 2);
        Latency {
            avg: if self.count == 0 {
                0.0
            } else {
                ms(self.sum / self.count)
            },
            max: ms(self.max),
        }
    }
}

/// Frame statistics since the last report.
#[derive(Debug)]
pub struct StatsWindow {
    since: Instant,
    wait: Accumulated,
    analysis: Accumulated,
    publish: Accumulated,
    analysed_in_window: u64,
    analysed: u64,
    latest: FrameStats,
}

/// A finished period.
#[derive(Debug)]
pub struct Period {
    pub seconds: f64,
    pub fps: f64,
    pub latencies: Latencies,
    pub frames: FrameCounts,
    pub ring_depth: u64,
    pub tracks: TrackCounts,
}

impl StatsWindow {
    pub fn new(now: Instant) -> Self {
        StatsWindow {
            since: now,
            wait: Accumulated::default(),
            analysis: Accumulated::default(),
            publish: Accumulated::default(),
            analysed_in_window: 0,
            analysed: 0,
            latest: FrameStats::default(),
        }
    }

    /// One analysed frame and the time the frame loop spent publishing it.
    pub fn add(&mut self, frame: &FrameStats, publish: Duration) {
        self.wait.add(frame.waited);
        self.analysis.add(frame.analysis);
        self.publish.add(publish);
        self.analysed_in_window += 1;
        self.analysed += 1;
        self.latest = *frame;
    }

    /// Closes the period at `now` and starts the next.
    pub fn finish(&mut self, now: Instant) -> Period {
        let seconds = now.duration_since(self.since).as_secs_f64();
        let latest = &self.latest;
        let period = Period {
            seconds: round(seconds, 2),
            fps: if seconds > 0.0 {
                round(self.analysed_in_window as f64 / seconds, 2)
            } else {
                0.0
            },
            latencies: Latencies {
                wait: self.wait.latency(),
                ana: self.analysis.latency(),
                publish: self.publish.latency(),
            },
            frames: FrameCounts {
                cap: latest.captured,
                ana: self.analysed,
                drop: latest.ring.dropped,
                bad: latest.corrupt,
                fail: latest.failed,
            },
            ring_depth: latest.ring.depth as u64,
            tracks: latest.tracks,
        };
        *self = StatsWindow {
            analysed: self.analysed,
            latest: self.latest,
            ..StatsWindow::new(now)
        };
        period
    }
}

/// Resident memory in kB from `/proc/self/status`.
pub fn resident_kb() -> Option<u64> {
    parse_vm_rss(&std::fs::read_to_string("/proc/self/status").ok()?)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The hottest `thermal_zone*/temp` under `root` (normally /sys/class/thermal), in degrees
/// Celsius; `None` where the board exposes no zone.
pub fn cpu_temperature(root: &Path) -> Option<f64> {
    let zones = std::fs::read_dir(root).ok()?;
    zones
        .flatten()
        .filter(|zone| {
            zone.file_name()
                .to_string_lossy()
                .starts_with("thermal_zone")
        })
        .filter_map(|zone| std::fs::read_to_string(zone.path().join("temp")).ok())
        .filter_map(|text| text.trim().parse::<i64>().ok())
        .map(|millidegrees| round(millidegrees as f64 / 1000.0, 1))
        .reduce(f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::RingCounts;

    #[test]
    fn a_period_averages_its_frames_and_keeps_totals() {
        let start = Instant::now();
        let mut window = StatsWindow::new(start);
        for ms in [10, 20, 30] {
            let frame = FrameStats {
                waited: Duration::from_millis(1),
                analysis: Duration::from_millis(ms),
                ring: RingCounts {
                    queued: 9,
                    dropped: 2,
                    depth: 1,
                },
                captured: 9,
                corrupt: 1,
                failed: 0,
                tracks: TrackCounts::default(),
            };
            window.add(&frame, Duration::from_micros(50));
        }
        let period = window.finish(start + Duration::from_secs(2));
        assert_eq!(period.fps, 1.5);
        assert_eq!(
            (period.latencies.ana.avg, period.latencies.ana.max),
            (20.0, 30.0)
        );
        assert_eq!(period.latencies.publish.avg, 0.05);
        assert_eq!(
            (period.frames.cap, period.frames.ana, period.frames.drop),
            (9, 3, 2)
        );
        let next = window.finish(start + Duration::from_secs(3));
        assert_eq!((next.fps, next.frames.ana), (0.0, 3), "totals carry over");
    }

    #[test]
    fn system_readings() {
        assert!(parse_vm_rss("Name:\tx\nVmRSS:\t  12345 kB\n") == Some(12345));
        assert!(resident_kb().is_some_and(|kb| kb > 0));
        let dir = std::env::temp_dir().join(format!("facecast-thermal-{}", std::process::id()));
        for (zone, temp) in [("thermal_zone0", "41500\n"), ("thermal_zone1", "52250\n")] {
            std::fs::create_dir_all(dir.join(zone)).unwrap();
            std::fs::write(dir.join(zone).join("temp"), temp).unwrap();
        }
        std::fs::create_dir_all(dir.join("cooling_device0")).unwrap();
        assert_eq!(cpu_temperature(&dir), Some(52.3));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(cpu_temperature(&dir), None);
    }
}
