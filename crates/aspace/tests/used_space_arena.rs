//! `UsedSpace` on the arena B+tree: a model-based property test deep enough
//! for trees of several levels (against a `BTreeSet` of pages), and
//! allocation counts: after `reserve`, or once freed nodes are there to be
//! reused, inserting and removing allocate nothing.
//!
//! The allocation counter is per thread (the test harness runs tests on
//! several threads at once), so each test counts only its own allocations.

use std::collections::BTreeSet;

use aspace::internals::area_tree::AreaTree;
use aspace::internals::used_space::{UsedSpace, UsedSpaceError};
use aspace::{Page, PageRange};
use aspace_sim::alloc_count::{allocations, CountingAlloc};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn p(n: u64) -> Page {
    Page::from_number(n)
}

mod common;
use common::Rng;

// ---------------------------------------------------------------------------
// Allocation counts
// ---------------------------------------------------------------------------

/// The counter sees this thread's allocations (else the tests below prove
/// nothing).
#[test]
fn counter_counts() {
    let (n, v) = allocations(|| vec![1u8; 100]);
    assert_eq!(n, 1);
    drop(v);
}

/// After `reserve(k)`, `k` insertions in ascending, descending or random
/// order, with removals in between, allocate nothing, from trees of several
/// sizes; and reserving changes no entry.
#[test]
fn area_tree_reserve_covers_insertions() {
    let mut rng = Rng(0x5eed_a11c);
    for &initial in &[0u64, 1, 15, 16, 17, 200, 3000] {
        for &additional in &[1u64, 2, 9, 17, 144, 1300, 20_000] {
            for order in 0..3 {
                let mut t: AreaTree<u32> = AreaTree::new();
                // Entries at 3k: the initial ones at k < initial, the new
                // ones above them.
                for k in 0..initial {
                    t.insert(3 * k, 3 * k + 2, k as u32).unwrap();
                }
                let before: Vec<_> = t.iter().map(|(s, e, &v)| (s, e, v)).collect();
                t.reserve(additional as usize);
                assert!(t.iter().map(|(s, e, &v)| (s, e, v)).eq(before));
                let keys: Vec<u64> = match order {
                    0 => (initial..initial + additional).collect(),
                    1 => (initial..initial + additional).rev().collect(),
                    _ => rng
                        .shuffled(additional)
                        .into_iter()
                        .map(|k| k + initial)
                        .collect(),
                };
                let (n, ()) = allocations(|| {
                    for (j, &k) in keys.iter().enumerate() {
                        t.insert(3 * k, 3 * k + 2, k as u32).unwrap();
                        // Now and then take one out and put it back.
                        if j % 7 == 3 {
                            assert!(t.remove(3 * k).is_some());
                            t.insert(3 * k, 3 * k + 1, 0).unwrap();
                        }
                    }
                });
                assert_eq!(
                    n, 0,
                    "{initial} + {additional} entries, order {order}: {n} allocations"
                );
                t.check_invariants();
                assert_eq!(t.len() as u64, initial + additional);
            }
        }
    }
}

/// Without `reserve`, a tree emptied by removals refills in the same order
/// from its freed nodes; one emptied in another order refills with at most
/// the nodes it had, which are free again.
#[test]
fn area_tree_reuses_freed_nodes() {
    let mut rng = Rng(0xf4ee);
    const N: u64 = 5000;
    let order = rng.shuffled(N);
    let mut t: AreaTree<()> = AreaTree::new();
    for &k in &order {
        t.insert(2 * k, 2 * k + 1, ()).unwrap();
    }
    let nodes = t.node_counts();
    for &k in &rng.shuffled(N) {
        t.remove(2 * k).unwrap();
    }
    assert_eq!(t.node_counts(), (0, 0));
    t.check_invariants();
    let (n, ()) = allocations(|| {
        for &k in &order {
            t.insert(2 * k, 2 * k + 1, ()).unwrap();
        }
    });
    assert_eq!(n, 0, "refill in the same order: {n} allocations");
    assert_eq!(t.node_counts(), nodes);
    t.check_invariants();
    // Half out and in again, in different orders: never more nodes than
    // the tree has had.
    for round in 0..4 {
        let out: Vec<u64> = rng.shuffled(N).into_iter().take(N as usize / 2).collect();
        for &k in &out {
            t.remove(2 * k).unwrap();
        }
        let (n, ()) = allocations(|| {
            for &k in out.iter().rev() {
                t.insert(2 * k, 2 * k + 1, ()).unwrap();
            }
        });
        t.check_invariants();
        let now = t.node_counts();
        if now.0 <= nodes.0 && now.1 <= nodes.1 {
            assert_eq!(n, 0, "round {round}: {n} allocations");
        }
    }
}

