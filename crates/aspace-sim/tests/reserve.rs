//! Memory reservation (`aspace::reserve`, after HelenOS's `reserve.c`):
//! the commit limit refuses creations and growths that would pass it and
//! changes nothing then; shrinking, destroying and dropping give the
//! reservation back; a shared group reserves once; late-reserving areas
//! reserve at fault time; and refused frame allocations leave the
//! reservation as it was.

use aspace::TryArc;
use std::collections::BTreeSet;

use aspace::backend::elf::{ElfBackend, ElfImage, Segment};
use aspace::backend::{Backend, PhysBackend};
use aspace::{
    Access, AreaAttrs, AreaFlags, AreaInfo, Config, Error, FaultContext, FaultOutcome, FaultReason,
    Frame, Page, System, VirtAddr, PAGE_SIZE,
};
use aspace_sim::{Sim, SimConfig, Space, SpaceHandle};

const RW: AreaFlags = AreaFlags::READ.union(AreaFlags::WRITE);
const LATE: AreaFlags = RW.union(AreaFlags::LATE_RESERVE);
const A: u64 = 0x40_0000;
const B: u64 = 0x80_0000;

fn va(a: u64) -> VirtAddr {
    VirtAddr::new(a)
}

fn sim() -> Sim {
    Sim::new(SimConfig {
        memory: 8 << 20,
        ..SimConfig::default()
    })
    .unwrap()
}

fn committed(sim: &Sim) -> u64 {
    sim.system().reserve().committed()
}

fn fault(space: &Space, addr: u64) -> FaultOutcome {
    space.page_fault(va(addr), Access::Write, FaultContext::User)
}

/// What `committed` must be: each private area's reservation and each
/// share record's once.
fn accounted(spaces: &[&SpaceHandle]) -> u64 {
    let mut shares = BTreeSet::new();
    let mut total = 0;
    for s in spaces {
        for a in s.areas() {
            match s.share_info(a.base) {
                Some(sh) => {
                    assert_eq!(a.reserved, sh.reserved(), "{a}");
                    if shares.insert(aspace::TryArc::as_ptr(&sh) as usize) {
                        total += sh.reserved();
                    }
                }
                None => total += a.reserved,
            }
        }
    }
    total
}

#[test]
fn the_default_limit_is_the_free_frames_and_config_can_set_it() {
    let sim = sim();
    // The limit is taken before the kernel's page table: every frame but
    // frame 0, which the pool never hands out.
    let frames = (8 << 20) / PAGE_SIZE;
    assert_eq!(sim.system().reserve().limit(), frames - 1);
    assert_eq!(committed(&sim), 0);

    // A second system on the same machine, with a limit of its own.
    let config = Config {
        asids: 4,
        commit_limit: Some(10),
    };
    let system = System::new(sim.system().machine().clone(), config).unwrap();
    assert_eq!(system.reserve().limit(), 10);
    let space = system.create().unwrap();
    space.area_create(va(A), 10 * PAGE_SIZE, RW).unwrap();
    assert_eq!(
        space.area_create(va(B), PAGE_SIZE, RW),
        Err(Error::NoMemory)
    );
    assert_eq!(system.reserve().committed(), 10);
    drop(space);
    assert_eq!(system.reserve().committed(), 0);
}

#[test]
fn a_creation_beyond_the_limit_fails_and_changes_nothing() {
    let sim = sim();
    sim.system().reserve().set_limit(8);
    let space = sim.system().create().unwrap();
    space.area_create(va(A), 5 * PAGE_SIZE, RW).unwrap();
    assert_eq!(committed(&sim), 5);
    assert_eq!(space.area(va(A)).unwrap().reserved, 5);
    let before = space.areas();
    assert_eq!(
        space.area_create(va(B), 4 * PAGE_SIZE, RW),
        Err(Error::NoMemory)
    );
    assert_eq!(space.areas(), before);
    assert_eq!(committed(&sim), 5);
    assert!(space.area(va(B)).is_none());
    // The other checks come first: an overlap is still an overlap.
    assert_eq!(
        space.area_create(va(A + PAGE_SIZE), 4 * PAGE_SIZE, RW),
        Err(Error::AddressNotAvailable)
    );
    assert_eq!(space.area_create(va(B), 0, RW), Err(Error::InvalidArgument));
    // Exactly up to the limit is fine.
    space.area_create(va(B), 3 * PAGE_SIZE, RW).unwrap();
    assert_eq!(committed(&sim), 8);
    assert_eq!(sim.system().reserve().available(), 0);
    // Device memory reserves nothing, so it fits even now.
    let top = sim.hardware().memory().frames();
    let phys = TryArc::try_backend(PhysBackend::new(Frame::from_number(top - 2), 2)).unwrap();
    space
        .area_create_with(va(0x100_0000), 2 * PAGE_SIZE, RW, AreaAttrs::empty(), phys)
        .unwrap();
    assert_eq!(space.area(va(0x100_0000)).unwrap().reserved, 0);
    assert_eq!(committed(&sim), accounted(&[&space]));
}

