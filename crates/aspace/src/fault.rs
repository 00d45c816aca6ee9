//! The page-fault handler (HelenOS `as_page_fault`).

use crate::addr::{Frame, Page, VirtAddr};
use crate::area::{Area, AreaInfo, AreaState, Slot};
use crate::flags::{Access, AreaAttrs};
use crate::machine::{FrameAllocator, Machine};
use crate::paging::PageTable;
use crate::space::AddressSpace;
use crate::stats::{Counters, Stats};

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
    /// error).
    NoMemory,
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
    /// Handles a fault on `addr` caused by `access`. `in_user_copy` tells
    /// that the kernel was copying from or to user memory, which turns a
    /// failure into [`FaultOutcome::Defer`].
    ///
    /// One area lookup, each lock taken once (the area tree for reading,
    /// the area, the page table), no allocation but the frame; for
    /// anonymous memory the frame is zeroed before the area's lock is
    /// taken. A page another CPU mapped in the meantime returns `Ok` (a
    /// frame prepared for it goes straight back to the allocator).
    pub fn page_fault(&self, addr: VirtAddr, access: Access, in_user_copy: bool) -> FaultOutcome {
        // `faults` and `pages_mapped` are derived from the other counters
        // when read: one atomic increment per fault instead of three.
        let stats = self.shared.counters();
        match self.resolve(addr, access, stats) {
            Ok(()) => FaultOutcome::Ok,
            Err(reason) => {
                Stats::add(&stats.faults_failed, 1);
                if in_user_copy {
                    FaultOutcome::Defer(reason)
                } else {
                    FaultOutcome::Fault(reason)
                }
            }
        }
    }

    fn resolve(&self, addr: VirtAddr, access: Access, stats: &Counters) -> Result<(), FaultReason> {
        let page = addr.page();
        // The tree stays read-locked for the whole fault: no area is
        // destroyed or resized meanwhile, so the area needs no reference of
        // its own and its range holds.
        let tree = self.areas.read();
        let (start, end, slot) = self
            .slot_at(&tree, page.number())
            .ok_or(FaultReason::NoArea)?;
        let m = &self.shared.machine;
        // The slow part (for anonymous memory: zeroing a frame) runs before
        // the area's lock is taken, so faults on other pages of the area
        // proceed meanwhile. Only when the summary, read without the lock,
        // says the access is permitted and some page is not resident: a
        // protection fault, or one on a fully resident area, prepares
        // nothing.
        let (flags, resident) = slot.summary.rights_and_resident();
        let mut prepared = if flags.permits(access) && resident < end - start {
            slot.area.backend.prepare(m)
        } else {
            None
        };
        let result = self.resolve_locked(slot, page, access, &mut prepared, stats);
        if let Some(frame) = prepared {
            // Not used (the page was mapped meanwhile, or the fault failed):
            // never mapped, so no TLB can reach it.
            m.frames().release(frame);
        }
        result
    }

    /// The fault under the area's lock; takes the frame out of `prepared`
    /// if it maps it.
    fn resolve_locked(
        &self,
        slot: &Slot<M>,
        page: Page,
        access: Access,
        prepared: &mut Option<Frame>,
        stats: &Counters,
    ) -> Result<(), FaultReason> {
        let area = &slot.area;
        let mut st = slot.lock();
        debug_assert!(!st.dead && area.contains(page.number()));
        if st.attrs.contains(AreaAttrs::PARTIAL) {
            return Err(FaultReason::Partial);
        }
        if !st.flags.permits(access) {
            return Err(FaultReason::Access);
        }
        // What the backend sees: the area before this page.
        let info = area.info(&st);
        // One used-space search both checks and records the page. The used
        // space equals the page table whenever the area's lock is free: a
        // failure below takes the page out again before the lock goes.
        if st.used.insert(page, 1).is_err() {
            // Mapped by another CPU after this one missed: nothing to do.
            Stats::add(&stats.faults_raced, 1);
            return Ok(());
        }
        let result = self.map_new_page(area, &st, &info, page, access, prepared);
        match result {
            Ok(()) => {
                Stats::add(&stats.faults_resolved, 1);
            }
            Err(_) => {
                let _ = st.used.remove(page, 1);
            }
        }
        result
    }

    /// Gets the frame for `page` (the prepared one, the share record's, or
    /// the backend's) and maps it.
    fn map_new_page(
        &self,
        area: &Area<M>,
        st: &AreaState<M>,
        info: &AreaInfo,
        page: Page,
        access: Access,
        prepared: &mut Option<Frame>,
    ) -> Result<(), FaultReason> {
        let m = &self.shared.machine;
        let supply = |prepared: &mut Option<Frame>| match prepared.take() {
            Some(f) => Ok(f),
            None => area
                .backend
                .page_fault(m, info, page, access)
                .map_err(|_| FaultReason::NoMemory),
        };
        let frame = match &st.share {
            // Shared: every sharer maps the frame in the page map; the first
            // to touch a page puts it there (with a reference of its own).
            Some(share) if area.backend.refcounted() => {
                let mut sh = share.state.lock();
                let index = info.page_index(page);
                match sh.pagemap.get(&index) {
                    Some(&f) => {
                        m.frames().add_ref(f);
                        f
                    }
                    None => {
                        let f = supply(prepared)?;
                        m.frames().add_ref(f);
                        sh.pagemap.insert(index, f);
                        f
                    }
                }
            }
            _ => supply(prepared)?,
        };
        let flags = self.page_flags(st.flags);
        let mapped = self.with_pt(|pt| pt.map(m.memory(), m.frames(), page, frame, flags));
        if mapped.is_err() {
            if area.backend.refcounted() {
                m.frames().release(frame);
            }
            return Err(FaultReason::NoMemory);
        }
        Ok(())
    }
}
