//! Operations over any range of pages, which may cover several areas,
//! parts of areas and holes (Linux's `munmap`, `mprotect`, `mremap`; the
//! discards of `madvise` are [`crate::discard`]'s): see
//! [`AddressSpace::unmap_range`] and the others.
//!
//! Each is one operation under the area tree's write lock: every check
//! comes first, then the areas split at the ends of the range (nothing
//! allocated but tree and used-space nodes from the heap), then one TLB
//! shootdown round for every translation removed, and only after it are
//! frames released. Where Linux applies an operation to the mapped parts of
//! a range with holes and then reports `ENOMEM`, these refuse the whole
//! range with `NotFound` and change nothing.
//!
//! Afterwards the areas the operation touched are merged with compatible
//! neighbours (see [`crate::split`]), so a change of rights and its inverse
//! restore the areas as they were.

use core::sync::atomic::Ordering::Relaxed;

use crate::addr::{PageRange, VirtAddr};
use crate::area::{Area, AreaEntry, AreaState};
use crate::backend::BackendCaps;
use crate::flags::{AreaAttrs, AreaFlags};
use crate::internals::area_tree::Entry;
use crate::machine::Machine;
use crate::space::{unmap_runs_into, AddressSpace, Areas};
use crate::split::Join;
use crate::tlb::ShootdownBatch;
use crate::{Error, Result};

use crate::protect::{change_of, released, KEPT};

impl<M: Machine> AddressSpace<M> {
    /// The `(start, end)` of the lowest area of `tree` that intersects
    /// pages `[s, e)`.
    pub(crate) fn first_in(tree: &Areas<M>, s: u64, e: u64) -> Option<(u64, u64)> {
        Self::first_entry_in(tree, s, e).map(|(start, end, _)| (start, end))
    }

