//! Address spaces and their areas (HelenOS `as_t` and the `as_area_*`
//! operations).
//!
//! Locking, in the order locks are taken:
//! 1. the *area tree* of the address space, a reader-writer lock with one
//!    reader count per CPU (up to 16; a writer takes them all): written by
//!    operations that change which areas exist or how large they are
//!    (create, resize, destroy, share), read by lookups and for the whole of
//!    a page fault, a change of rights or a user copy, which therefore need
//!    no reference to the area of their own;
//! 2. the lock of one *area*: its rights, used space and share record; held
//!    by a page fault for check, map and used-space update (the frame is
//!    prepared before), and for operations on that area;
//! 3. a share record's lock, then the ASID allocator's.
//!
//! The page table has no lock: a page's entry changes only under its area's
//! lock or with the tree write-locked, and intermediate tables are installed
//! by compare-and-swap (see [`PageTable`]). So faults on different areas of
//! one address space proceed in parallel and, on up to 8 CPUs, share no
//! lock and no counter.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicU64 as PlainAtomicU64, Ordering};

use crate::addr::{bytes_to_pages, Frame, Page, PageRange, VirtAddr, PAGE_SHIFT, PAGE_SIZE};
use crate::area::{Area, AreaEntry, AreaGuard, AreaInfo, AreaState};
use crate::backend::{Backend, BackendCaps, BackendRef};
use crate::flags::{Access, AreaAttrs, AreaFlags, PageFlags};
use crate::internals::area_tree::AreaTree;
use crate::internals::try_arc::{TryArc, Unique, Unwritten};
use crate::internals::used_space::UsedSpace;
use crate::lookup::AreaLookup;
use crate::machine::{
    Asid, CpuSet, Cpus, FrameAllocator, Invalidation, Machine, PhysMemory, Shootdown, Tlb,
};
use crate::paging::{PageTable, Rewritten};
use crate::reserve;
use crate::shard_lock::{ReadGuard, ShardedRwLock};
use crate::share::{PageMap, ShareInfo};
use crate::shared::Shared;
use crate::stats::Stats;
use crate::tlb::ShootdownBatch;
use crate::{Error, Result};

/// The area tree: base page number to area, each entry knowing where its
/// area ends and holding its summary (so a lookup touches no memory of the
/// area itself); and the heap blocks of the last two area records merges
/// gave up, for the next splits to fill (see [`Areas::take_block`]): a
/// range cut out of an area and merged back takes and gives up two.
pub(crate) struct Areas<M: Machine> {
    tree: AreaTree<AreaEntry<M>>,
    /// At most two blocks, holding no area (the record's value was dropped
    /// when it was kept, its backend reference with it).
    spare: [Option<Unwritten<Area<M>>>; 2],
}

impl<M: Machine> Areas<M> {
    /// No areas, the tree keeping its gap summaries (placement asks them).
    fn new() -> Self {
        Areas {
            tree: AreaTree::with_gaps(),
            spare: [None, None],
        }
    }

    /// A block for a new area record: a spare one, or one from the heap
    /// (`None` if the heap refuses).
    pub(crate) fn take_block(&mut self) -> Option<Unwritten<Area<M>>> {
        let [a, b] = &mut self.spare;
        b.take().or_else(|| a.take()).or_else(Unwritten::try_new)
    }

    /// The spare blocks, taken out (none allocated): for an operation
    /// that holds the tree while it may fill them, and gives back the
    /// ones it did not fill with [`keep_spares`](Self::keep_spares).
    pub(crate) fn take_spares(&mut self) -> [Option<Unwritten<Area<M>>>; 2] {
        core::mem::take(&mut self.spare)
    }

    /// Keeps `blocks` (unwritten) as spares, as many as there is room for;
    /// the rest go back to the heap.
    pub(crate) fn keep_spares(&mut self, blocks: [Option<Unwritten<Area<M>>>; 2]) {
        for block in blocks.into_iter().flatten() {
            if let Some(free) = self.spare.iter_mut().find(|s| s.is_none()) {
                *free = Some(block);
            }
        }
    }

    /// Drops `area`, an area record out of the tree, keeping its block as
    /// a spare if it was the record's last reference and fewer than two
    /// are kept (a merge gives one up, a split takes one).
    pub(crate) fn give_up(&mut self, area: TryArc<Area<M>>) {
        if let Ok(area) = TryArc::take_unique(area) {
            self.retire(area);
        }
    }

    /// [`give_up`](Self::give_up) for a record already owned alone.
    pub(crate) fn retire(&mut self, area: Unique<Area<M>>) {
        if let Some(free) = self.spare.iter_mut().find(|s| s.is_none()) {
            *free = area.recycle();
        }
    }
}

impl<M: Machine> Default for Areas<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: Machine> core::ops::Deref for Areas<M> {
    type Target = AreaTree<AreaEntry<M>>;
    fn deref(&self) -> &Self::Target {
        &self.tree
    }
}

impl<M: Machine> core::ops::DerefMut for Areas<M> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tree
    }
}

