//! Areas that split in two and merge again (Linux's `vm_area_struct`
//! splitting, which HelenOS areas never do).
//!
//! A split at page `n` of the area `[start, end)` shrinks it to
//! `[start, n)` and inserts a new area `[n, end)` that carries, exactly,
//! the upper pages' state: their used space (the page table is untouched,
//! so no translation changes and nothing is flushed), the backend and its
//! *offset* (the backend's index of the area's first page, see
//! [`AreaInfo::page_index`](crate::AreaInfo::page_index), so an ELF or file
//! area split in two reads the same bytes in both parts), the rights,
//! attributes and the most rights it may get, the share record (one more
//! reference: both parts stay shared page for page, each with its own
//! offset into the record's page map), and its part of the memory
//! reservation.
//!
//! Grows-down areas: the lower part keeps [`AreaFlags::GROWS_DOWN`] and its
//! guard page (it is the part that grows), with its growth limit less the
//! upper part's pages, so the stack as a whole still stops at its limit;
//! the upper part loses both flags (a guard page below it would lie in the
//! lower part) and cannot grow.
//!
//! A merge joins an area with its right neighbour when nothing tells them
//! apart but their place: equal rights (the left may add the placement
//! flags), attributes and most rights; backends of one object
//! ([`Backend::object_id`](crate::backend::Backend::object_id) and name);
//! contiguous offsets, unless the backend's pages do not depend on their
//! index (anonymous memory) and neither part is shared; the same share
//! record or none. A split followed by a merge at the same place restores
//! the area as it was. Areas of a user-space pager (whose requests in
//! flight are keyed by the area) and partial areas neither split nor merge.
//!
//! Both run with the area tree written, so no fault is in progress in the
//! space and the area locks taken are free.

use core::sync::atomic::Ordering::{Relaxed, Release};

use crate::addr::{Page, VirtAddr};
use crate::area::{Area, AreaEntry, AreaPart, AreaState};
use crate::backend::{BackendCaps, BackendRef};
use crate::flags::{AreaAttrs, AreaFlags};
use crate::internals::try_arc::{TryArc, Unwritten};
use crate::internals::used_space::UsedSpace;
use crate::machine::Machine;
use crate::reserve;
use crate::space::{AddressSpace, Areas};
use crate::{Error, Result};

impl<M: Machine> AddressSpace<M> {
    /// Splits the area containing `at` into two areas at the page boundary
    /// `at`; see the [module documentation](crate::split) for what each
    /// part carries.
    ///
    /// Nothing is mapped, unmapped or flushed: translations do not change.
    /// `at` unaligned: `InvalidArgument`; no area there, or a partial one:
    /// `NotFound`; an area of a user-space pager: `NotSupported`; `at` the
    /// base of an area: `Ok` with nothing done.
    pub fn area_split(&self, at: VirtAddr) -> Result<()> {
        let page = Page::from_start(at).ok_or(Error::InvalidArgument)?;
        let mut tree = self.areas.write();
        if tree.find(page.number()).is_none() {
            return Err(Error::NotFound);
        }
        self.check_split(&tree, page.number())?;
        let [room] = self.prepare_splits(&mut tree, [page.number()])?;
        self.split_at(&mut tree, page.number(), room)
    }

    /// Merges the area containing `addr` with its neighbours where they are
    /// compatible (see the [module documentation](crate::split)); returns
    /// whether it merged anything. No area there: `NotFound`. Nothing is
    /// mapped, unmapped or flushed.
    pub fn area_merge(&self, addr: VirtAddr) -> Result<bool> {
        let n = addr.page().number();
        let mut tree = self.areas.write();
        if tree.find(n).is_none() {
            return Err(Error::NotFound);
        }
        self.try_merge_at(&mut tree, n)
    }

