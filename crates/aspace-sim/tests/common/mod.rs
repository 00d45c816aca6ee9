//! Helpers shared by the multi-CPU test files: addresses, seeds, a small
//! deterministic generator and a barrier that does not hang on failure.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::Duration;

use aspace::VirtAddr;

/// Shorthand for a virtual address.
pub fn va(a: u64) -> VirtAddr {
    VirtAddr::new(a)
}

/// The seed from `ASPACE_SEED`, or `default`.
pub fn seed(default: u64) -> u64 {
    std::env::var("ASPACE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// xorshift64: small, deterministic, good enough to pick pages.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        // Spread nearby seeds apart; the state must not be zero.
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform-ish in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `percent`%.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A barrier that does not hang when one of its threads fails: a thread
/// that panics while holding a [`SyncPoint::guard`] breaks it, and every
/// thread waiting at it (or arriving later) panics instead of waiting
/// forever.
pub struct SyncPoint {
    threads: usize,
    state: Mutex<(usize, u64)>,
    cv: Condvar,
    broken: AtomicBool,
}

pub struct BreakOnPanic<'a>(&'a SyncPoint);

impl Drop for BreakOnPanic<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.broken.store(true, Relaxed);
            self.0.cv.notify_all();
        }
    }
}

impl SyncPoint {
    pub fn new(threads: usize) -> Self {
        Self {
            threads,
            state: Mutex::new((0, 0)),
            cv: Condvar::new(),
            broken: AtomicBool::new(false),
        }
    }

    /// Breaks the sync point if the calling thread panics while the guard
    /// lives.
    pub fn guard(&self) -> BreakOnPanic<'_> {
        BreakOnPanic(self)
    }

    pub fn wait(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let generation = s.1;
        s.0 += 1;
        if s.0 == self.threads {
            *s = (0, generation + 1);
            self.cv.notify_all();
            return;
        }
        while s.1 == generation {
            assert!(
                !self.broken.load(Relaxed),
                "another thread at this sync point failed"
            );
            s = self
                .cv
                .wait_timeout(s, Duration::from_millis(20))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

thread_local! {
    /// The architecture the running test simulates (see [`each_arch`]).
    static ARCH: std::cell::Cell<aspace_sim::Arch> =
        const { std::cell::Cell::new(aspace_sim::Arch::X86_64) };
}

/// The architecture the running test simulates: x86_64 unless the test
/// runs under [`on_other_archs`]; read when a test builds its machine.
pub fn arch() -> aspace_sim::Arch {
    ARCH.with(|a| a.get())
}

/// Runs `test` once on every architecture but x86_64 (a plain `#[test]`
/// runs it on x86_64), with [`arch`] telling which; a failure names the
/// architecture.
pub fn on_other_archs(test: fn()) {
    for a in aspace_sim::Arch::ALL {
        if a == aspace_sim::Arch::X86_64 {
            continue;
        }
        ARCH.with(|c| c.set(a));
        if let Err(e) = std::panic::catch_unwind(test) {
            eprintln!("failed on {a}");
            std::panic::resume_unwind(e);
        }
    }
}

/// For each test function named, a test of the same name in module
/// `other_archs` that runs it on every architecture but x86_64.
#[macro_export]
macro_rules! other_archs {
    ($($test:ident),* $(,)?) => {
        mod other_archs {
            $(
                #[test]
                fn $test() {
                    super::common::on_other_archs(super::$test);
                }
            )*
        }
    };
}
