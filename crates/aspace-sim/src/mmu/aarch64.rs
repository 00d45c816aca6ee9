//! The AArch64 stage-1 EL1&0 walk for an EL0 access, 4 KiB granule,
//! `T0SZ` = `T1SZ` = 16 (Arm ARM D8, "The AArch64 Virtual Memory System
//! Architecture"), and TLB invalidation with `TLBI`.
//!
//! Bit 55 of the address selects `TTBR0_EL1` (0) or `TTBR1_EL1` (1); bits
//! 63:48 must equal it (no top-byte ignore), or a level-0 translation
//! fault follows. Levels 0 to 3 index with bits 47:39, 38:30, 29:21,
//! 20:12. A descriptor with bit 0 clear faults; at levels 0-2 bits 1:0 =
//! 11 make a table, 01 a block (1 GiB at level 1, 2 MiB at level 2; a
//! fault at level 0); at level 3, 11 is a page and 01 reserved. Table
//! descriptors limit what lies below: `APTable[0]` (bit 61) takes EL0
//! access away, `APTable[1]` (bit 62) write access, `UXNTable` (bit 60)
//! EL0 execution. A leaf with `AF` clear raises an access flag fault.
//! EL0 may load with `AP[1]` set, store with `AP[2:1]` = 01, fetch with
//! `UXN` clear. `nG` clear makes the translation global.

use aspace::{Asid, Frame, Invalidation, PhysAddr, PhysMemory, VirtAddr};

use super::{Walk, WalkFault};
use crate::tlb::SimTlb;

const VALID: u64 = 1;
const TABLE: u64 = 1 << 1;
const AP1_EL0: u64 = 1 << 6;
const AP2_RO: u64 = 1 << 7;
const AF: u64 = 1 << 10;
const NG: u64 = 1 << 11;
const UXN: u64 = 1 << 54;
const UXN_TABLE: u64 = 1 << 60;
const AP_TABLE_NO_EL0: u64 = 1 << 61;
const AP_TABLE_RO: u64 = 1 << 62;
const OA: u64 = 0x0000_ffff_ffff_f000;

/// Walks for an EL0 access to `va`, from `ttbr0` or `ttbr1` (`None`:
/// walks of that half disabled, `EPD0`/`EPD1`).
pub fn walk(
    mem: &impl PhysMemory,
    ttbr0: Option<Frame>,
    ttbr1: Option<Frame>,
    va: VirtAddr,
) -> Result<Walk, WalkFault> {
    let va = va.as_u64();
    let high = va >> 55 & 1 == 1;
    let top = va >> 48;
    if top != if high { 0xffff } else { 0 } {
        return Err(WalkFault::Address);
    }
    let root = if high { ttbr1 } else { ttbr0 };
    let mut table = root.ok_or(WalkFault::NotMapped(0))?.number() << 12;
    let (mut el0, mut write, mut uxn) = (true, true, false);
    for level in 0..4u32 {
        let shift = 12 + 9 * (3 - level);
        let d = mem.read_u64(PhysAddr::new(table + ((va >> shift) & 511) * 8));
        if d & VALID == 0 {
            return Err(WalkFault::NotMapped(3 - level));
        }
        let is_table_bit = d & TABLE != 0;
        if level < 3 && is_table_bit {
            el0 &= d & AP_TABLE_NO_EL0 == 0;
            write &= d & AP_TABLE_RO == 0;
            uxn |= d & UXN_TABLE != 0;
            table = d & OA;
            continue;
        }
        // A block (levels 1, 2) or a page (level 3).
        if (level == 0) || (level == 3 && !is_table_bit) {
            return Err(WalkFault::Reserved(3 - level));
        }
        if d & AF == 0 {
            return Err(WalkFault::AccessFlag);
        }
        let size_mask = (1u64 << shift) - 1;
        let pa = (d & OA & !size_mask) | (va & size_mask & !0xfff);
        let readable = el0 && d & AP1_EL0 != 0;
        let executable = !uxn && d & UXN == 0;
        return Ok(Walk {
            frame: PhysAddr::new(pa).frame(),
            readable,
            writable: readable && write && d & AP2_RO == 0,
            executable,
            user: readable || executable,
            global: d & NG == 0,
        });
    }
    unreachable!("level 3 ends the walk")
}

/// The `TLBI` operations (inner-shareable forms) the core's invalidations
/// use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tlbi {
    /// `TLBI VAE1IS`: one page under one ASID, and its global entries.
    Vae1 {
        /// The page.
        page: aspace::Page,
        /// The ASID.
        asid: Asid,
    },
    /// `TLBI VAAE1IS`: one page under every ASID.
    Vaae1(aspace::Page),
    /// `TLBI ASIDE1IS`: every non-global entry of one ASID.
    Aside1(Asid),
    /// `TLBI VMALLE1IS`: every entry.
    Vmalle1,
}

/// Executes one `TLBI` on `tlb`.
pub fn tlbi(tlb: &mut SimTlb, op: Tlbi) {
    match op {
        Tlbi::Vae1 { page, asid } => {
            tlb.retain(|e| !(e.page == page && (e.global || e.asid == asid)))
        }
        Tlbi::Vaae1(page) => tlb.retain(|e| e.page != page),
        Tlbi::Aside1(asid) => tlb.retain(|e| e.asid != asid || e.global),
        Tlbi::Vmalle1 => tlb.retain(|_| false),
    }
}

/// [`Invalidation::Pages`] is one `TLBI VAE1IS` per page (`TLBI VAAE1IS`
/// for the kernel's pages), [`Invalidation::Asid`] `TLBI ASIDE1IS`,
/// [`Invalidation::All`] `TLBI VMALLE1IS`.
pub fn invalidate(tlb: &mut SimTlb, what: Invalidation) {
    match what {
        // One instruction per page of the range, done in one pass.
        Invalidation::Pages { asid, range } if asid == Asid::KERNEL => {
            tlb.retain(|e| !range.contains(e.page));
        }
        Invalidation::Pages { asid, range } => {
            tlb.retain(|e| !(range.contains(e.page) && (e.global || e.asid == asid)));
        }
        Invalidation::Asid(asid) => tlbi(tlb, Tlbi::Aside1(asid)),
        Invalidation::All => tlbi(tlb, Tlbi::Vmalle1),
    }
}
