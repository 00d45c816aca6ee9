//! Several CPUs at once: CPUs driven by real threads read and write an
//! address space while another CPU shrinks, re-grows, destroys and recreates
//! its areas, and another address space recycles the freed frames. No CPU may
//! ever reach a frame through a translation that was removed (the hardware's
//! `stale_accesses`, and the data each read returns), shootdowns interrupt
//! exactly the CPUs that run the space, and CPUs that ran it before flush
//! lazily when they return to it.
//!
//! Randomised choices come from a seeded xorshift generator; every assertion
//! message carries the seed. `ASPACE_SEED=<n>` overrides the default seed.
//! Thread interleavings are up to the OS, so a failure may need a few runs
//! to reproduce.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread;
use std::time::{Duration, Instant};

use aspace::{AreaFlags, Asid, FaultReason, Page, StatsSnapshot, VirtAddr, PAGE_SIZE};
use aspace_sim::{AccessFault, Cpu, HwStats, Sim, SimConfig, SpaceHandle, TlbEntry};

mod common;
use common::{va, SyncPoint, XorShift};

const RW: AreaFlags = AreaFlags::READ.union(AreaFlags::WRITE);

/// Default seed of the randomised tests.
const DEFAULT_SEED: u64 = 0x5eed_0fa5_9ace;

/// Tags in the top bits of every value written, one per address space, so a
/// word read through a wrong translation is recognised.
const TAG_A: u64 = 0xa5a5 << 48;
const TAG_B: u64 = 0xb6b6 << 48;

/// Churn rounds per race test, at least (each takes well under a
/// millisecond).
const ROUNDS: u64 = 2000;
/// After ROUNDS, churning goes on until each worker has done this many
/// accesses (the OS may have starved them, the machine having two cores for
/// three threads), but for no longer than CHURN_TIME_CAP.
const MIN_WORKER_OPS: u64 = 50_000;
const CHURN_TIME_CAP: Duration = Duration::from_secs(2);
/// Safety net for the workers, which stop when the churning thread is done.
const MAX_WORKER_OPS: u64 = 20_000_000;

fn seed() -> u64 {
    common::seed(DEFAULT_SEED)
}

/// The value word `slot` of page `page` of region `region` holds in the
/// address space tagged `tag` (never zero).
fn pattern(tag: u64, region: usize, page: u64, slot: u64) -> u64 {
    tag | (region as u64) << 32 | page << 8 | slot
}

/// An area of the racing address space: where it starts and how many pages
/// it has at most.
#[derive(Clone, Copy)]
struct Region {
    base: u64,
    pages: u64,
}

impl Region {
    /// Address of word `slot` (one per CPU) of page `page`.
    fn word(&self, page: u64, slot: u64) -> VirtAddr {
        va(self.base + page * PAGE_SIZE + slot * 8)
    }

    fn size(&self) -> u64 {
        self.pages * PAGE_SIZE
    }
}

/// What a worker did.
#[derive(Debug, Default)]
struct WorkerCounts {
    reads: u64,
    writes: u64,
    zero_reads: u64,
    faults: u64,
    visits: u64,
}

/// How the threads of a race start, progress and stop.
struct Control {
    start: SyncPoint,
    stop: AtomicBool,
    /// Accesses done so far by the worker on each CPU.
    ops: [AtomicU64; 3],
}

/// Sets the flag when dropped, so the workers stop even when the churning
/// thread panics.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Relaxed);
    }
}

fn check_refusal(f: AccessFault, seed: u64, cpu: usize) {
    assert_eq!(
        f.reason,
        FaultReason::NoArea,
        "seed {seed}: CPU {cpu}: unexpected refusal {f}"
    );
}

