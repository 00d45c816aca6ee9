//! Address spaces and their areas (HelenOS `as_t` and the `as_area_*`
//! operations).

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::AtomicU64;

use crate::addr::{bytes_to_pages, Frame, Page, PageRange, VirtAddr, PAGE_SHIFT};
use crate::area::{Area, AreaInfo};
use crate::asid::AsidAllocator;
use crate::backend::{AnonBackend, Backend};
use crate::flags::{Access, AreaAttrs, AreaFlags, PageFlags};
use crate::machine::{Asid, CpuSet, FrameAllocator, Invalidation, Layout, Machine, Shootdown, Tlb};
use crate::paging::PageTable;
use crate::share::ShareInfo;
use crate::stats::Stats;
use crate::tlb::ShootdownBatch;
use crate::used_space::UsedSpace;
use crate::{Error, Result};

/// State shared by the system and every address space.
pub(crate) struct Shared<M: Machine> {
    pub machine: M,
    pub asids: lock_api::Mutex<M::Lock, AsidAllocator>,
    pub stats: Stats,
    pub next_id: AtomicU64,
    pub layout: Layout,
}

pub(crate) struct Inner<M: Machine> {
    /// base page number -> area
    pub areas: BTreeMap<u64, Area<M>>,
    pub pt: Option<M::PageTable>,
}

impl<M: Machine> Inner<M> {
    /// The key of the area containing page number `n`: one B-tree descent.
    pub fn find(&self, n: u64) -> Option<u64> {
        self.area_at(n).map(|a| a.base.number())
    }

    /// The area containing page number `n`.
    pub fn area_at(&self, n: u64) -> Option<&Area<M>> {
        let (&base, area) = self.areas.range(..=n).next_back()?;
        (n < base + area.pages).then_some(area)
    }

    /// The area containing page number `n` and the page table, borrowed
    /// together: one B-tree descent.
    pub fn area_and_pt(&mut self, n: u64) -> Option<(&mut Area<M>, &mut M::PageTable)> {
        let (&base, area) = self.areas.range_mut(..=n).next_back()?;
        if n >= base + area.pages {
            return None;
        }
        let pt = self
            .pt
            .as_mut()
            .expect("page table lives as long as the address space");
        Some((area, pt))
    }

    fn pt(&mut self) -> &mut M::PageTable {
        self.pt
            .as_mut()
            .expect("page table lives as long as the address space")
    }
}

/// One address space: its areas and its page table.
///
/// Shared as `Arc<AddressSpace>`; the last reference going destroys it
/// (every area, every frame, the ASID, the page table). The kernel address
/// space is held by the [`System`](crate::System) and lives as long as it.
pub struct AddressSpace<M: Machine> {
    id: u64,
    kernel: bool,
    root: Frame,
    pub(crate) shared: Arc<Shared<M>>,
    pub(crate) inner: lock_api::Mutex<M::Lock, Inner<M>>,
}

/// Unmaps every page of `pages` (all in `area`'s used space) into `batch`.
fn unmap_into<M: Machine>(
    machine: &M,
    pt: &mut M::PageTable,
    backend: &dyn Backend<M>,
    pages: impl Iterator<Item = Page>,
    batch: &mut ShootdownBatch,
) {
    for page in pages {
        let Some(u) = pt.unmap(machine.memory(), page) else {
            debug_assert!(false, "used page {page:?} not mapped");
            continue;
        };
        batch.defer(u, backend.refcounted());
    }
}

impl<M: Machine> AddressSpace<M> {
    pub(crate) fn create(
        shared: &Arc<Shared<M>>,
        kernel: Option<&AddressSpace<M>>,
    ) -> Result<Arc<Self>> {
        let m = &shared.machine;
        let pt = match kernel {
            Some(k) => {
                let kin = k.inner.lock();
                M::PageTable::create(m.memory(), m.frames(), kin.pt.as_ref())?
            }
            None => M::PageTable::create(m.memory(), m.frames(), None)?,
        };
        let id = shared.new_id();
        shared.asids.lock().register(id, kernel.is_none());
        Ok(Arc::new(Self {
            id,
            kernel: kernel.is_none(),
            root: pt.root(),
            shared: shared.clone(),
            inner: lock_api::Mutex::new(Inner {
                areas: BTreeMap::new(),
                pt: Some(pt),
            }),
        }))
    }