    /// Whether the area `[start, ..)` locked as `st` may be split or
    /// merged: `NotFound` if partial, `NotSupported` for a pager's area.
    pub(crate) fn check_splittable(area: &Area<M>, st: &AreaState<M>) -> Result<()> {
        if st.attrs.contains(AreaAttrs::PARTIAL) {
            return Err(Error::NotFound);
        }
        if area.backend.as_any().is_some() {
            return Err(Error::NotSupported);
        }
        Ok(())
    }

    /// Makes room in `tree` for `entries` more entries, so that the
    /// insertions that follow allocate nothing: `NoMemory` (nothing
    /// changed) if the heap refuses.
    pub(crate) fn reserve_entries(tree: &mut Areas<M>, entries: usize) -> Result<()> {
        if tree.try_reserve(entries) {
            Ok(())
        } else {
            Err(Error::NoMemory)
        }
    }

    /// Allocates, before anything changes, all the heap memory the splits
    /// of the written `tree` at the pages `cuts` need (in that order, each
    /// on the tree as the ones before it left it): room for one more tree
    /// entry per cut, and per cut inside an area the upper part's record
    /// with room for its used space and copy-on-write set. `NoMemory` (nothing changed) if the
    /// heap refuses. Hand each room to [`split_at`](Self::split_at).
    pub(crate) fn prepare_splits<const N: usize>(
        &self,
        tree: &mut Areas<M>,
        cuts: [u64; N],
    ) -> Result<[Option<SplitRoom<M>>; N]> {
        Self::reserve_entries(tree, N)?;
        // The runs each cut inside an area moves to the upper part.
        let mut moved = [None; N];
        {
            let tree: &Areas<M> = tree;
            // The area the last cut fell in: the next cut in the same area
            // needs no search (a range inside one area cuts it twice).
            let mut last = None;
            for (runs, n) in moved.iter_mut().zip(cuts) {
                let found = match last {
                    Some((start, end, _)) if start <= n && n < end => last,
                    _ => tree.find(n),
                };
                last = found;
                let Some((start, _, slot)) = found else {
                    continue;
                };
                if start == n {
                    continue;
                }
                let st = slot.lock_read();
                let at = Page::from_number(n);
                *runs = Some((st.used.intervals_from(at), st.cow.intervals_from(at)));
            }
        }
        let mut rooms = [const { None }; N];
        for (room, runs) in rooms.iter_mut().zip(moved) {
            let Some((runs, cow_runs)) = runs else {
                continue;
            };
            let used = UsedSpace::try_with_capacity(runs.max(1)).ok_or(Error::NoMemory)?;
            let cow = UsedSpace::try_with_capacity(cow_runs).ok_or(Error::NoMemory)?;
            // The upper part's record, written at the split.
            let upper = tree.take_block().ok_or(Error::NoMemory)?;
            *room = Some(SplitRoom { upper, used, cow });
        }
        Ok(rooms)
    }
    /// Whether a split at page `n` of the written `tree` would succeed (or
    /// has nothing to do: no area holds `n`, or one starts there).
    pub(crate) fn check_split(&self, tree: &Areas<M>, n: u64) -> Result<()> {
        match tree.find(n) {
            Some((start, _, slot)) if start < n => {
                let st = slot.lock_read();
                Self::check_splittable(&slot.area, &st)
            }
            _ => Ok(()),
        }
    }

