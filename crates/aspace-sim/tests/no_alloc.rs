//! The fault path allocates nothing in steady state (issue 6): page faults
//! on an anonymous area, driven through a simulated CPU (TLB miss, table
//! walk, `page_fault`, retry), call the heap allocator not once, both for
//! first touches in ascending order on a fresh area and for touches in
//! random order once the area had been touched all over before (its used
//! space then reuses the tree nodes that the shrink freed).
//!
//! A counting `#[global_allocator]` counts per thread, so only this test's
//! thread is measured. With `ASPACE_ALLOC_TRACE=1` it also prints a
//! backtrace for each allocation it counts, to find the culprit.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use aspace::{AreaFlags, VirtAddr, PAGE_SIZE};
use aspace_sim::{Sim, SimConfig};

mod common;
use common::XorShift;

/// The system allocator, counting the calling thread's allocations while
/// it is measuring.
struct Counting;

thread_local! {
    /// Allocations counted while measuring.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    /// Whether this thread is measuring.
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    /// Whether to print a backtrace per counted allocation.
    static TRACE: Cell<bool> = const { Cell::new(false) };
}

fn counted() {
    let measuring = MEASURING.try_with(Cell::get).unwrap_or(false);
    if !measuring {
        return;
    }
    let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
    if TRACE.try_with(Cell::get).unwrap_or(false) {
        // Stop measuring while the backtrace (which allocates) is printed.
        MEASURING.with(|m| m.set(false));
        eprintln!(
            "counted allocation:\n{}",
            std::backtrace::Backtrace::force_capture()
        );
        MEASURING.with(|m| m.set(true));
    }
}

// SAFETY: every call is passed on to `System` unchanged; the bookkeeping
// uses const-initialised thread-locals, which do not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        counted();
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        counted();
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        counted();
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations the calling thread makes in `f`.
fn allocations<R>(f: impl FnOnce() -> R) -> (u64, R) {
    let trace = std::env::var_os("ASPACE_ALLOC_TRACE").is_some_and(|v| v == "1");
    TRACE.with(|t| t.set(trace));
    ALLOCS.with(|n| n.set(0));
    MEASURING.with(|m| m.set(true));
    let r = f();
    MEASURING.with(|m| m.set(false));
    (ALLOCS.with(Cell::get), r)
}

const BASE: u64 = 0x40_0000;
const RW: AreaFlags = AreaFlags::READ.union(AreaFlags::WRITE);
/// Pages of the area: more than one frame-pool shard holds (64 MiB of
/// memory is 16384 frames in 8 shards), so faults also take frames from
/// other shards.
const PAGES: u64 = 4096;

fn va(a: u64) -> VirtAddr {
    VirtAddr::new(a)
}

/// The pages of the area in a random order.
fn shuffled(seed: u64) -> Vec<u64> {
    let mut rng = XorShift::new(seed);
    let mut v: Vec<u64> = (0..PAGES).collect();
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i as u64 + 1) as usize);
    }
    v
}

/// One test, so that nothing else runs on the measured thread.
#[test]
fn page_faults_do_not_allocate() {
    let sim = Sim::new(SimConfig::default()).unwrap();
    let space = sim.system().create().unwrap();
    space.area_create(va(BASE), PAGES * PAGE_SIZE, RW).unwrap();
    let mut cpu = sim.cpu(0);
    cpu.switch_to(&space).unwrap();
    let faults = || sim.hardware().stats().faults;

    // First touches in ascending order, on the fresh area: one run that
    // grows, in the room the area reserved at creation.
    let before = faults();
    let (n, ()) = allocations(|| {
        for i in 0..PAGES {
            cpu.write_u64(va(BASE + i * PAGE_SIZE), i).unwrap();
        }
    });
    assert_eq!(faults() - before, PAGES, "every first touch faults");
    assert_eq!(n, 0, "{n} allocations in {PAGES} ascending first touches");
    assert_eq!(space.resident_pages(), PAGES);

    // Warm up: empty the area by shrinking it (to one page: zero is
    // refused), grow it back, and touch it all in a random order, which
    // makes many runs and so many tree nodes.
    let shrink_and_regrow = || {
        space.area_resize(va(BASE), PAGE_SIZE).unwrap();
        space.area_resize(va(BASE), PAGES * PAGE_SIZE).unwrap();
        assert_eq!(space.resident_pages(), 1);
    };
    shrink_and_regrow();
    let seed = common::seed(1);
    for &i in &shuffled(seed) {
        cpu.write_u64(va(BASE + i * PAGE_SIZE), i).unwrap();
    }

    // Steady state: empty it again and touch everything in other random
    // orders; the used space reuses the nodes the shrink freed.
    for round in 0..3u64 {
        shrink_and_regrow();
        let order = shuffled(seed + 1 + round);
        let before = faults();
        let (n, ()) = allocations(|| {
            for &i in &order {
                cpu.write_u64(va(BASE + i * PAGE_SIZE), i).unwrap();
            }
        });
        assert_eq!(faults() - before, PAGES - 1, "round {round}: faults");
        assert_eq!(
            n, 0,
            "round {round}: {n} allocations in {PAGES} random-order touches \
             (run with ASPACE_ALLOC_TRACE=1 to see where)"
        );
        assert_eq!(space.resident_pages(), PAGES);
    }

    // The data survived: every page holds its number.
    for i in 0..PAGES {
        assert_eq!(cpu.read_u64(va(BASE + i * PAGE_SIZE)).unwrap(), i);
    }
}
