//! A stack that grows by page faults: deep recursion with a page-sized frame.
#![no_std]
#![no_main]

use aspace_user::*;

#[inline(never)]
fn dive(depth: u32) -> u64 {
    let mut frame = [0u8; PAGE];
    let f = core::hint::black_box(&mut frame);
    write(&mut f[0], depth as u8);
    write(&mut f[PAGE - 1], 1);
    if depth == 0 {
        return 1;
    }
    let below = core::hint::black_box(dive(depth - 1));
    let f = core::hint::black_box(&mut frame);
    below + read(&f[PAGE - 1]) as u64 + (read(&f[0]) == depth as u8) as u64 - 1
}

#[no_mangle]
fn main(_arg: u64) -> i32 {
    let depth = 48;
    let r = dive(depth);
    println!("stack: recursed {depth} frames of one page each, result {r}");
    if r == depth as u64 + 1 {
        0
    } else {
        1
    }
}
