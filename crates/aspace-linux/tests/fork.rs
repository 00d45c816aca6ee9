//! `LinuxMm::fork`: private mappings (anonymous, heap, private file
//! mappings) are copied on write, shared ones stay shared, the child's
//! calls leave the parent alone, and every frame comes back.

mod common;

use aspace::{VirtAddr, PAGE_SIZE};
use aspace_linux::consts::*;
use aspace_linux::mm::LinuxMm;
use aspace_linux::{FileRef, MapFlags, Prot};
use aspace_sim::{Cpu, Sim, SimMachine};
use common::BASE;

fn va(a: u64) -> VirtAddr {
    VirtAddr::new(a)
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
    // Everything back once both are gone and the file is dropped.
    let file = mm.file("F");
    c1.idle();
    c0.idle();
    drop(child);
    drop(mm);
    file.release(sim.hardware().frames());
    assert_eq!(sim.frames_in_use(), baseline);
    assert_eq!(sim.system().reserve().committed(), 0);
    assert_eq!(sim.hardware().stats().stale_accesses, 0);
}
