//! The x86_64 4-level page table (PML4, PDPT, PD, PT), 4 KiB pages.
//!
//! Works on any [`PhysMemory`]: the simulator's array or a real kernel's
//! direct map. Intermediate entries are created present, writable and
//! user-accessible; the rights of a page are decided by its leaf entry alone.
//! Entries of the kernel half (PML4 slots 256..512) are copied from the
//! kernel's table into every user table and never freed with it; a kernel
//! that maps kernel memory after creating user tables must preallocate its
//! PML4 slots first. Intermediate tables stay when their last page is
//! unmapped (so re-mapping never allocates) and are freed by
//! [`destroy`](PageTable::destroy).
//!
//! Of [`AreaFlags`](crate::AreaFlags), x86_64 expresses read-only,
//! read-write and read-execute exactly; it cannot deny loads of a present
//! page, so write-only, execute-only and no-rights pages read back (and
//! load) as readable. Non-cacheable memory sets PCD.

use crate::addr::{Frame, Page, PhysAddr};
use crate::flags::PageFlags;
use crate::memory::{FrameAllocator, PhysMemory};
use crate::paging::radix::{Radix, TableEntry};
use crate::paging::{Layout, PageTable, Rewritten, Unmapped};
use crate::Result;

/// Entry bit: present.
pub const PTE_PRESENT: u64 = 1 << 0;
/// Entry bit: writable.
pub const PTE_WRITABLE: u64 = 1 << 1;
/// Entry bit: user accessible.
pub const PTE_USER: u64 = 1 << 2;
/// Entry bit: page-level write-through.
pub const PTE_WRITE_THROUGH: u64 = 1 << 3;
/// Entry bit: page-level cache disable.
pub const PTE_NO_CACHE: u64 = 1 << 4;
/// Entry bit: accessed (set by the MMU).
pub const PTE_ACCESSED: u64 = 1 << 5;
/// Entry bit: dirty (set by the MMU).
pub const PTE_DIRTY: u64 = 1 << 6;
/// Entry bit: huge page (PDPT/PD level); never set by this implementation.
pub const PTE_HUGE: u64 = 1 << 7;
/// Entry bit: global translation.
pub const PTE_GLOBAL: u64 = 1 << 8;
/// Software bit (ignored by the MMU): in an entry with [`PTE_PRESENT`]
/// clear, the page is mapped without any right. x86_64 cannot deny loads
/// of a present page, so a page of an area whose rights were all taken away
/// (Linux `PROT_NONE`) keeps its frame in a not-present entry: every access
/// faults, and [`PageTable::translate`] still reports the page mapped.
pub const PTE_SW_MAPPED: u64 = 1 << 9;
/// Entry bit: no execute.
pub const PTE_NO_EXECUTE: u64 = 1 << 63;
/// Mask of the frame address in an entry.
pub const PTE_ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Number of entries in each table.
pub const ENTRIES: u64 = super::radix::ENTRIES;
/// First PML4 slot of the kernel half.
pub const KERNEL_PML4_START: u64 = 256;

/// Index into the table of `level` (4 = PML4 .. 1 = PT) for `page`.
pub const fn table_index(page: Page, level: u32) -> u64 {
    (page.number() >> (9 * (level - 1))) & (ENTRIES - 1)
}

/// Encodes a leaf entry.
#[inline]
pub fn encode_leaf(frame: Frame, flags: PageFlags) -> u64 {
    let mut e = frame.start().as_u64() & PTE_ADDR_MASK;
    let rights = PageFlags::READ | PageFlags::WRITE | PageFlags::EXEC;
    if flags.contains(PageFlags::PRESENT) {
        e |= if flags.intersects(rights) {
            PTE_PRESENT
        } else {
            PTE_SW_MAPPED
        };
    }
    if flags.contains(PageFlags::WRITE) {
        e |= PTE_WRITABLE;
    }
    if flags.contains(PageFlags::USER) {
        e |= PTE_USER;
    }
    if !flags.contains(PageFlags::EXEC) {
        e |= PTE_NO_EXECUTE;
    }
    if !flags.contains(PageFlags::CACHEABLE) {
        e |= PTE_NO_CACHE;
    }
    if flags.contains(PageFlags::GLOBAL) {
        e |= PTE_GLOBAL;
    }
    e
}

/// Decodes a leaf entry (x86_64 cannot deny reads of a present page; a
/// page mapped with no right at all is not present, see [`PTE_SW_MAPPED`]).
#[inline]
pub fn decode_leaf(e: u64) -> Option<(Frame, PageFlags)> {
    if e & PTE_PRESENT == 0 {
        if e & PTE_SW_MAPPED == 0 {
            return None;
        }
        let mut f = PageFlags::PRESENT;
        if e & PTE_USER != 0 {
            f |= PageFlags::USER;
        }
        if e & PTE_NO_CACHE == 0 {
            f |= PageFlags::CACHEABLE;
        }
        return Some((PhysAddr::new(e & PTE_ADDR_MASK).frame(), f));
    }
    let mut f = PageFlags::PRESENT | PageFlags::READ;
    if e & PTE_WRITABLE != 0 {
        f |= PageFlags::WRITE;
    }
    if e & PTE_USER != 0 {
        f |= PageFlags::USER;
    }
    if e & PTE_NO_EXECUTE == 0 {
        f |= PageFlags::EXEC;
    }
    if e & PTE_NO_CACHE == 0 {
        f |= PageFlags::CACHEABLE;
    }
    if e & PTE_GLOBAL != 0 {
        f |= PageFlags::GLOBAL;
    }
    Some((PhysAddr::new(e & PTE_ADDR_MASK).frame(), f))
}

