//! User-space pagers (HelenOS `backend_user.c`): areas whose pages a pager
//! thread supplies. The data is read back through the simulated MMU, the
//! pager's requests are counted, every frame is counted back after teardown,
//! and the waits are checked to hold no lock (other faults and area
//! operations complete while a fault waits for a held request).

mod common;

use aspace::TryArc;
use std::thread;
use std::time::Duration;

use aspace::backend::{PagerIds, PhysBackend};
use aspace::{AreaAttrs, AreaFlags, FaultReason, Frame, Page, PageFlags, VirtAddr, PAGE_SIZE};
use aspace_sim::pager::{Reply, SimPager, FILE_BASE};
use aspace_sim::{Sim, SimConfig, Space};

const RW: AreaFlags = AreaFlags::READ.union(AreaFlags::WRITE);
const A: u64 = 0x40_0000;
const B: u64 = 0x80_0000;
/// In a PML4 slot of its own, so a first fault there needs three tables.
const FAR: u64 = 0x7f00_0000_0000;
/// Long enough for any wait of these tests on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(20);

fn va(a: u64) -> VirtAddr {
    VirtAddr::new(a)
}

fn sim(cpus: usize) -> Sim {
    Sim::new(SimConfig {
        cpus,
        asids: 8,
        memory: 4 << 20,
        tlb_entries: 64,
        ..SimConfig::default()
    })
    .unwrap()
}

/// Frames the bare machine holds (the kernel's page table).
fn baseline() -> u64 {
    sim(1).frames_in_use()
}

/// A file's bytes: every byte tells its offset apart.
fn file(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
}

fn ids() -> PagerIds {
    PagerIds {
        id1: 1,
        id2: 2,
        id3: 3,
    }
}

fn paged(space: &Space, base: u64, pages: u64, flags: AreaFlags, pager: &SimPager) {
    space
        .area_create_paged(
            va(base),
            pages * PAGE_SIZE,
            flags,
            pager.link(),
            pager.space(),
            ids(),
        )
        .unwrap();
}

/// Releases the pager's held requests when dropped, so a failed assertion
/// inside a thread scope does not leave the scope waiting for faults that
/// wait for the pager.
struct ReleaseOnDrop<'a>(&'a SimPager);

impl Drop for ReleaseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

fn frame_of(space: &Space, addr: u64) -> Option<Frame> {
    space.translate(va(addr).page()).map(|(f, _)| f)
}

fn refcount(sim: &Sim, f: Frame) -> u32 {
    sim.hardware().frames().refcount(f)
}

#[test]
fn a_file_pager_serves_its_bytes_lazily_asking_once_per_page() {
    let base = baseline();
    let sim = sim(2);
    let bytes = file(3 * PAGE_SIZE as usize + 100);
    let pager = SimPager::file(&sim, bytes.clone()).unwrap();
    let space = sim.system().create().unwrap();
    paged(&space, A, 4, AreaFlags::READ, &pager);
    assert_eq!(space.area(va(A)).unwrap().backend, "pager");
    assert_eq!(pager.requests(), 0, "nothing asked before a touch");

    let mut cpu = sim.cpu(0);
    cpu.switch_to(&space).unwrap();
    let mut back = vec![0u8; bytes.len()];
    cpu.read(va(A), &mut back).unwrap();
    assert_eq!(back, bytes, "the file read back through the MMU");
    // Past the file's end the page reads as zeros.
    assert_eq!(cpu.read_u64(va(A + 4 * PAGE_SIZE - 8)).unwrap(), 0);
    cpu.read(va(A), &mut back).unwrap();
    for p in 0..4 {
        assert_eq!(pager.requests_at(p * PAGE_SIZE), 1, "page {p} asked once");
        // The client maps the pager's own frame, with a reference of its own.
        let f = frame_of(&space, A + p * PAGE_SIZE).unwrap();
        assert_eq!(Some(f), frame_of(pager.space(), FILE_BASE + p * PAGE_SIZE));
        assert_eq!(refcount(&sim, f), 2);
    }
    assert_eq!(space.resident_pages(), 4);
    assert_eq!(space.pager_requests_in_flight(va(A)), 0);
    // Writing is refused by the area's rights, without asking the pager.
    let e = cpu.write_u64(va(A), 1).unwrap_err();
    assert_eq!(e.reason, FaultReason::Access);
    assert_eq!(pager.requests(), 4);

    drop(cpu);
    drop(space);
    drop(pager);
    assert_eq!(sim.hardware().stats().stale_accesses, 0);
    assert_eq!(sim.frames_in_use(), base, "every frame back");
}

