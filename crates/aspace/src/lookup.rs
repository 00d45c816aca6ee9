//! [`AreaLookup`]: many area queries under one hold of an address space's
//! area-tree lock.
//!
//! HelenOS looks areas up with the address-space lock already held
//! (`find_area_and_lock` expects its caller to have taken `as->lock`), and
//! so does this crate's page-fault handler. [`AddressSpace::lookup`] gives a
//! kernel the same: the tree is read-locked once, through the current
//! CPU's reader count, and the CPU's last-hit hint is found once, so each
//! query is one tree search (or none, when the hint names the right leaf)
//! and no atomic read-modify-write. That suits a system call that checks a
//! list of buffers, or any short walk over several addresses. A single
//! question is simpler asked with [`AddressSpace::area`], which takes and
//! drops the lock around it.
//!
//! The rules are those of any reader of a reader-writer lock:
//!
//! * Keep it short. While it lives, areas of that space cannot be
//!   created, resized, shared into or destroyed, and once such a change is
//!   waiting for it, faults and queries of that space on other CPUs may
//!   wait too (a writer holds the reader counts it has already taken).
//! * While holding it, call no other method of that address space and do
//!   not touch its memory: every one of them, page faults and user copies
//!   included, read-locks the tree again, which waits forever behind a
//!   queued writer on a lock that lets writers go first.
//! * Hold one at a time: lookups of two spaces held together (or one held
//!   while faulting on another space) can wait on each other's writers.
//!
//! ```
//! use aspace::{Access, AreaFlags, VirtAddr, PAGE_SIZE};
//! use aspace_sim::{Sim, SimConfig};
//!
//! let sim = Sim::new(SimConfig::default()).unwrap();
//! let space = sim.system().create().unwrap();
//! let rw = AreaFlags::READ | AreaFlags::WRITE;
//! space.area_create(VirtAddr::new(0x40_0000), 4 * PAGE_SIZE, rw).unwrap();
//! space.area_create(VirtAddr::new(0x80_0000), PAGE_SIZE, AreaFlags::READ).unwrap();
//!
//! // Is every buffer of a scatter-gather list writable? One lock for all.
//! let buffers = [0x40_0000u64, 0x40_2000, 0x80_0000];
//! let areas = space.lookup();
//! let writable: Vec<bool> = buffers
//!     .iter()
//!     .map(|&b| areas.check_access(VirtAddr::new(b), Access::Write))
//!     .collect();
//! assert_eq!(writable, [true, true, false]);
//! assert_eq!(areas.area_size(VirtAddr::new(0x40_1234)), 4 * PAGE_SIZE);
//! assert_eq!(areas.iter().count(), 2);
//! drop(areas); // before changing the areas of `space`
//! space.area_destroy(VirtAddr::new(0x80_0000)).unwrap();
//! ```

use crate::addr::{VirtAddr, PAGE_SIZE};
use crate::area::{AreaEntry, AreaInfo};
use crate::flags::Access;
use crate::internals::area_tree::Hint;
use crate::machine::Machine;
use crate::shard_lock::ReadGuard;
use crate::space::Areas;
#[cfg(doc)]
use crate::AddressSpace;

/// The areas of one address space, read-locked for a series of queries;
/// made by [`AddressSpace::lookup`](crate::AddressSpace::lookup). Unlocks
/// when dropped. See the [module documentation](self).
pub struct AreaLookup<'a, M: Machine> {
    tree: ReadGuard<'a, M::RwLock, Areas<M>>,
    hint: &'a Hint,
}

impl<'a, M: Machine> AreaLookup<'a, M> {
    /// A lookup over `tree` (locked) with the last-hit hint `hint`.
    pub(crate) fn new(tree: ReadGuard<'a, M::RwLock, Areas<M>>, hint: &'a Hint) -> Self {
        Self { tree, hint }
    }

    /// The entry whose area contains `addr`: `(first page, end page, slot)`.
    #[inline]
    fn slot(&self, addr: VirtAddr) -> Option<(u64, u64, &AreaEntry<M>)> {
        self.tree.find_hinted(addr.page().number(), self.hint)
    }

    /// The area containing `addr` (as [`AddressSpace::area`](crate::AddressSpace::area)).
    #[inline]
    pub fn area(&self, addr: VirtAddr) -> Option<AreaInfo> {
        self.slot(addr)
            .map(|(start, end, slot)| slot.snapshot(start, end))
    }

    /// Size in bytes of the area containing `addr`, 0 if none (as
    /// [`AddressSpace::area_size`](crate::AddressSpace::area_size)).
    #[inline]
    pub fn area_size(&self, addr: VirtAddr) -> u64 {
        self.slot(addr)
            .map_or(0, |(start, end, _)| (end - start) * PAGE_SIZE)
    }

    /// Whether the area containing `addr` permits `access`; `false` when
    /// there is none (as
    /// [`AddressSpace::check_access`](crate::AddressSpace::check_access)).
    #[inline]
    pub fn check_access(&self, addr: VirtAddr, access: Access) -> bool {
        self.slot(addr)
            .is_some_and(|(_, _, slot)| slot.summary.flags().permits(access))
    }

    /// Every area, lowest first.
    pub fn iter(&self) -> impl Iterator<Item = AreaInfo> + '_ {
        self.tree
            .iter()
            .map(|(start, end, slot)| slot.snapshot(start, end))
    }

    /// Number of areas.
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// Whether the address space has no area.
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }
}
