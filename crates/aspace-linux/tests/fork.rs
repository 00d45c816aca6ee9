//! `LinuxMm::fork`: private mappings (anonymous, heap, private file
//! mappings) are copied on write, shared ones stay shared, the child's
//! calls leave the parent alone, and every frame comes back.

mod common;

use aspace::{VirtAddr, PAGE_SIZE};
use aspace_linux::consts::*;
use aspace_linux::mm::LinuxMm;
use aspace_linux::{Advice, FileRef, MapFlags, Prot};
use aspace_sim::{Cpu, Sim, SimMachine};
use common::BASE;

fn va(a: u64) -> VirtAddr {
    VirtAddr::new(a)
}

/// Gives every CPU, process and frame back: no frame but the baseline's,
/// nothing reserved, no stale access.
fn finish(sim: Sim, mms: [LinuxMm<SimMachine>; 2], cpus: [Cpu; 2], baseline: u64) {
    for mut c in cpus {
        c.idle();
    }
    drop(mms);
    assert_eq!(sim.frames_in_use(), baseline);
    assert_eq!(sim.system().reserve().committed(), 0);
    assert_eq!(sim.hardware().stats().stale_accesses, 0);
}

fn setup() -> (Sim, LinuxMm<SimMachine>, Cpu, Cpu) {
    let (sim, mm, cpu) = common::setup();
    let other = sim.cpu(1);
    (sim, mm, cpu, other)
}

/// A store as a kernel's fault path makes it: the core resolves every
/// fault (a private file page's first write copies it), and the Linux map
/// hears of the write (its `anon_vma`).
fn store(mm: &mut LinuxMm<SimMachine>, cpu: &mut Cpu, addr: u64, value: u64) {
    cpu.write_u64(va(addr), value)
        .unwrap_or_else(|f| panic!("write at {addr:#x} refused: {f:?}"));
    mm.touched(addr, true);
}

#[test]
fn fork_copies_private_mappings_on_write_and_shares_shared_ones() {
    let (sim, mut mm, mut c0, mut c1) = setup();
    // The kernel's page table only.
    let baseline = sim.frames_in_use() - mm.space().page_table_frames();
    let f = FileRef("F".into());
    let (anon, shared, private) = (BASE, BASE + 0x10_0000, BASE + 0x20_0000);
    let fixed = |bits| MapFlags(bits | MAP_FIXED);
    c0.run(|| {
        mm.mmap(
            anon,
            4 * PAGE_SIZE,
            Prot::RW,
            fixed(MAP_PRIVATE | MAP_ANONYMOUS),
            None,
            0,
        )
    })
    .unwrap();
    c0.run(|| {
        mm.mmap(
            shared,
            2 * PAGE_SIZE,
            Prot::RW,
            fixed(MAP_SHARED),
            Some(&f),
            0,
        )
    })
    .unwrap();
    c0.run(|| {
        mm.mmap(
            private,
            2 * PAGE_SIZE,
            Prot::RW,
            fixed(MAP_PRIVATE),
            Some(&f),
            0,
        )
    })
    .unwrap();
    store(&mut mm, &mut c0, anon, 1);
    store(&mut mm, &mut c0, shared, 2);
    store(&mut mm, &mut c0, shared + PAGE_SIZE, 3);
    // The private file mapping: page 0 copied, page 1 still the file's.
    store(&mut mm, &mut c0, private, 4);
    assert_eq!(c0.read_u64(va(private + PAGE_SIZE)).unwrap(), 3);
    let brk = c0.run(|| mm.brk(0));
    c0.run(|| mm.brk(brk + PAGE_SIZE));
    store(&mut mm, &mut c0, brk, 5);

    let allocated = sim.hardware().frames().stats().allocated;
    let mut child = c0.run(|| mm.fork()).unwrap();
    let tables = child.space().page_table_frames();
    assert_eq!(
        sim.hardware().frames().stats().allocated - allocated,
        tables,
        "a fork allocates page tables only"
    );
    assert_eq!(child.maps(), mm.maps());
    assert_eq!(child.brk_now(), mm.brk_now());
    c1.switch_to(child.space()).unwrap();
    for (a, v) in [
        (anon, 1),
        (shared, 2),
        (private, 4),
        (private + PAGE_SIZE, 3),
        (brk, 5),
    ] {
        assert_eq!(c1.read_u64(va(a)).unwrap(), v, "child at {a:#x}");
    }
    // Private: the child's writes stay its own, and the parent's too.
    store(&mut child, &mut c1, anon, 10);
    store(&mut child, &mut c1, private, 40);
    store(&mut child, &mut c1, private + PAGE_SIZE, 30);
    store(&mut child, &mut c1, brk, 50);
    store(&mut mm, &mut c0, anon + 8, 11);
    assert_eq!(c0.read_u64(va(anon)).unwrap(), 1);
    assert_eq!(c1.read_u64(va(anon + 8)).unwrap(), 0);
    assert_eq!(c0.read_u64(va(private)).unwrap(), 4);
    assert_eq!(c0.read_u64(va(brk)).unwrap(), 5);
    // Shared: one file, seen by both.
    store(&mut child, &mut c1, shared, 20);
    assert_eq!(c0.read_u64(va(shared)).unwrap(), 20);
    assert_eq!(
        c0.read_u64(va(private + PAGE_SIZE)).unwrap(),
        3,
        "the parent's private page still shows the file's bytes"
    );
    // The child's calls change only the child.
    c1.run(|| child.munmap(anon, 4 * PAGE_SIZE)).unwrap();
    c1.run(|| child.mprotect(private, 2 * PAGE_SIZE, Prot::R))
        .unwrap();
    assert_eq!(c0.read_u64(va(anon)).unwrap(), 1);
    store(&mut mm, &mut c0, private, 41);
    assert_eq!(c1.read_u64(va(private)).unwrap(), 40);
    assert_ne!(child.maps(), mm.maps());
    // Everything back once both are gone (the last gives the file's
    // frames back, whoever holds a handle on it).
    let file = mm.file("F").unwrap();
    c1.idle();
    c0.idle();
    drop(child);
    drop(mm);
    assert_eq!(file.resident(), 0);
    drop(file);
    assert_eq!(sim.frames_in_use(), baseline);
    assert_eq!(sim.system().reserve().committed(), 0);
    assert_eq!(sim.hardware().stats().stale_accesses, 0);
}

