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

use aspace::{AreaFlags, VirtAddr, PAGE_SIZE};
use aspace_sim::alloc_count::{allocations, CountingAlloc};
use aspace_sim::{Sim, SimConfig};

mod common;
use common::XorShift;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

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
