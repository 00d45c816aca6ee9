//! The AArch64 TLB: aspace's `Cpus` and `Tlb` of this kernel. `install`
//! writes `TTBR0_EL1` (a user table with its 16-bit ASID) or, for the
//! kernel space, `TTBR1_EL1` with the kernel's table and `TTBR0_EL1` with
//! an empty one under ASID 0 (the kernel's pages are global, the user half
//! then maps nothing). Invalidations are what the core's `Tlb` asks:
//! this CPU's, by the non-shareable `TLBI`s (`VAE1` per page and ASID,
//! `VAAE1` per kernel page, `ASIDE1`, `VMALLE1`), each between `DSB ISHST`
//! (the table stores first) and `DSB ISH; ISB`; the other CPUs flush their
//! own when the shootdown IPI asks them to. (The inner-shareable forms
//! the core's `paging::aarch64` names would reach every CPU by
//! themselves, and so hide a shootdown that never arrived: with these,
//! QEMU keeps a CPU's stale entry until that CPU flushes, and the
//! shootdown scenario fails, "counter STILL MOVING", when a target acks
//! without flushing.) Each kind is counted, so a test can see the ASID
//! path run.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use aspace::paging::aarch64::ttbr;
use aspace::{Asid, CpuId, Cpus, Frame, Invalidation, Tlb};

use super::{cpu_id, DIRECT_MAP};
use crate::machine::CPU_COUNT;

/// `TTBR0_EL1` writes (address-space switches).
pub static TTBR0_WRITES: AtomicU64 = AtomicU64::new(0);
/// `TTBR0_EL1` writes with an ASID other than 0 (user spaces).
pub static TTBR0_USER_ASID: AtomicU64 = AtomicU64::new(0);
/// `TLBI VMALLE1`: everything.
pub static TLBI_ALL: AtomicU64 = AtomicU64::new(0);
/// `TLBI ASIDE1`: one ASID.
pub static TLBI_ASID: AtomicU64 = AtomicU64::new(0);
/// `TLBI VAE1`: one page of one ASID.
pub static TLBI_PAGE: AtomicU64 = AtomicU64::new(0);
/// `TLBI VAAE1`: one page under every ASID (the kernel's global pages).
pub static TLBI_KERNEL_PAGE: AtomicU64 = AtomicU64::new(0);

/// Frames synced for instruction fetches (`sync_icache`).
pub static ICACHE_SYNCS: AtomicU64 = AtomicU64::new(0);

/// Makes the `len` bytes at `va` (the direct map of a frame the kernel
/// wrote) visible to instruction fetches on every CPU, as the architecture
/// asks after code is written through the data side: each data-cache line
/// cleaned to the point of unification (`DC CVAU`, unless `CTR_EL0.IDC`
/// says no clean is needed), `DSB ISH`, each instruction-cache line
/// invalidated (`IC IVAU`, unless `CTR_EL0.DIC` says so), `DSB ISH`, `ISB`.
/// Both maintenance operations reach every CPU of the inner-shareable
/// domain; the others synchronise their fetches when they return to a
/// task (`ERET`).
pub fn sync_icache(va: *const u8, len: usize) {
    ICACHE_SYNCS.fetch_add(1, Ordering::Relaxed);
    let ctr: u64;
    // SAFETY: reads an identification register; no memory touched.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack)) };
    let (start, end) = (va as u64, va as u64 + len as u64);
    // Line sizes: log2 of the number of 4-byte words.
    let (dline, iline) = (4u64 << ((ctr >> 16) & 0xf), 4u64 << (ctr & 0xf));
    if ctr & (1 << 28) == 0 {
        // SAFETY: cache maintenance of a mapped line (the caller's
        // direct-map range); it changes no memory contents.
        each_line(start, end, dline, |a| unsafe {
            asm!("dc cvau, {}", in(reg) a, options(nostack))
        });
    }
    // SAFETY: a barrier; no memory touched.
    unsafe { asm!("dsb ish", options(nostack)) };
    if ctr & (1 << 29) == 0 {
        // SAFETY: as for `dc cvau` above: an instruction-cache line
        // dropped, no memory contents changed.
        each_line(start, end, iline, |a| unsafe {
            asm!("ic ivau, {}", in(reg) a, options(nostack))
        });
        // SAFETY: a barrier; no memory touched.
        unsafe { asm!("dsb ish", options(nostack)) };
    }
    // SAFETY: a context synchronisation; no memory touched.
    unsafe { asm!("isb", options(nostack)) };
}

/// Calls `op` with the address of each `line`-byte line of `[start, end)`.
fn each_line(start: u64, end: u64, line: u64, op: impl Fn(u64)) {
    let mut a = start & !(line - 1);
    while a < end {
        op(a);
        a += line;
    }
}

/// Beyond this many pages a range flush drops the whole ASID instead.
const RANGE_LIMIT: u64 = 64;

/// An empty level-0 table: `TTBR0_EL1` while the kernel space is loaded.
#[repr(C, align(4096))]
struct Empty([u64; 512]);
static EMPTY: Empty = Empty([0; 512]);

