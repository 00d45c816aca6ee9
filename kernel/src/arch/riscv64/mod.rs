//! riscv64 on QEMU's `virt` machine: OpenSBI firmware, an S-mode kernel,
//! Sv39 page tables in the core's `paging::riscv64` format, U-mode tasks
//! entered with `sret`, system calls by `ecall`, the SBI timer, IPIs and
//! hart start (HSM), ASIDs in `satp` flushed with `sfence.vma`.
//!
//! QEMU virt's layout is hard-coded (the device tree is read only for the
//! command line and the RAM size): RAM from 0x8000_0000 (OpenSBI in its
//! first 2 MiB, this kernel loaded at 0x8020_0000), the ns16550 UART at
//! 0x1000_0000, the SiFive test device at 0x10_0000, a 10 MHz `time`
//! counter. Harts are found by asking the SBI for the state of hart IDs
//! 0 to `MAX_CPUS - 1`.

mod boot;
mod fdt;
mod park;
mod sbi;
pub mod serial;
mod tlb;
mod trap;

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use super::cpu_stacks;

use aspace::paging::riscv64::{PTE_PPN_SHIFT, PTE_V};
use aspace::{FrameAllocator, Machine, PhysAddr, PhysMemory};

pub use self::park::{
    park_resume, park_switch, replace_trap_stack, stack_pointer, trap_stack_tops, TRAP_STACK_SIZE,
};
pub use self::tlb::{flush_all, sync_icache, RiscvTlb as ArchTlb};
pub use self::trap::{enter, idle_frame, TrapFrame};
use crate::machine::System;
use crate::mm::{self, FRAMES};
use crate::{kprintln, SYSTEM};

/// Most harts the kernel supports.
pub const MAX_CPUS: usize = 8;
/// Virtual address of physical address 0: the start of Sv39's upper half.
pub const DIRECT_MAP: u64 = 0xffff_ffc0_0000_0000;
/// The frame allocator's window: QEMU virt's RAM.
pub const RAM_BASE: u64 = 0x8000_0000;
/// The page-table format: the core's Sv39.
pub type PageTableFormat = aspace::paging::riscv64::RiscvPageTable;
/// The user/kernel split of Sv39: 256 GiB each, the upper half sign
/// extended.
pub const LAYOUT: aspace::Layout = aspace::Layout::SV39;
/// Top of every task's main stack (below the end of the Sv39 user half).
pub const STACK_TOP: u64 = 0x0000_003f_ffff_0000;
/// Where kernel areas (demand-paged kernel memory) live: root slot 384.
pub const KERNEL_AREAS: u64 = 0xffff_ffe0_0000_0000;
/// The name of the instruction pointer in messages.
pub const PC_NAME: &str = "sepc";
/// The name of the stack pointer in messages.
pub const SP_NAME: &str = "sp";
/// `time` ticks per microsecond (QEMU virt's timebase is 10 MHz).
const TICKS_PER_US: u64 = 10;

/// One hart's record; `tp` points to it in the kernel. The trap entry
/// reads `kstack_top` and uses `scratch` (offsets 0 and 8).
#[repr(C)]
pub struct Hart {
    kstack_top: AtomicU64,
    scratch: AtomicU64,
    cpu: AtomicU64,
    hartid: AtomicU64,
    idle_top: AtomicU64,
}

