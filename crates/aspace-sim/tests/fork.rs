//! Copy-on-write and `System::fork`: data read back through the simulated
//! MMU in parent and child, writes invisible to the other side, frames
//! counted (a fork allocates no data frame, a write copies exactly one, a
//! frame is freed once both spaces are gone), no stale writable TLB entry
//! after a fork, copy-on-write pages through split, merge, change of
//! rights, move and unmap, a seeded model test, and failure injection at
//! every frame allocation of a fork and of a copy-on-write fault.

use aspace::TryArc;
use std::collections::BTreeMap;

use aspace::backend::elf::{ElfBackend, ElfImage, Segment};
use aspace::{
    AreaAttrs, AreaFlags, AreaInfo, Cpus, Error, Frame, Page, PageFlags, VirtAddr, PAGE_SIZE,
};
use aspace_sim::{Cpu, Sim, SimConfig, Space, SpaceHandle, TlbEntry};

mod common;

const RW: AreaFlags = AreaFlags::READ.union(AreaFlags::WRITE);
const A: u64 = 0x40_0000;
const B: u64 = 0x80_0000;

fn va(a: u64) -> VirtAddr {
    VirtAddr::new(a)
}

fn sim(cpus: usize, memory: u64) -> Sim {
    Sim::new(SimConfig {
        arch: common::arch(),
        cpus,
        asids: 8,
        memory,
        tlb_entries: 64,
    })
    .unwrap()
}

/// Frames a bare machine holds (the kernel's page table).
fn baseline() -> u64 {
    sim(1, 1 << 20).frames_in_use()
}

fn refcount(sim: &Sim, f: Frame) -> u32 {
    sim.hardware().frames().refcount(f)
}

fn frame_of(space: &Space, a: u64) -> Frame {
    space.translate(va(a).page()).expect("mapped").0
}

fn writable(space: &Space, a: u64) -> bool {
    space
        .translate(va(a).page())
        .is_some_and(|(_, f)| f.contains(PageFlags::WRITE))
}

/// Every TLB entry of `space`'s ASID on a CPU running it names what its
/// page table maps, with no more rights. (A CPU that ran it before flushes
/// its ASID before it runs it again, so entries there may be old.)
fn no_stale(sim: &Sim, space: &Space) {
    let Some(asid) = space.asid() else { return };
    let hw = sim.hardware();
    let active = space.active_cpus();
    for cpu in 0..hw.cpu_count() {
        if !active.contains(cpu) {
            continue;
        }
        for e in hw.tlb_entries(cpu) {
            if e.asid != asid || e.global {
                continue;
            }
            let (frame, flags) = space
                .translate(e.page)
                .unwrap_or_else(|| panic!("CPU {cpu}: entry {e:?} of an unmapped page"));
            assert_eq!(frame, e.frame, "CPU {cpu}: stale {e:?}");
            assert!(
                !e.writable || flags.contains(PageFlags::WRITE),
                "CPU {cpu}: writable entry {e:?} of a read-only page"
            );
        }
    }
}

/// Checks every area of `space`: its copy-on-write pages are used pages,
/// mapped without write access.
fn cow_invariants(space: &Space) {
    for a in space.areas() {
        let used = space.used_space(a.base).unwrap();
        let cow = space.cow_pages(a.base).unwrap();
        for p in cow.iter_pages() {
            assert!(used.contains(p), "{p:?} copy-on-write but not used");
            let (_, f) = space.translate(p).expect("used page mapped");
            assert!(
                !f.contains(PageFlags::WRITE),
                "{p:?} copy-on-write but writable"
            );
        }
        if a.shared {
            assert!(cow.is_empty(), "a shared area holds copy-on-write pages");
        }
    }
}

/// Tears down what a test built and checks that every frame and every
/// reserved page came back and no CPU used a freed frame.
fn finish(sim: Sim, cpus: Vec<Cpu>, spaces: Vec<SpaceHandle>) {
    drop(cpus);
    drop(spaces);
    assert_eq!(sim.hardware().stats().stale_accesses, 0);
    assert_eq!(sim.frames_in_use(), baseline(), "frames left behind");
    assert_eq!(
        sim.system().reserve().committed(),
        0,
        "pages still reserved"
    );
}

#[test]
fn fork_maps_the_same_frames_and_a_write_copies_one() {
    let sim = sim(4, 4 << 20);
    let p = sim.system().create().unwrap();
    let (mut c0, mut c1, mut c2) = (sim.cpu(0), sim.cpu(1), sim.cpu(2));
    c0.switch_to(&p).unwrap();
    c1.switch_to(&p).unwrap();
    p.area_create(va(A), 4 * PAGE_SIZE, RW).unwrap();
    for i in 0..3 {
        c0.write_u64(va(A + i * PAGE_SIZE), 100 + i).unwrap();
    }
    // Both CPUs cache writable translations of the parent.
    for i in 0..3 {
        c1.write_u64(va(A + i * PAGE_SIZE + 8), 200 + i).unwrap();
    }
    let frames: Vec<Frame> = (0..3).map(|i| frame_of(&p, A + i * PAGE_SIZE)).collect();
    let before = sim.frames_in_use();
    let committed = sim.system().reserve().committed();
    let c = c0.run(|| sim.system().fork(&p)).unwrap();
    // No data frame: only the child's page table.
    assert_eq!(sim.frames_in_use(), before + c.page_table_frames());
    assert_eq!(sim.system().reserve().committed(), committed + 4);
    for (i, &f) in frames.iter().enumerate() {
        let a = A + i as u64 * PAGE_SIZE;
        assert_eq!(refcount(&sim, f), 2);
        assert_eq!(frame_of(&c, a), f);
        assert!(!writable(&p, a) && !writable(&c, a));
    }
    no_stale(&sim, &p);
    for e in sim
        .hardware()
        .tlb_entries(0)
        .into_iter()
        .chain(sim.hardware().tlb_entries(1))
    {
        assert!(
            !e.writable
                || e.page.number() < va(A).page().number()
                || e.page.number() >= va(A + 4 * PAGE_SIZE).page().number(),
            "stale writable {e:?}"
        );
    }
    cow_invariants(&p);
    cow_invariants(&c);
    assert_eq!(c.cow_pages(va(A)).unwrap().pages(), 3);
    // The child reads the parent's data through the MMU.
    c2.switch_to(&c).unwrap();
    for i in 0..3 {
        assert_eq!(c2.read_u64(va(A + i * PAGE_SIZE)).unwrap(), 100 + i);
        assert_eq!(c2.read_u64(va(A + i * PAGE_SIZE + 8)).unwrap(), 200 + i);
    }
    assert_eq!(sim.frames_in_use(), before + c.page_table_frames());
    // A write in the child copies exactly one page.
    let n = sim.frames_in_use();
    c2.write_u64(va(A), 7).unwrap();
    assert_eq!(sim.frames_in_use(), n + 1);
    assert_eq!(c2.read_u64(va(A)).unwrap(), 7);
    assert_eq!(
        c2.read_u64(va(A + 8)).unwrap(),
        200,
        "the copy keeps the page"
    );
    assert_eq!(
        c0.read_u64(va(A)).unwrap(),
        100,
        "the parent does not see it"
    );
    assert_eq!(refcount(&sim, frames[0]), 1);
    assert_ne!(frame_of(&c, A), frames[0]);
    assert_eq!(sim.system().stats().cow_copies, 1);
    assert!(writable(&c, A));
    // A write in the parent copies too; the child keeps the old data.
    c1.write_u64(va(A + PAGE_SIZE), 9).unwrap();
    assert_eq!(sim.frames_in_use(), n + 2);
    assert_eq!(c2.read_u64(va(A + PAGE_SIZE)).unwrap(), 101);
    assert_eq!(c0.read_u64(va(A + PAGE_SIZE)).unwrap(), 9);
    // A page nobody touched is a fresh zero page on either side.
    assert_eq!(c2.read_u64(va(A + 3 * PAGE_SIZE)).unwrap(), 0);
    c2.write_u64(va(A + 3 * PAGE_SIZE), 5).unwrap();
    assert_eq!(c0.read_u64(va(A + 3 * PAGE_SIZE)).unwrap(), 0);
    no_stale(&sim, &p);
    no_stale(&sim, &c);
    cow_invariants(&p);
    cow_invariants(&c);
    // A kernel copy to user memory copies the page as a store would.
    c0.copy_to_user(va(A + 2 * PAGE_SIZE), &[1, 2, 3]).unwrap();
    assert_eq!(c2.read_u64(va(A + 2 * PAGE_SIZE)).unwrap(), 102);
    // The parent gone, the still shared frame stays for the child.
    c0.idle();
    c1.idle();
    drop(p);
    assert_eq!(refcount(&sim, frames[1]), 1, "the child's");
    assert_eq!(c2.read_u64(va(A + 2 * PAGE_SIZE)).unwrap(), 102);
    finish(sim, vec![c0, c1, c2], vec![c]);
}

