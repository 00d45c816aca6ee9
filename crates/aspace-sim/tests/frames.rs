//! The frame allocator on its own: exhaustion, reference counts and their
//! misuse, generations, the limit, counters, and many threads allocating,
//! sharing and releasing frames at once.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use aspace::{Frame, FrameAllocator};
use aspace_sim::{FramePool, FrameStats};

mod common;
use common::XorShift;

/// Allocates until the pool says no; checks every frame is new and not 0.
fn alloc_all(pool: &FramePool) -> Vec<Frame> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    while let Some(f) = pool.alloc() {
        assert_ne!(f.number(), 0, "frame 0 handed out");
        assert!(seen.insert(f.number()), "{f:?} handed out twice");
        assert_eq!(pool.refcount(f), 1);
        out.push(f);
    }
    out
}

fn assert_quiescent(pool: &FramePool, frames: u64) {
    let st = pool.stats();
    assert_eq!(st.in_use, 0, "{st:?}");
    assert_eq!(st.allocated, st.freed, "{st:?}");
    assert_eq!(st.free, frames - 1, "{st:?}");
    assert_eq!(pool.in_use(), 0);
    for n in 0..frames {
        assert_eq!(pool.refcount(Frame::from_number(n)), 0, "frame {n}");
    }
}

#[test]
fn exhaustion_then_reuse() {
    const FRAMES: u64 = 100;
    let pool = FramePool::new(FRAMES);
    let mut held = alloc_all(&pool);
    assert_eq!(held.len() as u64, FRAMES - 1);
    assert!(pool.alloc().is_none());
    let st = pool.stats();
    assert_eq!(
        (st.in_use, st.free, st.allocated),
        (FRAMES - 1, 0, FRAMES - 1)
    );

    let f = held.pop().unwrap();
    assert!(pool.release(f));
    assert_eq!(pool.refcount(f), 0);
    assert_eq!(pool.alloc(), Some(f), "the only free frame");
    assert!(pool.alloc().is_none());
    held.push(f);

    for f in held {
        assert!(pool.release(f));
    }
    assert_quiescent(&pool, FRAMES);
    // Everything can be allocated again.
    let again = alloc_all(&pool);
    assert_eq!(again.len() as u64, FRAMES - 1);
    for f in again {
        pool.release(f);
    }
    assert_quiescent(&pool, FRAMES);
}

#[test]
fn tiny_pools() {
    for frames in [0u64, 1] {
        let pool = FramePool::new(frames);
        assert!(pool.alloc().is_none(), "{frames} frames");
        assert_eq!(pool.stats(), FrameStats::default());
    }
    let pool = FramePool::new(2);
    let f = pool.alloc().unwrap();
    assert_eq!(f.number(), 1);
    assert!(pool.alloc().is_none());
    pool.release(f);
    assert_quiescent(&pool, 2);
}

#[test]
fn fresh_pool_hands_out_ascending_frames() {
    let pool = FramePool::new(1 << 12);
    let first: Vec<u64> = (0..16).map(|_| pool.alloc().unwrap().number()).collect();
    for w in first.windows(2) {
        assert_eq!(w[1], w[0] + 1, "{first:?}");
    }
}

#[test]
fn frames_freed_by_another_thread_are_found() {
    const FRAMES: u64 = 1000;
    let pool = Arc::new(FramePool::new(FRAMES));
    let held = alloc_all(&pool);
    assert_eq!(held.len() as u64, FRAMES - 1);
    let p = Arc::clone(&pool);
    thread::spawn(move || {
        for f in held {
            assert!(p.release(f));
        }
    })
    .join()
    .unwrap();
    assert_quiescent(&pool, FRAMES);
    let again = alloc_all(&pool);
    assert_eq!(again.len() as u64, FRAMES - 1);
    for f in again {
        pool.release(f);
    }
    assert_quiescent(&pool, FRAMES);
}

#[test]
#[should_panic(expected = "released more often than referenced (double free)")]
fn double_release_panics() {
    let pool = FramePool::new(16);
    let f = pool.alloc().unwrap();
    assert!(pool.release(f));
    pool.release(f);
}

#[test]
#[should_panic(expected = "released more often than referenced (double free)")]
fn release_of_never_allocated_frame_panics() {
    let pool = FramePool::new(16);
    pool.release(Frame::from_number(3));
}

#[test]
#[should_panic(expected = "add_ref on free frame")]
fn add_ref_on_free_frame_panics() {
    let pool = FramePool::new(16);
    let f = pool.alloc().unwrap();
    pool.release(f);
    pool.add_ref(f);
}

#[test]
fn misuse_leaves_counts_alone() {
    let pool = Arc::new(FramePool::new(16));
    let f = pool.alloc().unwrap();
    pool.release(f);
    let p = Arc::clone(&pool);
    assert!(thread::spawn(move || p.release(f)).join().is_err());
    let p = Arc::clone(&pool);
    assert!(thread::spawn(move || p.add_ref(f)).join().is_err());
    assert_eq!(pool.refcount(f), 0, "no wrap-around");
    assert_quiescent(&pool, 16);
}

