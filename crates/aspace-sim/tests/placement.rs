//! Placement anywhere, guard pages and areas that grow downwards (issue 15),
//! on the simulated machine: bases chosen, guards refused to others, the
//! guard fault reason, a stack grown by a CPU writing downwards, its limit,
//! and failure injection for placement and for growth faults.

use aspace::placement::{Placement, DEFAULT_GROW_LIMIT};
use aspace::{
    AreaFlags, AreaInfo, Error, FaultReason, Frame, Page, PageFlags, VirtAddr, PAGE_SIZE,
};
use aspace_sim::{Sim, SimConfig, Space, SpaceHandle};

const RW: AreaFlags = AreaFlags::READ.union(AreaFlags::WRITE);
const P: u64 = PAGE_SIZE;

fn va(a: u64) -> VirtAddr {
    VirtAddr::new(a)
}

fn sim() -> Sim {
    Sim::new(SimConfig {
        cpus: 1,
        asids: 2,
        memory: 4 << 20,
        tlb_entries: 64,
        ..SimConfig::default()
    })
    .unwrap()
}

fn above(bound: u64) -> Placement {
    Placement::above(va(bound))
}

fn bases(s: &Space) -> Vec<(u64, u64)> {
    s.areas()
        .iter()
        .map(|a| (a.base.as_u64(), a.pages))
        .collect()
}

#[test]
fn lowest_above_a_bound_fills_holes_in_order() {
    let sim = sim();
    let s = sim.system().create().unwrap();
    s.area_create(va(0x10_0000), 2 * P, RW).unwrap();
    s.area_create(va(0x10_3000), P, RW).unwrap();
    // From 0: the lowest page is 1 (the NULL page is never chosen).
    assert_eq!(s.area_create_anywhere(above(0), P, RW), Ok(va(P)));
    // The hole between the two areas holds one page.
    assert_eq!(
        s.area_create_anywhere(above(0x10_0000), P, RW),
        Ok(va(0x10_2000))
    );
    // Two pages no longer fit there: right after the second area.
    assert_eq!(
        s.area_create_anywhere(above(0x10_0000), 2 * P, RW),
        Ok(va(0x10_4000))
    );
    // An unaligned bound rounds up; an alignment skips to the next multiple.
    assert_eq!(
        s.area_create_anywhere(above(0x20_0001), P, RW),
        Ok(va(0x20_1000))
    );
    let aligned = Placement::LowestAbove {
        bound: va(0x20_0001),
        align: 0x10_0000,
    };
    assert_eq!(s.area_create_anywhere(aligned, P, RW), Ok(va(0x30_0000)));
    // Top-down below a ceiling.
    let top = Placement::HighestBelow {
        ceiling: va(0x10_0000),
        align: 1,
    };
    assert_eq!(s.area_create_anywhere(top, 2 * P, RW), Ok(va(0xf_e000)));
    let top = Placement::HighestBelow {
        ceiling: va(u64::MAX),
        align: 1,
    };
    let end = s.user_end();
    assert_eq!(s.area_create_anywhere(top, P, RW), Ok(va(end - P)));
    // Lowest above a bound, ending at or below a ceiling: the hole right
    // after 0x10_4000's area holds two pages, not three.
    let between = |bound, ceiling| Placement::LowestBetween {
        bound: va(bound),
        ceiling: va(ceiling),
        align: 1,
    };
    s.area_create(va(0x10_8000), P, RW).unwrap();
    assert_eq!(
        s.area_create_anywhere(between(0x10_4000, 0x10_8000), 3 * P, RW),
        Err(aspace::Error::NoMemory)
    );
    assert_eq!(
        s.area_create_anywhere(between(0x10_4000, 0x10_8000), 2 * P, RW),
        Ok(va(0x10_6000))
    );
    // A guard page below must fit too; a ceiling rounds down to a page.
    assert_eq!(
        s.area_create_anywhere(between(0x10_9000, 0x10_b0ff), P, RW | AreaFlags::GUARD),
        Ok(va(0x10_a000))
    );
    assert_eq!(
        s.area_create_anywhere(between(0x10_b000, 0x10_bfff), P, RW),
        Err(aspace::Error::NoMemory)
    );
    // Every area chosen is a real area, reachable by a CPU.
    let mut cpu = sim.cpu(0);
    cpu.switch_to(&s).unwrap();
    for (b, _) in bases(&s) {
        cpu.write_u64(va(b), b).unwrap();
        assert_eq!(cpu.read_u64(va(b)).unwrap(), b);
    }
}