#[test]
fn a_growth_beyond_the_limit_fails_and_changes_nothing() {
    let sim = sim();
    sim.system().reserve().set_limit(6);
    let space = sim.system().create().unwrap();
    space.area_create(va(A), 2 * PAGE_SIZE, RW).unwrap();
    assert_eq!(fault(&space, A + PAGE_SIZE), FaultOutcome::Ok);
    let before = space.areas();
    let frames = sim.frames_in_use();
    assert_eq!(
        space.area_resize(va(A), 7 * PAGE_SIZE),
        Err(Error::NoMemory)
    );
    assert_eq!(space.areas(), before);
    assert_eq!(sim.frames_in_use(), frames);
    assert_eq!(committed(&sim), 2);
    space.area_resize(va(A), 6 * PAGE_SIZE).unwrap();
    assert_eq!(committed(&sim), 6);
    assert_eq!(space.area(va(A)).unwrap().reserved, 6);
    // Shrinking gives the pages above the new end back, mapped or not.
    space.area_resize(va(A), PAGE_SIZE).unwrap();
    assert_eq!(committed(&sim), 1);
    assert_eq!(space.resident_pages(), 0);
    space.area_resize(va(A), 6 * PAGE_SIZE).unwrap();
    assert_eq!(committed(&sim), 6);
}

#[test]
fn a_stack_growing_down_reserves_each_page_and_stops_at_the_limit() {
    let sim = sim();
    sim.system().reserve().set_limit(4);
    let space = sim.system().create().unwrap();
    let top = 0x100_0000u64;
    let base = top - 2 * PAGE_SIZE;
    space
        .area_create_grows_down(va(base), 2 * PAGE_SIZE, 16 * PAGE_SIZE, RW)
        .unwrap();
    assert_eq!(committed(&sim), 2);
    // Two faults in the guard page grow the stack a page each, reserving it.
    for grown in 1..=2u64 {
        let at = base - grown * PAGE_SIZE;
        assert_eq!(fault(&space, at + 8), FaultOutcome::Ok);
        let a = space.area(va(at)).unwrap();
        assert_eq!(
            (a.base.as_u64(), a.pages, a.reserved),
            (at, 2 + grown, 2 + grown)
        );
        assert_eq!(committed(&sim), 2 + grown);
    }
    // The limit is reached: the next growth is refused as out of memory
    // and changes nothing (the guard page stays free).
    let before = space.areas();
    let frames = sim.frames_in_use();
    let at = base - 3 * PAGE_SIZE;
    assert_eq!(
        fault(&space, at + 8),
        FaultOutcome::Fault(FaultReason::NoMemory)
    );
    assert_eq!(space.areas(), before);
    assert_eq!(sim.frames_in_use(), frames);
    assert_eq!(committed(&sim), 4);
    assert_eq!(accounted(&[&space]), 4);
    // Frames running out mid-growth (the page's own frame, or a table)
    // also give the page's reservation back.
    sim.system().reserve().set_limit(8);
    sim.hardware().frames().fail_after(Some(0));
    assert_ne!(fault(&space, at + 8), FaultOutcome::Ok);
    sim.hardware().frames().fail_after(None);
    assert_eq!(space.areas(), before);
    assert_eq!(committed(&sim), 4);
    assert_eq!(fault(&space, at + 8), FaultOutcome::Ok);
    assert_eq!(committed(&sim), 5);
    drop(space);
    assert_eq!(committed(&sim), 0);
}

