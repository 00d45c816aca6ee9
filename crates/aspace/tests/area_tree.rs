//! Integration tests for `aspace::internals::area_tree::AreaTree`: edge cases of the
//! interval-map semantics, stale hints, a large deterministic insert/remove
//! run with height checks, and a model-based property test against a
//! `BTreeMap`.

use std::collections::BTreeMap;

use aspace::internals::area_tree::{AreaTree, Fit, Hint, CAP};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

const MAX: u64 = u64::MAX;

/// `n` at full size; under Miri, which runs these tests in CI and
/// interprets every step, a thousandth, but at least 256 (trees of three
/// levels still) and never more than `n`.
const fn sized(n: u64) -> u64 {
    if !cfg!(miri) {
        return n;
    }
    let m = n / 1000;
    if m >= 256 {
        m
    } else if n < 256 {
        n
    } else {
        256
    }
}

/// A tree from `(start, end)` insertions that must all succeed; the value
/// of each entry is its start.
fn tree(entries: &[(u64, u64)]) -> AreaTree<u64> {
    let mut t = AreaTree::new();
    for (i, &(s, e)) in entries.iter().enumerate() {
        t.insert(s, e, s)
            .unwrap_or_else(|v| panic!("insert({s}, {e}) refused ({v})"));
        if i < 64 || i % 512 == 0 {
            t.check_invariants();
        }
    }
    t.check_invariants();
    t
}

fn entries(t: &AreaTree<u64>) -> Vec<(u64, u64, u64)> {
    t.iter().map(|(s, e, v)| (s, e, *v)).collect()
}

/// A small deterministic generator (xorshift64*), so the large tests need no
/// dependency and fail the same way every time.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// The height bound, computed independently of `AreaTree::max_height`: a
/// tree of height h >= 2 has a root with >= 2 children, inner nodes with
/// >= CAP/2 + 1 children, leaves with >= CAP/2 entries.
fn height_bound(len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    (1..64)
        .take_while(|&h| {
            h == 1
                || (CAP / 2 + 1)
                    .checked_pow(h as u32 - 2)
                    .and_then(|m| m.checked_mul(2 * (CAP / 2)))
                    .is_some_and(|m| m <= len)
        })
        .last()
        .unwrap()
}

// ---------------------------------------------------------------------------
// Basics
// ---------------------------------------------------------------------------

#[test]
fn empty_tree() {
    let t: AreaTree<u64> = AreaTree::new();
    assert!(t.is_empty());
    assert_eq!(t.len(), 0);
    assert_eq!(t.height(), 0);
    assert_eq!(t.find(0), None);
    assert_eq!(t.find(MAX), None);
    assert_eq!(t.find_hinted(5, &Hint::new()), None);
    assert_eq!(t.get(0), None);
    assert!(!t.overlaps(0, MAX, None));
    assert_eq!(t.iter().count(), 0);
    assert_eq!(format!("{t:?}"), "{}");
    t.check_invariants();
    let mut t = t;
    assert_eq!(t.remove(0), None);
    assert!(!t.set_end(0, 1));
    assert!(t.drain().is_empty());
    t.check_invariants();
}

/// A reservation holds across removals and is found again without
/// growing; a copy's arenas hold only what it uses, so the same
/// reservation on the copy grows them (it must not trust the original's).
#[test]
fn reservations_and_copies() {
    let mut t: AreaTree<u64> = AreaTree::with_gaps();
    assert!(t.try_reserve(300));
    assert!(t.has_room(300));
    for i in 0..200 {
        t.insert(2 * i, 2 * i + 1, i).unwrap();
    }
    for i in 0..100 {
        t.remove(2 * i).unwrap();
    }
    assert!(t.try_reserve(200) && t.has_room(200));
    let mut copy = t.clone();
    assert!(!copy.has_room(200), "a copy's arenas hold only its nodes");
    assert!(copy.try_reserve(200));
    assert!(copy.has_room(200));
    assert_eq!(entries(&copy), entries(&t));
}

#[test]
fn insert_find_get_remove() {
    let mut t = tree(&[(10, 20), (20, 25), (30, 40)]);
    assert_eq!(t.len(), 3);
    assert_eq!(t.height(), 1);
    assert_eq!(t.find(9), None);
    assert_eq!(t.find(10), Some((10, 20, &10)));
    assert_eq!(t.find(19), Some((10, 20, &10)));
    assert_eq!(t.find(20), Some((20, 25, &20)));
    assert_eq!(t.find(25), None);
    assert_eq!(t.find(29), None);
    assert_eq!(t.find(39), Some((30, 40, &30)));
    assert_eq!(t.find(40), None);
    assert_eq!(t.get(20), Some((25, &20)));
    assert_eq!(t.get(21), None);
    *t.get_mut(30).unwrap().1 = 99;
    assert_eq!(t.get(30), Some((40, &99)));
    assert_eq!(t.get_mut(31), None);
    assert_eq!(format!("{t:?}"), "{10..20: 10, 20..25: 20, 30..40: 99}");
    assert_eq!(t.remove(21), None);
    assert_eq!(t.remove(20), Some((25, 20)));
    assert_eq!(t.find(22), None);
    t.check_invariants();
    assert_eq!(t.drain(), vec![(10, 20, 10), (30, 40, 99)]);
    assert!(t.is_empty());
    assert_eq!(t.height(), 0);
    t.check_invariants();
    // Usable again after drain.
    t.insert(1, 2, 1).unwrap();
    assert_eq!(entries(&t), [(1, 2, 1)]);
    t.check_invariants();
}

#[test]
fn insert_refusals() {
    let mut t = tree(&[(10, 20), (30, 40)]);
    // Empty or reversed ranges.
    assert_eq!(t.insert(5, 5, 1), Err(1));
    assert_eq!(t.insert(6, 5, 2), Err(2));
    assert_eq!(t.insert(MAX, MAX, 3), Err(3));
    // Overlap on the left side of an entry, the right side, inside, around.
    assert_eq!(t.insert(5, 11, 4), Err(4));
    assert_eq!(t.insert(19, 25, 5), Err(5));
    assert_eq!(t.insert(12, 13, 6), Err(6));
    assert_eq!(t.insert(0, 100, 7), Err(7));
    assert_eq!(t.insert(25, 31, 8), Err(8));
    // Exact duplicate, and same start with another end.
    assert_eq!(t.insert(10, 20, 9), Err(9));
    assert_eq!(t.insert(10, 11, 10), Err(10));
    assert_eq!(t.insert(30, 50, 11), Err(11));
    assert_eq!(entries(&t), [(10, 20, 10), (30, 40, 30)]);
    t.check_invariants();
    // Touching on either side is fine.
    t.insert(20, 30, 20).unwrap();
    t.insert(0, 10, 0).unwrap();
    t.insert(40, 41, 40).unwrap();
    assert_eq!(
        entries(&t),
        [
            (0, 10, 0),
            (10, 20, 10),
            (20, 30, 20),
            (30, 40, 30),
            (40, 41, 40)
        ]
    );
    t.check_invariants();
}

