//! [`System::fork`](crate::System::fork) and
//! [`System::fork_except`](crate::System::fork_except): a copy of an
//! address space whose private pages become copy-on-write in both (see
//! [`crate::cow`]), leaving out the ranges the caller names or giving them
//! to the child empty ([`ForkRange`]: Linux's `MADV_DONTFORK` and
//! `MADV_WIPEONFORK`), or as new areas ([`System::fork_replacing`](crate::System::fork_replacing)).
//!
//! Two steps under both spaces' tree locks. The first builds the child and
//! allocates everything (its areas, used spaces, copy-on-write sets, page
//! tables, and the parent's copy-on-write sets to be) while the parent is
//! untouched; any refusal drops the child, which gives back what it took.
//! The second, which neither fails nor allocates, takes write access from
//! the parent's copied pages in one shootdown round.

use alloc::vec::Vec;

use crate::addr::{Page, PageRange, VirtAddr};
use crate::area::{AreaEntry, AreaPart};
use crate::backend::BackendCaps;
use crate::cow::each_part;
use crate::flags::{AreaAttrs, AreaFlags, PageFlags};
use crate::internals::try_arc::TryArc;
use crate::internals::used_space::UsedSpace;
use crate::machine::{FrameAllocator, Machine};
use crate::paging::PageTable;
use crate::replace::Replacement;
use crate::reserve;
use crate::space::{AddressSpace, SpaceRef};
use crate::tlb::ShootdownBatch;
use crate::{Error, Result};

/// What a fork gives the child of a range of the parent's pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inherit {
    /// Nothing: the child has a hole there (Linux `MADV_DONTFORK`). The
    /// parent's pages there stay its own (not copy-on-write), and count
    /// nothing against the commit limit for the child.
    Nothing,
    /// The areas without their private pages: the child's read as new
    /// ones (zeros, for anonymous memory: Linux `MADV_WIPEONFORK`), and
    /// the parent's there stay its own. Pages of shared areas and of other
    /// backends are seen by the child as usual.
    Empty,
}

/// A range of pages a fork gives the child differently
/// ([`System::fork_except`](crate::System::fork_except)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForkRange {
    /// Its first byte, page-aligned.
    pub base: VirtAddr,
    /// Its length in bytes, a whole number of pages.
    pub size: u64,
    /// What the child gets there.
    pub inherit: Inherit,
}

impl ForkRange {
    /// Its pages as `(first, end)` page numbers.
    fn pages(&self) -> (u64, u64) {
        let first = self.base.as_u64() / crate::PAGE_SIZE;
        (first, first + self.size / crate::PAGE_SIZE)
    }
}

/// The parts of pages `[s, e)` outside every [`Inherit::Nothing`] range of
/// `ranges`, lowest first, as `(first, end)`.
fn kept_parts(ranges: &[ForkRange], s: u64, e: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
    let mut at = s;
    let mut holes = ranges
        .iter()
        .filter(|r| r.inherit == Inherit::Nothing)
        .map(ForkRange::pages)
        .skip_while(move |&(_, b)| b <= s)
        .peekable();
    core::iter::from_fn(move || {
        while at < e {
            match holes.peek() {
                Some(&(a, b)) if a <= at => {
                    at = at.max(b);
                    holes.next();
                }
                Some(&(a, _)) if a < e => {
                    let part = (at, a);
                    at = a;
                    return Some(part);
                }
                _ => {
                    let part = (at, e);
                    at = e;
                    return Some(part);
                }
            }
        }
        None
    })
}

/// Hands `f` the parts of pages `[a, b)` outside every [`Inherit::Empty`]
/// range of `ranges`, lowest first.
fn outside_empty(ranges: &[ForkRange], a: u64, b: u64, mut f: impl FnMut(u64, u64)) {
    let mut at = a;
    for (x, y) in ranges
        .iter()
        .filter(|r| r.inherit == Inherit::Empty)
        .map(ForkRange::pages)
    {
        if y <= at {
            continue;
        }
        if x >= b {
            break;
        }
        if x > at {
            f(at, x);
        }
        at = y;
        if at >= b {
            return;
        }
    }
    if at < b {
        f(at, b);
    }
}

