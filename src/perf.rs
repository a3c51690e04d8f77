//! Stage timings for `facecast bench`. Off unless a benchmark turns them on: then every timed
//! stage and every model run keeps its durations under its name. Off, a timed stage costs one
//! atomic load, so the timers stay in the production code paths they measure instead of in a
//! copy of them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ENABLED: AtomicBool = AtomicBool::new(false);
static SAMPLES: Mutex<Vec<(String, Vec<Duration>)>> = Mutex::new(Vec::new());

/// Starts keeping timings (and forgets earlier ones).
pub fn enable() {
    SAMPLES.lock().unwrap_or_else(|e| e.into_inner()).clear();
    ENABLED.store(true, Ordering::Relaxed);
}

/// Stops keeping timings and hands over those kept, per name in first-seen order.
pub fn take() -> Vec<(String, Vec<Duration>)> {
    ENABLED.store(false, Ordering::Relaxed);
    std::mem::take(&mut *SAMPLES.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Runs `f`, keeping its duration under `name` when timings are on.
pub fn time<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let _span = span(name);
    f()
}

/// Times the rest of the enclosing scope under `name` when timings are on: a whole function
/// is timed by its first line, without a wrapper around its body.
pub fn span(name: &str) -> Span<'_> {
    Span {
        name,
        started: ENABLED.load(Ordering::Relaxed).then(Instant::now),
    }
}

/// A timed scope (see [`span`]); its duration is kept when it ends.
pub struct Span<'a> {
    name: &'a str,
    started: Option<Instant>,
}

impl Drop for Span<'_> {
    fn drop(&mut self) {
        if let Some(started) = self.started {
            record(self.name, started.elapsed());
        }
    }
}

/// Keeps `elapsed` under `name` when timings are on.
pub fn record(name: &str, elapsed: Duration) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let mut samples = SAMPLES.lock().unwrap_or_else(|e| e.into_inner());
    match samples.iter_mut().find(|(n, _)| n == name) {
        Some((_, durations)) => durations.push(elapsed),
        None => samples.push((name.to_string(), vec![elapsed])),
    }
}

/// The `q` quantile (0-1) of `durations` in milliseconds, nearest rank; 0 for none.
pub fn quantile_ms(durations: &[Duration], q: f64) -> f64 {
    if durations.is_empty() {
        return 0.0;
    }
    let mut sorted = durations.to_vec();
    sorted.sort_unstable();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let ms: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile_ms(&ms, 0.5), 50.0);
        assert_eq!(quantile_ms(&ms, 0.99), 99.0);
        assert_eq!(quantile_ms(&ms, 1.0), 100.0);
        assert_eq!(quantile_ms(&[], 0.5), 0.0);
    }
}
