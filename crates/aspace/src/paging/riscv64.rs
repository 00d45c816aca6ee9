//! RISC-V page tables: Sv39 (3 levels, 39-bit addresses) and Sv48 (4
//! levels, 48-bit), 4 KiB pages, chosen at run time by [`RiscvMode`].
//!
//! # Entries
//!
//! A valid entry (V) with R, W and X all clear points to the next table;
//! any of them set makes it a leaf. Intermediate entries are written as
//! `V` and the table's PPN only (A, D and U are reserved there and stay
//! clear; no G, so nothing is global by way of a pointer). Leaves get
//! [`PTE_A`] and [`PTE_D`] set when mapped: an implementation without
//! hardware A/D updating (Svade) raises a page fault on an access with A
//! clear or a store with D clear, and the core has no use for the bits.
//!
//! # What the format can express of [`AreaFlags`](crate::AreaFlags)
//!
//! - Read, execute-only (X alone: loads fault unless `sstatus.MXR`),
//!   read-execute, read-write: exactly.
//! - Write-only: not expressible, since W without R is reserved. A page of
//!   a write-only area is mapped R+W, so once it is resident loads from it
//!   succeed (as on x86_64); the fault handler still refuses a load that
//!   faults.
//! - No rights at all (an area whose rights were all taken away keeps its
//!   pages): V clear, the frame kept and [`PTE_SW_MAPPED`] set. Hardware
//!   ignores every other bit of an entry with V clear, so any access
//!   faults, and [`PageTable::translate`] still reports the page mapped.
//! - Cacheability: the base architecture takes it from the physical
//!   memory attributes of the address, not from the entry (the Svpbmt
//!   extension's PBMT field is not used, since writing it on a hart without
//!   Svpbmt is reserved). A non-cacheable mapping is remembered in the
//!   software bit [`PTE_SW_NO_CACHE`] only.
//! - Write and execute together: the core refuses it before a page table
//!   sees it; the format could express it.
//!
//! # Kernel half and ASIDs
//!
//! As on x86_64, the root slots 256..512 (addresses with bit 38 (Sv39) or
//! 47 (Sv48) set) are copied from the kernel's table into every user table
//! and are owned by the kernel's; a kernel that maps kernel memory after
//! creating user tables must fill those root slots first (a new root slot
//! would not reach the copies). [`satp`] builds the register value with a
//! 16-bit ASID; `sfence.vma` carries out the core's invalidations:
//! [`Pages`](crate::Invalidation::Pages) as one `sfence.vma va, asid` per
//! page (`sfence.vma va, x0` for the kernel's global pages),
//! [`Asid`](crate::Invalidation::Asid) as `sfence.vma x0, asid` and
//! [`All`](crate::Invalidation::All) as `sfence.vma x0, x0`.

use crate::addr::{Frame, Page};
use crate::flags::PageFlags;
use crate::machine::Asid;
use crate::memory::{FrameAllocator, PhysMemory};
use crate::paging::radix::{Radix, TableEntry, ENTRIES};
use crate::paging::{Layout, PageTable, Rewritten, Unmapped};
use crate::Result;

/// Entry bit: valid.
pub const PTE_V: u64 = 1 << 0;
/// Entry bit: readable.
pub const PTE_R: u64 = 1 << 1;
/// Entry bit: writable (reserved without [`PTE_R`]).
pub const PTE_W: u64 = 1 << 2;
/// Entry bit: executable.
pub const PTE_X: u64 = 1 << 3;
/// Entry bit: accessible in U-mode.
pub const PTE_U: u64 = 1 << 4;
/// Entry bit: global mapping (present in every address space).
pub const PTE_G: u64 = 1 << 5;
/// Entry bit: accessed.
pub const PTE_A: u64 = 1 << 6;
/// Entry bit: dirty.
pub const PTE_D: u64 = 1 << 7;
/// Software bit (RSW, ignored by hardware): the mapping asked for
/// non-cacheable memory.
pub const PTE_SW_NO_CACHE: u64 = 1 << 8;
/// Software bit (RSW): in an entry with [`PTE_V`] clear, the page is mapped
/// without any right (see the module documentation).
pub const PTE_SW_MAPPED: u64 = 1 << 9;
/// Shift of the PPN field in an entry.
pub const PTE_PPN_SHIFT: u32 = 10;
/// Mask of the PPN field (44 bits) in an entry.
pub const PTE_PPN_MASK: u64 = ((1 << 44) - 1) << PTE_PPN_SHIFT;

