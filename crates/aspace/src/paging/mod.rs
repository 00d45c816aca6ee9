//! The page-table interface and its formats: x86_64 (4 levels), RISC-V
//! (Sv39, Sv48) and AArch64 (4 KiB granule, 48-bit, 4 levels).

pub mod aarch64;
mod radix;
pub mod riscv64;
pub mod x86_64;

use crate::addr::{Frame, Page, PageRange};
use crate::flags::PageFlags;
use crate::memory::{FrameAllocator, PhysMemory};
use crate::Result;

/// Where user and kernel areas may live: a property of the page-table
/// format (and its mode), which decides how many address bits translate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// One past the highest user address (x86_64: `0x0000_8000_0000_0000`).
    pub user_end: u64,
    /// Lowest kernel address (x86_64: `0xffff_8000_0000_0000`); the kernel
    /// range runs from here to the top of the address space.
    pub kernel_start: u64,
}

impl Layout {
    /// The canonical x86_64 split with 48-bit addresses.
    pub const X86_64: Layout = Layout {
        user_end: 0x0000_8000_0000_0000,
        kernel_start: 0xffff_8000_0000_0000,
    };
    /// RISC-V Sv39: 39-bit addresses, 256 GiB of user space.
    pub const SV39: Layout = Layout {
        user_end: 0x0000_0040_0000_0000,
        kernel_start: 0xffff_ffc0_0000_0000,
    };
    /// RISC-V Sv48: 48-bit addresses, the same split as x86_64.
    pub const SV48: Layout = Layout::X86_64;
    /// AArch64 with 48-bit addresses in both halves: user space is all of
    /// `TTBR0_EL1`'s range, the kernel all of `TTBR1_EL1`'s.
    pub const AARCH64: Layout = Layout {
        user_end: 0x0001_0000_0000_0000,
        kernel_start: 0xffff_0000_0000_0000,
    };
}

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

/// The leaf entries a [`PageTable::protect_run`] gave other rights: how
/// many, and the least run of pages that holds them all.
///
/// Those pages may still sit in TLBs with their old rights, so the token
/// goes to a [`ShootdownBatch`](crate::tlb::ShootdownBatch)
/// ([`defer_rewritten`](crate::tlb::ShootdownBatch::defer_rewritten)).
#[must_use = "entries given other rights must go through a TLB shootdown"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rewritten {
    count: u64,
    low: u64,
    high: u64,
}

impl Rewritten {
    /// No entry rewritten.
    pub const fn new() -> Self {
        Self {
            count: 0,
            low: u64::MAX,
            high: 0,
        }
    }
    /// Records that the entry of `page` was rewritten.
    #[inline]
    pub fn note(&mut self, page: Page) {
        let n = page.number();
        self.count += 1;
        self.low = self.low.min(n);
        self.high = self.high.max(n + 1);
    }
    /// Both tokens' entries in one.
    pub fn join(self, other: Rewritten) -> Rewritten {
        Rewritten {
            count: self.count + other.count,
            low: self.low.min(other.low),
            high: self.high.max(other.high),
        }
    }
    /// How many entries were rewritten.
    pub fn count(&self) -> u64 {
        self.count
    }
    /// The least run of pages holding every rewritten entry; `None` if
    /// there is none.
    pub fn span(&self) -> Option<PageRange> {
        (self.count > 0).then(|| PageRange::new(Page::from_number(self.low), self.high - self.low))
    }
}

