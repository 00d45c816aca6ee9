//! The move of one area's pages that grows or keeps their size and replaces
//! nothing (Linux's `mremap` of a part of one mapping, its common case): the
//! steps of [`move_pages`](super) for that case alone, without the lists
//! and loops the moves of several areas, over a new range or leaving the
//! old one mapped need. Same checks, same order, same outcome.

use crate::addr::Page;
use crate::backend::BackendCaps;
use crate::flags::AreaFlags;
use crate::internals::used_space::UsedSpace;
use crate::machine::Machine;
use crate::paging::PageTable;
use crate::reserve;
use crate::space::AddressSpace;
use crate::tlb::ShootdownBatch;
use crate::{Error, Result};

use super::Moved;

impl<M: Machine> AddressSpace<M> {
    /// Moves the pages `[os, oe)` to `[ns, ne)` (`ne - ns >= oe - os`, page
    /// numbers of checked ranges) if one area holds the old range: `None`
    /// (nothing done, nothing locked any more) when it spans more than one,
    /// for the general path.
    pub(super) fn move_one(&self, [os, oe]: [u64; 2], [ns, ne]: [u64; 2]) -> Option<Result<()>> {
        let (old_pages, new_pages) = (oe - os, ne - ns);
        debug_assert!(new_pages >= old_pages);
        let delta = ns.wrapping_sub(os);
        let m = self.machine();
        let pt = self.pt();
        let mut tree = self.areas.write();
        let Some((first_start, first_end, slot)) = tree.find(os) else {
            return Some(Err(Error::NotFound));
        };
        if oe > first_end {
            return None;
        }
        // The cuts the area needs at the part's ends.
        let (cut_lo, cut_hi) = (os > first_start, oe < first_end);
        // Checks, the reservation of growth, the sets the moved part takes.
        let (moved_flags, more, runs, cow_runs) = {
            let area = &slot.area;
            let st = slot.lock();
            if ns < oe && os < ne {
                return Some(Err(Error::AddressNotAvailable));
            }
            if let Err(e) = Self::check_splittable(area, &st) {
                return Some(Err(e));
            }
            let more = if new_pages == old_pages {
                0
            } else if !area.backend.caps().contains(BackendCaps::RESIZE) || st.share.is_some() {
                return Some(Err(Error::NotSupported));
            } else {
                let at = area.offset() + (oe - first_start);
                reserve::up_front(&*area.backend, st.flags, at, new_pages - old_pages)
            };
            let moved_flags = if os == first_start {
                st.flags
            } else {
                st.flags - AreaFlags::PLACEMENT
            };
            let nrange = crate::addr::PageRange {
                start: Page::from_number(ns),
                count: new_pages,
            };
            if !self.check_conflicts(&tree, nrange, moved_flags.guard_pages(), None) {
                return Some(Err(Error::AddressNotAvailable));
            }
            let runs = st.used.overlap(os, oe).0;
            let cow_runs = crate::cow::moved_runs(&st.cow, os, old_pages);
            (moved_flags, more, runs, cow_runs)
        };
        // The heap first: the moved part's sets, room for two splits and the
        // entry at its new place.
        let prepared = (|| {
            let used = UsedSpace::try_with_capacity(runs.max(1)).ok_or(Error::NoMemory)?;
            let cow = UsedSpace::try_with_capacity(cow_runs).ok_or(Error::NoMemory)?;
            let rooms = match (cut_lo, cut_hi) {
                (false, false) => [None, None],
                (true, false) => [self.prepare_splits(&mut tree, [os])?[0].take(), None],
                (false, true) => [None, self.prepare_splits(&mut tree, [oe])?[0].take()],
                (true, true) => self.prepare_splits(&mut tree, [os, oe])?,
            };
            Self::reserve_entries(&mut tree, 3)?;
            if !self.shared.reserve.try_reserve(more) {
                return Err(Error::NoMemory);
            }
            Ok((used, cow, rooms))
        })();
        let (used, cow, [room_os, room_oe]) = match prepared {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        };
        // The resident pages move (the only step that allocates frames:
        // page tables for the new place); refused, everything moved back,
        // and a CPU that reached a new mapping meanwhile flushed.
        let (from, to) = (Page::from_number(os), Page::from_number(ns));
        if pt
            .move_run(m.memory(), m.frames(), from, to, old_pages)
            .is_err()
        {
            let mut batch = ShootdownBatch::new();
            batch.defer_kept(to, old_pages);
            batch.complete(&self.shared, self.id());
            self.shared.reserve.release(more);
            return Some(Err(Error::NoMemory));
        }
        // Nothing below fails.
        if cut_lo {
            let split = self.split_at(&mut tree, os, room_os);
            debug_assert!(split.is_ok(), "checked splittable");
        }
        if cut_hi {
            let split = self.split_at(&mut tree, oe, room_oe);
            debug_assert!(split.is_ok(), "checked splittable");
        }
        let Some((_, entry)) = tree.get(os) else {
            debug_assert!(false, "the old range is an area now");
            return Some(Err(Error::NotFound));
        };
        let mut batch = ShootdownBatch::new();
        let moved = Moved {
            delta,
            keep: old_pages,
            pages: new_pages,
            more,
        };
        self.move_state(entry, os, oe, moved, (used, cow), &mut batch);
        entry.lock().flags = moved_flags;
        batch.complete(&self.shared, self.id());
        // The entry to its new place: within its leaf of the tree in place,
        // else out and in again (room reserved).
        let guard = moved_flags.guard_pages() as u8;
        if !tree.relocate(os, ns, ne, guard) {
            let moved = tree
                .remove(os)
                .is_some_and(|(_, entry)| tree.insert_guarded(ns, ne, guard, entry).is_ok());
            debug_assert!(moved, "the new range was checked free");
        }
        self.merge_at(&mut tree, ns);
        Some(Ok(()))
    }
}
