//! Areas that split and merge, and the range operations built on them
//! (`unmap_range`, `protect_range`, `move_range`, `discard_range`): data
//! read back through the simulated MMU, frames and reservations counted,
//! TLBs checked for stale entries, and every operation refused at each
//! frame allocation in turn leaving the state as it was.

use std::sync::Arc;

use aspace::backend::elf::{ElfBackend, ElfImage, Segment};
use aspace::{AreaFlags, Cpus, Error, FaultReason, Page, PageFlags, VirtAddr, PAGE_SIZE};
use aspace_sim::{Cpu, Sim, SimConfig, Space};

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

/// Every TLB entry of every CPU tagged with `space`'s ASID matches what the
/// page table maps now, with no more rights.
fn assert_no_stale(sim: &Sim, space: &Space) {
    let Some(asid) = space.asid() else { return };
    let hw = sim.hardware();
    for cpu in 0..hw.cpu_count() {
        for e in hw.tlb_entries(cpu) {
            if e.asid != asid || e.global {
                continue;
            }
            let now = space.translate(e.page);
            let Some((frame, flags)) = now else {
                panic!("CPU {cpu}: TLB entry {e:?} for an unmapped page");
            };
            assert_eq!(frame, e.frame, "CPU {cpu}: TLB entry {e:?} names another frame");
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

fn setup(cpus: usize) -> (Sim, Arc<Space>, Cpu) {
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
    let before: Vec<_> = (0..8).map(|i| s.translate(Page::from_number(A / P + i))).collect();
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
    let after: Vec<_> = (0..8).map(|i| s.translate(Page::from_number(A / P + i))).collect();
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
    assert_eq!((info[0].resident, info[0].reserved, info[0].offset), (8, 8, 0));
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
    String::from_utf8_lossy(&buf).trim_end_matches('\0').to_string()
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
            Arc::new(ElfBackend::new(image.clone(), seg)),
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
    image.release(sim.system().machine()).unwrap();
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
    assert!(Arc::ptr_eq(&share, &s0.share_info(va(A + 3 * P)).unwrap()));
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
    assert!(a[0].flags.contains(AreaFlags::GROWS_DOWN | AreaFlags::GUARD));
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
