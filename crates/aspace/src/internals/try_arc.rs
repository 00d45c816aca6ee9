//! [`TryArc`]: a shared, reference-counted box whose creation reports a
//! refused heap allocation instead of aborting.
//!
//! `alloc::sync::Arc::new` aborts when the heap runs out, and stable Rust
//! has no fallible constructor for it. An operation that must either
//! succeed or change nothing (every area operation, creating or forking an
//! address space, loading an ELF image) makes its shared values with
//! [`TryArc::try_new`] or [`TryArc::try_new_with`] before it changes
//! anything, and answers `Error::NoMemory` if the heap refuses.
//!
//! The value may be unsized: a backend is kept as a
//! [`BackendRef`] (counted), made with
//! [`TryArc::try_backend`] or turned from a typed handle with
//! [`TryArc::into_backend`] (stable Rust cannot unsize a user-defined
//! smart pointer in general, but it can a raw pointer to a block whose
//! last field is the value, which is how these two work).
//!
//! Only what the core and its users need: creation, cloning, shared
//! access, identity, unique access while there is a single reference,
//! taking the value back from the last reference, and weak references to
//! sized values ([`TryWeak`]: a kernel's record of a task that may have
//! ended, a test's watch on a space it expects to go).

use alloc::alloc::{alloc, dealloc, Layout};
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ops::Deref;
use core::ptr::NonNull;
use core::sync::atomic::{fence, AtomicUsize, Ordering};

use crate::backend::{Backend, BackendRef};
use crate::memory::{FrameAllocator, PhysMemory};
use crate::Error;

/// The heap block: the count of references and the value. `repr(C)` with
/// the value last, so a block of a sized value is laid out as the same
/// block of the unsized type it coerces to.
#[repr(C)]
struct Inner<T: ?Sized> {
    /// Strong references ([`TryArc`]s); the value is dropped when it
    /// reaches zero.
    refs: AtomicUsize,
    /// Weak references ([`TryWeak`]s), plus one held by all the strong
    /// ones together; the block is freed when it reaches zero. `usize::MAX`
    /// while [`TryArc::get_mut`] checks for uniqueness (no weak reference
    /// can be made meanwhile).
    weak: AtomicUsize,
    value: T,
}

/// While `weak` holds this, no weak reference is made (see `get_mut`).
const LOCKED: usize = usize::MAX;

/// Counts beyond this stop the program before they could wrap (far beyond
/// any count a program can reach: every reference is at least a pointer).
const MAX_REFS: usize = isize::MAX as usize;

/// A shared reference to a `T` on the heap, freed with the last reference
/// (as `Arc<T>`), made by the fallible [`try_new`](Self::try_new).
pub struct TryArc<T: ?Sized> {
    ptr: NonNull<Inner<T>>,
    /// This handle owns a share of an `Inner<T>` (for the drop check).
    _owns: PhantomData<Inner<T>>,
}

// SAFETY: a `TryArc<T>` gives shared access to `T` from any thread that
// holds a handle, and the last handle to drop (on whichever thread) drops
// `T`: as for `Arc<T>`, that needs `T: Send + Sync`. The count is atomic.
unsafe impl<T: ?Sized + Send + Sync> Send for TryArc<T> {}
// SAFETY: as above: `&TryArc<T>` clones into a `TryArc<T>` on another
// thread.
unsafe impl<T: ?Sized + Send + Sync> Sync for TryArc<T> {}

/// A heap block for a `T`, holding none: taken before an operation
/// changes anything (fresh, or one [`TryArc::recycle`] handed back after
/// dropping its value), so that the value, made later, goes on the heap
/// without a refusal possible ([`fill`](Self::fill)). Freed without a
/// value to drop if dropped unfilled (a failed or panicking
/// [`TryArc::try_new_with`], an operation that did not need it).
pub struct Unwritten<T> {
    ptr: NonNull<Inner<T>>,
}

// SAFETY: the block holds no `T` (nothing shared, nothing to drop): only
// its memory, which may be freed on any thread.
unsafe impl<T> Send for Unwritten<T> {}
// SAFETY: `&Unwritten<T>` gives access to nothing.
unsafe impl<T> Sync for Unwritten<T> {}

impl<T> Unwritten<T> {
    /// A block for a `T`, or `None` if the heap refuses.
    pub fn try_new() -> Option<Self> {
        TryArc::alloc_block().map(|ptr| Unwritten { ptr })
    }

