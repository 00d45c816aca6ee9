//! Races between the members of a `fork` family (found by a review of
//! `MADV_REMOVE` across processes; the first two failed before their fix,
//! in most runs): a `fork` racing with a hole punched in a shared file, a
//! frame the hole took out given to another member's private copy before
//! the hole reached that member, and a member moving its mapping of the
//! file while the hole reaches it. All hold whatever the timing.

use aspace::{FrameAllocator, Machine, VirtAddr, PAGE_SIZE};
use aspace_linux::consts::*;
use aspace_linux::{Advice, FileRef, MapFlags, Prot};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Barrier;

mod common;
use common::{setup_on, BASE};
/// Threads that take a frame-pool shard between the two racing ones, so
/// that both draw frames from the same shard (the pool deals shards to
/// threads round robin): only then can a freed frame go straight to the
/// other member.
const DUMMIES: usize = 7;

fn va(a: u64) -> VirtAddr {
    VirtAddr::new(a)
}

/// A `fork` racing with `MADV_REMOVE` in the family: the child made while
/// the hole reaches the members must be reached too (fixed: the family is
/// locked across the fork), or it keeps the punched page for good.
#[test]
fn a_fork_racing_with_a_hole_is_reached_by_it() {
    let (sim, mut p1, mut c0) = setup_on(3, 64 << 20);
    let mut c1 = sim.cpu(1);
    let mut c2 = sim.cpu(2);
    let shared = BASE;
    c0.run(|| {
        p1.mmap(
            shared,
            PAGE_SIZE,
            Prot::RW,
            MapFlags(MAP_SHARED | MAP_FIXED),
            Some(&FileRef("F".into())),
            0,
        )
    })
    .unwrap();
    let private = BASE + 0x10_0000;
    c0.run(|| {
        p1.mmap(
            private,
            PAGE_SIZE,
            Prot::R,
            MapFlags(MAP_PRIVATE | MAP_FIXED),
            Some(&FileRef("F".into())),
            0,
        )
    })
    .unwrap();
    // Some private memory, so that fork takes a while.
    c0.run(|| {
        p1.mmap(
            BASE + 0x100_0000,
            256 * PAGE_SIZE,
            Prot::RW,
            MapFlags(MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_POPULATE),
            None,
            0,
        )
    })
    .unwrap();
    let mut p2 = c0.run(|| p1.fork()).unwrap();
    c1.switch_to(p2.space()).unwrap();
    let mut stale = 0;
    let rounds = 2000;
    for round in 0..rounds {
        let v = 1000 + round;
        c0.write_u64(va(shared), v).unwrap();
        // p2's private mapping borrows the file's frame.
        assert_eq!(c1.read_u64(va(private)).unwrap(), v);
        let barrier = Barrier::new(2);
        let (p3, r) = std::thread::scope(|s| {
            let (b, p1r, c0r) = (&barrier, &mut p1, &mut c0);
            let a = s.spawn(move || {
                b.wait();
                let t = std::time::Instant::now();
                let wait = std::time::Duration::from_micros((round * 7) % 400);
                while t.elapsed() < wait {
                    std::hint::spin_loop();
                }
                c0r.run(|| p1r.madvise(shared, PAGE_SIZE, Advice(MADV_REMOVE)))
            });
            let (b, p2r, c1r) = (&barrier, &mut p2, &mut c1);
            let f = s.spawn(move || {
                b.wait();
                c1r.run(|| p2r.fork())
            });
            (f.join().unwrap().unwrap(), a.join().unwrap())
        });
        r.unwrap();
        c2.switch_to(p3.space()).unwrap();
        // Afterwards: a write through p1 is seen by p2 and p3.
        c0.write_u64(va(shared), 5_000 + round).unwrap();
        let in_p2 = c1.read_u64(va(private)).unwrap();
        let in_p3 = c2.read_u64(va(private)).unwrap();
        assert_eq!(in_p2, 5_000 + round, "round {round}: p2");
        if in_p3 != 5_000 + round {
            stale += 1;
            eprintln!(
                "round {round}: p3 reads {in_p3} (p1 wrote {})",
                5_000 + round
            );
        }
        c2.idle();
        drop(p3);
    }
    assert_eq!(
        stale, 0,
        "{stale} of {rounds} rounds: the new child kept the punched page"
    );
}