#[test]
fn fork_of_a_fork_and_frames_freed_once() {
    let sim = sim(2, 4 << 20);
    let p = sim.system().create().unwrap();
    let mut c0 = sim.cpu(0);
    c0.switch_to(&p).unwrap();
    p.area_create(va(A), 2 * PAGE_SIZE, RW).unwrap();
    c0.write_u64(va(A), 1).unwrap();
    let f = frame_of(&p, A);
    let c = c0.run(|| sim.system().fork(&p)).unwrap();
    let g = c0.run(|| sim.system().fork(&c)).unwrap();
    assert_eq!(refcount(&sim, f), 3);
    let n = sim.frames_in_use();
    c0.switch_to(&g).unwrap();
    c0.write_u64(va(A), 3).unwrap();
    c0.switch_to(&c).unwrap();
    assert_eq!(c0.read_u64(va(A)).unwrap(), 1);
    c0.write_u64(va(A), 2).unwrap();
    c0.switch_to(&p).unwrap();
    assert_eq!(c0.read_u64(va(A)).unwrap(), 1);
    assert_eq!(sim.frames_in_use(), n + 2);
    assert_eq!(refcount(&sim, f), 1);
    // The last holder writes: no copy, the frame is its own now.
    let copies = sim.system().stats().cow_copies;
    sim.hardware().frames().fail_after(Some(0));
    let r = c0.write_u64(va(A), 4);
    sim.hardware().frames().fail_after(None);
    r.expect("taking the frame over allocates nothing");
    assert_eq!(sim.frames_in_use(), n + 2);
    assert_eq!(frame_of(&p, A), f);
    assert!(writable(&p, A));
    assert_eq!(sim.system().stats().cow_copies, copies);
    c0.switch_to(&g).unwrap();
    assert_eq!(c0.read_u64(va(A)).unwrap(), 3);
    c0.switch_to(&c).unwrap();
    assert_eq!(c0.read_u64(va(A)).unwrap(), 2);
    for s in [&p, &c, &g] {
        cow_invariants(s);
        no_stale(&sim, s);
    }
    c0.idle();
    finish(sim, vec![c0], vec![g, p, c]);
}

#[test]
fn a_space_dropped_after_fork_leaves_no_frame() {
    for order in 0..2 {
        let sim = sim(2, 4 << 20);
        let p = sim.system().create().unwrap();
        let mut c0 = sim.cpu(0);
        c0.switch_to(&p).unwrap();
        p.area_create(va(A), 8 * PAGE_SIZE, RW).unwrap();
        for i in 0..8 {
            c0.write_u64(va(A + i * PAGE_SIZE), i).unwrap();
        }
        let c = c0.run(|| sim.system().fork(&p)).unwrap();
        c0.idle();
        let spaces = if order == 0 { vec![p, c] } else { vec![c, p] };
        finish(sim, vec![c0], spaces);
    }
}

#[test]
fn copy_on_write_pages_through_range_operations() {
    let sim = sim(2, 4 << 20);
    let p = sim.system().create().unwrap();
    let (mut c0, mut c1) = (sim.cpu(0), sim.cpu(1));
    c0.switch_to(&p).unwrap();
    p.area_create(va(A), 8 * PAGE_SIZE, RW).unwrap();
    for i in 0..8 {
        c0.write_u64(va(A + i * PAGE_SIZE), 10 + i).unwrap();
    }
    let c = c0.run(|| sim.system().fork(&p)).unwrap();
    c1.switch_to(&c).unwrap();
    let word = |cpu: &mut Cpu, i: u64| cpu.read_u64(va(A + i * PAGE_SIZE)).unwrap();
    // mprotect read-only and back: the pages stay copy-on-write.
    c0.run(|| p.protect_range(va(A), 8 * PAGE_SIZE, AreaFlags::READ))
        .unwrap();
    c0.run(|| p.protect_range(va(A), 8 * PAGE_SIZE, RW))
        .unwrap();
    assert!(!writable(&p, A));
    cow_invariants(&p);
    c0.write_u64(va(A), 99).unwrap();
    assert_eq!(word(&mut c1, 0), 10);
    // Whole-area change of rights keeps them too.
    c0.run(|| p.area_change_flags(va(A), RW)).unwrap();
    assert!(writable(&p, A) && !writable(&p, A + PAGE_SIZE));
    // Split: each part keeps its pages' copy-on-write state.
    c0.run(|| p.area_split(va(A + 4 * PAGE_SIZE))).unwrap();
    assert_eq!(p.cow_pages(va(A)).unwrap().pages(), 3);
    assert_eq!(p.cow_pages(va(A + 4 * PAGE_SIZE)).unwrap().pages(), 4);
    cow_invariants(&p);
    c0.write_u64(va(A + 5 * PAGE_SIZE), 55).unwrap();
    assert_eq!(word(&mut c1, 5), 15);
    // Merge joins them again.
    assert!(c0.run(|| p.area_merge(va(A))).unwrap());
    assert_eq!(p.cow_pages(va(A)).unwrap().pages(), 6);
    cow_invariants(&p);
    // Move the upper half: its copy-on-write pages move with it.
    c0.run(|| p.move_range(va(A + 4 * PAGE_SIZE), 4 * PAGE_SIZE, va(B), 4 * PAGE_SIZE))
        .unwrap();
    assert_eq!(p.cow_pages(va(B)).unwrap().pages(), 3);
    assert!(!writable(&p, B + 2 * PAGE_SIZE));
    assert!(
        writable(&p, B + PAGE_SIZE),
        "the page copied before the move"
    );
    cow_invariants(&p);
    c0.write_u64(va(B + 2 * PAGE_SIZE), 66).unwrap();
    assert_eq!(c0.read_u64(va(B + 2 * PAGE_SIZE)).unwrap(), 66);
    assert_eq!(word(&mut c1, 6), 16);
    // Moving with a shrink drops the pages past the new end.
    let f7 = frame_of(&p, B + 3 * PAGE_SIZE);
    assert_eq!(refcount(&sim, f7), 2);
    c0.run(|| p.move_range(va(B), 4 * PAGE_SIZE, va(A + 4 * PAGE_SIZE), 3 * PAGE_SIZE))
        .unwrap();
    assert_eq!(refcount(&sim, f7), 1);
    cow_invariants(&p);
    // Unmap and discard drop pages from the set and release their frames'
    // references; the child keeps its pages.
    let f1 = frame_of(&p, A + PAGE_SIZE);
    c0.run(|| p.unmap_range(va(A + PAGE_SIZE), PAGE_SIZE))
        .unwrap();
    assert_eq!(refcount(&sim, f1), 1);
    assert_eq!(word(&mut c1, 1), 11);
    let f2 = frame_of(&p, A + 2 * PAGE_SIZE);
    c0.run(|| p.discard_range(va(A + 2 * PAGE_SIZE), PAGE_SIZE))
        .unwrap();
    assert_eq!(refcount(&sim, f2), 1);
    assert_eq!(c0.read_u64(va(A + 2 * PAGE_SIZE)).unwrap(), 0);
    assert_eq!(word(&mut c1, 2), 12);
    assert!(!p
        .cow_pages(va(A + 2 * PAGE_SIZE))
        .unwrap()
        .contains(va(A + 2 * PAGE_SIZE).page()));
    // Shrinking resize drops the upper pages.
    c0.run(|| p.area_resize(va(A + 4 * PAGE_SIZE), PAGE_SIZE))
        .unwrap();
    cow_invariants(&p);
    for (i, v) in [10, 11, 12, 13, 14, 15, 16, 17].into_iter().enumerate() {
        assert_eq!(word(&mut c1, i as u64), v);
    }
    no_stale(&sim, &p);
    no_stale(&sim, &c);
    c0.idle();
    c1.idle();
    finish(sim, vec![c0, c1], vec![p, c]);
}