/// `MADV_REMOVE` after a fork reaches the other process as on Linux: a
/// hole punched through the parent takes the object's pages out of the
/// child's mappings too (its shared mapping reads zeros, its private file
/// mapping too where it still borrowed the file's page, not where it made
/// its own copy), and the other way round; every frame comes back. Checked
/// on Linux 6.18 (a `MAP_SHARED` `memfd` and a `MAP_SHARED|MAP_ANONYMOUS`
/// mapping, `fork`, `MADV_REMOVE` in one process, reads in the other).
#[test]
fn madvise_remove_after_fork_reaches_the_other_process() {
    let (sim, mut mm, mut c0, mut c1) = setup();
    let baseline = sim.frames_in_use() - mm.space().page_table_frames();
    let f = FileRef("F".into());
    let (shared, file, private) = (BASE, BASE + 0x10_0000, BASE + 0x20_0000);
    let fixed = |bits| MapFlags(bits | MAP_FIXED);
    c0.run(|| {
        mm.mmap(
            shared,
            2 * PAGE_SIZE,
            Prot::RW,
            fixed(MAP_SHARED | MAP_ANONYMOUS),
            None,
            0,
        )
    })
    .unwrap();
    c0.run(|| {
        mm.mmap(
            file,
            2 * PAGE_SIZE,
            Prot::RW,
            fixed(MAP_SHARED),
            Some(&f),
            0,
        )
    })
    .unwrap();
    c0.run(|| {
        mm.mmap(
            private,
            2 * PAGE_SIZE,
            Prot::RW,
            fixed(MAP_PRIVATE),
            Some(&f),
            0,
        )
    })
    .unwrap();
    store(&mut mm, &mut c0, shared, 1);
    store(&mut mm, &mut c0, shared + PAGE_SIZE, 2);
    store(&mut mm, &mut c0, file, 3);
    store(&mut mm, &mut c0, file + PAGE_SIZE, 4);
    let mut child = c0.run(|| mm.fork()).unwrap();
    c1.switch_to(child.space()).unwrap();
    assert_eq!(c1.read_u64(va(shared)).unwrap(), 1);
    // The child's private file mapping: its first page borrowed (read),
    // its second its own copy (written).
    assert_eq!(c1.read_u64(va(private)).unwrap(), 3);
    store(&mut child, &mut c1, private + PAGE_SIZE, 40);
    let remove = Advice(MADV_REMOVE);
    // Through the parent: both processes' shared pages go.
    c0.run(|| mm.madvise(shared, PAGE_SIZE, remove)).unwrap();
    assert_eq!(c0.read_u64(va(shared)).unwrap(), 0);
    assert_eq!(
        c1.read_u64(va(shared)).unwrap(),
        0,
        "the child's shared page"
    );
    assert_eq!(
        c1.read_u64(va(shared + PAGE_SIZE)).unwrap(),
        2,
        "outside the hole"
    );
    // Through the child: the file's pages, in the parent too, and in the
    // child's private mapping where it borrowed them.
    c1.run(|| child.madvise(file, 2 * PAGE_SIZE, remove))
        .unwrap();
    assert_eq!(c0.read_u64(va(file)).unwrap(), 0, "the parent's file page");
    assert_eq!(c0.read_u64(va(file + PAGE_SIZE)).unwrap(), 0);
    assert_eq!(c1.read_u64(va(private)).unwrap(), 0, "a borrowed page");
    assert_eq!(
        c1.read_u64(va(private + PAGE_SIZE)).unwrap(),
        40,
        "the child's own copy"
    );
    // A write after the hole is shared again.
    store(&mut mm, &mut c0, shared, 9);
    assert_eq!(c1.read_u64(va(shared)).unwrap(), 9);
    finish(sim, [mm, child], [c0, c1], baseline);
}

