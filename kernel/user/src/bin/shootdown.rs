//! Two threads of one address space on two CPUs. The second writes to a
//! page until the first tells it to pause (its CPU's TLB keeps the page's
//! writable translation); the first makes the area read-only with
//! `as_area_change_flags`, which must reach the second CPU's TLB through a
//! shootdown IPI before the call returns. Then the second writes once
//! more: the write faults, which kills the task (both threads). Without
//! the shootdown its stale writable translation would take the write, and
//! the first thread would see it and report it.
#![no_std]
#![no_main]

use aspace_user::*;

/// The area made read-only: the counter page (the page before it holds
/// where the writer runs).
const AREA: usize = 0x6000_0000;
const WRITER_CPU: *mut u64 = AREA as *mut u64;
const COUNTER: *mut u64 = (AREA + PAGE) as *mut u64;
/// Flags between the threads, in an area that stays writable.
const FLAGS: usize = 0x6200_0000;
const PAUSE: *mut u64 = FLAGS as *mut u64;
const PAUSED: *mut u64 = (FLAGS + 8) as *mut u64;
const GO: *mut u64 = (FLAGS + 16) as *mut u64;
const STALE: *mut u64 = (FLAGS + 24) as *mut u64;
const STACK: usize = 0x6100_0000;

extern "C" fn writer(_arg: u64) -> ! {
    write(WRITER_CPU, cpu() + 1);
    let mut n = 0u64;
    while read(PAUSE) == 0 {
        n += 1;
        write(COUNTER, n);
        if n.is_multiple_of(4096) {
            // Report the CPU now and then (the timer may move the thread).
            write(WRITER_CPU, cpu() + 1);
        }
    }
    write(PAUSED, 1);
    while read(GO) == 0 {
        core::hint::spin_loop();
    }
    // Read-only now: this faults and the task dies, unless a stale
    // translation takes it.
    write(COUNTER, n + 1);
    write(STALE, 1);
    loop {
        core::hint::spin_loop();
    }
}

#[no_mangle]
fn main(_arg: u64) -> i32 {
    if area_create(AREA, 2 * PAGE, READ | WRITE) != AREA
        || area_create(FLAGS, PAGE, READ | WRITE) != FLAGS
        || area_create(STACK, 16 * PAGE, READ | WRITE) != STACK
    {
        return 2;
    }
    write(WRITER_CPU, 0);
    write(COUNTER, 0);
    write(PAUSE, 0);
    write(PAUSED, 0);
    write(GO, 0);
    write(STALE, 0);
    let t = thread_create(writer, STACK + 16 * PAGE, 0);
    println!("shootdown: started writer thread {t}");
    // Wait until the writer runs on the other CPU and writes (either thread
    // may have been moved by the timer meanwhile).
    let mut spins = 0u64;
    loop {
        let me = cpu();
        let wc = read(WRITER_CPU);
        let before = read(COUNTER);
        for _ in 0..10_000 {
            core::hint::spin_loop();
        }
        let after = read(COUNTER);
        if wc != 0 && wc - 1 != me && after != before && cpu() == me {
            println!("shootdown: writer busy on cpu {}, main on cpu {me}", wc - 1);
            break;
        }
        spins += 1;
        if spins > 200_000 {
            println!("shootdown: the two threads never ran at once");
            return 1;
        }
    }
    write(PAUSE, 1);
    while read(PAUSED) == 0 {
        core::hint::spin_loop();
    }
    let r = area_change_flags(AREA, READ);
    let v = read(COUNTER);
    println!("shootdown: area made read-only = {r} while the writer held a writable translation (counter {v})");
    if r != 0 {
        return 1;
    }
    // The writer's next write faults: the task is killed, this thread at
    // its next return to user mode. A write taken by a stale translation
    // is seen here instead.
    write(GO, 1);
    for _ in 0..100_000_000u64 {
        if read(STALE) != 0 || read(COUNTER) != v {
            println!("shootdown: the writer wrote through a stale TLB entry: BAD");
            return 1;
        }
        core::hint::spin_loop();
    }
    println!("shootdown: still alive after the writer's fault: BAD");
    1
}