#[test]
fn refusals_of_placement() {
    let sim = sim();
    let s = sim.system().create().unwrap();
    let end = s.user_end();
    assert_eq!(
        s.area_create_anywhere(above(0), 0, RW),
        Err(Error::InvalidArgument)
    );
    let bad = Placement::LowestAbove {
        bound: va(0),
        align: 3 * P,
    };
    assert_eq!(
        s.area_create_anywhere(bad, P, RW),
        Err(Error::InvalidArgument)
    );
    assert_eq!(
        s.area_create_anywhere(above(0), P, RW | AreaFlags::EXEC),
        Err(Error::InvalidArgument)
    );
    // No room: ENOMEM, as HelenOS's as_area_share reports.
    assert_eq!(
        s.area_create_anywhere(above(end - P), 2 * P, RW),
        Err(Error::NoMemory)
    );
    assert_eq!(
        s.area_create_anywhere(above(0), end, RW),
        Err(Error::NoMemory)
    );
    assert_eq!(Error::NoMemory.errno(), -2);
    // Fill the last two pages; nothing fits above them any more.
    assert_eq!(
        s.area_create_anywhere(above(end - 2 * P), 2 * P, RW),
        Ok(va(end - 2 * P))
    );
    assert_eq!(
        s.area_create_anywhere(above(end - 2 * P), P, RW),
        Err(Error::NoMemory)
    );
    assert_eq!(bases(&s), [(end - 2 * P, 2)]);
}

#[test]
fn guard_pages_are_refused_to_others() {
    let sim = sim();
    let s = sim.system().create().unwrap();
    let g = RW | AreaFlags::GUARD;
    s.area_create(va(0x10_0000), 4 * P, g).unwrap();
    // Fixed: an area ending on the guard page, or covering it, is refused.
    assert_eq!(
        s.area_create(va(0xf_f000), P, RW),
        Err(Error::AddressNotAvailable)
    );
    assert_eq!(
        s.area_create(va(0xf_e000), 2 * P, RW),
        Err(Error::AddressNotAvailable)
    );
    // The page below the guard is free; the area there cannot grow into it.
    s.area_create(va(0xf_e000), P, RW).unwrap();
    assert_eq!(
        s.area_resize(va(0xf_e000), 2 * P),
        Err(Error::AddressNotAvailable)
    );
    // A guarded area's own guard must be free too.
    assert_eq!(s.area_create(va(0x10_5000), P, g), Ok(va(0x10_5000)));
    assert_eq!(
        s.area_create(va(0x10_6000), P, g),
        Err(Error::AddressNotAvailable)
    );
    // Anywhere: the page at 0x104000 is the guard of the area above it,
    // so the first free page is 0x106000; a guarded one then needs its own
    // guard free too (0x107000), and goes at 0x108000.
    assert_eq!(
        s.area_create_anywhere(above(0xf_f000), P, RW),
        Ok(va(0x10_6000))
    );
    assert_eq!(
        s.area_create_anywhere(above(0x10_4000), P, g),
        Ok(va(0x10_8000))
    );
    // A guarded area at page 1 keeps the NULL page as its guard.
    assert_eq!(s.area_create_anywhere(above(0), P, g), Ok(va(P)));
    // The guard survives a change of rights.
    s.area_change_flags(va(0x10_0000), AreaFlags::READ).unwrap();
    assert!(s
        .area(va(0x10_0000))
        .unwrap()
        .flags
        .contains(AreaFlags::GUARD));
    assert_eq!(
        s.area_create(va(0xf_f000), P, RW),
        Err(Error::AddressNotAvailable)
    );
}

