//! One behaviour per test: every address-space operation and every refusal,
//! observed through the simulated MMU, the frame allocator and the TLBs.

use aspace::TryArc;

use aspace::backend::AnonBackend;
use aspace::syscall::{
    sys_as_area_change_flags, sys_as_area_create, sys_as_area_destroy, sys_as_area_resize,
    CREATE_FAILED,
};
use aspace::{
    Access, AreaAttrs, AreaFlags, Asid, Error, FaultOutcome, FaultReason, Page, PageFlags,
    VirtAddr, PAGE_SIZE,
};
use aspace_sim::{Sim, SimConfig, Space, SpaceHandle};

const BASE: u64 = 0x40_0000;
const RW: AreaFlags = AreaFlags::READ.union(AreaFlags::WRITE);

fn va(a: u64) -> VirtAddr {
    VirtAddr::new(a)
}

fn sim() -> Sim {
    Sim::new(SimConfig::default()).unwrap()
}

/// A sim, a space with one RW area of `pages` at BASE, and CPU 0 running it.
fn setup(pages: u64) -> (Sim, SpaceHandle, aspace_sim::Cpu) {
    let sim = sim();
    let space = sim.system().create().unwrap();
    space.area_create(va(BASE), pages * PAGE_SIZE, RW).unwrap();
    let mut cpu = sim.cpu(0);
    cpu.switch_to(&space).unwrap();
    (sim, space, cpu)
}

/// Used space of the area at `addr` equals what the page table maps there.
fn assert_used_space_matches_page_table(space: &Space, addr: VirtAddr) {
    let area = space.area(addr).unwrap();
    let used = space.used_space(addr).unwrap();
    for i in 0..area.pages {
        let page = Page::from_number(area.base.page().number() + i);
        assert_eq!(
            used.contains(page),
            space.translate(page).is_some(),
            "page {page:?}: used space and page table disagree"
        );
    }
}

// ---- address spaces ----

#[test]
fn new_user_space_is_empty_without_asid() {
    let sim = sim();
    let space = sim.system().create().unwrap();
    assert!(space.areas().is_empty());
    assert_eq!(space.asid(), None);
    assert!(!space.is_kernel());
    assert_eq!(space.page_table_frames(), 1);
}

#[test]
fn kernel_space_has_the_kernel_asid() {
    let sim = sim();
    let k = sim.system().kernel();
    assert!(k.is_kernel());
    assert_eq!(k.asid(), Some(Asid::KERNEL));
}

#[test]
fn dropping_last_reference_destroys_space_and_frees_every_frame() {
    let sim = sim();
    let before = sim.frames_in_use();
    let space = sim.system().create().unwrap();
    space.area_create(va(BASE), 16 * PAGE_SIZE, RW).unwrap();
    space
        .area_create(va(0x7000_0000), 4 * PAGE_SIZE, RW)
        .unwrap();
    {
        let mut cpu = sim.cpu(0);
        cpu.switch_to(&space).unwrap();
        for i in 0..16 {
            cpu.write_u64(va(BASE + i * PAGE_SIZE), i).unwrap();
        }
        cpu.write_u64(va(0x7000_0000), 1).unwrap();
    }
    assert!(sim.frames_in_use() > before + 17);
    let other_ref = space.clone();
    drop(space);
    assert_eq!(
        other_ref.resident_pages(),
        17,
        "still referenced: nothing destroyed"
    );
    drop(other_ref);
    assert_eq!(sim.frames_in_use(), before);
}

#[test]
fn space_running_on_a_cpu_is_not_destroyed() {
    let (sim, space, mut cpu) = setup(2);
    let before = sim.frames_in_use();
    cpu.write_u64(va(BASE), 5).unwrap();
    drop(space);
    assert_eq!(cpu.read_u64(va(BASE)).unwrap(), 5);
    assert_eq!(sim.frames_in_use(), before + 1 + 3);
    cpu.idle();
    assert_eq!(sim.frames_in_use(), before - 1);
}

// ---- area creation ----

#[test]
fn area_create_returns_base_and_lists_the_area() {
    let sim = sim();
    let space = sim.system().create().unwrap();
    assert_eq!(space.area_create(va(BASE), 3 * PAGE_SIZE, RW), Ok(va(BASE)));
    let areas = space.areas();
    assert_eq!(areas.len(), 1);
    assert_eq!(areas[0].base, va(BASE));
    assert_eq!(areas[0].pages, 3);
    assert_eq!(areas[0].flags, RW);
    assert_eq!(areas[0].resident, 0);
}

#[test]
fn area_create_rounds_size_up_to_pages() {
    let sim = sim();
    let space = sim.system().create().unwrap();
    space.area_create(va(BASE), PAGE_SIZE + 1, RW).unwrap();
    assert_eq!(space.area_size(va(BASE)), 2 * PAGE_SIZE);
}

#[test]
fn area_create_refuses_unaligned_base() {
    let sim = sim();
    let space = sim.system().create().unwrap();
    assert_eq!(
        space.area_create(va(BASE + 8), PAGE_SIZE, RW),
        Err(Error::InvalidArgument)
    );
    assert!(space.areas().is_empty());
}

#[test]
fn area_create_refuses_zero_size() {
    let sim = sim();
    let space = sim.system().create().unwrap();
    assert_eq!(
        space.area_create(va(BASE), 0, RW),
        Err(Error::InvalidArgument)
    );
}

#[test]
fn area_create_refuses_write_with_exec() {
    let sim = sim();
    let space = sim.system().create().unwrap();
    let wx = AreaFlags::READ | AreaFlags::WRITE | AreaFlags::EXEC;
    assert_eq!(
        space.area_create(va(BASE), PAGE_SIZE, wx),
        Err(Error::InvalidArgument)
    );
}

