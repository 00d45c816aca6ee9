//! Used space: single-page inserts and removals, in sequential and random
//! order, against `rangemap::RangeSet`.

use std::hint::black_box;

use crate::clock::Clock;
use crate::paired;
use aspace::internals::used_space::UsedSpace;
use aspace::Page;
use aspace_bench::Rng;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};
use rangemap::RangeSet;

/// Pages of the area whose used space is filled and emptied (16 MiB).
pub const PAGES: u64 = 4096;
const BASE: u64 = 0x400;

pub fn bench(c: &mut Criterion<Clock>) {
    let seq: Vec<u64> = (BASE..BASE + PAGES).collect();
    let mut random = seq.clone();
    Rng::new(7).shuffle(&mut random);
    let full_ours = {
        let mut u = UsedSpace::new();
        u.insert(Page::from_number(BASE), PAGES).unwrap();
        u
    };
    let mut full_theirs = RangeSet::<u64>::new();
    full_theirs.insert(BASE..BASE + PAGES);

    let mut g = c.benchmark_group("used_space");
    // Whether the filter let any of these run (then the paired comparison
    // runs too).
    let mut ran = false;
    g.throughput(Throughput::Elements(PAGES));
    for (order, pages) in [("seq", &seq), ("random", &random)] {
        g.bench_function(BenchmarkId::new("aspace_insert", order), |b| {
            ran = true;
            b.iter_batched_ref(
                UsedSpace::new,
                |u| {
                    for &p in pages {
                        u.insert(Page::from_number(p), 1).unwrap();
                    }
                },
                BatchSize::SmallInput,
            )
        });
        g.bench_function(BenchmarkId::new("rangemap_insert", order), |b| {
            b.iter_batched_ref(
                RangeSet::<u64>::new,
                |s| {
                    for &p in pages {
                        s.insert(p..p + 1);
                    }
                },
                BatchSize::SmallInput,
            )
        });
        g.bench_function(BenchmarkId::new("aspace_remove", order), |b| {
            b.iter_batched_ref(
                || full_ours.clone(),
                |u| {
                    for &p in pages {
                        u.remove(Page::from_number(p), 1).unwrap();
                    }
                    black_box(u.pages());
                },
                BatchSize::SmallInput,
            )
        });
        g.bench_function(BenchmarkId::new("rangemap_remove", order), |b| {
            b.iter_batched_ref(
                || full_theirs.clone(),
                |s| {
                    for &p in pages {
                        s.remove(p..p + 1);
                    }
                    black_box(s.is_empty());
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
    if ran {
        paired_used(&seq, &random, &full_ours, &full_theirs);
    }
}

/// Ours against `RangeSet`, interleaved, for each operation and order.
fn paired_used(seq: &[u64], random: &[u64], full_ours: &UsedSpace, full_theirs: &RangeSet<u64>) {
    for (order, pages) in [("seq", seq), ("random", random)] {
        let n = pages.len() as u64;
        paired::compare(
            format!("used_space/insert/{order}"),
            &mut [
                ("aspace UsedSpace", n, &mut || {
                    let mut u = UsedSpace::new();
                    for &p in pages {
                        u.insert(Page::from_number(p), 1).unwrap();
                    }
                    black_box(&u);
                }),
                ("RangeSet", n, &mut || {
                    let mut s = RangeSet::<u64>::new();
                    for &p in pages {
                        s.insert(p..p + 1);
                    }
                    black_box(&s);
                }),
            ],
        );
        paired::compare(
            format!("used_space/remove/{order}"),
            &mut [
                ("aspace UsedSpace", n, &mut || {
                    let mut u = full_ours.clone();
                    for &p in pages {
                        u.remove(Page::from_number(p), 1).unwrap();
                    }
                    black_box(&u);
                }),
                ("RangeSet", n, &mut || {
                    let mut s = full_theirs.clone();
                    for &p in pages {
                        s.remove(p..p + 1);
                    }
                    black_box(&s);
                }),
            ],
        );
    }
}
