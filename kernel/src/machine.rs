//! The aspace `Machine` of this kernel: the direct map, the frame
//! allocator, the x86_64 TLB with PCIDs, and shootdown by IPIs.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use aspace::paging::x86_64::X86_64PageTable;
use aspace::{Asid, CpuId, CpuSet, Frame, Invalidation, Machine, Shootdown, Tlb};

use crate::arch::{cpu_id, cpuid, cr3, cr4, set_cr3, set_cr4};
use crate::mm::{DirectMap, Frames, FRAMES};
use crate::sync::RawSpin;

/// Number of CPUs the system runs (set once at boot).
pub static CPU_COUNT: AtomicUsize = AtomicUsize::new(1);
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
    unsafe { set_cr4(c) };
    PCID.store(f.pcid, Ordering::Relaxed);
    INVPCID.store(f.invpcid, Ordering::Relaxed);
    f
}

/// Flushes every TLB entry of this CPU, global ones and all PCIDs.
pub fn flush_all() {
    let c = cr4();
    unsafe {
        set_cr4(c & !CR4_PGE);
        set_cr4(c);
    }
}

unsafe fn invpcid(kind: u64, pcid: u64, addr: u64) {
    let desc: [u64; 2] = [pcid, addr];
    asm!("invpcid {}, [{}]", in(reg) kind, in(reg) &desc, options(nostack));
}

fn invlpg(addr: u64) {
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
    fn with_pcid(asid: Asid, flush: bool, f: impl FnOnce()) {
        let old = cr3();
        let root = old & !0xfff & !CR3_NOFLUSH;
        unsafe {
            set_cr3(root | asid.0 as u64 | if flush { 0 } else { CR3_NOFLUSH });
            f();
            set_cr3(root | (old & 0xfff) | CR3_NOFLUSH);
        }
    }

    fn flush_asid(asid: Asid) {
        if !PCID.load(Ordering::Relaxed) {
            // Without PCIDs only the current space's entries can be cached.
            unsafe { set_cr3(cr3()) };
            return;
        }
        if INVPCID.load(Ordering::Relaxed) {
            unsafe { invpcid(1, asid.0 as u64, 0) };
        } else if (cr3() & 0xfff) as u16 == asid.0 {
            unsafe { set_cr3(cr3() & !0xfff & !CR3_NOFLUSH | asid.0 as u64) };
        } else {
            Self::with_pcid(asid, true, || {});
        }
    }
}

impl Tlb for X86Tlb {
    fn cpu_count(&self) -> usize {
        CPU_COUNT.load(Ordering::Relaxed)
    }

    fn current_cpu(&self) -> Option<CpuId> {
        Some(cpu_id())
    }

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
            // Stale entries of the ASID were flushed by the core before.
            v |= asid.0 as u64 | CR3_NOFLUSH;
        }
        unsafe { set_cr3(v) };
    }
}

/// Shootdown by IPIs (see [`crate::shootdown`]).
pub struct IpiShootdown;

impl Shootdown for IpiShootdown {
    fn shootdown(&self, targets: CpuSet, what: Invalidation) -> usize {
        crate::shootdown::shootdown(targets, what)
    }
}

/// The machine.
pub struct KMachine {
    mem: DirectMap,
    tlb: X86Tlb,
    sd: IpiShootdown,
}

impl KMachine {
    /// The machine (all state lives in statics).
    pub const fn new() -> Self {
        Self {
            mem: DirectMap,
            tlb: X86Tlb,
            sd: IpiShootdown,
        }
    }
}

impl Machine for KMachine {
    type Lock = RawSpin;
    type Memory = DirectMap;
    type Frames = Frames;
    type Tlb = X86Tlb;
    type Shootdown = IpiShootdown;
    type PageTable = X86_64PageTable;

    fn memory(&self) -> &DirectMap {
        &self.mem
    }
    fn frames(&self) -> &Frames {
        &FRAMES
    }
    fn tlb(&self) -> &X86Tlb {
        &self.tlb
    }
    fn shootdown(&self) -> &IpiShootdown {
        &self.sd
    }
}

/// The subsystem on this machine.
pub type System = aspace::System<KMachine>;
/// An address space on this machine.
pub type Space = aspace::AddressSpace<KMachine>;