    /// The lowest area of `tree` that intersects pages `[s, e)`, with its
    /// entry.
    fn first_entry_in(tree: &Areas<M>, s: u64, e: u64) -> Option<Entry<'_, AreaEntry<M>>> {
        if s >= e {
            return None;
        }
        let entry = match tree.neighbors(s) {
            (Some(entry), _) if entry.1 > s => entry,
            (_, after) => after?,
        };
        (entry.0 < e).then_some(entry)
    }

    /// Every area of `tree` that intersects pages `[s, e)`, lowest first,
    /// with its entry: one search each, nothing allocated.
    pub(crate) fn areas_in(
        tree: &Areas<M>,
        s: u64,
        e: u64,
    ) -> impl Iterator<Item = Entry<'_, AreaEntry<M>>> + '_ {
        let mut next = Self::first_entry_in(tree, s, e);
        core::iter::from_fn(move || {
            let cur = next?;
            next = Self::first_entry_in(tree, cur.1, e);
            Some(cur)
        })
    }

    /// Checks that every page of `[s, e)` lies in an area that is not
    /// partial: `NotFound` otherwise. One search per area, nothing
    /// allocated.
    pub(crate) fn check_covered(tree: &Areas<M>, s: u64, e: u64) -> Result<()> {
        let mut at = s;
        for (start, end, slot) in Self::areas_in(tree, s, e) {
            if start > at || slot.lock_read().attrs.contains(AreaAttrs::PARTIAL) {
                return Err(Error::NotFound);
            }
            at = end;
        }
        if at < e {
            return Err(Error::NotFound);
        }
        Ok(())
    }

    /// Removes every page of `[base, base + size)` from the areas covering
    /// it (Linux `munmap`): areas inside the range go, areas across its ends
    /// are split there first and lose their part inside; holes are fine.
    /// One TLB shootdown round for all the pages unmapped, frames released
    /// after it, reservations given back (a share record's when its last
    /// area goes).
    ///
    /// Refusals, each before anything changed: `base` unaligned or the
    /// range empty or wrapping `InvalidArgument`; an area of a user-space
    /// pager or a partial one to be split at an end of the range
    /// `NotSupported` or `NotFound` (see [`area_split`](Self::area_split));
    /// the heap refusing a cut area's new record `NoMemory`. Only such a
    /// cut needs the heap: areas wholly inside the range go without it.
    /// Removing pages makes no new neighbours, so nothing merges.
    pub fn unmap_range(&self, base: VirtAddr, size: u64) -> Result<()> {
        let range = Self::checked_range(base, size)?;
        let (s, e) = (range.start.number(), range.end().number());
        let mut tree = self.areas.write();
        let mut batch = ShootdownBatch::new();
        // The common case, one whole area: no split, no other search.
        if let Some((_, slot)) = tree.remove_if(s, |end, _| end == e) {
            self.retire_area(&mut tree, slot.area, batch);
            return Ok(());
        }
        // The top of one area: it shrinks, as a split at `s` and the
        // removal of the upper part would leave it, with no upper part made.
        if let Some((start, end, slot)) = tree.find(s) {
            if start < s && end == e && self.unmap_tail(slot, s, &mut batch)? {
                let shrunk = tree.set_end(start, s);
                debug_assert!(shrunk, "shrinking an area always fits");
                batch.complete(&self.shared, self.id());
                return Ok(());
            }
        }
        self.check_split(&tree, s)?;
        self.check_split(&tree, e)?;
        let [room_s, room_e] = self.prepare_splits(&mut tree, [s, e])?;
        self.split_at(&mut tree, s, room_s)?;
        self.split_at(&mut tree, e, room_e)?;
        // Every area left meeting the range lies inside it: each goes, one
        // search each, nothing allocated.
        while let Some((start, _)) = Self::first_in(&tree, s, e) {
            let Some((_, slot)) = tree.remove(start) else {
                break;
            };
            self.unmap_area(&slot.area, &mut batch);
        }
        batch.complete(&self.shared, self.id());
        Ok(())
    }

    /// Unmaps the pages of the area `slot` (in the written tree) from page
    /// `s` to its end into `batch` and makes it end at `s` (the caller
    /// moves its end in the tree): its used space, copy-on-write set,
    /// reservation and growth limit become what a split at `s` leaves the
    /// lower part. Allocates nothing. `Ok(false)` with nothing done for a
    /// shared area (the general path splits it); refusals as a split's.
    fn unmap_tail(&self, slot: &AreaEntry<M>, s: u64, batch: &mut ShootdownBatch) -> Result<bool> {
        let area = &slot.area;
        let mut st = slot.lock();
        Self::check_splittable(area, &st)?;
        if st.share.is_some() {
            return Ok(false);
        }
        // Whole runs and the top of the one across `s` (their copy-on-write
        // pages with them, a subset of the mapped ones): no allocation.
        while let Some(r) = st.used.first_in(s, u64::MAX) {
            self.unmap_used(area, &mut st, r, batch);
        }
        let pages = s - area.base().number();
        let kept = Self::kept_reservation(area, &st, pages);
        self.shared.reserve.release(area.reserved() - kept);
        area.reserved.store(kept, Relaxed);
        Self::shrink_to(area, pages);
        Ok(true)
    }

    /// Takes the pages `r` (a part of one run of the used space) out of
    /// `area`'s used space and copy-on-write set (the area locked as `st`)
    /// and unmaps them into `batch`. Allocates nothing.
    pub(crate) fn unmap_used(
        &self,
        area: &Area<M>,
        st: &mut AreaState<M>,
        r: PageRange,
        batch: &mut ShootdownBatch,
    ) {
        let removed = st.used.remove(r.start, r.count);
        debug_assert!(removed.is_ok(), "a part of one run");
        crate::cow::remove_pages(&mut st.cow, r.start.number(), r.end().number());
        let one = core::iter::once(r);
        unmap_runs_into(
            &self.shared,
            self.id(),
            self.pt(),
            &*area.backend,
            one,
            batch,
        );
    }

    /// Changes the rights of every page of `[base, base + size)` to `flags`
    /// (Linux `mprotect`), keeping the data: areas across the ends of the
    /// range split there, each area inside has the entries of its mapped
    /// pages rewritten with the new rights in place
    /// ([`PageTable::protect_run`](crate::paging::PageTable::protect_run):
    /// same frames, one walk per leaf table), one shootdown round runs for
    /// every entry changed before the call returns; then the areas merge
    /// with compatible neighbours. An area keeps its placement flags
    /// ([`AreaFlags::PLACEMENT`]) and [`LATE_RESERVE`](AreaFlags::LATE_RESERVE)
    /// bit whatever `flags` says.
    ///
    /// Refusals, each before anything changed (Linux changes the areas
    /// before a hole and then fails; this changes none): bad flags or range
    /// `InvalidArgument`; a page of the range in no area, or in a partial
    /// one, `NotFound` (Linux `ENOMEM`); an area whose backend cannot
    /// change rights, or of a user-space pager, `NotSupported`; rights
    /// beyond what the area may have (a share destination: its share's
    /// mask) `PermissionDenied` (Linux `EACCES`).
    pub fn protect_range(&self, base: VirtAddr, size: u64, flags: AreaFlags) -> Result<()> {
        self.protect_range_releasing(base, size, flags, &[])
    }

    /// [`protect_range`](Self::protect_range) that also lets the areas (or
    /// parts) inside the ranges `release` (each `(base, size)`, within the
    /// range) go back to reserving late: one that reserves up front, is
    /// not shared and gets rights without write becomes
    /// [`LATE_RESERVE`](AreaFlags::LATE_RESERVE) |
    /// [`RESERVE_ON_WRITE`](AreaFlags::RESERVE_ON_WRITE), giving back all
    /// but what its mapped pages reserve (it reserves the rest again when
    /// given write). Linux's `mprotect` does so for a private anonymous
    /// mapping never written that loses write (`VM_ACCOUNT` cleared): the
    /// caller says which pages those are. A part that only partly lies in
    /// `release` keeps its reservation. Refusals: those of `protect_range`;
    /// a range of `release` that is not page-aligned or wraps
    /// `InvalidArgument`.
    pub fn protect_range_releasing(
        &self,
        base: VirtAddr,
        size: u64,
        flags: AreaFlags,
        release: &[(VirtAddr, u64)],
    ) -> Result<()> {
        flags.validate()?;
        let range = Self::checked_range(base, size)?;
        for &(b, n) in release {
            Self::checked_range(b, n)?;
        }
        let (s, e) = (range.start.number(), range.end().number());
        let mut tree = self.areas.write();
        let mut batch = ShootdownBatch::new();
        // One area holding the range: one pass (see `crate::protect`).
        if let Some(done) = self.protect_in_one(&mut tree, [s, e], (flags, release), &mut batch) {
            batch.complete(&self.shared, self.id());
            return done;
        }
        // Every page covered by an area (a hole anywhere is the error that
        // comes first), every area able to take the rights: one pass over
        // the areas, no list kept.
        // The areas across the ends are checked for a split here too (a
        // split's refusal comes after the others); `cut`: whether the range
        // cuts an area at `s` and at `e`, `changes`: whether the first and
        // the last area get new rights.
        let mut at = s;
        let mut refused = Ok(());
        let mut unsplittable = Ok(());
        let (mut cut, mut changes) = ([false; 2], [false; 2]);
        // The area, if one alone holds the range; `extra`: what the areas
        // that stop reserving late reserve more (see `change_of`).
        let mut only = None;
        let mut extra = 0;
        for (start, end, slot) in Self::areas_in(&tree, s, e) {
            only = (start <= s && end >= e).then_some(slot);
            let st = slot.lock_read();
            if start > at || st.attrs.contains(AreaAttrs::PARTIAL) {
                return Err(Error::NotFound);
            }
            let part = [start.max(s), end.min(e)];
            let ch = change_of(&slot.area, &st, part, flags, released(release, part));
            let change = ch.flags != st.flags;
            extra += ch.more;
            if at == s {
                (cut[0], changes[0]) = (start < s, change);
            }
            (cut[1], changes[1]) = (end > e, change);
            if (start < s || end > e) && unsplittable.is_ok() {
                unsplittable = Self::check_splittable(&slot.area, &st);
            }
            at = end;
            if refused.is_ok() {
                if !slot.area.backend.caps().contains(BackendCaps::CHANGE_FLAGS) {
                    refused = Err(Error::NotSupported);
                } else if !st.max_flags.contains(flags - KEPT) {
                    refused = Err(Error::PermissionDenied);
                }
            }
        }
        if at < e {
            return Err(Error::NotFound);
        }
        refused?;
        unsplittable?;
        // The rights change in place, one walk per leaf table; the pages
        // whose entry changed leave every TLB in one round.
        // Each area (now inside the range) with its new rights, and what it
        // reserves more; how many pages that was.
        let reprotect = |part: [u64; 2], slot: &AreaEntry<M>, batch: &mut ShootdownBatch| {
            let mut st = slot.lock();
            let ch = change_of(&slot.area, &st, part, flags, released(release, part));
            if ch.flags != st.flags {
                let old = core::mem::replace(&mut st.flags, ch.flags);
                self.reprotect_pages(&st, old, batch);
                slot.area.add_reserved(ch.more);
                slot.area.sub_reserved(ch.less);
            }
            (ch.more, ch.less)
        };
        // Inside one area whose rights stay: a split and the merge after
        // it would leave it as it is.
        if only.is_some() && cut[0] && cut[1] && !changes[0] {
            return Ok(());
        }
        // The reservation last of the refusals, before the heap's.
        if !self.shared.reserve.try_reserve(extra) {
            return Err(Error::NoMemory);
        }
        if cut[0] || cut[1] {
            let split = self
                .prepare_splits(&mut tree, [s, e])
                .and_then(|[room_s, room_e]| {
                    self.split_at(&mut tree, s, room_s)?;
                    self.split_at(&mut tree, e, room_e)
                });
            if let Err(err) = split {
                self.shared.reserve.release(extra);
                return Err(err);
            }
        }
        let (mut added, mut given) = (0, 0);
        for (start, end, slot) in Self::areas_in(&tree, s, e) {
            let (more, less) = reprotect([start, end], slot, &mut batch);
            added += more;
            given += less;
        }
        debug_assert_eq!(
            added, extra,
            "each part reserves what the range was found to need"
        );
        self.shared.reserve.release(given);
        batch.complete(&self.shared, self.id());
        // A part cut off keeps the old rights: where the part next to it
        // got new ones, that boundary cannot merge.
        self.merge_range(
            &mut tree,
            s,
            e,
            [cut[0] && changes[0], cut[1] && changes[1]],
        );
        Ok(())
    }

    /// Lowers the most rights the area containing `addr` may ever be given
    /// by [`protect_range`](Self::protect_range) to `max` (the placement
    /// and reservation bits do not count): what a Linux layer needs for a
    /// shared mapping of a file opened read-only (`mprotect` asking for
    /// write then fails with `PermissionDenied`, Linux `EACCES`). Rights
    /// only go down: the result is the old maximum and `max` together. The
    /// area's current rights must lie within it (`PermissionDenied`
    /// otherwise); no area, or a partial one, `NotFound`.
    pub fn area_restrict(&self, addr: VirtAddr, max: AreaFlags) -> Result<()> {
        let tree = self.read_areas();
        let (_, mut st) = self.lock_for_change(&tree, addr)?;
        let max = (st.max_flags & max) | KEPT;
        if !max.contains(st.flags) {
            return Err(Error::PermissionDenied);
        }
        st.max_flags = max;
        Ok(())
    }

    /// Merges every area meeting `[s, e)` with compatible neighbours: one
    /// pass up the boundaries from the first such area's start to `e`,
    /// each pair looked at once (a heap that refuses a join leaves that
    /// pair apart, which is correct, only less compact). `skip`: the
    /// boundaries at `s` and at `e` that the caller knows cannot merge.
    fn merge_range(&self, tree: &mut Areas<M>, s: u64, e: u64, skip: [bool; 2]) {
        // `cur`: the area left of boundary `b`. Where no area runs across
        // `s` (the usual case: the operation split there), the first area
        // and the one before it come from one search.
        let around = s.checked_sub(1).map(|p| tree.neighbors(p));
        let (mut cur, mut b) = match around {
            Some((before, after)) if before.is_none_or(|(_, end, _)| end <= s) => {
                let Some((first, first_end, _)) = after.filter(|a| a.0 < e) else {
                    return;
                };
                match before {
                    Some((l, l_end, _)) if l_end == first && !skip[0] => (l, first),
                    _ => (first, first_end),
                }
            }
            _ => {
                let Some((first, first_end)) = Self::first_in(tree, s, e) else {
                    return;
                };
                match first.checked_sub(1).and_then(|p| tree.find(p)) {
                    Some((l, l_end, _)) if l_end == first && !(skip[0] && first == s) => (l, first),
                    _ => (first, first_end),
                }
            }
        };
        let last = if skip[1] { e - 1 } else { e };
        while b <= last {
            let next = match self.join_pair(tree, cur, b) {
                // `cur` took the area at `b` in: its new end is next.
                Join::Merged(end) => (cur, end),
                // Apart: the next area on is the left one.
                Join::Apart(Some(end)) => (b, end),
                // A hole at `b`.
                Join::Apart(None) => match Self::first_in(tree, b, e) {
                    Some(step) => step,
                    None => return,
                },
            };
            (cur, b) = next;
        }
    }
}
