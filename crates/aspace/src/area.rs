//! Address-space areas: a run of pages with one set of rights and one backend.

use alloc::sync::Arc;
use core::ops::{Deref, DerefMut};

use crate::addr::Page;
pub use crate::backend::AreaInfo;
use crate::backend::Backend;
use crate::flags::{AreaAttrs, AreaFlags};
use crate::internals::used_space::UsedSpace;
use crate::machine::Machine;
use crate::share::ShareInfo;
use crate::sync::atomic::{AtomicU64, Ordering};

/// An area inside an address space (HelenOS `as_area_t`).
///
/// `backend` and `grow_limit` never change. `base` (page number; only a
/// [grows-down](AreaFlags::GROWS_DOWN) area's moves) and `pages` change
/// only with both the address space's area-tree lock (written) and the
/// area's lock held, so either lock is enough to read them; everything else
/// is under the area's lock.
pub(crate) struct Area<M: Machine> {
    base: AtomicU64,
    pub backend: Arc<dyn Backend<M::Memory, M::Frames>>,
    pub pages: AtomicU64,
    /// The most pages a grows-down area may reach by growing.
    pub grow_limit: u64,
    state: lock_api::Mutex<M::Lock, AreaState<M>>,
}

/// What lookups read of an area without its lock. It lives in the area
/// tree beside the area (so a lookup touches no memory of the area itself)
/// and is written when the area's lock guard drops, which happens with the
/// tree locked: the summary cannot move meanwhile.
///
/// Rights, attributes, share state and resident count are packed into one
/// word, so a lookup reads them at once and the tree's entries stay small
/// (32 bytes with the area and the backend's name).
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
/// Bits 17–63: the resident count (saturating; 2^47 pages is more than a
/// 57-bit address space holds).
const RESIDENT_SHIFT: u32 = 17;
const _: () = assert!(AreaFlags::all().bits() <= 0xff && AreaAttrs::all().bits() <= 0xff);

impl Summary {
    fn pack<M: Machine>(st: &AreaState<M>) -> u64 {
        Self::pack_parts(st.flags, st.attrs, st.share.is_some(), st.used.pages())
    }

    fn pack_parts(flags: AreaFlags, attrs: AreaAttrs, shared: bool, resident: u64) -> u64 {
        let resident = resident.min(u64::MAX >> RESIDENT_SHIFT);
        (u64::from(flags.bits() & 0xff) << RIGHTS_SHIFT)
            | (u64::from(attrs.bits() & 0xff) << ATTRS_SHIFT)
            | if shared { SHARED_BIT } else { 0 }
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

    fn publish<M: Machine>(&self, st: &AreaState<M>) {
        self.word.store(Self::pack(st), Ordering::Release);
    }
}

/// An entry of the area tree: the area and its summary.
pub(crate) struct AreaEntry<M: Machine> {
    pub area: Arc<Area<M>>,
    pub summary: Summary,
}

impl<M: Machine> AreaEntry<M> {
    /// A slot for a new area: nothing resident, not shared.
    pub fn new(
        base: Page,
        pages: u64,
        flags: AreaFlags,
        attrs: AreaAttrs,
        backend: Arc<dyn Backend<M::Memory, M::Frames>>,
    ) -> Self {
        let summary = Summary {
            word: AtomicU64::new(Summary::pack_parts(flags, attrs, false, 0)),
            backend: backend.name(),
        };
        Self {
            area: Arc::new(Area::new(base, pages, flags, attrs, backend)),
            summary,
        }
    }

    /// [`new`](Self::new) for an area that may grow down to `grow_limit`
    /// pages.
    pub fn with_grow_limit(mut self, grow_limit: u64) -> Self {
        if let Some(area) = Arc::get_mut(&mut self.area) {
            area.grow_limit = grow_limit;
        }
        self
    }

    /// Locks the area; the guard publishes the summary when dropped.
    pub fn lock(&self) -> AreaGuard<'_, M> {
        AreaGuard {
            summary: Some(&self.summary),
            st: self.area.state.lock(),
        }
    }

    /// A snapshot of the area `[start, end)` (page numbers, from the tree)
    /// without its lock: while the area changes, fields may come from
    /// moments a few instructions apart.
    pub fn snapshot(&self, start: u64, end: u64) -> AreaInfo {
        let w = self.summary.word.load(Ordering::Acquire);
        AreaInfo {
            base: Page::from_number(start).start(),
            pages: end - start,
            flags: AreaFlags::from_bits_truncate((w >> RIGHTS_SHIFT) as u32 & 0xff),
            attrs: AreaAttrs::from_bits_truncate((w >> ATTRS_SHIFT) as u32 & 0xff),
            backend: self.summary.backend,
            resident: w >> RESIDENT_SHIFT,
            shared: w & SHARED_BIT != 0,
        }
    }
}

/// The locked state of an area; publishes the area's summary when dropped
/// (if it was locked through its slot).
pub(crate) struct AreaGuard<'a, M: Machine> {
    summary: Option<&'a Summary>,
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
        if let Some(summary) = self.summary {
            summary.publish(&self.st);
        }
    }
}

/// The part of an area its lock protects.
pub(crate) struct AreaState<M: Machine> {
    pub flags: AreaFlags,
    pub attrs: AreaAttrs,
    pub used: UsedSpace,
    pub share: Option<Arc<ShareInfo<M>>>,
}

impl<M: Machine> Area<M> {
    pub fn new(
        base: Page,
        pages: u64,
        flags: AreaFlags,
        attrs: AreaAttrs,
        backend: Arc<dyn Backend<M::Memory, M::Frames>>,
    ) -> Self {
        Self {
            base: AtomicU64::new(base.number()),
            backend,
            pages: AtomicU64::new(pages),
            grow_limit: pages,
            state: lock_api::Mutex::new(AreaState {
                flags,
                attrs,
                // Room for the first run, so the first fault allocates
                // nothing (later ones reuse freed nodes).
                used: UsedSpace::with_capacity(1),
                share: None,
            }),
        }
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
            shared: st.share.is_some(),
        }
    }

    /// Locks an area that is no longer in its tree (nothing to publish).
    pub fn lock_detached(&self) -> AreaGuard<'_, M> {
        AreaGuard {
            summary: None,
            st: self.state.lock(),
        }
    }
}