#[test]
fn destroy_and_dropping_spaces_give_everything_back() {
    let sim = sim();
    let mut spaces = Vec::new();
    for i in 0..3u64 {
        let s = sim.system().create().unwrap();
        s.area_create(va(A), (i + 1) * 4 * PAGE_SIZE, RW).unwrap();
        s.area_create(va(B), 3 * PAGE_SIZE, LATE).unwrap();
        for p in 0..=i {
            assert_eq!(fault(&s, A + p * PAGE_SIZE), FaultOutcome::Ok);
            assert_eq!(fault(&s, B + p * PAGE_SIZE), FaultOutcome::Ok);
        }
        spaces.push(s);
    }
    // 4 + 8 + 12 up front, 1 + 2 + 3 late.
    assert_eq!(committed(&sim), 24 + 6);
    let refs: Vec<&SpaceHandle> = spaces.iter().collect();
    assert_eq!(committed(&sim), accounted(&refs));
    spaces[1].area_destroy(va(A)).unwrap();
    assert_eq!(committed(&sim), 30 - 8);
    spaces[1].area_destroy(va(B)).unwrap();
    assert_eq!(committed(&sim), 30 - 10);
    spaces[0]
        .area_share(va(A), 4 * PAGE_SIZE, &spaces[2], va(0x100_0000), RW)
        .unwrap();
    assert_eq!(committed(&sim), 20);
    drop(spaces);
    assert_eq!(committed(&sim), 0);
}

#[test]
fn a_shared_group_reserves_once_until_its_last_area_goes() {
    let sim = sim();
    // Exactly the source's pages: sharing must take no more.
    sim.system().reserve().set_limit(4);
    let a = sim.system().create().unwrap();
    let b = sim.system().create().unwrap();
    let c = sim.system().create().unwrap();
    a.area_create(va(A), 4 * PAGE_SIZE, RW).unwrap();
    assert_eq!(fault(&a, A), FaultOutcome::Ok);
    a.area_share(va(A), 4 * PAGE_SIZE, &b, va(B), RW).unwrap();
    a.area_share(va(A), 4 * PAGE_SIZE, &c, va(B), AreaFlags::READ)
        .unwrap();
    assert_eq!(committed(&sim), 4);
    for s in [&a, &b, &c] {
        let base = if TryArc::ptr_eq(s, &a) { A } else { B };
        let info = s.area(va(base)).unwrap();
        assert!(info.shared && info.reserved == 4, "{info}");
    }
    assert_eq!(a.share_info(va(A)).unwrap().reserved(), 4);
    assert_eq!(committed(&sim), accounted(&[&a, &b, &c]));
    a.area_destroy(va(A)).unwrap();
    assert_eq!(committed(&sim), 4);
    drop(b);
    assert_eq!(committed(&sim), 4);
    // The group's pages are still there for C.
    let read = c.page_fault(va(B + PAGE_SIZE), Access::Read, FaultContext::User);
    assert_eq!(read, FaultOutcome::Ok);
    c.area_destroy(va(B)).unwrap();
    assert_eq!(committed(&sim), 0);
    // A refused share (the destination overlaps) takes nothing either.
    a.area_create(va(A), 2 * PAGE_SIZE, RW).unwrap();
    c.area_create(va(B), PAGE_SIZE, RW).unwrap();
    assert_eq!(
        a.area_share(va(A), 2 * PAGE_SIZE, &c, va(B), RW),
        Err(Error::AddressNotAvailable)
    );
    assert!(a.share_info(va(A)).is_none());
    assert_eq!(committed(&sim), 3);
}