    /// A number unique among the system's address spaces.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether this is the kernel address space.
    pub fn is_kernel(&self) -> bool {
        self.kernel
    }

    /// The page-table root frame.
    pub fn root(&self) -> Frame {
        self.root
    }

    /// The ASID held now (`None` before the first switch or after a steal).
    pub fn asid(&self) -> Option<Asid> {
        self.shared.asids.lock().asid_of(self.id)
    }

    /// CPUs running this address space now.
    pub fn active_cpus(&self) -> CpuSet {
        self.shared.asids.lock().active_of(self.id)
    }

    fn machine(&self) -> &M {
        &self.shared.machine
    }

    /// The rights pages of an area with `flags` get in this space: user
    /// pages for user spaces, global supervisor pages for the kernel's.
    pub(crate) fn page_flags(&self, flags: AreaFlags) -> PageFlags {
        let f = flags.page_flags();
        if self.kernel {
            (f - PageFlags::USER) | PageFlags::GLOBAL
        } else {
            f
        }
    }

    /// One past the highest user address.
    pub fn user_end(&self) -> u64 {
        self.shared.layout.user_end
    }

    /// The page range `[base, base+size)` checked for alignment, size and
    /// wrapping.
    fn checked_range(base: VirtAddr, size: u64) -> Result<PageRange> {
        let start = Page::from_start(base).ok_or(Error::InvalidArgument)?;
        base.checked_add(size).ok_or(Error::InvalidArgument)?;
        let pages = bytes_to_pages(size);
        if pages == 0 {
            return Err(Error::InvalidArgument);
        }
        match start.number().checked_add(pages) {
            Some(end) if end <= (1u64 << (64 - PAGE_SHIFT)) => Ok(PageRange::new(start, pages)),
            _ => Err(Error::InvalidArgument),
        }
    }

    /// Whether `range` fits this space's part of the layout, stays off the
    /// NULL page, and overlaps no area but the one based at `avoid`.
    fn check_conflicts(&self, inner: &Inner<M>, range: PageRange, avoid: Option<u64>) -> bool {
        let (lo, hi) = if self.kernel {
            (
                self.shared.layout.kernel_start >> PAGE_SHIFT,
                1u64 << (64 - PAGE_SHIFT),
            )
        } else {
            (1, self.shared.layout.user_end >> PAGE_SHIFT)
        };
        let (start, end) = (range.start.number(), range.end().number());
        if start < lo || end > hi {
            return false;
        }
        // Areas are disjoint and sorted: only the highest one starting below
        // `end` (other than `avoid`) can reach into the range.
        inner
            .areas
            .range(..end)
            .rev()
            .find(|(&b, _)| Some(b) != avoid)
            .is_none_or(|(&b, a)| b + a.pages <= start)
    }

    /// Creates an area of anonymous memory (HelenOS `as_area_create` with
    /// `anon_backend`).
    pub fn area_create(&self, base: VirtAddr, size: u64, flags: AreaFlags) -> Result<VirtAddr> {
        self.area_create_with(base, size, flags, AreaAttrs::empty(), Arc::new(AnonBackend))
    }

    /// Creates an area with the given attributes and backend.
    ///
    /// Refuses an unaligned base, a zero or wrapping size and write+exec
    /// with `InvalidArgument`; overlap with another area, the NULL page, the
    /// other side of the user/kernel split, or a range past the end of the
    /// address space with `AddressNotAvailable`.
    pub fn area_create_with(
        &self,
        base: VirtAddr,
        size: u64,
        flags: AreaFlags,
        attrs: AreaAttrs,
        backend: Arc<dyn Backend<M>>,
    ) -> Result<VirtAddr> {
        flags.validate()?;
        let range = Self::checked_range(base, size)?;
        let mut inner = self.inner.lock();
        if !self.check_conflicts(&inner, range, None) {
            return Err(Error::AddressNotAvailable);
        }
        inner.areas.insert(
            range.start.number(),
            Area {
                base: range.start,
                pages: range.count,
                flags,
                attrs,
                backend,
                used: UsedSpace::new(),
                share: None,
            },
        );
        Ok(base)
    }