/// A process that ends leaves the objects it shares with its `fork`
/// family to the others: a shared anonymous page and a file page the child
/// wrote (the parent never mapped them) are still there for the parent
/// after the child is gone, and the other way round; the last process
/// gives the frames back (every frame comes back).
#[test]
fn an_ended_process_leaves_shared_objects_to_the_others() {
    for child_first in [true, false] {
        let (sim, mut mm, mut c0, mut c1) = setup();
        let baseline = sim.frames_in_use() - mm.space().page_table_frames();
        let f = FileRef("F".into());
        let (shared, file) = (BASE, BASE + 0x10_0000);
        let fixed = |bits| MapFlags(bits | MAP_FIXED);
        c0.run(|| {
            mm.mmap(
                shared,
                2 * PAGE_SIZE,
                Prot::RW,
                fixed(MAP_SHARED | MAP_ANONYMOUS),
                None,
                0,
            )
        })
        .unwrap();
        c0.run(|| {
            mm.mmap(
                file,
                2 * PAGE_SIZE,
                Prot::RW,
                fixed(MAP_SHARED),
                Some(&f),
                0,
            )
        })
        .unwrap();
        let mut child = c0.run(|| mm.fork()).unwrap();
        c1.switch_to(child.space()).unwrap();
        // Pages only one process ever mapped, in the object and the file.
        store(&mut child, &mut c1, shared + PAGE_SIZE, 21);
        store(&mut child, &mut c1, file + PAGE_SIZE, 22);
        store(&mut mm, &mut c0, shared, 11);
        store(&mut mm, &mut c0, file, 12);
        let (mut stays, mut cpu, mut other_cpu) = if child_first {
            c1.idle();
            drop(child);
            (mm, c0, c1)
        } else {
            c0.idle();
            drop(mm);
            (child, c1, c0)
        };
        for (at, v) in [
            (shared, 11),
            (shared + PAGE_SIZE, 21),
            (file, 12),
            (file + PAGE_SIZE, 22),
        ] {
            assert_eq!(
                cpu.read_u64(va(at)).unwrap(),
                v,
                "at {at:#x}, child gone first: {child_first}"
            );
        }
        // And it goes on using them.
        store(&mut stays, &mut cpu, shared + PAGE_SIZE, 31);
        cpu.run(|| stays.munmap(shared, 2 * PAGE_SIZE)).unwrap();
        cpu.idle();
        other_cpu.idle();
        drop(stays);
        assert_eq!(
            sim.frames_in_use(),
            baseline,
            "child gone first: {child_first}"
        );
        assert_eq!(sim.system().reserve().committed(), 0);
    }
}

/// A child that ended is no longer reached: the parent's `MADV_REMOVE`
/// goes on alone, and the next `fork` drops the child's entry.
#[test]
fn madvise_remove_after_the_child_ended() {
    let (sim, mut mm, mut c0, _c1) = setup();
    let baseline = sim.frames_in_use() - mm.space().page_table_frames();
    let shared = BASE;
    c0.run(|| {
        mm.mmap(
            shared,
            PAGE_SIZE,
            Prot::RW,
            MapFlags(MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED),
            None,
            0,
        )
    })
    .unwrap();
    store(&mut mm, &mut c0, shared, 1);
    let child = c0.run(|| mm.fork()).unwrap();
    drop(child);
    c0.run(|| mm.madvise(shared, PAGE_SIZE, Advice(MADV_REMOVE)))
        .unwrap();
    assert_eq!(c0.read_u64(va(shared)).unwrap(), 0);
    let second = c0.run(|| mm.fork()).unwrap();
    drop(second);
    c0.idle();
    drop(mm);
    assert_eq!(sim.frames_in_use(), baseline);
}