    /// Splits the area of the written `tree` that holds page `n` at `n`,
    /// in the heap memory `room` that [`prepare_splits`](Self::prepare_splits)
    /// set aside for it; nothing to do if no area holds `n` or one starts
    /// there.
    pub(crate) fn split_at(
        &self,
        tree: &mut Areas<M>,
        n: u64,
        room: Option<SplitRoom<M>>,
    ) -> Result<()> {
        let (start, upper) = {
            let Some((start, end, slot)) = tree.find(n) else {
                return Ok(());
            };
            if start == n {
                return Ok(());
            }
            let area = &slot.area;
            let mut st = slot.lock();
            Self::check_splittable(area, &st)?;
            let Some(SplitRoom {
                upper,
                mut used,
                mut cow,
            }) = room
            else {
                debug_assert!(false, "a split without its room");
                return Err(Error::NoMemory);
            };
            st.used.split_off_into(Page::from_number(n), &mut used);
            st.cow.split_off_into(Page::from_number(n), &mut cow);
            let part = Self::split_state(area, &mut st, start, end, n, [used, cow]);
            (start, AreaEntry::of_new(upper, part))
        };
        // Room reserved by `prepare_splits`: allocates nothing.
        let cut = tree.split_entry(start, n, upper).is_ok();
        debug_assert!(cut, "the upper part takes the place it had");
        Ok(())
    }

    /// Cuts `area` (locked as `st`, spanning pages `[start, end)`) in
    /// three at `lo` and `hi`, strictly inside it, as splits at `hi` and
    /// then at `lo` would (a range cut out of an area's middle, the usual
    /// `mprotect`), and applies `change` to the middle part's state before
    /// its summary is computed (no one else reaches the part yet: no lock),
    /// adding the first number of pages it returns to the part's
    /// reservation and taking the second off (the caller takes those from
    /// the commit limit, or gives them back).
    /// The two parts above are written into the blocks in `blocks` (taken
    /// out of it); returns their tree entries, for the caller to put in
    /// with [`AreaTree::split_entry_twice`](crate::internals::area_tree::AreaTree::split_entry_twice)
    /// once the lock is gone (the tree must have room for them). The heap
    /// first: `NoMemory`, nothing changed and `blocks` as they were, if it
    /// refuses the parts' used spaces or `blocks` lacks one.
    pub(crate) fn cut_three(
        area: &Area<M>,
        st: &mut AreaState<M>,
        [start, end]: [u64; 2],
        [lo, hi]: [u64; 2],
        blocks: &mut [Option<Unwritten<Area<M>>>; 2],
        change: impl FnOnce(&mut AreaState<M>) -> (u64, u64),
    ) -> Result<[AreaEntry<M>; 2]> {
        debug_assert!(start < lo && lo < hi && hi < end);
        if blocks.iter().any(Option::is_none) {
            return Err(Error::NoMemory);
        }
        let (lo_page, hi_page) = (Page::from_number(lo), Page::from_number(hi));
        // Each part's runs: at most those from its first page on. (Sets
        // are taken out of `Option`s, not `Result`s: a `Result`'s error
        // shares the set's first word, and moving the set out of it copies
        // unaligned bytes that stall on the stores just made.)
        let room = UsedSpace::try_with_capacity;
        let (Some(mut upper_used), Some(mut upper_cow), Some(mut mid_used), Some(mut mid_cow)) = (
            room(st.used.intervals_from(hi_page).max(1)),
            room(st.cow.intervals_from(hi_page)),
            room(st.used.intervals_from(lo_page).max(1)),
            room(st.cow.intervals_from(lo_page)),
        ) else {
            return Err(Error::NoMemory);
        };
        let [Some(mid_block), Some(upper_block)] = core::mem::take(blocks) else {
            unreachable!("both blocks checked above");
        };
        st.used.split_off_into(hi_page, &mut upper_used);
        st.cow.split_off_into(hi_page, &mut upper_cow);
        let upper = Self::split_state(area, st, start, end, hi, [upper_used, upper_cow]);
        st.used.split_off_into(lo_page, &mut mid_used);
        st.cow.split_off_into(lo_page, &mut mid_cow);
        let mut mid = Self::split_state(area, st, start, hi, lo, [mid_used, mid_cow]);
        let (more, less) = change(mid.state_mut());
        mid.add_reserved(more);
        mid.sub_reserved(less);
        Ok([
            AreaEntry::of_new(mid_block, mid),
            AreaEntry::of_new(upper_block, upper),
        ])
    }

