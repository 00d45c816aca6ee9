//! The four calls of `benches/linux.rs` (issue 16), each side timed call by
//! call (or in batches of 50 for the two without setup), reported as the
//! minimum, 10th percentile and median in nanoseconds with the ratio of the
//! 10th percentiles: on a shared, loaded machine the low quantiles say what
//! a call costs, where criterion's mean moves with the load.
//!
//! `cargo run --release -p aspace-bench --example linux_quantiles [NAME]`
//! (NAME: a part of a benchmark's name, to run only those).

use std::cell::RefCell;
use std::hint::black_box;
use std::time::Instant;

use aspace::{AreaFlags, Placement, VirtAddr, PAGE_SIZE};
use aspace_linux::consts::*;
use aspace_linux::Prot;

#[path = "../benches/linux_calls/mod.rs"]
mod linux_calls;
use linux_calls::{linux, ours, ours_remap_setup, BASE};

/// Calls (or batches) timed per benchmark and side.
const RUNS: usize = 400;

/// (min, p10, p50) of `v`.
fn quantiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let q = |f: f64| v[((v.len() - 1) as f64 * f) as usize];
    (q(0.0), q(0.1), q(0.5))
}

fn report(name: &str, ours: Vec<f64>, theirs: Vec<f64>) {
    let (a, b) = (quantiles(ours), quantiles(theirs));
    println!(
        "{name:22} aspace {:7.0} {:7.0} {:7.0}  linux {:7.0} {:7.0} {:7.0}  linux/aspace (p10) {:.1}",
        a.0,
        a.1,
        a.2,
        b.0,
        b.1,
        b.2,
        b.1 / a.1
    );
}

/// `f` timed in `RUNS` batches of `per`: nanoseconds per call.
fn batches(per: usize, mut f: impl FnMut()) -> Vec<f64> {
    (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per {
                f();
            }
            t.elapsed().as_nanos() as f64 / per as f64
        })
        .collect()
}

/// `timed` timed `RUNS` times alone, `setup` and `cleanup` around it.
fn each<S, R>(
    mut setup: impl FnMut() -> S,
    mut timed: impl FnMut(&S) -> R,
    mut cleanup: impl FnMut(S, R),
) -> Vec<f64> {
    (0..RUNS)
        .map(|_| {
            let s = setup();
            let t = Instant::now();
            let r = timed(&s);
            let ns = t.elapsed().as_nanos() as f64;
            cleanup(s, r);
            ns
        })
        .collect()
}

fn main() {
    let only = std::env::args().nth(1).unwrap_or_default();
    println!("nanoseconds: min p10 p50 per side");
    if "mmap_munmap_16p".contains(&only) {
        let mut o = ours();
        for i in 0..4096 {
            o.mmap(BASE + 2 * i * PAGE_SIZE, 1, MAP_FIXED);
        }
        let a = batches(50, || {
            let at = o.mmap(0, 16, 0);
            o.munmap(black_box(at), 16);
        });
        let region = linux::mmap(0, 8192, 0);
        linux::munmap(region, 8192);
        for i in 0..4096 {
            linux::mmap(region + 2 * i * PAGE_SIZE, 1, libc::MAP_FIXED_NOREPLACE);
        }
        let b = batches(50, || {
            let at = linux::mmap(0, 16, 0);
            linux::munmap(black_box(at), 16);
        });
        linux::munmap(region, 8192);
        // The core alone under the same layer's space: the top-down
        // placement and the removal it makes for this pair, without the
        // layer's records and checks (what the layer adds is the rest).
        let core = {
            let space = o.mm.space().clone();
            let (ceiling, flags) = (BASE + (1 << 32), AreaFlags::READ | AreaFlags::WRITE);
            let place = Placement::HighestBelow {
                ceiling: VirtAddr::new(ceiling),
                align: 1,
            };
            batches(50, || {
                let at = o
                    .cpu
                    .run(|| space.area_create_anywhere(place, 16 * PAGE_SIZE, flags))
                    .expect("create");
                o.cpu
                    .run(|| space.unmap_range(black_box(at), 16 * PAGE_SIZE))
                    .expect("unmap");
            })
        };
        report("mmap_munmap_16p", a, b.clone());
        let (c, l) = (quantiles(core), quantiles(b));
        println!(
            "  of which the core      {:7.0} {:7.0} {:7.0}  (area_create_anywhere + unmap_range; Linux's pair / this (p10) {:.1})",
            c.0,
            c.1,
            c.2,
            l.1 / c.1
        );
    }
    if "mprotect_split_merge".contains(&only) {
        let mut o = ours();
        let at = o.mmap(BASE, 16, MAP_FIXED | MAP_POPULATE);
        let a = batches(50, || {
            o.mprotect(at + 6 * PAGE_SIZE, 4, Prot::R);
            o.mprotect(at + 6 * PAGE_SIZE, 4, Prot::RW);
        });
        let at = linux::mmap(0, 16, libc::MAP_POPULATE);
        let b = batches(50, || {
            linux::mprotect(at + 6 * PAGE_SIZE, 4, libc::PROT_READ);
            linux::mprotect(at + 6 * PAGE_SIZE, 4, libc::PROT_READ | libc::PROT_WRITE);
        });
        linux::munmap(at, 16);
        report("mprotect_split_merge", a, b);
    }
    if "munmap_half_256".contains(&only) {
        let mut o = ours();
        let o = RefCell::new(&mut o);
        let a = each(
            || o.borrow_mut().mmap(BASE, 256, MAP_FIXED | MAP_POPULATE),
            |&at| o.borrow_mut().munmap(at + 128 * PAGE_SIZE, 128),
            |at, ()| o.borrow_mut().munmap(at, 128),
        );
        let b = each(
            || linux::mmap(0, 256, libc::MAP_POPULATE),
            |&at| linux::munmap(at + 128 * PAGE_SIZE, 128),
            |at, ()| linux::munmap(at, 128),
        );
        report("munmap_half_256", a, b);
    }
    // The 256 pages a whole mapping (the page after it a read-only one),
    // then the first 256 pages of a 257-page mapping (a split too).
    for (name, whole) in [("mremap_move_256", true), ("mremap_move_256_of_257", false)] {
        if !name.contains(&only) {
            continue;
        }
        let mut o = ours();
        let o = RefCell::new(&mut o);
        let a = each(
            || ours_remap_setup(&mut o.borrow_mut(), whole),
            |&at| o.borrow_mut().mremap(at, 256, 512),
            |_, to| {
                let mut o = o.borrow_mut();
                o.munmap(to, 512);
                o.munmap(BASE, 257);
            },
        );
        let b = each(
            || linux::remap_setup(whole),
            |&at| linux::mremap(at, 256, 512),
            |at, to| {
                linux::munmap(at + 256 * PAGE_SIZE, 1);
                linux::munmap(to, 512);
            },
        );
        report(name, a, b);
    }
}