/// A worker CPU: runs `space` and, until `stop`, writes its own word of
/// random pages of `regions` and reads words back, checking that every
/// successful read returns 0 (a page faulted in afresh) or the pattern of
/// exactly that word; cut-off pages may be refused with `NoArea`.
fn worker(
    mut cpu: Cpu,
    space: &SpaceHandle,
    regions: &[Region],
    visit: Option<(&SpaceHandle, Region)>,
    seed: u64,
    ctl: &Control,
) -> WorkerCounts {
    let _guard = ctl.start.guard();
    let me = cpu.id();
    cpu.switch_to(space).unwrap();
    ctl.start.wait();
    let mut rng = XorShift::new(seed ^ (me as u64) << 56);
    let mut n = WorkerCounts::default();
    let mut ops = 0;
    while !ctl.stop.load(Relaxed) && ops < MAX_WORKER_OPS {
        ops += 1;
        ctl.ops[me].store(ops, Relaxed);
        if let Some((b, area)) = visit {
            if rng.below(200) == 0 {
                // A short visit to B: while away, shootdowns of A leave this
                // CPU a lazy flush, due when it comes back.
                cpu.switch_to(b).unwrap();
                for _ in 0..64 {
                    let (page, slot) = (rng.below(area.pages), rng.below(3));
                    let want = pattern(TAG_B, 0, page, slot);
                    match cpu.read_u64(area.word(page, slot)) {
                        Ok(v) => assert!(
                            v == 0 || v == want,
                            "seed {seed}: CPU {me} read {v:#x} from B page {page} word \
                             {slot}; expected 0 or {want:#x}"
                        ),
                        Err(f) => check_refusal(f, seed, me),
                    }
                }
                cpu.switch_to(space).unwrap();
                n.visits += 1;
            }
        }
        let r = rng.below(regions.len() as u64) as usize;
        let region = regions[r];
        let page = rng.below(region.pages);
        // Mostly this CPU's own word; sometimes another CPU's.
        let slot = if rng.chance(75) {
            me as u64
        } else {
            rng.below(3)
        };
        let addr = region.word(page, slot);
        let want = pattern(TAG_A, r, page, slot);
        if slot == me as u64 && rng.chance(50) {
            match cpu.write_u64(addr, want) {
                Ok(()) => n.writes += 1,
                Err(f) => {
                    check_refusal(f, seed, me);
                    n.faults += 1;
                    continue;
                }
            }
        }
        match cpu.read_u64(addr) {
            Ok(v) => {
                assert!(
                    v == 0 || v == want,
                    "seed {seed}: CPU {me} read {v:#x} at {addr} (region {r} page {page} \
                     word {slot}); expected 0 or {want:#x}: data of another page or space \
                     reached through a stale translation"
                );
                n.reads += 1;
                if v == 0 {
                    n.zero_reads += 1;
                }
            }
            Err(f) => {
                check_refusal(f, seed, me);
                n.faults += 1;
            }
        }
    }
    n
}

/// Writes B's pattern into every word the workers use of every page of B's
/// area, faulting in fresh frames (most likely the ones just freed: the
/// frame pool hands out the most recently freed frame first), and reads one
/// word back.
fn scribble_b(cpu: &mut Cpu, b: &SpaceHandle, area: Region, seed: u64) {
    cpu.switch_to(b).unwrap();
    for page in 0..area.pages {
        for slot in 0..3 {
            let v = pattern(TAG_B, 0, page, slot);
            cpu.write_u64(area.word(page, slot), v)
                .unwrap_or_else(|f| panic!("seed {seed}: space B: {f}"));
        }
        let v = cpu.read_u64(area.word(page, 1)).unwrap();
        assert_eq!(
            v,
            pattern(TAG_B, 0, page, 1),
            "seed {seed}: space B page {page}"
        );
    }
}

/// CPU 0 writes its own word of pages `from..to` of region `r` of A (which
/// must be mapped area there).
fn dirty_a(cpu: &mut Cpu, regions: &[Region], r: usize, pages: std::ops::Range<u64>, seed: u64) {
    for page in pages {
        cpu.write_u64(regions[r].word(page, 0), pattern(TAG_A, r, page, 0))
            .unwrap_or_else(|f| panic!("seed {seed}: CPU 0 on A: {f}"));
    }
}

/// Frames in use must be the kernel's plus the page tables and resident
/// pages of the live spaces: nothing leaked, nothing freed twice.
fn assert_frames_accounted(sim: &Sim, initial: u64, spaces: &[&SpaceHandle], seed: u64) {
    let held: u64 = spaces
        .iter()
        .map(|s| s.page_table_frames() + s.resident_pages())
        .sum();
    assert_eq!(
        sim.frames_in_use(),
        initial + held,
        "seed {seed}: frames in use do not match page tables plus resident pages"
    );
}

