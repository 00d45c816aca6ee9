//! Every operation is all or nothing when the heap runs out, too: the
//! core's heap allocations in an operation are fallible and made before it
//! changes anything. For each operation the test heap ([`FailingHeap`],
//! this binary's global allocator) refuses the operation's n-th heap
//! allocation and every later one, for n = 0, 1, 2, ... until the operation
//! succeeds; each refusal must be `Error::NoMemory` with the whole
//! observable state (areas, used space, page tables, share records, frame
//! counts and reference counts, ASIDs, TLB contents, reservations) as it
//! was. An infallible allocation hit while refusing aborts this binary
//! ("memory allocation failed"); run with `ASPACE_HEAP_TRACE=1` to see a
//! backtrace of each refusal, the last one before the abort naming it.

use aspace::TryArc;

use aspace::backend::elf::{ElfBackend, ElfImage, Segment};
use aspace::system::{Config, System};
use aspace::{
    loader, Access, AreaAttrs, AreaFlags, Error, FaultContext, FaultOutcome, FaultReason,
    Placement, VirtAddr, PAGE_SIZE,
};
use aspace_sim::heap::{self, FailingHeap};
use aspace_sim::pager::SimPager;
use aspace_sim::{Cpu, Sim, SimConfig, SimHardware, SimMachine, SpaceHandle};

mod common;
use aspace_sim::snapshot::{state, State};

#[global_allocator]
static HEAP: FailingHeap = FailingHeap;

const RW: AreaFlags = AreaFlags::READ.union(AreaFlags::WRITE);
/// A four-page area with three pages resident, shared into space 1 at `B`.
const A: u64 = 0x40_0000;
/// A two-page area with one page resident.
const A1: u64 = 0x50_0000;
/// An eight-page area with six pages resident, for the range operations.
const A2: u64 = 0x60_0000;
/// Where space 1 sees the share of `A`.
const B: u64 = 0x80_0000;
/// Free in every space.
const FREE: u64 = 0x100_0000;
/// Where an ELF segment goes.
const ELF: u64 = 0x200_0000;

fn va(a: u64) -> VirtAddr {
    VirtAddr::new(a)
}

fn pages(n: u64) -> u64 {
    n * PAGE_SIZE
}

/// A machine, the spaces whose state is compared and CPUs running them.
struct World {
    sim: Sim,
    spaces: Vec<SpaceHandle>,
    cpus: Vec<Cpu>,
    images: Vec<TryArc<ElfImage>>,
    /// A backend made beforehand, for an operation to use.
    elf: Option<aspace::BackendRef<aspace_sim::PhysMem, aspace_sim::FramePool>>,
    /// A user-space pager serving an area.
    pager: Option<SimPager>,
}

impl World {
    fn state(&self) -> State {
        let refs: Vec<&SpaceHandle> = self.spaces.iter().collect();
        state(&self.sim, &refs)
    }

    fn s(&self, i: usize) -> &SpaceHandle {
        &self.spaces[i]
    }
}

fn sim() -> Sim {
    Sim::new(SimConfig {
        arch: common::arch(),
        cpus: 2,
        asids: 4,
        memory: 4 << 20,
        tlb_entries: 64,
    })
    .unwrap()
}

/// Space 0 runs on CPU 0 with the areas `A` (shared into space 1, which
/// runs on CPU 1, at `B`), `A1` and `A2`; space 2 is empty and runs
/// nowhere; the TLBs hold entries.
fn populated() -> World {
    let sim = sim();
    let s: Vec<_> = (0..3).map(|_| sim.system().create().unwrap()).collect();
    let mut c0 = sim.cpu(0);
    let mut c1 = sim.cpu(1);
    c0.switch_to(&s[0]).unwrap();
    c1.switch_to(&s[1]).unwrap();
    s[0].area_create(va(A), pages(4), RW).unwrap();
    s[0].area_create(va(A1), pages(2), RW).unwrap();
    s[0].area_create(va(A2), pages(8), RW).unwrap();
    for i in 0..3 {
        c0.write_u64(va(A + pages(i)), 100 + i).unwrap();
    }
    c0.write_u64(va(A1), 7).unwrap();
    for i in 0..6 {
        c0.write_u64(va(A2 + pages(i)), 200 + i).unwrap();
    }
    s[0].area_share(va(A), pages(4), &s[1], va(B), RW).unwrap();
    assert_eq!(c1.read_u64(va(B + PAGE_SIZE)).unwrap(), 101);
    World {
        sim,
        spaces: s,
        cpus: vec![c0, c1],
        images: Vec::new(),
        elf: None,
        pager: None,
    }
}

/// [`populated`] with an area at `FREE` of 64 pages, every fourth one
/// resident (16 runs, a full leaf of the used space's tree).
fn sparse() -> World {
    let mut w = populated();
    w.s(0).area_create(va(FREE), pages(64), RW).unwrap();
    for i in (0..64).step_by(4) {
        w.cpus[0].write_u64(va(FREE + pages(i)), i).unwrap();
    }
    w
}

/// [`populated`] with a read-only reserve-on-write area at `FREE` of 16
/// pages (pages 0, 2, 4 and 6 read in: one page reserved each) and a
/// read-only one of 4 pages right above it.
fn reserve_on_write() -> World {
    let mut w = populated();
    let late = AreaFlags::READ | AreaFlags::LATE_RESERVE | AreaFlags::RESERVE_ON_WRITE;
    w.s(0).area_create(va(FREE), pages(16), late).unwrap();
    for i in 0..4 {
        w.cpus[0].read_u64(va(FREE + pages(2 * i))).unwrap();
    }
    w.s(0)
        .area_create(va(FREE + pages(16)), pages(4), AreaFlags::READ)
        .unwrap();
    w
}

/// [`sparse`] with the area shared into space 1 at the same address, where
/// 15 more pages were touched since (31 pages in the share's page map).
fn shared_sparse() -> World {
    let mut w = sparse();
    w.s(0)
        .area_share(va(FREE), pages(64), w.s(1), va(FREE), RW)
        .unwrap();
    for i in 0..15 {
        w.cpus[1].write_u64(va(FREE + pages(4 * i + 2)), i).unwrap();
    }
    w
}

/// [`populated`] with `A2` split in two at its fifth page.
fn split_world() -> World {
    let w = populated();
    w.s(0).area_split(va(A2 + pages(4))).unwrap();
    w
}