#[test]
fn area_create_refuses_the_null_page() {
    let sim = sim();
    let space = sim.system().create().unwrap();
    assert_eq!(
        space.area_create(va(0), PAGE_SIZE, RW),
        Err(Error::AddressNotAvailable)
    );
    assert_eq!(
        space.area_create(va(PAGE_SIZE), PAGE_SIZE, RW),
        Ok(va(PAGE_SIZE))
    );
}

#[test]
fn area_create_refuses_kernel_range_in_user_space() {
    let sim = sim();
    let space = sim.system().create().unwrap();
    let k = 0xffff_8000_0000_0000;
    assert_eq!(
        space.area_create(va(k), PAGE_SIZE, RW),
        Err(Error::AddressNotAvailable)
    );
}

#[test]
fn area_create_refuses_range_crossing_end_of_user_space() {
    let sim = sim();
    let space = sim.system().create().unwrap();
    let last = 0x7fff_ffff_f000;
    assert_eq!(space.area_create(va(last), PAGE_SIZE, RW), Ok(va(last)));
    assert_eq!(
        space.area_create(va(last - PAGE_SIZE), 2 * PAGE_SIZE, RW),
        Err(Error::AddressNotAvailable)
    );
}

#[test]
fn area_create_refuses_wrapping_size() {
    let sim = sim();
    let space = sim.system().create().unwrap();
    assert_eq!(
        space.area_create(va(BASE), u64::MAX, RW),
        Err(Error::InvalidArgument)
    );
    assert_eq!(
        space.area_create(va(BASE), u64::MAX - BASE + 1, RW),
        Err(Error::InvalidArgument)
    );
}

#[test]
fn area_create_refuses_huge_size_that_leaves_user_space() {
    let sim = sim();
    let space = sim.system().create().unwrap();
    assert_eq!(
        space.area_create(va(BASE), 1 << 62, RW),
        Err(Error::AddressNotAvailable)
    );
}

#[test]
fn area_create_refuses_every_kind_of_overlap() {
    let sim = sim();
    let space = sim.system().create().unwrap();
    space
        .area_create(va(BASE + 4 * PAGE_SIZE), 4 * PAGE_SIZE, RW)
        .unwrap();
    for (start, pages) in [(2, 3), (7, 3), (5, 1), (0, 16), (4, 4)] {
        assert_eq!(
            space.area_create(va(BASE + start * PAGE_SIZE), pages * PAGE_SIZE, RW),
            Err(Error::AddressNotAvailable),
            "pages {start}..{}",
            start + pages
        );
    }
    assert_eq!(space.areas().len(), 1);
}

#[test]
fn adjacent_areas_are_allowed() {
    let sim = sim();
    let space = sim.system().create().unwrap();
    space.area_create(va(BASE), PAGE_SIZE, RW).unwrap();
    space
        .area_create(va(BASE + PAGE_SIZE), PAGE_SIZE, RW)
        .unwrap();
    space
        .area_create(va(BASE - PAGE_SIZE), PAGE_SIZE, RW)
        .unwrap();
    assert_eq!(space.areas().len(), 3);
}

#[test]
fn kernel_space_areas_live_only_in_the_kernel_range() {
    let sim = sim();
    let k = sim.system().kernel();
    assert_eq!(
        k.area_create(va(BASE), PAGE_SIZE, RW),
        Err(Error::AddressNotAvailable)
    );
    let kaddr = 0xffff_9000_0000_0000;
    assert_eq!(k.area_create(va(kaddr), PAGE_SIZE, RW), Ok(va(kaddr)));
    k.area_destroy(va(kaddr)).unwrap();
}

// ---- lookup ----

#[test]
fn area_is_found_by_any_address_inside_it() {
    let sim = sim();
    let space = sim.system().create().unwrap();
    space.area_create(va(BASE), 4 * PAGE_SIZE, RW).unwrap();
    for a in [BASE, BASE + 1, BASE + 3 * PAGE_SIZE + PAGE_SIZE - 1] {
        assert_eq!(space.area(va(a)).unwrap().base, va(BASE));
    }
    assert!(space.area(va(BASE - 1)).is_none());
    assert!(space.area(va(BASE + 4 * PAGE_SIZE)).is_none());
    assert_eq!(space.area_size(va(BASE + 5)), 4 * PAGE_SIZE);
    assert_eq!(space.area_size(va(BASE - 1)), 0);
}

