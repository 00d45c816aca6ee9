//! The page-fault handler (HelenOS `as_page_fault`).

use crate::addr::{Frame, Page, PageRange, VirtAddr};
use crate::area::{Area, AreaEntry, AreaState};
use crate::backend::BackendCaps;
use crate::flags::{Access, AreaAttrs, AreaFlags, PageFlags};
use crate::internals::used_space::UsedSpaceError;
use crate::machine::{Cpus, FrameAllocator, Invalidation, Machine, Tlb};
use crate::paging::PageTable;
use crate::reserve;
use crate::space::{AddressSpace, Areas};
use crate::stats::{Counters, Stats};
use crate::Error;

/// Why a fault could not be resolved.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FaultReason {
    /// No area contains the address.
    NoArea,
    /// The area is still being set up.
    Partial,
    /// The area does not permit the access.
    Access,
    /// The backend could not supply a frame (out of memory or a backend
    /// error), or a [late-reserving](crate::AreaFlags::LATE_RESERVE) area
    /// could not reserve the page within the commit limit.
    NoMemory,
    /// The area's pager answered with an error, or with a page the core
    /// refused (not mapped in the pager's own space, not its to give).
    PagerError,
    /// The area's pager is gone: it died with the request pending, or
    /// before it was asked.
    PagerGone,
    /// The address is an area's guard page ([`AreaFlags::GUARD`]): a stack
    /// overflow, told apart from [`NoArea`](Self::NoArea); or a page whose
    /// backend refuses it for good (`PermissionDenied`: a
    /// [`GuardBackend`](crate::backend::GuardBackend) page). For a
    /// [grows-down](AreaFlags::GROWS_DOWN) area, the area could not grow
    /// over it (its limit reached, the page below taken, or the area
    /// shared).
    Guard,
}

/// How a fault that succeeded was resolved.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Resolved {
    /// The page was mapped (or copied) now.
    Mapped,
    /// The page was mapped already, with the rights the access needs.
    Present,
}

/// What the CPU was doing when it faulted.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum FaultContext {
    /// A user task's own access (user mode).
    User,
    /// The kernel's own access, in kernel mode (to the kernel's areas, or a
    /// kernel bug touching user memory outside a user copy).
    Kernel,
    /// The kernel copying from or to user memory on a task's behalf
    /// ([`copy_from_user`](crate::AddressSpace::copy_from_user) and
    /// friends): a failure is the copy's, not the kernel's.
    UserCopy,
}

/// What the low-level handler is to do after a fault.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FaultOutcome {
    /// The page is mapped now: retry the access.
    Ok,
    /// A genuine fault: the task is to be told or killed.
    Fault(FaultReason),
    /// The fault happened in a kernel copy from or to user memory: the copy
    /// is to fail with `BadMemory` instead.
    Defer(FaultReason),
}

impl<M: Machine> AddressSpace<M> {
    /// Handles a fault on `addr` caused by `access` in `context`; in a
    /// [`FaultContext::UserCopy`] a failure is a
    /// [`FaultOutcome::Defer`], the copy's to report.
    ///
    /// One area lookup, two locks each taken once (the area tree for
    /// reading, through this CPU's reader count, and the area; the page
    /// table takes none); a fault on a page mapped already with the access
    /// also takes the ASID allocator's, to drop this CPU's stale entry. No heap allocation once the area's used space has
    /// room for its runs (an area is created with room for one; the nodes
    /// of runs that were removed are reused). For anonymous memory the frame
    /// is zeroed before the area's lock is taken. A page another CPU mapped
    /// in the meantime returns `Ok` (a frame prepared for it goes straight
    /// back to the allocator).
    ///
    /// Out of memory, the fault is tried again before it fails, first
    /// waiting for faults elsewhere that hold a prepared frame: the last
    /// free frame may be held, zeroed but not yet mapped, by another CPU's
    /// fault on the same page, whose mapping then satisfies this one.
    pub fn page_fault(
        &self,
        addr: VirtAddr,
        access: Access,
        context: FaultContext,
    ) -> FaultOutcome {
        // `faults` and `pages_mapped` are derived from the other counters
        // when read: one atomic increment per fault instead of three.
        // The CPU is looked up once: for the counter shard, the lookup hint
        // and the count of faults holding prepared frames.
        let cpu = self.shared.machine.cpus().current_cpu();
        let stats = self.shared.stats.shard(cpu);
        let mut result = self.resolve(addr, access, cpu, stats);
        for pause in [1u32 << 2, 1 << 5, 1 << 8, 1 << 11] {
            if result != Err(FaultReason::NoMemory) {
                break;
            }
            self.shared
                .preparing
                .wait_idle(pause, || self.shared.machine.relax());
            result = self.resolve(addr, access, cpu, stats);
        }
        match result {
            Ok(()) => FaultOutcome::Ok,
            Err(reason) => {
                Stats::add(&stats.faults_failed, 1);
                if context == FaultContext::UserCopy {
                    FaultOutcome::Defer(reason)
                } else {
                    FaultOutcome::Fault(reason)
                }
            }
        }
    }

