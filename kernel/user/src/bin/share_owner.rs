//! Offers areas to named processes (its peers: 0 the reader, 1 the thief)
//! and checks that only the named one can take them: one page to the
//! reader under key `arg + 1` that the thief tries to take, one page to the
//! thief under `arg + 2` (its signal channel), then, once the thief has
//! also offered the reader a forged area under key `arg`, its real area to
//! the reader under `arg`. The reader must map this one, not the forgery.
//! An offer also bounds the rights: the probe page offered to itself
//! read-only cannot be mapped writable (`EPERM`), only readable.
#![no_std]
#![no_main]

use aspace_user::*;

const AREA: usize = 0x4000_0000;
const PAGES: usize = 4;
const PROBE: usize = 0x4100_0000;
const SIGNAL: usize = 0x4200_0000;
const SELF: usize = 0x4300_0000;

fn wait_for(p: *const u64, v: u64, what: &str) -> bool {
    let mut waits = 0u64;
    while read(p) != v {
        yield_now();
        waits += 1;
        if waits > 1_000_000 {
            println!("share-owner: no {what}");
            return false;
        }
    }
    true
}

#[no_mangle]
fn main(arg: u64) -> i32 {
    let (reader, thief) = (peer(0), peer(1));
    if area_create(AREA, PAGES * PAGE, READ | WRITE) != AREA
        || area_create(PROBE, PAGE, READ | WRITE) != PROBE
        || area_create(SIGNAL, PAGE, READ | WRITE) != SIGNAL
    {
        return 2;
    }
    for p in 0..3 {
        write((AREA + p * PAGE) as *mut u64, 0xfeed_0000 + p as u64);
    }
    write(SIGNAL as *mut u64, 0);
    let probe = share_offer(PROBE, PAGE, reader, arg + 1, READ);
    // A read-only offer: more rights refused (the offer used up by the
    // attempt), the same rights granted; the page reads the owner's data.
    let me = pid();
    write(PROBE as *mut u64, 0x00ff_34ed);
    let key = arg + 3;
    let offered = share_offer(PROBE, PAGE, me, key, READ);
    let writable = share_accept(me, key, SELF, READ | WRITE);
    let again = share_offer(PROBE, PAGE, me, key, READ);
    let readable = share_accept(me, key, SELF, READ);
    let seen = readable == 0 && read(SELF as *const u64) == 0x00ff_34ed;
    let bounded = offered == 0 && writable == -6 && again == 0 && seen;
    println!(
        "share-owner: offered itself a page read-only: mapped writable = {writable}, readable = {readable}, data {}",
        if seen { "read back" } else { "BAD" }
    );
    if !bounded || area_destroy(SELF) != 0 {
        return 1;
    }
    let signal = share_offer(SIGNAL, PAGE, thief, arg + 2, READ | WRITE);
    println!(
        "share-owner: offered a page to task {reader} (key {}): {probe}, a page to task {thief} (key {}): {signal}",
        arg + 1,
        arg + 2
    );
    if !wait_for(SIGNAL as *const u64, 1, "signal from the thief") {
        return 1;
    }
    let r = share_offer(AREA, PAGES * PAGE, reader, arg, READ | WRITE);
    println!("share-owner: offered the area to task {reader} under key {arg}: {r}");
    let answer = (AREA + 3 * PAGE + 8) as *const u64;
    let ok = wait_for(answer, 0xa11_900d, "answer from the reader");
    // The thief may end now.
    write(SIGNAL as *mut u64, 2);
    if !ok {
        return 1;
    }
    println!(
        "share-owner: the reader's answer arrived in the shared area: {:#x}",
        read(answer)
    );
    if probe == 0 && signal == 0 && r == 0 {
        0
    } else {
        1
    }
}