impl<M: Machine> AddressSpace<M> {
    /// Checks that `ranges` are page-aligned, non-empty, inside the address
    /// space and in ascending order without overlaps: `InvalidArgument`
    /// otherwise.
    fn check_ranges(ranges: &[ForkRange]) -> Result<()> {
        let mut floor = 0;
        for r in ranges {
            let range = Self::checked_range(r.base, r.size)?;
            if r.size % crate::PAGE_SIZE != 0 || range.start.number() < floor {
                return Err(Error::InvalidArgument);
            }
            floor = range.end().number();
        }
        Ok(())
    }

    /// `ranges` and the ranges of `fresh` (given as [`Inherit::Nothing`]:
    /// the new areas take their place) in one list, in ascending order;
    /// `InvalidArgument` if one of `fresh` is malformed (as
    /// [`area_replace_many`](Self::area_replace_many) checks it, and with
    /// no guard pages) or overlaps another range.
    fn with_fresh(ranges: &[ForkRange], fresh: &[Replacement<M>]) -> Result<Vec<ForkRange>> {
        let mut all: Vec<ForkRange> = Vec::new();
        all.try_reserve_exact(ranges.len() + fresh.len())
            .map_err(|_| Error::NoMemory)?;
        all.extend_from_slice(ranges);
        for p in fresh {
            let f = Self::placement_flags(p.flags, &*p.backend)?;
            if f.guard_pages() > 0 {
                return Err(Error::InvalidArgument);
            }
            all.push(ForkRange {
                base: p.base,
                size: p.size,
                inherit: Inherit::Nothing,
            });
        }
        // Few ranges: an insertion sort allocates nothing.
        for i in 1..all.len() {
            let mut j = i;
            while j > 0 && all[j - 1].base > all[j].base {
                all.swap(j - 1, j);
                j -= 1;
            }
        }
        Self::check_ranges(&all)?;
        Ok(all)
    }

    /// Puts each of `fresh` (checked by [`with_fresh`](Self::with_fresh))
    /// into the written tree `ctree` of the `child` being built: a new area
    /// reserving what a new area does; `AddressNotAvailable` outside the
    /// window, `NoMemory` past the commit limit or the heap, with what was
    /// taken for it given back.
    fn fresh_areas(
        child: &AddressSpace<M>,
        ctree: &mut crate::space::Areas<M>,
        fresh: &[Replacement<M>],
    ) -> Result<()> {
        for p in fresh {
            let range = Self::checked_range(p.base, p.size)?;
            if !child.in_window(range, 0) {
                return Err(Error::AddressNotAvailable);
            }
            let (s, e) = (range.start.number(), range.end().number());
            let (entry, own) = p.entry(p.flags, e - s)?;
            if !child.shared.reserve.try_reserve(own) {
                return Err(Error::NoMemory);
            }
            // In the tree, the child's going gives the reservation back.
            if ctree.insert_guarded(s, e, 0, entry).is_err() {
                child.shared.reserve.release(own);
                return Err(Error::AddressNotAvailable);
            }
        }
        Ok(())
    }