impl Default for Rewritten {
    fn default() -> Self {
        Self::new()
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
    /// A variant of the format chosen at run time (RISC-V: Sv39 or Sv48);
    /// `()` for a format that has one.
    type Mode: Copy + Default + PartialEq + core::fmt::Debug + Send + Sync + 'static;

    /// The user/kernel split of the format in `mode`.
    fn layout(mode: Self::Mode) -> Layout;

    /// A new, empty table. `kernel` is the kernel address space's table,
    /// whose kernel-range entries a user table shares (`None` when creating
    /// the kernel's own table). `mode` is the format's variant; a user
    /// table takes its kernel table's, which `mode` must equal.
    fn create<P: PhysMemory, F: FrameAllocator>(
        mem: &P,
        frames: &F,
        kernel: Option<&Self>,
        mode: Self::Mode,
    ) -> Result<Self>;

    /// The root frame (the value for CR3, `satp`'s PPN, `TTBR0_EL1`).
    fn root(&self) -> Frame;

    /// Maps the unmapped `page` to `frame` with `flags`. A new mapping
    /// replaces no translation, so it needs no TLB flush. The core never
    /// maps over a valid entry (another frame for a page is unmapped, shot
    /// down and mapped again: AArch64's break-before-make); only rights
    /// change in place, through [`protect_run`](Self::protect_run). Fails with
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

    /// Removes the mappings of the `count` pages from `first`, handing each
    /// one removed to `out` in page order: [`unmap`](Self::unmap) page by
    /// page, which a format may do walking to each leaf table once.
    fn unmap_run<P: PhysMemory>(
        &self,
        mem: &P,
        first: Page,
        count: u64,
        out: &mut dyn FnMut(Unmapped),
    ) {
        for i in 0..count {
            if let Some(u) = self.unmap(mem, first.add(i)) {
                out(u);
            }
        }
    }

    /// Gives each mapped page among the `count` pages from `first` the
    /// rights `flags` in place, its frame kept (and, where the format has
    /// them, its accessed and dirty bits); returns which entries changed.
    /// TLBs may still hold the old rights: the caller hands the result to
    /// a [`ShootdownBatch`](crate::tlb::ShootdownBatch). Only rights
    /// change, which needs no break-before-make on any of the formats
    /// (AArch64 requires it for a change of output address, memory type or
    /// block size). By default [`translate`](Self::translate),
    /// [`unmap`](Self::unmap) and [`map`](Self::map) page by page
    /// (allocating nothing: the tables are there); a format may rewrite
    /// each leaf table's entries in one walk (Linux's `change_pte_range`).
    fn protect_run<P: PhysMemory, F: FrameAllocator>(
        &self,
        mem: &P,
        frames: &F,
        first: Page,
        count: u64,
        flags: PageFlags,
    ) -> Rewritten {
        let mut rewritten = Rewritten::new();
        for i in 0..count {
            let page = first.add(i);
            let Some((frame, old)) = self.translate(mem, page) else {
                continue;
            };
            if flags == old {
                continue;
            }
            let _ = self.unmap(mem, page);
            let mapped = self.map(mem, frames, page, frame, flags);
            debug_assert!(mapped.is_ok(), "mapping into a kept table");
            rewritten.note(page);
        }
        rewritten
    }

    /// Moves the mappings of the `count` pages from `from` to the pages
    /// from `to` (all unmapped; the ranges do not overlap), entries as they
    /// are: each mapped page's frame is mapped at its new place and its old
    /// entry cleared. The old translations may
    /// still sit in TLBs: the caller shoots the old range down (the frames
    /// stay in use, so that may come after). [`translate`](Self::translate),
    /// [`map`](Self::map) and [`unmap`](Self::unmap) page by page, which a
    /// format may do walking to each leaf table once (Linux's
    /// `move_ptes`). `NoMemory` when a table for the target cannot be
    /// allocated: every page moved is moved back first (no allocation: its
    /// old tables are there), but a CPU may have reached a target page
    /// meanwhile, so the caller flushes the target range.
    fn move_run<P: PhysMemory, F: FrameAllocator>(
        &self,
        mem: &P,
        frames: &F,
        from: Page,
        to: Page,
        count: u64,
    ) -> Result<()> {
        for i in 0..count {
            let Some((frame, flags)) = self.translate(mem, from.add(i)) else {
                continue;
            };
            if let Err(e) = self.map(mem, frames, to.add(i), frame, flags) {
                // Back: the old tables are there, so this allocates nothing.
                let _ = self.move_run(mem, frames, to, from, i);
                return Err(e);
            }
            let _ = self.unmap(mem, from.add(i));
        }
        Ok(())
    }

    /// Number of frames the table itself occupies (root and intermediate
    /// tables).
    fn table_frames(&self) -> u64;

    /// Frees every table frame of the user range. The caller guarantees no
    /// CPU uses the table any more and no user mapping is left.
    fn destroy<P: PhysMemory, F: FrameAllocator>(self, mem: &P, frames: &F);
}
