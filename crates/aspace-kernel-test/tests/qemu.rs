//! Boots the kernel in QEMU once and checks every scenario's report.

use std::sync::OnceLock;
use std::time::Duration;

use aspace_kernel_test::{boot_best, build_kernel, qemu_available, Run, QEMU_SUCCESS};

/// The one boot shared by the tests; `None` when QEMU is missing outside CI.
fn run() -> Option<&'static Run> {
    static RUN: OnceLock<Option<Run>> = OnceLock::new();
    RUN.get_or_init(|| {
        if !qemu_available() {
            if std::env::var_os("CI").is_some() {
                panic!("CI is set but qemu-system-x86_64 cannot run");
            }
            eprintln!("SKIPPED: qemu-system-x86_64 not found (install qemu-system-x86)");
            return None;
        }
        let image = build_kernel().unwrap_or_else(|e| panic!("{e}"));
        let run = boot_best(&image, 2, Duration::from_secs(240)).unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "---- serial output ({}, {:?}, status {:?}) ----\n{}\n---- end ----",
            if run.kvm { "KVM" } else { "TCG" },
            run.elapsed,
            run.status,
            run.serial
        );
        Some(run)
    })
    .as_ref()
}

/// Some line contains every one of `parts`.
fn has_all(run: &Run, parts: &[&str]) {
    assert!(
        run.serial
            .lines()
            .any(|l| parts.iter().all(|p| l.contains(p))),
        "no serial line contains all of {parts:?}:\n{}",
        run.serial
    );
}

fn has(run: &Run, line: &str) {
    assert!(
        run.serial.lines().any(|l| l.contains(line)),
        "serial output lacks {line:?}:\n{}",
        run.serial
    );
}

#[test]
fn boots_and_exits_with_success() {
    let Some(run) = run() else { return };
    has(run, "aspace kernel: booting (multiboot magic 0x2badb002");
    has(run, "ALL SCENARIOS PASSED");
    assert!(!run.serial.contains("KERNEL PANIC"), "{}", run.serial);
    assert_eq!(run.status, Some(QEMU_SUCCESS), "{}", run.serial);
}

/// The lines of scenario `name` that start with `== scenario name:`.
fn scenario(run: &Run, name: &str) -> Vec<String> {
    let tag = format!("== scenario {name}:");
    run.serial
        .lines()
        .filter(|l| l.starts_with(&tag))
        .map(str::to_owned)
        .collect()
}

/// Checks that scenario `name` ran, passed, and returned every frame.
fn passed(run: &Run, name: &str) -> Vec<String> {
    let lines = scenario(run, name);
    assert!(
        lines.iter().any(|l| l.ends_with(": PASS")),
        "scenario {name} did not pass: {lines:#?}\n{}",
        run.serial
    );
    assert!(
        lines.iter().any(|l| l.contains("(all returned)")),
        "scenario {name} leaked frames: {lines:#?}"
    );
    lines
}

/// The value of counter `key` in the scenario's counter line.
fn counter(lines: &[String], key: &str) -> u64 {
    let pat = format!(" {key}=");
    lines
        .iter()
        .find_map(|l| {
            let i = l.find(&pat)? + pat.len();
            let v: String = l[i..].chars().take_while(char::is_ascii_digit).collect();
            v.parse().ok()
        })
        .unwrap_or_else(|| panic!("no counter {key} in {lines:#?}"))
}

#[test]
fn kernel_page_faults_are_served_in_the_kernel_space() {
    let Some(run) = run() else { return };
    has(run, "cpus: 2 (APIC IDs [0, 1])");
    has(
        run,
        "kernel-fault: 4 kernel-mode page faults served for 4 pages at 0xffffc00000000000",
    );
    let lines = passed(run, "kernel-fault");
    // Kernel mappings are global: destroying the area shot down the other
    // CPU's TLB with a real IPI.
    assert_eq!(counter(&lines, "ipis"), 1, "{lines:#?}");
    assert_eq!(counter(&lines, "shootdown_ipis_served"), 1, "{lines:#?}");
    assert_eq!(counter(&lines, "faults"), 4);
    assert_eq!(counter(&lines, "resolved"), 4);
    assert_eq!(counter(&lines, "frame_refs_released"), 4);
}

#[test]
fn a_user_task_runs_in_ring_3_with_demand_paging_and_safe_user_copies() {
    let Some(run) = run() else { return };
    has(run, "] hello from ring 3 (arg 7, cpu ");
    // Bad pointers handed to the kernel fail with EBADMEM (-9).
    has(run, "] print(NULL) = -9");
    has(run, "] print(kernel address) = -9");
    has(run, "] print(unmapped) = -9");
    has(run, "(hello) exited with code 0");
    let lines = passed(run, "hello");
    // Text, data and stack pages were mapped by faults from ring 3.
    assert!(counter(&lines, "resolved") >= 3, "{lines:#?}");
    assert_eq!(counter(&lines, "asid_allocs"), 1, "{lines:#?}");
}

