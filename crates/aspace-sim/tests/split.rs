//! Areas that split and merge, and the range operations built on them
//! (`unmap_range`, `protect_range`, `move_range`, `discard_range`): data
//! read back through the simulated MMU, frames and reservations counted,
//! TLBs checked for stale entries, and every operation refused at each
//! frame allocation in turn leaving the state as it was.

use aspace::TryArc;

use aspace::backend::elf::{ElfBackend, ElfImage, Segment};
use aspace::{
    AreaAttrs, AreaFlags, Cpus, Error, FaultReason, Page, PageFlags, VirtAddr, PAGE_SIZE,
};
use aspace_sim::{Cpu, Sim, SimConfig, Space, SpaceHandle};

mod common;

const RW: AreaFlags = AreaFlags::READ.union(AreaFlags::WRITE);
const R: AreaFlags = AreaFlags::READ;
const A: u64 = 0x40_0000;
const B: u64 = 0x80_0000;
const P: u64 = PAGE_SIZE;

fn va(a: u64) -> VirtAddr {
    VirtAddr::new(a)
}

fn sim(cpus: usize) -> Sim {
    Sim::new(SimConfig {
        arch: common::arch(),
        cpus,
        asids: 4,
        memory: 4 << 20,
        tlb_entries: 64,
    })
    .unwrap()
}

/// Every TLB entry tagged with `space`'s ASID on a CPU running it matches
/// what the page table maps now, with no more rights. A CPU that has left
/// the space may keep older entries: the core flushes the ASID there when
/// it comes back (the lazy flush, tested in `smp.rs`), so they can never
/// be used.
fn assert_no_stale(sim: &Sim, space: &Space) {
    let Some(asid) = space.asid() else { return };
    let hw = sim.hardware();
    for cpu in 0..hw.cpu_count() {
        if hw.loaded_asid(cpu) != asid {
            continue;
        }
        for e in hw.tlb_entries(cpu) {
            if e.asid != asid || e.global {
                continue;
            }
            let now = space.translate(e.page);
            let Some((frame, flags)) = now else {
                panic!("CPU {cpu}: TLB entry {e:?} for an unmapped page");
            };
            assert_eq!(
                frame, e.frame,
                "CPU {cpu}: TLB entry {e:?} names another frame"
            );
            assert!(
                !e.writable || flags.contains(PageFlags::WRITE),
                "CPU {cpu}: TLB entry {e:?} writable, page is not"
            );
        }
    }
    assert_eq!(hw.stats().stale_accesses, 0);
}

fn areas(s: &Space) -> Vec<(u64, u64, AreaFlags)> {
    s.areas()
        .iter()
        .map(|a| (a.base.as_u64(), a.pages, a.flags))
        .collect()
}

fn setup(cpus: usize) -> (Sim, SpaceHandle, Cpu) {
    let sim = sim(cpus);
    let s = sim.system().create().unwrap();
    let mut c = sim.cpu(0);
    c.switch_to(&s).unwrap();
    (sim, s, c)
}

#[test]
fn split_keeps_pages_and_translations() {
    let (sim, s, mut c) = setup(1);
    s.area_create(va(A), 8 * P, RW).unwrap();
    for i in 0..8 {
        c.write_u64(va(A + i * P), 1000 + i).unwrap();
    }
    let reserved = sim.system().reserve().committed();
    let frames = sim.frames_in_use();
    let before: Vec<_> = (0..8)
        .map(|i| s.translate(Page::from_number(A / P + i)))
        .collect();
    let faults = sim.system().stats().faults;
    let rounds = sim.system().stats().shootdown_rounds;
    assert_eq!(s.area_split(va(A + 3 * P + 1)), Err(Error::InvalidArgument));
    assert_eq!(s.area_split(va(B)), Err(Error::NotFound));
    c.run(|| s.area_split(va(A + 3 * P))).unwrap();
    c.run(|| s.area_split(va(A + 3 * P))).unwrap(); // a base: nothing to do
    assert_eq!(areas(&s), [(A, 3, RW), (A + 3 * P, 5, RW)]);
    let info = s.areas();
    assert_eq!((info[0].resident, info[1].resident), (3, 5));
    assert_eq!((info[0].reserved, info[1].reserved), (3, 5));
    assert_eq!((info[0].offset, info[1].offset), (0, 3));
    let after: Vec<_> = (0..8)
        .map(|i| s.translate(Page::from_number(A / P + i)))
        .collect();
    assert_eq!(before, after);
    assert_eq!(sim.system().reserve().committed(), reserved);
    assert_eq!(sim.frames_in_use(), frames);
    for i in 0..8 {
        assert_eq!(c.read_u64(va(A + i * P)).unwrap(), 1000 + i);
    }
    // No refault, no flush.
    assert_eq!(sim.system().stats().faults, faults);
    assert_eq!(sim.system().stats().shootdown_rounds, rounds);
    assert_no_stale(&sim, &s);
    // And back.
    assert!(c.run(|| s.area_merge(va(A))).unwrap());
    assert_eq!(areas(&s), [(A, 8, RW)]);
    let info = s.areas();
    assert_eq!(
        (info[0].resident, info[0].reserved, info[0].offset),
        (8, 8, 0)
    );
    assert!(!c.run(|| s.area_merge(va(A))).unwrap());
    drop(c);
    drop(s);
    assert_eq!(sim.system().reserve().committed(), 0);
}

#[test]
fn split_halves_are_areas_of_their_own() {
    let (sim, s, mut c) = setup(1);
    s.area_create(va(A), 4 * P, RW).unwrap();
    c.write_u64(va(A + 3 * P), 7).unwrap();
    c.run(|| s.area_split(va(A + 2 * P))).unwrap();
    // The lower half resizes without touching the upper one's pages.
    c.run(|| s.area_resize(va(A), P)).unwrap();
    assert_eq!(areas(&s), [(A, 1, RW), (A + 2 * P, 2, RW)]);
    c.run(|| s.area_change_flags(va(A + 2 * P), R)).unwrap();
    assert_eq!(c.read_u64(va(A + 3 * P)).unwrap(), 7);
    assert_eq!(
        c.write_u64(va(A + 3 * P), 8).unwrap_err().reason,
        FaultReason::Access
    );
    c.write_u64(va(A), 1).unwrap();
    c.run(|| s.area_destroy(va(A + 2 * P))).unwrap();
    assert_eq!(sim.system().reserve().committed(), 1);
    assert_no_stale(&sim, &s);
}

/// A file of `pages` pages whose page `i` starts with the text `page i`.
fn file(pages: u64) -> Vec<u8> {
    let mut f = vec![0u8; (pages * P) as usize];
    for i in 0..pages {
        let t = format!("page {i}");
        f[(i * P) as usize..][..t.len()].copy_from_slice(t.as_bytes());
    }
    f
}

fn read_text(c: &mut Cpu, a: u64) -> String {
    let mut buf = [0u8; 7];
    c.read(va(a), &mut buf).unwrap();
    String::from_utf8_lossy(&buf)
        .trim_end_matches('\0')
        .to_string()
}

#[test]
fn split_elf_area_reads_the_right_bytes() {
    let (sim, s, mut c) = setup(1);
    let image = ElfImage::load(sim.system().machine(), &file(6)).unwrap();
    for flags in [R, RW] {
        let base = if flags == R { A } else { B };
        let seg = Segment {
            vaddr: base,
            memsz: 5 * P,
            filesz: 5 * P,
            offset: P,
            flags,
        };
        s.area_create_with(
            va(base),
            5 * P,
            flags,
            aspace::AreaAttrs::empty(),
            TryArc::try_backend(ElfBackend::new(image.clone(), seg)).unwrap(),
        )
        .unwrap();
        // One page touched before the split, the rest after.
        assert_eq!(read_text(&mut c, base + P), "page 2");
        c.run(|| s.area_split(va(base + 2 * P))).unwrap();
        c.run(|| s.area_split(va(base + 4 * P))).unwrap();
        for i in 0..5 {
            assert_eq!(read_text(&mut c, base + i * P), format!("page {}", i + 1));
        }
        let info = s.area(va(base + 3 * P)).unwrap();
        assert_eq!((info.offset, info.pages), (2, 2));
        assert_eq!(info.page_index(Page::from_number(base / P + 3)), 3);
        // The parts of one ELF backend merge back, offsets contiguous.
        assert!(c.run(|| s.area_merge(va(base + 2 * P))).unwrap());
        assert_eq!(s.area(va(base)).unwrap().pages, 5);
    }
    let committed = sim.system().reserve().committed();
    // The writable segment copies every page: 5 reserved; the read-only one
    // maps image frames.
    assert_eq!(committed, 5);
    drop(c);
    drop(s);
    assert_eq!(sim.system().reserve().committed(), 0);
    ElfImage::release(image, sim.system().machine()).unwrap();
}

#[test]
fn split_shared_area_stays_shared() {
    let sim = sim(2);
    let s0 = sim.system().create().unwrap();
    let s1 = sim.system().create().unwrap();
    let mut c0 = sim.cpu(0);
    let mut c1 = sim.cpu(1);
    c0.switch_to(&s0).unwrap();
    c1.switch_to(&s1).unwrap();
    s0.area_create(va(A), 4 * P, RW).unwrap();
    c0.write_u64(va(A), 10).unwrap();
    s0.area_share(va(A), 4 * P, &s1, va(B), RW).unwrap();
    let share = s0.share_info(va(A)).unwrap();
    assert_eq!(share.refs(), 2);
    c0.run(|| s0.area_split(va(A + 2 * P))).unwrap();
    assert_eq!(share.refs(), 3);
    assert!(aspace::TryArc::ptr_eq(
        &share,
        &s0.share_info(va(A + 3 * P)).unwrap()
    ));
    // Page for page: a page first touched after the split, in either half.
    c0.write_u64(va(A + 3 * P), 33).unwrap();
    assert_eq!(c1.read_u64(va(B + 3 * P)).unwrap(), 33);
    c1.write_u64(va(B + 2 * P), 22).unwrap();
    assert_eq!(c0.read_u64(va(A + 2 * P)).unwrap(), 22);
    assert_eq!(c1.read_u64(va(B)).unwrap(), 10);
    // The group's reservation is counted once.
    assert_eq!(sim.system().reserve().committed(), 4);
    // A share destination splits too.
    c1.run(|| s1.area_split(va(B + P))).unwrap();
    assert_eq!(share.refs(), 4);
    assert!(c1.run(|| s1.area_merge(va(B))).unwrap());
    assert!(c0.run(|| s0.area_merge(va(A))).unwrap());
    assert_eq!(share.refs(), 2);
    c0.run(|| s0.area_destroy(va(A))).unwrap();
    assert_eq!(c1.read_u64(va(B + 3 * P)).unwrap(), 33);
    assert_eq!(sim.system().reserve().committed(), 4);
    drop(share);
    drop((c0, c1));
    drop((s0, s1));
    assert_eq!(sim.system().reserve().committed(), 0);
}

#[test]
fn split_grows_down_area() {
    let (sim, s, mut c) = setup(1);
    let top = 0x100_0000;
    s.area_create_grows_down(va(top - 4 * P), 4 * P, 8 * P, RW)
        .unwrap();
    c.run(|| s.area_split(va(top - 2 * P))).unwrap();
    let a = s.areas();
    assert!(a[0]
        .flags
        .contains(AreaFlags::GROWS_DOWN | AreaFlags::GUARD));
    assert!(!a[1].flags.intersects(AreaFlags::PLACEMENT));
    // The lower part grows, up to the limit of the whole (8 pages).
    for i in 5..=8 {
        c.write_u64(va(top - i * P), i).unwrap();
    }
    assert_eq!(
        c.write_u64(va(top - 9 * P), 9).unwrap_err().reason,
        FaultReason::Guard
    );
    assert!(c.run(|| s.area_merge(va(top - P))).unwrap());
    assert_eq!(areas(&s), [(top - 8 * P, 8, RW | AreaFlags::PLACEMENT)]);
    assert_no_stale(&sim, &s);
}

