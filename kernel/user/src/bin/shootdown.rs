//! Two threads of one address space on two CPUs. The second keeps writing
//! to a page; the first makes the area read-only with
//! `as_area_change_flags`. The change must reach the second CPU's TLB
//! through a shootdown IPI before the call returns: the writer's next write
//! faults and kills it, and the page stops changing. (Without the shootdown
//! its stale writable translation would keep writing.)
#![no_std]
#![no_main]

use aspace_user::*;

const AREA: usize = 0x6000_0000;
const STACK: usize = 0x6100_0000;
const CTRL: *mut u64 = AREA as *mut u64;
const COUNTER: *mut u64 = (AREA + PAGE) as *mut u64;
const WRITER_CPU: *mut u64 = (AREA + 8) as *mut u64;

extern "C" fn writer(_arg: u64) -> ! {
    write(WRITER_CPU, cpu() + 1);
    let mut n = 0u64;
    loop {
        n += 1;
        write(COUNTER, n);
        if n.is_multiple_of(4096) {
            // Report the CPU now and then (the timer may move the thread).
            write(WRITER_CPU, cpu() + 1);
        }
    }
}

#[no_mangle]
fn main(_arg: u64) -> i32 {
    if area_create(AREA, 2 * PAGE, READ | WRITE) != AREA
        || area_create(STACK, 16 * PAGE, READ | WRITE) != STACK
    {
        return 2;
    }
    write(CTRL, 0);
    write(COUNTER, 0);
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
    let r = area_change_flags(AREA, READ);
    let v1 = read(COUNTER);
    for _ in 0..2_000_000 {
        core::hint::spin_loop();
    }
    let v2 = read(COUNTER);
    println!(
        "shootdown: area made read-only = {r}; counter {} after the change",
        if v1 == v2 {
            "frozen"
        } else {
            "STILL MOVING (stale TLB)"
        }
    );
    if r == 0 && v1 == v2 {
        0
    } else {
        1
    }
}
