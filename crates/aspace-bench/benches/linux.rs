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
//!   pages with `MREMAP_MAYMOVE`, with the page after it taken (a
//!   read-only mapping), so the pages move (set up untimed);
//!   `mremap_move_256_of_257` the same of the first 256 pages of a
//!   257-page mapping, which the move also splits.
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
use aspace_bench::Settings;
use aspace_linux::consts::*;
use aspace_linux::Prot;
use criterion::{criterion_group, criterion_main, Criterion};

mod linux_calls;
use linux_calls::{linux, ours, ours_remap_setup, BASE};

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

    // mremap growth that moves 256 resident pages: a whole mapping (the
    // page after it read-only, so it cannot grow in place), and the first
    // 256 pages of a 257-page mapping (a split too).
    for (name, whole) in [("mremap_move_256", true), ("mremap_move_256_of_257", false)] {
        let mut o = ours();
        let o = std::cell::RefCell::new(&mut o);
        g.bench_function(format!("{name}/aspace"), |b| {
            b.iter_custom(|iters| {
                timed_only(
                    iters,
                    || ours_remap_setup(&mut o.borrow_mut(), whole),
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
        g.bench_function(format!("{name}/linux"), |b| {
            b.iter_custom(|iters| {
                timed_only(
                    iters,
                    || linux::remap_setup(whole),
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