/// A change of rights cut out of the middle of a grows-down area: the
/// part cut out and the one above it lose the placement flags, as a split
/// leaves them, and the change back merges the three into the stack again.
#[test]
fn protect_inside_grows_down_area_and_back() {
    let (sim, s, mut c) = setup(1);
    let top = 0x100_0000;
    s.area_create_grows_down(va(top - 8 * P), 8 * P, 16 * P, RW)
        .unwrap();
    fill(&mut c, top - 8 * P, 8, 3);
    c.run(|| s.protect_range(va(top - 6 * P), 2 * P, R))
        .unwrap();
    assert_eq!(
        areas(&s),
        [
            (top - 8 * P, 2, RW | AreaFlags::PLACEMENT),
            (top - 6 * P, 2, R),
            (top - 4 * P, 4, RW),
        ]
    );
    c.run(|| s.protect_range(va(top - 6 * P), 2 * P, RW))
        .unwrap();
    assert_eq!(areas(&s), [(top - 8 * P, 8, RW | AreaFlags::PLACEMENT)]);
    for i in 0..8 {
        assert_eq!(c.read_u64(va(top - 8 * P + i * P)).unwrap(), 3000 + i);
    }
    // The stack still grows, page by page, to its limit and no further.
    for i in 9..=16 {
        c.write_u64(va(top - i * P), i).unwrap();
    }
    assert_eq!(
        c.write_u64(va(top - 17 * P), 17).unwrap_err().reason,
        FaultReason::Guard
    );
    assert_no_stale(&sim, &s);
}

#[test]
fn merge_refuses_incompatible_neighbours() {
    let (_sim, s, c) = setup(1);
    s.area_create(va(A), 2 * P, RW).unwrap();
    s.area_create(va(A + 2 * P), 2 * P, R).unwrap();
    assert!(!c.run(|| s.area_merge(va(A))).unwrap());
    // Two anonymous areas created apart merge: anonymous memory is one object.
    s.area_create(va(A + 4 * P), 2 * P, R).unwrap();
    assert!(c.run(|| s.area_merge(va(A + 4 * P))).unwrap());
    assert_eq!(areas(&s), [(A, 2, RW), (A + 2 * P, 4, R)]);
    assert_eq!(s.area_merge(va(B)), Err(Error::NotFound));
}

/// Writes `tag * 1000 + i` to page `i` of `[base, base + pages)`.
fn fill(c: &mut Cpu, base: u64, pages: u64, tag: u64) {
    for i in 0..pages {
        c.write_u64(va(base + i * P), tag * 1000 + i).unwrap();
    }
}

/// Three written areas of 4 pages at `A`, `A + 6P` and `A + 12P` (holes
/// between), and CPU 1 running `s` with some of their translations
/// cached (the ones the range tests below take away).
fn three_areas(sim: &Sim, s: &SpaceHandle, c: &mut Cpu) -> Cpu {
    let mut c1 = sim.cpu(1);
    c1.switch_to(s).unwrap();
    for (k, base) in [A, A + 6 * P, A + 12 * P].into_iter().enumerate() {
        s.area_create(va(base), 4 * P, RW).unwrap();
        fill(c, base, 4, k as u64 + 1);
    }
    for i in [2, 3, 6, 9, 12, 13] {
        c1.read_u64(va(A + i * P)).unwrap();
    }
    c1
}

#[test]
fn unmap_range_over_areas_parts_and_holes() {
    let (sim, s, mut c) = setup(2);
    let empty = sim.frames_in_use();
    let mut c1 = three_areas(&sim, &s, &mut c);
    let before = sim.system().stats();
    // From the middle of the first area, over a hole, the second area, a
    // hole, into the third.
    c.run(|| s.unmap_range(va(A + 2 * P), 12 * P)).unwrap();
    let d = sim.system().stats().since(&before);
    assert_eq!(d.shootdown_rounds, 1);
    assert_eq!(d.frame_refs_released, 2 + 4 + 2);
    assert_eq!(areas(&s), [(A, 2, RW), (A + 14 * P, 2, RW)]);
    assert_eq!(sim.system().reserve().committed(), 4);
    assert_no_stale(&sim, &s);
    assert_eq!(c1.read_u64(va(A + P)).unwrap(), 1001);
    assert_eq!(c1.read_u64(va(A + 15 * P)).unwrap(), 3003);
    for i in [2, 6, 9, 13] {
        assert_eq!(
            c1.read_u64(va(A + i * P)).unwrap_err().reason,
            FaultReason::NoArea
        );
    }
    // Nothing there at all: fine, nothing happens.
    c.run(|| s.unmap_range(va(B), 4 * P)).unwrap();
    assert_eq!(s.unmap_range(va(A + 1), P), Err(Error::InvalidArgument));
    assert_eq!(s.unmap_range(va(A), 0), Err(Error::InvalidArgument));
    c.run(|| s.unmap_range(va(A), 16 * P)).unwrap();
    assert!(s.areas().is_empty());
    assert_eq!(sim.system().reserve().committed(), 0);
    // Page tables stay until the space goes.
    assert_eq!(sim.frames_in_use(), empty + s.page_table_frames() - 1);
}

/// A backend of anonymous memory.
fn anon() -> aspace::BackendRef<aspace_sim::PhysMem, aspace_sim::FramePool> {
    TryArc::into_backend(TryArc::new(aspace::backend::AnonBackend))
}

#[test]
fn area_replace_takes_the_range_in_one_step() {
    let (sim, s, mut c) = setup(2);
    let mut c1 = three_areas(&sim, &s, &mut c);
    let before = sim.system().stats();
    // From the middle of the first area, over a hole, the second area, a
    // hole, into the third: 12 pages of new memory, reserved up front.
    let r = c.run(|| s.area_replace_with(va(A + 2 * P), 12 * P, R, AreaAttrs::empty(), anon()));
    assert_eq!(r, Ok(va(A + 2 * P)));
    let d = sim.system().stats().since(&before);
    assert_eq!(d.shootdown_rounds, 1);
    assert_eq!(d.frame_refs_released, 2 + 4 + 2);
    assert_eq!(
        areas(&s),
        [(A, 2, RW), (A + 2 * P, 12, R), (A + 14 * P, 2, RW)]
    );
    assert_eq!(sim.system().reserve().committed(), 2 + 12 + 2);
    assert_no_stale(&sim, &s);
    // Old data outside, zeros inside, the new rights.
    assert_eq!(c1.read_u64(va(A + P)).unwrap(), 1001);
    assert_eq!(c1.read_u64(va(A + 15 * P)).unwrap(), 3003);
    for i in [2, 6, 9, 13] {
        assert_eq!(c1.read_u64(va(A + i * P)).unwrap(), 0);
        assert_eq!(
            c1.write_u64(va(A + i * P), 1).unwrap_err().reason,
            FaultReason::Access
        );
    }
    // Refusals change nothing.
    let shown = areas(&s);
    let e = AreaAttrs::empty();
    assert_eq!(
        s.area_replace_with(va(A + 1), P, RW, e, anon()),
        Err(Error::InvalidArgument)
    );
    assert_eq!(
        s.area_replace_with(va(A), 0, RW, e, anon()),
        Err(Error::InvalidArgument)
    );
    assert_eq!(
        s.area_replace_with(va(A), P, RW | AreaFlags::EXEC, e, anon()),
        Err(Error::InvalidArgument)
    );
    assert_eq!(
        s.area_replace_with(va(0), P, RW, e, anon()),
        Err(Error::AddressNotAvailable)
    );
    assert_eq!(areas(&s), shown);
    // Replacing whole areas by as much memory hands their reservation
    // over: nothing more from the commit limit, even at the limit.
    let free = sim.system().reserve().available();
    let hog = c
        .run(|| s.area_create(va(A + 32 * P), free * P, RW))
        .unwrap();
    assert_eq!(sim.system().reserve().available(), 0);
    c.run(|| s.area_replace_with(hog, free * P, R, e, anon()))
        .unwrap();
    assert_eq!(sim.system().reserve().available(), 0);
    // So does the part of an area cut out (at both ends, or one), and a
    // larger area than what it replaces takes only the difference: at the
    // limit, that is refused, with nothing changed.
    let hog_at = hog.as_u64();
    c.run(|| s.area_replace_with(va(hog_at + 2 * P), 2 * P, RW, e, anon()))
        .unwrap();
    c.run(|| s.area_replace_with(va(hog_at), 3 * P, RW, e, anon()))
        .unwrap();
    assert_eq!(sim.system().reserve().available(), 0);
    let shown = areas(&s);
    assert_eq!(
        c.run(|| s.area_replace_with(va(hog_at + (free - 1) * P), 2 * P, RW, e, anon())),
        Err(Error::NoMemory)
    );
    assert_eq!(areas(&s), shown);
    assert_eq!(sim.system().reserve().available(), 0);
    c.run(|| s.unmap_range(va(A), 64 * P + free * P)).unwrap();
    assert_eq!(sim.system().reserve().committed(), 0);
}

fn guard() -> aspace::BackendRef<aspace_sim::PhysMem, aspace_sim::FramePool> {
    TryArc::into_backend(TryArc::new(aspace::backend::GuardBackend))
}

/// Stateless backends (zero-sized, all at one address, the same default
/// object id) merge only with their own type: guard pages that keep a
/// reservation never become guard pages that do not (the reservation
/// would be given back with the wrong area), while two areas of one
/// stateless type do merge.
#[test]
fn stateless_backends_of_different_types_never_merge() {
    use aspace::backend::{GuardBackend, ReservingGuardBackend};
    use aspace::BackendRef;
    let (_sim, s, c) = setup(1);
    let flags = AreaFlags::READ;
    let make = |b: BackendRef<_, _>| {
        c.run(|| s.area_create_with(va(A), 4 * P, flags, AreaAttrs::empty(), b))
    };
    // The upper half of an 8-page area (offset 4), the lower half gone.
    c.run(|| {
        s.area_create_with(
            va(A),
            8 * P,
            flags,
            AreaAttrs::empty(),
            BackendRef::stateless(GuardBackend),
        )
    })
    .unwrap();
    c.run(|| s.area_split(va(A + 4 * P))).unwrap();
    c.run(|| s.unmap_range(va(A), 4 * P)).unwrap();
    // Below it, offset 0: contiguous, the same name and object id.
    make(BackendRef::stateless(ReservingGuardBackend)).unwrap();
    assert_eq!(c.run(|| s.area_merge(va(A))), Ok(false));
    assert_eq!(s.area(va(A)).unwrap().size(), 4 * P);
    c.run(|| s.unmap_range(va(A), 4 * P)).unwrap();
    make(BackendRef::stateless(GuardBackend)).unwrap();
    assert_eq!(c.run(|| s.area_merge(va(A))), Ok(true));
    assert_eq!(s.area(va(A)).unwrap().size(), 8 * P);
}

fn part(
    base: u64,
    n: u64,
    flags: AreaFlags,
    backend: aspace::BackendRef<aspace_sim::PhysMem, aspace_sim::FramePool>,
) -> aspace::replace::Replacement<aspace_sim::SimMachine> {
    aspace::replace::Replacement {
        base: va(base),
        size: n * P,
        flags,
        attrs: AreaAttrs::empty(),
        backend,
    }
}

