//! Set-up shared by the tests that drive `LinuxMm` on the simulator.

use aspace_linux::mm::{Layout, LinuxMm};
use aspace_sim::{Cpu, Sim, SimConfig, SimMachine};

/// Where the tests place their fixed mappings.
pub const BASE: u64 = 0x7000_0000_0000;

/// A 2-CPU, 16 MiB machine; a process map over a new space that CPU 0
/// runs (mmap base 1 GiB above [`BASE`]).
#[allow(dead_code)]
pub fn setup() -> (Sim, LinuxMm<SimMachine>, Cpu) {
    setup_on(2, 16 << 20)
}

/// [`setup`] on a machine of `cpus` CPUs and `memory` bytes.
#[allow(dead_code)]
pub fn setup_on(cpus: usize, memory: u64) -> (Sim, LinuxMm<SimMachine>, Cpu) {
    let sim = Sim::new(SimConfig {
        cpus,
        memory,
        ..SimConfig::default()
    })
    .unwrap();
    let space = sim.system().create().unwrap();
    let mut cpu = sim.cpu(0);
    cpu.switch_to(&space).unwrap();
    let mm = LinuxMm::new(
        sim.system().clone(),
        space,
        Layout::new(BASE + (1 << 30), 0x5555_0000_0000),
    );
    (sim, mm, cpu)
}

/// A small deterministic generator (xorshift64*) for the randomised tests:
/// fixed seeds, the same sequence on every machine.
#[allow(dead_code)]
pub struct Rng(pub u64);

#[allow(dead_code)]
impl Rng {
    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