/// Runs two workers (CPUs 1 and 2) on space A over `regions` (now and then
/// visiting B if `visit_b`) while `churn` runs ROUNDS times on CPU 0;
/// returns the counters' deltas.
fn race(
    name: &str,
    regions: &[Region],
    b_area: Region,
    visit_b: bool,
    mut churn: impl FnMut(&mut Cpu, &SpaceHandle, &SpaceHandle, &mut XorShift, u64) + Send,
) -> (StatsSnapshot, HwStats) {
    let seed = seed();
    let sim = Sim::new(SimConfig {
        arch: common::arch(),
        cpus: 3,
        memory: 32 << 20,
        asids: 16,
        tlb_entries: 64,
    })
    .unwrap();
    let initial = sim.frames_in_use();
    let a = sim.system().create().unwrap();
    let b = sim.system().create().unwrap();
    for r in regions {
        a.area_create(va(r.base), r.size(), RW).unwrap();
    }
    b.area_create(va(b_area.base), b_area.size(), RW).unwrap();
    let sys0 = sim.system().stats();
    let hw0 = sim.hardware().stats();

    // A failed race may leave simulated memory (page tables included)
    // corrupted, and tearing the spaces down could then panic again while
    // unwinding, aborting the whole test binary: on failure, leak them.
    let checked = catch_unwind(AssertUnwindSafe(|| {
        let ctl = Control {
            start: SyncPoint::new(3),
            stop: AtomicBool::new(false),
            ops: Default::default(),
        };
        let started = Instant::now();
        let (rounds, counts) = thread::scope(|s| {
            let workers: Vec<_> = [1, 2]
                .map(|id| {
                    let cpu = sim.cpu(id);
                    let (a, b, ctl) = (&a, &b, &ctl);
                    let visit = visit_b.then_some((b, b_area));
                    s.spawn(move || worker(cpu, a, regions, visit, seed, ctl))
                })
                .into_iter()
                .collect();
            let cpu0 = sim.cpu(0);
            let (a, b, ctl) = (&a, &b, &ctl);
            let churner = s.spawn(move || {
                let _stop = StopOnDrop(&ctl.stop);
                let _guard = ctl.start.guard();
                let mut cpu = cpu0;
                let mut rng = XorShift::new(seed);
                ctl.start.wait();
                let begun = Instant::now();
                let mut rounds = 0;
                let starved = || {
                    ctl.ops[1..]
                        .iter()
                        .any(|n| n.load(Relaxed) < MIN_WORKER_OPS)
                };
                while rounds < ROUNDS || (starved() && begun.elapsed() < CHURN_TIME_CAP) {
                    churn(&mut cpu, a, b, &mut rng, seed);
                    rounds += 1;
                }
                rounds
            });
            let rounds = churner.join().unwrap();
            let counts: Vec<WorkerCounts> =
                workers.into_iter().map(|w| w.join().unwrap()).collect();
            (rounds, counts)
        });
        eprintln!(
            "{name}: seed {seed}, {:?}, {rounds} rounds, workers {counts:?}",
            started.elapsed()
        );

        let sys = sim.system().stats().since(&sys0);
        let hw = sim.hardware().stats();
        let hw = HwStats {
            tlb_hits: hw.tlb_hits - hw0.tlb_hits,
            tlb_misses: hw.tlb_misses - hw0.tlb_misses,
            faults: hw.faults - hw0.faults,
            ipis: hw.ipis - hw0.ipis,
            stale_accesses: hw.stale_accesses - hw0.stale_accesses,
            stale_fetches: hw.stale_fetches - hw0.stale_fetches,
            relaxes: hw.relaxes - hw0.relaxes,
        };
        eprintln!("{name}: core {sys:?}\n{name}: hardware {hw:?}");
        assert_eq!(
            hw.stale_accesses, 0,
            "seed {seed}: a CPU used a translation to a freed frame"
        );
        assert!(sys.shootdown_rounds > 0, "seed {seed}: {sys:?}");
        assert!(sys.ipis > 0 && hw.ipis > 0, "seed {seed}: {sys:?} {hw:?}");
        assert_eq!(
            sys.ipis, hw.ipis,
            "seed {seed}: core and hardware IPI counts"
        );
        for cpu in [1, 2] {
            assert!(
                sim.hardware().ipis_received(cpu) > 0,
                "seed {seed}: CPU {cpu} ran A throughout and was never interrupted"
            );
        }
        for (i, c) in counts.iter().enumerate() {
            assert!(c.reads > 0, "seed {seed}: worker {} never read", i + 1);
        }
        assert_frames_accounted(&sim, initial, &[&a, &b], seed);
        (sys, hw)
    }));
    let (sys, hw) = match checked {
        Ok(r) => r,
        Err(panic) => {
            std::mem::forget(a);
            std::mem::forget(b);
            std::mem::forget(sim);
            resume_unwind(panic)
        }
    };
    drop(a);
    drop(b);
    assert_eq!(
        sim.frames_in_use(),
        initial,
        "seed {seed}: frames leaked once every space is gone"
    );
    assert_eq!(sim.system().free_asids(), 16, "seed {seed}");
    (sys, hw)
}