/// Several ranges replaced in one step (guard pages put in over parts of
/// areas and taken out again): one shootdown round, the pages inside gone
/// and their frames released, every access to a guard page a fault whatever
/// its rights, the data outside kept, reservations handed over (guard pages
/// reserve nothing, so they give theirs back, and taking them out reserves
/// again), and malformed or refused calls changing nothing.
#[test]
fn area_replace_many_puts_guard_pages_in_and_takes_them_out() {
    let (sim, s, mut c) = setup(2);
    let empty = sim.frames_in_use();
    let mut c1 = three_areas(&sim, &s, &mut c);
    let frames = sim.frames_in_use();
    assert_eq!(sim.system().reserve().committed(), 12);
    let before = sim.system().stats();
    // Two ranges in the first area, one across the hole into the second.
    let parts = [
        part(A + P, 1, RW, guard()),
        part(A + 3 * P, 1, RW, guard()),
        part(A + 5 * P, 2, R, guard()),
    ];
    c.run(|| s.area_replace_many(&parts)).unwrap();
    let d = sim.system().stats().since(&before);
    assert_eq!(d.shootdown_rounds, 1);
    assert_eq!(d.frame_refs_released, 3);
    assert_eq!(sim.frames_in_use(), frames - 3);
    assert_eq!(
        areas(&s),
        [
            (A, 1, RW),
            (A + P, 1, RW),
            (A + 2 * P, 1, RW),
            (A + 3 * P, 1, RW),
            (A + 5 * P, 2, R),
            (A + 7 * P, 3, RW),
            (A + 12 * P, 4, RW)
        ]
    );
    assert_eq!(s.area(va(A + 5 * P)).unwrap().backend, "guard");
    // Guard pages reserve nothing: three of the twelve pages given back.
    assert_eq!(sim.system().reserve().committed(), 9);
    assert_no_stale(&sim, &s);
    for g in [1, 3, 5, 6] {
        let e = c1.read_u64(va(A + g * P)).unwrap_err();
        assert_eq!(e.reason, aspace::FaultReason::Guard, "page {g} guarded");
        assert!(c1.write_u64(va(A + g * P), 1).is_err(), "page {g} guarded");
    }
    assert_eq!(c1.read_u64(va(A)).unwrap(), 1000);
    assert_eq!(c1.read_u64(va(A + 2 * P)).unwrap(), 1002);
    assert_eq!(c1.read_u64(va(A + 7 * P)).unwrap(), 2001);
    // Rights change on guard pages like any area's; they still fault.
    c.run(|| s.protect_range(va(A), 4 * P, R)).unwrap();
    assert!(c1.read_u64(va(A + 3 * P)).is_err());
    c.run(|| s.protect_range(va(A), 4 * P, RW)).unwrap();
    // Malformed parts: out of order, overlapping; nothing changes.
    let shown = areas(&s);
    let e = Err(Error::InvalidArgument);
    let twice = [part(A + 3 * P, 2, RW, anon()), part(A + P, 1, RW, anon())];
    assert_eq!(s.area_replace_many(&twice), e);
    let overlapping = [part(A, 2, RW, anon()), part(A + P, 1, RW, anon())];
    assert_eq!(s.area_replace_many(&overlapping), e);
    assert_eq!(s.area_replace_many(&[]), Ok(()));
    assert_eq!(areas(&s), shown);
    assert_eq!(sim.system().reserve().committed(), 9);
    // Taken out: anonymous memory again, zeros, reserved again.
    let back = [
        part(A + P, 1, RW, anon()),
        part(A + 3 * P, 1, RW, anon()),
        part(A + 5 * P, 1, RW, anon()),
    ];
    c.run(|| s.area_replace_many(&back)).unwrap();
    assert_eq!(sim.system().reserve().committed(), 12);
    assert_eq!(c1.read_u64(va(A + P)).unwrap(), 0);
    c1.write_u64(va(A + 5 * P), 9).unwrap();
    assert!(c1.read_u64(va(A + 6 * P)).is_err(), "page 6 still guarded");
    // At the commit limit, taking guard pages out is refused whole.
    let free = sim.system().reserve().available();
    let hog = c
        .run(|| s.area_create(va(A + 32 * P), free * P, RW))
        .unwrap();
    let shown = areas(&s);
    let last = [part(A + 6 * P, 1, RW, anon())];
    assert_eq!(c.run(|| s.area_replace_many(&last)), Err(Error::NoMemory));
    assert_eq!(areas(&s), shown);
    c.run(|| s.unmap_range(hog, free * P)).unwrap();
    c.run(|| s.unmap_range(va(A), 16 * P)).unwrap();
    assert_eq!(sim.system().reserve().committed(), 0);
    // Page tables stay until the space goes.
    assert_eq!(sim.frames_in_use(), empty + s.page_table_frames() - 1);
}

/// A 2-CPU machine with an 8-page area at `A` written by CPU 0 (page `i`
/// holds `1000 + i`), and CPU 1 running the space with page 3's
/// translation cached.
fn eight_written_pages() -> (Sim, SpaceHandle, Cpu, Cpu) {
    let (sim, s, mut c) = setup(2);
    let mut c1 = sim.cpu(1);
    c1.switch_to(&s).unwrap();
    s.area_create(va(A), 8 * P, RW).unwrap();
    fill(&mut c, A, 8, 1);
    c1.read_u64(va(A + 3 * P)).unwrap();
    (sim, s, c, c1)
}

/// A 2-CPU machine, CPU 1 running the space too, with three written areas:
/// `[A, A+4P)` read-write, `[A+4P, A+6P)` read-only, a hole of 2 pages,
/// `[A+8P, A+10P)` read-write (page `i` of the first two holds `1000 + i`,
/// of the last `2000 + i`).
fn three_areas_and_a_hole() -> (Sim, SpaceHandle, Cpu, Cpu) {
    let (sim, s, mut c) = setup(2);
    let mut c1 = sim.cpu(1);
    c1.switch_to(&s).unwrap();
    s.area_create(va(A), 4 * P, RW).unwrap();
    s.area_create(va(A + 4 * P), 2 * P, RW).unwrap();
    s.area_create(va(A + 8 * P), 2 * P, RW).unwrap();
    fill(&mut c, A, 6, 1);
    fill(&mut c, A + 8 * P, 2, 2);
    c.run(|| s.protect_range(va(A + 4 * P), 2 * P, R)).unwrap();
    (sim, s, c, c1)
}

/// `move_range` over several areas (Linux's `mremap` of a mapping the core
/// keeps as several areas, or of several mappings): every area and the
/// holes between them move by the same distance (the same frames, no
/// copy, one shootdown round), each keeping its rights; a growth goes to
/// the last area; a shrink of several without a new range replaced, a
/// growth of a range ending in a hole, or an area with guard pages after
/// the first, refused with nothing changed.
#[test]
fn move_range_moves_several_areas_and_the_holes_between() {
    let (sim, s, mut c, mut c1) = three_areas_and_a_hole();
    c1.read_u64(va(A + 5 * P)).unwrap();
    c1.read_u64(va(A + 9 * P)).unwrap();
    let frame = s.translate(Page::from_number(A / P + 9)).unwrap().0;
    let (frames, tables) = (sim.frames_in_use(), s.page_table_frames());
    let committed = sim.system().reserve().committed();
    let before = sim.system().stats();
    c.run(|| s.move_range(va(A + P), 9 * P, va(B), 9 * P))
        .unwrap();
    assert_eq!(sim.system().stats().since(&before).shootdown_rounds, 1);
    assert_eq!(
        areas(&s),
        [
            (A, 1, RW),
            (B, 3, RW),
            (B + 3 * P, 2, R),
            (B + 7 * P, 2, RW)
        ]
    );
    assert_eq!(s.translate(Page::from_number(B / P + 8)).unwrap().0, frame);
    let tables = s.page_table_frames() - tables;
    assert_eq!(sim.frames_in_use(), frames + tables, "no page copied");
    assert_eq!(sim.system().reserve().committed(), committed);
    assert_no_stale(&sim, &s);
    for i in 0..5 {
        assert_eq!(c1.read_u64(va(B + i * P)).unwrap(), 1001 + i);
    }
    assert_eq!(c1.read_u64(va(B + 8 * P)).unwrap(), 2001);
    assert!(c1.read_u64(va(B + 5 * P)).is_err(), "the hole moved too");
    assert!(c1.write_u64(va(B + 3 * P), 9).is_err(), "read-only still");
    assert!(c1.read_u64(va(A + 5 * P)).is_err(), "the old range is free");
    // A growth goes to the last area (pages fresh, reserved now).
    c.run(|| s.move_range(va(B + 3 * P), 6 * P, va(A + 32 * P), 9 * P))
        .unwrap();
    assert_eq!(
        areas(&s),
        [
            (A, 1, RW),
            (A + 32 * P, 2, R),
            (A + 36 * P, 5, RW),
            (B, 3, RW)
        ]
    );
    assert_eq!(sim.system().reserve().committed(), committed + 3);
    assert_eq!(c1.read_u64(va(A + 37 * P)).unwrap(), 2001);
    assert_eq!(c1.read_u64(va(A + 40 * P)).unwrap(), 0);
    // Refusals change nothing.
    let shown = areas(&s);
    let n = sim.frames_in_use();
    assert_eq!(
        c.run(|| s.move_range(va(B), 8 * P, va(A + 64 * P), 4 * P)),
        Err(Error::NotFound),
        "a hole at the old range's end"
    );
    assert_eq!(
        c.run(|| s.move_range(va(A + 32 * P), 9 * P, va(A + 64 * P), 4 * P)),
        Err(Error::NotSupported),
        "several areas shrink only over a new range"
    );
    assert_eq!(
        c.run(|| s.move_range(va(A + 32 * P), 10 * P, va(A + 64 * P), 12 * P)),
        Err(Error::NotFound),
        "a growth of a range ending in a hole"
    );
    let guarded = AreaFlags::GUARD | RW;
    c.run(|| s.area_create(va(A + 42 * P), 2 * P, guarded))
        .unwrap();
    assert_eq!(
        c.run(|| s.move_range(va(A + 36 * P), 8 * P, va(A + 64 * P), 8 * P)),
        Err(Error::NotSupported),
        "an area with a guard page after the first"
    );
    c.run(|| s.unmap_range(va(A + 42 * P), 2 * P)).unwrap();
    assert_eq!(areas(&s), shown);
    assert_eq!(sim.frames_in_use(), n);
    // Over a new range holding an area: replaced in the same step where
    // the areas land, kept under the hole between them.
    s.area_create(va(A + 80 * P), 16 * P, RW).unwrap();
    fill(&mut c, A + 80 * P, 16, 3);
    c1.read_u64(va(A + 85 * P)).unwrap();
    c.run(|| s.move_range_over(va(A + 32 * P), 9 * P, va(A + 84 * P), 9 * P))
        .unwrap();
    assert_eq!(c1.read_u64(va(A + 83 * P)).unwrap(), 3003);
    assert_eq!(c1.read_u64(va(A + 89 * P)).unwrap(), 2001);
    assert_eq!(c1.read_u64(va(A + 86 * P)).unwrap(), 3006, "under the hole");
    assert_eq!(c1.read_u64(va(A + 87 * P)).unwrap(), 3007, "under the hole");
    assert_eq!(c1.read_u64(va(A + 85 * P)).unwrap(), 1005, "an area landed");
    assert_eq!(c1.read_u64(va(A + 93 * P)).unwrap(), 3013);
    assert_no_stale(&sim, &s);
}

/// `move_range_leaving` over several areas (Linux 6.17+'s
/// `MREMAP_DONTUNMAP` over several mappings): the pages move, each part
/// leaves an empty area of its own with its rights (reserving again),
/// holes stay holes; a shared area among them refused with nothing
/// changed.
#[test]
fn move_range_leaving_over_several_areas_leaves_each_part_empty() {
    let (sim, s, mut c, _c1) = three_areas_and_a_hole();
    let committed = sim.system().reserve().committed();
    c.run(|| s.move_range_leaving(va(A + P), 9 * P, va(B), false))
        .unwrap();
    assert_eq!(
        areas(&s),
        [
            (A, 4, RW),
            (A + 4 * P, 2, R),
            (A + 8 * P, 2, RW),
            (B, 3, RW),
            (B + 3 * P, 2, R),
            (B + 7 * P, 2, RW)
        ]
    );
    assert_eq!(sim.system().reserve().committed(), committed + 7);
    assert_no_stale(&sim, &s);
    for i in 0..5 {
        assert_eq!(c.read_u64(va(B + i * P)).unwrap(), 1001 + i);
    }
    assert_eq!(c.read_u64(va(B + 8 * P)).unwrap(), 2001);
    assert_eq!(c.read_u64(va(A)).unwrap(), 1000, "the part not moved");
    for i in [1, 3, 5, 8, 9] {
        assert_eq!(c.read_u64(va(A + i * P)).unwrap(), 0, "left page {i}");
    }
    assert!(c.read_u64(va(A + 6 * P)).is_err(), "the hole stays one");
    assert!(c.write_u64(va(A + 4 * P), 1).is_err(), "left read-only");
    // A shared area among them: refused, nothing changed.
    let other = sim.system().create().unwrap();
    s.area_share(va(B + 7 * P), 2 * P, &other, va(B), RW)
        .unwrap();
    let shown = areas(&s);
    assert_eq!(
        c.run(|| s.move_range_leaving(va(B), 9 * P, va(A + 64 * P), false)),
        Err(Error::NotSupported)
    );
    assert_eq!(areas(&s), shown);
    assert_eq!(c.read_u64(va(B + 8 * P)).unwrap(), 2001);
}

