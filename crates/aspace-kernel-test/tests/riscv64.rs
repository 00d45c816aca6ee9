//! Builds the riscv64 kernel (nightly toolchain, `-Zbuild-std`) and boots
//! it on QEMU's virt machine with OpenSBI: on two harts every scenario must
//! pass, with its frames returned, and the hardware-ASID path must have
//! run: user ASIDs written into `satp`, ASIDs stolen under pressure and
//! flushed with `sfence.vma` by ASID, pages flushed by address and ASID,
//! shootdown IPIs sent through the SBI and served as supervisor software
//! interrupts. A second boot, alongside, reads its command line from the
//! device tree (`-append`) and lets the watchdog end a task that spins.
//!
//! What this cannot show: a missing flush. QEMU's emulated TLB drops its
//! entries whenever `satp` is written, ASID or not, so a stale translation
//! never survives a switch there and a flush the kernel forgot would go
//! unnoticed. The simulator (`crates/aspace-sim`), whose TLBs keep entries
//! across switches, stays the detector of stale TLB entries
//! (`crates/aspace-sim/tests/missing_flush.rs`); this test checks that the
//! ASID path runs on a real (emulated) machine, by the kernel's counters.
//!
//! Without the nightly toolchain, its `rust-src` or `qemu-system-riscv64`
//! the test is skipped with a message, unless `CI` is set: then it fails.

use std::sync::OnceLock;
use std::time::Duration;

use aspace_kernel_test::{
    boot_riscv64, build_kernel_riscv64, check_asid_path, check_portable_lines, check_watchdog_hang,
    counter, every_scenario_passed, has, riscv64_missing, scenario_line as line, Run,
    RISCV64_FAILURE, RISCV64_SUCCESS,
};

/// Harts of the main boot.
const HARTS: u32 = 2;
/// The command line of the watchdog boot (1 hart): a task that spins for
/// ever, then one that would pass.
const HANG: &str = "scenarios=hang,hello watchdog=2";
/// Per boot (both at once, under TCG, on a shared machine).
const TIMEOUT: Duration = Duration::from_secs(180);

struct Boots {
    main: Run,
    hang: Run,
}

/// The two boots, shared by the tests; `None` when the tools are missing
/// outside CI.
fn boots() -> Option<&'static Boots> {
    static BOOTS: OnceLock<Option<Boots>> = OnceLock::new();
    BOOTS
        .get_or_init(|| {
            if let Some(missing) = riscv64_missing() {
                if std::env::var_os("CI").is_some() {
                    panic!("CI is set but the riscv64 kernel cannot be built or booted: missing {missing}");
                }
                eprintln!("SKIPPED: missing {missing}");
                return None;
            }
            let image = build_kernel_riscv64().unwrap_or_else(|e| panic!("{e}"));
            let (main, hang) = std::thread::scope(|s| {
                let main = s.spawn(|| boot_riscv64(&image, HARTS, "", TIMEOUT));
                let hang = s.spawn(|| boot_riscv64(&image, 1, HANG, TIMEOUT));
                (main.join().expect("boot thread"), hang.join().expect("boot thread"))
            });
            let main = main.unwrap_or_else(|e| panic!("{e}"));
            let hang = hang.unwrap_or_else(|e| panic!("{e}"));
            for (what, run) in [("2 harts", &main), (HANG, &hang)] {
                eprintln!(
                    "---- serial output, {what} ({:?}, status {:?}) ----\n{}\n---- end ----",
                    run.elapsed, run.status, run.serial
                );
            }
            Some(Boots { main, hang })
        })
        .as_ref()
}

#[test]
fn boots_on_two_harts_and_every_scenario_passes() {
    let Some(b) = boots() else { return };
    let run = &b.main;
    assert_eq!(run.status, Some(RISCV64_SUCCESS), "{}", run.serial);
    has(run, "aspace kernel: booting (riscv64");
    has(run, "cpus: 2 (hart IDs [");
    has(run, "smp: 1 of 1 other harts started");
    has(run, "smp: cpu 1 up (hart ");
    every_scenario_passed(run);
    check_portable_lines(run);
    // Served by aspace from real traps: the kernel's page faults, U-mode
    // page faults (scause 12, 13, 15), and the kills of bad accesses with
    // their reasons.
    has(
        run,
        "kernel-fault: 4 kernel-mode page faults served for 4 pages",
    );
    has(run, "(area 0x401000+0x1000 r--)");
    has(run, "illegal instruction (scause 2");
    has(
        run,
        "cannot return to user mode at a non-canonical address (sepc 0x4000000000",
    );
    has(run, ", sp 0x4000000000)");
    has(
        run,
        "areas:   0x003ffffe0000+0x10000 flags 0x5b backend 1 resident 1 reserved 16",
    );
}

/// Frames the kernel fills for code (the user programs' text, faulted in
/// executable) are synced for instruction fetches before they are mapped
/// (`PhysMemory::sync_icache`: `fence.i` here and on the other harts
/// through the SBI). QEMU keeps its caches coherent, so this checks the
/// calls are made, not their effect (the simulator's `tests/icache.rs`
/// checks the core makes them where they are needed).
#[test]
fn code_pages_are_synced_for_instruction_fetches() {
    let Some(b) = boots() else { return };
    let tlb = line(&b.main, "heap", "tlb ");
    assert!(counter(&[tlb], "icache_syncs") > 0, "{tlb}");
}

#[test]
fn the_asid_path_runs() {
    let Some(b) = boots() else { return };
    let run = &b.main;
    // The harts implement ASIDs (QEMU: 16 bits): `satp` keeps them.
    let bits: u32 = run
        .serial
        .lines()
        .find_map(|l| {
            l.strip_suffix(" ASID bits")?
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no ASID bit count:\n{}", run.serial));
    assert!(bits >= 3, "{bits} ASID bits:\n{}", run.serial);
    // asid-pressure's steals and their flushes by ASID, heap's flushes
    // by address and ASID.
    check_asid_path(run, "satp_user_asid", "sfence_asid", "sfence_page");
}

#[test]
fn the_command_line_comes_from_the_device_tree_and_the_watchdog_ends_a_hang() {
    let Some(b) = boots() else { return };
    check_watchdog_hang(&b.hang, HANG, "cpus: 1 (hart IDs [", RISCV64_FAILURE);
}
