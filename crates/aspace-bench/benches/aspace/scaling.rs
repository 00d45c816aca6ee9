//! Scaling: first-touch faults on disjoint areas of one address space from
//! 1 and 2 CPUs (one thread driving each CPU), and the same on Linux (1 and
//! 2 threads faulting disjoint mappings of one process). Timed in
//! wall-clock spans from the common start to the last thread's end,
//! whatever the clock of the other benchmarks.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Barrier;
use std::time::{Duration, Instant};
use std::{ptr, thread};

use crate::clock::Clock;
use aspace::{FrameAllocator, VirtAddr, PAGE_SIZE};
use aspace_bench::{sim, RW};
use aspace_sim::{Cpu, Sim};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};

/// Pages each CPU touches per iteration (32 MiB): milliseconds of work, so
/// that the threads' start-up skew is lost in it.
pub const PAGES_PER_CPU: u64 = 8192;
const BASE: u64 = 0x4000_0000;
/// Distance between the CPUs' areas.
const STRIDE: u64 = 0x1000_0000;

struct Rig {
    cpus: Vec<Cpu>,
    /// The space each CPU runs (the same one, or one each).
    spaces: Vec<aspace_sim::SpaceHandle>,
    _sims: Vec<Sim>,
}

/// What the two CPUs share.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sharing {
    /// One machine, one address space.
    Space,
    /// One machine (frame pool, counters, ASIDs), an address space each.
    Machine,
    /// Nothing: two one-CPU machines, the control experiment.
    Nothing,
}

impl Rig {
    fn new(sharing: Sharing) -> Self {
        let mut sims = Vec::new();
        let mut cpus = Vec::new();
        let mut spaces: Vec<aspace_sim::SpaceHandle> = Vec::new();
        for i in 0..2 {
            if i == 0 || sharing == Sharing::Nothing {
                sims.push(sim(2, 128 << 20, 64, 64));
            }
            let sim = sims.last().expect("a machine");
            let space = if i == 1 && sharing == Sharing::Space {
                spaces[0].clone()
            } else {
                sim.system().create().expect("space")
            };
            let mut cpu = sim.cpu(if sharing == Sharing::Nothing { 0 } else { i });
            cpu.switch_to(&space).expect("ASID");
            cpus.push(cpu);
            spaces.push(space);
        }
        Self {
            cpus,
            spaces,
            _sims: sims,
        }
    }