#[test]
fn held_and_one_shot_lookups_find_every_area_edge_on_every_cpu() {
    // Two spaces with enough areas for trees of several leaves, so lookups
    // use each CPU's last-hit hint, which serves every space: space `s`
    // has 200 areas of 2 pages with 1-page gaps, shifted by `s` pages;
    // every third area read-only.
    let sim = sim(); // two CPUs
    let base = |s: u64, i: u64| BASE + (s + i * 3) * PAGE_SIZE;
    let flags = |i: u64| if i % 3 == 0 { AreaFlags::READ } else { RW };
    let spaces: Vec<_> = (0..2u64)
        .map(|s| {
            let space = sim.system().create().unwrap();
            for i in 0..200 {
                space
                    .area_create(va(base(s, i)), 2 * PAGE_SIZE, flags(i))
                    .unwrap();
            }
            space
        })
        .collect();
    // What any lookup must answer at `addr` of space `s`: (base, pages,
    // rights) of the area or nothing, from the layout alone.
    let expect = |s: u64, addr: u64| {
        let off = (addr / PAGE_SIZE).checked_sub(BASE / PAGE_SIZE + s)?;
        let (i, at) = (off / 3, off % 3);
        (i < 200 && at < 2).then(|| (va(base(s, i)), 2, flags(i)))
    };
    // Up, then down, then a stride, alternating spaces: hints hit, miss,
    // and name a leaf of the other space's tree.
    let up = 0..200u64;
    let order: Vec<u64> = up
        .clone()
        .chain(up.clone().rev())
        .chain(up.map(|i| i * 7 % 200))
        .collect();
    // Each area's edges: the byte before it, its first and last byte, the
    // byte after it.
    let edges = |s: u64, i: u64| {
        let first = base(s, i);
        [
            first - 1,
            first,
            first + 2 * PAGE_SIZE - 1,
            first + 2 * PAGE_SIZE,
        ]
        .map(va)
    };
    for c in 0..2 {
        sim.cpu(c).run(|| {
            // One-shot queries, area by area alternating the spaces.
            let mut one_shot = Vec::new();
            for &i in &order {
                for s in 0..2u64 {
                    let space = &spaces[s as usize];
                    one_shot.push(edges(s, i).map(|a| {
                        let got = space.area(a).map(|x| (x.base, x.pages, x.flags));
                        assert_eq!(got, expect(s, a.as_u64()), "space {s}, address {a:?}");
                        let size = space.area_size(a);
                        let write = space.check_access(a, Access::Write);
                        assert_eq!(size, got.map_or(0, |_| 2 * PAGE_SIZE));
                        assert_eq!(write, got.is_some_and(|x| x.2 == RW));
                        (got, size, write)
                    }));
                }
            }
            // The same questions through one held lookup per space (one at
            // a time), and its listing.
            for s in 0..2u64 {
                let held = spaces[s as usize].lookup();
                assert_eq!((held.len(), held.is_empty()), (200, false));
                for (k, &i) in order.iter().enumerate() {
                    let got = edges(s, i).map(|a| {
                        let x = held.area(a).map(|x| (x.base, x.pages, x.flags));
                        (x, held.area_size(a), held.check_access(a, Access::Write))
                    });
                    assert_eq!(got, one_shot[2 * k + s as usize], "space {s}, area {i}");
                }
                let listed: Vec<_> = held.iter().map(|x| (x.base, x.pages, x.flags)).collect();
                let want: Vec<_> = (0..200).map(|i| (va(base(s, i)), 2, flags(i))).collect();
                assert_eq!(listed, want);
            }
        });
    }
}

#[test]
fn held_lookup_keeps_area_changes_waiting() {
    let sim = sim();
    let space = sim.system().create().unwrap();
    space.area_create(va(BASE), PAGE_SIZE, RW).unwrap();
    let held = space.lookup();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            space
                .area_create(va(BASE + 4 * PAGE_SIZE), PAGE_SIZE, RW)
                .unwrap();
            space.area_destroy(va(BASE)).unwrap();
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        // Still the areas as they were when the lookup was taken.
        assert!(!done.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(held.len(), 1);
        assert!(held.area(va(BASE)).is_some());
        assert!(held.area(va(BASE + 4 * PAGE_SIZE)).is_none());
        drop(held);
        writer.join().unwrap();
    });
    assert!(done.into_inner());
    assert!(space.area(va(BASE)).is_none());
    assert!(space.area(va(BASE + 4 * PAGE_SIZE)).is_some());
}

#[test]
fn check_access_follows_area_flags() {
    let sim = sim();
    let space = sim.system().create().unwrap();
    space
        .area_create(va(BASE), PAGE_SIZE, AreaFlags::READ)
        .unwrap();
    assert!(space.check_access(va(BASE), Access::Read));
    assert!(!space.check_access(va(BASE), Access::Write));
    assert!(!space.check_access(va(BASE), Access::Exec));
    assert!(!space.check_access(va(BASE + PAGE_SIZE), Access::Read));
}

// ---- resize ----

#[test]
fn resize_grows_and_new_pages_are_usable() {
    let (_sim, space, mut cpu) = setup(1);
    space.area_resize(va(BASE), 3 * PAGE_SIZE).unwrap();
    assert_eq!(space.area_size(va(BASE)), 3 * PAGE_SIZE);
    cpu.write_u64(va(BASE + 2 * PAGE_SIZE), 77).unwrap();
    assert_eq!(cpu.read_u64(va(BASE + 2 * PAGE_SIZE)).unwrap(), 77);
}

#[test]
fn resize_measures_new_size_from_the_given_address() {
    let (_sim, space, _cpu) = setup(4);
    space
        .area_resize(va(BASE + 2 * PAGE_SIZE), PAGE_SIZE)
        .unwrap();
    assert_eq!(space.area_size(va(BASE)), 3 * PAGE_SIZE);
}

#[test]
fn resize_growth_into_another_area_is_refused() {
    let (_sim, space, _cpu) = setup(2);
    space
        .area_create(va(BASE + 4 * PAGE_SIZE), PAGE_SIZE, RW)
        .unwrap();
    assert_eq!(
        space.area_resize(va(BASE), 5 * PAGE_SIZE),
        Err(Error::AddressNotAvailable)
    );
    assert_eq!(space.area_size(va(BASE)), 2 * PAGE_SIZE);
    assert_eq!(space.area_resize(va(BASE), 4 * PAGE_SIZE), Ok(()));
}

#[test]
fn resize_growth_past_user_space_is_refused() {
    let sim = sim();
    let space = sim.system().create().unwrap();
    let last = 0x7fff_ffff_f000;
    space.area_create(va(last), PAGE_SIZE, RW).unwrap();
    assert_eq!(
        space.area_resize(va(last), 2 * PAGE_SIZE),
        Err(Error::AddressNotAvailable)
    );
    assert_eq!(
        space.area_resize(va(last), u64::MAX),
        Err(Error::InvalidArgument)
    );
}