#[test]
fn two_cpus_faulting_one_page_at_once_ask_the_pager_once() {
    let base = baseline();
    let sim = sim(2);
    let bytes = file(2 * PAGE_SIZE as usize);
    let pager = SimPager::file(&sim, bytes.clone()).unwrap();
    let space = sim.system().create().unwrap();
    paged(&space, A, 2, AreaFlags::READ, &pager);
    pager.hold(PAGE_SIZE);
    let at = A + PAGE_SIZE + 40;
    let want = u64::from_le_bytes(bytes[4096 + 40..4096 + 48].try_into().unwrap());
    thread::scope(|s| {
        let _unblock = ReleaseOnDrop(&pager);
        let readers: Vec<_> = (0..2)
            .map(|c| {
                let (sim, space) = (&sim, &space);
                s.spawn(move || {
                    let mut cpu = sim.cpu(c);
                    cpu.switch_to(space).unwrap();
                    cpu.read_u64(va(at))
                })
            })
            .collect();
        // Both faults wait for the one request held.
        let joined = pager.wait_until(PATIENCE, |p| p.held() == vec![(PAGE_SIZE, 2)]);
        assert!(joined, "held: {:?}", pager.held());
        assert_eq!(space.pager_requests_in_flight(va(A)), 1);
        pager.release();
        for r in readers {
            assert_eq!(r.join().unwrap().unwrap(), want);
        }
    });
    assert_eq!(
        pager.requests_at(PAGE_SIZE),
        1,
        "asked once for both faults"
    );
    assert_eq!(pager.requests(), 1);
    assert_eq!(space.resident_pages(), 1);
    assert_eq!(space.pager_requests_in_flight(va(A)), 0);
    drop(space);
    drop(pager);
    assert_eq!(sim.frames_in_use(), base);
}

#[test]
fn a_slow_pager_holds_up_only_the_faults_waiting_for_it() {
    let base = baseline();
    let sim = sim(2);
    let bytes = file(2 * PAGE_SIZE as usize);
    let pager = SimPager::file(&sim, bytes.clone()).unwrap();
    let space = sim.system().create().unwrap();
    paged(&space, A, 2, AreaFlags::READ, &pager);
    space.area_create(va(B), 4 * PAGE_SIZE, RW).unwrap();
    pager.hold(0);
    thread::scope(|s| {
        let _unblock = ReleaseOnDrop(&pager);
        let waiting = s.spawn(|| {
            let mut cpu = sim.cpu(0);
            cpu.switch_to(&space).unwrap();
            cpu.read_u64(va(A))
        });
        assert!(pager.wait_until(PATIENCE, |p| p.held().len() == 1));
        let mut cpu = sim.cpu(1);
        cpu.switch_to(&space).unwrap();
        // Another area of the same space: its fault completes.
        cpu.write_u64(va(B + 8), 77).unwrap();
        assert_eq!(cpu.read_u64(va(B + 8)).unwrap(), 77);
        // Another page of the waiting fault's own area: so no area lock is
        // held by the waiting fault.
        let second = u64::from_le_bytes(bytes[4096..4104].try_into().unwrap());
        assert_eq!(cpu.read_u64(va(A + PAGE_SIZE)).unwrap(), second);
        // Creating and destroying an area writes the area tree: so no
        // tree lock is held either.
        cpu.run(|| space.area_create(va(B + 0x10_0000), PAGE_SIZE, RW))
            .unwrap();
        cpu.run(|| space.area_destroy(va(B + 0x10_0000))).unwrap();
        assert!(!waiting.is_finished(), "the held fault still waits");
        pager.release();
        let first = u64::from_le_bytes(bytes[0..8].try_into().unwrap());
        assert_eq!(waiting.join().unwrap().unwrap(), first);
    });
    assert_eq!(pager.requests(), 2);
    drop(space);
    drop(pager);
    assert_eq!(sim.frames_in_use(), base);
}

