//! ASIDs on the simulated machine: a small pool shared by many address
//! spaces, handed out on the first switch, kept while a space runs, stolen
//! from the least recently used inactive space (and then invalidated in every
//! TLB), and returned when a space is destroyed.
//!
//! Randomised schedules come from a seeded xorshift generator; assertion
//! messages carry the seed. `ASPACE_SEED=<n>` overrides the default seed.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::thread;

use aspace::{AreaFlags, Asid, Cpus, Error, VirtAddr, PAGE_SIZE};
use aspace_sim::{Cpu, Sim, SimConfig, SpaceHandle};

mod common;
use common::{va, SyncPoint, XorShift};

const RW: AreaFlags = AreaFlags::READ.union(AreaFlags::WRITE);
const BASE: u64 = 0x40_0000;
const DEFAULT_SEED: u64 = 0xa51d_5eed;

fn seed() -> u64 {
    common::seed(DEFAULT_SEED)
}

fn sim(cpus: usize, asids: u16) -> Sim {
    Sim::new(SimConfig {
        arch: common::arch(),
        cpus,
        memory: 16 << 20,
        asids,
        tlb_entries: 64,
    })
    .unwrap()
}

/// `n` spaces, each with one RW area of `pages` pages at the same virtual
/// address, so only the ASID tells their TLB entries apart.
fn spaces(sim: &Sim, n: usize, pages: u64) -> Vec<SpaceHandle> {
    (0..n)
        .map(|_| {
            let s = sim.system().create().unwrap();
            s.area_create(va(BASE), pages * PAGE_SIZE, RW).unwrap();
            s
        })
        .collect()
}

fn word(page: u64) -> VirtAddr {
    va(BASE + page * PAGE_SIZE)
}

/// The value page `page` of space `space` holds after `version` writes.
fn value(space: usize, page: u64, version: u64) -> u64 {
    0x5000_0000_0000_0000 | (space as u64) << 40 | version << 8 | page
}

/// Every user TLB entry a CPU can use now — tagged with the ASID it has
/// loaded — maps the frame the ASID's owner maps at that page. (Holds as
/// long as no translations were removed, which the tests here never do:
/// only ASIDs change hands.) Entries under other ASIDs may linger after a
/// steal; a CPU flushes them when it first loads the ASID for its new
/// owner, which the next call checks.
fn assert_tlbs_coherent(sim: &Sim, spaces: &[SpaceHandle], ctx: &str) {
    for cpu in 0..sim.hardware().cpu_count() {
        let loaded = sim.hardware().loaded_asid(cpu);
        if loaded == Asid::KERNEL {
            continue;
        }
        let owner = spaces
            .iter()
            .position(|s| s.asid() == Some(loaded))
            .unwrap_or_else(|| panic!("{ctx}: CPU {cpu} runs {loaded:?}, which no space holds"));
        for e in sim.hardware().tlb_entries(cpu) {
            if e.asid != loaded {
                continue;
            }
            let mapped = spaces[owner].translate(e.page).map(|(f, _)| f);
            assert_eq!(
                mapped,
                Some(e.frame),
                "{ctx}: CPU {cpu} can use {e:?}, but space {owner}, which holds {:?}, maps \
                 {mapped:?} there (an entry of the ASID's previous owner survived)",
                e.asid
            );
        }
    }
}

