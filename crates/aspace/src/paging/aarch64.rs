//! AArch64 stage-1 page tables for EL1&0: 4 KiB granule, 48-bit virtual
//! addresses, 4 levels (L0..L3), 4 KiB pages only.
//!
//! # Two tables, two halves
//!
//! AArch64 translates the low half through `TTBR0_EL1` and the high half
//! through `TTBR1_EL1`, each with a table of its own (`TCR_EL1.T0SZ` =
//! `T1SZ` = 16). The kernel address space's table is the `TTBR1_EL1` one
//! and covers [`Layout::AARCH64`]'s kernel range; a user table is a
//! `TTBR0_EL1` one and covers all of the user range. So a user table
//! copies nothing of the kernel's (a kernel loads `TTBR1_EL1` once), a
//! user table's `destroy` frees all its slots, and each table maps,
//! unmaps and translates only addresses of its own half: `map` of the
//! other half fails with `InvalidArgument`, `translate` and `unmap` find
//! nothing there. [`ttbr`] builds the register value with a 16-bit ASID
//! (`TCR_EL1.AS` = 1).
//!
//! # Entries
//!
//! Table descriptors carry the next table's address and `0b11` in bits
//! 1:0, no hierarchical attributes (APTable, XNTable clear), so a page's
//! rights come from its leaf alone. Page descriptors get the access flag
//! ([`DESC_AF`]) set when mapped (without hardware access-flag management
//! a clear AF faults), inner-shareable ([`DESC_SH_INNER`]), not-global
//! ([`DESC_NG`]) unless the page is global (user pages never are: they
//! belong to one ASID), and memory attribute index 0 (normal write-back)
//! or 1 (device nGnRE) as [`MAIR_EL1`] sets them up.
//!
//! # What the format can express of [`AreaFlags`](crate::AreaFlags)
//!
//! - User pages (EL0): read-only (`AP` = 11), read-write (01),
//!   read-execute and execute-only (`AP` = 10: no EL0 data access, `UXN`
//!   clear) exactly; `PXN` is always set, so the kernel never executes
//!   user memory. Write-only is not expressible (EL0 write implies read):
//!   mapped read-write, as on x86_64.
//! - Kernel pages (EL1): always readable (`AP[1]` clear: no EL0 access;
//!   `AP[2]` read-only); execute by `PXN`, `UXN` always set.
//! - Device memory (not [`CACHEABLE`](crate::PageFlags::CACHEABLE)) gets
//!   the rights asked for, execute included: the architecture allows it,
//!   though it does not prevent speculative instruction fetches from
//!   executable device memory and Arm recommends marking device memory
//!   execute-never, which is the caller's choice (an area that is not
//!   cacheable should not be executable).
//! - No right at all: an invalid descriptor (bit 0 clear, which hardware
//!   ignores in full) holding the frame and [`DESC_SW_MAPPED`], so any
//!   access faults and [`PageTable::translate`] still reports the page.
//!
//! # Break-before-make and TLB maintenance
//!
//! The architecture requires an invalid entry and a TLB invalidation
//! between two valid entries of different output address or attributes.
//! The core never maps over a valid entry: `map` only fills an empty entry
//! (asserted in debug builds), `unmap` clears one, and another frame for a
//! page is unmapped, shot down and mapped again. Only rights (AP, UXN/PXN)
//! change in place ([`PageTable::protect_run`]), which needs no
//! break-before-make; the memory attributes of an area never change. A
//! machine's [`Tlb`](crate::Tlb) invalidates on the current CPU only: the
//! kernel in `kernel/` uses `TLBI VAE1` (by address and ASID) for
//! [`Pages`](crate::Invalidation::Pages), `TLBI VAAE1` (by address, all
//! ASIDs) for the kernel's pages, `TLBI ASIDE1` for
//! [`Asid`](crate::Invalidation::Asid) and `TLBI VMALLE1` for
//! [`All`](crate::Invalidation::All), between `DSB ISHST` and `DSB ISH; ISB`, and
//! reaches the other CPUs by the shootdown's IPIs (the broadcast `…IS`
//! forms would do the remote part themselves, and hide a lost IPI).

use crate::addr::{Frame, Page};
use crate::flags::PageFlags;
use crate::machine::Asid;
use crate::memory::{FrameAllocator, PhysMemory};
use crate::paging::radix::{Radix, TableEntry, ENTRIES};
use crate::paging::{Layout, PageTable, Rewritten, Unmapped};
use crate::{Error, Result};

