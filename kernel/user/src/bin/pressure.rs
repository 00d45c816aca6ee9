//! Many of these run at once, more than there are ASIDs (PCIDs): each fills
//! its own pages with its own pattern and keeps checking it while the timer
//! preempts it and ASIDs are stolen and handed around. A stale translation
//! would show another task's pattern.
#![no_std]
#![no_main]

use aspace_user::*;

const DATA: usize = 0x2000_0000;
const PAGES: usize = 8;

#[no_mangle]
fn main(arg: u64) -> i32 {
    let a = area_create(DATA, PAGES * PAGE, READ | WRITE);
    if a != DATA {
        return 2;
    }
    let tag = 0x5151_0000_0000 + arg * 0x1_0000;
    for p in 0..PAGES {
        write((DATA + p * PAGE) as *mut u64, tag + p as u64);
    }
    let mut cpus = 0u64;
    let mut bad = 0;
    let rounds = 40u32;
    for round in 0..rounds {
        cpus |= 1 << cpu();
        // Busy work long enough to be preempted by the timer now and then.
        let mut x = round as u64;
        for i in 0..200_000u64 {
            x = core::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
        for p in 0..PAGES {
            let v = read((DATA + p * PAGE) as *const u64);
            if v != tag + p as u64 {
                bad += 1;
                println!(
                    "pressure {arg}: page {p} holds {v:#x}, expected {:#x}",
                    tag + p as u64
                );
            }
        }
        if round.is_multiple_of(8) {
            yield_now();
        }
    }
    println!(
        "pressure {arg}: {rounds} rounds, pattern {}, ran on cpus {cpus:#b}",
        if bad == 0 { "intact" } else { "CORRUPT" }
    );
    if bad == 0 {
        0
    } else {
        1
    }
}
