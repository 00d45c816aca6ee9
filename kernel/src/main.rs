//! A small x86_64 kernel running user tasks on the `aspace` subsystem.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

extern crate alloc;

mod acpi;
mod apic;
mod arch;
mod boot;
mod cpu;
mod machine;
mod mm;
mod scenario;
mod sched;
mod serial;
mod shootdown;
mod smp;
mod stats;
mod sync;
mod syscall;
mod trap;

use core::fmt::Write;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicU16, Ordering};

use aspace::{
    AreaFlags, Config, FrameAllocator, Machine, PhysAddr, PhysMemory, VirtAddr, PAGE_SIZE,
};

use crate::machine::{KMachine, System, CPU_COUNT};
use crate::mm::FRAMES;
use crate::sync::Once;

/// User ASIDs (PCIDs) the kernel allows, sized from the CPUs found at boot
/// ([`asids_for`]); set once before the scenarios start.
pub static ASIDS: AtomicU16 = AtomicU16::new(0);

/// The user ASIDs for `cpus` CPUs: few, so that running more tasks than
/// this exercises ASID stealing, but two per CPU (at least 4): every CPU
/// runs at most one space and drops at most one (a space being dropped
/// still holds its ASID until it is released), so a switch always finds an
/// ASID to take.
pub const fn asids_for(cpus: usize) -> u16 {
    let n = 2 * cpus;
    if n < 4 {
        4
    } else {
        n as u16
    }
}

/// The address-space subsystem.
pub static SYSTEM: Once<System> = Once::new();

/// Where kernel areas (demand-paged kernel memory) live: PML4 slot 384.
pub const KERNEL_AREAS: u64 = 0xffff_c000_0000_0000;

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
    let cmdline = mm::command_line(mb_info);
    if cmdline.contains(' ') {
        kprintln!("command line: {cmdline}");
    }
    if let Err(e) = scenario::configure(&cmdline) {
        kprintln!("FAIL: command line: {e}");
        serial::exit_qemu(serial::EXIT_FAILURE);
    }
    mm::init_frames(mb_info);
    kprintln!(
        "frames: {} free frames of 4 KiB above the kernel image (ends at {:#x})",
        FRAMES.total(),
        mm::kernel_end_phys()
    );
    cpu::init_idt();
    cpu::init_cpu(0);
    apic::disable_pic();
    apic::init();
    let bsp = apic::id();
    let mut ids = acpi::processors().unwrap_or_default();
    ids.retain(|&i| i != bsp);
    ids.insert(0, bsp);
    ids.truncate(arch::MAX_CPUS);
    for (cpu, &id) in ids.iter().enumerate() {
        apic::set_apic_id(cpu, id);
    }
    CPU_COUNT.store(ids.len(), Ordering::Relaxed);
    arch::set_cpu_id(0);
    let f = machine::init_features();
    kprintln!(
        "cpus: {} (APIC IDs {:?}); pcid={} invpcid={} smep={} smap={}",
        ids.len(),
        ids,
        on(f.pcid),
        on(f.invpcid),
        on(f.smep),
        on(f.smap)
    );

    let asids = asids_for(ids.len());
    ASIDS.store(asids, Ordering::Relaxed);
    let system = match System::new(
        KMachine::new(),
        Config {
            asids,
            ..Config::default()
        },
    ) {
        Ok(s) => s,
        Err(e) => panic!("System::new: {e}"),
    };
    SYSTEM.set(system);
    let sys = &*SYSTEM;
    adopt_boot_mappings(sys);
    sys.switch(None, sys.kernel())
        .expect("switch to the kernel space");
    machine::flush_all();
    kprintln!(
        "kernel address space: root {:#x}, ASID {:?}; {} user ASIDs",
        sys.kernel().root().start().as_u64(),
        sys.kernel().asid(),
        asids
    );

    let cpus = CPU_COUNT.load(Ordering::Relaxed);
    let up = smp::start_aps();
    kprintln!("smp: {} of {} application processors started", up, cpus - 1);
    if up + 1 != cpus {
        scenario::FAILED.store(true, Ordering::SeqCst);
    }
    if !kernel_fault_scenario(sys) {
        scenario::FAILED.store(true, Ordering::SeqCst);
    }
    kprintln!(
        "user programs: {}",
        scenario::PROGRAMS
            .iter()
            .map(|(n, b)| alloc::format!("{n} ({} bytes)", b.len()))
            .collect::<alloc::vec::Vec<_>>()
            .join(", ")
    );
    apic::start_timer(TIMESLICE_US);
    scenario::start_all();
    sched::start(0)
}

/// The scheduler's time slice.
pub const TIMESLICE_US: u32 = 5_000;

