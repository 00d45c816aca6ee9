//! Area lookup, the page-fault path's first step: aspace against a plain
//! `BTreeMap` range lookup, `nodit` and `rangemap` holding the same areas.
//!
//! Ours twice: as a page fault looks areas up, with the area tree's read
//! lock held (`AddressSpace::lookup`, locked once per batch of
//! [`QUERIES`]), and as the one-shot `area()`, which takes and drops the
//! lock around every lookup; the peers have no lock, and `BTreeMap,
//! read-locked` shows what one per lookup costs a peer.

use std::collections::BTreeMap;
use std::hint::black_box;

use crate::clock::Clock;
use crate::paired;
use aspace::internals::area_tree::{AreaTree, Hint};
use aspace::{Access, VirtAddr};
use aspace_bench::{layout, populate, random_queries, sequential_queries, sim, Settings};
use aspace_sim::Sim;
use criterion::{BenchmarkId, Criterion, Throughput};
use nodit::interval::ie;
use nodit::{Interval, NoditMap};
use parking_lot::RwLock;
use rangemap::RangeMap;

/// Lookups per iteration.
pub const QUERIES: usize = 1024;

/// What each contender stores per area: rights and size, as an area's info.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Meta {
    flags: u32,
    pages: u64,
}

/// The core keeps its areas in an [`AreaTree`] under a reader-writer lock
/// and reads an area's published summary. The diagnostics take that apart:
/// the tree alone (with and without the last-hit hint), and what a read lock
/// costs a plain `BTreeMap`.
struct Contenders {
    _sim: Sim,
    space: aspace_sim::SpaceHandle,
    btree: BTreeMap<u64, (u64, Meta)>,
    nodit: NoditMap<u64, Interval<u64>, Meta>,
    rangemap: RangeMap<u64, Meta>,
    tree: AreaTree<Meta>,
    hint: Hint,
    rw_btree: RwLock<BTreeMap<u64, (u64, Meta)>>,
}

fn build(n: usize) -> Contenders {
    let layout = layout(n, 1);
    // 16 MiB is plenty: areas cost no frames until touched.
    let sim = sim(1, 16 << 20, 64, 64);
    let (space, took) = populate(&sim, &layout);
    eprintln!(
        "lookup: created {n} aspace areas in {:.1} ms ({:.0} ns per area_create)",
        took.as_secs_f64() * 1e3,
        took.as_nanos() as f64 / n as f64
    );
    let meta = |pages| Meta { flags: 3, pages };
    // One structure after the other, so that each one's nodes lie together
    // in memory as they would in a program that holds only that one.
    let mut btree = BTreeMap::new();
    for a in &layout {
        btree.insert(a.base(), (a.end(), meta(a.pages)));
    }
    let mut nodit = NoditMap::new();
    for a in &layout {
        nodit
            .insert_strict(ie(a.base(), a.end()), meta(a.pages))
            .expect("disjoint");
    }
    let mut rangemap = RangeMap::new();
    for a in &layout {
        rangemap.insert(a.base()..a.end(), meta(a.pages));
    }
    let mut tree = AreaTree::new();
    for a in &layout {
        let _ = tree.insert(a.base(), a.end(), meta(a.pages));
    }
    let mut rw_btree = BTreeMap::new();
    for a in &layout {
        rw_btree.insert(a.base(), (a.end(), meta(a.pages)));
    }
    Contenders {
        _sim: sim,
        space,
        btree,
        nodit,
        rangemap,
        tree,
        hint: Hint::default(),
        rw_btree: RwLock::new(rw_btree),
    }
}

fn q_area(k: &Contenders, queries: &[u64]) -> u64 {
    let mut sum = 0u64;
    for &q in queries {
        if let Some(info) = k.space.area(VirtAddr::new(q)) {
            sum += info.pages;
        }
    }
    black_box(sum)
}

/// Lookups as the page-fault path (and HelenOS's `find_area_and_lock`)
/// makes them: under the area tree's read lock, taken once for the batch
/// through [`AddressSpace::lookup`](aspace::AddressSpace::lookup).
fn q_held(k: &Contenders, queries: &[u64]) -> u64 {
    let mut sum = 0u64;
    let areas = k.space.lookup();
    for &q in queries {
        if let Some(info) = areas.area(VirtAddr::new(q)) {
            sum += info.pages;
        }
    }
    black_box(sum)
}

fn q_check_access(k: &Contenders, queries: &[u64]) -> u64 {
    let mut hits = 0u64;
    for &q in queries {
        hits += k.space.check_access(VirtAddr::new(q), Access::Write) as u64;
    }
    black_box(hits)
}

fn q_btree(k: &Contenders, queries: &[u64]) -> u64 {
    let mut sum = 0u64;
    for &q in queries {
        if let Some((_, &(end, m))) = k.btree.range(..=q).next_back() {
            if q < end {
                sum += m.pages;
            }
        }
    }
    black_box(sum)
}

