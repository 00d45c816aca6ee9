//! Register values a user program controls that the return to user mode
//! must not trust. Argument 0: the system-call instruction in the last
//! bytes of the user half (x86_64: `int 0x80`, 2 bytes; riscv64: `ecall`,
//! 4 bytes; aarch64: `svc #0`, 4 bytes), so the system call returns to the
//! first address past the user half (x86_64: 0x8000_0000_0000,
//! non-canonical: `iretq` would fault in ring 0; riscv64 Sv39:
//! 0x40_0000_0000; aarch64: 0x1_0000_0000_0000, the `TTBR1_EL1` gap). Argument 1: a system call with
//! the stack pointer there. The kernel must kill the task (with the
//! reason), not fault itself.
#![no_std]
#![no_main]

use aspace_user::*;

/// The last page of the user half.
#[cfg(target_arch = "x86_64")]
const TOP: usize = 0x7fff_ffff_f000;
/// The last page of the user half (Sv39).
#[cfg(target_arch = "riscv64")]
const TOP: usize = 0x3f_ffff_f000;
/// The last page of the user half (48-bit `TTBR0_EL1`).
#[cfg(target_arch = "aarch64")]
const TOP: usize = 0xffff_ffff_f000;
/// The first address past the user half.
const END: u64 = (TOP + PAGE) as u64;

/// The system-call instruction.
#[cfg(target_arch = "x86_64")]
const SYSCALL: &[u8] = &[0xcd, 0x80];
/// The system-call instruction (`ecall`, 0x00000073).
#[cfg(target_arch = "riscv64")]
const SYSCALL: &[u8] = &[0x73, 0, 0, 0];
/// The system-call instruction (`svc #0`, 0xd4000001).
#[cfg(target_arch = "aarch64")]
const SYSCALL: &[u8] = &[0x01, 0, 0, 0xd4];

#[no_mangle]
fn main(arg: u64) -> i32 {
    if arg == 0 {
        if area_create(TOP, PAGE, READ | WRITE) != TOP {
            return 2;
        }
        let at = TOP + PAGE - SYSCALL.len();
        for (i, b) in SYSCALL.iter().enumerate() {
            write((at + i) as *mut u8, *b);
        }
        if area_change_flags(TOP, READ | EXEC) != 0 {
            return 3;
        }
        println!("edge: a system call at {at:#x}, the last bytes of the user half");
        jump_to(at)
    } else {
        println!("edge: a system call with the stack pointer at {END:#x}");
        syscall_with_stack(END)
    }
}

/// Jumps to the system call at `at` with the number of `CPU` loaded.
#[cfg(target_arch = "x86_64")]
fn jump_to(at: usize) -> ! {
    // SAFETY: deliberate: jumps to the `int 0x80` just written (and made
    // executable); the system call returns to a non-canonical address, so
    // the kernel kills the task and control never comes back.
    unsafe {
        core::arch::asm!("jmp {}", in(reg) at, in("rax") nr::CPU, options(noreturn));
    }
}

/// Jumps to the system call at `at` with the number of `CPU` loaded.
#[cfg(target_arch = "riscv64")]
fn jump_to(at: usize) -> ! {
    // SAFETY: deliberate: jumps to the `ecall` just written (and made
    // executable; `fence.i` first, so this hart fetches what was written);
    // the system call returns past the user half, so the kernel kills the
    // task and control never comes back.
    unsafe {
        core::arch::asm!("fence.i", "jr {}", in(reg) at, in("a7") nr::CPU, options(noreturn));
    }
}

/// Makes a system call with the stack pointer at `sp`.
#[cfg(target_arch = "x86_64")]
fn syscall_with_stack(sp: u64) -> ! {
    // SAFETY: deliberate: with a non-canonical stack pointer nothing after
    // the system call can run (the kernel kills the task); the `ud2` ends
    // the task should it come back.
    unsafe {
        core::arch::asm!(
            "mov rsp, {}",
            "int 0x80",
            "ud2",
            in(reg) sp,
            in("rax") nr::CPU,
            options(noreturn)
        );
    }
}

/// Makes a system call with the stack pointer at `sp`.
#[cfg(target_arch = "riscv64")]
fn syscall_with_stack(sp: u64) -> ! {
    // SAFETY: deliberate: with the stack pointer past the user half nothing
    // after the system call can run (the kernel kills the task); the
    // `unimp` ends the task should it come back.
    unsafe {
        core::arch::asm!(
            "mv sp, {}",
            "ecall",
            "unimp",
            in(reg) sp,
            in("a7") nr::CPU,
            options(noreturn)
        );
    }
}

/// Jumps to the system call at `at` with the number of `CPU` loaded.
#[cfg(target_arch = "aarch64")]
fn jump_to(at: usize) -> ! {
    sync_icache(at);
    // SAFETY: deliberate: jumps to the `svc` just written (made executable
    // and, just above, visible to this CPU's instruction fetches); the
    // system call returns past the user half, so the kernel kills the task
    // and control never comes back.
    unsafe {
        core::arch::asm!("br {}", in(reg) at, in("x8") nr::CPU, options(noreturn));
    }
}

/// Makes a system call with the stack pointer at `sp`.
#[cfg(target_arch = "aarch64")]
fn syscall_with_stack(sp: u64) -> ! {
    // SAFETY: deliberate: with the stack pointer past the user half nothing
    // after the system call can run (the kernel kills the task); the
    // `udf` ends the task should it come back.
    unsafe {
        core::arch::asm!(
            "mov sp, {}",
            "svc #0",
            "udf #0",
            in(reg) sp,
            in("x8") nr::CPU,
            options(noreturn)
        );
    }
}