/// Most reader shards an area tree's lock gets (one per CPU, rounded up to
/// a power of two; CPU `c` reads through shard `c` modulo the count):
/// writers lock every shard, so more would make creating and destroying
/// areas dearer on big machines.
const MAX_SHARDS: usize = 16;

/// A shared handle on an address space, as [`System::create`](crate::System::create)
/// and [`System::fork`](crate::System::fork) hand it out (made fallibly: a
/// refused heap is `NoMemory`).
pub type SpaceRef<M> = TryArc<AddressSpace<M>>;

/// One address space: its areas and its page table.
///
/// Shared as a [`SpaceRef`]; the last reference going destroys it
/// (every area, every frame, the ASID, the page table). The kernel address
/// space is held by the [`System`](crate::System) and lives as long as it.
pub struct AddressSpace<M: Machine> {
    id: u64,
    kernel: bool,
    root: Frame,
    pub(crate) shared: TryArc<Shared<M>>,
    /// The areas, behind a lock with a reader count per CPU: faults on
    /// different CPUs read it without sharing a cache line.
    pub(crate) areas: ShardedRwLock<M::RwLock, Areas<M>>,
    /// The page table, changed without a lock of its own: each page's entry
    /// only under its area's lock (see [`PageTable`]'s concurrency rules).
    /// `None` only while the address space is being dropped.
    pt: Option<M::PageTable>,
}

/// Unmaps `runs` (all in the area's used space) of address space `as_id`
/// into `batch`, one page-table walk per leaf table
/// ([`PageTable::unmap_run`]); the batch never needs the heap: it flushes
/// early if the heap refuses it room.
pub(crate) fn unmap_runs_into<M: Machine>(
    shared: &Shared<M>,
    as_id: u64,
    pt: &M::PageTable,
    backend: &dyn Backend<M::Memory, M::Frames>,
    runs: impl Iterator<Item = PageRange>,
    batch: &mut ShootdownBatch,
) {
    let release = backend.caps().contains(BackendCaps::REFCOUNTED);
    let mem = shared.machine.memory();
    for r in runs {
        let unmapped = batch.defer_run_or_flush(r.start, r.count, release, shared, as_id, |out| {
            pt.unmap_run(mem, r.start, r.count, out)
        });
        debug_assert_eq!(unmapped, r.count, "used pages {r:?} not all mapped");
    }
}

/// Drops a departing area's share reference (frames the record held go
/// into `batch`) and gives back its reservation: its own, or the share
/// record's when it was the last sharer.
pub(crate) fn leave_share<M: Machine>(
    shared: &Shared<M>,
    as_id: u64,
    reserved: &PlainAtomicU64,
    st: &mut AreaState<M>,
    batch: &mut ShootdownBatch,
) {
    match st.share.take() {
        Some(share) => {
            if let Some(map) = share.remove_reference() {
                for f in map.frames() {
                    batch.release_later_or_flush(f, shared, as_id);
                }
                shared.reserve.release(share.reserved());
            }
        }
        None => shared.reserve.release(reserved.load(Ordering::Relaxed)),
    }
    reserved.store(0, Ordering::Relaxed);
}

impl<M: Machine> AddressSpace<M> {
    pub(crate) fn create(
        shared: &TryArc<Shared<M>>,
        kernel: Option<&AddressSpace<M>>,
    ) -> Result<SpaceRef<M>> {
        // The heap first (the handle's block, the lock's shards, room for
        // the ASID record), then the page table's frames, so a refusal
        // changes nothing.
        TryArc::try_new_with(|| Self::new(shared, kernel))
    }

