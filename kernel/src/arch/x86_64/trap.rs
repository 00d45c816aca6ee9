//! Trap dispatch: exceptions, page faults, interrupts, system calls.

use core::sync::atomic::Ordering;

use aspace::{Access, FaultContext, FaultOutcome, VirtAddr};

use super::apic;
use super::cpu::{TrapFrame, VEC_SHOOTDOWN, VEC_SPURIOUS, VEC_SYSCALL, VEC_TIMER, VEC_WAKE};
use super::regs::{cpu_id, cr2};
use crate::{kprintln, sched, shootdown, stats, syscall};

/// Exception names by vector.
pub fn exception_name(v: u64) -> &'static str {
    match v {
        0 => "divide error",
        1 => "debug",
        2 => "NMI",
        3 => "breakpoint",
        4 => "overflow",
        5 => "bound range",
        6 => "invalid opcode",
        7 => "device not available",
        8 => "double fault",
        10 => "invalid TSS",
        11 => "segment not present",
        12 => "stack fault",
        13 => "general protection",
        14 => "page fault",
        16 => "x87 floating point",
        17 => "alignment check",
        18 => "machine check",
        19 => "SIMD floating point",
        _ => "exception",
    }
}

/// The access a page fault's error code describes.
pub fn fault_access(error: u64) -> Access {
    if error & (1 << 4) != 0 {
        Access::Exec
    } else if error & (1 << 1) != 0 {
        Access::Write
    } else {
        Access::Read
    }
}

/// Entered from the assembly stubs with the saved registers.
#[no_mangle]
extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    sched::trap_entered(frame.is_user());
    let v = frame.vector;
    match v as u8 {
        14 => page_fault(frame),
        VEC_TIMER => {
            apic::eoi();
            stats::TICKS.fetch_add(1, Ordering::Relaxed);
            if cpu_id() == 0 {
                crate::scenario::watchdog();
            }
            sched::tick(frame);
        }
        VEC_SHOOTDOWN => {
            shootdown::ipi();
            apic::eoi();
        }
        VEC_WAKE => {
            apic::eoi();
            sched::tick(frame);
        }
        VEC_SPURIOUS => {}
        VEC_SYSCALL if frame.is_user() => syscall::dispatch(frame),
        _ if v < 32 && frame.is_user() => {
            let why = alloc::format!(
                "{} (vector {}, error {:#x}) at rip {:#x}",
                exception_name(v),
                v,
                frame.error,
                frame.rip
            );
            sched::kill_current(frame, &why);
        }
        _ => kernel_fault(frame, exception_name(v)),
    }
    sched::check_return(frame);
}

fn page_fault(frame: &mut TrapFrame) {
    let addr = cr2();
    let access = fault_access(frame.error);
    if frame.is_user() {
        stats::USER_FAULTS.fetch_add(1, Ordering::Relaxed);
        sched::user_page_fault(frame, VirtAddr::new(addr), access);
        return;
    }
    // A kernel-mode fault: only kernel areas are demand paged.
    if addr >= aspace::Layout::X86_64.kernel_start {
        if let Some(sys) = crate::SYSTEM.get() {
            if sys
                .kernel()
                .page_fault(VirtAddr::new(addr), access, FaultContext::Kernel)
                == FaultOutcome::Ok
            {
                stats::KERNEL_FAULTS.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
    kprintln!(
        "kernel page fault at {:#x} ({:?}, error {:#x})",
        addr,
        access,
        frame.error
    );
    kernel_fault(frame, "page fault");
}

fn kernel_fault(frame: &TrapFrame, what: &str) -> ! {
    panic!(
        "{} in kernel on cpu {}: vector {} error {:#x} rip {:#x} rsp {:#x} cr2 {:#x}",
        what,
        cpu_id(),
        frame.vector,
        frame.error,
        frame.rip,
        frame.rsp,
        cr2()
    );
}
