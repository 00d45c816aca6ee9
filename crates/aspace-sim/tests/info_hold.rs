//! Area information copied to user memory (`sys_as_area_get_info`,
//! `sys_as_area_list`) and holds on an address space (`SpaceHold`, HelenOS
//! `as_hold`/`as_release`), destroy-while-held included.

use aspace::TryArc;
use std::thread;

use aspace::backend::phys::PhysBackend;
use aspace::syscall::{
    sys_as_area_get_info, sys_as_area_list, UserAreaInfo, BACKEND_ANON, BACKEND_PHYS,
};
use aspace::{AreaAttrs, AreaFlags, Error, Frame, SpaceHold, VirtAddr, PAGE_SIZE};
use aspace_sim::{Sim, SimConfig};

fn va(a: u64) -> VirtAddr {
    VirtAddr::new(a)
}

const RW: AreaFlags = AreaFlags::READ.union(AreaFlags::WRITE);
const HEAP: u64 = 0x40_0000;
const BUF: u64 = 0x80_0000;

fn read_record(cpu: &mut aspace_sim::Cpu, at: u64) -> UserAreaInfo {
    let mut b = [0u8; UserAreaInfo::SIZE];
    cpu.read(va(at), &mut b).unwrap();
    UserAreaInfo::from_bytes(&b)
}

#[test]
fn get_info_copies_the_area_record_to_user_memory() {
    let sim = Sim::new(SimConfig::default()).unwrap();
    let space = sim.system().create().unwrap();
    space.area_create(va(HEAP), 4 * PAGE_SIZE, RW).unwrap();
    space.area_create(va(BUF), PAGE_SIZE, RW).unwrap();
    let mut cpu = sim.cpu(0);
    cpu.switch_to(&space).unwrap();
    cpu.write_u64(va(HEAP), 1).unwrap();
    cpu.write_u64(va(HEAP + 2 * PAGE_SIZE), 2).unwrap();

    let r = cpu.run(|| sys_as_area_get_info(&space, (HEAP + 0x1234) as usize, BUF as usize));
    assert_eq!(r, 0);
    let rec = read_record(&mut cpu, BUF);
    assert_eq!(rec.base, HEAP);
    assert_eq!(rec.size, 4 * PAGE_SIZE);
    assert_eq!(rec.flags, RW.bits());
    assert_eq!(rec.backend, BACKEND_ANON);
    assert_eq!((rec.resident, rec.reserved), (2, 4));
    assert_eq!(rec, UserAreaInfo::new(&space.area(va(HEAP)).unwrap()));

    // No area there: ENOENT, and the buffer keeps the old record.
    let r = cpu.run(|| sys_as_area_get_info(&space, 0x1000_0000, BUF as usize));
    assert_eq!(r, Error::NotFound.errno() as isize);
    assert_eq!(read_record(&mut cpu, BUF), rec);

    // A destination that is not writable user memory: EBADMEM.
    space
        .area_create(va(0x90_0000), PAGE_SIZE, AreaFlags::READ)
        .unwrap();
    for dest in [
        0x1000_0000u64,
        0x90_0000,
        0xffff_8000_0000_0000,
        BUF + PAGE_SIZE - 8,
    ] {
        let r = cpu.run(|| sys_as_area_get_info(&space, HEAP as usize, dest as usize));
        assert_eq!(r, Error::BadMemory.errno() as isize, "dest {dest:#x}");
    }
}