#[test]
fn extreme_keys() {
    let mut t = tree(&[(MAX - 1, MAX), (0, 1), (MAX - 3, MAX - 2)]);
    assert_eq!(t.find(MAX), None);
    assert_eq!(t.find(MAX - 1), Some((MAX - 1, MAX, &(MAX - 1))));
    assert_eq!(t.find(MAX - 2), None);
    assert_eq!(t.find(MAX - 3), Some((MAX - 3, MAX - 2, &(MAX - 3))));
    assert_eq!(t.find(0), Some((0, 1, &0)));
    assert_eq!(t.get(MAX), None);
    assert_eq!(t.insert(MAX - 2, MAX, 1), Err(1));
    assert!(t.overlaps(MAX - 1, MAX, None));
    assert!(!t.overlaps(MAX - 1, MAX, Some(MAX - 1)));
    assert!(!t.overlaps(MAX - 2, MAX - 1, None));
    assert!(t.overlaps(0, MAX, Some(MAX - 1)));
    assert!(!t.set_end(MAX - 3, MAX));
    assert!(t.set_end(MAX - 3, MAX - 1));
    assert_eq!(t.remove(MAX), None);
    assert_eq!(t.remove(MAX - 1), Some((MAX, MAX - 1)));
    t.insert(MAX - 1, MAX, 7).unwrap();
    assert_eq!(t.find_hinted(MAX, &Hint::new()), None);
    assert_eq!(
        t.find_hinted(MAX - 1, &Hint::new()),
        Some((MAX - 1, MAX, &7))
    );
    t.check_invariants();
    // A whole-range entry.
    let t = tree(&[(0, MAX)]);
    assert_eq!(t.find(MAX - 1), Some((0, MAX, &0)));
    assert_eq!(t.find(MAX), None);
}

#[test]
fn set_end_semantics() {
    let mut t = tree(&[(10, 20), (30, 40)]);
    assert!(!t.set_end(11, 15), "no entry starts at 11");
    assert!(!t.set_end(10, 10), "empty");
    assert!(!t.set_end(10, 5), "reversed");
    assert!(!t.set_end(10, 31), "overlaps the next entry");
    assert_eq!(entries(&t), [(10, 20, 10), (30, 40, 30)]);
    assert!(t.set_end(10, 12), "shrink");
    assert_eq!(t.find(12), None);
    assert!(t.set_end(10, 30), "grow to touch the next entry");
    assert_eq!(t.find(29), Some((10, 30, &10)));
    assert!(t.set_end(30, MAX), "grow the last entry to the top");
    assert_eq!(t.find(MAX - 1), Some((30, MAX, &30)));
    assert_eq!(entries(&t), [(10, 30, 10), (30, MAX, 30)]);
    t.check_invariants();
}

/// `relocate` moves an entry within its leaf (the order changing, its
/// guard checked), refuses what would overlap, and declines a place in
/// another leaf without changing anything.
#[test]
fn relocate_semantics() {
    let mut t = tree(&[(10, 20), (30, 40), (50, 60)]);
    assert!(!t.relocate(11, 70, 80, 0), "no entry starts at 11");
    assert!(!t.relocate(10, 80, 80, 0), "empty");
    assert!(!t.relocate(10, 35, 45, 0), "overlaps another");
    assert!(!t.relocate(10, 61, 70, 2), "its guard overlaps another");
    assert!(!t.relocate(10, 1, 5, 2), "its guard below 0");
    assert_eq!(entries(&t), [(10, 20, 10), (30, 40, 30), (50, 60, 50)]);
    assert!(t.relocate(10, 70, 80, 0), "to the end");
    assert_eq!(entries(&t), [(30, 40, 30), (50, 60, 50), (70, 80, 10)]);
    assert!(t.relocate(70, 0, 5, 0), "to the front");
    assert_eq!(entries(&t), [(0, 5, 10), (30, 40, 30), (50, 60, 50)]);
    assert!(
        t.relocate(30, 33, 50, 3),
        "over its own place, up to the next"
    );
    assert_eq!(entries(&t), [(0, 5, 10), (33, 50, 30), (50, 60, 50)]);
    assert_eq!(t.guard_of(33), Some(3));
    assert_eq!(t.find(31), None);
    t.check_invariants();
    // Several leaves of 16 entries `[4k, 4k + 3)`: entry 20 to the gap
    // after entry 25 (its leaf), in place; to the gap after entry 100
    // (another leaf), declined.
    let mut t = sequential_tree(200, false);
    assert!(t.height() >= 2);
    let mut want = entries(&t);
    assert!(!t.relocate(80, 403, 404, 0), "another leaf");
    assert_eq!(entries(&t), want);
    assert!(t.relocate(80, 103, 104, 0));
    want.retain(|&(s, _, _)| s != 80);
    want.insert(
        want.iter().position(|&(s, _, _)| s > 103).unwrap(),
        (103, 104, 20),
    );
    assert_eq!(entries(&t), want);
    assert_eq!(t.find(80), None);
    assert_eq!(t.find(103), Some((103, 104, &20)));
    t.check_invariants();
    // The first entry of a leaf that is not the first: its separator follows.
    assert!(t.relocate(64, 75, 76, 0));
    assert_eq!(t.find(64), None);
    assert_eq!(t.find(68), Some((68, 71, &17)));
    assert_eq!(t.find(75), Some((75, 76, &16)));
    t.check_invariants();
}

/// Across a large tree, the neighbour of every entry (in the same leaf or
/// the next) bounds `set_end`, and `overlaps` finds the neighbours whether
/// or not the entry itself is ignored.
#[test]
fn neighbours_across_leaves() {
    // Three levels need more than CAP * CAP = 256 entries.
    let n = if cfg!(miri) { 300 } else { 2000 };
    let mut t = tree(&(0..n).map(|i| (10 * i, 10 * i + 5)).collect::<Vec<_>>());
    assert!(t.height() >= 3);
    for i in 0..n {
        let s = 10 * i;
        let last = i == n - 1;
        assert_eq!(t.set_end(s, s + 11), last, "set_end({s}, {})", s + 11);
        assert!(t.set_end(s, s + 10));
        assert!(t.set_end(s, s + 5));
        assert_eq!(t.get(s), Some((s + 5, &s)));

        assert!(!t.overlaps(s, s + 5, Some(s)));
        assert!(t.overlaps(s, s + 5, None));
        assert!(t.overlaps(s + 4, s + 6, None));
        assert!(!t.overlaps(s + 5, s + 10, None));
        assert!(!t.overlaps(s + 5, s + 10, Some(s)));
        assert_eq!(t.overlaps(s, s + 11, Some(s)), !last);
        assert_eq!(t.overlaps(s.saturating_sub(6), s + 5, Some(s)), i > 0);
        assert!(!t.overlaps(s.saturating_sub(5), s + 10, Some(s)));
        assert!(!t.overlaps(s + 2, s + 2, None), "empty range");
    }
    t.check_invariants();
}

#[test]
fn height_grows_and_shrinks() {
    let mut t = AreaTree::new();
    assert_eq!(t.height(), 0);
    for i in 0..CAP as u64 {
        t.insert(i, i + 1, i).unwrap();
    }
    assert_eq!(t.height(), 1);
    t.insert(CAP as u64, CAP as u64 + 1, 0).unwrap();
    assert_eq!(t.height(), 2);
    for i in 0..=CAP as u64 {
        t.remove(i).unwrap();
        t.check_invariants();
    }
    assert_eq!(t.height(), 0);
    assert!(t.is_empty());
}

#[test]
fn max_height_matches_independent_bound() {
    for len in (0..5000).chain([100_000, 1 << 20, 1 << 30, usize::MAX]) {
        assert_eq!(
            AreaTree::<()>::max_height(len),
            height_bound(len),
            "len {len}"
        );
    }
}

#[test]
fn max_height_documented_values() {
    assert_eq!(AreaTree::<()>::max_height(CAP - 1), 1);
    assert_eq!(AreaTree::<()>::max_height(100_000), 5);
    assert_eq!(AreaTree::<()>::max_height(1_000_000), 7);
}