    /// Writes `value` into the block: the handle of its one reference.
    pub fn fill(self, value: T) -> TryArc<T> {
        let ptr = self.ptr;
        core::mem::forget(self);
        // SAFETY: a block from `alloc_block`, never written, owned by this
        // `Unwritten` alone (consumed, its drop skipped).
        unsafe { TryArc::fill(ptr, value) }
    }
}

impl<T> Drop for Unwritten<T> {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `alloc` with this layout and holds no
        // value yet (nothing to drop); nothing else refers to it.
        unsafe { dealloc(self.ptr.as_ptr().cast(), Layout::new::<Inner<T>>()) }
    }
}

/// The value of a [`TryArc`] whose only strong reference was given up
/// ([`TryArc::take_unique`]): owned here, in place on its block, which no
/// weak reference can reach the value through any more. Dropping it drops
/// the value; [`recycle`](Self::recycle) keeps the block too.
pub struct Unique<T> {
    ptr: NonNull<Inner<T>>,
}

// SAFETY: a `Unique<T>` owns its `T` as a `Box<T>` does (weak references
// reach only the counts): sending it sends the `T`.
unsafe impl<T: Send> Send for Unique<T> {}
// SAFETY: `&Unique<T>` gives only `&T`.
unsafe impl<T: Sync> Sync for Unique<T> {}

impl<T> Deref for Unique<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the value is initialised and reachable only through this
        // handle (the strong count is zero: no weak reference upgrades).
        unsafe { &(*self.ptr.as_ptr()).value }
    }
}

impl<T> core::ops::DerefMut for Unique<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `self` is borrowed mutably.
        unsafe { &mut (*self.ptr.as_ptr()).value }
    }
}

impl<T> Unique<T> {
    /// Drops the value and hands the block back for another value, if no
    /// weak reference is left (else the block goes with the last one).
    pub fn recycle(self) -> Option<Unwritten<T>> {
        let this = ManuallyDrop::new(self);
        let ptr = this.ptr;
        // SAFETY: the value is ours alone (see `deref`); it is dropped here
        // once, and never read again (`this`'s drop is skipped).
        unsafe { core::ptr::drop_in_place(core::ptr::addr_of_mut!((*ptr.as_ptr()).value)) };
        // SAFETY: the block stays allocated while we hold the strong
        // references' weak share; only the count is read.
        let weak = unsafe { &*core::ptr::addr_of!((*ptr.as_ptr()).weak) };
        // Acquire: a weak reference dropped on another thread is seen.
        if weak.load(Ordering::Acquire) == 1 {
            // Only the strong references' share: no weak reference exists,
            // and none can be made (that takes a strong one). The block is
            // ours alone, its value dropped.
            return Some(Unwritten { ptr });
        }
        // SAFETY: weak references remain; give up the strong references'
        // share (the value is dropped already).
        unsafe { release_weak(ptr, Layout::new::<Inner<T>>()) };
        None
    }
}

impl<T> Drop for Unique<T> {
    fn drop(&mut self) {
        // SAFETY: as in `recycle`: the value is ours alone and dropped
        // once; then the strong references' weak share goes.
        unsafe {
            core::ptr::drop_in_place(core::ptr::addr_of_mut!((*self.ptr.as_ptr()).value));
            release_weak(self.ptr, Layout::new::<Inner<T>>());
        }
    }
}

impl<T> TryArc<T> {
    /// Allocates an uninitialised block for a `T`, or `None` if the heap
    /// refuses.
    fn alloc_block() -> Option<NonNull<Inner<T>>> {
        let layout = Layout::new::<Inner<T>>();
        // SAFETY: `layout` has a non-zero size (it holds an `AtomicUsize`).
        NonNull::new(unsafe { alloc(layout) }.cast::<Inner<T>>())
    }

    /// A handle on `ptr`, a block just written with one reference.
    fn from_block(ptr: NonNull<Inner<T>>) -> Self {
        Self {
            ptr,
            _owns: PhantomData,
        }
    }

    /// Puts `value` on the heap with one reference; gives it back if the
    /// heap refuses the allocation.
    pub fn try_new(value: T) -> Result<Self, T> {
        let Some(ptr) = Self::alloc_block() else {
            return Err(value);
        };
        // SAFETY: a block just allocated, not yet initialised.
        Ok(unsafe { Self::fill(ptr, value) })
    }