#[test]
fn a_dying_pager_fails_pending_and_later_faults_and_leaks_nothing() {
    let base = baseline();
    let sim = sim(2);
    let bytes = file(4 * PAGE_SIZE as usize);
    let mut pager = SimPager::file(&sim, bytes.clone()).unwrap();
    let space = sim.system().create().unwrap();
    paged(&space, A, 4, AreaFlags::READ, &pager);
    let mut cpu = sim.cpu(1);
    cpu.switch_to(&space).unwrap();
    // A page served before the pager dies stays readable.
    let third = u64::from_le_bytes(bytes[2 * 4096..2 * 4096 + 8].try_into().unwrap());
    assert_eq!(cpu.read_u64(va(A + 2 * PAGE_SIZE)).unwrap(), third);
    pager.hold_all();
    thread::scope(|s| {
        let pending = s.spawn(|| {
            let mut cpu = sim.cpu(0);
            cpu.switch_to(&space).unwrap();
            cpu.read_u64(va(A))
        });
        // Killed whatever happens, so the scope cannot hang.
        let held = pager.wait_until(PATIENCE, |p| p.held().len() == 1);
        pager.kill();
        assert!(held, "the fault's request was held");
        let e = pending.join().unwrap().unwrap_err();
        assert_eq!(e.reason, FaultReason::PagerGone, "the pending fault fails");
    });
    // The requests dropped with the pager woke the fault asleep.
    assert_eq!(sim.hardware().sleep_stats().timeouts, 0, "a lost wake");
    assert!(!pager.alive());
    let e = cpu.read_u64(va(A + PAGE_SIZE)).unwrap_err();
    assert_eq!(e.reason, FaultReason::PagerGone, "a later fault fails");
    assert_eq!(cpu.read_u64(va(A + 2 * PAGE_SIZE)).unwrap(), third);
    assert_eq!(space.resident_pages(), 1);
    assert_eq!(space.pager_requests_in_flight(va(A)), 0);
    // A copy from user memory fails as a copy does.
    let mut buf = [0u8; 8];
    assert_eq!(
        cpu.copy_from_user(va(A), &mut buf),
        Err(aspace::Error::BadMemory)
    );
    drop(cpu);
    drop(space);
    drop(pager);
    assert_eq!(sim.frames_in_use(), base, "every frame back");
}

/// Where the misbehaving pager keeps a device page (frames not counted).
const DEVICE: u64 = 0x2000_0000;

