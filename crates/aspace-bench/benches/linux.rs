//! Linux's memory calls (issue 16): `aspace_linux::mm::LinuxMm` on the
//! simulated machine against the same calls on this machine's Linux
//! kernel, made in-process through libc, in the same run.
//!
//! - `mmap_munmap_16p`: `mmap(NULL, 16 pages)` + `munmap`, with 4096
//!   one-page mappings present;
//! - `mprotect_split_merge`: `mprotect` of the middle 4 pages of a 16-page
//!   mapping to read-only (a split in three) and back (a merge into one);
//! - `munmap_half_256`: `munmap` of the upper half of a 256-page mapping
//!   whose pages are all resident (set up untimed);
//! - `mremap_move_256`: `mremap` of a 256-page resident mapping to 512
//!   pages with `MREMAP_MAYMOVE`, with the page after it taken, so the
//!   pages move (set up untimed).
//!
//! The simulator has no trap: an aspace call is a function call, a Linux
//! call a system call (and Linux's `munmap`/`mremap` also free or move real
//! memory and flush a real TLB). Read the ratios as "what the data
//! structures cost", not as a kernel against a kernel.
//!
//! `cargo bench -p aspace-bench --bench linux`; `-- --test` runs each once.

use std::hint::black_box;
use std::time::{Duration, Instant};

use aspace::PAGE_SIZE;
use aspace_bench::{sim, Settings};
use aspace_linux::consts::*;
use aspace_linux::mm::{Layout, LinuxMm};
use aspace_linux::{MapFlags, Prot, RemapFlags};
use aspace_sim::{Cpu, Sim, SimMachine};
use criterion::{criterion_group, criterion_main, Criterion};

/// Where the aspace side's mappings go (below its mmap base).
const BASE: u64 = 0x7000_0000_0000;

struct Ours {
    _sim: Sim,
    cpu: Cpu,
    mm: LinuxMm<SimMachine>,
}

fn ours() -> Ours {
    let sim = sim(1, 64 << 20, 16, 64);
    let space = sim.system().create().expect("space");
    let mut cpu = sim.cpu(0);
    cpu.switch_to(&space).expect("switch");
    let mm = LinuxMm::new(
        sim.system().clone(),
        space,
        Layout::new(BASE + (1 << 32), 0x5555_0000_0000),
    );
    Ours { _sim: sim, cpu, mm }
}

const ANON: MapFlags = MapFlags(MAP_PRIVATE | MAP_ANONYMOUS);

impl Ours {
    fn mmap(&mut self, addr: u64, pages: u64, flags: u32) -> u64 {
        let mm = &mut self.mm;
        self.cpu
            .run(|| {
                mm.mmap(
                    addr,
                    pages * PAGE_SIZE,
                    Prot::RW,
                    MapFlags(ANON.0 | flags),
                    None,
                    0,
                )
            })
            .expect("mmap")
    }
    fn munmap(&mut self, addr: u64, pages: u64) {
        let mm = &mut self.mm;
        self.cpu
            .run(|| mm.munmap(addr, pages * PAGE_SIZE))
            .expect("munmap");
    }
    fn mprotect(&mut self, addr: u64, pages: u64, prot: Prot) {
        let mm = &mut self.mm;
        self.cpu
            .run(|| mm.mprotect(addr, pages * PAGE_SIZE, prot))
            .expect("mprotect");
    }
    fn mremap(&mut self, addr: u64, old: u64, new: u64) -> u64 {
        let mm = &mut self.mm;
        self.cpu
            .run(|| {
                mm.mremap(
                    addr,
                    old * PAGE_SIZE,
                    new * PAGE_SIZE,
                    RemapFlags(MREMAP_MAYMOVE),
                    0,
                )
            })
            .expect("mremap")
    }
}

/// Linux, in this process.
mod linux {
    use super::PAGE_SIZE;