const TABLE_ENTRY: u64 = PTE_PRESENT | PTE_WRITABLE | PTE_USER;

/// The intermediate entries of the 4-level table.
#[derive(Debug)]
pub(crate) enum Pml {}

impl TableEntry for Pml {
    #[inline]
    fn is_table(e: u64) -> bool {
        e & PTE_PRESENT != 0
    }
    #[inline]
    fn table_entry(frame: Frame) -> u64 {
        frame.start().as_u64() | TABLE_ENTRY
    }
    #[inline]
    fn next_table(e: u64) -> Frame {
        PhysAddr::new(e & PTE_ADDR_MASK).frame()
    }
}

/// An x86_64 4-level page table rooted at a PML4 frame.
///
/// Changed without a lock (see [`PageTable`]'s concurrency rules): a missing
/// intermediate table is zeroed first and then installed with one
/// compare-and-swap; a CPU that loses the race frees its own, which nothing
/// ever reached.
#[derive(Debug)]
pub struct X86_64PageTable {
    tree: Radix<Pml>,
    kernel: bool,
}

#[inline]
fn leaf_frame(e: u64) -> Option<Frame> {
    decode_leaf(e).map(|(f, _)| f)
}

impl PageTable for X86_64PageTable {
    type Mode = ();

    fn layout((): ()) -> Layout {
        Layout::X86_64
    }

    fn create<P: PhysMemory, F: FrameAllocator>(
        mem: &P,
        frames: &F,
        kernel: Option<&Self>,
        (): (),
    ) -> Result<Self> {
        Ok(Self {
            tree: Radix::new_sharing(
                mem,
                frames,
                4,
                kernel.map(|k| &k.tree),
                KERNEL_PML4_START..ENTRIES,
            )?,
            kernel: kernel.is_none(),
        })
    }

    fn root(&self) -> Frame {
        self.tree.root()
    }

    fn map<P: PhysMemory, F: FrameAllocator>(
        &self,
        mem: &P,
        frames: &F,
        page: Page,
        frame: Frame,
        flags: PageFlags,
    ) -> Result<()> {
        let entry = encode_leaf(frame, flags | PageFlags::PRESENT);
        self.tree.set_leaf(mem, frames, page, entry, |e| {
            e & (PTE_PRESENT | PTE_SW_MAPPED) != 0
        })
    }

    fn unmap<P: PhysMemory>(&self, mem: &P, page: Page) -> Option<Unmapped> {
        self.tree.take_leaf(mem, page, leaf_frame)
    }

    fn translate<P: PhysMemory>(&self, mem: &P, page: Page) -> Option<(Frame, PageFlags)> {
        decode_leaf(self.tree.read_leaf(mem, page)?)
    }

    /// One walk per leaf table.
    fn unmap_run<P: PhysMemory>(
        &self,
        mem: &P,
        first: Page,
        count: u64,
        out: &mut dyn FnMut(Unmapped),
    ) {
        self.tree.unmap_run(mem, first, count, leaf_frame, out);
    }

    /// One walk per leaf table; the accessed and dirty bits stay. The new
    /// rights are encoded once: an entry is its frame's bits and theirs.
    fn protect_run<P: PhysMemory, F: FrameAllocator>(
        &self,
        mem: &P,
        _frames: &F,
        first: Page,
        count: u64,
        flags: PageFlags,
    ) -> Rewritten {
        let rights = encode_leaf(Frame::from_number(0), flags | PageFlags::PRESENT);
        let keep = match rights & PTE_PRESENT != 0 {
            true => PTE_ADDR_MASK | PTE_ACCESSED | PTE_DIRTY,
            false => PTE_ADDR_MASK,
        };
        self.tree
            .protect_run(mem, first, count, leaf_frame, |e| (e & keep) | rights)
    }

    /// One walk per pair of leaf tables; entries move as they are.
    fn move_run<P: PhysMemory, F: FrameAllocator>(
        &self,
        mem: &P,
        frames: &F,
        from: Page,
        to: Page,
        count: u64,
    ) -> Result<()> {
        self.tree.move_run(mem, frames, from, to, count, &|e| {
            e & (PTE_PRESENT | PTE_SW_MAPPED) != 0
        })
    }

    fn table_frames(&self) -> u64 {
        self.tree.table_frames()
    }

    fn destroy<P: PhysMemory, F: FrameAllocator>(self, mem: &P, frames: &F) {
        // The kernel's own table also owns the kernel half; a user table only
        // borrows it.
        let owned = if self.kernel {
            0..ENTRIES
        } else {
            0..KERNEL_PML4_START
        };
        self.tree.destroy(mem, frames, owned);
    }
}
