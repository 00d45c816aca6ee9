//! ASID allocation and stealing under pressure: many address spaces
//! switched round-robin on one CPU, with a pool of 2–8 ASIDs.

use std::hint::black_box;

use crate::clock::Clock;
use aspace::{VirtAddr, PAGE_SIZE};
use aspace_bench::{sim, RW};
use aspace_sim::{Cpu, Sim};
use criterion::{BenchmarkId, Criterion, Throughput};

const BASE: u64 = 0x40_0000;

struct Rig {
    cpu: Cpu,
    spaces: Vec<aspace_sim::SpaceHandle>,
    next: usize,
    sim: Sim,
}

impl Rig {
    /// `count` spaces, each with one resident page, on a one-CPU machine
    /// with `asids` ASIDs.
    fn new(asids: u16, count: usize) -> Self {
        let sim = sim(1, 16 << 20, asids, 64);
        let mut cpu = sim.cpu(0);
        let spaces: Vec<_> = (0..count)
            .map(|_| {
                let s = sim.system().create().expect("space");
                s.area_create(VirtAddr::new(BASE), PAGE_SIZE, RW).unwrap();
                cpu.switch_to(&s).expect("ASID");
                cpu.write_u64(VirtAddr::new(BASE), 1).unwrap();
                s
            })
            .collect();
        Self {
            cpu,
            spaces,
            next: 0,
            sim,
        }
    }

    fn switch(&mut self) {
        let s = &self.spaces[self.next];
        self.next = (self.next + 1) % self.spaces.len();
        black_box(self.cpu.switch_to(s).expect("ASID"));
    }
}

/// Steals and allocations per switch over `rounds` round-robin rounds.
fn steals_per_switch(asids: u16, count: usize) -> (f64, f64) {
    let mut rig = Rig::new(asids, count);
    let before = rig.sim.system().stats();
    let n = 10 * count;
    for _ in 0..n {
        rig.switch();
    }
    let d = rig.sim.system().stats().since(&before);
    (
        d.asid_steals as f64 / n as f64,
        d.asid_allocs as f64 / n as f64,
    )
}

pub fn bench(c: &mut Criterion<Clock>) {
    let mut g = c.benchmark_group("asid");
    g.throughput(Throughput::Elements(1));
    for asids in [2u16, 4, 8] {
        // As many spaces as ASIDs (no stealing after the first round), and
        // four times as many (round-robin defeats LRU: every switch steals).
        for (kind, count) in [("fit", asids as usize), ("steal", 4 * asids as usize)] {
            let (steals, allocs) = steals_per_switch(asids, count);
            eprintln!(
                "asid: {asids} ASIDs, {count} spaces: {steals:.2} steals and {allocs:.2} \
                 allocations per switch"
            );
            let mut rig = None;
            g.bench_function(BenchmarkId::new(format!("switch_{kind}"), asids), |b| {
                let rig = rig.get_or_insert_with(|| Rig::new(asids, count));
                b.iter(|| rig.switch())
            });
            if asids == 4 {
                // The switch and the first access after it: a stolen ASID
                // was flushed, so the access misses and walks.
                let rig = &mut rig;
                g.bench_function(
                    BenchmarkId::new(format!("switch_touch_{kind}"), asids),
                    |b| {
                        let rig = rig.get_or_insert_with(|| Rig::new(asids, count));
                        b.iter(|| {
                            rig.switch();
                            black_box(rig.cpu.read_u64(VirtAddr::new(BASE)).unwrap())
                        })
                    },
                );
            }
        }
    }
    g.finish();
}
