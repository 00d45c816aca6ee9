//! Integration tests for `aspace::internals::used_space::UsedSpace`: the semantics of
//! HelenOS `used_space_insert` / `used_space_remove`, plus `split_off`, and a
//! model-based property test against a `BTreeSet` of pages.

use std::collections::BTreeSet;

use aspace::internals::used_space::{UsedSpace, UsedSpaceError};
use aspace::{Page, PageRange};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

fn p(n: u64) -> Page {
    Page::from_number(n)
}

fn r(start: u64, count: u64) -> PageRange {
    PageRange::new(p(start), count)
}

/// The intervals as `(first page, count)` pairs, ascending.
fn ivs(s: &UsedSpace) -> Vec<(u64, u64)> {
    s.iter().map(|r| (r.start.number(), r.count)).collect()
}

/// A set built from `(first page, count)` insertions that must all succeed.
fn space(runs: &[(u64, u64)]) -> UsedSpace {
    let mut s = UsedSpace::new();
    for &(start, count) in runs {
        s.insert(p(start), count)
            .unwrap_or_else(|e| panic!("insert({start}, {count}) failed: {e:?}"));
    }
    s
}

// ---------------------------------------------------------------------------
// Empty set and queries
// ---------------------------------------------------------------------------

#[test]
fn new_set_is_empty() {
    let s = UsedSpace::new();
    assert!(s.is_empty());
    assert_eq!(s.pages(), 0);
    assert_eq!(s.intervals(), 0);
    assert_eq!(s.iter().count(), 0);
    assert_eq!(s.iter_pages().count(), 0);
    assert!(!s.contains(p(0)));
    assert_eq!(s, UsedSpace::default());
}

#[test]
fn insert_into_empty_set_creates_one_interval() {
    let mut s = UsedSpace::new();
    assert_eq!(s.insert(p(10), 3), Ok(()));
    assert!(!s.is_empty());
    assert_eq!(ivs(&s), vec![(10, 3)]);
    assert_eq!(s.pages(), 3);
    assert_eq!(s.intervals(), 1);
}

#[test]
fn contains_is_true_exactly_inside_intervals() {
    let s = space(&[(10, 3), (20, 1)]);
    let inside: Vec<u64> = (0..30).filter(|&n| s.contains(p(n))).collect();
    assert_eq!(inside, vec![10, 11, 12, 20]);
}

#[test]
fn iter_yields_intervals_in_ascending_order() {
    let s = space(&[(50, 2), (10, 1), (30, 4)]);
    assert_eq!(
        s.iter().collect::<Vec<_>>(),
        vec![r(10, 1), r(30, 4), r(50, 2)]
    );
    // Double-ended: the highest interval first from the back.
    assert_eq!(s.iter().next_back(), Some(r(50, 2)));
}

#[test]
fn iter_pages_yields_every_page_in_ascending_order() {
    let s = space(&[(7, 2), (3, 1)]);
    let pages: Vec<u64> = s.iter_pages().map(|pg| pg.number()).collect();
    assert_eq!(pages, vec![3, 7, 8]);
}

#[test]
fn pages_and_intervals_count_after_mixed_operations() {
    let mut s = space(&[(0, 4), (10, 4), (20, 4)]);
    assert_eq!((s.pages(), s.intervals()), (12, 3));
    s.remove(p(11), 2).unwrap();
    assert_eq!((s.pages(), s.intervals()), (10, 4));
    s.insert(p(4), 6).unwrap();
    assert_eq!(ivs(&s), vec![(0, 11), (13, 1), (20, 4)]);
    assert_eq!((s.pages(), s.intervals()), (16, 3));
}

// ---------------------------------------------------------------------------
// insert
// ---------------------------------------------------------------------------

#[test]
fn insert_disjoint_keeps_separate_intervals() {
    let s = space(&[(10, 2), (14, 2)]);
    // Gap of two pages (12, 13): no merge.
    assert_eq!(ivs(&s), vec![(10, 2), (14, 2)]);
    assert_eq!(s.pages(), 4);
}

#[test]
fn insert_with_one_page_gap_does_not_merge() {
    let s = space(&[(10, 2), (13, 2)]);
    assert_eq!(ivs(&s), vec![(10, 2), (13, 2)]);
    assert!(!s.contains(p(12)));
}

