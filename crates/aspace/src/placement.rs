//! Placing areas: anywhere there is room (HelenOS `as_area_create` with
//! `AS_AREA_ANY` and a bound, or top-down below a ceiling as Linux places
//! `mmap(NULL, ...)`), with guard pages, and areas that grow downwards.
//!
//! The search is the area tree's ([`AreaTree::lowest_fit`],
//! [`AreaTree::highest_fit`]): every inner node keeps its children's
//! largest free gaps, so it skips whole subtrees, O(log n). It runs under
//! the tree's write lock together with the insertion. A growth of a
//! grows-down area happens in the fault handler (`fault.rs`).
//!
//! [`AreaTree::lowest_fit`]: crate::internals::area_tree::AreaTree::lowest_fit
//! [`AreaTree::highest_fit`]: crate::internals::area_tree::AreaTree::highest_fit

use crate::addr::{bytes_to_pages, Page, PageRange, VirtAddr, PAGE_SHIFT, PAGE_SIZE};
use crate::area::{Area, AreaEntry};
use crate::backend::{Backend, BackendCaps, BackendRef};
use crate::flags::{AreaAttrs, AreaFlags};
use crate::internals::area_tree::Fit;
use crate::machine::Machine;
use crate::reserve;
use crate::space::{AddressSpace, Areas};
use crate::{Error, Result};

/// How far a [grows-down](AreaFlags::GROWS_DOWN) area created without a
/// limit of its own may grow: 8 MiB, Linux's default stack limit.
pub const DEFAULT_GROW_LIMIT: u64 = 8 << 20;

/// Where [`AddressSpace::area_create_anywhere`] puts an area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// The lowest base at or above `bound` (rounded up to a page) that
    /// fits, as HelenOS places `AS_AREA_ANY`.
    LowestAbove {
        /// The least acceptable base.
        bound: VirtAddr,
        /// Alignment of the base in bytes: a power of two (page alignment
        /// below `PAGE_SIZE`).
        align: u64,
    },
    /// The lowest base at or above `bound` whose area ends at or below
    /// `ceiling` (rounded to pages as the other two): `LowestAbove` kept
    /// out of what lies above `ceiling` (a kernel keeping its HelenOS-style
    /// areas out of a window its Linux calls own).
    LowestBetween {
        /// The least acceptable base.
        bound: VirtAddr,
        /// The area ends at or below it.
        ceiling: VirtAddr,
        /// Alignment of the base in bytes, as for `LowestAbove`.
        align: u64,
    },
    /// The highest base whose area ends at or below `ceiling` (rounded
    /// down to a page), as Linux places `mmap(NULL, ...)` top-down.
    HighestBelow {
        /// The area ends at or below it.
        ceiling: VirtAddr,
        /// Alignment of the base in bytes, as for `LowestAbove`.
        align: u64,
    },
}

impl Placement {
    /// HelenOS's policy: the lowest base at or above `bound`, page-aligned.
    pub fn above(bound: VirtAddr) -> Self {
        Placement::LowestAbove { bound, align: 1 }
    }

    /// The alignment asked for, in bytes.
    fn align(&self) -> u64 {
        match *self {
            Placement::LowestAbove { align, .. }
            | Placement::LowestBetween { align, .. }
            | Placement::HighestBelow { align, .. } => align,
        }
    }
}

impl<M: Machine> AddressSpace<M> {
    /// `flags` checked, with [`GUARD`](AreaFlags::GUARD) added to
    /// [`GROWS_DOWN`](AreaFlags::GROWS_DOWN), which a backend whose pages
    /// depend on their index refuses (`NotSupported`).
    pub(crate) fn placement_flags(
        flags: AreaFlags,
        backend: &dyn Backend<M::Memory, M::Frames>,
    ) -> Result<AreaFlags> {
        flags.validate()?;
        if !flags.contains(AreaFlags::GROWS_DOWN) {
            return Ok(flags);
        }
        if !backend.caps().contains(BackendCaps::GROW_DOWN) {
            return Err(Error::NotSupported);
        }
        Ok(flags | AreaFlags::GUARD)
    }

    /// Inserts an area over `range` (inside the space's window) into the
    /// written `tree`, `AddressNotAvailable` with nothing changed if it or
    /// its guard meets another area or guard; a grows-down area may reach
    /// `grow_limit` pages (by default [`DEFAULT_GROW_LIMIT`] bytes, or its
    /// size if larger).
    pub(crate) fn insert_checked(
        &self,
        tree: &mut Areas<M>,
        range: PageRange,
        flags: AreaFlags,
        attrs: AreaAttrs,
        backend: BackendRef<M::Memory, M::Frames>,
        grow_limit: Option<u64>,
    ) -> Result<()> {
        let limit = grow_limit
            .unwrap_or(DEFAULT_GROW_LIMIT / PAGE_SIZE)
            .max(range.count);
        // After every other check, the memory reservation. A share
        // destination (partial) takes its source's reservation when the
        // share completes; it reserves nothing of its own.
        let reserve = if attrs.contains(AreaAttrs::PARTIAL) {
            0
        } else {
            reserve::up_front(&*backend, flags, backend.first_index(), range.count)
        };
        let area = Area::new(
            range.start,
            range.count,
            flags,
            attrs,
            backend,
            reserve,
            limit,
        )?;
        // The heap first (a block for the record, a spare one if a removed
        // area left it, and room for its tree entry), then the
        // reservation: a refusal changes nothing (the block is kept as a
        // spare).
        let block = tree.take_block().ok_or(Error::NoMemory)?;
        if !tree.try_reserve(1) || !self.shared.reserve.try_reserve(reserve) {
            tree.keep_spares([Some(block), None]);
            return Err(Error::NoMemory);
        }
        let slot = AreaEntry::of_new(block, area);
        let (start, end) = (range.start.number(), range.end().number());
        let guard = flags.guard_pages() as u8;
        if let Err(slot) = tree.insert_guarded(start, end, guard, slot) {
            tree.give_up(slot.area);
            self.shared.reserve.release(reserve);
            return Err(Error::AddressNotAvailable);
        }
        Ok(())
    }