#[test]
fn bad_answers_are_refused_and_take_no_reference() {
    let base = baseline();
    let sim = sim(1);
    let victim = sim.system().create().unwrap();
    victim.area_create(va(B), PAGE_SIZE, RW).unwrap();
    victim.copy_to_user(va(B), &[9; 8]).unwrap();
    let victim_frame = frame_of(&victim, B).unwrap();
    let device = Frame::from_number(sim.hardware().memory().frames() - 1);
    let foreign = victim.clone();
    let mut pager = SimPager::spawn(
        &sim,
        |space| {
            space.area_create(va(FILE_BASE), PAGE_SIZE, RW)?;
            space.copy_to_user(va(FILE_BASE), &[5; 8])?;
            space.area_create_with(
                va(DEVICE),
                PAGE_SIZE,
                RW,
                AreaAttrs::empty(),
                TryArc::try_backend(PhysBackend::new(device, 1)).unwrap(),
            )?;
            space.copy_to_user(va(DEVICE), &[1; 8])
        },
        Box::new(move |_, req| match req.offset / PAGE_SIZE {
            0 => Reply::Page(va(FILE_BASE + 8)),         // unaligned
            1 => Reply::Page(va(FILE_BASE + 0x1_0000)),  // nothing there
            2 => Reply::Page(va(DEVICE)),                // not the pager's to give
            3 => Reply::Foreign(foreign.clone(), va(B)), // another task's page
            4 => Reply::Error,
            5 => Reply::Unanswered,
            _ => Reply::Page(va(FILE_BASE)),
        }),
    )
    .unwrap();
    let pager_frame = frame_of(pager.space(), FILE_BASE).unwrap();
    let space = sim.system().create().unwrap();
    paged(&space, A, 7, AreaFlags::READ, &pager);
    let mut cpu = sim.cpu(0);
    cpu.switch_to(&space).unwrap();
    for p in 0..6 {
        let e = cpu.read_u64(va(A + p * PAGE_SIZE)).unwrap_err();
        let want = if p == 5 {
            FaultReason::PagerGone
        } else {
            FaultReason::PagerError
        };
        assert_eq!(e.reason, want, "page {p}");
    }
    assert_eq!(pager.refused(), 4);
    assert_eq!(space.resident_pages(), 0);
    assert_eq!(refcount(&sim, victim_frame), 1, "no reference taken");
    assert_eq!(refcount(&sim, pager_frame), 1);
    // A good answer still works afterwards.
    assert_eq!(
        cpu.read_u64(va(A + 6 * PAGE_SIZE)).unwrap(),
        0x0505_0505_0505_0505
    );
    assert_eq!(refcount(&sim, pager_frame), 2);
    // A page's failure is not remembered: asked again, it fails again.
    assert!(cpu.read_u64(va(A + 4 * PAGE_SIZE)).is_err());
    assert_eq!(pager.requests_at(4 * PAGE_SIZE), 2);
    drop(cpu);
    drop(space);
    pager.kill();
    drop(pager);
    drop(victim);
    assert_eq!(sim.frames_in_use(), base, "every frame back");
}

/// A pager lends a page with no more rights than it has on it (found by a
/// review: a pager answering with a page shared to it read-only gave a
/// writable paged area write access to the sharer's memory). A client area
/// with more rights fails its fault; one with fewer maps the page and can
/// never be given more.
#[test]
fn a_page_is_lent_with_no_more_rights_than_its_pager_has() {
    let base = baseline();
    let sim = sim(1);
    let owner = sim.system().create().unwrap();
    owner.area_create(va(B), PAGE_SIZE, RW).unwrap();
    owner.copy_to_user(va(B), &0x1111u64.to_le_bytes()).unwrap();
    let o = owner.clone();
    let mut pager = SimPager::spawn(
        &sim,
        move |p| {
            // The pager may only read the owner's page.
            o.area_share(va(B), PAGE_SIZE, p, va(FILE_BASE), AreaFlags::READ)?;
            let mut b = [0u8; 8];
            p.copy_from_user(va(FILE_BASE), &mut b)
        },
        Box::new(|_, _| Reply::Page(va(FILE_BASE))),
    )
    .unwrap();
    let shared = frame_of(pager.space(), FILE_BASE).unwrap();
    let refs = refcount(&sim, shared);
    let client = sim.system().create().unwrap();
    paged(&client, A, 1, RW, &pager);
    paged(&client, FAR, 1, AreaFlags::READ, &pager);
    let mut cpu = sim.cpu(0);
    cpu.switch_to(&client).unwrap();
    for e in [
        cpu.write_u64(va(A), 0xdead).unwrap_err(),
        cpu.read_u64(va(A)).unwrap_err(),
    ] {
        assert_eq!(e.reason, FaultReason::PagerError);
    }
    assert_eq!(frame_of(&client, A), None);
    assert_eq!(refcount(&sim, shared), refs, "no reference kept");
    // Read-only: lent, and the area can no longer be made writable.
    assert_eq!(cpu.read_u64(va(FAR)).unwrap(), 0x1111);
    assert_eq!(frame_of(&client, FAR), Some(shared));
    assert_eq!(
        client.area_change_flags(va(FAR), RW),
        Err(aspace::Error::PermissionDenied)
    );
    assert_eq!(
        client.protect_range(va(FAR), PAGE_SIZE, RW),
        Err(aspace::Error::PermissionDenied)
    );
    assert_eq!(
        cpu.write_u64(va(FAR), 0xdead).unwrap_err().reason,
        FaultReason::Access
    );
    let mut b = [0u8; 8];
    owner.copy_from_user(va(B), &mut b).unwrap();
    assert_eq!(u64::from_le_bytes(b), 0x1111, "the owner's page unchanged");
    drop(cpu);
    drop(client);
    pager.kill();
    drop(pager);
    drop(owner);
    assert_eq!(sim.frames_in_use(), base, "every frame back");
}

