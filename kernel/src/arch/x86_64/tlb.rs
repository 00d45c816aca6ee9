//! The x86_64 TLB with PCIDs: aspace's `Cpus` and `Tlb` of this kernel.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, Ordering};

use aspace::{Asid, CpuId, Cpus, Frame, Invalidation, Tlb};

use super::regs::{cpu_id, cpuid, cr3, cr4, set_cr3, set_cr4};
use crate::machine::CPU_COUNT;
/// CR4.PCIDE is on: CR3 carries the ASID.
pub static PCID: AtomicBool = AtomicBool::new(false);
/// INVPCID is available.
pub static INVPCID: AtomicBool = AtomicBool::new(false);

const CR4_PGE: u64 = 1 << 7;
const CR4_PCIDE: u64 = 1 << 17;
const CR4_SMEP: u64 = 1 << 20;
const CR4_SMAP: u64 = 1 << 21;
const CR3_NOFLUSH: u64 = 1 << 63;

/// Features found by [`init_features`], for the boot log.
pub struct Features {
    pub pcid: bool,
    pub invpcid: bool,
    pub smep: bool,
    pub smap: bool,
}

/// Turns on global pages, PCIDs, SMEP and SMAP where the CPU has them.
/// Runs on every CPU with CR3's PCID field zero.
pub fn init_features() -> Features {
    let (_, _, ecx1, _) = cpuid(1, 0);
    let (_, ebx7, _, _) = cpuid(7, 0);
    let f = Features {
        pcid: ecx1 & (1 << 17) != 0,
        invpcid: ebx7 & (1 << 10) != 0,
        smep: ebx7 & (1 << 7) != 0,
        smap: ebx7 & (1 << 20) != 0,
    };
    let mut c = cr4() | CR4_PGE;
    if f.pcid {
        c |= CR4_PCIDE;
    }
    if f.smep {
        c |= CR4_SMEP;
    }
    if f.smap {
        c |= CR4_SMAP;
    }
    // SAFETY: `c` is the current CR4 plus PGE (always available in long
    // mode) and PCIDE/SMEP/SMAP only where CPUID reports them. PCIDE needs
    // CR3's PCID field zero, which holds: each CPU runs this once, on the
    // boot tables (loaded without PCID bits), before its first switch. SMEP
    // and SMAP cannot fault the kernel: it never runs or touches user pages
    // through user addresses (user memory goes through the direct map).
    unsafe { set_cr4(c) };
    PCID.store(f.pcid, Ordering::Relaxed);
    INVPCID.store(f.invpcid, Ordering::Relaxed);
    f
}

/// Flushes every TLB entry of this CPU, global ones and all PCIDs.
pub fn flush_all() {
    let c = cr4();
    // SAFETY: clearing PGE is always allowed and flushes every TLB entry
    // (global ones and all PCIDs); the second write restores the value just
    // read. The page tables are unchanged, so execution goes on as before.
    unsafe {
        set_cr4(c & !CR4_PGE);
        set_cr4(c);
    }
}

/// `INVPCID` of type `kind` (0: one address, 1: one PCID) for `pcid`.
///
/// # Safety
/// The CPU must have INVPCID, `kind` must be 0 or 1, `pcid` below 4096 and,
/// for type 0, `addr` canonical (otherwise the instruction raises #GP).
unsafe fn invpcid(kind: u64, pcid: u64, addr: u64) {
    let desc: [u64; 2] = [pcid, addr];
    // SAFETY: the caller guarantees the instruction's preconditions (see
    // # Safety). The asm reads the 16-byte descriptor through the pointer to
    // `desc`, a live local, and its two input registers; it writes no memory
    // and pushes nothing. Dropping TLB entries never affects correctness.
    unsafe { asm!("invpcid {}, [{}]", in(reg) kind, in(reg) &desc, options(nostack)) };
}

fn invlpg(addr: u64) {
    // SAFETY: `invlpg` only drops the TLB entries for `addr` (a no-op for a
    // non-canonical or unmapped address); it never accesses the memory at
    // `addr`, cannot fault in ring 0, and a dropped entry is just walked
    // again.
    unsafe { asm!("invlpg [{}]", in(reg) addr, options(nostack)) };
}

/// Beyond this many pages a range flush drops the whole ASID instead.
const RANGE_LIMIT: u64 = 64;

/// The TLB of the running CPU.
pub struct X86Tlb;