    /// Takes the pages `[n, end)` out of `area` (locked as `st`, spanning
    /// `[start, end)`; their used space and copy-on-write set, `used` and
    /// `cow`, already moved out) and returns the area they make.
    fn split_state(
        area: &Area<M>,
        st: &mut AreaState<M>,
        start: u64,
        end: u64,
        n: u64,
        [used, cow]: [UsedSpace; 2],
    ) -> Area<M> {
        let (lower_pages, upper_pages) = (n - start, end - n);
        let offset = area.offset();
        let total = area.reserved();
        let (lower_res, upper_res) = match &st.share {
            // The record's reservation is the group's, shown by each part
            // and given back by the last to go: one more reference.
            Some(share) => {
                share.state.lock().refs += 1;
                (total, total)
            }
            None => {
                let lower = Self::kept_reservation(area, st, lower_pages);
                (lower, total - lower)
            }
        };
        area.reserved.store(lower_res, Relaxed);
        Self::shrink_to(area, lower_pages);
        let part = AreaPart {
            base: Page::from_number(n),
            pages: upper_pages,
            offset: offset + lower_pages,
            reserved: upper_res,
            grow_limit: upper_pages,
        };
        area.derived(part, || st.part(st.flags - AreaFlags::PLACEMENT, used, cow))
    }

    /// The part of the reservation of `area` (locked as `st`, not shared)
    /// its first `pages` pages keep when the rest is cut off: their pages
    /// (up front) or their resident ones ([`AreaFlags::LATE_RESERVE`], the
    /// used space already cut), at most what the area has.
    pub(crate) fn kept_reservation(area: &Area<M>, st: &AreaState<M>, pages: u64) -> u64 {
        let base = area.base().number();
        Self::pages_reservation(area, st, base, base + pages).min(area.reserved())
    }

    /// What pages `[from, to)` of `area` (locked as `st`) reserve by
    /// themselves: their pages (up front), or their resident ones
    /// ([`AreaFlags::LATE_RESERVE`]). The rule a split divides a
    /// reservation by.
    pub(crate) fn pages_reservation(area: &Area<M>, st: &AreaState<M>, from: u64, to: u64) -> u64 {
        Self::reservation_with(area, st, [from, to], st.flags)
    }

    /// [`pages_reservation`](Self::pages_reservation) were the area's
    /// flags `flags`.
    pub(crate) fn reservation_with(
        area: &Area<M>,
        st: &AreaState<M>,
        [from, to]: [u64; 2],
        flags: AreaFlags,
    ) -> u64 {
        let backend = &*area.backend;
        if flags.contains(AreaFlags::LATE_RESERVE) {
            st.used
                .iter()
                .map(|r| {
                    let (a, b) = (r.start.number().max(from), r.end().number().min(to));
                    if a < b {
                        let first = area.index(Page::from_number(a));
                        reserve::per_page(backend, flags, first, b - a)
                    } else {
                        0
                    }
                })
                .sum()
        } else {
            let first = area.offset() + (from - area.base().number());
            reserve::up_front(backend, flags, first, to - from)
        }
    }

    /// Makes `area` (locked, the tree written) its first `pages` pages: a
    /// grows-down area's limit loses the pages cut off.
    pub(crate) fn shrink_to(area: &Area<M>, pages: u64) {
        let cut = area.pages() - pages;
        area.pages.store(pages, Release);
        let limit = area.grow_limit();
        area.grow_limit
            .store(limit.saturating_sub(cut).max(pages), Relaxed);
    }

    /// Merges the area of the written `tree` holding page `n` with its
    /// right, then its left neighbour, where compatible; whether it did.
    /// If the heap refuses the room the joined used spaces need, nothing
    /// is merged (the areas stay apart, which is correct, only less
    /// compact).
    pub(crate) fn merge_at(&self, tree: &mut Areas<M>, n: u64) -> bool {
        self.try_merge_at(tree, n).unwrap_or(false)
    }

