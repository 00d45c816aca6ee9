//! The simulator's frame allocator: reference counts per frame, a count of
//! frames in use, and a generation per frame that changes whenever the frame
//! is freed, so the MMU can tell a stale translation from a live one.
//!
//! # Design
//!
//! Several simulated CPUs (host threads) fault pages in at once, and each
//! fault allocates a frame, so the allocator must not be the one lock every
//! CPU queues on (a real kernel has per-CPU frame caches). Hence:
//!
//! - **Per-frame state** (reference count, generation) is a pair of atomics
//!   per frame, no lock: `add_ref` and `release` are compare-and-swap loops
//!   that panic, instead of wrapping, on a free frame or a double free.
//!   The last release bumps the generation *before* the frame goes back on
//!   a free list, so it differs before the frame can be handed out again.
//! - **Free lists** are `SHARDS` (8) shards, each a small mutex on its own
//!   128-byte slot holding a stack of free frames and the shard's counters.
//!   A thread uses one shard, picked round-robin the first time it touches
//!   any pool (a thread-local index): it allocates from it and frees into
//!   it, so busy threads meet on a lock only when two of them got the same
//!   shard (more than `SHARDS` threads) or one steals. Fresh, shard `i`
//!   holds the `i`-th of `SHARDS` contiguous ranges of frames `1 ..`,
//!   handed out lowest first.
//! - **Stealing**: a thread whose shard is empty takes all shard locks (in
//!   index order), and moves up to `STEAL` (256) frames (half of the first
//!   non-empty shard's, rounded up) into its own. Holding every lock means
//!   `alloc` returns `None` only when no shard has a free frame.
//! - **Counters** (`allocated`, `freed`, free-list length) are per shard,
//!   updated under the shard's lock; [`FramePool::stats`] and
//!   [`FramePool::in_use`] take every shard's lock and sum them, so they are
//!   exact at any moment (modulo releases that have dropped the count but
//!   not yet pushed the frame).
//! - **Peak** (cheap approximation): each shard keeps its change of `in_use`
//!   not yet folded into one shared counter (a per-CPU counter), and folds
//!   it in once it reaches ±`PUBLISH` (64); `stats` and `in_use` fold every
//!   shard. Each allocation estimates `in_use` as shared counter + its own
//!   shard's unfolded change, and the shard remembers the highest estimate;
//!   the peak is the highest of those (and of the exact `in_use` when
//!   `stats` runs). The shared counter is written once per `PUBLISH`
//!   operations of a shard, so allocations only read it. The estimate is
//!   exact when one thread has used the pool since its creation or the last
//!   `stats`/`in_use`; otherwise it is off (either way, but never above
//!   the number of frames) by less than `PUBLISH` per other shard.
//! - **Limit** ([`FramePool::set_limit`], for tests that run out of memory):
//!   while a limit is set, every allocation takes the slow path (all shard
//!   locks) and checks the exact `in_use`.
//! - **Failure injection** ([`FramePool::fail_after`]): the next `n`
//!   allocations succeed and every one after them fails, to prove that an
//!   operation refused at any of its allocations changes nothing.

use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use aspace::{Frame, FrameAllocator};
use parking_lot::{Mutex, MutexGuard};

/// Number of free-list shards.
const SHARDS: usize = 8;
/// Most frames a thread moves from another shard into its own at once.
const STEAL: usize = 256;
/// A shard folds its change of `in_use` into the shared counter once the
/// change reaches this much (either way).
const PUBLISH: i64 = 64;

/// No limit set.
const NO_LIMIT: u64 = u64::MAX;

/// Reference count and generation of one frame.
struct FrameMeta {
    refs: AtomicU32,
    generation: AtomicU32,
}

/// What a shard's lock protects.
struct ShardState {
    /// Free frames; the last one is handed out next.
    free: Vec<u64>,
    /// Allocations served by this shard.
    allocated: u64,
    /// Frames freed into this shard.
    freed: u64,
    /// Change of `in_use` by this shard not yet added to the shared counter.
    delta: i64,
    /// Highest estimate of `in_use` seen by an allocation from this shard.
    peak: i64,
}

