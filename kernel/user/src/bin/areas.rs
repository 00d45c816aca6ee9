//! Area info and placement: areas placed anywhere (the chosen base written
//! back), the task's own areas listed and described (text, data, stack,
//! heap), resident and reserved pages, a guard page kept free, the commit
//! limit refusing an area larger than memory up front, and a late-reserving
//! area that reserves page by page.
#![no_std]
#![no_main]

use aspace_user::*;

const BOUND: usize = 0x2000_0000;

fn check(what: &str, ok: bool, good: &mut bool) {
    println!("areas: {what}: {}", if ok { "ok" } else { "BAD" });
    *good &= ok;
}

#[no_mangle]
fn main(_arg: u64) -> i32 {
    let mut good = true;
    // Anywhere at or above a bound: the lowest free place there.
    let mut base = ANY;
    let a = area_create_any(&mut base, 4 * PAGE, READ | WRITE, BOUND);
    println!("areas: anywhere above {BOUND:#x}: {a:#x} (written back {base:#x})");
    check(
        "placed at the bound, base written back",
        a == BOUND && base == a,
        &mut good,
    );
    let b = area_anywhere(PAGE, READ | WRITE | GUARD, BOUND);
    check(
        "the next one right after, leaving its guard page",
        b == BOUND + 5 * PAGE,
        &mut good,
    );
    let c = area_anywhere(PAGE, READ, BOUND + 4 * PAGE);
    check(
        "a guard page is not given to another area",
        c == BOUND + 6 * PAGE,
        &mut good,
    );
    let mut fixed = BOUND + 4 * PAGE;
    let r = area_create_any(&mut fixed, PAGE, READ, 0);
    check(
        "a fixed area over a guard page is refused",
        r == CREATE_FAILED,
        &mut good,
    );
    for i in 0..3 {
        write((a + i * PAGE) as *mut u64, i as u64 + 1);
    }
    // The info of one area.
    match area_info(a + PAGE + 8) {
        Ok(i) => {
            println!(
                "areas: info {:#x}+{:#x} flags {:#x} backend {} resident {} reserved {}",
                i.base, i.size, i.flags, i.backend, i.resident, i.reserved
            );
            check(
                "info: base, size, rights, anonymous, 3 resident, 4 reserved",
                i.base == a as u64
                    && i.size == 4 * PAGE as u64
                    && i.flags & 7 == READ | WRITE
                    && i.backend == BACKEND_ANON
                    && i.resident == 3
                    && i.reserved == 4,
                &mut good,
            );
        }
        Err(e) => {
            println!("areas: info of the area = {e}: BAD");
            good = false;
        }
    }
    check(
        "no info for an address in no area (ENOENT)",
        matches!(area_info(0x7000_0000), Err(-1)),
        &mut good,
    );
    // The whole list.
    let mut list = [AreaInfo::default(); 16];
    let n = area_list(&mut list);
    println!("areas: {n} areas");
    if n > 0 {
        for i in &list[..(n as usize).min(16)] {
            println!(
                "areas:   {:#014x}+{:#x} flags {:#x} backend {} resident {} reserved {}",
                i.base, i.size, i.flags, i.backend, i.resident, i.reserved
            );
        }
    }
    let l = &list[..(n.max(0) as usize).min(16)];
    let text = l
        .iter()
        .any(|i| i.backend == BACKEND_ELF && i.flags & 7 == READ | EXEC);
    let stack = l
        .iter()
        .any(|i| i.backend == BACKEND_ANON && i.flags & 0x50 == 0x50 && i.size == 64 * 1024);
    let sorted = l.windows(2).all(|w| w[0].base < w[1].base);
    check(
        "the list: sorted, ELF text, the growing guarded stack, the 3 created",
        n == l.len() as isize && n >= 6 && text && stack && sorted,
        &mut good,
    );
    check(
        "a list into a buffer of 0 still counts",
        area_list(&mut []) == n,
        &mut good,
    );
    // Commit limit: more than memory is refused up front...
    let huge = area_anywhere(1 << 30, READ | WRITE, BOUND);
    check(
        "1 GiB refused by the commit limit",
        huge == CREATE_FAILED,
        &mut good,
    );
    // ...unless it reserves late, page by page.
    let late = area_anywhere(1 << 30, READ | WRITE | LATE_RESERVE, BOUND);
    check(
        "1 GiB late-reserving area created",
        late != CREATE_FAILED,
        &mut good,
    );
    if late != CREATE_FAILED {
        let r0 = area_info(late).map(|i| i.reserved).unwrap_or(99);
        write(late as *mut u64, 5);
        write((late + 100 * PAGE) as *mut u64, 6);
        let r2 = area_info(late).map(|i| i.reserved).unwrap_or(99);
        println!("areas: late-reserving area reserved {r0} pages, after 2 touches {r2}");
        check(
            "late reserve: 0, then 2 pages",
            r0 == 0 && r2 == 2,
            &mut good,
        );
        check("late area destroyed", area_destroy(late) == 0, &mut good);
    }
    for x in [a, b, c] {
        area_destroy(x);
    }
    if good {
        0
    } else {
        1
    }
}