    /// The space [`create`](Self::create) puts in its handle.
    fn new(shared: &TryArc<Shared<M>>, kernel: Option<&AddressSpace<M>>) -> Result<Self> {
        let m = &shared.machine;
        let shards = m.cpus().cpu_count().min(MAX_SHARDS);
        let areas = ShardedRwLock::try_new(Areas::new(), shards).map_err(|_| Error::NoMemory)?;
        let id = shared.new_id();
        if !shared.asids.lock().try_reserve_register(id) {
            return Err(Error::NoMemory);
        }
        let pt = match kernel {
            Some(k) => M::PageTable::create(m.memory(), m.frames(), Some(k.pt()), m.paging_mode())?,
            None => M::PageTable::create(m.memory(), m.frames(), None, m.paging_mode())?,
        };
        shared.asids.lock().register(id, kernel.is_none());
        Ok(Self {
            id,
            kernel: kernel.is_none(),
            root: pt.root(),
            shared: shared.clone(),
            areas,
            pt: Some(pt),
        })
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

    pub(crate) fn machine(&self) -> &M {
        &self.shared.machine
    }

    /// Makes what the kernel just wrote into `frame` visible to
    /// instruction fetches ([`PhysMemory::sync_icache`]) if it is about to
    /// be mapped with `flags` that let it execute.
    pub(crate) fn sync_if_exec(&self, frame: Frame, flags: PageFlags) {
        if flags.contains(PageFlags::EXEC) {
            self.machine().memory().sync_icache(frame);
        }
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

    /// The area tree, read-locked through the current CPU's shard (a
    /// single-shard lock skips looking up the CPU).
    pub(crate) fn read_areas(&self) -> ReadGuard<'_, M::RwLock, Areas<M>> {
        self.read_areas_cpu().0
    }

    /// [`read_areas`](Self::read_areas), also returning the CPU it looked
    /// up (`None` when it looked up none).
    #[inline]
    fn read_areas_cpu(&self) -> (ReadGuard<'_, M::RwLock, Areas<M>>, Option<usize>) {
        let cpu = if self.areas.shards() > 1 {
            self.machine().cpus().current_cpu()
        } else {
            None
        };
        (self.areas.read(cpu), cpu)
    }

    /// The page table. Whoever changes a page's entry must hold its area's
    /// lock (or the area tree's write lock).
    pub(crate) fn pt(&self) -> &M::PageTable {
        self.pt
            .as_ref()
            .expect("page table lives as long as the address space")
    }

    /// The entry of `tree` (this space's, locked) whose area contains page
    /// number `n`: one descent, or none when the current CPU's last-hit
    /// hint names the right leaf. Returns `(start, end, slot)`.
    pub(crate) fn entry_at<'t>(
        &self,
        tree: &'t Areas<M>,
        n: u64,
    ) -> Option<(u64, u64, &'t AreaEntry<M>)> {
        if tree.height() <= 1 {
            // One leaf: nothing for a hint to save, so do not look up the CPU.
            return tree.find(n);
        }
        self.entry_at_on_cpu(tree, n, self.machine().cpus().current_cpu())
    }