static HARTS: [Hart; MAX_CPUS] = [const {
    Hart {
        kstack_top: AtomicU64::new(0),
        scratch: AtomicU64::new(0),
        cpu: AtomicU64::new(0),
        hartid: AtomicU64::new(0),
        idle_top: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// What `hart` returns: the fields the trap code needs.
pub struct HartInfo {
    /// Top of the kernel trap stack.
    pub kstack_top: u64,
    /// Top of the idle loop's stack.
    pub idle_top: u64,
    rec: &'static Hart,
}

impl HartInfo {
    /// The record's address (`tp`).
    pub fn record(&self) -> u64 {
        self.rec as *const Hart as u64
    }
}

/// Makes `top` the kernel trap stack of hart `cpu` (U-mode traps enter on
/// it); called by that hart, in the kernel.
pub fn set_kstack_top(cpu: usize, top: u64) {
    HARTS[cpu].kstack_top.store(top, Ordering::Relaxed);
}

/// CPU `cpu`'s record.
pub fn hart(cpu: usize) -> HartInfo {
    let rec = &HARTS[cpu];
    HartInfo {
        kstack_top: rec.kstack_top.load(Ordering::Relaxed),
        idle_top: rec.idle_top.load(Ordering::Relaxed),
        rec,
    }
}

/// Fills CPU `cpu`'s record (on the boot hart, before that CPU runs).
fn init_record(cpu: usize, hartid: u64) {
    let (k, i) = cpu_stacks::stack_tops(cpu);
    let r = &HARTS[cpu];
    r.kstack_top.store(k, Ordering::Relaxed);
    r.idle_top.store(i, Ordering::Relaxed);
    r.cpu.store(cpu as u64, Ordering::Relaxed);
    r.hartid.store(hartid, Ordering::Relaxed);
}

/// Points `tp` at CPU `cpu`'s record: from now on [`cpu_id`] is `cpu`.
fn set_tp(cpu: usize) {
    let rec = &HARTS[cpu] as *const Hart as u64;
    // SAFETY: `tp` is reserved for this use in the kernel (Rust code never
    // allocates it); it now points to a static record that lives for ever.
    unsafe { asm!("mv tp, {}", in(reg) rec, options(nomem, nostack)) };
}

/// The number of the running CPU (0 is the boot hart): its record's.
#[inline]
pub fn cpu_id() -> usize {
    let tp: u64;
    // SAFETY: reads `tp`, which the kernel keeps pointing at this hart's
    // record (0 before `set_tp`).
    unsafe { asm!("mv {}, tp", out(reg) tp, options(nomem, nostack, preserves_flags)) };
    if tp == 0 {
        return 0;
    }
    // SAFETY: a non-zero `tp` in the kernel is the address of a static
    // `Hart` (see `set_tp` and the trap entry, which restores it).
    unsafe { (*(tp as *const Hart)).cpu.load(Ordering::Relaxed) as usize }
}

/// Interrupts off, and waits for ever.
pub fn halt() -> ! {
    loop {
        // SAFETY: clears sstatus.SIE and waits; touches no memory.
        unsafe { asm!("csrci sstatus, 2", "wfi", options(nomem, nostack)) };
    }
}

/// Physical address to its direct-map pointer.
pub fn phys_to_virt(pa: u64) -> *mut u8 {
    (DIRECT_MAP + pa) as *mut u8
}

pub use super::cpu_stacks::online;

fn hart_mask(cpu: usize) -> u64 {
    1 << HARTS[cpu].hartid.load(Ordering::Relaxed)
}

/// Interrupts `cpu` so its scheduler looks at the ready queue.
pub fn wake(cpu: usize) {
    trap::WAKE[cpu].store(true, Ordering::Release);
    sbi::send_ipi(hart_mask(cpu));
}

/// Sends `cpu` the shootdown IPI (an SBI IPI: a supervisor software
/// interrupt there).
pub fn send_shootdown_ipi(cpu: usize) {
    sbi::send_ipi(hart_mask(cpu));
}

static SLICE_TICKS: AtomicU64 = AtomicU64::new(0);

fn now() -> u64 {
    let t: u64;
    // SAFETY: reads the `time` counter; no side effect.
    unsafe { asm!("rdtime {}", out(reg) t, options(nomem, nostack)) };
    t
}

/// Starts this hart's periodic timer (the scheduler's tick) and its
/// interrupts.
pub fn start_timer(us: u32) {
    SLICE_TICKS.store(us as u64 * TICKS_PER_US, Ordering::Relaxed);
    rearm_timer();
    trap::enable_interrupts();
}

/// Programs the next tick.
fn rearm_timer() {
    sbi::set_timer(now() + SLICE_TICKS.load(Ordering::Relaxed));
}

/// How many TLB counters [`tlb_counters`] reports.
pub const TLB_COUNTERS: usize = 7;

/// The kernel's TLB counters, for the scenario reports.
pub fn tlb_counters() -> [(&'static str, u64); TLB_COUNTERS] {
    let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
    [
        ("satp_writes", c(&tlb::SATP_WRITES)),
        ("satp_user_asid", c(&tlb::SATP_USER_ASID)),
        ("sfence_all", c(&tlb::SFENCE_ALL)),
        ("sfence_asid", c(&tlb::SFENCE_ASID)),
        ("sfence_page", c(&tlb::SFENCE_PAGE)),
        ("sfence_fault", c(&tlb::SFENCE_FAULT)),
        ("icache_syncs", c(&tlb::ICACHE_SYNCS)),
    ]
}

extern "C" {
    static boot_root: u8;
    static __kernel_end: u8;
    fn _ap_start();
}

/// Physical address of a symbol of the image (linked in the direct map).
fn image_phys(sym: *const u8) -> u64 {
    sym as u64 - DIRECT_MAP
}

/// Entered from `_start` on the boot hart, on the linked addresses, with
/// the boot page table, interrupts off.
#[no_mangle]
extern "C" fn rv_main(hartid: u64, dtb: u64) -> ! {
    init_record(0, hartid);
    set_tp(0);
    trap::init_hart();
    serial::init();
    kprintln!("aspace kernel: booting (riscv64, boot hart {hartid}, device tree at {dtb:#x})");
    mm::init_heap();
    let info = fdt::parse(dtb);
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
    // The harts: this one first, then the others the SBI knows, in order.
    let mut harts = alloc::vec![hartid];
    for h in 0..64u64 {
        if harts.len() == MAX_CPUS {
            break;
        }
        if h != hartid && sbi::hart_status(h).is_some() {
            harts.push(h);
        }
    }
    for (cpu, &h) in harts.iter().enumerate().skip(1) {
        init_record(cpu, h);
    }
    cpu_stacks::set_online(0);
    kprintln!(
        "cpus: {} (hart IDs {:?}); satp mode Sv39, {} ASID bits",
        harts.len(),
        harts,
        tlb::asid_bits()
    );
    crate::init_system(harts.len());
    let started = start_aps(&harts);
    kprintln!(
        "smp: {} of {} other harts started",
        started,
        harts.len() - 1
    );
    crate::run_scenarios(started + 1 == harts.len())
}

/// Starts every other hart through SBI HSM; returns how many came up.
fn start_aps(harts: &[u64]) -> usize {
    let entry = image_phys(_ap_start as *const u8);
    let mut up = 0;
    for (cpu, &h) in harts.iter().enumerate().skip(1) {
        let err = sbi::hart_start(h, entry, cpu as u64);
        if err != 0 {
            kprintln!("smp: hart {h} did not start: SBI error {err}");
            continue;
        }
        if cpu_stacks::wait_online(cpu) {
            up += 1;
        } else {
            kprintln!("smp: hart {h} (cpu {cpu}) did not come up");
        }
    }
    up
}

/// The Rust entry of the other harts (from `_ap_start`), on their boot
/// stacks, with the boot page table, interrupts off.
#[no_mangle]
extern "C" fn ap_main(cpu: usize) -> ! {
    set_tp(cpu);
    trap::init_hart();
    let sys = &*SYSTEM;
    sys.switch(None, sys.kernel())
        .expect("switch to the kernel space");
    flush_all();
    kprintln!(
        "smp: cpu {} up (hart {}), kernel space loaded",
        cpu,
        HARTS[cpu].hartid.load(Ordering::Relaxed)
    );
    cpu_stacks::set_online(cpu);
    start_timer(crate::TIMESLICE_US);
    crate::sched::start(cpu)
}

/// Puts the boot page table's direct map (slots 256 to 259, which hold
/// the kernel image too) into the kernel address space's table, and gives
/// the kernel-area slot its table now, so every user table (which copies
/// the kernel half when it is created) sees kernel areas made later.
pub fn adopt_boot_mappings(sys: &System) {
    let m = sys.machine();
    let root = sys.kernel().root().start().as_u64();
    let boot = image_phys(&raw const boot_root);
    for slot in 256u64..260 {
        let e = m.memory().read_u64(PhysAddr::new(boot + slot * 8));
        m.memory().write_u64(PhysAddr::new(root + slot * 8), e);
    }
    let table = FRAMES.alloc().expect("a frame for the kernel-area table");
    m.memory().zero_frame(table);
    let slot = (KERNEL_AREAS >> 30) & 511;
    // A pointer entry: V with R, W, X clear, the table's PPN.
    let entry = table.number() << PTE_PPN_SHIFT | PTE_V;
    m.memory().write_u64(PhysAddr::new(root + slot * 8), entry);
}
