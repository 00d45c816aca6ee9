//! Writes code into a writable area, makes it executable with
//! `as_area_change_flags`, and runs it.
#![no_std]
#![no_main]

use aspace_user::*;

const CODE: usize = 0x3000_0000;

/// A function returning 42: `mov eax, 42; ret`.
#[cfg(target_arch = "x86_64")]
const CODE_BYTES: &[u8] = &[0xb8, 42, 0, 0, 0, 0xc3];
/// A function returning 42: `li a0, 42` (0x02a00513); `ret` (0x00008067).
#[cfg(target_arch = "riscv64")]
const CODE_BYTES: &[u8] = &[0x13, 0x05, 0xa0, 0x02, 0x67, 0x80, 0x00, 0x00];
/// A function returning 42: `mov w0, #42` (0x52800540); `ret` (0xd65f03c0).
#[cfg(target_arch = "aarch64")]
const CODE_BYTES: &[u8] = &[0x40, 0x05, 0x80, 0x52, 0xc0, 0x03, 0x5f, 0xd6];

/// Makes the code just written visible to instruction fetches: nothing to
/// do on x86_64 (coherent instruction caches).
#[cfg(target_arch = "x86_64")]
fn sync_instructions() {}

/// Makes the code just written visible to this hart's instruction fetches
/// (`fence.i`; the task runs on one hart at a time, and the kernel's trap
/// on a migration is no instruction fence, which QEMU does not need).
#[cfg(target_arch = "riscv64")]
fn sync_instructions() {
    // SAFETY: `fence.i` only orders this hart's earlier stores before its
    // later instruction fetches; it touches no register or memory.
    unsafe { core::arch::asm!("fence.i", options(nostack)) };
}

/// Makes the code just written visible to this CPU's instruction fetches
/// (CODE's page is read+exec now).
#[cfg(target_arch = "aarch64")]
fn sync_instructions() {
    sync_icache(CODE);
}

#[no_mangle]
fn main(arg: u64) -> i32 {
    let a = area_create(CODE, PAGE, READ | WRITE);
    for (i, b) in CODE_BYTES.iter().enumerate() {
        write((a + i) as *mut u8, *b);
    }
    let wx = area_change_flags(CODE, READ | WRITE | EXEC);
    println!("jit: change to write+exec = {wx} (EINVAL is -13)");
    let r = area_change_flags(CODE, READ | EXEC);
    sync_instructions();
    // SAFETY: a `usize` and a function pointer have the same size. CODE's
    // page holds CODE_BYTES, a complete `extern "C" fn() -> u32` (result in
    // EAX or a0, no stack use), now read+exec. Had a step failed, the
    // call faults (no area, or the page not executable) and the kernel kills
    // the task: it never returns into Rust code with a wrong state.
    let f: extern "C" fn() -> u32 = unsafe { core::mem::transmute(CODE) };
    let v = f();
    println!("jit: change to read+exec = {r}; generated code returned {v}");
    if arg == 1 {
        println!("jit: now writing to the executable page");
        write(CODE as *mut u8, 0x90);
        println!("jit: BAD: the write went through");
        return 1;
    }
    if r == 0 && v == 42 && wx == -13 {
        0
    } else {
        1
    }
}