#[test]
fn an_area_destroyed_shrunk_or_made_read_only_while_its_fault_waits_leaks_nothing() {
    let base = baseline();
    let sim = sim(2);
    let bytes = file(4 * PAGE_SIZE as usize);
    let pager = SimPager::file(&sim, bytes).unwrap();
    let space = sim.system().create().unwrap();
    let mut cpu = sim.cpu(1);
    cpu.switch_to(&space).unwrap();
    type Change = fn(&Space) -> aspace::Result<()>;
    let cases: [(&str, Change, FaultReason); 3] = [
        ("destroyed", |s| s.area_destroy(va(A)), FaultReason::NoArea),
        (
            "shrunk",
            |s| s.area_resize(va(A), PAGE_SIZE),
            FaultReason::NoArea,
        ),
        (
            "read-only",
            |s| s.area_change_flags(va(A), AreaFlags::READ),
            FaultReason::Access,
        ),
    ];
    for (i, (what, change, reason)) in cases.into_iter().enumerate() {
        paged(&space, A, 4, RW, &pager);
        let offset = 3 * PAGE_SIZE;
        pager.hold(offset);
        let asked = pager.requests_at(offset);
        thread::scope(|s| {
            let _unblock = ReleaseOnDrop(&pager);
            let waiting = s.spawn(|| {
                let mut cpu = sim.cpu(0);
                cpu.switch_to(&space).unwrap();
                cpu.write_u64(va(A + offset), 1)
            });
            assert!(pager.wait_until(PATIENCE, |p| p.held().len() == 1));
            cpu.run(|| change(&space)).unwrap();
            let answered = pager.answered();
            pager.release();
            let e = waiting.join().unwrap().unwrap_err();
            assert_eq!(e.reason, reason, "{what}");
            // The pager counts its answer once `answer` returns, which may
            // be after the fault it woke has failed.
            let counted = pager.wait_until(PATIENCE, |p| p.answered() == answered + 1);
            assert!(counted, "{what}: the pager answered ({})", pager.answered());
        });
        assert_eq!(pager.requests_at(offset), asked + 1);
        // The answer's reference went back: only the pager maps the frame.
        let f = frame_of(pager.space(), FILE_BASE + offset).unwrap();
        assert_eq!(refcount(&sim, f), 1, "{what}");
        assert_eq!(space.resident_pages(), 0, "{what}");
        if i > 0 {
            space.area_destroy(va(A)).unwrap();
        }
    }
    drop(cpu);
    drop(space);
    drop(pager);
    assert_eq!(sim.frames_in_use(), base);
}

/// What the client shows: every page of its areas, its tables, and the
/// reference count of every frame of the machine.
#[derive(Debug, PartialEq)]
struct State {
    pages: Vec<Option<(Frame, PageFlags)>>,
    table_frames: u64,
    resident: u64,
    frames_in_use: u64,
    refcounts: Vec<u32>,
}

fn state(sim: &Sim, space: &Space) -> State {
    let hw = sim.hardware();
    State {
        pages: (0..4)
            .map(|i| space.translate(Page::from_number(va(FAR).page().number() + i)))
            .collect(),
        table_frames: space.page_table_frames(),
        resident: space.resident_pages(),
        frames_in_use: sim.frames_in_use(),
        refcounts: (0..hw.memory().frames())
            .map(|n| hw.frames().refcount(Frame::from_number(n)))
            .collect(),
    }
}