    /// [`merge_at`](Self::merge_at), `NoMemory` (nothing changed) if the
    /// heap refuses the room the joined used spaces need.
    pub(crate) fn try_merge_at(&self, tree: &mut Areas<M>, n: u64) -> Result<bool> {
        // The area and whether the next one starts where it ends, in one
        // search; the one before it in another.
        let (start, end, right_adjacent) = match tree.neighbors(n) {
            (Some((start, end, _)), next) if end > n => {
                (start, end, next.is_some_and(|(s, _, _)| s == end))
            }
            _ => return Ok(false),
        };
        let left = start
            .checked_sub(1)
            .and_then(|p| tree.find(p))
            .filter(|&(_, left_end, _)| left_end == start)
            .map(|(left, _, _)| left);
        let right_ok = right_adjacent && self.mergeable(tree, start, end);
        let left_ok = left.is_some_and(|l| self.mergeable(tree, l, start));
        if !right_ok && !left_ok {
            return Ok(false);
        }
        // The heap first: the area that takes the right one's runs, and the
        // left one that takes both, get room for exactly the runs they gain
        // (none where a run continues across the boundary: an area's single
        // inline run stays inline).
        let locked = |at: u64, join: &dyn Fn(&mut AreaState<M>) -> Option<Runs>| {
            tree.get(at).and_then(|(_, e)| join(&mut e.lock()))
        };
        let joined = if right_ok {
            let right = locked(end, &|st| Some(Runs::of(st))).unwrap_or_default();
            locked(start, &|st| Self::reserve_join(st, end, right)).ok_or(Error::NoMemory)?
        } else {
            locked(start, &|st| Some(Runs::of(st))).unwrap_or_default()
        };
        if let (true, Some(l)) = (left_ok, left) {
            locked(l, &|st| Self::reserve_join(st, start, joined)).ok_or(Error::NoMemory)?;
        }
        let mut merged = right_ok && self.merge_pair(tree, start).is_some();
        if let (true, Some(l)) = (left_ok, left) {
            merged |= self.merge_pair(tree, l).is_some();
        }
        Ok(merged)
    }

    /// Whether the area at `left` of `tree` and the one at `boundary`
    /// (where it ends) may become one. The rights in the areas' summaries
    /// (kept current by every locked change) rule most pairs out without
    /// taking a lock.
    fn mergeable(&self, tree: &Areas<M>, left: u64, boundary: u64) -> bool {
        let (Some((left_end, l)), Some((_, r))) = (tree.get(left), tree.get(boundary)) else {
            return false;
        };
        if left_end != boundary || Self::rights_differ(l, r) {
            return false;
        }
        let (lst, rst) = (l.lock_read(), r.lock_read());
        Self::compatible(&l.area, &lst, &r.area, &rst)
    }

    /// Whether the published summaries of `l` and `r` already rule a merge
    /// out: rights that differ (besides the left one's placement bits).
    fn rights_differ(l: &AreaEntry<M>, r: &AreaEntry<M>) -> bool {
        Self::rights_rule_out(l.summary.flags(), r.summary.flags())
    }

