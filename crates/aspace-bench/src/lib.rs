//! Workloads shared by the benchmarks of the `aspace` core (see
//! `BENCHMARKS.md` at the workspace root): area layouts with gaps, query
//! address streams, simulated machines, and the settings read from the
//! environment.
//!
//! Everything here is deterministic (a fixed-seed xorshift generator), so
//! the same run measures the same areas and addresses for every contender.

#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

use std::time::{Duration, Instant};

use aspace::{AreaFlags, VirtAddr, PAGE_SIZE};
use aspace_sim::{Sim, SimConfig};

/// A small, fast, deterministic generator (xorshift64*).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (any value, 0 included).
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// A number in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// Shuffles `v` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// The first page of every layout: 4 MiB, clear of the NULL page.
pub const FIRST_PAGE: u64 = 0x400;

/// One area of a layout, in pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AreaSpec {
    /// First page number.
    pub page: u64,
    /// Size in pages.
    pub pages: u64,
}

impl AreaSpec {
    /// First address.
    pub fn base(&self) -> u64 {
        self.page * PAGE_SIZE
    }
    /// One past the last address.
    pub fn end(&self) -> u64 {
        (self.page + self.pages) * PAGE_SIZE
    }
    /// Size in bytes.
    pub fn bytes(&self) -> u64 {
        self.pages * PAGE_SIZE
    }
}

/// `n` areas of 1–64 pages, each followed by a gap of 1–64 pages, from
/// [`FIRST_PAGE`] upwards (about 260 GiB of address space for 2^20 areas).
pub fn layout(n: usize, seed: u64) -> Vec<AreaSpec> {
    let mut rng = Rng::new(seed);
    let mut page = FIRST_PAGE;
    (0..n)
        .map(|_| {
            let a = AreaSpec {
                page,
                pages: rng.between(1, 64),
            };
            page += a.pages + rng.between(1, 64);
            a
        })
        .collect()
}

/// The gap of at least `pages` pages closest to the middle of `layout`:
/// returns its first page (just past the area before it).
pub fn middle_gap(layout: &[AreaSpec], pages: u64) -> u64 {
    let mid = layout.len() / 2;
    (mid..layout.len() - 1)
        .chain((0..mid).rev())
        .find(|&i| layout[i + 1].page - (layout[i].page + layout[i].pages) >= pages)
        .map(|i| layout[i].page + layout[i].pages)
        .unwrap_or_else(|| {
            let last = layout.last().expect("non-empty layout");
            last.page + last.pages + 1
        })
}

/// `count` addresses, each in a random area at a random 8-byte-aligned
/// offset: what a stream of page faults on a fragmented space looks like.
pub fn random_queries(layout: &[AreaSpec], count: usize, seed: u64) -> Vec<u64> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|_| {
            let a = layout[rng.below(layout.len() as u64) as usize];
            a.base() + rng.below(a.bytes() / 8) * 8
        })
        .collect()
}

/// `count` addresses walking upwards one page at a time through the areas
/// from the middle one, skipping gaps and wrapping around at the top: a
/// sequential sweep.
pub fn sequential_queries(layout: &[AreaSpec], count: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(count);
    let mut i = layout.len() / 2;
    while out.len() < count {
        let a = layout[i];
        for p in 0..a.pages {
            if out.len() == count {
                break;
            }
            out.push(a.base() + p * PAGE_SIZE);
        }
        i = (i + 1) % layout.len();
    }
    out
}

/// Read and write rights.
pub const RW: AreaFlags = AreaFlags::READ.union(AreaFlags::WRITE);

/// A simulated machine; panics on a bad configuration. Its commit limit
/// is lifted: the benchmarks create far more (untouched) area pages than
/// the machine has frames, as the peers they are compared with do.
pub fn sim(cpus: usize, memory: u64, asids: u16, tlb_entries: usize) -> Sim {
    let sim = Sim::new(SimConfig {
        cpus,
        memory,
        asids,
        tlb_entries,
        ..SimConfig::default()
    })
    .expect("valid simulator configuration");
    sim.system().reserve().set_limit(u64::MAX);
    sim
}

/// A fresh address space on `sim` holding every area of `layout` (no page
/// mapped), and the time the creations took.
pub fn populate(sim: &Sim, layout: &[AreaSpec]) -> (aspace_sim::SpaceHandle, Duration) {
    let space = sim.system().create().expect("address space");
    let t = Instant::now();
    for a in layout {
        space
            .area_create(VirtAddr::new(a.base()), a.bytes(), RW)
            .expect("layout areas are disjoint");
    }
    (space, t.elapsed())
}

/// Settings read from the environment, so that a shared machine or CI can
/// bound the run.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Criterion warm-up per benchmark (`ASPACE_BENCH_WARMUP_MS`, 300).
    pub warm_up: Duration,
    /// Criterion measurement per benchmark (`ASPACE_BENCH_MEASURE_MS`, 1000).
    pub measurement: Duration,
    /// Criterion samples per benchmark (`ASPACE_BENCH_SAMPLES`, 20, at least 10).
    pub samples: usize,
    /// Largest number of areas in the lookup and churn benchmarks
    /// (`ASPACE_BENCH_MAX_AREAS`, 1048576).
    pub max_areas: usize,
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

impl Settings {
    /// The settings from the environment, defaults where unset.
    pub fn from_env() -> Self {
        Self {
            warm_up: Duration::from_millis(env_u64("ASPACE_BENCH_WARMUP_MS", 300)),
            measurement: Duration::from_millis(env_u64("ASPACE_BENCH_MEASURE_MS", 1000)),
            samples: env_u64("ASPACE_BENCH_SAMPLES", 20).max(10) as usize,
            max_areas: env_u64("ASPACE_BENCH_MAX_AREAS", 1 << 20) as usize,
        }
    }
}

/// Whether the process was started in criterion's test mode
/// (`cargo bench -- --test`): every benchmark runs once, nothing is
/// measured.
pub fn test_mode() -> bool {
    std::env::args().any(|a| a == "--test")
}