    /// Writes `value` with one reference into the block `ptr` and makes
    /// it the handle.
    ///
    /// # Safety
    /// `ptr` comes from [`alloc_block`](Self::alloc_block) and is not yet
    /// initialised nor owned by anything else.
    unsafe fn fill(ptr: NonNull<Inner<T>>, value: T) -> Self {
        // SAFETY: by the caller, a fresh allocation of `Inner<T>`'s layout,
        // valid for writes.
        unsafe {
            ptr.as_ptr().write(Inner {
                refs: AtomicUsize::new(1),
                weak: AtomicUsize::new(1),
                value,
            })
        };
        Self::from_block(ptr)
    }

    /// Puts `value` on the heap with one reference, ending the program
    /// (`handle_alloc_error`) if the heap refuses, as `Arc::new` does: for
    /// setup code that has no way to report the refusal. Operations use
    /// [`try_new`](Self::try_new).
    pub fn new(value: T) -> Self {
        Self::try_new(value)
            .unwrap_or_else(|_| alloc::alloc::handle_alloc_error(Layout::new::<Inner<T>>()))
    }

    /// Allocates the block first and only then makes the value with
    /// `make`: for a value whose making changes the world (an address
    /// space registers itself and takes page-table frames), so that a
    /// refused heap is `NoMemory` before anything changed, and the value
    /// never has to be unmade. `make`'s error is passed on (the block
    /// freed).
    pub fn try_new_with(make: impl FnOnce() -> crate::Result<T>) -> crate::Result<Self> {
        let ptr = Self::alloc_block().ok_or(Error::NoMemory)?;
        // Frees the block if `make` fails or panics.
        let unwritten = Unwritten { ptr };
        let value = make()?;
        core::mem::forget(unwritten);
        // SAFETY: a block just allocated, not yet initialised.
        Ok(unsafe { Self::fill(ptr, value) })
    }

    /// The value, if `this` was its last reference (as
    /// `Arc::into_inner`): exactly one of several handles racing to give
    /// theirs back gets it.
    pub fn into_inner(this: Self) -> Option<T> {
        let this = ManuallyDrop::new(this);
        // Release/Acquire as in `drop`.
        if this.inner().refs.fetch_sub(1, Ordering::Release) != 1 {
            return None;
        }
        fence(Ordering::Acquire);
        // SAFETY: the last reference, as in `drop`: the value is moved out
        // (read once, never dropped in place).
        unsafe { Some(Self::take(this.ptr)) }
    }

    /// The value if `this` is its only reference, else `this` back (as
    /// `Arc::try_unwrap`).
    pub fn try_unwrap(this: Self) -> Result<T, Self> {
        // Acquire: see every use made through references dropped before.
        if this
            .inner()
            .refs
            .compare_exchange(1, 0, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(this);
        }
        let this = ManuallyDrop::new(this);
        // SAFETY: the count went from 1 (ours) to 0: nobody else can reach
        // the value (a weak reference no longer upgrades); it is moved out.
        unsafe { Ok(Self::take(this.ptr)) }
    }

    /// Moves the value out of the block and gives up the strong
    /// references' weak one (freeing the block if no weak one is left).
    ///
    /// # Safety
    ///
    /// The strong count has just reached zero here, and the block holds a
    /// value that is neither dropped nor moved out later.
    unsafe fn take(ptr: NonNull<Inner<T>>) -> T {
        // SAFETY: by the caller, no strong reference is left, so no one
        // else reads the value; the block stays allocated until the weak
        // count, which includes the strong references' one, drops below.
        unsafe {
            let value = core::ptr::addr_of!((*ptr.as_ptr()).value).read();
            release_weak(ptr, Layout::new::<Inner<T>>());
            value
        }
    }

    /// Drops the value and hands its block back for another value, if
    /// `this` was its only reference and no weak one exists (`None`, the
    /// reference dropped as usual, otherwise): a record given up and one
    /// made soon after share the allocation.
    pub fn recycle(this: Self) -> Option<Unwritten<T>> {
        Self::take_unique(this).ok()?.recycle()
    }

    /// The value, owned in place on its block, if `this` is its only
    /// strong reference (else `this` back): one atomic step, after which
    /// no weak reference can give out another (the strong count is zero),
    /// so the value is changed without a lock and dropped, or its block
    /// recycled, when the [`Unique`] goes.
    pub fn take_unique(this: Self) -> Result<Unique<T>, Self> {
        // Acquire, as `try_unwrap`: see every use made through references
        // dropped before.
        if this
            .inner()
            .refs
            .compare_exchange(1, 0, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(this);
        }
        let this = ManuallyDrop::new(this);
        Ok(Unique { ptr: this.ptr })
    }

