//! QEMU virt's GICv2: the distributor at 0x0800_0000 and the CPU
//! interface at 0x0801_0000 (through the direct map, device memory). The
//! kernel uses two interrupts: the virtual timer's PPI and one
//! software-generated interrupt for IPIs (shootdown requests and
//! scheduler wake-ups).

use core::sync::atomic::{AtomicU8, Ordering};

use super::{cpu_id, phys_to_virt, MAX_CPUS};

const GICD: u64 = 0x0800_0000;
const GICC: u64 = 0x0801_0000;

const GICD_CTLR: u64 = 0x000;
const GICD_ISENABLER0: u64 = 0x100;
const GICD_IPRIORITYR: u64 = 0x400;
const GICD_ITARGETSR0: u64 = 0x800;
const GICD_SGIR: u64 = 0xf00;
const GICC_CTLR: u64 = 0x000;
const GICC_PMR: u64 = 0x004;
const GICC_IAR: u64 = 0x00c;
const GICC_EOIR: u64 = 0x010;

/// The software-generated interrupt carrying IPIs.
pub const SGI_IPI: u32 = 0;
/// The EL1 virtual timer's private peripheral interrupt.
pub const TIMER_PPI: u32 = 27;
/// The interrupt ID read when nothing is pending.
const SPURIOUS: u32 = 1023;

/// Each CPU's interface bit (`GICD_ITARGETSR0`'s byte, read by that CPU).
static TARGET: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];

fn reg(base: u64, off: u64) -> *mut u32 {
    phys_to_virt(base + off) as *mut u32
}

fn write(base: u64, off: u64, v: u32) {
    // SAFETY: a 32-bit register of the GIC (distributor or CPU interface)
    // through the direct map's device-memory gigabyte: MMIO outside any
    // Rust allocation, hence volatile. The GIC does no DMA.
    unsafe { reg(base, off).write_volatile(v) }
}

fn read(base: u64, off: u64) -> u32 {
    // SAFETY: as in `write`; the registers read here (ITARGETSR, IAR) have
    // no side effect but IAR's acknowledge, which the caller wants.
    unsafe { reg(base, off).read_volatile() }
}

/// Turns the distributor on (boot CPU, once).
pub fn init() {
    write(GICD, GICD_CTLR, 1);
}

/// This CPU's side: its interface bit, the SGI and the timer PPI enabled
/// (the banked enable register), the CPU interface on, every priority
/// let through.
pub fn init_cpu() {
    let me = read(GICD, GICD_ITARGETSR0) as u8;
    TARGET[cpu_id()].store(me, Ordering::Relaxed);
    for id in [SGI_IPI, TIMER_PPI] {
        // SAFETY: one priority byte of a banked (per CPU) interrupt of the
        // distributor, through the direct map (see `write`).
        unsafe {
            (phys_to_virt(GICD + GICD_IPRIORITYR + id as u64)).write_volatile(0x80);
        }
    }
    write(GICD, GICD_ISENABLER0, 1 << SGI_IPI | 1 << TIMER_PPI);
    write(GICC, GICC_PMR, 0xff);
    write(GICC, GICC_CTLR, 1);
}

/// Sends software-generated interrupt `id` to CPU `cpu`.
pub fn send_sgi(cpu: usize, id: u32) {
    let mut target = TARGET[cpu].load(Ordering::Relaxed) as u32;
    if target == 0 {
        // Not initialised yet: QEMU virt's interface numbers follow the
        // CPU indices.
        target = 1 << cpu;
    }
    // SAFETY: the write of the request to memory (the shootdown's request
    // or the wake-up flag) is ordered before the interrupt.
    unsafe { core::arch::asm!("dsb ishst", options(nostack)) };
    write(GICD, GICD_SGIR, target << 16 | id);
}

/// Acknowledges the highest-priority pending interrupt: its `GICC_IAR`
/// value (the ID in bits 9:0), or `None` when it was spurious.
pub fn acknowledge() -> Option<u32> {
    let iar = read(GICC, GICC_IAR);
    (iar & 0x3ff != SPURIOUS).then_some(iar)
}

/// Ends the interrupt `iar` (an SGI before serving it, so that another
/// one arriving meanwhile is not lost; the timer once rearmed).
pub fn end(iar: u32) {
    write(GICC, GICC_EOIR, iar);
}
