//! The page-table interface and the x86_64 4-level implementation.

pub mod x86_64;

use crate::addr::{Frame, Page};
use crate::flags::PageFlags;
use crate::memory::{FrameAllocator, PhysMemory};
use crate::Result;

/// A mapping taken out of a page table.
///
/// The old translation may still sit in some TLB, so the frame must not be
/// reused yet: the token is handed to a
/// [`ShootdownBatch`](crate::tlb::ShootdownBatch), which keeps the frame
/// until every TLB that could hold the translation has been flushed.
#[must_use = "an unmapped frame must go through a TLB shootdown before it is released"]
#[derive(Debug, PartialEq, Eq)]
pub struct Unmapped {
    page: Page,
    frame: Frame,
}

impl Unmapped {
    /// Records that `page` no longer maps `frame`. Page-table
    /// implementations create this in [`PageTable::unmap`].
    pub fn new(page: Page, frame: Frame) -> Self {
        Self { page, frame }
    }
    /// The page that was unmapped.
    pub fn page(&self) -> Page {
        self.page
    }
    /// The frame it mapped.
    pub fn frame(&self) -> Frame {
        self.frame
    }
}

/// A page table of one address space, in the machine's format.
///
/// All methods get the physical memory and frame allocator they work on, so
/// one implementation serves the simulator and a real kernel alike.
///
/// # Concurrency
///
/// The table is changed through a shared reference, without a lock around
/// it: several CPUs may map and unmap at once, but never the same page at
/// the same time (the address space changes a page's entry only under its
/// area's lock, or with the whole area tree locked for writing). So the
/// only entries two CPUs may both write are those of intermediate tables,
/// which an implementation installs with
/// [`compare_exchange_u64`](PhysMemory::compare_exchange_u64) and does not
/// free before [`destroy`](Self::destroy).
pub trait PageTable: Send + Sync + Sized {
    /// A new, empty table. `kernel` is the kernel address space's table,
    /// whose kernel-range entries a user table shares (`None` when creating
    /// the kernel's own table).
    fn create<P: PhysMemory, F: FrameAllocator>(
        mem: &P,
        frames: &F,
        kernel: Option<&Self>,
    ) -> Result<Self>;

    /// The root frame (the value for CR3).
    fn root(&self) -> Frame;

    /// Maps the unmapped `page` to `frame` with `flags`. A new mapping
    /// replaces no translation, so it needs no TLB flush. Fails with
    /// `NoMemory` when an intermediate table cannot be allocated, leaving the
    /// table as it was for `page`.
    fn map<P: PhysMemory, F: FrameAllocator>(
        &self,
        mem: &P,
        frames: &F,
        page: Page,
        frame: Frame,
        flags: PageFlags,
    ) -> Result<()>;

    /// Removes the mapping of `page`, if any.
    fn unmap<P: PhysMemory>(&self, mem: &P, page: Page) -> Option<Unmapped>;

    /// The frame and rights `page` maps, if any.
    fn translate<P: PhysMemory>(&self, mem: &P, page: Page) -> Option<(Frame, PageFlags)>;

    /// Number of frames the table itself occupies (root and intermediate
    /// tables).
    fn table_frames(&self) -> u64;

    /// Frees every table frame of the user range. The caller guarantees no
    /// CPU uses the table any more and no user mapping is left.
    fn destroy<P: PhysMemory, F: FrameAllocator>(self, mem: &P, frames: &F);
}
