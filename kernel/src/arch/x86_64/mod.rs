//! x86_64: multiboot boot, long mode, the local APIC and ACPI, the IDT and
//! its trap stubs (`int 0x80` system calls), PCIDs as aspace ASIDs, and
//! INIT-SIPI-SIPI start of the other CPUs.

mod acpi;
mod apic;
mod boot;
mod cpu;
mod multiboot;
mod park;
pub mod regs;
pub mod serial;
mod smp;
mod tlb;
mod trap;

use core::sync::atomic::Ordering;

use aspace::{FrameAllocator, Machine, PhysAddr, PhysMemory};

pub use self::cpu::{enter, idle_frame, TrapFrame};
pub use self::park::{
    park_resume, park_switch, replace_trap_stack, stack_pointer, trap_stack_tops, TRAP_STACK_SIZE,
};
pub use self::regs::{cpu_id, halt, phys_to_virt, MAX_CPUS};
pub use self::tlb::{flush_all, X86Tlb as ArchTlb};
use crate::kprintln;
use crate::machine::{System, CPU_COUNT};
use crate::mm::{self, FRAMES};

/// The page-table format: x86_64's 4 levels.
pub type PageTableFormat = aspace::paging::x86_64::X86_64PageTable;
/// The user/kernel split: the canonical halves of 48-bit addresses.
pub const LAYOUT: aspace::Layout = aspace::Layout::X86_64;
/// The name of the instruction pointer in messages.
pub const PC_NAME: &str = "rip";
/// The name of the stack pointer in messages.
pub const SP_NAME: &str = "rsp";
/// The frame allocator's window starts at physical 0.
pub const RAM_BASE: u64 = 0;
/// Top of every task's main stack.
pub const STACK_TOP: u64 = 0x0000_7fff_ffff_0000;
/// Where kernel areas (demand-paged kernel memory) live: PML4 slot 384.
pub const KERNEL_AREAS: u64 = 0xffff_c000_0000_0000;

/// The CPUs started and not stopped.
pub fn online() -> aspace::CpuSet {
    apic::online()
}

/// Interrupts `cpu` so its scheduler looks at the ready queue.
pub fn wake(cpu: usize) {
    apic::send_ipi(cpu, cpu::VEC_WAKE);
}

/// Sends `cpu` the shootdown IPI (see `crate::shootdown`).
pub fn send_shootdown_ipi(cpu: usize) {
    apic::send_ipi(cpu, cpu::VEC_SHOOTDOWN);
}

/// Starts this CPU's periodic timer (the scheduler's tick).
pub fn start_timer(us: u32) {
    apic::start_timer(us);
}

/// How many TLB counters [`tlb_counters`] reports.
pub const TLB_COUNTERS: usize = 1;

/// The kernel's TLB counters, for the scenario reports.
pub fn tlb_counters() -> [(&'static str, u64); TLB_COUNTERS] {
    [(
        "local_flushes",
        crate::stats::LOCAL_FLUSHES.load(Ordering::Relaxed),
    )]
}

fn on(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

extern "C" {
    static boot_pml4: u8;
}

/// Entered from the boot code on the boot CPU, in long mode, on the higher
/// half, with the multiboot magic and the physical address of the multiboot
/// information.
#[no_mangle]
pub extern "C" fn kmain(magic: u32, mb_info: u32) -> ! {
    serial::init();
    kprintln!("aspace kernel: booting (multiboot magic {magic:#x}, info at {mb_info:#x})");
    if magic != 0x2BAD_B002 {
        kprintln!("FAIL: not loaded by a multiboot loader");
        serial::exit_qemu(serial::EXIT_FAILURE);
    }
    mm::init_heap();
    crate::configure(&multiboot::command_line(mb_info));
    multiboot::init_frames(mb_info);
    kprintln!(
        "frames: {} free frames of 4 KiB above the kernel image (ends at {:#x})",
        FRAMES.total(),
        multiboot::kernel_end_phys()
    );
    cpu::init_idt();
    cpu::init_cpu(0);
    apic::disable_pic();
    apic::init();
    let bsp = apic::id();
    let mut ids = acpi::processors().unwrap_or_default();
    ids.retain(|&i| i != bsp);
    ids.insert(0, bsp);
    ids.truncate(MAX_CPUS);
    for (cpu, &id) in ids.iter().enumerate() {
        apic::set_apic_id(cpu, id);
    }
    regs::set_cpu_id(0);
    let f = tlb::init_features();
    kprintln!(
        "cpus: {} (APIC IDs {:?}); pcid={} invpcid={} smep={} smap={}",
        ids.len(),
        ids,
        on(f.pcid),
        on(f.invpcid),
        on(f.smep),
        on(f.smap)
    );

    crate::init_system(ids.len());
    let cpus = CPU_COUNT.load(Ordering::Relaxed);
    let up = smp::start_aps();
    kprintln!("smp: {} of {} application processors started", up, cpus - 1);
    crate::run_scenarios(up + 1 == cpus)
}

/// Puts the boot page tables' kernel half (the direct map, the kernel
/// image) into the kernel address space's table, and gives the kernel-area
/// slot its table now, so every user table (which copies the kernel half
/// when it is created) sees kernel areas made later.
pub fn adopt_boot_mappings(sys: &System) {
    let m = sys.machine();
    let root = sys.kernel().root().start().as_u64();
    let boot = &raw const boot_pml4 as u64;
    for slot in [256u64, 511] {
        let e = m.memory().read_u64(PhysAddr::new(boot + slot * 8));
        m.memory().write_u64(PhysAddr::new(root + slot * 8), e);
    }
    let pdpt = FRAMES.alloc().expect("a frame for the kernel-area table");
    m.memory().zero_frame(pdpt);
    let slot = (KERNEL_AREAS >> 39) & 511;
    m.memory()
        .write_u64(PhysAddr::new(root + slot * 8), pdpt.start().as_u64() | 0x7);
}
