//! A reader-writer lock with one reader count per CPU (a "big reader"
//! lock), for data read on every page fault and written rarely: the area
//! tree of an address space.
//!
//! A reader locks only the shard of the CPU it runs on, so readers on
//! different CPUs never write the same cache line; a writer locks every
//! shard, in index order, so it excludes the readers of all of them. Reads
//! cost what one of the machine's reader-writer locks costs, writes that
//! times the number of shards. Each shard is one of the machine's own
//! [`RawRwLock`]s, so waiting behaves as the kernel chose (the x86_64
//! kernel's keeps serving shootdown IPIs while it spins).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};

use lock_api::RawRwLock;

use crate::sync::cell::{ExclusiveAccess, SharedAccess, UnsafeCell};

/// One shard, alone on its cache-line pair (adjacent-line prefetch
/// would otherwise couple neighbours).
#[repr(align(128))]
struct Shard<R>(R);

/// A reader-writer lock over `T` with one shard per CPU (see the
/// [module documentation](self)).
pub struct ShardedRwLock<R: RawRwLock, T> {
    /// Shard 0, kept in the lock itself: a one-CPU machine (and CPU 0)
    /// reads without following a pointer.
    first: Shard<R>,
    /// Shards 1 and up.
    rest: Box<[Shard<R>]>,
    /// The shard count minus one; the count is a power of two, so a CPU's
    /// shard is a mask away (no division on the read path).
    mask: usize,
    data: UnsafeCell<T>,
}

// SAFETY: the lock hands out `&T` to readers on several threads at once
// (hence `T: Sync`) and `&mut T` to one writer at a time, possibly on
// another thread than the one that created it (hence `T: Send`).
unsafe impl<R: RawRwLock + Sync, T: Send + Sync> Sync for ShardedRwLock<R, T> {}
// SAFETY: moving the lock moves the `T` it owns; the raw locks are plain
// values while nobody holds them (and nobody can, given `self` by value).
unsafe impl<R: RawRwLock + Send, T: Send> Send for ShardedRwLock<R, T> {}

impl<R: RawRwLock, T> ShardedRwLock<R, T> {
    /// A lock over `value` with `shards` shards, rounded up to a power of
    /// two (at least one). (The core uses [`try_new`](Self::try_new); this
    /// is for the lock's own tests.)
    #[cfg_attr(not(any(test, loom)), allow(dead_code))]
    pub fn new(value: T, shards: usize) -> Self {
        let n = shards.max(1).next_power_of_two();
        let rest: Vec<Shard<R>> = (1..n).map(|_| Shard(R::INIT)).collect();
        Self {
            first: Shard(R::INIT),
            rest: rest.into_boxed_slice(),
            mask: n - 1,
            data: UnsafeCell::new(value),
        }
    }

    /// [`new`](Self::new) that gives `value` back instead of aborting when
    /// the heap refuses the shards.
    pub fn try_new(value: T, shards: usize) -> Result<Self, T> {
        let n = shards.max(1).next_power_of_two();
        let mut rest: Vec<Shard<R>> = Vec::new();
        if rest.try_reserve_exact(n - 1).is_err() {
            return Err(value);
        }
        rest.extend((1..n).map(|_| Shard(R::INIT)));
        Ok(Self {
            first: Shard(R::INIT),
            rest: rest.into_boxed_slice(),
            mask: n - 1,
            data: UnsafeCell::new(value),
        })
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.mask + 1
    }

    /// Shard `i` (below the count).
    #[inline]
    fn shard(&self, i: usize) -> &R {
        match i {
            0 => &self.first.0,
            _ => &self.rest[i - 1].0,
        }
    }

    /// Every shard, lowest first.
    fn all(&self) -> impl DoubleEndedIterator<Item = &R> {
        core::iter::once(&self.first.0).chain(self.rest.iter().map(|s| &s.0))
    }

