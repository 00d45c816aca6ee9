//! Address-space areas: a run of pages with one set of rights and one backend.

use core::ops::{Deref, DerefMut};

use crate::addr::Page;
pub use crate::backend::AreaInfo;
use crate::backend::{Backend, BackendRef};
use crate::error::{Error, Result};
use crate::flags::{AreaAttrs, AreaFlags};
use crate::internals::try_arc::{TryArc, Unwritten};
use crate::internals::used_space::UsedSpace;
use crate::machine::Machine;
use crate::share::ShareInfo;
use crate::sync::atomic::{AtomicU64, Ordering};
use core::sync::atomic::{AtomicU64 as PlainAtomicU64, Ordering::Relaxed};

/// An area inside an address space (HelenOS `as_area_t`).
///
/// `backend` and `grow_limit` never change. `base` (page number; only a
/// [grows-down](AreaFlags::GROWS_DOWN) area's moves) and `pages` change
/// only with both the address space's area-tree lock (written) and the
/// area's lock held, so either lock is enough to read them; everything else
/// is under the area's lock.
pub(crate) struct Area<M: Machine> {
    base: AtomicU64,
    pub backend: BackendRef<M::Memory, M::Frames>,
    pub pages: AtomicU64,
    /// Pages reserved for the area (see [`crate::reserve`]): its own
    /// reservation, or its share record's once shared. Changed under the
    /// area's lock; read without it for listings.
    pub reserved: PlainAtomicU64,
    /// The most pages a grows-down area may reach by growing (changed by a
    /// split or merge, with the tree written and the area locked).
    pub grow_limit: PlainAtomicU64,
    /// The backend's index of the area's first page (see
    /// [`AreaInfo::page_index`]): the backend's `first_index` for a new
    /// area, plus the distance from the original base for the upper part
    /// of a split, so both parts keep
    /// asking the backend (and the share record) for the same pages.
    /// Changes with the tree written and the area locked, like `base`.
    offset: PlainAtomicU64,
    /// The backend's [`object_id`](Backend::object_id), read once.
    object: usize,
    state: lock_api::Mutex<M::Lock, AreaState<M>>,
}

/// What lookups read of an area without its lock. It lives in the area
/// tree beside the area (so a lookup touches no memory of the area itself)
/// and is written when the area's lock guard drops, which happens with the
/// tree locked: the summary cannot move meanwhile.
///
/// Rights, attributes, share state, resident count and how to tell the
/// reserved count are packed into one word, so a lookup reads them at once
/// and the tree's entries stay small (32 bytes with the area and the
/// backend's name).
pub(crate) struct Summary {
    word: AtomicU64,
    backend: &'static str,
}

/// Bits 0–7 of a summary word: the rights.
const RIGHTS_SHIFT: u32 = 0;
/// Bits 8–15: the attributes.
const ATTRS_SHIFT: u32 = 8;
/// Bit 16: shared.
const SHARED_BIT: u64 = 1 << 16;
/// Bits 17–18: how the pages reserved for the area follow from the rest,
/// so that a lookup need not read the area: none, all its pages, its
/// resident pages (the usual cases), or another number, read from the area.
const RESERVED_SHIFT: u32 = 17;
const RESERVED_NONE: u64 = 0;
const RESERVED_ALL: u64 = 1;
const RESERVED_RESIDENT: u64 = 2;
const RESERVED_OTHER: u64 = 3;
/// Bits 19–63: the resident count (saturating; 2^45 pages fill a 57-bit
/// address space, which an area never does whole).
const RESIDENT_SHIFT: u32 = 19;
const _: () = assert!(AreaFlags::all().bits() <= 0xff && AreaAttrs::all().bits() <= 0xff);
const _: () = assert!(RESERVED_OTHER < 1 << (RESIDENT_SHIFT - RESERVED_SHIFT));

impl Summary {
    fn pack<M: Machine>(st: &AreaState<M>, area: &Area<M>) -> u64 {
        Self::pack_state(st, area.pages(), area.reserved())
    }

    /// [`pack`](Self::pack) of an area of `pages` pages with `reserved`
    /// reserved and state `st`.
    fn pack_state<M: Machine>(st: &AreaState<M>, pages: u64, reserved: u64) -> u64 {
        let resident = st.used.pages();
        let reserved = Self::reserved_kind(reserved, pages, resident);
        Self::pack_parts(st.flags, st.attrs, st.share.is_some(), resident, reserved)
    }

    /// Which `RESERVED_*` describes `reserved` pages of an area of `pages`
    /// pages with `resident` resident.
    fn reserved_kind(reserved: u64, pages: u64, resident: u64) -> u64 {
        if reserved == 0 {
            RESERVED_NONE
        } else if reserved == pages {
            RESERVED_ALL
        } else if reserved == resident && resident < u64::MAX >> RESIDENT_SHIFT {
            RESERVED_RESIDENT
        } else {
            RESERVED_OTHER
        }
    }

