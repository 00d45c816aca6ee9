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
    heap_filled(&mut good);
    if good {
        0
    } else {
        1
    }
}

/// Where the areas that fill the kernel heap go (placed anywhere above
/// it: one run of pages, below the Linux window).
const FILL: usize = 0x1_0000_0000;

/// One-page read-only late-reserving areas (no frame, no commit each)
/// until the kernel refuses one: its heap keeps a reserve, so threads,
/// forks and Linux mappings are refused too (`ENOMEM`) instead of the
/// kernel failing an allocation of its own; once they are gone all works
/// again.
fn heap_filled(good: &mut bool) {
    let mut n = 0;
    let first = area_anywhere(PAGE, READ | LATE_RESERVE, FILL);
    if first != CREATE_FAILED {
        n = 1;
        while n < 1 << 20 && area_anywhere(PAGE, READ | LATE_RESERVE, FILL) != CREATE_FAILED {
            n += 1;
        }
    }
    // A non-canonical entry: EINVAL if the call ran.
    let thread = thread_create_raw(1 << 63, 1 << 63, 0);
    let forked = fork();
    if forked == 0 {
        exit(0);
    }
    let mapped = linux::mmap(
        0,
        PAGE as u64,
        linux::PROT_READ,
        linux::MAP_PRIVATE | linux::MAP_ANONYMOUS,
        u64::MAX,
        0,
    );
    println!(
        "areas: kernel heap filled by {} one-page areas, then thread = {thread}, fork = {forked}, mmap = {mapped}",
        if n > 1000 { "thousands of" } else { "few" }
    );
    check(
        "kernel heap filled: areas, threads, forks, mappings refused (ENOMEM)",
        n > 1000 && thread == -2 && forked == linux::ENOMEM && mapped == linux::ENOMEM,
        good,
    );
    let mut destroyed = 0;
    for i in 0..n {
        destroyed += usize::from(area_destroy(first + i * PAGE) == 0);
    }
    let again = area_anywhere(PAGE, READ | WRITE, FILL);
    check(
        "kernel heap given back: all destroyed, an area made again",
        destroyed == n && again != CREATE_FAILED && area_destroy(again) == 0,
        good,
    );
}