#[test]
fn insert_merges_with_left_neighbour() {
    let s = space(&[(10, 2), (12, 3)]);
    assert_eq!(ivs(&s), vec![(10, 5)]);
    assert_eq!(s.pages(), 5);
}

#[test]
fn insert_merges_with_right_neighbour() {
    let s = space(&[(12, 3), (10, 2)]);
    assert_eq!(ivs(&s), vec![(10, 5)]);
    assert_eq!(s.pages(), 5);
}

#[test]
fn insert_merges_both_sides_into_one_interval() {
    let mut s = space(&[(10, 2), (15, 5)]);
    assert_eq!(s.intervals(), 2);
    s.insert(p(12), 3).unwrap();
    assert_eq!(ivs(&s), vec![(10, 10)]);
    assert_eq!(s.pages(), 10);
    assert_eq!(s.intervals(), 1);
}

#[test]
fn insert_merges_only_touching_neighbours() {
    // Left touches, right does not; other intervals are untouched.
    let mut s = space(&[(0, 1), (10, 2), (20, 2), (40, 1)]);
    s.insert(p(12), 3).unwrap();
    assert_eq!(ivs(&s), vec![(0, 1), (10, 5), (20, 2), (40, 1)]);
    // Right touches, left does not.
    s.insert(p(17), 3).unwrap();
    assert_eq!(ivs(&s), vec![(0, 1), (10, 5), (17, 5), (40, 1)]);
}

#[test]
fn insert_single_pages_in_any_order_build_one_interval() {
    let mut s = UsedSpace::new();
    for n in [5u64, 1, 3, 0, 4, 2, 6] {
        s.insert(p(n), 1).unwrap();
    }
    assert_eq!(ivs(&s), vec![(0, 7)]);
    assert_eq!(s.pages(), 7);
}

#[test]
fn insert_refuses_overlap_with_left() {
    let mut s = space(&[(10, 5)]);
    assert_eq!(s.insert(p(14), 3), Err(UsedSpaceError::Overlap));
    assert_eq!(ivs(&s), vec![(10, 5)]);
    assert_eq!(s.pages(), 5);
}

#[test]
fn insert_refuses_overlap_with_right() {
    let mut s = space(&[(10, 5)]);
    assert_eq!(s.insert(p(7), 4), Err(UsedSpaceError::Overlap));
    assert_eq!(ivs(&s), vec![(10, 5)]);
    assert_eq!(s.pages(), 5);
}

#[test]
fn insert_refuses_same_start() {
    let mut s = space(&[(10, 5)]);
    assert_eq!(s.insert(p(10), 1), Err(UsedSpaceError::Overlap));
    assert_eq!(s.insert(p(10), 9), Err(UsedSpaceError::Overlap));
    assert_eq!(ivs(&s), vec![(10, 5)]);
}

#[test]
fn insert_refuses_range_inside_interval() {
    let mut s = space(&[(10, 5)]);
    assert_eq!(s.insert(p(11), 2), Err(UsedSpaceError::Overlap));
    assert_eq!(s.insert(p(14), 1), Err(UsedSpaceError::Overlap));
    assert_eq!(ivs(&s), vec![(10, 5)]);
}

#[test]
fn insert_refuses_range_covering_interval() {
    let mut s = space(&[(10, 5)]);
    assert_eq!(s.insert(p(5), 20), Err(UsedSpaceError::Overlap));
    assert_eq!(ivs(&s), vec![(10, 5)]);
}

#[test]
fn insert_refuses_range_covering_several_intervals() {
    let mut s = space(&[(10, 1), (20, 1), (30, 1)]);
    assert_eq!(s.insert(p(0), 100), Err(UsedSpaceError::Overlap));
    // Filling a gap exactly is fine, but one page more overlaps.
    assert_eq!(s.insert(p(11), 10), Err(UsedSpaceError::Overlap));
    assert_eq!(ivs(&s), vec![(10, 1), (20, 1), (30, 1)]);
    assert_eq!(s.pages(), 3);
}

#[test]
fn insert_refuses_overlap_with_non_adjacent_right_interval() {
    // The range starts in a gap well after the left interval and runs into
    // the right one.
    let mut s = space(&[(0, 2), (10, 2)]);
    assert_eq!(s.insert(p(5), 6), Err(UsedSpaceError::Overlap));
    assert_eq!(ivs(&s), vec![(0, 2), (10, 2)]);
}