/// `move_range_leaving` (Linux's `MREMAP_DONTUNMAP`): the resident pages
/// move (the same frames, no copy), the old range stays an area, empty
/// (zeros on a read), reserving its pages again; one shootdown round; no
/// stale TLB entry; at the commit limit, or for a shared area, refused with
/// nothing changed.
#[test]
fn move_range_leaving_moves_the_pages_and_keeps_the_range() {
    let (sim, s, c, mut c1) = eight_written_pages();
    let (frames, tables) = (sim.frames_in_use(), s.page_table_frames());
    let frame = s.translate(Page::from_number(A / P + 3)).unwrap().0;
    assert_eq!(sim.system().reserve().committed(), 8);
    let before = sim.system().stats();
    c.run(|| s.move_range_leaving(va(A + 2 * P), 3 * P, va(B), false))
        .unwrap();
    assert_eq!(sim.system().stats().since(&before).shootdown_rounds, 1);
    assert_eq!(s.translate(Page::from_number(B / P + 1)).unwrap().0, frame);
    let tables = s.page_table_frames() - tables;
    assert_eq!(sim.frames_in_use(), frames + tables, "no page copied");
    assert_eq!(sim.system().reserve().committed(), 8 + 3);
    assert_no_stale(&sim, &s);
    assert_eq!(c1.read_u64(va(B + P)).unwrap(), 1003);
    assert_eq!(
        c1.read_u64(va(A + 3 * P)).unwrap(),
        0,
        "the old range, empty"
    );
    assert_eq!(c1.read_u64(va(A + 5 * P)).unwrap(), 1005);
    assert_eq!(areas(&s), [(A, 8, RW), (B, 3, RW)], "merged back in place");
    // At the commit limit: refused, nothing changed.
    let free = sim.system().reserve().available();
    let hog = c
        .run(|| s.area_create(va(0x4000_0000), free * P, RW))
        .unwrap();
    let shown = areas(&s);
    assert_eq!(
        c.run(|| s.move_range_leaving(va(B), P, va(B + 16 * P), false)),
        Err(Error::NoMemory)
    );
    assert_eq!(areas(&s), shown);
    c.run(|| s.unmap_range(hog, free * P)).unwrap();
    // The left area keeps the most rights the part had.
    s.area_create(va(A + 32 * P), 4 * P, R).unwrap();
    s.area_restrict(va(A + 32 * P), R).unwrap();
    c.run(|| s.move_range_leaving(va(A + 33 * P), 2 * P, va(A + 48 * P), false))
        .unwrap();
    assert_eq!(
        c.run(|| s.protect_range(va(A + 33 * P), P, RW)),
        Err(Error::PermissionDenied)
    );
    // A shared area: not supported.
    let other = sim.system().create().unwrap();
    s.area_share(va(B), 3 * P, &other, va(B), RW).unwrap();
    assert_eq!(
        c.run(|| s.move_range_leaving(va(B), P, va(B + 16 * P), false)),
        Err(Error::NotSupported)
    );
    assert_eq!(c1.read_u64(va(B + P)).unwrap(), 1003);
}

/// `unmap_range` of an area's top shrinks the area in place; it must
/// leave exactly what a split there and the removal of the upper part
/// leave: the same area (size, reservation, resident pages, used space),
/// the same frames and reservations given back, one shootdown round, no
/// stale translation, the lower pages' data intact. Checked for an area
/// that reserves up front and one that reserves page by page, with a run
/// of resident pages across the cut.
#[test]
fn unmap_of_an_areas_top_leaves_what_a_split_leaves() {
    for flags in [RW, RW | AreaFlags::LATE_RESERVE] {
        let mut seen = Vec::new();
        for split_first in [true, false] {
            let (sim, s, mut c) = setup(2);
            let mut c1 = sim.cpu(1);
            c1.switch_to(&s).unwrap();
            let empty = sim.frames_in_use();
            s.area_create(va(A), 16 * P, flags).unwrap();
            fill(&mut c, A, 3, 1);
            fill(&mut c, A + 5 * P, 6, 2);
            fill(&mut c, A + 13 * P, 2, 3);
            for i in [1, 6, 9, 13] {
                c1.read_u64(va(A + i * P)).unwrap();
            }
            if split_first {
                s.area_split(va(A + 8 * P)).unwrap();
            }
            let before = sim.system().stats();
            c.run(|| s.unmap_range(va(A + 8 * P), 8 * P)).unwrap();
            let d = sim.system().stats().since(&before);
            assert_eq!(d.shootdown_rounds, 1, "{flags:?}");
            assert_eq!(d.frame_refs_released, 3 + 2, "{flags:?}");
            assert_no_stale(&sim, &s);
            assert_eq!(areas(&s), [(A, 8, flags)], "{flags:?}");
            for (i, value) in [(0, 1000), (2, 1002), (5, 2000), (7, 2002)] {
                assert_eq!(c1.read_u64(va(A + i * P)).unwrap(), value, "{flags:?}");
            }
            for i in [8, 9, 13, 15] {
                let e = c1.read_u64(va(A + i * P)).unwrap_err();
                assert_eq!(e.reason, FaultReason::NoArea, "{flags:?}");
            }
            let info = s.area(va(A)).unwrap();
            seen.push((
                info.pages,
                info.reserved,
                info.resident,
                s.used_space(va(A)),
                sim.system().reserve().committed(),
                sim.frames_in_use() - empty,
            ));
            c.run(|| s.unmap_range(va(A), 8 * P)).unwrap();
            assert_eq!(sim.system().reserve().committed(), 0, "{flags:?}");
        }
        assert_eq!(seen[0], seen[1], "{flags:?}: split and remove, then shrink");
    }
}

#[test]
fn protect_range_splits_then_merges_back() {
    let (sim, s, mut c) = setup(2);
    let mut c1 = sim.cpu(1);
    c1.switch_to(&s).unwrap();
    s.area_create(va(A), 8 * P, RW).unwrap();
    fill(&mut c, A, 8, 1);
    c1.write_u64(va(A + 3 * P), 77).unwrap();
    let frames = sim.frames_in_use();
    let before = sim.system().stats();
    c.run(|| s.protect_range(va(A + 2 * P), 3 * P, R)).unwrap();
    assert_eq!(sim.system().stats().since(&before).shootdown_rounds, 1);
    assert_eq!(
        areas(&s),
        [(A, 2, RW), (A + 2 * P, 3, R), (A + 5 * P, 3, RW)]
    );
    assert_no_stale(&sim, &s);
    assert_eq!(c1.read_u64(va(A + 3 * P)).unwrap(), 77);
    assert_eq!(
        c1.write_u64(va(A + 3 * P), 1).unwrap_err().reason,
        FaultReason::Access
    );
    c1.write_u64(va(A + 5 * P), 55).unwrap();
    // Over the boundary between two areas of different rights.
    c.run(|| s.protect_range(va(A + P), 2 * P, R)).unwrap();
    assert_eq!(areas(&s), [(A, 1, RW), (A + P, 4, R), (A + 5 * P, 3, RW)]);
    // The inverse restores one area.
    c.run(|| s.protect_range(va(A + P), 4 * P, RW)).unwrap();
    assert_eq!(areas(&s), [(A, 8, RW)]);
    assert_eq!(s.areas()[0].resident, 8);
    assert_eq!(sim.frames_in_use(), frames);
    for i in [0, 1, 2, 4, 6, 7] {
        assert_eq!(c.read_u64(va(A + i * P)).unwrap(), 1000 + i);
    }
    assert_eq!(c.read_u64(va(A + 3 * P)).unwrap(), 77);
    assert_eq!(c.read_u64(va(A + 5 * P)).unwrap(), 55);
    assert_eq!(sim.system().reserve().committed(), 8);
    assert_no_stale(&sim, &s);
}

/// Rights that only grow flush nothing (see `PageFlags::widens`): a CPU
/// whose TLB still holds the page read-only faults on its next write, and
/// the fault handler drops that entry (which RISC-V and AArch64 keep after
/// the fault) and lets the write through. Rights taken away are flushed
/// in one round.
#[test]
fn protect_range_widening_flushes_nothing() {
    let (sim, s, mut c) = setup(2);
    let mut c1 = sim.cpu(1);
    c1.switch_to(&s).unwrap();
    s.area_create(va(A), 4 * P, RW).unwrap();
    fill(&mut c, A, 4, 1);
    c.run(|| s.protect_range(va(A + P), 2 * P, R)).unwrap();
    assert_eq!(c1.read_u64(va(A + P)).unwrap(), 1001);
    let cached = |c: &Cpu, page: u64| {
        c.tlb_entries()
            .into_iter()
            .find(|e| e.page == va(page).page())
            .map(|e| e.writable)
    };
    assert_eq!(cached(&c1, A + P), Some(false));
    let before = sim.system().stats();
    c.run(|| s.protect_range(va(A + P), 2 * P, RW)).unwrap();
    let since = sim.system().stats().since(&before);
    assert_eq!((since.shootdown_rounds, since.ipis), (0, 0));
    assert_eq!(areas(&s), [(A, 4, RW)]);
    // The read-only entry is still cached, and a write passes after one
    // spurious fault.
    assert_eq!(cached(&c1, A + P), Some(false));
    let before = sim.system().stats();
    c1.write_u64(va(A + P), 7).unwrap();
    let since = sim.system().stats().since(&before);
    assert_eq!((since.faults_raced, since.pages_mapped), (1, 0));
    assert_eq!(cached(&c1, A + P), Some(true));
    assert_eq!(c.read_u64(va(A + P)).unwrap(), 7);
    assert_no_stale(&sim, &s);
    // Taking write away again is flushed everywhere.
    let before = sim.system().stats();
    c.run(|| s.protect_range(va(A), 4 * P, R)).unwrap();
    assert_eq!(sim.system().stats().since(&before).shootdown_rounds, 1);
    assert_no_stale(&sim, &s);
    assert_eq!(
        c1.write_u64(va(A + P), 1).unwrap_err().reason,
        FaultReason::Access
    );
}

#[test]
fn protect_range_refuses_before_changing_anything() {
    let (sim, s, mut c) = setup(1);
    s.area_create(va(A), 4 * P, RW).unwrap();
    s.area_create(va(A + 5 * P), 2 * P, RW).unwrap();
    fill(&mut c, A, 4, 1);
    let rounds = sim.system().stats().shootdown_rounds;
    // A hole at A + 4P: nothing changes (Linux would change the first area).
    assert_eq!(
        c.run(|| s.protect_range(va(A + 2 * P), 4 * P, R)),
        Err(Error::NotFound)
    );
    assert_eq!(areas(&s), [(A, 4, RW), (A + 5 * P, 2, RW)]);
    assert_eq!(sim.system().stats().shootdown_rounds, rounds);
    c.write_u64(va(A + 3 * P), 1).unwrap();
    assert_eq!(
        s.protect_range(va(A), P, RW | AreaFlags::EXEC),
        Err(Error::InvalidArgument)
    );
    // A share destination cannot get rights beyond its mask.
    let s1 = sim.system().create().unwrap();
    s.area_share(va(A), 4 * P, &s1, va(B), R).unwrap();
    assert_eq!(s1.protect_range(va(B), P, RW), Err(Error::PermissionDenied));
    s1.protect_range(va(B), P, AreaFlags::empty()).unwrap();
    s1.protect_range(va(B), P, R).unwrap();
    assert_eq!(s1.areas().len(), 1);
    // Rights an area may never get again.
    s.area_create(va(A + 0x10_0000), 2 * P, R).unwrap();
    assert_eq!(
        s.area_restrict(va(A + 0x10_0000), AreaFlags::empty()),
        Err(Error::PermissionDenied)
    );
    s.area_restrict(va(A + 0x10_0000), R | AreaFlags::EXEC)
        .unwrap();
    assert_eq!(
        s.protect_range(va(A + 0x10_0000), P, RW),
        Err(Error::PermissionDenied)
    );
    s.protect_range(va(A + 0x10_0000), P, AreaFlags::EXEC)
        .unwrap();
    s.protect_range(va(A + 0x10_0000), P, R).unwrap();
    assert_eq!(s.area(va(A + 0x10_0000)).unwrap().pages, 2);
    assert_eq!(s.area_restrict(va(B + 0x10_0000), R), Err(Error::NotFound));
    // ELF areas cannot change rights.
    let image = ElfImage::load(sim.system().machine(), &file(2)).unwrap();
    let seg = Segment {
        vaddr: B,
        memsz: 2 * P,
        filesz: 2 * P,
        offset: 0,
        flags: R,
    };
    s.area_create_with(
        va(B),
        2 * P,
        R,
        aspace::AreaAttrs::empty(),
        TryArc::try_backend(ElfBackend::new(image.clone(), seg)).unwrap(),
    )
    .unwrap();
    assert_eq!(s.protect_range(va(B), P, RW), Err(Error::NotSupported));
    drop(c);
    drop((s, s1));
    ElfImage::release(image, sim.system().machine()).unwrap();
}