    /// A weak reference to the value: it does not keep the value alive,
    /// and [`upgrade`](TryWeak::upgrade)s while some strong reference
    /// does. Allocates nothing.
    pub fn downgrade(this: &Self) -> TryWeak<T> {
        let weak = &this.inner().weak;
        let mut cur = weak.load(Ordering::Relaxed);
        loop {
            if cur == LOCKED {
                // `get_mut` on another handle is checking; it is brief.
                core::hint::spin_loop();
                cur = weak.load(Ordering::Relaxed);
                continue;
            }
            assert!(cur <= MAX_REFS, "TryArc: too many weak references");
            // Acquire: pairs with `get_mut`'s release of the lock.
            match weak.compare_exchange_weak(cur, cur + 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => {
                    return TryWeak {
                        ptr: this.ptr,
                        _owns: PhantomData,
                    }
                }
                Err(old) => cur = old,
            }
        }
    }

    /// This handle as a counted handle on the value as a backend trait
    /// object (the same block, the same count): what an area takes.
    pub fn into_backend<P, F>(this: Self) -> BackendRef<P, F>
    where
        P: PhysMemory,
        F: FrameAllocator,
        T: Backend<P, F> + 'static,
    {
        let this = ManuallyDrop::new(this);
        // The built-in unsizing coercion of a raw pointer: `Inner<T>` to
        // `Inner<dyn Backend>` (the value is the last field).
        let ptr: NonNull<Inner<dyn Backend<P, F>>> = this.ptr;
        BackendRef::counted(TryArc {
            ptr,
            _owns: PhantomData,
        })
    }
}

impl<P: PhysMemory, F: FrameAllocator> TryArc<dyn Backend<P, F>> {
    /// Puts `backend` on the heap as a counted backend trait object, or
    /// `NoMemory` if the heap refuses.
    pub fn try_backend<B: Backend<P, F> + 'static>(backend: B) -> crate::Result<BackendRef<P, F>> {
        TryArc::try_new(backend)
            .map(TryArc::into_backend)
            .map_err(|_| Error::NoMemory)
    }
}

impl<T: ?Sized> TryArc<T> {
    fn inner(&self) -> &Inner<T> {
        // SAFETY: while this handle lives, its reference keeps the block
        // allocated and initialised; only shared access is handed out.
        unsafe { self.ptr.as_ref() }
    }

    /// Whether `a` and `b` are the same value (the same allocation; for a
    /// trait object, whatever its vtable).
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        core::ptr::addr_eq(a.ptr.as_ptr(), b.ptr.as_ptr())
    }

    /// The address of the value: the same for every reference to it, and
    /// never another live value's (an identity to key by).
    pub fn as_ptr(this: &Self) -> *const T {
        &this.inner().value
    }

    /// The value, mutably, if `this` is its only reference (strong or
    /// weak).
    pub fn get_mut(this: &mut Self) -> Option<&mut T> {
        // Lock out new weak references while the strong count is read: a
        // weak one, if any, could otherwise be made by another strong
        // reference that then goes, and upgrade after (as `Arc` does).
        let inner = this.inner();
        if inner
            .weak
            .compare_exchange(1, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        // Acquire: see every use made through references dropped before.
        let unique = inner.refs.load(Ordering::Acquire) == 1;
        inner.weak.store(1, Ordering::Release);
        if unique {
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

impl<T: ?Sized> Clone for TryArc<T> {
    fn clone(&self) -> Self {
        // Relaxed: a new reference is made from an existing one, which
        // keeps the block alive (as `Arc` does).
        let old = self.inner().refs.fetch_add(1, Ordering::Relaxed);
        assert!(old <= MAX_REFS, "TryArc: too many references");
        Self {
            ptr: self.ptr,
            _owns: PhantomData,
        }
    }
}

impl<T: ?Sized> Deref for TryArc<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.inner().value
    }
}

impl<T: ?Sized> AsRef<T> for TryArc<T> {
    fn as_ref(&self) -> &T {
        self
    }
}

impl<T: ?Sized> Drop for TryArc<T> {
    fn drop(&mut self) {
        // Release: our uses of the value happen before whoever frees it.
        if self.inner().refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        // Acquire: every other reference's uses happen before the free.
        fence(Ordering::Acquire);
        // The block's layout, from the value's type (for a trait object,
        // its vtable), taken while the value is still there.
        let layout = Layout::for_value(self.inner());
        // SAFETY: this was the last strong reference: nobody else can
        // reach the value (a weak reference no longer upgrades). It is
        // initialised and dropped once here; the block was allocated with
        // this layout (a sized block coerced to an unsized one keeps it)
        // and is freed when the last weak reference goes.
        unsafe {
            core::ptr::drop_in_place(core::ptr::addr_of_mut!((*self.ptr.as_ptr()).value));
            release_weak(self.ptr, layout);
        }
    }
}

impl<T: ?Sized + core::fmt::Debug> core::fmt::Debug for TryArc<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(&**self, f)
    }
}

