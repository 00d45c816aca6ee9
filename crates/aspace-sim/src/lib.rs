//! A simulated multi-CPU machine that runs the [`aspace`] core for real:
//! physical memory, a frame allocator that counts frames, a software MMU
//! per CPU that walks the page tables of the chosen architecture (x86_64,
//! RISC-V Sv39 or Sv48, AArch64: [`Arch`]) and caches translations in an
//! ASID-tagged TLB, and shootdown IPIs between CPUs.
//!
//! ```
//! use aspace::{AreaFlags, VirtAddr};
//! use aspace_sim::{Sim, SimConfig};
//!
//! let sim = Sim::new(SimConfig::default()).unwrap();
//! let space = sim.system().create().unwrap();
//! let base = VirtAddr::new(0x40_0000);
//! space.area_create(base, 0x4000, AreaFlags::READ | AreaFlags::WRITE).unwrap();
//!
//! let mut cpu = sim.cpu(0);
//! cpu.switch_to(&space).unwrap();
//! cpu.write_u64(base, 42).unwrap(); // faults in a zeroed frame
//! assert_eq!(cpu.read_u64(base).unwrap(), 42);
//! assert_eq!(space.resident_pages(), 1);
//! print!("{}", space.map());
//! ```
#![warn(missing_docs)]

pub mod alloc_count;
pub mod cpu;
pub mod frames;
pub mod hardware;
pub mod heap;
mod host_memory;
pub mod memory;
pub mod mmu;
pub mod pager;
pub mod paging;
pub mod sleep;
pub mod snapshot;
pub mod tlb;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use aspace::{Config, System};

pub use cpu::{AccessFault, Cpu, Space, SpaceHandle};
pub use frames::{FramePool, FrameStats};
pub use hardware::{HwStats, SimHardware, SimMachine};
pub use memory::PhysMem;
pub use mmu::Arch;
pub use paging::SimPageTable;
pub use tlb::TlbEntry;

/// Size of the simulated machine.
#[derive(Clone, Copy, Debug)]
pub struct SimConfig {
    /// The architecture: page-table format, MMU walk and TLB instructions.
    pub arch: Arch,
    /// Number of CPUs (1..=64).
    pub cpus: usize,
    /// Physical memory in bytes.
    pub memory: u64,
    /// Number of user ASIDs (at least `cpus`).
    pub asids: u16,
    /// Entries per TLB.
    pub tlb_entries: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            arch: Arch::X86_64,
            cpus: 2,
            memory: 64 << 20,
            asids: 64,
            tlb_entries: 64,
        }
    }
}

/// A simulated machine with the address-space subsystem running on it.
pub struct Sim {
    hw: Arc<SimHardware>,
    system: Arc<System<SimMachine>>,
}

impl Sim {
    /// Builds the machine and starts the subsystem on it. Fails with
    /// `InvalidArgument` for 0 or more than 64 CPUs, fewer ASIDs than CPUs,
    /// or memory too small for the kernel's page table.
    pub fn new(config: SimConfig) -> aspace::Result<Sim> {
        if config.cpus == 0 || config.cpus > 64 || config.memory < 2 * aspace::PAGE_SIZE {
            return Err(aspace::Error::InvalidArgument);
        }
        let hw = Arc::new(SimHardware::new(
            config.arch,
            config.cpus,
            config.memory,
            config.tlb_entries,
        ));
        let system = System::new(
            SimMachine(hw.clone()),
            Config {
                asids: config.asids,
                ..Config::default()
            },
        )?;
        Ok(Sim {
            hw,
            system: Arc::new(system),
        })
    }

    /// The address-space subsystem.
    pub fn system(&self) -> &Arc<System<SimMachine>> {
        &self.system
    }

    /// The hardware: memory, frames, TLBs, counters.
    pub fn hardware(&self) -> &SimHardware {
        &self.hw
    }

    /// Frames in use now (page tables included).
    pub fn frames_in_use(&self) -> u64 {
        self.hw.frames.in_use()
    }

    /// Takes CPU `id` for the calling thread (a CPU is driven by one thread
    /// at a time).
    ///
    /// # Panics
    /// If `id` is out of range or the CPU is already taken.
    pub fn cpu(&self, id: usize) -> Cpu {
        assert!(id < self.hw.cpus.len(), "no CPU {id}");
        let taken = self.hw.cpus[id].attached.swap(true, Relaxed);
        assert!(!taken, "CPU {id} is already driven by another handle");
        Cpu::new(self.hw.clone(), self.system.clone(), id)
    }
}