    /// Changes the size of the area containing `addr` so that it ends at
    /// `addr + size` (HelenOS `as_area_resize`).
    ///
    /// Growing checks for conflicts (`AddressNotAvailable`); shrinking
    /// unmaps the pages above the new end, highest first, and releases their
    /// frames after one TLB shootdown for the whole range. A new size of zero
    /// pages is `PermissionDenied`, as in HelenOS; areas whose backend cannot
    /// resize get `NotSupported`.
    pub fn area_resize(&self, addr: VirtAddr, size: u64) -> Result<()> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let key = inner.find(addr.page().number()).ok_or(Error::NotFound)?;
        let area = &inner.areas[&key];
        if !area.backend.can_resize() || area.share.is_some() {
            return Err(Error::NotSupported);
        }
        let offset = addr.as_u64() - area.base.start().as_u64();
        let bytes = offset.checked_add(size).ok_or(Error::InvalidArgument)?;
        let pages = bytes_to_pages(bytes);
        if pages == 0 {
            return Err(Error::PermissionDenied);
        }
        if pages > area.pages {
            let range = Self::checked_range(area.base.start(), bytes)?;
            if !self.check_conflicts(inner, range, Some(key)) {
                return Err(Error::AddressNotAvailable);
            }
        }
        let area = inner.areas.get_mut(&key).expect("found above");
        if pages < area.pages {
            let cut = area.base.add(pages);
            let removed = area.used.split_off(cut);
            let mut batch = ShootdownBatch::new();
            let pt = inner
                .pt
                .as_mut()
                .expect("page table lives as long as the address space");
            for r in removed {
                let pages = (0..r.count).rev().map(|i| r.start.add(i));
                unmap_into(self.machine(), pt, &*area.backend, pages, &mut batch);
            }
            batch.complete(&self.shared, self.id);
        }
        area.pages = pages;
        Ok(())
    }

    /// Destroys the area containing `addr` (HelenOS `as_area_destroy`):
    /// unmaps its used pages, shoots down their translations once, and then
    /// releases the frames its backend gives up.
    pub fn area_destroy(&self, addr: VirtAddr) -> Result<()> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let key = inner.find(addr.page().number()).ok_or(Error::NotFound)?;
        let area = inner.areas.remove(&key).expect("found above");
        let mut batch = ShootdownBatch::new();
        Self::unmap_area(self.machine(), inner.pt(), &area, &mut batch);
        batch.complete(&self.shared, self.id);
        Ok(())
    }

    /// Unmaps every page of a departing area and drops its share reference.
    fn unmap_area(machine: &M, pt: &mut M::PageTable, area: &Area<M>, batch: &mut ShootdownBatch) {
        unmap_into(machine, pt, &*area.backend, area.used.iter_pages(), batch);
        if let Some(share) = &area.share {
            for f in share.remove_reference() {
                batch.release_later(f);
            }
        }
    }

    /// Changes the rights of the area containing `addr`, keeping its data
    /// (HelenOS `as_area_change_flags`): every mapped page is unmapped, one
    /// shootdown runs, and the same frames are mapped back with the new
    /// rights, so no CPU ever reaches the area with old and new rights at
    /// once. Backends that cannot (all but anonymous memory) get
    /// `NotSupported`.
    pub fn area_change_flags(&self, addr: VirtAddr, flags: AreaFlags) -> Result<()> {
        flags.validate()?;
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let key = inner.find(addr.page().number()).ok_or(Error::NotFound)?;
        let pt = inner
            .pt
            .as_mut()
            .expect("page table lives as long as the address space");
        let area = inner.areas.get_mut(&key).expect("found above");
        if !area.backend.can_change_flags() || area.share.is_some() {
            return Err(Error::NotSupported);
        }
        let mut batch = ShootdownBatch::new();
        let mut frames = Vec::with_capacity(area.used.pages() as usize);
        for page in area.used.iter_pages() {
            let u = pt
                .unmap(self.machine().memory(), page)
                .expect("used page is mapped");
            frames.push((page, u.frame()));
            batch.defer(u, false);
        }
        batch.complete(&self.shared, self.id);
        area.flags = flags;
        let pflags = self.page_flags(flags);
        let m = self.machine();
        for (page, frame) in frames {
            if pt.map(m.memory(), m.frames(), page, frame, pflags).is_err() {
                // Intermediate tables are kept across unmaps, so this cannot
                // happen; if it did, the page simply becomes non-resident.
                let _ = area.used.remove(page, 1);
                if area.backend.refcounted() {
                    m.frames().release(frame);
                }
            }
        }
        Ok(())
    }

    /// Shares the area containing `src_addr` with `dst` (this or another
    /// address space) at `dst_base` (HelenOS `as_area_share`).
    ///
    /// `size` is the size the caller expects the source area to have and
    /// `mask` the rights the new area gets; the cacheable attribute is
    /// inherited. Refusals: no source area `NotFound`; a backend that cannot
    /// share `NotSupported`; a different size or rights the source lacks
    /// `PermissionDenied`; a destination that cannot be created the
    /// creation's error (HelenOS reports `ENOMEM` for all of those); a
    /// destination of another system `InvalidArgument`.
    /// Both areas then map the same frames, also for pages first touched
    /// later; the last area to go frees them.
    pub fn area_share(
        &self,
        src_addr: VirtAddr,
        size: u64,
        dst: &AddressSpace<M>,
        dst_base: VirtAddr,
        mask: AreaFlags,
    ) -> Result<()> {
        if !Arc::ptr_eq(&self.shared, &dst.shared) {
            return Err(Error::InvalidArgument);
        }
        let m = self.machine();
        let (share, backend, pages, mask) = {
            let mut guard = self.inner.lock();
            let inner = &mut *guard;
            let key = inner
                .find(src_addr.page().number())
                .ok_or(Error::NotFound)?;
            let pt = inner
                .pt
                .as_ref()
                .expect("page table lives as long as the address space");
            let area = inner.areas.get_mut(&key).expect("found above");
            if !area.backend.can_share() {
                return Err(Error::NotSupported);
            }
            let mut mask = mask;
            if area.flags.contains(AreaFlags::CACHEABLE) {
                mask |= AreaFlags::CACHEABLE;
            }
            if area.pages.checked_mul(crate::PAGE_SIZE) != Some(size) || !area.flags.contains(mask)
            {
                return Err(Error::PermissionDenied);
            }
            let share = match &area.share {
                Some(share) => {
                    share.state.lock().refs += 1;
                    share.clone()
                }
                None => {
                    // First share: the pages mapped so far enter the page map.
                    let mut pagemap = BTreeMap::new();
                    if area.backend.refcounted() {
                        for page in area.used.iter_pages() {
                            let (frame, _) =
                                pt.translate(m.memory(), page).expect("used page is mapped");
                            m.frames().add_ref(frame);
                            pagemap.insert(page.pages_since(area.base), frame);
                        }
                    }
                    let share = Arc::new(ShareInfo::new(2, pagemap));
                    area.share = Some(share.clone());
                    share
                }
            };
            (share, area.backend.clone(), area.pages, mask)
        };
        // The destination is created partial, so faults on it fail until the
        // share record is attached.
        let created = dst.area_create_with(
            dst_base,
            pages * crate::PAGE_SIZE,
            mask,
            AreaAttrs::PARTIAL,
            backend,
        );
        if let Err(e) = created {
            let mut batch = ShootdownBatch::new();
            for f in share.remove_reference() {
                batch.release_later(f);
            }
            batch.complete(&self.shared, self.id);
            return Err(e);
        }
        let mut inner = dst.inner.lock();
        let Some(area) = inner.areas.get_mut(&dst_base.page().number()) else {
            // Destroyed by another thread while still partial.
            drop(inner);
            let mut batch = ShootdownBatch::new();
            for f in share.remove_reference() {
                batch.release_later(f);
            }
            batch.complete(&self.shared, self.id);
            return Err(Error::NotFound);
        };
        area.share = Some(share);
        area.attrs.remove(AreaAttrs::PARTIAL);
        Ok(())
    }

    /// The share record of the area containing `addr`, if it is shared.
    pub fn share_info(&self, addr: VirtAddr) -> Option<Arc<ShareInfo<M>>> {
        let inner = self.inner.lock();
        inner.area_at(addr.page().number())?.share.clone()
    }

    /// The area containing `addr`.
    pub fn area(&self, addr: VirtAddr) -> Option<AreaInfo> {
        let inner = self.inner.lock();
        inner.area_at(addr.page().number()).map(Area::info)
    }

    /// Size in bytes of the area containing `addr`, 0 if none (HelenOS
    /// `as_area_get_size`).
    pub fn area_size(&self, addr: VirtAddr) -> u64 {
        self.area(addr).map_or(0, |a| a.size())
    }

    /// Whether the area containing `addr` permits `access` (HelenOS
    /// `as_area_check_access`); `false` when there is no area.
    pub fn check_access(&self, addr: VirtAddr, access: Access) -> bool {
        self.area(addr).is_some_and(|a| a.flags.permits(access))
    }

    /// Every area, lowest first.
    pub fn areas(&self) -> Vec<AreaInfo> {
        self.inner.lock().areas.values().map(Area::info).collect()
    }

    /// A copy of the used space of the area containing `addr`.
    pub fn used_space(&self, addr: VirtAddr) -> Option<UsedSpace> {
        let inner = self.inner.lock();
        inner.area_at(addr.page().number()).map(|a| a.used.clone())
    }

    /// What the page table maps at `page` (read by software, not through a
    /// TLB).
    pub fn translate(&self, page: Page) -> Option<(Frame, PageFlags)> {
        let inner = self.inner.lock();
        inner.pt.as_ref()?.translate(self.machine().memory(), page)
    }

    /// Pages mapped in all areas together.
    pub fn resident_pages(&self) -> u64 {
        self.inner
            .lock()
            .areas
            .values()
            .map(|a| a.used.pages())
            .sum()
    }

    /// Frames held by the page table itself.
    pub fn page_table_frames(&self) -> u64 {
        self.inner
            .lock()
            .pt
            .as_ref()
            .map_or(0, |pt| pt.table_frames())
    }

    /// A listing of the areas in the manner of `/proc/PID/maps` (HelenOS
    /// `as_print`), one line per area.
    pub fn map(&self) -> String {
        let mut s = String::new();
        for a in self.areas() {
            let _ = writeln!(s, "{a}");
        }
        s
    }
}