/// First root slot of the kernel half (both modes).
pub const KERNEL_ROOT_START: u64 = ENTRIES / 2;

/// Which of the RISC-V paged virtual-memory schemes a table uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RiscvMode {
    /// Three levels, 39-bit virtual addresses, 256 GiB of user space.
    #[default]
    Sv39,
    /// Four levels, 48-bit virtual addresses, 128 TiB of user space.
    Sv48,
}

impl RiscvMode {
    /// Number of table levels.
    pub const fn levels(self) -> u32 {
        match self {
            RiscvMode::Sv39 => 3,
            RiscvMode::Sv48 => 4,
        }
    }
    /// The value of `satp.MODE`.
    pub const fn satp_mode(self) -> u64 {
        match self {
            RiscvMode::Sv39 => 8,
            RiscvMode::Sv48 => 9,
        }
    }
}

/// The `satp` value that selects `mode`, `asid` and the root table `root`.
pub const fn satp(mode: RiscvMode, asid: Asid, root: Frame) -> u64 {
    (mode.satp_mode() << 60) | ((asid.0 as u64) << 44) | (root.number() & ((1 << 44) - 1))
}

#[inline]
fn ppn_entry(frame: Frame) -> u64 {
    debug_assert!(frame.number() < 1 << 44, "frame beyond Sv39/Sv48's PPN");
    (frame.number() << PTE_PPN_SHIFT) & PTE_PPN_MASK
}

#[inline]
fn entry_frame(e: u64) -> Frame {
    Frame::from_number((e & PTE_PPN_MASK) >> PTE_PPN_SHIFT)
}

/// Encodes a leaf entry (see the module documentation for what is kept of
/// `flags`).
#[inline]
pub fn encode_leaf(frame: Frame, flags: PageFlags) -> u64 {
    let mut e = ppn_entry(frame) | PTE_A | PTE_D;
    if flags.contains(PageFlags::READ) {
        e |= PTE_R;
    }
    if flags.contains(PageFlags::WRITE) {
        // Write without read is reserved.
        e |= PTE_R | PTE_W;
    }
    if flags.contains(PageFlags::EXEC) {
        e |= PTE_X;
    }
    if flags.contains(PageFlags::USER) {
        e |= PTE_U;
    }
    if flags.contains(PageFlags::GLOBAL) {
        e |= PTE_G;
    }
    if !flags.contains(PageFlags::CACHEABLE) {
        e |= PTE_SW_NO_CACHE;
    }
    if e & (PTE_R | PTE_W | PTE_X) == 0 {
        // V with R, W, X clear would be a pointer: keep it invalid.
        e | PTE_SW_MAPPED
    } else {
        e | PTE_V
    }
}

/// Decodes a leaf entry: `None` when it maps nothing.
#[inline]
pub fn decode_leaf(e: u64) -> Option<(Frame, PageFlags)> {
    if e & PTE_V == 0 && e & PTE_SW_MAPPED == 0 {
        return None;
    }
    let mut f = PageFlags::PRESENT;
    for (bit, flag) in [
        (PTE_R, PageFlags::READ),
        (PTE_W, PageFlags::WRITE),
        (PTE_X, PageFlags::EXEC),
        (PTE_U, PageFlags::USER),
        (PTE_G, PageFlags::GLOBAL),
    ] {
        if e & bit != 0 {
            f |= flag;
        }
    }
    if e & PTE_SW_NO_CACHE == 0 {
        f |= PageFlags::CACHEABLE;
    }
    Some((entry_frame(e), f))
}

