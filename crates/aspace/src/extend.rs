//! Moving an area's base down on request: what a Linux layer needs for a
//! stack that a fault found below its mapping (Linux's
//! `expand_downwards`), where the core's own grows-down areas
//! ([`AreaFlags::GROWS_DOWN`](crate::AreaFlags::GROWS_DOWN)) grow only
//! through their guard page, one page per fault. The caller decides whether
//! the growth is allowed (Linux's stack limit and guard gap); the core
//! checks that the new pages are free and reserves memory for them.

use crate::addr::{Page, VirtAddr};
use crate::backend::BackendCaps;
use crate::error::{Error, Result};
use crate::machine::Machine;
use crate::reserve;
use crate::space::AddressSpace;

impl<M: Machine> AddressSpace<M> {
    /// Moves the base of the area containing `addr` down to `new_base`,
    /// its end staying: the new pages are empty (nothing mapped until a
    /// fault), the resident ones keep their places. All or nothing.
    ///
    /// Refusals, each before anything changed: `new_base` unaligned or not
    /// below the area's base, or the NULL page, `InvalidArgument`; no area
    /// at `addr`, or a partial one, `NotFound`; an area whose backend
    /// cannot grow down (its pages depend on their index, see
    /// [`BackendCaps::GROW_DOWN`]) or that is shared `NotSupported`; the new
    /// pages (with the area's guard pages below them) not free
    /// `AddressNotAvailable`; no memory to reserve for them (see
    /// [`crate::reserve`]) `NoMemory`.
    pub fn area_extend_down(&self, addr: VirtAddr, new_base: VirtAddr) -> Result<()> {
        let new = Page::from_start(new_base).ok_or(Error::InvalidArgument)?;
        let mut tree = self.areas.write();
        let (start, end, more) = {
            let (slot, st) = self.lock_for_change(&tree, addr)?;
            let area = &slot.area;
            if !area.backend.caps().contains(BackendCaps::GROW_DOWN) || st.share.is_some() {
                return Err(Error::NotSupported);
            }
            let (start, end) = (area.base().number(), area.base().number() + area.pages());
            if new.number() >= start || new.number() == 0 {
                return Err(Error::InvalidArgument);
            }
            let range =
                Self::checked_range(new_base, (end - new.number()) << crate::addr::PAGE_SHIFT)?;
            let guard = st.flags.guard_pages();
            if !self.check_conflicts(&tree, range, guard, Some(start)) {
                return Err(Error::AddressNotAvailable);
            }
            let more = reserve::up_front(&*area.backend, st.flags, 0, start - new.number());
            (start, end, more)
        };
        if !self.shared.reserve.try_reserve(more) {
            return Err(Error::NoMemory);
        }
        let moved = tree.set_start(start, new.number());
        debug_assert!(moved, "the new pages were checked free");
        if !moved {
            self.shared.reserve.release(more);
            return Err(Error::AddressNotAvailable);
        }
        self.set_extent(&tree, new.number(), end, more as i64);
        Ok(())
    }
}
