//! Sharing areas between address spaces, and the physical backend.

use aspace::TryArc;

use aspace::backend::PhysBackend;
use aspace::{AreaAttrs, AreaFlags, Error, Frame, PhysMemory, VirtAddr, PAGE_SIZE};
use aspace_sim::{Sim, SimConfig};

const SRC: u64 = 0x40_0000;
const DST: u64 = 0x80_0000;
const RW: AreaFlags = AreaFlags::READ.union(AreaFlags::WRITE);

fn va(a: u64) -> VirtAddr {
    VirtAddr::new(a)
}

fn sim() -> Sim {
    Sim::new(SimConfig {
        cpus: 3,
        ..SimConfig::default()
    })
    .unwrap()
}

#[test]
fn write_in_one_space_is_read_in_the_other_before_and_after_share() {
    let sim = sim();
    let (a, b) = (
        sim.system().create().unwrap(),
        sim.system().create().unwrap(),
    );
    a.area_create(va(SRC), 4 * PAGE_SIZE, RW).unwrap();
    let (mut ca, mut cb) = (sim.cpu(0), sim.cpu(1));
    ca.switch_to(&a).unwrap();
    cb.switch_to(&b).unwrap();
    ca.write_u64(va(SRC), 111).unwrap(); // touched before the share
    a.area_share(va(SRC), 4 * PAGE_SIZE, &b, va(DST), RW)
        .unwrap();
    assert_eq!(cb.read_u64(va(DST)).unwrap(), 111);
    // First touched after the share, from either side.
    cb.write_u64(va(DST + PAGE_SIZE), 222).unwrap();
    assert_eq!(ca.read_u64(va(SRC + PAGE_SIZE)).unwrap(), 222);
    ca.write_u64(va(SRC + 2 * PAGE_SIZE + 8), 333).unwrap();
    assert_eq!(cb.read_u64(va(DST + 2 * PAGE_SIZE + 8)).unwrap(), 333);
    // Same frames.
    for i in 0..3 {
        assert_eq!(
            a.translate(va(SRC + i * PAGE_SIZE).page()).unwrap().0,
            b.translate(va(DST + i * PAGE_SIZE).page()).unwrap().0
        );
    }
    assert!(a.area(va(SRC)).unwrap().shared && b.area(va(DST)).unwrap().shared);
}

#[test]
fn three_spaces_share_one_area() {
    let sim = sim();
    let s: Vec<_> = (0..3).map(|_| sim.system().create().unwrap()).collect();
    s[0].area_create(va(SRC), 2 * PAGE_SIZE, RW).unwrap();
    s[0].area_share(va(SRC), 2 * PAGE_SIZE, &s[1], va(DST), RW)
        .unwrap();
    s[1].area_share(va(DST), 2 * PAGE_SIZE, &s[2], va(SRC), AreaFlags::READ)
        .unwrap();
    assert_eq!(s[0].share_info(va(SRC)).unwrap().refs(), 3);
    let mut cpus: Vec<_> = (0..3).map(|i| sim.cpu(i)).collect();
    for (c, sp) in cpus.iter_mut().zip(&s) {
        c.switch_to(sp).unwrap();
    }
    cpus[1].write_u64(va(DST + PAGE_SIZE), 0xabc).unwrap();
    assert_eq!(cpus[0].read_u64(va(SRC + PAGE_SIZE)).unwrap(), 0xabc);
    assert_eq!(cpus[2].read_u64(va(SRC + PAGE_SIZE)).unwrap(), 0xabc);
    // The third got a read-only view.
    assert!(cpus[2].write_u64(va(SRC), 1).is_err());
}

#[test]
fn share_into_the_same_space() {
    let sim = sim();
    let a = sim.system().create().unwrap();
    a.area_create(va(SRC), PAGE_SIZE, RW).unwrap();
    a.area_share(va(SRC), PAGE_SIZE, &a, va(DST), RW).unwrap();
    let mut c = sim.cpu(0);
    c.switch_to(&a).unwrap();
    c.write_u64(va(DST), 5).unwrap();
    assert_eq!(c.read_u64(va(SRC)).unwrap(), 5);
}

#[test]
fn data_stays_reachable_after_the_source_is_destroyed() {
    let sim = sim();
    let (a, b) = (
        sim.system().create().unwrap(),
        sim.system().create().unwrap(),
    );
    a.area_create(va(SRC), 2 * PAGE_SIZE, RW).unwrap();
    let mut ca = sim.cpu(0);
    ca.switch_to(&a).unwrap();
    ca.write_u64(va(SRC), 77).unwrap();
    a.area_share(va(SRC), 2 * PAGE_SIZE, &b, va(DST), RW)
        .unwrap();
    ca.run(|| a.area_destroy(va(SRC))).unwrap();
    drop(ca);
    drop(a);
    let mut cb = sim.cpu(1);
    cb.switch_to(&b).unwrap();
    assert_eq!(cb.read_u64(va(DST)).unwrap(), 77);
    assert_eq!(b.share_info(va(DST)).unwrap().refs(), 1);
}

