//! Register values a user program controls that `iretq` would fault on in
//! ring 0. Argument 0: `int 0x80` in the last two bytes of the user half,
//! so the system call returns to 0x8000_0000_0000, the first non-canonical
//! address. Argument 1: `int 0x80` with a non-canonical stack pointer. The
//! kernel must kill the task (with the reason), not fault itself.
#![no_std]
#![no_main]

use aspace_user::*;

const TOP: usize = 0x7fff_ffff_f000;

#[no_mangle]
fn main(arg: u64) -> i32 {
    if arg == 0 {
        if area_create(TOP, PAGE, READ | WRITE) != TOP {
            return 2;
        }
        let at = TOP + PAGE - 2;
        write(at as *mut u8, 0xcd);
        write((at + 1) as *mut u8, 0x80);
        if area_change_flags(TOP, READ | EXEC) != 0 {
            return 3;
        }
        println!("edge: int 0x80 at {at:#x}, the last two bytes of the user half");
        // SAFETY: deliberate: jumps to the `int 0x80` just written (and made
        // executable); the system call returns to a non-canonical address,
        // so the kernel kills the task and control never comes back.
        unsafe {
            core::arch::asm!("jmp {}", in(reg) at, in("rax") nr::CPU, options(noreturn));
        }
    } else {
        println!("edge: int 0x80 with the stack pointer at 0x800000000000");
        // SAFETY: deliberate: with a non-canonical stack pointer nothing
        // after the system call can run (the kernel kills the task); the
        // `ud2` ends the task should it come back.
        unsafe {
            core::arch::asm!(
                "mov rsp, {}",
                "int 0x80",
                "ud2",
                in(reg) 0x0000_8000_0000_0000u64,
                in("rax") nr::CPU,
                options(noreturn)
            );
        }
    }
}