/// A 2-CPU machine with a space on CPU 0 and an 8-page area at `A` whose
/// page `i` holds `100 + i`.
fn eight_written_pages() -> (Sim, SpaceHandle, Cpu) {
    let sim = sim(2, 4 << 20);
    let p = sim.system().create().unwrap();
    let mut c0 = sim.cpu(0);
    c0.switch_to(&p).unwrap();
    p.area_create(va(A), 8 * PAGE_SIZE, RW).unwrap();
    for i in 0..8 {
        c0.write_u64(va(A + i * PAGE_SIZE), 100 + i).unwrap();
    }
    (sim, p, c0)
}

#[test]
fn fork_except_leaves_ranges_out_or_empty() {
    use aspace::{ForkRange, Inherit};
    const P: u64 = PAGE_SIZE;
    let (sim, p, mut c0) = eight_written_pages();
    p.area_create(va(B), 2 * P, RW).unwrap();
    // B shared with a second space: the child joins the share anyway.
    let other = sim.system().create().unwrap();
    c0.write_u64(va(B), 7).unwrap();
    c0.run(|| p.area_share(va(B), 2 * P, &other, va(B), RW))
        .unwrap();
    let committed = sim.system().reserve().committed();
    let frames = sim.frames_in_use();
    let range = |a: u64, pages: u64, inherit| ForkRange {
        base: va(a),
        size: pages * P,
        inherit,
    };
    // Pages 2..4 of A not inherited, 5 inherited empty, B empty (shared:
    // seen anyway).
    let ranges = [
        range(A + 2 * P, 2, Inherit::Nothing),
        range(A + 5 * P, 1, Inherit::Empty),
        range(B, 2, Inherit::Empty),
    ];
    let c = c0.run(|| sim.system().fork_except(&p, &ranges)).unwrap();
    let areas: Vec<_> = c
        .areas()
        .iter()
        .map(|a| (a.base.as_u64(), a.pages))
        .collect();
    assert_eq!(areas, [(A, 2), (A + 4 * P, 4), (B, 2)]);
    // The child reserved its 6 private pages, B's share none more.
    assert_eq!(sim.system().reserve().committed(), committed + 6);
    // The parent's pages outside the copied ones stay writable, its own.
    for i in 0..8 {
        let copied = !matches!(i, 2 | 3 | 5);
        assert_eq!(writable(&p, A + i * P), !copied, "page {i}");
    }
    cow_invariants(&p);
    cow_invariants(&c);
    no_stale(&sim, &p);
    // What the child reads.
    c0.switch_to(&c).unwrap();
    for i in [0, 1, 4, 6, 7] {
        assert_eq!(c0.read_u64(va(A + i * P)).unwrap(), 100 + i);
    }
    for i in [2, 3] {
        assert_eq!(
            c0.read_u64(va(A + i * P)).unwrap_err().reason,
            aspace::FaultReason::NoArea
        );
    }
    assert_eq!(c0.read_u64(va(A + 5 * P)).unwrap(), 0);
    assert_eq!(c0.read_u64(va(B)).unwrap(), 7);
    // No data frame came with the fork but the zero page read at 5 (and
    // the child's page tables).
    assert_eq!(
        sim.frames_in_use() - frames,
        1 + c.page_table_frames(),
        "only tables and the page read"
    );
    // Bad lists change nothing.
    c0.switch_to(&p).unwrap();
    let n = sim.frames_in_use();
    for bad in [
        [
            range(A + 4 * P, 1, Inherit::Empty),
            range(A, 1, Inherit::Empty),
        ],
        [
            range(A, 2, Inherit::Empty),
            range(A + P, 1, Inherit::Nothing),
        ],
    ] {
        assert_eq!(
            c0.run(|| sim.system().fork_except(&p, &bad)).err(),
            Some(Error::InvalidArgument)
        );
    }
    let unaligned = [ForkRange {
        base: va(A + 1),
        size: P,
        inherit: Inherit::Nothing,
    }];
    assert_eq!(
        c0.run(|| sim.system().fork_except(&p, &unaligned)).err(),
        Some(Error::InvalidArgument)
    );
    assert_eq!(sim.frames_in_use(), n);
    c0.idle();
    finish(sim, vec![c0], vec![p, c, other]);
}

/// After a fork, a move of several areas (and the hole between them,
/// down to a lower address) keeps every copy-on-write page copy-on-write:
/// a write in the parent copies the page, the child still reads its own.
#[test]
fn a_move_of_several_areas_keeps_copy_on_write_pages() {
    const P: u64 = PAGE_SIZE;
    let sim = sim(2, 4 << 20);
    let p = sim.system().create().unwrap();
    let mut c0 = sim.cpu(0);
    c0.switch_to(&p).unwrap();
    p.area_create(va(B), 3 * P, RW).unwrap();
    p.area_create(va(B + 4 * P), 3 * P, RW).unwrap();
    for i in [0, 1, 2, 4, 5, 6] {
        c0.write_u64(va(B + i * P), 10 + i).unwrap();
    }
    let c = c0.run(|| sim.system().fork(&p)).unwrap();
    c0.run(|| p.move_range(va(B + P), 6 * P, va(A), 6 * P))
        .unwrap();
    cow_invariants(&p);
    for i in [0, 1, 3, 4, 5] {
        assert!(!writable(&p, A + i * P), "page {i} still copy-on-write");
        c0.write_u64(va(A + i * P), 100 + i).unwrap();
    }
    cow_invariants(&p);
    c0.switch_to(&c).unwrap();
    for i in [0, 1, 2, 4, 5, 6] {
        assert_eq!(
            c0.read_u64(va(B + i * P)).unwrap(),
            10 + i,
            "child page {i}"
        );
    }
    c0.switch_to(&p).unwrap();
    assert_eq!(c0.read_u64(va(B)).unwrap(), 10);
    for i in [0, 1, 3, 4, 5] {
        assert_eq!(c0.read_u64(va(A + i * P)).unwrap(), 100 + i);
    }
    c0.idle();
    finish(sim, vec![c0], vec![p, c]);
}