/// The intermediate entries of Sv39/Sv48.
#[derive(Debug)]
pub(crate) enum Sv {}

impl TableEntry for Sv {
    #[inline]
    fn is_table(e: u64) -> bool {
        e & (PTE_V | PTE_R | PTE_W | PTE_X) == PTE_V
    }
    #[inline]
    fn table_entry(frame: Frame) -> u64 {
        ppn_entry(frame) | PTE_V
    }
    #[inline]
    fn next_table(e: u64) -> Frame {
        entry_frame(e)
    }
}

/// A RISC-V Sv39 or Sv48 page table.
#[derive(Debug)]
pub struct RiscvPageTable {
    tree: Radix<Sv>,
    mode: RiscvMode,
    kernel: bool,
}

impl RiscvPageTable {
    /// The scheme of this table.
    pub fn mode(&self) -> RiscvMode {
        self.mode
    }

    /// The `satp` value that runs this table under `asid`.
    pub fn satp(&self, asid: Asid) -> u64 {
        satp(self.mode, asid, self.tree.root())
    }
}

impl PageTable for RiscvPageTable {
    type Mode = RiscvMode;

    fn layout(mode: RiscvMode) -> Layout {
        match mode {
            RiscvMode::Sv39 => Layout::SV39,
            RiscvMode::Sv48 => Layout::SV48,
        }
    }

    fn create<P: PhysMemory, F: FrameAllocator>(
        mem: &P,
        frames: &F,
        kernel: Option<&Self>,
        mode: RiscvMode,
    ) -> Result<Self> {
        let mode = kernel.map_or(mode, |k| k.mode);
        Ok(Self {
            tree: Radix::new_sharing(
                mem,
                frames,
                mode.levels(),
                kernel.map(|k| &k.tree),
                KERNEL_ROOT_START..ENTRIES,
            )?,
            mode,
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
        self.tree
            .set_leaf(mem, frames, page, encode_leaf(frame, flags), |e| {
                decode_leaf(e).is_some()
            })
    }

    fn unmap<P: PhysMemory>(&self, mem: &P, page: Page) -> Option<Unmapped> {
        self.tree
            .take_leaf(mem, page, |e| decode_leaf(e).map(|(f, _)| f))
    }

    fn translate<P: PhysMemory>(&self, mem: &P, page: Page) -> Option<(Frame, PageFlags)> {
        decode_leaf(self.tree.read_leaf(mem, page)?)
    }

    /// One walk per leaf table; the new rights encoded once.
    fn protect_run<P: PhysMemory, F: FrameAllocator>(
        &self,
        mem: &P,
        _frames: &F,
        first: Page,
        count: u64,
        flags: PageFlags,
    ) -> Rewritten {
        let frame_of = |e| decode_leaf(e).map(|(f, _)| f);
        let rights = encode_leaf(Frame::from_number(0), flags);
        self.tree
            .protect_run(mem, first, count, frame_of, |e| (e & PTE_PPN_MASK) | rights)
    }

    /// One walk per leaf table.
    fn unmap_run<P: PhysMemory>(
        &self,
        mem: &P,
        first: Page,
        count: u64,
        out: &mut dyn FnMut(Unmapped),
    ) {
        self.tree
            .unmap_run(mem, first, count, |e| decode_leaf(e).map(|(f, _)| f), out);
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
        self.tree
            .move_run(mem, frames, from, to, count, &|e| decode_leaf(e).is_some())
    }

    fn table_frames(&self) -> u64 {
        self.tree.table_frames()
    }

    fn destroy<P: PhysMemory, F: FrameAllocator>(self, mem: &P, frames: &F) {
        let owned = if self.kernel {
            0..ENTRIES
        } else {
            0..KERNEL_ROOT_START
        };
        self.tree.destroy(mem, frames, owned);
    }
}