#[test]
fn a_paged_fault_refused_at_any_frame_allocation_changes_nothing() {
    let base = baseline();
    for n in 0..16 {
        let sim = sim(1);
        // The pager's pages exist before the fault, so the fault's only
        // allocations are the client's page tables.
        let pager = SimPager::spawn(
            &sim,
            |space| {
                space.area_create(va(FILE_BASE), 4 * PAGE_SIZE, RW)?;
                space.copy_to_user(va(FILE_BASE), &[0x3c; 4 * PAGE_SIZE as usize])
            },
            Box::new(|_, req| Reply::Page(va(FILE_BASE + req.offset))),
        )
        .unwrap();
        let space = sim.system().create().unwrap();
        paged(&space, FAR, 4, AreaFlags::READ, &pager);
        let mut cpu = sim.cpu(0);
        cpu.switch_to(&space).unwrap();
        let before = state(&sim, &space);
        let frames = sim.hardware().frames();
        frames.fail_after(Some(n));
        let r = cpu.read_u64(va(FAR + PAGE_SIZE));
        let left = frames.allocations_left().unwrap();
        frames.fail_after(None);
        match r {
            Err(e) => {
                assert_eq!(left, 0, "refused ({e}) with allocations left");
                assert_eq!(e.reason, FaultReason::NoMemory);
                let after = state(&sim, &space);
                assert!(
                    after == before,
                    "refused at allocation {n}; before {before:#?}\nafter {after:#?}"
                );
                assert!(pager.requests() >= 1);
                assert_eq!(space.pager_requests_in_flight(va(FAR)), 0);
            }
            Ok(v) => {
                assert_eq!(v, 0x3c3c_3c3c_3c3c_3c3c);
                assert_eq!(n, 3, "a far first fault needs three tables");
            }
        }
        drop(cpu);
        drop(space);
        drop(pager);
        assert_eq!(sim.frames_in_use(), base, "allocation {n}: frames left");
        if r.is_ok() {
            return;
        }
    }
    panic!("still refused after 16 allocations");
}

#[test]
fn a_pager_space_of_another_system_is_refused() {
    let sim1 = sim(1);
    let sim2 = sim(1);
    let pager = SimPager::file(&sim2, file(10)).unwrap();
    let space = sim1.system().create().unwrap();
    let r = space.area_create_paged(
        va(A),
        PAGE_SIZE,
        AreaFlags::READ,
        pager.link(),
        pager.space(),
        ids(),
    );
    assert_eq!(r, Err(aspace::Error::InvalidArgument));
    assert!(space.areas().is_empty());
}

#[test]
fn a_fault_whose_area_was_replaced_while_it_waited_asks_the_new_areas_pager() {
    let base = baseline();
    let sim = sim(2);
    let old = SimPager::file(&sim, vec![0x11; PAGE_SIZE as usize]).unwrap();
    let new = SimPager::file(&sim, vec![0x22; PAGE_SIZE as usize]).unwrap();
    let space = sim.system().create().unwrap();
    paged(&space, A, 1, AreaFlags::READ, &old);
    old.hold(0);
    thread::scope(|s| {
        let _unblock = ReleaseOnDrop(&old);
        let waiting = s.spawn(|| {
            let mut cpu = sim.cpu(0);
            cpu.switch_to(&space).unwrap();
            cpu.read_u64(va(A))
        });
        assert!(old.wait_until(PATIENCE, |p| p.held().len() == 1));
        let cpu = sim.cpu(1);
        cpu.run(|| space.area_destroy(va(A))).unwrap();
        cpu.run(|| {
            space.area_create_paged(
                va(A),
                PAGE_SIZE,
                AreaFlags::READ,
                new.link(),
                new.space(),
                ids(),
            )
        })
        .unwrap();
        old.release();
        // The old pager's answer is given back; the new area's pager serves.
        assert_eq!(waiting.join().unwrap().unwrap(), 0x2222_2222_2222_2222);
    });
    // Counted once its `answer` returned, maybe after the fault ended.
    assert!(old.wait_until(PATIENCE, |p| p.answered() == 1));
    assert_eq!((old.requests(), old.answered()), (1, 1));
    assert_eq!(new.requests(), 1);
    let f = frame_of(old.space(), FILE_BASE).unwrap();
    assert_eq!(refcount(&sim, f), 1, "the old answer's reference went back");
    assert_eq!(
        frame_of(&space, A),
        frame_of(new.space(), FILE_BASE),
        "the new pager's frame is mapped"
    );
    drop(space);
    drop(old);
    drop(new);
    assert_eq!(sim.frames_in_use(), base);
}

