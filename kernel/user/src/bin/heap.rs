//! A heap placed anywhere (HelenOS `AS_AREA_ANY` above a bound, the base
//! written back) that grows and shrinks through `as_area_resize`.
#![no_std]
#![no_main]

use aspace_user::*;

const HEAP: usize = 0x1000_0000;

fn fill(pages: usize, seed: u64) {
    for i in 0..pages {
        write((HEAP + i * PAGE) as *mut u64, seed + i as u64);
    }
}

fn check(pages: usize, seed: u64) -> bool {
    (0..pages).all(|i| read((HEAP + i * PAGE) as *const u64) == seed + i as u64)
}

#[no_mangle]
fn main(_arg: u64) -> i32 {
    // The lowest free place at or above HEAP: HEAP itself, as nothing is
    // there.
    let mut base = ANY;
    let a = area_create_any(&mut base, PAGE, READ | WRITE, HEAP);
    println!("heap: created anywhere above {HEAP:#x}: at {a:#x} (written back {base:#x})");
    if a != HEAP || base != HEAP {
        return 1;
    }
    fill(1, 100);
    let r = area_resize(HEAP, 64 * PAGE);
    println!("heap: grow to 64 pages = {r}");
    fill(64, 100);
    let ok = check(64, 100);
    println!(
        "heap: 64 pages written and read back: {}",
        if ok { "ok" } else { "BAD" }
    );
    let r2 = area_resize(HEAP, 4 * PAGE);
    let ok2 = check(4, 100);
    println!(
        "heap: shrink to 4 pages = {r2}, first 4 pages intact: {}",
        if ok2 { "ok" } else { "BAD" }
    );
    // Another area right above the heap: growing into it must fail.
    let b = area_create(HEAP + 8 * PAGE, PAGE, READ);
    let r3 = area_resize(HEAP, 16 * PAGE);
    println!("heap: grow into the next area = {r3} (EADDRNOTAVAIL is -11)");
    let r4 = area_resize(HEAP, 0);
    println!("heap: resize to 0 = {r4} (EPERM is -6)");
    let bad = area_create(0x2000_0000, PAGE, READ | WRITE | EXEC);
    println!("heap: create write+exec = {}", bad as isize);
    let d1 = area_destroy(b);
    let d2 = area_destroy(HEAP);
    let d3 = area_destroy(HEAP);
    println!("heap: destroy = {d1}, {d2}; again = {d3} (ENOENT is -1)");
    let good = ok
        && ok2
        && r == 0
        && r2 == 0
        && r3 == -11
        && r4 == -6
        && bad == CREATE_FAILED
        && d1 == 0
        && d2 == 0
        && d3 == -1;
    if good {
        0
    } else {
        1
    }
}