#[test]
fn last_reference_frees_every_shared_frame() {
    let sim = sim();
    let baseline = sim.frames_in_use();
    let (a, b) = (
        sim.system().create().unwrap(),
        sim.system().create().unwrap(),
    );
    a.area_create(va(SRC), 8 * PAGE_SIZE, RW).unwrap();
    a.area_share(va(SRC), 8 * PAGE_SIZE, &b, va(DST), RW)
        .unwrap();
    {
        let (mut ca, mut cb) = (sim.cpu(0), sim.cpu(1));
        ca.switch_to(&a).unwrap();
        cb.switch_to(&b).unwrap();
        for i in 0..8 {
            ca.write_u64(va(SRC + i * PAGE_SIZE), i).unwrap();
            assert_eq!(cb.read_u64(va(DST + i * PAGE_SIZE)).unwrap(), i);
        }
        let frame = a.translate(va(SRC).page()).unwrap().0;
        // Two mappings and the page map hold it.
        assert_eq!(sim.hardware().frames().refcount(frame), 3);
        cb.run(|| b.area_destroy(va(DST))).unwrap();
        assert_eq!(sim.hardware().frames().refcount(frame), 2);
    }
    let data_frames = 8;
    let before_drop = sim.frames_in_use();
    drop(a);
    assert!(before_drop - sim.frames_in_use() >= data_frames);
    drop(b);
    assert_eq!(sim.frames_in_use(), baseline);
}

#[test]
fn share_refusals_use_the_seed_errors() {
    let sim = sim();
    let (a, b) = (
        sim.system().create().unwrap(),
        sim.system().create().unwrap(),
    );
    a.area_create(va(SRC), 2 * PAGE_SIZE, AreaFlags::READ)
        .unwrap();
    assert_eq!(
        a.area_share(va(0x9000_0000), 2 * PAGE_SIZE, &b, va(DST), AreaFlags::READ),
        Err(Error::NotFound)
    );
    assert_eq!(
        a.area_share(va(SRC), PAGE_SIZE, &b, va(DST), AreaFlags::READ),
        Err(Error::PermissionDenied),
        "size differs"
    );
    assert_eq!(
        a.area_share(va(SRC), 2 * PAGE_SIZE, &b, va(DST), RW),
        Err(Error::PermissionDenied),
        "asks for write"
    );
    b.area_create(va(DST), PAGE_SIZE, RW).unwrap();
    assert_eq!(
        a.area_share(va(SRC), 2 * PAGE_SIZE, &b, va(DST), AreaFlags::READ),
        Err(Error::AddressNotAvailable),
        "destination taken"
    );
    assert!(a.share_info(va(SRC)).is_none_or(|s| s.refs() == 1));
    assert_eq!(b.areas().len(), 1);
}

#[test]
fn cacheable_attribute_is_inherited() {
    let sim = sim();
    let (a, b) = (
        sim.system().create().unwrap(),
        sim.system().create().unwrap(),
    );
    a.area_create(va(SRC), PAGE_SIZE, RW | AreaFlags::CACHEABLE)
        .unwrap();
    a.area_share(va(SRC), PAGE_SIZE, &b, va(DST), AreaFlags::READ)
        .unwrap();
    assert_eq!(
        b.area(va(DST)).unwrap().flags,
        AreaFlags::READ | AreaFlags::CACHEABLE
    );
}

#[test]
fn shared_areas_refuse_resize_and_change_of_flags() {
    let sim = sim();
    let (a, b) = (
        sim.system().create().unwrap(),
        sim.system().create().unwrap(),
    );
    a.area_create(va(SRC), 2 * PAGE_SIZE, RW).unwrap();
    a.area_share(va(SRC), 2 * PAGE_SIZE, &b, va(DST), RW)
        .unwrap();
    assert_eq!(a.area_resize(va(SRC), PAGE_SIZE), Err(Error::NotSupported));
    assert_eq!(
        b.area_resize(va(DST), 4 * PAGE_SIZE),
        Err(Error::NotSupported)
    );
    assert_eq!(
        a.area_change_flags(va(SRC), AreaFlags::READ),
        Err(Error::NotSupported)
    );
}

// ---- physical backend ----