// ---------------------------------------------------------------------------
// Fill under sequential insertion
// ---------------------------------------------------------------------------

/// The fewest inner nodes above `leaves` leaves: each level needs
/// `ceil(below / (CAP + 1))` nodes.
fn min_inner_nodes(leaves: usize) -> usize {
    let (mut below, mut total) = (leaves, 0);
    while below > 1 {
        below = below.div_ceil(CAP + 1);
        total += below;
    }
    total
}

/// The least height of a tree of `leaves` leaves.
fn min_height(leaves: usize) -> usize {
    let (mut below, mut height) = (leaves, 1);
    while below > 1 {
        below = below.div_ceil(CAP + 1);
        height += 1;
    }
    height
}

/// Inserts `n` entries `[4k, 4k + 3)` in ascending or descending order of
/// `k`, checking the invariants now and then.
fn sequential_tree(n: u64, descending: bool) -> AreaTree<u64> {
    let mut t = AreaTree::new();
    for j in 0..n {
        let k = if descending { n - 1 - j } else { j };
        t.insert(4 * k, 4 * k + 3, k).unwrap();
        if j < 300 || j % 4096 == 0 {
            t.check_invariants();
        }
    }
    t.check_invariants();
    t
}

/// Ascending or descending insertion keeps the nodes full: `ceil(n / CAP)`
/// leaves, the fewest inner nodes, the least height; then sequential
/// removal in either order keeps every invariant and ends empty.
#[test]
fn sequential_inserts_fill_nodes() {
    const N: u64 = sized(100_000);
    for descending in [false, true] {
        let mut t = sequential_tree(N, descending);
        let n = N as usize;
        let (leaves, inner) = t.node_counts();
        assert!(
            leaves <= n.div_ceil(CAP - 1) + 1,
            "descending {descending}: {leaves} leaves for {n} entries"
        );
        assert_eq!(leaves, n.div_ceil(CAP), "descending {descending}");
        assert_eq!(inner, min_inner_nodes(leaves), "descending {descending}");
        assert_eq!(t.height(), min_height(leaves), "descending {descending}");
        assert!(t.iter().map(|(s, ..)| s).eq((0..N).map(|k| 4 * k)));

        // Remove in the same order, then (on a fresh tree) in the other.
        for remove_descending in [descending, !descending] {
            if remove_descending != descending {
                t = sequential_tree(N, descending);
            }
            for j in 0..N {
                let k = if remove_descending { N - 1 - j } else { j };
                assert_eq!(t.remove(4 * k), Some((4 * k + 3, k)));
                // The last removals shrink the tree level by level: checked
                // one by one (the last 16 under Miri, where a check is dear).
                if j % 997 == 0 || N - j < if cfg!(miri) { 16 } else { 300 } {
                    t.check_invariants();
                    assert!(t.height() <= height_bound(t.len()));
                }
            }
            assert!(t.is_empty());
            assert_eq!(t.node_counts(), (0, 0));
        }
    }
    // Exactly ceil(n / CAP) leaves after every single insertion, too.
    for descending in [false, true] {
        let mut t = AreaTree::new();
        for j in 0..sized(5000) {
            let k = if descending { (1 << 20) - j } else { j };
            t.insert(k, k + 1, ()).unwrap();
            let (leaves, inner) = t.node_counts();
            let n = j as usize + 1;
            assert_eq!(
                leaves,
                n.div_ceil(CAP),
                "descending {descending}, {n} entries"
            );
            assert_eq!(
                inner,
                min_inner_nodes(leaves),
                "descending {descending}, {n} entries"
            );
        }
        t.check_invariants();
    }
}

/// Runs into a gap between older entries, as an address space creates
/// areas bottom-up or top-down between its text and its stack, fill the
/// nodes as well; so do two runs growing at once.
#[test]
fn runs_into_gaps_fill_nodes() {
    const N: u64 = sized(50_000);
    const TOP: u64 = 1 << 40;
    for pattern in 0..3 {
        let mut t = AreaTree::new();
        for k in 0..100 {
            t.insert(k, k + 1, k).unwrap();
            t.insert(TOP + k, TOP + k + 1, k).unwrap();
        }
        for j in 0..N {
            match pattern {
                0 => t.insert(1000 + 4 * j, 1000 + 4 * j + 3, j),
                1 => t.insert(TOP - 4 * (j + 1), TOP - 4 * j - 1, j),
                _ => t
                    .insert(1000 + 4 * j, 1000 + 4 * j + 3, j)
                    .and_then(|()| t.insert(TOP - 4 * (j + 1), TOP - 4 * j - 1, j)),
            }
            .unwrap();
            if j % 4096 == 0 {
                t.check_invariants();
            }
        }
        t.check_invariants();
        let (leaves, inner) = t.node_counts();
        let n = t.len();
        assert!(
            leaves <= n.div_ceil(CAP - 1) + 1,
            "pattern {pattern}: {leaves} leaves for {n} entries"
        );
        assert!(
            inner <= min_inner_nodes(leaves) + t.height(),
            "pattern {pattern}: {inner} inner nodes for {leaves} leaves"
        );
    }
}

/// Random insertion spills into siblings too, so it ends well above the
/// half-full nodes of plain splits.
#[test]
fn random_inserts_fill_nodes() {
    const N: usize = sized(50_000) as usize;
    let mut rng = Rng(0x5eed_f111);
    let mut order: Vec<u64> = (0..N as u64).collect();
    rng.shuffle(&mut order);
    let mut t = AreaTree::new();
    for &k in &order {
        t.insert(4 * k, 4 * k + 3, k).unwrap();
    }
    t.check_invariants();
    let (leaves, _) = t.node_counts();
    assert!(
        leaves * CAP * 3 <= N * 4,
        "{leaves} leaves for {N} random entries: under 75% full"
    );
}

// ---------------------------------------------------------------------------
// Hints
// ---------------------------------------------------------------------------

/// The leaf index a hint holds, read through its `Debug` output.
fn hint_value(h: &Hint) -> String {
    format!("{h:?}")
}

#[test]
fn sweep_mostly_hits_the_hint() {
    let n = sized(10_000);
    let t = tree(&(0..n).map(|i| (4 * i, 4 * i + 3)).collect::<Vec<_>>());
    let hint = Hint::default();
    let mut changes = 0;
    let mut last = hint_value(&hint);
    for p in 0..4 * n {
        let want = t.find(p);
        assert_eq!(t.find_hinted(p, &hint), want, "point {p}");
        let now = hint_value(&hint);
        if now != last {
            changes += 1;
            last = now;
        }
    }
    // One miss per leaf at most: at least CAP / 2 entries per leaf.
    assert!(
        changes <= (n as usize).div_ceil(CAP / 2),
        "{changes} hint changes for {n} entries"
    );
}