/// `TLBI VMALLE1`: drops every translation of this CPU.
pub fn flush_all() {
    TLBI_ALL.fetch_add(1, Ordering::Relaxed);
    // SAFETY: TLB maintenance only drops cached translations; the DSBs
    // order it after earlier table stores and complete it before later
    // accesses. No register or memory is touched.
    unsafe {
        asm!(
            "dsb ishst",
            "tlbi vmalle1",
            "dsb ish",
            "isb",
            options(nostack)
        )
    };
}

fn tlbi_asid(asid: u64) {
    TLBI_ASID.fetch_add(1, Ordering::Relaxed);
    // SAFETY: as in `flush_all`, for the non-global translations of one
    // ASID (bits 63:48 of the operand).
    unsafe {
        asm!("dsb ishst", "tlbi aside1, {}", "dsb ish", "isb",
             in(reg) asid << 48, options(nostack))
    };
}

fn tlbi_page(va: u64, asid: u64) {
    let op = (va >> 12) & ((1 << 44) - 1);
    if asid == 0 {
        TLBI_KERNEL_PAGE.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as in `flush_all`, for one address under every ASID,
        // global translations included (the kernel's pages).
        unsafe {
            asm!("dsb ishst", "tlbi vaae1, {}", "dsb ish", "isb",
                 in(reg) op, options(nostack))
        };
    } else {
        TLBI_PAGE.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as in `flush_all`, for one address of one ASID.
        unsafe {
            asm!("dsb ishst", "tlbi vae1, {}", "dsb ish", "isb",
                 in(reg) op | asid << 48, options(nostack))
        };
    }
}

/// After a page fault the core served: the new entry's store completes
/// before the access is retried (the architecture caches no invalid
/// entry, so no invalidation is needed).
pub fn fault_served() {
    // SAFETY: a barrier; no register or memory touched.
    unsafe { asm!("dsb ish", "isb", options(nostack)) };
}

/// The TLB of the running CPU.
pub struct ArmTlb;

impl Cpus for ArmTlb {
    fn cpu_count(&self) -> usize {
        CPU_COUNT.load(Ordering::Relaxed)
    }

    fn current_cpu(&self) -> Option<CpuId> {
        Some(cpu_id())
    }
}

impl Tlb for ArmTlb {
    fn invalidate_local(&self, what: Invalidation) {
        crate::stats::LOCAL_FLUSHES.fetch_add(1, Ordering::Relaxed);
        match what {
            Invalidation::All | Invalidation::Asid(Asid::KERNEL) => flush_all(),
            Invalidation::Asid(a) => tlbi_asid(a.0 as u64),
            Invalidation::Pages { asid, range } => {
                if range.count > RANGE_LIMIT {
                    if asid == Asid::KERNEL {
                        flush_all();
                    } else {
                        tlbi_asid(asid.0 as u64);
                    }
                    return;
                }
                for i in 0..range.count {
                    tlbi_page(range.start.add(i).start().as_u64(), asid.0 as u64);
                }
            }
        }
    }

    fn install(&self, root: Frame, asid: Asid) {
        TTBR0_WRITES.fetch_add(1, Ordering::Relaxed);
        if asid == Asid::KERNEL {
            let empty = &EMPTY as *const Empty as u64 - DIRECT_MAP;
            // SAFETY: `root` is the kernel space's table (the TTBR1 half:
            // the direct map holding this code, its stack and data, adopted
            // from the boot table, and the kernel areas); `empty` is a
            // zeroed, 4 KiB-aligned static table: the user half maps
            // nothing under ASID 0, so nothing is cached for it. The core
            // flushes what the switch needs right after.
            unsafe {
                asm!("dsb ishst", "msr ttbr1_el1, {k}", "msr ttbr0_el1, {u}", "isb",
                     k = in(reg) ttbr(root, Asid::KERNEL), u = in(reg) empty, options(nostack))
            };
        } else {
            TTBR0_USER_ASID.fetch_add(1, Ordering::Relaxed);
            // SAFETY: `root` is a user space's table (the TTBR0 half only),
            // the ASID aspace's (below 2^16, `TCR_EL1.AS` set when the CPU
            // has 16-bit ASIDs, see `asid_bits`); the kernel's half stays in
            // `TTBR1_EL1`, so the running code and its data stay mapped.
            // Entries the ASID may hold from another space are flushed by
            // the core right after (`System::switch`). No `nomem`: what
            // addresses mean changes.
            unsafe {
                asm!("dsb ishst", "msr ttbr0_el1, {}", "isb",
                     in(reg) ttbr(root, asid), options(nostack))
            };
        }
    }
}

/// The number of ASID bits the CPU implements (`ID_AA64MMFR0_EL1.ASIDBits`:
/// 0b0010 is 16, which the boot code turns on with `TCR_EL1.AS`; else 8).
pub fn asid_bits() -> u32 {
    let mmfr0: u64;
    // SAFETY: reads an identification register.
    unsafe { asm!("mrs {}, id_aa64mmfr0_el1", out(reg) mmfr0, options(nomem, nostack)) };
    if mmfr0 >> 4 & 0xf == 2 {
        16
    } else {
        8
    }
}