/// Two CPU threads switch among `n` spaces in a seeded schedule (never the
/// same space on both at once), verifying each space's data and writing a
/// new version of it on every visit.
fn round_robin(asids: u16, n: usize, rounds: usize, seed: u64) {
    const PAGES: u64 = 4;
    let sim = sim(2, asids);
    let spaces = spaces(&sim, n, PAGES);
    // Rounds alternate between a strict rotation (every space in turn) and
    // random pairs.
    let mut rng = XorShift::new(seed);
    let schedule: Vec<[usize; 2]> = (0..rounds)
        .map(|r| {
            if r % 2 == 0 {
                [r % n, (r + n / 2) % n]
            } else {
                let a = rng.below(n as u64) as usize;
                let b = (a + 1 + rng.below(n as u64 - 1) as usize) % n;
                [a, b]
            }
        })
        .collect();
    // Version of each space's data; a space runs on one CPU at a time.
    let versions: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
    let barrier = SyncPoint::new(2);
    let ctx = format!("seed {seed}, {asids} ASIDs, {n} spaces");

    thread::scope(|s| {
        for id in 0..2 {
            let mut cpu: Cpu = sim.cpu(id);
            let (sim, spaces, schedule, versions, barrier, ctx) =
                (&sim, &spaces, &schedule, &versions, &barrier, &ctx);
            s.spawn(move || {
                let _guard = barrier.guard();
                for (round, pair) in schedule.iter().enumerate() {
                    let me = pair[id];
                    let other = pair[1 - id];
                    let space = &spaces[me];
                    let asid = cpu.switch_to(space).unwrap();
                    // Both CPUs have switched; nobody switches until both
                    // have checked.
                    barrier.wait();
                    let ctx = format!("{ctx}, round {round}, CPU {id} runs space {me}");
                    assert_eq!(space.asid(), Some(asid), "{ctx}");
                    assert_eq!(sim.hardware().loaded_asid(id), asid, "{ctx}");
                    assert_ne!(asid, Asid::KERNEL, "{ctx}");
                    assert_ne!(
                        spaces[other].asid(),
                        Some(asid),
                        "{ctx}: space {other} on the other CPU shares the ASID"
                    );
                    let v = versions[me].load(Relaxed);
                    for p in 0..PAGES {
                        let want = if v == 0 { 0 } else { value(me, p, v) };
                        let got = cpu.read_u64(word(p)).unwrap();
                        assert_eq!(got, want, "{ctx}: page {p} (read {got:#x})");
                    }
                    for p in 0..PAGES {
                        cpu.write_u64(word(p), value(me, p, v + 1)).unwrap();
                        let got = cpu.read_u64(word(p)).unwrap();
                        assert_eq!(got, value(me, p, v + 1), "{ctx}: page {p} read back");
                    }
                    versions[me].store(v + 1, Relaxed);
                    assert_tlbs_coherent(sim, spaces, &ctx);
                    barrier.wait();
                }
                cpu.idle();
            });
        }
    });
    let stats = sim.system().stats();
    assert!(stats.asid_steals > 0, "{ctx}: {stats:?}");
    assert_eq!(stats.asid_allocs, asids as u64, "{ctx}: {stats:?}");
    assert_eq!(sim.hardware().stats().stale_accesses, 0, "{ctx}");
}

#[test]
fn asids_recycled_round_robin_many_spaces() {
    let seed = seed();
    round_robin(2, 8, 200, seed);
    round_robin(3, 10, 200, seed);
    round_robin(2, 3, 100, seed);
}