fn on(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// Puts the boot page tables' kernel half (the direct map, the kernel
/// image) into the kernel address space's table, and gives the kernel-area
/// slot its table now, so every user table (which copies the kernel half
/// when it is created) sees kernel areas made later.
fn adopt_boot_mappings(sys: &System) {
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

/// Counters and frames around one scenario.
pub struct Report {
    name: &'static str,
    before: aspace::StatsSnapshot,
    frames: u64,
    kernel: [u64; 5],
}

fn kernel_counters() -> [u64; 5] {
    [
        stats::USER_FAULTS.load(Ordering::Relaxed),
        stats::PREEMPTIONS.load(Ordering::Relaxed),
        shootdown::SENT.load(Ordering::Relaxed),
        stats::IPIS_SERVED.load(Ordering::Relaxed),
        stats::TICKS.load(Ordering::Relaxed),
    ]
}

impl Report {
    /// Starts a scenario.
    pub fn start(name: &'static str) -> Self {
        kprintln!("== scenario {name}: start");
        Self {
            name,
            before: SYSTEM.stats(),
            frames: FRAMES.in_use(),
            kernel: kernel_counters(),
        }
    }

    /// Ends it: prints the counters and whether every frame came back
    /// (but `kept` page-table frames the kernel space keeps for reuse).
    pub fn finish(self, ok: bool, kept: u64) -> bool {
        let d = SYSTEM.stats().since(&self.before);
        let after = FRAMES.in_use() - kept;
        let balanced = after == self.frames;
        kprintln!(
            "== scenario {}: faults={} resolved={} failed={} pages_mapped={} frame_refs_released={} \
             shootdowns={} ipis={} local_invalidations={} lazy_flushes={} asid_allocs={} asid_steals={}",
            self.name,
            d.faults,
            d.faults_resolved,
            d.faults_failed,
            d.pages_mapped,
            d.frame_refs_released,
            d.shootdown_rounds,
            d.ipis,
            d.local_invalidations,
            d.lazy_flushes,
            d.asid_allocs,
            d.asid_steals
        );
        kprintln!(
            "== scenario {}: frames in use before={} after={} {}",
            self.name,
            self.frames,
            after,
            if balanced { "(all returned)" } else { "(LEAK)" }
        );
        let k = kernel_counters();
        kprintln!(
            "== scenario {}: kernel user_faults={} preemptions={} shootdown_ipis_sent={} shootdown_ipis_served={} timer_ticks={}",
            self.name,
            k[0] - self.kernel[0],
            k[1] - self.kernel[1],
            k[2] - self.kernel[2],
            k[3] - self.kernel[3],
            k[4] - self.kernel[4]
        );
        let pass = ok && balanced;
        kprintln!(
            "== scenario {}: {}",
            self.name,
            if pass { "PASS" } else { "FAIL" }
        );
        pass
    }
}

/// A kernel area, demand paged by real kernel-mode page faults.
fn kernel_fault_scenario(sys: &System) -> bool {
    let r = Report::start("kernel-fault");
    let k = sys.kernel();
    let base = VirtAddr::new(KERNEL_AREAS);
    let pages = 4u64;
    let tables = k.page_table_frames();
    let mut ok = k
        .area_create(base, pages * PAGE_SIZE, AreaFlags::READ | AreaFlags::WRITE)
        .is_ok();
    let faults = stats::KERNEL_FAULTS.load(Ordering::Relaxed);
    for i in 0..pages {
        let p = (KERNEL_AREAS + i * PAGE_SIZE + 8) as *mut u64;
        // SAFETY: `p` is 8-aligned, at offset 8 of page `i` of the area just
        // created READ|WRITE at KERNEL_AREAS in the kernel space (whose
        // table slot every address space shares); it is memory outside any
        // Rust allocation that only this function touches. The first access
        // is a kernel-mode page fault that aspace serves with a zeroed frame
        // (what this scenario shows); had `area_create` failed, the fault
        // handler would panic instead of returning here.
        unsafe {
            p.write_volatile(0x1000 + i);
        }
    }
    for i in 0..pages {
        let p = (KERNEL_AREAS + i * PAGE_SIZE + 8) as *const u64;
        // SAFETY: the same aligned words of the kernel area, mapped and
        // written by the loop above; nothing else uses them.
        ok &= unsafe { p.read_volatile() } == 0x1000 + i;
    }
    let served = stats::KERNEL_FAULTS.load(Ordering::Relaxed) - faults;
    kprintln!(
        "kernel-fault: {} kernel-mode page faults served for {} pages at {:#x}, resident {}",
        served,
        pages,
        KERNEL_AREAS,
        k.resident_pages()
    );
    ok &= served == pages;
    ok &= k.area_destroy(base).is_ok();
    let kept = k.page_table_frames() - tables;
    kprintln!("kernel-fault: area destroyed; the kernel table keeps {kept} new table frames");
    r.finish(ok, kept)
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    // Bypass the console lock: a CPU may have died holding it. `Serial`
    // has no state, so a second one just writes the same UART.
    let _ = writeln!(
        serial::Serial,
        "KERNEL PANIC on cpu {}: {}",
        arch::cpu_id(),
        info
    );
    serial::exit_qemu(serial::EXIT_FAILURE);
}

/// Referenced by the precompiled `core`; never called (panics abort).
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

/// Referenced by the precompiled `alloc`'s cleanup paths; never called
/// (panics abort).
#[no_mangle]
pub extern "C" fn _Unwind_Resume() -> ! {
    arch::halt()
}
