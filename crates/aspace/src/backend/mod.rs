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

use crate::addr::{Frame, Page};
use crate::area::AreaInfo;
use crate::flags::Access;
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