/// `fork_replacing`: the child gets a new, empty area where the parent
/// has a guard area and written pages (a wiped range, as Linux's child of
/// a `MADV_WIPEONFORK` mapping with guard pages), reserving it anew; the
/// parent's pages there stay its own and writable; bad lists change
/// nothing.
#[test]
fn fork_replacing_gives_the_child_new_areas() {
    use aspace::backend::{AnonBackend, GuardBackend};
    use aspace::replace::Replacement;
    use aspace::{ForkRange, Inherit};
    const P: u64 = PAGE_SIZE;
    let (sim, p, mut c0) = eight_written_pages();
    let anon = || TryArc::into_backend(TryArc::new(AnonBackend));
    let guard = || TryArc::into_backend(TryArc::new(GuardBackend));
    let part = |a: u64, pages: u64, backend| Replacement {
        base: va(a),
        size: pages * P,
        flags: RW,
        attrs: AreaAttrs::empty(),
        backend,
    };
    c0.run(|| p.area_replace_many(&[part(A + 5 * P, 1, guard())]))
        .unwrap();
    let committed = sim.system().reserve().committed();
    let fresh = [part(A + 4 * P, 4, anon())];
    let c = c0
        .run(|| sim.system().fork_replacing(&p, &[], &fresh))
        .unwrap();
    let areas: Vec<_> = c
        .areas()
        .iter()
        .map(|a| (a.base.as_u64(), a.pages, a.backend))
        .collect();
    assert_eq!(areas, [(A, 4, "anon"), (A + 4 * P, 4, "anon")]);
    // The child's 4 copied pages and its 4 new ones.
    assert_eq!(sim.system().reserve().committed(), committed + 8);
    for i in 0..8 {
        assert_eq!(writable(&p, A + i * P), i >= 4 && i != 5, "page {i}");
    }
    cow_invariants(&p);
    cow_invariants(&c);
    c0.switch_to(&c).unwrap();
    for i in 0..4 {
        assert_eq!(c0.read_u64(va(A + i * P)).unwrap(), 100 + i);
    }
    for i in 4..8 {
        assert_eq!(c0.read_u64(va(A + i * P)).unwrap(), 0, "child page {i}");
    }
    c0.switch_to(&p).unwrap();
    assert_eq!(
        c0.read_u64(va(A + 5 * P)).unwrap_err().reason,
        aspace::FaultReason::Guard
    );
    assert_eq!(c0.read_u64(va(A + 6 * P)).unwrap(), 106);
    // Bad lists change nothing: a new area over a range left out, one
    // growing down (guard pages), one outside the user window.
    let n = (sim.frames_in_use(), sim.system().reserve().committed());
    let over = [ForkRange {
        base: va(A + 6 * P),
        size: P,
        inherit: Inherit::Nothing,
    }];
    assert_eq!(
        c0.run(|| sim.system().fork_replacing(&p, &over, &fresh))
            .err(),
        Some(Error::InvalidArgument)
    );
    let mut down = part(A + 4 * P, 4, anon());
    down.flags |= AreaFlags::GROWS_DOWN;
    assert!(c0
        .run(|| sim.system().fork_replacing(&p, &[], &[down]))
        .is_err());
    let high = [part(u64::MAX - 16 * P + 1, 1, anon())];
    assert!(c0
        .run(|| sim.system().fork_replacing(&p, &[], &high))
        .is_err());
    assert_eq!((sim.frames_in_use(), sim.system().reserve().committed()), n);
    c0.idle();
    finish(sim, vec![c0], vec![p, c]);
}

#[test]
fn shared_areas_stay_shared_and_a_share_copies_first() {
    let sim = sim(2, 4 << 20);
    let p = sim.system().create().unwrap();
    let other = sim.system().create().unwrap();
    let mut c0 = sim.cpu(0);
    c0.switch_to(&p).unwrap();
    p.area_create(va(A), 2 * PAGE_SIZE, RW).unwrap();
    p.area_create(va(B), 2 * PAGE_SIZE, RW).unwrap();
    c0.write_u64(va(A), 1).unwrap();
    c0.write_u64(va(B), 2).unwrap();
    c0.run(|| p.area_share(va(A), 2 * PAGE_SIZE, &other, va(A), RW))
        .unwrap();
    let c = c0.run(|| sim.system().fork(&p)).unwrap();
    let info: AreaInfo = c.area(va(A)).unwrap();
    assert!(info.shared);
    assert_eq!(p.share_info(va(A)).unwrap().refs(), 3);
    // A write in the child's shared area is seen by the parent.
    c0.switch_to(&c).unwrap();
    c0.write_u64(va(A + 8), 5).unwrap();
    assert_eq!(c0.read_u64(va(A)).unwrap(), 1);
    c0.switch_to(&p).unwrap();
    assert_eq!(c0.read_u64(va(A + 8)).unwrap(), 5);
    // Sharing the copy-on-write area B copies its page first.
    let old = frame_of(&p, B);
    let n = sim.frames_in_use();
    c0.run(|| p.area_share(va(B), 2 * PAGE_SIZE, &other, va(B), RW))
        .unwrap();
    assert!(p.cow_pages(va(B)).unwrap().is_empty());
    assert_eq!(
        sim.system().stats().cow_copies,
        1,
        "the share copied B's page"
    );
    assert_ne!(frame_of(&p, B), old);
    assert_eq!(refcount(&sim, old), 1, "the child's only");
    assert!(sim.frames_in_use() > n, "one copy");
    c0.switch_to(&other).unwrap();
    c0.write_u64(va(B), 8).unwrap();
    c0.switch_to(&p).unwrap();
    assert_eq!(c0.read_u64(va(B)).unwrap(), 8);
    c0.switch_to(&c).unwrap();
    assert_eq!(c0.read_u64(va(B)).unwrap(), 2);
    for s in [&p, &c, &other] {
        cow_invariants(s);
        no_stale(&sim, s);
    }
    c0.idle();
    finish(sim, vec![c0], vec![p, c, other]);
}

#[test]
fn elf_segments_are_copy_on_write_and_the_kernel_space_is_refused() {
    let sim = sim(2, 4 << 20);
    let mut bytes = vec![0u8; 2 * PAGE_SIZE as usize];
    bytes[..5].copy_from_slice(b"Hello");
    bytes[PAGE_SIZE as usize..][..5].copy_from_slice(b"World");
    let image = ElfImage::load(sim.system().machine(), &bytes).unwrap();
    let p = sim.system().create().unwrap();
    let seg = |flags| Segment {
        vaddr: A,
        memsz: 2 * PAGE_SIZE,
        filesz: 2 * PAGE_SIZE,
        offset: 0,
        flags,
    };
    let backend = TryArc::try_backend(ElfBackend::new(image.clone(), seg(RW))).unwrap();
    p.area_create_with(va(A), 2 * PAGE_SIZE, RW, AreaAttrs::empty(), backend)
        .unwrap();
    let mut c0 = sim.cpu(0);
    c0.switch_to(&p).unwrap();
    assert_eq!(c0.read_u64(va(A)).unwrap() & 0xff, u64::from(b'H'));
    let c = c0.run(|| sim.system().fork(&p)).unwrap();
    c0.write_u64(va(A), 0x2a).unwrap();
    c0.switch_to(&c).unwrap();
    assert_eq!(c0.read_u64(va(A)).unwrap() & 0xff, u64::from(b'H'));
    assert_eq!(
        c0.read_u64(va(A + PAGE_SIZE)).unwrap() & 0xff,
        u64::from(b'W')
    );
    assert_eq!(
        c0.run(|| sim.system().fork(sim.system().kernel())).err(),
        Some(Error::InvalidArgument)
    );
    c0.idle();
    drop(c0);
    drop(p);
    drop(c);
    ElfImage::release(image, sim.system().machine()).unwrap();
    assert_eq!(sim.frames_in_use(), baseline());
    assert_eq!(sim.system().reserve().committed(), 0);
}

#[test]
fn fork_past_the_commit_limit_is_refused() {
    // 4 MiB: a commit limit of about a thousand pages.
    let sim = sim(1, 4 << 20);
    let p = sim.system().create().unwrap();
    p.area_create(va(A), 600 * PAGE_SIZE, RW).unwrap();
    let mut c0 = sim.cpu(0);
    c0.switch_to(&p).unwrap();
    c0.write_u64(va(A), 1).unwrap();
    let (n, committed) = (sim.frames_in_use(), sim.system().reserve().committed());
    assert_eq!(
        c0.run(|| sim.system().fork(&p)).err(),
        Some(Error::NoMemory)
    );
    assert_eq!(sim.frames_in_use(), n);
    assert_eq!(sim.system().reserve().committed(), committed);
    assert!(writable(&p, A));
    assert!(p.cow_pages(va(A)).unwrap().is_empty());
    c0.idle();
    finish(sim, vec![c0], vec![p]);
}