/// Two CPUs read random pages of a paged area while a third destroys,
/// recreates, shrinks and grows it, and the pager answers at its own pace:
/// every read gives the file's bytes or fails for want of an area, no TLB
/// ever reaches a freed frame, and every frame comes back.
#[test]
fn paged_faults_racing_area_changes_read_the_file_and_leak_nothing() {
    let seed = common::seed(0x5eed_0015);
    let base = baseline();
    let sim = sim(3);
    const PAGES: u64 = 8;
    let word = |p: u64| 0x0101_0101_0101_0101u64.wrapping_mul(p + 1);
    let bytes: Vec<u8> = (0..PAGES)
        .flat_map(|p| word(p).to_le_bytes().repeat(PAGE_SIZE as usize / 8))
        .collect();
    let pager = SimPager::file(&sim, bytes).unwrap();
    let space = sim.system().create().unwrap();
    paged(&space, A, PAGES, AreaFlags::READ, &pager);
    let stop = &std::sync::atomic::AtomicBool::new(false);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        thread::scope(|s| {
            for c in 0..2usize {
                let (sim, space) = (&sim, &space);
                s.spawn(move || {
                    let mut rng = common::XorShift::new(seed + c as u64);
                    let mut cpu = sim.cpu(c);
                    cpu.switch_to(space).unwrap();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let p = rng.below(PAGES);
                        match cpu.read_u64(va(A + p * PAGE_SIZE + 8 * rng.below(512))) {
                            Ok(v) => assert_eq!(v, word(p), "page {p}"),
                            Err(e) => assert_eq!(e.reason, FaultReason::NoArea, "page {p}"),
                        }
                    }
                });
            }
            let mut rng = common::XorShift::new(seed + 7);
            let cpu = sim.cpu(2);
            // The readers stop with the changes, even if one of them fails.
            struct Stop<'a>(&'a std::sync::atomic::AtomicBool);
            impl Drop for Stop<'_> {
                fn drop(&mut self) {
                    self.0.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
            let _stop = Stop(stop);
            for _ in 0..300 {
                match rng.below(3) {
                    0 => {
                        let _ = cpu.run(|| space.area_destroy(va(A)));
                        paged(&space, A, PAGES, AreaFlags::READ, &pager);
                    }
                    1 => {
                        let pages = 1 + rng.below(PAGES);
                        cpu.run(|| space.area_resize(va(A), pages * PAGE_SIZE))
                            .unwrap();
                    }
                    _ => {}
                }
                thread::sleep(Duration::from_micros(200));
            }
        })
    }));
    if let Err(e) = outcome {
        eprintln!("failed with seed {seed} (replay: ASPACE_SEED={seed})");
        std::panic::resume_unwind(e);
    }
    assert_eq!(space.pager_requests_in_flight(va(A)), 0);
    eprintln!("pager asked {} times", pager.requests());
    assert!(pager.requests() > 2 * PAGES, "pages were asked for again");
    drop(space);
    drop(pager);
    assert_eq!(sim.hardware().stats().stale_accesses, 0);
    assert_eq!(sim.frames_in_use(), base, "every frame back");
}

