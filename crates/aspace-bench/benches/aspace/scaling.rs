//! Scaling: first-touch faults on disjoint areas of one address space from
//! 1 and 2 CPUs (one thread driving each CPU), and the same on Linux (1 and
//! 2 threads faulting disjoint mappings of one process).

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use std::{ptr, thread};

use aspace::{VirtAddr, PAGE_SIZE};
use aspace_bench::{sim, RW};
use aspace_sim::{Cpu, Sim, Space};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};

/// Pages each CPU touches per iteration (4 MiB).
pub const PAGES_PER_CPU: u64 = 1024;
const BASE: u64 = 0x4000_0000;
/// Distance between the CPUs' areas.
const STRIDE: u64 = 0x1000_0000;

struct Rig {
    cpus: Vec<Cpu>,
    /// The space each CPU runs (the same one, or one each).
    spaces: Vec<Arc<Space>>,
    _sim: Sim,
}

impl Rig {
    /// Two CPUs running one address space, or two.
    fn new(spaces: usize) -> Self {
        let sim = sim(2, 64 << 20, 64, 64);
        let list: Vec<_> = (0..spaces)
            .map(|_| sim.system().create().expect("space"))
            .collect();
        let spaces: Vec<_> = (0..2).map(|i| list[i % list.len()].clone()).collect();
        let cpus = (0..2)
            .map(|i| {
                let mut cpu = sim.cpu(i);
                cpu.switch_to(&spaces[i]).expect("ASID");
                cpu
            })
            .collect();
        Self {
            cpus,
            spaces,
            _sim: sim,
        }
    }

    /// One round: `k` CPUs each fault in their own fresh area; returns the
    /// time from the common start to the last CPU's end.
    fn round(&mut self, k: usize) -> Duration {
        let base = |i: usize| VirtAddr::new(BASE + i as u64 * STRIDE);
        for i in 0..k {
            self.spaces[i]
                .area_create(base(i), PAGES_PER_CPU * PAGE_SIZE, RW)
                .expect("free");
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
        for i in 0..k {
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
        .map(|_| unsafe {
            let p = libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            libc::madvise(p, len, libc::MADV_NOHUGEPAGE);
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
        unsafe { libc::munmap(m as *mut libc::c_void, len) };
    }
    span(&spans)
}

pub fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("scaling");
    g.sampling_mode(SamplingMode::Flat);
    let mut one = None;
    let mut two = None;
    for k in [1usize, 2] {
        g.throughput(Throughput::Elements(k as u64 * PAGES_PER_CPU));
        g.bench_function(BenchmarkId::new("aspace_faults", format!("{k}cpu")), |b| {
            let rig = one.get_or_insert_with(|| Rig::new(1));
            b.iter_custom(|iters| (0..iters).map(|_| rig.round(k)).sum())
        });
        if k == 2 {
            // Each CPU in its own address space: no address-space lock is
            // shared, only the frame allocator and the counters.
            g.bench_function(BenchmarkId::new("aspace_faults_2spaces", "2cpu"), |b| {
                let rig = two.get_or_insert_with(|| Rig::new(2));
                b.iter_custom(|iters| (0..iters).map(|_| rig.round(k)).sum())
            });
        }
        g.bench_function(BenchmarkId::new("linux_faults", format!("{k}cpu")), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| linux_round(k)).sum())
        });
    }
    g.finish();
}
