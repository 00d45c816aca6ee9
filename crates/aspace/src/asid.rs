//! ASID allocation: a finite pool, refilled by stealing the ASID of the
//! least recently used address space that runs on no CPU.
//!
//! The allocator also tracks, per address space, on which CPUs it runs now
//! (`active`, HelenOS's `cpu_refcount`) and on which CPUs its TLB entries may
//! linger (`dirty`), so that shootdowns interrupt only the CPUs that run it
//! and mark the others to flush lazily (`pending`).
//!
//! A switch allocates nothing: the least-recently-used order of inactive
//! spaces is a list linked through their records, so a switch cannot fail
//! for want of heap memory (only registering a new space adds a record).

use alloc::vec::Vec;

use crate::internals::area_tree::AreaTree;
use crate::machine::{Asid, CpuId, CpuSet};
use crate::{Error, Result};

/// Per-address-space state kept by the allocator.
#[derive(Debug, Default)]
struct SpaceRecord {
    asid: Option<Asid>,
    /// CPUs running the address space now.
    active: CpuSet,
    /// CPUs that may hold TLB entries tagged with `asid`.
    dirty: CpuSet,
    /// CPUs that must flush `asid` before they next run the address space.
    pending: CpuSet,
    /// Whether the space is in the inactive list (inactive with an ASID).
    queued: bool,
    /// Its neighbours there: the space made inactive just before it, and
    /// just after it.
    prev: Option<u64>,
    next: Option<u64>,
    kernel: bool,
}

/// How to carry out a shootdown for one address space.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShootdownPlan {
    pub asid: Asid,
    /// Whether the current CPU may hold entries.
    pub local: bool,
    /// CPUs running the address space (other than the current one).
    pub remote: CpuSet,
}

/// What a switch did, for the caller to install.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SwitchPlan {
    pub asid: Asid,
    /// The CPU must flush the ASID once it has loaded it, before running
    /// the address space (see [`AsidAllocator::switch`]).
    pub flush: bool,
}

/// The ASID pool and the per-address-space CPU bookkeeping.
#[derive(Debug)]
pub struct AsidAllocator {
    free: Vec<Asid>,
    /// Per address-space id `i`, its record, as the entry `[i, i + 1)` of
    /// an arena tree (room for a new one is asked of the heap first).
    slots: AreaTree<SpaceRecord>,
    /// The inactive spaces holding an ASID, least recently used first: the
    /// ends of a list linked through their records.
    head: Option<u64>,
    tail: Option<u64>,
    /// The counts of what the allocator decided, kept under its lock (a
    /// shootdown's path takes it anyway) rather than in the atomic
    /// statistics: read into them by [`System::stats`](crate::System::stats).
    pub(crate) counts: AsidCounts,
}

/// What [`AsidAllocator`] counts (the fields of
/// [`StatsSnapshot`](crate::StatsSnapshot) of the same names).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct AsidCounts {
    pub(crate) shootdown_rounds: u64,
    pub(crate) local_invalidations: u64,
    pub(crate) asid_allocs: u64,
    pub(crate) asid_steals: u64,
}

impl AsidAllocator {
    /// A pool of ASIDs `1..=count` (ASID 0 is the kernel's); `NoMemory` if
    /// the heap refuses its free list.
    pub fn new(count: u16) -> Result<Self> {
        let count = count.max(1);
        let mut free = Vec::new();
        free.try_reserve_exact(usize::from(count))
            .map_err(|_| Error::NoMemory)?;
        free.extend((1..=count).rev().map(Asid));
        Ok(Self {
            free,
            slots: AreaTree::new(),
            head: None,
            tail: None,
            counts: AsidCounts::default(),
        })
    }

    /// Puts `id` at the most recently used end of the inactive list.
    fn enqueue(&mut self, id: u64) {
        let tail = self.tail;
        let Some(slot) = self.slot_mut(id) else {
            return;
        };
        debug_assert!(!slot.queued);
        slot.queued = true;
        slot.prev = tail;
        slot.next = None;
        match tail.and_then(|t| self.slot_mut(t)) {
            Some(t) => t.next = Some(id),
            None => self.head = Some(id),
        }
        self.tail = Some(id);
    }