#[test]
fn insert_exactly_filling_gap_succeeds() {
    let mut s = space(&[(10, 1), (20, 1)]);
    s.insert(p(11), 9).unwrap();
    assert_eq!(ivs(&s), vec![(10, 11)]);
}

#[test]
fn insert_refuses_zero_count() {
    let mut s = space(&[(10, 1)]);
    assert_eq!(s.insert(p(0), 0), Err(UsedSpaceError::Empty));
    // Zero pages is Empty even where the page is already used.
    assert_eq!(s.insert(p(10), 0), Err(UsedSpaceError::Empty));
    assert_eq!(ivs(&s), vec![(10, 1)]);
}

#[test]
fn insert_refuses_wrapping_range() {
    let mut s = UsedSpace::new();
    assert_eq!(s.insert(p(u64::MAX), 2), Err(UsedSpaceError::Empty));
    assert_eq!(
        s.insert(p(u64::MAX - 1), u64::MAX),
        Err(UsedSpaceError::Empty)
    );
    assert_eq!(s.insert(p(1), u64::MAX), Err(UsedSpaceError::Empty));
    assert!(s.is_empty());
    assert_eq!(s.pages(), 0);
}

#[test]
fn insert_near_top_of_page_numbers_without_wrapping() {
    let mut s = UsedSpace::new();
    // Ends exactly at u64::MAX (exclusive): no wrap.
    s.insert(p(u64::MAX - 3), 2).unwrap();
    s.insert(p(u64::MAX - 1), 1).unwrap();
    assert_eq!(ivs(&s), vec![(u64::MAX - 3, 3)]);
    assert!(s.contains(p(u64::MAX - 1)));
    assert!(!s.contains(p(u64::MAX)));
    s.remove(p(u64::MAX - 2), 1).unwrap();
    assert_eq!(ivs(&s), vec![(u64::MAX - 3, 1), (u64::MAX - 1, 1)]);
}

// ---------------------------------------------------------------------------
// remove
// ---------------------------------------------------------------------------

#[test]
fn remove_whole_interval() {
    let mut s = space(&[(10, 5), (20, 1)]);
    s.remove(p(10), 5).unwrap();
    assert_eq!(ivs(&s), vec![(20, 1)]);
    assert_eq!(s.pages(), 1);
}

#[test]
fn remove_last_interval_leaves_set_empty() {
    let mut s = space(&[(10, 5)]);
    s.remove(p(10), 5).unwrap();
    assert!(s.is_empty());
    assert_eq!(s.pages(), 0);
    assert_eq!(s, UsedSpace::new());
}

#[test]
fn remove_shrinks_interval_from_start() {
    let mut s = space(&[(10, 5)]);
    s.remove(p(10), 2).unwrap();
    assert_eq!(ivs(&s), vec![(12, 3)]);
    assert_eq!(s.pages(), 3);
}

#[test]
fn remove_shrinks_interval_from_end() {
    let mut s = space(&[(10, 5)]);
    s.remove(p(13), 2).unwrap();
    assert_eq!(ivs(&s), vec![(10, 3)]);
    assert_eq!(s.pages(), 3);
}

#[test]
fn remove_splits_interval_in_two() {
    let mut s = space(&[(10, 10)]);
    s.remove(p(13), 4).unwrap();
    assert_eq!(ivs(&s), vec![(10, 3), (17, 3)]);
    assert_eq!(s.pages(), 6);
    assert_eq!(s.intervals(), 2);
}

#[test]
fn remove_single_page_from_middle_splits() {
    let mut s = space(&[(0, 3)]);
    s.remove(p(1), 1).unwrap();
    assert_eq!(ivs(&s), vec![(0, 1), (2, 1)]);
}

#[test]
fn remove_then_reinsert_restores_single_interval() {
    let mut s = space(&[(10, 10)]);
    s.remove(p(13), 4).unwrap();
    s.insert(p(13), 4).unwrap();
    assert_eq!(ivs(&s), vec![(10, 10)]);
    assert_eq!(s.pages(), 10);
}