#[test]
fn late_reserve_takes_pages_at_fault_time_and_fails_at_the_limit() {
    let sim = sim();
    sim.system().reserve().set_limit(3);
    let space = sim.system().create().unwrap();
    // Far more pages than the limit: nothing is reserved yet.
    space.area_create(va(A), 16 * PAGE_SIZE, LATE).unwrap();
    assert_eq!(committed(&sim), 0);
    for p in [0, 5, 9] {
        assert_eq!(fault(&space, A + p * PAGE_SIZE), FaultOutcome::Ok);
    }
    // A page mapped already takes nothing more.
    assert_eq!(fault(&space, A), FaultOutcome::Ok);
    assert_eq!(committed(&sim), 3);
    assert_eq!(space.area(va(A)).unwrap().reserved, 3);
    let frames = sim.frames_in_use();
    let before = space.areas();
    assert_eq!(
        fault(&space, A + 12 * PAGE_SIZE),
        FaultOutcome::Fault(FaultReason::NoMemory)
    );
    assert_eq!(
        space.page_fault(va(A + 12 * PAGE_SIZE), Access::Read, FaultContext::UserCopy),
        FaultOutcome::Defer(FaultReason::NoMemory)
    );
    assert_eq!(space.translate(Page::from_number((A >> 12) + 12)), None);
    assert_eq!(space.areas(), before);
    assert_eq!(sim.frames_in_use(), frames);
    assert_eq!(committed(&sim), 3);
    // Through a CPU, the store is refused with the out-of-memory reason.
    let mut cpu = sim.cpu(0);
    cpu.switch_to(&space).unwrap();
    let err = cpu.write_u64(va(A + 12 * PAGE_SIZE), 1).unwrap_err();
    assert_eq!(err.reason, FaultReason::NoMemory);
    cpu.write_u64(va(A + 5 * PAGE_SIZE), 7).unwrap();
    // A change of rights keeps the area late-reserving and its pages.
    space.area_change_flags(va(A), AreaFlags::READ).unwrap();
    let info = space.area(va(A)).unwrap();
    assert!(info.flags.contains(AreaFlags::LATE_RESERVE), "{info}");
    assert_eq!((info.resident, info.reserved), (3, 3));
    assert_eq!(cpu.read_u64(va(A + 5 * PAGE_SIZE)).unwrap(), 7);
    space.area_change_flags(va(A), LATE).unwrap();
    // Shrinking gives back the pages unmapped, only those.
    cpu.run(|| space.area_resize(va(A), 6 * PAGE_SIZE)).unwrap();
    assert_eq!(committed(&sim), 2);
    assert_eq!(space.area(va(A)).unwrap().reserved, 2);
    // Growing a late area reserves nothing, even past the limit.
    cpu.run(|| space.area_resize(va(A), 64 * PAGE_SIZE))
        .unwrap();
    assert_eq!(committed(&sim), 2);
    cpu.write_u64(va(A + 40 * PAGE_SIZE), 1).unwrap();
    assert_eq!(committed(&sim), 3);
    // Late-reserving areas are not shared (as in HelenOS).
    let other = sim.system().create().unwrap();
    assert_eq!(
        space.area_share(va(A), 64 * PAGE_SIZE, &other, va(B), AreaFlags::READ),
        Err(Error::NotSupported)
    );
    cpu.run(|| space.area_destroy(va(A))).unwrap();
    assert_eq!(committed(&sim), 0);
}

#[test]
fn elf_segments_reserve_the_pages_they_copy() {
    let sim = sim();
    let bytes: Vec<u8> = (0..9 * PAGE_SIZE).map(|i| (i % 251) as u8).collect();
    let image = ElfImage::load(sim.system().machine(), &bytes).unwrap();
    let ro = AreaFlags::READ;
    // (vaddr, memsz, filesz, offset, rights)
    let shapes = [
        (0x40_0000, 4 * PAGE_SIZE, 4 * PAGE_SIZE, 0, ro),
        (0x40_0000, 6 * PAGE_SIZE, 3 * PAGE_SIZE + 100, PAGE_SIZE, ro),
        (0x40_0123, 5 * PAGE_SIZE, 4 * PAGE_SIZE, 0x123, ro),
        (0x40_0123, 3 * PAGE_SIZE, 2 * PAGE_SIZE, 0x456, ro),
        (0x40_0000, 4 * PAGE_SIZE, 4 * PAGE_SIZE, 0, RW),
        (
            0x40_0800,
            4 * PAGE_SIZE,
            3 * PAGE_SIZE,
            5 * PAGE_SIZE + 0x800,
            ro,
        ),
    ];
    let image_frames: BTreeSet<Frame> = image.frames().iter().copied().collect();
    for (vaddr, memsz, filesz, offset, flags) in shapes {
        let seg = Segment {
            vaddr,
            memsz,
            filesz,
            offset,
            flags,
        };
        let space = sim.system().create().unwrap();
        let base = vaddr & !(PAGE_SIZE - 1);
        let size = vaddr + memsz - base;
        let backend = TryArc::try_backend(ElfBackend::new(image.clone(), seg)).unwrap();
        let pages = size.div_ceil(PAGE_SIZE);
        let want = Backend::<aspace_sim::PhysMem, aspace_sim::FramePool>::reserve_pages(
            &*backend, 0, pages,
        );
        space
            .area_create_with(va(base), size, flags, AreaAttrs::empty(), backend)
            .unwrap();
        let info: AreaInfo = space.area(va(base)).unwrap();
        assert_eq!(info.reserved, want, "{seg:?}");
        let mut copies = 0;
        for p in 0..pages {
            let page = Page::from_number(base / PAGE_SIZE + p);
            let out = space.page_fault(page.start(), Access::Read, FaultContext::User);
            assert_eq!(out, FaultOutcome::Ok, "{seg:?} page {p}");
            let (frame, _) = space.translate(page).unwrap();
            if !image_frames.contains(&frame) {
                copies += 1;
            }
        }
        assert_eq!(copies, want, "{seg:?}: reserved {want}, copied {copies}");
        assert_eq!(committed(&sim), want);
        drop(space);
        assert_eq!(committed(&sim), 0);
    }
    ElfImage::release(image, sim.system().machine()).unwrap();
}

