//! Flag words are 64-bit registers: bits the call does not define, the
//! high 32 included, are refused (EINVAL, -13; `as_area_create` answers
//! with its failure value), never cut away.
#![no_std]
#![no_main]

use aspace_user::*;

const AREA: usize = 0x3000_0000;
const RW: u64 = (READ | WRITE) as u64;

#[no_mangle]
fn main(_arg: u64) -> i32 {
    let mut ok = true;
    let r = syscall(nr::AREA_CREATE, AREA as u64, PAGE as u64, RW | 1 << 32, 0) as isize;
    println!("flags: create with bit 32 = {r}");
    ok &= r == -1;
    let r = syscall(nr::AREA_CREATE, AREA as u64, PAGE as u64, RW, 0);
    println!("flags: create without it = {r:#x}");
    if r != AREA as u64 {
        return 2;
    }
    write(AREA as *mut u64, 1);
    for bits in [READ as u64 | 1 << 40, READ as u64 | 1 << 63, 0x100] {
        let r = syscall(nr::AREA_CHANGE_FLAGS, AREA as u64, bits, 0, 0) as isize;
        println!("flags: change_flags {bits:#x} = {r}");
        ok &= r == -13;
    }
    for bits in [1u64 << 32, 1] {
        let r = syscall(nr::AREA_RESIZE, AREA as u64, 2 * PAGE as u64, bits, 0) as isize;
        println!("flags: resize with flags {bits:#x} = {r}");
        ok &= r == -13;
    }
    let r = syscall(nr::AREA_RESIZE, AREA as u64, 2 * PAGE as u64, 0, 0) as isize;
    println!("flags: resize with flags 0 = {r}");
    ok &= r == 0;
    let r = syscall(
        nr::SHARE_ACCEPT,
        pid(),
        1,
        0x3100_0000,
        READ as u64 | 1 << 32,
    ) as isize;
    println!("flags: share_accept with bit 32 = {r}");
    ok &= r == -13;
    // None of the refused calls changed the area: still writable.
    write(AREA as *mut u64, 2);
    write((AREA + PAGE) as *mut u64, 3);
    println!("flags: the area is still read-write");
    if ok {
        0
    } else {
        1
    }
}
