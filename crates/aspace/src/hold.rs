//! Holding an address space while the kernel works on it (HelenOS
//! `as_hold` / `as_release`).
//!
//! HelenOS counts holders of an `as_t` by hand and destroys the space when
//! the count drops to zero. Here an address space lives in an
//! [`SpaceRef`] and is torn down (every area unmapped, every
//! frame released after its shootdown, the ASID returned) when the last
//! handle goes, so a hold *is* a strong reference. [`SpaceHold`] names it:
//! code that must keep a space alive while it works on it (IPC into
//! another task, copying to a task that may be exiting) takes a hold, and
//! the space cannot be destroyed underneath it. When the task drops its
//! own handle meanwhile, teardown waits for the last hold's release.

use core::ops::Deref;

use crate::internals::try_arc::TryArc;
use crate::machine::Machine;
use crate::space::{AddressSpace, SpaceRef};

/// A hold on an address space: while it exists the space is not destroyed
/// (HelenOS `as_hold`). Dropping it, or [`release`](Self::release), is
/// `as_release`; the last release of a space whose other handles are gone
/// destroys it.
#[must_use = "a hold keeps the address space alive only while it exists"]
pub struct SpaceHold<M: Machine> {
    space: SpaceRef<M>,
}

impl<M: Machine> SpaceHold<M> {
    /// Takes a hold on `space`.
    pub fn new(space: &SpaceRef<M>) -> Self {
        Self {
            space: TryArc::clone(space),
        }
    }

    /// Gives the hold back (HelenOS `as_release`). Returns `true` when this
    /// was the last reference, so the space has just been destroyed.
    pub fn release(self) -> bool {
        TryArc::into_inner(self.space).is_some()
    }

    /// How many references (handles and holds together) keep the space
    /// alive now.
    pub fn holders(&self) -> usize {
        TryArc::refs(&self.space)
    }
}

impl<M: Machine> Clone for SpaceHold<M> {
    fn clone(&self) -> Self {
        Self::new(&self.space)
    }
}

impl<M: Machine> Deref for SpaceHold<M> {
    type Target = AddressSpace<M>;
    fn deref(&self) -> &AddressSpace<M> {
        &self.space
    }
}
