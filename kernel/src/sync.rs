//! Locks. Every spin loop in the kernel serves pending TLB shootdown
//! requests while it waits, so a CPU that waits for a lock never blocks a
//! shootdown started by the lock's holder.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU8, Ordering};

/// Called in every spin loop.
#[inline]
pub fn relax() {
    crate::shootdown::poll();
    core::hint::spin_loop();
}

/// The kernel's waiting: serve shootdown requests, then pause.
pub struct Poll;

impl aspace::spin::Relax for Poll {
    #[inline]
    fn relax() {
        relax();
    }
}

/// The kernel's `lock_api` raw mutex: the core's spinlock, waiting with
/// [`relax`].
pub type RawSpin = aspace::spin::RawSpin<Poll>;

/// The kernel's `lock_api` raw rwlock (the area trees: faults read, area
/// changes write): the core's, waiting with [`relax`].
pub type RawSpinRw = aspace::spin::RawSpinRw<Poll>;

/// A spinlock around a value.
pub type SpinLock<T> = lock_api::Mutex<RawSpin, T>;
/// A held [`SpinLock`].
pub type SpinLockGuard<'a, T> = lock_api::MutexGuard<'a, RawSpin, T>;

/// A value written once during boot, then read-only.
pub struct Once<T> {
    /// `EMPTY`, then `WRITING` while the one `set` that claimed the slot
    /// stores the value, then `READY` for good.
    state: AtomicU8,
    value: UnsafeCell<Option<T>>,
}

const EMPTY: u8 = 0;
const WRITING: u8 = 1;
const READY: u8 = 2;

// SAFETY: `value` is written only by the one `set` that moved `state` from
// EMPTY to WRITING (any other `set` panics before touching it), and read
// through `get` only after `state` is READY (Acquire, paired with `set`'s
// Release), after which it is never written again (`DerefMut` needs `&mut`,
// so no shared reference exists then). Sharing `&Once<T>` thus hands out
// `&T` on several CPUs (needs `T: Sync`) and lets any CPU move a `T` in
// (needs `T: Send`).
unsafe impl<T: Send + Sync> Sync for Once<T> {}

impl<T> Once<T> {
    /// Unset.
    pub const fn new() -> Self {
        Self {
            state: AtomicU8::new(EMPTY),
            value: UnsafeCell::new(None),
        }
    }

    /// Sets the value; only the boot CPU calls this, once.
    pub fn set(&self, v: T) {
        let claimed = self
            .state
            .compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Acquire)
            .is_ok();
        assert!(claimed, "set twice");
        // SAFETY: this call moved `state` from EMPTY to WRITING, so any other
        // `set` fails its compare-exchange and panics, and no `get` reads
        // `value` before READY is stored below: this is the only access.
        unsafe { *self.value.get() = Some(v) };
        self.state.store(READY, Ordering::Release);
    }

    /// The value, if set.
    pub fn get(&self) -> Option<&T> {
        if self.state.load(Ordering::Acquire) == READY {
            // SAFETY: READY was stored (Release) after the only write to
            // `value`, which this Acquire load therefore sees; nothing writes
            // `value` through `&self` after that, so a shared reference for
            // as long as `&self` lives is sound.
            unsafe { (*self.value.get()).as_ref() }
        } else {
            None
        }
    }
}

impl<T> Deref for Once<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.get().expect("used before initialisation")
    }
}

impl<T> DerefMut for Once<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value.get_mut().as_mut().expect("set")
    }
}