/// Descriptor bit: valid.
pub const DESC_VALID: u64 = 1 << 0;
/// Descriptor bit: table (levels 0-2) or page (level 3), not block.
pub const DESC_TABLE_OR_PAGE: u64 = 1 << 1;
/// Shift of the memory attribute index (`AttrIndx`, bits 4:2).
pub const DESC_ATTR_SHIFT: u32 = 2;
/// `AttrIndx` of normal write-back memory.
pub const ATTR_NORMAL: u64 = 0;
/// `AttrIndx` of device nGnRE memory.
pub const ATTR_DEVICE: u64 = 1;
/// `MAIR_EL1` value giving attribute 0 normal write-back read/write-allocate
/// memory (0xff) and attribute 1 device nGnRE (0x04).
pub const MAIR_EL1: u64 = 0x04_ff;
/// Descriptor bit `AP[1]`: EL0 may access the page.
pub const DESC_AP_EL0: u64 = 1 << 6;
/// Descriptor bit `AP[2]`: read-only.
pub const DESC_AP_RO: u64 = 1 << 7;
/// Shareability field (bits 9:8) set to inner shareable.
pub const DESC_SH_INNER: u64 = 0b11 << 8;
/// Descriptor bit: access flag.
pub const DESC_AF: u64 = 1 << 10;
/// Descriptor bit: not global (tagged with the ASID).
pub const DESC_NG: u64 = 1 << 11;
/// Descriptor bit: privileged execute-never.
pub const DESC_PXN: u64 = 1 << 53;
/// Descriptor bit: unprivileged (EL0) execute-never.
pub const DESC_UXN: u64 = 1 << 54;
/// Software bit: in an invalid descriptor, the page is mapped without any
/// right (see the module documentation).
pub const DESC_SW_MAPPED: u64 = 1 << 55;
/// Software bit: in a no-rights descriptor, the page is a user page.
pub const DESC_SW_USER: u64 = 1 << 56;
/// Mask of the output address (bits 47:12).
pub const DESC_ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;

/// The `TTBR0_EL1`/`TTBR1_EL1` value for the table at `root` with `asid`
/// (the ASID field is bits 63:48).
pub const fn ttbr(root: Frame, asid: Asid) -> u64 {
    ((asid.0 as u64) << 48) | (root.number() << 12)
}

/// Encodes a leaf (level-3 page) descriptor.
#[inline]
pub fn encode_leaf(frame: Frame, flags: PageFlags) -> u64 {
    debug_assert!(frame.number() < 1 << 36, "frame beyond 48-bit output");
    let oa = (frame.number() << 12) & DESC_ADDR_MASK;
    let user = flags.contains(PageFlags::USER);
    let cacheable = flags.contains(PageFlags::CACHEABLE);
    let read = flags.contains(PageFlags::READ);
    let write = flags.contains(PageFlags::WRITE);
    let exec = flags.contains(PageFlags::EXEC);
    let mut e = oa;
    if !flags.contains(PageFlags::GLOBAL) {
        e |= DESC_NG;
    }
    let attr = if cacheable { ATTR_NORMAL } else { ATTR_DEVICE };
    e |= attr << DESC_ATTR_SHIFT;
    if !(read || write || exec) {
        return e | DESC_SW_MAPPED | if user { DESC_SW_USER } else { 0 };
    }
    e |= DESC_VALID | DESC_TABLE_OR_PAGE | DESC_AF | DESC_SH_INNER;
    if !write {
        e |= DESC_AP_RO;
    }
    if user {
        if read || write {
            e |= DESC_AP_EL0;
        }
        e |= DESC_PXN;
        if !exec {
            e |= DESC_UXN;
        }
    } else {
        e |= DESC_UXN;
        if !exec {
            e |= DESC_PXN;
        }
    }
    e
}

/// Decodes a leaf descriptor: `None` when it maps nothing.
#[inline]
pub fn decode_leaf(e: u64) -> Option<(Frame, PageFlags)> {
    let frame = Frame::from_number((e & DESC_ADDR_MASK) >> 12);
    let mut f = PageFlags::PRESENT;
    if (e >> DESC_ATTR_SHIFT) & 0b111 == ATTR_NORMAL {
        f |= PageFlags::CACHEABLE;
    }
    if e & DESC_NG == 0 {
        f |= PageFlags::GLOBAL;
    }
    if e & DESC_VALID == 0 {
        if e & DESC_SW_MAPPED == 0 {
            return None;
        }
        if e & DESC_SW_USER != 0 {
            f |= PageFlags::USER;
        }
        return Some((frame, f));
    }
    let el0_data = e & DESC_AP_EL0 != 0;
    // Kernel pages always have UXN set; user pages EL0 access or UXN clear.
    let user = el0_data || e & DESC_UXN == 0;
    if user {
        f |= PageFlags::USER;
        if el0_data {
            f |= PageFlags::READ;
        }
        if el0_data && e & DESC_AP_RO == 0 {
            f |= PageFlags::WRITE;
        }
        if e & DESC_UXN == 0 {
            f |= PageFlags::EXEC;
        }
    } else {
        f |= PageFlags::READ;
        if e & DESC_AP_RO == 0 {
            f |= PageFlags::WRITE;
        }
        if e & DESC_PXN == 0 {
            f |= PageFlags::EXEC;
        }
    }
    Some((frame, f))
}

