//! The x86_64 4-level walk (Intel SDM vol. 3, 4.5) and TLB invalidation
//! with `INVPCID`.
//!
//! Rights combine over the levels: a page is writable, user-accessible
//! and executable only if every entry on the way says so (R/W, U/S and XD
//! bits). A present page is always readable. `PS` at the PDPT or PD level
//! ends the walk at a 1 GiB or 2 MiB page.

use aspace::{Frame, Invalidation, PhysAddr, PhysMemory, VirtAddr};

use super::{Walk, WalkFault};
use crate::tlb::SimTlb;

const P: u64 = 1;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const PS: u64 = 1 << 7;
const G: u64 = 1 << 8;
const XD: u64 = 1 << 63;
const ADDR: u64 = 0x000f_ffff_ffff_f000;

/// Walks the table at `cr3` for `va`.
pub fn walk(mem: &impl PhysMemory, cr3: Option<Frame>, va: VirtAddr) -> Result<Walk, WalkFault> {
    let va = va.as_u64();
    // Canonical: bits 63:47 all equal.
    let top = va >> 47;
    if top != 0 && top != (1 << 17) - 1 {
        return Err(WalkFault::Address);
    }
    let mut table = cr3.ok_or(WalkFault::NotMapped(3))?.start().as_u64();
    let (mut writable, mut user, mut executable) = (true, true, true);
    for level in (0..4u32).rev() {
        let shift = 12 + 9 * level;
        let e = mem.read_u64(PhysAddr::new(table + ((va >> shift) & 511) * 8));
        if e & P == 0 {
            return Err(WalkFault::NotMapped(level));
        }
        writable &= e & RW != 0;
        user &= e & US != 0;
        executable &= e & XD == 0;
        let leaf = level == 0 || (e & PS != 0 && (level == 1 || level == 2));
        if level == 3 && e & PS != 0 {
            return Err(WalkFault::Reserved(level));
        }
        if leaf {
            let size_mask = (1u64 << shift) - 1;
            let pa = (e & ADDR & !size_mask) | (va & size_mask & !0xfff);
            return Ok(Walk {
                frame: PhysAddr::new(pa).frame(),
                readable: true,
                writable,
                executable,
                user,
                global: e & G != 0,
            });
        }
        table = e & ADDR;
    }
    unreachable!("level 0 is a leaf")
}

/// The `INVPCID` types the core's invalidations use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invpcid {
    /// Type 0: one address under one PCID, global entries kept.
    Address,
    /// Type 1: every entry of one PCID, global entries kept.
    SingleContext,
    /// Type 2: every entry, global ones too.
    AllIncludingGlobal,
}

/// [`Invalidation::Pages`] is one `INVPCID` type 0 per page (or, for the
/// kernel's global pages, one `INVLPG` per page on each PCID, which drops
/// the global entry), [`Invalidation::Asid`] type 1, [`Invalidation::All`]
/// type 2.
pub fn invalidate(tlb: &mut SimTlb, what: Invalidation) {
    match what {
        Invalidation::Pages { asid, range } if asid == aspace::Asid::KERNEL => {
            // INVLPG on each PCID the kernel runs under: global entries.
            tlb.retain(|e| !(range.contains(e.page) && (e.global || e.asid == asid)));
        }
        Invalidation::Pages { asid, range } => {
            tlb.retain(|e| !(range.contains(e.page) && e.asid == asid && !e.global));
        }
        Invalidation::Asid(asid) => tlb.retain(|e| e.asid != asid || e.global),
        Invalidation::All => tlb.retain(|_| false),
    }
}
