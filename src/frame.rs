//! Frames and the fixed ring of frame buffers between capture and analysis.
//!
//! The ring owns a fixed number of RGB buffers, allocated before the first frame. Capture takes
//! a free buffer, fills it and queues it; analysis takes the oldest queued frame and gives the
//! buffer back when done. When analysis falls behind a live source, capture reclaims the oldest
//! queued frame (a counted drop) instead of growing a queue: memory stays fixed and results stay
//! close to real time. For a recorded source nothing is dropped: capture waits for a buffer.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The largest ring the configuration accepts; the queues are `heapless` with this capacity.
pub const MAX_RING_FRAMES: usize = 16;

/// One decoded frame: packed 8-bit RGB, row after row, no padding.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Position in the source, counting every frame the source delivered (dropped ones too).
    pub seq: u64,
    /// Wall-clock time the frame was captured.
    pub captured_at: SystemTime,
    /// The frame's time on its source's own clock, for measuring durations (dwell, attention):
    /// frame count over frame rate in a recording, which may be read faster or slower than
    /// real time; the capture time for cameras and stills.
    pub pts: Duration,
    pub width: u32,
    pub height: u32,
    /// `width * height * 3` bytes.
    pub rgb: Vec<u8>,
}

impl Frame {
    /// Stamps the frame as captured now, on the wall clock.
    pub fn stamp_now(&mut self) {
        self.captured_at = SystemTime::now();
        self.pts = self
            .captured_at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
    }

    /// A buffer with room for `width` x `height` pixels.
    pub fn with_capacity(width: u32, height: u32) -> Self {
        Frame {
            seq: 0,
            captured_at: SystemTime::UNIX_EPOCH,
            pts: Duration::ZERO,
            width: 0,
            height: 0,
            rgb: Vec::with_capacity(width as usize * height as usize * 3),
        }
    }

    /// Sets the frame's size and returns its pixel buffer. It allocates only when the frame
    /// grows beyond every size it had before, so a source of constant size never allocates.
    pub fn resize(&mut self, width: u32, height: u32) -> &mut [u8] {
        self.width = width;
        self.height = height;
        self.rgb.resize(width as usize * height as usize * 3, 0);
        &mut self.rgb
    }

    /// The RGB value at (x, y); the caller keeps x and y inside the frame.
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }
}

/// What happens when capture finds every buffer taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Live source: reclaim the oldest queued frame and count it as dropped.
    DropOldest,
    /// Recorded source: wait for analysis to give a buffer back.
    Wait,
}

/// Counters of the ring, read for statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingCounts {
    /// Frames capture queued.
    pub queued: u64,
    /// Queued frames reclaimed before analysis saw them.
    pub dropped: u64,
    /// Frames waiting for analysis right now.
    pub depth: usize,
}

struct RingState {
    free: heapless::Vec<Frame, MAX_RING_FRAMES>,
    queued: heapless::Deque<Frame, MAX_RING_FRAMES>,
    counts: RingCounts,
    closed: bool,
}

/// A fixed set of frame buffers shared by one capture thread and one analysis thread.
pub struct FrameRing {
    state: Mutex<RingState>,
    changed: Condvar,
    when_full: WhenFull,
}

impl FrameRing {
    /// A ring of `frames` buffers (2..=[`MAX_RING_FRAMES`]) sized for `width` x `height`.
    pub fn new(frames: usize, width: u32, height: u32, when_full: WhenFull) -> Self {
        assert!(
            (2..=MAX_RING_FRAMES).contains(&frames),
            "ring size is validated by the configuration"
        );
        let mut free = heapless::Vec::new();
        for _ in 0..frames {
            // Cannot fail: `frames` is at most the capacity.
            let _ = free.push(Frame::with_capacity(width, height));
        }
        FrameRing {
            state: Mutex::new(RingState {
                free,
                queued: heapless::Deque::new(),
                counts: RingCounts::default(),
                closed: false,
            }),
            changed: Condvar::new(),
            when_full,
        }
    }