impl X86Tlb {
    /// Runs `f` with `asid` loaded as the current PCID (same page table),
    /// so `invlpg` / a non-preserving CR3 load reach that PCID. Kernel
    /// mappings are identical in every table, so nothing else changes.
    /// Only called with CR4.PCIDE on.
    fn with_pcid(asid: Asid, flush: bool, f: impl FnOnce()) {
        let old = cr3();
        let root = old & !0xfff & !CR3_NOFLUSH;
        // SAFETY: same root table as now, so the running code, stack and all
        // kernel data stay mapped (the kernel half is identical in every
        // table, whatever PCID tags it). Callers reach this only with PCIDE
        // on (`flush_asid` returns early and `invalidate_local` uses `invlpg`
        // otherwise), so the PCID bits and bit 63 are valid; aspace's ASIDs
        // are 1..=ASIDS (at most 2 × MAX_CPUS = 16), below 4096.
        unsafe { set_cr3(root | asid.0 as u64 | if flush { 0 } else { CR3_NOFLUSH }) };
        f();
        // SAFETY: back to the same root with the original PCID, without a
        // flush (bit 63; PCIDE is on, see above).
        unsafe { set_cr3(root | (old & 0xfff) | CR3_NOFLUSH) };
    }

    fn flush_asid(asid: Asid) {
        if !PCID.load(Ordering::Relaxed) {
            // Without PCIDs only the current space's entries can be cached.
            // SAFETY: reloads the value CR3 holds (the running table, no
            // PCID bits since PCIDE is off): only non-global TLB entries go.
            unsafe { set_cr3(cr3()) };
            return;
        }
        if INVPCID.load(Ordering::Relaxed) {
            // SAFETY: INVPCID was reported by CPUID; type 1 (one PCID) ignores
            // the address; aspace's ASIDs are 1..=ASIDS (at most 2 ×
            // MAX_CPUS = 16), below 4096.
            unsafe { invpcid(1, asid.0 as u64, 0) };
        } else if (cr3() & 0xfff) as u16 == asid.0 {
            // SAFETY: same root table and same PCID (`asid` is the current
            // one), PCIDE on; without bit 63 the load flushes that PCID's
            // non-global entries and nothing else changes.
            unsafe { set_cr3(cr3() & !0xfff & !CR3_NOFLUSH | asid.0 as u64) };
        } else {
            Self::with_pcid(asid, true, || {});
        }
    }
}

impl Cpus for X86Tlb {
    fn cpu_count(&self) -> usize {
        CPU_COUNT.load(Ordering::Relaxed)
    }

    fn current_cpu(&self) -> Option<CpuId> {
        Some(cpu_id())
    }
}

impl Tlb for X86Tlb {
    fn invalidate_local(&self, what: Invalidation) {
        crate::stats::LOCAL_FLUSHES.fetch_add(1, Ordering::Relaxed);
        match what {
            Invalidation::All => flush_all(),
            Invalidation::Asid(Asid::KERNEL) => flush_all(),
            Invalidation::Asid(a) => Self::flush_asid(a),
            Invalidation::Pages { asid, range } => {
                let pcid = PCID.load(Ordering::Relaxed);
                let current = (cr3() & 0xfff) as u16;
                if range.count > RANGE_LIMIT {
                    if asid == Asid::KERNEL {
                        flush_all();
                    } else {
                        Self::flush_asid(asid);
                    }
                    return;
                }
                let pages = (0..range.count).map(|i| range.start.add(i).start().as_u64());
                if asid == Asid::KERNEL || !pcid || asid.0 == current {
                    // invlpg drops global entries under every PCID and the
                    // current PCID's entries.
                    pages.for_each(invlpg);
                } else if INVPCID.load(Ordering::Relaxed) {
                    for a in pages {
                        // SAFETY: INVPCID was reported by CPUID; type 0 with
                        // an ASID of aspace (1..=ASIDS, at most 16, below 4096) and a
                        // page address of the range, a canonical user
                        // address (aspace's user half ends at 2^47).
                        unsafe { invpcid(0, asid.0 as u64, a) };
                    }
                } else {
                    Self::with_pcid(asid, false, || pages.for_each(invlpg));
                }
            }
        }
    }

    fn install(&self, root: Frame, asid: Asid) {
        let mut v = root.start().as_u64();
        if PCID.load(Ordering::Relaxed) {
            // Entries of the ASID that are not this space's are flushed by
            // the core right after this load (`System::switch`), once no
            // refill can bring the old space's back.
            v |= asid.0 as u64 | CR3_NOFLUSH;
        }
        // SAFETY: `root` is the root table of an aspace address space that
        // the core is switching to: its kernel half is the kernel space's
        // (copied when the table was made, the kernel-area slot included),
        // so the running code, stack and kernel data stay mapped. PCID bits
        // and bit 63 are set only with PCIDE on, and ASIDs are below 4096.
        unsafe { set_cr3(v) };
    }
}
