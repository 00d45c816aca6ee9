//! The RISC-V TLB: aspace's `Cpus` and `Tlb` of this kernel. `install`
//! writes `satp` (Sv39, the ASID, the root's PPN); invalidations are
//! `sfence.vma` by ASID, by address and ASID, or of everything. Each kind
//! is counted, so a test can see the ASID path run.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use aspace::paging::riscv64::{satp, RiscvMode};
use aspace::{Asid, CpuId, Cpus, Frame, Invalidation, Tlb};

use super::cpu_id;
use crate::machine::CPU_COUNT;

/// `satp` writes (address-space switches).
pub static SATP_WRITES: AtomicU64 = AtomicU64::new(0);
/// `satp` writes with an ASID other than 0 (user spaces).
pub static SATP_USER_ASID: AtomicU64 = AtomicU64::new(0);
/// `sfence.vma x0, x0`: everything.
pub static SFENCE_ALL: AtomicU64 = AtomicU64::new(0);
/// `sfence.vma x0, asid`: one ASID.
pub static SFENCE_ASID: AtomicU64 = AtomicU64::new(0);
/// `sfence.vma va, asid` (or `va, x0` for global pages): one page.
pub static SFENCE_PAGE: AtomicU64 = AtomicU64::new(0);
/// `sfence.vma va` after a served page fault (see [`fence_fault`]).
pub static SFENCE_FAULT: AtomicU64 = AtomicU64::new(0);

/// Instruction-cache syncs (`sync_icache`): each a local `fence.i`, and a
/// remote one when there is more than one hart.
pub static ICACHE_SYNCS: AtomicU64 = AtomicU64::new(0);

/// Makes what the kernel wrote into a frame visible to instruction
/// fetches on every hart: `fence.i` orders this hart's fetches after its
/// stores, and the SBI's remote `fence.i` does the same on every other
/// hart (Zifencei has no broadcast form).
pub fn sync_icache() {
    ICACHE_SYNCS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: `fence.i` only synchronises this hart's instruction fetches
    // with its earlier stores; it touches no register or memory.
    unsafe { asm!("fence.i", options(nostack)) };
    if CPU_COUNT.load(Ordering::Relaxed) > 1 {
        super::sbi::remote_fence_i_all();
    }
}

/// Beyond this many pages a range flush drops the whole ASID instead.
const RANGE_LIMIT: u64 = 64;

/// `sfence.vma x0, x0`: drops every translation of this hart.
pub fn flush_all() {
    SFENCE_ALL.fetch_add(1, Ordering::Relaxed);
    // SAFETY: `sfence.vma` only drops cached translations (and orders
    // earlier page-table stores before later walks); it is allowed in
    // S-mode and touches no register or memory.
    unsafe { asm!("sfence.vma x0, x0", options(nostack)) };
}

fn sfence_asid(asid: u64) {
    SFENCE_ASID.fetch_add(1, Ordering::Relaxed);
    // SAFETY: as in `flush_all`, for the non-global translations of one
    // ASID.
    unsafe { asm!("sfence.vma x0, {}", in(reg) asid, options(nostack)) };
}

fn sfence_page(va: u64, asid: u64) {
    SFENCE_PAGE.fetch_add(1, Ordering::Relaxed);
    if asid == 0 {
        // SAFETY: as in `flush_all`, for one address under every ASID,
        // global translations included (the kernel's pages).
        unsafe { asm!("sfence.vma {}, x0", in(reg) va, options(nostack)) };
    } else {
        // SAFETY: as in `flush_all`, for one address of one ASID.
        unsafe { asm!("sfence.vma {}, {}", in(reg) va, in(reg) asid, options(nostack)) };
    }
}

/// After a page fault the core served: drops this hart's cached
/// translations of `va` (a hart may cache an invalid entry, and the
/// privileged spec asks for an `sfence.vma` before a new valid entry is
/// sure to be seen). QEMU does not cache invalid entries, so this is for
/// real harts; it never hides a missing shootdown (it is local and comes
/// after a fault, not before a stale hit).
pub fn fence_fault(va: u64) {
    SFENCE_FAULT.fetch_add(1, Ordering::Relaxed);
    // SAFETY: as in `flush_all`, for one address under every ASID.
    unsafe { asm!("sfence.vma {}, x0", in(reg) va, options(nostack)) };
}

/// The TLB of the running hart.
pub struct RiscvTlb;

impl Cpus for RiscvTlb {
    fn cpu_count(&self) -> usize {
        CPU_COUNT.load(Ordering::Relaxed)
    }

    fn current_cpu(&self) -> Option<CpuId> {
        Some(cpu_id())
    }
}

impl Tlb for RiscvTlb {
    fn invalidate_local(&self, what: Invalidation) {
        crate::stats::LOCAL_FLUSHES.fetch_add(1, Ordering::Relaxed);
        match what {
            Invalidation::All | Invalidation::Asid(Asid::KERNEL) => flush_all(),
            Invalidation::Asid(a) => sfence_asid(a.0 as u64),
            Invalidation::Pages { asid, range } => {
                if range.count > RANGE_LIMIT {
                    if asid == Asid::KERNEL {
                        flush_all();
                    } else {
                        sfence_asid(asid.0 as u64);
                    }
                    return;
                }
                for i in 0..range.count {
                    sfence_page(range.start.add(i).start().as_u64(), asid.0 as u64);
                }
            }
        }
    }

    fn install(&self, root: Frame, asid: Asid) {
        SATP_WRITES.fetch_add(1, Ordering::Relaxed);
        if asid != Asid::KERNEL {
            SATP_USER_ASID.fetch_add(1, Ordering::Relaxed);
        }
        let v = satp(RiscvMode::Sv39, asid, root);
        // SAFETY: `root` is the root table of an aspace address space the
        // core is switching to; its kernel half is the kernel space's
        // (copied when it was made), so the running code (in the direct
        // map), its stack and the kernel's data stay mapped. The ASID is
        // aspace's (below 2^16). Entries the new ASID may hold from another
        // space are flushed by the core right after (`System::switch`).
        // No `nomem`: what addresses mean changes.
        unsafe { asm!("csrw satp, {}", in(reg) v, options(nostack)) };
    }
}

/// The number of ASID bits this hart implements (writing all ones to
/// `satp.ASID` and reading back, on the boot table).
pub fn asid_bits() -> u32 {
    let old: u64;
    let back: u64;
    // SAFETY: rewrites `satp` with the same mode and root and only the
    // ASID field changed (the boot table's mappings are global, so no
    // translation depends on the ASID), reads it back, and restores the
    // original value; then drops every cached translation.
    unsafe {
        asm!(
            "csrr {old}, satp",
            "or {t}, {old}, {mask}",
            "csrw satp, {t}",
            "csrr {back}, satp",
            "csrw satp, {old}",
            "sfence.vma x0, x0",
            old = out(reg) old,
            back = out(reg) back,
            t = out(reg) _,
            mask = in(reg) 0xffffu64 << 44,
            options(nostack)
        );
    }
    let _ = old;
    ((back >> 44) & 0xffff).count_ones()
}
