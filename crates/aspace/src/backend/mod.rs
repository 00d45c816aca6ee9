//! Memory backends: what fills an area's pages on a fault and what happens
//! to a frame when its page is unmapped.
//!
//! The core owns the page table and the used space; a backend only supplies
//! frames and says whether an unmapped frame's reference is to be dropped.

pub mod anon;

use crate::addr::{Frame, Page};
use crate::area::AreaInfo;
use crate::flags::Access;
use crate::machine::Machine;
use crate::Result;

pub use anon::AnonBackend;

/// A source of pages for areas (HelenOS `mem_backend_t`).
pub trait Backend<M: Machine>: Send + Sync {
    /// Short name for listings (`anon`, `elf`, `phys`).
    fn name(&self) -> &'static str;

    /// Supplies the frame that `page` of `area` maps after a fault with
    /// `access`. The frame comes with one reference owned by the new mapping.
    /// Errors make the fault fail (e.g. [`NoMemory`](crate::Error::NoMemory)).
    fn page_fault(&self, machine: &M, area: &AreaInfo, page: Page, access: Access)
        -> Result<Frame>;

    /// Called when `page`, mapping `frame`, leaves the page table. Returns
    /// whether the mapping's frame reference is to be released once the TLB
    /// shootdown is done.
    fn frame_free(&self, machine: &M, area: &AreaInfo, page: Page, frame: Frame) -> bool;

    /// Whether areas of this backend may change size.
    fn can_resize(&self) -> bool {
        true
    }

    /// Whether areas of this backend may change their rights in place.
    fn can_change_flags(&self) -> bool {
        false
    }
}
