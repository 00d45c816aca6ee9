//! Memory backends: what fills an area's pages on a fault.
//!
//! The core owns the page table, the used space and the share records; a
//! backend only supplies frames. Frames of a *reference-counted* backend
//! (anonymous memory, ELF images) carry one reference per mapping and one
//! per share record, and are freed by the last release; frames of other
//! backends (device memory) are never counted nor freed.

pub mod anon;
pub mod elf;
pub mod phys;

use core::fmt;

use crate::addr::{Frame, Page, VirtAddr, PAGE_SIZE};
use crate::flags::{Access, AreaAttrs, AreaFlags};
use crate::machine::Machine;
use crate::Result;

pub use anon::AnonBackend;
pub use elf::ElfBackend;
pub use phys::PhysBackend;

/// A source of pages for areas (HelenOS `mem_backend_t`).
pub trait Backend<M: Machine>: Send + Sync {
    /// Short name for listings (`anon`, `elf`, `phys`).
    fn name(&self) -> &'static str;

    /// Supplies the frame that `page` of `area` is to map after a fault with
    /// `access`. For a [reference-counted](Backend::refcounted) backend the
    /// frame comes with one reference, owned by the new mapping. Errors make
    /// the fault fail (e.g. [`NoMemory`](crate::Error::NoMemory)).
    fn page_fault(&self, machine: &M, area: &AreaInfo, page: Page, access: Access)
        -> Result<Frame>;

    /// A frame this backend would supply for *any* page of an area, made
    /// ready before the fault handler takes the area's lock, so the slow
    /// part of a fault (anonymous memory: zeroing) runs outside it. Comes
    /// with one reference, like [`page_fault`](Backend::page_fault)'s; the
    /// handler releases it if the page turns out to be mapped already.
    /// `None` (the default, and when memory is short): the frame depends on
    /// the page, and `page_fault` supplies it under the lock.
    fn prepare(&self, machine: &M) -> Option<Frame> {
        let _ = machine;
        None
    }

    /// Whether frames of this backend are reference counted by the frame
    /// allocator (released when unmapped) or borrowed (device memory).
    fn refcounted(&self) -> bool {
        true
    }

    /// Whether areas of this backend may change size.
    fn can_resize(&self) -> bool {
        true
    }

    /// Whether areas of this backend may change their rights in place.
    fn can_change_flags(&self) -> bool {
        false
    }

    /// Whether areas of this backend may be shared.
    fn can_share(&self) -> bool {
        true
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