#[test]
fn discard_range_zeroes_private_and_refetches_shared() {
    let (sim, s, mut c) = setup(1);
    let s1 = sim.system().create().unwrap();
    s.area_create(va(A), 4 * P, RW).unwrap();
    s.area_create(va(A + 4 * P), 4 * P, RW).unwrap();
    fill(&mut c, A, 8, 1);
    s.area_share(va(A + 4 * P), 4 * P, &s1, va(B), RW).unwrap();
    let frames = sim.frames_in_use();
    let before = sim.system().stats();
    c.run(|| s.discard_range(va(A + 2 * P), 4 * P)).unwrap();
    let d = sim.system().stats().since(&before);
    assert_eq!(d.shootdown_rounds, 1);
    // Two private frames freed; the shared ones live on in the record.
    assert_eq!(sim.frames_in_use(), frames - 2);
    assert_no_stale(&sim, &s);
    assert_eq!(areas(&s).len(), 2);
    assert_eq!(s.area(va(A)).unwrap().resident, 2);
    assert_eq!(c.read_u64(va(A + 2 * P)).unwrap(), 0);
    assert_eq!(c.read_u64(va(A + 3 * P)).unwrap(), 0);
    assert_eq!(c.read_u64(va(A + 4 * P)).unwrap(), 1004);
    assert_eq!(c.read_u64(va(A + 5 * P)).unwrap(), 1005);
    assert_eq!(c.read_u64(va(A + P)).unwrap(), 1001);
    assert_eq!(s.discard_range(va(A + 6 * P), 4 * P), Err(Error::NotFound));
    assert_eq!(s.area(va(A + 4 * P)).unwrap().resident, 4);
}

#[test]
fn discard_ranges_drops_only_the_ranges_given() {
    let (sim, s, mut c) = setup(1);
    s.area_create(va(A), 8 * P, RW).unwrap();
    fill(&mut c, A, 8, 1);
    let frames = sim.frames_in_use();
    let before = sim.system().stats();
    // Pages 1-2 and 5-6 (and a hole past the area): 3, 4 and 7 stay.
    let ranges = [
        (va(A + P), 2 * P),
        (va(A + 5 * P), 2 * P),
        (va(A + 9 * P), P),
    ];
    c.run(|| s.discard_ranges(&ranges)).unwrap();
    assert_eq!(sim.system().stats().since(&before).shootdown_rounds, 1);
    assert_eq!(sim.frames_in_use(), frames - 4);
    for (i, kept) in [
        (0, true),
        (1, false),
        (2, false),
        (3, true),
        (4, true),
        (5, false),
        (6, false),
        (7, true),
    ] {
        let want = if kept { 1000 + i } else { 0 };
        assert_eq!(c.read_u64(va(A + i * P)).unwrap(), want, "page {i}");
    }
    assert_no_stale(&sim, &s);
    // Out of order or overlapping: refused, nothing changed.
    let resident = s.resident_pages();
    for bad in [
        [(va(A + 4 * P), P), (va(A), P)],
        [(va(A), 2 * P), (va(A + P), P)],
    ] {
        assert_eq!(s.discard_ranges(&bad), Err(Error::InvalidArgument));
    }
    assert_eq!(
        s.discard_ranges(&[(va(A + 1), P)]),
        Err(Error::InvalidArgument)
    );
    assert_eq!(s.resident_pages(), resident);
}

#[test]
fn move_range_moves_frames_without_copying() {
    let (sim, s, mut c, mut c1) = eight_written_pages();
    let frames: Vec<_> = (2..6)
        .map(|i| s.translate(Page::from_number(A / P + i)).unwrap().0)
        .collect();
    let used = sim.frames_in_use();
    let before = sim.system().stats();
    // Pages 2..6 move to B and grow to 6 pages.
    c.run(|| s.move_range(va(A + 2 * P), 4 * P, va(B), 6 * P))
        .unwrap();
    let d = sim.system().stats().since(&before);
    assert_eq!(d.shootdown_rounds, 1);
    assert_eq!(d.frame_refs_released, 0);
    assert_eq!(areas(&s), [(A, 2, RW), (A + 6 * P, 2, RW), (B, 6, RW)]);
    let moved: Vec<_> = (0..4)
        .map(|i| s.translate(Page::from_number(B / P + i)).unwrap().0)
        .collect();
    assert_eq!(frames, moved);
    assert_no_stale(&sim, &s);
    for i in 0..4 {
        assert_eq!(c1.read_u64(va(B + i * P)).unwrap(), 1002 + i);
    }
    assert_eq!(c1.read_u64(va(B + 5 * P)).unwrap(), 0);
    assert_eq!(
        c1.read_u64(va(A + 3 * P)).unwrap_err().reason,
        FaultReason::NoArea
    );
    assert_eq!(sim.system().reserve().committed(), 10);
    // Back, shrinking to 2 pages: the two pages past the end are freed.
    let now = sim.frames_in_use();
    c.run(|| s.move_range(va(B), 6 * P, va(A + 2 * P), 2 * P))
        .unwrap();
    // Pages 2, 3 and 5 of the six were resident (5 read above as zero).
    assert_eq!(sim.frames_in_use(), now - 3);
    assert_eq!(areas(&s), [(A, 4, RW), (A + 6 * P, 2, RW)]);
    assert_eq!(sim.system().reserve().committed(), 6);
    assert_eq!(c.read_u64(va(A + 3 * P)).unwrap(), 1003);
    assert!(sim.frames_in_use() <= used);
    // Refusals.
    assert_eq!(
        s.move_range(va(A), 4 * P, va(A + 2 * P), 4 * P),
        Err(Error::AddressNotAvailable)
    );
    assert_eq!(
        s.move_range(va(A), 4 * P, va(A + 6 * P), 2 * P),
        Err(Error::AddressNotAvailable)
    );
    assert_eq!(
        s.move_range(va(A + 2 * P), 4 * P, va(B), 4 * P),
        Err(Error::NotFound)
    );
    assert_no_stale(&sim, &s);
}

// ---- All or nothing: each operation with frame allocations refused ----

/// What a space shows: its areas, what each of their pages maps, their
/// share records.
#[derive(Debug, PartialEq)]
struct Shown {
    areas: Vec<aspace::AreaInfo>,
    pages: Vec<(u64, Option<(aspace::Frame, PageFlags)>)>,
    shares: Vec<Option<(usize, usize)>>,
}

/// The observable state of a world, page tables apart (see `State`).
#[derive(Debug, PartialEq)]
struct State {
    spaces: Vec<Shown>,
    /// Frames in use less the page tables'.
    data_frames: u64,
    /// The reference counts of every frame a page maps.
    refcounts: Vec<u32>,
    tlbs: Vec<Vec<aspace_sim::TlbEntry>>,
    committed: u64,
    /// Frames the page tables hold.
    table_frames: u64,
}

struct World {
    sim: Sim,
    spaces: Vec<SpaceHandle>,
    cpus: Vec<Cpu>,
}

impl World {
    fn state(&self) -> State {
        let mut spaces = Vec::new();
        let mut refcounts = Vec::new();
        let mut tables = 0;
        let hw = self.sim.hardware();
        for s in &self.spaces {
            let areas = s.areas();
            let mut pages = Vec::new();
            let mut shares = Vec::new();
            for a in &areas {
                for i in 0..a.pages {
                    let p = Page::from_number(a.base.page().number() + i);
                    let t = s.translate(p);
                    if let Some((f, _)) = t {
                        refcounts.push(hw.frames().refcount(f));
                    }
                    pages.push((p.number(), t));
                }
                shares.push(s.share_info(a.base).map(|sh| (sh.refs(), sh.pages())));
            }
            tables += s.page_table_frames();
            spaces.push(Shown {
                areas,
                pages,
                shares,
            });
        }
        State {
            spaces,
            data_frames: self.sim.frames_in_use() - tables,
            refcounts,
            tlbs: (0..hw.cpu_count()).map(|c| hw.tlb_entries(c)).collect(),
            committed: self.sim.system().reserve().committed(),
            table_frames: tables,
        }
    }
}

/// Space 0 (on CPU 0): an area at A of 8 pages, 6 resident, next to a
/// read-only one of 2; an area at C shared into space 1 (on CPU 1) at B.
fn world() -> World {
    let sim = sim(2);
    let s0 = sim.system().create().unwrap();
    let s1 = sim.system().create().unwrap();
    let mut c0 = sim.cpu(0);
    let mut c1 = sim.cpu(1);
    c0.switch_to(&s0).unwrap();
    c1.switch_to(&s1).unwrap();
    s0.area_create(va(A), 8 * P, RW).unwrap();
    s0.area_create(va(A + 8 * P), 2 * P, R).unwrap();
    fill(&mut c0, A, 6, 1);
    c0.read_u64(va(A + 8 * P)).unwrap();
    let c = 0x100_0000;
    s0.area_create(va(c), 4 * P, RW).unwrap();
    fill(&mut c0, c, 2, 2);
    s0.area_share(va(c), 4 * P, &s1, va(B), RW).unwrap();
    c1.read_u64(va(B + P)).unwrap();
    World {
        sim,
        spaces: vec![s0, s1],
        cpus: vec![c0, c1],
    }
}

/// The top 64 GiB of user space: a first mapping there needs a table per
/// level below the root.
fn far() -> u64 {
    common::arch().layout().user_end - (64 << 30)
}

/// Runs `op` in fresh worlds with the frame allocator failing after `n`
/// allocations, n = 0, 1, ... until it succeeds; a refusal must leave the
/// state as it was, page tables apart when `tables_may_stay` (empty
/// intermediate tables stay until the space goes). Checks the teardown
/// gives every frame and reservation back; returns the allocations needed.
fn inject(name: &str, tables_may_stay: bool, op: impl Fn(&mut World) -> aspace::Result<()>) -> u64 {
    inject_in(name, tables_may_stay, world, op)
}

/// [`inject`] in worlds made by `make`.
fn inject_in(
    name: &str,
    tables_may_stay: bool,
    make: impl Fn() -> World,
    op: impl Fn(&mut World) -> aspace::Result<()>,
) -> u64 {
    let baseline = sim(1).frames_in_use();
    for n in 0..32 {
        let mut w = make();
        let before = w.state();
        w.sim.hardware().frames().fail_after(Some(n));
        let result = op(&mut w);
        w.sim.hardware().frames().fail_after(None);
        match result {
            Ok(()) => {
                for s in &w.spaces {
                    assert_no_stale(&w.sim, s);
                }
                let World { sim, spaces, cpus } = w;
                drop(cpus);
                drop(spaces);
                assert_eq!(sim.frames_in_use(), baseline, "{name}: frames left");
                assert_eq!(sim.system().reserve().committed(), 0, "{name}: reserved");
                assert_eq!(sim.hardware().stats().stale_accesses, 0);
                return n;
            }
            Err(e) => {
                assert_eq!(e, Error::NoMemory, "{name}: refused at {n} with {e:?}");
                let mut after = w.state();
                if tables_may_stay {
                    assert!(after.table_frames >= before.table_frames);
                    after.table_frames = before.table_frames;
                }
                // A refusal may have flushed entries (never wrong), never
                // added or changed one.
                for (cpu, (was, is)) in before.tlbs.iter().zip(&after.tlbs).enumerate() {
                    for e in is {
                        assert!(was.contains(e), "{name}: CPU {cpu} gained {e:?}");
                    }
                }
                after.tlbs.clone_from(&before.tlbs);
                assert!(
                    after == before,
                    "{name}: refused at allocation {n} and changed the state:\n\
                     before {before:#?}\nafter {after:#?}"
                );
            }
        }
    }
    panic!("{name}: still refused after 32 allocations");
}

/// An operation on a world.
type Op = fn(&mut World) -> aspace::Result<()>;

