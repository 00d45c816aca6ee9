//! Maps the area its peer (the writer) offered it under key `arg` and reads
//! what the writer wrote, then answers through the same pages.
#![no_std]
#![no_main]

use aspace_user::*;

const DST: usize = 0x5000_0000;

#[no_mangle]
fn main(arg: u64) -> i32 {
    let mut tries = 0u64;
    let r = loop {
        let r = share_accept(peer(0), arg, DST, READ | WRITE);
        if r != -1 {
            break r;
        }
        tries += 1;
        if tries > 1_000_000 {
            println!("share-reader: nothing offered");
            return 1;
        }
        yield_now();
    };
    println!(
        "share-reader: accepted key {arg} from task {} at {DST:#x}: {r}",
        peer(0)
    );
    if r != 0 {
        return 1;
    }
    let ok = (0..3).all(|p| read((DST + p * PAGE) as *const u64) == 0xfeed_0000 + p as u64);
    println!(
        "share-reader: the writer's 3 pages read back: {}",
        if ok { "ok" } else { "BAD" }
    );
    // A page nobody touched yet: faulted in here, seen by the writer too.
    write((DST + 3 * PAGE + 8) as *mut u64, 0xa11_900d);
    let d = area_destroy(DST);
    println!("share-reader: answered, destroyed the mapping: {d}");
    if ok && d == 0 {
        0
    } else {
        1
    }
}