#[test]
fn faults_race_with_shrink_never_read_stale_frames() {
    // Region 0 is shrunk and re-grown, region 1 destroyed and recreated.
    let regions = [
        Region {
            base: 0x40_0000,
            pages: 48,
        },
        Region {
            base: 0x80_0000,
            pages: 16,
        },
    ];
    let b_area = Region {
        base: 0x40_0000,
        pages: 32,
    };
    let (sys, _) = race("shrink", &regions, b_area, false, |cpu, a, b, rng, seed| {
        let [big, small] = regions;
        // Free B's frames, so A's faults below take frames that held B's
        // data.
        cpu.run(|| b.area_resize(va(b_area.base), PAGE_SIZE))
            .unwrap();
        // CPU 0 runs A and touches the pages about to be cut, so the
        // shrink has translations to shoot down.
        cpu.switch_to(a).unwrap();
        let keep = 1 + rng.below(big.pages - 1);
        dirty_a(cpu, &regions, 0, keep..big.pages, seed);
        // Shrink either while running A (local invalidation + IPIs) or
        // after switching to B (CPU 0 flushes A's range because it ran
        // A; the workers get IPIs).
        if rng.chance(50) {
            cpu.switch_to(b).unwrap();
        }
        cpu.run(|| a.area_resize(va(big.base), keep * PAGE_SIZE))
            .unwrap_or_else(|e| panic!("seed {seed}: shrink to {keep}: {e:?}"));
        // B takes the frames A just released and fills them with its own
        // data: a stale translation in a worker would now read B's tag.
        cpu.run(|| b.area_resize(va(b_area.base), b_area.size()))
            .unwrap();
        scribble_b(cpu, b, b_area, seed);
        // Destroy and recreate the small area, from B or from A.
        if rng.chance(50) {
            cpu.switch_to(a).unwrap();
            dirty_a(cpu, &regions, 1, 0..small.pages, seed);
        }
        cpu.run(|| {
            a.area_destroy(va(small.base)).unwrap();
        });
        scribble_b(cpu, b, b_area, seed);
        cpu.run(|| {
            a.area_create(va(small.base), small.size(), RW).unwrap();
            a.area_resize(va(big.base), big.size()).unwrap();
        });
    });
    assert!(sys.shootdown_rounds >= ROUNDS, "{sys:?}");
}

#[test]
fn destroy_area_while_other_cpu_reads() {
    let regions: Vec<Region> = (0..4)
        .map(|i| Region {
            base: 0x100_0000 + i * 0x10_0000,
            pages: 12,
        })
        .collect();
    let b_area = Region {
        base: 0x100_0000,
        pages: 24,
    };
    let mut sizes: Vec<u64> = regions.iter().map(|r| r.pages).collect();
    let (sys, _) = race("destroy", &regions, b_area, true, |cpu, a, b, rng, seed| {
        let k = rng.below(regions.len() as u64) as usize;
        let region = regions[k];
        // Free B's frames (B's area goes and comes back empty).
        cpu.run(|| {
            b.area_destroy(va(b_area.base)).unwrap();
            b.area_create(va(b_area.base), b_area.size(), RW).unwrap();
        });
        // CPU 0 touches every page of area k on A.
        cpu.switch_to(a).unwrap();
        dirty_a(cpu, &regions, k, 0..sizes[k], seed);
        if rng.chance(50) {
            cpu.switch_to(b).unwrap();
        }
        cpu.run(|| a.area_destroy(va(region.base)))
            .unwrap_or_else(|e| panic!("seed {seed}: destroy area {k}: {e:?}"));
        // B reuses A's frames with its own data while area k is gone.
        scribble_b(cpu, b, b_area, seed);
        // Area k comes back, possibly smaller: the workers find pages
        // above its end refused and pages inside it zeroed.
        sizes[k] = 1 + rng.below(region.pages);
        cpu.run(|| a.area_create(va(region.base), sizes[k] * PAGE_SIZE, RW))
            .unwrap_or_else(|e| panic!("seed {seed}: recreate area {k}: {e:?}"));
    });
    assert!(sys.shootdown_rounds >= ROUNDS, "{sys:?}");
}

/// TLB entries of `cpu` tagged `asid` for a page in `pages`.
fn entries_in(sim: &Sim, cpu: usize, asid: Asid, pages: std::ops::Range<u64>) -> Vec<TlbEntry> {
    sim.hardware()
        .tlb_entries(cpu)
        .into_iter()
        .filter(|e| e.asid == asid && pages.contains(&e.page.number()))
        .collect()
}

fn page_numbers(base: u64, pages: std::ops::Range<u64>) -> std::ops::Range<u64> {
    let first = Page::from_start(va(base)).unwrap().number();
    first + pages.start..first + pages.end
}

