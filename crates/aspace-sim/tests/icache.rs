//! Instruction fetches see what the kernel wrote: the core syncs a frame
//! for instruction fetches (`PhysMemory::sync_icache`) before it maps it
//! executable after writing it (a page filled or zeroed at a fault, a
//! copy) and when a change of rights makes mapped pages executable. The
//! simulated memory marks every frame the kernel writes as unsynced until
//! then, and the CPU counts a fetch from an unsynced frame as stale
//! (`HwStats::stale_fetches`), as split caches on AArch64 or RISC-V could
//! execute old instructions there.

use aspace::{AreaFlags, PhysMemory, VirtAddr, PAGE_SIZE};
use aspace_sim::{Sim, SimConfig};

mod common;

const BASE: u64 = 0x40_0000;
const RX: AreaFlags = AreaFlags::READ.union(AreaFlags::EXEC);
const RW: AreaFlags = AreaFlags::READ.union(AreaFlags::WRITE);

fn sim() -> Sim {
    Sim::new(SimConfig {
        arch: common::arch(),
        ..SimConfig::default()
    })
    .unwrap()
}

fn stale(sim: &Sim) -> u64 {
    sim.hardware().stats().stale_fetches
}

/// A page zero-filled at its first fetch is synced before it is mapped;
/// a kernel write into it afterwards, never synced, is what the model
/// catches (the control: the check can fail).
#[test]
fn a_page_filled_at_a_fault_is_synced_and_a_later_kernel_write_is_caught() {
    let sim = sim();
    let space = sim.system().create().unwrap();
    space
        .area_create(VirtAddr::new(BASE), 4 * PAGE_SIZE, RX)
        .unwrap();
    let mut cpu = sim.cpu(0);
    cpu.switch_to(&space).unwrap();
    for i in 0..4 {
        assert_eq!(cpu.fetch(VirtAddr::new(BASE + i * PAGE_SIZE)), Ok(0));
    }
    assert_eq!(stale(&sim), 0, "every page synced before it was mapped");

    let (frame, _) = space.translate(VirtAddr::new(BASE).page()).unwrap();
    let mem = sim.hardware().memory();
    mem.write(frame.start(), &[0x90]);
    assert!(mem.unsynced(frame));
    assert_eq!(cpu.fetch(VirtAddr::new(BASE)), Ok(0x90));
    assert_eq!(stale(&sim), 1, "a fetch after an unsynced kernel write");
    mem.sync_icache(frame);
    assert_eq!(cpu.fetch(VirtAddr::new(BASE)), Ok(0x90));
    assert_eq!(stale(&sim), 1);
}

/// Pages zero-filled while the area could not execute are synced when a
/// change of rights (Linux `mprotect`, HelenOS `area_change_flags`) makes
/// them executable, before their entries allow it.
#[test]
fn pages_made_executable_by_a_change_of_rights_are_synced() {
    let sim = sim();
    let space = sim.system().create().unwrap();
    let mut cpu = sim.cpu(0);
    cpu.switch_to(&space).unwrap();
    for (k, whole_area) in [(0u64, false), (1, true)] {
        let base = BASE + k * 0x10_0000;
        space
            .area_create(VirtAddr::new(base), 4 * PAGE_SIZE, RW)
            .unwrap();
        // The task writes its code (its own stores: its own business).
        for i in 0..4 {
            cpu.write_u64(VirtAddr::new(base + i * PAGE_SIZE), 0xc3 + i)
                .unwrap();
        }
        let frames: Vec<_> = (0..4)
            .map(|i| {
                space
                    .translate(VirtAddr::new(base + i * PAGE_SIZE).page())
                    .unwrap()
                    .0
            })
            .collect();
        // Zero-filled by the kernel at the first write, mapped without exec.
        assert!(frames.iter().all(|&f| sim.hardware().memory().unsynced(f)));
        if whole_area {
            space.area_change_flags(VirtAddr::new(base), RX).unwrap();
        } else {
            space
                .protect_range(VirtAddr::new(base + PAGE_SIZE), 2 * PAGE_SIZE, RX)
                .unwrap();
        }
        let made_exec = if whole_area { 0..4 } else { 1..3 };
        for (i, &f) in frames.iter().enumerate() {
            let synced = !sim.hardware().memory().unsynced(f);
            assert_eq!(synced, made_exec.contains(&i), "page {i} of area {k}");
        }
        for i in made_exec {
            assert_eq!(
                cpu.fetch(VirtAddr::new(base + i as u64 * PAGE_SIZE)),
                Ok(0xc3 + i as u8)
            );
        }
        assert_eq!(stale(&sim), 0);
    }
}

/// Making many resident pages executable syncs them in one round (one
/// `fence.i` broadcast on RISC-V, `PhysMemory::sync_icache_frames`), not
/// one per page; pages synced already need none.
#[test]
fn a_change_of_rights_syncs_its_pages_in_one_round() {
    let sim = sim();
    let space = sim.system().create().unwrap();
    let mut cpu = sim.cpu(0);
    cpu.switch_to(&space).unwrap();
    let mem = sim.hardware().memory();
    space
        .area_create(VirtAddr::new(BASE), 8 * PAGE_SIZE, RW)
        .unwrap();
    for i in 0..8 {
        cpu.write_u64(VirtAddr::new(BASE + i * PAGE_SIZE), 0xc3 + i)
            .unwrap();
    }
    let rounds = mem.sync_rounds();
    space.area_change_flags(VirtAddr::new(BASE), RX).unwrap();
    assert_eq!(mem.sync_rounds(), rounds + 1, "eight pages, one round");
    for i in 0..8 {
        let va = VirtAddr::new(BASE + i * PAGE_SIZE);
        assert!(!mem.unsynced(space.translate(va.page()).unwrap().0));
        assert_eq!(cpu.fetch(va), Ok(0xc3 + i as u8));
    }
    assert_eq!(stale(&sim), 0);
    // Back to writable and executable again: nothing the kernel wrote
    // since, nothing to sync.
    space.area_change_flags(VirtAddr::new(BASE), RW).unwrap();
    space.area_change_flags(VirtAddr::new(BASE), RX).unwrap();
    assert_eq!(mem.sync_rounds(), rounds + 1);
    // The kernel writes three of the pages while they are writable: the
    // next change to executable syncs those three, in one round.
    space.area_change_flags(VirtAddr::new(BASE), RW).unwrap();
    let frame = |i: u64| {
        let va = VirtAddr::new(BASE + i * PAGE_SIZE);
        space.translate(va.page()).unwrap().0
    };
    for i in [1, 4, 6] {
        mem.write(frame(i).start(), &[0x90]);
    }
    space.area_change_flags(VirtAddr::new(BASE), RX).unwrap();
    assert_eq!(mem.sync_rounds(), rounds + 2, "three pages, one round");
    assert!((0..8).all(|i| !mem.unsynced(frame(i))));
    for i in 0..8 {
        cpu.fetch(VirtAddr::new(BASE + i * PAGE_SIZE)).unwrap();
    }
    assert_eq!(stale(&sim), 0);
}
