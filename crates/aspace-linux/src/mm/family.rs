//! The address spaces of processes that `fork` made from one another. They
//! share the objects behind their shared and file mappings, so a hole
//! punched in an object through one of them (`MADV_REMOVE`) must take the
//! object's frames out of the others' mappings too, as Linux's
//! `unmap_mapping_range` does over every mapping of a file.

use alloc::vec::Vec;
use aspace::{AddressSpace, Frame, Machine, SpaceRef, TryArc, TryWeak};

/// The members' spaces, held weakly: a process that ended is skipped, and
/// its entry goes at the next `fork`. Locked with the machine's own lock
/// (held across other spaces' TLB shootdowns: a kernel's lock serves them
/// while it waits, a plain spinning one would not).
pub(crate) struct Family<M: Machine> {
    spaces: lock_api::Mutex<M::Lock, Vec<TryWeak<AddressSpace<M>>>>,
}

impl<M: Machine> Family<M> {
    /// A family of `space` alone; `None` if the heap refuses.
    pub(crate) fn of(space: &SpaceRef<M>) -> Option<TryArc<Self>> {
        let mut spaces = Vec::new();
        spaces.try_reserve_exact(2).ok()?;
        spaces.push(TryArc::downgrade(space));
        TryArc::try_new(Family {
            spaces: lock_api::Mutex::new(spaces),
        })
        .ok()
    }

    /// Runs `fork`, which makes a child's space, with the family locked,
    /// and adds the child: a hole another member punches meanwhile waits
    /// for it, so it reaches the child too (the fork may copy a page the
    /// hole takes out), or comes first, before the fork copies anything.
    /// `None` if the heap refuses room for the child (nothing forked).
    pub(crate) fn fork<E>(
        &self,
        fork: impl FnOnce() -> Result<SpaceRef<M>, E>,
    ) -> Option<Result<SpaceRef<M>, E>> {
        let mut spaces = self.spaces.lock();
        spaces.retain(|w| w.strong_count() > 0);
        spaces.try_reserve(1).ok()?;
        let made = fork();
        if let Ok(space) = &made {
            spaces.push(TryArc::downgrade(space));
        }
        Some(made)
    }

    /// Takes the pages whose frame is one of `frames` (ascending) out of
    /// every member's areas that show one of `objects` (their backends'
    /// object ids), `own` excepted: the frames a hole took out of those
    /// objects, which the caller keeps a reference on meanwhile (so none
    /// is another page's by now). Each member's areas are found and
    /// discarded in one step of its space, so a mapping it moves or cuts
    /// meanwhile is found where it is. A member with an area of the objects
    /// being set up (partial) is tried again; best effort past that, or
    /// when its heap refuses room: that member keeps those pages, no longer
    /// shared with the object. Runs with the family's lock held, which is
    /// never taken with a space's lock held.
    pub(crate) fn drop_frames(&self, own: &SpaceRef<M>, objects: &[usize], frames: &[Frame]) {
        /// Tries per member while one of its areas is partial (a state that
        /// lasts one call of another thread's).
        const TRIES: usize = 1000;
        if frames.is_empty() {
            return;
        }
        let spaces = self.spaces.lock();
        for space in spaces.iter().filter_map(TryWeak::upgrade) {
            if TryArc::ptr_eq(&space, own) {
                continue;
            }
            for _ in 0..TRIES {
                let done = space.discard_object_pages_where(
                    |o| objects.contains(&o),
                    |_, frame| frames.binary_search(&frame).is_ok(),
                    || {},
                );
                if done != Err(aspace::Error::NotFound) {
                    break;
                }
                core::hint::spin_loop();
            }
        }
    }
}