/// `MADV_DONTFORK` leaves its range out of the child, `MADV_WIPEONFORK`
/// gives it to the child empty; the parent keeps both as they were, the
/// rest of the mapping is copied as usual, and every frame comes back.
#[test]
fn fork_leaves_out_dontfork_ranges_and_wipes_wipeonfork_ones() {
    let (sim, mut mm, mut c0, mut c1) = setup();
    let baseline = sim.frames_in_use() - mm.space().page_table_frames();
    let anon = MapFlags(MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED);
    c0.run(|| mm.mmap(BASE, 8 * PAGE_SIZE, Prot::RW, anon, None, 0))
        .unwrap();
    for i in 0..8 {
        store(&mut mm, &mut c0, BASE + i * PAGE_SIZE, 100 + i);
    }
    let page = |i: u64| BASE + i * PAGE_SIZE;
    c0.run(|| mm.madvise(page(2), 2 * PAGE_SIZE, Advice(MADV_DONTFORK)))
        .unwrap();
    c0.run(|| mm.madvise(page(5), 2 * PAGE_SIZE, Advice(MADV_WIPEONFORK)))
        .unwrap();
    // The hints split the mapping: [0,2) [2,4) dontfork, [4,5), [5,7)
    // wipe-on-fork, [7,8).
    assert_eq!(mm.maps().len(), 5);
    let frames = sim.frames_in_use();
    let mut child = c0.run(|| mm.fork()).unwrap();
    // The dontfork range is gone from the child, the rest is there.
    let spans: Vec<(u64, u64)> = child.vmas().map(|v| (v.start, v.end)).collect();
    assert_eq!(
        spans,
        [
            (page(0), page(2)),
            (page(4), page(5)),
            (page(5), page(7)),
            (page(7), page(8))
        ]
    );
    c1.switch_to(child.space()).unwrap();
    for i in [0, 1, 4, 7] {
        assert_eq!(c1.read_u64(va(page(i))).unwrap(), 100 + i, "child page {i}");
    }
    for i in [2, 3] {
        assert!(
            c1.read_u64(va(page(i))).is_err(),
            "child page {i} is not mapped"
        );
    }
    for i in [5, 6] {
        assert_eq!(c1.read_u64(va(page(i))).unwrap(), 0, "child page {i} wiped");
    }
    assert!(child.vma_at(page(5)).is_some_and(|v| v.anon.is_none()));
    // The child shares no frame of the ranges it did not get.
    let child_tables = child.space().page_table_frames();
    assert_eq!(
        sim.frames_in_use() - frames,
        child_tables + 2,
        "only the child's tables and its two zero-filled pages are new"
    );
    // The parent's pages are all there, and its writes stay its own.
    for i in 0..8 {
        assert_eq!(
            c0.read_u64(va(page(i))).unwrap(),
            100 + i,
            "parent page {i}"
        );
    }
    store(&mut mm, &mut c0, page(2), 7);
    store(&mut child, &mut c1, page(0), 9);
    assert_eq!(c0.read_u64(va(page(0))).unwrap(), 100);
    // The hints stay with the parent's mappings; DOFORK clears one.
    c0.run(|| mm.madvise(page(2), 2 * PAGE_SIZE, Advice(MADV_DOFORK)))
        .unwrap();
    c0.run(|| mm.madvise(page(5), 2 * PAGE_SIZE, Advice(MADV_KEEPONFORK)))
        .unwrap();
    assert_eq!(mm.maps().len(), 1, "no hint left: one mapping again");
    finish(sim, [mm, child], [c0, c1], baseline);
}

/// A forked child's mappings are not locked (Linux's `dup_mmap`), and it
/// can drop the pages the parent keeps locked.
#[test]
fn a_forked_child_is_not_locked() {
    let (_sim, mut mm, mut c0, mut c1) = setup();
    let anon = MapFlags(MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED);
    c0.run(|| mm.mmap(BASE, 4 * PAGE_SIZE, Prot::RW, anon, None, 0))
        .unwrap();
    store(&mut mm, &mut c0, BASE, 5);
    c0.run(|| mm.mlock(BASE, 4 * PAGE_SIZE, aspace_linux::LockFlags(0)))
        .unwrap();
    let mut child = c0.run(|| mm.fork()).unwrap();
    assert!(child.vmas().all(|v| v.flags.is_empty()));
    c1.switch_to(child.space()).unwrap();
    assert_eq!(
        c1.run(|| child.madvise(BASE, PAGE_SIZE, Advice::DONTNEED)),
        Ok(())
    );
    assert_eq!(c1.read_u64(va(BASE)).unwrap(), 0);
    assert_eq!(
        c0.run(|| mm.madvise(BASE, PAGE_SIZE, Advice::DONTNEED)),
        Err(aspace_linux::Errno::EINVAL)
    );
    assert_eq!(c0.read_u64(va(BASE)).unwrap(), 5);
    c1.idle();
}