fn phys_area(sim: &Sim, frames: u64) -> (aspace_sim::SpaceHandle, Frame) {
    // Device memory: frames near the top of physical memory, filled by "the
    // device" through physical addresses.
    let top = sim.hardware().memory().frames();
    let base = Frame::from_number(top - frames - 1);
    for i in 0..frames * PAGE_SIZE / 8 {
        let pa = aspace::PhysAddr::new(base.start().as_u64() + i * 8);
        sim.hardware().memory().write_u64(pa, 0x1000_0000 + i);
    }
    let space = sim.system().create().unwrap();
    space
        .area_create_with(
            va(SRC),
            frames * PAGE_SIZE,
            RW,
            AreaAttrs::empty(),
            TryArc::try_backend(PhysBackend::new(base, frames)).unwrap(),
        )
        .unwrap();
    (space, base)
}

#[test]
fn phys_area_reads_the_physical_range() {
    let sim = sim();
    let (space, base) = phys_area(&sim, 4);
    let mut c = sim.cpu(0);
    c.switch_to(&space).unwrap();
    for i in [0u64, 1, 511, 512, 2047] {
        assert_eq!(c.read_u64(va(SRC + i * 8)).unwrap(), 0x1000_0000 + i);
    }
    c.write_u64(va(SRC + 8), 9).unwrap();
    let mut b = [0u8; 8];
    sim.hardware()
        .memory()
        .read(aspace::PhysAddr::new(base.start().as_u64() + 8), &mut b);
    assert_eq!(u64::from_le_bytes(b), 9);
    assert_eq!(
        space
            .translate(va(SRC + PAGE_SIZE).page())
            .unwrap()
            .0
            .number(),
        base.number() + 1
    );
}

#[test]
fn phys_area_destroy_frees_nothing() {
    let sim = sim();
    let (space, _) = phys_area(&sim, 4);
    let mut c = sim.cpu(0);
    c.switch_to(&space).unwrap();
    for i in 0..4 {
        c.read_u64(va(SRC + i * PAGE_SIZE)).unwrap();
    }
    let stats = sim.hardware().frames().stats();
    c.run(|| space.area_destroy(va(SRC))).unwrap();
    let after = sim.hardware().frames().stats();
    assert_eq!(
        after.freed, stats.freed,
        "no device frame went to the allocator"
    );
    assert_eq!(after.in_use, stats.in_use);
}

#[test]
fn phys_area_refuses_resize() {
    let sim = sim();
    let (space, _) = phys_area(&sim, 2);
    assert_eq!(
        space.area_resize(va(SRC), PAGE_SIZE),
        Err(Error::NotSupported)
    );
    assert_eq!(
        space.area_change_flags(va(SRC), AreaFlags::READ),
        Err(Error::NotSupported)
    );
}

#[test]
fn phys_area_sharing_maps_the_same_frames() {
    let sim = sim();
    let (space, base) = phys_area(&sim, 2);
    let other = sim.system().create().unwrap();
    space
        .area_share(va(SRC), 2 * PAGE_SIZE, &other, va(DST), AreaFlags::READ)
        .unwrap();
    let mut c = sim.cpu(0);
    c.switch_to(&other).unwrap();
    assert_eq!(c.read_u64(va(DST + PAGE_SIZE)).unwrap(), 0x1000_0000 + 512);
    assert_eq!(
        other
            .translate(va(DST + PAGE_SIZE).page())
            .unwrap()
            .0
            .number(),
        base.number() + 1
    );
    let freed = sim.hardware().frames().stats().freed;
    let tables = space.page_table_frames() + other.page_table_frames();
    drop(c);
    drop(other);
    drop(space);
    assert_eq!(
        sim.hardware().frames().stats().freed - freed,
        tables,
        "only page tables freed"
    );
}

// ---- copies through the core ----

#[test]
fn core_copies_fault_pages_in_and_refuse_bad_pointers() {
    let sim = sim();
    let a = sim.system().create().unwrap();
    a.area_create(va(SRC), 2 * PAGE_SIZE, RW).unwrap();
    a.area_create(va(DST), PAGE_SIZE, AreaFlags::READ).unwrap();
    let msg = b"a message crossing a page boundary";
    a.copy_to_user(va(SRC + PAGE_SIZE - 5), msg).unwrap();
    assert_eq!(a.resident_pages(), 2);
    let mut back = vec![0u8; msg.len()];
    a.copy_from_user(va(SRC + PAGE_SIZE - 5), &mut back)
        .unwrap();
    assert_eq!(&back, msg);
    let mut buf = [0u8; 8];
    assert_eq!(
        a.copy_from_user(va(SRC + 2 * PAGE_SIZE - 4), &mut buf),
        Err(Error::BadMemory)
    );
    assert_eq!(a.copy_to_user(va(DST), b"x"), Err(Error::BadMemory));
    assert_eq!(
        a.copy_from_user(va(0xffff_8000_0000_0000), &mut buf),
        Err(Error::BadMemory)
    );
    assert_eq!(
        a.copy_from_user(va(u64::MAX - 2), &mut buf),
        Err(Error::BadMemory)
    );
    a.copy_from_user(va(DST), &mut buf).unwrap();
    assert_eq!(buf, [0; 8]);
}