#[test]
fn resize_shrink_unmaps_and_frees_pages_above_new_end() {
    let (sim, space, mut cpu) = setup(8);
    for i in 0..8 {
        cpu.write_u64(va(BASE + i * PAGE_SIZE), 100 + i).unwrap();
    }
    let before = sim.frames_in_use();
    space.area_resize(va(BASE), 3 * PAGE_SIZE).unwrap();
    assert_eq!(sim.frames_in_use(), before - 5);
    assert_eq!(space.resident_pages(), 3);
    for i in 3..8 {
        assert!(space
            .translate(Page::from_number((BASE >> 12) + i))
            .is_none());
    }
    assert_used_space_matches_page_table(&space, va(BASE));
    for i in 0..3 {
        assert_eq!(cpu.read_u64(va(BASE + i * PAGE_SIZE)).unwrap(), 100 + i);
    }
    let err = cpu.read_u64(va(BASE + 3 * PAGE_SIZE)).unwrap_err();
    assert_eq!(err.reason, FaultReason::NoArea);
}

#[test]
fn resize_shrink_takes_one_shootdown_round_and_clears_the_tlb() {
    let (sim, space, mut cpu) = setup(64);
    for i in 0..64 {
        cpu.write_u64(va(BASE + i * PAGE_SIZE), i).unwrap();
    }
    let cached_high = cpu
        .tlb_entries()
        .iter()
        .filter(|e| e.page.number() > (BASE >> 12))
        .count();
    assert!(cached_high > 0);
    let before = sim.system().stats();
    cpu.run(|| space.area_resize(va(BASE), PAGE_SIZE)).unwrap();
    let d = sim.system().stats().since(&before);
    assert_eq!(d.shootdown_rounds, 1);
    assert_eq!(d.frame_refs_released, 63);
    assert!(cpu
        .tlb_entries()
        .iter()
        .all(|e| e.page.number() == BASE >> 12));
}

#[test]
fn shrink_then_grow_reads_zero() {
    let (_sim, space, mut cpu) = setup(2);
    cpu.write_u64(va(BASE + PAGE_SIZE), 0xdead).unwrap();
    space.area_resize(va(BASE), PAGE_SIZE).unwrap();
    space.area_resize(va(BASE), 2 * PAGE_SIZE).unwrap();
    assert_eq!(cpu.read_u64(va(BASE + PAGE_SIZE)).unwrap(), 0);
}

#[test]
fn resize_to_zero_pages_is_permission_denied() {
    let (_sim, space, _cpu) = setup(2);
    assert_eq!(space.area_resize(va(BASE), 0), Err(Error::PermissionDenied));
    assert_eq!(space.area_size(va(BASE)), 2 * PAGE_SIZE);
}

#[test]
fn resize_without_area_is_not_found() {
    let (_sim, space, _cpu) = setup(1);
    assert_eq!(
        space.area_resize(va(0x9000_0000), PAGE_SIZE),
        Err(Error::NotFound)
    );
}

// ---- destroy ----

#[test]
fn destroy_unmaps_frees_and_forgets_the_area() {
    let (sim, space, mut cpu) = setup(4);
    for i in 0..4 {
        cpu.write_u64(va(BASE + i * PAGE_SIZE), i).unwrap();
    }
    let before = sim.frames_in_use();
    let rounds = sim.system().stats().shootdown_rounds;
    cpu.run(|| space.area_destroy(va(BASE + PAGE_SIZE)))
        .unwrap();
    assert_eq!(sim.frames_in_use(), before - 4);
    assert_eq!(sim.system().stats().shootdown_rounds, rounds + 1);
    assert!(space.areas().is_empty());
    assert!(cpu
        .tlb_entries()
        .iter()
        .all(|e| e.page.number() < BASE >> 12 || e.page.number() >= (BASE >> 12) + 4));
    assert_eq!(
        cpu.read_u64(va(BASE)).unwrap_err().reason,
        FaultReason::NoArea
    );
}

#[test]
fn destroy_without_area_is_not_found() {
    let (_sim, space, _cpu) = setup(1);
    assert_eq!(space.area_destroy(va(0x9000_0000)), Err(Error::NotFound));
}

#[test]
fn destroyed_range_can_be_reused() {
    let (_sim, space, mut cpu) = setup(2);
    cpu.write_u64(va(BASE), 9).unwrap();
    space.area_destroy(va(BASE)).unwrap();
    space.area_create(va(BASE), PAGE_SIZE, RW).unwrap();
    assert_eq!(cpu.read_u64(va(BASE)).unwrap(), 0);
}

// ---- page faults ----

