//! The simulated machine's hardware: memory, frames, and per-CPU
//! translation state (page-table root, ASID, TLB), with the [`aspace`]
//! machine traits implemented on it.
//!
//! IPIs: a CPU holds its core lock for the whole of each simulated memory
//! access (translation and the physical load or store), which makes every
//! access one indivisible instruction. A shootdown IPI is delivered by the
//! sender taking the target's core lock, so it runs on the target between
//! two instructions, as an interrupt would, and the sender returns only when
//! the target's TLB has been flushed.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex as HostMutex};

use aspace::{Asid, CpuId, CpuSet, Cpus, Frame, Invalidation, Machine, Shootdown, Tlb};
use parking_lot::Mutex;

use crate::frames::FramePool;
use crate::memory::PhysMem;
use crate::mmu::{self, Arch, Roots};
use crate::paging::SimPageTable;
use crate::sleep::{HostSleep, SleepStats};
use crate::tlb::{SimTlb, TlbEntry};

thread_local! {
    /// (hardware id, CPU) the current thread is executing as.
    static CURRENT: Cell<(u64, usize)> = const { Cell::new((0, 0)) };
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Translation state of one CPU.
pub(crate) struct CoreState {
    pub roots: Roots,
    pub asid: Asid,
    pub tlb: SimTlb,
}

pub(crate) struct CpuSlot {
    pub core: Mutex<CoreState>,
    pub ipis_received: AtomicU64,
    pub attached: AtomicBool,
}

/// Counters of the simulated hardware.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HwStats {
    /// Translations served by a TLB.
    pub tlb_hits: u64,
    /// Translations that needed a page-table walk.
    pub tlb_misses: u64,
    /// Page faults raised to the core.
    pub faults: u64,
    /// IPIs delivered.
    pub ipis: u64,
    /// Accesses through a TLB entry whose frame had been freed since the
    /// entry was filled. Must stay zero.
    pub stale_accesses: u64,
    /// Instruction fetches from a frame the kernel wrote and did not sync
    /// for instruction fetches since ([`aspace::PhysMemory::sync_icache`];
    /// see [`PhysMem`]). Must stay zero.
    pub stale_fetches: u64,
    /// Rounds the core spent waiting for other CPUs ([`Machine::relax`]).
    pub relaxes: u64,
}

/// Memory, frames and CPUs of one simulated machine.
pub struct SimHardware {
    id: u64,
    pub(crate) arch: Arch,
    pub(crate) mem: PhysMem,
    pub(crate) frames: FramePool,
    pub(crate) cpus: Vec<CpuSlot>,
    pub(crate) tlb_hits: AtomicU64,
    pub(crate) tlb_misses: AtomicU64,
    pub(crate) faults: AtomicU64,
    pub(crate) ipis: AtomicU64,
    pub(crate) stale: AtomicU64,
    pub(crate) stale_fetches: AtomicU64,
    pub(crate) relaxes: AtomicU64,
    /// Faults waiting for a user pager poll with `relax` rather than sleep.
    pager_polls: AtomicBool,
    /// Where they sleep otherwise: one per machine, taken with it (not in a
    /// fault, where a test may refuse the heap) from the sleeps of machines
    /// that are gone ([`SPARE_SLEEPS`]), or made and kept for the rest of
    /// the process (the core keeps `&'static` ones).
    pager_sleep: &'static HostSleep,
}

/// The pager sleeps of simulated machines that are gone, for the next ones
/// to take: the process keeps as many as machines ever lived at once, not
/// one per machine made.
static SPARE_SLEEPS: HostMutex<Vec<&'static HostSleep>> = HostMutex::new(Vec::new());

impl Drop for SimHardware {
    fn drop(&mut self) {
        // Nothing of this machine sleeps on it any more (a sleeping fault
        // holds the machine, and so do the pager requests that wake it).
        // The pool's room is not one of a test's counted allocations (kept
        // for good instead if the heap refuses it).
        let mut spare = SPARE_SLEEPS.lock().unwrap_or_else(|e| e.into_inner());
        if crate::heap::exempt(|| spare.try_reserve(1)).is_ok() {
            spare.push(self.pager_sleep);
        }
    }
}

/// Guard that makes the current thread execute as a CPU until dropped.
pub(crate) struct OnCpu {
    prev: (u64, usize),
}

