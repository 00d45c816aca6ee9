//! Locks. Every spin loop in the kernel serves pending TLB shootdown
//! requests while it waits, so a CPU that waits for a lock never blocks a
//! shootdown started by the lock's holder.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

/// Called in every spin loop.
#[inline]
pub fn relax() {
    crate::shootdown::poll();
    core::hint::spin_loop();
}

/// A test-and-test-and-set spinlock, the kernel's `lock_api` raw mutex.
pub struct RawSpin(AtomicBool);

// SAFETY: the lock is exclusive: `lock` and `try_lock` take it only by a
// compare-exchange of the flag from false to true (Acquire), so of several
// CPUs racing at most one succeeds until `unlock` (called by lock_api only
// for the holder) stores false again (Release, so the holder's writes are
// seen by the next one). The flag is not tied to a CPU, so a guard may be
// released on another CPU (`GuardSend`).
unsafe impl lock_api::RawMutex for RawSpin {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: RawSpin = RawSpin(AtomicBool::new(false));
    type GuardMarker = lock_api::GuardSend;

    fn lock(&self) {
        while !self.try_lock() {
            while self.0.load(Ordering::Relaxed) {
                relax();
            }
        }
    }

    fn try_lock(&self) -> bool {
        self.0
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    unsafe fn unlock(&self) {
        self.0.store(false, Ordering::Release);
    }
}

/// A reader-writer spinlock, the kernel's `lock_api` raw rwlock (the area
/// trees: faults read, area changes write). A waiting writer sets `PENDING`
/// so new readers hold back and a stream of faults cannot starve it.
pub struct RawSpinRw(AtomicUsize);

const WRITER: usize = 1;
const PENDING: usize = 2;
const READER: usize = 4;

// SAFETY: a writer enters only by a compare-exchange from a state with no
// writer and no reader (`s & !PENDING == 0`) to WRITER (Acquire), and a
// reader only by a compare-exchange that adds READER to a state without
// WRITER (Acquire); so while WRITER is set there is no reader and no other
// writer, and readers only share with readers. `unlock_exclusive` clears
// the state and `unlock_shared` removes one READER (Release both, so the
// holder's writes are seen by the next one). Not tied to a CPU
// (`GuardSend`).
unsafe impl lock_api::RawRwLock for RawSpinRw {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: RawSpinRw = RawSpinRw(AtomicUsize::new(0));
    type GuardMarker = lock_api::GuardSend;

    fn lock_shared(&self) {
        while !self.try_lock_shared() {
            relax();
        }
    }

    fn try_lock_shared(&self) -> bool {
        // Fails only for a writer, holding or waiting; other readers coming
        // and going just make the exchange try again.
        let mut s = self.0.load(Ordering::Relaxed);
        while s & (WRITER | PENDING) == 0 {
            match self
                .0
                .compare_exchange_weak(s, s + READER, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => s = now,
            }
        }
        false
    }

    unsafe fn unlock_shared(&self) {
        self.0.fetch_sub(READER, Ordering::Release);
    }

    fn lock_exclusive(&self) {
        loop {
            let s = self.0.load(Ordering::Relaxed);
            if s & !PENDING == 0 {
                if self
                    .0
                    .compare_exchange_weak(s, WRITER, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return;
                }
            } else if s & PENDING == 0 {
                self.0.fetch_or(PENDING, Ordering::Relaxed);
            }
            relax();
        }
    }

    fn try_lock_exclusive(&self) -> bool {
        let s = self.0.load(Ordering::Relaxed);
        s & !PENDING == 0
            && self
                .0
                .compare_exchange(s, WRITER, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    unsafe fn unlock_exclusive(&self) {
        self.0.store(0, Ordering::Release);
    }
}

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