#[test]
fn stolen_asid_is_invalidated_in_every_tlb() {
    const PAGES: u64 = 8;
    let sim = sim(2, 2);
    let hw = sim.hardware();
    let all = spaces(&sim, 3, PAGES);
    let [a, b, c] = [&all[0], &all[1], &all[2]];
    let (mut c0, mut c1) = (sim.cpu(0), sim.cpu(1));
    let fill = |cpu: &mut Cpu, s: usize| {
        for p in 0..PAGES {
            cpu.write_u64(word(p), value(s, p, 1)).unwrap();
        }
    };
    let check = |cpu: &mut Cpu, s: usize, ctx: &str| {
        for p in 0..PAGES {
            assert_eq!(
                cpu.read_u64(word(p)).unwrap(),
                value(s, p, 1),
                "{ctx}: page {p}"
            );
        }
    };
    let tagged = |cpu: usize, asid: Asid| {
        hw.tlb_entries(cpu)
            .into_iter()
            .filter(|e| e.asid == asid)
            .count()
    };

    // A runs on both CPUs: both TLBs cache A's pages.
    let x = c0.switch_to(a).unwrap();
    assert_eq!(c1.switch_to(a).unwrap(), x);
    fill(&mut c0, 0);
    check(&mut c1, 0, "A on CPU 1");
    assert_eq!(tagged(0, x), PAGES as usize);
    assert_eq!(tagged(1, x), PAGES as usize);
    // B takes the other ASID on CPU 1; A's entries stay in CPU 1's TLB.
    let y = c1.switch_to(b).unwrap();
    assert_ne!(x, y);
    fill(&mut c1, 1);
    assert_eq!(tagged(1, x), PAGES as usize);
    assert_eq!(sim.system().free_asids(), 0);

    // C on CPU 0 needs an ASID: A, inactive now, loses X, which CPU 0
    // flushes once it has loaded C. CPU 1 is not interrupted: A's entries
    // under X linger there until CPU 1 first loads X for C.
    let steals = sim.system().stats().asid_steals;
    let ipis1 = hw.ipis_received(1);
    let b_entries = hw
        .tlb_entries(1)
        .into_iter()
        .filter(|e| e.asid == y)
        .collect::<Vec<_>>();
    assert_eq!(c0.switch_to(c).unwrap(), x, "C gets A's ASID");
    assert_eq!(sim.system().stats().asid_steals, steals + 1);
    assert_eq!(a.asid(), None, "A lost its ASID");
    assert_eq!(tagged(0, x), 0, "CPU 0 still caches A's pages under X");
    assert_eq!(tagged(1, x), PAGES as usize, "CPU 1 keeps them, unusable");
    assert_eq!(hw.ipis_received(1), ipis1, "a steal interrupts nobody");
    let b_now: Vec<_> = hw
        .tlb_entries(1)
        .into_iter()
        .filter(|e| e.asid == y)
        .collect();
    assert_eq!(
        b_now, b_entries,
        "B's entries (another ASID) must be left alone"
    );
    // C sees its own fresh pages, not A's data through A's old entries.
    for p in 0..PAGES {
        assert_eq!(c0.read_u64(word(p)).unwrap(), 0, "C page {p}");
    }
    fill(&mut c0, 2);
    assert_tlbs_coherent(&sim, &all, "after C took A's ASID");

    // A comes back on CPU 1 and takes B's ASID (B is the only inactive
    // space); A's data survived losing its ASID.
    assert_eq!(c1.switch_to(a).unwrap(), y);
    assert_eq!(b.asid(), None);
    assert_eq!(tagged(1, y), 0, "B's entries under Y survived the steal");
    check(&mut c1, 0, "A back on CPU 1");
    assert_tlbs_coherent(&sim, &all, "after A took B's ASID");

    // B comes back on CPU 0 and takes C's ASID.
    assert_eq!(c0.switch_to(b).unwrap(), x);
    assert_eq!(c.asid(), None);
    check(&mut c0, 1, "B back on CPU 0");
    assert_tlbs_coherent(&sim, &all, "after B took C's ASID");
    // And C again, on CPU 1, takes A's (Y) — A's entries must go.
    assert_eq!(c1.switch_to(c).unwrap(), y);
    assert_eq!(tagged(1, y), 0, "A's entries under Y survived the steal");
    check(&mut c1, 2, "C back on CPU 1");
    assert_tlbs_coherent(&sim, &all, "after C took A's ASID again");

    assert_eq!(sim.system().stats().asid_steals, steals + 4);
    assert_eq!(hw.stats().stale_accesses, 0);
}