#[test]
fn remove_refuses_unused_pages() {
    let mut s = space(&[(10, 5)]);
    assert_eq!(s.remove(p(0), 1), Err(UsedSpaceError::NotUsed));
    assert_eq!(s.remove(p(15), 1), Err(UsedSpaceError::NotUsed));
    assert_eq!(s.remove(p(100), 3), Err(UsedSpaceError::NotUsed));
    assert_eq!(ivs(&s), vec![(10, 5)]);
}

#[test]
fn remove_from_empty_set_refuses() {
    let mut s = UsedSpace::new();
    assert_eq!(s.remove(p(0), 1), Err(UsedSpaceError::NotUsed));
    assert!(s.is_empty());
}

#[test]
fn remove_refuses_range_starting_before_interval() {
    let mut s = space(&[(10, 5)]);
    assert_eq!(s.remove(p(9), 2), Err(UsedSpaceError::NotUsed));
    assert_eq!(ivs(&s), vec![(10, 5)]);
}

#[test]
fn remove_refuses_range_running_past_interval_end() {
    let mut s = space(&[(10, 5)]);
    assert_eq!(s.remove(p(13), 3), Err(UsedSpaceError::NotUsed));
    assert_eq!(s.remove(p(10), 6), Err(UsedSpaceError::NotUsed));
    assert_eq!(ivs(&s), vec![(10, 5)]);
    assert_eq!(s.pages(), 5);
}

#[test]
fn remove_refuses_range_spanning_two_intervals() {
    let mut s = space(&[(10, 5), (16, 5)]);
    // 14..17 covers the gap page 15.
    assert_eq!(s.remove(p(14), 3), Err(UsedSpaceError::NotUsed));
    assert_eq!(s.remove(p(10), 11), Err(UsedSpaceError::NotUsed));
    assert_eq!(ivs(&s), vec![(10, 5), (16, 5)]);
    assert_eq!(s.pages(), 10);
}

#[test]
fn remove_refuses_range_in_gap() {
    let mut s = space(&[(10, 2), (20, 2)]);
    assert_eq!(s.remove(p(13), 5), Err(UsedSpaceError::NotUsed));
    assert_eq!(ivs(&s), vec![(10, 2), (20, 2)]);
}

#[test]
fn remove_refuses_zero_count() {
    let mut s = space(&[(10, 5)]);
    assert_eq!(s.remove(p(10), 0), Err(UsedSpaceError::Empty));
    assert_eq!(s.remove(p(0), 0), Err(UsedSpaceError::Empty));
    assert_eq!(ivs(&s), vec![(10, 5)]);
}

#[test]
fn remove_refuses_wrapping_range() {
    let mut s = space(&[(10, 5)]);
    assert_eq!(s.remove(p(u64::MAX), 2), Err(UsedSpaceError::Empty));
    assert_eq!(s.remove(p(11), u64::MAX), Err(UsedSpaceError::Empty));
    assert_eq!(ivs(&s), vec![(10, 5)]);
}

// ---------------------------------------------------------------------------
// split_off
// ---------------------------------------------------------------------------

#[test]
fn split_off_returns_upper_intervals_highest_first() {
    let mut s = space(&[(0, 2), (10, 2), (20, 2), (30, 2)]);
    let upper = s.split_off(p(10));
    assert_eq!(upper, vec![r(30, 2), r(20, 2), r(10, 2)]);
    assert_eq!(ivs(&s), vec![(0, 2)]);
    assert_eq!(s.pages(), 2);
    assert_eq!(s.intervals(), 1);
}

#[test]
fn split_off_splits_straddling_interval() {
    let mut s = space(&[(0, 2), (10, 10), (30, 2)]);
    let upper = s.split_off(p(14));
    assert_eq!(upper, vec![r(30, 2), r(14, 6)]);
    assert_eq!(ivs(&s), vec![(0, 2), (10, 4)]);
    assert_eq!(s.pages(), 6);
}

#[test]
fn split_off_at_interval_start_takes_whole_interval() {
    let mut s = space(&[(10, 10)]);
    let upper = s.split_off(p(10));
    assert_eq!(upper, vec![r(10, 10)]);
    assert!(s.is_empty());
    assert_eq!(s.pages(), 0);
}

