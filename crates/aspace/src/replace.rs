//! Replacing whatever lies in a range with a new area in one operation
//! (Linux's `mmap(MAP_FIXED)` over existing mappings): see
//! [`AddressSpace::area_replace_with`].
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
use crate::backend::BackendRef;
use crate::flags::{AreaAttrs, AreaFlags};
use crate::machine::Machine;
use crate::placement::DEFAULT_GROW_LIMIT;
use crate::reserve;
use crate::space::AddressSpace;
use crate::tlb::ShootdownBatch;
use crate::{Error, Result, PAGE_SIZE};

impl<M: Machine> AddressSpace<M> {
    /// The reservation the part `[s, e)` of `area` (locked as `st`, not
    /// shared, spanning from page `start`) holds once the area is split at
    /// `s` and then at `e`, by the rule of [`split_at`](Self::split_at):
    /// the part below a cut keeps what its pages reserve
    /// ([`pages_reservation`](Self::pages_reservation)), at most what the
    /// area holds, and the part above the rest.
    fn part_reservation(
        area: &crate::area::Area<M>,
        st: &crate::area::AreaState<M>,
        start: u64,
        s: u64,
        e: u64,
    ) -> u64 {
        let end = start + area.pages();
        let own = |from: u64, to: u64| Self::pages_reservation(area, st, from, to);
        let total = area.reserved();
        // A cut at `s` leaves the part above it the rest.
        let (lo, above) = if start < s {
            (s, total - own(start, s).min(total))
        } else {
            (start, total)
        };
        // A cut at `e` leaves the part below it what it reserves.
        if end > e {
            own(lo, e).min(above)
        } else {
            above
        }
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
        let flags = Self::placement_flags(flags, &*backend)?;
        let range = Self::checked_range(base, size)?;
        let (s, e) = (range.start.number(), range.end().number());
        let guard = flags.guard_pages();
        let mut tree = self.areas.write();
        // No area below the new one's guard, no guard page of an area
        // above it (both stay).
        if !self.in_window(range, guard)
            || (guard > 0 && tree.overlaps(s - guard, s, None))
            || tree.guarded_by(e - 1).is_some()
        {
            return Err(Error::AddressNotAvailable);
        }
        self.check_split(&tree, s)?;
        self.check_split(&tree, e)?;
        // The heap: the new record, the splits, the new entry.
        let reserve = if attrs.contains(AreaAttrs::PARTIAL) {
            0
        } else {
            reserve::up_front(&*backend, flags, 0, range.count)
        };
        let limit = (DEFAULT_GROW_LIMIT / PAGE_SIZE).max(range.count);
        let slot = AreaEntry::new(
            range.start,
            range.count,
            flags,
            attrs,
            backend,
            reserve,
            limit,
        )?;
        let [room_s, room_e] = self.prepare_splits(&mut tree, [s, e])?;
        Self::reserve_entries(&mut tree, 3)?;
        // The reservation: what the areas' parts inside will hold once
        // split out (by the splits' own rule) is carried over, the rest
        // taken now.
        let mut carried = 0;
        let mut at = s;
        while let Some((start, end)) = Self::first_in(&tree, at, e) {
            if let Some((_, slot)) = tree.get(start) {
                let st = slot.lock();
                if st.share.is_none() {
                    carried += Self::part_reservation(&slot.area, &st, start, s, e);
                }
            }
            at = end;
        }
        let take = reserve.saturating_sub(carried);
        if !self.shared.reserve.try_reserve(take) {
            return Err(Error::NoMemory);
        }
        // Nothing below fails.
        let split = self
            .split_at(&mut tree, s, room_s)
            .and_then(|()| self.split_at(&mut tree, e, room_e));
        debug_assert!(split.is_ok(), "checked splittable");
        let mut batch = ShootdownBatch::new();
        let mut handed = 0;
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
        debug_assert_eq!(handed, carried, "the splits left what was foreseen");
        self.shared
            .reserve
            .release((take + handed).saturating_sub(reserve));
        let inserted = tree.insert_guarded(s, e, guard as u8, slot);
        debug_assert!(inserted.is_ok(), "the range was emptied");
        batch.complete(&self.shared, self.id());
        Ok(base)
    }
}