#[test]
fn shootdown_sends_ipis_only_to_cpus_running_the_space() {
    const BASE: u64 = 0x40_0000;
    const PAGES: u64 = 32;
    const KEEP: u64 = 4;
    let sim = Sim::new(SimConfig {
        arch: common::arch(),
        cpus: 3,
        memory: 16 << 20,
        asids: 8,
        tlb_entries: 64,
    })
    .unwrap();
    let hw = sim.hardware();
    let s = sim.system().create().unwrap();
    let t = sim.system().create().unwrap();
    s.area_create(va(BASE), PAGES * PAGE_SIZE, RW).unwrap();
    // T uses the same virtual pages: only the ASID tells the entries apart.
    t.area_create(va(BASE), PAGES * PAGE_SIZE, RW).unwrap();
    let (mut c0, mut c1, mut c2) = (sim.cpu(0), sim.cpu(1), sim.cpu(2));
    let sa = c0.switch_to(&s).unwrap();
    assert_eq!(c1.switch_to(&s).unwrap(), sa);
    let ta = c2.switch_to(&t).unwrap();
    assert_ne!(sa, ta);

    let word = |p: u64| va(BASE + p * PAGE_SIZE);
    let fill = |c0: &mut Cpu, c1: &mut Cpu, c2: &mut Cpu| {
        for p in 0..PAGES {
            c0.write_u64(word(p), TAG_A | p).unwrap();
            assert_eq!(c1.read_u64(word(p)).unwrap(), TAG_A | p);
            c2.write_u64(word(p), TAG_B | p).unwrap();
        }
    };
    fill(&mut c0, &mut c1, &mut c2);
    let all = page_numbers(BASE, 0..PAGES);
    let cut = page_numbers(BASE, KEEP..PAGES);
    for cpu in [0, 1] {
        assert_eq!(entries_in(&sim, cpu, sa, all.clone()).len() as u64, PAGES);
    }

    // 1. Shrink from CPU 0, which runs S: CPU 0 flushes locally, CPU 1 gets
    //    the only IPI, CPU 2 (running T) is left alone.
    let sys0 = sim.system().stats();
    let hw0 = hw.stats();
    let got0: Vec<u64> = (0..3).map(|c| hw.ipis_received(c)).collect();
    let tlb2 = hw.tlb_entries(2);
    let frames0 = sim.frames_in_use();
    c0.run(|| s.area_resize(va(BASE), KEEP * PAGE_SIZE))
        .unwrap();
    let sys = sim.system().stats().since(&sys0);
    assert_eq!(sys.shootdown_rounds, 1, "one round for the whole range");
    assert_eq!(sys.ipis, 1, "{sys:?}");
    assert_eq!(sys.local_invalidations, 1, "{sys:?}");
    assert_eq!(hw.stats().ipis - hw0.ipis, 1);
    let got: Vec<u64> = (0..3).map(|c| hw.ipis_received(c) - got0[c]).collect();
    assert_eq!(got, [0, 1, 0], "IPIs received by CPUs 0, 1, 2");
    assert_eq!(hw.tlb_entries(2), tlb2, "CPU 2's TLB was touched");
    for cpu in 0..3 {
        assert_eq!(
            entries_in(&sim, cpu, sa, cut.clone()),
            [],
            "CPU {cpu} still caches unmapped pages of S"
        );
    }
    assert_eq!(sim.frames_in_use(), frames0 - (PAGES - KEEP));
    for (cpu, c) in [&mut c0, &mut c1].into_iter().enumerate() {
        for p in 0..PAGES {
            match c.read_u64(word(p)) {
                Ok(v) => {
                    assert!(p < KEEP, "CPU {cpu} read cut page {p}: {v:#x}");
                    assert_eq!(v, TAG_A | p);
                }
                Err(f) => {
                    assert!(p >= KEEP, "CPU {cpu} page {p}: {f}");
                    assert_eq!(f.reason, FaultReason::NoArea);
                }
            }
        }
    }
    for p in 0..PAGES {
        assert_eq!(c2.read_u64(word(p)).unwrap(), TAG_B | p, "T lost data");
    }

    // 2. The same from a thread on no CPU: both CPUs running S get an IPI.
    s.area_resize(va(BASE), PAGES * PAGE_SIZE).unwrap();
    fill(&mut c0, &mut c1, &mut c2);
    let sys0 = sim.system().stats();
    let got0: Vec<u64> = (0..3).map(|c| hw.ipis_received(c)).collect();
    s.area_resize(va(BASE), KEEP * PAGE_SIZE).unwrap();
    let sys = sim.system().stats().since(&sys0);
    assert_eq!(sys.shootdown_rounds, 1);
    assert_eq!(sys.ipis, 2, "{sys:?}");
    assert_eq!(sys.local_invalidations, 0, "{sys:?}");
    let got: Vec<u64> = (0..3).map(|c| hw.ipis_received(c) - got0[c]).collect();
    assert_eq!(got, [1, 1, 0], "IPIs received by CPUs 0, 1, 2");
    for cpu in 0..3 {
        assert_eq!(entries_in(&sim, cpu, sa, cut.clone()), []);
    }

    // 3. Destroying the area: one round, one IPI (to CPU 1) from CPU 0.
    let sys0 = sim.system().stats();
    let got0: Vec<u64> = (0..3).map(|c| hw.ipis_received(c)).collect();
    c0.run(|| s.area_destroy(va(BASE))).unwrap();
    let sys = sim.system().stats().since(&sys0);
    assert_eq!((sys.shootdown_rounds, sys.ipis), (1, 1), "{sys:?}");
    let got: Vec<u64> = (0..3).map(|c| hw.ipis_received(c) - got0[c]).collect();
    assert_eq!(got, [0, 1, 0]);
    for cpu in 0..3 {
        assert_eq!(entries_in(&sim, cpu, sa, all.clone()), []);
    }
    assert_eq!(hw.stats().stale_accesses, 0);
}

