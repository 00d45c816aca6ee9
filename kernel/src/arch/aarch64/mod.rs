//! AArch64 on QEMU's `virt` machine: an EL1 kernel (QEMU emulates neither
//! EL2 nor EL3 here and answers PSCI calls made with `hvc`), 4-level
//! 48-bit page tables in the core's `paging::aarch64` format (the kernel's
//! table in `TTBR1_EL1`, each user table in `TTBR0_EL1` with a 16-bit
//! ASID), EL0 tasks entered with `eret`, system calls by `svc #0`, the
//! virtual generic timer, IPIs as GICv2 software-generated interrupts,
//! and the other CPUs started with PSCI `CPU_ON`.
//!
//! QEMU virt's layout is hard-coded (the device tree, which QEMU puts at
//! the start of RAM for an ELF kernel, is read only for the command line
//! and the RAM size): RAM from 0x4000_0000 (the kernel loaded at
//! 0x4020_0000), the PL011 UART at 0x0900_0000, the GICv2 distributor at
//! 0x0800_0000 and CPU interface at 0x0801_0000. CPUs are found by asking
//! PSCI `AFFINITY_INFO` about MPIDRs 0 to `MAX_CPUS - 1` (QEMU virt gives
//! CPU `i` the affinity `i`).

mod boot;
#[path = "../riscv64/fdt.rs"]
mod fdt;
mod gic;
mod park;
mod psci;
pub mod serial;
mod tlb;
mod trap;

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use super::cpu_stacks;

use aspace::{Machine, PhysAddr, PhysMemory};

pub use self::park::{
    park_resume, park_switch, replace_trap_stack, stack_pointer, trap_stack_tops, TRAP_STACK_SIZE,
};
pub use self::tlb::{flush_all, sync_icache, ArmTlb as ArchTlb};
pub use self::trap::{enter, idle_frame, TrapFrame};
use crate::machine::System;
use crate::mm::{self, FRAMES};
use crate::{kprintln, SYSTEM};

/// Most CPUs the kernel supports.
pub const MAX_CPUS: usize = 8;
/// Virtual address of physical address 0: the start of the `TTBR1_EL1`
/// half (48-bit).
pub const DIRECT_MAP: u64 = 0xffff_0000_0000_0000;
/// The frame allocator's window: QEMU virt's RAM.
pub const RAM_BASE: u64 = 0x4000_0000;
/// The page-table format: the core's AArch64 4 KiB-granule tables.
pub type PageTableFormat = aspace::paging::aarch64::Aarch64PageTable;
/// The user/kernel split: 256 TiB each, `TTBR0_EL1` and `TTBR1_EL1`.
pub const LAYOUT: aspace::Layout = aspace::Layout::AARCH64;
/// Top of every task's main stack (below the end of the user half).
pub const STACK_TOP: u64 = 0x0000_7fff_ffff_0000;
/// Where kernel areas (demand-paged kernel memory) live: level-0 slot 256
/// of the kernel's table, far from the direct map (slot 0).
pub const KERNEL_AREAS: u64 = 0xffff_8000_0000_0000;
/// The name of the instruction pointer in messages.
pub const PC_NAME: &str = "elr";
/// The name of the stack pointer in messages.
pub const SP_NAME: &str = "sp";

/// One CPU's record; `TPIDR_EL1` points to it in the kernel.
#[repr(C)]
pub struct Cpu {
    kstack_top: AtomicU64,
    cpu: AtomicU64,
    mpidr: AtomicU64,
    idle_top: AtomicU64,
}