    /// [`entry_at`](Self::entry_at) for a caller that knows its CPU.
    pub(crate) fn entry_at_on_cpu<'t>(
        &self,
        tree: &'t Areas<M>,
        n: u64,
        cpu: Option<usize>,
    ) -> Option<(u64, u64, &'t AreaEntry<M>)> {
        tree.find_hinted(n, self.shared.hints.of(cpu))
    }

    /// The slot of the area containing `addr` and its locked state, for an
    /// operation on the whole area: `NotFound` if there is none, or if it is
    /// a share destination still being set up (partial), which is there for
    /// nobody but the share that creates it.
    pub(crate) fn lock_for_change<'t>(
        &self,
        tree: &'t Areas<M>,
        addr: VirtAddr,
    ) -> Result<(&'t AreaEntry<M>, AreaGuard<'t, M>)> {
        let slot = self
            .area_at(tree, addr.page().number())
            .ok_or(Error::NotFound)?;
        let st = slot.lock();
        if st.attrs.contains(AreaAttrs::PARTIAL) {
            return Err(Error::NotFound);
        }
        Ok((slot, st))
    }

    /// The slot of `tree` whose area contains page number `n`.
    pub(crate) fn area_at<'t>(&self, tree: &'t Areas<M>, n: u64) -> Option<&'t AreaEntry<M>> {
        self.entry_at(tree, n).map(|(_, _, slot)| slot)
    }

    /// The page range `[base, base+size)` checked for alignment, size and
    /// wrapping.
    pub(crate) fn checked_range(base: VirtAddr, size: u64) -> Result<PageRange> {
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

    /// The pages areas of this space may take: `[1, user end)` (the NULL
    /// page never) for a user space, `[kernel start, 2^52)` for the
    /// kernel's.
    pub(crate) fn page_window(&self) -> (u64, u64) {
        if self.kernel {
            (
                self.shared.layout.kernel_start >> PAGE_SHIFT,
                1u64 << (64 - PAGE_SHIFT),
            )
        } else {
            (1, self.shared.layout.user_end >> PAGE_SHIFT)
        }
    }

    /// Whether `range` fits this space's part of the layout, stays off the
    /// NULL page, and overlaps no area nor any area's guard page but the
    /// area based at `avoid`, with `guard` free pages below it (a user
    /// area's guard may be the NULL page, which nothing maps). Needs the
    /// tree lock (which keeps every area's size still).
    pub(crate) fn check_conflicts(
        &self,
        tree: &Areas<M>,
        range: PageRange,
        guard: u64,
        avoid: Option<u64>,
    ) -> bool {
        let (start, end) = (range.start.number(), range.end().number());
        self.in_window(range, guard) && !tree.overlaps(start - guard, end, avoid)
    }

    /// Whether `range` with `guard` free pages below it fits this space's
    /// part of the layout and stays off the NULL page (the part of
    /// [`check_conflicts`](Self::check_conflicts) that needs no tree).
    pub(crate) fn in_window(&self, range: PageRange, guard: u64) -> bool {
        let (lo, hi) = self.page_window();
        let (start, end) = (range.start.number(), range.end().number());
        start >= lo && end <= hi && !(self.kernel && start - guard < lo)
    }

    /// Creates an area of anonymous memory (HelenOS `as_area_create` with
    /// `anon_backend`).
    pub fn area_create(&self, base: VirtAddr, size: u64, flags: AreaFlags) -> Result<VirtAddr> {
        self.area_create_with(
            base,
            size,
            flags,
            AreaAttrs::empty(),
            self.shared.anon.clone(),
        )
    }

    /// Creates an area with the given attributes and backend.
    ///
    /// Refuses an unaligned base, a zero or wrapping size and write+exec
    /// with `InvalidArgument`; overlap with another area, the NULL page, the
    /// other side of the user/kernel split, or a range past the end of the
    /// address space with `AddressNotAvailable`; and, after those checks,
    /// an area whose memory reservation ([`Backend::reserve_pages`]) would
    /// pass the commit limit with `NoMemory` (see [`crate::reserve`]).
    pub fn area_create_with(
        &self,
        base: VirtAddr,
        size: u64,
        flags: AreaFlags,
        attrs: AreaAttrs,
        backend: BackendRef<M::Memory, M::Frames>,
    ) -> Result<VirtAddr> {
        self.insert_area(base, size, flags, attrs, backend, false)
            .map(|_| base)
    }

    /// Creates an area; returns it if `handle` (so a caller can tell it
    /// from an area created later at the same place).
    fn insert_area(
        &self,
        base: VirtAddr,
        size: u64,
        flags: AreaFlags,
        attrs: AreaAttrs,
        backend: BackendRef<M::Memory, M::Frames>,
        handle: bool,
    ) -> Result<Option<TryArc<Area<M>>>> {
        let flags = Self::placement_flags(flags, &*backend)?;
        let range = Self::checked_range(base, size)?;
        let mut tree = self.areas.write();
        let guard = flags.guard_pages();
        if !self.in_window(range, guard) {
            return Err(Error::AddressNotAvailable);
        }
        // Overlaps are the insertion's own check (a refused one undoes the
        // reservation and keeps the new record's block as a spare): one
        // descent fewer. A conflict still comes before running out, as
        // HelenOS checks it first.
        match self.insert_checked(&mut tree, range, flags, attrs, backend, None) {
            Err(Error::NoMemory) if !self.check_conflicts(&tree, range, guard, None) => {
                Err(Error::AddressNotAvailable)
            }
            Err(e) => Err(e),
            // Still under the lock: the entry just inserted.
            Ok(()) if handle => Ok(tree
                .get(range.start.number())
                .map(|(_, slot)| slot.area.clone())),
            Ok(()) => Ok(None),
        }
    }

    /// Changes the size of the area containing `addr` so that it ends at
    /// `addr + size` (HelenOS `as_area_resize`).
    ///
    /// Growing checks for conflicts (`AddressNotAvailable`) and reserves
    /// memory for the new pages (`NoMemory` beyond the commit limit, see
    /// [`crate::reserve`]); shrinking unmaps the pages above the new end,
    /// highest first, releases their frames after one TLB shootdown for the
    /// whole range and gives their reservation back. A new size of zero
    /// pages is `PermissionDenied`, as in HelenOS; shared areas and areas
    /// whose backend cannot resize get `NotSupported`; a share destination
    /// still being set up (partial) `NotFound`.
    pub fn area_resize(&self, addr: VirtAddr, size: u64) -> Result<()> {
        let mut tree = self.areas.write();
        let (base, pages) = {
            let (slot, mut st) = self.lock_for_change(&tree, addr)?;
            let area = &slot.area;
            if !area.backend.caps().contains(BackendCaps::RESIZE) || st.share.is_some() {
                return Err(Error::NotSupported);
            }
            let offset = addr.as_u64() - area.base().start().as_u64();
            let bytes = offset.checked_add(size).ok_or(Error::InvalidArgument)?;
            let pages = bytes_to_pages(bytes);
            if pages == 0 {
                return Err(Error::PermissionDenied);
            }
            let old = area.pages();
            let backend = &*area.backend;
            if pages > old {
                let range = Self::checked_range(area.base().start(), bytes)?;
                let guard = st.flags.guard_pages();
                if !self.check_conflicts(&tree, range, guard, Some(area.base().number())) {
                    return Err(Error::AddressNotAvailable);
                }
                let more = reserve::up_front(backend, st.flags, area.offset() + old, pages - old);
                if !self.shared.reserve.try_reserve(more) {
                    return Err(Error::NoMemory);
                }
                area.add_reserved(more);
            } else if pages < old {
                // The heap first: the runs removed go to a set of their own.
                let cut = area.base().add(pages);
                let mut removed = UsedSpace::try_with_capacity(st.used.intervals_from(cut))
                    .ok_or(Error::NoMemory)?;
                st.used.split_off_into(cut, &mut removed);
                // Cuts no run in two: allocates nothing.
                crate::cow::remove_pages(&mut st.cow, cut.number(), u64::MAX);
                let mut batch = ShootdownBatch::new();
                let mut less =
                    reserve::up_front(backend, st.flags, area.offset() + pages, old - pages);
                for r in removed.iter() {
                    let index = area.index(r.start);
                    less += reserve::per_page(backend, st.flags, index, r.count);
                    let one = core::iter::once(r);
                    unmap_runs_into(&self.shared, self.id, self.pt(), backend, one, &mut batch);
                }
                batch.complete(&self.shared, self.id);
                self.shared.reserve.release(less);
                area.sub_reserved(less);
            }
            area.pages.store(pages, Ordering::Release);
            (area.base().number(), pages)
        };
        let moved = tree.set_end(base, base + pages);
        debug_assert!(moved, "growth was checked for conflicts");
        Ok(())
    }

    /// Destroys the area containing `addr` (HelenOS `as_area_destroy`):
    /// unmaps its used pages, shoots down their translations once, and then
    /// releases the frames its backend counts.
    pub fn area_destroy(&self, addr: VirtAddr) -> Result<()> {
        let mut tree = self.areas.write();
        let (base, _, _) = self
            .entry_at(&tree, addr.page().number())
            .ok_or(Error::NotFound)?;
        let (_, slot) = tree.remove(base).expect("found above");
        self.retire_area(&mut tree, slot.area, ShootdownBatch::new());
        Ok(())
    }

    /// Unmaps `area`, just taken out of the written `tree` whole, into
    /// `batch` and completes it. Mostly nothing else holds the area: then
    /// no lock is taken ([`TryArc::take_unique`]) and its block becomes a
    /// spare for the next area, the value (and anything its backend
    /// holds) dropped only after the shootdown; else the area is locked to
    /// be unmapped and goes with its last holder.
    pub(crate) fn retire_area(
        &self,
        tree: &mut Areas<M>,
        area: TryArc<Area<M>>,
        mut batch: ShootdownBatch,
    ) {
        match TryArc::take_unique(area) {
            Ok(mut area) => {
                self.unmap_owned(&mut area, &mut batch);
                batch.complete(&self.shared, self.id);
                tree.retire(area);
            }
            Err(area) => {
                self.unmap_area(&area, &mut batch);
                batch.complete(&self.shared, self.id);
            }
        }
    }

    /// Unmaps every page of a departing area and drops its
    /// share reference.
    pub(crate) fn unmap_area(&self, area: &Area<M>, batch: &mut ShootdownBatch) {
        let mut st = area.lock_detached();
        self.unmap_state(&*area.backend, &area.reserved, &mut st, batch);
    }

    /// [`unmap_area`](Self::unmap_area) of an area this call owns alone
    /// (out of the tree, its last reference given up): no lock to take.
    pub(crate) fn unmap_owned(&self, area: &mut Area<M>, batch: &mut ShootdownBatch) {
        let (backend, reserved, st) = area.owned_parts();
        self.unmap_state(backend, reserved, st, batch);
    }

    /// Unmaps the pages of a departing area's state `st` (its backend and
    /// reservation given) and drops its share reference.
    fn unmap_state(
        &self,
        backend: &dyn Backend<M::Memory, M::Frames>,
        reserved: &PlainAtomicU64,
        st: &mut AreaState<M>,
        batch: &mut ShootdownBatch,
    ) {
        let used = st.used.take();
        st.cow = UsedSpace::new();
        if !used.is_empty() {
            unmap_runs_into(
                &self.shared,
                self.id,
                self.pt(),
                backend,
                used.iter(),
                batch,
            );
        }
        leave_share(&self.shared, self.id, reserved, st, batch);
    }

    /// Changes the rights of the area containing `addr`, keeping its data
    /// (HelenOS `as_area_change_flags`): every mapped page's entry gets the
    /// new rights in place ([`PageTable::protect_run`]: same frames, no
    /// heap or frame allocated, so nothing can run out), and one shootdown
    /// round runs before the call returns, after which no CPU reaches the
    /// area with rights it lost (rights only added need no round: see
    /// [`PageFlags::widens`]). Shared areas and backends that cannot (all but anonymous
    /// memory) get `NotSupported`; a partial area (a share destination
    /// still being set up) `NotFound`; rights past the area's maximum
    /// (those a user pager lent its pages with) `PermissionDenied`. Where
    /// the area may lie is fixed at creation: its [`GUARD`](AreaFlags::GUARD) and
    /// [`GROWS_DOWN`](AreaFlags::GROWS_DOWN) bits stay as they are, and
    /// those bits in `flags` are ignored, as are its reservation bits; a
    /// [`RESERVE_ON_WRITE`](AreaFlags::RESERVE_ON_WRITE) area given write
    /// reserves its other pages (`NoMemory` past the commit limit).
    pub fn area_change_flags(&self, addr: VirtAddr, flags: AreaFlags) -> Result<()> {
        flags.validate()?;
        // Read-locking the tree keeps the area in place (as for a fault).
        let tree = self.read_areas();
        let (slot, mut st) = self.lock_for_change(&tree, addr)?;
        let area = &slot.area;
        if !area.backend.caps().contains(BackendCaps::CHANGE_FLAGS) || st.share.is_some() {
            return Err(Error::NotSupported);
        }
        // Never past the area's maximum (a paged area's shrinks to the
        // rights its pager lent pages with).
        if !st.max_flags.contains(flags - crate::protect::KEPT) {
            return Err(Error::PermissionDenied);
        }
        // Where the area may lie is fixed at creation, and so is its way of
        // reserving (not a right), but that a reserve-on-write area given
        // write access reserves up front from then on: its other pages.
        let pages = [area.base().number(), area.end()];
        let ch = crate::protect::change_of(area, &st, pages, flags, false);
        if !self.shared.reserve.try_reserve(ch.more) {
            return Err(Error::NoMemory);
        }
        area.add_reserved(ch.more);
        let old = core::mem::replace(&mut st.flags, ch.flags);
        // The rights change in place; the changed entries leave every TLB
        // before returning.
        let mut batch = ShootdownBatch::new();
        self.reprotect_pages(&st, old, &mut batch);
        batch.complete(&self.shared, self.id);
        Ok(())
    }

    /// Gives every mapped page of the area locked as `st` the rights of
    /// `st.flags` (which were `old`) in place ([`PageTable::protect_run`]:
    /// same frames, one walk per leaf table; copy-on-write pages stay
    /// without write), and adds each changed page to `batch`, whose
    /// completion the caller owes before relying on the new rights; when
    /// the rights only grow ([`PageFlags::widens`]) nothing is added (a
    /// stale entry faults spuriously, and the fault handler drops it). Pages
    /// that become executable have their frames synced for instruction
    /// fetches first, in one call
    /// ([`PhysMemory::sync_icache_frames`](crate::PhysMemory::sync_icache_frames)).
    /// Allocates nothing.
    pub(crate) fn reprotect_pages(
        &self,
        st: &AreaState<M>,
        old: AreaFlags,
        batch: &mut ShootdownBatch,
    ) {
        let m = self.machine();
        if st.flags.contains(AreaFlags::EXEC) && !old.contains(AreaFlags::EXEC) {
            let mut frames = st
                .used
                .iter_pages()
                .filter_map(|page| self.pt().translate(m.memory(), page))
                .map(|(frame, _)| frame);
            m.memory().sync_icache_frames(&mut frames);
        }
        let pflags = self.page_flags(st.flags);
        let widened = pflags.widens(self.page_flags(old));
        let mut rewritten = Rewritten::new();
        for r in st.used.iter() {
            // Copy-on-write pages keep write access off.
            crate::cow::each_part(&st.cow, r, |part, cow| {
                let flags = if cow {
                    pflags - PageFlags::WRITE
                } else {
                    pflags
                };
                let pt = self.pt();
                let done = pt.protect_run(m.memory(), m.frames(), part.start, part.count, flags);
                rewritten = rewritten.join(done);
            });
        }
        if widened {
            // Rights only added: a TLB entry with the old ones grants less
            // than the new entry, and an access it refuses faults
            // spuriously; the fault handler drops it. Nothing to flush.
            let _ = rewritten;
        } else {
            batch.defer_rewritten(rewritten);
        }
    }

    /// Shares the area containing `src_addr` with `dst` (this or another
    /// address space) at `dst_base` (HelenOS `as_area_share`).
    ///
    /// `size` is the size the caller expects the source area to have and
    /// `mask` the rights the new area gets; the cacheable attribute is
    /// inherited. Refusals: no source area (or a partial one, a share
    /// destination still being set up) `NotFound`; a backend that cannot
    /// share, or a [late-reserving](AreaFlags::LATE_RESERVE) source,
    /// `NotSupported`; a different size or rights the source lacks
    /// `PermissionDenied`; a destination that cannot be created the
    /// creation's error (HelenOS reports `ENOMEM` for all of those); a
    /// destination of another system `InvalidArgument`.
    /// Both areas then map the same frames, also for pages first touched
    /// later; the last area to go frees them. The source's memory
    /// reservation becomes the group's, counted once and given back by the
    /// last area to go; the destination reserves nothing more.
    pub fn area_share(
        &self,
        src_addr: VirtAddr,
        size: u64,
        dst: &AddressSpace<M>,
        dst_base: VirtAddr,
        mask: AreaFlags,
    ) -> Result<()> {
        if !TryArc::ptr_eq(&self.shared, &dst.shared) {
            return Err(Error::InvalidArgument);
        }
        // First the checks alone, so the source's refusals come first (as in
        // HelenOS); then the destination is created, partial, so faults on
        // it fail until the share record arrives; only then is the source
        // marked shared. A refused destination leaves the source untouched.
        let (source, backend, mask) = {
            let tree = self.read_areas();
            let (slot, st) = self.lock_for_change(&tree, src_addr)?;
            let mask = Self::check_share_source(&slot.area, &st, size, mask)?;
            (slot.area.clone(), slot.area.backend.clone(), mask)
        };
        // The destination asks the share record (and the backend) for the
        // source's pages: same offset.
        let offset = source.offset();
        let Some(created) =
            dst.insert_area(dst_base, size, mask, AreaAttrs::PARTIAL, backend, true)?
        else {
            debug_assert!(false, "a handle was asked for");
            return Err(Error::NotFound);
        };
        let (share, first) = {
            let tree = self.read_areas();
            let found = self
                .lock_for_change(&tree, src_addr)
                .and_then(|(slot, mut st)| {
                    // Another thread may have changed the source meanwhile.
                    if !TryArc::ptr_eq(&slot.area, &source) {
                        return Err(Error::NotFound);
                    }
                    Self::check_share_source(&slot.area, &st, size, mask)?;
                    self.join_share(&slot.area, &mut st)
                });
            match found {
                Ok(joined) => joined,
                Err(e) => {
                    drop(tree);
                    dst.remove_partial(dst_base, &created);
                    return Err(e);
                }
            }
        };
        let tree = dst.read_areas();
        let slot = dst
            .area_at(&tree, dst_base.page().number())
            .filter(|slot| TryArc::ptr_eq(&slot.area, &created));
        let Some(slot) = slot else {
            // Another thread destroyed the destination while it was partial.
            drop(tree);
            self.leave_refused_share(src_addr, &source, share, first);
            return Err(Error::NotFound);
        };
        let mut st = slot.lock();
        // Partial areas refuse share, resize and change of rights, so no
        // other share record can have arrived meanwhile.
        debug_assert!(st.share.is_none());
        slot.area
            .reserved
            .store(share.reserved(), Ordering::Relaxed);
        st.share = Some(share);
        slot.area.set_offset(offset);
        // The destination may never be given rights beyond its mask.
        st.max_flags = mask | crate::protect::KEPT;
        st.attrs.remove(AreaAttrs::PARTIAL);
        Ok(())
    }

    /// Gives back the reference a share took on `source`'s record when its
    /// destination went away before it could be attached; the record this
    /// share made (`first`) is taken off the source again if nobody else
    /// joined it meanwhile, so the source is as it was.
    fn leave_refused_share(
        &self,
        src_addr: VirtAddr,
        source: &TryArc<Area<M>>,
        share: TryArc<ShareInfo<M>>,
        first: bool,
    ) {
        let mut batch = ShootdownBatch::new();
        {
            let tree = self.read_areas();
            let mut src = self
                .lock_for_change(&tree, src_addr)
                .ok()
                .filter(|(slot, st)| {
                    TryArc::ptr_eq(&slot.area, source)
                        && st.share.as_ref().is_some_and(|s| TryArc::ptr_eq(s, &share))
                });
            let mut sh = share.state.lock();
            sh.refs -= 1;
            let detach = match &mut src {
                Some((_, st)) if first && sh.refs == 1 => {
                    st.share = None;
                    true
                }
                _ => sh.refs == 0,
            };
            if detach {
                for f in core::mem::take(&mut sh.pagemap).frames() {
                    batch.release_later_or_flush(f, &self.shared, self.id);
                }
            }
            // Nobody left: the group's reservation goes too. (A source
            // taken off the record keeps its own, which the record only
            // stood for.)
            if sh.refs == 0 {
                self.shared.reserve.release(share.reserved());
            }
        }
        batch.complete(&self.shared, self.id);
    }

    /// Whether `area` (locked as `st`) may be shared as `size` bytes with
    /// rights `mask`; returns the rights the destination gets (the
    /// cacheable attribute inherited).
    fn check_share_source(
        area: &Area<M>,
        st: &AreaState<M>,
        size: u64,
        mask: AreaFlags,
    ) -> Result<AreaFlags> {
        // Late-reserving areas are not shared (as in HelenOS): their
        // reservation follows their mapped pages, which a share record
        // would have to count across sharers.
        if !area.backend.caps().contains(BackendCaps::SHARE)
            || st.flags.contains(AreaFlags::LATE_RESERVE)
        {
            return Err(Error::NotSupported);
        }
        if mask.bits() & !AreaFlags::all().bits() != 0 {
            return Err(Error::InvalidArgument);
        }
        let mut mask = mask;
        if st.flags.contains(AreaFlags::CACHEABLE) {
            mask |= AreaFlags::CACHEABLE;
        }
        if area.pages().checked_mul(PAGE_SIZE) != Some(size) || !st.flags.contains(mask) {
            return Err(Error::PermissionDenied);
        }
        Ok(mask)
    }

    /// The share record of `area` (locked as `st`) with one more reference,
    /// and whether this call made it: on the first share the pages mapped
    /// so far enter its page map.
    /// `NoMemory` (nothing changed) if the heap refuses the record.
    fn join_share(
        &self,
        area: &Area<M>,
        st: &mut AreaState<M>,
    ) -> Result<(TryArc<ShareInfo<M>>, bool)> {
        if let Some(share) = &st.share {
            share.state.lock().refs += 1;
            return Ok((share.clone(), false));
        }
        let m = self.machine();
        let mut pagemap = PageMap::new();
        let counted = area.backend.caps().contains(BackendCaps::REFCOUNTED);
        // The heap first: the record, and room for the pages mapped so far.
        if counted && !pagemap.try_reserve(st.used.pages() as usize) {
            return Err(Error::NoMemory);
        }
        let share = TryArc::try_new(ShareInfo::new(2, PageMap::new(), area.reserved()))
            .map_err(|_| Error::NoMemory)?;
        // A share record holds no copy-on-write frame: each such page gets
        // its own copy now, the last step that may fail (all or nothing by
        // itself; what was allocated above is dropped if it refuses).
        self.cow_break_all(area, st)?;
        if counted {
            for page in st.used.iter_pages() {
                let (frame, _) = self
                    .pt()
                    .translate(m.memory(), page)
                    .expect("used page is mapped");
                m.frames().add_ref(frame);
                pagemap.insert(area.index(page), frame);
            }
        }
        // The area's reservation becomes the group's.
        share.state.lock().pagemap = pagemap;
        st.share = Some(share.clone());
        Ok((share, true))
    }

    /// Takes out the partial area `area` at `base` that a refused share had
    /// created (it maps nothing and holds no share record).
    fn remove_partial(&self, base: VirtAddr, area: &TryArc<Area<M>>) {
        let mut tree = self.areas.write();
        let n = base.page().number();
        let ours = tree
            .find(n)
            .is_some_and(|(start, _, slot)| start == n && TryArc::ptr_eq(&slot.area, area));
        // Gone already if another thread destroyed it.
        if ours {
            let _ = tree.remove(n);
        }
    }

    /// The share record of the area containing `addr`, if it is shared.
    pub fn share_info(&self, addr: VirtAddr) -> Option<TryArc<ShareInfo<M>>> {
        let tree = self.read_areas();
        let share = self
            .area_at(&tree, addr.page().number())?
            .lock()
            .share
            .clone();
        share
    }

    /// The area containing `addr`.
    #[inline]
    pub fn area(&self, addr: VirtAddr) -> Option<AreaInfo> {
        self.lookup().area(addr)
    }

    /// Size in bytes of the area containing `addr`, 0 if none (HelenOS
    /// `as_area_get_size`).
    #[inline]
    pub fn area_size(&self, addr: VirtAddr) -> u64 {
        self.lookup().area_size(addr)
    }

    /// Whether the area containing `addr` permits `access` (HelenOS
    /// `as_area_check_access`); `false` when there is none.
    #[inline]
    pub fn check_access(&self, addr: VirtAddr, access: Access) -> bool {
        self.lookup().check_access(addr, access)
    }

    /// The areas, read-locked for a series of queries that take the lock
    /// once: each query is then a tree search and no atomic
    /// read-modify-write. Keep it short, and call nothing else on this
    /// space (nor touch its memory) until it is dropped: see
    /// [`AreaLookup`] for the rules.
    #[inline]
    pub fn lookup(&self) -> AreaLookup<'_, M> {
        // The CPU is looked up at most once: for the reader count when the
        // lock has several, for the hint when the tree has more than one
        // leaf (a one-leaf tree ignores hints, and cannot grow while locked).
        let (tree, mut cpu) = self.read_areas_cpu();
        if self.areas.shards() == 1 && tree.height() > 1 {
            cpu = self.machine().cpus().current_cpu();
        }
        AreaLookup::new(tree, self.shared.hints.of(cpu))
    }

    /// Every area, lowest first.
    pub fn areas(&self) -> Vec<AreaInfo> {
        self.lookup().iter().collect()
    }

    /// A copy of the used space of the area containing `addr`.
    pub fn used_space(&self, addr: VirtAddr) -> Option<UsedSpace> {
        let tree = self.read_areas();
        self.area_at(&tree, addr.page().number())
            .map(|slot| slot.lock().used.clone())
    }

    /// What the page table maps at `page` (read by software, not through a
    /// TLB).
    pub fn translate(&self, page: Page) -> Option<(Frame, PageFlags)> {
        self.pt().translate(self.machine().memory(), page)
    }

    /// Pages mapped in all areas together.
    pub fn resident_pages(&self) -> u64 {
        let tree = self.read_areas();
        tree.iter()
            .map(|(_, _, slot)| slot.lock().used.pages())
            .sum()
    }

    /// Frames held by the page table itself.
    pub fn page_table_frames(&self) -> u64 {
        self.pt().table_frames()
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
        let mut batch = ShootdownBatch::new();
        let areas = core::mem::take(self.areas.get_mut());
        for (_, _, slot) in areas.iter() {
            self.unmap_area(&slot.area, &mut batch);
        }
        batch.complete(&shared, self.id);
        // The ASID goes back to the pool under the same hold of the
        // allocator that takes it away, flushed first, so a switch elsewhere
        // never finds it held by nobody (as a steal does, under that lock).
        let mut asids = shared.asids.lock();
        if let Some((asid, cpus)) = asids.unregister(self.id) {
            let tlb = m.tlb();
            let mut remote = cpus;
            if let Some(me) = m.cpus().current_cpu() {
                remote.remove(me);
                tlb.invalidate_local(Invalidation::Asid(asid));
            }
            if !remote.is_empty() {
                let n = m.shootdown().shootdown(remote, Invalidation::Asid(asid));
                Stats::add(&shared.counters().ipis, n as u64);
            }
            asids.release(asid);
        }
        drop(asids);
        if let Some(pt) = self.pt.take() {
            pt.destroy(m.memory(), m.frames());
        }
    }
}