#[test]
fn split_off_at_interval_end_takes_nothing_of_it() {
    let mut s = space(&[(10, 10)]);
    let upper = s.split_off(p(20));
    assert!(upper.is_empty());
    assert_eq!(ivs(&s), vec![(10, 10)]);
    assert_eq!(s.pages(), 10);
}

#[test]
fn split_off_at_last_page_of_interval() {
    let mut s = space(&[(10, 10)]);
    let upper = s.split_off(p(19));
    assert_eq!(upper, vec![r(19, 1)]);
    assert_eq!(ivs(&s), vec![(10, 9)]);
    assert_eq!(s.pages(), 9);
}

#[test]
fn split_off_above_everything_returns_nothing() {
    let mut s = space(&[(10, 2), (20, 2)]);
    let before = s.clone();
    assert!(s.split_off(p(1000)).is_empty());
    assert_eq!(s, before);
}

#[test]
fn split_off_at_zero_takes_everything() {
    let mut s = space(&[(0, 3), (10, 2), (20, 2)]);
    let upper = s.split_off(p(0));
    assert_eq!(upper, vec![r(20, 2), r(10, 2), r(0, 3)]);
    assert!(s.is_empty());
    assert_eq!(s.pages(), 0);
}

#[test]
fn split_off_of_empty_set_returns_nothing() {
    let mut s = UsedSpace::new();
    assert!(s.split_off(p(5)).is_empty());
    assert!(s.is_empty());
}

#[test]
fn split_off_in_gap_does_not_split() {
    let mut s = space(&[(0, 5), (20, 5)]);
    let upper = s.split_off(p(10));
    assert_eq!(upper, vec![r(20, 5)]);
    assert_eq!(ivs(&s), vec![(0, 5)]);
}

#[test]
fn split_off_leaves_set_usable() {
    let mut s = space(&[(10, 10)]);
    let _ = s.split_off(p(15));
    // The freed pages can be used again and merge with what is left.
    s.insert(p(15), 5).unwrap();
    assert_eq!(ivs(&s), vec![(10, 10)]);
    assert_eq!(s.pages(), 10);
}

// ---------------------------------------------------------------------------
// take / clone
// ---------------------------------------------------------------------------

#[test]
fn take_empties_set_and_returns_contents() {
    let mut s = space(&[(1, 2), (5, 1)]);
    let taken = s.take();
    assert!(s.is_empty());
    assert_eq!(s.pages(), 0);
    assert_eq!(ivs(&taken), vec![(1, 2), (5, 1)]);
    assert_eq!(taken.pages(), 3);
}

#[test]
fn clone_is_independent() {
    let mut a = space(&[(1, 2)]);
    let b = a.clone();
    a.insert(p(3), 1).unwrap();
    assert_eq!(ivs(&a), vec![(1, 3)]);
    assert_eq!(ivs(&b), vec![(1, 2)]);
}

// ---------------------------------------------------------------------------
// Model-based property test
// ---------------------------------------------------------------------------

/// Pages the property test works in.
const SPACE: u64 = 128;

#[derive(Clone, Debug)]
enum Op {
    Insert(u64, u64),
    Remove(u64, u64),
    SplitOff(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        // Counts include 0 (refused as Empty) and may run past SPACE.
        6 => (0..SPACE, 0u64..=12).prop_map(|(s, c)| Op::Insert(s, c)),
        5 => (0..SPACE, 0u64..=12).prop_map(|(s, c)| Op::Remove(s, c)),
        1 => (0..=SPACE).prop_map(Op::SplitOff),
    ]
}

/// Maximal runs of consecutive pages of `pages`, ascending.
fn runs<'a>(pages: impl IntoIterator<Item = &'a u64>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &n in pages {
        match out.last_mut() {
            Some((s, c)) if *s + *c == n => *c += 1,
            _ => out.push((n, 1)),
        }
    }
    out
}