#[test]
fn split_merge_unmap_protect_discard_need_no_frame() {
    let ops: [(&str, Op); 7] = [
        ("split", |w| {
            w.cpus[0].run(|| w.spaces[0].area_split(va(A + 3 * P)))
        }),
        ("merge", |w| {
            // The change of rights merges by itself; so does a merge call.
            w.spaces[0].protect_range(va(A + 8 * P), 2 * P, RW)?;
            assert_eq!(w.spaces[0].areas().len(), 2);
            w.spaces[0].area_split(va(A + 3 * P))?;
            assert!(w.spaces[0].area_merge(va(A))?);
            Ok(())
        }),
        ("unmap", |w| {
            w.cpus[0].run(|| w.spaces[0].unmap_range(va(A + 2 * P), 7 * P))
        }),
        ("protect", |w| {
            w.cpus[0].run(|| w.spaces[0].protect_range(va(A + 2 * P), 3 * P, R))
        }),
        ("protect shared", |w| {
            w.cpus[1].run(|| w.spaces[1].protect_range(va(B + P), P, R))
        }),
        ("discard", |w| {
            w.cpus[0].run(|| w.spaces[0].discard_range(va(A + P), 8 * P))
        }),
        ("replace", |w| {
            let e = AreaAttrs::empty();
            w.cpus[0].run(|| w.spaces[0].area_replace_with(va(A + 2 * P), 7 * P, R, e, anon()))?;
            Ok(())
        }),
    ];
    for (name, op) in ops {
        assert_eq!(inject(name, false, op), 0, "{name}");
    }
}

#[test]
fn refused_range_operations_change_nothing() {
    let w = world();
    let before = w.state();
    let s = &w.spaces[0];
    let c0 = &w.cpus[0];
    let hole = 0x100_0000 + 4 * P;
    assert_eq!(
        c0.run(|| s.protect_range(va(A), 16 * P, R)),
        Err(Error::NotFound)
    );
    assert_eq!(s.discard_range(va(hole - P), 2 * P), Err(Error::NotFound));
    assert_eq!(
        s.protect_range(va(A + 1), P, R),
        Err(Error::InvalidArgument)
    );
    assert_eq!(
        s.move_range(va(A), 4 * P, va(A + 8 * P), 4 * P),
        Err(Error::AddressNotAvailable)
    );
    // No area at the range's start.
    assert_eq!(
        s.move_range(va(hole), 2 * P, va(far()), 2 * P),
        Err(Error::NotFound)
    );
    // A shared area moves, but does not change size.
    assert_eq!(
        s.move_range(va(0x100_0000), 4 * P, va(far()), 8 * P),
        Err(Error::NotSupported)
    );
    let limit = w.sim.system().reserve().limit();
    w.sim.system().reserve().set_limit(before.committed);
    assert_eq!(
        s.move_range(va(A), 4 * P, va(far()), 8 * P),
        Err(Error::NoMemory)
    );
    w.sim.system().reserve().set_limit(limit);
    assert!(w.state() == before, "a refusal changed the state");
}

#[test]
fn move_range_refused_at_any_allocation_changes_nothing() {
    // Far away: page tables to allocate at every level.
    let needed = inject("move far", true, |w| {
        w.cpus[0].run(|| w.spaces[0].move_range(va(A + P), 6 * P, va(far()), 9 * P))?;
        w.sim.hardware().frames().fail_after(None);
        assert_eq!(w.cpus[0].read_u64(va(far() + 4 * P)).unwrap(), 1005);
        assert_eq!(w.cpus[0].read_u64(va(far() + 8 * P)).unwrap(), 0);
        Ok(())
    });
    assert!(needed >= 2, "{needed}");
    // Both areas at A (the read-only one grown), far away.
    let needed = inject("move of two areas far", true, |w| {
        w.cpus[0].run(|| w.spaces[0].move_range(va(A + P), 9 * P, va(far()), 11 * P))?;
        w.sim.hardware().frames().fail_after(None);
        assert_eq!(w.cpus[0].read_u64(va(far() + 4 * P)).unwrap(), 1005);
        assert_eq!(w.cpus[0].read_u64(va(far() + 10 * P)).unwrap(), 0);
        assert!(w.cpus[0].write_u64(va(far() + 8 * P), 1).is_err());
        Ok(())
    });
    assert!(needed >= 2, "{needed}");
    let needed = inject("move of two areas far, leaving them", true, |w| {
        w.cpus[0].run(|| w.spaces[0].move_range_leaving(va(A + P), 9 * P, va(far()), false))?;
        w.sim.hardware().frames().fail_after(None);
        assert_eq!(w.cpus[0].read_u64(va(far() + 4 * P)).unwrap(), 1005);
        assert_eq!(w.cpus[0].read_u64(va(A + 5 * P)).unwrap(), 0);
        Ok(())
    });
    assert!(needed >= 2, "{needed}");
    let needed = inject("move shared", true, |w| {
        w.cpus[1].run(|| w.spaces[1].move_range(va(B), 4 * P, va(far()), 4 * P))?;
        w.sim.hardware().frames().fail_after(None);
        w.cpus[0].write_u64(va(0x100_0000 + P), 9).unwrap();
        assert_eq!(w.cpus[1].read_u64(va(far() + P)).unwrap(), 9);
        Ok(())
    });
    assert!(needed >= 2, "{needed}");
    // Over an area across a leaf table's end: the moved pages past it need
    // a new table, the replaced ones (before it) are put back if it cannot
    // be had.
    let x = A + 510 * P;
    let occupied = || {
        let mut w = world();
        w.spaces[0].area_create(va(x), 2 * P, RW).unwrap();
        fill(&mut w.cpus[0], x, 2, 5);
        w
    };
    let needed = inject_in("move over", true, occupied, |w| {
        w.cpus[0].run(|| w.spaces[0].move_range_over(va(A), 4 * P, va(x), 4 * P))?;
        w.sim.hardware().frames().fail_after(None);
        assert_eq!(w.cpus[0].read_u64(va(x + 3 * P)).unwrap(), 1003);
        assert_eq!(
            w.cpus[0].read_u64(va(A)).unwrap_err().reason,
            FaultReason::NoArea
        );
        Ok(())
    });
    assert!(needed >= 1, "{needed}");
}

#[test]
fn move_range_over_replaces_what_was_there() {
    let (sim, s, mut c) = setup(2);
    let mut c1 = sim.cpu(1);
    c1.switch_to(&s).unwrap();
    s.area_create(va(A), 4 * P, RW).unwrap();
    s.area_create(va(B), 4 * P, RW).unwrap();
    s.area_create(va(B + 6 * P), 4 * P, R).unwrap();
    fill(&mut c, A, 4, 1);
    fill(&mut c, B, 4, 2);
    for i in [0, 1, 2, 3, 6, 7] {
        c1.read_u64(va(B + i * P)).unwrap();
    }
    let before = sim.system().stats();
    let frames = sim.frames_in_use();
    // A's four pages onto B's top two, a hole and the R area's first two:
    // one round, the four replaced frames (two resident there) freed.
    c.run(|| s.move_range_over(va(A), 4 * P, va(B + 2 * P), 6 * P))
        .unwrap();
    let d = sim.system().stats().since(&before);
    assert_eq!(d.shootdown_rounds, 1);
    assert_eq!(sim.frames_in_use(), frames - 4);
    // Merged with what is left of B below it.
    assert_eq!(areas(&s), [(B, 8, RW), (B + 8 * P, 2, R)]);
    assert_no_stale(&sim, &s);
    for i in 0..4 {
        assert_eq!(c1.read_u64(va(B + (2 + i) * P)).unwrap(), 1000 + i);
    }
    assert_eq!(c1.read_u64(va(B + 6 * P)).unwrap(), 0);
    assert_eq!(c1.read_u64(va(B + P)).unwrap(), 2001);
    assert_eq!(c1.read_u64(va(A)).unwrap_err().reason, FaultReason::NoArea);
    // Onto itself, or from a hole: refused, nothing changed.
    let shown = areas(&s);
    assert_eq!(
        s.move_range_over(va(B), 4 * P, va(B + 2 * P), 4 * P),
        Err(Error::AddressNotAvailable)
    );
    assert_eq!(
        s.move_range_over(va(A), 4 * P, va(B), 4 * P),
        Err(Error::NotFound)
    );
    assert_eq!(areas(&s), shown);
    c.run(|| s.unmap_range(va(B), 10 * P)).unwrap();
    assert_eq!(sim.system().reserve().committed(), 0);
}

#[test]
fn replacing_stops_at_the_guard_page_of_an_area_above() {
    let (sim, s, mut c) = setup(1);
    s.area_create(va(B), 4 * P, RW | AreaFlags::GROWS_DOWN)
        .unwrap();
    s.area_create(va(A), 4 * P, RW).unwrap();
    fill(&mut c, A, 4, 1);
    let shown = areas(&s);
    let committed = sim.system().reserve().committed();
    // B's guard page is B - P: neither may take it.
    let e = AreaAttrs::empty();
    assert_eq!(
        c.run(|| s.area_replace_with(va(B - 4 * P), 4 * P, RW, e, anon())),
        Err(Error::AddressNotAvailable)
    );
    assert_eq!(
        c.run(|| s.move_range_over(va(A), 4 * P, va(B - 4 * P), 4 * P)),
        Err(Error::AddressNotAvailable)
    );
    assert_eq!(areas(&s), shown);
    assert_eq!(sim.system().reserve().committed(), committed);
    // One page lower, both fit.
    c.run(|| s.move_range_over(va(A), 4 * P, va(B - 5 * P), 4 * P))
        .unwrap();
    assert_eq!(c.read_u64(va(B - 5 * P)).unwrap(), 1000);
    c.run(|| s.area_replace_with(va(B - 5 * P), 4 * P, RW, e, anon()))
        .unwrap();
    assert_eq!(c.read_u64(va(B - 5 * P)).unwrap(), 0);
    c.run(|| s.unmap_range(va(A), B + 4 * P - A)).unwrap();
    assert_eq!(sim.system().reserve().committed(), 0);
}

#[test]
fn a_shrinking_move_over_drops_its_tail_across_areas_and_holes() {
    let (sim, s, mut c) = setup(1);
    s.area_create(va(A), 4 * P, RW).unwrap();
    s.area_create(va(A + 6 * P), 4 * P, R).unwrap();
    fill(&mut c, A, 4, 1);
    c.read_u64(va(A + 6 * P)).unwrap();
    let data = || sim.frames_in_use() - s.page_table_frames();
    let frames = data();
    let before = sim.system().stats();
    // Old range: A's 4 pages, a hole, the R area's first 2; keep 2 pages.
    c.run(|| s.move_range_over(va(A), 8 * P, va(B), 2 * P))
        .unwrap();
    let d = sim.system().stats().since(&before);
    assert_eq!(d.shootdown_rounds, 1);
    assert_eq!(areas(&s), [(A + 8 * P, 2, R), (B, 2, RW)]);
    // Pages 2 and 3 of A and the R page read: three frames freed.
    assert_eq!(data(), frames - 3);
    assert_eq!(c.read_u64(va(B + P)).unwrap(), 1001);
    assert_no_stale(&sim, &s);
    c.run(|| s.unmap_range(va(A), B + 2 * P - A)).unwrap();
    assert_eq!(sim.system().reserve().committed(), 0);
}

#[test]
fn late_reserving_areas_split_with_their_resident_pages() {
    let (sim, s, mut c) = setup(1);
    let late = RW | AreaFlags::LATE_RESERVE;
    s.area_create(va(A), 8 * P, late).unwrap();
    for i in [0, 1, 5, 6, 7] {
        c.write_u64(va(A + i * P), i).unwrap();
    }
    let r = sim.system().reserve();
    assert_eq!(r.committed(), 5);
    c.run(|| s.area_split(va(A + 4 * P))).unwrap();
    let a = s.areas();
    assert_eq!((a[0].reserved, a[1].reserved), (2, 3));
    c.run(|| s.discard_range(va(A + 6 * P), P)).unwrap();
    assert_eq!(s.area(va(A + 4 * P)).unwrap().reserved, 2);
    c.run(|| s.move_range(va(A + 4 * P), 4 * P, va(B), 2 * P))
        .unwrap();
    // Pages 4 and 5 moved (5 resident); 7 went with the shrink.
    assert_eq!(s.area(va(B)).unwrap().reserved, 1);
    assert_eq!(c.read_u64(va(B + P)).unwrap(), 5);
    assert_eq!(r.committed(), 3);
    c.run(|| s.unmap_range(va(A + P), P)).unwrap();
    assert_eq!(r.committed(), 2);
    c.run(|| s.protect_range(va(A), P, R)).unwrap();
    assert!(s
        .area(va(A))
        .unwrap()
        .flags
        .contains(AreaFlags::LATE_RESERVE));
    assert_no_stale(&sim, &s);
    drop(c);
    drop(s);
    assert_eq!(r.committed(), 0);
}