/// Faults waiting for a pager's answers sleep (the machine's `Sleep`), and
/// every answer wakes them: none waits out the sleep's time limit (a lost
/// wake). The same faults with the machine polling instead (`relax` in each
/// round) read the same data.
#[test]
fn faults_waiting_for_a_pager_sleep_until_its_answer_or_poll() {
    for poll in [false, true] {
        let base = baseline();
        let sim = sim(3);
        sim.hardware().set_pager_polling(poll);
        let bytes = file(6 * PAGE_SIZE as usize);
        let pager = SimPager::file(&sim, bytes.clone()).unwrap();
        let space = sim.system().create().unwrap();
        paged(&space, A, 6, AreaFlags::READ, &pager);
        pager.hold_all();
        let relaxes = sim.hardware().stats().relaxes;
        thread::scope(|s| {
            let _unblock = ReleaseOnDrop(&pager);
            let readers: Vec<_> = (0..3u64)
                .map(|c| {
                    let (sim, space) = (&sim, &space);
                    s.spawn(move || {
                        let mut cpu = sim.cpu(c as usize);
                        cpu.switch_to(space).unwrap();
                        // Two pages each: a second wait after the first.
                        (0..2)
                            .map(|k| cpu.read_u64(va(A + (2 * c + k) * PAGE_SIZE + 8)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            // Three faults wait for three held requests; then they go.
            let held = pager.wait_until(PATIENCE, |p| p.held().len() == 3);
            assert!(held, "held: {:?}", pager.held());
            pager.release();
            for (c, r) in readers.into_iter().enumerate() {
                for (k, got) in r.join().unwrap().into_iter().enumerate() {
                    let at = (2 * c + k) * PAGE_SIZE as usize + 8;
                    let want = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
                    assert_eq!(got.unwrap(), want, "cpu {c} page {k}, poll {poll}");
                }
            }
        });
        let after = sim.hardware().sleep_stats();
        assert_eq!(after.timeouts, 0, "a lost wake (poll {poll})");
        if poll {
            assert!(sim.hardware().stats().relaxes > relaxes, "polled");
            assert_eq!(after, Default::default(), "no sleep");
        } else {
            assert!(after.sleeps > 0, "slept: {after:?}");
            assert_eq!(after.wakes, 6, "a wake per answer: {after:?}");
        }
        drop(space);
        drop(pager);
        assert_eq!(sim.frames_in_use(), base);
    }
}

/// A request keeps the way of waiting it was made with: a fault that joins
/// a request made while the machine polled polls too, though the machine
/// sleeps by then (were it to sleep, nothing would wake it: the answer
/// wakes only the request's own sleep).
#[test]
fn a_fault_joining_a_request_waits_as_the_request_was_made() {
    let sim = sim(2);
    sim.hardware().set_pager_polling(true);
    let bytes = file(PAGE_SIZE as usize);
    let pager = SimPager::file(&sim, bytes.clone()).unwrap();
    let space = sim.system().create().unwrap();
    paged(&space, A, 1, AreaFlags::READ, &pager);
    pager.hold_all();
    let want = u64::from_le_bytes(bytes[16..24].try_into().unwrap());
    thread::scope(|s| {
        let _unblock = ReleaseOnDrop(&pager);
        let read = |c: usize| {
            let (sim, space) = (&sim, &space);
            s.spawn(move || {
                let mut cpu = sim.cpu(c);
                cpu.switch_to(space).unwrap();
                cpu.read_u64(va(A + 16))
            })
        };
        let first = read(0);
        assert!(pager.wait_until(PATIENCE, |p| p.held() == vec![(0, 1)]));
        sim.hardware().set_pager_polling(false);
        let second = read(1);
        let joined = pager.wait_until(PATIENCE, |p| p.held() == vec![(0, 2)]);
        assert!(joined, "held: {:?}", pager.held());
        pager.release();
        assert_eq!(first.join().unwrap().unwrap(), want);
        assert_eq!(second.join().unwrap().unwrap(), want);
    });
    let stats = sim.hardware().sleep_stats();
    assert_eq!((stats.sleeps, stats.timeouts), (0, 0), "{stats:?}");
}
