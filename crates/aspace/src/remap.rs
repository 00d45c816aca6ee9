//! Moving a range of pages to another place (Linux's `mremap` when the
//! pages move): see [`AddressSpace::move_range`] and
//! [`AddressSpace::move_range_over`].
//!
//! The resident pages move by mapping their frames at the new place, page
//! table entry by entry, and the old translations are shot down in one
//! round: no data is copied. Everything that can refuse comes first (the
//! checks, the heap, the reservation of growth); of the rest only the page
//! tables of the new place can run out of frames, and then everything moves
//! back before anything else changed.

use alloc::vec::Vec;
use core::sync::atomic::Ordering::{Relaxed, Release};

use crate::addr::{Page, VirtAddr};
use crate::area::AreaEntry;
use crate::backend::BackendCaps;
use crate::flags::{AreaFlags, PageFlags};
use crate::internals::used_space::UsedSpace;
use crate::machine::Machine;
use crate::paging::{PageTable, Unmapped};
use crate::replace::Replacement;
use crate::reserve;
use crate::space::AddressSpace;
use crate::tlb::ShootdownBatch;
use crate::{Error, Result};

mod one;

/// Areas not in the tree yet, each with the pages `[start, end)` it goes on.
type Placed<M> = Vec<(u64, u64, AreaEntry<M>)>;