#[test]
fn pager_areas_neither_split_nor_merge_nor_move() {
    let (sim, s, mut c) = setup(1);
    let pager = aspace_sim::pager::SimPager::file(&sim, vec![7u8; (4 * P) as usize]).unwrap();
    let ids = aspace::backend::PagerIds::default();
    s.area_create_paged(va(A), 4 * P, R, pager.link(), pager.space(), ids)
        .unwrap();
    s.area_create_paged(va(A + 4 * P), 4 * P, R, pager.link(), pager.space(), ids)
        .unwrap();
    assert_eq!(c.read(va(A + P), &mut [0u8; 1]).map(|_| ()), Ok(()));
    assert_eq!(s.area_split(va(A + P)), Err(Error::NotSupported));
    assert_eq!(s.unmap_range(va(A + P), P), Err(Error::NotSupported));
    assert_eq!(
        s.move_range(va(A), 4 * P, va(B), 4 * P),
        Err(Error::NotSupported)
    );
    assert!(!s.area_merge(va(A)).unwrap());
    // Whole areas go, and their pages may be given back.
    c.run(|| s.discard_range(va(A), 4 * P)).unwrap();
    c.run(|| s.unmap_range(va(A), 4 * P)).unwrap();
    assert_eq!(areas(&s), [(A + 4 * P, 4, R)]);
    assert_no_stale(&sim, &s);
}

/// The word CPU `cpu` writes at page `page` (never zero).
fn pattern(cpu: u64, page: u64) -> u64 {
    0xc0de << 48 | cpu << 32 | page << 8 | 1
}

#[test]
fn range_operations_race_with_cpus_touching_pages() {
    let seed = common::seed(0x5911_7ace);
    let sim = sim(3);
    let baseline = sim.frames_in_use();
    let s = sim.system().create().unwrap();
    let pages = 16;
    s.area_create(va(A), pages * P, RW).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let started = std::sync::atomic::AtomicU64::new(0);
    let stale_before = sim.hardware().stats().stale_accesses;
    std::thread::scope(|scope| {
        // The workers run the space until the churn is over (a worker that
        // left early would keep entries the core rightly no longer shoots
        // down), and stop when it ends, even by a panic.
        let _stop = StopOnDrop(&stop);
        let mut workers = Vec::new();
        for id in 1..3u64 {
            let mut cpu = sim.cpu(id as usize);
            let (s, stop, started) = (&s, &stop, &started);
            workers.push(scope.spawn(move || {
                cpu.switch_to(s).unwrap();
                let mut rng = common::XorShift::new(seed + id);
                let mut ops = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) || ops < 2000 {
                    ops += 1;
                    if ops == 100 {
                        started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    let page = rng.below(pages);
                    let at = va(A + page * P + id * 8);
                    if rng.chance(50) {
                        match cpu.write_u64(at, pattern(id, page)) {
                            Ok(()) => {}
                            Err(f) => assert!(
                                matches!(f.reason, FaultReason::Access | FaultReason::NoArea),
                                "seed {seed}: CPU {id}: {f:?}"
                            ),
                        }
                    } else {
                        match cpu.read_u64(at) {
                            Ok(v) => assert!(
                                v == 0 || v == pattern(id, page),
                                "seed {seed}: CPU {id} read {v:#x} at page {page}"
                            ),
                            Err(f) => assert_eq!(f.reason, FaultReason::NoArea, "seed {seed}"),
                        }
                    }
                }
                ops
            }));
        }
        let c0 = sim.cpu(0);
        // The workers are running before the churn starts.
        while started.load(std::sync::atomic::Ordering::Relaxed) < 2 {
            std::thread::yield_now();
        }
        let mut rng = common::XorShift::new(seed);
        for round in 0..300 {
            let a = rng.below(pages);
            let n = 1 + rng.below(pages - a);
            let (base, size) = (va(A + a * P), n * P);
            let r = match round % 5 {
                0 => c0.run(|| s.protect_range(base, size, R)),
                1 => c0.run(|| s.protect_range(base, size, RW)),
                2 => c0.run(|| s.discard_range(base, size)),
                3 => c0.run(|| s.area_split(base)),
                _ => {
                    // Within the area holding `base`: away and back.
                    let end = s.area(base).unwrap().end().as_u64();
                    let size = size.min(end - base.as_u64());
                    c0.run(|| s.move_range(base, size, va(B), size))
                        .and_then(|()| c0.run(|| s.move_range(va(B), size, base, size)))
                }
            };
            assert_eq!(r, Ok(()), "seed {seed}: round {round}");
        }
        // Every page back to one writable area.
        c0.run(|| s.protect_range(va(A), pages * P, RW)).unwrap();
        assert_eq!(areas(&s), [(A, pages, RW)], "seed {seed}");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in workers {
            assert!(w.join().unwrap() >= 2000);
        }
    });
    assert_eq!(
        sim.hardware().stats().stale_accesses,
        stale_before,
        "seed {seed}"
    );
    // The workers' CPUs went idle when they stopped; back on the space,
    // each holds no entry older than the page table.
    let mut back: Vec<Cpu> = (0..3).map(|id| sim.cpu(id)).collect();
    for cpu in &mut back {
        cpu.switch_to(&s).unwrap();
    }
    assert_no_stale(&sim, &s);
    drop(back);
    drop(s);
    assert_eq!(sim.frames_in_use(), baseline, "seed {seed}");
    assert_eq!(sim.system().reserve().committed(), 0);
}

/// Sets its flag when dropped: on the way out of a scope, panicking or not.
struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn a_split_part_shares_with_its_offset() {
    let sim = sim(2);
    let s0 = sim.system().create().unwrap();
    let s1 = sim.system().create().unwrap();
    let mut c0 = sim.cpu(0);
    let mut c1 = sim.cpu(1);
    c0.switch_to(&s0).unwrap();
    c1.switch_to(&s1).unwrap();
    // Anonymous: pages touched before the split and the share.
    s0.area_create(va(A), 6 * P, RW).unwrap();
    fill(&mut c0, A, 6, 4);
    c0.run(|| s0.area_split(va(A + 2 * P))).unwrap();
    s0.area_share(va(A + 2 * P), 4 * P, &s1, va(B), RW).unwrap();
    assert_eq!(s1.area(va(B)).unwrap().offset, 2);
    for i in 0..4 {
        assert_eq!(c1.read_u64(va(B + i * P)).unwrap(), 4002 + i);
    }
    c1.write_u64(va(B + 3 * P), 1).unwrap();
    assert_eq!(c0.read_u64(va(A + 5 * P)).unwrap(), 1);
    // An ELF segment: the destination reads the part's bytes.
    let image = ElfImage::load(sim.system().machine(), &file(6)).unwrap();
    let base = 0x200_0000;
    let seg = Segment {
        vaddr: base,
        memsz: 6 * P,
        filesz: 6 * P,
        offset: 0,
        flags: RW,
    };
    s0.area_create_with(
        va(base),
        6 * P,
        RW,
        aspace::AreaAttrs::empty(),
        TryArc::try_backend(ElfBackend::new(image.clone(), seg)).unwrap(),
    )
    .unwrap();
    c0.run(|| s0.area_split(va(base + 3 * P))).unwrap();
    s0.area_share(va(base + 3 * P), 3 * P, &s1, va(base), R)
        .unwrap();
    for i in 0..3 {
        assert_eq!(read_text(&mut c1, base + i * P), format!("page {}", i + 3));
    }
    drop((c0, c1));
    drop((s0, s1));
    ElfImage::release(image, sim.system().machine()).unwrap();
    assert_eq!(sim.system().reserve().committed(), 0);
}

other_archs!(protect_range_widening_flushes_nothing);

/// A `move_range_over` of several areas refused for want of a page table
/// (frames) changes nothing, also under the old range's hole: the areas'
/// runs move one by one (a page-table rollback over the whole range would
/// move the kept area's entries into the hole; found by review).
#[test]
fn a_refused_move_of_several_areas_keeps_what_lies_under_the_hole() {
    let (sim, s, mut c) = setup(1);
    // Leaf tables cover 512 pages; T is aligned to one.
    const T: u64 = 0x120_0000;
    // Source: X [A, A+2P), hole [A+2P, A+3P), Y [A+3P, A+6P), all written.
    s.area_create(va(A), 2 * P, RW).unwrap();
    s.area_create(va(A + 3 * P), 3 * P, RW).unwrap();
    fill(&mut c, A, 2, 1);
    fill(&mut c, A + 3 * P, 3, 2);
    // Target: C over T+509..T+512 written; the hole of the old range lands
    // on its last page (T+511), Y lands in the next leaf (none yet).
    s.area_create(va(T + 509 * P), 3 * P, RW).unwrap();
    fill(&mut c, T + 509 * P, 3, 3);
    let before_c = s.translate(Page::from_number(T / P + 511));
    assert!(before_c.is_some());
    sim.hardware().frames().fail_after(Some(0));
    let r = c.run(|| s.move_range_over(va(A), 6 * P, va(T + 509 * P), 6 * P));
    sim.hardware().frames().fail_after(None);
    assert_eq!(r, Err(Error::NoMemory));
    assert_eq!(
        s.translate(Page::from_number(A / P + 2)),
        None,
        "a translation appeared in the old range's hole"
    );
    assert_eq!(
        s.translate(Page::from_number(T / P + 511)),
        before_c,
        "the page under the hole lost its translation"
    );
    assert_eq!(c.read_u64(va(T + 511 * P)).unwrap(), 3002);
    assert!(c.read_u64(va(A + 2 * P)).is_err(), "no area there");
}

/// Over a new range, an area kept under the old range's hole may have a
/// guard page where an area before the hole lands: refused
/// (`AddressNotAvailable`, nothing changed; found by review).
#[test]
fn a_move_of_several_areas_onto_a_guard_page_under_a_hole_is_refused() {
    let (_sim, s, mut c) = setup(1);
    const T: u64 = 0x120_0000;
    // Source: X [A, A+2P), hole [A+2P, A+4P), Y [A+4P, A+5P).
    s.area_create(va(A), 2 * P, RW).unwrap();
    s.area_create(va(A + 4 * P), P, RW).unwrap();
    fill(&mut c, A, 2, 1);
    // Target: C [T+2P, T+4P) with a guard page at T+P, where X's second
    // page lands.
    s.area_create(va(T + 2 * P), 2 * P, AreaFlags::GUARD | RW)
        .unwrap();
    let shown = areas(&s);
    let r = c.run(|| s.move_range_over(va(A), 5 * P, va(T), 5 * P));
    assert_eq!(r, Err(Error::AddressNotAvailable));
    assert_eq!(areas(&s), shown);
    assert_eq!(c.read_u64(va(A + P)).unwrap(), 1001);
}

/// A same-size move over a new range of several areas whose old range
/// ends in a hole keeps what lies under that trailing hole (only a growth
/// lands past the last area; found by review).
#[test]
fn a_move_of_several_areas_keeps_what_lies_under_a_trailing_hole() {
    let (_sim, s, mut c) = setup(1);
    const T: u64 = 0x120_0000;
    s.area_create(va(A), P, RW).unwrap();
    s.area_create(va(A + 2 * P), P, RW).unwrap();
    s.area_create(va(T + 3 * P), 2 * P, RW).unwrap();
    fill(&mut c, T + 3 * P, 2, 3);
    c.run(|| s.move_range_over(va(A), 5 * P, va(T), 5 * P))
        .unwrap();
    assert_eq!(
        c.read_u64(va(T + 4 * P)).unwrap(),
        3001,
        "under the trailing hole"
    );
}

