//! A change of rights over a range that one area holds: the usual
//! `mprotect` (a whole mapping, or a part cut out of its middle), in one
//! pass. One search finds the area and its neighbours; each area touched
//! is locked once, for its checks, its change and its split or merge; one
//! tree descent follows. [`AddressSpace::protect_range`] takes this path
//! where it applies and its general one otherwise (a range over several
//! areas or holes, one cut at one end only, rights that stay); both leave
//! the same areas (unless the heap refuses the room a merge needs: then
//! each leaves correct areas, apart where it could not join them), refuse
//! in the same order and change nothing when they refuse.

use crate::area::{Area, AreaState};
use crate::backend::BackendCaps;
use crate::flags::{AreaAttrs, AreaFlags};
use crate::internals::try_arc::Unwritten;
use crate::machine::Machine;
use crate::space::{AddressSpace, Areas};
use crate::split::Joins;
use crate::tlb::ShootdownBatch;
use crate::{Error, Result, VirtAddr};

/// The bits of an area's flags a change of rights keeps: where it may lie
/// and how it reserves.
pub(crate) const KEPT: AreaFlags = AreaFlags::PLACEMENT
    .union(AreaFlags::LATE_RESERVE)
    .union(AreaFlags::RESERVE_ON_WRITE);

/// The flags an area (or part) whose flags are `old` gets from a change of
/// rights to `flags`: the new rights, its own [`KEPT`] bits, but a
/// [`RESERVE_ON_WRITE`](AreaFlags::RESERVE_ON_WRITE) area given write
/// access reserves up front from then on.
fn new_flags(flags: AreaFlags, old: AreaFlags) -> AreaFlags {
    let new = (flags - KEPT) | (old & KEPT);
    if new.contains(AreaFlags::WRITE | AreaFlags::RESERVE_ON_WRITE) {
        new - (AreaFlags::LATE_RESERVE | AreaFlags::RESERVE_ON_WRITE)
    } else {
        new
    }
}

/// [`new_flags`], and with `release` an area (or part) that reserves up
/// front, is not shared and gets no write goes back to reserving late
/// until given write ([`AddressSpace::protect_range_releasing`]).
pub(crate) fn flags_of(flags: AreaFlags, old: AreaFlags, shared: bool, release: bool) -> AreaFlags {
    let new = new_flags(flags, old);
    if release && !shared && !new.intersects(AreaFlags::LATE_RESERVE | AreaFlags::WRITE) {
        new | AreaFlags::LATE_RESERVE | AreaFlags::RESERVE_ON_WRITE
    } else {
        new
    }
}

/// What a change of rights to `flags` does to the part `[lo, hi)` of an
/// area: its new flags ([`flags_of`]), and the pages it reserves more (a
/// reserve-on-write area given write) or gives back (one going back to
/// reserving late: all but what its mapped pages reserve).
pub(crate) struct Change {
    pub flags: AreaFlags,
    pub more: u64,
    pub less: u64,
}

/// The [`Change`] of the part `[lo, hi)` of `area` (locked as `st`).
pub(crate) fn change_of<M: Machine>(
    area: &Area<M>,
    st: &AreaState<M>,
    part: [u64; 2],
    flags: AreaFlags,
    release: bool,
) -> Change {
    let new = flags_of(flags, st.flags, st.share.is_some(), release);
    let more = extra_reservation(area, st, part, new);
    let less =
        if new.contains(AreaFlags::LATE_RESERVE) && !st.flags.contains(AreaFlags::LATE_RESERVE) {
            AddressSpace::reservation_with(area, st, part, st.flags)
                .min(area.reserved())
                .saturating_sub(AddressSpace::reservation_with(area, st, part, new))
        } else {
            0
        };
    Change {
        flags: new,
        more,
        less,
    }
}

/// Whether pages `[lo, hi)` lie inside one of the ranges `release`
/// (checked already).
pub(crate) fn released(release: &[(VirtAddr, u64)], [lo, hi]: [u64; 2]) -> bool {
    release.iter().any(|&(base, size)| {
        let first = base.as_u64() / crate::PAGE_SIZE;
        first <= lo && hi <= first + size / crate::PAGE_SIZE
    })
}

/// Pages the part `[lo, hi)` of `area` (locked as `st`) reserves more once
/// its flags are `new`: when it stops reserving late, what it reserves up
/// front with them less what its resident pages reserve now; else none.
fn extra_reservation<M: Machine>(
    area: &Area<M>,
    st: &AreaState<M>,
    [lo, hi]: [u64; 2],
    new: AreaFlags,
) -> u64 {
    if !st.flags.contains(AreaFlags::LATE_RESERVE) || new.contains(AreaFlags::LATE_RESERVE) {
        return 0;
    }
    let first = area.offset() + (lo - area.base().number());
    crate::reserve::up_front(&*area.backend, new, first, hi - lo)
        .saturating_sub(AddressSpace::pages_reservation(area, st, lo, hi))
}

/// What the tree does once the areas' locks are gone.
enum Step<M: Machine> {
    /// The entry at the first field is cut in three at the second's pages,
    /// the two upper parts' entries going in.
    Cut(u64, [u64; 2], [crate::area::AreaEntry<M>; 2]),
    /// Entries joined (or none).
    Join(Joins),
}