static CPUS: [Cpu; MAX_CPUS] = [const {
    Cpu {
        kstack_top: AtomicU64::new(0),
        cpu: AtomicU64::new(0),
        mpidr: AtomicU64::new(0),
        idle_top: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// A CPU's stack tops, as the trap code needs them.
pub struct CpuStacks {
    /// Top of the kernel trap stack (EL0 traps enter on it).
    pub kstack_top: u64,
    /// Top of the idle loop's stack.
    pub idle_top: u64,
}

/// Makes `top` the kernel trap stack of CPU `cpu` (EL0 traps enter on
/// it); called by that CPU, in the kernel.
pub fn set_kstack_top(cpu: usize, top: u64) {
    CPUS[cpu].kstack_top.store(top, Ordering::Relaxed);
}

/// CPU `cpu`'s stack tops.
pub fn stacks(cpu: usize) -> CpuStacks {
    let rec = &CPUS[cpu];
    CpuStacks {
        kstack_top: rec.kstack_top.load(Ordering::Relaxed),
        idle_top: rec.idle_top.load(Ordering::Relaxed),
    }
}

/// Fills CPU `cpu`'s record (on the boot CPU, before that CPU runs).
fn init_record(cpu: usize, mpidr: u64) {
    let (k, i) = cpu_stacks::stack_tops(cpu);
    let r = &CPUS[cpu];
    r.kstack_top.store(k, Ordering::Relaxed);
    r.idle_top.store(i, Ordering::Relaxed);
    r.cpu.store(cpu as u64, Ordering::Relaxed);
    r.mpidr.store(mpidr, Ordering::Relaxed);
}

/// Points `TPIDR_EL1` at CPU `cpu`'s record: from now on [`cpu_id`] is
/// `cpu`.
fn set_record(cpu: usize) {
    let rec = &CPUS[cpu] as *const Cpu as u64;
    // SAFETY: `TPIDR_EL1` is an EL1 scratch register reserved for this
    // use (nothing else writes it); it now points to a static record.
    unsafe { asm!("msr tpidr_el1, {}", in(reg) rec, options(nomem, nostack)) };
}

/// The number of the running CPU (0 is the boot CPU): its record's.
#[inline]
pub fn cpu_id() -> usize {
    let rec: u64;
    // SAFETY: reads `TPIDR_EL1`, which the kernel keeps pointing at this
    // CPU's record (0 before `set_record`).
    unsafe { asm!("mrs {}, tpidr_el1", out(reg) rec, options(nomem, nostack, preserves_flags)) };
    if rec == 0 {
        return 0;
    }
    // SAFETY: a non-zero `TPIDR_EL1` is the address of a static `Cpu`
    // (see `set_record`).
    unsafe { (*(rec as *const Cpu)).cpu.load(Ordering::Relaxed) as usize }
}

/// Interrupts off, and waits for ever.
pub fn halt() -> ! {
    loop {
        // SAFETY: masks interrupts and waits; touches no memory.
        unsafe { asm!("msr daifset, #2", "wfi", options(nomem, nostack)) };
    }
}

/// Physical address to its direct-map pointer.
pub fn phys_to_virt(pa: u64) -> *mut u8 {
    (DIRECT_MAP + pa) as *mut u8
}

pub use super::cpu_stacks::online;

/// Interrupts `cpu` so its scheduler looks at the ready queue.
pub fn wake(cpu: usize) {
    trap::WAKE[cpu].store(true, Ordering::Release);
    gic::send_sgi(cpu, gic::SGI_IPI);
}

/// Sends `cpu` the shootdown IPI (a GIC software-generated interrupt).
pub fn send_shootdown_ipi(cpu: usize) {
    gic::send_sgi(cpu, gic::SGI_IPI);
}

static SLICE_TICKS: AtomicU64 = AtomicU64::new(0);

/// Starts this CPU's periodic timer (the scheduler's tick) and its
/// interrupts (taken at EL0 and in the idle loop).
pub fn start_timer(us: u32) {
    let freq: u64;
    // SAFETY: reads the counter frequency; no side effect.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) freq, options(nomem, nostack)) };
    SLICE_TICKS.store(freq / 1_000_000 * us as u64, Ordering::Relaxed);
    rearm_timer();
    gic::init_cpu();
}

/// Programs the next tick (the virtual timer, enabled, unmasked).
fn rearm_timer() {
    let ticks = SLICE_TICKS.load(Ordering::Relaxed);
    // SAFETY: the EL1 virtual timer's registers: the countdown and the
    // control (enable, interrupt not masked); no memory touched.
    unsafe {
        asm!(
            "msr cntv_tval_el0, {t}",
            "msr cntv_ctl_el0, {c}",
            "isb",
            t = in(reg) ticks,
            c = in(reg) 1u64,
            options(nomem, nostack)
        )
    };
}

/// How many TLB counters [`tlb_counters`] reports.
pub const TLB_COUNTERS: usize = 7;

/// The kernel's TLB counters, for the scenario reports.
pub fn tlb_counters() -> [(&'static str, u64); TLB_COUNTERS] {
    let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
    [
        ("ttbr0_writes", c(&tlb::TTBR0_WRITES)),
        ("ttbr0_user_asid", c(&tlb::TTBR0_USER_ASID)),
        ("tlbi_all", c(&tlb::TLBI_ALL)),
        ("tlbi_asid", c(&tlb::TLBI_ASID)),
        ("tlbi_page", c(&tlb::TLBI_PAGE)),
        ("tlbi_kernel_page", c(&tlb::TLBI_KERNEL_PAGE)),
        ("icache_syncs", c(&tlb::ICACHE_SYNCS)),
    ]
}

extern "C" {
    static boot_l0: u8;
    static __kernel_end: u8;
    fn _ap_start();
}

/// Physical address of a symbol of the image (linked in the direct map).
fn image_phys(sym: *const u8) -> u64 {
    sym as u64 - DIRECT_MAP
}

/// Where QEMU puts the device tree for an ELF kernel: the start of RAM.
const DTB: u64 = RAM_BASE;

/// This CPU's affinity (MPIDR_EL1 bits 23:0, QEMU virt's CPU index in
/// Aff0).
fn mpidr() -> u64 {
    let m: u64;
    // SAFETY: reads an identification register.
    unsafe { asm!("mrs {}, mpidr_el1", out(reg) m, options(nomem, nostack)) };
    m & 0xff_ffff
}

/// Entered from `_start` on the boot CPU, on the linked addresses, with
/// the boot page tables, interrupts masked.
#[no_mangle]
extern "C" fn a64_main() -> ! {
    let me = mpidr();
    init_record(0, me);
    set_record(0);
    trap::init_cpu();
    kprintln!("aspace kernel: booting (aarch64, boot CPU MPIDR {me:#x}, device tree at {DTB:#x})");
    mm::init_heap();
    let info = fdt::parse(DTB);
    // The loader's file name comes first on x86_64 (multiboot); the shared
    // parser skips one word.
    crate::configure(alloc::format!("kernel {}", info.bootargs).trim_end());
    let (base, size) = info.memory.unwrap_or((RAM_BASE, 128 << 20));
    let floor = image_phys(&raw const __kernel_end);
    FRAMES.add_range(floor.max(base), base + size);
    kprintln!(
        "frames: {} free frames of 4 KiB from {:#x} (RAM {:#x}+{:#x}; the device tree is not needed after boot)",
        FRAMES.total(),
        floor,
        base,
        size
    );
    gic::init();
    // The CPUs: this one first, then the others PSCI knows, in order.
    let mut cpus = alloc::vec![me];
    for m in 0..MAX_CPUS as u64 {
        if m != me && psci::affinity_info(m).is_some() {
            cpus.push(m);
        }
    }
    for (cpu, &m) in cpus.iter().enumerate().skip(1) {
        init_record(cpu, m);
    }
    cpu_stacks::set_online(0);
    kprintln!(
        "cpus: {} (MPIDRs {:?}); 48-bit VA, 4 KiB granule, {} ASID bits, PSCI {}",
        cpus.len(),
        cpus,
        tlb::asid_bits(),
        psci::version()
    );
    crate::init_system(cpus.len());
    let started = start_aps(&cpus);
    kprintln!("smp: {} of {} other CPUs started", started, cpus.len() - 1);
    crate::run_scenarios(started + 1 == cpus.len())
}

/// Starts every other CPU through PSCI `CPU_ON`; returns how many came up.
fn start_aps(cpus: &[u64]) -> usize {
    let entry = image_phys(_ap_start as *const u8);
    let mut up = 0;
    for (cpu, &m) in cpus.iter().enumerate().skip(1) {
        let err = psci::cpu_on(m, entry, cpu as u64);
        if err != 0 {
            kprintln!("smp: CPU {m:#x} did not start: PSCI error {err}");
            continue;
        }
        if cpu_stacks::wait_online(cpu) {
            up += 1;
        } else {
            kprintln!("smp: CPU {m:#x} (cpu {cpu}) did not come up");
        }
    }
    up
}

/// The Rust entry of the other CPUs (from `_ap_start`), on their boot
/// stacks, with the boot page tables, interrupts masked.
#[no_mangle]
extern "C" fn ap_main(cpu: usize) -> ! {
    set_record(cpu);
    trap::init_cpu();
    let sys = &*SYSTEM;
    sys.switch(None, sys.kernel())
        .expect("switch to the kernel space");
    flush_all();
    kprintln!(
        "smp: cpu {} up (MPIDR {:#x}), kernel space loaded",
        cpu,
        CPUS[cpu].mpidr.load(Ordering::Relaxed)
    );
    cpu_stacks::set_online(cpu);
    start_timer(crate::TIMESLICE_US);
    crate::sched::start(cpu)
}

/// Puts the boot table's direct map (level-0 slot 0: physical 0..4 GiB,
/// which holds the kernel image too) into the kernel address space's
/// table. User tables copy nothing of it: they go in `TTBR0_EL1`, the
/// kernel's stays in `TTBR1_EL1`.
pub fn adopt_boot_mappings(sys: &System) {
    let m = sys.machine();
    let root = sys.kernel().root().start().as_u64();
    let boot = image_phys(&raw const boot_l0);
    let e = m.memory().read_u64(PhysAddr::new(boot));
    m.memory().write_u64(PhysAddr::new(root), e);
}