#[test]
fn fork_while_another_cpu_writes_leaves_it_no_writable_entry() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
    use std::time::{Duration, Instant};
    let sim = sim(3, 8 << 20);
    let p = sim.system().create().unwrap();
    p.area_create(va(A), 8 * PAGE_SIZE, RW).unwrap();
    let (c0, mut c1, mut c2) = (sim.cpu(0), sim.cpu(1), sim.cpu(2));
    c1.switch_to(&p).unwrap();
    for i in 0..8 {
        c1.write_u64(va(A + i * PAGE_SIZE), 1).unwrap();
    }
    let stop = AtomicBool::new(false);
    let progress = AtomicU64::new(0);
    // Waits until the writer made `n` more stores.
    let wait_for = |n: u64| {
        let target = progress.load(Relaxed) + n;
        let t0 = Instant::now();
        while progress.load(Relaxed) < target {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "the writer is stuck"
            );
            std::thread::yield_now();
        }
    };
    let writes = std::thread::scope(|s| {
        let (p, stop, progress) = (&p, &stop, &progress);
        let writer = s.spawn(move || {
            // CPU 1 keeps storing into every page of the parent, through
            // its TLB, while CPU 0 forks.
            let mut v = 1;
            while !stop.load(Relaxed) {
                for i in 0..8 {
                    v += 1;
                    c1.write_u64(va(A + i * PAGE_SIZE), v).unwrap();
                    progress.fetch_add(1, Relaxed);
                }
            }
            c1.idle();
            v
        });
        let _stop = scopeguard(stop);
        for _ in 0..16 {
            wait_for(1);
            let c = c0.run(|| sim.system().fork(p)).unwrap();
            c2.switch_to(&c).unwrap();
            let snap: Vec<u64> = (0..8)
                .map(|i| c2.read_u64(va(A + i * PAGE_SIZE)).unwrap())
                .collect();
            // The parent goes on writing every page; the child's pages
            // never change.
            wait_for(24);
            for (i, &v) in snap.iter().enumerate() {
                let now = c2.read_u64(va(A + i as u64 * PAGE_SIZE)).unwrap();
                assert_eq!(now, v, "page {i} of the child changed after the fork");
            }
            cow_invariants(&c);
            c2.idle();
            drop(c);
        }
        drop(_stop);
        writer.join().unwrap()
    });
    assert!(writes > 16 * 24);
    drop((c0, c2));
    drop(p);
    assert_eq!(sim.hardware().stats().stale_accesses, 0);
    assert_eq!(sim.frames_in_use(), baseline());
}

/// Sets `flag` when dropped (also when the test fails), so a worker
/// thread stops.
fn scopeguard(flag: &std::sync::atomic::AtomicBool) -> impl Drop + '_ {
    struct Set<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for Set<'_> {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    Set(flag)
}

// ---------------------------------------------------------------------------
// Failure injection.
// ---------------------------------------------------------------------------

/// Every page of a space's areas and what it maps to.
type PageMap = Vec<(u64, Option<(Frame, PageFlags)>)>;

/// What can be observed of the spaces and the machine.
#[derive(Debug, PartialEq)]
struct State {
    areas: Vec<Vec<AreaInfo>>,
    pages: Vec<PageMap>,
    cow: Vec<Vec<u64>>,
    frames_in_use: u64,
    refcounts: Vec<u32>,
    tlbs: Vec<Vec<TlbEntry>>,
    committed: u64,
}

fn state(sim: &Sim, spaces: &[&SpaceHandle]) -> State {
    let hw = sim.hardware();
    let mut s = State {
        areas: Vec::new(),
        pages: Vec::new(),
        cow: Vec::new(),
        frames_in_use: sim.frames_in_use(),
        refcounts: (0..hw.memory().frames())
            .map(|n| hw.frames().refcount(Frame::from_number(n)))
            .collect(),
        tlbs: (0..hw.cpu_count()).map(|c| hw.tlb_entries(c)).collect(),
        committed: sim.system().reserve().committed(),
    };
    for sp in spaces {
        let areas = sp.areas();
        let mut pages = Vec::new();
        let mut cow = Vec::new();
        for a in &areas {
            for i in 0..a.pages {
                let p = Page::from_number(a.base.page().number() + i);
                pages.push((p.number(), sp.translate(p)));
            }
            cow.extend(
                sp.cow_pages(a.base)
                    .unwrap()
                    .iter_pages()
                    .map(|p| p.number()),
            );
        }
        s.areas.push(areas);
        s.pages.push(pages);
        s.cow.push(cow);
    }
    s
}

/// `s` without any TLB entry of `page`.
fn without_tlb_page(mut s: State, page: Page) -> State {
    for t in &mut s.tlbs {
        t.retain(|e| e.page != page);
    }
    s
}

/// A parent running on CPU 0 with resident pages in three areas far apart
/// (so the child's page table needs several tables), one of them shared
/// with a second space, and a child forked from it.
fn world() -> (Sim, Cpu, SpaceHandle, SpaceHandle) {
    let sim = sim(2, 4 << 20);
    let p = sim.system().create().unwrap();
    let other = sim.system().create().unwrap();
    let mut c0 = sim.cpu(0);
    c0.switch_to(&p).unwrap();
    let far = common::arch().layout().user_end - (64 << 30);
    for (i, base) in [A, B, far].into_iter().enumerate() {
        p.area_create(va(base), 2 * PAGE_SIZE, RW).unwrap();
        c0.write_u64(va(base), 10 + i as u64).unwrap();
    }
    c0.run(|| p.area_share(va(B), 2 * PAGE_SIZE, &other, va(B), RW))
        .unwrap();
    (sim, c0, p, other)
}

#[test]
fn fork_refused_at_any_frame_allocation_changes_nothing() {
    fork_refused_at_any_frame_allocation(&[], 3);
    // With A's second page left out (a hole: A cut) and the far area
    // given empty.
    let far = common::arch().layout().user_end - (64 << 30);
    let ranges = [
        aspace::ForkRange {
            base: va(A + PAGE_SIZE),
            size: PAGE_SIZE,
            inherit: aspace::Inherit::Nothing,
        },
        aspace::ForkRange {
            base: va(far),
            size: 2 * PAGE_SIZE,
            inherit: aspace::Inherit::Empty,
        },
    ];
    fork_refused_at_any_frame_allocation(&ranges, 3);
}

/// A fork except `ranges` refused at the n-th frame allocation for every n
/// until it succeeds: nothing changed each time, no frame left; the child
/// has `areas` areas.
fn fork_refused_at_any_frame_allocation(ranges: &[aspace::ForkRange], areas: usize) {
    let base = baseline();
    for n in 0..64 {
        let (sim, c0, p, other) = world();
        let before = state(&sim, &[&p, &other]);
        sim.hardware().frames().fail_after(Some(n));
        let r = c0.run(|| sim.system().fork_except(&p, ranges));
        sim.hardware().frames().fail_after(None);
        match r {
            Ok(child) => {
                assert!(n >= 2, "a fork needs tables for its areas");
                assert_eq!(child.areas().len(), areas);
                drop(child);
                drop(c0);
                drop((p, other));
                assert_eq!(sim.frames_in_use(), base);
                return;
            }
            Err(e) => {
                assert_eq!(e, Error::NoMemory);
                let after = state(&sim, &[&p, &other]);
                assert!(
                    after == before,
                    "fork refused at allocation {n} changed the state:\nbefore {before:#?}\nafter {after:#?}"
                );
                assert!(p.cow_pages(va(A)).unwrap().is_empty());
                drop(c0);
                drop((p, other));
                assert_eq!(sim.frames_in_use(), base, "refused at {n}: frames left");
                assert_eq!(sim.system().reserve().committed(), 0);
            }
        }
    }
    panic!("fork still refused after 64 allocations");
}

