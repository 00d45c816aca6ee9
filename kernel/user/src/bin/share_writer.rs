//! Creates an area, fills it, offers it to its peer (the reader) under key
//! `arg`, then waits until the reader writes its answer into the same
//! pages.
#![no_std]
#![no_main]

use aspace_user::*;

const AREA: usize = 0x4000_0000;
const PAGES: usize = 4;

#[no_mangle]
fn main(arg: u64) -> i32 {
    if area_create(AREA, PAGES * PAGE, READ | WRITE) != AREA {
        return 2;
    }
    // Only the first three pages are touched before sharing; the reader
    // faults the fourth in later, and both must see the same frame.
    for p in 0..3 {
        write((AREA + p * PAGE) as *mut u64, 0xfeed_0000 + p as u64);
    }
    let r = share_offer(AREA, PAGES * PAGE, peer(0), arg, READ | WRITE);
    println!(
        "share-writer: wrote 3 pages, offered the area to task {} under key {arg}: {r}",
        peer(0)
    );
    let answer = (AREA + 3 * PAGE + 8) as *const u64;
    let mut waits = 0u64;
    while read(answer) != 0xa11_900d {
        yield_now();
        waits += 1;
        if waits > 1_000_000 {
            println!("share-writer: no answer");
            return 1;
        }
    }
    println!(
        "share-writer: the reader's answer arrived in the shared area: {:#x}",
        read(answer)
    );
    0
}