#[test]
fn lazy_flush_for_cpu_that_ran_the_space_before() {
    const BASE: u64 = 0x40_0000;
    const PAGES: u64 = 16;
    const KEEP: u64 = 4;
    let sim = Sim::new(SimConfig {
        arch: common::arch(),
        cpus: 2,
        memory: 16 << 20,
        asids: 8,
        tlb_entries: 64,
    })
    .unwrap();
    let hw = sim.hardware();
    let s = sim.system().create().unwrap();
    let t = sim.system().create().unwrap();
    s.area_create(va(BASE), PAGES * PAGE_SIZE, RW).unwrap();
    t.area_create(va(BASE), PAGES * PAGE_SIZE, RW).unwrap();
    let word = |p: u64| va(BASE + p * PAGE_SIZE);
    let (c0, mut c1) = (sim.cpu(0), sim.cpu(1));

    let sa = c1.switch_to(&s).unwrap();
    for p in 0..PAGES {
        c1.write_u64(word(p), TAG_A | p).unwrap();
    }
    c1.switch_to(&t).unwrap();
    let cut = page_numbers(BASE, KEEP..PAGES);
    let lingering = entries_in(&sim, 1, sa, cut.clone());
    assert_eq!(
        lingering.len() as u64,
        PAGES - KEEP,
        "S's entries stay in CPU 1's TLB"
    );

    let sys0 = sim.system().stats();
    let ipis0 = hw.stats().ipis;
    c0.run(|| s.area_resize(va(BASE), KEEP * PAGE_SIZE))
        .unwrap();
    let sys = sim.system().stats().since(&sys0);
    assert_eq!(sys.shootdown_rounds, 1);
    assert_eq!(sys.ipis, 0, "CPU 1 does not run S: no IPI");
    assert_eq!(hw.stats().ipis, ipis0);
    assert_eq!(hw.ipis_received(1), 0);
    assert_eq!(hw.ipis_received(0), 0);
    assert_eq!(sys.local_invalidations, 0, "CPU 0 never ran S");
    // The flush is owed, not done: the entries are still there...
    assert_eq!(entries_in(&sim, 1, sa, cut.clone()), lingering);

    // ...and T, running on CPU 1, now owns the frames they point to, with
    // its own data in them.
    for p in 0..PAGES {
        c1.write_u64(word(p), TAG_B | p).unwrap();
    }
    let t_frames: Vec<_> = (0..PAGES)
        .filter_map(|p| t.translate(word(p).page()).map(|(f, _)| f))
        .collect();
    assert!(
        lingering.iter().any(|e| t_frames.contains(&e.frame)),
        "T should have been given some of the frames S's lingering entries point to"
    );

    // Back to S: the lazy flush happens before S runs.
    let lazy0 = sim.system().stats().lazy_flushes;
    assert_eq!(c1.switch_to(&s).unwrap(), sa, "S kept its ASID");
    assert_eq!(sim.system().stats().lazy_flushes, lazy0 + 1);
    assert_eq!(
        entries_in(&sim, 1, sa, cut.clone()),
        [],
        "flushed on return"
    );
    for p in 0..PAGES {
        match c1.read_u64(word(p)) {
            Ok(v) => {
                assert!(p < KEEP, "CPU 1 read cut page {p} of S: {v:#x}");
                assert_eq!(v, TAG_A | p);
            }
            Err(f) => {
                assert!(p >= KEEP, "page {p}: {f}");
                assert_eq!(f.reason, FaultReason::NoArea);
            }
        }
    }
    assert_eq!(hw.stats().stale_accesses, 0);
    // Going back to T and to S again needs no further flush.
    c1.switch_to(&t).unwrap();
    c1.switch_to(&s).unwrap();
    assert_eq!(sim.system().stats().lazy_flushes, lazy0 + 1);
    drop(c0);
}

