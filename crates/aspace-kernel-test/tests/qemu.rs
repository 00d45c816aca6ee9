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