    /// Creates an area of anonymous memory wherever `placement` finds room
    /// for `size` bytes (HelenOS `as_area_create` with `AS_AREA_ANY` and a
    /// bound, or a top-down search below a ceiling), and returns its base.
    /// Never chosen: the NULL page, the other side of the user/kernel
    /// split, another area or another area's guard page; an area with
    /// [`GUARD`](AreaFlags::GUARD) gets its guard page free too.
    ///
    /// O(log n) in the number of areas (the area tree keeps the largest
    /// free gap of every subtree). Refusals: bad flags, a zero size or an
    /// alignment that is not a power of two `InvalidArgument`; no room
    /// `NoMemory` (`ENOMEM`, which HelenOS's `as_area_share` reports when
    /// it cannot create the destination area anywhere; HelenOS's
    /// `sys_as_area_create` reports only `AS_MAP_FAILED`).
    pub fn area_create_anywhere(
        &self,
        placement: Placement,
        size: u64,
        flags: AreaFlags,
    ) -> Result<VirtAddr> {
        self.area_create_anywhere_with(
            placement,
            size,
            flags,
            AreaAttrs::empty(),
            self.shared.anon.clone(),
        )
    }

    /// [`area_create_anywhere`](Self::area_create_anywhere) with the given
    /// attributes and backend.
    pub fn area_create_anywhere_with(
        &self,
        placement: Placement,
        size: u64,
        flags: AreaFlags,
        attrs: AreaAttrs,
        backend: BackendRef<M::Memory, M::Frames>,
    ) -> Result<VirtAddr> {
        let flags = Self::placement_flags(flags, &*backend)?;
        let pages = bytes_to_pages(size);
        let align = placement.align();
        if pages == 0 || !align.is_power_of_two() {
            return Err(Error::InvalidArgument);
        }
        let guard = flags.guard_pages();
        let fit = Fit {
            size: pages,
            guard,
            align: (align / PAGE_SIZE).max(1),
        };
        let (lo, hi) = self.page_window();
        // A user area's guard may be the NULL page.
        let floor = if self.is_kernel() { lo } else { lo - guard };
        let mut tree = self.areas.write();
        let start = match placement {
            Placement::LowestAbove { bound, .. } => {
                let bound = bound.as_u64().div_ceil(PAGE_SIZE).max(lo);
                tree.lowest_fit(floor..hi, bound, fit)
            }
            Placement::LowestBetween { bound, ceiling, .. } => {
                let bound = bound.as_u64().div_ceil(PAGE_SIZE).max(lo);
                let ceiling = (ceiling.as_u64() >> PAGE_SHIFT).min(hi);
                tree.lowest_fit(floor..ceiling, bound, fit)
            }
            Placement::HighestBelow { ceiling, .. } => {
                let ceiling = (ceiling.as_u64() >> PAGE_SHIFT).min(hi);
                tree.highest_fit(floor..ceiling, fit)
            }
        }
        .ok_or(Error::NoMemory)?;
        let range = PageRange::new(Page::from_number(start), pages);
        debug_assert!(self.check_conflicts(&tree, range, guard, None));
        self.insert_checked(&mut tree, range, flags, attrs, backend, None)?;
        Ok(range.start.start())
    }

    /// The highest base of `size` free bytes (no area, no area's guard
    /// page) in `[floor, ceiling)` of this space's part, as
    /// [`Placement::HighestBelow`] would choose it, without creating
    /// anything: for a layer that keeps its own records of the same ranges
    /// (a Linux `mmap(NULL, ...)` checking its stack gaps before it maps).
    /// `None` if nothing fits or `size` is 0. O(log n).
    pub fn highest_free(&self, floor: VirtAddr, ceiling: VirtAddr, size: u64) -> Option<VirtAddr> {
        let fit = Fit {
            size: bytes_to_pages(size),
            guard: 0,
            align: 1,
        };
        let (lo, hi) = self.page_window();
        let floor = floor.as_u64().div_ceil(PAGE_SIZE).max(lo);
        let ceiling = (ceiling.as_u64() >> PAGE_SHIFT).min(hi);
        let tree = self.read_areas();
        let start = tree.highest_fit(floor..ceiling, fit)?;
        Some(Page::from_number(start).start())
    }

    /// Creates an anonymous [grows-down](AreaFlags::GROWS_DOWN) area at
    /// `base` of `size` bytes that may grow, a page per fault in its guard
    /// page, until it spans `limit` bytes (rounded up to pages; at least
    /// `size`). [`area_create`](Self::area_create) with `GROWS_DOWN` gives
    /// a limit of [`DEFAULT_GROW_LIMIT`]. Refusals as for `area_create`.
    pub fn area_create_grows_down(
        &self,
        base: VirtAddr,
        size: u64,
        limit: u64,
        flags: AreaFlags,
    ) -> Result<VirtAddr> {
        let backend = self.shared.anon.clone();
        let flags = Self::placement_flags(flags | AreaFlags::GROWS_DOWN, &*backend)?;
        let range = Self::checked_range(base, size)?;
        let mut tree = self.areas.write();
        if !self.check_conflicts(&tree, range, flags.guard_pages(), None) {
            return Err(Error::AddressNotAvailable);
        }
        let limit = bytes_to_pages(limit);
        let attrs = AreaAttrs::empty();
        self.insert_checked(&mut tree, range, flags, attrs, backend, Some(limit))?;
        Ok(base)
    }
}