impl ShardState {
    fn count_alloc(&mut self, shared: &AtomicI64) {
        self.allocated += 1;
        self.delta += 1;
        let estimate = shared.load(Ordering::Relaxed) + self.delta;
        self.peak = self.peak.max(estimate);
        if self.delta >= PUBLISH {
            self.fold(shared);
        }
    }

    fn count_free(&mut self, shared: &AtomicI64) {
        self.count_frees(1, shared);
    }

    fn count_frees(&mut self, n: u64, shared: &AtomicI64) {
        self.freed += n;
        self.delta -= n as i64;
        if self.delta <= -PUBLISH {
            self.fold(shared);
        }
    }

    fn fold(&mut self, shared: &AtomicI64) {
        shared.fetch_add(self.delta, Ordering::Relaxed);
        self.delta = 0;
    }
}

/// A shard on its own cache lines (two, for the adjacent-line prefetcher).
#[repr(align(128))]
struct Shard(Mutex<ShardState>);

/// A word on its own cache lines.
#[repr(align(128))]
struct Padded<T>(T);

/// Frame allocator over frames `1 .. frames` (frame 0 is never handed out).
pub struct FramePool {
    shards: [Shard; SHARDS],
    meta: Box<[FrameMeta]>,
    /// Sum of the changes of `in_use` the shards have folded in.
    folded: Padded<AtomicI64>,
    /// `in_use` at which allocation fails; [`NO_LIMIT`] for none. Read by
    /// every allocation, written only by `set_limit`.
    limit: AtomicU64,
    /// Allocations left before every allocation fails; [`NO_LIMIT`] for no
    /// such bound. Set by `fail_after`, counted down under every shard's
    /// lock.
    budget: AtomicU64,
    /// Allocations refused by `budget` (failure injection), counted under
    /// every shard's lock.
    refused: AtomicU64,
}

/// Counters of the frame allocator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameStats {
    /// Frames allocated and not yet freed.
    pub in_use: u64,
    /// The highest `in_use` seen (see the module documentation: exact when
    /// one thread uses the pool, a little off when several do).
    pub peak: u64,
    /// Allocations served.
    pub allocated: u64,
    /// Frames freed (last reference released).
    pub freed: u64,
    /// Frames available.
    pub free: u64,
}

/// Next shard index to give a thread.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// The calling thread's shard, `usize::MAX` until it first needs one.
    static MY_SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The calling thread's shard index (the same for every pool).
fn my_shard() -> usize {
    MY_SHARD.with(|s| {
        let i = s.get();
        if i < SHARDS {
            return i;
        }
        let i = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
        s.set(i);
        i
    })
}

impl FramePool {
    /// A pool of `frames` frames.
    pub fn new(frames: u64) -> Self {
        let usable = frames.saturating_sub(1);
        let shards = std::array::from_fn(|i| {
            let start = 1 + usable * i as u64 / SHARDS as u64;
            let end = 1 + usable * (i as u64 + 1) / SHARDS as u64;
            Shard(Mutex::new(ShardState {
                // Lowest frames come out first.
                free: (start..end).rev().collect(),
                allocated: 0,
                freed: 0,
                delta: 0,
                peak: 0,
            }))
        });
        Self {
            shards,
            meta: (0..frames)
                .map(|_| FrameMeta {
                    refs: AtomicU32::new(0),
                    generation: AtomicU32::new(0),
                })
                .collect(),
            folded: Padded(AtomicI64::new(0)),
            limit: AtomicU64::new(NO_LIMIT),
            budget: AtomicU64::new(NO_LIMIT),
            refused: AtomicU64::new(0),
        }
    }

    /// Every shard's lock, taken in index order (the only order in which
    /// more than one is ever held, so no deadlock).
    fn lock_all(&self) -> [MutexGuard<'_, ShardState>; SHARDS] {
        std::array::from_fn(|i| self.shards[i].0.lock())
    }

