//! The fault on a page of a [user pager](crate::backend::UserBackend)'s
//! area, in two phases around a wait that holds no lock.
//!
//! 1. **Ask.** Area tree read-locked, then the area's lock: the area must
//!    be ready and permit the access, and the page must not be mapped yet.
//!    The page's request in flight is joined, or a new one made. Both locks
//!    are dropped, and only then is a new request sent to the pager.
//! 2. **Wait.** Until the answer arrives, the thread sleeps, if the machine
//!    has a [`Sleep`](crate::machine::Sleep) ([`Machine::pager_sleep`]: the
//!    answer wakes it), or else polls, calling [`Machine::relax`] (a yield
//!    on a kernel, so the pager task runs). No lock is held: faults on
//!    other pages and areas, and operations that write the area tree,
//!    proceed.
//! 3. **Map.** The locks are taken again and everything is checked anew:
//!    the area may have been destroyed (another area may even sit at the
//!    address now), shrunk past the page, or lost the right to the access.
//!    The first fault back takes the answer's frame (with the reference the
//!    answer took) and maps it, or, if the area changed, releases it (so
//!    nothing leaks) and starts over from phase 1, which judges the area as
//!    it is now (a few rounds at most). Faults that joined the request find
//!    the page mapped, or fail with the same error.
//!
//! Why no blocking call in [`Pager`]: the first fault and the ones that
//! join its request wait for the same answer, which the core records
//! lock-free in the request's slot. Waiting on that slot needs from the
//! kernel only a way to let other work run (`Machine::relax`) or, better,
//! a sleep with a wake counter (`Sleep`: the core wakes it after it
//! records an answer), so the core keeps no scheduler's wait queues and a
//! kernel wires a pager with two system calls and a queue.
//!
//! [`Pager`]: crate::backend::Pager

use alloc::sync::Arc;

use crate::addr::{Page, VirtAddr};
use crate::backend::user::{Answer, Owner, Slot, UserBackend};
use crate::backend::{Pager, PagerIds};
use crate::fault::FaultReason;
use crate::flags::{Access, AreaAttrs, AreaFlags};
use crate::internals::try_arc::TryArc;
use crate::internals::used_space::UsedSpaceError;
use crate::machine::{Cpus, FrameAllocator, Machine};
use crate::paging::PageTable;
use crate::space::AddressSpace;
use crate::stats::{Counters, Stats};
use crate::{Error, Result};

/// How often one fault starts over (the area changed while it waited, or
/// the frame it waited for was taken by a fault that could not map it)
/// before it gives up.
const ROUNDS: usize = 4;

/// Why phase 3 did not map the page.
enum Unmapped {
    /// A final answer.
    Fail(FaultReason),
    /// The area changed while the fault waited (or the frame went to a
    /// fault that could not map it): start over from phase 1, which judges
    /// the area as it is now; `reason` if this was the last round.
    Retry(FaultReason),
}

/// What phase 1 found.
enum Asked<M: Machine> {
    /// Nothing to wait for: the page is mapped.
    Mapped,
    /// Wait for `slot`, then map in `area` at page `index`.
    Wait {
        area: TryArc<crate::area::Area<M>>,
        slot: TryArc<Slot>,
        index: u64,
    },
}

impl<M: Machine> AddressSpace<M> {
    /// Creates an area whose pages the pager task behind `pager` supplies
    /// (HelenOS `as_area_create` with `user_backend`). `pager_space` is the
    /// pager's own address space, the one it answers from; `ids` go with
    /// every request. Refuses what [`area_create`](Self::area_create)
    /// refuses, and a pager space of another system with `InvalidArgument`.
    pub fn area_create_paged(
        &self,
        base: VirtAddr,
        size: u64,
        flags: AreaFlags,
        pager: Arc<dyn Pager>,
        pager_space: &AddressSpace<M>,
        ids: PagerIds,
    ) -> Result<VirtAddr> {
        if !TryArc::ptr_eq(&self.shared, &pager_space.shared) {
            return Err(Error::InvalidArgument);
        }
        let backend = UserBackend::<M>::new(pager, ids, Owner::of(pager_space));
        self.area_create_with(
            base,
            size,
            flags,
            AreaAttrs::empty(),
            TryArc::try_backend(backend)?,
        )
    }

    /// Requests in flight for the user-pager area containing `addr`: 0 when
    /// there is none (or the area has another backend).
    pub fn pager_requests_in_flight(&self, addr: VirtAddr) -> usize {
        let tree = self.read_areas();
        self.area_at(&tree, addr.page().number())
            .and_then(|slot| user_backend::<M>(&slot.area))
            .map_or(0, |b| b.in_flight())
    }

    /// Resolves a fault on `page` of a user-pager area (see the module's
    /// documentation). Called with no lock held.
    pub(crate) fn resolve_paged(
        &self,
        page: Page,
        access: Access,
        stats: &Counters,
    ) -> core::result::Result<(), FaultReason> {
        for round in 1..=ROUNDS {
            let (area, slot, index) = match self.ask(page, access)? {
                Asked::Mapped => {
                    Stats::add(&stats.faults_raced, 1);
                    self.forget_local(page);
                    return Ok(());
                }
                Asked::Wait { area, slot, index } => (area, slot, index),
            };
            let m = &self.shared.machine;
            // The sleep the answer wakes: the one the request was made with.
            let sleep = slot.sleep();
            let answer = loop {
                // The token before the look, so an answer after the look
                // wakes the sleep (see `Sleep`).
                let token = sleep.map(|s| s.token());
                if let Some(a) = slot.answer() {
                    break a;
                }
                match (sleep, token) {
                    (Some(s), Some(t)) => s.sleep(t),
                    _ => m.relax(),
                }
            };
            slot.leave();
            match self.map_answer(&area, &slot, index, page, access, answer, stats) {
                Err(Unmapped::Retry(reason)) if round == ROUNDS => return Err(reason),
                Err(Unmapped::Retry(_)) => continue,
                Err(Unmapped::Fail(reason)) => return Err(reason),
                Ok(()) => return Ok(()),
            }
        }
        Err(FaultReason::NoMemory)
    }