#[test]
fn first_touch_gets_a_zeroed_frame_even_from_dirty_memory() {
    let (sim, space, mut cpu) = setup(8);
    for i in 0..8 {
        cpu.write(va(BASE + i * PAGE_SIZE), &[0xa5; PAGE_SIZE as usize])
            .unwrap();
    }
    space.area_destroy(va(BASE)).unwrap();
    space.area_create(va(BASE), 8 * PAGE_SIZE, RW).unwrap();
    let allocated = sim.hardware().frames().stats().allocated;
    let mut buf = vec![0xffu8; 8 * PAGE_SIZE as usize];
    cpu.read(va(BASE), &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    // The same freed frames were handed out again.
    assert_eq!(sim.hardware().frames().stats().allocated, allocated + 8);
}

#[test]
fn read_after_write_returns_the_data_across_page_boundaries() {
    let (_sim, _space, mut cpu) = setup(3);
    let data: Vec<u8> = (0..6000u32).map(|i| (i * 7 + 3) as u8).collect();
    let at = va(BASE + PAGE_SIZE - 1000);
    cpu.write(at, &data).unwrap();
    let mut back = vec![0u8; data.len()];
    cpu.read(at, &mut back).unwrap();
    assert_eq!(back, data);
    cpu.write_u64(va(BASE + PAGE_SIZE - 4), 0x1122_3344_5566_7788)
        .unwrap();
    assert_eq!(
        cpu.read_u64(va(BASE + PAGE_SIZE - 4)).unwrap(),
        0x1122_3344_5566_7788
    );
}

#[test]
fn each_touched_page_costs_one_fault_and_one_frame() {
    let (sim, space, mut cpu) = setup(4);
    let before = sim.system().stats();
    let frames = sim.frames_in_use();
    cpu.write_u64(va(BASE), 1).unwrap();
    cpu.write_u64(va(BASE + 8), 2).unwrap();
    cpu.read_u64(va(BASE + 2 * PAGE_SIZE)).unwrap();
    let d = sim.system().stats().since(&before);
    assert_eq!(d.faults_resolved, 2);
    assert_eq!(space.resident_pages(), 2);
    // Two data frames and the three intermediate tables of the first page.
    assert_eq!(sim.frames_in_use(), frames + 2 + 3);
    assert_used_space_matches_page_table(&space, va(BASE));
}

#[test]
fn access_outside_any_area_faults_with_no_area() {
    let (_sim, _space, mut cpu) = setup(1);
    let e = cpu.read_u64(va(BASE + PAGE_SIZE)).unwrap_err();
    assert_eq!(e.reason, FaultReason::NoArea);
    assert_eq!(e.access, Access::Read);
    assert_eq!(cpu.read_u64(va(0)).unwrap_err().reason, FaultReason::NoArea);
}

#[test]
fn write_to_read_only_area_faults_with_access() {
    let sim = sim();
    let space = sim.system().create().unwrap();
    space
        .area_create(va(BASE), PAGE_SIZE, AreaFlags::READ)
        .unwrap();
    let mut cpu = sim.cpu(0);
    cpu.switch_to(&space).unwrap();
    assert_eq!(cpu.read_u64(va(BASE)).unwrap(), 0);
    let e = cpu.write_u64(va(BASE), 1).unwrap_err();
    assert_eq!((e.reason, e.access), (FaultReason::Access, Access::Write));
    assert_eq!(cpu.read_u64(va(BASE)).unwrap(), 0);
}

#[test]
fn fetch_needs_an_executable_area() {
    let sim = sim();
    let space = sim.system().create().unwrap();
    space.area_create(va(BASE), PAGE_SIZE, RW).unwrap();
    space
        .area_create(
            va(BASE + PAGE_SIZE),
            PAGE_SIZE,
            AreaFlags::READ | AreaFlags::EXEC,
        )
        .unwrap();
    let mut cpu = sim.cpu(0);
    cpu.switch_to(&space).unwrap();
    cpu.write_u64(va(BASE), 0x90).unwrap();
    assert_eq!(cpu.fetch(va(BASE)).unwrap_err().reason, FaultReason::Access);
    assert_eq!(cpu.fetch(va(BASE + PAGE_SIZE)), Ok(0));
}

#[test]
fn kernel_and_non_canonical_addresses_fault_from_user_mode() {
    let (_sim, _space, mut cpu) = setup(1);
    for a in [
        0xffff_8000_0000_0000u64,
        0xffff_ffff_ffff_f000,
        0x0000_8000_0000_0000,
        0x1234_0000_0000_0000,
    ] {
        assert_eq!(
            cpu.read_u64(va(a)).unwrap_err().reason,
            FaultReason::NoArea,
            "{a:#x}"
        );
    }
}

#[test]
fn kernel_space_pages_are_global_supervisor_pages() {
    let sim = sim();
    let k = sim.system().kernel().clone();
    let kaddr = 0xffff_9000_0000_0000;
    k.area_create(va(kaddr), PAGE_SIZE, RW).unwrap();
    assert_eq!(
        k.page_fault(va(kaddr), Access::Write, aspace::FaultContext::User),
        FaultOutcome::Ok
    );
    let (_, flags) = k.translate(va(kaddr).page()).unwrap();
    assert!(flags.contains(PageFlags::GLOBAL | PageFlags::WRITE));
    assert!(!flags.contains(PageFlags::USER));
    k.area_destroy(va(kaddr)).unwrap();
}

#[test]
fn fault_on_partial_area_fails() {
    let sim = sim();
    let space = sim.system().create().unwrap();
    space
        .area_create_with(
            va(BASE),
            PAGE_SIZE,
            RW,
            AreaAttrs::PARTIAL,
            TryArc::try_backend(AnonBackend).unwrap(),
        )
        .unwrap();
    assert_eq!(
        space.page_fault(va(BASE), Access::Read, aspace::FaultContext::User),
        FaultOutcome::Fault(FaultReason::Partial)
    );
    assert_eq!(space.resident_pages(), 0);
}

#[test]
fn a_partial_area_refuses_resize_change_of_rights_and_share() {
    // A share destination is partial until its share record is attached:
    // nothing may share, resize or change it meanwhile (a share record
    // arriving there would be overwritten and its frames never freed).
    let sim = sim();
    let space = sim.system().create().unwrap();
    space
        .area_create_with(
            va(BASE),
            2 * PAGE_SIZE,
            RW,
            AreaAttrs::PARTIAL,
            TryArc::try_backend(AnonBackend).unwrap(),
        )
        .unwrap();
    let other = sim.system().create().unwrap();
    assert_eq!(space.area_resize(va(BASE), PAGE_SIZE), Err(Error::NotFound));
    assert_eq!(
        space.area_change_flags(va(BASE), AreaFlags::READ),
        Err(Error::NotFound)
    );
    assert_eq!(
        space.area_share(va(BASE), 2 * PAGE_SIZE, &other, va(BASE), RW),
        Err(Error::NotFound)
    );
    assert!(other.areas().is_empty());
    let area = space.area(va(BASE)).unwrap();
    assert_eq!((area.pages, area.flags, area.shared), (2, RW, false));
    space.area_destroy(va(BASE)).unwrap();
}

#[test]
fn fault_on_a_page_already_mapped_keeps_its_frame_and_data() {
    // Two pages, one resident: the fault handler prepares a frame for the
    // other before it finds the page mapped, and must give it back.
    let (sim, space, mut cpu) = setup(2);
    cpu.write_u64(va(BASE + 16), 0xfeed).unwrap();
    let mapped = space.translate(va(BASE).page()).unwrap();
    let before = sim.system().stats();
    let frames = sim.hardware().frames().stats();
    assert_eq!(
        space.page_fault(va(BASE + 16), Access::Read, aspace::FaultContext::User),
        FaultOutcome::Ok
    );
    let d = sim.system().stats().since(&before);
    assert_eq!((d.faults_raced, d.faults_resolved), (1, 0));
    assert_eq!((d.pages_mapped, d.frame_refs_released), (0, 0));
    // A frame the backend prepared before the area's lock went straight
    // back: nothing more in use, and every allocation was freed.
    let after = sim.hardware().frames().stats();
    assert_eq!(after.in_use, frames.in_use);
    assert_eq!(
        after.allocated - frames.allocated,
        after.freed - frames.freed
    );
    assert_eq!(space.translate(va(BASE).page()), Some(mapped));
    assert_eq!(cpu.read_u64(va(BASE + 16)).unwrap(), 0xfeed);
}

#[test]
fn fault_on_a_fully_resident_area_allocates_no_frame() {
    let (sim, space, mut cpu) = setup(1);
    cpu.write_u64(va(BASE), 5).unwrap();
    let frames = sim.hardware().frames().stats();
    assert_eq!(
        space.page_fault(va(BASE), Access::Write, aspace::FaultContext::User),
        FaultOutcome::Ok
    );
    assert_eq!(sim.hardware().frames().stats().allocated, frames.allocated);
    assert_eq!(cpu.read_u64(va(BASE)).unwrap(), 5);
}

#[test]
fn protection_fault_allocates_no_frame() {
    let sim = sim();
    let space = sim.system().create().unwrap();
    space
        .area_create(va(BASE), 4 * PAGE_SIZE, AreaFlags::READ)
        .unwrap();
    let frames = sim.hardware().frames().stats();
    assert_eq!(
        space.page_fault(va(BASE), Access::Write, aspace::FaultContext::User),
        FaultOutcome::Fault(FaultReason::Access)
    );
    assert_eq!(sim.hardware().frames().stats().allocated, frames.allocated);
    assert_eq!(space.resident_pages(), 0);
}

#[test]
fn two_cpus_racing_on_the_same_pages_map_each_once() {
    const PAGES: u64 = 128;
    let sim = Sim::new(SimConfig {
        cpus: 2,
        ..SimConfig::default()
    })
    .unwrap();
    let baseline = sim.frames_in_use();
    let space = sim.system().create().unwrap();
    space.area_create(va(BASE), PAGES * PAGE_SIZE, RW).unwrap();
    let before = sim.system().stats();
    let start = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        for id in 0..2u64 {
            let (sim, space, start) = (&sim, &space, &start);
            s.spawn(move || {
                let mut cpu = sim.cpu(id as usize);
                cpu.switch_to(space).unwrap();
                start.wait();
                // Both CPUs touch every page, in the same order, so most
                // faults meet the other CPU's on the same page.
                for p in 0..PAGES {
                    let a = va(BASE + p * PAGE_SIZE + 8 * id);
                    cpu.write_u64(a, p << 8 | id).unwrap();
                }
            });
        }
    });
    let d = sim.system().stats().since(&before);
    assert_eq!(d.pages_mapped, PAGES, "each page mapped exactly once");
    assert_eq!(d.faults_failed, 0);
    assert_eq!(space.resident_pages(), PAGES);
    assert_used_space_matches_page_table(&space, va(BASE));
    let mut cpu = sim.cpu(0);
    cpu.switch_to(&space).unwrap();
    for p in 0..PAGES {
        for id in 0..2u64 {
            let a = va(BASE + p * PAGE_SIZE + 8 * id);
            assert_eq!(cpu.read_u64(a).unwrap(), p << 8 | id, "page {p}");
        }
    }
    let tables = space.page_table_frames();
    assert_eq!(sim.frames_in_use(), baseline + PAGES + tables);
    drop(cpu);
    drop(space);
    assert_eq!(sim.frames_in_use(), baseline, "every frame back");
}

