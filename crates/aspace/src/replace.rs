//! Replacing whatever lies in a range with a new area in one operation
//! (Linux's `mmap(MAP_FIXED)` over existing mappings): see
//! [`AddressSpace::area_replace_with`], and several ranges at once, each
//! with its own new area ([`AddressSpace::area_replace_many`]: guard pages
//! put in or taken out across mappings).
//!
//! Done as an unmap of the range followed by a creation, a failure of the
//! creation (the heap refusing the new area's record, the commit limit)
//! would come after the old pages were gone. Here everything that can
//! refuse comes first: the new area's record and room for its entry and
//! for the splits at the range's ends from the heap, and its reservation.
//! The areas wholly inside the range hand their reservation over to the new
//! area instead of giving it back, so a replacement of memory by as much
//! memory needs nothing more from the commit limit.

use crate::addr::VirtAddr;
use crate::area::AreaEntry;
use alloc::vec::Vec;

use crate::backend::BackendRef;
use crate::flags::{AreaAttrs, AreaFlags};
use crate::machine::Machine;
use crate::placement::DEFAULT_GROW_LIMIT;
use crate::reserve;
use crate::space::{AddressSpace, Areas};
use crate::tlb::ShootdownBatch;
use crate::{Error, Result, PAGE_SIZE};

/// One new area of [`AddressSpace::area_replace_many`]: what
/// [`area_replace_with`](AddressSpace::area_replace_with) takes.
pub struct Replacement<M: Machine> {
    /// Its first address.
    pub base: VirtAddr,
    /// Its size in bytes.
    pub size: u64,
    /// Its rights and flags.
    pub flags: AreaFlags,
    /// Its attributes.
    pub attrs: AreaAttrs,
    /// Its backend.
    pub backend: BackendRef<M::Memory, M::Frames>,
}

impl<M: Machine> Replacement<M> {
    /// Its area of `pages` pages with `flags` (checked), not in a tree yet,
    /// and what it reserves, as a new area does (not taken yet: the
    /// caller takes it, and gives it back if the area does not go in).
    pub(crate) fn entry(&self, flags: AreaFlags, pages: u64) -> Result<(AreaEntry<M>, u64)> {
        let own = if self.attrs.contains(AreaAttrs::PARTIAL) {
            0
        } else {
            reserve::up_front(&*self.backend, flags, self.backend.first_index(), pages)
        };
        let limit = (DEFAULT_GROW_LIMIT / PAGE_SIZE).max(pages);
        let entry = AreaEntry::new(
            self.base.page(),
            pages,
            flags,
            self.attrs,
            self.backend.clone(),
            own,
            limit,
        )?;
        Ok((entry, own))
    }
}

impl<M: Machine> AddressSpace<M> {
    /// What the parts of `area` (locked as `st`, not shared, spanning from
    /// page `start`) that lie inside `ranges` hold once the area is split
    /// at every page of `cuts` inside it, lowest first, by the rule of
    /// [`split_at`](Self::split_at): the part below a cut keeps what its
    /// pages reserve ([`pages_reservation`](Self::pages_reservation)), at
    /// most what is left, and the part above the rest. `cuts` and `ranges`
    /// are sorted; every range's ends are among the cuts.
    fn parts_reservation(
        area: &crate::area::Area<M>,
        st: &crate::area::AreaState<M>,
        start: u64,
        cuts: &[u64],
        ranges: &[(u64, u64)],
    ) -> u64 {
        let end = start + area.pages();
        let inside = |p: u64| ranges.iter().any(|&(s, e)| s <= p && p < e);
        let (mut rest, mut lo, mut carried) = (area.reserved(), start, 0);
        for &c in cuts.iter().filter(|&&c| start < c && c < end) {
            let keep = Self::pages_reservation(area, st, lo, c).min(rest);
            if inside(lo) {
                carried += keep;
            }
            rest -= keep;
            lo = c;
        }
        if inside(lo) {
            carried += rest;
        }
        carried
    }

    /// Makes `[base, base + size)` a new area with `flags`, `attrs` and
    /// `backend`, replacing what was there (areas inside go, areas across
    /// the ends are split there and lose their part inside, holes are
    /// fine), in one step: one TLB shootdown round for every page unmapped,
    /// frames released after it. The new area is not merged with its
    /// neighbours ([`area_merge`](Self::area_merge) does that).
    ///
    /// Refusals, each before anything changed: what
    /// [`area_create_with`](Self::area_create_with) refuses but an overlap
    /// (`InvalidArgument`, `AddressNotAvailable` outside this space's part
    /// or for a guard page that meets an area), what
    /// [`unmap_range`](Self::unmap_range) refuses (an area that cannot be
    /// split at an end `NotSupported` or `NotFound`), and `NoMemory` when
    /// the heap refuses the new record or room for the tree's entries, or
    /// the new area's reservation passes the commit limit. What the areas
    /// in the range (not shared) reserve there is handed over: areas wholly
    /// inside their whole reservation, areas cut at the ends what their
    /// parts inside hold after the cuts (the splits' own rule); only the
    /// rest of the new area's reservation counts for the limit.
    pub fn area_replace_with(
        &self,
        base: VirtAddr,
        size: u64,
        flags: AreaFlags,
        attrs: AreaAttrs,
        backend: BackendRef<M::Memory, M::Frames>,
    ) -> Result<VirtAddr> {
        self.area_replace_many(&[Replacement {
            base,
            size,
            flags,
            attrs,
            backend,
        }])?;
        Ok(base)
    }