#[test]
fn a_guard_page_fault_is_a_stack_overflow() {
    let sim = sim();
    let s = sim.system().create().unwrap();
    s.area_create(va(0x10_0000), 2 * P, RW | AreaFlags::GUARD)
        .unwrap();
    let mut cpu = sim.cpu(0);
    cpu.switch_to(&s).unwrap();
    cpu.write_u64(va(0x10_0000), 1).unwrap();
    let f = cpu.write_u64(va(0xf_fff8), 1).unwrap_err();
    assert_eq!(f.reason, FaultReason::Guard);
    // A page lower is no area's guard: no area.
    let f = cpu.read_u64(va(0xf_e000)).unwrap_err();
    assert_eq!(f.reason, FaultReason::NoArea);
    // Nothing was mapped at the guard.
    assert_eq!(s.translate(Page::from_number(0xff)), None);
    assert!(s.area(va(0xf_f000)).is_none());
}

/// A CPU pushes downwards through a growing stack, one word per page, and
/// reads every word back; the area grew page by page, keeping its guard,
/// and the used space equals what the page table maps.
#[test]
fn a_stack_grows_down_through_the_cpu() {
    let sim = sim();
    let s = sim.system().create().unwrap();
    let top = 0x80_0000;
    let limit = 16 * P;
    s.area_create_grows_down(va(top - P), P, limit, RW).unwrap();
    let info = s.area(va(top - P)).unwrap();
    assert!(info
        .flags
        .contains(AreaFlags::GROWS_DOWN | AreaFlags::GUARD));
    let mut cpu = sim.cpu(0);
    cpu.switch_to(&s).unwrap();
    for i in 1..=16 {
        cpu.write_u64(va(top - i * P + 8), 1000 + i).unwrap();
    }
    let info = s.area(va(top - P)).unwrap();
    assert_eq!(
        (info.base, info.pages, info.resident),
        (va(top - 16 * P), 16, 16)
    );
    for i in 1..=16 {
        assert_eq!(cpu.read_u64(va(top - i * P + 8)).unwrap(), 1000 + i);
    }
    let used = s.used_space(va(top - P)).unwrap();
    assert_eq!(used.pages(), 16);
    for i in 0..16 {
        let p = Page::from_number((top >> 12) - 1 - i);
        assert!(s.translate(p).is_some());
    }
    // The limit: the next page down is the guard for good.
    let f = cpu.write_u64(va(top - 17 * P), 1).unwrap_err();
    assert_eq!(f.reason, FaultReason::Guard);
    assert_eq!(s.area(va(top - P)).unwrap().pages, 16);
    // The guard is still kept below the grown area.
    assert_eq!(
        s.area_create(va(top - 17 * P), P, RW),
        Err(Error::AddressNotAvailable)
    );
    // Shrinking keeps the base (resize moves the end); destroying frees all.
    s.area_destroy(va(top - P)).unwrap();
    drop(cpu);
    drop(s);
    assert_eq!(sim.frames_in_use(), sim_frames_baseline());
}

fn sim_frames_baseline() -> u64 {
    sim().frames_in_use()
}

#[test]
fn growth_stops_at_a_neighbour_and_at_the_null_page() {
    let sim = sim();
    let s = sim.system().create().unwrap();
    // Room for one page of growth: the new guard needs the page below.
    s.area_create(va(0x10_0000), P, RW).unwrap();
    s.area_create(va(0x10_3000), P, RW | AreaFlags::GROWS_DOWN)
        .unwrap();
    let mut cpu = sim.cpu(0);
    cpu.switch_to(&s).unwrap();
    cpu.write_u64(va(0x10_2000), 5).unwrap();
    assert_eq!(s.area(va(0x10_2000)).unwrap().base, va(0x10_2000));
    let f = cpu.write_u64(va(0x10_1000), 5).unwrap_err();
    assert_eq!(f.reason, FaultReason::Guard);
    assert_eq!(s.area(va(0x10_2000)).unwrap().pages, 2);
    // The default limit applies to area_create with GROWS_DOWN.
    assert_eq!(DEFAULT_GROW_LIMIT, 8 << 20);
    // At page 1 the guard is the NULL page, which it never grows over.
    s.area_create(va(P), P, RW | AreaFlags::GROWS_DOWN).unwrap();
    assert_eq!(cpu.read_u64(va(0)).unwrap_err().reason, FaultReason::Guard);
    // A kernel copy into the guard grows the stack too.
    s.area_create(va(0x40_1000), P, RW | AreaFlags::GROWS_DOWN)
        .unwrap();
    cpu.copy_to_user(va(0x40_0ff8), &[7; 16]).unwrap();
    assert_eq!(s.area(va(0x40_1000)).unwrap().base, va(0x40_0000));
}