    /// Joins the area starting at `boundary` to the one at `left` (which
    /// must end there) if they are compatible and the heap gives the left
    /// one room for the runs it gains: [`Join::Merged`] with the joined
    /// area's end, or (nothing changed) [`Join::Apart`] with the end of the
    /// area at `boundary`, if there is one. One lock of each area for the
    /// checks.
    pub(crate) fn join_pair(&self, tree: &mut Areas<M>, left: u64, boundary: u64) -> Join {
        {
            // One search for both: the area before `boundary` and the next.
            let (before, after) = match boundary.checked_sub(1) {
                Some(p) => tree.neighbors(p),
                None => (None, tree.get(0).map(|(end, r)| (0, end, r))),
            };
            let Some((_, right_end, r)) = after.filter(|a| a.0 == boundary) else {
                return Join::Apart(None);
            };
            let apart = Join::Apart(Some(right_end));
            let Some((_, _, l)) = before.filter(|b| b.0 == left && b.1 == boundary) else {
                return apart;
            };
            if Self::rights_differ(l, r) {
                return apart;
            }
            // The right one leaves the tree below: nothing of it to publish.
            let (mut lst, mut rst) = (l.lock(), r.area.lock_detached());
            if !Self::compatible(&l.area, &lst, &r.area, &rst)
                || Self::reserve_join(&mut lst, boundary, Runs::of(&rst)).is_none()
            {
                return apart;
            }
            // The left one takes the right one's state under these locks
            // (the tree, written, shows neither meanwhile); the tree's
            // entries join after them.
            Self::absorb_right(&l.area, &mut lst, &r.area, &mut rst, right_end);
        }
        match tree.join_next(left) {
            Some((end, right, _)) => {
                tree.give_up(right.area);
                Join::Merged(end)
            }
            // Unreachable: the search above found both entries under this
            // write lock, and nothing has changed the tree since.
            None => {
                debug_assert!(false, "the two entries were there");
                Join::Apart(None)
            }
        }
    }

    /// Joins the area `middle` (locked, spanning pages `[s, e)`) with
    /// its neighbours where compatible, each under the lock the caller
    /// holds (nothing searched, nothing locked again): `left`, ending at
    /// `s`, and `right`, starting at `e`, either absent if there is none
    /// or it cannot merge. The states move into the area that stays (the
    /// left one, else `middle`); returns the joins to make in the tree once
    /// the locks are gone. A heap that refuses the room for the runs the
    /// staying area gains leaves them apart (correct, only less compact).
    pub(crate) fn join_locked(
        left: Option<(u64, &Area<M>, &mut AreaState<M>)>,
        (s, e, middle, mst): (u64, u64, &Area<M>, &mut AreaState<M>),
        right: Option<(u64, &Area<M>, &mut AreaState<M>)>,
    ) -> Joins {
        let left = left.filter(|(_, l, lst)| Self::compatible(l, lst, middle, mst));
        let right = right.filter(|(_, r, rst)| Self::compatible(middle, mst, r, rst));
        match (left, right) {
            (Some((l_start, l, lst)), Some((r_end, r, rst))) => {
                let (joined, _, _) = Runs::joined(mst, e, Runs::of(rst));
                if Self::reserve_join(lst, s, joined).is_some() {
                    Self::absorb_right(l, lst, middle, mst, e);
                    Self::absorb_right(l, lst, r, rst, r_end);
                    return Joins::Both(l_start);
                }
                // No room for both: one pair, as a merge pair by pair
                // would leave them.
                match Self::join_one((l_start, l, lst), (s, middle, mst, e)) {
                    Joins::None => Self::join_one((s, middle, mst), (e, r, rst, r_end)),
                    one => one,
                }
            }
            (Some((l_start, l, lst)), None) => {
                Self::join_one((l_start, l, lst), (s, middle, mst, e))
            }
            (None, Some((r_end, r, rst))) => Self::join_one((s, middle, mst), (e, r, rst, r_end)),
            (None, None) => Joins::None,
        }
    }

    /// Joins `r` (locked as `rst`, spanning pages `[boundary, r_end)`) to
    /// `l` (locked as `lst`, starting at `l_start`, ending at `boundary`),
    /// if the heap gives `lst` room for the runs it gains.
    fn join_one(
        (l_start, l, lst): (u64, &Area<M>, &mut AreaState<M>),
        (boundary, r, rst, r_end): (u64, &Area<M>, &mut AreaState<M>, u64),
    ) -> Joins {
        if Self::reserve_join(lst, boundary, Runs::of(rst)).is_none() {
            return Joins::None;
        }
        Self::absorb_right(l, lst, r, rst, r_end);
        Joins::One(l_start)
    }