/// Linux 6.18 keeps a child's mapping whose `anon_vma` came with the fork
/// from merging with a neighbour that has none (`vma_had_uncowed_parents`):
/// the child's heap grows by a mapping of its own, and a new mapping next
/// to a written one stays apart, where the parent's merge (checked against
/// Linux with small C programs).
#[test]
fn a_childs_inherited_anon_vma_does_not_merge_with_fresh_memory() {
    let (_sim, mut mm, mut c0, mut c1) = setup();
    let anon = MapFlags(MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED);
    c0.run(|| mm.mmap(BASE, 2 * PAGE_SIZE, Prot::RW, anon, None, 0))
        .unwrap();
    store(&mut mm, &mut c0, BASE, 1);
    let brk = c0.run(|| mm.brk(0));
    c0.run(|| mm.brk(brk + PAGE_SIZE));
    store(&mut mm, &mut c0, brk, 2);
    let mut child = c0.run(|| mm.fork()).unwrap();
    c1.switch_to(child.space()).unwrap();
    for m in [&mut mm, &mut child] {
        let cpu = if m.vma_at(BASE).unwrap().anon.unwrap().inherited {
            &mut c1
        } else {
            &mut c0
        };
        cpu.run(|| m.brk(brk + 2 * PAGE_SIZE));
        cpu.run(|| m.mmap(BASE + 2 * PAGE_SIZE, PAGE_SIZE, Prot::RW, anon, None, 0))
            .unwrap();
    }
    // The parent: one heap, one anonymous mapping.
    assert_eq!(mm.maps().len(), 2, "{:?}", mm.maps());
    // The child: each split where fresh memory met inherited memory.
    assert_eq!(child.maps().len(), 4, "{:?}", child.maps());
    c1.idle();
}

/// A guard page stays one in the child, but not in a `MADV_WIPEONFORK`
/// range (Linux copies no page table entry there: the child's page reads
/// zero); the parent keeps both, and every frame and reservation comes
/// back.
#[test]
fn a_childs_wipeonfork_range_has_no_guard_page() {
    let (sim, mut mm, mut c0, mut c1) = setup();
    let baseline = sim.frames_in_use() - mm.space().page_table_frames();
    let anon = MapFlags(MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED);
    let page = |i: u64| BASE + i * PAGE_SIZE;
    c0.run(|| mm.mmap(BASE, 8 * PAGE_SIZE, Prot::RW, anon, None, 0))
        .unwrap();
    for i in 0..8 {
        store(&mut mm, &mut c0, page(i), 100 + i);
    }
    c0.run(|| mm.madvise(page(4), 4 * PAGE_SIZE, Advice(MADV_WIPEONFORK)))
        .unwrap();
    for i in [1, 5] {
        c0.run(|| mm.madvise(page(i), PAGE_SIZE, Advice(MADV_GUARD_INSTALL)))
            .unwrap();
    }
    let child = c0.run(|| mm.fork()).unwrap();
    assert_eq!(
        child.maps(),
        mm.maps(),
        "the same mappings (guard pages do not show)"
    );
    assert!(
        child.is_guard(page(1)),
        "a guard page outside the range stays"
    );
    assert!(!child.is_guard(page(5)), "none in the wiped range");
    c1.switch_to(child.space()).unwrap();
    assert!(c1.read_u64(va(page(1))).is_err());
    for i in 4..8 {
        assert_eq!(c1.read_u64(va(page(i))).unwrap(), 0, "child page {i} wiped");
    }
    assert_eq!(c1.read_u64(va(page(0))).unwrap(), 100);
    // The parent keeps both guard pages and its data.
    assert!(mm.is_guard(page(1)) && mm.is_guard(page(5)));
    assert!(c0.read_u64(va(page(5))).is_err());
    assert_eq!(c0.read_u64(va(page(6))).unwrap(), 106);
    finish(sim, [mm, child], [c0, c1], baseline);
}
