//! Unbounded recursion: the stack grows to its limit (1 MiB), then the
//! fault in its guard page kills the task as a stack overflow.
#![no_std]
#![no_main]

use aspace_user::*;

#[inline(never)]
fn dive(depth: u64) -> u64 {
    let mut frame = [0u8; 512];
    let f = core::hint::black_box(&mut frame);
    write(&mut f[511], depth as u8);
    if depth.is_multiple_of(256) {
        println!("stack_overflow: depth {depth}");
    }
    // Never true: only keeps the recursion from being unconditional.
    if depth == core::hint::black_box(u64::MAX) {
        return 0;
    }
    core::hint::black_box(dive(depth + 1)) + read(&f[0]) as u64
}

#[no_mangle]
fn main(_arg: u64) -> i32 {
    let r = dive(0);
    println!("stack_overflow: returned {r}: BAD");
    0
}