    /// Makes the tree's side of `joins` (which [`join_locked`](Self::join_locked)
    /// made under the areas' locks, now released; the tree written since):
    /// the entries taken in go, their records' blocks kept as spares.
    pub(crate) fn join_entries(tree: &mut Areas<M>, joins: Joins) {
        match joins {
            Joins::None => {}
            Joins::One(left) => match tree.join_next(left) {
                Some((_, right, _)) => tree.give_up(right.area),
                None => debug_assert!(false, "the two entries were there"),
            },
            Joins::Both(left) => match tree.join_next_two(left) {
                Some((_, [middle, right], _)) => {
                    tree.give_up(middle.area);
                    tree.give_up(right.area);
                }
                None => debug_assert!(false, "the three entries were there"),
            },
        }
    }

    /// Whether rights `l` of an area and `r` of the one after it rule a
    /// merge of the two out: they differ (besides the left one's placement
    /// bits).
    pub(crate) fn rights_rule_out(l: AreaFlags, r: AreaFlags) -> bool {
        l - AreaFlags::PLACEMENT != r
    }

    /// Makes room in `st` (an area's state, below page `boundary`) for the
    /// runs it gains by taking in `right` (the runs of the area from
    /// `boundary` on): exactly those that do not continue one of its own
    /// across the boundary. Returns its runs once joined; `None` (nothing
    /// changed that matters: room only grows) if the heap refuses.
    fn reserve_join(st: &mut AreaState<M>, boundary: u64, right: Runs) -> Option<Runs> {
        let (joined, used, cow) = Runs::joined(st, boundary, right);
        if !st.used.try_reserve(used) || (cow != 0 && !st.cow.try_reserve(cow)) {
            return None;
        }
        Some(joined)
    }

    /// Joins the area starting where the one at `left` ends to it, found
    /// compatible under this write lock of the tree (which keeps them so)
    /// and with room reserved for the runs the left one gains; the joined
    /// area's end if it did.
    fn merge_pair(&self, tree: &mut Areas<M>, left: u64) -> Option<u64> {
        #[cfg(debug_assertions)]
        if let Some((boundary, l)) = tree.get(left) {
            let (_, r) = tree.get(boundary).expect("merging with no area");
            let (lst, rst) = (l.lock_read(), r.lock_read());
            debug_assert!(Self::compatible(&l.area, &lst, &r.area, &rst));
        }
        let (end, right, slot) = tree.join_next(left)?;
        let slot = &*slot;
        let mut st = slot.lock();
        let mut rst = right.area.lock_detached();
        Self::absorb_right(&slot.area, &mut st, &right.area, &mut rst, end);
        drop(st);
        drop(rst);
        tree.give_up(right.area);
        Some(end)
    }

    /// Moves the state of `right` (locked as `rst`, the area after `area`,
    /// ending at page `end`) into `area` (locked as `st`): its used space
    /// and copy-on-write set (room reserved by
    /// [`reserve_join`](Self::reserve_join): allocates nothing), its share
    /// reference or reservation, its pages. The tree written, before or
    /// after its entries join.
    fn absorb_right(
        area: &Area<M>,
        st: &mut AreaState<M>,
        right: &Area<M>,
        rst: &mut AreaState<M>,
        end: u64,
    ) {
        for r in rst.used.take().iter() {
            let added = st.used.insert(r.start, r.count);
            debug_assert!(added.is_ok(), "areas are disjoint");
        }
        crate::cow::absorb(&mut st.cow, rst.cow.take());
        match rst.share.take() {
            // Both showed the record's reservation; one reference goes.
            Some(share) => share.state.lock().refs -= 1,
            // The one writer (the tree written, the area locked): a load
            // and a store, no read-modify-write.
            None => area
                .reserved
                .store(area.reserved() + right.reserved(), Relaxed),
        }
        right.reserved.store(0, Relaxed);
        area.pages.store(end - area.base().number(), Release);
        area.grow_limit
            .store(area.grow_limit() + right.pages(), Relaxed);
    }

