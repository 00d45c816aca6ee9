//! [`BackendRef`]: the handle on a backend that an area holds, counted or
//! not.
//!
//! A backend with state of its own (an ELF image, a device range, a file
//! object) lives on the heap and is counted, as any shared value. A
//! stateless one (anonymous memory, guard pages) has nothing to count: a
//! handle on it is a `'static` reference, and cloning or dropping one is
//! a copy, not an atomic step. Every split of an area clones its handle
//! and every merge drops one, so an `mprotect` of an area's middle and
//! back saves four atomic read-modify-writes on a shared counter.

use alloc::boxed::Box;
use core::any::TypeId;
use core::ops::Deref;

use super::Backend;
use crate::internals::try_arc::TryArc;
use crate::memory::{FrameAllocator, PhysMemory};

/// A handle on a backend, as an area holds it: made fallibly (a refused
/// heap is `NoMemory`, never an abort) with
/// [`TryArc::try_backend`](crate::TryArc::try_backend), from a typed
/// handle with [`TryArc::into_backend`](crate::TryArc::into_backend), or
/// without the heap for a stateless backend with
/// [`stateless`](Self::stateless).
pub struct BackendRef<P: PhysMemory + 'static, F: FrameAllocator + 'static>(Held<P, F>);

enum Held<P: PhysMemory + 'static, F: FrameAllocator + 'static> {
    /// A backend on the heap, freed with its last handle.
    Counted(TryArc<dyn Backend<P, F>>),
    /// A backend that lives as long as the program: nothing to count.
    /// Its type, when it is a zero-sized one: every zero-sized value has
    /// the same address, so the type is what tells two of them apart.
    Static(&'static dyn Backend<P, F>, Option<TypeId>),
}

impl<P: PhysMemory + 'static, F: FrameAllocator + 'static> BackendRef<P, F> {
    /// A handle on a zero-sized backend, which needs no memory and no
    /// count: made without the heap, cloned and dropped as a copy. (A
    /// backend with a size does not compile here; its `Drop`, if it has
    /// one, never runs.)
    pub fn stateless<B: Backend<P, F> + 'static>(backend: B) -> Self {
        const {
            assert!(
                core::mem::size_of::<B>() == 0,
                "a stateless backend is zero-sized"
            )
        };
        // A box of a zero-sized value allocates nothing, so leaking it
        // keeps nothing.
        Self(Held::Static(
            Box::leak(Box::new(backend)),
            Some(TypeId::of::<B>()),
        ))
    }

    /// A handle on a backend that lives as long as the program (a
    /// `static`, or one leaked on purpose): not counted. (A zero-sized one
    /// is better made with [`stateless`](Self::stateless), which knows its
    /// type: two handles made here on zero-sized statics are never the
    /// same backend to [`ptr_eq`](Self::ptr_eq).)
    pub fn of_static(backend: &'static dyn Backend<P, F>) -> Self {
        Self(Held::Static(backend, None))
    }

    /// A handle on a counted backend (what
    /// [`TryArc::into_backend`](crate::TryArc::into_backend) and
    /// [`TryArc::try_backend`](crate::TryArc::try_backend) make).
    pub fn counted(backend: TryArc<dyn Backend<P, F>>) -> Self {
        Self(Held::Counted(backend))
    }

    /// The counted handle inside, if this is one (its count, its unique
    /// access).
    pub fn as_counted(&self) -> Option<&TryArc<dyn Backend<P, F>>> {
        match &self.0 {
            Held::Counted(arc) => Some(arc),
            Held::Static(..) => None,
        }
    }

    /// As [`as_counted`](Self::as_counted), mutably.
    pub fn as_counted_mut(&mut self) -> Option<&mut TryArc<dyn Backend<P, F>>> {
        match &mut self.0 {
            Held::Counted(arc) => Some(arc),
            Held::Static(..) => None,
        }
    }

    /// Whether this is a handle on a zero-sized backend, made with
    /// [`stateless`](Self::stateless) or [`of_static`](Self::of_static):
    /// what such a backend says of itself (its default
    /// [`object_id`](Backend::object_id), an address every zero-sized
    /// value shares) does not tell it from another one.
    pub fn is_stateless(&self) -> bool {
        match self.0 {
            Held::Static(_, Some(_)) => true,
            Held::Static(b, None) => core::mem::size_of_val(b) == 0,
            Held::Counted(_) => false,
        }
    }

    /// Whether `a` and `b` are handles on the same backend value: the same
    /// counted block, the same static, or two stateless backends of one
    /// type (zero-sized values of different types share an address, and
    /// what they say of themselves, their default
    /// [`object_id`](Backend::object_id) being that address, may agree).
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        match (&a.0, &b.0) {
            (Held::Counted(x), Held::Counted(y)) => TryArc::ptr_eq(x, y),
            (Held::Static(_, Some(x)), Held::Static(_, Some(y))) => x == y,
            // A zero-sized static may share its address with another one.
            (Held::Static(x, None), Held::Static(y, None)) => {
                core::ptr::addr_eq(*x, *y) && core::mem::size_of_val(*x) > 0
            }
            _ => false,
        }
    }
}

impl<P: PhysMemory + 'static, F: FrameAllocator + 'static> Clone for BackendRef<P, F> {
    #[inline]
    fn clone(&self) -> Self {
        match &self.0 {
            Held::Counted(arc) => Self(Held::Counted(arc.clone())),
            &Held::Static(b, ty) => Self(Held::Static(b, ty)),
        }
    }
}

impl<P: PhysMemory + 'static, F: FrameAllocator + 'static> Deref for BackendRef<P, F> {
    type Target = dyn Backend<P, F>;

    #[inline]
    fn deref(&self) -> &Self::Target {
        match &self.0 {
            Held::Counted(arc) => &**arc,
            Held::Static(b, _) => *b,
        }
    }
}

impl<P: PhysMemory + 'static, F: FrameAllocator + 'static> From<TryArc<dyn Backend<P, F>>>
    for BackendRef<P, F>
{
    fn from(backend: TryArc<dyn Backend<P, F>>) -> Self {
        Self::counted(backend)
    }
}