#[test]
fn list_reports_every_area_and_writes_at_most_max() {
    let sim = Sim::new(SimConfig::default()).unwrap();
    let space = sim.system().create().unwrap();
    space.area_create(va(BUF), PAGE_SIZE, RW).unwrap();
    space.area_create(va(HEAP), 2 * PAGE_SIZE, RW).unwrap();
    let device = TryArc::try_backend(PhysBackend::new(Frame::from_number(0x10), 3)).unwrap();
    space
        .area_create_with(
            va(0x20_0000),
            3 * PAGE_SIZE,
            AreaFlags::READ,
            AreaAttrs::empty(),
            device,
        )
        .unwrap();
    let mut cpu = sim.cpu(0);
    cpu.switch_to(&space).unwrap();

    let sentinel = [0xa5u8; UserAreaInfo::SIZE];
    cpu.write(va(BUF + 2 * UserAreaInfo::SIZE as u64), &sentinel)
        .unwrap();
    let n = cpu.run(|| sys_as_area_list(&space, BUF as usize, 2));
    assert_eq!(n, 3);
    let first = read_record(&mut cpu, BUF);
    let second = read_record(&mut cpu, BUF + UserAreaInfo::SIZE as u64);
    assert_eq!((first.base, first.size), (0x20_0000, 3 * PAGE_SIZE));
    assert_eq!(
        (first.flags, first.backend),
        (AreaFlags::READ.bits(), BACKEND_PHYS)
    );
    assert_eq!((second.base, second.size), (HEAP, 2 * PAGE_SIZE));
    let mut third = [0u8; UserAreaInfo::SIZE];
    cpu.read(va(BUF + 2 * UserAreaInfo::SIZE as u64), &mut third)
        .unwrap();
    assert_eq!(third, sentinel, "wrote past max");

    // max 0 writes nothing, even to an invalid buffer.
    assert_eq!(cpu.run(|| sys_as_area_list(&space, 0, 0)), 3);
    // A large enough buffer takes all three.
    assert_eq!(cpu.run(|| sys_as_area_list(&space, BUF as usize, 99)), 3);
    let third = read_record(&mut cpu, BUF + 2 * UserAreaInfo::SIZE as u64);
    assert_eq!((third.base, third.backend), (BUF, BACKEND_ANON));
    // A buffer that is not user memory.
    assert_eq!(
        cpu.run(|| sys_as_area_list(&space, 0x1000_0000, 1)),
        Error::BadMemory.errno() as isize
    );
}

#[test]
fn a_held_space_outlives_its_last_handle_and_is_destroyed_on_release() {
    let sim = Sim::new(SimConfig::default()).unwrap();
    let baseline = sim.frames_in_use();
    let space = sim.system().create().unwrap();
    space.area_create(va(HEAP), 8 * PAGE_SIZE, RW).unwrap();
    let mut cpu = sim.cpu(0);
    cpu.switch_to(&space).unwrap();
    for i in 0..8 {
        cpu.write_u64(va(HEAP + i * PAGE_SIZE), 100 + i).unwrap();
    }
    cpu.idle();

    let hold = SpaceHold::new(&space);
    assert_eq!(hold.holders(), 2);
    // The task exits: its handle goes, the hold keeps the space.
    drop(space);
    assert_eq!(hold.holders(), 1);
    assert!(sim.frames_in_use() > baseline + 8);

    // The holder still works on the space from another thread (IPC copy).
    let second = hold.clone();
    let worker = thread::spawn(move || {
        let mut b = [0u8; 8];
        second
            .copy_from_user(va(HEAP + 5 * PAGE_SIZE), &mut b)
            .unwrap();
        second.copy_to_user(va(HEAP), &7u64.to_le_bytes()).unwrap();
        assert!(!second.release(), "the first hold is still there");
        u64::from_le_bytes(b)
    });
    assert_eq!(worker.join().unwrap(), 105);
    let mut b = [0u8; 8];
    hold.copy_from_user(va(HEAP), &mut b).unwrap();
    assert_eq!(u64::from_le_bytes(b), 7);

    assert!(hold.release(), "the last release destroys the space");
    assert_eq!(sim.frames_in_use(), baseline, "teardown left frames behind");
}

#[test]
fn releases_racing_on_many_threads_destroy_the_space_once() {
    for round in 0..20 {
        let sim = Sim::new(SimConfig::default()).unwrap();
        let baseline = sim.frames_in_use();
        let space = sim.system().create().unwrap();
        space.area_create(va(HEAP), 4 * PAGE_SIZE, RW).unwrap();
        space.copy_to_user(va(HEAP), &[1; 64]).unwrap();
        let holds: Vec<_> = (0..4).map(|_| SpaceHold::new(&space)).collect();
        drop(space);
        let last: usize = holds
            .into_iter()
            .map(|h| thread::spawn(move || h.release() as usize))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(last, 1, "round {round}: exactly one release is the last");
        assert_eq!(sim.frames_in_use(), baseline, "round {round}");
    }
}