/// Checks `s` against the model: same pages, maximal intervals, counters.
fn check(s: &UsedSpace, model: &BTreeSet<u64>) -> Result<(), TestCaseError> {
    let got = ivs(s);
    for &(_, c) in &got {
        prop_assert!(c > 0, "empty interval in {:?}", got);
    }
    for w in got.windows(2) {
        let ((a, ac), (b, _)) = (w[0], w[1]);
        prop_assert!(
            a + ac < b,
            "intervals {:?} and {:?} overlap or touch (not maximal): {:?}",
            w[0],
            w[1],
            got
        );
    }
    prop_assert_eq!(&got, &runs(model));
    prop_assert_eq!(s.pages(), model.len() as u64);
    prop_assert_eq!(s.intervals(), got.len());
    prop_assert_eq!(s.is_empty(), model.is_empty());
    let pages: Vec<u64> = s.iter_pages().map(|pg| pg.number()).collect();
    prop_assert_eq!(pages, model.iter().copied().collect::<Vec<_>>());
    for n in 0..SPACE + 16 {
        prop_assert_eq!(s.contains(p(n)), model.contains(&n), "contains({})", n);
    }
    Ok(())
}

fn config() -> ProptestConfig {
    // The default config (which honours PROPTEST_* environment variables),
    // with a fixed seed unless PROPTEST_RNG_SEED picks one, and the number of
    // cases from ASPACE_PROPTEST_CASES.
    let mut cfg = ProptestConfig::default();
    if cfg.rng_seed == RngSeed::Random {
        cfg.rng_seed = RngSeed::Fixed(0x0a5a_ce00_5eed);
    }
    cfg.cases = std::env::var("ASPACE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    cfg
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn used_space_matches_page_set_model(ops in prop::collection::vec(op(), 1..64)) {
        let mut s = UsedSpace::new();
        let mut model: BTreeSet<u64> = BTreeSet::new();
        for (step, op) in ops.iter().enumerate() {
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
                    let got = s.insert(p(start), count);
                    prop_assert_eq!(got, expect, "step {}: {:?}", step, op);
                    if got.is_ok() {
                        model.extend(range);
                    }
                }
                Op::Remove(start, count) => {
                    let range = start..start + count;
                    // Intervals are maximal runs, so "inside one interval"
                    // is "every page used".
                    let expect = if count == 0 {
                        Err(UsedSpaceError::Empty)
                    } else if range.clone().all(|n| model.contains(&n)) {
                        Ok(())
                    } else {
                        Err(UsedSpaceError::NotUsed)
                    };
                    let got = s.remove(p(start), count);
                    prop_assert_eq!(got, expect, "step {}: {:?}", step, op);
                    if got.is_ok() {
                        for n in range {
                            model.remove(&n);
                        }
                    }
                }
                Op::SplitOff(cut) => {
                    let upper = model.split_off(&cut);
                    let mut expect: Vec<PageRange> =
                        runs(&upper).into_iter().map(|(s, c)| r(s, c)).collect();
                    expect.reverse();
                    let got = s.split_off(p(cut));
                    prop_assert_eq!(got, expect, "step {}: {:?}", step, op);
                }
            }
            check(&s, &model)?;
        }
    }
}

/// `overlap` counts the intervals and pages inside a range, as a scan of
/// every interval would; `split_off_into` moves what `split_off` returns.
#[test]
fn overlap_and_split_off_into_agree_with_a_scan() {
    // 40 runs of 1 to 3 pages, 2 apart: several leaves of the tree.
    let runs: Vec<(u64, u64)> = (0..40).map(|i| (10 + i * 6, 1 + i % 3)).collect();
    let s = space(&runs);
    for lo in (0..260).step_by(7) {
        for hi in (lo..270).step_by(11) {
            let (mut n, mut pages) = (0, 0);
            for &(start, count) in &runs {
                let (a, b) = (start.max(lo), (start + count).min(hi));
                if a < b {
                    n += 1;
                    pages += b - a;
                }
            }
            assert_eq!(s.overlap(lo, hi), (n, pages), "[{lo}, {hi})");
        }
    }
    for cut in (0..260).step_by(5) {
        let mut a = space(&runs);
        let mut b = space(&runs);
        let moved = a.split_off(p(cut));
        let mut into = UsedSpace::try_with_capacity(b.intervals_from(p(cut))).unwrap();
        b.split_off_into(p(cut), &mut into);
        assert_eq!(ivs(&a), ivs(&b), "cut {cut}: what stays");
        let mut moved: Vec<_> = moved.iter().map(|r| (r.start.number(), r.count)).collect();
        moved.sort();
        assert_eq!(ivs(&into), moved, "cut {cut}: what moves");
        assert_eq!(into.pages() + b.pages(), space(&runs).pages());
    }
}