    /// A copy of this space whose private pages are copy-on-write in both,
    /// but for `ranges` (checked, sorted) and the new areas `fresh`; see
    /// [`System::fork_replacing`](crate::System::fork_replacing). `kernel`
    /// is the system's kernel space (for the new page table's kernel half).
    pub(crate) fn fork_with(
        &self,
        kernel: &AddressSpace<M>,
        ranges: &[ForkRange],
        fresh: &[Replacement<M>],
    ) -> Result<SpaceRef<M>> {
        if self.is_kernel() {
            return Err(Error::InvalidArgument);
        }
        Self::check_ranges(ranges)?;
        let all = Self::with_fresh(ranges, fresh)?;
        let ranges = &all[..];
        // Dropped last: on any failure below, after the locks, it gives
        // back what it took (mappings' references, reservations, share
        // references) as any space going away does.
        let child = AddressSpace::create(&self.shared, Some(kernel))?;
        let m = self.machine();
        let pt = self.pt();
        // Written: no fault, copy or operation runs in the parent.
        let tree = self.areas.write();
        let mut ctree = child.areas.write();
        // A hole in an area makes one part more.
        let holes = ranges
            .iter()
            .filter(|r| r.inherit == Inherit::Nothing)
            .count();
        if !ctree.try_reserve(tree.len() + holes + fresh.len()) {
            return Err(Error::NoMemory);
        }
        // Step 1: the child, allocating everything; the parent unchanged.
        let mut cows: Vec<(u64, UsedSpace)> = Vec::new();
        cows.try_reserve_exact(tree.len())
            .map_err(|_| Error::NoMemory)?;
        for (start, end, slot) in tree.iter() {
            let area = &slot.area;
            let st = slot.lock();
            // A share destination still being set up, and a pager's area
            // (its requests are keyed by the area), are not inherited.
            if st.attrs.contains(AreaAttrs::PARTIAL) || area.backend.as_any().is_some() {
                continue;
            }
            let private = st.share.is_none()
                && area
                    .backend
                    .caps()
                    .contains(BackendCaps::PRIVATE | BackendCaps::REFCOUNTED);
            // The ranges meeting the area: each may cut a run once more.
            let meeting = ranges
                .iter()
                .filter(|r| {
                    let (a, b) = r.pages();
                    a < end && b > start
                })
                .count();
            let runs = if private {
                st.used.intervals() + meeting
            } else {
                0
            };
            // The sets are filled below without allocating; the parent's
            // copy-on-write set to be is made here too: its old one and
            // the pages copied now.
            let room = |n: usize| UsedSpace::try_with_capacity(n).ok_or(Error::NoMemory);
            // A copy-on-write set gets room for one cut more, so the first
            // copy of a page inside a run allocates nothing (a set with
            // room for two is a tree, whose node has room for more).
            let cow_room = |n: usize| room(if n == 0 { 0 } else { n + 1 });
            let mut parent_cow = if private {
                let mut set = cow_room(runs + st.cow.intervals())?;
                for r in st.cow.iter() {
                    let added = set.insert(r.start, r.count);
                    debug_assert!(added.is_ok(), "runs are disjoint");
                }
                set
            } else {
                UsedSpace::new()
            };
            for (ps, pe) in kept_parts(ranges, start, end) {
                let (used, cow) = (room(runs.max(1))?, cow_room(runs)?);
                let delta = ps - start;
                let reserved = match &st.share {
                    // The group's reservation, counted once.
                    Some(share) => share.reserved(),
                    None => {
                        let backend = &*area.backend;
                        // A private copy reserves what the parent's area
                        // does (its pages, or for a late-reserving area the
                        // resident ones the child maps); another area what
                        // a new one would, as it starts with nothing mapped.
                        let r = if private && meeting == 0 {
                            area.reserved()
                        } else if private && st.flags.contains(AreaFlags::LATE_RESERVE) {
                            let mut r = 0;
                            for run in st.used.iter() {
                                let (a, b) =
                                    (run.start.number().max(ps), run.end().number().min(pe));
                                if a < b {
                                    outside_empty(ranges, a, b, |x, y| {
                                        r += reserve::per_page(
                                            backend,
                                            st.flags,
                                            area.index(Page::from_number(x)),
                                            y - x,
                                        );
                                    });
                                }
                            }
                            r
                        } else {
                            let r = reserve::up_front(
                                backend,
                                st.flags,
                                area.offset() + delta,
                                pe - ps,
                            );
                            if private {
                                r.min(area.reserved())
                            } else {
                                r
                            }
                        };
                        if !self.shared.reserve.try_reserve(r) {
                            return Err(Error::NoMemory);
                        }
                        r
                    }
                };
                // Taken after the heap: a failure above leaves the record's
                // count and the reservation alone.
                if let Some(share) = &st.share {
                    share.state.lock().refs += 1;
                }
                // A part above the area's start is not where the area's
                // placement (growing down, its guard page) applies.
                let flags = if ps == start {
                    st.flags
                } else {
                    st.flags - AreaFlags::PLACEMENT
                };
                let state = st.part(flags, used, cow);
                let part = AreaPart {
                    base: Page::from_number(ps),
                    pages: pe - ps,
                    offset: area.offset() + delta,
                    reserved,
                    // As a split leaves it: the pages cut off above no
                    // longer count.
                    grow_limit: if ps == start {
                        area.grow_limit().saturating_sub(end - pe).max(pe - ps)
                    } else {
                        pe - ps
                    },
                };
                let copy = area.derived(part, || state);
                let guard = flags.guard_pages() as u8;
                let Ok(copy) = TryArc::try_new(copy) else {
                    // Not in the child: what it took goes back here.
                    match &st.share {
                        Some(share) => share.state.lock().refs -= 1,
                        None => self.shared.reserve.release(reserved),
                    }
                    return Err(Error::NoMemory);
                };
                if ctree
                    .insert_guarded(ps, pe, guard, AreaEntry::of_shared(copy))
                    .is_err()
                {
                    debug_assert!(false, "the parent's layout fits the empty child");
                    return Err(Error::NoMemory);
                }
                if !private {
                    // Faults in the child ask the share record or the backend.
                    continue;
                }
                let Some((_, cslot)) = ctree.get(ps) else {
                    return Err(Error::NoMemory);
                };
                let mut cst = cslot.lock();
                let cflags = child.page_flags(st.flags) - PageFlags::WRITE;
                let mut refused = false;
                for run in st.used.iter() {
                    let (a, b) = (run.start.number().max(ps), run.end().number().min(pe));
                    if a >= b {
                        continue;
                    }
                    outside_empty(ranges, a, b, |x, y| {
                        for n in x..y {
                            if refused {
                                return;
                            }
                            let page = Page::from_number(n);
                            let Some((frame, _)) = pt.translate(m.memory(), page) else {
                                debug_assert!(false, "used page {page:?} not mapped");
                                continue;
                            };
                            if child
                                .pt()
                                .map(m.memory(), m.frames(), page, frame, cflags)
                                .is_err()
                            {
                                refused = true;
                                return;
                            }
                            m.frames().add_ref(frame);
                            let added = cst.used.insert(page, 1).and(cst.cow.insert(page, 1));
                            debug_assert!(added.is_ok());
                        }
                        let run = PageRange::new(Page::from_number(x), y - x);
                        each_part(&st.cow, run, |part, inside| {
                            if !inside {
                                let added = parent_cow.insert(part.start, part.count);
                                debug_assert!(added.is_ok(), "runs are disjoint");
                            }
                        });
                    });
                    if refused {
                        return Err(Error::NoMemory);
                    }
                }
            }
            if private {
                cows.push((start, parent_cow));
            }
        }
        Self::fresh_areas(&child, &mut ctree, fresh)?;
        drop(ctree);
        // Step 2: the parent's copied pages become copy-on-write; their
        // writable entries lose write access in place (one walk per leaf
        // table, same frames) and leave the TLBs in one shootdown round.
        // Nothing here fails or allocates.
        let mut batch = ShootdownBatch::new();
        for (start, cow) in cows {
            let Some((_, slot)) = tree.get(start) else {
                continue;
            };
            let mut st = slot.lock();
            let flags = self.page_flags(st.flags) - PageFlags::WRITE;
            for r in cow.iter() {
                let done = pt.protect_run(m.memory(), m.frames(), r.start, r.count, flags);
                batch.defer_rewritten(done);
            }
            st.cow = cow;
        }
        batch.complete(&self.shared, self.id());
        drop(tree);
        Ok(child)
    }
}