    /// Shared access, through the shard of `cpu` (CPUs beyond the shard
    /// count, and callers outside any CPU, share shards by index modulo the
    /// count; any shard is correct, the CPU's own is just the fast one).
    #[inline]
    pub fn read(&self, cpu: Option<usize>) -> ReadGuard<'_, R, T> {
        let shard = self.shard(cpu.unwrap_or(0) & self.mask);
        shard.lock_shared();
        ReadGuard {
            lock: self,
            shard,
            access: self.data.shared(),
            _marker: PhantomData,
        }
    }

    /// Exclusive access: every shard locked, lowest first (the one order all
    /// writers use, so two writers cannot deadlock).
    pub fn write(&self) -> WriteGuard<'_, R, T> {
        for s in self.all() {
            s.lock_exclusive();
        }
        WriteGuard {
            lock: self,
            access: self.data.exclusive(),
            _marker: PhantomData,
        }
    }

    /// The data, through exclusive ownership of the lock.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

/// Shared access to the data of a [`ShardedRwLock`]; unlocks its shard when
/// dropped.
pub struct ReadGuard<'a, R: RawRwLock, T> {
    lock: &'a ShardedRwLock<R, T>,
    shard: &'a R,
    /// The access to the data this guard makes (empty but under loom).
    access: SharedAccess<T>,
    /// Not `Send` when the raw lock must be unlocked where it was locked.
    _marker: PhantomData<R::GuardMarker>,
}

impl<R: RawRwLock, T> Deref for ReadGuard<'_, R, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard holds a shard for reading, so no writer (who
        // needs every shard exclusively) holds the data mutably; `access`
        // was started on this lock's data and lasts until the drop.
        unsafe { self.lock.data.get(&self.access) }
    }
}

impl<R: RawRwLock, T> Drop for ReadGuard<'_, R, T> {
    fn drop(&mut self) {
        self.access.finish();
        // SAFETY: `read` locked this shard shared, and only this guard
        // unlocks it, once.
        unsafe { self.shard.unlock_shared() };
    }
}

/// Exclusive access to the data of a [`ShardedRwLock`]; unlocks every
/// shard when dropped.
pub struct WriteGuard<'a, R: RawRwLock, T> {
    lock: &'a ShardedRwLock<R, T>,
    /// The access to the data this guard makes (empty but under loom).
    access: ExclusiveAccess<T>,
    /// As for [`ReadGuard`].
    _marker: PhantomData<R::GuardMarker>,
}

impl<R: RawRwLock, T> Deref for WriteGuard<'_, R, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard holds every shard exclusively: no reader and no
        // other writer can reach the data; `access` was started on this
        // lock's data and lasts until the drop.
        unsafe { self.lock.data.get_excl(&self.access) }
    }
}

impl<R: RawRwLock, T> DerefMut for WriteGuard<'_, R, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference
        // handed out by the guard.
        unsafe { self.lock.data.get_excl_mut(&mut self.access) }
    }
}

