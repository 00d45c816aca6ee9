//! PSCI calls (QEMU virt's conduit without EL2/EL3 is `hvc`, which QEMU
//! itself answers): CPU_ON for the other CPUs, AFFINITY_INFO to find
//! which exist, SYSTEM_OFF, and the version.

use core::arch::asm;

const VERSION: u64 = 0x8400_0000;
const CPU_ON: u64 = 0xc400_0003;
const AFFINITY_INFO: u64 = 0xc400_0004;
const SYSTEM_OFF: u64 = 0x8400_0008;

fn call(f: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let r: i64;
    // SAFETY: `hvc #0` with a PSCI function ID in x0 is a PSCI call (the
    // SMC calling convention: arguments in x1 to x3, result in x0, x1 to
    // x17 possibly clobbered, declared so). QEMU's PSCI touches no memory
    // of the kernel's.
    unsafe {
        asm!("hvc #0",
             inlateout("x0") f => r, inlateout("x1") a1 => _, inlateout("x2") a2 => _,
             inlateout("x3") a3 => _, out("x4") _, out("x5") _, out("x6") _, out("x7") _,
             out("x8") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _,
             out("x13") _, out("x14") _, out("x15") _, out("x16") _, out("x17") _,
             options(nostack));
    }
    r
}

/// PSCI's version, "major.minor".
pub fn version() -> alloc::string::String {
    let v = call(VERSION, 0, 0, 0) as u64;
    alloc::format!("{}.{}", v >> 16 & 0x7fff, v & 0xffff)
}

/// Starts the CPU of affinity `mpidr` at physical address `entry` (EL1,
/// MMU off) with `context` in x0. Returns the PSCI error (0: started).
pub fn cpu_on(mpidr: u64, entry: u64, context: u64) -> i64 {
    call(CPU_ON, mpidr, entry, context)
}

/// The state of the CPU of affinity `mpidr` (0 on, 1 off, 2 on pending),
/// or `None` when there is no such CPU.
pub fn affinity_info(mpidr: u64) -> Option<u64> {
    let r = call(AFFINITY_INFO, mpidr, 0, 0);
    (r >= 0).then_some(r as u64)
}

/// Turns the machine off.
pub fn system_off() {
    call(SYSTEM_OFF, 0, 0, 0);
}