/// The frames a hole took out stay referenced until every member lost
/// them: otherwise one could be another member's private copy by then
/// (its private mapping of the same file), which the hole would take out.
#[test]
fn a_hole_never_takes_another_members_private_copy() {
    let (sim, mut p1, mut c0) = setup_on(2, 64 << 20);
    let mut c1 = sim.cpu(1);
    let f = FileRef("F".into());
    let (shared, private) = (BASE, BASE + 0x10_0000);
    c0.run(|| {
        p1.mmap(
            shared,
            2 * PAGE_SIZE,
            Prot::RW,
            MapFlags(MAP_SHARED | MAP_FIXED),
            Some(&f),
            0,
        )
    })
    .unwrap();
    c0.run(|| {
        p1.mmap(
            private,
            2 * PAGE_SIZE,
            Prot::RW,
            MapFlags(MAP_PRIVATE | MAP_FIXED),
            Some(&f),
            0,
        )
    })
    .unwrap();
    // The file's page 1 resident for good (p2's private page 1 borrows it).
    c0.write_u64(va(shared + PAGE_SIZE), 7).unwrap();
    let mut p2 = c0.run(|| p1.fork()).unwrap();
    c1.switch_to(p2.space()).unwrap();
    let object = p2.vma_at(shared).unwrap().object().unwrap().clone();
    let rounds: u64 = 20000;
    let barrier = Barrier::new(2);
    let punched = AtomicBool::new(false);
    let lost = AtomicU64::new(0);
    let touch = || {
        let m = sim.system().machine();
        let fr = m.frames().alloc().unwrap();
        m.frames().release(fr);
    };
    std::thread::scope(|s| {
        let (b, p1r, c0r) = (&barrier, &mut p1, &mut c0);
        let punched_a = &punched;
        let a = s.spawn(move || {
            touch(); // this thread's frame shard, first
            b.wait(); // dummies and B after
            for round in 0..rounds {
                c0r.write_u64(va(shared), round + 1).unwrap();
                b.wait();
                c0r.run(|| p1r.madvise(shared, PAGE_SIZE, Advice(MADV_REMOVE)))
                    .unwrap();
                punched_a.store(true, SeqCst);
                b.wait();
                b.wait();
            }
        });
        // Let A take its shard, then 7 threads take the next ones, so that
        // B's is A's again (8 shards, dealt round robin).
        // (A waits at the barrier until we join it below.)
        std::thread::sleep(std::time::Duration::from_millis(50));
        for _ in 0..DUMMIES {
            s.spawn(touch).join().unwrap();
        }
        let (p2r, c1r) = (&mut p2, &mut c1);
        let (object, punched_b, lost_b, barrier) = (&object, &punched, &lost, &barrier);
        let bt = s.spawn(move || {
            touch();
            barrier.wait();
            for round in 0..rounds {
                let u = 1_000_000 + round;
                barrier.wait();
                // As soon as the hole is in the object, a private copy.
                while object.peek(0).is_some() {
                    std::hint::spin_loop();
                }
                let spin = std::time::Instant::now();
                while spin.elapsed() < std::time::Duration::from_nanos((round % 64) * 100) {
                    std::hint::spin_loop();
                }
                c1r.write_u64(va(private + PAGE_SIZE), u).unwrap();
                while !punched_b.load(SeqCst) {
                    std::hint::spin_loop();
                }
                barrier.wait();
                // A is done: p2's own copy must still be there.
                let got = c1r.read_u64(va(private + PAGE_SIZE)).unwrap();
                if got != u {
                    lost_b.fetch_add(1, SeqCst);
                    eprintln!("round {round}: p2's private copy reads {got}, wrote {u}");
                }
                c1r.run(|| p2r.madvise(private + PAGE_SIZE, PAGE_SIZE, Advice(MADV_DONTNEED)))
                    .unwrap();
                punched_b.store(false, SeqCst);
                barrier.wait();
            }
        });
        a.join().unwrap();
        bt.join().unwrap();
    });
    assert_eq!(lost.load(SeqCst), 0, "private writes lost");
}