#[test]
fn fault_inside_a_user_copy_is_deferred() {
    let (_sim, space, _cpu) = setup(1);
    assert_eq!(
        space.page_fault(
            va(BASE + PAGE_SIZE),
            Access::Read,
            aspace::FaultContext::UserCopy
        ),
        FaultOutcome::Defer(FaultReason::NoArea)
    );
}

#[test]
fn fault_when_frames_run_out_fails_cleanly_and_leaks_nothing() {
    let (sim, space, mut cpu) = setup(4);
    cpu.write_u64(va(BASE), 1).unwrap();
    let in_use = sim.frames_in_use();
    sim.hardware().frames().set_limit(Some(in_use));
    let e = cpu.write_u64(va(BASE + PAGE_SIZE), 2).unwrap_err();
    assert_eq!(e.reason, FaultReason::NoMemory);
    assert_eq!(sim.frames_in_use(), in_use);
    assert_eq!(space.resident_pages(), 1);
    assert_used_space_matches_page_table(&space, va(BASE));
    sim.hardware().frames().set_limit(None);
    cpu.write_u64(va(BASE + PAGE_SIZE), 2).unwrap();
    assert_eq!(cpu.read_u64(va(BASE)).unwrap(), 1);
}

#[test]
fn fault_with_a_frame_but_no_page_table_frame_fails_cleanly() {
    // A page in a fresh 1 GiB region needs new intermediate tables: the
    // data frame is there, the tables are not.
    let (sim, space, mut cpu) = setup(1);
    cpu.write_u64(va(BASE), 7).unwrap();
    let far = va(BASE + (1 << 30));
    space.area_create(far, PAGE_SIZE, RW).unwrap();
    let in_use = sim.frames_in_use();
    sim.hardware().frames().set_limit(Some(in_use + 1));
    let e = cpu.write_u64(far, 2).unwrap_err();
    assert_eq!(e.reason, FaultReason::NoMemory);
    assert_eq!(sim.frames_in_use(), in_use, "the data frame went back");
    assert_eq!(space.area(far).unwrap().resident, 0);
    assert!(space.used_space(far).unwrap().is_empty());
    assert_eq!(space.translate(far.page()), None);
    sim.hardware().frames().set_limit(None);
    cpu.write_u64(far, 2).unwrap();
    assert_eq!(cpu.read_u64(far).unwrap(), 2);
    assert_eq!(cpu.read_u64(va(BASE)).unwrap(), 7);
    assert_used_space_matches_page_table(&space, far);
}