    /// [`area_replace_with`](Self::area_replace_with) of several ranges in
    /// one step, each with its own new area: all of them or, on any
    /// refusal, none (the same refusals, for any part; parts not in
    /// ascending order or overlapping are `InvalidArgument`). One TLB
    /// shootdown round for every page unmapped. What the areas in all the
    /// ranges reserve there is handed over as one sum, so only what the new
    /// areas reserve beyond it counts for the commit limit, and what they
    /// reserve less is given back.
    pub fn area_replace_many(&self, parts: &[Replacement<M>]) -> Result<()> {
        // Every part's checks, before the tree is locked.
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        let mut flags: Vec<AreaFlags> = Vec::new();
        ranges
            .try_reserve(parts.len())
            .map_err(|_| Error::NoMemory)?;
        flags
            .try_reserve(parts.len())
            .map_err(|_| Error::NoMemory)?;
        for p in parts {
            let f = Self::placement_flags(p.flags, &*p.backend)?;
            let range = Self::checked_range(p.base, p.size)?;
            let (s, e) = (range.start.number(), range.end().number());
            if ranges
                .last()
                .is_some_and(|&(_, prev)| prev + f.guard_pages() > s)
            {
                return Err(Error::InvalidArgument);
            }
            ranges.push((s, e));
            flags.push(f);
        }
        // The cuts: every range's ends, each once, lowest first.
        let mut cuts: Vec<u64> = Vec::new();
        cuts.try_reserve(2 * parts.len())
            .map_err(|_| Error::NoMemory)?;
        for &(s, e) in &ranges {
            if cuts.last() != Some(&s) {
                cuts.push(s);
            }
            cuts.push(e);
        }
        let mut tree = self.areas.write();
        for (p, (&(s, e), f)) in parts.iter().zip(ranges.iter().zip(&flags)) {
            let guard = f.guard_pages();
            let range = Self::checked_range(p.base, p.size)?;
            // No area below the new one's guard, no guard page of an area
            // above it (both stay).
            if !self.in_window(range, guard)
                || (guard > 0 && tree.overlaps(s - guard, s, None))
                || tree.guarded_by(e - 1).is_some()
            {
                return Err(Error::AddressNotAvailable);
            }
        }
        for &c in &cuts {
            self.check_split(&tree, c)?;
        }
        // The heap: the new records, the splits, the new entries.
        let mut reserve = 0u64;
        let mut slots = Vec::new();
        slots
            .try_reserve(parts.len())
            .map_err(|_| Error::NoMemory)?;
        for (p, (&(s, e), &f)) in parts.iter().zip(ranges.iter().zip(&flags)) {
            let (entry, own) = p.entry(f, e - s)?;
            reserve += own;
            slots.push(entry);
        }
        let mut rooms = Vec::new();
        rooms.try_reserve(cuts.len()).map_err(|_| Error::NoMemory)?;
        for &c in &cuts {
            let [room] = self.prepare_splits(&mut tree, [c])?;
            rooms.push(room);
        }
        Self::reserve_entries(&mut tree, cuts.len() + 2 * parts.len() + 1)?;
        // The reservation: what the areas' parts inside will hold once
        // split out (by the splits' own rule) is carried over, the rest
        // taken now.
        let carried = Self::carried(&tree, &cuts, &ranges);
        let take = reserve.saturating_sub(carried);
        if !self.shared.reserve.try_reserve(take) {
            return Err(Error::NoMemory);
        }
        // Nothing below fails.
        for (&c, room) in cuts.iter().zip(rooms) {
            let split = self.split_at(&mut tree, c, room);
            debug_assert!(split.is_ok(), "checked splittable");
        }
        let mut batch = ShootdownBatch::new();
        let mut handed = 0;
        for &(s, e) in &ranges {
            while let Some((start, _)) = Self::first_in(&tree, s, e) {
                let Some((_, old)) = tree.remove(start) else {
                    break;
                };
                let st = old.lock();
                if st.share.is_none() {
                    // Handed over, not given back.
                    let reserved = old.area.reserved();
                    handed += reserved;
                    old.area.sub_reserved(reserved);
                }
                drop(st);
                self.unmap_area(&old.area, &mut batch);
            }
        }
        debug_assert_eq!(handed, carried, "the splits left what was foreseen");
        self.shared
            .reserve
            .release((take + handed).saturating_sub(reserve));
        for ((&(s, e), f), slot) in ranges.iter().zip(&flags).zip(slots) {
            let inserted = tree.insert_guarded(s, e, f.guard_pages() as u8, slot);
            debug_assert!(inserted.is_ok(), "the range was emptied");
        }
        batch.complete(&self.shared, self.id());
        Ok(())
    }

    /// What the areas of `tree` (not shared) will hold inside `ranges` once
    /// split at `cuts` ([`parts_reservation`](Self::parts_reservation) of
    /// each area the ranges meet).
    fn carried(tree: &Areas<M>, cuts: &[u64], ranges: &[(u64, u64)]) -> u64 {
        let mut carried = 0;
        for &(s, e) in ranges {
            let mut at = s;
            while let Some((start, end)) = Self::first_in(tree, at, e) {
                // An area across several ranges counts once, at the first.
                let first_range = ranges.iter().find(|&&(rs, re)| rs < end && start < re);
                if first_range == Some(&(s, e)) {
                    if let Some((_, slot)) = tree.get(start) {
                        let st = slot.lock();
                        if st.share.is_none() {
                            carried +=
                                Self::parts_reservation(&slot.area, &st, start, cuts, ranges);
                        }
                    }
                }
                at = end;
            }
        }
        carried
    }
}
