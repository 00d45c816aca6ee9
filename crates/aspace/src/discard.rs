//! Giving pages back without changing the areas (Linux's
//! `madvise(MADV_DONTNEED)` and, with a choice of pages, `MADV_REMOVE`):
//! see [`AddressSpace::discard_range`] and the others.
//!
//! One step under the area tree's write lock, as every range operation
//! ([`crate::range`]): the checks and the heap's room first, then the pages
//! unmapped, one shootdown round, and only then their frames released.

use alloc::vec::Vec;

use crate::addr::{Frame, Page, PageRange, VirtAddr};
use crate::area::AreaEntry;
use crate::flags::AreaAttrs;
use crate::machine::Machine;
use crate::paging::PageTable;
use crate::reserve;
use crate::space::{AddressSpace, Areas};
use crate::tlb::ShootdownBatch;
use crate::{Error, Result};

/// The page numbers `[first, end)` of the byte range `(base, size)`.
fn page_numbers(&(base, size): &(VirtAddr, u64)) -> (u64, u64) {
    let first = base.as_u64() / crate::PAGE_SIZE;
    (first, first + size.div_ceil(crate::PAGE_SIZE))
}

impl<M: Machine> AddressSpace<M> {
    /// Gives back the pages of `[base, base + size)` (Linux
    /// `madvise(MADV_DONTNEED)`): every mapped page there is unmapped, one
    /// shootdown round runs, and then the frames are released. A private
    /// anonymous page reads as zero when touched again (a fresh frame); a
    /// page of a share record or of a file-like backend is fetched again
    /// from there (the record keeps its frame for the other sharers). A
    /// [late-reserving](crate::AreaFlags::LATE_RESERVE) area gives back the
    /// pages' reservation. Areas do not change.
    ///
    /// Refusals, before anything changed: bad range `InvalidArgument`; a
    /// page in no area, or a partial one, `NotFound` (Linux `ENOMEM`,
    /// after discarding the mapped parts).
    pub fn discard_range(&self, base: VirtAddr, size: u64) -> Result<()> {
        let range = Self::checked_range(base, size)?;
        let one = (range.start.number(), range.end().number());
        self.discard(core::iter::once(one), false)
    }

    /// [`discard_range`](Self::discard_range) of the pages that lie in
    /// areas in each of `ranges` (ascending and apart), holes skipped, all
    /// in one step with one shootdown round (Linux's
    /// `madvise(MADV_DONTNEED)` over several mappings with holes between
    /// them, where pages that are not the mappings' must stay). Refusals,
    /// before anything changed: a bad range, or ranges out of order or
    /// overlapping, `InvalidArgument`; a partial area in a range
    /// `NotFound`; the heap refusing room for cut runs `NoMemory`.
    pub fn discard_ranges(&self, ranges: &[(VirtAddr, u64)]) -> Result<()> {
        Self::check_discard_ranges(ranges)?;
        self.discard(ranges.iter().map(page_numbers), true)
    }

    /// [`discard_ranges`](Self::discard_ranges) of only the mapped pages
    /// of `ranges` whose frame `chosen` picks (asked of each, in order,
    /// with the area tree written: no fault maps or replaces a page
    /// meanwhile). For a layer that must take an object's frames out of
    /// every mapping that shows them but keep the pages a mapping made its
    /// own (Linux's `MADV_REMOVE` punching a hole in a shared file: the
    /// shared mappings lose those pages, a private one only the pages it
    /// still borrows from the file). `then` runs under the same lock once
    /// nothing can refuse any more, before the pages go: where the layer
    /// takes the frames out of its object, so that no fault in this space
    /// maps one of them again. Refusals as `discard_ranges`, before
    /// anything changed and `then` not called (the heap refusing room for
    /// the chosen runs too).
    pub fn discard_ranges_where(
        &self,
        ranges: &[(VirtAddr, u64)],
        mut chosen: impl FnMut(Page, Frame) -> bool,
        then: impl FnOnce(),
    ) -> Result<()> {
        Self::check_discard_ranges(ranges)?;
        let tree = self.areas.write();
        let mut picked: Vec<(u64, u64)> = Vec::new();
        for (s, e) in ranges.iter().map(page_numbers) {
            for (start, end, slot) in Self::areas_in(&tree, s, e) {
                self.pick(slot, s.max(start), e.min(end), &mut chosen, &mut picked)?;
            }
        }
        self.discard_in(&tree, picked.iter().copied(), true, then)
    }

    /// [`discard_ranges_where`](Self::discard_ranges_where) over every
    /// area of the space whose backend object
    /// ([`Backend::object_id`](crate::backend::Backend::object_id)) `shows`
    /// picks, found and discarded under one hold of the area tree's write
    /// lock: an area moved, cut or grown by another thread is found where
    /// it is then. For a layer taking an object's frames out of another
    /// process's mappings of it, which may change at any time. Refusals,
    /// before anything changed and `then` not called: a partial area of
    /// the object (being set up or torn down: try again) `NotFound`; the
    /// heap refusing room `NoMemory`.
    pub fn discard_object_pages_where(
        &self,
        mut shows: impl FnMut(usize) -> bool,
        mut chosen: impl FnMut(Page, Frame) -> bool,
        then: impl FnOnce(),
    ) -> Result<()> {
        let tree = self.areas.write();
        let mut picked: Vec<(u64, u64)> = Vec::new();
        for (start, end, slot) in tree.iter().filter(|(_, _, slot)| shows(slot.area.object())) {
            self.pick(slot, start, end, &mut chosen, &mut picked)?;
        }
        self.discard_in(&tree, picked.iter().copied(), true, then)
    }

