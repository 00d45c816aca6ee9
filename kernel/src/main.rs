//! A small kernel running user tasks on the `aspace` subsystem, for
//! x86_64, riscv64 and aarch64. This file and the modules it names at the top level
//! are shared; `arch/<architecture>/` holds the boot code, traps, the TLB,
//! the interrupt controller, the console and the other CPUs' start-up.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

extern crate alloc;

mod arch;
mod console;
mod kstack;
mod linux;
mod machine;
mod mm;
mod pager;
mod scenario;
mod sched;
mod shootdown;
mod stats;
mod sync;
mod syscall;

use core::panic::PanicInfo;
use core::sync::atomic::{AtomicU16, Ordering};

use aspace::{AreaFlags, Config, VirtAddr, PAGE_SIZE};

use crate::arch::KERNEL_AREAS;
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

/// The address-space subsystem (in an `Arc`: each process's Linux memory
/// map, [`aspace_linux::mm::LinuxMm`], holds a reference).
pub static SYSTEM: Once<alloc::sync::Arc<System>> = Once::new();

/// Sets up the address-space subsystem for `cpus` CPUs (on the boot CPU,
/// once the frame allocator is filled): its ASIDs, the kernel address
/// space (which adopts the boot page tables' kernel half, see
/// [`arch::adopt_boot_mappings`]), loaded on this CPU.
pub fn init_system(cpus: usize) -> &'static System {
    CPU_COUNT.store(cpus, Ordering::Relaxed);
    let asids = asids_for(cpus);
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
    SYSTEM.set(alloc::sync::Arc::new(system));
    let sys: &'static System = &SYSTEM;
    arch::adopt_boot_mappings(sys);
    sys.switch(None, sys.kernel())
        .expect("switch to the kernel space");
    arch::flush_all();
    kprintln!(
        "kernel address space: root {:#x}, ASID {:?}; {} user ASIDs",
        sys.kernel().root().start().as_u64(),
        sys.kernel().asid(),
        asids
    );
    sys
}

/// The boot CPU's last step once every CPU that could be started runs
/// (`all_up`: all of them came up): the kernel-fault scenario, then the
/// user scenarios, then the scheduler for good.
pub fn run_scenarios(all_up: bool) -> ! {
    if !all_up {
        scenario::FAILED.store(true, Ordering::SeqCst);
    }
    if !kernel_fault_scenario(&SYSTEM) {
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
    arch::start_timer(TIMESLICE_US);
    scenario::start_all();
    sched::start(0)
}

/// Reads the kernel command line (`scenarios=`, `watchdog=`; the first word
/// is the kernel's file name) before anything else needs it; a bad one
/// ends the boot with a failure.
pub fn configure(cmdline: &str) {
    if cmdline.contains(' ') {
        kprintln!("command line: {cmdline}");
    }
    if let Err(e) = scenario::configure(cmdline) {
        kprintln!("FAIL: command line: {e}");
        console::exit(false);
    }
}

/// The scheduler's time slice.
pub const TIMESLICE_US: u32 = 5_000;

/// Counters and frames around one scenario.
pub struct Report {
    name: &'static str,
    before: aspace::StatsSnapshot,
    frames: u64,
    kernel: [u64; 7],
    /// The architecture's TLB counters at the start.
    tlb: [u64; arch::TLB_COUNTERS],
}

fn kernel_counters() -> [u64; 7] {
    [
        stats::USER_FAULTS.load(Ordering::Relaxed),
        stats::PREEMPTIONS.load(Ordering::Relaxed),
        shootdown::SENT.load(Ordering::Relaxed),
        stats::IPIS_SERVED.load(Ordering::Relaxed),
        stats::TICKS.load(Ordering::Relaxed),
        stats::PARKS.load(Ordering::Relaxed),
        stats::SLEEPS.load(Ordering::Relaxed),
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
            tlb: arch::tlb_counters().map(|(_, v)| v),
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
             shootdowns={} ipis={} local_invalidations={} lazy_flushes={} asid_allocs={} asid_steals={} cow_copies={}",
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
            d.asid_steals,
            d.cow_copies
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
            "== scenario {}: kernel user_faults={} preemptions={} shootdown_ipis_sent={} shootdown_ipis_served={} timer_ticks={} parks={} sleeps={}",
            self.name,
            k[0] - self.kernel[0],
            k[1] - self.kernel[1],
            k[2] - self.kernel[2],
            k[3] - self.kernel[3],
            k[4] - self.kernel[4],
            k[5] - self.kernel[5],
            k[6] - self.kernel[6]
        );
        let tlb: alloc::vec::Vec<alloc::string::String> = arch::tlb_counters()
            .iter()
            .zip(self.tlb)
            .map(|((name, now), before)| alloc::format!("{name}={}", now - before))
            .collect();
        kprintln!("== scenario {}: tlb {}", self.name, tlb.join(" "));
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
    console::panic_print(format_args!(
        "KERNEL PANIC on cpu {}: {}\n",
        arch::cpu_id(),
        info
    ));
    console::exit(false);
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