/// `populated` with pages 1 to 3 of the area at `A2` made read-only: three
/// areas, which a change back to read-write merges into one again; pages
/// 2 and 5 given back first, so the joined used space has several runs
/// (room the heap must give).
fn protected_middle() -> World {
    let w = populated();
    for p in [2, 5] {
        w.s(0).discard_range(va(A2 + pages(p)), pages(1)).unwrap();
    }
    w.s(0)
        .protect_range(va(A2 + pages(1)), pages(3), AreaFlags::READ)
        .unwrap();
    w
}

/// `populated` with three anonymous areas made apart at `FREE`: one
/// read-write page (written), one read-only page, and 16 read-write pages
/// with every other one written. Made read-write, the middle one merges
/// with both, and the first takes in nine runs (room from the heap).
fn three_apart() -> World {
    let mut w = populated();
    let s = w.s(0).clone();
    s.area_create(va(FREE), pages(1), RW).unwrap();
    s.area_create(va(FREE + pages(1)), pages(1), AreaFlags::READ)
        .unwrap();
    s.area_create(va(FREE + pages(2)), pages(16), RW).unwrap();
    w.cpus[0].write_u64(va(FREE), 1).unwrap();
    for i in (0..16).step_by(2) {
        w.cpus[0]
            .write_u64(va(FREE + pages(2 + i)), 300 + i)
            .unwrap();
    }
    w
}

