//! A stack that grows: the kernel gives each task a guarded, growing stack
//! area (64 KiB at start, up to 1 MiB); deep recursion with 1 KiB frames
//! grows it a page per fault in its guard page, and every frame's data is
//! checked on the way back.
#![no_std]
#![no_main]

use aspace_user::*;

const FRAME: usize = 1024;

#[inline(never)]
fn dive(depth: u32) -> u64 {
    let mut frame = [0u8; FRAME];
    let f = core::hint::black_box(&mut frame);
    for (i, b) in f.iter_mut().enumerate().rev() {
        write(b, (depth as usize).wrapping_mul(7).wrapping_add(i) as u8);
    }
    let below = if depth == 0 {
        0
    } else {
        core::hint::black_box(dive(depth - 1))
    };
    let f = core::hint::black_box(&mut frame);
    let intact = f
        .iter()
        .enumerate()
        .all(|(i, b)| read(b) == (depth as usize).wrapping_mul(7).wrapping_add(i) as u8);
    below + intact as u64
}

fn stack_area() -> AreaInfo {
    let here = 0u64;
    let sp = core::hint::black_box(&here) as *const u64 as usize;
    area_info(sp).unwrap_or_default()
}

#[no_mangle]
fn main(_arg: u64) -> i32 {
    let before = stack_area();
    let depth = 400;
    let r = dive(depth - 1);
    let after = stack_area();
    println!(
        "stack: recursed {depth} frames of 1 KiB, {r} intact; stack area {} KiB -> {} KiB, flags {:#x}",
        before.size / 1024,
        after.size / 1024,
        after.flags
    );
    let grew = after.size > before.size && after.base < before.base;
    println!("stack: grew downwards: {}", if grew { "ok" } else { "BAD" });
    if r == depth as u64 && grew && before.size == 64 * 1024 {
        0
    } else {
        1
    }
}
