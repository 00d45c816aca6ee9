//! Spinning locks for [`Machine::Lock`](crate::Machine::Lock) and
//! [`Machine::RwLock`](crate::Machine::RwLock), for a kernel that has no
//! locks of its own yet (and for the simulator, whose CPUs are threads).
//!
//! Both are released by a plain store: a lock that can put waiters to
//! sleep (`parking_lot`'s, a futex) must look at the lock word again to
//! learn whether to wake one, an atomic read-modify-write in every release,
//! and every area operation releases a few. A waiting CPU calls
//! [`Relax::relax`] between tries: a pause, or whatever the kernel must
//! keep doing while it waits (answer shootdown requests, yield the host
//! thread).

use core::marker::PhantomData;
use core::sync::atomic::{AtomicUsize, Ordering};

/// What a CPU does while it waits for a lock held elsewhere.
pub trait Relax {
    /// Called between two tries to take the lock.
    fn relax();
}

/// [`Relax`] as a pause instruction (`core::hint::spin_loop`): only for
/// a machine whose shootdowns do not wait for the other CPUs to answer
/// (one CPU, or invalidation by broadcast). Shootdowns are sent with
/// these locks held, so where a CPU must answer an IPI, its waiting must
/// answer pending ones, or two CPUs wait for each other for ever.
pub struct Pause;

impl Relax for Pause {
    #[inline]
    fn relax() {
        core::hint::spin_loop();
    }
}

/// A test-and-test-and-set spinlock: `lock_api`'s raw mutex, taken by a
/// compare-exchange, released by a store. The flag is a whole word: a
/// lock beside a value of word alignment takes as much room as a byte
/// would, and a value moved with it then starts on a word, not on a byte
/// whose copy straddles the stores that built the value (a stall of the
/// store buffer on every such move).
pub struct RawSpin<R = Pause>(AtomicUsize, PhantomData<fn() -> R>);

// SAFETY: the lock is exclusive: `lock` and `try_lock` take it only by a
// compare-exchange of the flag from 0 to 1 (Acquire), so of several
// CPUs racing at most one succeeds until `unlock` (called by lock_api only
// for the holder) stores 0 again (Release, so the holder's writes are
// seen by the next one). The flag is not tied to a CPU, so a guard may be
// released on another CPU (`GuardSend`).
unsafe impl<R: Relax> lock_api::RawMutex for RawSpin<R> {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = RawSpin(AtomicUsize::new(0), PhantomData);
    type GuardMarker = lock_api::GuardSend;

    #[inline]
    fn lock(&self) {
        while !self.try_lock() {
            while self.0.load(Ordering::Relaxed) != 0 {
                R::relax();
            }
        }
    }

    #[inline]
    fn try_lock(&self) -> bool {
        self.0
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    #[inline]
    unsafe fn unlock(&self) {
        self.0.store(0, Ordering::Release);
    }
}

/// A reader-writer spinlock: `lock_api`'s raw rwlock. A waiting writer
/// sets `PENDING` so that new readers hold back: a stream of page faults
/// (readers of an area tree) cannot starve an area change.
pub struct RawSpinRw<R = Pause>(AtomicUsize, PhantomData<fn() -> R>);

const WRITER: usize = 1;
const PENDING: usize = 2;
const READER: usize = 4;

// SAFETY: a writer enters only by a compare-exchange from a state with no
// writer and no reader (`s & !PENDING == 0`) to WRITER (Acquire), and a
// reader only by a compare-exchange that adds READER to a state without
// WRITER (Acquire); so while WRITER is set there is no reader and no other
// writer, and readers only share with readers. `unlock_exclusive` clears
// the state (nothing else changes it while WRITER is set but a waiting
// writer's PENDING, which it sets again) and `unlock_shared` removes one
// READER (Release both, so the holder's writes are seen by the next one).
// Not tied to a CPU (`GuardSend`).
unsafe impl<R: Relax> lock_api::RawRwLock for RawSpinRw<R> {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = RawSpinRw(AtomicUsize::new(0), PhantomData);
    type GuardMarker = lock_api::GuardSend;

    #[inline]
    fn lock_shared(&self) {
        while !self.try_lock_shared() {
            R::relax();
        }
    }

    #[inline]
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

    #[inline]
    unsafe fn unlock_shared(&self) {
        self.0.fetch_sub(READER, Ordering::Release);
    }

    #[inline]
    fn lock_exclusive(&self) {
        while !self.try_lock_exclusive() {
            let s = self.0.load(Ordering::Relaxed);
            if s & !PENDING != 0 && s & PENDING == 0 {
                self.0.fetch_or(PENDING, Ordering::Relaxed);
            }
            R::relax();
        }
    }

    #[inline]
    fn try_lock_exclusive(&self) -> bool {
        let s = self.0.load(Ordering::Relaxed);
        s & !PENDING == 0
            && self
                .0
                .compare_exchange(s, WRITER, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    #[inline]
    unsafe fn unlock_exclusive(&self) {
        self.0.store(0, Ordering::Release);
    }
}