    fn resolve(
        &self,
        addr: VirtAddr,
        access: Access,
        cpu: Option<usize>,
        stats: &Counters,
    ) -> Result<(), FaultReason> {
        // The tree stays read-locked for the whole fault: no area is
        // destroyed or resized meanwhile, so the area needs no reference of
        // its own and its range holds.
        let tree = self.areas.read(cpu);
        let n = addr.page().number();
        if let Some(entry) = self.entry_at_on_cpu(&tree, n, cpu) {
            if crate::page_in::user_backend::<M>(&entry.2.area).is_some() {
                // A user pager's page: asked for and waited for with no
                // lock held.
                drop(tree);
                return self.resolve_paged(addr.page(), access, stats);
            }
            return self.resolve_entry(entry, addr, access, cpu, stats);
        }
        // A guard page: a stack overflow, or a stack to grow.
        let grows = tree
            .guarded_by(n)
            .map(|(_, _, slot)| slot.summary.flags().contains(AreaFlags::GROWS_DOWN));
        drop(tree);
        match grows {
            None => Err(FaultReason::NoArea),
            Some(false) => Err(FaultReason::Guard),
            Some(true) => self.grow_down(addr, access, cpu, stats),
        }
    }

    /// A fault in the guard page of a grows-down area: with the tree
    /// written, the area's base moves down over the page (the guard with
    /// it) and the page is mapped; all or nothing, so if mapping fails the
    /// base moves back. Refused with [`FaultReason::Guard`] when the area
    /// would pass its limit, the page below the new base (the new guard) is
    /// taken or is the NULL page, or the area is shared or partial.
    ///
    /// The used space and the page table hold absolute pages, so they need
    /// no change; anonymous pages do not depend on their index in the area
    /// (only backends with [`BackendCaps::GROW_DOWN`] grow), and a shared
    /// area, whose share record keys pages by index, does not grow.
    fn grow_down(
        &self,
        addr: VirtAddr,
        access: Access,
        cpu: Option<usize>,
        stats: &Counters,
    ) -> Result<(), FaultReason> {
        let n = addr.page().number();
        let mut tree = self.areas.write();
        // Another CPU may have grown the area (or changed the tree)
        // meanwhile: an ordinary fault then (which may be a pager's, so not
        // under this lock).
        if tree.find(n).is_some() {
            drop(tree);
            return self.resolve(addr, access, cpu, stats);
        }
        let (start, end, more) = {
            let Some((start, end, slot)) = tree.guarded_by(n) else {
                return Err(FaultReason::NoArea);
            };
            let area = &slot.area;
            let st = slot.lock();
            let growable = st.flags.contains(AreaFlags::GROWS_DOWN)
                && area.backend.caps().contains(BackendCaps::GROW_DOWN)
                && st.share.is_none()
                && !st.attrs.contains(AreaAttrs::PARTIAL)
                && end - n <= area.grow_limit()
                && n > 0
                // The grown area and its guard page stay in the space's
                // range (a kernel area must not grow out of the kernel half).
                && self.in_window(
                    PageRange::new(Page::from_number(n), end - n),
                    st.flags.guard_pages(),
                );
            if !growable {
                return Err(FaultReason::Guard);
            }
            if !st.flags.permits(access) {
                return Err(FaultReason::Access);
            }
            // The new pages reserve memory as a resize's would.
            let more = reserve::up_front(&*area.backend, st.flags, 0, start - n);
            (start, end, more)
        };
        if !self.shared.reserve.try_reserve(more) {
            return Err(FaultReason::NoMemory);
        }
        // The new guard page must be free (and not below page 0).
        if !tree.set_start(start, n) {
            self.shared.reserve.release(more);
            return Err(FaultReason::Guard);
        }
        self.set_extent(&tree, n, end, more as i64);
        let result = match self.entry_at_on_cpu(&tree, n, cpu) {
            Some(entry) => self.resolve_entry(entry, addr, access, cpu, stats),
            None => Err(FaultReason::NoArea),
        };
        if result.is_err() {
            let undone = tree.set_start(n, start);
            debug_assert!(undone, "moving a start up always fits");
            self.set_extent(&tree, start, end, -(more as i64));
            self.shared.reserve.release(more);
        }
        result
    }

