//! The aspace `Machine` of this kernel: the direct map and the frame
//! allocator (`mm`), the architecture's TLB and page-table format
//! (`arch`), and shootdown by IPIs (`shootdown`).

use core::sync::atomic::AtomicUsize;

use aspace::{CpuSet, Invalidation, Layout, Machine, Shootdown};

use crate::arch::{ArchTlb, PageTableFormat, LAYOUT};
use crate::mm::{DirectMap, Frames, FRAMES};
use crate::sync::{RawSpin, RawSpinRw};

/// Number of CPUs the system runs (set once at boot).
pub static CPU_COUNT: AtomicUsize = AtomicUsize::new(1);

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
    tlb: ArchTlb,
    sd: IpiShootdown,
}

impl KMachine {
    /// The machine (all state lives in statics).
    pub const fn new() -> Self {
        Self {
            mem: DirectMap,
            tlb: ArchTlb,
            sd: IpiShootdown,
        }
    }
}

impl Machine for KMachine {
    type Lock = RawSpin;
    type RwLock = RawSpinRw;
    type Memory = DirectMap;
    type Frames = Frames;
    type Cpus = ArchTlb;
    type Tlb = ArchTlb;
    type Shootdown = IpiShootdown;
    type PageTable = PageTableFormat;

    fn memory(&self) -> &DirectMap {
        &self.mem
    }
    fn frames(&self) -> &Frames {
        &FRAMES
    }
    fn cpus(&self) -> &ArchTlb {
        &self.tlb
    }
    fn tlb(&self) -> &ArchTlb {
        &self.tlb
    }
    fn shootdown(&self) -> &IpiShootdown {
        &self.sd
    }
    fn layout(&self) -> Layout {
        LAYOUT
    }
    /// In a user page fault or system call waiting for other CPUs: parks
    /// the thread so other tasks run on this CPU; elsewhere, a spin that
    /// serves shootdown requests.
    fn relax(&self) {
        if !crate::sched::relax_parked() {
            crate::sync::relax();
        }
    }
    /// A fault waiting for a user pager sleeps, parked off the ready
    /// queue until the answer (see [`crate::sched::PagerSleep`]).
    fn pager_sleep(&self) -> Option<&'static dyn aspace::Sleep> {
        Some(&crate::sched::PagerSleep)
    }
}

/// The subsystem on this machine.
pub type System = aspace::System<KMachine>;
/// An address space on this machine.
pub type Space = aspace::AddressSpace<KMachine>;