    /// Whether the areas `l` and `r` (locked as `lst`, `rst`; `r` starts
    /// where `l` ends) may become one.
    fn compatible(l: &Area<M>, lst: &AreaState<M>, r: &Area<M>, rst: &AreaState<M>) -> bool {
        let plain = !lst.attrs.contains(AreaAttrs::PARTIAL)
            && lst.attrs == rst.attrs
            && !rst.flags.intersects(AreaFlags::PLACEMENT)
            && lst.flags - AreaFlags::PLACEMENT == rst.flags
            && lst.max_flags == rst.max_flags
            && l.backend.as_any().is_none()
            // Parts of one split share their backend: nothing to compare.
            // Two stateless backends are the same exactly when their types
            // are (what they say of themselves may agree though they
            // differ: the default object id is an address they share).
            && (BackendRef::ptr_eq(&l.backend, &r.backend)
                || (!(l.backend.is_stateless() && r.backend.is_stateless())
                    && r.backend.as_any().is_none()
                    && l.backend.name() == r.backend.name()
                    && l.backend.object_id() == r.backend.object_id()));
        if !plain {
            return false;
        }
        let contiguous = l.offset() + l.pages() == r.offset();
        match (&lst.share, &rst.share) {
            (None, None) => contiguous || l.backend.caps().contains(BackendCaps::GROW_DOWN),
            (Some(a), Some(b)) => TryArc::ptr_eq(a, b) && contiguous,
            _ => false,
        }
    }
}

/// The heap memory one split needs, set aside by
/// [`AddressSpace::prepare_splits`] before anything changes: the block
/// of the upper part's record (written at the split), its used space and
/// its copy-on-write set.
pub(crate) struct SplitRoom<M: Machine> {
    upper: Unwritten<Area<M>>,
    used: UsedSpace,
    cow: UsedSpace,
}

/// The joins [`AddressSpace::join_locked`] made under the areas' locks,
/// for the tree to follow.
pub(crate) enum Joins {
    /// Nothing joined.
    None,
    /// The area starting here took the one after it in.
    One(u64),
    /// The area starting here took the two after it in.
    Both(u64),
}

/// What [`AddressSpace::join_pair`] did.
pub(crate) enum Join {
    /// The two areas are one now, ending where this says.
    Merged(u64),
    /// They stay apart; the end of the area at the boundary, if there is one.
    Apart(Option<u64>),
}

/// An area's runs as a merge counts them: how many its used space and
/// copy-on-write set hold, and where the lowest of each starts.
#[derive(Clone, Copy, Default)]
struct Runs {
    used: usize,
    used_first: Option<u64>,
    cow: usize,
    cow_first: Option<u64>,
}

impl Runs {
    fn of<M: Machine>(st: &AreaState<M>) -> Self {
        Runs {
            used: st.used.intervals(),
            used_first: st.used.first_page(),
            cow: st.cow.intervals(),
            cow_first: st.cow.first_page(),
        }
    }

    /// The runs of the area locked as `st` (below page `boundary`) once it
    /// has taken in `right` (the runs of the area from `boundary` on), and
    /// how many used and copy-on-write runs it gains: those that do not
    /// continue one of its own across the boundary.
    fn joined<M: Machine>(st: &AreaState<M>, boundary: u64, right: Runs) -> (Self, usize, usize) {
        let mine = Runs::of(st);
        let used = st
            .used
            .added_by_join(boundary, right.used, right.used_first);
        let cow = st.cow.added_by_join(boundary, right.cow, right.cow_first);
        let joined = Runs {
            used: mine.used + used,
            used_first: mine.used_first.or(right.used_first),
            cow: mine.cow + cow,
            cow_first: mine.cow_first.or(right.cow_first),
        };
        (joined, used, cow)
    }
}