impl Drop for OnCpu {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.prev));
    }
}

impl SimHardware {
    /// A machine of `arch` with `cpus` CPUs, `memory` bytes of physical
    /// memory and `tlb_entries` entries in each CPU's TLB, its subsystem not
    /// started ([`Sim::new`](crate::Sim::new) does both).
    pub fn new(arch: Arch, cpus: usize, memory: u64, tlb_entries: usize) -> Self {
        let mem = PhysMem::new(memory);
        let frames = FramePool::new(mem.frames());
        Self {
            id: NEXT_ID.fetch_add(1, Relaxed),
            arch,
            mem,
            frames,
            cpus: (0..cpus)
                .map(|_| CpuSlot {
                    core: Mutex::new(CoreState {
                        roots: Roots::default(),
                        asid: Asid::KERNEL,
                        tlb: SimTlb::new(tlb_entries),
                    }),
                    ipis_received: AtomicU64::new(0),
                    attached: AtomicBool::new(false),
                })
                .collect(),
            tlb_hits: AtomicU64::new(0),
            tlb_misses: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            ipis: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            stale_fetches: AtomicU64::new(0),
            relaxes: AtomicU64::new(0),
            pager_polls: AtomicBool::new(false),
            pager_sleep: Self::spare_sleep(),
        }
    }

    /// A pager sleep for a new machine: a gone machine's, its counters
    /// cleared, or a new one.
    fn spare_sleep() -> &'static HostSleep {
        let spare = SPARE_SLEEPS.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match spare {
            Some(s) => {
                s.clear_stats();
                s
            }
            None => Box::leak(Box::default()),
        }
    }

    /// The counters of this machine's pager sleep.
    pub fn sleep_stats(&self) -> SleepStats {
        self.pager_sleep.stats()
    }

    /// Whether faults waiting for a user pager poll, calling
    /// [`Machine::relax`] in each round, instead of sleeping on the
    /// machine's [`HostSleep`] (the default): both ways
    /// of [`Machine::pager_sleep`] can be tested. A request keeps the way
    /// it was made with.
    pub fn set_pager_polling(&self, poll: bool) {
        self.pager_polls.store(poll, Relaxed);
    }

    pub(crate) fn enter(&self, cpu: usize) -> OnCpu {
        let prev = CURRENT.with(|c| c.replace((self.id, cpu)));
        OnCpu { prev }
    }

    /// The architecture: page-table format, MMU walk, TLB instructions.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// Physical memory.
    pub fn memory(&self) -> &PhysMem {
        &self.mem
    }

    /// The frame allocator.
    pub fn frames(&self) -> &FramePool {
        &self.frames
    }

    /// Counters now.
    pub fn stats(&self) -> HwStats {
        HwStats {
            tlb_hits: self.tlb_hits.load(Relaxed),
            tlb_misses: self.tlb_misses.load(Relaxed),
            faults: self.faults.load(Relaxed),
            ipis: self.ipis.load(Relaxed),
            stale_accesses: self.stale.load(Relaxed),
            stale_fetches: self.stale_fetches.load(Relaxed),
            relaxes: self.relaxes.load(Relaxed),
        }
    }

    /// Moves the calling thread, in the middle of whatever it runs as a CPU,
    /// onto CPU `cpu`: what a kernel whose locks sleep may do to a task
    /// between any two instructions. For tests of code that must not
    /// assume it stays on one CPU. The CPU the thread ran as before comes
    /// back when the enclosing step (an access, [`Cpu::run`](crate::Cpu::run))
    /// ends.
    pub fn migrate_current(&self, cpu: CpuId) {
        assert!(cpu < self.cpus.len(), "no CPU {cpu}");
        CURRENT.with(|c| c.set((self.id, cpu)));
    }

    /// IPIs CPU `cpu` has received.
    pub fn ipis_received(&self, cpu: CpuId) -> u64 {
        self.cpus[cpu].ipis_received.load(Relaxed)
    }

    /// A copy of CPU `cpu`'s TLB.
    pub fn tlb_entries(&self, cpu: CpuId) -> Vec<TlbEntry> {
        self.cpus[cpu].core.lock().tlb.entries().to_vec()
    }

    /// The ASID loaded on CPU `cpu`.
    pub fn loaded_asid(&self, cpu: CpuId) -> Asid {
        self.cpus[cpu].core.lock().asid
    }
}

