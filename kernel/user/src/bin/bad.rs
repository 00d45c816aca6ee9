//! Deliberate bad accesses, chosen by the argument; each kills the task.
#![no_std]
#![no_main]

use aspace_user::*;

static RODATA: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

#[no_mangle]
fn main(arg: u64) -> i32 {
    match arg {
        0 => {
            println!("bad: reading NULL");
            read(core::ptr::null::<u64>());
        }
        1 => {
            println!("bad: reading a kernel address");
            read(0xffff_ffff_8010_0000 as *const u64);
        }
        2 => {
            println!("bad: writing read-only data");
            write(&RODATA as *const u8 as *mut u8, 0);
        }
        3 => {
            println!("bad: executing the stack");
            // x86_64: `ret`; riscv64: `ret` (`jalr x0, 0(ra)`, 0x00008067);
            // aarch64: `ret` (0xd65f03c0).
            let code: [u8; 16] = if cfg!(target_arch = "x86_64") {
                [0xc3; 16]
            } else if cfg!(target_arch = "aarch64") {
                [
                    0xc0, 0x03, 0x5f, 0xd6, 0xc0, 0x03, 0x5f, 0xd6, 0xc0, 0x03, 0x5f, 0xd6, 0xc0,
                    0x03, 0x5f, 0xd6,
                ]
            } else {
                [
                    0x67, 0x80, 0, 0, 0x67, 0x80, 0, 0, 0x67, 0x80, 0, 0, 0x67, 0x80, 0, 0,
                ]
            };
            // SAFETY: a deliberate bad access: the pointer is to `ret`
            // instructions (which would be a valid `extern "C" fn()`), but on
            // the stack, which is not executable, so the call faults on the
            // fetch and the kernel kills the task; nothing runs.
            let f: extern "C" fn() = unsafe { core::mem::transmute(code.as_ptr()) };
            f();
        }
        _ => {
            println!("bad: executing a privileged instruction");
            privileged();
        }
    }
    println!("bad: BAD: still alive");
    1
}

/// Runs an instruction user mode may not run.
#[cfg(target_arch = "x86_64")]
fn privileged() {
    // SAFETY: a deliberate bad access: `cli` is privileged (IOPL is 0 for
    // user tasks), so in ring 3 it raises #GP before doing anything and the
    // kernel kills the task.
    unsafe { core::arch::asm!("cli") };
}

/// Runs an instruction user mode may not run.
#[cfg(target_arch = "riscv64")]
fn privileged() {
    // SAFETY: a deliberate bad access: `sstatus` is a supervisor register,
    // so reading it in U-mode raises an illegal-instruction exception
    // before anything happens and the kernel kills the task.
    unsafe { core::arch::asm!("csrr t0, sstatus", out("t0") _) };
}

/// Runs an instruction user mode may not run.
#[cfg(target_arch = "aarch64")]
fn privileged() {
    // SAFETY: a deliberate bad access: `SCTLR_EL1` is an EL1 register, so
    // reading it at EL0 is an undefined instruction before anything
    // happens and the kernel kills the task.
    unsafe { core::arch::asm!("mrs x0, sctlr_el1", out("x0") _) };
}
