//! `THREAD_CREATE` with addresses `iretq` cannot return to: entry points and
//! stack pointers outside the user half (non-canonical or kernel) are
//! refused with EINVAL (-13) rather than faulting in ring 0. Then a valid
//! thread runs, and threads beyond `nr::MAX_THREADS` per process are
//! refused with ENOMEM (-2).
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use aspace_user::*;

const STACKS: usize = 0x6200_0000;
/// An address past the user half: non-canonical on x86_64, beyond Sv39's
/// user half on riscv64.
#[cfg(not(target_arch = "aarch64"))]
const PAST_USER: u64 = 0x0000_8000_0000_0000;
/// An address past the user half: the gap between `TTBR0_EL1`'s 48 bits
/// and `TTBR1_EL1`'s.
#[cfg(target_arch = "aarch64")]
const PAST_USER: u64 = 0x0001_0000_0000_0000;
const STACK_PAGES: usize = 40;

static STARTED: AtomicU64 = AtomicU64::new(0);
static STOP: AtomicU64 = AtomicU64::new(0);
static ENDED: AtomicU64 = AtomicU64::new(0);

extern "C" fn worker(arg: u64) -> ! {
    STARTED.fetch_add(arg, Ordering::SeqCst);
    while STOP.load(Ordering::SeqCst) == 0 {
        yield_now();
    }
    ENDED.fetch_add(1, Ordering::SeqCst);
    exit(0)
}

fn stack(i: usize) -> u64 {
    (STACKS + (i + 1) * PAGE) as u64
}

fn wait(what: &AtomicU64, v: u64) -> bool {
    let mut waits = 0u64;
    while what.load(Ordering::SeqCst) != v {
        yield_now();
        waits += 1;
        if waits > 1_000_000 {
            return false;
        }
    }
    true
}

#[no_mangle]
fn main(_arg: u64) -> i32 {
    if area_create(STACKS, STACK_PAGES * PAGE, READ | WRITE) != STACKS {
        return 2;
    }
    let good = worker as extern "C" fn(u64) -> ! as usize as u64;
    let mut ok = true;
    for entry in [
        PAST_USER,
        0xdead_beef_0000_0000,
        0xffff_ffff_8010_0000,
        u64::MAX,
    ] {
        let r = thread_create_raw(entry, stack(0), 0);
        println!("threads: entry {entry:#x} = {r}");
        ok &= r == -13;
    }
    for sp in [PAST_USER, 0x1234_5678_9abc_def0, 0xffff_8000_0000_0000] {
        let r = thread_create_raw(good, sp, 0);
        println!("threads: stack {sp:#x} = {r}");
        ok &= r == -13;
    }
    // A valid thread: it runs.
    let t = thread_create(worker, stack(0) as usize, 1);
    let ran = t > 0 && wait(&STARTED, 1);
    println!(
        "threads: a valid thread = {}, it ran: {}",
        if t > 0 { "a thread number" } else { "an error" },
        if ran { "ok" } else { "NO" }
    );
    ok &= ran;
    // Up to the bound (this thread and the first worker count).
    let mut created = 2;
    let mut next = 0;
    for i in 1..STACK_PAGES {
        next = thread_create(worker, stack(i) as usize, 1);
        if next < 0 {
            break;
        }
        created += 1;
    }
    println!("threads: {created} threads, the next one = {next}");
    ok &= created == nr::MAX_THREADS as u64 && next == -2;
    STOP.store(1, Ordering::SeqCst);
    if !wait(&ENDED, created - 1) {
        println!("threads: the workers did not end");
        return 1;
    }
    if ok {
        0
    } else {
        1
    }
}
