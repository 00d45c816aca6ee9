//! Locks. Every spin loop in the kernel serves pending TLB shootdown
//! requests while it waits, so a CPU that waits for a lock never blocks a
//! shootdown started by the lock's holder.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

/// Called in every spin loop.
#[inline]
pub fn relax() {
    crate::shootdown::poll();
    core::hint::spin_loop();
}

/// A test-and-test-and-set spinlock, the kernel's `lock_api` raw mutex.
pub struct RawSpin(AtomicBool);

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

/// A spinlock around a value.
pub type SpinLock<T> = lock_api::Mutex<RawSpin, T>;

/// A value written once during boot, then read-only.
pub struct Once<T> {
    ready: AtomicBool,
    value: UnsafeCell<Option<T>>,
}

unsafe impl<T: Send + Sync> Sync for Once<T> {}

impl<T> Once<T> {
    /// Unset.
    pub const fn new() -> Self {
        Self {
            ready: AtomicBool::new(false),
            value: UnsafeCell::new(None),
        }
    }

    /// Sets the value; only the boot CPU calls this, once.
    pub fn set(&self, v: T) {
        assert!(!self.ready.load(Ordering::Acquire), "set twice");
        unsafe { *self.value.get() = Some(v) };
        self.ready.store(true, Ordering::Release);
    }

    /// The value, if set.
    pub fn get(&self) -> Option<&T> {
        if self.ready.load(Ordering::Acquire) {
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