    /// Takes `id` out of the inactive list, if it is there.
    fn dequeue(&mut self, id: u64) {
        let Some(slot) = self.slot_mut(id) else {
            return;
        };
        if !slot.queued {
            return;
        }
        slot.queued = false;
        let (prev, next) = (slot.prev.take(), slot.next.take());
        match prev.and_then(|p| self.slot_mut(p)) {
            Some(p) => p.next = next,
            None => self.head = next,
        }
        match next.and_then(|n| self.slot_mut(n)) {
            Some(n) => n.prev = prev,
            None => self.tail = prev,
        }
    }

    /// ASIDs not held by any address space.
    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    /// The record of address space `id`.
    fn slot(&self, id: u64) -> Option<&SpaceRecord> {
        self.slots.get(id).map(|(_, r)| r)
    }

    /// The record of address space `id`, to change.
    fn slot_mut(&mut self, id: u64) -> Option<&mut SpaceRecord> {
        self.slots.get_mut(id).map(|(_, r)| r)
    }

    /// Makes room for the record of a new address space `id`, so that
    /// [`register`](Self::register) allocates nothing; `false` (nothing
    /// changed) if the heap refuses.
    pub(crate) fn try_reserve_register(&mut self, id: u64) -> bool {
        self.slots.try_reserve_insertion(id)
    }

    /// Starts keeping the record of the new address space `id` (allocates
    /// nothing after [`try_reserve_register`](Self::try_reserve_register)).
    pub(crate) fn register(&mut self, id: u64, kernel: bool) {
        let slot = SpaceRecord {
            asid: kernel.then_some(Asid::KERNEL),
            kernel,
            ..SpaceRecord::default()
        };
        let added = self.slots.insert(id, id + 1, slot).is_ok();
        debug_assert!(added, "address space {id} registered twice");
    }

    /// The ASID the address space holds now.
    pub(crate) fn asid_of(&self, id: u64) -> Option<Asid> {
        self.slot(id).and_then(|s| s.asid)
    }

    /// CPUs running the address space now.
    pub(crate) fn active_of(&self, id: u64) -> CpuSet {
        self.slot(id).map(|s| s.active).unwrap_or_default()
    }

    /// Drops the address space's state; returns its ASID and the CPUs that
    /// may still hold entries tagged with it. The caller flushes those CPUs
    /// and puts the ASID back with [`release`](Self::release) without
    /// letting go of the allocator in between, so a dying space's ASID is
    /// never held by nobody while a switch looks for one.
    pub(crate) fn unregister(&mut self, id: u64) -> Option<(Asid, CpuSet)> {
        self.dequeue(id);
        let (_, slot) = self.slots.remove(id)?;
        debug_assert!(
            slot.kernel || slot.active.is_empty(),
            "address space destroyed while running"
        );
        match slot.asid {
            Some(a) if !slot.kernel => Some((a, slot.dirty)),
            _ => None,
        }
    }

    /// Returns an ASID to the pool once no TLB holds entries tagged with it.
    pub(crate) fn release(&mut self, asid: Asid) {
        self.free.push(asid);
    }

    /// Which CPUs must flush what after translations of `id` were removed;
    /// `all` is every CPU of the machine. Kernel mappings are global (every
    /// user table shares them), so their shootdown reaches every CPU.
    pub(crate) fn plan_shootdown(
        &mut self,
        id: u64,
        me: Option<CpuId>,
        all: CpuSet,
    ) -> Option<ShootdownPlan> {
        let slot = self.slot_mut(id)?;
        let asid = slot.asid?;
        let mut me_set = CpuSet::EMPTY;
        if let Some(c) = me {
            me_set.insert(c);
        }
        let plan = if slot.kernel {
            ShootdownPlan {
                asid,
                local: me.is_some(),
                remote: all.minus(me_set),
            }
        } else {
            let remote = slot.active.minus(me_set);
            // CPUs that ran the space but do not now flush it when they
            // return.
            let lazy = slot.dirty.minus(slot.active).minus(me_set);
            slot.pending = CpuSet(slot.pending.0 | lazy.0);
            ShootdownPlan {
                asid,
                local: me.is_some_and(|c| slot.dirty.contains(c)),
                remote,
            }
        };
        self.counts.shootdown_rounds += 1;
        self.counts.local_invalidations += u64::from(plan.local);
        Some(plan)
    }

