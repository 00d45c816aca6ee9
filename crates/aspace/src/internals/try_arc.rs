//! [`TryArc`]: a shared, reference-counted box whose creation reports a
//! refused heap allocation instead of aborting.
//!
//! `alloc::sync::Arc::new` aborts when the heap runs out, and stable Rust
//! has no fallible constructor for it. An operation that must either
//! succeed or change nothing (every area operation) makes its areas with
//! [`TryArc::try_new`] before it changes anything, and answers
//! `Error::NoMemory` if the heap refuses.
//!
//! Only what the core needs: creation, cloning, shared access, identity,
//! and unique access while there is a single reference. No weak
//! references, no unsized values.

use alloc::alloc::{alloc, dealloc, Layout};
use core::marker::PhantomData;
use core::ops::Deref;
use core::ptr::NonNull;
use core::sync::atomic::{fence, AtomicUsize, Ordering};

/// The heap block: the count of references and the value.
struct Inner<T> {
    refs: AtomicUsize,
    value: T,
}

/// A shared reference to a `T` on the heap, freed with the last reference
/// (as `Arc<T>`), made by the fallible [`try_new`](Self::try_new).
pub struct TryArc<T> {
    ptr: NonNull<Inner<T>>,
    /// This handle owns a share of an `Inner<T>` (for the drop check).
    _owns: PhantomData<Inner<T>>,
}

// SAFETY: a `TryArc<T>` gives shared access to `T` from any thread that
// holds a handle, and the last handle to drop (on whichever thread) drops
// `T`: as for `Arc<T>`, that needs `T: Send + Sync`. The count is atomic.
unsafe impl<T: Send + Sync> Send for TryArc<T> {}
// SAFETY: as above: `&TryArc<T>` clones into a `TryArc<T>` on another
// thread.
unsafe impl<T: Send + Sync> Sync for TryArc<T> {}

impl<T> TryArc<T> {
    /// Puts `value` on the heap with one reference; gives it back if the
    /// heap refuses the allocation.
    pub fn try_new(value: T) -> Result<Self, T> {
        let layout = Layout::new::<Inner<T>>();
        // SAFETY: `layout` has a non-zero size (it holds an `AtomicUsize`).
        let raw = unsafe { alloc(layout) }.cast::<Inner<T>>();
        let Some(ptr) = NonNull::new(raw) else {
            return Err(value);
        };
        // SAFETY: `ptr` is a fresh allocation of `Inner<T>`'s layout,
        // valid for writes and not yet initialised.
        unsafe {
            ptr.as_ptr().write(Inner {
                refs: AtomicUsize::new(1),
                value,
            })
        };
        Ok(Self {
            ptr,
            _owns: PhantomData,
        })
    }

    fn inner(&self) -> &Inner<T> {
        // SAFETY: while this handle lives, its reference keeps the block
        // allocated and initialised; only shared access is handed out.
        unsafe { self.ptr.as_ref() }
    }

    /// Whether `a` and `b` are the same value (the same allocation).
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        a.ptr == b.ptr
    }

    /// The address of the value: the same for every reference to it, and
    /// never another live value's (an identity to key by).
    pub fn as_ptr(this: &Self) -> *const T {
        &this.inner().value
    }

    /// The value, mutably, if `this` is its only reference.
    pub fn get_mut(this: &mut Self) -> Option<&mut T> {
        // Acquire: see every use made through references dropped before.
        if this.inner().refs.load(Ordering::Acquire) == 1 {
            // SAFETY: the only reference is `this`, borrowed mutably, so
            // no other access to the block can happen meanwhile.
            Some(unsafe { &mut this.ptr.as_mut().value })
        } else {
            None
        }
    }

    /// How many references there are now.
    pub fn refs(this: &Self) -> usize {
        this.inner().refs.load(Ordering::Acquire)
    }
}

impl<T> Clone for TryArc<T> {
    fn clone(&self) -> Self {
        // Relaxed: a new reference is made from an existing one, which
        // keeps the block alive (as `Arc` does).
        let old = self.inner().refs.fetch_add(1, Ordering::Relaxed);
        // Far beyond any count a program can reach (every reference is at
        // least a pointer in memory); stop before the count could wrap.
        assert!(old <= isize::MAX as usize, "TryArc: too many references");
        Self {
            ptr: self.ptr,
            _owns: PhantomData,
        }
    }
}

impl<T> Deref for TryArc<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.inner().value
    }
}

impl<T> Drop for TryArc<T> {
    fn drop(&mut self) {
        // Release: our uses of the value happen before whoever frees it.
        if self.inner().refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        // Acquire: every other reference's uses happen before the free.
        fence(Ordering::Acquire);
        // SAFETY: this was the last reference: nobody else can reach the
        // block. It was allocated by `try_new` with this layout and holds
        // an initialised `Inner<T>`, dropped once here, then freed.
        unsafe {
            core::ptr::drop_in_place(self.ptr.as_ptr());
            dealloc(self.ptr.as_ptr().cast(), Layout::new::<Inner<T>>());
        }
    }
}

impl<T: core::fmt::Debug> core::fmt::Debug for TryArc<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(&**self, f)
    }
}