    /// Folds every shard's change into the shared counter; returns the
    /// exact `in_use`.
    fn fold_all(&self, shards: &mut [MutexGuard<'_, ShardState>; SHARDS]) -> u64 {
        let (mut allocated, mut freed) = (0u64, 0u64);
        for s in shards.iter_mut() {
            s.fold(&self.folded.0);
            allocated += s.allocated;
            freed += s.freed;
        }
        allocated - freed
    }

    /// Counters now.
    pub fn stats(&self) -> FrameStats {
        let mut shards = self.lock_all();
        let in_use = self.fold_all(&mut shards);
        let mut st = FrameStats {
            in_use,
            peak: in_use,
            ..FrameStats::default()
        };
        let usable = self.meta.len().saturating_sub(1) as u64;
        for s in &shards {
            // An estimate may be high (see the module documentation), but
            // not above the frames there are.
            st.peak = st.peak.max((s.peak.max(0) as u64).min(usable));
            st.allocated += s.allocated;
            st.freed += s.freed;
            st.free += s.free.len() as u64;
        }
        st
    }

    /// Frames in use now.
    pub fn in_use(&self) -> u64 {
        self.fold_all(&mut self.lock_all())
    }

    /// Reference count of `frame` (0 when free).
    pub fn refcount(&self, frame: Frame) -> u32 {
        self.meta[frame.number() as usize]
            .refs
            .load(Ordering::Acquire)
    }

    /// The frame's generation: changes every time the frame is freed.
    pub fn generation(&self, frame: Frame) -> u32 {
        self.meta[frame.number() as usize]
            .generation
            .load(Ordering::Acquire)
    }

    /// Makes allocation fail once `in_use` reaches `limit` (to test running
    /// out of memory); `None` lifts the limit.
    pub fn set_limit(&self, limit: Option<u64>) {
        let l = limit.map_or(NO_LIMIT, |l| l.min(NO_LIMIT - 1));
        self.limit.store(l, Ordering::Relaxed);
    }

    /// Lets the next `n` allocations succeed and fails every one after them
    /// (failure injection); `None` lifts the bound.
    pub fn fail_after(&self, n: Option<u64>) {
        let n = n.map_or(NO_LIMIT, |n| n.min(NO_LIMIT - 1));
        let _all = self.lock_all();
        self.budget.store(n, Ordering::Relaxed);
    }

    /// Allocations refused so far by [`fail_after`](Self::fail_after)'s
    /// bound: whether an operation run under it met the bound.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Allocations left before [`fail_after`](Self::fail_after)'s bound
    /// (`None` when none is set).
    pub fn allocations_left(&self) -> Option<u64> {
        let n = self.budget.load(Ordering::Relaxed);
        (n != NO_LIMIT).then_some(n)
    }

    /// Gives out `frame`, just taken off a free list.
    fn hand_out(&self, frame: u64) -> Frame {
        let refs = &self.meta[frame as usize].refs;
        debug_assert_eq!(refs.load(Ordering::Relaxed), 0, "free frame {frame} in use");
        refs.store(1, Ordering::Relaxed);
        Frame::from_number(frame)
    }

    /// Allocation when the thread's shard is empty or a limit is set: with
    /// every shard locked, checks the limit, refills the thread's shard from
    /// another one if needed, and allocates.
    #[cold]
    fn alloc_slow(&self, me: usize) -> Option<Frame> {
        let mut shards = self.lock_all();
        let budget = self.budget.load(Ordering::Relaxed);
        if budget == 0 {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let limit = self.limit.load(Ordering::Relaxed);
        if limit != NO_LIMIT {
            let allocated: u64 = shards.iter().map(|s| s.allocated).sum();
            let freed: u64 = shards.iter().map(|s| s.freed).sum();
            if allocated - freed >= limit {
                return None;
            }
        }
        if shards[me].free.is_empty() {
            let victim = (1..SHARDS)
                .map(|k| (me + k) % SHARDS)
                .find(|&v| !shards[v].free.is_empty())?;
            let (mine, from) = if me < victim {
                let (lo, hi) = shards.split_at_mut(victim);
                (&mut lo[me], &mut hi[0])
            } else {
                let (lo, hi) = shards.split_at_mut(me);
                (&mut hi[0], &mut lo[victim])
            };
            let n = from.free.len().div_ceil(2).min(STEAL);
            // The victim's next frames (the end of its stack), in order, so
            // the lowest still comes out first. Moved straight across (no
            // temporary vector): a fault that steals does not allocate
            // unless this shard's stack has never been this long.
            let at = from.free.len() - n;
            mine.free.extend(from.free.drain(at..));
        }
        if budget != NO_LIMIT {
            self.budget.store(budget - 1, Ordering::Relaxed);
        }
        let s = &mut shards[me];
        let f = s.free.pop().expect("refilled above");
        s.count_alloc(&self.folded.0);
        drop(shards);
        Some(self.hand_out(f))
    }
}

// SAFETY: a frame leaves a free list only in `alloc`, with one reference,
// and goes back only when `release` drops its last one (a release more than
// its references panics); frames are those of the simulated memory, which
// nothing but the core uses, and frame 0 is never handed out.
unsafe impl FrameAllocator for FramePool {
    fn alloc(&self) -> Option<Frame> {
        let me = my_shard();
        if self.limit.load(Ordering::Relaxed) == NO_LIMIT
            && self.budget.load(Ordering::Relaxed) == NO_LIMIT
        {
            let mut s = self.shards[me].0.lock();
            if let Some(f) = s.free.pop() {
                s.count_alloc(&self.folded.0);
                drop(s);
                return Some(self.hand_out(f));
            }
        }
        self.alloc_slow(me)
    }

    fn add_ref(&self, frame: Frame) {
        let refs = &self.meta[frame.number() as usize].refs;
        let mut r = refs.load(Ordering::Relaxed);
        loop {
            assert!(r > 0, "add_ref on free frame {frame:?}");
            assert!(r < u32::MAX, "reference count of frame {frame:?} overflows");
            match refs.compare_exchange_weak(r, r + 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(now) => r = now,
            }
        }
    }

    fn ref_count(&self, frame: Frame) -> Option<u32> {
        Some(self.refcount(frame))
    }

    fn release(&self, frame: Frame) -> bool {
        if !self.drop_ref(frame) {
            return false;
        }
        let mut s = self.shards[my_shard()].0.lock();
        s.free.push(frame.number());
        s.count_free(&self.folded.0);
        true
    }

    /// Drops the references as [`release`](Self::release) does, and puts
    /// the frames freed on the free list under one lock per 64.
    fn release_many(&self, frames: &[Frame]) -> u64 {
        let mut freed = 0;
        for chunk in frames.chunks(64) {
            let mut gone = [0; 64];
            let mut k = 0;
            for &f in chunk {
                if self.drop_ref(f) {
                    gone[k] = f.number();
                    k += 1;
                }
            }
            if k > 0 {
                let mut s = self.shards[my_shard()].0.lock();
                s.free.extend_from_slice(&gone[..k]);
                s.count_frees(k as u64, &self.folded.0);
            }
            freed += k as u64;
        }
        freed
    }

    /// The frames on the free lists (the commit limit a system on this
    /// pool starts with).
    fn free_frames(&self) -> Option<u64> {
        Some(self.stats().free)
    }
}

impl FramePool {
    /// Drops one reference of `frame`; whether it was the last (the frame
    /// then has a new generation and goes on a free list next).
    fn drop_ref(&self, frame: Frame) -> bool {
        let n = frame.number() as usize;
        let meta = &self.meta[n];
        // Acquire: the other holders' accesses, published by their
        // releases, happen before this free.
        let mut r = meta.refs.load(Ordering::Acquire);
        loop {
            assert!(
                r > 0,
                "frame {frame:?} released more often than referenced (double free)"
            );
            if r == 1 {
                // The only reference, ours: nobody else holds the frame, so
                // nobody can take or drop one meanwhile (`add_ref` needs a
                // reference held): a plain store, no read-modify-write.
                meta.refs.store(0, Ordering::Relaxed);
                break;
            }
            // Release: this holder's accesses to the frame happen before
            // whoever frees it (Acquire above) reuses it.
            match meta
                .refs
                .compare_exchange_weak(r, r - 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => r = now,
            }
        }
        if r > 1 {
            return false;
        }
        // Last reference: a new generation before the frame can come out
        // of a free list again. Only the thread that frees a frame writes
        // its generation, and the next free of the frame comes after this
        // one (through the free list's lock), so no read-modify-write.
        let g = meta.generation.load(Ordering::Relaxed);
        meta.generation.store(g.wrapping_add(1), Ordering::Release);
        true
    }
}