    fn pack_parts(
        flags: AreaFlags,
        attrs: AreaAttrs,
        shared: bool,
        resident: u64,
        reserved: u64,
    ) -> u64 {
        let resident = resident.min(u64::MAX >> RESIDENT_SHIFT);
        (u64::from(flags.bits() & 0xff) << RIGHTS_SHIFT)
            | (u64::from(attrs.bits() & 0xff) << ATTRS_SHIFT)
            | if shared { SHARED_BIT } else { 0 }
            | (reserved << RESERVED_SHIFT)
            | (resident << RESIDENT_SHIFT)
    }

    /// The area's rights.
    pub fn flags(&self) -> AreaFlags {
        let w = self.word.load(Ordering::Acquire);
        AreaFlags::from_bits_truncate((w >> RIGHTS_SHIFT) as u32 & 0xff)
    }

    /// The area's rights, resident count and whether it is shared, read at
    /// once.
    pub fn unlocked_view(&self) -> (AreaFlags, u64, bool) {
        let w = self.word.load(Ordering::Acquire);
        (
            AreaFlags::from_bits_truncate((w >> RIGHTS_SHIFT) as u32 & 0xff),
            w >> RESIDENT_SHIFT,
            w & SHARED_BIT != 0,
        )
    }

    fn publish<M: Machine>(&self, st: &AreaState<M>, area: &Area<M>) {
        self.word.store(Self::pack(st, area), Ordering::Release);
    }
}

/// An entry of the area tree: the area and its summary.
pub(crate) struct AreaEntry<M: Machine> {
    pub area: TryArc<Area<M>>,
    pub summary: Summary,
}

impl<M: Machine> AreaEntry<M> {
    /// A slot for a new area: nothing resident, not shared, `reserved`
    /// pages reserved for it, growing down to `grow_limit` pages if it
    /// grows down, on a block from the heap. `NoMemory` if the heap
    /// refuses the area.
    pub fn new(
        base: Page,
        pages: u64,
        flags: AreaFlags,
        attrs: AreaAttrs,
        backend: BackendRef<M::Memory, M::Frames>,
        reserved: u64,
        grow_limit: u64,
    ) -> Result<Self> {
        let area = Area::new(base, pages, flags, attrs, backend, reserved, grow_limit)?;
        let block = Unwritten::try_new().ok_or(Error::NoMemory)?;
        Ok(Self::of_new(block, area))
    }

    /// The tree entry of `area`, a new record put in `block` (its summary
    /// computed from its state, which no one else can reach yet: no lock
    /// taken); allocates nothing.
    pub fn of_new(block: Unwritten<Area<M>>, mut area: Area<M>) -> Self {
        let (pages, reserved) = (area.pages(), area.reserved());
        let backend = area.backend.name();
        let word = Summary::pack_state(area.state.get_mut(), pages, reserved);
        Self {
            summary: Summary {
                word: AtomicU64::new(word),
                backend,
            },
            area: block.fill(area),
        }
    }

    /// The tree entry of the area `area` already on the heap (its
    /// summary computed from its state); allocates nothing.
    pub fn of_shared(area: TryArc<Area<M>>) -> Self {
        let word = {
            let st = area.state.lock();
            Summary::pack(&st, &area)
        };
        Self {
            summary: Summary {
                word: AtomicU64::new(word),
                backend: area.backend.name(),
            },
            area,
        }
    }

    /// Locks the area; the guard publishes the summary when dropped.
    pub fn lock(&self) -> AreaGuard<'_, M> {
        AreaGuard {
            summary: Some((&self.summary, &self.area)),
            st: self.area.state.lock(),
        }
    }

    /// Locks the area to read its state: the guard lends it only shared,
    /// so nothing changes through it and nothing is published when it
    /// drops.
    pub fn lock_read(&self) -> AreaReadGuard<'_, M> {
        AreaReadGuard(self.area.state.lock())
    }

    /// A snapshot of the area `[start, end)` (page numbers, from the tree)
    /// without its lock: while the area changes, fields may come from
    /// moments a few instructions apart.
    pub fn snapshot(&self, start: u64, end: u64) -> AreaInfo {
        let w = self.summary.word.load(Ordering::Acquire);
        let resident = w >> RESIDENT_SHIFT;
        let reserved = match (w >> RESERVED_SHIFT) & 3 {
            RESERVED_NONE => 0,
            RESERVED_ALL => end - start,
            RESERVED_RESIDENT => resident,
            _ => self.area.reserved(),
        };
        let flags = AreaFlags::from_bits_truncate((w >> RIGHTS_SHIFT) as u32 & 0xff);
        AreaInfo {
            base: Page::from_number(start).start(),
            pages: end - start,
            flags,
            attrs: AreaAttrs::from_bits_truncate((w >> ATTRS_SHIFT) as u32 & 0xff),
            backend: self.summary.backend,
            resident,
            reserved,
            shared: w & SHARED_BIT != 0,
            offset: self.area.offset(),
            object_id: self.area.object,
            grow_limit: self.area.shown_grow_limit(flags),
        }
    }
}

