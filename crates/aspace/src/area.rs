//! Address-space areas: a run of pages with one set of rights and one backend.

use alloc::sync::Arc;
use core::fmt;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU64, Ordering};

use crate::addr::{Page, VirtAddr, PAGE_SIZE};
use crate::backend::Backend;
use crate::flags::{AreaAttrs, AreaFlags};
use crate::machine::Machine;
use crate::share::ShareInfo;
use crate::summary::Summary;
use crate::used_space::UsedSpace;

/// An area inside an address space (HelenOS `as_area_t`).
///
/// `base` and `backend` never change. `pages` changes only with both the
/// address space's area-tree lock (written) and the area's lock held, so
/// either lock is enough to read it; everything else is under the area's
/// lock.
pub(crate) struct Area<M: Machine> {
    pub base: Page,
    pub backend: Arc<dyn Backend<M>>,
    pub pages: AtomicU64,
    state: lock_api::Mutex<M::Lock, AreaState<M>>,
}

/// An entry of the area tree: the area, and its backend's name (so a
/// snapshot touches no memory of the area). The area's summary is the
/// entry's tag in the tree (see [`crate::summary`]).
pub(crate) struct Slot<M: Machine> {
    pub area: Arc<Area<M>>,
    pub backend: &'static str,
}

impl<M: Machine> Slot<M> {
    /// A slot for a new area.
    pub fn new(
        base: Page,
        pages: u64,
        flags: AreaFlags,
        attrs: AreaAttrs,
        backend: Arc<dyn Backend<M>>,
    ) -> Self {
        Self {
            backend: backend.name(),
            area: Arc::new(Area::new(base, pages, flags, attrs, backend)),
        }
    }
}

/// An entry of the area tree as a lookup under the tree's lock returns it:
/// the slot and the summary word beside it.
pub(crate) struct SlotRef<'t, M: Machine> {
    slot: &'t Slot<M>,
    summary: &'t AtomicU64,
}

impl<M: Machine> Clone for SlotRef<'_, M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M: Machine> Copy for SlotRef<'_, M> {}

impl<M: Machine> Deref for SlotRef<'_, M> {
    type Target = Slot<M>;
    fn deref(&self) -> &Slot<M> {
        self.slot
    }
}

impl<'t, M: Machine> SlotRef<'t, M> {
    pub fn new(slot: &'t Slot<M>, summary: &'t AtomicU64) -> Self {
        SlotRef { slot, summary }
    }

    /// Locks the area; the guard publishes the summary when dropped.
    pub fn lock(self) -> AreaGuard<'t, M> {
        AreaGuard {
            summary: Some(self.summary),
            st: self.slot.area.state.lock(),
        }
    }

    /// The summary, read without the area's lock.
    pub fn summary(&self) -> Summary {
        Summary::load(self.summary)
    }

    /// A snapshot of the area `[start, end)` (page numbers, from the tree)
    /// without its lock: while the area changes, fields may come from
    /// moments a few instructions apart.
    pub fn snapshot(&self, start: u64, end: u64) -> AreaInfo {
        self.summary().info(start, end, self.slot.backend)
    }
}

/// The locked state of an area; publishes the area's summary when dropped
/// (if it was locked through its slot).
pub(crate) struct AreaGuard<'a, M: Machine> {
    summary: Option<&'a AtomicU64>,
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
        if let Some(word) = self.summary {
            Summary::publish(word, &self.st);
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
        backend: Arc<dyn Backend<M>>,
    ) -> Self {
        Self {
            base,
            backend,
            pages: AtomicU64::new(pages),
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

    /// Size in pages (see the type's locking rule).
    pub fn pages(&self) -> u64 {
        self.pages.load(Ordering::Acquire)
    }

    /// One past the last page number.
    pub fn end(&self) -> u64 {
        self.base.number() + self.pages()
    }

    /// Whether page number `n` lies inside the area.
    pub fn contains(&self, n: u64) -> bool {
        n >= self.base.number() && n < self.end()
    }

    /// A snapshot, given the area's locked state.
    pub fn info(&self, st: &AreaState<M>) -> AreaInfo {
        AreaInfo {
            base: self.base.start(),
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

/// A snapshot of one area, for backends, listings and callers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AreaInfo {
    /// First address.
    pub base: VirtAddr,
    /// Size in pages.
    pub pages: u64,
    /// Access rights.
    pub flags: AreaFlags,
    /// Attributes.
    pub attrs: AreaAttrs,
    /// The backend's name.
    pub backend: &'static str,
    /// Pages mapped now.
    pub resident: u64,
    /// Whether the area shares its pages with other areas.
    pub shared: bool,
}

impl AreaInfo {
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.pages * PAGE_SIZE
    }
    /// One past the last address.
    pub fn end(&self) -> VirtAddr {
        VirtAddr::new(self.base.as_u64() + self.size())
    }
    /// Index of `page` within the area.
    pub fn page_index(&self, page: Page) -> u64 {
        page.pages_since(self.base.page())
    }
    /// `rwx` text in the manner of `/proc/PID/maps`, `p` for private, `s`
    /// for shared.
    pub fn rights(&self) -> [u8; 4] {
        let f = self.flags;
        [
            if f.contains(AreaFlags::READ) {
                b'r'
            } else {
                b'-'
            },
            if f.contains(AreaFlags::WRITE) {
                b'w'
            } else {
                b'-'
            },
            if f.contains(AreaFlags::EXEC) {
                b'x'
            } else {
                b'-'
            },
            if self.shared { b's' } else { b'p' },
        ]
    }
}

impl fmt::Display for AreaInfo {
    /// One line of an address-space map:
    /// `start-end rights backend resident/pages pages`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.rights();
        write!(
            f,
            "{:016x}-{:016x} {}{}{}{} {:<5} {:>6}/{:<6} pages{}",
            self.base.as_u64(),
            self.end().as_u64(),
            r[0] as char,
            r[1] as char,
            r[2] as char,
            r[3] as char,
            self.backend,
            self.resident,
            self.pages,
            if self.attrs.contains(AreaAttrs::PARTIAL) {
                " partial"
            } else {
                ""
            }
        )
    }
}