/// A member moving its shared mapping of a file (`mremap`) while a hole
/// punched through another member reaches it: the hole finds the mapping
/// where it is then (the member's areas are found and discarded in one
/// step), so the moved mapping does not keep the punched page.
#[test]
fn a_mapping_moved_while_a_hole_reaches_it_loses_the_page() {
    let (sim, mut p1, mut c0) = setup_on(2, 64 << 20);
    let mut c1 = sim.cpu(1);
    let f = FileRef("F".into());
    let (here, there) = (BASE, BASE + 0x10_0000);
    c0.run(|| {
        p1.mmap(
            here,
            PAGE_SIZE,
            Prot::RW,
            MapFlags(MAP_SHARED | MAP_FIXED),
            Some(&f),
            0,
        )
    })
    .unwrap();
    let mut p2 = c0.run(|| p1.fork()).unwrap();
    c1.switch_to(p2.space()).unwrap();
    let rounds: u64 = 20000;
    let barrier = Barrier::new(2);
    let stale = AtomicU64::new(0);
    let value = AtomicU64::new(0);
    std::thread::scope(|s| {
        let (b, p1r, c0r, value_a, stale_a) = (&barrier, &mut p1, &mut c0, &value, &stale);
        s.spawn(move || {
            // (No panic in here: the other thread would wait for good.)
            let check = |ok: bool, what: &str| {
                if !ok {
                    stale_a.fetch_add(1, SeqCst);
                    eprintln!("{what} failed");
                }
            };
            for round in 0..rounds {
                check(c0r.write_u64(va(here), 1000 + round).is_ok(), "write");
                b.wait(); // B checks it sees the value, then both go
                b.wait();
                let punched = c0r.run(|| p1r.madvise(here, PAGE_SIZE, Advice(MADV_REMOVE)));
                check(punched.is_ok(), "madvise");
                b.wait(); // both done
                          // After the hole: this write lands in a new frame of the
                          // file, which B's mapping must show wherever it moved.
                check(c0r.write_u64(va(here), 5_000 + round).is_ok(), "write");
                value_a.store(5_000 + round, SeqCst);
                b.wait(); // B reads it
                b.wait();
            }
        });
        let (b, p2r, c1r, stale_b, value_b) = (&barrier, &mut p2, &mut c1, &stale, &value);
        s.spawn(move || {
            let mut at = here;
            for round in 0..rounds {
                b.wait();
                // (No panic in here: the other thread would wait for good.)
                let got = c1r.read_u64(va(at)).unwrap_or(u64::MAX);
                if got != 1000 + round {
                    stale_b.fetch_add(1, SeqCst);
                    eprintln!(
                        "round {round}: p2 reads {got} before (p1 wrote {})",
                        1000 + round
                    );
                }
                let to = if at == here { there } else { here };
                b.wait();
                let t = std::time::Instant::now();
                let wait = std::time::Duration::from_nanos((round * 3) % 20_000);
                while t.elapsed() < wait {
                    std::hint::spin_loop();
                }
                let moved = c1r.run(|| {
                    p2r.mremap(
                        at,
                        PAGE_SIZE,
                        PAGE_SIZE,
                        aspace_linux::RemapFlags(MREMAP_MAYMOVE | MREMAP_FIXED),
                        to,
                    )
                });
                if moved == Ok(to) {
                    at = to;
                } else {
                    stale_b.fetch_add(1, SeqCst);
                    eprintln!("round {round}: mremap gave {moved:?}");
                }
                b.wait();
                b.wait();
                let got = c1r.read_u64(va(at)).unwrap_or(u64::MAX);
                let want = value_b.load(SeqCst);
                if got != want {
                    stale_b.fetch_add(1, SeqCst);
                    eprintln!("round {round}: p2 reads {got} (p1 wrote {want})");
                }
                b.wait();
            }
        });
    });
    let stale = stale.load(SeqCst);
    assert_eq!(
        stale, 0,
        "{stale} failures in {rounds} rounds: the moved mapping kept the punched page"
    );
}