    /// One round: `k` CPUs each fault in their own fresh area (or, with
    /// `same_area`, each in its own half of one fresh area); returns the
    /// time from the common start to the last CPU's end.
    fn round(&mut self, k: usize, same_area: bool) -> Duration {
        let bytes = PAGES_PER_CPU * PAGE_SIZE;
        let base = |i: usize| {
            if same_area {
                VirtAddr::new(BASE + i as u64 * bytes)
            } else {
                VirtAddr::new(BASE + i as u64 * STRIDE)
            }
        };
        let areas = if same_area { 1 } else { k };
        for i in 0..areas {
            let size = if same_area { k as u64 * bytes } else { bytes };
            self.spaces[i].area_create(base(i), size, RW).expect("free");
        }
        let barrier = Barrier::new(k);
        let spans: Vec<(Instant, Instant)> = thread::scope(|s| {
            let handles: Vec<_> = self.cpus[..k]
                .iter_mut()
                .enumerate()
                .map(|(i, cpu)| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        let t0 = Instant::now();
                        for p in 0..PAGES_PER_CPU {
                            let a = VirtAddr::new(base(i).as_u64() + p * PAGE_SIZE);
                            cpu.write_u64(a, p).expect("anonymous memory");
                        }
                        (t0, Instant::now())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for i in 0..areas {
            self.cpus[i]
                .run(|| self.spaces[i].area_destroy(base(i)))
                .expect("created");
        }
        span(&spans)
    }
}

fn span(spans: &[(Instant, Instant)]) -> Duration {
    let start = spans.iter().map(|s| s.0).min().unwrap();
    let end = spans.iter().map(|s| s.1).max().unwrap();
    end - start
}

/// One round on Linux: `k` threads each touch every page of their own
/// fresh anonymous mapping.
fn linux_round(k: usize) -> Duration {
    let len = (PAGES_PER_CPU * PAGE_SIZE) as usize;
    let maps: Vec<usize> = (0..k)
        .map(|_| {
            // SAFETY: no `MAP_FIXED` and a null hint: the kernel creates a
            // new anonymous (`fd` -1, offset 0) read/write mapping of `len`
            // bytes at a free address, replacing no existing memory;
            // MAP_FAILED is rejected below.
            let p = unsafe {
                libc::mmap(
                    ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(p, libc::MAP_FAILED);
            // SAFETY: `p`, `len` is the mapping just created and owned
            // here; MADV_NOHUGEPAGE changes only its huge-page policy.
            unsafe { libc::madvise(p, len, libc::MADV_NOHUGEPAGE) };
            p as usize
        })
        .collect();
    let barrier = Barrier::new(k);
    let spans: Vec<(Instant, Instant)> = thread::scope(|s| {
        let handles: Vec<_> = maps
            .iter()
            .map(|&m| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let t0 = Instant::now();
                    for p in 0..PAGES_PER_CPU as usize {
                        // SAFETY: p < PAGES_PER_CPU, so the u64 at
                        // `m + p * PAGE_SIZE` (page-aligned, hence aligned)
                        // lies inside this thread's own `len`-byte read/write
                        // mapping `m`, which no other thread writes and which
                        // is unmapped only after the scope has joined every
                        // thread; it belongs to no Rust object.
                        unsafe {
                            ptr::write_volatile((m + p * PAGE_SIZE as usize) as *mut u64, p as u64)
                        };
                    }
                    (t0, Instant::now())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for m in maps {
        // SAFETY: `m`, `len` is one of the mappings created above, each
        // unmapped once; every thread writing to it has been joined.
        unsafe { libc::munmap(m as *mut libc::c_void, len) };
    }
    span(&spans)
}

/// Throughput of two CPUs ÷ one CPU, for each setup, measured in
/// interleaved rounds (see [`paired`]).
pub struct PairedScaling {
    /// Rounds run.
    pub rounds: usize,
    /// (setup, median, lowest quartile, highest quartile) of the per-round
    /// speedup.
    pub rows: Vec<(&'static str, f64, f64, f64)>,
}

/// The paired scaling figures of this run, if it ran them.
pub static PAIRED: std::sync::Mutex<Option<PairedScaling>> = std::sync::Mutex::new(None);

/// Median and quartiles of the per-round speedup `base[k] / new[k]` (times
/// per element of the same rounds).
fn speedup(base: &[f64], new: &[f64]) -> (f64, f64, f64) {
    let mut r: Vec<f64> = base.iter().zip(new).map(|(b, n)| b / n).collect();
    r.sort_by(|a, b| a.total_cmp(b));
    let q = |f: f64| r[((r.len() - 1) as f64 * f).round() as usize];
    (q(0.5), q(0.25), q(0.75))
}

/// Runs every setup once per round, in an order that rotates from round to
/// round, and takes each round's speedup against the same round's one-CPU
/// run (aspace's, or Linux's for Linux): a burst of load from elsewhere
/// then skews both sides of a ratio instead of one.
fn paired(space: &mut Rig, spaces: &mut Rig, machines: &mut Rig) {
    let rounds = crate::paired::rounds();
    // Setup index -> seconds per page of each round.
    const SETUPS: usize = 7;
    let mut t: Vec<Vec<f64>> = (0..SETUPS).map(|_| Vec::with_capacity(rounds)).collect();
    for round in 0..=rounds {
        for j in 0..SETUPS {
            let i = (round + j) % SETUPS;
            let (d, pages) = match i {
                0 => (space.round(1, false), 1),
                1 => (space.round(2, false), 2),
                2 => (space.round(2, true), 2),
                3 => (spaces.round(2, false), 2),
                4 => (machines.round(2, false), 2),
                5 => (linux_round(1), 1),
                _ => (linux_round(2), 2),
            };
            if round > 0 {
                t[i].push(d.as_secs_f64() / (pages as f64 * PAGES_PER_CPU as f64));
            }
        }
    }
    let rows = [
        ("aspace, one space, an area per CPU", 0, 1),
        ("aspace, one space, one area (a half per CPU)", 0, 2),
        ("aspace, one space per CPU", 0, 3),
        (
            "aspace, one machine per CPU (nothing shared: control)",
            0,
            4,
        ),
        ("Linux, threads of one process", 5, 6),
    ]
    .into_iter()
    .map(|(who, base, i)| {
        let (m, lo, hi) = speedup(&t[base], &t[i]);
        (who, m, lo, hi)
    })
    .collect();
    *PAIRED.lock().unwrap() = Some(PairedScaling { rounds, rows });
}

/// Lookups per thread in a lookup-scaling round.
pub const LOOKUPS: u64 = 1 << 20;

/// Areas in the lookup-scaling space.
const LOOKUP_AREAS: u64 = 64;

/// `k` threads each asking `check_access` `LOOKUPS` times on one space of
/// `LOOKUP_AREAS` areas: a lookup is little more than the tree's read lock,
/// so this is where the lock's reader count matters. With `on_cpus`, each
/// thread runs as one of the machine's CPUs and reads the tree through its
/// own reader count; without, no thread is on a CPU and all share the first
/// reader count, as a single reader-writer lock would have them.
fn lookup_round(
    cpus: &[Cpu],
    space: &aspace_sim::SpaceHandle,
    k: usize,
    on_cpus: bool,
) -> Duration {
    let barrier = Barrier::new(k);
    let spans: Vec<(Instant, Instant)> = thread::scope(|s| {
        let handles: Vec<_> = cpus[..k]
            .iter()
            .map(|cpu| {
                let barrier = &barrier;
                s.spawn(move || {
                    let work = || {
                        barrier.wait();
                        let t0 = Instant::now();
                        let mut hits = 0u64;
                        for i in 0..LOOKUPS {
                            let a = BASE + (i % LOOKUP_AREAS) * 2 * PAGE_SIZE;
                            hits +=
                                space.check_access(VirtAddr::new(a), aspace::Access::Read) as u64;
                        }
                        assert_eq!(hits, LOOKUPS, "every lookup hits an area");
                        (t0, Instant::now())
                    };
                    if on_cpus {
                        cpu.run(work)
                    } else {
                        work()
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    span(&spans)
}

/// Lookup scaling, paired: 1 and 2 threads, on CPUs (a reader count each)
/// and off them (one shared reader count), every setup once per round.
fn paired_lookups() {
    let sim = sim(2, 16 << 20, 64, 64);
    let space = sim.system().create().expect("space");
    for i in 0..LOOKUP_AREAS {
        space
            .area_create(VirtAddr::new(BASE + i * 2 * PAGE_SIZE), PAGE_SIZE, RW)
            .expect("free");
    }
    let cpus = [sim.cpu(0), sim.cpu(1)];
    let rounds = crate::paired::rounds();
    let setups = [(1, true), (2, true), (1, false), (2, false)];
    let mut t: Vec<Vec<f64>> = setups.iter().map(|_| Vec::with_capacity(rounds)).collect();
    for round in 0..=rounds {
        for j in 0..setups.len() {
            let i = (round + j) % setups.len();
            let (k, on) = setups[i];
            let d = lookup_round(&cpus, &space, k, on);
            if round > 0 {
                t[i].push(d.as_secs_f64() / (k as f64 * LOOKUPS as f64));
            }
        }
    }
    let rows = [
        ("lookups, a reader count per CPU (threads on CPUs)", 0, 1),
        ("lookups, one shared reader count (threads on no CPU)", 2, 3),
    ]
    .into_iter()
    .map(|(who, base, i)| {
        let (m, lo, hi) = speedup(&t[base], &t[i]);
        (who, m, lo, hi)
    });
    if let Some(p) = PAIRED.lock().unwrap().as_mut() {
        p.rows.extend(rows);
    }
}

/// Increments per thread in the counter benchmarks.
pub const INCREMENTS: u64 = 1 << 20;

/// A counter alone in its cache line.
#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicU64);

/// `k` threads each adding 1 to `counters[i % counters.len()]`
/// `INCREMENTS` times: one shared counter, or one per thread.
fn counter_round(k: usize, counters: &[Padded]) -> Duration {
    let barrier = Barrier::new(k);
    let spans: Vec<(Instant, Instant)> = thread::scope(|s| {
        let handles: Vec<_> = (0..k)
            .map(|i| {
                let barrier = &barrier;
                let c = &counters[i % counters.len()].0;
                s.spawn(move || {
                    barrier.wait();
                    let t0 = Instant::now();
                    for _ in 0..INCREMENTS {
                        c.fetch_add(1, Relaxed);
                    }
                    (t0, Instant::now())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    span(&spans)
}

/// `k` threads each allocating and releasing a frame of the simulator's
/// shared frame pool `INCREMENTS / 16` times (once per fault, as the
/// anonymous backend and the shootdown's release do).
fn frame_pool_round(k: usize, sim: &Sim) -> Duration {
    let frames = sim.hardware().frames();
    let barrier = Barrier::new(k);
    let spans: Vec<(Instant, Instant)> = thread::scope(|s| {
        let handles: Vec<_> = (0..k)
            .map(|_| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let t0 = Instant::now();
                    for _ in 0..INCREMENTS / 16 {
                        let f = frames.alloc().expect("free frames");
                        frames.release(f);
                    }
                    (t0, Instant::now())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    span(&spans)
}

pub fn bench(c: &mut Criterion<Clock>) {
    let mut g = c.benchmark_group("scaling");
    g.sampling_mode(SamplingMode::Flat);
    let mut one = None;
    let mut two = None;
    let mut apart = None;
    for k in [1usize, 2] {
        g.throughput(Throughput::Elements(k as u64 * PAGES_PER_CPU));
        g.bench_function(BenchmarkId::new("aspace_faults", format!("{k}cpu")), |b| {
            let rig = one.get_or_insert_with(|| Rig::new(Sharing::Space));
            b.iter_custom(|iters| (0..iters).map(|_| rig.round(k, false)).sum())
        });
        if k == 2 {
            // Each CPU in its own address space: no address-space lock is
            // shared, only the frame allocator and the counters.
            g.bench_function(BenchmarkId::new("aspace_faults_2spaces", "2cpu"), |b| {
                let rig = two.get_or_insert_with(|| Rig::new(Sharing::Machine));
                b.iter_custom(|iters| (0..iters).map(|_| rig.round(k, false)).sum())
            });
            // Both CPUs in one area (each in its own half): the common case
            // of threads sharing a heap; they meet on the area's lock.
            g.bench_function(BenchmarkId::new("aspace_faults_same_area", "2cpu"), |b| {
                let rig = one.get_or_insert_with(|| Rig::new(Sharing::Space));
                b.iter_custom(|iters| (0..iters).map(|_| rig.round(k, true)).sum())
            });
            // Control: two machines, nothing shared but the host.
            g.bench_function(BenchmarkId::new("aspace_faults_2machines", "2cpu"), |b| {
                let rig = apart.get_or_insert_with(|| Rig::new(Sharing::Nothing));
                b.iter_custom(|iters| (0..iters).map(|_| rig.round(k, false)).sum())
            });
        }
        g.bench_function(BenchmarkId::new("linux_faults", format!("{k}cpu")), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| linux_round(k)).sum())
        });
    }
    // The same setups again, interleaved round by round (only if the
    // filter let the fault benchmarks above run).
    if let (Some(space), Some(spaces), Some(machines)) = (&mut one, &mut two, &mut apart) {
        paired(space, spaces, machines);
        paired_lookups();
    }
    // What a statistics counter shared by every CPU costs, as the core's
    // `Stats` are (several relaxed `fetch_add`s per fault), against one
    // counter per CPU.
    let shared = [Padded::default()];
    let private = [Padded::default(), Padded::default()];
    for (name, counters) in [
        ("counter_shared", &shared[..]),
        ("counter_per_cpu", &private[..]),
    ] {
        for k in [1usize, 2] {
            g.throughput(Throughput::Elements(k as u64 * INCREMENTS));
            g.bench_function(BenchmarkId::new(name, format!("{k}cpu")), |b| {
                b.iter_custom(|iters| (0..iters).map(|_| counter_round(k, counters)).sum())
            });
        }
    }
    // The simulator's frame pool: one mutex for every CPU.
    let mut pool = None;
    for k in [1usize, 2] {
        g.throughput(Throughput::Elements(k as u64 * INCREMENTS / 16));
        g.bench_function(BenchmarkId::new("frame_pool", format!("{k}cpu")), |b| {
            let sim = pool.get_or_insert_with(|| sim(2, 16 << 20, 64, 64));
            b.iter_custom(|iters| (0..iters).map(|_| frame_pool_round(k, sim)).sum())
        });
    }
    g.finish();
}
