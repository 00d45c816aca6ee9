//! Kernel-side counters that aspace does not keep.

use core::sync::atomic::AtomicU64;

/// Local TLB invalidations performed (any reason).
pub static LOCAL_FLUSHES: AtomicU64 = AtomicU64::new(0);
/// Shootdown IPIs received and served.
pub static IPIS_SERVED: AtomicU64 = AtomicU64::new(0);
/// Kernel-mode page faults served.
pub static KERNEL_FAULTS: AtomicU64 = AtomicU64::new(0);
/// User-mode page faults taken.
pub static USER_FAULTS: AtomicU64 = AtomicU64::new(0);
/// Timer interrupts.
pub static TICKS: AtomicU64 = AtomicU64::new(0);
/// Preemptions (a task switched out by the timer).
pub static PREEMPTIONS: AtomicU64 = AtomicU64::new(0);
/// Address-space switches refused by aspace (the task waited for a tick).
pub static SWITCH_FAILURES: AtomicU64 = AtomicU64::new(0);
/// Threads parked in the kernel (a page fault waiting for a pager let
/// other tasks run).
pub static PARKS: AtomicU64 = AtomicU64::new(0);
/// Parks that slept: a fault waiting for a pager left the ready queue
/// until an answer woke it.
pub static SLEEPS: AtomicU64 = AtomicU64::new(0);