/// New areas a move puts in besides the moved ones, the caller's.
#[derive(Clone, Copy)]
enum Fresh<'a, M: Machine> {
    /// None.
    No,
    /// The growth, with its checked flags.
    Growth(&'a Replacement<M>, AreaFlags),
    /// The areas left at the old range (with `leave`), in place of those
    /// the moved ones would leave.
    Left(&'a [Replacement<M>]),
}

/// How [`AddressSpace::move_state`] moves an area.
#[derive(Clone, Copy)]
struct Moved {
    /// Pages on (wrapping: back) the area goes.
    delta: u64,
    /// Its first pages that move; used pages past them are unmapped.
    keep: u64,
    /// Its size after the move, in pages.
    pages: u64,
    /// Pages of growth reserved for it already.
    more: u64,
}

impl<M: Machine> AddressSpace<M> {
    /// Unmaps the mapped pages of `slot`'s area in `[lo, hi)` into
    /// `replaced` (which has room), each with its rights and whether its
    /// frame's reference goes with it, to be put back or released.
    fn take_aside(
        pt: &M::PageTable,
        mem: &M::Memory,
        slot: &AreaEntry<M>,
        lo: u64,
        hi: u64,
        replaced: &mut Vec<(Unmapped, PageFlags, bool)>,
    ) {
        let st = slot.lock();
        let release = slot.area.backend.caps().contains(BackendCaps::REFCOUNTED);
        for r in st.used.iter() {
            let (a, b) = (r.start.number().max(lo), r.end().number().min(hi));
            for n in a..b {
                let page = Page::from_number(n);
                let Some((_, flags)) = pt.translate(mem, page) else {
                    debug_assert!(false, "used page {page:?} not mapped");
                    continue;
                };
                if let Some(u) = pt.unmap(mem, page) {
                    replaced.push((u, flags, release));
                }
            }
        }
    }

    /// Moves the pages `[old, old + old_size)` to `new` and makes them
    /// `new_size` bytes (Linux `mremap` with `MREMAP_MAYMOVE |
    /// MREMAP_FIXED`): the areas are split at the ends of the old range,
    /// the parts between move, and their resident pages move by mapping
    /// their frames at the new place (page-table work per resident page,
    /// no data copied), the old translations shot down in one round. Then
    /// the last part is resized: growth reserves memory as a resize does,
    /// shrinking unmaps the pages past the new end (in the same round).
    /// Each moved area keeps everything else (backend, offset, share
    /// record, rights), is merged with compatible neighbours at its new
    /// place, and keeps its guard page only if it was its area's lower end.
    ///
    /// The old range may span several areas and the holes between them
    /// (Linux moves a mapping the core keeps as several areas, guard pages
    /// in it, and since 6.17 a same-size range over several mappings): they
    /// all move by the same distance, holes staying holes, and a growth
    /// goes to the area holding the range's last page. Several areas do
    /// not shrink (but over a new range, [`move_range_over`](Self::move_range_over)),
    /// and those after the first may not have guard pages nor grow down.
    ///
    /// Refusals, each before anything changed: bad ranges
    /// `InvalidArgument`; no area at the old range's start (or a partial
    /// one), a part past the only area there, or a resize of a range
    /// ending in a hole, `NotFound` (Linux `EFAULT`); a new range that
    /// overlaps the old one or anything else, or lies outside this space's
    /// part, `AddressNotAvailable`; a change of size of a shared area or of
    /// a backend that cannot resize, an area of a user-space pager, or
    /// several areas that cannot move together (above), `NotSupported`;
    /// growth past the commit limit, or page tables for the new place that
    /// cannot be allocated, `NoMemory`. In that last case the intermediate
    /// page tables allocated so far stay (empty, as tables do after any
    /// unmap, until the space goes); nothing else changed.
    pub fn move_range(
        &self,
        old: VirtAddr,
        old_size: u64,
        new: VirtAddr,
        new_size: u64,
    ) -> Result<()> {
        self.move_pages(old, old_size, new, new_size, false, false, Fresh::No)
    }

    /// [`move_range`](Self::move_range) of `old_size` bytes to `new` (with
    /// `over`, [`move_range_over`](Self::move_range_over)) that grows by a
    /// new area rather than by the last moved area growing: `growth`, which
    /// must start where the moved range ends at its new place (`new +
    /// old_size`, rounded up to a page), goes in empty in the same step,
    /// reserving as a new area
    /// does (Linux's `mremap` growing a mapping whose top page is a guard
    /// page: what it gains is ordinary memory of the mapping, which the
    /// caller's backend for it gives, not more guard). Refusals, before
    /// anything changed: those of the move (but the last area need not be
    /// able to resize); `growth` not starting there, empty, with guard
    /// pages or with bad flags `InvalidArgument` (`NotSupported` for a
    /// growing-down one its backend cannot grow); its record or its
    /// reservation refused `NoMemory`.
    pub fn move_range_growing(
        &self,
        old: VirtAddr,
        old_size: u64,
        new: VirtAddr,
        growth: &Replacement<M>,
        over: bool,
    ) -> Result<()> {
        let flags = Self::placement_flags(growth.flags, &*growth.backend)?;
        let grown = Self::checked_range(growth.base, growth.size)?;
        // The moved range's size in whole pages (the move rounds it up).
        // (A range of every page overflows in bytes: refused.)
        let moved = Self::checked_range(old, old_size)?
            .count
            .checked_mul(crate::PAGE_SIZE)
            .ok_or(Error::InvalidArgument)?;
        if flags.guard_pages() > 0 || Some(growth.base.as_u64()) != new.as_u64().checked_add(moved)
        {
            return Err(Error::InvalidArgument);
        }
        let new_size = grown
            .count
            .checked_mul(crate::PAGE_SIZE)
            .and_then(|g| moved.checked_add(g))
            .ok_or(Error::InvalidArgument)?;
        self.move_pages(
            old,
            old_size,
            new,
            new_size,
            over,
            false,
            Fresh::Growth(growth, flags),
        )
    }

    /// [`move_range`](Self::move_range) of `size` bytes that leaves the old
    /// range mapped, empty (Linux `mremap` with `MREMAP_DONTUNMAP`): the
    /// resident pages move, and a new area takes the old range with what
    /// the moved part had (backend and its offset, rights, the most rights
    /// it may get, attributes) but no page, reserving memory as a new area
    /// does. With `over`, the new
    /// range's contents are replaced, as [`move_range_over`](Self::move_range_over)
    /// replaces them. Over several areas, each moved part leaves an area of
    /// its own (holes stay holes). Refusals, before anything changed: those
    /// of the move; a shared area, or one with a guard page or growing
    /// down, `NotSupported`; the old range's new reservation past the
    /// commit limit `NoMemory`.
    pub fn move_range_leaving(
        &self,
        old: VirtAddr,
        size: u64,
        new: VirtAddr,
        over: bool,
    ) -> Result<()> {
        self.move_pages(old, size, new, size, over, true, Fresh::No)
    }

    /// [`move_range_leaving`](Self::move_range_leaving) that leaves the
    /// caller's areas `left` at the old range rather than areas like the
    /// moved parts (Linux's `MREMAP_DONTUNMAP` of a mapping with guard
    /// pages: the guard pages go with the pages, and the old range stays
    /// ordinary, empty memory of the mapping, which the caller's backends
    /// give). `left` must be in ascending order and cover exactly what the
    /// areas of the old range hold there (its holes stay holes), each part
    /// without guard pages; each reserves as a new area does. Refusals, before
    /// anything changed: those of `move_range_leaving`; `left` not as said,
    /// or a part with bad flags or growing down, `InvalidArgument`
    /// (`NotSupported` for a growing-down part its backend cannot grow).
    pub fn move_range_leaving_as(
        &self,
        old: VirtAddr,
        size: u64,
        new: VirtAddr,
        over: bool,
        left: &[Replacement<M>],
    ) -> Result<()> {
        for p in left {
            let flags = Self::placement_flags(p.flags, &*p.backend)?;
            Self::checked_range(p.base, p.size)?;
            if flags.guard_pages() > 0 {
                return Err(Error::InvalidArgument);
            }
        }
        self.move_pages(old, size, new, size, over, true, Fresh::Left(left))
    }

    /// [`move_range`](Self::move_range) onto a new range that may hold
    /// areas: what lies there is replaced in the same step, as
    /// [`unmap_range`](Self::unmap_range) would remove it (areas across its
    /// ends split there, holes fine), but for what lies under the holes
    /// between several areas moved, which stays (as Linux moves each
    /// mapping by itself); one shootdown round for both the old
    /// translations and the replaced ones (Linux `mremap` with
    /// `MREMAP_FIXED` onto mappings). Refusals, each before anything
    /// changed, as `move_range`'s, but an area of the new range that cannot
    /// be split at its ends is `NotSupported` or `NotFound` (as for
    /// `unmap_range`), and the new range may not overlap the old one
    /// (`AddressNotAvailable`). If the page tables of the new place run out
    /// of frames, the replaced translations are put back as they were.
    ///
    /// A shrinking move (`new_size < old_size`) moves the old range's first
    /// `new_size` bytes (in one area or several), and removes the rest
    /// as `unmap_range` would, in the same step: other areas and holes
    /// there are fine (Linux's `mremap` unmaps that tail first).
    pub fn move_range_over(
        &self,
        old: VirtAddr,
        old_size: u64,
        new: VirtAddr,
        new_size: u64,
    ) -> Result<()> {
        self.move_pages(old, old_size, new, new_size, true, false, Fresh::No)
    }

    /// [`move_range`](Self::move_range), or with `over`
    /// [`move_range_over`](Self::move_range_over); with `leave` the old
    /// range stays an empty area ([`move_range_leaving`](Self::move_range_leaving));
    /// `fresh`: a growth that is a new area of its own
    /// ([`move_range_growing`](Self::move_range_growing)) or the areas left
    /// ([`move_range_leaving_as`](Self::move_range_leaving_as)).
    #[allow(clippy::too_many_arguments)]
    fn move_pages(
        &self,
        old: VirtAddr,
        old_size: u64,
        new: VirtAddr,
        new_size: u64,
        over: bool,
        leave: bool,
        fresh: Fresh<'_, M>,
    ) -> Result<()> {
        let growth = match fresh {
            Fresh::Growth(g, flags) => Some((g, flags)),
            _ => None,
        };
        let given = match fresh {
            Fresh::Left(left) if leave => Some(left),
            _ => None,
        };
        let orange = Self::checked_range(old, old_size)?;
        let nrange = Self::checked_range(new, new_size)?;
        let (os, full_oe) = (orange.start.number(), orange.end().number());
        let (ns, ne) = (nrange.start.number(), nrange.end().number());
        // Over: a shrinking move's tail `[oe, te)` goes as unmap_range
        // removes it; the part that moves is the first `new_size` bytes.
        let (oe, te) = if over && full_oe - os > ne - ns {
            (os + (ne - ns), full_oe)
        } else {
            (full_oe, full_oe)
        };
        let (old_pages, new_pages) = (oe - os, ne - ns);
        let keep = old_pages.min(new_pages);
        // One area's pages that grow or keep their size, replacing
        // nothing: the short path (`one.rs`) unless several areas move.
        if !over && !leave && matches!(fresh, Fresh::No) && new_pages >= old_pages {
            if let Some(done) = self.move_one([os, oe], [ns, ne]) {
                return done;
            }
        }
        // Every moved page goes this many pages up (wrapping: down).
        let delta = ns.wrapping_sub(os);
        let m = self.machine();
        let pt = self.pt();
        let mut tree = self.areas.write();
        let (first_start, first_end, slot) = tree.find(os).ok_or(Error::NotFound)?;
        // The areas of `[os, oe)` after the first (holes between them
        // move too); `last_end`: the end of the last one.
        let mut others = 0;
        let mut last_end = first_end;
        if oe > first_end {
            for (_, end, slot) in Self::areas_in(&tree, first_end, oe) {
                let st = slot.lock_read();
                Self::check_splittable(&slot.area, &st)?;
                // Several areas move only as they are: no shrink but over
                // a new range, no placement (guard pages, growing down); a
                // shared one leaves no area behind.
                if (!over && new_pages < old_pages)
                    || (leave && st.share.is_some())
                    || st.flags.guard_pages() > 0
                    || st.flags.contains(AreaFlags::GROWS_DOWN)
                {
                    return Err(Error::NotSupported);
                }
                others += 1;
                last_end = end;
            }
            // A resize needs the old range's last page in an area.
            if new_pages != old_pages && last_end < oe {
                return Err(Error::NotFound);
            }
        }
        let multi = others > 0;
        // The area a resize is for: the last one (the first, alone).
        let last = if multi { tree.find(last_end - 1) } else { None };
        // Checks, the reservation of growth, and the new mappings.
        let (moved_flags, more, runs, cow_runs, left) = {
            if !multi && oe > first_end {
                return Err(Error::NotFound);
            }
            let area = &slot.area;
            let st = slot.lock();
            if ns < full_oe && os < ne {
                return Err(Error::AddressNotAvailable);
            }
            Self::check_splittable(area, &st)?;
            if multi && st.flags.contains(AreaFlags::GROWS_DOWN) {
                return Err(Error::NotSupported);
            }
            let more = {
                let (last_start, last) = last.map_or((first_start, slot), |(s, _, l)| (s, l));
                let lst = if multi { Some(last.lock_read()) } else { None };
                let lst = lst.as_deref().unwrap_or(&st);
                let larea = &last.area;
                if growth.is_some() {
                    // The last area keeps its size: the growth is an area
                    // of its own, which reserves for itself.
                    0
                } else if new_pages != old_pages
                    && (!larea.backend.caps().contains(BackendCaps::RESIZE) || lst.share.is_some())
                {
                    return Err(Error::NotSupported);
                } else if new_pages > old_pages {
                    let at = larea.offset() + (oe - last_start);
                    reserve::up_front(&*larea.backend, lst.flags, at, new_pages - old_pages)
                } else {
                    0
                }
            };
            let moved_flags = if os == first_start {
                st.flags
            } else {
                st.flags - AreaFlags::PLACEMENT
            };
            let guard = moved_flags.guard_pages();
            if over {
                // The new range replaces what is in it, but no area below
                // its guard and no guard page of an area above it.
                if !self.in_window(nrange, guard)
                    || (guard > 0 && tree.overlaps(ns - guard, ns, None))
                    || tree.guarded_by(ne - 1).is_some()
                {
                    return Err(Error::AddressNotAvailable);
                }
            } else if !self.check_conflicts(&tree, nrange, guard, None) {
                return Err(Error::AddressNotAvailable);
            }
            let first = area.offset() + (os - first_start);
            // What the first area's moved part's used space and
            // copy-on-write set take.
            let runs = st.used.overlap(os, oe.min(first_end)).0;
            let cow_runs = crate::cow::moved_runs(&st.cow, os, keep.min(first_end - os));
            // The empty area left behind: what it takes of the heap and of
            // the commit limit, at the old part's place in the backend.
            let left = if leave {
                if new_pages != old_pages
                    || st.share.is_some()
                    || st.flags.intersects(AreaFlags::PLACEMENT)
                {
                    return Err(Error::NotSupported);
                }
                match given {
                    Some(_) => None,
                    None => Some(Self::left_entry(
                        area,
                        &st,
                        os,
                        oe.min(first_end) - os,
                        first,
                    )?),
                }
            } else {
                None
            };
            (moved_flags, more, runs, cow_runs, left)
        };
        let whole = os == first_start && oe == last_end;
        // Several areas: the runs of pages they hold in the old range
        // (neighbours joined), which move run by run, holes left alone;
        // the other areas' sets (whole areas once split at `oe`), room for
        // their entries while they move, and the areas they leave behind
        // (with `leave`) with what those reserve.
        let mut segs: Vec<(u64, u64)> = Vec::new();
        let mut sets: Vec<(UsedSpace, UsedSpace)> = Vec::new();
        let mut entries: Vec<(u64, u64, AreaEntry<M>)> = Vec::new();
        // The areas left at the old range (with `leave`), in order, the
        // first area's part's first.
        let mut lefts: Placed<M> = Vec::new();
        let mut left_reserve = 0;
        if let Some((entry, reserve)) = left {
            lefts
                .try_reserve_exact(1 + others)
                .map_err(|_| Error::NoMemory)?;
            lefts.push((os, first_end.min(oe), entry));
            left_reserve = reserve;
        }
        if multi {
            segs.try_reserve_exact(others + 1)
                .map_err(|_| Error::NoMemory)?;
            sets.try_reserve_exact(others)
                .map_err(|_| Error::NoMemory)?;
            entries
                .try_reserve_exact(others)
                .map_err(|_| Error::NoMemory)?;
            segs.push((os, first_end.min(oe)));
            for (start, end, slot) in Self::areas_in(&tree, first_end, oe) {
                let st = slot.lock_read();
                let hi = end.min(oe);
                match segs.last_mut() {
                    Some((_, seg_end)) if *seg_end == start => *seg_end = hi,
                    _ => segs.push((start, hi)),
                }
                let runs = st.used.overlap(start, hi).0;
                let cow_runs = crate::cow::moved_runs(&st.cow, start, hi - start);
                sets.push((
                    UsedSpace::try_with_capacity(runs.max(1)).ok_or(Error::NoMemory)?,
                    UsedSpace::try_with_capacity(cow_runs).ok_or(Error::NoMemory)?,
                ));
                if leave && given.is_none() {
                    let area = &slot.area;
                    let (entry, reserve) =
                        Self::left_entry(area, &st, start, hi - start, area.offset())?;
                    left_reserve += reserve;
                    lefts.push((start, hi, entry));
                }
            }
        }
        // The caller's areas left at the old range: exactly over what the
        // areas hold there (runs of them joined), and what they reserve.
        if let Some(left) = given {
            let one = [(os, oe)];
            let held = if multi { &segs[..] } else { &one[..] };
            (lefts, left_reserve) = Self::given_left(held, left)?;
        }
        // What goes (over a new range): what lies where the moved areas
        // land (the new range but under the old one's holes) and the tail.
        let mut cleared: Vec<(u64, u64)> = Vec::new();
        if over {
            cleared
                .try_reserve_exact(segs.len() + 2)
                .map_err(|_| Error::NoMemory)?;
            if multi {
                let landing =
                    |&(lo, hi): &(u64, u64)| (lo.wrapping_add(delta), hi.wrapping_add(delta));
                cleared.extend(segs.iter().map(landing));
                // A growth lands past the last area's old end.
                if let Some((_, end)) = cleared.last_mut().filter(|_| new_pages > old_pages) {
                    *end = ne;
                }
            } else {
                cleared.push((ns, ne));
            }
            // No area kept under a hole may have its guard pages where an
            // area lands (the new range's end is checked above).
            for &(_, hi) in cleared.iter().filter(|_| multi) {
                if tree.guarded_by(hi - 1).is_some() {
                    return Err(Error::AddressNotAvailable);
                }
            }
            if te > oe {
                cleared.push((oe, te));
            }
            for &(lo, hi) in &cleared {
                self.check_split(&tree, lo)?;
                self.check_split(&tree, hi)?;
            }
        }
        // The heap first: room for two splits (five over a new range that
        // holds areas, with a tail) and the entries at their new place,
        // the moved parts' used spaces, and a list of the translations
        // replaced.
        let used = UsedSpace::try_with_capacity(runs.max(1)).ok_or(Error::NoMemory)?;
        let cow = UsedSpace::try_with_capacity(cow_runs).ok_or(Error::NoMemory)?;
        // The growth's own area, and what it reserves.
        let grown = match growth {
            Some((g, flags)) => Some(g.entry(flags, new_pages - old_pages)?),
            None => None,
        };
        let grown_reserve = grown.as_ref().map_or(0, |&(_, r)| r);
        let [room_os, room_oe] = if whole && !over {
            // Whole areas move: no cut.
            [None, None]
        } else {
            self.prepare_splits(&mut tree, [os, oe])?
        };
        // The cuts at the ends of what goes, each with its room.
        let mut cuts = Vec::new();
        cuts.try_reserve_exact(2 * cleared.len())
            .map_err(|_| Error::NoMemory)?;
        for &(lo, hi) in &cleared {
            for c in [lo, hi] {
                let [room] = self.prepare_splits(&mut tree, [c])?;
                cuts.push((c, room));
            }
        }
        let new_entries = lefts.len() + usize::from(grown.is_some());
        Self::reserve_entries(&mut tree, 3 + cuts.len() + new_entries)?;
        let mut replaced: Vec<(Unmapped, PageFlags, bool)> = Vec::new();
        if over {
            let mut pages = 0;
            for &(lo, hi) in &cleared {
                for (_, _, slot) in Self::areas_in(&tree, lo, hi) {
                    for r in slot.lock().used.iter() {
                        let (a, b) = (r.start.number().max(lo), r.end().number().min(hi));
                        pages += b.saturating_sub(a);
                    }
                }
            }
            replaced
                .try_reserve_exact(pages as usize)
                .map_err(|_| Error::NoMemory)?;
        }
        // The growth's reservation and the left areas', taken at once.
        let reserved = more + left_reserve + grown_reserve;
        if !self.shared.reserve.try_reserve(reserved) {
            return Err(Error::NoMemory);
        }
        // The translations of the new range and the tail go (kept aside,
        // their frames still in use) to make way.
        for &(lo, hi) in &cleared {
            for (_, _, slot) in Self::areas_in(&tree, lo, hi) {
                Self::take_aside(pt, m.memory(), slot, lo, hi, &mut replaced);
            }
        }
        // The resident pages move (the only step that allocates frames:
        // page tables for the new place).
        {
            let run = |from: u64, to: u64, count: u64| {
                let (from, to) = (Page::from_number(from), Page::from_number(to));
                pt.move_run(m.memory(), m.frames(), from, to, count)
            };
            let moved = if multi {
                // Run by run: a refused one moves back itself, and those
                // before it are moved back (the old place's tables are
                // there), so what lies under the holes is never touched.
                let mut total = Ok(());
                for (i, &(lo, hi)) in segs.iter().enumerate() {
                    if let Err(e) = run(lo, lo.wrapping_add(delta), hi - lo) {
                        for &(lo, hi) in segs[..i].iter().rev() {
                            let back = run(lo.wrapping_add(delta), lo, hi - lo);
                            debug_assert!(back.is_ok(), "the old tables are there");
                        }
                        total = Err(e);
                        break;
                    }
                }
                total
            } else {
                run(os, ns, keep)
            };
            match moved {
                #[cfg(debug_assertions)]
                Ok(()) => {
                    // The used pages were mapped: they are at their new
                    // place now.
                    for (_, _, slot) in Self::areas_in(&tree, os, os + keep) {
                        for r in slot.lock().used.iter() {
                            let a = r.start.number().max(os);
                            for n in a..r.end().number().min(os + keep) {
                                let at = Page::from_number(n.wrapping_add(delta));
                                debug_assert!(
                                    pt.translate(m.memory(), at).is_some(),
                                    "the used pages are the mapped ones"
                                );
                            }
                        }
                    }
                }
                #[cfg(not(debug_assertions))]
                Ok(()) => {}
                Err(_) => {
                    // Everything moved back; a CPU may have walked to a
                    // new mapping already: flush them. The replaced
                    // translations come back as they were (their tables
                    // are there: nothing allocated); a CPU that cached one
                    // cached what it is again.
                    let mut batch = ShootdownBatch::new();
                    batch.defer_kept(Page::from_number(ns), keep);
                    batch.complete(&self.shared, self.id());
                    for (u, flags, _) in replaced {
                        let back = pt.map(m.memory(), m.frames(), u.page(), u.frame(), flags);
                        debug_assert!(back.is_ok(), "a table that was there");
                    }
                    self.shared.reserve.release(reserved);
                    return Err(Error::NoMemory);
                }
            }
        }
        // Nothing below fails.
        let mut split = Ok(());
        if !whole {
            split = self
                .split_at(&mut tree, os, room_os)
                .and_then(|()| self.split_at(&mut tree, oe, room_oe));
        }
        for (c, room) in cuts {
            split = split.and_then(|()| self.split_at(&mut tree, c, room));
        }
        debug_assert!(split.is_ok(), "checked splittable");
        let mut batch = ShootdownBatch::new();
        // What the new range and the tail held goes: their translations
        // (gone already) in this round, their areas (used space emptied:
        // nothing mapped) with their reservations and share references.
        for (u, _, release) in replaced {
            batch.defer_or_flush(u, release, &self.shared, self.id());
        }
        for &(lo, hi) in &cleared {
            while let Some((start, _)) = Self::first_in(&tree, lo, hi) {
                let Some((_, gone)) = tree.remove(start) else {
                    break;
                };
                gone.lock().used = UsedSpace::new();
                self.unmap_area(&gone.area, &mut batch);
            }
        }
        // The areas of `[os, oe)` (whole ones now) leave the tree and move;
        // the last one (the first, alone) takes the new size.
        let Some((_, entry)) = tree.remove(os) else {
            debug_assert!(false, "the old range is an area now");
            return Err(Error::NotFound);
        };
        let resized = |last: bool, pages: u64| {
            if last && grown.is_none() {
                pages + new_pages - old_pages
            } else {
                pages
            }
        };
        let first_top = first_end.min(oe);
        let first_pages = resized(!multi, first_top - os);
        let moved = Moved {
            delta,
            keep: if multi { first_top - os } else { keep },
            pages: first_pages,
            more: if multi { 0 } else { more },
        };
        self.move_state(&entry, os, first_top, moved, (used, cow), &mut batch);
        entry.lock().flags = moved_flags;
        let mut sets = sets.into_iter();
        // (One area: nothing is left in the old range.)
        while let Some((start, _)) = multi.then(|| Self::first_in(&tree, os, oe)).flatten() {
            let (Some((end, e)), Some(set)) = (tree.remove(start), sets.next()) else {
                debug_assert!(false, "one set per area");
                break;
            };
            let last = entries.len() + 1 == others;
            let pages = resized(last, end - start);
            let moved = Moved {
                delta,
                keep: end - start,
                pages,
                more: if last { more } else { 0 },
            };
            self.move_state(&e, start, end, moved, set, &mut batch);
            let at = start.wrapping_add(delta);
            entries.push((at, at + pages, e));
        }
        batch.complete(&self.shared, self.id());
        let guard = moved_flags.guard_pages() as u8;
        let inserted = tree
            .insert_guarded(ns, ns + first_pages, guard, entry)
            .is_ok();
        debug_assert!(inserted, "the new range was checked free");
        let mut last_new = ns;
        if multi {
            for (s, e, moved) in entries {
                let inserted = tree.insert_guarded(s, e, 0, moved).is_ok();
                debug_assert!(inserted, "the new range was checked free");
                last_new = s;
            }
        }
        if let Some((area, _)) = grown {
            // Above the moved range, in the part checked free (or cleared).
            let at = ns + old_pages;
            let inserted = tree.insert_guarded(at, ne, 0, area).is_ok();
            debug_assert!(inserted, "the new range was checked free");
            self.merge_at(&mut tree, at);
        }
        // The old range, emptied above, takes the left areas, each merged
        // with what lies below it (the last also with what lies above).
        for (s, e, area) in lefts {
            let inserted = tree.insert_guarded(s, e, 0, area).is_ok();
            debug_assert!(inserted, "the old range is free now");
            self.merge_at(&mut tree, s);
        }
        self.merge_at(&mut tree, ns);
        if last_new != ns {
            self.merge_at(&mut tree, last_new);
        }
        Ok(())
    }

    /// The caller's areas `left` a move leaves at its old range, checked to
    /// cover exactly `held` (the runs of pages the range's areas hold,
    /// ascending), as tree entries, and what they reserve (not taken yet).
    #[cold]
    #[inline(never)]
    fn given_left(held: &[(u64, u64)], left: &[Replacement<M>]) -> Result<(Placed<M>, u64)> {
        let mut runs = held.iter().copied();
        let mut run: Option<(u64, u64)> = None;
        for p in left {
            let r = Self::checked_range(p.base, p.size)?;
            let (s, e) = (r.start.number(), r.end().number());
            run = match run {
                Some((a, b)) if b == s => Some((a, e)),
                Some(done) if Some(done) != runs.next() => {
                    return Err(Error::InvalidArgument);
                }
                _ => Some((s, e)),
            };
        }
        if run != runs.next() || runs.next().is_some() {
            return Err(Error::InvalidArgument);
        }
        let mut entries = Vec::new();
        entries
            .try_reserve_exact(left.len())
            .map_err(|_| Error::NoMemory)?;
        let mut reserved = 0;
        for p in left {
            let r = Self::checked_range(p.base, p.size)?;
            let (entry, reserve) = p.entry(p.flags, r.count)?;
            reserved += reserve;
            let s = r.start.number();
            entries.push((s, s + r.count, entry));
        }
        Ok((entries, reserved))
    }

    /// The empty area `[lo, lo + pages)` that a move leaving its range
    /// mapped puts there in place of the part of `area` (locked as `st`)
    /// that moves, at page `first` of its backend: the same backend,
    /// rights, most rights and attributes, reserving as a new area does;
    /// and that reservation (not taken yet).
    fn left_entry(
        area: &crate::area::Area<M>,
        st: &crate::area::AreaState<M>,
        lo: u64,
        pages: u64,
        first: u64,
    ) -> Result<(AreaEntry<M>, u64)> {
        let reserve = reserve::up_front(&*area.backend, st.flags, first, pages);
        let limit = area.grow_limit().max(pages);
        let entry = AreaEntry::new(
            Page::from_number(lo),
            pages,
            st.flags,
            st.attrs,
            area.backend.clone(),
            reserve,
            limit,
        )?;
        entry.area.set_offset(first);
        // The most rights it may get, as the part it replaces.
        entry.lock().max_flags = st.max_flags;
        Ok((entry, reserve))
    }

    /// Moves the state of the area of `entry` (out of the tree, on pages
    /// `[lo, top)` before the move) as `moved` says: its used pages below
    /// `lo + moved.keep` go `moved.delta` pages on into `sets.0` (their old
    /// translations shot down in `batch`, their frames kept: the page
    /// tables moved them already), the rest are unmapped and freed after
    /// the shootdown; its copy-on-write set follows into `sets.1`; its
    /// size becomes `moved.pages`, its reservation what that keeps, plus
    /// `moved.more` (taken already).
    fn move_state(
        &self,
        entry: &AreaEntry<M>,
        lo: u64,
        top: u64,
        moved: Moved,
        sets: (UsedSpace, UsedSpace),
        batch: &mut ShootdownBatch,
    ) {
        let m = self.machine();
        let pt = self.pt();
        let (mut used, mut cow) = sets;
        let area = &entry.area;
        let backend = &*area.backend;
        let mut st = entry.lock();
        let old_used = st.used.take();
        let mut less = 0;
        let counted = backend.caps().contains(BackendCaps::REFCOUNTED);
        let flags = st.flags;
        let kept_end = lo + moved.keep;
        for r in old_used.iter() {
            let (a, b) = (r.start.number(), r.end().number());
            let split = b.min(kept_end).max(a);
            // The kept part moved already: its old translations go in
            // this round, its frames stay in use.
            if a < split {
                batch.defer_kept(r.start, split - a);
                let to = Page::from_number(a.wrapping_add(moved.delta));
                let added = used.insert(to, split - a);
                debug_assert!(added.is_ok());
            }
            // The part past the new size goes.
            if split < b {
                pt.unmap_run(m.memory(), Page::from_number(split), b - split, &mut |u| {
                    less += reserve::per_page(backend, flags, area.index(u.page()), 1);
                    batch.defer_or_flush(u, counted, &self.shared, self.id());
                });
            }
        }
        let old_pages = top - lo;
        if moved.pages < old_pages {
            less += reserve::up_front(
                backend,
                st.flags,
                area.offset() + moved.pages,
                old_pages - moved.pages,
            );
        }
        self.shared.reserve.release(less);
        area.sub_reserved(less);
        area.add_reserved(moved.more);
        st.used = used;
        crate::cow::moved_into(
            &st.cow,
            lo,
            lo.wrapping_add(moved.delta),
            moved.keep,
            &mut cow,
        );
        st.cow = cow;
        area.set_base(Page::from_number(lo.wrapping_add(moved.delta)));
        area.pages.store(moved.pages, Release);
        let limit = area.grow_limit().max(moved.pages);
        area.grow_limit.store(limit, Relaxed);
    }
}