impl<M: Machine> AddressSpace<M> {
    /// [`protect_range`](Self::protect_range) of pages `[s, e)` to `flags`
    /// if one area holds them all, they are all of it or strictly inside
    /// it, and its rights change: `Some` with the outcome (the pages whose
    /// entries narrowed are in `batch`, for the caller's shootdown round).
    /// `None`, with nothing changed, for any other case.
    pub(crate) fn protect_in_one(
        &self,
        tree: &mut Areas<M>,
        [s, e]: [u64; 2],
        (flags, release): (AreaFlags, &[(VirtAddr, u64)]),
        batch: &mut ShootdownBatch,
    ) -> Option<Result<()>> {
        let mut blocks = tree.take_spares();
        let rel = released(release, [s, e]);
        let step = self.protect_in_one_locked([s, e], (flags, rel), tree, &mut blocks, batch);
        tree.keep_spares(blocks);
        let step = match step? {
            Ok(step) => step,
            Err(err) => return Some(Err(err)),
        };
        match step {
            Step::Cut(start, cuts, parts) => {
                // `has_room` said the tree takes both without allocating.
                let cut = tree.split_entry_twice(start, cuts, parts).is_ok();
                debug_assert!(cut, "the parts take the places they had");
            }
            Step::Join(joins) => Self::join_entries(tree, joins),
        }
        Some(Ok(()))
    }

    /// The part of [`protect_in_one`](Self::protect_in_one) done under the
    /// areas' locks; the tree's side is the [`Step`] returned. `blocks`:
    /// the records' blocks a cut may fill (any missing allocated here).
    fn protect_in_one_locked(
        &self,
        [s, e]: [u64; 2],
        (flags, rel): (AreaFlags, bool),
        tree: &Areas<M>,
        blocks: &mut [Option<Unwritten<Area<M>>>; 2],
        batch: &mut ShootdownBatch,
    ) -> Option<Result<Step<M>>> {
        let [before, at, after] = tree.around(s);
        let (start, end, m) = at.filter(|a| a.1 >= e)?;
        let inside = start < s && end > e;
        if !inside && (start < s || end > e) {
            return None;
        }
        if inside && !tree.has_room(2) {
            return None;
        }
        // The neighbours that may merge with the area once changed, by
        // their published rights; locked in address order (the left one
        // before the area, the right one after the area's change).
        let new = flags_of(flags, m.summary.flags(), false, rel);
        let left = before
            .filter(|b| !inside && b.1 == s && !Self::rights_rule_out(b.2.summary.flags(), new));
        let right = after
            .filter(|a| !inside && a.0 == e && !Self::rights_rule_out(new, a.2.summary.flags()));
        let mut lst = left.map(|(l_start, _, l)| (l_start, &*l.area, l.lock()));
        let mut mst = m.lock();
        let area = &m.area;
        // The general path's refusals, in its order.
        if mst.attrs.contains(AreaAttrs::PARTIAL) {
            return Some(Err(Error::NotFound));
        }
        if !area.backend.caps().contains(BackendCaps::CHANGE_FLAGS) {
            return Some(Err(Error::NotSupported));
        }
        if !mst.max_flags.contains(flags - KEPT) {
            return Some(Err(Error::PermissionDenied));
        }
        if inside {
            if let Err(err) = Self::check_splittable(area, &mst) {
                return Some(Err(err));
            }
        }
        let ch = change_of(area, &mst, [s, e], flags, rel);
        if ch.flags == mst.flags {
            // Nothing changes: the general path (which may still merge).
            return None;
        }
        // A late-reserving area given write access that reserves up front
        // from then on: the rest of its pages, the last refusal.
        let (extra, less) = (ch.more, ch.less);
        if !self.shared.reserve.try_reserve(extra) {
            return Some(Err(Error::NoMemory));
        }
        // The new rights of an area or part from its own flags: a part cut
        // off above has no placement bits (`split_state`), the area keeps
        // its own.
        let change = |st: &mut AreaState<M>, batch: &mut ShootdownBatch| {
            let new = flags_of(flags, st.flags, st.share.is_some(), rel);
            let old = core::mem::replace(&mut st.flags, new);
            self.reprotect_pages(st, old, batch);
        };
        if inside {
            // Both cuts keep the old rights on the other side: nothing
            // merges. The heap first (blocks, used spaces).
            for block in blocks.iter_mut().filter(|b| b.is_none()) {
                match Unwritten::try_new() {
                    Some(b) => *block = Some(b),
                    None => {
                        self.shared.reserve.release(extra);
                        return Some(Err(Error::NoMemory));
                    }
                }
            }
            let parts = Self::cut_three(area, &mut mst, [start, end], [s, e], blocks, |st| {
                change(st, batch);
                (extra, less)
            });
            // Refused: what was taken goes back; done: what the part gave.
            self.shared
                .reserve
                .release(if parts.is_err() { extra } else { less });
            return Some(parts.map(|parts| Step::Cut(start, [s, e], parts)));
        }
        change(&mut mst, batch);
        area.add_reserved(extra);
        area.sub_reserved(less);
        self.shared.reserve.release(less);
        // The right one leaves the tree if it merges: nothing to publish.
        let mut rst = right.map(|(_, r_end, r)| (r_end, &*r.area, r.area.lock_detached()));
        let joins = Self::join_locked(
            lst.as_mut()
                .map(|(l_start, l, st)| (*l_start, *l, &mut **st)),
            (s, e, area, &mut mst),
            rst.as_mut().map(|(r_end, r, st)| (*r_end, *r, &mut **st)),
        );
        Some(Ok(Step::Join(joins)))
    }
}
