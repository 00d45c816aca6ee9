//! The subsystem instance: the machine, the kernel address space, the ASID
//! allocator and the counters, and the address-space switch.

use crate::fork::ForkRange;
use crate::internals::try_arc::TryArc;
use crate::replace::Replacement;

use crate::machine::{Asid, Cpus, Invalidation, Machine, Tlb};
use crate::reserve::{self, Reserve};
use crate::shared::Shared;
use crate::space::{AddressSpace, SpaceRef};
use crate::stats::{Stats, StatsSnapshot};
use crate::{Error, Result};

/// Settings of a [`System`].
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Number of user ASIDs (x86_64 PCIDs 1..=4095). Must be at least the
    /// number of CPUs, so every CPU can run a different address space.
    pub asids: u16,
    /// The commit limit in pages (see [`crate::reserve`]): `None` takes
    /// the frames the allocator has free when the system starts
    /// ([`FrameAllocator::free_frames`](crate::FrameAllocator::free_frames)),
    /// or no limit if it cannot tell; `Some(u64::MAX)` is no limit.
    pub commit_limit: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            asids: 4095,
            commit_limit: None,
        }
    }
}

/// The address-space subsystem of one machine (HelenOS `as_init` and the
/// globals of `as.c`).
pub struct System<M: Machine> {
    shared: TryArc<Shared<M>>,
    kernel: SpaceRef<M>,
}

impl<M: Machine> System<M> {
    /// Starts the subsystem on `machine` and creates the kernel address
    /// space, which lives as long as the system.
    pub fn new(machine: M, config: Config) -> Result<Self> {
        let cpus = machine.cpus().cpu_count();
        if cpus == 0 || cpus > 64 || (config.asids as usize) < cpus || config.asids > 4095 {
            return Err(Error::InvalidArgument);
        }
        let limit = config
            .commit_limit
            .unwrap_or_else(|| reserve::default_limit(machine.frames()));
        let shared = TryArc::try_new_with(|| Shared::new(machine, config.asids, limit))?;
        let kernel = AddressSpace::create(&shared, None)?;
        Ok(Self { shared, kernel })
    }

    /// The machine.
    pub fn machine(&self) -> &M {
        &self.shared.machine
    }

    /// The kernel address space.
    pub fn kernel(&self) -> &SpaceRef<M> {
        &self.kernel
    }

    /// A new, empty user address space. It is destroyed — every area, frame,
    /// its ASID and page table released — when the last handle to it goes.
    /// All or nothing: the heap or frames for its page table running out
    /// is `NoMemory` with nothing changed.
    pub fn create(&self) -> Result<SpaceRef<M>> {
        AddressSpace::create(&self.shared, Some(&self.kernel))
    }

    /// A copy of `space` (Unix `fork`): a new user space with the same
    /// areas, rights and contents, each mapped where it was.
    ///
    /// - Private areas (a [`PRIVATE`](crate::backend::BackendCaps::PRIVATE),
    ///   reference-counted backend, not shared: anonymous memory, ELF
    ///   segments) keep their frames: every resident page becomes
    ///   copy-on-write in both spaces (see [`crate::cow`]), each frame gets
    ///   one more reference, the child maps it read-only, and the parent's
    ///   writable entries lose write access in one shootdown round. No data
    ///   frame is allocated; the first write on either side copies the page.
    /// - Shared areas join their share record (the child sees the same
    ///   pages, counted once in the reservation); areas of other backends
    ///   (device memory, objects every mapping sees) are mapped by the
    ///   child from the same backend, page by page as it faults.
    /// - Areas of a user-space pager (whose requests in flight are keyed by
    ///   the area) and share destinations still being set up are not
    ///   inherited: the child has a hole there.
    ///
    /// The child reserves what each private area reserved (the commit
    /// limit counts both copies), and for its other unshared areas what a
    /// new area would (nothing yet for a late-reserving one). All or nothing: the kernel space or a
    /// space of another system `InvalidArgument`; the reservation past
    /// the commit limit, or frames for the child's page table running out,
    /// `NoMemory`, with the parent as it was and no child left; so is the
    /// heap running out at any of its allocations.
    pub fn fork(&self, space: &AddressSpace<M>) -> Result<SpaceRef<M>> {
        self.fork_except(space, &[])
    }