#[test]
fn stale_hints_never_mislead() {
    let mut t = AreaTree::new();
    for i in 0..sized(3000) {
        t.insert(2 * i, 2 * i + 1, i).unwrap();
    }
    let hints: Vec<Hint> = (0..if cfg!(miri) { 8 } else { 50 })
        .map(|_| Hint::new())
        .collect();
    for (k, h) in hints.iter().enumerate() {
        let p = 120 * k as u64;
        assert_eq!(t.find_hinted(p, h), t.find(p));
    }
    // Remove everything one by one (leaves go to the free list), then build
    // a different tree that reuses the arena slots.
    for i in 0..sized(3000) {
        t.remove(2 * i).unwrap();
    }
    assert!(t.is_empty());
    for (k, h) in hints.iter().enumerate() {
        assert_eq!(t.find_hinted(120 * k as u64, h), None);
    }
    let mut rng = Rng(0x5eed_0001);
    let mut starts: Vec<u64> = (0..sized(2000)).map(|i| 7 * i + 1).collect();
    rng.shuffle(&mut starts);
    for &s in &starts {
        t.insert(s, s + 3, s).unwrap();
    }
    t.check_invariants();
    for h in &hints {
        for p in 0..sized(6000) {
            assert_eq!(t.find_hinted(p, h), t.find(p), "point {p}");
        }
    }
    // After drain the arenas are empty; the hints then name nothing.
    t.drain();
    for h in &hints {
        assert_eq!(t.find_hinted(100, h), None);
    }
    t.insert(0, 10, 0).unwrap();
    for h in &hints {
        assert_eq!(t.find_hinted(5, h), Some((0, 10, &0)));
        assert_eq!(t.find_hinted(10, h), None);
    }
    // A hint from another tree is just as harmless.
    let other = tree(&[(100, 200), (300, 400)]);
    let h = Hint::new();
    assert_eq!(other.find_hinted(150, &h), Some((100, 200, &100)));
    assert_eq!(t.find_hinted(150, &h), None);
    assert_eq!(t.find_hinted(3, &h), Some((0, 10, &0)));
}

// ---------------------------------------------------------------------------
// A large deterministic run
// ---------------------------------------------------------------------------

#[test]
fn large_random_insert_lookup_remove() {
    const SEED: u64 = 0x0a5a_ce00_7ee5;
    // Under Miri 1000: the last phase keeps 100 of the tenth it keeps.
    const N: usize = if cfg!(miri) { 1000 } else { 200_000 };
    let mut rng = Rng(SEED);
    // Entry i is [4i, 4i + len), len in 1..=3; 4i + len .. 4i + 4 is a gap.
    let lens: Vec<u64> = (0..N).map(|_| 1 + rng.next() % 3).collect();
    let mut order: Vec<usize> = (0..N).collect();
    rng.shuffle(&mut order);

    let mut t: AreaTree<usize> = AreaTree::new();
    for (k, &i) in order.iter().enumerate() {
        let s = 4 * i as u64;
        assert_eq!(
            t.insert(s, s + lens[i], i),
            Ok(()),
            "seed {SEED:#x}: insert #{k}"
        );
        if k % 50_000 == 0 {
            t.check_invariants();
        }
    }
    t.check_invariants();
    assert_eq!(t.len(), N);
    let full_height = t.height();
    assert!(
        full_height <= height_bound(N),
        "seed {SEED:#x}: height {full_height} > bound {}",
        height_bound(N)
    );

    let hint = Hint::new();
    for (i, &len) in lens.iter().enumerate() {
        let s = 4 * i as u64;
        let want = Some((s, s + len, &i));
        assert_eq!(t.find(s), want, "seed {SEED:#x}: find start {s}");
        assert_eq!(
            t.find(s + len - 1),
            want,
            "seed {SEED:#x}: find end-1 of {s}"
        );
        assert_eq!(
            t.find_hinted(s + len - 1, &hint),
            want,
            "seed {SEED:#x}: hinted {s}"
        );
        if len < 4 {
            assert_eq!(t.find(s + len), None, "seed {SEED:#x}: gap after {s}");
        }
        assert_eq!(t.get(s), Some((s + len, &i)));
    }
    assert_eq!(t.find(4 * N as u64), None);
    assert!(t.iter().map(|(s, ..)| s).eq((0..N as u64).map(|i| 4 * i)));

    // Remove 90% in another random order.
    rng.shuffle(&mut order);
    let (gone, kept) = order.split_at(N * 9 / 10);
    for (k, &i) in gone.iter().enumerate() {
        let s = 4 * i as u64;
        assert_eq!(
            t.remove(s),
            Some((s + lens[i], i)),
            "seed {SEED:#x}: remove #{k}"
        );
        if k % 40_000 == 0 {
            t.check_invariants();
        }
    }
    t.check_invariants();
    assert_eq!(t.len(), kept.len());
    assert!(t.height() <= height_bound(kept.len()));
    for &i in gone.iter().step_by(7) {
        assert_eq!(
            t.find(4 * i as u64),
            None,
            "seed {SEED:#x}: removed {i} found"
        );
    }
    for &i in kept {
        let s = 4 * i as u64;
        assert_eq!(t.find_hinted(s, &hint), Some((s, s + lens[i], &i)));
    }

    // Down to 100 entries: the height must follow the current size.
    let (gone, kept) = kept.split_at(kept.len() - 100);
    for &i in gone {
        assert!(t.remove(4 * i as u64).is_some());
    }
    t.check_invariants();
    assert!(t.height() <= height_bound(100) && height_bound(100) < full_height);

    let mut rest: Vec<usize> = kept.to_vec();
    rest.sort_unstable();
    let want: Vec<_> = rest
        .iter()
        .map(|&i| (4 * i as u64, 4 * i as u64 + lens[i], i))
        .collect();
    assert_eq!(t.drain(), want);
    assert!(t.is_empty());
    t.check_invariants();
}

// ---------------------------------------------------------------------------
// Model-based property test
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Insert(u64, u64),
    /// Up to `count` insertions `[s, s + len)` from `start` on, `step`
    /// apart, ascending or descending (stopping at either end of u64).
    Run {
        start: u64,
        count: usize,
        step: u64,
        len: u64,
        descending: bool,
    },
    Remove(u64),
    /// Removes up to `count` entries in order, from the first start at or
    /// after `start` upwards, or from the last start at or before it down.
    RemoveRun {
        start: u64,
        count: usize,
        descending: bool,
    },
    SetEnd(u64, u64),
    /// Moves the entry at the first key to the range of the other two.
    Relocate(u64, u64, u64),
    GrowAdjacent(u64, u64),
    /// Cuts the entry at the first key at the second.
    SplitEntry(u64, u64),
    /// Joins the entry after the one at the key to it.
    JoinNext(u64),
    /// Cuts the entry at the key at two points (start + a, start + a + b).
    SplitEntryTwice(u64, u64, u64),
    /// Joins the two entries after the one at the key to it.
    JoinNextTwo(u64),
    /// The entry at or before the key with its neighbours.
    Around(u64),
    Find(u64),
    FindHinted(u64),
    Get(u64),
    GetMut(u64),
    Overlaps(u64, u64, Option<u64>),
    Iter,
    Drain,
}

/// Keys that collide often: a small range, a wider one, and the top of u64.
fn key() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..64,
        4 => 0u64..1200,
        2 => (0u64..40).prop_map(|k| MAX - k),
    ]
}

/// An end for `start`: mostly a short length, sometimes any key.
fn end_for() -> impl Strategy<Value = (u64, u64)> {
    prop_oneof![
        4 => (key(), 1u64..6).prop_map(|(s, l)| (s, s.saturating_add(l))),
        1 => (key(), key()),
    ]
}

