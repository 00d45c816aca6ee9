//! Copy-on-write pages and [`System::fork`](crate::System::fork).
//!
//! An area keeps, beside its used space, the set of its used pages that
//! are *copy-on-write* (its `cow` set, which [`AddressSpace::cow_pages`]
//! shows): their frames may be mapped by other spaces too, so they are
//! mapped without write access whatever the area's rights. A write fault
//! on such a page (see [`crate::fault`]) copies it: a new frame gets the old
//! one's bytes, the old translation is removed and shot down, the new frame
//! is mapped with the area's rights, and only then is the old frame's
//! reference released. A read fault copies nothing (the page is mapped
//! readable already).
//!
//! The set follows the used space through every operation: a split cuts
//! it with the used space, a merge joins both parts', a move shifts it, an
//! unmap, a discard or a shrinking resize drops the pages that leave; a
//! change of rights (`area_change_flags`, `protect_range`, `move_range`)
//! maps copy-on-write pages back without write access. A share of an area
//! holding copy-on-write pages first copies every one of them (all frames
//! allocated before anything changes, `NoMemory` otherwise), so a share
//! record never holds a frame another space still maps copy-on-write.
//!
//! A backend may also *lend* a frame on a fault
//! ([`Backend::lends`](crate::backend::Backend::lends): a file's cached
//! page in a private mapping): the fault handler maps it read-only and puts
//! the page in the set, so the first write copies it like any other.
//!
//! A write to a copy-on-write page whose frame has no other reference
//! left (the other side wrote its own copy, or went away) takes the frame
//! over instead of copying it, if the allocator can tell
//! ([`FrameAllocator::ref_count`]); otherwise it copies, and the release
//! frees the old frame.

use alloc::vec::Vec;

use crate::addr::{Frame, Page, PageRange, VirtAddr};
use crate::area::{Area, AreaState};
use crate::backend::BackendCaps;
use crate::fault::FaultReason;
use crate::flags::PageFlags;
use crate::internals::used_space::UsedSpace;
use crate::machine::{Cpus, FrameAllocator, Machine, PhysMemory};
use crate::paging::PageTable;
use crate::reserve;
use crate::space::AddressSpace;
use crate::stats::{Counters, Stats};
use crate::tlb::ShootdownBatch;
use crate::{Error, Result};

/// Cuts `run` into its maximal parts inside and outside `set` and hands
/// each to `f` in order, with whether it lies in the set. Allocates
/// nothing; one search per part.
pub(crate) fn each_part(set: &UsedSpace, run: PageRange, mut f: impl FnMut(PageRange, bool)) {
    let (mut at, end) = (run.start.number(), run.end().number());
    while at < end {
        let Some(inside) = set.first_in(at, end) else {
            f(PageRange::new(Page::from_number(at), end - at), false);
            return;
        };
        let from = inside.start.number();
        if from > at {
            f(PageRange::new(Page::from_number(at), from - at), false);
        }
        f(inside, true);
        at = inside.end().number();
    }
}

/// Takes the pages of `[lo, hi)` out of `set`, where they are in it.
/// Allocates nothing, unless an interval runs across both `lo` and `hi`
/// (cut in two at `hi`): reserve that with
/// [`UsedSpace::try_reserve_cut`] first.
pub(crate) fn remove_pages(set: &mut UsedSpace, lo: u64, hi: u64) {
    while let Some(r) = set.first_in(lo, hi) {
        let removed = set.remove(r.start, r.count);
        debug_assert!(removed.is_ok(), "a part of one run");
    }
}

/// Adds every page of `from` to `into` (a merge; the sets are disjoint).
/// Allocates nothing if `into` has room for `from.intervals()` more
/// intervals ([`UsedSpace::try_reserve`]).
pub(crate) fn absorb(into: &mut UsedSpace, from: UsedSpace) {
    for r in from.iter() {
        let added = into.insert(r.start, r.count);
        debug_assert!(added.is_ok(), "areas are disjoint");
    }
}

/// How many intervals [`moved_into`] fills in: those of `set` meeting
/// `[old, old + keep)`.
pub(crate) fn moved_runs(set: &UsedSpace, old: u64, keep: u64) -> usize {
    set.overlap(old, old.saturating_add(keep)).0
}