impl Cpus for SimHardware {
    fn cpu_count(&self) -> usize {
        self.cpus.len()
    }

    #[inline]
    fn current_cpu(&self) -> Option<CpuId> {
        let (id, cpu) = CURRENT.with(|c| c.get());
        (id == self.id).then_some(cpu)
    }
}

impl Tlb for SimHardware {
    fn invalidate_local(&self, what: Invalidation) {
        if let Some(cpu) = self.current_cpu() {
            mmu::invalidate(self.arch, &mut self.cpus[cpu].core.lock().tlb, what);
        }
    }

    fn install(&self, root: Frame, asid: Asid) {
        let cpu = self.current_cpu().expect("install runs on a CPU");
        let mut core = self.cpus[cpu].core.lock();
        if self.arch == Arch::Aarch64 && asid == Asid::KERNEL {
            // The kernel's table is TTBR1_EL1's; its space has no low half
            // (TTBR0 walks disabled).
            core.roots = Roots {
                user: None,
                kernel: Some(root),
            };
        } else {
            core.roots.user = Some(root);
        }
        core.asid = asid;
    }
}

impl Shootdown for SimHardware {
    fn shootdown(&self, targets: CpuSet, what: Invalidation) -> usize {
        let me = self.current_cpu();
        let mut sent = 0;
        for cpu in targets
            .iter()
            .filter(|&c| c < self.cpus.len() && Some(c) != me)
        {
            // Delivered between two instructions of the target: see the
            // module documentation.
            mmu::invalidate(self.arch, &mut self.cpus[cpu].core.lock().tlb, what);
            self.cpus[cpu].ipis_received.fetch_add(1, Relaxed);
            sent += 1;
        }
        self.ipis.fetch_add(sent as u64, Relaxed);
        sent
    }
}

/// The [`Machine`] the core runs on in the simulator.
#[derive(Clone)]
pub struct SimMachine(pub(crate) Arc<SimHardware>);

impl SimMachine {
    /// The machine made of `hw` (what [`Sim::new`](crate::Sim::new) starts
    /// the subsystem on; for starting one by hand).
    pub fn new(hw: Arc<SimHardware>) -> Self {
        Self(hw)
    }
    /// The hardware.
    pub fn hardware(&self) -> &SimHardware {
        &self.0
    }
}

/// How a simulated CPU waits for a lock: its CPUs are host threads, more
/// of them than cores, so it lets the holder run.
pub struct YieldThread;

impl aspace::spin::Relax for YieldThread {
    fn relax() {
        std::thread::yield_now();
    }
}

impl Machine for SimMachine {
    /// A spinning lock, as a kernel's, released by a store (see
    /// [`aspace::spin`]).
    type Lock = aspace::spin::RawSpin<YieldThread>;
    /// A spinning reader-writer lock, as a kernel's.
    type RwLock = aspace::spin::RawSpinRw<YieldThread>;
    type Memory = PhysMem;
    type Frames = FramePool;
    type Cpus = SimHardware;
    type Tlb = SimHardware;
    type Shootdown = SimHardware;
    type PageTable = SimPageTable;

    fn memory(&self) -> &PhysMem {
        &self.0.mem
    }
    fn frames(&self) -> &FramePool {
        &self.0.frames
    }
    fn cpus(&self) -> &SimHardware {
        &self.0
    }
    fn tlb(&self) -> &SimHardware {
        &self.0
    }
    fn shootdown(&self) -> &SimHardware {
        &self.0
    }
    fn paging_mode(&self) -> Arch {
        self.0.arch
    }

    /// CPUs are host threads, fewer cores than CPUs: a waiting CPU lets the
    /// one it waits for run.
    fn relax(&self) {
        self.0.relaxes.fetch_add(1, Relaxed);
        std::thread::yield_now();
    }

    /// Faults waiting for a pager sleep on a host condition variable,
    /// unless [`SimHardware::set_pager_polling`] says poll.
    fn pager_sleep(&self) -> Option<&'static dyn aspace::Sleep> {
        if self.0.pager_polls.load(Relaxed) {
            return None;
        }
        Some(self.0.pager_sleep)
    }
}