    fn lock(&self) -> MutexGuard<'_, RingState> {
        // A panic on the other thread must not take this one down with a poisoned lock: the
        // state is a set of buffers and counters, valid after any partial update.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A buffer for capture to fill: a free one, or (live source, none free) the oldest queued
    /// frame, counted as dropped. `None` once the ring is closed.
    pub fn take_free(&self) -> Option<Frame> {
        let mut state = self.lock();
        loop {
            if state.closed {
                return None;
            }
            if let Some(frame) = state.free.pop() {
                return Some(frame);
            }
            if self.when_full == WhenFull::DropOldest {
                if let Some(frame) = state.queued.pop_front() {
                    state.counts.dropped += 1;
                    return Some(frame);
                }
            }
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Queues a filled frame for analysis.
    pub fn push_filled(&self, frame: Frame) {
        let mut state = self.lock();
        state.counts.queued += 1;
        // Cannot fail: the ring never holds more frames than its capacity.
        let _ = state.queued.push_back(frame);
        drop(state);
        self.changed.notify_all();
    }

    /// Gives a buffer back unused or after analysis.
    pub fn recycle(&self, frame: Frame) {
        let mut state = self.lock();
        let _ = state.free.push(frame);
        drop(state);
        self.changed.notify_all();
    }

    /// The oldest queued frame, waiting for one; `None` when the ring is closed and empty.
    pub fn pop_filled(&self) -> Option<Frame> {
        let mut state = self.lock();
        loop {
            if let Some(frame) = state.queued.pop_front() {
                drop(state);
                self.changed.notify_all();
                return Some(frame);
            }
            if state.closed {
                return None;
            }
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// No more frames will be queued (capture ended) or wanted (analysis stopped). Frames still
    /// queued are analysed; a capture thread waiting for a buffer wakes up and stops.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    pub fn counts(&self) -> RingCounts {
        let state = self.lock();
        RingCounts {
            depth: state.queued.len(),
            ..state.counts
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(ring: &FrameRing, seq: u64) {
        let mut frame = ring.take_free().expect("ring open");
        frame.seq = seq;
        frame.resize(4, 2).fill(seq as u8);
        ring.push_filled(frame);
    }

    #[test]
    fn live_ring_drops_oldest_and_keeps_newest() {
        let ring = FrameRing::new(3, 4, 2, WhenFull::DropOldest);
        for seq in 0..10 {
            fill(&ring, seq);
        }
        let counts = ring.counts();
        assert_eq!(counts.queued, 10);
        assert_eq!(counts.dropped, 7);
        assert_eq!(counts.depth, 3);
        let seqs: Vec<u64> = (0..3).map(|_| ring.pop_filled().unwrap().seq).collect();
        assert_eq!(seqs, vec![7, 8, 9]);
    }

    #[test]
    fn recorded_ring_waits_and_loses_nothing() {
        let ring = std::sync::Arc::new(FrameRing::new(2, 4, 2, WhenFull::Wait));
        let producer = {
            let ring = ring.clone();
            std::thread::spawn(move || {
                for seq in 0..50 {
                    fill(&ring, seq);
                }
                ring.close();
            })
        };
        let mut seen = Vec::new();
        while let Some(frame) = ring.pop_filled() {
            assert!(frame.rgb.iter().all(|&b| b == frame.seq as u8));
            seen.push(frame.seq);
            ring.recycle(frame);
        }
        producer.join().unwrap();
        assert_eq!(seen, (0..50).collect::<Vec<_>>());
        assert_eq!(ring.counts().dropped, 0);
    }

    #[test]
    fn buffers_are_reused_without_growing() {
        let ring = FrameRing::new(2, 4, 2, WhenFull::DropOldest);
        fill(&ring, 0);
        let frame = ring.pop_filled().unwrap();
        let ptr = frame.rgb.as_ptr();
        ring.recycle(frame);
        // The same buffer comes back from the free list: same allocation.
        let again = ring.take_free().unwrap();
        assert_eq!(again.rgb.as_ptr(), ptr);
    }
}