#[test]
fn destroyed_space_returns_its_asid() {
    const ASIDS: u16 = 4;
    let sim = sim(2, ASIDS);
    let initial = sim.frames_in_use();
    assert_eq!(sim.system().free_asids(), ASIDS as usize);
    let six = spaces(&sim, 6, 2);
    let (mut c0, mut c1) = (sim.cpu(0), sim.cpu(1));
    for (i, s) in six.iter().enumerate() {
        let cpu = if i % 2 == 0 { &mut c0 } else { &mut c1 };
        cpu.switch_to(s).unwrap();
        cpu.write_u64(word(0), value(i, 0, 1)).unwrap();
        cpu.write_u64(word(1), value(i, 1, 1)).unwrap();
    }
    let stats = sim.system().stats();
    assert_eq!((stats.asid_allocs, stats.asid_steals), (4, 2), "{stats:?}");
    assert_eq!(sim.system().free_asids(), 0);
    c0.idle();
    c1.idle();
    // Inactive spaces keep their ASIDs.
    assert_eq!(sim.system().free_asids(), 0);
    let holders = six.iter().filter(|s| s.asid().is_some()).count();
    assert_eq!(holders, ASIDS as usize);

    // Each space holding an ASID gives it back when it goes.
    let mut free = 0;
    for s in six {
        let held = s.asid();
        drop(s);
        if held.is_some() {
            free += 1;
        }
        assert_eq!(sim.system().free_asids(), free);
    }
    assert_eq!(free, ASIDS as usize);
    for cpu in 0..2 {
        assert_eq!(
            sim.hardware().tlb_entries(cpu),
            [],
            "CPU {cpu} caches entries of destroyed spaces"
        );
    }
    assert_eq!(sim.frames_in_use(), initial);

    // The ASIDs come from the pool again, with no stale translations: new
    // spaces at the same addresses see zeroed pages on both CPUs.
    let again = spaces(&sim, 2, 2);
    for (i, s) in again.iter().enumerate() {
        let cpu = if i % 2 == 0 { &mut c0 } else { &mut c1 };
        cpu.switch_to(s).unwrap();
        assert_eq!(cpu.read_u64(word(0)).unwrap(), 0, "new space {i}");
        assert_eq!(cpu.read_u64(word(1)).unwrap(), 0, "new space {i}");
    }
    let now = sim.system().stats();
    assert_eq!(now.asid_allocs, stats.asid_allocs + 2);
    assert_eq!(now.asid_steals, stats.asid_steals);
    assert_eq!(sim.hardware().stats().stale_accesses, 0);
    drop((c0, c1));
    drop(again);
    assert_eq!(sim.system().free_asids(), ASIDS as usize);
    assert_eq!(sim.frames_in_use(), initial);
}

#[test]
fn asid_assigned_on_first_switch_and_kept_while_active() {
    let sim = sim(2, 2);
    let hw = sim.hardware();
    let s = sim.system().create().unwrap();
    s.area_create(va(BASE), PAGE_SIZE, RW).unwrap();
    let others = spaces(&sim, 6, 1);
    assert_eq!(s.asid(), None, "no ASID before the first switch");
    assert_eq!(sim.system().free_asids(), 2);

    let (mut c0, mut c1) = (sim.cpu(0), sim.cpu(1));
    let a = c0.switch_to(&s).unwrap();
    assert_eq!(s.asid(), Some(a));
    assert_ne!(a, Asid::KERNEL);
    assert_eq!(hw.loaded_asid(0), a);
    assert_eq!(sim.system().stats().asid_allocs, 1);
    c0.write_u64(word(0), 0x1234).unwrap();

    // CPU 1 cycles through many spaces with the one ASID left; the ones it
    // leaves are stolen from, never S, which runs on CPU 0.
    for round in 0..3 {
        for (i, o) in others.iter().enumerate() {
            let b = c1.switch_to(o).unwrap();
            assert_ne!(b, a, "round {round}: space {i} got the ASID of running S");
            assert_eq!(hw.loaded_asid(1), b);
            c1.write_u64(word(0), i as u64).unwrap();
            assert_eq!(s.asid(), Some(a), "round {round}: S lost its ASID");
            assert_eq!(hw.loaded_asid(0), a);
        }
    }
    assert!(sim.system().stats().asid_steals > 0);
    assert_eq!(c0.read_u64(word(0)).unwrap(), 0x1234);

    // S on both CPUs shares its ASID; it keeps it while either runs it.
    assert_eq!(c1.switch_to(&s).unwrap(), a);
    assert_eq!(hw.loaded_asid(1), a);
    assert_eq!(c1.read_u64(word(0)).unwrap(), 0x1234);
    c0.switch_to(&others[0]).unwrap();
    assert_eq!(s.asid(), Some(a), "S still runs on CPU 1");
    assert_eq!(c1.read_u64(word(0)).unwrap(), 0x1234);

    // With ASIDs to spare, switching away and back keeps the ASID, with no
    // allocation, steal or flush.
    let roomy = self::sim(2, 16);
    let t = roomy.system().create().unwrap();
    let u = roomy.system().create().unwrap();
    let mut r0 = roomy.cpu(0);
    let ta = r0.switch_to(&t).unwrap();
    let before = roomy.system().stats();
    for _ in 0..10 {
        r0.switch_to(&u).unwrap();
        assert_eq!(r0.switch_to(&t).unwrap(), ta);
        assert_eq!(t.asid(), Some(ta));
    }
    let d = roomy.system().stats().since(&before);
    assert_eq!(
        (d.asid_allocs, d.asid_steals, d.lazy_flushes),
        (1, 0, 0),
        "{d:?}"
    );
}