    pub fn mmap(addr: u64, pages: u64, flags: i32) -> u64 {
        // SAFETY: without MAP_FIXED the kernel picks free memory; with
        // MAP_FIXED_NOREPLACE it refuses to replace anything.
        let p = unsafe {
            libc::mmap(
                addr as *mut libc::c_void,
                (pages * PAGE_SIZE) as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap");
        p as u64
    }
    pub fn munmap(addr: u64, pages: u64) {
        // SAFETY: only ranges this benchmark mapped and no longer uses.
        let r = unsafe { libc::munmap(addr as *mut libc::c_void, (pages * PAGE_SIZE) as usize) };
        assert_eq!(r, 0, "munmap");
    }
    pub fn mprotect(addr: u64, pages: u64, prot: i32) {
        // SAFETY: a range this benchmark mapped; nothing reads it meanwhile.
        let r = unsafe {
            libc::mprotect(
                addr as *mut libc::c_void,
                (pages * PAGE_SIZE) as usize,
                prot,
            )
        };
        assert_eq!(r, 0, "mprotect");
    }
    pub fn mremap(addr: u64, old: u64, new: u64) -> u64 {
        // SAFETY: a mapping of this benchmark; it may move, and the
        // benchmark only uses the address returned.
        let p = unsafe {
            libc::mremap(
                addr as *mut libc::c_void,
                (old * PAGE_SIZE) as usize,
                (new * PAGE_SIZE) as usize,
                libc::MREMAP_MAYMOVE,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mremap");
        p as u64
    }
}

/// Runs `timed` `iters` times with `setup` before and `cleanup` after each,
/// untimed; returns the time of the timed parts.
fn timed_only<S, R>(
    iters: u64,
    mut setup: impl FnMut() -> S,
    mut timed: impl FnMut(&S) -> R,
    mut cleanup: impl FnMut(S, R),
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let s = setup();
        let t = Instant::now();
        let r = timed(&s);
        total += t.elapsed();
        cleanup(s, r);
    }
    total
}

fn bench(c: &mut Criterion) {
    let s = Settings::from_env();
    let mut g = c.benchmark_group("linux");
    g.warm_up_time(s.warm_up)
        .measurement_time(s.measurement)
        .sample_size(s.samples);

    // mmap + munmap of 16 pages with 4096 one-page mappings present (a
    // free page between them, so none merge).
    {
        let mut o = ours();
        for i in 0..4096 {
            o.mmap(BASE + 2 * i * PAGE_SIZE, 1, MAP_FIXED);
        }
        g.bench_function("mmap_munmap_16p/aspace", |b| {
            b.iter(|| {
                let a = o.mmap(0, 16, 0);
                o.munmap(black_box(a), 16);
            })
        });
        let region = linux::mmap(0, 8192, 0);
        linux::munmap(region, 8192);
        for i in 0..4096 {
            linux::mmap(region + 2 * i * PAGE_SIZE, 1, libc::MAP_FIXED_NOREPLACE);
        }
        g.bench_function("mmap_munmap_16p/linux", |b| {
            b.iter(|| {
                let a = linux::mmap(0, 16, 0);
                linux::munmap(black_box(a), 16);
            })
        });
        linux::munmap(region, 8192);
    }

    // mprotect of the middle of a 16-page resident mapping and back.
    {
        let mut o = ours();
        let a = o.mmap(BASE, 16, MAP_FIXED | MAP_POPULATE);
        g.bench_function("mprotect_split_merge/aspace", |b| {
            b.iter(|| {
                o.mprotect(a + 6 * PAGE_SIZE, 4, Prot::R);
                o.mprotect(a + 6 * PAGE_SIZE, 4, Prot::RW);
            })
        });
        assert_eq!(o.mm.maps().len(), 1, "merged back");
        let a = linux::mmap(0, 16, libc::MAP_POPULATE);
        g.bench_function("mprotect_split_merge/linux", |b| {
            b.iter(|| {
                linux::mprotect(a + 6 * PAGE_SIZE, 4, libc::PROT_READ);
                linux::mprotect(a + 6 * PAGE_SIZE, 4, libc::PROT_READ | libc::PROT_WRITE);
            })
        });
        linux::munmap(a, 16);
    }

    // munmap of the upper half of a resident 256-page mapping.
    {
        let mut o = ours();
        let o = std::cell::RefCell::new(&mut o);
        g.bench_function("munmap_half_256/aspace", |b| {
            b.iter_custom(|iters| {
                timed_only(
                    iters,
                    || o.borrow_mut().mmap(BASE, 256, MAP_FIXED | MAP_POPULATE),
                    |&a| o.borrow_mut().munmap(a + 128 * PAGE_SIZE, 128),
                    |a, ()| o.borrow_mut().munmap(a, 128),
                )
            })
        });
        g.bench_function("munmap_half_256/linux", |b| {
            b.iter_custom(|iters| {
                timed_only(
                    iters,
                    || linux::mmap(0, 256, libc::MAP_POPULATE),
                    |&a| linux::munmap(a + 128 * PAGE_SIZE, 128),
                    |a, ()| linux::munmap(a, 128),
                )
            })
        });
    }

    // mremap growth that moves 256 resident pages.
    {
        let mut o = ours();
        let o = std::cell::RefCell::new(&mut o);
        g.bench_function("mremap_move_256/aspace", |b| {
            b.iter_custom(|iters| {
                timed_only(
                    iters,
                    || {
                        let mut o = o.borrow_mut();
                        let a = o.mmap(BASE, 256, MAP_FIXED | MAP_POPULATE);
                        o.mmap(BASE + 256 * PAGE_SIZE, 1, MAP_FIXED);
                        a
                    },
                    |&a| {
                        let to = o.borrow_mut().mremap(a, 256, 512);
                        assert_ne!(to, a);
                        to
                    },
                    |_, to| {
                        let mut o = o.borrow_mut();
                        o.munmap(to, 512);
                        o.munmap(BASE, 257);
                    },
                )
            })
        });
        g.bench_function("mremap_move_256/linux", |b| {
            b.iter_custom(|iters| {
                timed_only(
                    iters,
                    || {
                        // 257 pages, the last one made read-only so the
                        // mapping cannot grow in place.
                        let a = linux::mmap(0, 257, libc::MAP_POPULATE);
                        linux::mprotect(a + 256 * PAGE_SIZE, 1, libc::PROT_READ);
                        a
                    },
                    |&a| {
                        let to = linux::mremap(a, 256, 512);
                        assert_ne!(to, a);
                        to
                    },
                    |a, to| {
                        linux::munmap(a + 256 * PAGE_SIZE, 1);
                        linux::munmap(to, 512);
                    },
                )
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
