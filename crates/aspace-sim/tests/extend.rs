//! `AddressSpace::area_extend_down`: an area's base moved down on request
//! (a Linux stack grown after a fault below it), its pages kept where they
//! are, and every refusal leaving the machine as it was.

use aspace::{AreaFlags, Error, VirtAddr, PAGE_SIZE};
use aspace_sim::snapshot::state;
use aspace_sim::{Sim, SimConfig};

mod common;

const RW: AreaFlags = AreaFlags::READ.union(AreaFlags::WRITE);
const A: u64 = 0x40_0000;
const P: u64 = PAGE_SIZE;

fn va(a: u64) -> VirtAddr {
    VirtAddr::new(a)
}

fn sim() -> Sim {
    Sim::new(SimConfig {
        arch: common::arch(),
        cpus: 2,
        memory: 4 << 20,
        ..SimConfig::default()
    })
    .unwrap()
}

#[test]
fn an_area_extended_down_keeps_its_pages_and_reserves_the_new_ones() {
    let sim = sim();
    let baseline = sim.frames_in_use();
    let s = sim.system().create().unwrap();
    let mut c = sim.cpu(0);
    c.switch_to(&s).unwrap();
    s.area_create(va(A), 4 * P, RW).unwrap();
    for i in 0..4 {
        c.write_u64(va(A + i * P), 10 + i).unwrap();
    }
    let committed = sim.system().reserve().committed();
    let frames = sim.frames_in_use();
    c.run(|| s.area_extend_down(va(A + P), va(A - 3 * P)))
        .unwrap();
    let area = s.area(va(A)).unwrap();
    assert_eq!(
        (area.base, area.pages, area.resident),
        (va(A - 3 * P), 7, 4)
    );
    assert_eq!(sim.system().reserve().committed(), committed + 3);
    assert_eq!(sim.frames_in_use(), frames, "nothing mapped");
    for i in 0..4 {
        assert_eq!(c.read_u64(va(A + i * P)), Ok(10 + i), "page {i} kept");
    }
    // The new pages fault in as the area's own: zeros, then data.
    assert_eq!(c.read_u64(va(A - 3 * P)), Ok(0));
    c.write_u64(va(A - P), 5).unwrap();
    assert_eq!(c.read_u64(va(A - P)), Ok(5));
    // Destroyed whole: every frame and reservation back.
    c.run(|| s.area_destroy(va(A))).unwrap();
    assert_eq!(sim.system().reserve().committed(), 0);
    c.idle();
    drop(s);
    assert_eq!(sim.frames_in_use(), baseline);
}

#[test]
fn refusals_change_nothing() {
    let sim = sim();
    let s = sim.system().create().unwrap();
    let other = sim.system().create().unwrap();
    let mut c = sim.cpu(0);
    c.switch_to(&s).unwrap();
    s.area_create(va(A), 4 * P, RW).unwrap();
    c.write_u64(va(A), 1).unwrap();
    // An area below, ending 8 pages under `A`.
    s.area_create(va(A - 16 * P), 8 * P, RW).unwrap();
    // A shared area.
    s.area_create(va(A + 64 * P), 2 * P, RW).unwrap();
    s.area_share(va(A + 64 * P), 2 * P, &other, va(A), RW)
        .unwrap();
    let reserve = sim.system().reserve();
    reserve.set_limit(reserve.committed() + 4);
    let before = state(&sim, &[&s, &other]);
    let cases = [
        (va(A), va(A - P + 8), Error::InvalidArgument),
        (va(A), va(A), Error::InvalidArgument),
        (va(A), va(A + P), Error::InvalidArgument),
        (va(A), va(0), Error::InvalidArgument),
        (va(A - 32 * P), va(A - 40 * P), Error::NotFound),
        // Into the area below.
        (va(A), va(A - 9 * P), Error::AddressNotAvailable),
        (va(A + 64 * P), va(A + 60 * P), Error::NotSupported),
        // Past the commit limit (4 pages left).
        (va(A), va(A - 5 * P), Error::NoMemory),
    ];
    for (addr, new_base, err) in cases {
        assert_eq!(
            c.run(|| s.area_extend_down(addr, new_base)),
            Err(err),
            "{addr:?} to {new_base:?}"
        );
        assert_eq!(
            state(&sim, &[&s, &other]),
            before,
            "{addr:?} to {new_base:?}"
        );
    }
    // Right up to the area below, within the limit.
    c.run(|| s.area_extend_down(va(A), va(A - 4 * P))).unwrap();
    assert_eq!(reserve.committed(), reserve.limit());
}

#[test]
fn an_area_with_a_guard_page_keeps_room_for_it() {
    let sim = sim();
    let s = sim.system().create().unwrap();
    s.area_create(va(A - 8 * P), 4 * P, RW).unwrap();
    s.area_create(va(A), 4 * P, RW | AreaFlags::GUARD).unwrap();
    // Its guard page would land on the area below's last page.
    assert_eq!(
        s.area_extend_down(va(A), va(A - 4 * P)),
        Err(Error::AddressNotAvailable)
    );
    s.area_extend_down(va(A), va(A - 3 * P)).unwrap();
    assert_eq!(s.area(va(A)).unwrap().base, va(A - 3 * P));
}