/// A used space made with room for one interval takes its first page, and
/// then any run of pages grown at either end, without allocating; pages
/// removed from the ends of a run and put back allocate nothing either.
#[test]
fn used_space_first_run_and_its_growth_do_not_allocate() {
    let (n, mut s) = allocations(|| UsedSpace::with_capacity(1));
    assert!(n <= 1, "with_capacity(1): {n} allocations");
    let (n, ()) = allocations(|| {
        s.insert(p(5000), 1).unwrap();
        for k in 5001..6000 {
            s.insert(p(k), 1).unwrap();
        }
        for k in (0..5000).rev() {
            s.insert(p(k), 1).unwrap();
        }
        for k in 0..3000 {
            s.remove(p(k), 1).unwrap();
        }
        for k in (3000..6000).rev() {
            s.remove(p(k), 1).unwrap();
        }
        s.insert(p(77), 3).unwrap();
    });
    assert_eq!(n, 0, "{n} allocations");
    assert_eq!(s.intervals(), 1);
    assert_eq!(s.pages(), 3);
    s.check_invariants();
}

/// With room reserved for the most intervals a range of pages can hold,
/// faulting its pages in any order allocates nothing; neither does a
/// second round after the pages were split off (the resize of an area).
#[test]
fn used_space_reserved_random_touches_do_not_allocate() {
    const PAGES: u64 = 8192;
    let mut rng = Rng(0x70c4);
    let mut s = UsedSpace::new();
    s.reserve(PAGES.div_ceil(2) as usize);
    for round in 0..3 {
        let order = rng.shuffled(PAGES);
        let (n, ()) = allocations(|| {
            for &k in &order {
                s.insert(p(0x1000 + k), 1).unwrap();
            }
        });
        assert_eq!(n, 0, "round {round}: {n} allocations");
        assert_eq!(s.intervals(), 1);
        s.check_invariants();
        let upper = s.split_off(p(0x1000 + 1));
        assert_eq!(upper, vec![PageRange::new(p(0x1001), PAGES - 1)]);
        s.remove(p(0x1000), 1).unwrap();
        assert!(s.is_empty());
    }
    // Every other page (the most intervals), then the rest.
    let (n, ()) = allocations(|| {
        for k in (0..PAGES).step_by(2) {
            s.insert(p(k), 1).unwrap();
        }
        for k in (0..PAGES / 2).rev().map(|j| 2 * j + 1) {
            s.insert(p(k), 1).unwrap();
        }
    });
    assert_eq!(n, 0, "alternate pages: {n} allocations");
    s.check_invariants();
}

// ---------------------------------------------------------------------------
// Model-based property test, deep trees
// ---------------------------------------------------------------------------

/// Pages the property test works in: room for over a thousand intervals,
/// so trees of three levels.
const SPACE: u64 = 2400;

#[derive(Clone, Debug)]
enum Op {
    Insert(u64, u64),
    Remove(u64, u64),
    SplitOff(u64),
    Contains(u64),
    Reserve(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..SPACE, 0u64..=4).prop_map(|(s, c)| Op::Insert(s, c)),
        8 => (0..SPACE, 0u64..=4).prop_map(|(s, c)| Op::Remove(s, c)),
        1 => (0..=SPACE).prop_map(Op::SplitOff),
        3 => (0..SPACE + 4).prop_map(Op::Contains),
        1 => (0usize..600).prop_map(Op::Reserve),
    ]
}

/// Maximal runs of consecutive pages of `pages`, ascending, as ranges.
fn runs<'a>(pages: impl IntoIterator<Item = &'a u64>) -> Vec<PageRange> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &n in pages {
        match out.last_mut() {
            Some((s, c)) if *s + *c == n => *c += 1,
            _ => out.push((n, 1)),
        }
    }
    out.into_iter()
        .map(|(s, c)| PageRange::new(p(s), c))
        .collect()
}

/// Checks `s` against the model: tree invariants, the intervals from both
/// ends and alternately, and the counters.
fn check(s: &UsedSpace, model: &BTreeSet<u64>) -> Result<(), TestCaseError> {
    s.check_invariants();
    let want = runs(model);
    prop_assert_eq!(s.iter().collect::<Vec<_>>(), want.clone());
    let mut back: Vec<PageRange> = s.iter().rev().collect();
    back.reverse();
    prop_assert_eq!(&back, &want);
    // Alternating ends meet in the middle, each interval once.
    let mut it = s.iter();
    let (mut front, mut rear) = (Vec::new(), Vec::new());
    loop {
        prop_assert_eq!(it.len(), want.len() - front.len() - rear.len());
        let Some(r) = it.next() else { break };
        front.push(r);
        let Some(r) = it.next_back() else { break };
        rear.push(r);
    }
    prop_assert_eq!(it.next(), None);
    prop_assert_eq!(it.next_back(), None);
    rear.reverse();
    front.extend(rear);
    prop_assert_eq!(front, want.clone());
    prop_assert_eq!(s.pages(), model.len() as u64);
    prop_assert_eq!(s.intervals(), want.len());
    prop_assert_eq!(s.is_empty(), model.is_empty());
    Ok(())
}

