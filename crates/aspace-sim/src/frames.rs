//! The simulator's frame allocator: reference counts per frame, a count of
//! frames in use, and a generation per frame that changes whenever the frame
//! is freed, so the MMU can tell a stale translation from a live one.

use std::sync::atomic::{AtomicU32, Ordering};

use aspace::{Frame, FrameAllocator};
use parking_lot::Mutex;

struct Pool {
    free: Vec<u64>,
    refs: Vec<u32>,
    in_use: u64,
    peak: u64,
    allocated: u64,
    freed: u64,
}

/// Frame allocator over frames `1 .. frames` (frame 0 is never handed out).
pub struct FramePool {
    pool: Mutex<Pool>,
    generations: Box<[AtomicU32]>,
    limit: AtomicU32,
}

/// Counters of the frame allocator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameStats {
    /// Frames allocated and not yet freed.
    pub in_use: u64,
    /// The highest `in_use` seen.
    pub peak: u64,
    /// Allocations served.
    pub allocated: u64,
    /// Frames freed (last reference released).
    pub freed: u64,
    /// Frames available.
    pub free: u64,
}

impl FramePool {
    /// A pool of `frames` frames.
    pub fn new(frames: u64) -> Self {
        Self {
            pool: Mutex::new(Pool {
                // Lowest frames come out first.
                free: (1..frames).rev().collect(),
                refs: vec![0; frames as usize],
                in_use: 0,
                peak: 0,
                allocated: 0,
                freed: 0,
            }),
            generations: (0..frames).map(|_| AtomicU32::new(0)).collect(),
            limit: AtomicU32::new(u32::MAX),
        }
    }

    /// Counters now.
    pub fn stats(&self) -> FrameStats {
        let p = self.pool.lock();
        FrameStats {
            in_use: p.in_use,
            peak: p.peak,
            allocated: p.allocated,
            freed: p.freed,
            free: p.free.len() as u64,
        }
    }

    /// Frames in use now.
    pub fn in_use(&self) -> u64 {
        self.pool.lock().in_use
    }

    /// Reference count of `frame` (0 when free).
    pub fn refcount(&self, frame: Frame) -> u32 {
        self.pool.lock().refs[frame.number() as usize]
    }

    /// The frame's generation: changes every time the frame is freed.
    pub fn generation(&self, frame: Frame) -> u32 {
        self.generations[frame.number() as usize].load(Ordering::Acquire)
    }

    /// Makes allocation fail once `in_use` reaches `limit` (to test running
    /// out of memory); `None` lifts the limit.
    pub fn set_limit(&self, limit: Option<u64>) {
        let l = limit.map_or(u32::MAX, |l| l.min(u32::MAX as u64 - 1) as u32);
        self.limit.store(l, Ordering::Relaxed);
    }
}

impl FrameAllocator for FramePool {
    fn alloc(&self) -> Option<Frame> {
        let mut p = self.pool.lock();
        if p.in_use >= self.limit.load(Ordering::Relaxed) as u64 {
            return None;
        }
        let f = p.free.pop()?;
        p.refs[f as usize] = 1;
        p.in_use += 1;
        p.allocated += 1;
        p.peak = p.peak.max(p.in_use);
        Some(Frame::from_number(f))
    }

    fn add_ref(&self, frame: Frame) {
        let mut p = self.pool.lock();
        let r = &mut p.refs[frame.number() as usize];
        assert!(*r > 0, "add_ref on free frame {frame:?}");
        *r += 1;
    }

    fn release(&self, frame: Frame) -> bool {
        let mut p = self.pool.lock();
        let n = frame.number() as usize;
        assert!(
            p.refs[n] > 0,
            "frame {frame:?} released more often than referenced (double free)"
        );
        p.refs[n] -= 1;
        if p.refs[n] > 0 {
            return false;
        }
        self.generations[n].fetch_add(1, Ordering::AcqRel);
        p.free.push(frame.number());
        p.in_use -= 1;
        p.freed += 1;
        true
    }
}