/// An area's state locked to be read ([`AreaEntry::lock_read`]).
pub(crate) struct AreaReadGuard<'a, M: Machine>(lock_api::MutexGuard<'a, M::Lock, AreaState<M>>);

impl<M: Machine> Deref for AreaReadGuard<'_, M> {
    type Target = AreaState<M>;
    fn deref(&self) -> &AreaState<M> {
        &self.0
    }
}

/// The locked state of an area; publishes the area's summary when dropped
/// (if it was locked through its slot).
pub(crate) struct AreaGuard<'a, M: Machine> {
    summary: Option<(&'a Summary, &'a Area<M>)>,
    st: lock_api::MutexGuard<'a, M::Lock, AreaState<M>>,
}

impl<M: Machine> Deref for AreaGuard<'_, M> {
    type Target = AreaState<M>;
    fn deref(&self) -> &AreaState<M> {
        &self.st
    }
}

impl<M: Machine> DerefMut for AreaGuard<'_, M> {
    fn deref_mut(&mut self) -> &mut AreaState<M> {
        &mut self.st
    }
}

impl<M: Machine> Drop for AreaGuard<'_, M> {
    fn drop(&mut self) {
        if let Some((summary, area)) = self.summary {
            summary.publish(&self.st, area);
        }
    }
}

/// The part of an area its lock protects.
pub(crate) struct AreaState<M: Machine> {
    pub flags: AreaFlags,
    /// The most rights the area may be given by a change of rights
    /// ([`AddressSpace::protect_range`](crate::AddressSpace::protect_range)):
    /// everything for an area of its own, the mask for a share destination.
    pub max_flags: AreaFlags,
    pub attrs: AreaAttrs,
    pub used: UsedSpace,
    /// The used pages that are copy-on-write (see [`crate::cow`]): always
    /// a part of `used`, mapped without write access whatever the rights,
    /// empty while the area is shared.
    pub cow: UsedSpace,
    pub share: Option<TryArc<ShareInfo<M>>>,
}

impl<M: Machine> AreaState<M> {
    /// The state of a part of this area with rights `flags` and the part's
    /// `used` and `cow` sets: the most rights, attributes and share record
    /// (one more handle; the record's count is the caller's) as this one's.
    pub fn part(&self, flags: AreaFlags, used: UsedSpace, cow: UsedSpace) -> Self {
        AreaState {
            flags,
            max_flags: self.max_flags,
            attrs: self.attrs,
            used,
            cow,
            share: self.share.clone(),
        }
    }
}

/// Where a part of an area lies and what it carries of the whole: what
/// [`Area::derived`] takes.
#[derive(Clone, Copy)]
pub(crate) struct AreaPart {
    /// The part's first page.
    pub base: Page,
    /// Its size in pages.
    pub pages: u64,
    /// The backend's index of its first page.
    pub offset: u64,
    /// Pages of the memory reservation it holds.
    pub reserved: u64,
    /// How far it may grow, in pages.
    pub grow_limit: u64,
}

impl<M: Machine> Area<M> {
    /// The backend's [`object_id`](Backend::object_id), read when the
    /// area was made.
    pub(crate) fn object(&self) -> usize {
        self.object
    }

    pub fn new(
        base: Page,
        pages: u64,
        flags: AreaFlags,
        attrs: AreaAttrs,
        backend: BackendRef<M::Memory, M::Frames>,
        reserved: u64,
        grow_limit: u64,
    ) -> Result<Self> {
        Ok(Self {
            base: AtomicU64::new(base.number()),
            object: backend.object_id(),
            offset: PlainAtomicU64::new(backend.first_index()),
            backend,
            pages: AtomicU64::new(pages),
            reserved: PlainAtomicU64::new(reserved),
            grow_limit: PlainAtomicU64::new(grow_limit),
            state: lock_api::Mutex::new(AreaState {
                flags,
                max_flags: AreaFlags::all(),
                attrs,
                // Room for the first run, so the first fault allocates
                // nothing (later ones reuse freed nodes).
                used: UsedSpace::try_with_capacity(1).ok_or(Error::NoMemory)?,
                cow: UsedSpace::new(),
                share: None,
            }),
        })
    }