impl<M: Machine> Drop for AddressSpace<M> {
    /// Destroys the address space (HelenOS `as_destroy`): every area with one
    /// shootdown, then the ASID (flushed wherever it may linger), then the
    /// page table.
    fn drop(&mut self) {
        let shared = self.shared.clone();
        let m = &shared.machine;
        let inner = self.inner.get_mut();
        let mut batch = ShootdownBatch::new();
        let areas = core::mem::take(&mut inner.areas);
        let pt = inner
            .pt
            .as_mut()
            .expect("page table lives as long as the address space");
        for area in areas.values() {
            Self::unmap_area(m, pt, area, &mut batch);
        }
        batch.complete(&shared, self.id);
        let released = shared.asids.lock().unregister(self.id);
        if let Some((asid, cpus)) = released {
            let tlb = m.tlb();
            let mut remote = cpus;
            if let Some(me) = tlb.current_cpu() {
                remote.remove(me);
                tlb.invalidate_local(Invalidation::Asid(asid));
            }
            if !remote.is_empty() {
                let n = m.shootdown().shootdown(remote, Invalidation::Asid(asid));
                Stats::add(&shared.stats.ipis, n as u64);
            }
            shared.asids.lock().release(asid);
        }
        if let Some(pt) = inner.pt.take() {
            pt.destroy(m.memory(), m.frames());
        }
    }
}
