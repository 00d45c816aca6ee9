//! The synchronisation primitives of the concurrency core, from one place:
//! `core`'s in every normal build, [loom]'s when the crate is built with
//! `RUSTFLAGS="--cfg loom"` for the schedule explorer (`tests/loom.rs`),
//! which then sees every access to them and tries the interleavings that
//! matter.
//!
//! The modules that use them (the sharded reader-writer lock, the fault
//! path's `Preparing` counters, the areas' summaries and the statistics
//! counters) import from here instead of `core`; in a normal build the
//! items are `core`'s own or zero-cost wrappers that inline away, so
//! nothing changes there but the import path.
//!
//! Under loom these types work only inside `loom::model`: a loom build of
//! the crate is for the explorer alone.
//!
//! [loom]: https://docs.rs/loom

pub(crate) mod atomic {
    #[cfg(not(loom))]
    pub(crate) use core::sync::atomic::{AtomicU64, Ordering};
    #[cfg(loom)]
    pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
}

pub(crate) mod hint {
    #[cfg(not(loom))]
    pub(crate) use core::hint::spin_loop;
    /// Under loom a spin-loop hint yields to the other modelled threads,
    /// which is what lets the explorer get past a waiting loop.
    #[cfg(loom)]
    pub(crate) use loom::hint::spin_loop;
}

/// `UnsafeCell` with its accesses spelled out: an access starts with
/// [`UnsafeCell::shared`] or [`UnsafeCell::exclusive`], lasts as long as
/// the token returned, and ends with the token's `finish` (or its drop).
/// In a normal build the tokens are empty and every method is the plain
/// pointer dereference; under loom each token is loom's tracked pointer,
/// so a shared access that overlaps an exclusive one, or two exclusive
/// ones, is reported as a data race with the schedule that caused it.
pub(crate) mod cell {
    use core::marker::PhantomData;

    /// A cell whose contents are reached through access tokens (see the
    /// [module documentation](self)).
    pub(crate) struct UnsafeCell<T> {
        #[cfg(not(loom))]
        inner: core::cell::UnsafeCell<T>,
        #[cfg(loom)]
        inner: loom::cell::UnsafeCell<T>,
    }

    /// A shared access to an [`UnsafeCell`] in progress.
    pub(crate) struct SharedAccess<T> {
        #[cfg(loom)]
        ptr: Option<loom::cell::ConstPtr<T>>,
        _marker: PhantomData<fn() -> T>,
    }

    /// An exclusive access to an [`UnsafeCell`] in progress.
    pub(crate) struct ExclusiveAccess<T> {
        #[cfg(loom)]
        ptr: Option<loom::cell::MutPtr<T>>,
        _marker: PhantomData<fn() -> T>,
    }

    impl<T> UnsafeCell<T> {
        /// A cell holding `value`.
        #[inline]
        pub(crate) fn new(value: T) -> Self {
            Self {
                #[cfg(not(loom))]
                inner: core::cell::UnsafeCell::new(value),
                #[cfg(loom)]
                inner: loom::cell::UnsafeCell::new(value),
            }
        }

        /// The contents, through exclusive ownership of the cell.
        #[inline]
        pub(crate) fn get_mut(&mut self) -> &mut T {
            #[cfg(not(loom))]
            {
                self.inner.get_mut()
            }
            #[cfg(loom)]
            {
                // SAFETY: `&mut self` excludes every other access for as
                // long as the returned reference lives.
                self.inner.with_mut(|p| unsafe { &mut *p })
            }
        }

        /// Starts a shared access. The caller must make sure no exclusive
        /// access overlaps it (under loom, one that does is reported).
        #[inline]
        pub(crate) fn shared(&self) -> SharedAccess<T> {
            SharedAccess {
                #[cfg(loom)]
                ptr: Some(self.inner.get()),
                _marker: PhantomData,
            }
        }

        /// Starts an exclusive access. The caller must make sure no other
        /// access overlaps it (under loom, one that does is reported).
        #[inline]
        pub(crate) fn exclusive(&self) -> ExclusiveAccess<T> {
            ExclusiveAccess {
                #[cfg(loom)]
                ptr: Some(self.inner.get_mut()),
                _marker: PhantomData,
            }
        }

        /// The contents, for as long as `access` lasts.
        ///
        /// # Safety
        ///
        /// `access` was started on this cell, has not finished, and no
        /// exclusive access overlaps it.
        #[inline]
        pub(crate) unsafe fn get<'a>(&'a self, access: &'a SharedAccess<T>) -> &'a T {
            #[cfg(not(loom))]
            {
                let _ = access;
                // SAFETY: the caller promises no exclusive access overlaps.
                unsafe { &*self.inner.get() }
            }
            #[cfg(loom)]
            {
                let ptr = access.ptr.as_ref().expect("access finished");
                // SAFETY: as above; loom checks it.
                unsafe { ptr.deref() }
            }
        }

        /// The contents, read through an exclusive access, for as long as
        /// the borrow of `access` lasts.
        ///
        /// # Safety
        ///
        /// `access` was started on this cell, has not finished, and no
        /// other access overlaps it.
        #[inline]
        pub(crate) unsafe fn get_excl<'a>(&'a self, access: &'a ExclusiveAccess<T>) -> &'a T {
            #[cfg(not(loom))]
            {
                let _ = access;
                // SAFETY: the caller promises no other access overlaps.
                unsafe { &*self.inner.get() }
            }
            #[cfg(loom)]
            {
                let ptr = access.ptr.as_ref().expect("access finished");
                // SAFETY: as above; loom checks it.
                unsafe { &*ptr.deref() }
            }
        }

        /// The contents, mutably, for as long as the borrow of `access`
        /// lasts.
        ///
        /// # Safety
        ///
        /// `access` was started on this cell, has not finished, and no
        /// other access overlaps it.
        #[inline]
        pub(crate) unsafe fn get_excl_mut<'a>(
            &'a self,
            access: &'a mut ExclusiveAccess<T>,
        ) -> &'a mut T {
            #[cfg(not(loom))]
            {
                let _ = access;
                // SAFETY: the caller promises no other access overlaps, and
                // the `&mut` borrow of `access` makes this the only
                // reference handed out through it.
                unsafe { &mut *self.inner.get() }
            }
            #[cfg(loom)]
            {
                let ptr = access.ptr.as_ref().expect("access finished");
                // SAFETY: as above; loom checks it.
                unsafe { ptr.deref() }
            }
        }
    }

    impl<T> SharedAccess<T> {
        /// Ends the access (before the lock that protected it is released).
        #[inline]
        pub(crate) fn finish(&mut self) {
            #[cfg(loom)]
            {
                self.ptr = None;
            }
        }
    }

    impl<T> ExclusiveAccess<T> {
        /// Ends the access (before the lock that protected it is released).
        #[inline]
        pub(crate) fn finish(&mut self) {
            #[cfg(loom)]
            {
                self.ptr = None;
            }
        }
    }
}