/// Gives up one weak reference to the block at `ptr` (of `layout`), and
/// frees the block if it was the last.
///
/// # Safety
///
/// The caller holds that weak reference (a [`TryWeak`], or the strong
/// references' one once the value is gone), and `layout` is the block's.
unsafe fn release_weak<T: ?Sized>(ptr: NonNull<Inner<T>>, layout: Layout) {
    // SAFETY: by the caller, our weak reference keeps the block allocated
    // until the count drops; only the count is touched (through a raw
    // pointer: the value may be gone).
    let weak = unsafe { &*core::ptr::addr_of!((*ptr.as_ptr()).weak) };
    // Release/Acquire: every use of the block happens before its free.
    if weak.fetch_sub(1, Ordering::Release) == 1 {
        fence(Ordering::Acquire);
        // SAFETY: the last reference of any kind: nobody can reach the
        // block; the value was dropped or moved out already.
        unsafe { dealloc(ptr.as_ptr().cast(), layout) }
    }
}

/// A weak reference to a value of a [`TryArc`] (as `sync::Weak`), made by
/// [`TryArc::downgrade`]: it keeps the block, not the value, and gives a
/// strong reference back while the value lives.
pub struct TryWeak<T> {
    ptr: NonNull<Inner<T>>,
    /// This handle owns a weak share of an `Inner<T>`.
    _owns: PhantomData<Inner<T>>,
}

// SAFETY: as for `TryArc`: a weak reference upgrades into a strong one on
// any thread.
unsafe impl<T: Send + Sync> Send for TryWeak<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for TryWeak<T> {}

impl<T> TryWeak<T> {
    fn weak_count(&self) -> &AtomicUsize {
        // SAFETY: this weak reference keeps the block allocated; only the
        // count is borrowed (the value may be gone).
        unsafe { &*core::ptr::addr_of!((*self.ptr.as_ptr()).weak) }
    }

    fn strong(&self) -> &AtomicUsize {
        // SAFETY: as in `weak_count`.
        unsafe { &*core::ptr::addr_of!((*self.ptr.as_ptr()).refs) }
    }

    /// A strong reference to the value, if it still lives.
    pub fn upgrade(&self) -> Option<TryArc<T>> {
        let refs = self.strong();
        let mut n = refs.load(Ordering::Relaxed);
        loop {
            if n == 0 {
                return None;
            }
            assert!(n <= MAX_REFS, "TryArc: too many references");
            // Acquire: see what the strong references did before.
            match refs.compare_exchange_weak(n, n + 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => {
                    return Some(TryArc {
                        ptr: self.ptr,
                        _owns: PhantomData,
                    })
                }
                Err(old) => n = old,
            }
        }
    }

    /// How many strong references keep the value alive now (0: it is
    /// gone).
    pub fn strong_count(&self) -> usize {
        self.strong().load(Ordering::Acquire)
    }

    /// The address the value has (or had): [`TryArc::as_ptr`] of its
    /// strong references, to compare with. Never dereference it after the
    /// value is gone.
    pub fn as_ptr(&self) -> *const T {
        // SAFETY: only an address is computed; the block is allocated.
        unsafe { core::ptr::addr_of!((*self.ptr.as_ptr()).value) }
    }
}

impl<T> Clone for TryWeak<T> {
    fn clone(&self) -> Self {
        let old = self.weak_count().fetch_add(1, Ordering::Relaxed);
        assert!(old <= MAX_REFS, "TryArc: too many weak references");
        Self {
            ptr: self.ptr,
            _owns: PhantomData,
        }
    }
}

impl<T> Drop for TryWeak<T> {
    fn drop(&mut self) {
        // SAFETY: this is a weak reference to a block of `Inner<T>`.
        unsafe { release_weak(self.ptr, Layout::new::<Inner<T>>()) }
    }
}