    /// Adds to `picked` (page runs, ascending) the mapped pages of `slot`'s
    /// area in `[lo, hi)` whose frame `chosen` picks; `NotFound` if the
    /// area is partial, `NoMemory` if the heap refuses room for a run.
    fn pick(
        &self,
        slot: &AreaEntry<M>,
        lo: u64,
        hi: u64,
        chosen: &mut impl FnMut(Page, Frame) -> bool,
        picked: &mut Vec<(u64, u64)>,
    ) -> Result<()> {
        let m = self.machine();
        let st = slot.lock_read();
        if st.attrs.contains(AreaAttrs::PARTIAL) {
            return Err(Error::NotFound);
        }
        for n in st
            .used
            .iter()
            .flat_map(|r| r.start.number().max(lo)..r.end().number().min(hi))
        {
            let page = Page::from_number(n);
            let Some((frame, _)) = self.pt().translate(m.memory(), page) else {
                continue;
            };
            if !chosen(page, frame) {
                continue;
            }
            match picked.last_mut() {
                Some((_, last)) if *last == n => *last = n + 1,
                _ => {
                    picked.try_reserve(1).map_err(|_| Error::NoMemory)?;
                    picked.push((n, n + 1));
                }
            }
        }
        Ok(())
    }

    /// Checks `ranges` for [`discard_ranges`](Self::discard_ranges): each
    /// a good range, ascending and apart.
    fn check_discard_ranges(ranges: &[(VirtAddr, u64)]) -> Result<()> {
        let mut floor = 0;
        for &(base, size) in ranges {
            let r = Self::checked_range(base, size)?;
            if r.start.number() < floor {
                return Err(Error::InvalidArgument);
            }
            floor = r.end().number();
        }
        Ok(())
    }

    /// [`discard_range`](Self::discard_range) over the page ranges
    /// `ranges` (ascending, apart), holes allowed or not.
    fn discard(&self, ranges: impl Iterator<Item = (u64, u64)> + Clone, holes: bool) -> Result<()> {
        let tree = self.areas.write();
        self.discard_in(&tree, ranges, holes, || {})
    }

    /// [`discard`](Self::discard) in the written `tree`, calling `then`
    /// once nothing can refuse any more, before any page goes.
    fn discard_in(
        &self,
        tree: &Areas<M>,
        ranges: impl Iterator<Item = (u64, u64)> + Clone,
        holes: bool,
        then: impl FnOnce(),
    ) -> Result<()> {
        for (s, e) in ranges.clone() {
            if !holes {
                Self::check_covered(tree, s, e)?;
            } else if Self::areas_in(tree, s, e)
                .any(|(_, _, slot)| slot.lock_read().attrs.contains(AreaAttrs::PARTIAL))
            {
                return Err(Error::NotFound);
            }
        }
        // Room, taken before anything changes: per area, one more run for
        // each range meeting it (a run across a range's end is cut in two
        // there; so is one of the copy-on-write set); the runs of the
        // area with the most in one range.
        let mut most = 0;
        let mut meeting: Option<(u64, usize)> = None;
        let room = |tree: &Areas<M>, (start, k): (u64, usize)| -> Result<()> {
            let Some((_, slot)) = tree.get(start) else {
                return Ok(());
            };
            let mut st = slot.lock();
            if !st.used.try_reserve(k) || !(st.cow.is_empty() || st.cow.try_reserve(k)) {
                return Err(Error::NoMemory);
            }
            Ok(())
        };
        for (s, e) in ranges.clone() {
            for (start, _, slot) in Self::areas_in(tree, s, e) {
                most = most.max(slot.lock_read().used.overlap(s, e).0);
                meeting = match meeting {
                    Some((a, k)) if a == start => Some((a, k + 1)),
                    Some(done) => {
                        room(tree, done)?;
                        Some((start, 1))
                    }
                    None => Some((start, 1)),
                };
            }
        }
        if let Some(done) = meeting {
            room(tree, done)?;
        }
        let mut runs: Vec<PageRange> = Vec::new();
        runs.try_reserve_exact(most).map_err(|_| Error::NoMemory)?;
        then();
        let mut batch = ShootdownBatch::new();
        for (s, e) in ranges {
            for (start, end, slot) in Self::areas_in(tree, s, e) {
                let area = &slot.area;
                let mut st = slot.lock();
                let (lo, hi) = (s.max(start), e.min(end));
                runs.clear();
                runs.extend(st.used.iter().filter_map(|r| {
                    let a = r.start.number().max(lo);
                    let b = r.end().number().min(hi);
                    (a < b).then(|| PageRange::new(Page::from_number(a), b - a))
                }));
                for r in runs.drain(..) {
                    self.unmap_used(&slot.area, &mut st, r, &mut batch);
                    let less =
                        reserve::per_page(&*area.backend, st.flags, area.index(r.start), r.count);
                    self.shared.reserve.release(less);
                    area.sub_reserved(less);
                }
            }
        }
        batch.complete(&self.shared, self.id());
        Ok(())
    }
}