impl<R: RawRwLock, T> Drop for WriteGuard<'_, R, T> {
    fn drop(&mut self) {
        self.access.finish();
        for s in self.lock.all().rev() {
            // SAFETY: `write` locked every shard exclusively, and only this
            // guard unlocks them, once.
            unsafe { s.unlock_exclusive() };
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::thread;

    type Lock = spin::RwLock<()>;

    #[test]
    fn readers_on_different_shards_share_and_a_writer_excludes_all() {
        let lock = ShardedRwLock::<Lock, u64>::new(7, 4);
        assert_eq!(lock.shards(), 4);
        let a = lock.read(Some(0));
        let b = lock.read(Some(5)); // shard 1 (5 mod 4)
        let c = lock.read(None); // shard 0, shared with `a`
        assert_eq!(*a + *b + *c, 21);
        // The read shards refuse a writer; the others are untouched.
        assert!(!lock.shard(0).try_lock_exclusive());
        assert!(!lock.shard(1).try_lock_exclusive());
        assert!(lock.shard(2).try_lock_exclusive());
        // SAFETY: (test) locked just above, by this thread.
        unsafe { lock.shard(2).unlock_exclusive() };
        drop((a, b, c));
        {
            let mut w = lock.write();
            *w += 1;
            for s in lock.all() {
                assert!(!s.try_lock_shared(), "a shard readable under a writer");
            }
        }
        assert_eq!(*lock.read(Some(3)), 8);
        // Every shard was unlocked: a second writer gets in.
        *lock.write() += 1;
        assert_eq!(*lock.read(Some(1)), 9);
    }

    #[test]
    fn zero_shards_means_one_and_counts_round_up_to_powers_of_two() {
        assert_eq!(ShardedRwLock::<Lock, u8>::new(1, 3).shards(), 4);
        assert_eq!(ShardedRwLock::<Lock, u8>::new(1, 16).shards(), 16);
        let mut lock = ShardedRwLock::<Lock, u8>::new(1, 0);
        assert_eq!(lock.shards(), 1);
        *lock.get_mut() = 2;
        assert_eq!(*lock.read(Some(9)), 2);
    }

    /// Writers keep a pair of counters equal; readers on every shard must
    /// never see them differ, and no increment may be lost.
    #[test]
    fn readers_never_see_a_half_done_write() {
        let lock = ShardedRwLock::<Lock, (u64, u64)>::new((0, 0), 3);
        let stop = AtomicBool::new(false);
        let reads = AtomicUsize::new(0);
        // Miri explores interleavings slowly: a few hundred writes do there.
        let rounds = if cfg!(miri) { 100 } else { 20_000 };
        thread::scope(|s| {
            for cpu in 0..3 {
                let (lock, stop, reads) = (&lock, &stop, &reads);
                s.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let g = lock.read(Some(cpu));
                        assert_eq!(g.0, g.1, "torn read on shard {cpu}");
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            let writers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        for _ in 0..rounds {
                            let mut g = lock.write();
                            g.0 += 1;
                            core::hint::spin_loop();
                            g.1 += 1;
                        }
                    })
                })
                .collect();
            for w in writers {
                w.join().unwrap();
            }
            stop.store(true, Ordering::Relaxed);
        });
        assert_eq!(*lock.read(None), (2 * rounds, 2 * rounds));
        assert!(reads.load(Ordering::Relaxed) > 0);
    }

    /// A raw lock whose guards must be released on the thread that took
    /// them (`GuardNoSend`, as `parking_lot::RawRwLock`, a kernel's or a
    /// hosted machine's choice).
    struct NoSendRaw(AtomicUsize);

    // SAFETY: (test) a plain counting reader-writer spinlock.
    unsafe impl RawRwLock for NoSendRaw {
        #[allow(clippy::declare_interior_mutable_const)]
        const INIT: Self = NoSendRaw(AtomicUsize::new(0));
        type GuardMarker = lock_api::GuardNoSend;
        fn lock_shared(&self) {
            while !self.try_lock_shared() {}
        }
        fn try_lock_shared(&self) -> bool {
            let s = self.0.load(Ordering::Relaxed);
            s != usize::MAX
                && self
                    .0
                    .compare_exchange(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
        }
        unsafe fn unlock_shared(&self) {
            self.0.fetch_sub(1, Ordering::Release);
        }
        fn lock_exclusive(&self) {
            while !self.try_lock_exclusive() {}
        }
        fn try_lock_exclusive(&self) -> bool {
            self.0
                .compare_exchange(0, usize::MAX, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        }
        unsafe fn unlock_exclusive(&self) {
            self.0.store(0, Ordering::Release);
        }
    }

    /// `Probe::<T>::new().is_send()` is true exactly when `T: Send`
    /// (the inherent method applies only then; else the trait's does).
    struct Probe<T>(core::marker::PhantomData<T>);
    trait Fallback {
        fn is_send(&self) -> bool {
            false
        }
    }
    impl<T> Fallback for Probe<T> {}
    // Only ever chosen for a `Send` type, and every probed guard is `!Send`
    // when the test passes.
    #[allow(dead_code)]
    impl<T: Send> Probe<T> {
        fn is_send(&self) -> bool {
            true
        }
    }

    #[test]
    fn guards_are_not_send_when_the_raw_lock_forbids_it() {
        // lock_api honours the marker:
        let lock_api_read =
            Probe::<lock_api::RwLockReadGuard<'static, NoSendRaw, u8>>(core::marker::PhantomData)
                .is_send();
        assert!(!lock_api_read, "probe broken");
        // ... the sharded lock's guards must as well (the raw lock's
        // unlock_* may only run in the context that locked it).
        let ours_read =
            Probe::<ReadGuard<'static, NoSendRaw, u8>>(core::marker::PhantomData).is_send();
        let ours_write =
            Probe::<WriteGuard<'static, NoSendRaw, u8>>(core::marker::PhantomData).is_send();
        assert!(
            !ours_read,
            "ReadGuard is Send although R::GuardMarker is GuardNoSend"
        );
        assert!(
            !ours_write,
            "WriteGuard is Send although R::GuardMarker is GuardNoSend"
        );
    }
}