    /// [`fork`](Self::fork), but the child gets nothing of `ranges` marked
    /// [`Inherit::Nothing`](crate::Inherit::Nothing) (a hole: areas across its ends are cut there in
    /// the child) and no private pages of those marked [`Inherit::Empty`](crate::Inherit::Empty)
    /// (the areas, reading as new memory): Linux's `MADV_DONTFORK` and
    /// `MADV_WIPEONFORK`. The parent's pages in either stay its own, not
    /// copy-on-write, and the child's reservation counts only what it got.
    /// `ranges` must be page-aligned, non-empty and in ascending order
    /// without overlaps (`InvalidArgument`); refusals otherwise as
    /// [`fork`](Self::fork)'s, all or nothing.
    pub fn fork_except(
        &self,
        space: &AddressSpace<M>,
        ranges: &[ForkRange],
    ) -> Result<SpaceRef<M>> {
        self.fork_replacing(space, ranges, &[])
    }

    /// [`fork_except`](Self::fork_except), and the child gets each of
    /// `fresh` as a new area, empty, in place of what `space` has there
    /// (nothing of it: the parent's pages there stay its own), reserving
    /// what a new area does: Linux's child of a `MADV_WIPEONFORK` mapping
    /// that holds guard pages, which gets a plain empty mapping. `fresh`
    /// is checked as [`AddressSpace::area_replace_many`] checks its parts
    /// (an area with guard pages, or a part overlapping another or one of
    /// `ranges`, `InvalidArgument`; outside the user window
    /// `AddressNotAvailable`); refusals otherwise as `fork`'s, all or
    /// nothing.
    pub fn fork_replacing(
        &self,
        space: &AddressSpace<M>,
        ranges: &[ForkRange],
        fresh: &[Replacement<M>],
    ) -> Result<SpaceRef<M>> {
        if !TryArc::ptr_eq(&space.shared, &self.shared) {
            return Err(Error::InvalidArgument);
        }
        space.fork_with(&self.kernel, ranges, fresh)
    }

    /// Switches the current CPU from `old` to `new` (HelenOS `as_switch`):
    /// gives `new` an ASID if it has none (stealing the least recently used
    /// inactive one when the pool is empty), loads its page table and ASID,
    /// and then flushes the ASID if this CPU may hold entries tagged with it
    /// that are not `new`'s: a stolen ASID's, or ones a shootdown left to a
    /// lazy flush. Every CPU that may hold the stolen ASID's entries does
    /// the same when it first runs `new`, so a steal sends no IPI.
    ///
    /// All or nothing: on failure the CPU still runs `old` as far as the
    /// subsystem is concerned, and nothing was loaded. Fails with
    /// `InvalidArgument` when called outside any CPU or with an address
    /// space of another system, and with `NoMemory` when no ASID can be had,
    /// which cannot happen with at least as many ASIDs as CPUs ([`Config`]
    /// requires that) as long as `old` names what the CPU runs.
    pub fn switch(&self, old: Option<&AddressSpace<M>>, new: &AddressSpace<M>) -> Result<Asid> {
        let tlb = self.shared.machine.tlb();
        let cpu = self
            .shared
            .machine
            .cpus()
            .current_cpu()
            .ok_or(Error::InvalidArgument)?;
        let ours = |s: &AddressSpace<M>| TryArc::ptr_eq(&s.shared, &self.shared);
        if !ours(new) || old.is_some_and(|o| !ours(o)) {
            return Err(Error::InvalidArgument);
        }
        let mut asids = self.shared.asids.lock();
        let plan = asids
            .switch(old.map(|o| o.id()), new.id(), cpu)
            .ok_or(Error::NoMemory)?;
        drop(asids);
        // Load first, then flush: until the new root is loaded this CPU may
        // still refill entries of the space it leaves, under an ASID that
        // may be the one just taken from it.
        tlb.install(new.root(), plan.asid);
        if plan.flush {
            tlb.invalidate_local(Invalidation::Asid(plan.asid));
            Stats::add(&self.shared.counters().lazy_flushes, 1);
        }
        Ok(plan.asid)
    }

    /// The counters now.
    pub fn stats(&self) -> StatsSnapshot {
        let mut s = self.shared.stats.snapshot();
        let counts = self.shared.asids.lock().counts;
        s.shootdown_rounds += counts.shootdown_rounds;
        s.local_invalidations += counts.local_invalidations;
        s.asid_allocs += counts.asid_allocs;
        s.asid_steals += counts.asid_steals;
        s
    }

    /// The commit limit and the pages committed against it (see
    /// [`crate::reserve`]).
    pub fn reserve(&self) -> &Reserve {
        &self.shared.reserve
    }

    /// ASIDs in the free pool.
    pub fn free_asids(&self) -> usize {
        self.shared.asids.lock().free_count()
    }
}