/// A run of sequential insertions: mostly dense (touching or nearly), so
/// that it fills nodes and spills and splits at node ends.
fn run() -> impl Strategy<Value = Op> {
    (key(), 1usize..80, 1u64..4, any::<bool>()).prop_flat_map(|(start, count, step, descending)| {
        (1..=step).prop_map(move |len| Op::Run {
            start,
            count,
            step,
            len,
            descending,
        })
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => end_for().prop_map(|(s, e)| Op::Insert(s, e)),
        4 => run(),
        18 => key().prop_map(Op::Remove),
        3 => (key(), 1usize..80, any::<bool>())
            .prop_map(|(start, count, descending)| Op::RemoveRun { start, count, descending }),
        10 => end_for().prop_map(|(s, e)| Op::SetEnd(s, e)),
        10 => (key(), end_for()).prop_map(|(s, (ns, ne))| Op::Relocate(s, ns, ne)),
        10 => end_for().prop_map(|(s, e)| Op::GrowAdjacent(s, e)),
        8 => (key(), 1u64..6).prop_map(|(s, d)| Op::SplitEntry(s, s.saturating_add(d))),
        8 => key().prop_map(Op::JoinNext),
        6 => (key(), 1u64..4, 1u64..4).prop_map(|(s, a, b)| Op::SplitEntryTwice(s, a, b)),
        6 => key().prop_map(Op::JoinNextTwo),
        6 => key().prop_map(Op::Around),
        10 => key().prop_map(Op::Find),
        10 => key().prop_map(Op::FindHinted),
        4 => key().prop_map(Op::Get),
        3 => key().prop_map(Op::GetMut),
        12 => (end_for(), prop::option::of(key())).prop_map(|((s, e), i)| Op::Overlaps(s, e, i)),
        2 => Just(Op::Iter),
        1 => Just(Op::Drain),
    ]
}

/// The reference: start -> (end, value), with brute-force overlap logic.
type Model = BTreeMap<u64, (u64, u32)>;

fn model_overlaps(m: &Model, start: u64, end: u64, ignore: Option<u64>) -> bool {
    start < end
        && m.iter()
            .any(|(&s, &(e, _))| Some(s) != ignore && s < end && start < e)
}

fn model_find(m: &Model, n: u64) -> Option<(u64, u64, u32)> {
    m.iter()
        .find(|(&s, &(e, _))| s <= n && n < e)
        .map(|(&s, &(e, v))| (s, e, v))
}

fn config() -> ProptestConfig {
    // Fixed seed unless PROPTEST_RNG_SEED picks one; cases from
    // ASPACE_PROPTEST_CASES; no regression files written into the repo.
    let mut cfg = ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    if cfg.rng_seed == RngSeed::Random {
        cfg.rng_seed = RngSeed::Fixed(0x0a5a_ce00_7ee0);
    }
    cfg.cases = std::env::var("ASPACE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(miri) { 4 } else { 128 });
    cfg
}

proptest! {
    #![proptest_config(config())]

    // Hundreds of operations a case, each checked against the model: too
    // slow to interpret; Miri runs the deterministic tests above instead.
    #[test]
    #[cfg_attr(miri, ignore)]
    fn area_tree_matches_btreemap_model(
        prefill in prop::collection::vec((0u64..1200, 1u64..4), 0..400),
        seq_prefill in prop::option::of((0usize..600, 1u64..3, any::<bool>())),
        ops in prop::collection::vec(op(), 1..500),
    ) {
        let mut t: AreaTree<u32> = AreaTree::new();
        let mut m = Model::new();
        let hint = Hint::new();
        let mut next_val = 0u32;

        // A prefill makes deeper trees (height 3 needs 144 entries); a
        // sequential one first makes full nodes, which the random one and
        // the operations then split, spill, even out and merge.
        let seq = seq_prefill.map_or_else(Vec::new, |(n, step, descending)| {
            (0..n as u64)
                .map(|j| (if descending { n as u64 - 1 - j } else { j } * step, step))
                .collect()
        });
        for &(s, l) in seq.iter().chain(&prefill) {
            let e = s + l;
            let ok = !model_overlaps(&m, s, e, None);
            prop_assert_eq!(t.insert(s, e, next_val).is_ok(), ok);
            if ok {
                m.insert(s, (e, next_val));
            }
            next_val += 1;
            t.check_invariants();
        }
        t.check_invariants();

        for (step, op) in ops.iter().enumerate() {
            match *op {
                Op::Insert(s, e) => {
                    let ok = s < e && !model_overlaps(&m, s, e, None);
                    let got = t.insert(s, e, next_val);
                    prop_assert_eq!(got, if ok { Ok(()) } else { Err(next_val) }, "step {}: {:?}", step, op);
                    if ok {
                        m.insert(s, (e, next_val));
                    }
                    next_val += 1;
                    t.check_invariants();
                }
                Op::Run { start, count, step: gap, len, descending } => {
                    for j in 0..count as u64 {
                        let s = if descending {
                            start.checked_sub(j * gap)
                        } else {
                            start.checked_add(j * gap)
                        };
                        let Some((s, e)) = s.and_then(|s| Some((s, s.checked_add(len)?))) else {
                            break;
                        };
                        let ok = !model_overlaps(&m, s, e, None);
                        let got = t.insert(s, e, next_val);
                        prop_assert_eq!(got, if ok { Ok(()) } else { Err(next_val) }, "step {}: {:?}, #{}", step, op, j);
                        if ok {
                            m.insert(s, (e, next_val));
                        }
                        next_val += 1;
                        t.check_invariants();
                    }
                }
                Op::Remove(s) => {
                    prop_assert_eq!(t.remove(s), m.remove(&s), "step {}: {:?}", step, op);
                    t.check_invariants();
                }
                Op::RemoveRun { start, count, descending } => {
                    let starts: Vec<u64> = if descending {
                        m.range(..=start).rev().take(count).map(|(&s, _)| s).collect()
                    } else {
                        m.range(start..).take(count).map(|(&s, _)| s).collect()
                    };
                    for s in starts {
                        prop_assert_eq!(t.remove(s), m.remove(&s), "step {}: {:?}, start {}", step, op, s);
                        t.check_invariants();
                    }
                }
                Op::SetEnd(s, e) => {
                    let ok = m.contains_key(&s) && s < e && !model_overlaps(&m, s, e, Some(s));
                    prop_assert_eq!(t.set_end(s, e), ok, "step {}: {:?}", step, op);
                    if ok {
                        m.get_mut(&s).unwrap().0 = e;
                    }
                    t.check_invariants();
                }
                Op::Relocate(s, ns, ne) => {
                    // Refused where the model refuses; where it allows, done
                    // in place or (another leaf) declined, the caller then
                    // removing and inserting; in the only leaf never declined.
                    let ok = m.contains_key(&s) && ns < ne && !model_overlaps(&m, ns, ne, Some(s));
                    let one_leaf = t.height() == 1;
                    let got = t.relocate(s, ns, ne, 0);
                    prop_assert!(!got || ok, "step {}: {:?} moved where it must not", step, op);
                    prop_assert!(got || !ok || !one_leaf, "step {}: {:?} declined in the only leaf", step, op);
                    if ok {
                        if !got {
                            let (_, v) = t.remove(s).unwrap();
                            prop_assert!(t.insert(ns, ne, v).is_ok(), "step {}: {:?}", step, op);
                        }
                        let (_, v) = m.remove(&s).unwrap();
                        m.insert(ns, (ne, v));
                    }
                    t.check_invariants();
                    let all: Vec<(u64, u64, u32)> = t.iter().map(|(s, e, &v)| (s, e, v)).collect();
                    let want: Vec<(u64, u64, u32)> = m.iter().map(|(&s, &(e, v))| (s, e, v)).collect();
                    prop_assert_eq!(all, want, "step {}: {:?}", step, op);
                }
                Op::GrowAdjacent(s, e) => {
                    // The entry ending at `s`, the one starting at `e`, and
                    // whether anything intersects `[s, e)`.
                    let left = m.range(..s).next_back().filter(|(_, &(end, _))| end == s).map(|(&k, _)| k);
                    let right = m.get(&e).map(|_| e);
                    let free = s < e && !model_overlaps(&m, s, e, None);
                    let extend = free && left.is_some() && right.is_none();
                    let prepend = free && left.is_none() && right.is_some();
                    let around = (
                        m.range(..=s).next_back().map(|(&k, &(end, _))| (k, end)),
                        m.range((std::ops::Bound::Excluded(s), std::ops::Bound::Unbounded))
                            .next()
                            .map(|(&k, &(end, _))| (k, end)),
                    );
                    let res = t.grow_adjacent(s, e);
                    if let Err(got) = res {
                        prop_assert_eq!(got, around, "step {}: {:?}: neighbours", step, op);
                    }
                    let got = res.is_ok();
                    // Extending never declines; prepending may (the entry
                    // first in its leaf), and then nothing changed.
                    if extend {
                        prop_assert!(got, "step {}: {:?} declined an extension", step, op);
                        m.get_mut(&left.unwrap()).unwrap().0 = e;
                    } else if got {
                        prop_assert!(prepend, "step {}: {:?} grew where it must not", step, op);
                        let (end, v) = m.remove(&e).unwrap();
                        m.insert(s, (end, v));
                    }
                    t.check_invariants();
                    let all: Vec<(u64, u64, u32)> = t.iter().map(|(s, e, &v)| (s, e, v)).collect();
                    let want: Vec<(u64, u64, u32)> = m.iter().map(|(&s, &(e, v))| (s, e, v)).collect();
                    prop_assert_eq!(all, want, "step {}: {:?}", step, op);
                }
                Op::SplitEntry(s, at) => {
                    let ok = m.get(&s).is_some_and(|&(e, _)| s < at && at < e);
                    let got = t.split_entry(s, at, next_val).map(|lower| *lower);
                    let want = if ok { Ok(m[&s].1) } else { Err(next_val) };
                    prop_assert_eq!(got, want, "step {}: {:?}", step, op);
                    if ok {
                        let e = std::mem::replace(&mut m.get_mut(&s).unwrap().0, at);
                        m.insert(at, (e, next_val));
                    }
                    next_val += 1;
                    t.check_invariants();
                }
                Op::JoinNext(s) => {
                    let next = m.get(&s).and_then(|&(e, _)| m.get(&e).map(|&(end, v)| (e, end, v)));
                    let got = t.join_next(s).map(|(end, v, grown)| (end, v, *grown));
                    let want = next.map(|(_, end, v)| (end, v, m[&s].1));
                    prop_assert_eq!(got, want, "step {}: {:?}", step, op);
                    if let Some((e, end, _)) = next {
                        m.remove(&e);
                        m.get_mut(&s).unwrap().0 = end;
                    }
                    t.check_invariants();
                }
                Op::SplitEntryTwice(s, a, b) => {
                    let (lo, hi) = (s.saturating_add(a), s.saturating_add(a).saturating_add(b));
                    let ok = m.get(&s).is_some_and(|&(e, _)| s < lo && lo < hi && hi < e);
                    let vals = [next_val, next_val + 1];
                    let got = t.split_entry_twice(s, [lo, hi], vals).map(|lower| *lower);
                    let want = if ok { Ok(m[&s].1) } else { Err(vals) };
                    prop_assert_eq!(got, want, "step {}: {:?}", step, op);
                    if ok {
                        let e = std::mem::replace(&mut m.get_mut(&s).unwrap().0, lo);
                        m.insert(lo, (hi, vals[0]));
                        m.insert(hi, (e, vals[1]));
                    }
                    next_val += 2;
                    t.check_invariants();
                }
                Op::JoinNextTwo(s) => {
                    let first = m.get(&s).and_then(|&(e, _)| m.get(&e).map(|&(end, v)| (e, end, v)));
                    let second = first.and_then(|(_, e, _)| m.get(&e).map(|&(end, v)| (e, end, v)));
                    let got = t.join_next_two(s).map(|(end, vs, grown)| (end, vs, *grown));
                    let want = first.zip(second).map(|(f, g)| (g.1, [f.2, g.2], m[&s].1));
                    prop_assert_eq!(got, want, "step {}: {:?}", step, op);
                    if let (Some(f), Some(g)) = (first, second) {
                        m.remove(&f.0);
                        m.remove(&g.0);
                        m.get_mut(&s).unwrap().0 = g.1;
                    }
                    t.check_invariants();
                }
                Op::Around(n) => {
                    let entry = |(&s, &(e, v)): (&u64, &(u64, u32))| (s, e, v);
                    let at = m.range(..=n).next_back().map(entry);
                    let before = at.and_then(|(s, _, _)| m.range(..s).next_back().map(entry));
                    let after = m
                        .range((std::ops::Bound::Excluded(n), std::ops::Bound::Unbounded))
                        .next()
                        .map(entry);
                    let got = t.around(n).map(|e| e.map(|(s, e, &v)| (s, e, v)));
                    prop_assert_eq!(got, [before, at, after], "step {}: {:?}", step, op);
                }
                Op::Find(n) => {
                    let got = t.find(n).map(|(s, e, &v)| (s, e, v));
                    prop_assert_eq!(got, model_find(&m, n), "step {}: {:?}", step, op);
                }
                Op::FindHinted(n) => {
                    let got = t.find_hinted(n, &hint).map(|(s, e, &v)| (s, e, v));
                    prop_assert_eq!(got, model_find(&m, n), "step {}: {:?}", step, op);
                }
                Op::Get(s) => {
                    let got = t.get(s).map(|(e, &v)| (e, v));
                    prop_assert_eq!(got, m.get(&s).copied(), "step {}: {:?}", step, op);
                }
                Op::GetMut(s) => {
                    let got = t.get_mut(s).map(|(e, v)| {
                        *v += 1_000_000;
                        (e, *v)
                    });
                    let want = m.get_mut(&s).map(|(e, v)| {
                        *v += 1_000_000;
                        (*e, *v)
                    });
                    prop_assert_eq!(got, want, "step {}: {:?}", step, op);
                }
                Op::Overlaps(s, e, ignore) => {
                    prop_assert_eq!(
                        t.overlaps(s, e, ignore),
                        model_overlaps(&m, s, e, ignore),
                        "step {}: {:?}", step, op
                    );
                }
                Op::Iter => {
                    let got: Vec<_> = t.iter().map(|(s, e, &v)| (s, e, v)).collect();
                    let want: Vec<_> = m.iter().map(|(&s, &(e, v))| (s, e, v)).collect();
                    prop_assert_eq!(t.iter().len(), want.len());
                    prop_assert_eq!(got, want, "step {}", step);
                }
                Op::Drain => {
                    let want: Vec<_> = std::mem::take(&mut m)
                        .into_iter()
                        .map(|(s, (e, v))| (s, e, v))
                        .collect();
                    prop_assert_eq!(t.drain(), want, "step {}", step);
                    t.check_invariants();
                }
            }
            prop_assert_eq!(t.len(), m.len(), "step {}: {:?}", step, op);
        }
        // Finally every entry point and its neighbours agree.
        for (&s, &(e, v)) in &m {
            for n in [s.wrapping_sub(1), s, e - 1, e] {
                let got = t.find_hinted(n, &hint).map(|(s, e, &v)| (s, e, v));
                prop_assert_eq!(got, model_find(&m, n));
            }
            prop_assert_eq!(t.get(s), Some((e, &v)));
        }
    }
}

// -- Free gaps and guards -----------------------------------------------------

/// The gap-search model: entries `(start, end, guard)` in a sorted `Vec`,
/// every question answered by a linear scan.
#[derive(Default)]
struct GapModel(Vec<(u64, u64, u64)>);

impl GapModel {
    /// Whether `[lo, hi)` meets an entry or an entry's guard, other than
    /// the entry starting at `ignore`.
    fn hits(&self, lo: u64, hi: u64, ignore: Option<u64>) -> bool {
        self.0
            .iter()
            .any(|&(s, e, g)| Some(s) != ignore && s - g < hi && lo < e)
    }

    fn insert(&mut self, s: u64, e: u64, g: u64) -> bool {
        if s >= e || s < g || self.hits(s - g, e, None) {
            return false;
        }
        let i = self.0.partition_point(|&(x, _, _)| x < s);
        self.0.insert(i, (s, e, g));
        true
    }

    /// The free runs between entries (guards taken), lowest first.
    fn gaps(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut prev = 0;
        for &(s, e, g) in &self.0 {
            out.push((prev, s - g));
            prev = e;
        }
        out.push((prev, u64::MAX));
        out
    }

    fn lowest(&self, lo: u64, hi: u64, bound: u64, f: Fit) -> Option<u64> {
        self.gaps().into_iter().find_map(|(a, b)| {
            let (a, b) = (a.max(lo), b.min(hi));
            let least = (a + f.guard).max(bound);
            let base = least.div_ceil(f.align) * f.align;
            (base + f.size <= b).then_some(base)
        })
    }

    fn highest(&self, lo: u64, hi: u64, f: Fit) -> Option<u64> {
        self.gaps().into_iter().rev().find_map(|(a, b)| {
            let (a, b) = (a.max(lo), b.min(hi));
            let base = b.checked_sub(f.size)? / f.align * f.align;
            (base >= a + f.guard).then_some(base)
        })
    }

    /// Every base of `[lo, hi)` tried one by one: the definition itself.
    fn brute(&self, lo: u64, hi: u64, bound: u64, f: Fit) -> Vec<u64> {
        (lo..hi)
            .filter(|&b| {
                b >= bound
                    && b % f.align == 0
                    && b >= lo + f.guard
                    && b + f.size <= hi
                    && !self.hits(b - f.guard, b + f.size, None)
            })
            .collect()
    }
}

fn fit_of(rng: &mut Rng) -> Fit {
    Fit {
        size: 1 + rng.below(12) as u64,
        guard: rng.below(3).saturating_sub(1) as u64,
        align: 1 << rng.below(4),
    }
}

/// Random inserts (with and without guards), removals, moves of either end
/// and searches, on a tree with gaps and one without, against the linear
/// model; the invariant checker (summaries included) runs after every
/// change in small trees and often in larger ones.
#[test]
fn gap_search_matches_linear_model() {
    const SPACE: u64 = 6000;
    let seeds = [
        0x5eed_0001_u64,
        0x9a9_0ff5,
        0xdead_beef_cafe,
        0x1234_5678_9abc,
    ];
    // Miri interprets every step: one seed there.
    for seed in seeds.into_iter().take(if cfg!(miri) { 1 } else { 4 }) {
        let mut rng = Rng(seed);
        let mut gapped: AreaTree<u64> = AreaTree::with_gaps();
        let mut plain: AreaTree<u64> = AreaTree::new();
        let mut m = GapModel::default();
        for step in 0..sized(6000) {
            let ctx = format!("seed {seed:#x} step {step}");
            match rng.below(11) {
                0..=3 => {
                    let s = rng.below(SPACE as usize) as u64;
                    let e = s + 1 + rng.below(20) as u64;
                    let g = rng.below(2) as u8;
                    let ok = m.insert(s, e, u64::from(g));
                    assert_eq!(gapped.insert_guarded(s, e, g, s).is_ok(), ok, "{ctx}");
                    assert_eq!(plain.insert_guarded(s, e, g, s).is_ok(), ok, "{ctx}");
                }
                4 | 5 if !m.0.is_empty() => {
                    let (s, e, _) = m.0.remove(rng.below(m.0.len()));
                    assert_eq!(gapped.remove(s).map(|(e, _)| e), Some(e), "{ctx}");
                    assert_eq!(plain.remove(s).map(|(e, _)| e), Some(e), "{ctx}");
                }
                6 if !m.0.is_empty() => {
                    let i = rng.below(m.0.len());
                    let (s, e, g) = m.0[i];
                    let ne = (s + 1 + rng.below(30) as u64).min(e + 10);
                    let ok = !m.hits(s, ne, Some(s));
                    assert_eq!(gapped.set_end(s, ne), ok, "{ctx}: set_end {s} {ne}");
                    assert_eq!(plain.set_end(s, ne), ok, "{ctx}");
                    if ok {
                        m.0[i] = (s, ne, g);
                    }
                }
                8 if !m.0.is_empty() => {
                    // Anywhere, with another guard: in place when the entry
                    // stays in its leaf, else removed and inserted.
                    let i = rng.below(m.0.len());
                    let (s, _, _) = m.0[i];
                    let ns = rng.below(SPACE as usize) as u64;
                    let ne = ns + 1 + rng.below(20) as u64;
                    let g = rng.below(2) as u8;
                    let ok = ns >= u64::from(g) && !m.hits(ns - u64::from(g), ne, Some(s));
                    for t in [&mut gapped, &mut plain] {
                        let one_leaf = t.height() == 1;
                        let got = t.relocate(s, ns, ne, g);
                        assert!(!got || ok, "{ctx}: relocate {s} to {ns}..{ne} ({g})");
                        assert!(got || !ok || !one_leaf, "{ctx}: declined in the only leaf");
                        if ok && !got {
                            let (_, v) = t.remove(s).unwrap();
                            assert!(t.insert_guarded(ns, ne, g, v).is_ok(), "{ctx}");
                        }
                    }
                    if ok {
                        m.0.remove(i);
                        assert!(m.insert(ns, ne, u64::from(g)), "{ctx}");
                    }
                    gapped.check_invariants();
                    plain.check_invariants();
                }
                7 if !m.0.is_empty() => {
                    let i = rng.below(m.0.len());
                    let (s, e, g) = m.0[i];
                    let ns = (s + rng.below(4) as u64).saturating_sub(3).min(e - 1);
                    let ok = ns >= g && (ns >= s || !m.hits(ns - g, s, Some(s)));
                    assert_eq!(gapped.set_start(s, ns), ok, "{ctx}: set_start {s} {ns}");
                    assert_eq!(plain.set_start(s, ns), ok, "{ctx}");
                    if ok {
                        m.0[i] = (ns, e, g);
                    }
                }
                _ => {
                    let f = fit_of(&mut rng);
                    let lo = rng.below(SPACE as usize) as u64 / 2;
                    let hi = lo + rng.below(SPACE as usize) as u64 + 1;
                    let bound = lo + rng.below(200) as u64;
                    let want = m.lowest(lo, hi, bound, f);
                    assert_eq!(
                        gapped.lowest_fit(lo..hi, bound, f),
                        want,
                        "{ctx}: {f:?} {lo}..{hi} >= {bound}"
                    );
                    assert_eq!(plain.lowest_fit(lo..hi, bound, f), want, "{ctx}");
                    let want = m.highest(lo, hi, f);
                    assert_eq!(
                        gapped.highest_fit(lo..hi, f),
                        want,
                        "{ctx}: {f:?} {lo}..{hi}"
                    );
                    assert_eq!(plain.highest_fit(lo..hi, f), want, "{ctx}");
                    // The model against the definition, on a small window.
                    let small = lo..lo + 48;
                    let all = m.brute(small.start, small.end, bound, f);
                    assert_eq!(
                        m.lowest(small.start, small.end, bound, f),
                        all.first().copied(),
                        "{ctx}"
                    );
                    assert_eq!(
                        gapped.lowest_fit(small.clone(), bound, f),
                        all.first().copied(),
                        "{ctx}"
                    );
                    let all = m.brute(small.start, small.end, 0, f);
                    assert_eq!(gapped.highest_fit(small, f), all.last().copied(), "{ctx}");
                    // Overlap checks and guard lookups see guards.
                    let (a, b) = (lo, lo + 1 + rng.below(8) as u64);
                    assert_eq!(
                        gapped.overlaps(a, b, None),
                        m.hits(a, b, None),
                        "{ctx}: overlaps {a} {b}"
                    );
                    let owner =
                        m.0.iter()
                            .find(|&&(s, _, g)| s - g <= a && a < s)
                            .map(|&(s, e, _)| (s, e));
                    assert_eq!(
                        gapped.guarded_by(a).map(|(s, e, _)| (s, e)),
                        owner,
                        "{ctx}: guarded_by {a}"
                    );
                }
            }
            if m.0.len() < 200 || step % 97 == 0 {
                gapped.check_invariants();
                plain.check_invariants();
            }
            assert_eq!(gapped.len(), m.0.len(), "{ctx}");
        }
        gapped.check_invariants();
        let got: Vec<_> = gapped.iter().map(|(s, e, _)| (s, e)).collect();
        let want: Vec<_> = m.0.iter().map(|&(s, e, _)| (s, e)).collect();
        assert_eq!(got, want, "seed {seed:#x}: final entries");
    }
}

/// A large tree (several levels) filled in the orders placement makes:
/// every search equals the model's, and each lowest fit found, inserted,
/// keeps the summaries right; then removals open gaps that are found again.
#[test]
fn gap_search_in_deep_trees() {
    let seed = 0x0dd_ba11_u64;
    let mut rng = Rng(seed);
    let mut t: AreaTree<u64> = AreaTree::with_gaps();
    let mut m = GapModel::default();
    let n = sized(20_000);
    let (lo, hi) = (1, 1 << 40);
    for k in 0..n {
        let f = Fit {
            size: 1 + rng.below(4) as u64,
            guard: rng.below(2) as u64,
            align: 1,
        };
        let base = t.lowest_fit(lo..hi, 1, f).expect("room");
        assert_eq!(
            Some(base),
            m.lowest(lo, hi, 1, f),
            "seed {seed:#x}: insert #{k}"
        );
        t.insert_guarded(base, base + f.size, f.guard as u8, base)
            .unwrap();
        assert!(m.insert(base, base + f.size, f.guard));
    }
    t.check_invariants();
    // Three levels at full size (Miri's smaller run makes two).
    assert!(
        t.height() >= if cfg!(miri) { 2 } else { 3 },
        "deep enough: {}",
        t.height()
    );
    // Open random holes and find them, bottom-up and top-down.
    for k in 0..sized(2000) {
        let i = rng.below(m.0.len());
        let (s, e, _) = m.0.remove(i);
        assert_eq!(t.remove(s), Some((e, s)));
        let f = fit_of(&mut rng);
        let bound = rng.below(n as usize * 3) as u64;
        assert_eq!(
            t.lowest_fit(lo..hi, bound, f),
            m.lowest(lo, hi, bound, f),
            "seed {seed:#x}: #{k}"
        );
        let ceiling = 1 + rng.below(n as usize * 4) as u64;
        assert_eq!(
            t.highest_fit(lo..ceiling, f),
            m.highest(lo, ceiling, f),
            "seed {seed:#x}: #{k}"
        );
    }
    t.check_invariants();
}

#[test]
fn guards_refuse_neighbours_and_name_their_entry() {
    let mut t: AreaTree<&str> = AreaTree::with_gaps();
    t.insert_guarded(10, 20, 1, "stack").unwrap();
    // Nothing may take page 9, the guard; an entry ending at 9 fits.
    assert_eq!(t.insert(5, 10, "x"), Err("x"));
    t.insert(5, 9, "below").unwrap();
    assert_eq!(t.find(9), None);
    assert_eq!(
        t.guarded_by(9).map(|(s, _, v)| (s, *v)),
        Some((10, "stack"))
    );
    assert_eq!(t.guarded_by(8), None);
    assert!(t.overlaps(9, 10, None));
    // The entry below cannot grow into the guard; the guarded one cannot
    // move its start (and guard) down onto the entry below.
    assert!(!t.set_end(5, 10));
    assert!(!t.set_start(10, 9));
    assert!(t.set_end(5, 8));
    assert!(t.set_start(10, 9));
    assert_eq!(t.guarded_by(8).map(|(s, _, _)| s), Some(9));
    assert_eq!(t.guard_of(9), Some(1));
    // A guard below page 0 is refused.
    assert_eq!(t.insert_guarded(0, 2, 1, "low"), Err("low"));
    t.check_invariants();
    // Lowest fit of 1 page with a guard: below 5 there is room (page 4,
    // guard 3); from 5 on, the first room is at 21 (guard 20), since the
    // guard may not sit on a taken page nor on another entry's guard.
    let f = Fit {
        size: 1,
        guard: 1,
        align: 1,
    };
    assert_eq!(t.lowest_fit(0..100, 0, f), Some(1));
    assert_eq!(t.lowest_fit(0..100, 4, f), Some(4));
    assert_eq!(t.lowest_fit(0..100, 5, f), Some(21));
    assert_eq!(t.highest_fit(0..100, f), Some(99));
    assert_eq!(t.highest_fit(0..22, f), Some(21));
    assert_eq!(
        t.lowest_fit(
            0..100,
            0,
            Fit {
                size: 0,
                guard: 0,
                align: 1
            }
        ),
        None
    );
    assert_eq!(
        t.lowest_fit(
            0..100,
            0,
            Fit {
                size: 1,
                guard: 0,
                align: 3
            }
        ),
        None
    );
}

#[test]
fn remove_if_takes_out_only_what_it_is_told() {
    let mut t = tree(&[(10, 20), (20, 25), (30, 40)]);
    // Refused: the entry stays, nothing else changes.
    assert_eq!(t.remove_if(20, |end, _| end == 30), None);
    assert_eq!(t.get(20).map(|(e, _)| e), Some(25));
    // No entry starting there: the predicate is not asked.
    assert_eq!(t.remove_if(21, |_, _| panic!("asked")), None);
    // Taken: the predicate sees the end and the value.
    let mut seen = None;
    let v20 = *t.get(20).unwrap().1;
    assert_eq!(
        t.remove_if(20, |end, v| {
            seen = Some((end, *v));
            true
        }),
        Some((25, v20))
    );
    assert_eq!(seen, Some((25, v20)));
    assert_eq!(t.len(), 2);
    assert_eq!(t.find(22), None);
    t.check_invariants();
    // The last one out empties the tree, and a new first entry reuses it.
    assert!(t.remove_if(10, |_, _| true).is_some());
    assert!(t.remove_if(30, |_, _| true).is_some());
    assert!(t.is_empty());
    t.check_invariants();
    assert!(t.insert(50, 60, 7).is_ok());
    assert_eq!(t.find(55), Some((50, 60, &7)));
    assert_eq!(t.node_counts(), (1, 0));
    t.check_invariants();
}
