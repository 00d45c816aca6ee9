//! The static stacks of each CPU and the set of CPUs started (and the wait
//! for one to start), for the ports whose CPUs start on a stack the boot
//! CPU hands them (riscv64, aarch64): a kernel trap stack, the idle loop's
//! stack, and the boot stack a secondary CPU starts on (its top published
//! in `AP_STACK_TOPS`, which the port's start-up assembly reads by that
//! name).

use core::sync::atomic::{AtomicU64, Ordering};

use super::MAX_CPUS;
use aspace::CpuSet;

const KSTACK: usize = 64 * 1024;
const IDLE: usize = 16 * 1024;
const BOOT: usize = 64 * 1024;

#[repr(C, align(16))]
struct Stacks {
    kernel: [u8; KSTACK],
    idle: [u8; IDLE],
    boot: [u8; BOOT],
}

static mut STACKS: [Stacks; MAX_CPUS] = [const {
    Stacks {
        kernel: [0; KSTACK],
        idle: [0; IDLE],
        boot: [0; BOOT],
    }
}; MAX_CPUS];

/// The boot stack of each secondary CPU (read by the start-up assembly).
#[no_mangle]
static AP_STACK_TOPS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// The tops of CPU `cpu`'s stacks (kernel trap stack, idle stack); its
/// boot stack's top is published for the start-up assembly.
pub fn stack_tops(cpu: usize) -> (u64, u64) {
    // SAFETY: only addresses are computed (`&raw`, bounds-checked index);
    // nothing is read or referenced.
    let s = unsafe { &raw const STACKS[cpu] };
    // SAFETY: field projections of the same place, addresses only.
    let (k, i, b) = unsafe {
        (
            (&raw const (*s).kernel) as u64 + KSTACK as u64,
            (&raw const (*s).idle) as u64 + IDLE as u64,
            (&raw const (*s).boot) as u64 + BOOT as u64,
        )
    };
    AP_STACK_TOPS[cpu].store(b, Ordering::Release);
    (k, i)
}

static ONLINE: AtomicU64 = AtomicU64::new(0);

/// The CPUs started.
pub fn online() -> CpuSet {
    CpuSet(ONLINE.load(Ordering::Acquire))
}

/// Counts CPU `cpu` as started.
pub fn set_online(cpu: usize) {
    ONLINE.fetch_or(1 << cpu, Ordering::AcqRel);
}

/// Waits (a bounded spin) until CPU `cpu`, just asked to start, counts
/// itself started; whether it did.
pub fn wait_online(cpu: usize) -> bool {
    let mut spins = 0u64;
    while !online().contains(cpu) && spins < 200_000_000 {
        core::hint::spin_loop();
        spins += 1;
    }
    online().contains(cpu)
}
