//! The page-fault handler (HelenOS `as_page_fault`).

use crate::addr::VirtAddr;
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
    /// One area lookup and one lock; a page another CPU mapped in the
    /// meantime returns `Ok` without touching the backend.
    pub fn page_fault(&self, addr: VirtAddr, access: Access, in_user_copy: bool) -> FaultOutcome {
        let stats = self.shared.counters();
        Stats::add(&stats.faults, 1);
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
        let area = self.lookup(addr).ok_or(FaultReason::NoArea)?;
        let mut st = area.state.lock();
        if st.dead || !area.contains(page.number()) {
            // Destroyed or shrunk since the lookup.
            return Err(FaultReason::NoArea);
        }
        if st.attrs.contains(AreaAttrs::PARTIAL) {
            return Err(FaultReason::Partial);
        }
        if !st.flags.permits(access) {
            return Err(FaultReason::Access);
        }
        if st.used.contains(page) {
            // Mapped by another CPU after this one missed (the used space
            // equals the page table under the area's lock): nothing to do.
            Stats::add(&stats.faults_raced, 1);
            return Ok(());
        }
        let m = &self.shared.machine;
        let info = area.info(&st);
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
                        let f = area
                            .backend
                            .page_fault(m, &info, page, access)
                            .map_err(|_| FaultReason::NoMemory)?;
                        m.frames().add_ref(f);
                        sh.pagemap.insert(index, f);
                        f
                    }
                }
            }
            _ => area
                .backend
                .page_fault(m, &info, page, access)
                .map_err(|_| FaultReason::NoMemory)?,
        };
        let flags = self.page_flags(st.flags);
        let mapped = self.with_pt(|pt| pt.map(m.memory(), m.frames(), page, frame, flags));
        if mapped.is_err() {
            if area.backend.refcounted() {
                m.frames().release(frame);
            }
            return Err(FaultReason::NoMemory);
        }
        st.used
            .insert(page, 1)
            .expect("an unmapped page is not in used space");
        Stats::add(&stats.faults_resolved, 1);
        Stats::add(&stats.pages_mapped, 1);
        Ok(())
    }
}