#[test]
fn creating_a_space_without_frames_is_no_memory() {
    let sim = sim();
    sim.hardware().frames().set_limit(Some(sim.frames_in_use()));
    assert_eq!(sim.system().create().err(), Some(Error::NoMemory));
}

// ---- copies between kernel and user memory ----

#[test]
fn copy_to_and_from_user_round_trip() {
    let (_sim, _space, mut cpu) = setup(2);
    let msg = b"hello from the kernel, across a page boundary";
    let at = va(BASE + PAGE_SIZE - 10);
    cpu.copy_to_user(at, msg).unwrap();
    let mut back = vec![0u8; msg.len()];
    cpu.copy_from_user(at, &mut back).unwrap();
    assert_eq!(&back, msg);
}

#[test]
fn copy_from_user_with_a_bad_pointer_fails_with_bad_memory() {
    let (_sim, _space, mut cpu) = setup(1);
    let mut buf = [0u8; 16];
    assert_eq!(cpu.copy_from_user(va(0), &mut buf), Err(Error::BadMemory));
    assert_eq!(
        cpu.copy_from_user(va(0xffff_8000_0000_0000), &mut buf),
        Err(Error::BadMemory)
    );
    assert_eq!(
        cpu.copy_from_user(va(u64::MAX - 4), &mut buf),
        Err(Error::BadMemory)
    );
    // Straddling the end of the area: the first part is fine, the copy fails.
    assert_eq!(
        cpu.copy_from_user(va(BASE + PAGE_SIZE - 8), &mut buf),
        Err(Error::BadMemory)
    );
}

#[test]
fn copy_to_read_only_user_memory_fails_with_bad_memory() {
    let sim = sim();
    let space = sim.system().create().unwrap();
    space
        .area_create(va(BASE), PAGE_SIZE, AreaFlags::READ)
        .unwrap();
    let mut cpu = sim.cpu(0);
    cpu.switch_to(&space).unwrap();
    assert_eq!(cpu.copy_to_user(va(BASE), b"x"), Err(Error::BadMemory));
}

// ---- change of flags ----

#[test]
fn change_flags_keeps_data_flips_rights_in_one_round() {
    let (sim, space, mut cpu) = setup(4);
    for i in 0..4 {
        cpu.write_u64(va(BASE + i * PAGE_SIZE), 0xc0de + i).unwrap();
    }
    let frames = sim.frames_in_use();
    let before = sim.system().stats();
    let rx = AreaFlags::READ | AreaFlags::EXEC;
    cpu.run(|| space.area_change_flags(va(BASE), rx)).unwrap();
    assert_eq!(sim.system().stats().since(&before).shootdown_rounds, 1);
    assert_eq!(sim.frames_in_use(), frames);
    for i in 0..4 {
        assert_eq!(cpu.read_u64(va(BASE + i * PAGE_SIZE)).unwrap(), 0xc0de + i);
    }
    assert_eq!(
        cpu.write_u64(va(BASE), 0).unwrap_err().reason,
        FaultReason::Access
    );
    assert_eq!(cpu.fetch(va(BASE)).unwrap(), 0xde);
    assert_eq!(space.area(va(BASE)).unwrap().flags, rx);
}

#[test]
fn change_flags_refuses_write_with_exec() {
    let (_sim, space, _cpu) = setup(1);
    let wx = AreaFlags::READ | AreaFlags::WRITE | AreaFlags::EXEC;
    assert_eq!(
        space.area_change_flags(va(BASE), wx),
        Err(Error::InvalidArgument)
    );
}

