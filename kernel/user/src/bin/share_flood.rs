//! Offers one page again and again under new keys to a process that never
//! takes them: the kernel keeps at most `nr::MAX_OFFERS` pending offers per
//! process and refuses the next with ENOMEM (-2); the same receiver and key
//! again replaces an offer instead of adding one.
#![no_std]
#![no_main]

use aspace_user::*;

const AREA: usize = 0x4300_0000;
/// No process has this number.
const NOBODY: u64 = u64::MAX;

#[no_mangle]
fn main(_arg: u64) -> i32 {
    if area_create(AREA, PAGE, READ | WRITE) != AREA {
        return 2;
    }
    let mut pending = 0;
    let mut next = 0;
    for key in 0..(nr::MAX_OFFERS as u64 + 8) {
        next = share_offer(AREA, PAGE, NOBODY, key, READ);
        if next != 0 {
            break;
        }
        pending += 1;
    }
    println!("share-flood: {pending} offers pending, the next one = {next}");
    let again = share_offer(AREA, PAGE, NOBODY, 0, READ);
    let unmapped = share_offer(0x4400_0000, PAGE, NOBODY, 1000, READ);
    println!("share-flood: the same offer again = {again}; an offer of no area = {unmapped}");
    if pending == nr::MAX_OFFERS && next == -2 && again == 0 && unmapped == -1 {
        0
    } else {
        1
    }
}
