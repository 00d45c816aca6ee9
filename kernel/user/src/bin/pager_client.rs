//! The client of `pager` (its process number is peer 0): maps the pager's
//! 4-page "file" with `AREA_CREATE_PAGED` and reads it. Modes (the
//! argument, as the pager's):
//!
//! - 0: prints from the last page through a system call (the kernel's
//!   copy waits for the pager), then reads every byte twice and checks
//!   them (the pager is asked once per page);
//! - 1 (slow pager): three more threads count while the first waits in its
//!   page faults for the slow answers: the count must have moved (with
//!   more threads ready than CPUs, the waiting thread sleeps in the kernel
//!   on every CPU count);
//! - 2 (dying pager): page 0 reads fine; the fault on page 1 fails because
//!   the pager ended holding its request, and the kernel kills this task;
//! - 3 (refusing pager): the fault on page 0 fails with the pager's error
//!   (its answer was refused), and the kernel kills this task;
//! - 4 (flooding client): 20 threads fault on 20 pages of a 24-page paged
//!   area at once while the pager answers none until it has heard no more
//!   for a while: the kernel holds at most 16 of this task's requests and
//!   fails the fault past them, which kills this task (as any failed fault
//!   does); the threads whose requests were held end once the pager
//!   answers, without reading on;
//! - 5 (the flooder's neighbour): reads the first page of its own paged
//!   area of the same pager while the flood goes on: served.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use aspace_user::*;

const FILE: usize = 0x5000_0000;
const PAGES: usize = 4;

/// Threads that count while the main one waits for the slow pager.
const COUNTERS: u64 = 3;

static COUNT: AtomicU64 = AtomicU64::new(0);
static STOP: AtomicU64 = AtomicU64::new(0);
static ENDED: AtomicU64 = AtomicU64::new(0);

fn byte(i: usize) -> u8 {
    (i.wrapping_mul(31) ^ (i / PAGE).wrapping_mul(0x5b)) as u8
}

fn page_ok(p: usize) -> bool {
    (p * PAGE..(p + 1) * PAGE).all(|i| read((FILE + i) as *const u8) == byte(i))
}

extern "C" fn counter(_: u64) -> ! {
    while STOP.load(Ordering::SeqCst) == 0 {
        COUNT.fetch_add(1, Ordering::SeqCst);
        yield_now();
    }
    ENDED.fetch_add(1, Ordering::SeqCst);
    exit(0)
}

/// Threads that fault at once in mode 4, and the pages of its area.
const FLOOD: usize = 20;
const FLOOD_PAGES: usize = 24;

extern "C" fn flooder(page: u64) -> ! {
    // The fault waits for the pager; by its answer the task was killed
    // (a fault past the kernel's bound was refused): the thread ends then.
    let v = read((FILE + page as usize * PAGE) as *const u8);
    println!("pager_client: flood thread read page {page} ({v}) after its task was killed: BAD");
    exit(1)
}

#[no_mangle]
fn main(mode: u64) -> i32 {
    let pager = peer(0);
    let pages = if mode == 4 { FLOOD_PAGES } else { PAGES };
    // The pager may not have started yet: retry while it is unknown.
    let mut r = -1;
    for _ in 0..100_000 {
        r = area_create_paged(FILE, pages * PAGE, READ, pager, [7, 42, mode]);
        if r != -1 {
            break;
        }
        yield_now();
    }
    println!("pager_client: mode {mode}: paged area of pager {pager} = {r:#x}");
    if r != FILE as isize {
        return 1;
    }
    match mode {
        0 => {
            // A system call's copy from a page not read yet: the kernel's
            // copy waits for the pager (the thread parked in the call).
            let r = print_raw((FILE + 3 * PAGE) as *const u8, 16);
            println!("pager_client: print from an unread page of the area = {r}");
            if r != 0 {
                return 1;
            }
            let first = (0..PAGES).all(page_ok);
            let again = (0..PAGES).all(page_ok);
            let info = area_info(FILE).unwrap_or_default();
            println!(
                "pager_client: read {} bytes: {}, again: {}; area backend {} resident {}",
                PAGES * PAGE,
                if first { "ok" } else { "BAD" },
                if again { "ok" } else { "BAD" },
                info.backend,
                info.resident
            );
            if first && again && info.backend == BACKEND_USER && info.resident == PAGES as u64 {
                0
            } else {
                1
            }
        }
        1 => {
            for t in 0..COUNTERS as usize {
                let stack = area_anywhere(16 * PAGE, READ | WRITE, 0x6000_0000 + t * 0x10_0000);
                if stack == CREATE_FAILED || thread_create(counter, stack + 16 * PAGE, 0) < 0 {
                    return 1;
                }
            }
            while COUNT.load(Ordering::SeqCst) == 0 {
                yield_now();
            }
            let mut ok = true;
            let mut moved = 0;
            let mut total = 0;
            for p in 0..PAGES {
                let before = COUNT.load(Ordering::SeqCst);
                ok &= page_ok(p);
                let after = COUNT.load(Ordering::SeqCst);
                moved += (after > before) as u32;
                total += after - before;
                println!(
                    "pager_client: page {p} (slow pager): {}; the other threads counted {} meanwhile",
                    if page_ok(p) { "ok" } else { "BAD" },
                    after - before
                );
            }
            STOP.store(1, Ordering::SeqCst);
            while ENDED.load(Ordering::SeqCst) < COUNTERS {
                yield_now();
            }
            // On one CPU the counter runs only because the waiting thread
            // lets it; with more, a host that stalls an emulated CPU can
            // hold it back during a single wait, so the total is checked.
            println!(
                "pager_client: other work proceeded while faults waited ({moved} of {PAGES} waits, {total} counts): {}",
                if total > 0 { "ok" } else { "BAD" }
            );
            if ok && total > 0 {
                0
            } else {
                1
            }
        }
        4 => {
            println!("pager_client: flood: {FLOOD} threads to fault on {FLOOD} pages");
            for t in 0..FLOOD {
                let stack = area_anywhere(4 * PAGE, READ | WRITE, 0x6000_0000 + t * 0x10_0000);
                if stack == CREATE_FAILED || thread_create(flooder, stack + 4 * PAGE, t as u64) < 0
                {
                    println!("pager_client: flood: thread {t} not made: BAD");
                    return 1;
                }
            }
            // The refused fault kills this task, this thread too at its
            // next return to user mode: nothing below should run.
            for _ in 0..20_000_000u64 {
                yield_now();
            }
            println!("pager_client: flood: still alive after the refused fault: BAD");
            1
        }
        5 => {
            let ok = page_ok(0);
            println!(
                "pager_client: the flooder's neighbour read its page: {}",
                if ok { "ok" } else { "BAD" }
            );
            if ok {
                0
            } else {
                1
            }
        }
        3 => {
            let v = read(FILE as *const u8);
            println!("pager_client: page 0 read {v}: BAD (the pager's answer was refused)");
            1
        }
        _ => {
            println!(
                "pager_client: page 0: {}",
                if page_ok(0) { "ok" } else { "BAD" }
            );
            let v = read((FILE + PAGE) as *const u8);
            println!("pager_client: page 1 read {v}: BAD (the pager is gone)");
            1
        }
    }
}