fn config() -> ProptestConfig {
    // Fixed seed unless PROPTEST_RNG_SEED picks one; cases from
    // ASPACE_PROPTEST_CASES; no regression files written into the repo.
    let mut cfg = ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    if cfg.rng_seed == RngSeed::Random {
        cfg.rng_seed = RngSeed::Fixed(0x0a5a_ce00_a7e0);
    }
    cfg.cases = std::env::var("ASPACE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    cfg
}

proptest! {
    #![proptest_config(config())]

    /// Random single pages (most of them isolated: many intervals, a deep
    /// tree), then random updates, each checked against a page set; an
    /// update within reserved room allocates nothing.
    #[test]
    fn used_space_matches_page_set_model_deep(
        prefill in prop::collection::vec(0..SPACE, 0..1500),
        ops in prop::collection::vec(op(), 1..300),
    ) {
        let mut s = UsedSpace::new();
        let mut model: BTreeSet<u64> = BTreeSet::new();
        for &n in &prefill {
            let got = s.insert(p(n), 1);
            prop_assert_eq!(got.is_ok(), model.insert(n));
        }
        check(&s, &model)?;
        // Intervals the reserved room still covers (see `reserve`).
        let mut reserved_up_to = 0usize;
        for (step, op) in ops.iter().enumerate() {
            let covered = s.intervals() < reserved_up_to;
            match *op {
                Op::Insert(start, count) => {
                    let range = start..start + count;
                    let expect = if count == 0 {
                        Err(UsedSpaceError::Empty)
                    } else if range.clone().any(|n| model.contains(&n)) {
                        Err(UsedSpaceError::Overlap)
                    } else {
                        Ok(())
                    };
                    let (n, got) = allocations(|| s.insert(p(start), count));
                    prop_assert_eq!(got, expect, "step {}: {:?}", step, op);
                    if covered {
                        prop_assert_eq!(n, 0, "step {}: {:?} allocated", step, op);
                    }
                    if got.is_ok() {
                        model.extend(range);
                    }
                }
                Op::Remove(start, count) => {
                    let range = start..start + count;
                    let expect = if count == 0 {
                        Err(UsedSpaceError::Empty)
                    } else if range.clone().all(|n| model.contains(&n)) {
                        Ok(())
                    } else {
                        Err(UsedSpaceError::NotUsed)
                    };
                    let (n, got) = allocations(|| s.remove(p(start), count));
                    prop_assert_eq!(got, expect, "step {}: {:?}", step, op);
                    if covered {
                        prop_assert_eq!(n, 0, "step {}: {:?} allocated", step, op);
                    }
                    if got.is_ok() {
                        for n in range {
                            model.remove(&n);
                        }
                    }
                }
                Op::SplitOff(cut) => {
                    let upper = model.split_off(&cut);
                    let mut expect = runs(&upper);
                    expect.reverse();
                    prop_assert_eq!(s.split_off(p(cut)), expect, "step {}: {:?}", step, op);
                }
                Op::Contains(n) => {
                    prop_assert_eq!(s.contains(p(n)), model.contains(&n), "step {}: {:?}", step, op);
                }
                Op::Reserve(k) => {
                    s.reserve(k);
                    reserved_up_to = reserved_up_to.max(s.intervals() + k);
                }
            }
            check(&s, &model)?;
        }
        // Clones compare equal, whatever their arenas hold.
        let c = s.clone();
        prop_assert_eq!(&c, &s);
        c.check_invariants();
    }
}

/// A merge reserves exactly the runs the left set gains: a run that
/// continues across the boundary adds none, and taking it in then
/// allocates nothing (an inline run stays inline).
#[test]
fn a_join_across_the_boundary_adds_no_run_and_allocates_nothing() {
    let mut left = UsedSpace::new();
    left.insert(p(0), 6).unwrap();
    let mut right = UsedSpace::new();
    right.insert(p(6), 4).unwrap();
    right.insert(p(12), 2).unwrap();
    assert_eq!(right.first_page(), Some(6));
    // Continues: one of the two runs is new.
    assert_eq!(
        left.added_by_join(6, right.intervals(), right.first_page()),
        1
    );
    // A gap at the boundary, or an empty side: every run is new.
    assert_eq!(left.added_by_join(6, 2, Some(7)), 2);
    assert_eq!(UsedSpace::new().added_by_join(6, 2, Some(6)), 2);
    assert_eq!(left.added_by_join(6, 0, None), 0);
    let mut one = UsedSpace::new();
    one.insert(p(6), 4).unwrap();
    let added = left.added_by_join(6, one.intervals(), one.first_page());
    assert_eq!(added, 0);
    let (n, ()) = allocations(|| {
        assert!(left.try_reserve(added));
        for r in one.iter() {
            left.insert(r.start, r.count).unwrap();
        }
    });
    assert_eq!(n, 0, "the joined run stays inline");
    assert_eq!(left.intervals(), 1);
    assert_eq!(left.pages(), 10);
}