#[test]
fn switch_fails_cleanly_outside_a_cpu() {
    let sim = sim(2, 4);
    let space = sim.system().create().unwrap();
    let before = sim.system().stats();

    // From the test thread, which is on no CPU.
    assert_eq!(
        sim.system().switch(None, &space),
        Err(Error::InvalidArgument)
    );
    // From a thread running as a CPU of another machine.
    let other = self::sim(1, 1);
    let cpu = other.cpu(0);
    assert_eq!(
        cpu.run(|| sim.system().switch(None, &space)),
        Err(Error::InvalidArgument)
    );
    // From a spawned thread.
    thread::scope(|s| {
        let r = s
            .spawn(|| sim.system().switch(None, &space))
            .join()
            .unwrap();
        assert_eq!(r, Err(Error::InvalidArgument));
    });

    // Nothing changed.
    assert_eq!(space.asid(), None);
    assert!(space.active_cpus().is_empty());
    assert_eq!(sim.system().free_asids(), 4);
    assert_eq!(sim.system().stats(), before);
    for cpu in 0..2 {
        assert_eq!(sim.hardware().loaded_asid(cpu), Asid::KERNEL);
    }
    // And the space still works on a CPU.
    let mut c0 = sim.cpu(0);
    assert!(c0.switch_to(&space).is_ok());
    assert!(space.asid().is_some());
}

/// `System::switch` identifies address spaces by an id that is unique only
/// within one system, and never checks that `new` belongs to it: a CPU of
/// one machine switched to a space of another machine is marked as running
/// this machine's space with the same id, takes that space's ASID and root
/// number, and reads its memory.
#[test]
fn switch_to_a_space_of_another_system_is_refused() {
    let sim1 = sim(2, 4);
    let sim2 = sim(2, 4);
    let mine = spaces(&sim1, 1, 1).pop().unwrap();
    let foreign = spaces(&sim2, 1, 1).pop().unwrap();
    assert_eq!(mine.id(), foreign.id(), "ids are per system");
    let mut c0 = sim1.cpu(0);
    c0.switch_to(&mine).unwrap();
    c0.write_u64(word(0), 0x1111).unwrap();
    c0.idle();
    let r = c0.switch_to(&foreign);
    assert_eq!(
        r,
        Err(Error::InvalidArgument),
        "switched to a foreign space"
    );
    assert!(
        mine.active_cpus().is_empty(),
        "the local namesake was activated"
    );
}

other_archs!(
    asids_recycled_round_robin_many_spaces,
    stolen_asid_is_invalidated_in_every_tlb,
    destroyed_space_returns_its_asid,
    asid_assigned_on_first_switch_and_kept_while_active,
    switch_fails_cleanly_outside_a_cpu,
    switch_to_a_space_of_another_system_is_refused,
);
