//! ASID allocation: a finite pool, refilled by stealing the ASID of the
//! least recently used address space that runs on no CPU.
//!
//! The allocator also tracks, per address space, on which CPUs it runs now
//! (`active`, HelenOS's `cpu_refcount`) and on which CPUs its TLB entries may
//! linger (`dirty`), so that shootdowns interrupt only the CPUs that run it
//! and mark the others to flush lazily (`pending`).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::machine::{Asid, CpuId, CpuSet};

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
    /// Position in the inactive list, when inactive with an ASID.
    lru: Option<u64>,
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
    /// The ASID was stolen from another address space.
    pub stolen: bool,
    pub allocated: bool,
}

/// The ASID pool and the per-address-space CPU bookkeeping.
#[derive(Debug)]
pub struct AsidAllocator {
    free: Vec<Asid>,
    slots: BTreeMap<u64, SpaceRecord>,
    /// LRU stamp -> address-space id, for inactive spaces holding an ASID.
    inactive: BTreeMap<u64, u64>,
    clock: u64,
}

impl AsidAllocator {
    /// A pool of ASIDs `1..=count` (ASID 0 is the kernel's).
    pub fn new(count: u16) -> Self {
        let count = count.max(1);
        Self {
            free: (1..=count).rev().map(Asid).collect(),
            slots: BTreeMap::new(),
            inactive: BTreeMap::new(),
            clock: 0,
        }
    }

    /// ASIDs not held by any address space.
    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    pub(crate) fn register(&mut self, id: u64, kernel: bool) {
        let slot = SpaceRecord {
            asid: kernel.then_some(Asid::KERNEL),
            kernel,
            ..SpaceRecord::default()
        };
        self.slots.insert(id, slot);
    }

    /// The ASID the address space holds now.
    pub(crate) fn asid_of(&self, id: u64) -> Option<Asid> {
        self.slots.get(&id).and_then(|s| s.asid)
    }

    /// CPUs running the address space now.
    pub(crate) fn active_of(&self, id: u64) -> CpuSet {
        self.slots.get(&id).map(|s| s.active).unwrap_or_default()
    }

    /// Drops the address space's state; returns its ASID and the CPUs that
    /// may still hold entries tagged with it. The caller flushes those CPUs
    /// and puts the ASID back with [`release`](Self::release) without
    /// letting go of the allocator in between, so a dying space's ASID is
    /// never held by nobody while a switch looks for one.
    pub(crate) fn unregister(&mut self, id: u64) -> Option<(Asid, CpuSet)> {
        let slot = self.slots.remove(&id)?;
        debug_assert!(
            slot.kernel || slot.active.is_empty(),
            "address space destroyed while running"
        );
        if let Some(stamp) = slot.lru {
            self.inactive.remove(&stamp);
        }
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
        let slot = self.slots.get_mut(&id)?;
        let asid = slot.asid?;
        let mut me_set = CpuSet::EMPTY;
        if let Some(c) = me {
            me_set.insert(c);
        }
        if slot.kernel {
            return Some(ShootdownPlan {
                asid,
                local: me.is_some(),
                remote: all.minus(me_set),
            });
        }
        let remote = slot.active.minus(me_set);
        // CPUs that ran the space but do not now flush it when they return.
        let lazy = slot.dirty.minus(slot.active).minus(me_set);
        slot.pending = CpuSet(slot.pending.0 | lazy.0);
        Some(ShootdownPlan {
            asid,
            local: me.is_some_and(|c| slot.dirty.contains(c)),
            remote,
        })
    }

    /// Marks the address space `id` as no longer running on `cpu`; returns
    /// whether it ran there (nothing happens otherwise).
    fn deactivate(&mut self, id: u64, cpu: CpuId) -> bool {
        let Some(slot) = self.slots.get_mut(&id) else {
            return false;
        };
        if !slot.active.contains(cpu) {
            return false;
        }
        slot.active.remove(cpu);
        if slot.active.is_empty() && !slot.kernel && slot.asid.is_some() && slot.lru.is_none() {
            self.clock += 1;
            slot.lru = Some(self.clock);
            self.inactive.insert(self.clock, id);
        }
        true
    }

    /// Undoes [`deactivate`](Self::deactivate) of `id` on `cpu` when the
    /// switch it began failed: the space runs there again, as before.
    fn reactivate(&mut self, id: u64, cpu: CpuId) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        if let Some(stamp) = slot.lru.take() {
            self.inactive.remove(&stamp);
        }
        slot.active.insert(cpu);
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
        let needs_asid = {
            let slot = self.slots.get_mut(&id)?;
            if let Some(stamp) = slot.lru.take() {
                self.inactive.remove(&stamp);
            }
            slot.asid.is_none()
        };
        if needs_asid {
            let asid = if let Some(a) = self.free.pop() {
                allocated = true;
                (a, CpuSet::EMPTY)
            } else {
                let (_, victim) = self.inactive.pop_first()?;
                let v = self
                    .slots
                    .get_mut(&victim)
                    .expect("inactive space has a slot");
                let a = v.asid.take().expect("inactive space holds an ASID");
                v.lru = None;
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
            let slot = self.slots.get_mut(&id).expect("checked above");
            slot.asid = Some(asid);
            slot.dirty = lingering;
            slot.pending = lingering;
        }
        let slot = self.slots.get_mut(&id).expect("checked above");
        slot.active.insert(cpu);
        slot.dirty.insert(cpu);
        let flush = slot.pending.contains(cpu);
        slot.pending.remove(cpu);
        Some(SwitchPlan {
            asid: slot.asid.expect("assigned above"),
            flush,
            stolen,
            allocated,
        })
    }
}