#[test]
fn copy_on_write_fault_refused_changes_nothing() {
    let (sim, mut c0, p, other) = world();
    let c = c0.run(|| sim.system().fork(&p)).unwrap();
    let before = state(&sim, &[&p, &other, &c]);
    sim.hardware().frames().fail_after(Some(0));
    let r = c0.write_u64(va(A), 77);
    sim.hardware().frames().fail_after(None);
    assert!(r.is_err(), "no frame to copy into");
    assert_eq!(state(&sim, &[&p, &other, &c]), before);
    // With one frame it works, and takes exactly that one.
    sim.hardware().frames().fail_after(Some(1));
    c0.write_u64(va(A), 77).unwrap();
    assert_eq!(sim.hardware().frames().allocations_left(), Some(0));
    sim.hardware().frames().fail_after(None);
    assert_eq!(c0.read_u64(va(A)).unwrap(), 77);
    // A share of a copy-on-write area refused for want of frames changes
    // nothing either.
    let far = common::arch().layout().user_end - (64 << 30);
    let before = state(&sim, &[&p, &other, &c]);
    let n0 = sim.frames_in_use();
    sim.hardware().frames().fail_after(Some(0));
    let r = c0.run(|| p.area_share(va(far), 2 * PAGE_SIZE, &other, va(far), RW));
    sim.hardware().frames().fail_after(None);
    assert_eq!(r, Err(Error::NoMemory));
    assert_eq!(sim.frames_in_use(), n0);
    assert_eq!(state(&sim, &[&p, &other, &c]).pages, before.pages);
    assert_eq!(state(&sim, &[&p, &other, &c]).cow, before.cow);
    c0.idle();
    finish(sim, vec![c0], vec![p, other, c]);
}

// ---------------------------------------------------------------------------
// A seeded model: forks, writes and range operations in several spaces,
// every page's word compared with a plain map per space.
// ---------------------------------------------------------------------------

/// Pages of the region every space works in.
const REGION: u64 = 24;

/// Per space: page index to (writable, word) for the pages in an area.
type Model = BTreeMap<u64, (bool, u64)>;

struct ModelWorld {
    sim: Sim,
    cpus: Vec<Cpu>,
    spaces: Vec<SpaceHandle>,
    models: Vec<Model>,
    next: u64,
    forks: usize,
}

fn addr(i: u64) -> VirtAddr {
    va(A + i * PAGE_SIZE)
}

impl ModelWorld {
    fn cpu_for(&mut self, sp: usize) -> &mut Cpu {
        let c = sp % self.cpus.len();
        let space = self.spaces[sp].clone();
        let cpu = &mut self.cpus[c];
        if !cpu.current().is_some_and(|s| TryArc::ptr_eq(s, &space)) {
            cpu.switch_to(&space).unwrap();
        }
        cpu
    }

    fn covered(&self, sp: usize, s: u64, e: u64) -> bool {
        (s..e).all(|i| self.models[sp].contains_key(&i))
    }

    fn step(&mut self, rng: &mut common::XorShift) -> String {
        let sp = rng.below(self.spaces.len() as u64) as usize;
        let s = rng.below(REGION);
        let e = (s + 1 + rng.below(6)).min(REGION);
        match rng.below(12) {
            0..=3 => {
                self.next += 1;
                let v = self.next;
                let expect = self.models[sp].get(&s).map(|&(w, _)| w);
                let r = self.cpu_for(sp).write_u64(addr(s), v);
                match expect {
                    Some(true) => {
                        r.unwrap();
                        self.models[sp].insert(s, (true, v));
                    }
                    _ => assert!(r.is_err(), "write to {s} in {sp} allowed"),
                }
                format!("write {sp} {s} = {v}")
            }
            4 => {
                if self.spaces.len() < 4 {
                    let cpu = &self.cpus[0];
                    let parent = self.spaces[sp].clone();
                    let child = cpu.run(|| self.sim.system().fork(&parent)).unwrap();
                    self.spaces.push(child);
                    self.models.push(self.models[sp].clone());
                    self.forks += 1;
                    format!("fork {sp}")
                } else {
                    let gone = self.spaces.remove(sp);
                    for c in &mut self.cpus {
                        if c.current().is_some_and(|s| TryArc::ptr_eq(s, &gone)) {
                            c.idle();
                        }
                    }
                    drop(gone);
                    self.models.remove(sp);
                    format!("drop {sp}")
                }
            }
            5 => {
                let write = rng.chance(50);
                let flags = if write { RW } else { AreaFlags::READ };
                let space = self.spaces[sp].clone();
                let r = self
                    .cpu_for(sp)
                    .run(|| space.protect_range(addr(s), (e - s) * PAGE_SIZE, flags));
                if self.covered(sp, s, e) {
                    r.unwrap();
                    for i in s..e {
                        self.models[sp].get_mut(&i).unwrap().0 = write;
                    }
                } else {
                    assert_eq!(r, Err(Error::NotFound));
                }
                format!("protect {sp} {s}..{e} {write}")
            }
            6 => {
                let space = self.spaces[sp].clone();
                self.cpu_for(sp)
                    .run(|| space.unmap_range(addr(s), (e - s) * PAGE_SIZE))
                    .unwrap();
                for i in s..e {
                    self.models[sp].remove(&i);
                }
                format!("unmap {sp} {s}..{e}")
            }
            7 => {
                let space = self.spaces[sp].clone();
                let r = self
                    .cpu_for(sp)
                    .run(|| space.discard_range(addr(s), (e - s) * PAGE_SIZE));
                if self.covered(sp, s, e) {
                    r.unwrap();
                    for i in s..e {
                        self.models[sp].get_mut(&i).unwrap().1 = 0;
                    }
                } else {
                    assert_eq!(r, Err(Error::NotFound));
                }
                format!("discard {sp} {s}..{e}")
            }
            8 => {
                let space = self.spaces[sp].clone();
                let free = (s..e).all(|i| !self.models[sp].contains_key(&i));
                let r = self
                    .cpu_for(sp)
                    .run(|| space.area_create(addr(s), (e - s) * PAGE_SIZE, RW));
                if free {
                    r.unwrap();
                    for i in s..e {
                        self.models[sp].insert(i, (true, 0));
                    }
                } else {
                    assert!(r.is_err());
                }
                format!("create {sp} {s}..{e}")
            }
            9 => {
                let space = self.spaces[sp].clone();
                let r = self.cpu_for(sp).run(|| space.area_split(addr(s)));
                assert_eq!(r.is_ok(), self.models[sp].contains_key(&s));
                format!("split {sp} {s}")
            }
            10 => {
                let space = self.spaces[sp].clone();
                let r = self.cpu_for(sp).run(|| space.area_merge(addr(s)));
                assert_eq!(r.is_ok(), self.models[sp].contains_key(&s));
                format!("merge {sp} {s}")
            }
            _ => {
                // Move one page within its area to a free page, if both
                // are there (`move_range` needs the old range in one area).
                let to = rng.below(REGION);
                let space = self.spaces[sp].clone();
                let ok_src = self.models[sp].contains_key(&s);
                let free_dst = !self.models[sp].contains_key(&to);
                if ok_src && free_dst {
                    self.cpu_for(sp)
                        .run(|| space.move_range(addr(s), PAGE_SIZE, addr(to), PAGE_SIZE))
                        .unwrap();
                    let v = self.models[sp].remove(&s).unwrap();
                    self.models[sp].insert(to, v);
                }
                format!("move {sp} {s} -> {to}")
            }
        }
    }

    fn check(&mut self) {
        for sp in 0..self.spaces.len() {
            for i in 0..REGION {
                let expect = self.models[sp].get(&i).map(|&(_, v)| v);
                let r = self.cpu_for(sp).read_u64(addr(i));
                match expect {
                    Some(v) => assert_eq!(r.unwrap(), v, "space {sp} page {i}"),
                    None => assert!(r.is_err(), "space {sp} page {i} readable"),
                }
            }
            cow_invariants(&self.spaces[sp]);
            no_stale(&self.sim, &self.spaces[sp]);
        }
    }
}