    /// Records in the area the tree has at `[start, end)` its base and size
    /// (the tree written; the area's lock taken for the store).
    /// `reserved` is added to (or, negative, taken from) the area's
    /// reservation.
    pub(crate) fn set_extent(&self, tree: &Areas<M>, start: u64, end: u64, reserved: i64) {
        if let Some((_, slot)) = tree.get(start) {
            let _st = slot.lock();
            let r = &slot.area.reserved;
            if reserved >= 0 {
                r.fetch_add(reserved as u64, core::sync::atomic::Ordering::Relaxed);
            } else {
                r.fetch_sub(
                    reserved.unsigned_abs(),
                    core::sync::atomic::Ordering::Relaxed,
                );
            }
            slot.area.set_base(Page::from_number(start));
            slot.area
                .pages
                .store(end - start, crate::sync::atomic::Ordering::Release);
        }
    }

    /// [`resolve`](Self::resolve) for the tree `entry` the page is in, the
    /// tree locked by the caller (for reading, or written by a growth); not
    /// for an area served by a user pager (whose faults wait with no lock
    /// held: `resolve` sends them to `resolve_paged` first).
    fn resolve_entry(
        &self,
        (start, end, slot): (u64, u64, &AreaEntry<M>),
        addr: VirtAddr,
        access: Access,
        cpu: Option<usize>,
        stats: &Counters,
    ) -> Result<(), FaultReason> {
        let page = addr.page();
        let m = &self.shared.machine;
        // The slow part (for anonymous memory: zeroing a frame) runs before
        // the area's lock is taken, so faults on other pages of the area
        // proceed meanwhile. Only when the summary, read without the lock,
        // says the access is permitted and some page is not resident: a
        // protection fault, or one on a fully resident area, prepares
        // nothing.
        // A shared area's page may already be in the share record's page
        // map, so it is left to the backend under the lock.
        let (flags, resident, shared) = slot.summary.unlocked_view();
        let prepare = flags.permits(access) && resident < end - start && !shared;
        // The counter entered is the one left, wherever the task runs by
        // then (a sleeping lock may move it to another CPU).
        let entered = prepare.then(|| self.shared.preparing.enter(cpu));
        let mut prepared = if prepare {
            slot.area.backend.prepare(m.memory(), m.frames())
        } else {
            None
        };
        let result = self.resolve_locked(slot, page, access, &mut prepared, stats);
        if result == Ok(Resolved::Present) {
            self.forget_local(page);
        }
        if let Some(frame) = prepared {
            // Not used (the page was mapped meanwhile, or the fault failed):
            // never mapped, so no TLB can reach it.
            m.frames().release(frame);
        }
        if let Some(counter) = entered {
            self.shared.preparing.leave(counter);
        }
        result.map(|_| ())
    }

    /// Drops this CPU's TLB entry for `page` of this space, after a fault
    /// on a page that was already mapped with the rights asked for: either
    /// another CPU mapped it meanwhile (there is no entry), or this CPU's
    /// TLB held older, fewer rights (a rights change that only added some
    /// flushes nothing, see [`PageFlags::widens`](crate::PageFlags::widens)).
    /// x86 drops such an entry on the fault itself; RISC-V and AArch64 may
    /// keep it, so the retried access would fault forever.
    pub(crate) fn forget_local(&self, page: Page) {
        // Outside any CPU (a host thread, early boot) no TLB is involved.
        if self.shared.machine.cpus().current_cpu().is_none() {
            return;
        }
        let asid = self.shared.asids.lock().asid_of(self.id());
        if let Some(asid) = asid {
            let range = PageRange::new(page, 1);
            self.shared
                .machine
                .tlb()
                .invalidate_local(Invalidation::Pages { asid, range });
            Stats::add(&self.shared.counters().local_invalidations, 1);
        }
    }