/// What a failure must leave as it was.
#[derive(Debug, PartialEq)]
struct State {
    areas: Vec<AreaInfo>,
    pages: Vec<(u64, Option<(Frame, PageFlags)>)>,
    table_frames: u64,
    frames_in_use: u64,
}

fn state(sim: &Sim, s: &Space) -> State {
    let areas = s.areas();
    let mut pages = Vec::new();
    for a in &areas {
        // The guard page too, where a growth would map.
        for n in a.base.page().number() - 1..a.base.page().number() + a.pages {
            pages.push((n, s.translate(Page::from_number(n))));
        }
    }
    State {
        areas,
        pages,
        table_frames: s.page_table_frames(),
        frames_in_use: sim.frames_in_use(),
    }
}

/// Runs `op` on a fresh world with frame allocation failing after `n`
/// successes, n = 0, 1, ... until it succeeds; every refusal must leave
/// the state as it was, and every world, dropped, every frame back.
fn inject<T: std::fmt::Debug, E: std::fmt::Debug>(
    name: &str,
    op: impl Fn(&Sim, &SpaceHandle, &mut aspace_sim::Cpu) -> Result<T, E>,
) -> u64 {
    let baseline = sim_frames_baseline();
    for n in 0..32 {
        let sim = sim();
        let s = sim.system().create().unwrap();
        // A used far-away area, so the first growth fault needs new tables.
        s.area_create(va(0x10_0000), P, RW).unwrap();
        s.area_create_grows_down(va(0x7f00_0000_0000), P, 4 * P, RW)
            .unwrap();
        let mut cpu = sim.cpu(0);
        cpu.switch_to(&s).unwrap();
        cpu.write_u64(va(0x10_0000), 1).unwrap();
        let before = state(&sim, &s);
        sim.hardware().frames().fail_after(Some(n));
        let result = op(&sim, &s, &mut cpu);
        sim.hardware().frames().fail_after(None);
        let done = result.is_ok();
        if !done {
            assert_eq!(
                state(&sim, &s),
                before,
                "{name}: refused at allocation {n}: {result:?}"
            );
        }
        drop(cpu);
        drop(s);
        assert_eq!(
            sim.frames_in_use(),
            baseline,
            "{name}: frames left after n = {n}"
        );
        if done {
            return n;
        }
    }
    panic!("{name}: still refused after 32 allocations");
}

#[test]
fn placement_and_growth_are_all_or_nothing() {
    // Placement allocates no frames: it succeeds at once.
    let n = inject("create anywhere", |_, s, _| {
        s.area_create_anywhere(above(0x10_0000), 3 * P, RW | AreaFlags::GUARD)
    });
    assert_eq!(n, 0);
    // A growth fault needs a frame and page tables (the stack sits alone
    // in its PML4 slot, its first page not yet touched).
    let n = inject("growth fault", |_, _, cpu| {
        cpu.write_u64(va(0x7f00_0000_0000 - 8), 9)
    });
    assert!(n >= 2, "a fresh table chain and a frame: {n}");
}

