//! The local APIC (xAPIC, memory mapped): enabling, end of interrupt, the
//! timer, IPIs, INIT-SIPI-SIPI, and a delay loop on the timer.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use aspace::CpuSet;

use super::regs::{phys_to_virt, rdmsr, MAX_CPUS};

const REG_ID: usize = 0x20;
const REG_TPR: usize = 0x80;
const REG_EOI: usize = 0xb0;
const REG_SVR: usize = 0xf0;
const REG_ICR_LO: usize = 0x300;
const REG_ICR_HI: usize = 0x310;
const REG_LVT_TIMER: usize = 0x320;
const REG_TIMER_INIT: usize = 0x380;
const REG_TIMER_CUR: usize = 0x390;
const REG_TIMER_DIV: usize = 0x3e0;

static BASE: AtomicU64 = AtomicU64::new(0xfee0_0000);
/// APIC ID of each CPU number.
static APIC_IDS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(u32::MAX) }; MAX_CPUS];
static ONLINE: AtomicU64 = AtomicU64::new(0);

fn reg(off: usize) -> *mut u32 {
    phys_to_virt(BASE.load(Ordering::Relaxed) + off as u64) as *mut u32
}

/// Reads the register at `off`, one of the `REG_*` offsets.
fn read(off: usize) -> u32 {
    // SAFETY: `off` is one of the REG_* offsets (the only callers are in this
    // module), so the pointer is a 16-byte aligned register in this CPU's
    // local APIC page. BASE is the default 0xfee0_0000 or the base read from
    // IA32_APIC_BASE (the kernel assumes, as documented, that it stays below
    // 4 GiB), and the direct map covers the first 4 GiB, the last one
    // uncached, in the boot tables and in every aspace table. It is MMIO
    // outside any Rust allocation, hence volatile; none of the registers
    // read here has a read side effect.
    unsafe { reg(off).read_volatile() }
}

/// Writes `v` to the register at `off`, one of the `REG_*` offsets.
fn write(off: usize, v: u32) {
    // SAFETY: as in `read`, the pointer is an aligned, mapped, uncached
    // register of the local APIC (MMIO, not Rust memory). Each caller writes
    // a value meant for that register (EOI, timer, ICR, SVR, TPR).
    unsafe { reg(off).write_volatile(v) }
}

/// This CPU's APIC ID.
pub fn id() -> u32 {
    read(REG_ID) >> 24
}

/// Records the APIC ID `apic` for CPU number `cpu` (from the MADT).
pub fn set_apic_id(cpu: usize, apic: u32) {
    APIC_IDS[cpu].store(apic, Ordering::Relaxed);
}

/// The APIC ID of CPU `cpu`.
pub fn apic_id(cpu: usize) -> u32 {
    APIC_IDS[cpu].load(Ordering::Relaxed)
}

/// Records the running CPU as online under number `id`.
pub fn register_cpu(id: usize) {
    ONLINE.fetch_or(1 << id, Ordering::AcqRel);
}

/// CPUs that have come up.
pub fn online() -> CpuSet {
    CpuSet(ONLINE.load(Ordering::Acquire))
}

/// The CPU number of the running CPU from its APIC ID.
pub fn cpu_from_apic_id() -> usize {
    let me = id();
    (0..MAX_CPUS)
        .find(|&c| APIC_IDS[c].load(Ordering::Relaxed) == me)
        .unwrap_or(0)
}

/// Remaps the legacy 8259 PICs to vectors 0xe0-0xef (away from the
/// exceptions) and masks every line: the local APICs deliver everything.
pub fn disable_pic() {
    use super::regs::outb;
    // SAFETY: 0x20/0x21 and 0xa0/0xa1 are the command and data ports of the
    // master and slave 8259 PICs; this is their standard initialisation
    // (ICW1-ICW4: edge triggered, vectors 0xe0/0xe8, cascade on line 2,
    // 8086 mode) followed by masking all lines. Interrupts are off and the
    // PICs do no DMA, so no memory or running code is affected.
    unsafe {
        outb(0x20, 0x11);
        outb(0xa0, 0x11);
        outb(0x21, 0xe0);
        outb(0xa1, 0xe8);
        outb(0x21, 4);
        outb(0xa1, 2);
        outb(0x21, 1);
        outb(0xa1, 1);
        outb(0x21, 0xff);
        outb(0xa1, 0xff);
    }
}

/// Enables this CPU's local APIC with the spurious vector.
pub fn init() {
    // SAFETY: MSR 0x1b is IA32_APIC_BASE, present on every CPU with a local
    // APIC (which the kernel requires); reading it has no side effect.
    let base = unsafe { rdmsr(0x1b) } & 0xf_ffff_f000;
    BASE.store(base, Ordering::Relaxed);
    write(REG_TPR, 0);
    write(REG_SVR, 0x100 | super::cpu::VEC_SPURIOUS as u32);
}

/// Signals the end of an interrupt.
pub fn eoi() {
    write(REG_EOI, 0);
}

fn wait_icr() {
    while read(REG_ICR_LO) & (1 << 12) != 0 {
        core::hint::spin_loop();
    }
}

fn send(apic: u32, low: u32) {
    wait_icr();
    write(REG_ICR_HI, apic << 24);
    write(REG_ICR_LO, low);
    wait_icr();
}

/// Sends a fixed interrupt `vector` to CPU `cpu`.
pub fn send_ipi(cpu: usize, vector: u8) {
    send(apic_id(cpu), vector as u32 | 1 << 14);
}

/// INIT-SIPI-SIPI: starts CPU `cpu` at real-mode address `page << 12`.
pub fn start_cpu(cpu: usize, page: u8) {
    let apic = apic_id(cpu);
    send(apic, 0x4500); // INIT, assert, level
    delay_us(10_000);
    for _ in 0..2 {
        send(apic, 0x4600 | page as u32); // STARTUP
        delay_us(200);
    }
}

/// Timer ticks per microsecond at divider 16 (QEMU's APIC runs at 1 GHz).
const TICKS_PER_US: u32 = 1_000 / 16;

/// Busy-waits `us` microseconds on the APIC timer (one-shot, masked).
pub fn delay_us(us: u32) {
    write(REG_TIMER_DIV, 0x3);
    write(REG_LVT_TIMER, 1 << 16);
    write(REG_TIMER_INIT, us.saturating_mul(TICKS_PER_US).max(1));
    while read(REG_TIMER_CUR) != 0 {
        core::hint::spin_loop();
    }
}

/// Starts the periodic timer interrupt every `us` microseconds.
pub fn start_timer(us: u32) {
    write(REG_TIMER_DIV, 0x3);
    write(REG_LVT_TIMER, super::cpu::VEC_TIMER as u32 | 1 << 17);
    write(REG_TIMER_INIT, us.saturating_mul(TICKS_PER_US));
}