    /// The fault under the area's lock; takes the frame out of `prepared`
    /// if it maps it.
    fn resolve_locked(
        &self,
        slot: &AreaEntry<M>,
        page: Page,
        access: Access,
        prepared: &mut Option<Frame>,
        stats: &Counters,
    ) -> Result<Resolved, FaultReason> {
        let area = &slot.area;
        let mut st = slot.lock();
        debug_assert!(area.contains(page.number()));
        if st.attrs.contains(AreaAttrs::PARTIAL) {
            return Err(FaultReason::Partial);
        }
        if !st.flags.permits(access) {
            return Err(FaultReason::Access);
        }
        // A write to a copy-on-write page copies it (see `crate::cow`).
        if access == Access::Write && !st.cow.is_empty() && st.cow.contains(page) {
            return self
                .cow_write(&mut st, page, prepared, stats)
                .map(|()| Resolved::Mapped);
        }
        // One used-space search both checks and records the page. The used
        // space equals the page table whenever the area's lock is free: a
        // failure below takes the page out again before the lock goes.
        match st.used.insert(page, 1) {
            Ok(()) => {}
            // The heap refused a node for a new run: nothing changed.
            Err(UsedSpaceError::NoMemory) => return Err(FaultReason::NoMemory),
            Err(_) => {
                // Mapped by another CPU after this one missed, or mapped
                // all along with the rights asked for and this CPU's TLB
                // held fewer: nothing to map.
                Stats::add(&stats.faults_raced, 1);
                return Ok(Resolved::Present);
            }
        }
        // A late-reserving area reserves the page now (see `crate::reserve`).
        let late = reserve::per_page(&*area.backend, st.flags, area.index(page), 1);
        if !self.shared.reserve.try_reserve(late) {
            let _ = st.used.remove(page, 1);
            return Err(FaultReason::NoMemory);
        }
        let result = self
            .map_new_page(area, &mut st, page, access, prepared)
            .map(|()| Resolved::Mapped);
        match result {
            Ok(_) => {
                Stats::add(&stats.faults_resolved, 1);
                if late > 0 {
                    area.add_reserved(late);
                }
            }
            Err(_) => {
                let _ = st.used.remove(page, 1);
                self.shared.reserve.release(late);
            }
        }
        result
    }

    /// Gets the frame for `page` (the prepared one, the share record's, or
    /// the backend's) and maps it. `page` is already in `st.used`.
    fn map_new_page(
        &self,
        area: &Area<M>,
        st: &mut AreaState<M>,
        page: Page,
        access: Access,
        prepared: &mut Option<Frame>,
    ) -> Result<(), FaultReason> {
        let m = &self.shared.machine;
        // The frame, and whether the backend lends it (`Backend::lends`).
        let supply = |prepared: &mut Option<Frame>| match prepared.take() {
            Some(f) => Ok((f, false)),
            // What the backend sees: the area as it is, this page not yet
            // resident (built only when the backend is asked).
            None => {
                let mut info = area.info(st);
                debug_assert!(info.resident > 0, "the page is in the used space");
                info.resident = info.resident.saturating_sub(1);
                let f = area
                    .backend
                    .page_fault(m.memory(), m.frames(), &info, page, access)
                    .map_err(|e| match e {
                        Error::PermissionDenied => FaultReason::Guard,
                        _ => FaultReason::NoMemory,
                    })?;
                // Only a reference-counted backend lends: the copy made at
                // the first write is a frame the area owns and releases,
                // and the lent frame's reference goes with the mapping.
                let counted = area.backend.caps().contains(BackendCaps::REFCOUNTED);
                Ok((f, counted && area.backend.lends(&info, page, f)))
            }
        };
        let (frame, lent) = match &st.share {
            // Shared: every sharer maps the frame in the page map; the first
            // to touch a page puts it there (with a reference of its own).
            Some(share) if area.backend.caps().contains(BackendCaps::REFCOUNTED) => {
                let mut sh = share.state.lock();
                let index = area.index(page);
                match sh.pagemap.get(index) {
                    Some(f) => {
                        m.frames().add_ref(f);
                        (f, false)
                    }
                    None => {
                        // Room in the page map first (the prepared frame,
                        // if any, stays unused and goes back).
                        if !sh.pagemap.try_reserve_one(index) {
                            return Err(FaultReason::NoMemory);
                        }
                        let (f, _) = supply(prepared)?;
                        m.frames().add_ref(f);
                        sh.pagemap.insert(index, f);
                        (f, false)
                    }
                }
            }
            _ => supply(prepared)?,
        };
        let mut flags = self.page_flags(st.flags);
        if lent {
            // Read-only until its first write copies it (`crate::cow`);
            // the set's room for the page first (O(log n), allocation-free
            // when there is room).
            flags -= PageFlags::WRITE;
            if !st.cow.try_reserve_cut(page) {
                if area.backend.caps().contains(BackendCaps::REFCOUNTED) {
                    m.frames().release(frame);
                }
                return Err(FaultReason::NoMemory);
            }
        }
        // The area's lock (held) makes this CPU the only one to change the
        // page's entry; the table itself needs no lock.
        self.sync_if_exec(frame, flags);
        let mapped = self.pt().map(m.memory(), m.frames(), page, frame, flags);
        if mapped.is_err() {
            if area.backend.caps().contains(BackendCaps::REFCOUNTED) {
                m.frames().release(frame);
            }
            return Err(FaultReason::NoMemory);
        }
        if lent {
            let added = st.cow.insert(page, 1);
            debug_assert!(added.is_ok(), "a new page");
        }
        Ok(())
    }
}