fn q_nodit(k: &Contenders, queries: &[u64]) -> u64 {
    let mut sum = 0u64;
    for &q in queries {
        if let Some(m) = k.nodit.get_at_point(&q) {
            sum += m.pages;
        }
    }
    black_box(sum)
}

fn q_rangemap(k: &Contenders, queries: &[u64]) -> u64 {
    let mut sum = 0u64;
    for &q in queries {
        if let Some(m) = k.rangemap.get(&q) {
            sum += m.pages;
        }
    }
    black_box(sum)
}

/// The core's tree alone: no lock, no area behind the entry.
fn q_tree(k: &Contenders, queries: &[u64]) -> u64 {
    let mut sum = 0u64;
    for &q in queries {
        if let Some((_, _, m)) = k.tree.find(q) {
            sum += m.pages;
        }
    }
    black_box(sum)
}

/// The same with the last-hit hint the core uses.
fn q_tree_hint(k: &Contenders, queries: &[u64]) -> u64 {
    let mut sum = 0u64;
    for &q in queries {
        if let Some((_, _, m)) = k.tree.find_hinted(q, &k.hint) {
            sum += m.pages;
        }
    }
    black_box(sum)
}

/// A plain `BTreeMap` behind a read lock taken per lookup, as the core
/// takes its tree's.
fn q_rw_btree(k: &Contenders, queries: &[u64]) -> u64 {
    let mut sum = 0u64;
    for &q in queries {
        let map = k.rw_btree.read();
        if let Some((_, &(end, m))) = map.range(..=q).next_back() {
            if q < end {
                sum += m.pages;
            }
        }
    }
    black_box(sum)
}

type Query = fn(&Contenders, &[u64]) -> u64;

pub fn bench(c: &mut Criterion<Clock>, s: &Settings) {
    let sizes = [16usize, 256, 4096, 65536, 1 << 20];
    let main: [(&str, Query); 6] = [
        ("aspace_lookup_held", q_held),
        ("aspace_area", q_area),
        ("aspace_check_access", q_check_access),
        ("btreemap", q_btree),
        ("nodit", q_nodit),
        ("rangemap", q_rangemap),
    ];
    // Diagnostics: the core's tree alone, and a read lock's cost.
    let diagnostics: [(&str, Query); 3] = [
        ("areatree", q_tree),
        ("areatree_hint", q_tree_hint),
        ("btreemap_rwlock", q_rw_btree),
    ];
    for n in sizes.into_iter().filter(|&n| n <= s.max_areas) {
        let areas = layout(n, 1);
        let patterns = [
            ("random", random_queries(&areas, QUERIES, 2)),
            ("seq", sequential_queries(&areas, QUERIES)),
        ];
        drop(areas);
        // Built on first use, so a filtered run builds only what it needs.
        let mut built: Option<Contenders> = None;
        for (pattern, queries) in &patterns {
            let mut g = c.benchmark_group(format!("lookup_{pattern}"));
            g.throughput(Throughput::Elements(QUERIES as u64));
            for &(name, query) in main.iter().chain(&diagnostics) {
                g.bench_function(BenchmarkId::new(name, n), |b| {
                    let k = built.get_or_insert_with(|| build(n));
                    b.iter(|| query(k, queries))
                });
            }
            g.finish();
            if let Some(k) = &built {
                // Eight batches per call: long enough that reading the clock
                // (a system call for thread CPU time) does not count.
                let q = 8 * QUERIES as u64;
                let rep = |f: Query| {
                    move || {
                        for _ in 0..8 {
                            f(k, queries);
                        }
                    }
                };
                let (mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h) = (
                    rep(q_held),
                    rep(q_area),
                    rep(q_btree),
                    rep(q_nodit),
                    rep(q_rangemap),
                    rep(q_tree),
                    rep(q_tree_hint),
                    rep(q_rw_btree),
                );
                // The lookup itself (lock held) against the peers, and what
                // the one-shot call adds: the lock, taken per lookup.
                paired::compare(
                    format!("lookup_{pattern}/{n}"),
                    &mut [
                        ("aspace lookup().area()", q, &mut a),
                        ("BTreeMap", q, &mut c),
                        ("nodit", q, &mut d),
                        ("rangemap", q, &mut e),
                        ("AreaTree alone", q, &mut f),
                        ("AreaTree alone, hinted", q, &mut g),
                    ],
                );
                paired::compare(
                    format!("lookup_{pattern}/{n}, one-shot"),
                    &mut [
                        ("aspace area()", q, &mut b),
                        ("aspace lookup().area()", q, &mut a),
                        ("BTreeMap, read-locked", q, &mut h),
                        ("BTreeMap", q, &mut c),
                        ("nodit", q, &mut d),
                    ],
                );
            }
        }
    }
}
