//! The ready-made spinning locks of `aspace::spin`, on host threads: a
//! mutex excludes, a reader-writer lock lets readers share and excludes a
//! writer, and a waiting writer holds new readers back.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use aspace::spin::{RawSpin, RawSpinRw, Relax};
use lock_api::{RawMutex, RawRwLock};

/// Host threads outnumber cores: let the holder run.
struct Yield;

impl Relax for Yield {
    fn relax() {
        thread::yield_now();
    }
}

type Mutex<T> = lock_api::Mutex<RawSpin<Yield>, T>;
type RwLock<T> = lock_api::RwLock<RawSpinRw<Yield>, T>;

/// Rounds per thread (fewer under Miri, which is slow).
const ROUNDS: usize = if cfg!(miri) { 50 } else { 20_000 };

#[test]
fn the_mutex_excludes() {
    // A read, a yield to the other threads, a write: updates are lost
    // unless the lock excludes.
    let m = Mutex::new(0usize);
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..ROUNDS / 10 {
                    let mut g = m.lock();
                    let seen = *g;
                    thread::yield_now();
                    *g = seen + 1;
                }
            });
        }
    });
    assert_eq!(m.into_inner(), 4 * (ROUNDS / 10));
}

#[test]
fn try_lock_fails_while_held_and_succeeds_after() {
    let raw = <RawSpin as RawMutex>::INIT;
    assert!(raw.try_lock());
    assert!(!raw.try_lock());
    // SAFETY: this thread holds the lock (the first `try_lock`).
    unsafe { raw.unlock() };
    assert!(raw.try_lock());
    // SAFETY: as above.
    unsafe { raw.unlock() };
}

#[test]
fn writers_exclude_readers_and_each_other() {
    // Writers keep the two halves equal only under the lock; readers check
    // they never see them apart.
    let l = RwLock::new((0usize, 0usize));
    let torn = AtomicBool::new(false);
    thread::scope(|s| {
        for w in 0..4 {
            let (l, torn) = (&l, &torn);
            s.spawn(move || {
                for _ in 0..ROUNDS {
                    if w % 2 == 0 {
                        let mut g = l.write();
                        g.0 += 1;
                        thread::yield_now();
                        g.1 += 1;
                    } else {
                        let g = l.read();
                        if g.0 != g.1 {
                            torn.store(true, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    assert!(
        !torn.load(Ordering::Relaxed),
        "a reader saw a write half done"
    );
    assert_eq!(l.into_inner(), (2 * ROUNDS, 2 * ROUNDS));
}

/// Whether `done` comes to hold within a while (a lock that does not do
/// its job must fail its test, not hang it).
fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(20);
    while !done() {
        if Instant::now() > end {
            return false;
        }
        thread::yield_now();
    }
    true
}

#[test]
fn readers_share() {
    // Two readers hold the lock at once: each waits inside for the other.
    let l = RwLock::new(());
    let inside = AtomicUsize::new(0);
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let _g = l.read();
                inside.fetch_add(1, Ordering::SeqCst);
                let shared = eventually(|| inside.load(Ordering::SeqCst) == 2);
                assert!(shared, "the readers did not share the lock");
            });
        }
    });
    assert!(l.try_write().is_some());
}

#[test]
fn a_waiting_writer_holds_new_readers_back() {
    let raw = <RawSpinRw as RawRwLock>::INIT;
    raw.lock_shared();
    let entered = AtomicUsize::new(0);
    thread::scope(|s| {
        s.spawn(|| {
            raw.lock_exclusive();
            entered.store(1, Ordering::SeqCst);
            // SAFETY: this thread holds the lock exclusively.
            unsafe { raw.unlock_exclusive() };
        });
        // Until the writer has marked itself waiting, new readers may enter;
        // then they must not.
        let held_back = eventually(|| {
            if raw.try_lock_shared() {
                // SAFETY: the shared lock was just taken by this thread.
                unsafe { raw.unlock_shared() };
                false
            } else {
                true
            }
        });
        // SAFETY: this thread took the first shared lock.
        unsafe { raw.unlock_shared() };
        assert!(held_back, "new readers were never held back");
    });
    assert_eq!(entered.load(Ordering::SeqCst), 1);
    assert!(raw.try_lock_exclusive());
}