/// Refuses the `n`-th frame allocation from now on, for every `n` until
/// `op` succeeds: each refused try must leave the reservation (and the
/// area) as it was; the successful one must change it by `delta`.
fn inject(sim: &Sim, space: &Space, what: &str, delta: i64, op: impl Fn() -> bool) {
    let frames = sim.hardware().frames();
    for n in 0.. {
        let before = (committed(sim), space.areas());
        frames.fail_after(Some(n));
        let ok = op();
        frames.fail_after(None);
        let after = (committed(sim), space.areas());
        if ok {
            let want = before.0 as i64 + delta;
            assert_eq!(after.0 as i64, want, "{what}: succeeded at {n}");
            return;
        }
        assert_eq!(after, before, "{what}: refused at allocation {n}");
        assert!(n < 16, "{what}: never succeeded");
    }
}

#[test]
fn refused_frame_allocations_leave_the_reservation_as_it_was() {
    let sim = sim();
    let space = sim.system().create().unwrap();
    let mut cpu = sim.cpu(0);
    cpu.switch_to(&space).unwrap();
    // A far address: the first fault there needs three page tables.
    const FAR: u64 = 0x7f00_0000_0000;
    inject(&sim, &space, "create", 8, || {
        space.area_create(va(FAR), 8 * PAGE_SIZE, RW).is_ok()
    });
    inject(&sim, &space, "grow", 4, || {
        cpu.run(|| space.area_resize(va(FAR), 12 * PAGE_SIZE))
            .is_ok()
    });
    for p in 0..3 {
        cpu.write_u64(va(FAR + p * PAGE_SIZE), 1).unwrap();
    }
    inject(&sim, &space, "shrink", -10, || {
        cpu.run(|| space.area_resize(va(FAR), 2 * PAGE_SIZE))
            .is_ok()
    });
    // A late-reserving area: faults refused at the tables or at the page.
    const LATE_AT: u64 = 0x6f00_0000_0000;
    inject(&sim, &space, "create late", 0, || {
        space.area_create(va(LATE_AT), 8 * PAGE_SIZE, LATE).is_ok()
    });
    inject(&sim, &space, "late fault", 1, || {
        fault(&space, LATE_AT + 3 * PAGE_SIZE) == FaultOutcome::Ok
    });
    inject(&sim, &space, "late share", 0, || {
        let other = sim.system().create();
        other.is_ok_and(|o| {
            space.area_share(va(LATE_AT), 8 * PAGE_SIZE, &o, va(B), AreaFlags::READ)
                == Err(Error::NotSupported)
        })
    });
    inject(&sim, &space, "destroy late", -1, || {
        cpu.run(|| space.area_destroy(va(LATE_AT))).is_ok()
    });
    drop(cpu);
    drop(space);
    assert_eq!(committed(&sim), 0);
}