/// A small executable: a read-only page of text at 0x70_0000 and a
/// writable data segment of two pages (one from the file) at 0x70_2000.
fn elf_bytes() -> Vec<u8> {
    let mut b = vec![0u8; 3 * PAGE_SIZE as usize];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2; // 64-bit
    b[5] = 1; // little-endian
    b[6] = 1; // version
    let put16 = |b: &mut [u8], at: usize, v: u16| b[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put32 = |b: &mut [u8], at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let put64 = |b: &mut [u8], at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    put16(&mut b, 0x10, 2); // ET_EXEC
    put16(&mut b, 0x12, 62); // EM_X86_64
    put32(&mut b, 0x14, 1);
    put64(&mut b, 0x18, 0x70_0000); // entry
    put64(&mut b, 0x20, 64); // program headers
    put16(&mut b, 0x34, 64); // header size
    put16(&mut b, 0x36, 56); // program header size
    put16(&mut b, 0x38, 2); // program headers
    for (i, (flags, offset, vaddr, filesz, memsz)) in [
        (4u32 | 1, PAGE_SIZE, 0x70_0000u64, PAGE_SIZE, PAGE_SIZE),
        (4 | 2, 2 * PAGE_SIZE, 0x70_2000, PAGE_SIZE, 2 * PAGE_SIZE),
    ]
    .into_iter()
    .enumerate()
    {
        let o = 64 + 56 * i;
        put32(&mut b, o, 1); // PT_LOAD
        put32(&mut b, o + 4, flags);
        put64(&mut b, o + 8, offset);
        put64(&mut b, o + 16, vaddr);
        put64(&mut b, o + 24, vaddr);
        put64(&mut b, o + 32, filesz);
        put64(&mut b, o + 40, memsz);
        put64(&mut b, o + 48, PAGE_SIZE);
    }
    b[PAGE_SIZE as usize..][..5].copy_from_slice(b"Hello");
    b[2 * PAGE_SIZE as usize..][..5].copy_from_slice(b"World");
    b
}

/// Runs `op` in a fresh `world()` with the heap refusing the `n`-th
/// allocation and every later one, for n = 0, 1, 2, ... until `op`
/// succeeds without a refusal; every refusal must be `NoMemory` and leave
/// the state as it was, and the world, torn down, must give back every
/// frame and reservation. Returns the heap allocations `op` made when it
/// succeeded.
fn inject<T>(
    name: &str,
    world: impl Fn() -> World,
    op: impl Fn(&mut World) -> Result<T, Error>,
) -> u64 {
    let baseline = sim().frames_in_use();
    for n in 0..256 {
        let mut w = world();
        let before = w.state();
        let (result, (made, refused)) = heap::refusing_from(n, || op(&mut w));
        match result {
            Ok(v) => {
                drop(v);
                if refused == 0 {
                    eprintln!("{name}: done with {made} heap allocations");
                    teardown(w, baseline);
                    return made;
                }
                // It coped with a refused allocation (a cache it did
                // without): fine, as long as it worked.
                teardown(w, baseline);
            }
            Err(e) => {
                assert_eq!(e, Error::NoMemory, "{name}: refused at allocation {n}");
                assert!(refused > 0, "{name}: {e:?} without a refused allocation");
                let after = w.state();
                assert!(
                    after == before,
                    "{name}: refused at heap allocation {n} and changed the state:\n\
                     before {before:#?}\nafter {after:#?}"
                );
                teardown(w, baseline);
            }
        }
    }
    panic!("{name}: still refused after 256 heap allocations");
}

/// The heap allocations `op` makes in a fresh `world()` when none is
/// refused.
fn count<T>(world: impl Fn() -> World, op: impl Fn(&mut World) -> Result<T, Error>) -> u64 {
    let mut w = world();
    let (r, (made, _)) = heap::refusing_from(u64::MAX - 1, || op(&mut w));
    assert!(r.is_ok());
    drop(r);
    teardown(w, sim().frames_in_use());
    made
}

/// [`inject`] for the refusals of the first `below` allocations only: each
/// must be `NoMemory` with the state as it was.
fn refuse_each<T>(
    name: &str,
    world: impl Fn() -> World,
    op: impl Fn(&mut World) -> Result<T, Error>,
    below: u64,
) {
    let baseline = sim().frames_in_use();
    for n in 0..below {
        let mut w = world();
        let before = w.state();
        let (result, (_, refused)) = heap::refusing_from(n, || op(&mut w));
        let e = result.err();
        assert_eq!(
            e,
            Some(Error::NoMemory),
            "{name}: refused at allocation {n}"
        );
        assert!(refused > 0);
        let after = w.state();
        assert!(
            after == before,
            "{name}: refused at heap allocation {n} and changed the state:\n\
             before {before:#?}\nafter {after:#?}"
        );
        teardown(w, baseline);
    }
}

/// Drops the world and checks it gave back every frame and reservation.
fn teardown(w: World, baseline: u64) {
    let World {
        sim,
        spaces,
        cpus,
        images,
        elf,
        pager,
    } = w;
    drop(elf);
    drop(cpus);
    drop(spaces);
    drop(pager);
    for image in images {
        ElfImage::release(image, sim.system().machine()).expect("no area uses the image any more");
    }
    assert_eq!(sim.hardware().stats().stale_accesses, 0);
    assert_eq!(sim.frames_in_use(), baseline, "frames left behind");
    assert_eq!(
        sim.system().reserve().committed(),
        0,
        "pages still reserved"
    );
}

/// A write fault on `addr` by CPU `cpu`, as the MMU would raise it; a
/// refusal for want of memory is `NoMemory`.
fn fault(w: &World, cpu: usize, addr: u64) -> Result<(), Error> {
    fault_on(w, cpu, addr, Access::Write)
}

/// [`fault`] with the access `access`.
fn fault_on(w: &World, cpu: usize, addr: u64, access: Access) -> Result<(), Error> {
    let space = w.cpus[cpu].current().expect("the CPU runs a space").clone();
    match w.cpus[cpu].run(|| space.page_fault(va(addr), access, FaultContext::User)) {
        FaultOutcome::Ok => Ok(()),
        FaultOutcome::Fault(FaultReason::NoMemory) => Err(Error::NoMemory),
        other => panic!("{access:?} fault at {addr:#x}: {other:?}"),
    }
}

#[test]
fn area_creation() {
    inject("create", populated, |w| {
        w.s(0).area_create(va(FREE), pages(8), RW)
    });
    inject("create anywhere", populated, |w| {
        w.s(0).area_create_anywhere(
            Placement::LowestAbove {
                bound: va(FREE),
                align: PAGE_SIZE,
            },
            pages(4),
            RW,
        )
    });
    inject("create grows down", populated, |w| {
        w.s(0)
            .area_create_grows_down(va(FREE + pages(8)), pages(2), pages(6), RW)
    });
}

#[test]
fn resize_and_destroy() {
    inject("grow", populated, |w| w.s(0).area_resize(va(A1), pages(16)));
    inject("shrink", populated, |w| {
        w.s(0).area_resize(va(A2), pages(2))
    });
    inject("destroy", populated, |w| w.s(0).area_destroy(va(A2)));
    inject("destroy shared", populated, |w| w.s(1).area_destroy(va(B)));
    // A base moved down over free pages (a Linux stack grown by a fault).
    inject("extend down", populated, |w| {
        w.s(0)
            .area_extend_down(va(A1 + PAGE_SIZE), va(A1 - pages(3)))
    });
}

#[test]
fn share() {
    inject("share", populated, |w| {
        w.s(0)
            .area_share(va(A1), pages(2), w.s(2), va(B), AreaFlags::READ)
    });
    inject("share again", populated, |w| {
        w.s(0)
            .area_share(va(A), pages(4), w.s(2), va(B), AreaFlags::READ)
    });
}

#[test]
fn change_of_rights() {
    inject("change_flags", populated, |w| {
        w.s(0).area_change_flags(va(A2), AreaFlags::READ)
    });
    inject("restrict", populated, |w| w.s(0).area_restrict(va(A2), RW));
}

/// Write access given to a reserve-on-write area reserves the pages it
/// did not reserve yet, in the same all-or-nothing step as the change of
/// rights: each path (a part cut out of its middle, the whole area, a
/// range over it and the next area, the HelenOS call on the area) under
/// refused heap allocations, and the commit limit refusing the pages.
#[test]
fn write_given_to_a_reserve_on_write_area() {
    type Op = fn(&World) -> Result<(), Error>;
    let ops: [(&str, Op, u64); 4] = [
        (
            "the middle",
            |w| w.s(0).protect_range(va(FREE + pages(3)), pages(6), RW),
            4,
        ),
        (
            "the whole area",
            |w| w.s(0).protect_range(va(FREE), pages(16), RW),
            12,
        ),
        (
            "it and the next",
            |w| w.s(0).protect_range(va(FREE + pages(8)), pages(12), RW),
            8,
        ),
        (
            "change_flags",
            |w| w.s(0).area_change_flags(va(FREE), RW),
            12,
        ),
    ];
    for (name, op, more) in ops {
        inject(
            &format!("reserve on write: {name}"),
            reserve_on_write,
            |w| op(w),
        );
        let mut w = reserve_on_write();
        let reserve = w.sim.system().reserve();
        let (before, limit) = (reserve.committed(), reserve.snapshot().limit);
        // Past the commit limit: refused, nothing changed.
        reserve.set_limit(before + more - 1);
        let state = w.state();
        assert_eq!(op(&w), Err(Error::NoMemory), "{name}");
        assert!(w.state() == state, "{name}: refused and changed the state");
        reserve.set_limit(before + more);
        op(&w).unwrap();
        assert_eq!(reserve.committed(), before + more, "{name}");
        // The area (or part) given write reserves all its pages and writes
        // without reserving more; the pages left read-only still reserve
        // as faulted.
        let at = if name == "the middle" {
            FREE + pages(3)
        } else {
            FREE + pages(8)
        };
        let info = w.s(0).area(va(at)).unwrap();
        assert!(!info
            .flags
            .intersects(AreaFlags::LATE_RESERVE | AreaFlags::RESERVE_ON_WRITE));
        assert_eq!(info.reserved, info.pages, "{name}: {info:?}");
        w.cpus[0].write_u64(va(at), 1).unwrap();
        assert_eq!(reserve.committed(), before + more, "{name}");
        reserve.set_limit(limit);
        if name == "the middle" {
            w.cpus[0].read_u64(va(FREE + pages(1))).unwrap();
            assert_eq!(reserve.committed(), before + more + 1);
        }
        teardown(w, sim().frames_in_use());
    }
}

/// [`populated`] with a writable area at `FREE` of 16 pages (pages 0, 2,
/// 4 and 6 written) and a read-only one of 4 pages right above it, both
/// reserving up front.
fn up_front() -> World {
    let mut w = populated();
    w.s(0).area_create(va(FREE), pages(16), RW).unwrap();
    for i in 0..4 {
        w.cpus[0].write_u64(va(FREE + pages(2 * i)), i + 1).unwrap();
    }
    w.s(0)
        .area_create(va(FREE + pages(16)), pages(4), AreaFlags::READ)
        .unwrap();
    w
}

/// Rights without write with the range released (`protect_range_releasing`)
/// take areas that reserve up front back to reserving on write, giving
/// back all but their mapped pages' reservation, in the same
/// all-or-nothing step: each path under refused heap allocations, then
/// the pages given back, and taken again when write comes back.
#[test]
fn released_areas_reserve_on_write_again() {
    type Op = fn(&World) -> Result<(), Error>;
    let late = AreaFlags::LATE_RESERVE | AreaFlags::RESERVE_ON_WRITE;
    let r = AreaFlags::READ;
    let ops: [(&str, Op, [u64; 2], u64); 4] = [
        (
            "the middle",
            |w| {
                w.s(0).protect_range_releasing(
                    va(FREE + pages(3)),
                    pages(6),
                    AreaFlags::READ,
                    &[(va(FREE + pages(3)), pages(6))],
                )
            },
            [3, 9],
            4,
        ),
        (
            "the whole area",
            |w| {
                w.s(0).protect_range_releasing(
                    va(FREE),
                    pages(16),
                    AreaFlags::READ,
                    &[(va(FREE), pages(16))],
                )
            },
            [0, 16],
            12,
        ),
        (
            "it and the next",
            |w| {
                w.s(0).protect_range_releasing(
                    va(FREE + pages(8)),
                    pages(12),
                    AreaFlags::READ,
                    &[(va(FREE + pages(8)), pages(12))],
                )
            },
            [8, 20],
            12,
        ),
        (
            "only partly released",
            |w| {
                w.s(0).protect_range_releasing(
                    va(FREE + pages(8)),
                    pages(12),
                    AreaFlags::READ,
                    &[(va(FREE + pages(8)), pages(4))],
                )
            },
            [8, 20],
            0,
        ),
    ];
    for (name, op, [lo, hi], less) in ops {
        inject(&format!("release: {name}"), up_front, |w| op(w));
        let mut w = up_front();
        let reserve = w.sim.system().reserve();
        let before = reserve.committed();
        op(&w).unwrap();
        assert_eq!(reserve.committed(), before - less, "{name}");
        let info = w.s(0).area(va(FREE + pages(lo))).unwrap();
        assert_eq!(info.flags - late, r, "{name}: {info:?}");
        assert_eq!(info.flags.contains(late), less > 0, "{name}: {info:?}");
        // The data stays; write comes back with its reservation.
        for i in 0..4 {
            let at = va(FREE + pages(2 * i));
            assert_eq!(w.cpus[0].read_u64(at).unwrap(), i + 1, "{name}");
        }
        w.s(0)
            .protect_range(va(FREE + pages(lo)), pages(hi - lo), RW)
            .unwrap();
        assert_eq!(reserve.committed(), before, "{name}: charged again");
        w.cpus[0].write_u64(va(FREE + pages(lo)), 7).unwrap();
        assert_eq!(reserve.committed(), before, "{name}");
        teardown(w, sim().frames_in_use());
    }
}

#[test]
fn faults() {
    inject("fault", populated, |w| fault(w, 0, A2 + pages(7)));
    inject("fault, new run", populated, |w| fault(w, 0, A1 + pages(1)));
    inject("shared fault", populated, |w| fault(w, 1, B + pages(3)));
    inject("copy_to_user", populated, |w| {
        w.cpus[0].copy_to_user(va(A1 + PAGE_SIZE - 4), &[1; 8])
    });
    inject("copy_from_user across two pages", sparse, |w| {
        let mut buf = [0u8; 16];
        w.cpus[0].copy_from_user(va(FREE + pages(58) - 8), &mut buf)
    });
    let grows_down = || {
        let w = populated();
        w.s(0)
            .area_create_grows_down(va(FREE + pages(8)), pages(2), pages(6), RW)
            .unwrap();
        w
    };
    inject("fault that grows an area down", grows_down, |w| {
        fault(w, 0, FREE + pages(7))
    });
    inject("fault, new run in a full tree", sparse, |w| {
        fault(w, 0, FREE + pages(62))
    });
    inject("shared fault, a larger page map", shared_sparse, |w| {
        fault(w, 1, FREE + pages(62))
    });
}

#[test]
fn split_and_merge() {
    inject("split", populated, |w| w.s(0).area_split(va(A2 + pages(3))));
    inject("merge", split_world, |w| w.s(0).area_merge(va(A2)));
}

#[test]
fn range_operations() {
    inject("unmap_range", populated, |w| {
        w.s(0).unmap_range(va(A2 + pages(2)), pages(2))
    });
    inject("protect_range", populated, |w| {
        w.s(0)
            .protect_range(va(A2 + pages(1)), pages(3), AreaFlags::READ)
    });
    // A heap refusing the room a merge needs leaves the areas apart; the
    // change itself goes through.
    inject("protect_range back, merging three", protected_middle, |w| {
        w.s(0).protect_range(va(A2 + pages(1)), pages(3), RW)
    });
    let made = inject(
        "protect_range merging three areas apart",
        three_apart,
        |w| w.s(0).protect_range(va(FREE + pages(1)), pages(1), RW),
    );
    assert!(
        made > 0,
        "the first area's used space needs room for the runs"
    );
    // Without a refusal the three are one, its data where it was.
    let mut w = three_apart();
    w.s(0)
        .protect_range(va(FREE + pages(1)), pages(1), RW)
        .unwrap();
    let one = w.s(0).area(va(FREE + pages(10))).unwrap();
    assert_eq!((one.base, one.pages), (va(FREE), 18));
    assert_eq!(w.cpus[0].read_u64(va(FREE + pages(6))).unwrap(), 304);
    w.cpus[0].write_u64(va(FREE + pages(1)), 5).unwrap();
    teardown(w, sim().frames_in_use());
    inject("protect_range of a whole area", populated, |w| {
        w.s(0).protect_range(va(A2), pages(8), AreaFlags::READ)
    });
    inject("discard_range", populated, |w| {
        w.s(0).discard_range(va(A2 + pages(1)), pages(2))
    });
    inject("move_range", populated, |w| {
        w.s(0).move_range(va(A2), pages(8), va(FREE), pages(10))
    });
    inject("move_range, the middle", populated, |w| {
        w.s(0)
            .move_range(va(A2 + pages(2)), pages(3), va(FREE), pages(2))
    });
    // One area's part that keeps its size or grows (the short path): cut at
    // one end or both.
    inject("move_range of a part, grown", populated, |w| {
        w.s(0).move_range(va(A2), pages(3), va(FREE), pages(5))
    });
    inject("move_range, the middle, same size", populated, |w| {
        w.s(0)
            .move_range(va(A2 + pages(2)), pages(3), va(FREE), pages(3))
    });
    // Several areas and the hole between them, the same size, grown (the
    // last area takes the growth), and over a new range.
    let span = A2 + pages(8) - A1;
    inject("move_range of several areas", populated, |w| {
        w.s(0).move_range(va(A1), span, va(FREE), span)
    });
    inject("move_range of several areas, grown", populated, |w| {
        w.s(0)
            .move_range(va(A1 + pages(1)), span - pages(5), va(FREE), span)
    });
    inject("move_range_over of several areas", populated, |w| {
        w.s(0).move_range_over(va(A1), span, va(FREE), span)
    });
    // Onto areas under the hole (kept) and across where A2 lands (cut).
    let targets = || {
        let w = populated();
        w.s(0)
            .area_create(va(FREE + pages(8)), pages(4), RW)
            .unwrap();
        w.s(0)
            .area_create(va(FREE + (A2 - A1) - pages(1)), pages(3), RW)
            .unwrap();
        w
    };
    inject(
        "move_range_over of several areas onto areas",
        targets,
        |w| w.s(0).move_range_over(va(A1), span, va(FREE), span),
    );
    inject("move_range_leaving of several areas", populated, |w| {
        w.s(0)
            .move_range_leaving(va(A1 + pages(1)), span - pages(1), va(FREE), false)
    });
    // The new area's backend is made beforehand.
    let with_anon = || {
        let mut w = populated();
        w.elf = Some(TryArc::into_backend(TryArc::new(
            aspace::backend::AnonBackend,
        )));
        w
    };
    inject("area_replace_with inside an area", with_anon, |w| {
        let anon = w.elf.clone().expect("made");
        w.s(0)
            .area_replace_with(va(A2 + pages(2)), pages(2), RW, AreaAttrs::empty(), anon)
    });
    // A move that grows by a new area (the last area keeps its size),
    // of one area and of several, and over a new range holding areas.
    let growth = |w: &World, at: u64| aspace::replace::Replacement {
        base: va(at),
        size: pages(3),
        flags: RW,
        attrs: AreaAttrs::empty(),
        backend: w.elf.clone().expect("made"),
    };
    inject("move_range_growing", with_anon, |w| {
        let g = growth(w, FREE + pages(8));
        w.s(0)
            .move_range_growing(va(A2), pages(8), va(FREE), &g, false)
    });
    inject("move_range_growing of several areas", with_anon, |w| {
        let g = growth(w, FREE + span);
        w.s(0).move_range_growing(va(A1), span, va(FREE), &g, false)
    });
    // Leaving the caller's areas: one for each area (A1 and A2; the hole
    // between them stays one).
    inject("move_range_leaving_as of several areas", with_anon, |w| {
        let left = [growth(w, A1), growth(w, A2)].map(|mut g| {
            g.size = if g.base == va(A1) { pages(2) } else { pages(8) };
            g
        });
        w.s(0)
            .move_range_leaving_as(va(A1), span, va(FREE), false, &left)
    });
    inject("move_range_leaving_as of one area", with_anon, |w| {
        let mut g = growth(w, A2);
        g.size = pages(8);
        w.s(0)
            .move_range_leaving_as(va(A2), pages(8), va(FREE), false, &[g])
    });
    let with_target = || {
        let w = with_anon();
        w.s(0)
            .area_create(va(FREE + pages(6)), pages(8), RW)
            .unwrap();
        w
    };
    inject("move_range_leaving_as over areas", with_target, |w| {
        let mut g = growth(w, A2);
        g.size = pages(8);
        w.s(0)
            .move_range_leaving_as(va(A2), pages(8), va(FREE), true, &[g])
    });
    inject("move_range_growing over areas", with_target, |w| {
        let g = growth(w, FREE + pages(8));
        w.s(0)
            .move_range_growing(va(A2), pages(8), va(FREE), &g, true)
    });
    inject(
        "area_replace_with over areas, a share and holes",
        with_anon,
        |w| {
            let anon = w.elf.clone().expect("made");
            w.s(0)
                .area_replace_with(va(A), A2 + pages(3) - A, RW, AreaAttrs::empty(), anon)
        },
    );
    // Guard pages over parts of several areas (one cut in two places, a
    // share, a hole), and an anonymous area, in one step.
    inject("area_replace_many, guards and an area", with_anon, |w| {
        let guard = || TryArc::try_backend(aspace::backend::GuardBackend);
        let anon = w.elf.clone().expect("made");
        let part = |base: u64, n: u64, backend| aspace::replace::Replacement {
            base: va(base),
            size: pages(n),
            flags: RW,
            attrs: AreaAttrs::empty(),
            backend,
        };
        w.s(0).area_replace_many(&[
            part(A + pages(1), 2, guard()?),
            part(A1 + pages(1), 1, guard()?),
            part(A1 + pages(2), 2, anon),
            part(A2 + pages(1), 2, guard()?),
            part(A2 + pages(4), 1, guard()?),
        ])
    });
    inject("move_range_leaving, the middle", populated, |w| {
        w.s(0)
            .move_range_leaving(va(A2 + pages(2)), pages(3), va(FREE), false)
    });
    inject("move_range_leaving onto an area", populated, |w| {
        w.s(0)
            .move_range_leaving(va(A2 + pages(1)), pages(2), va(A1), true)
    });
    inject("move_range_over areas and a hole", populated, |w| {
        w.s(0)
            .move_range_over(va(A2 + pages(1)), pages(3), va(A1 + pages(1)), pages(4))
    });
    inject("move_range_over, shrinking", populated, |w| {
        w.s(0).move_range_over(va(A2), pages(8), va(A1), pages(2))
    });
    inject(
        "move_range_over, shrinking across areas and a hole",
        populated,
        |w| {
            w.s(0)
                .move_range_over(va(A1), A2 + pages(3) - A1, va(FREE), pages(1))
        },
    );
    inject("discard_ranges over areas and holes", populated, |w| {
        let ranges = [
            (va(A1), pages(1)),
            (va(A2 + pages(1)), pages(1)),
            (va(A2 + pages(3)), pages(7)),
        ];
        w.s(0).discard_ranges(&ranges)
    });
    // Every other page of its choice: runs cut in many places.
    inject(
        "discard_ranges_where over areas and holes",
        populated,
        |w| {
            let ranges = [(va(A1), pages(1)), (va(A2), pages(10))];
            let then = std::cell::Cell::new(false);
            let r = w.s(0).discard_ranges_where(
                &ranges,
                |page, _| page.number() % 2 == 0,
                || then.set(true),
            );
            // The hook only once nothing can refuse.
            assert_eq!(then.get(), r.is_ok());
            r
        },
    );
    // The same over every area of the space, picked by object.
    inject(
        "discard_object_pages_where over the space",
        populated,
        |w| {
            let then = std::cell::Cell::new(false);
            let r = w.s(0).discard_object_pages_where(
                |_| true,
                |page, _| page.number() % 2 == 0,
                || then.set(true),
            );
            assert_eq!(then.get(), r.is_ok());
            r
        },
    );
    inject("unmap_range across areas and holes", populated, |w| {
        w.s(0)
            .unmap_range(va(A1 + pages(1)), A2 + pages(3) - (A1 + pages(1)))
    });
}

#[test]
fn switch() {
    inject("switch to a space without an ASID", populated, |w| {
        let s2 = w.s(2).clone();
        w.cpus[0].switch_to(&s2)
    });
    inject("switch to a space with its ASID", populated, |w| {
        let s1 = w.s(1).clone();
        w.cpus[0].switch_to(&s1)
    });
}

/// An ELF segment's area with its backend made beforehand, and faults on
/// it; the loader (which makes each segment's backend itself, fallibly) and
/// the image's load, each with every allocation refused in turn.
#[test]
fn elf() {
    let bytes = elf_bytes();
    let with_backend = |flags: AreaFlags, memsz: u64| {
        let bytes = &bytes;
        move || {
            let mut w = populated();
            let image = ElfImage::load(w.sim.system().machine(), bytes).unwrap();
            let seg = Segment {
                vaddr: ELF,
                memsz,
                filesz: pages(2),
                offset: PAGE_SIZE,
                flags,
            };
            w.elf = Some(TryArc::try_backend(ElfBackend::new(image.clone(), seg)).unwrap());
            w.images.push(image);
            w
        }
    };
    let create = |w: &mut World| {
        let backend = w.elf.clone().expect("made by the world");
        let size = pages(3);
        w.s(0)
            .area_create_with(va(ELF), size, RW, AreaAttrs::empty(), backend)
    };
    inject("elf area", with_backend(RW, pages(3)), create);
    let with_area = || {
        let mut w = with_backend(RW, pages(3))();
        create(&mut w).unwrap();
        w.elf = None;
        w
    };
    // A private (writable) page is a copy of the file's.
    inject("elf private fault", with_area, |w| {
        fault(w, 0, ELF + PAGE_SIZE)
    });
    inject("elf zero-fill fault", with_area, |w| {
        fault(w, 0, ELF + pages(2))
    });
    // The loader: an area per segment, each with its backend; a refusal
    // at the second segment's destroys the first's area again.
    let with_image = || {
        let mut w = populated();
        let image = ElfImage::load(w.sim.system().machine(), &bytes).unwrap();
        w.images.push(image);
        w
    };
    let made = inject("loader::load", with_image, |w| {
        let loaded = loader::load(w.s(2), &w.images[0], &bytes, None).map_err(|e| match e {
            loader::ElfError::Area(e) => e,
            other => panic!("loader::load: {other}"),
        })?;
        assert_eq!(loaded.segments.len(), 2);
        heap::exempt(|| assert_eq!(w.s(2).areas().len(), 2));
        Ok(())
    });
    assert!(made >= 2, "a backend per segment: {made} heap allocations");
    // The image: its handle, then its frame list, then its frames. The
    // world has room for it beforehand (a push must not allocate).
    let room = || {
        let mut w = populated();
        w.images.reserve(1);
        w
    };
    inject("ElfImage::load", room, |w| {
        let image = ElfImage::load(w.sim.system().machine(), &bytes)?;
        assert_eq!(image.len(), bytes.len() as u64);
        w.images.push(image);
        Ok(())
    });
}

/// A shootdown batch the heap refuses room for its frames completes what it
/// gathered early (as Linux's `mmu_gather` does when full) instead of
/// failing: destroying an area with the heap refusing everything still
/// frees every frame, each only after its translation left every TLB.
#[test]
fn a_batch_refused_room_flushes_early() {
    let mut w = populated();
    // CPU 0 caches every resident page of `A2`.
    for i in 0..6 {
        assert_eq!(w.cpus[0].read_u64(va(A2 + pages(i))).unwrap(), 200 + i);
    }
    let frames = w.sim.frames_in_use();
    let rounds = w.sim.system().stats().shootdown_rounds;
    let (r, (_, refused)) =
        heap::refusing_from(0, || w.cpus[0].run(|| w.s(0).area_destroy(va(A2))));
    assert_eq!(r, Ok(()));
    assert!(refused > 0, "the heap was asked for room");
    assert!(w.s(0).area(va(A2)).is_none());
    assert_eq!(w.sim.frames_in_use(), frames - 6, "every frame freed");
    let more = w.sim.system().stats().shootdown_rounds - rounds;
    assert!(more >= 6, "one early round per frame: {more}");
    assert!(w.cpus[0].read_u64(va(A2)).is_err(), "the area is gone");
    assert_eq!(w.sim.hardware().stats().stale_accesses, 0);
    let baseline = sim().frames_in_use();
    teardown(w, baseline);
}

/// Unmapping whole areas (and the holes between) needs no heap at all: with
/// every allocation refused, `unmap_range` over `A1`, `A2` and the gap
/// between them still removes both and frees their frames (the shootdown
/// batch flushing early where it cannot grow its list).
#[test]
fn unmapping_whole_areas_needs_no_heap() {
    let mut w = populated();
    let frames = w.sim.frames_in_use();
    let (r, _) = heap::refusing_from(0, || {
        w.cpus[0].run(|| w.s(0).unmap_range(va(A1), A2 + pages(8) - A1))
    });
    assert_eq!(r, Ok(()));
    assert!(w.s(0).area(va(A1)).is_none() && w.s(0).area(va(A2)).is_none());
    assert!(w.s(0).area(va(A)).is_some(), "the area below stays");
    assert_eq!(w.sim.frames_in_use(), frames - 7, "every frame freed");
    assert!(w.cpus[0].read_u64(va(A2)).is_err());
    let baseline = sim().frames_in_use();
    teardown(w, baseline);
}

/// [`populated`] with `A1` unmapped whole: nothing else held its record,
/// whose heap block the space keeps as a spare.
fn with_spare() -> World {
    let w = populated();
    w.cpus[0]
        .run(|| w.s(0).unmap_range(va(A1), pages(2)))
        .unwrap();
    w
}

/// The heap allocations of creating an area at `FREE` in `w`.
fn creation_allocations(w: &World) -> u64 {
    let (r, (made, _)) =
        heap::refusing_from(u64::MAX - 1, || w.s(0).area_create(va(FREE), pages(8), RW));
    assert!(r.is_ok());
    made
}

/// A new area takes the block a whole area's removal left (here the
/// tree has room too: no heap at all), and a creation refused for a
/// conflict or for the commit limit keeps it for the next one.
#[test]
fn a_removed_areas_block_makes_the_next_area() {
    inject("create over a spare", with_spare, |w| {
        w.s(0).area_create(va(FREE), pages(8), RW)
    });
    assert!(creation_allocations(&populated()) > 0);
    assert_eq!(creation_allocations(&with_spare()), 0);
    // Refused for a conflict, then for the commit limit: the spare stays.
    let w = with_spare();
    let before = w.state();
    let r = w.s(0).area_create(va(A), pages(1), RW);
    assert_eq!(r, Err(Error::AddressNotAvailable));
    let limit = w.sim.system().reserve().limit();
    w.sim
        .system()
        .reserve()
        .set_limit(w.sim.system().reserve().committed() + 4);
    let r = w.s(0).area_create(va(FREE), pages(8), RW);
    assert_eq!(r, Err(Error::NoMemory));
    w.sim.system().reserve().set_limit(limit);
    assert!(w.state() == before, "refusals changed nothing");
    assert_eq!(creation_allocations(&w), 0);
    teardown(w, sim().frames_in_use());
}

/// Creating an address space: every heap allocation, the handle's block
/// first, refused in turn, is `NoMemory` with nothing changed.
#[test]
fn space_creation() {
    let create = |w: &mut World| w.sim.system().create().map(drop);
    let made = count(populated, create);
    assert!(made >= 2, "the handle and the lock's shards: {made}");
    refuse_each("create space", populated, create, made);
    inject("create space", populated, create);
}

/// Starting the subsystem (its shared state, ASID table and kernel space):
/// every heap allocation refused in turn is `NoMemory`, and what was made
/// up to then goes back (no frame left in use).
#[test]
fn system_start() {
    let hw = std::sync::Arc::new(SimHardware::new(common::arch(), 2, 4 << 20, 64));
    let config = Config {
        asids: 4,
        ..Config::default()
    };
    let start = || System::new(SimMachine::new(hw.clone()), config);
    for n in 0..256 {
        let (result, (made, refused)) = heap::refusing_from(n, start);
        match result {
            Ok(system) => {
                assert!(system.kernel().areas().is_empty());
                drop(system);
                assert_eq!(hw.frames().in_use(), 0, "frames left behind");
                if refused == 0 {
                    assert!(made >= 2, "the shared state and the kernel space: {made}");
                    return;
                }
            }
            Err(e) => {
                assert_eq!(e, Error::NoMemory, "refused at allocation {n}");
                assert!(refused > 0);
                assert_eq!(
                    hw.frames().in_use(),
                    0,
                    "refused at {n}: frames left behind"
                );
            }
        }
    }
    panic!("still refused after 256 heap allocations");
}

/// [`populated`] forked (space 0's child is space 3, running nowhere):
/// every resident private page of space 0 (`A1`, `A2`) is copy-on-write in
/// both; `A`, shared, is shared by the child too.
fn forked() -> World {
    let mut w = populated();
    let child = w.cpus[0].run(|| w.sim.system().fork(w.s(0))).unwrap();
    w.spaces.push(child);
    assert_eq!(w.s(0).cow_pages(va(A2)).unwrap().pages(), 6);
    w
}

/// [`forked`] with the child gone again: space 0's pages are still marked
/// copy-on-write, each frame with a single reference (a write takes it
/// over instead of copying).
fn forked_orphan() -> World {
    let mut w = forked();
    drop(w.spaces.pop());
    assert_eq!(w.s(0).cow_pages(va(A2)).unwrap().pages(), 6);
    w
}

/// [`forked`] with CPU 1 running the child.
fn forked_child_running() -> World {
    let mut w = forked();
    let child = w.s(3).clone();
    w.cpus[1].switch_to(&child).unwrap();
    w
}

/// Fork: every heap allocation refused in turn (the child's handle first,
/// then its lock's shards, its area tree, its areas, their copy-on-write
/// sets and share references, the parent's sets) is `NoMemory` with the
/// parent, its sharers and the machine as they were and no child left.
#[test]
fn fork() {
    let fork = |w: &mut World| {
        let child = w.cpus[0].run(|| w.sim.system().fork(w.s(0)))?;
        // Outside the count: listing allocates.
        heap::exempt(|| assert_eq!(child.areas().len(), 3));
        Ok(child)
    };
    let made = inject("fork", populated, fork);
    assert!(made >= 4, "fork: {made} heap allocations");
    // Again, with every private page already copy-on-write (a sibling).
    inject("fork of a forked space", forked, fork);
    // With ranges left out and given empty (a hole cut into A2, A1 empty).
    inject("fork_except", populated, |w| {
        let ranges = [
            aspace::ForkRange {
                base: va(A1),
                size: pages(2),
                inherit: aspace::Inherit::Empty,
            },
            aspace::ForkRange {
                base: va(A2 + pages(2)),
                size: pages(3),
                inherit: aspace::Inherit::Nothing,
            },
        ];
        let child = w.cpus[0].run(|| w.sim.system().fork_except(w.s(0), &ranges))?;
        heap::exempt(|| assert_eq!(child.areas().len(), 4));
        Ok(child)
    });
    // With a new area in the child in place of the middle of A2 (its
    // backend made beforehand), and A1 left out.
    let with_anon = || {
        let mut w = populated();
        w.elf = Some(TryArc::into_backend(TryArc::new(
            aspace::backend::AnonBackend,
        )));
        w
    };
    inject("fork_replacing", with_anon, |w| {
        let fresh = [aspace::replace::Replacement {
            base: va(A2 + pages(2)),
            size: pages(3),
            flags: RW,
            attrs: AreaAttrs::empty(),
            backend: w.elf.clone().expect("made"),
        }];
        let ranges = [aspace::ForkRange {
            base: va(A1),
            size: pages(2),
            inherit: aspace::Inherit::Nothing,
        }];
        let child = w.cpus[0].run(|| w.sim.system().fork_replacing(w.s(0), &ranges, &fresh))?;
        heap::exempt(|| assert_eq!(child.areas().len(), 4));
        Ok(child)
    });
    // The child itself, its pages copy-on-write and shared with its parent.
    inject("fork of a child", forked, |w| {
        let child = w.cpus[0].run(|| w.sim.system().fork(w.s(3)))?;
        // Outside the count: listing allocates.
        heap::exempt(|| assert_eq!(child.areas().len(), 3));
        Ok(child)
    });
}

/// A write to a copy-on-write page: the copy (both sides map the frame)
/// and the take-over (the other side is gone), each heap allocation
/// refused in turn.
#[test]
fn cow_faults() {
    inject("cow fault, copy", forked, |w| fault(w, 0, A2 + pages(2)));
    inject("cow fault, copy of a run's first page", forked, |w| {
        fault(w, 0, A2)
    });
    inject("cow fault in the child, copy", forked_child_running, |w| {
        fault(w, 1, A1)
    });
    inject("cow fault, take-over", forked_orphan, |w| {
        fault(w, 0, A2 + pages(3))
    });
    inject("cow copy_to_user across two pages", forked, |w| {
        w.cpus[0].copy_to_user(va(A2 + pages(2) - 4), &[9; 8])
    });
}

/// Range operations over copy-on-write pages: their sets are cut, moved
/// and shrunk with the areas, allocating first.
#[test]
fn range_operations_on_cow_pages() {
    for (name, world) in [
        ("forked", forked as fn() -> World),
        ("forked, child gone", forked_orphan),
    ] {
        inject(&format!("split ({name})"), world, |w| {
            w.s(0).area_split(va(A2 + pages(3)))
        });
        inject(&format!("protect_range ({name})"), world, |w| {
            w.s(0)
                .protect_range(va(A2 + pages(1)), pages(3), AreaFlags::READ)
        });
        inject(&format!("unmap_range ({name})"), world, |w| {
            w.s(0).unmap_range(va(A2 + pages(2)), pages(2))
        });
        inject(&format!("discard_range ({name})"), world, |w| {
            w.s(0).discard_range(va(A2 + pages(1)), pages(2))
        });
        inject(&format!("move_range ({name})"), world, |w| {
            w.s(0).move_range(va(A2), pages(8), va(FREE), pages(10))
        });
        inject(&format!("move_range, the middle ({name})"), world, |w| {
            w.s(0)
                .move_range(va(A2 + pages(2)), pages(3), va(FREE), pages(2))
        });
        inject(&format!("shrink ({name})"), world, |w| {
            w.s(0).area_resize(va(A2), pages(3))
        });
        inject(&format!("change_flags ({name})"), world, |w| {
            w.s(0).area_change_flags(va(A2), AreaFlags::READ)
        });
    }
    inject("split in the child", forked, |w| {
        w.s(3).area_split(va(A2 + pages(5)))
    });
    inject("unmap_range in the child", forked, |w| {
        w.s(3).unmap_range(va(A1), pages(1))
    });
}

/// A fault on an area of a user-space pager: the request in flight is
/// made fallibly. (The area itself is set up beforehand.)
#[test]
fn paged_fault() {
    let paged = || {
        let mut w = populated();
        let bytes: Vec<u8> = (0..4 * PAGE_SIZE).map(|i| (i % 251) as u8).collect();
        let pager = SimPager::file(&w.sim, bytes).unwrap();
        let ids = aspace::backend::PagerIds {
            id1: 1,
            id2: 2,
            id3: 3,
        };
        w.s(0)
            .area_create_paged(
                va(FREE),
                pages(4),
                AreaFlags::READ,
                pager.link(),
                pager.space(),
                ids,
            )
            .unwrap();
        w.pager = Some(pager);
        w
    };
    inject("paged fault", paged, |w| {
        fault_on(w, 0, FREE + PAGE_SIZE, Access::Read)
    });
}

/// `sys_as_area_list` gathers the records in a buffer the heap may refuse:
/// `ENOMEM`, nothing written.
#[test]
fn area_list_syscall() {
    inject("sys_as_area_list", populated, |w| {
        let space = w.s(0).clone();
        let n = w.cpus[0].run(|| aspace::syscall::sys_as_area_list(&space, A1 as usize, 3));
        match n {
            3 => Ok(()),
            -2 => Err(Error::NoMemory),
            other => panic!("sys_as_area_list: {other}"),
        }
    });
}

/// A used space on a heap that gives out: new runs go in until the heap
/// refuses a node, then `NoMemory` with the set unchanged (never an abort:
/// the room check allocates whenever an insertion could), while pages that
/// extend a run still go in.
#[test]
fn used_space_insertions_refused_cleanly() {
    use aspace::internals::used_space::{UsedSpace, UsedSpaceError};
    use aspace::Page;
    for budget in [0, 1, 2, 3, 5, 8] {
        let mut s = UsedSpace::new();
        let ((refused, runs), (made, _)) = heap::refusing_from(budget, || {
            let mut refused = None;
            for i in 0..2000u64 {
                let before: Vec<_> = heap::exempt(|| s.iter().collect());
                match s.insert(Page::from_number(i * 3), 1) {
                    Ok(()) => {}
                    Err(UsedSpaceError::NoMemory) => {
                        let after: Vec<_> = heap::exempt(|| s.iter().collect());
                        assert!(after == before, "budget {budget}: changed");
                        refused = Some(i);
                        break;
                    }
                    Err(e) => panic!("budget {budget}: {e:?}"),
                }
            }
            let runs = s.intervals();
            // Extending runs needs no node.
            for i in 0..runs as u64 {
                assert_eq!(s.insert(Page::from_number(i * 3 + 1), 1), Ok(()));
            }
            (refused, runs)
        });
        assert!(refused.is_some(), "budget {budget}: the heap never refused");
        assert!(made > budget);
        assert_eq!(s.intervals(), runs);
        assert_eq!(s.pages(), 2 * runs as u64);
    }
}

/// A failed assertion while the heap refuses everything reports as usual
/// (a panicking thread is never refused, and `refusing_from` disarms when
/// the panic leaves it) instead of aborting the binary.
#[test]
#[should_panic(expected = "reported: 42")]
fn a_panic_while_armed_is_reported() {
    heap::refusing_from(0, || {
        let n = std::hint::black_box(42);
        panic!("reported: {n}");
    });
}

other_archs!(
    area_creation,
    resize_and_destroy,
    share,
    change_of_rights,
    faults,
    split_and_merge,
    range_operations,
    switch,
    elf,
    space_creation,
    fork,
    cow_faults,
    range_operations_on_cow_pages,
    paged_fault,
    a_batch_refused_room_flushes_early,
);