/// Puts the pages of `set` in `[old, old + keep)` into `out` (an empty
/// set), moved to start at `new` (a moved range; pages past `keep` are
/// dropped). Allocates nothing if `out` has room for
/// [`moved_runs`]`(set, old, keep)` intervals.
pub(crate) fn moved_into(set: &UsedSpace, old: u64, new: u64, keep: u64, out: &mut UsedSpace) {
    let hi = old.saturating_add(keep);
    let mut at = old;
    while let Some(r) = set.first_in(at, hi) {
        let to = Page::from_number(new + (r.start.number() - old));
        let added = out.insert(to, r.count);
        debug_assert!(added.is_ok(), "runs are disjoint");
        at = r.end().number();
    }
}

impl<M: Machine> AddressSpace<M> {
    /// The copy-on-write pages of the area containing `addr` (a copy), or
    /// `None` if no area is there.
    pub fn cow_pages(&self, addr: VirtAddr) -> Option<UsedSpace> {
        let tree = self.read_areas();
        self.area_at(&tree, addr.page().number())
            .map(|slot| slot.lock().cow.clone())
    }

    /// A write fault on `page`, copy-on-write in the area locked as `st`
    /// (the write permitted): [`cow_copy`](Self::cow_copy) into the
    /// prepared frame if the fault prepared one. Allocates no heap memory.
    /// Out of frames: `NoMemory`, nothing changed.
    pub(crate) fn cow_write(
        &self,
        st: &mut AreaState<M>,
        page: Page,
        prepared: &mut Option<Frame>,
        stats: &Counters,
    ) -> core::result::Result<(), FaultReason> {
        self.cow_copy(st, page, prepared.take())
            .map_err(|_| FaultReason::NoMemory)?;
        Stats::add(&stats.faults_resolved, 1);
        Ok(())
    }

    /// Gives copy-on-write `page` of the area locked as `st` a frame of its
    /// own: a new frame (`frame` if given, else one from the allocator) gets
    /// the old one's bytes, the read-only translation is removed and shot
    /// down, the copy is mapped with the area's rights, the page leaves the
    /// set, and the old frame's reference is released after the flush. A
    /// frame nobody else holds is taken over instead (`frame` released).
    /// Out of frames or heap: `NoMemory`, nothing changed (`frame` is
    /// released).
    pub(crate) fn cow_copy(
        &self,
        st: &mut AreaState<M>,
        page: Page,
        frame: Option<Frame>,
    ) -> Result<()> {
        let m = self.machine();
        let pt = self.pt();
        let Some((old, _)) = pt.translate(m.memory(), page) else {
            debug_assert!(false, "copy-on-write page {page:?} not mapped");
            if let Some(f) = frame {
                m.frames().release(f);
            }
            return Err(Error::NotFound);
        };
        // The heap first: taking the page out of the middle of a run cuts
        // it in two.
        if !st.cow.try_reserve_cut(page.add(1)) {
            if let Some(f) = frame {
                m.frames().release(f);
            }
            return Err(Error::NoMemory);
        }
        if m.frames().ref_count(old) == Some(1) {
            if let Some(f) = frame {
                m.frames().release(f);
            }
            return self.cow_take_over(st, page, old);
        }
        let new = match frame {
            Some(f) => f,
            None => m.frames().alloc().ok_or(Error::NoMemory)?,
        };
        // Every mapping of `old` that fork or share made is read-only
        // (copy-on-write everywhere, or an image's read-only frame); a
        // frame a backend lends (`Backend::lends`, a file's page) may be
        // written through another, shared mapping meanwhile: the copy then
        // has the bytes of one moment, as a private file mapping's does.
        m.memory().copy_frame(new, old);
        let Some(u) = pt.unmap(m.memory(), page) else {
            m.frames().release(new);
            return Err(Error::NotFound);
        };
        // The old translation leaves every TLB before the copy is mapped,
        // so no CPU reads the old frame once this one wrote the new.
        let mut batch = ShootdownBatch::new();
        batch.defer(u, false);
        batch.complete(&self.shared, self.id());
        let flags = self.page_flags(st.flags);
        self.sync_if_exec(new, flags);
        if pt.map(m.memory(), m.frames(), page, new, flags).is_err() {
            // Tables stay after an unmap, so this does not happen; if it
            // did, the old frame goes back as it was.
            let back = pt.map(m.memory(), m.frames(), page, old, flags - PageFlags::WRITE);
            debug_assert!(back.is_ok(), "mapping back into a kept table");
            m.frames().release(new);
            return Err(Error::NoMemory);
        }
        let removed = st.cow.remove(page, 1);
        debug_assert!(removed.is_ok());
        // Flushed above: the old frame's reference may go now.
        let mut release = ShootdownBatch::new();
        release.release_later_or_flush(old, &self.shared, self.id());
        release.complete(&self.shared, self.id());
        self.count_copies(1);
        Ok(())
    }