/// Two CPUs fault in two adjacent areas of one space at the same moment,
/// in a part of the address space no table covers yet, so both need the same
/// new intermediate tables (one page table covers both areas) and race to
/// install them without a lock. Afterwards every page must hold what its CPU
/// wrote, read back through the other CPU too; the frames in use must be
/// exactly the data pages plus the tables the space reports (a losing CPU's
/// table freed, none installed twice); and destroying the areas must give
/// the data frames back.
#[test]
fn cpus_racing_to_install_the_same_page_tables_keep_everything() {
    const PAGES: u64 = 32;
    let seed = seed();
    let sim = Sim::new(SimConfig {
        arch: common::arch(),
        cpus: 2,
        memory: 64 << 20,
        asids: 16,
        tlb_entries: 64,
    })
    .unwrap();
    let initial = sim.frames_in_use();
    let space = sim.system().create().unwrap();
    let mut cpus = [sim.cpu(0), sim.cpu(1)];
    for cpu in &mut cpus {
        cpu.switch_to(&space).unwrap();
    }
    // A root slot spans 512 GiB (1 GiB with Sv39's three levels); below
    // it, a table per level.
    let (slot_shift, new_tables) = match common::arch() {
        aspace_sim::Arch::Riscv64Sv39 => (30, 2),
        _ => (39, 3),
    };
    for round in 0..200u64 {
        // A fresh root slot each round: every table below it is missing
        // when the two CPUs start.
        let base = (round + 1) << slot_shift;
        let area = |i: u64| base + i * PAGES * PAGE_SIZE;
        for i in 0..2 {
            space
                .area_create(va(area(i)), PAGES * PAGE_SIZE, RW)
                .unwrap();
        }
        let tables_before = space.page_table_frames();
        // A spinning start, so that the two first faults really overlap (a
        // condition variable's wake-up takes longer than a fault).
        let ready = AtomicU64::new(0);
        thread::scope(|s| {
            for (i, cpu) in cpus.iter_mut().enumerate() {
                let (ready, area) = (&ready, &area);
                s.spawn(move || {
                    ready.fetch_add(1, Relaxed);
                    let t0 = Instant::now();
                    while ready.load(Relaxed) < 2 && t0.elapsed() < Duration::from_secs(5) {
                        std::hint::spin_loop();
                    }
                    for p in 0..PAGES {
                        let a = va(area(i as u64) + p * PAGE_SIZE);
                        cpu.write_u64(a, pattern(TAG_A, i, p, round))
                            .unwrap_or_else(|f| {
                                panic!("seed {seed:#x} round {round}: CPU {i} page {p}: {f:?}")
                            });
                    }
                });
            }
        });
        // One new table per level (PDPT, PD, PT), whoever installed it.
        assert_eq!(
            space.page_table_frames(),
            tables_before + new_tables,
            "seed {seed:#x} round {round}: tables"
        );
        assert_eq!(
            sim.frames_in_use() - initial,
            space.page_table_frames() + space.resident_pages(),
            "seed {seed:#x} round {round}: a frame leaked or was freed twice"
        );
        assert_eq!(
            space.resident_pages(),
            2 * PAGES,
            "seed {seed:#x} round {round}"
        );
        for (reader, cpu) in cpus.iter_mut().enumerate() {
            for i in 0..2 {
                for p in 0..PAGES {
                    let got = cpu.read_u64(va(area(i) + p * PAGE_SIZE)).unwrap();
                    assert_eq!(
                        got,
                        pattern(TAG_A, i as usize, p, round),
                        "seed {seed:#x} round {round}: CPU {reader} reads area {i} page {p}"
                    );
                }
            }
        }
        for i in 0..2 {
            cpus[0].run(|| space.area_destroy(va(area(i)))).unwrap();
        }
        assert_eq!(space.resident_pages(), 0);
        assert_eq!(
            sim.frames_in_use() - initial,
            space.page_table_frames(),
            "seed {seed:#x} round {round}: data frames not given back"
        );
    }
    assert_eq!(sim.hardware().stats().stale_accesses, 0, "seed {seed:#x}");
}