    /// Phase 1: checks under both locks, joins or makes the page's request,
    /// and sends a new one after dropping the locks.
    fn ask(&self, page: Page, access: Access) -> core::result::Result<Asked<M>, FaultReason> {
        let cpu = self.shared.machine.cpus().current_cpu();
        let (pager, request, asked) = {
            let tree = self.areas.read(cpu);
            let (_, _, entry) = self
                .entry_at_on_cpu(&tree, page.number(), cpu)
                .ok_or(FaultReason::NoArea)?;
            let area = entry.area.clone();
            // Another kind of area took this one's place since the caller
            // looked: `page_fault` tries a fault that failed for lack of
            // memory again (a bounded number of times) from the start, which
            // resolves it the ordinary way.
            let backend = user_backend::<M>(&area).ok_or(FaultReason::NoMemory)?;
            let st = entry.lock();
            if st.attrs.contains(AreaAttrs::PARTIAL) {
                return Err(FaultReason::Partial);
            }
            if !st.flags.permits(access) {
                return Err(FaultReason::Access);
            }
            if st.used.contains(page) {
                return Ok(Asked::Mapped);
            }
            let index = page.pages_since(area.base());
            let sleep = self.shared.machine.pager_sleep();
            let (slot, request) = backend
                .join(index, access, sleep)
                .ok_or(FaultReason::NoMemory)?;
            let pager = backend.pager.clone();
            drop(st);
            (pager, request, Asked::Wait { area, slot, index })
        };
        // No lock held: the pager may take its time, or answer at once.
        if let Some(request) = request {
            pager.send(request);
        }
        Ok(asked)
    }

    /// Phase 3: maps the answer if the area still wants it.
    #[allow(clippy::too_many_arguments)]
    fn map_answer(
        &self,
        area: &TryArc<crate::area::Area<M>>,
        slot: &TryArc<Slot>,
        index: u64,
        page: Page,
        access: Access,
        answer: Answer,
        stats: &Counters,
    ) -> core::result::Result<(), Unmapped> {
        let m = &self.shared.machine;
        let backend = user_backend::<M>(area).expect("checked in phase 1");
        // Later faults on the page ask anew, whatever happens here. Where the
        // area is still there, the request leaves the table under the area's
        // lock, so a fault that finds the page unmapped there (phase 1 looks
        // under that lock too) still joins it until the page is mapped.
        let give_back = || {
            if let Some(f) = slot.take() {
                m.frames().release(f);
            }
        };
        let failed = match answer {
            Answer::Failed => Some(FaultReason::PagerError),
            Answer::Gone => Some(FaultReason::PagerGone),
            Answer::Frame => None,
        };
        if let Some(reason) = failed {
            backend.retire(index, slot);
            return Err(Unmapped::Fail(reason));
        }
        let cpu = m.cpus().current_cpu();
        let tree = self.areas.read(cpu);
        let entry = self
            .entry_at_on_cpu(&tree, page.number(), cpu)
            .filter(|(_, _, e)| TryArc::ptr_eq(&e.area, area));
        let Some((_, _, entry)) = entry else {
            // Destroyed (or shrunk past the page) while the pager worked;
            // another area may be there now.
            backend.retire(index, slot);
            give_back();
            return Err(Unmapped::Retry(FaultReason::NoArea));
        };
        let mut st = entry.lock();
        backend.retire(index, slot);
        if st.attrs.contains(AreaAttrs::PARTIAL) {
            give_back();
            return Err(Unmapped::Retry(FaultReason::Partial));
        }
        if !st.flags.permits(access) {
            // The rights changed while the pager worked.
            give_back();
            return Err(Unmapped::Retry(FaultReason::Access));
        }
        // The page carries only the rights its pager had on it: an area
        // with more is refused it, and one with fewer can never get more.
        let lent = slot.rights();
        if !lent.contains(st.flags & AreaFlags::RIGHTS) {
            give_back();
            return Err(Unmapped::Fail(FaultReason::PagerError));
        }
        match st.used.insert(page, 1) {
            Ok(()) => {}
            Err(UsedSpaceError::NoMemory) => {
                give_back();
                return Err(Unmapped::Fail(FaultReason::NoMemory));
            }
            Err(_) => {
                // Mapped by a fault that joined the same request.
                give_back();
                Stats::add(&stats.faults_raced, 1);
                return Ok(());
            }
        }
        let Some(frame) = slot.take() else {
            // Another fault took the frame and could not map it.
            let _ = st.used.remove(page, 1);
            return Err(Unmapped::Retry(FaultReason::NoMemory));
        };
        let flags = self.page_flags(st.flags);
        self.sync_if_exec(frame, flags);
        if self
            .pt()
            .map(m.memory(), m.frames(), page, frame, flags)
            .is_err()
        {
            let _ = st.used.remove(page, 1);
            m.frames().release(frame);
            return Err(Unmapped::Fail(FaultReason::NoMemory));
        }
        st.max_flags &= lent | !AreaFlags::RIGHTS;
        Stats::add(&stats.faults_resolved, 1);
        Ok(())
    }
}

/// The user-pager backend of `area`, if that is its backend.
pub(crate) fn user_backend<M: Machine>(area: &crate::area::Area<M>) -> Option<&UserBackend<M>> {
    area.backend.as_any()?.downcast_ref::<UserBackend<M>>()
}
