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

use core::sync::atomic::Ordering::Relaxed;

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
    /// the new area's reservation passes the commit limit. Areas wholly
    /// inside the range (not shared) hand their reservation over; the parts
    /// of areas cut at the ends give theirs back afterwards, so only the
    /// former count for the limit.
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
        if !self.in_window(range, guard) || (guard > 0 && tree.overlaps(s - guard, s, None)) {
            return Err(Error::AddressNotAvailable);
        }
        self.check_split(&tree, s)?;
        self.check_split(&tree, e)?;
        // Whether an area runs across `s`, or across `e`: its part inside
        // is cut off, not handed over.
        let across_s = tree.find(s).is_some_and(|(start, _, _)| start < s);
        let across_e = tree.find(e - 1).is_some_and(|(_, end, _)| end > e);
        let whole = |start: u64, end: u64| {
            start >= s && end <= e && !(across_s && start == s) && !(across_e && end == e)
        };
        // The heap: the new record, the splits, the new entry.
        let reserve = if attrs.contains(AreaAttrs::PARTIAL) {
            0
        } else {
            reserve::up_front(&*backend, flags, 0, range.count)
        };
        let limit = (DEFAULT_GROW_LIMIT / PAGE_SIZE).max(range.count);
        let slot = AreaEntry::new(range.start, range.count, flags, attrs, backend, reserve)?
            .with_grow_limit(limit);
        let [room_s, room_e] = self.prepare_splits(&mut tree, [s, e])?;
        Self::reserve_entries(&mut tree, 3)?;
        // The reservation: what the areas wholly inside hold is carried
        // over, the rest taken now.
        let mut carried = 0;
        let mut at = s;
        while let Some((start, end)) = Self::first_in(&tree, at, e) {
            if start >= s && end <= e {
                if let Some((_, slot)) = tree.get(start) {
                    if slot.lock().share.is_none() {
                        carried += slot.area.reserved();
                    }
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
        while let Some((start, end)) = Self::first_in(&tree, s, e) {
            let Some((_, old)) = tree.remove(start) else {
                break;
            };
            let st = old.lock();
            if whole(start, end) && st.share.is_none() {
                // Handed over, not given back.
                old.area.reserved.store(0, Relaxed);
            }
            drop(st);
            self.unmap_area(&old.area, &mut batch);
        }
        // The parts cut off at the ends were areas inside the range after
        // the splits but not before: they gave their reservation back.
        self.shared.reserve.release(carried.saturating_sub(reserve));
        let inserted = tree.insert_guarded(s, e, guard as u8, slot);
        debug_assert!(inserted.is_ok(), "the range was emptied");
        batch.complete(&self.shared, self.id());
        Ok(base)
    }
}