/// The table descriptors of levels 0-2.
#[derive(Debug)]
pub(crate) enum Desc {}

impl TableEntry for Desc {
    #[inline]
    fn is_table(e: u64) -> bool {
        e & (DESC_VALID | DESC_TABLE_OR_PAGE) == DESC_VALID | DESC_TABLE_OR_PAGE
    }
    #[inline]
    fn table_entry(frame: Frame) -> u64 {
        (frame.number() << 12) | DESC_VALID | DESC_TABLE_OR_PAGE
    }
    #[inline]
    fn next_table(e: u64) -> Frame {
        Frame::from_number((e & DESC_ADDR_MASK) >> 12)
    }
}

/// An AArch64 4-level page table: a `TTBR1_EL1` table for the kernel's
/// address space, a `TTBR0_EL1` one for each user address space.
#[derive(Debug)]
pub struct Aarch64PageTable {
    tree: Radix<Desc>,
    kernel: bool,
}

impl Aarch64PageTable {
    /// The `TTBR` value that runs this table under `asid`.
    pub fn ttbr(&self, asid: Asid) -> u64 {
        ttbr(self.tree.root(), asid)
    }

    /// Whether `page` lies in the half this table translates.
    fn covers(&self, page: Page) -> bool {
        let a = page.start().as_u64();
        if self.kernel {
            a >= Layout::AARCH64.kernel_start
        } else {
            a < Layout::AARCH64.user_end
        }
    }
}

impl PageTable for Aarch64PageTable {
    type Mode = ();

    fn layout((): ()) -> Layout {
        Layout::AARCH64
    }

    fn create<P: PhysMemory, F: FrameAllocator>(
        mem: &P,
        frames: &F,
        kernel: Option<&Self>,
        (): (),
    ) -> Result<Self> {
        Ok(Self {
            tree: Radix::new(mem, frames, 4)?,
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
        if !self.covers(page) {
            return Err(Error::InvalidArgument);
        }
        // Break-before-make holds: a valid entry is never rewritten.
        self.tree
            .set_leaf(mem, frames, page, encode_leaf(frame, flags), |e| {
                decode_leaf(e).is_some()
            })
    }

    fn unmap<P: PhysMemory>(&self, mem: &P, page: Page) -> Option<Unmapped> {
        if !self.covers(page) {
            return None;
        }
        self.tree
            .take_leaf(mem, page, |e| decode_leaf(e).map(|(f, _)| f))
    }

    fn translate<P: PhysMemory>(&self, mem: &P, page: Page) -> Option<(Frame, PageFlags)> {
        if !self.covers(page) {
            return None;
        }
        decode_leaf(self.tree.read_leaf(mem, page)?)
    }

    /// One walk per leaf table; pages outside this table's half go page
    /// by page (and map nothing).
    fn unmap_run<P: PhysMemory>(
        &self,
        mem: &P,
        first: Page,
        count: u64,
        out: &mut dyn FnMut(Unmapped),
    ) {
        if count > 0 && self.covers(first) && self.covers(first.add(count - 1)) {
            let frame_of = |e| decode_leaf(e).map(|(f, _)| f);
            self.tree.unmap_run(mem, first, count, frame_of, out);
            return;
        }
        for i in 0..count {
            if let Some(u) = self.unmap(mem, first.add(i)) {
                out(u);
            }
        }
    }

    /// One walk per leaf table, the new rights encoded once; pages outside
    /// this table's half map nothing and are skipped.
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
        let rewrite = |e| (e & DESC_ADDR_MASK) | rights;
        if count > 0 && self.covers(first) && self.covers(first.add(count - 1)) {
            return self.tree.protect_run(mem, first, count, frame_of, rewrite);
        }
        let mut rewritten = Rewritten::new();
        for i in 0..count {
            let page = first.add(i);
            if self.covers(page) {
                let one = self.tree.protect_run(mem, page, 1, frame_of, rewrite);
                rewritten = rewritten.join(one);
            }
        }
        rewritten
    }

    /// One walk per pair of leaf tables; entries move as they are (their
    /// access flags too). Both ranges must lie in this table's half.
    fn move_run<P: PhysMemory, F: FrameAllocator>(
        &self,
        mem: &P,
        frames: &F,
        from: Page,
        to: Page,
        count: u64,
    ) -> Result<()> {
        if count == 0 {
            return Ok(());
        }
        let covered = |p: Page| self.covers(p) && self.covers(p.add(count - 1));
        if !covered(from) || !covered(to) {
            return Err(Error::InvalidArgument);
        }
        self.tree
            .move_run(mem, frames, from, to, count, &|e| decode_leaf(e).is_some())
    }

    fn table_frames(&self) -> u64 {
        self.tree.table_frames()
    }

    fn destroy<P: PhysMemory, F: FrameAllocator>(self, mem: &P, frames: &F) {
        self.tree.destroy(mem, frames, 0..ENTRIES);
    }
}
