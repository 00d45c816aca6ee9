//! Writes code into a writable area, makes it executable with
//! `as_area_change_flags`, and runs it.
#![no_std]
#![no_main]

use aspace_user::*;

const CODE: usize = 0x3000_0000;

#[no_mangle]
fn main(arg: u64) -> i32 {
    let a = area_create(CODE, PAGE, READ | WRITE);
    // mov eax, 42 ; ret
    let code = [0xb8u8, 42, 0, 0, 0, 0xc3];
    for (i, b) in code.iter().enumerate() {
        write((a + i) as *mut u8, *b);
    }
    let wx = area_change_flags(CODE, READ | WRITE | EXEC);
    println!("jit: change to write+exec = {wx} (EINVAL is -13)");
    let r = area_change_flags(CODE, READ | EXEC);
    // SAFETY: a `usize` and a function pointer have the same size. CODE's
    // page holds `mov eax, 42; ret`, a complete `extern "C" fn() -> u32`
    // (result in EAX, no stack use), now read+exec. Had a step failed, the
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