#[test]
fn generation_changes_on_free_only() {
    let pool = FramePool::new(16);
    let f = pool.alloc().unwrap();
    let g0 = pool.generation(f);
    pool.add_ref(f);
    pool.add_ref(f);
    assert_eq!(pool.refcount(f), 3);
    assert!(!pool.release(f), "not the last reference");
    assert!(!pool.release(f), "not the last reference");
    assert_eq!(pool.generation(f), g0, "changed by a non-final release");
    assert_eq!(pool.refcount(f), 1);
    assert!(pool.release(f), "the last reference");
    assert_eq!(pool.generation(f), g0.wrapping_add(1));
    assert_eq!(pool.refcount(f), 0);

    // Handed out again, it keeps its generation until freed again.
    let g = alloc_all(&pool);
    assert!(g.contains(&f));
    assert_eq!(pool.generation(f), g0.wrapping_add(1));
    for x in g {
        pool.release(x);
    }
    assert_eq!(pool.generation(f), g0.wrapping_add(2));
}

#[test]
fn limit() {
    let pool = FramePool::new(64);
    let a = pool.alloc().unwrap();
    pool.set_limit(Some(4));
    let mut held: Vec<Frame> = (0..3).map(|_| pool.alloc().unwrap()).collect();
    assert_eq!(pool.in_use(), 4);
    assert!(pool.alloc().is_none(), "limit reached");
    assert!(pool.alloc().is_none(), "limit reached");
    pool.add_ref(a);
    assert!(!pool.release(a));
    assert!(pool.alloc().is_none(), "still at the limit");
    assert!(pool.release(a));
    held.push(pool.alloc().expect("one below the limit"));
    assert!(pool.alloc().is_none());

    pool.set_limit(Some(2));
    assert!(pool.alloc().is_none(), "above the limit");
    pool.set_limit(Some(0));
    assert!(pool.alloc().is_none());
    pool.set_limit(None);
    let rest = alloc_all(&pool);
    assert_eq!(rest.len(), 63 - 4);
    for f in held.into_iter().chain(rest) {
        pool.release(f);
    }
    let st = pool.stats();
    assert_eq!(st.peak, 63);
    assert_quiescent(&pool, 64);
}

#[test]
fn counters_single_threaded_are_exact() {
    let pool = FramePool::new(1 << 12);
    let mut held: Vec<Frame> = (0..300).map(|_| pool.alloc().unwrap()).collect();
    for f in held.drain(..150) {
        pool.add_ref(f);
        assert!(!pool.release(f));
        assert!(pool.release(f));
    }
    held.extend((0..100).map(|_| pool.alloc().unwrap()));
    let st = pool.stats();
    assert_eq!(
        st,
        FrameStats {
            in_use: 250,
            peak: 300,
            allocated: 400,
            freed: 150,
            free: (1 << 12) - 1 - 250,
        }
    );
    held.extend((0..200).map(|_| pool.alloc().unwrap()));
    assert_eq!(pool.stats().peak, 450);
    for f in held {
        pool.release(f);
    }
    let st = pool.stats();
    assert_eq!(
        (st.in_use, st.peak, st.allocated, st.freed),
        (0, 450, 600, 600)
    );
}

