//! The RISC-V Sv39/Sv48 walk (privileged specification, "Virtual Address
//! Translation Process") and TLB invalidation with `SFENCE.VMA`.
//!
//! The walk, for a U-mode access: the address must be sign-extended from
//! its top translated bit; at each level an entry with V clear, or with W
//! set and R clear, or with a reserved bit (63:54: no Svnapot, no Svpbmt)
//! set, faults; R, W and X all clear make a pointer to the next level
//! (whose A, D and U must be clear), a pointer at the last level faults;
//! otherwise the entry is a leaf, a superpage if found above the last
//! level (whose PPN's low parts must be zero). A leaf with A clear faults
//! (the Svade behaviour: no hardware update of A and D); a store needs D
//! as well as W. A load needs R, or X when `sstatus.MXR` is set; a fetch
//! needs X; U-mode needs U. G on any level makes the translation global.

use aspace::{Asid, Frame, Invalidation, PhysAddr, PhysMemory, VirtAddr};

use super::{Walk, WalkFault};
use crate::tlb::SimTlb;

const V: u64 = 1;
const R: u64 = 1 << 1;
const W: u64 = 1 << 2;
const X: u64 = 1 << 3;
const U: u64 = 1 << 4;
const G: u64 = 1 << 5;
const A: u64 = 1 << 6;
const D: u64 = 1 << 7;
const RESERVED: u64 = 0x3ff << 54;
const PPN_SHIFT: u32 = 10;
const PPN_BITS: u32 = 44;

/// The translation scheme in `satp.MODE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Three levels, 39-bit addresses.
    Sv39,
    /// Four levels, 48-bit addresses.
    Sv48,
}

impl Scheme {
    const fn levels(self) -> u32 {
        match self {
            Scheme::Sv39 => 3,
            Scheme::Sv48 => 4,
        }
    }
}

/// Walks the table at `root` (`satp.PPN`) in `scheme` for a U-mode access
/// to `va`; `mxr` is `sstatus.MXR` (loads from execute-only pages).
pub fn walk(
    mem: &impl PhysMemory,
    scheme: Scheme,
    root: Option<Frame>,
    va: VirtAddr,
    mxr: bool,
) -> Result<Walk, WalkFault> {
    let va = va.as_u64();
    let levels = scheme.levels();
    let bits = 12 + 9 * levels;
    // Bits 63..bits-1 must all equal bit bits-1.
    let upper = va >> (bits - 1);
    if upper != 0 && upper != (1 << (65 - bits)) - 1 {
        return Err(WalkFault::Address);
    }
    let mut a = root.ok_or(WalkFault::NotMapped(levels - 1))?.number() << 12;
    let mut global = false;
    for i in (0..levels).rev() {
        let vpn = (va >> (12 + 9 * i)) & 511;
        let pte = mem.read_u64(PhysAddr::new(a + vpn * 8));
        if pte & V == 0 {
            return Err(WalkFault::NotMapped(i));
        }
        if (pte & R == 0 && pte & W != 0) || pte & RESERVED != 0 {
            return Err(WalkFault::Reserved(i));
        }
        global |= pte & G != 0;
        let ppn = (pte >> PPN_SHIFT) & ((1 << PPN_BITS) - 1);
        if pte & (R | X) == 0 {
            // A pointer: A, D and U are reserved for future use.
            if i == 0 || pte & (A | D | U) != 0 {
                return Err(WalkFault::Reserved(i));
            }
            a = ppn << 12;
            continue;
        }
        // A leaf; above level 0 a superpage, aligned to its size.
        let low = (1u64 << (9 * i)) - 1;
        if ppn & low != 0 {
            return Err(WalkFault::Reserved(i));
        }
        if pte & A == 0 {
            return Err(WalkFault::AccessFlag);
        }
        let frame = Frame::from_number(ppn | ((va >> 12) & low));
        let user = pte & U != 0;
        return Ok(Walk {
            frame,
            readable: pte & R != 0 || (mxr && pte & X != 0),
            writable: pte & W != 0 && pte & D != 0,
            executable: pte & X != 0,
            user,
            global,
        });
    }
    unreachable!("a pointer at level 0 faults above")
}

/// `SFENCE.VMA rs1, rs2`: `vaddr` (`None`: x0) selects the pages,
/// `asid` (`None`: x0) the address space; with an ASID, global entries
/// stay.
pub fn sfence_vma(tlb: &mut SimTlb, pages: Option<aspace::PageRange>, asid: Option<Asid>) {
    tlb.retain(|e| {
        let page = pages.is_none_or(|r| r.contains(e.page));
        let space = asid.is_none_or(|a| e.asid == a && !e.global);
        !(page && space)
    });
}

/// [`Invalidation::Pages`] is one `SFENCE.VMA va, asid` per page (for the
/// kernel's global pages `SFENCE.VMA va, x0`), [`Invalidation::Asid`]
/// `SFENCE.VMA x0, asid`, [`Invalidation::All`] `SFENCE.VMA x0, x0`.
pub fn invalidate(tlb: &mut SimTlb, what: Invalidation) {
    match what {
        Invalidation::Pages { asid, range } if asid == Asid::KERNEL => {
            sfence_vma(tlb, Some(range), None)
        }
        Invalidation::Pages { asid, range } => sfence_vma(tlb, Some(range), Some(asid)),
        Invalidation::Asid(asid) => sfence_vma(tlb, None, Some(asid)),
        Invalidation::All => sfence_vma(tlb, None, None),
    }
}