    /// The first page (see the type's locking rule).
    pub fn base(&self) -> Page {
        Page::from_number(self.base.load(Ordering::Acquire))
    }

    /// Moves the first page (a grows-down area growing, or undoing it);
    /// the caller holds the tree written and the area's lock.
    pub fn set_base(&self, base: Page) {
        self.base.store(base.number(), Ordering::Release);
    }

    /// Size in pages (see the type's locking rule).
    pub fn pages(&self) -> u64 {
        self.pages.load(Ordering::Acquire)
    }

    /// Pages reserved for the area (see the field).
    pub fn reserved(&self) -> u64 {
        self.reserved.load(Relaxed)
    }

    /// Adds `more` pages to the area's reservation count, its lock held
    /// (every change of the count is made under it, so a load and a store
    /// do: no atomic read-modify-write).
    pub fn add_reserved(&self, more: u64) {
        if more > 0 {
            self.reserved.store(self.reserved() + more, Relaxed);
        }
    }

    /// Takes `less` pages off the area's reservation count, its lock held
    /// (as [`add_reserved`](Self::add_reserved)).
    pub fn sub_reserved(&self, less: u64) {
        if less > 0 {
            self.reserved.store(self.reserved() - less, Relaxed);
        }
    }

    /// One past the last page number.
    pub fn end(&self) -> u64 {
        self.base().number() + self.pages()
    }

    /// Whether page number `n` lies inside the area.
    pub fn contains(&self, n: u64) -> bool {
        n >= self.base().number() && n < self.end()
    }

    /// A snapshot, given the area's locked state.
    pub fn info(&self, st: &AreaState<M>) -> AreaInfo {
        AreaInfo {
            base: self.base().start(),
            pages: self.pages(),
            flags: st.flags,
            attrs: st.attrs,
            backend: self.backend.name(),
            resident: st.used.pages(),
            reserved: self.reserved(),
            shared: st.share.is_some(),
            offset: self.offset(),
            object_id: self.object,
            grow_limit: self.shown_grow_limit(st.flags),
        }
    }

    /// [`AreaInfo::grow_limit`] of the area with flags `flags`: its growth
    /// limit if it grows down, else 0.
    fn shown_grow_limit(&self, flags: AreaFlags) -> u64 {
        if flags.contains(AreaFlags::GROWS_DOWN) {
            self.grow_limit()
        } else {
            0
        }
    }

    /// The most pages the area may reach by growing down (see the field).
    pub fn grow_limit(&self) -> u64 {
        self.grow_limit.load(Relaxed)
    }

    /// The backend's index of the first page (see the field).
    pub fn offset(&self) -> u64 {
        self.offset.load(Relaxed)
    }

    /// Sets the backend's index of the first page; the caller holds the
    /// tree written and the area's lock (or owns the area alone).
    pub fn set_offset(&self, offset: u64) {
        self.offset.store(offset, Relaxed);
    }

    /// The backend's index of `page` (in the area): the key of its frame in
    /// the backend and in a share record.
    pub fn index(&self, page: Page) -> u64 {
        self.offset() + page.pages_since(self.base())
    }

    /// A new area of the same backend over `part`, with the state `state`
    /// makes: the upper part of a split, or an area that moved. (Made in
    /// place, after the backend's handle is cloned: a state made before
    /// it is kept aside and copied in, a copy that stalls on the stores
    /// that just made it.)
    pub fn derived(&self, part: AreaPart, state: impl FnOnce() -> AreaState<M>) -> Self {
        Self {
            base: AtomicU64::new(part.base.number()),
            backend: self.backend.clone(),
            pages: AtomicU64::new(part.pages),
            reserved: PlainAtomicU64::new(part.reserved),
            grow_limit: PlainAtomicU64::new(part.grow_limit),
            offset: PlainAtomicU64::new(part.offset),
            object: self.object,
            state: lock_api::Mutex::new(state()),
        }
    }

    /// The state of an area no one else can reach yet (a part being cut
    /// off, not in its tree): no lock needed.
    pub fn state_mut(&mut self) -> &mut AreaState<M> {
        self.state.get_mut()
    }

    /// Locks an area that is no longer in its tree (nothing to publish).
    pub fn lock_detached(&self) -> AreaGuard<'_, M> {
        AreaGuard {
            summary: None,
            st: self.state.lock(),
        }
    }

    /// The state of an area owned alone (out of the tree, no other
    /// reference), without a lock; its backend and reservation beside it.
    pub fn owned_parts(
        &mut self,
    ) -> (
        &dyn Backend<M::Memory, M::Frames>,
        &PlainAtomicU64,
        &mut AreaState<M>,
    ) {
        (&*self.backend, &self.reserved, self.state.get_mut())
    }
}
