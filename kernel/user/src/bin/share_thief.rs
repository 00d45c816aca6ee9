//! Tries to take an offer made to another process, and to pass a forged
//! area off as its peer's. Peers: 0 the owner, 1 the reader. It accepts the
//! page the owner offered it (key `arg + 2`); the owner offered the reader
//! a page under `arg + 1` before, which it then tries to take: not found,
//! since the offer names the reader. Then it offers the reader a forged
//! area under key `arg`, the key the owner will use: the reader names the
//! owner when it accepts, so it must not get this one.
#![no_std]
#![no_main]

use aspace_user::*;

const SIGNAL: usize = 0x5000_0000;
const STOLEN: usize = 0x5100_0000;
const FORGED: usize = 0x5200_0000;
const PAGES: usize = 4;

#[no_mangle]
fn main(arg: u64) -> i32 {
    let (owner, reader) = (peer(0), peer(1));
    let mut tries = 0u64;
    let r = loop {
        let r = share_accept(owner, arg + 2, SIGNAL, READ | WRITE);
        if r != -1 {
            break r;
        }
        tries += 1;
        if tries > 1_000_000 {
            println!("share-thief: nothing offered");
            return 1;
        }
        yield_now();
    };
    println!("share-thief: accepted its own page from task {owner}: {r}");
    if r != 0 {
        return 1;
    }
    let stolen = share_accept(owner, arg + 1, STOLEN, READ);
    println!("share-thief: taking the page task {owner} offered task {reader} = {stolen}");
    if area_create(FORGED, PAGES * PAGE, READ | WRITE) != FORGED {
        return 2;
    }
    for p in 0..PAGES {
        write((FORGED + p * PAGE) as *mut u64, 0xbad);
    }
    let forged = share_offer(FORGED, PAGES * PAGE, reader, arg, READ | WRITE);
    println!("share-thief: offered task {reader} a forged area under key {arg}: {forged}");
    write(SIGNAL as *mut u64, 1);
    // Keep the forged offer alive until the reader has answered the owner.
    let mut waits = 0u64;
    while read(SIGNAL as *const u64) != 2 {
        yield_now();
        waits += 1;
        if waits > 1_000_000 {
            println!("share-thief: the owner never finished");
            return 1;
        }
    }
    if stolen == -1 && forged == 0 {
        0
    } else {
        1
    }
}