/// HelenOS's `sys_as_area_create(base *, size, flags, bound)`: the base is
/// read from user memory, `AS_AREA_ANY` places the area above the bound,
/// and the base chosen is written back through the user copies.
#[test]
fn the_system_call_writes_the_chosen_base_back() {
    use aspace::syscall::{sys_as_area_create, sys_as_area_create_any, AS_AREA_ANY, CREATE_FAILED};
    let sim = sim();
    let s = sim.system().create().unwrap();
    let mut cpu = sim.cpu(0);
    cpu.switch_to(&s).unwrap();
    // A page of user memory holding the base word.
    s.area_create(va(0x10_0000), P, RW).unwrap();
    // And a read-only one that says "anywhere".
    s.area_create(va(0x20_0000), P, RW).unwrap();
    cpu.write_u64(va(0x20_0000), AS_AREA_ANY as u64).unwrap();
    cpu.run(|| s.area_change_flags(va(0x20_0000), AreaFlags::READ))
        .unwrap();
    let word = va(0x10_0008);
    cpu.write_u64(word, AS_AREA_ANY as u64).unwrap();
    let got = cpu.run(|| sys_as_area_create_any(&*s, 0x10_0008, 2 * P as usize, 3, 0x10_0000));
    assert_eq!(got, 0x10_1000);
    assert_eq!(cpu.read_u64(word).unwrap(), 0x10_1000);
    assert_eq!(s.area(va(0x10_1000)).unwrap().pages, 2);
    // A fixed base in the word is used as it is.
    cpu.write_u64(word, 0x30_0000).unwrap();
    let got = cpu.run(|| sys_as_area_create_any(&*s, 0x10_0008, P as usize, 3 | 0x10, 0));
    assert_eq!(got, 0x30_0000);
    assert!(s
        .area(va(0x30_0000))
        .unwrap()
        .flags
        .contains(AreaFlags::GUARD));
    // A word that cannot be read, or written back, fails the call and
    // leaves no area behind.
    let before = bases(&s);
    let bad = cpu.run(|| sys_as_area_create_any(&*s, 0x50_0000, P as usize, 3, 0));
    assert_eq!(bad, CREATE_FAILED);
    let ro = cpu.run(|| sys_as_area_create_any(&*s, 0x20_0000, P as usize, 3, 0));
    assert_eq!(ro, CREATE_FAILED);
    assert_eq!(cpu.read_u64(va(0x20_0000)).unwrap(), AS_AREA_ANY as u64);
    assert_eq!(bases(&s), before);
    // The old entry point takes AS_AREA_ANY too (bound 0: page 1).
    assert_eq!(
        cpu.run(|| sys_as_area_create(&*s, AS_AREA_ANY, P as usize, 3)),
        P as usize
    );
}

/// `highest_free` against a brute-force model: random areas (some with a
/// guard page) in a window of 64 pages, then every (floor, ceiling, size)
/// asked of both; each answer is then checked by creating an area there.
#[test]
fn highest_free_matches_a_scan_of_the_pages() {
    const SEED: u64 = 0x5eed_0016;
    const LO: u64 = 0x40_0000;
    const PAGES: u64 = 64;
    let mut rng = SEED;
    let mut next = |n: u64| {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) % n
    };
    for round in 0..40 {
        let sim = sim();
        let s = sim.system().create().unwrap();
        // taken[i]: page LO/P + i is an area's or a guard's.
        let mut taken = [false; PAGES as usize];
        for _ in 0..8 {
            let (at, len) = (1 + next(PAGES - 4), 1 + next(4));
            let guard = next(3) == 0;
            let flags = if guard { RW | AreaFlags::GUARD } else { RW };
            if s.area_create(va(LO + at * P), len * P, flags).is_ok() {
                let from = at - u64::from(guard);
                for p in from..(at + len).min(PAGES) {
                    taken[p as usize] = true;
                }
            }
        }
        for _ in 0..20 {
            let (floor, ceiling, size) = (next(PAGES), next(PAGES + 1), 1 + next(6));
            let model = (floor..ceiling.saturating_sub(size - 1))
                .rev()
                .find(|&b| (b..b + size).all(|p| !taken[p as usize]));
            let got = s.highest_free(va(LO + floor * P), va(LO + ceiling * P), size * P);
            assert_eq!(
                got,
                model.map(|b| va(LO + b * P)),
                "seed {SEED:#x} round {round}: floor {floor} ceiling {ceiling} size {size}, taken {taken:?}"
            );
        }
    }
    // Nothing to fit, and a fit that is then really free.
    let sim = sim();
    let s = sim.system().create().unwrap();
    assert_eq!(s.highest_free(va(LO), va(LO + 4 * P), 0), None);
    assert_eq!(s.highest_free(va(LO), va(LO + 4 * P), 5 * P), None);
    let b = s.highest_free(va(LO), va(LO + 8 * P), 3 * P).unwrap();
    assert_eq!(b, va(LO + 5 * P));
    assert_eq!(s.area_create(b, 3 * P, RW), Ok(b));
    assert_eq!(s.highest_free(va(LO), va(LO + 8 * P), 6 * P), None);
}