    /// Makes copy-on-write `page` (of the area locked as `st`) writable in
    /// its own frame `old`, which has no other reference: nobody else maps
    /// it, and nobody can take a new reference meanwhile (that needs this
    /// area's lock or this space's tree written: a share, a fork, a pager's
    /// answer). The read-only translation is shot down before the writable
    /// one goes in, as for a copy. The caller reserved the cut of the set
    /// at the page's end.
    fn cow_take_over(&self, st: &mut AreaState<M>, page: Page, old: Frame) -> Result<()> {
        let m = self.machine();
        let pt = self.pt();
        let Some(u) = pt.unmap(m.memory(), page) else {
            return Err(Error::NotFound);
        };
        let mut batch = ShootdownBatch::new();
        batch.defer(u, false);
        batch.complete(&self.shared, self.id());
        let flags = self.page_flags(st.flags);
        if pt.map(m.memory(), m.frames(), page, old, flags).is_err() {
            // Tables stay after an unmap, so this does not happen.
            let back = pt.map(m.memory(), m.frames(), page, old, flags - PageFlags::WRITE);
            debug_assert!(back.is_ok(), "mapping back into a kept table");
            return Err(Error::NoMemory);
        }
        let removed = st.cow.remove(page, 1);
        debug_assert!(removed.is_ok());
        Ok(())
    }

    /// Adds `n` to the `cow_copies` counter of this CPU's shard.
    fn count_copies(&self, n: u64) {
        let cpu = self.machine().cpus().current_cpu();
        Stats::add(&self.shared.stats.shard(cpu).cow_copies, n);
    }

    /// Copies every copy-on-write page of `area` (locked as `st`) into a
    /// frame of its own, mapped with the area's rights: what a share does
    /// first. Every frame is allocated before anything changes (`NoMemory`
    /// otherwise); the old translations go in one shootdown round, and the
    /// old frames' references after it.
    pub(crate) fn cow_break_all(&self, area: &Area<M>, st: &mut AreaState<M>) -> Result<()> {
        if st.cow.is_empty() {
            return Ok(());
        }
        let m = self.machine();
        let pt = self.pt();
        // The heap first (three lists of one entry per page), then frames.
        let n = usize::try_from(st.cow.pages()).map_err(|_| Error::NoMemory)?;
        let mut pages: Vec<Page> = Vec::new();
        let mut fresh: Vec<Frame> = Vec::new();
        let mut copied: Vec<(Page, Frame)> = Vec::new();
        if pages.try_reserve_exact(n).is_err()
            || fresh.try_reserve_exact(n).is_err()
            || copied.try_reserve_exact(n).is_err()
        {
            return Err(Error::NoMemory);
        }
        pages.extend(st.cow.iter_pages());
        for _ in &pages {
            match m.frames().alloc() {
                Some(f) => fresh.push(f),
                None => {
                    for f in fresh {
                        m.frames().release(f);
                    }
                    return Err(Error::NoMemory);
                }
            }
        }
        let mut batch = ShootdownBatch::new();
        for (&page, &new) in pages.iter().zip(&fresh) {
            let Some(u) = pt.unmap(m.memory(), page) else {
                debug_assert!(false, "copy-on-write page {page:?} not mapped");
                m.frames().release(new);
                continue;
            };
            m.memory().copy_frame(new, u.frame());
            let counted = area.backend.caps().contains(BackendCaps::REFCOUNTED);
            batch.defer_or_flush(u, counted, &self.shared, self.id());
            copied.push((page, new));
        }
        batch.complete(&self.shared, self.id());
        self.count_copies(copied.len() as u64);
        st.cow = UsedSpace::new();
        let flags = self.page_flags(st.flags);
        for (page, new) in copied {
            self.sync_if_exec(new, flags);
            if pt.map(m.memory(), m.frames(), page, new, flags).is_err() {
                // Tables stay after an unmap, so this does not happen; if
                // it did, the page stops being resident.
                let _ = st.used.remove(page, 1);
                m.frames().release(new);
                let less = reserve::per_page(&*area.backend, st.flags, area.index(page), 1);
                self.shared.reserve.release(less);
                area.sub_reserved(less);
            }
        }
        Ok(())
    }
}