/// `area`, `area_size` and `check_access` while the tree changes: one CPU
/// creates, resizes and destroys areas as fast as it can (splitting and
/// merging the tree's nodes) while another queries. Areas that never change
/// must come back exactly, gaps never filled, and an area found among the
/// changing ones must contain the address and be one that the churning CPU
/// could have made.
#[test]
fn area_queries_stay_exact_while_areas_change() {
    use aspace::Access;
    const STABLE: u64 = 300;
    const CHURN_BASE: u64 = 0x4000_0000;
    const CHURN_SLOTS: u64 = 400;
    let seed = seed();
    let sim = Sim::new(SimConfig {
        arch: common::arch(),
        cpus: 2,
        memory: 16 << 20,
        asids: 16,
        tlb_entries: 64,
    })
    .unwrap();
    let space = sim.system().create().unwrap();
    let stable_flags = |k: u64| match k % 3 {
        0 => AreaFlags::READ,
        1 => RW,
        _ => AreaFlags::READ | AreaFlags::EXEC,
    };
    // Stable area k: pages [16 + 8k, 16 + 8k + 1 + k % 4), so gaps between.
    let stable = |k: u64| (16 + 8 * k, 1 + k % 4);
    for k in 0..STABLE {
        let (page, pages) = stable(k);
        space
            .area_create(va(page * PAGE_SIZE), pages * PAGE_SIZE, stable_flags(k))
            .unwrap();
    }
    let done = AtomicBool::new(false);
    let queries = AtomicU64::new(0);
    let changes = thread::scope(|s| {
        let churn = s.spawn(|| {
            let cpu = sim.cpu(1);
            let mut rng = XorShift::new(seed);
            let mut live = vec![false; CHURN_SLOTS as usize];
            let mut changes = 0u64;
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_millis(700) {
                let slot = rng.next() % CHURN_SLOTS;
                let base = va(CHURN_BASE + slot * 16 * PAGE_SIZE);
                let pages = 1 + rng.next() % 15;
                if live[slot as usize] {
                    if rng.chance(33) {
                        cpu.run(|| space.area_resize(base, pages * PAGE_SIZE))
                            .unwrap();
                    } else {
                        cpu.run(|| space.area_destroy(base)).unwrap();
                        live[slot as usize] = false;
                    }
                } else {
                    cpu.run(|| space.area_create(base, pages * PAGE_SIZE, RW))
                        .unwrap();
                    live[slot as usize] = true;
                }
                changes += 1;
            }
            done.store(true, Relaxed);
            changes
        });
        s.spawn(|| {
            let cpu = sim.cpu(0);
            let mut rng = XorShift::new(seed ^ 0xabcd);
            while !done.load(Relaxed) {
                queries.fetch_add(1, Relaxed);
                if rng.chance(50) {
                    let page = 16 + rng.next() % (8 * STABLE);
                    let k = (page - 16) / 8;
                    let (first, pages) = stable(k);
                    let inside = page < first + pages;
                    let addr = va(page * PAGE_SIZE + rng.next() % PAGE_SIZE);
                    let (info, size, access) = cpu.run(|| {
                        (
                            space.area(addr),
                            space.area_size(addr),
                            [Access::Read, Access::Write, Access::Exec]
                                .map(|a| space.check_access(addr, a)),
                        )
                    });
                    let flags = stable_flags(k);
                    let want_access = [Access::Read, Access::Write, Access::Exec]
                        .map(|a| inside && flags.permits(a));
                    let ctx = format!("seed {seed:#x}: page {page:#x}");
                    assert_eq!(access, want_access, "{ctx}: access");
                    if inside {
                        let info = info.unwrap_or_else(|| panic!("{ctx}: area lost"));
                        assert_eq!(info.base, va(first * PAGE_SIZE), "{ctx}");
                        assert_eq!((info.pages, info.flags), (pages, flags), "{ctx}");
                        assert_eq!((info.backend, info.resident), ("anon", 0), "{ctx}");
                        assert!(!info.shared && info.attrs.is_empty(), "{ctx}");
                        assert_eq!(size, pages * PAGE_SIZE, "{ctx}: size");
                    } else {
                        assert_eq!((info, size), (None, 0), "{ctx}: a gap filled");
                    }
                } else {
                    let addr = CHURN_BASE + rng.next() % (CHURN_SLOTS * 16 * PAGE_SIZE);
                    if let Some(info) = cpu.run(|| space.area(va(addr))) {
                        let (base, end) = (info.base.as_u64(), info.end().as_u64());
                        let ctx = format!("seed {seed:#x}: {addr:#x} in [{base:#x}, {end:#x})");
                        assert!(base <= addr && addr < end, "{ctx}");
                        assert_eq!((base - CHURN_BASE) % (16 * PAGE_SIZE), 0, "{ctx}");
                        assert!((1..16).contains(&info.pages), "{ctx}");
                        assert_eq!((info.flags, info.backend), (RW, "anon"), "{ctx}");
                    }
                }
            }
        });
        churn.join().unwrap()
    });
    let queries = queries.load(Relaxed);
    eprintln!("{changes} changes, {queries} queries");
    assert!(
        changes > 1_000 && queries > 1_000,
        "seed {seed:#x}: too little overlap"
    );
}

other_archs!(
    faults_race_with_shrink_never_read_stale_frames,
    destroy_area_while_other_cpu_reads,
    shootdown_sends_ipis_only_to_cpus_running_the_space,
    lazy_flush_for_cpu_that_ran_the_space_before,
    cpus_racing_to_install_the_same_page_tables_keep_everything,
    area_queries_stay_exact_while_areas_change,
);