    /// Marks the address space `id` as no longer running on `cpu`; returns
    /// whether it ran there (nothing happens otherwise).
    fn deactivate(&mut self, id: u64, cpu: CpuId) -> bool {
        let Some(slot) = self.slot_mut(id) else {
            return false;
        };
        if !slot.active.contains(cpu) {
            return false;
        }
        slot.active.remove(cpu);
        if slot.active.is_empty() && !slot.kernel && slot.asid.is_some() && !slot.queued {
            self.enqueue(id);
        }
        true
    }

    /// Undoes [`deactivate`](Self::deactivate) of `id` on `cpu` when the
    /// switch it began failed: the space runs there again, as before.
    fn reactivate(&mut self, id: u64, cpu: CpuId) {
        self.dequeue(id);
        if let Some(slot) = self.slot_mut(id) {
            slot.active.insert(cpu);
        }
    }

    /// Moves `cpu` from running `old` to running `new`, giving `new` an
    /// ASID if it has none. All or nothing: `None` (the pool is empty and
    /// nothing can be stolen) leaves every slot as it was, `old` still
    /// running on `cpu`. `old` itself is a candidate for the steal, so with
    /// at least as many ASIDs as CPUs a switch always succeeds.
    pub(crate) fn switch(&mut self, old: Option<u64>, new: u64, cpu: CpuId) -> Option<SwitchPlan> {
        // Left only if it ran here; undone if `new` cannot get an ASID.
        let left = old.filter(|&o| o != new && self.deactivate(o, cpu));
        let plan = self.activate(new, cpu);
        if plan.is_none() {
            if let Some(o) = left {
                self.reactivate(o, cpu);
            }
        }
        plan
    }

    /// Marks `id` as running on `cpu`, giving it an ASID if it has none.
    /// Returns `None` when the pool is empty and nothing can be stolen.
    fn activate(&mut self, id: u64, cpu: CpuId) -> Option<SwitchPlan> {
        let mut stolen = false;
        let mut allocated = false;
        let needs_asid = self.slot(id)?.asid.is_none();
        self.dequeue(id);
        if needs_asid {
            let asid = if let Some(a) = self.free.pop() {
                allocated = true;
                (a, CpuSet::EMPTY)
            } else {
                let victim = self.head?;
                self.dequeue(victim);
                let v = self.slot_mut(victim).expect("inactive space has a slot");
                let a = v.asid.take().expect("inactive space holds an ASID");
                stolen = true;
                // The victim's entries may linger, tagged with the ASID, on
                // every CPU that ran it (this one included): each flushes
                // the ASID when it first runs the new owner, after loading
                // it. Flushing earlier would not do: a CPU still running the
                // victim (this one, or one half-way through switching away
                // from it) may refill entries until it loads another root.
                let lingering = core::mem::take(&mut v.dirty);
                v.pending = CpuSet::EMPTY;
                (a, lingering)
            };
            let (asid, lingering) = asid;
            let slot = self.slot_mut(id).expect("checked above");
            slot.asid = Some(asid);
            slot.dirty = lingering;
            slot.pending = lingering;
        }
        self.counts.asid_allocs += u64::from(allocated);
        self.counts.asid_steals += u64::from(stolen);
        let slot = self.slot_mut(id).expect("checked above");
        slot.active.insert(cpu);
        slot.dirty.insert(cpu);
        let flush = slot.pending.contains(cpu);
        slot.pending.remove(cpu);
        Some(SwitchPlan {
            asid: slot.asid.expect("assigned above"),
            flush,
        })
    }
}