#[test]
fn change_flags_without_area_is_not_found() {
    let (_sim, space, _cpu) = setup(1);
    assert_eq!(
        space.area_change_flags(va(0x9000_0000), RW),
        Err(Error::NotFound)
    );
}

// ---- system calls ----

#[test]
fn sys_area_create_returns_the_address_or_minus_one() {
    let (_sim, space, _cpu) = setup(1);
    let base = 0x8000_0000usize;
    assert_eq!(sys_as_area_create(&*space, base, 4096, 3), base);
    assert_eq!(sys_as_area_create(&*space, base, 4096, 3), CREATE_FAILED);
    assert_eq!(
        sys_as_area_create(&*space, base + 4096, 4096, 0x100),
        CREATE_FAILED
    );
    assert_eq!(
        sys_as_area_create(&*space, base + 4096, 4096, 6),
        CREATE_FAILED
    );
    assert!(space
        .area(va(base as u64))
        .unwrap()
        .flags
        .contains(AreaFlags::CACHEABLE));
}

#[test]
fn sys_calls_return_helenos_errno_values() {
    let (_sim, space, _cpu) = setup(2);
    let b = BASE as usize;
    assert_eq!(sys_as_area_resize(&*space, b, 3 * 4096, 0), 0);
    assert_eq!(sys_as_area_resize(&*space, b, 0, 0), -6); // EPERM
    assert_eq!(sys_as_area_resize(&*space, 0x9000_0000, 4096, 0), -1); // ENOENT
    assert_eq!(sys_as_area_change_flags(&*space, b, 0x100), -13); // EINVAL
    assert_eq!(sys_as_area_change_flags(&*space, b, 1), 0);
    assert_eq!(sys_as_area_destroy(&*space, b), 0);
    assert_eq!(sys_as_area_destroy(&*space, b), -1); // ENOENT
    space.area_create(va(BASE), 4096, RW).unwrap();
    space.area_create(va(BASE + 4096), 4096, RW).unwrap();
    assert_eq!(sys_as_area_resize(&*space, b, 2 * 4096, 0), -11); // EADDRNOTAVAIL
}

#[test]
fn errors_map_to_helenos_errno_and_back() {
    let all = [
        (Error::NotFound, -1, "ENOENT"),
        (Error::NoMemory, -2, "ENOMEM"),
        (Error::PermissionDenied, -6, "EPERM"),
        (Error::BadMemory, -9, "EBADMEM"),
        (Error::NotSupported, -10, "ENOTSUP"),
        (Error::AddressNotAvailable, -11, "EADDRNOTAVAIL"),
        (Error::InvalidArgument, -13, "EINVAL"),
    ];
    for (e, n, name) in all {
        assert_eq!(e.errno(), n);
        assert_eq!(e.errno_name(), name);
        assert_eq!(Error::from_errno(n), Some(e));
        assert!(e.to_string().contains(name));
    }
    assert_eq!(Error::from_errno(0), None);
}

// ---- listing, switch, TLB ----

#[test]
fn map_lists_areas_like_proc_maps() {
    let (_sim, space, mut cpu) = setup(4);
    space
        .area_create(
            va(0x7000_0000),
            PAGE_SIZE,
            AreaFlags::READ | AreaFlags::EXEC,
        )
        .unwrap();
    cpu.write_u64(va(BASE), 1).unwrap();
    let map = space.map();
    let lines: Vec<&str> = map.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].starts_with("0000000000400000-0000000000404000 rw-p anon"),
        "{map}"
    );
    assert!(lines[0].contains("1/4"), "{map}");
    assert!(
        lines[1].starts_with("0000000070000000-0000000070001000 r-xp anon"),
        "{map}"
    );
}

#[test]
fn switch_gives_an_asid_and_loads_it_on_the_cpu() {
    let sim = sim();
    let space = sim.system().create().unwrap();
    let mut cpu = sim.cpu(1);
    let asid = cpu.switch_to(&space).unwrap();
    assert_ne!(asid, Asid::KERNEL);
    assert_eq!(space.asid(), Some(asid));
    assert_eq!(sim.hardware().loaded_asid(1), asid);
    assert!(space.active_cpus().contains(1));
    cpu.idle();
    assert!(space.active_cpus().is_empty());
    assert_eq!(
        space.asid(),
        Some(asid),
        "an inactive space keeps its ASID until stolen"
    );
}

#[test]
fn translations_are_cached_in_the_tlb_under_the_asid() {
    let (sim, space, mut cpu) = setup(1);
    cpu.write_u64(va(BASE), 3).unwrap();
    let hits = sim.hardware().stats().tlb_hits;
    cpu.read_u64(va(BASE)).unwrap();
    assert_eq!(sim.hardware().stats().tlb_hits, hits + 1);
    let e = cpu.tlb_entries();
    let entry = e.iter().find(|e| e.page == va(BASE).page()).unwrap();
    assert_eq!(Some(entry.asid), space.asid());
    assert_eq!(
        Some(entry.frame),
        space.translate(va(BASE).page()).map(|t| t.0)
    );
    assert!(entry.writable && entry.user && !entry.executable);
}

#[test]
fn shootdown_of_a_space_running_nowhere_else_sends_no_ipi() {
    let (sim, space, mut cpu) = setup(4);
    for i in 0..4 {
        cpu.write_u64(va(BASE + i * PAGE_SIZE), i).unwrap();
    }
    let before = sim.system().stats();
    cpu.run(|| space.area_destroy(va(BASE))).unwrap();
    let d = sim.system().stats().since(&before);
    assert_eq!(
        (d.shootdown_rounds, d.ipis, d.local_invalidations),
        (1, 0, 1)
    );
}