fn run_model(seed: u64, steps: usize) {
    let sim = sim(2, 8 << 20);
    let cpus = vec![sim.cpu(0), sim.cpu(1)];
    let first = sim.system().create().unwrap();
    first.area_create(addr(0), REGION * PAGE_SIZE, RW).unwrap();
    let mut w = ModelWorld {
        sim,
        cpus,
        spaces: vec![first],
        models: vec![(0..REGION).map(|i| (i, (true, 0))).collect()],
        next: 0,
        forks: 0,
    };
    let mut rng = common::XorShift::new(seed);
    let mut log = Vec::new();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for step in 0..steps {
            log.push(w.step(&mut rng));
            if step % 8 == 7 {
                w.check();
            }
        }
        w.check();
    }));
    if let Err(e) = outcome {
        let tail = log.len().saturating_sub(12);
        eprintln!(
            "fork model: seed {seed} failed at step {} (replay: ASPACE_SEED={seed}); last steps:\n  {}",
            log.len(),
            log[tail..].join("\n  ")
        );
        std::panic::resume_unwind(e);
    }
    assert!(w.forks >= 3, "seed {seed}: only {} forks", w.forks);
    let ModelWorld {
        sim, cpus, spaces, ..
    } = w;
    finish(sim, cpus, spaces);
}

#[test]
fn forks_and_range_operations_match_the_model() {
    let seeds: Vec<u64> = match std::env::var("ASPACE_SEED") {
        Ok(s) => vec![s.parse().expect("ASPACE_SEED is a number")],
        Err(_) => (1..=4).collect(),
    };
    for seed in seeds {
        run_model(seed, 300);
    }
}

other_archs!(
    forks_and_range_operations_match_the_model,
    fork_maps_the_same_frames_and_a_write_copies_one,
    fork_refused_at_any_frame_allocation_changes_nothing,
    copy_on_write_pages_through_range_operations,
    fork_while_another_cpu_writes_leaves_it_no_writable_entry
);

// ---------------------------------------------------------------------------
// A backend that lends its frames (a file's cached pages in a private
// mapping): read-only until the first write copies them.
// ---------------------------------------------------------------------------

mod lending {
    use super::*;
    use aspace::backend::{AreaInfo as Info, Backend, BackendCaps};
    use aspace::{Access, FrameAllocator, PhysMemory};
    use aspace_sim::{FramePool, PhysMem};

    /// A "file" of cached frames: a read fault lends the file's frame, a
    /// write fault on a page not yet resident gets a copy at once.
    pub struct File {
        pub frames: Vec<Frame>,
    }

    impl Backend<PhysMem, FramePool> for File {
        fn name(&self) -> &'static str {
            "file"
        }

        fn page_fault(
            &self,
            memory: &PhysMem,
            frames: &FramePool,
            area: &Info,
            page: Page,
            access: Access,
        ) -> aspace::Result<Frame> {
            let f = self.frames[area.page_index(page) as usize];
            if access == Access::Write {
                let copy = frames.alloc().ok_or(Error::NoMemory)?;
                memory.copy_frame(copy, f);
                return Ok(copy);
            }
            frames.add_ref(f);
            Ok(f)
        }

        fn caps(&self) -> BackendCaps {
            BackendCaps::REFCOUNTED | BackendCaps::PRIVATE
        }

        fn lends(&self, area: &Info, page: Page, frame: Frame) -> bool {
            self.frames[area.page_index(page) as usize] == frame
        }
    }

    /// The same "file", but counting no references (as device memory):
    /// the mapping holds none of the lent frame.
    pub struct Uncounted {
        pub frames: Vec<Frame>,
    }

    impl Backend<PhysMem, FramePool> for Uncounted {
        fn name(&self) -> &'static str {
            "uncounted"
        }

        fn page_fault(
            &self,
            _memory: &PhysMem,
            _frames: &FramePool,
            area: &Info,
            page: Page,
            _access: Access,
        ) -> aspace::Result<Frame> {
            Ok(self.frames[area.page_index(page) as usize])
        }

        fn caps(&self) -> BackendCaps {
            BackendCaps::empty()
        }

        fn lends(&self, area: &Info, page: Page, frame: Frame) -> bool {
            self.frames[area.page_index(page) as usize] == frame
        }
    }
}

/// A backend that counts no references is not asked whether it lends
/// (the core could neither release a copy nor leave the lent frame's count
/// alone): its frame maps as it is, with the area's rights, and is never
/// taken over nor released.
#[test]
fn a_lender_counting_no_references_keeps_its_frame() {
    let sim = sim(1, 4 << 20);
    let base = baseline();
    let hw = sim.hardware();
    let f = aspace::FrameAllocator::alloc(hw.frames()).unwrap();
    aspace::PhysMemory::zero_frame(hw.memory(), f);
    aspace::PhysMemory::write(hw.memory(), f.start(), &77u64.to_le_bytes());
    let p = sim.system().create().unwrap();
    p.area_create_with(
        va(A),
        PAGE_SIZE,
        RW,
        AreaAttrs::empty(),
        TryArc::try_backend(lending::Uncounted { frames: vec![f] }).unwrap(),
    )
    .unwrap();
    let mut c0 = sim.cpu(0);
    c0.switch_to(&p).unwrap();
    assert_eq!(c0.read_u64(va(A)).unwrap(), 77);
    assert_eq!(frame_of(&p, A), f);
    assert!(writable(&p, A), "not lent: mapped with the area's rights");
    assert!(p.cow_pages(va(A)).unwrap().is_empty());
    let n = sim.frames_in_use();
    c0.write_u64(va(A + 8), 5).unwrap();
    assert_eq!(frame_of(&p, A), f);
    assert_eq!(sim.frames_in_use(), n);
    assert_eq!(
        refcount(&sim, f),
        1,
        "the backend's frame keeps its one reference"
    );
    let mut word = [0u8; 8];
    aspace::PhysMemory::read(
        hw.memory(),
        aspace::PhysAddr::new(f.start().as_u64() + 8),
        &mut word,
    );
    assert_eq!(u64::from_le_bytes(word), 5);
    cow_invariants(&p);
    c0.idle();
    drop(c0);
    drop(p);
    assert!(aspace::FrameAllocator::release(hw.frames(), f));
    assert_eq!(sim.frames_in_use(), base);
    assert_eq!(hw.stats().stale_accesses, 0);
}