#[test]
fn concurrent_add_ref_and_release_of_one_frame() {
    const THREADS: usize = 3;
    let pool = Arc::new(FramePool::new(16));
    let f = pool.alloc().unwrap();
    let g = pool.generation(f);
    let start = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (pool, start) = (Arc::clone(&pool), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                for _ in 0..300_000 {
                    pool.add_ref(f);
                    pool.add_ref(f);
                    assert!(!pool.release(f));
                    assert!(!pool.release(f));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(pool.refcount(f), 1, "lost or doubled updates");
    assert_eq!(pool.generation(f), g);
    assert!(pool.release(f));
    assert_quiescent(&pool, 16);
}

/// Four threads allocate, take extra references, pass references to each
/// other and release them, on a pool small enough to run out now and then.
/// `refs[n]` counts the references the test holds on frame `n`: an
/// allocation must find it 0 (no frame handed out twice while live), and
/// each holder drops its count before releasing, so it is 0 whenever the
/// pool frees the frame.
#[test]
fn stress_threads() {
    const FRAMES: u64 = 512;
    const THREADS: u64 = 4;
    const OPS: u64 = 50_000;
    let pool = Arc::new(FramePool::new(FRAMES));
    let refs: Arc<Vec<AtomicU32>> = Arc::new((0..FRAMES).map(|_| AtomicU32::new(0)).collect());
    let frees: Arc<Vec<AtomicU32>> = Arc::new((0..FRAMES).map(|_| AtomicU32::new(0)).collect());
    let mailbox: Arc<Mutex<Vec<Frame>>> = Arc::default();
    let allocs = Arc::new(AtomicU64::new(0));
    let fails = Arc::new(AtomicU64::new(0));

    let release = |pool: &FramePool, refs: &[AtomicU32], frees: &[AtomicU32], f: Frame| {
        let n = f.number() as usize;
        let before = refs[n].fetch_sub(1, Relaxed);
        assert!(
            before > 0,
            "{f:?}: the test released a reference it had not"
        );
        if pool.release(f) {
            frees[n].fetch_add(1, Relaxed);
        }
    };

    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (pool, refs, frees) = (Arc::clone(&pool), Arc::clone(&refs), Arc::clone(&frees));
            let (mailbox, allocs, fails) = (
                Arc::clone(&mailbox),
                Arc::clone(&allocs),
                Arc::clone(&fails),
            );
            thread::spawn(move || {
                let mut rng = XorShift::new(0x9e37_79b9_7f4a_7c15 ^ ((t + 1) * 0x1234_5678_9abc));
                let mut mine: Vec<Frame> = Vec::new();
                // How many references this thread aims to hold: varies so the
                // pool runs dry at times.
                let mut target = 100;
                for op in 0..OPS {
                    if op % 1000 == 0 {
                        target = 1 + rng.below(600) as usize;
                    }
                    match rng.below(10) {
                        0..=4 if mine.len() < target => match pool.alloc() {
                            Some(f) => {
                                let n = f.number() as usize;
                                assert_ne!(n, 0);
                                let was = refs[n].swap(1, Relaxed);
                                assert_eq!(was, 0, "{f:?} handed out while live");
                                assert_eq!(pool.refcount(f), 1);
                                allocs.fetch_add(1, Relaxed);
                                mine.push(f);
                            }
                            None => {
                                fails.fetch_add(1, Relaxed);
                                if let Some(f) = mine.pop() {
                                    release(&pool, &refs, &frees, f);
                                }
                            }
                        },
                        5 if !mine.is_empty() => {
                            // Another reference, for this thread or another.
                            let f = mine[rng.below(mine.len() as u64) as usize];
                            refs[f.number() as usize].fetch_add(1, Relaxed);
                            pool.add_ref(f);
                            if rng.below(2) == 0 {
                                mine.push(f);
                            } else {
                                mailbox.lock().unwrap().push(f);
                            }
                        }
                        6 => {
                            let got = mailbox.lock().unwrap().pop();
                            mine.extend(got);
                        }
                        _ if !mine.is_empty() => {
                            let i = rng.below(mine.len() as u64) as usize;
                            let f = mine.swap_remove(i);
                            release(&pool, &refs, &frees, f);
                        }
                        _ => {}
                    }
                }
                for f in mine {
                    release(&pool, &refs, &frees, f);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    for f in std::mem::take(&mut *mailbox.lock().unwrap()) {
        release(&pool, &refs, &frees, f);
    }

    let st = pool.stats();
    let allocs = allocs.load(Relaxed);
    assert!(allocs > 10_000, "{allocs} allocations");
    assert_eq!(st.allocated, allocs, "{st:?}");
    assert_eq!(st.freed, allocs, "{st:?}");
    assert!(st.peak < FRAMES, "{st:?}");
    assert_quiescent(&pool, FRAMES);
    for n in 0..FRAMES as usize {
        assert_eq!(refs[n].load(Relaxed), 0);
        assert_eq!(
            pool.generation(Frame::from_number(n as u64)),
            frees[n].load(Relaxed),
            "frame {n}: one new generation per free"
        );
    }
    eprintln!(
        "stress: {allocs} allocations, {} failed, {st:?}",
        fails.load(Relaxed)
    );

    // The frames, scattered over the shards, can all be allocated again.
    let all = alloc_all(&pool);
    assert_eq!(all.len() as u64, FRAMES - 1);
    for f in all {
        pool.release(f);
    }
    assert_quiescent(&pool, FRAMES);
}

#[test]
fn release_many_frees_the_last_references_only() {
    let pool = FramePool::new(300);
    let frames = alloc_all(&pool);
    assert_eq!(frames.len(), 299);
    // Every third frame has a second reference: it stays.
    for f in frames.iter().step_by(3) {
        pool.add_ref(*f);
    }
    let kept = frames.iter().step_by(3).count() as u64;
    let before = pool.stats();
    assert_eq!(pool.release_many(&frames), 299 - kept);
    let after = pool.stats();
    assert_eq!(after.free, before.free + 299 - kept);
    assert_eq!(after.freed, before.freed + 299 - kept);
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(pool.refcount(*f), u32::from(i % 3 == 0), "{f:?}");
    }
    let rest: Vec<Frame> = frames.iter().step_by(3).copied().collect();
    assert_eq!(pool.release_many(&rest), kept);
    assert_eq!(pool.stats().free, 299);
    // The freed frames come out again, each once.
    assert_eq!(alloc_all(&pool).len(), 299);
}