#[test]
fn heap_grows_and_shrinks_through_resize() {
    let Some(run) = run() else { return };
    has(run, "heap: grow to 64 pages = 0");
    has(run, "heap: 64 pages written and read back: ok");
    has(run, "heap: shrink to 4 pages = 0, first 4 pages intact: ok");
    has(run, "heap: grow into the next area = -11");
    has(run, "heap: resize to 0 = -6");
    has(run, "heap: create write+exec = -1");
    has(run, "heap: destroy = 0, 0; again = -1");
    has(run, "(heap) exited with code 0");
    let lines = passed(run, "heap");
    // 64 heap pages faulted in; the shrink released 60 of them at once.
    assert!(counter(&lines, "resolved") >= 64, "{lines:#?}");
    assert!(counter(&lines, "frame_refs_released") >= 64, "{lines:#?}");
}

#[test]
fn the_stack_grows_by_page_faults() {
    let Some(run) = run() else { return };
    has(run, "stack: recursed 48 frames of one page each, result 49");
    let lines = passed(run, "stack");
    assert!(counter(&lines, "user_faults") >= 48, "{lines:#?}");
}

#[test]
fn code_written_to_an_area_runs_after_change_flags() {
    let Some(run) = run() else { return };
    has(run, "jit: change to write+exec = -13");
    has(
        run,
        "jit: change to read+exec = 0; generated code returned 42",
    );
    passed(run, "jit");
}

#[test]
fn bad_accesses_kill_only_the_offending_task_with_a_reason() {
    let Some(run) = run() else { return };
    has(run, "killed: page fault at 0x0 (read): no area");
    has(
        run,
        "killed: page fault at 0xffffffff80100000 (read): kernel address",
    );
    has_all(
        run,
        &[
            "(bad) thread",
            "(write): access not permitted by the area (area 0x40",
            " r--)",
        ],
    );
    has(
        run,
        "(execute): access not permitted by the area (area 0x7ffffffb0000+0x40000 rw-)",
    );
    has(run, "killed: general protection (vector 13");
    has(
        run,
        "killed: page fault at 0x30000000 (write): access not permitted by the area (area 0x30000000+0x1000 r-x)",
    );
    assert!(!run.serial.contains("BAD"), "{}", run.serial);
    let lines = passed(run, "bad-accesses");
    assert_eq!(counter(&lines, "failed"), 4, "{lines:#?}");
}

#[test]
fn the_second_cpu_starts_through_init_sipi_sipi() {
    let Some(run) = run() else { return };
    has(run, "smp: cpu 1 up (APIC ID 1)");
    has(run, "smp: 1 of 1 application processors started");
}

#[test]
fn every_task_gives_back_its_address_space_and_image() {
    let Some(run) = run() else { return };
    let ends: Vec<&str> = run
        .serial
        .lines()
        .filter(|l| {
            l.starts_with("task ")
                && (l.contains(" exited with code ") || l.contains(" ended with code "))
        })
        .collect();
    assert!(ends.len() >= 20, "too few task endings: {ends:#?}");
    for l in &ends {
        assert!(!l.contains("STILL REFERENCED"), "{l}");
    }
}

#[test]
fn a_task_writes_a_shared_area_and_another_reads_it() {
    let Some(run) = run() else { return };
    has(
        run,
        "share-writer: wrote 3 pages, offered the area under key 77: 0",
    );
    has(run, "share-reader: accepted key 77 at 0x50000000: 0");
    has(run, "share-reader: the writer's 3 pages read back: ok");
    has(
        run,
        "share-writer: the reader's answer arrived in the shared area: 0xa11900d",
    );
    passed(run, "share");
}

#[test]
fn losing_mappings_shoots_down_the_other_cpus_tlb_by_ipi() {
    let Some(run) = run() else { return };
    has(run, "shootdown: writer busy on cpu ");
    has_all(
        run,
        &[
            "(shootdown) thread",
            "killed: page fault at 0x6000",
            "(write): access not permitted by the area (area 0x60000000+0x2000 r--)",
        ],
    );
    has(
        run,
        "shootdown: area made read-only = 0; counter frozen after the change",
    );
    let lines = passed(run, "shootdown");
    assert!(counter(&lines, "ipis") >= 1, "{lines:#?}");
    assert!(counter(&lines, "shootdown_ipis_served") >= 1, "{lines:#?}");
}

#[test]
fn more_tasks_than_asids_are_preempted_and_keep_their_memory() {
    let Some(run) = run() else { return };
    for i in 0..7 {
        has(
            run,
            &format!("pressure {i}: 40 rounds, pattern intact, ran on cpus "),
        );
    }
    let lines = passed(run, "asid-pressure");
    assert!(counter(&lines, "asid_steals") > 0, "{lines:#?}");
    assert!(counter(&lines, "preemptions") > 0, "{lines:#?}");
    assert_eq!(counter(&lines, "asid_allocs"), 7, "{lines:#?}");
}