#[test]
fn a_lent_frame_is_read_only_until_the_first_write_copies_it() {
    let sim = sim(2, 4 << 20);
    let base = baseline();
    let hw = sim.hardware();
    let file: Vec<Frame> = (0..3)
        .map(|i| {
            let f = aspace::FrameAllocator::alloc(hw.frames()).unwrap();
            aspace::PhysMemory::zero_frame(hw.memory(), f);
            aspace::PhysMemory::write(hw.memory(), f.start(), &(1000u64 + i).to_le_bytes());
            f
        })
        .collect();
    let backend = TryArc::try_backend(lending::File {
        frames: file.clone(),
    })
    .unwrap();
    let p = sim.system().create().unwrap();
    let q = sim.system().create().unwrap();
    for s in [&p, &q] {
        s.area_create_with(
            va(A),
            3 * PAGE_SIZE,
            RW,
            AreaAttrs::empty(),
            backend.clone(),
        )
        .unwrap();
    }
    let (mut c0, mut c1) = (sim.cpu(0), sim.cpu(1));
    c0.switch_to(&p).unwrap();
    c1.switch_to(&q).unwrap();
    // A read maps the file's own frame, without write access.
    assert_eq!(c0.read_u64(va(A)).unwrap(), 1000);
    assert_eq!(frame_of(&p, A), file[0]);
    assert!(!writable(&p, A));
    assert_eq!(refcount(&sim, file[0]), 2);
    assert!(p.cow_pages(va(A)).unwrap().contains(va(A).page()));
    cow_invariants(&p);
    // The first write copies exactly that page; the file keeps its bytes.
    let n = sim.frames_in_use();
    c0.write_u64(va(A + 8), 7).unwrap();
    assert_eq!(sim.frames_in_use(), n + 1);
    assert_eq!(refcount(&sim, file[0]), 1);
    assert_eq!(c0.read_u64(va(A)).unwrap(), 1000);
    assert_eq!(c1.read_u64(va(A + 8)).unwrap(), 0, "the file is untouched");
    assert_eq!(c1.read_u64(va(A)).unwrap(), 1000);
    // A first access that writes gets the backend's copy at once.
    c0.write_u64(va(A + PAGE_SIZE + 8), 9).unwrap();
    assert!(writable(&p, A + PAGE_SIZE));
    assert_eq!(c0.read_u64(va(A + PAGE_SIZE)).unwrap(), 1001);
    // Refused for want of a frame, the copy changes nothing.
    assert_eq!(c0.read_u64(va(A + 2 * PAGE_SIZE)).unwrap(), 1002);
    let before = state(&sim, &[&p, &q]);
    hw.frames().fail_after(Some(0));
    let r = c0.write_u64(va(A + 2 * PAGE_SIZE), 1);
    hw.frames().fail_after(None);
    assert!(r.is_err());
    // The faulting CPU drops its read-only entry of the page (as a
    // processor does on a protection fault); nothing else changes.
    let page = va(A + 2 * PAGE_SIZE).page();
    assert_eq!(
        without_tlb_page(state(&sim, &[&p, &q]), page),
        without_tlb_page(before, page)
    );
    // A fork keeps lent pages copy-on-write on both sides.
    let c = c0.run(|| sim.system().fork(&p)).unwrap();
    // The file's, the parent's and the child's references.
    assert_eq!(refcount(&sim, file[2]), 3);
    c0.write_u64(va(A + 2 * PAGE_SIZE), 5).unwrap();
    assert_eq!(refcount(&sim, file[2]), 2);
    c1.switch_to(&c).unwrap();
    assert_eq!(c1.read_u64(va(A + 2 * PAGE_SIZE)).unwrap(), 1002);
    assert_eq!(c1.read_u64(va(A + 8)).unwrap(), 7);
    cow_invariants(&p);
    cow_invariants(&c);
    no_stale(&sim, &p);
    c0.idle();
    c1.idle();
    drop((c0, c1));
    drop((p, q, c));
    for f in file {
        assert!(aspace::FrameAllocator::release(hw.frames(), f));
    }
    assert_eq!(sim.frames_in_use(), base);
    assert_eq!(hw.stats().stale_accesses, 0);
}

#[test]
fn a_pager_that_forked_lends_its_own_copy() {
    use aspace::backend::PagerIds;
    use aspace_sim::pager::{Reply, SimPager, FILE_BASE};
    let sim = sim(2, 4 << 20);
    let base = baseline();
    let forked = std::sync::Arc::new(std::sync::Mutex::new(None));
    let pager = {
        let (sim2, forked) = (sim.system().clone(), forked.clone());
        SimPager::spawn(
            &sim,
            move |space| {
                space.area_create(va(FILE_BASE), PAGE_SIZE, RW)?;
                space.copy_to_user(va(FILE_BASE), &77u64.to_le_bytes())?;
                // The pager forks: its page is copy-on-write now.
                *forked.lock().unwrap() = Some(sim2.fork(space)?);
                Ok(())
            },
            Box::new(|_, _| Reply::Page(va(FILE_BASE))),
        )
        .unwrap()
    };
    let child = forked.lock().unwrap().take().unwrap();
    assert!(!writable(pager.space(), FILE_BASE));
    let client = sim.system().create().unwrap();
    let ids = PagerIds {
        id1: 1,
        id2: 2,
        id3: 3,
    };
    client
        .area_create_paged(va(A), PAGE_SIZE, RW, pager.link(), pager.space(), ids)
        .unwrap();
    let mut c0 = sim.cpu(0);
    c0.switch_to(&client).unwrap();
    assert_eq!(c0.read_u64(va(A)).unwrap(), 77);
    // The pager's page was copied before it was lent: the client shares
    // the pager's frame, not the frame the pager's fork still maps.
    let lent = frame_of(&client, A);
    assert_eq!(frame_of(pager.space(), FILE_BASE), lent);
    assert_ne!(frame_of(&child, FILE_BASE), lent);
    assert!(pager.space().cow_pages(va(FILE_BASE)).unwrap().is_empty());
    c0.write_u64(va(A), 5).unwrap();
    let mut back = [0u8; 8];
    pager
        .space()
        .copy_from_user(va(FILE_BASE), &mut back)
        .unwrap();
    assert_eq!(
        u64::from_le_bytes(back),
        5,
        "the pager sees the client's store"
    );
    child.copy_from_user(va(FILE_BASE), &mut back).unwrap();
    assert_eq!(u64::from_le_bytes(back), 77, "its fork does not");
    c0.idle();
    drop(c0);
    drop((client, child));
    drop(pager);
    assert_eq!(sim.frames_in_use(), base);
}

/// Fresh zeroed frames, counted, but not private: a fork maps such an
/// area anew in the child.
struct NotPrivate;

impl aspace::backend::Backend<aspace_sim::PhysMem, aspace_sim::FramePool> for NotPrivate {
    fn name(&self) -> &'static str {
        "not-private"
    }

    fn page_fault(
        &self,
        memory: &aspace_sim::PhysMem,
        frames: &aspace_sim::FramePool,
        _area: &AreaInfo,
        _page: Page,
        _access: aspace::Access,
    ) -> aspace::Result<Frame> {
        let f = aspace::FrameAllocator::alloc(frames).ok_or(Error::NoMemory)?;
        aspace::PhysMemory::zero_frame(memory, f);
        Ok(f)
    }

    fn caps(&self) -> aspace::backend::BackendCaps {
        aspace::backend::BackendCaps::REFCOUNTED
    }
}

#[test]
fn device_and_other_areas_are_mapped_anew_by_the_child() {
    use aspace::backend::PhysBackend;
    let sim = sim(1, 4 << 20);
    let hw = sim.hardware();
    let device = aspace::FrameAllocator::alloc(hw.frames()).unwrap();
    aspace::PhysMemory::write(hw.memory(), device.start(), &0xd0u64.to_le_bytes());
    let p = sim.system().create().unwrap();
    let phys = TryArc::try_backend(PhysBackend::new(device, 1)).unwrap();
    p.area_create_with(va(A), PAGE_SIZE, RW, AreaAttrs::empty(), phys)
        .unwrap();
    let late = RW | AreaFlags::LATE_RESERVE;
    p.area_create_with(
        va(B),
        4 * PAGE_SIZE,
        late,
        AreaAttrs::empty(),
        TryArc::try_backend(NotPrivate).unwrap(),
    )
    .unwrap();
    let mut c0 = sim.cpu(0);
    c0.switch_to(&p).unwrap();
    c0.write_u64(va(A + 8), 1).unwrap();
    c0.write_u64(va(B), 2).unwrap();
    c0.write_u64(va(B + PAGE_SIZE), 3).unwrap();
    let committed = sim.system().reserve().committed();
    assert_eq!(committed, 2, "two late-reserved pages");
    let c = c0.run(|| sim.system().fork(&p)).unwrap();
    // Nothing mapped in the child, nothing reserved for it yet.
    assert_eq!(c.resident_pages(), 0);
    assert_eq!(sim.system().reserve().committed(), committed);
    assert!(
        writable(&p, A) && writable(&p, B),
        "the parent keeps its rights"
    );
    c0.switch_to(&c).unwrap();
    // The device is the same device; the other area starts afresh.
    assert_eq!(c0.read_u64(va(A)).unwrap(), 0xd0);
    assert_eq!(c0.read_u64(va(A + 8)).unwrap(), 1);
    assert_eq!(frame_of(&c, A), device);
    assert_eq!(c0.read_u64(va(B)).unwrap(), 0);
    assert_eq!(sim.system().reserve().committed(), committed + 1);
    assert_eq!(c.area(va(B)).unwrap().reserved, 1);
    c0.idle();
    drop(c0);
    drop((p, c));
    assert_eq!(sim.system().reserve().committed(), 0);
    assert!(aspace::FrameAllocator::release(hw.frames(), device));
    assert_eq!(sim.frames_in_use(), baseline());
}