/// `move_range_growing` (Linux's `mremap` moving and growing a mapping
/// whose top page is a guard page): the areas move as `move_range` moves
/// them (the same frames, one shootdown round) and the growth is a new,
/// empty area above them that reserves its pages, the guard page staying
/// one page; a refusal for want of a page table, a growth that does not
/// start where the moved range ends, or one with guard pages changes
/// nothing.
#[test]
fn move_range_growing_adds_an_area_above_the_moved_range() {
    let (sim, s, mut c) = setup(2);
    s.area_create(va(A), 4 * P, RW).unwrap();
    s.area_create_with(va(A + 4 * P), P, RW, AreaAttrs::empty(), guard())
        .unwrap();
    fill(&mut c, A, 4, 1);
    let frame = s.translate(Page::from_number(A / P + 3)).unwrap().0;
    let committed = sim.system().reserve().committed();
    let shown = areas(&s);
    // Refusals first, nothing changed.
    let misplaced = part(B + 6 * P, 3, RW, anon());
    assert_eq!(
        c.run(|| s.move_range_growing(va(A), 5 * P, va(B), &misplaced, false)),
        Err(Error::InvalidArgument)
    );
    let guarded = part(B + 5 * P, 3, RW | AreaFlags::GUARD, anon());
    assert_eq!(
        c.run(|| s.move_range_growing(va(A), 5 * P, va(B), &guarded, false)),
        Err(Error::InvalidArgument)
    );
    // Leaf tables cover 512 pages: a target in a region with none yet.
    const T: u64 = 0x1_0000_0000;
    sim.hardware().frames().fail_after(Some(0));
    let far = part(T + 5 * P, 3, RW, anon());
    let r = c.run(|| s.move_range_growing(va(A), 5 * P, va(T), &far, false));
    sim.hardware().frames().fail_after(None);
    assert_eq!(r, Err(Error::NoMemory));
    assert_eq!(areas(&s), shown);
    assert_eq!(sim.system().reserve().committed(), committed);
    assert_eq!(c.read_u64(va(A + 3 * P)).unwrap(), 1003);
    // The move.
    let (frames, tables) = (sim.frames_in_use(), s.page_table_frames());
    let before = sim.system().stats();
    let growth = part(B + 5 * P, 3, RW, anon());
    c.run(|| s.move_range_growing(va(A), 5 * P, va(B), &growth, false))
        .unwrap();
    assert_eq!(sim.system().stats().since(&before).shootdown_rounds, 1);
    assert_eq!(
        areas(&s),
        [(B, 4, RW), (B + 4 * P, 1, RW), (B + 5 * P, 3, RW)]
    );
    assert_eq!(s.translate(Page::from_number(B / P + 3)).unwrap().0, frame);
    let new_tables = s.page_table_frames() - tables;
    assert_eq!(sim.frames_in_use(), frames + new_tables, "no page copied");
    assert_eq!(
        sim.system().reserve().committed(),
        committed + 3,
        "the growth reserves its pages, the guard page none"
    );
    assert_no_stale(&sim, &s);
    for i in 0..4 {
        assert_eq!(c.read_u64(va(B + i * P)).unwrap(), 1000 + i);
    }
    assert!(c.read_u64(va(B + 4 * P)).is_err(), "the guard page moved");
    assert_eq!(c.read_u64(va(B + 5 * P)).unwrap(), 0);
    c.write_u64(va(B + 7 * P), 7).unwrap();
    assert!(c.read_u64(va(A)).is_err(), "the old range is free");
    c.run(|| s.unmap_range(va(B), 8 * P)).unwrap();
    assert_eq!(sim.system().reserve().committed(), committed - 4);
}

/// `move_range_leaving_as` (Linux's `MREMAP_DONTUNMAP` of a mapping with
/// a guard page): the pages and the guard area move, and the old range
/// takes the caller's areas, empty, without a guard page, reserving their
/// pages; `left` that does not cover exactly what the areas hold (a part
/// missing, one over a hole, out of order) or has guard pages is refused
/// with nothing changed.
#[test]
fn move_range_leaving_as_leaves_the_callers_areas() {
    let (sim, s, mut c) = setup(2);
    // X [A, A+2P), guard [A+2P, A+3P), Y [A+3P, A+4P), hole, Z [A+5P, A+6P).
    s.area_create(va(A), 2 * P, RW).unwrap();
    s.area_create_with(va(A + 2 * P), P, RW, AreaAttrs::empty(), guard())
        .unwrap();
    s.area_create(va(A + 3 * P), P, RW).unwrap();
    s.area_create(va(A + 5 * P), P, R).unwrap();
    fill(&mut c, A, 2, 1);
    fill(&mut c, A + 3 * P, 1, 2);
    let committed = sim.system().reserve().committed();
    let shown = areas(&s);
    let refused = |left: &[aspace::replace::Replacement<aspace_sim::SimMachine>]| {
        let r = c.run(|| s.move_range_leaving_as(va(A), 6 * P, va(B), false, left));
        assert_eq!(r, Err(Error::InvalidArgument));
        assert_eq!(areas(&s), shown);
    };
    refused(&[part(A, 4, RW, anon())]);
    refused(&[part(A, 6, RW, anon())]);
    refused(&[part(A + 5 * P, 1, R, anon()), part(A, 4, RW, anon())]);
    refused(&[
        part(A, 4, RW | AreaFlags::GUARD, anon()),
        part(A + 5 * P, 1, R, anon()),
    ]);
    assert_eq!(sim.system().reserve().committed(), committed);
    let left = [
        part(A, 3, RW, anon()),
        part(A + 3 * P, 1, RW, anon()),
        part(A + 5 * P, 1, R, anon()),
    ];
    c.run(|| s.move_range_leaving_as(va(A), 6 * P, va(B), false, &left))
        .unwrap();
    assert_no_stale(&sim, &s);
    // The old range: one area of the first four pages (merged), the hole,
    // the read-only one; no guard page, nothing resident.
    assert_eq!(
        areas(&s),
        [
            (A, 4, RW),
            (A + 5 * P, 1, R),
            (B, 2, RW),
            (B + 2 * P, 1, RW),
            (B + 3 * P, 1, RW),
            (B + 5 * P, 1, R)
        ]
    );
    for i in [0, 1, 2, 3, 5] {
        assert_eq!(c.read_u64(va(A + i * P)).unwrap(), 0, "page {i}");
    }
    assert!(c.read_u64(va(A + 4 * P)).is_err(), "the hole stays");
    assert_eq!(c.read_u64(va(B + P)).unwrap(), 1001);
    assert_eq!(c.read_u64(va(B + 3 * P)).unwrap(), 2000);
    assert!(c.read_u64(va(B + 2 * P)).is_err(), "the guard page moved");
    assert_eq!(
        sim.system().reserve().committed(),
        committed + 5,
        "the left areas reserve their pages, as new areas"
    );
    c.run(|| s.unmap_range(va(A), 6 * P)).unwrap();
    c.run(|| s.unmap_range(va(B), 6 * P)).unwrap();
    assert_eq!(sim.system().reserve().committed(), 0);
}

/// What a space shows of itself agrees: the areas' reservations add up to
/// what the system has committed, and each area's resident count is the
/// number of its pages the page table maps.
fn assert_accounts(sim: &Sim, s: &Space) {
    let infos = s.areas();
    let reserved: u64 = infos.iter().map(|a| a.reserved).sum();
    assert_eq!(
        reserved,
        sim.system().reserve().committed(),
        "{:?}",
        areas(s)
    );
    for a in &infos {
        let first = a.base.page().number();
        let mapped = (first..first + a.pages)
            .filter(|&n| s.translate(Page::from_number(n)).is_some())
            .count() as u64;
        assert_eq!(mapped, a.resident, "area at {:#x}", a.base.as_u64());
    }
}

/// Edge cases of the moves with areas of the caller's (from a review):
/// the growth of a growing-down area; over a target area that sticks out
/// on both sides; onto the moved area's own upper part, growing and
/// leaving; leaving over a target; the growth of a share destination
/// (the share kept, only the growth reserved). Data read back, the
/// accounts agreeing after each.
#[test]
fn moves_with_areas_of_the_callers_keep_the_accounts() {
    // A growing-down area grows by an area of its own above it.
    let (sim, s, mut c) = setup(1);
    s.area_create(va(A + 8 * P), 4 * P, RW | AreaFlags::GROWS_DOWN)
        .unwrap();
    c.write_u64(va(A + 9 * P), 9).unwrap();
    let g = part(B + 4 * P, 2, RW, anon());
    c.run(|| s.move_range_growing(va(A + 8 * P), 4 * P, va(B), &g, false))
        .unwrap();
    assert_accounts(&sim, &s);
    assert_eq!(c.read_u64(va(B + P)).unwrap(), 9);
    assert_eq!(c.read_u64(va(B + 5 * P)).unwrap(), 0);
    // Over a target sticking out at both ends: cut there, its pages in
    // between gone.
    let (sim, s, mut c) = setup(1);
    s.area_create(va(A), 4 * P, RW).unwrap();
    s.area_create_with(va(A + 4 * P), P, RW, AreaAttrs::empty(), guard())
        .unwrap();
    s.area_create(va(B - 2 * P), 12 * P, R).unwrap();
    c.write_u64(va(A), 1).unwrap();
    c.read_u64(va(B + 7 * P)).unwrap();
    c.read_u64(va(B + 9 * P)).unwrap();
    let g = part(B + 5 * P, 3, RW, anon());
    c.run(|| s.move_range_growing(va(A), 5 * P, va(B), &g, true))
        .unwrap();
    assert_accounts(&sim, &s);
    assert_eq!(c.read_u64(va(B)).unwrap(), 1);
    assert_eq!(c.read_u64(va(B + 7 * P)).unwrap(), 0);
    assert_eq!(s.area(va(B + 9 * P)).map(|a| a.flags), Some(R));
    // Onto the moved area's own upper part, growing, then leaving.
    for leaving in [false, true] {
        let (sim, s, mut c) = setup(1);
        s.area_create(va(A), 10 * P, RW).unwrap();
        fill(&mut c, A, 10, 1);
        if leaving {
            let left = [part(A, 2, RW, anon())];
            c.run(|| s.move_range_leaving_as(va(A), 2 * P, va(A + 2 * P), true, &left))
                .unwrap();
            assert_eq!(c.read_u64(va(A)).unwrap(), 0);
            assert_eq!(c.read_u64(va(A + 4 * P)).unwrap(), 1004);
        } else {
            let g = part(A + 4 * P, 2, R, anon());
            c.run(|| s.move_range_growing(va(A), 2 * P, va(A + 2 * P), &g, true))
                .unwrap();
            assert!(c.read_u64(va(A)).is_err());
            assert_eq!(c.read_u64(va(A + 4 * P)).unwrap(), 0);
            assert_eq!(c.read_u64(va(A + 6 * P)).unwrap(), 1006);
        }
        assert_eq!(c.read_u64(va(A + 3 * P)).unwrap(), 1001);
        assert_accounts(&sim, &s);
    }
    // Leaving over a target area.
    let (sim, s, mut c) = setup(1);
    s.area_create(va(A), 2 * P, RW).unwrap();
    s.area_create_with(va(A + 2 * P), P, RW, AreaAttrs::empty(), guard())
        .unwrap();
    s.area_create(va(A + 3 * P), 3 * P, RW).unwrap();
    s.area_create(va(B - P), 4 * P, R).unwrap();
    c.write_u64(va(A + 4 * P), 4).unwrap();
    c.read_u64(va(B)).unwrap();
    let left = [part(A + P, 5, RW, anon())];
    c.run(|| s.move_range_leaving_as(va(A + P), 5 * P, va(B), true, &left))
        .unwrap();
    assert_accounts(&sim, &s);
    assert_eq!(c.read_u64(va(B + 3 * P)).unwrap(), 4);
    assert!(c.read_u64(va(B + P)).is_err(), "the guard page moved");
    assert_eq!(c.read_u64(va(A + 4 * P)).unwrap(), 0);
    // A share destination grows by an area of its own: only the growth
    // reserves, and the shared pages stay shared.
    let (sim, s0, mut c0) = setup(2);
    let s1 = sim.system().create().unwrap();
    let mut c1 = sim.cpu(1);
    c1.switch_to(&s1).unwrap();
    s0.area_create(va(A), 4 * P, RW).unwrap();
    c0.write_u64(va(A), 10).unwrap();
    s0.area_share(va(A), 4 * P, &s1, va(B), RW).unwrap();
    let committed = sim.system().reserve().committed();
    let to = B + 0x10_0000;
    let g = part(to + 4 * P, 2, RW, anon());
    c1.run(|| s1.move_range_growing(va(B), 4 * P, va(to), &g, false))
        .unwrap();
    assert_eq!(sim.system().reserve().committed(), committed + 2);
    c1.write_u64(va(to + P), 7).unwrap();
    assert_eq!(c0.read_u64(va(A + P)).unwrap(), 7, "still shared");
    assert_eq!(c1.read_u64(va(to)).unwrap(), 10);
    c1.write_u64(va(to + 5 * P), 5).unwrap();
    c1.run(|| s1.unmap_range(va(to), 6 * P)).unwrap();
    assert_eq!(sim.system().reserve().committed(), committed);
}
