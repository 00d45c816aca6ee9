//! [`AreaTree`]: a B+tree interval map from disjoint half-open page ranges
//! `[start, end)` to values, built for fast point lookups ("which area holds
//! page `n`?"). It is not a `BTreeMap` because its nodes can be reserved
//! ahead ([`AreaTree::reserve`]), so recording a page in an area's used
//! space during a page fault never allocates.
//!
//! # Layout
//!
//! Every entry lives in a *leaf*; *inner* nodes only route the search. Both
//! kinds sit in arenas (`Vec<Leaf<V>>`, `Vec<Inner>`) and refer to each other
//! by `u32` index, so there is no `Box` per node, no `unsafe`, and freed nodes
//! go on a free list to be reused. The free lists are threaded through the
//! freed nodes themselves (a leaf's `next`, an inner node's first child
//! slot), so freeing a node never allocates, and a new node comes from the
//! free list before the arena grows. The arenas are plain `Vec`s and grow by
//! doubling, so allocating a node is amortised O(1); once they are as large
//! as the tree has ever needed (or [`AreaTree::reserve`] made them), changes
//! allocate nothing.
//!
//! * A leaf holds up to [`CAP`] entries in three parallel fixed-size arrays,
//!   `starts`, `ends` and `values`, sorted by start, plus its length and the
//!   index of the next leaf (for in-order iteration). Unused `starts` slots
//!   hold `u64::MAX`.
//! * An inner node holds up to `CAP` separator keys (unused ones `u64::MAX`)
//!   and one more child index than keys. Separators are *exact*: key `i` is
//!   the smallest start stored under child `i + 1`, so all starts under
//!   child `i` lie in `[key[i - 1], key[i])`.
//!
//! Searching a node counts the keys `<= n` without branches and without
//! reading the node's length. In a leaf, binary steps (conditional moves)
//! over the whole fixed array narrow it to four keys, which are counted; in
//! an inner node, the last keys of the first three quarters are compared at
//! once to pick a quarter, whose keys are counted (one round of dependent
//! loads fewer, which pays where the keys are not in the cache). The padding
//! keeps the padded array sorted, so the steps need no length; a real start
//! is at most `u64::MAX - 1` (because `start < end <= u64::MAX`), so padding
//! only counts for `n == u64::MAX`, and the count is clamped to the length
//! anyway, which costs one more conditional move.
//! (Why not a plain count over the whole array: BENCHMARKS.md, "Area tree
//! design choices".)
//!
//! Because separators are exact, the leaf reached by descending with a key
//! `k` always holds the entry with the greatest start `<= k` if any entry
//! has such a start: the separator just left of the route (`key[c - 1]` at
//! the lowest level where the descent took a child `c > 0`) is `<= k` and is
//! the first start of the leaf reached; if there is none, that leaf is the
//! first one. So a lookup, the overlap check of an insertion and
//! [`overlaps`](AreaTree::overlaps) each take one descent. The separator
//! just right of the route is the first start after the leaf, which is all
//! an insertion or [`set_end`](AreaTree::set_end) needs to check the right
//! neighbour of an entry that is last in its leaf.
//!
//! # Fill and height
//!
//! Every leaf but the root holds at least `CAP / 2` entries, every inner
//! node but the root at least `CAP / 2` keys (`CAP / 2 + 1` children), and
//! an inner root at least one key. So a tree of height `h >= 2` holds at
//! least `2 * (CAP / 2) * (CAP / 2 + 1)^(h - 2)` entries, and the height is
//! at most `2 + floor(log_(CAP / 2 + 1)(len / CAP))` for `len >= CAP`, at
//! most 1 for smaller non-empty trees, and 0 for the empty tree: for
//! `CAP = 16`, `2 + floor(log_9(len / 16))`, e.g. 5 for 100 000 entries and
//! 7 for a million. [`AreaTree::max_height`] computes that bound; it holds
//! at all times, after removals too.
//!
//! Insertion into a full node (a leaf, or an inner node taking the new half
//! of a split child) first *spills* into a sibling under the same parent:
//! the items before the insertion point can move to the end of the left
//! sibling, those after it to the front of the right one (the side with
//! more of them is tried first), and the separator between the two
//! follows. An insertion at an end of the node fills the sibling; one in
//! the middle moves half the sibling's room, so that random insertions do
//! not fill it up at once. Only if neither sibling has room does the node
//! split, at a point chosen from the insertion position: at the right end
//! (position `len`) the left part keeps as many items as the minimum of the
//! right part allows and the new item starts the right part; at the left
//! end (position 0) the other way round; elsewhere the node splits in the
//! middle. Address spaces mostly create areas in ascending or descending
//! order, often into a gap between older ones, and then every node a run
//! passes is topped up before the next split: ascending or descending
//! insertion of `len` entries into an empty tree leaves exactly
//! `ceil(len / CAP)` leaves, all full but the last one or two, and inner
//! levels just as dense (a plain middle split leaves every node half
//! full); random insertion ends fuller too (figures and the case against a
//! lower minimum: BENCHMARKS.md, "Area tree design choices"). The search
//! within a node, the descent and the hint are unaffected.
//!
//! Removal refills a node that fell below the minimum from a sibling (the
//! left one if it has one): if the two together have enough for both to
//! reach the minimum they are evened out (through the parent, for inner
//! nodes), else they are merged, and the parent lost a key, which may
//! propagate up; the root is replaced by its only child when it is left
//! with one.
//!
//! # The lookup hint
//!
//! A [`Hint`] remembers the leaf of the last lookup. [`AreaTree::find_hinted`]
//! first checks that leaf *by its content*: if the index names a leaf with at
//! least one entry and `starts[0] <= n < ends[len - 1]`, the answer (or its
//! absence) is in that leaf. Proof: the entries are sorted and disjoint
//! across all leaves in order, so an entry in an earlier leaf ends at or
//! before `starts[0] <= n`, and an entry in a later leaf starts at or after
//! `ends[len - 1] > n`; neither can contain `n`. A freed leaf has length 0,
//! and a reused one holds current entries of this tree, so a stale hint, or
//! one from another tree, only costs a failed check. On a miss the search
//! descends from the root and records the leaf it reached, writing the hint
//! only if it changed. A sweep through neighbouring areas mostly stays in
//! one leaf and so skips the descent. A tree of a single leaf ignores the
//! hint, since its one-step descent is cheaper than the check.
//!
//! ```
//! use aspace::area_tree::{AreaTree, Hint};
//!
//! let mut tree = AreaTree::new();
//! tree.insert(0x400, 0x410, "text").unwrap();
//! tree.insert(0x410, 0x420, "data").unwrap();
//! assert_eq!(tree.insert(0x41f, 0x430, "bss"), Err("bss")); // overlaps "data"
//! assert_eq!(tree.find(0x40f), Some((0x400, 0x410, &"text")));
//! assert_eq!(tree.find(0x420), None);
//!
//! let hint = Hint::new();
//! assert_eq!(tree.find_hinted(0x412, &hint), Some((0x410, 0x420, &"data")));
//! assert!(tree.set_end(0x410, 0x500));
//! assert_eq!(tree.remove(0x400), Some((0x410, "text")));
//! assert_eq!(tree.iter().collect::<Vec<_>>(), [(0x410, 0x500, &"data")]);
//! ```

use alloc::vec::Vec;
use core::fmt;
use core::iter::FusedIterator;
use core::sync::atomic::{AtomicU32, Ordering::Relaxed};

/// Entries per leaf and separator keys per inner node (an inner node has up
/// to `CAP + 1` children). 16 rather than 32: half the node size and the
/// work of shifting entries, at lookup speed within noise (BENCHMARKS.md).
pub const CAP: usize = 16;

/// The least number of entries in a leaf other than the root.
const MIN_LEAF: usize = CAP / 2;

/// The least number of keys in an inner node other than the root (it has
/// one more child).
const MIN_KEYS: usize = CAP / 2;

/// Padding of unused `starts` and separator slots: greater than any start.
const PAD: u64 = u64::MAX;

/// "No node": the end of the leaf chain, unused child slots, an empty hint.
const NIL: u32 = u32::MAX;

/// The most inner levels a tree can have. With `u32` node indices a tree has
/// fewer than 2^32 leaves, and height `h` needs at least
/// `2 * (MIN_KEYS + 1)^(h - 2)` of them, so `h - 1 <= 10` for `CAP = 16`;
/// the path arrays leave room to spare.
const MAX_INNER_LEVELS: usize = 24;

// `rank` halves CAP down to a run of 4; a merge of an underfull node with a
// sibling at the minimum fits in one node; a non-root leaf keeps an entry
// after a removal.
const _: () = assert!(CAP.is_power_of_two() && CAP >= 8);
const _: () = assert!(2 * MIN_LEAF <= CAP + 1 && 2 * MIN_KEYS <= CAP && MIN_LEAF >= 2);

/// How many of `keys` (sorted, padded with `u64::MAX`) are `<= n`, without
/// branches: binary steps over the whole fixed array narrow it to a run of
/// four keys (every key before the run is `<= n`, every key after it
/// `> n`), which are counted. For `CAP = 16` that is two conditional moves
/// and four compare-and-adds, with no bounds checks left. The caller clamps
/// the result to the node's length. Used for leaves (see
/// [`rank_by_quarters`] for inner nodes).
#[inline(always)]
fn rank(keys: &[u64; CAP], n: u64) -> usize {
    let mut base = 0;
    let mut size = CAP;
    while size > 4 {
        let half = size / 2;
        if keys[base + half - 1] <= n {
            base += half;
        }
        size -= half;
    }
    base + count_le(&keys[base..base + 4], n)
}

/// The same count as [`rank`], with fewer loads that wait for one another:
/// the last keys of the first three quarters are compared at once, which
/// picks the quarter, and its keys are counted. Two dependent rounds of
/// loads instead of three. Used for inner nodes, whose keys are the ones a
/// lookup in a large tree is most likely to miss in the cache; leaves
/// (mostly in the cache) keep [`rank`], which measured faster for them
/// (BENCHMARKS.md).
#[inline(always)]
fn rank_by_quarters(keys: &[u64; CAP], n: u64) -> usize {
    const Q: usize = CAP / 4;
    let quarter = usize::from(keys[Q - 1] <= n)
        + usize::from(keys[2 * Q - 1] <= n)
        + usize::from(keys[3 * Q - 1] <= n);
    let base = quarter * Q;
    base + count_le(&keys[base..base + Q], n)
}

/// How many of `keys` are `<= n` (compare-and-adds, no branches).
#[inline(always)]
fn count_le(keys: &[u64], n: u64) -> usize {
    keys.iter().map(|&k| usize::from(k <= n)).sum()
}

/// Where a full node spills instead of splitting: a number of its items to
/// one of its siblings.
enum Spill {
    /// The first `k` items to the end of the left sibling.
    Left(usize),
    /// The last `k` items to the front of the right sibling.
    Right(usize),
}

/// Where a full node (`CAP` entries, or `CAP` keys) overflowing at
/// position `i` spills, if it can: the items before `i` may go to the left
/// sibling (if `c`, the node's slot in its parent of `nkeys` keys, is not
/// the first), those from `i` on to the right one. The side with more of
/// them is tried first, and the other if that sibling is full, so that
/// mostly one sibling is read (`room(j)` reads the free space of the
/// parent's child `j`). An insertion at an end of the node, as in a run of
/// ascending or descending insertions, fills the sibling, which the run
/// has left behind; one in the middle moves half of the sibling's room
/// (rounded up), so that random insertions do not fill it at once.
#[inline]
fn spill(i: usize, c: usize, nkeys: usize, room: impl Fn(usize) -> usize) -> Option<Spill> {
    let amount = |free: usize, movable: usize| {
        if i == 0 || i == CAP {
            free.min(movable)
        } else {
            free.div_ceil(2).min(movable)
        }
    };
    let left = || if c > 0 { amount(room(c - 1), i) } else { 0 };
    let right = || {
        if c < nkeys {
            amount(room(c + 1), CAP - i)
        } else {
            0
        }
    };
    let (l, r) = if 2 * i >= CAP {
        match left() {
            0 => (0, right()),
            k => (k, 0),
        }
    } else {
        match right() {
            0 => (left(), 0),
            k => (0, k),
        }
    };
    match (l, r) {
        (0, 0) => None,
        (0, k) => Some(Spill::Right(k)),
        (k, _) => Some(Spill::Left(k)),
    }
}

/// The split point of a full node overflowing at position `i`: `lo`, the
/// least the left part may keep, for an insertion at the left end, so that
/// the new item starts a short left part and the right part is as full as
/// allowed; `hi`, the most, at the right end; `mid` in between.
#[inline]
fn split_point(i: usize, lo: usize, mid: usize, hi: usize) -> usize {
    match i {
        0 => lo,
        CAP => hi,
        _ => mid,
    }
}

/// Mutable references to two distinct elements of a slice.
fn pair_mut<T>(v: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    assert_ne!(a, b, "pair_mut of one element");
    if a < b {
        let (lo, hi) = v.split_at_mut(b);
        (&mut lo[a], &mut hi[0])
    } else {
        let (lo, hi) = v.split_at_mut(a);
        (&mut hi[0], &mut lo[b])
    }
}

/// A leaf: up to `CAP` entries sorted by start.
#[derive(Clone)]
struct Leaf<V> {
    /// Starts of the entries; `PAD` from `len` on.
    starts: [u64; CAP],
    /// Ends of the entries; 0 from `len` on.
    ends: [u64; CAP],
    /// Values of the entries; `None` from `len` on.
    values: [Option<V>; CAP],
    /// Number of entries; 0 for a freed leaf.
    len: u32,
    /// The next leaf in key order, or `NIL`.
    next: u32,
}

impl<V> Leaf<V> {
    fn new() -> Self {
        Leaf {
            starts: [PAD; CAP],
            ends: [0; CAP],
            values: [const { None }; CAP],
            len: 0,
            next: NIL,
        }
    }

    #[inline(always)]
    fn len(&self) -> usize {
        self.len as usize
    }

    /// Number of entries whose start is `<= n`.
    #[inline(always)]
    fn rank(&self, n: u64) -> usize {
        rank(&self.starts, n).min(self.len())
    }

    /// Position of the entry starting exactly at `start`.
    #[inline]
    fn position(&self, start: u64) -> Option<usize> {
        let i = self.rank(start);
        (i > 0 && self.starts[i - 1] == start).then(|| i - 1)
    }

    /// Entry `j` (which must be below the length) as `(start, end, &value)`.
    #[inline]
    fn entry(&self, j: usize) -> Option<(u64, u64, &V)> {
        Some((self.starts[j], self.ends[j], self.values[j].as_ref()?))
    }

    /// The entry of this leaf containing `n`.
    #[inline(always)]
    fn lookup(&self, n: u64) -> Option<(u64, u64, &V)> {
        let i = self.rank(n);
        if i == 0 {
            return None;
        }
        let j = i - 1;
        if n < self.ends[j] {
            Some((self.starts[j], self.ends[j], self.values[j].as_ref()?))
        } else {
            None
        }
    }

    /// Inserts an entry at position `i`; the leaf must not be full.
    fn insert_at(&mut self, i: usize, start: u64, end: u64, value: V) {
        let len = self.len();
        debug_assert!(len < CAP && i <= len);
        self.starts.copy_within(i..len, i + 1);
        self.ends.copy_within(i..len, i + 1);
        self.values[i..=len].rotate_right(1);
        self.starts[i] = start;
        self.ends[i] = end;
        self.values[i] = Some(value);
        self.len += 1;
    }

    /// Removes the entry at position `i`: `(start, end, value)`.
    fn remove_at(&mut self, i: usize) -> (u64, u64, V) {
        let len = self.len();
        debug_assert!(i < len);
        let (start, end) = (self.starts[i], self.ends[i]);
        let value = self.values[i]
            .take()
            .expect("area tree: live entry without a value");
        self.starts.copy_within(i + 1..len, i);
        self.ends.copy_within(i + 1..len, i);
        self.values[i..len].rotate_left(1);
        self.starts[len - 1] = PAD;
        self.ends[len - 1] = 0;
        self.len -= 1;
        (start, end, value)
    }

    /// Moves the entries from position `at` on into a new leaf, which takes
    /// this leaf's place in the chain's order (the caller links it).
    fn split_off(&mut self, at: usize) -> Leaf<V> {
        let len = self.len();
        let n = len - at;
        let mut right = Leaf::new();
        right.starts[..n].copy_from_slice(&self.starts[at..len]);
        right.ends[..n].copy_from_slice(&self.ends[at..len]);
        for (dst, src) in right.values.iter_mut().zip(&mut self.values[at..len]) {
            *dst = src.take();
        }
        self.starts[at..len].fill(PAD);
        self.ends[at..len].fill(0);
        right.len = n as u32;
        self.len = at as u32;
        right
    }

    /// Moves the first `k` entries of `right` (its right sibling: all its
    /// entries are greater) to the end of this leaf.
    fn take_front(&mut self, right: &mut Leaf<V>, k: usize) {
        let (len, rn) = (self.len(), right.len());
        debug_assert!(k <= rn && len + k <= CAP);
        self.starts[len..len + k].copy_from_slice(&right.starts[..k]);
        self.ends[len..len + k].copy_from_slice(&right.ends[..k]);
        for (dst, src) in self.values[len..].iter_mut().zip(&mut right.values[..k]) {
            *dst = src.take();
        }
        right.starts.copy_within(k..rn, 0);
        right.ends.copy_within(k..rn, 0);
        right.values[..rn].rotate_left(k);
        right.starts[rn - k..rn].fill(PAD);
        right.ends[rn - k..rn].fill(0);
        self.len += k as u32;
        right.len -= k as u32;
    }

    /// Moves the last `k` entries of this leaf to the front of `right` (its
    /// right sibling).
    fn move_tail_to(&mut self, right: &mut Leaf<V>, k: usize) {
        let (len, rn) = (self.len(), right.len());
        debug_assert!(k <= len && rn + k <= CAP);
        right.starts.copy_within(0..rn, k);
        right.ends.copy_within(0..rn, k);
        right.values[..rn + k].rotate_right(k);
        right.starts[..k].copy_from_slice(&self.starts[len - k..len]);
        right.ends[..k].copy_from_slice(&self.ends[len - k..len]);
        for (dst, src) in right.values[..k]
            .iter_mut()
            .zip(&mut self.values[len - k..len])
        {
            *dst = src.take();
        }
        self.starts[len - k..len].fill(PAD);
        self.ends[len - k..len].fill(0);
        self.len -= k as u32;
        right.len += k as u32;
    }
}

/// An inner node: `nkeys` separators and `nkeys + 1` children.
#[derive(Clone)]
struct Inner {
    /// Separators: `keys[i]` is the least start under `children[i + 1]`;
    /// `PAD` from `nkeys` on.
    keys: [u64; CAP],
    /// Child indices (leaves on the lowest inner level, inner nodes above);
    /// `NIL` from `nkeys + 1` on.
    children: [u32; CAP + 1],
    /// Number of keys; 0 for a freed node.
    nkeys: u32,
}

impl Inner {
    fn new() -> Self {
        Inner {
            keys: [PAD; CAP],
            children: [NIL; CAP + 1],
            nkeys: 0,
        }
    }

    #[inline(always)]
    fn nkeys(&self) -> usize {
        self.nkeys as usize
    }

    /// The slot of the child whose subtree holds the greatest start `<= n`.
    #[inline(always)]
    fn child_for(&self, n: u64) -> usize {
        rank_by_quarters(&self.keys, n).min(self.nkeys())
    }

    /// Inserts `key` at `keys[i]` and `child` at `children[i + 1]`; the node
    /// must not be full.
    fn insert_at(&mut self, i: usize, key: u64, child: u32) {
        let n = self.nkeys();
        debug_assert!(n < CAP && i <= n);
        self.keys.copy_within(i..n, i + 1);
        self.children.copy_within(i + 1..n + 1, i + 2);
        self.keys[i] = key;
        self.children[i + 1] = child;
        self.nkeys += 1;
    }

    /// Removes `keys[i]` and `children[i + 1]`.
    fn remove_at(&mut self, i: usize) {
        let n = self.nkeys();
        debug_assert!(i < n);
        self.keys.copy_within(i + 1..n, i);
        self.children.copy_within(i + 2..n + 1, i + 1);
        self.keys[n - 1] = PAD;
        self.children[n] = NIL;
        self.nkeys -= 1;
    }

    /// Inserts like [`insert_at`](Inner::insert_at) into a full node by
    /// splitting the `CAP + 1` keys: keeps the lower `m`, returns key `m`
    /// (to go up) and a new node with the upper `CAP - m`.
    fn insert_split(&mut self, i: usize, key: u64, child: u32, m: usize) -> (u64, Inner) {
        debug_assert!(self.nkeys() == CAP && (MIN_KEYS..=CAP - MIN_KEYS).contains(&m));
        let mut keys = [PAD; CAP + 1];
        let mut children = [NIL; CAP + 2];
        keys[..i].copy_from_slice(&self.keys[..i]);
        keys[i] = key;
        keys[i + 1..].copy_from_slice(&self.keys[i..]);
        children[..=i].copy_from_slice(&self.children[..=i]);
        children[i + 1] = child;
        children[i + 2..].copy_from_slice(&self.children[i + 1..]);

        let mut right = Inner::new();
        right.keys[..CAP - m].copy_from_slice(&keys[m + 1..]);
        right.children[..=CAP - m].copy_from_slice(&children[m + 1..]);
        right.nkeys = (CAP - m) as u32;
        self.keys = [PAD; CAP];
        self.keys[..m].copy_from_slice(&keys[..m]);
        self.children = [NIL; CAP + 1];
        self.children[..=m].copy_from_slice(&children[..=m]);
        self.nkeys = m as u32;
        (keys[m], right)
    }
}

/// Moves the first `k` children of `right` (and the keys between them) to
/// the end of its left sibling `left`, rotating through `sep`, the
/// separator between the two in their parent; returns the new separator.
fn inner_take_front(left: &mut Inner, right: &mut Inner, sep: u64, k: usize) -> u64 {
    let (ln, rn) = (left.nkeys(), right.nkeys());
    debug_assert!(k >= 1 && k <= rn && ln + k <= CAP);
    left.keys[ln] = sep;
    left.keys[ln + 1..ln + k].copy_from_slice(&right.keys[..k - 1]);
    left.children[ln + 1..ln + 1 + k].copy_from_slice(&right.children[..k]);
    left.nkeys += k as u32;
    let new_sep = right.keys[k - 1];
    right.keys.copy_within(k..rn, 0);
    right.children.copy_within(k..rn + 1, 0);
    right.keys[rn - k..rn].fill(PAD);
    right.children[rn + 1 - k..=rn].fill(NIL);
    right.nkeys -= k as u32;
    new_sep
}

/// Moves the last `k` children of `left` (and the keys between them) to
/// the front of its right sibling `right`, rotating through `sep` like
/// [`inner_take_front`]; returns the new separator.
fn inner_move_tail_to(left: &mut Inner, right: &mut Inner, sep: u64, k: usize) -> u64 {
    let (ln, rn) = (left.nkeys(), right.nkeys());
    debug_assert!(k >= 1 && k <= ln && rn + k <= CAP);
    right.keys.copy_within(0..rn, k);
    right.children.copy_within(0..rn + 1, k);
    right.keys[..k - 1].copy_from_slice(&left.keys[ln + 1 - k..ln]);
    right.keys[k - 1] = sep;
    right.children[..k].copy_from_slice(&left.children[ln + 1 - k..=ln]);
    right.nkeys += k as u32;
    let new_sep = left.keys[ln - k];
    left.keys[ln - k..ln].fill(PAD);
    left.children[ln + 1 - k..=ln].fill(NIL);
    left.nkeys -= k as u32;
    new_sep
}

/// The route of a descent: for each inner level from the root, the node and
/// the slot of the child taken.
struct Path {
    steps: [(u32, usize); MAX_INNER_LEVELS],
    len: usize,
}

impl Path {
    fn new() -> Self {
        Path {
            steps: [(NIL, 0); MAX_INNER_LEVELS],
            len: 0,
        }
    }
}

/// What [`AreaTree::descend_bounds`] found.
struct Bounds {
    /// The leaf reached.
    leaf: u32,
    /// `(inner node, key index)` of the separator equal to the leaf's first
    /// start, unless it is the first leaf.
    left_sep: Option<(u32, usize)>,
    /// The first start after the leaf, or `PAD`.
    next_start: u64,
}

/// An entry as the queries return it: `(start, end, &value)`.
pub type Entry<'a, V> = (u64, u64, &'a V);

/// A hint for [`AreaTree::find_hinted`]: the index of the leaf that answered
/// the last lookup, so that the next lookup nearby can skip the descent.
///
/// It is an atomic (read and written with relaxed ordering) so that lookups
/// under a shared lock can update it; any value is safe, since the tree
/// checks the leaf it names before trusting it.
#[derive(Debug)]
pub struct Hint(AtomicU32);

impl Hint {
    /// A hint naming no leaf.
    pub const fn new() -> Self {
        Hint(AtomicU32::new(NIL))
    }
}

impl Default for Hint {
    fn default() -> Self {
        Hint::new()
    }
}

/// A map from disjoint half-open ranges `[start, end)` of `u64` (page
/// numbers) to values, kept in a B+tree that answers "which entry contains
/// `n`?" with one descent through dense nodes, or none with a [`Hint`].
///
/// See the [module documentation](self) for the layout and its guarantees.
#[derive(Clone)]
pub struct AreaTree<V> {
    leaves: Vec<Leaf<V>>,
    inners: Vec<Inner>,
    /// The first freed leaf, or `NIL`; the list runs through the freed
    /// leaves' `next` fields, so freeing a leaf never allocates.
    free_leaves: u32,
    /// The first freed inner node, or `NIL`; the list runs through the
    /// freed nodes' `children[0]`.
    free_inners: u32,
    /// Leaves on the free list.
    free_leaf_count: usize,
    /// Inner nodes on the free list.
    free_inner_count: usize,
    /// The root node: a leaf if `height == 1`, an inner node if greater.
    root: u32,
    /// Levels of nodes; 0 for the empty tree (which has no nodes).
    height: usize,
    /// Number of entries.
    len: usize,
}

impl<V> Default for AreaTree<V> {
    fn default() -> Self {
        AreaTree::new()
    }
}

impl<V: fmt::Debug> fmt::Debug for AreaTree<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(start, end, v)| (start..end, v)))
            .finish()
    }
}

impl<V> AreaTree<V> {
    /// An empty tree; allocates nothing until the first insertion.
    pub const fn new() -> Self {
        AreaTree {
            leaves: Vec::new(),
            inners: Vec::new(),
            free_leaves: NIL,
            free_inners: NIL,
            free_leaf_count: 0,
            free_inner_count: 0,
            root: NIL,
            height: 0,
            len: 0,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the tree has no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Height of the tree: 0 when empty, 1 for a single leaf, one more per
    /// level of inner nodes. For tests and statistics.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Live nodes: `(leaves, inner nodes)`, not counting freed ones. For
    /// tests and statistics.
    #[doc(hidden)]
    pub fn node_counts(&self) -> (usize, usize) {
        (
            self.leaves.len() - self.free_leaf_count,
            self.inners.len() - self.free_inner_count,
        )
    }

    /// The greatest height a tree with `len` entries can have (see the
    /// [module documentation](self#fill-and-height)): a tree of height
    /// `h >= 2` holds at least `2 * (CAP / 2) * (CAP / 2 + 1)^(h - 2)`
    /// entries.
    pub fn max_height(len: usize) -> usize {
        if len == 0 {
            return 0;
        }
        let mut height = 1;
        // The fewest entries a tree of height `height + 1` holds.
        let mut needed = 2 * MIN_LEAF as u128;
        while needed <= len as u128 {
            height += 1;
            needed *= (MIN_KEYS + 1) as u128;
        }
        height
    }

    /// The most leaves and inner nodes a tree of `len` entries can have:
    /// every leaf but the root holds at least `MIN_LEAF` entries, and every
    /// inner node but the root has at least `MIN_KEYS + 1` children, so a
    /// level of `k > 1` nodes has at most `max(1, k / (MIN_KEYS + 1))`
    /// parents.
    fn max_nodes(len: usize) -> (usize, usize) {
        if len == 0 {
            return (0, 0);
        }
        let leaves = (len / MIN_LEAF).max(1);
        let (mut inners, mut level) = (0, leaves);
        while level > 1 {
            level = (level / (MIN_KEYS + 1)).max(1);
            inners += level;
        }
        (leaves, inners)
    }

    /// Makes room for `additional` more entries: afterwards no insertion
    /// allocates (nor does anything else but [`clone`](Clone::clone) and
    /// [`drain`](Self::drain)'s result) as long as the tree holds at most
    /// `len() + additional` entries, whatever removals come in between.
    ///
    /// Why that suffices: node fills bound the live nodes of a tree of
    /// `len` entries (at most `len / (CAP / 2)` leaves, and inner levels
    /// above them that shrink by a factor `CAP / 2 + 1`), an insertion
    /// allocates nodes only for the splits it makes (a leaf, an inner node
    /// per level, and a new root) and frees none, so the tree right after
    /// it obeys the bound, and a removal only frees. Freed nodes go on free
    /// lists threaded through the nodes themselves, and a new node is taken
    /// from there before the arena grows; so an arena whose capacity covers
    /// the bound for the largest size the tree reaches never grows.
    ///
    /// Reserving on an empty arena reserves exactly; otherwise the arenas
    /// grow as a `Vec` does, so that repeated small reservations stay
    /// amortised O(1).
    pub fn reserve(&mut self, additional: usize) {
        let (leaves, inners) = Self::max_nodes(self.len.saturating_add(additional));
        fn grow<T>(arena: &mut Vec<T>, capacity: usize) {
            if capacity <= arena.capacity() {
                return;
            }
            let more = capacity - arena.len();
            if arena.capacity() == 0 {
                arena.reserve_exact(more);
            } else {
                arena.reserve(more);
            }
        }
        grow(&mut self.leaves, leaves);
        grow(&mut self.inners, inners);
    }

    // -- Node allocation ----------------------------------------------------

    /// Stores `leaf` in a freed slot, or else at the end of the arena.
    fn alloc_leaf(&mut self, leaf: Leaf<V>) -> u32 {
        let i = self.free_leaves;
        if i != NIL {
            let slot = &mut self.leaves[i as usize];
            self.free_leaves = slot.next;
            self.free_leaf_count -= 1;
            *slot = leaf;
            i
        } else {
            let i = index(self.leaves.len());
            self.leaves.push(leaf);
            i
        }
    }

    /// Puts an emptied leaf on the free list (linked through its `next`).
    /// Its length is 0, so hints naming it fail validation.
    fn free_leaf(&mut self, i: u32) {
        let leaf = &mut self.leaves[i as usize];
        debug_assert!(leaf.len == 0 && leaf.values.iter().all(Option::is_none));
        leaf.len = 0;
        leaf.next = self.free_leaves;
        self.free_leaves = i;
        self.free_leaf_count += 1;
    }

    /// Stores `inner` in a freed slot, or else at the end of the arena.
    fn alloc_inner(&mut self, inner: Inner) -> u32 {
        let i = self.free_inners;
        if i != NIL {
            let slot = &mut self.inners[i as usize];
            self.free_inners = slot.children[0];
            self.free_inner_count -= 1;
            *slot = inner;
            i
        } else {
            let i = index(self.inners.len());
            self.inners.push(inner);
            i
        }
    }

    /// Clears an inner node and puts it on the free list (linked through
    /// its first child slot).
    fn free_inner(&mut self, i: u32) {
        let node = &mut self.inners[i as usize];
        *node = Inner::new();
        node.children[0] = self.free_inners;
        self.free_inners = i;
        self.free_inner_count += 1;
    }

    // -- Descents -----------------------------------------------------------

    /// The leaf whose entries include the greatest start `<= key`, if there
    /// is such an entry (the tree must not be empty).
    #[inline(always)]
    fn descend(&self, key: u64) -> u32 {
        let mut node = self.root;
        for _ in 1..self.height {
            let inner = &self.inners[node as usize];
            node = inner.children[inner.child_for(key)];
        }
        node
    }

    /// Like [`descend`](Self::descend), recording the route in `path`, and
    /// also returning the first start after the leaf reached (`u64::MAX` if
    /// it is the last leaf): the separator just right of the route, i.e.
    /// `keys[c]` at the lowest level where the child taken, `c`, was not the
    /// last.
    fn descend_path(&self, key: u64, path: &mut Path) -> (u32, u64) {
        let mut node = self.root;
        let mut next_start = PAD;
        path.len = 0;
        for _ in 1..self.height {
            let inner = &self.inners[node as usize];
            let c = inner.child_for(key);
            if c < inner.nkeys() {
                next_start = inner.keys[c];
            }
            path.steps[path.len] = (node, c);
            path.len += 1;
            node = inner.children[c];
        }
        (node, next_start)
    }

    /// Like [`descend`](Self::descend), also noting the separators on
    /// either side of the route, without recording it: where the one just
    /// left of it is (`keys[c - 1]` of the node at the lowest step with a
    /// child `c > 0`; it equals the first start of the leaf reached), and
    /// the value of the one just right of it, the first start after the
    /// leaf (as in [`descend_path`](Self::descend_path)).
    #[inline]
    fn descend_bounds(&self, key: u64) -> Bounds {
        let mut b = Bounds {
            leaf: self.root,
            left_sep: None,
            next_start: PAD,
        };
        for _ in 1..self.height {
            let inner = &self.inners[b.leaf as usize];
            let c = inner.child_for(key);
            if c > 0 {
                b.left_sep = Some((b.leaf, c - 1));
            }
            if c < inner.nkeys() {
                b.next_start = inner.keys[c];
            }
            b.leaf = inner.children[c];
        }
        b
    }

    /// `(start, end)` of the entry with the greatest start `<= key`.
    fn last_at_or_before(&self, key: u64) -> Option<(u64, u64)> {
        if self.height == 0 {
            return None;
        }
        let leaf = &self.leaves[self.descend(key) as usize];
        let i = leaf.rank(key);
        (i > 0).then(|| (leaf.starts[i - 1], leaf.ends[i - 1]))
    }

    // -- Queries ------------------------------------------------------------

    /// The entry containing point `n` (`start <= n < end`), as
    /// `(start, end, &value)`: one descent, no allocation.
    #[inline]
    pub fn find(&self, n: u64) -> Option<(u64, u64, &V)> {
        if self.height == 0 {
            return None;
        }
        self.leaves[self.descend(n) as usize].lookup(n)
    }

    /// The same result as [`find`](Self::find), but first tries the leaf
    /// recorded in `hint` and, if that does not cover `n`, descends and
    /// records the leaf it reached (a single-leaf tree skips the hint). See the [module documentation](self#the-lookup-hint)
    /// for why a hinted leaf that covers `n` gives the right answer.
    #[inline]
    pub fn find_hinted(&self, n: u64, hint: &Hint) -> Option<(u64, u64, &V)> {
        // With a single leaf (or none) its own search is cheaper than
        // checking the hint.
        if self.height <= 1 {
            return self.leaves.get(self.root as usize)?.lookup(n);
        }
        let h = hint.0.load(Relaxed);
        if let Some(leaf) = self.leaves.get(h as usize) {
            let len = leaf.len();
            // Valid: a live leaf spanning n (a freed leaf has len 0).
            if len > 0 && leaf.starts[0] <= n && n < leaf.ends[len - 1] {
                return leaf.lookup(n);
            }
        }
        let i = self.descend(n);
        if i != h {
            hint.0.store(i, Relaxed);
        }
        self.leaves[i as usize].lookup(n)
    }

    /// The entry starting exactly at `start`, as `(end, &value)`.
    pub fn get(&self, start: u64) -> Option<(u64, &V)> {
        if self.height == 0 {
            return None;
        }
        let leaf = &self.leaves[self.descend(start) as usize];
        let i = leaf.position(start)?;
        Some((leaf.ends[i], leaf.values[i].as_ref()?))
    }

    /// The entry starting exactly at `start`, as `(end, &mut value)`.
    pub fn get_mut(&mut self, start: u64) -> Option<(u64, &mut V)> {
        if self.height == 0 {
            return None;
        }
        let leaf = self.descend(start) as usize;
        let leaf = &mut self.leaves[leaf];
        let i = leaf.position(start)?;
        Some((leaf.ends[i], leaf.values[i].as_mut()?))
    }

    /// The entries around point `n`: the one with the greatest start
    /// `<= n` (the one containing `n`, if any does) and the one with the
    /// least start `> n`, each as `(start, end, &value)`. One descent: the
    /// second is the entry after the first in the leaf reached, or the
    /// first entry of the next leaf.
    pub fn neighbors(&self, n: u64) -> (Option<Entry<'_, V>>, Option<Entry<'_, V>>) {
        if self.height == 0 {
            return (None, None);
        }
        let leaf = &self.leaves[self.descend(n) as usize];
        let i = leaf.rank(n);
        let before = if i > 0 { leaf.entry(i - 1) } else { None };
        let after = if i < leaf.len() {
            leaf.entry(i)
        } else {
            // A live leaf's successor is live (or NIL, which is no index).
            self.leaves
                .get(leaf.next as usize)
                .and_then(|next| next.entry(0))
        };
        (before, after)
    }

    /// Whether `[start, end)` intersects any entry other than the one
    /// starting at `ignore` (if there is one). An empty range (`start >= end`)
    /// intersects nothing.
    ///
    /// Only the entry with the greatest start `< end` can intersect, since
    /// every earlier entry ends at or before that one's start; if that one
    /// is ignored, only the entry before it can. So this is one descent, two
    /// when the ignored entry is the first of its leaf.
    pub fn overlaps(&self, start: u64, end: u64, ignore: Option<u64>) -> bool {
        if start >= end || self.height == 0 {
            return false;
        }
        let leaf = &self.leaves[self.descend(end - 1) as usize];
        let i = leaf.rank(end - 1);
        if i == 0 {
            return false;
        }
        let (s, e) = (leaf.starts[i - 1], leaf.ends[i - 1]);
        if Some(s) != ignore {
            return e > start;
        }
        // The entry before the ignored one ends at or before `s`.
        if s <= start {
            return false;
        }
        let before = if i >= 2 {
            Some(leaf.ends[i - 2])
        } else {
            self.last_at_or_before(s - 1).map(|(_, e)| e)
        };
        before.is_some_and(|e| e > start)
    }

    /// The entries in ascending order, as `(start, end, &value)`.
    pub fn iter(&self) -> Iter<'_, V> {
        let mut leaf = if self.height == 0 { NIL } else { self.root };
        for _ in 1..self.height {
            leaf = self.inners[leaf as usize].children[0];
        }
        Iter {
            leaves: &self.leaves,
            leaf,
            pos: 0,
            remaining: self.len,
        }
    }

    // -- Changes ------------------------------------------------------------

    /// Inserts `[start, end) -> value`. Refuses, handing the value back, if
    /// the range is empty (`start >= end`) or intersects an entry.
    pub fn insert(&mut self, start: u64, end: u64, value: V) -> Result<(), V> {
        if start >= end {
            return Err(value);
        }
        if self.height == 0 {
            let mut leaf = Leaf::new();
            leaf.insert_at(0, start, end, value);
            self.root = self.alloc_leaf(leaf);
            self.height = 1;
            self.len = 1;
            return Ok(());
        }
        let mut path = Path::new();
        let (node, next_start) = self.descend_path(start, &mut path);
        let leaf = &mut self.leaves[node as usize];
        let i = leaf.rank(start);
        // The entry before: the greatest start <= `start` (also catches an
        // equal start, since its end is greater).
        if i > 0 && leaf.ends[i - 1] > start {
            return Err(value);
        }
        // The entry after: the least start > `start`.
        let after = if i < leaf.len() {
            leaf.starts[i]
        } else {
            next_start
        };
        if after < end {
            return Err(value);
        }
        self.len += 1;
        if leaf.len() < CAP {
            leaf.insert_at(i, start, end, value);
            return Ok(());
        }
        // A full leaf spills into a sibling if it can.
        if path.len > 0 {
            let (p, c) = path.steps[path.len - 1];
            let parent = &self.inners[p as usize];
            let room = |j: usize| CAP - self.leaves[parent.children[j] as usize].len();
            match spill(i, c, parent.nkeys(), room) {
                Some(Spill::Left(k)) => {
                    let l = parent.children[c - 1];
                    let (sib, leaf) = pair_mut(&mut self.leaves, l as usize, node as usize);
                    sib.take_front(leaf, k);
                    leaf.insert_at(i - k, start, end, value);
                    self.inners[p as usize].keys[c - 1] = leaf.starts[0];
                    return Ok(());
                }
                Some(Spill::Right(k)) => {
                    let r = parent.children[c + 1];
                    let (leaf, sib) = pair_mut(&mut self.leaves, node as usize, r as usize);
                    leaf.move_tail_to(sib, k);
                    leaf.insert_at(i, start, end, value);
                    self.inners[p as usize].keys[c] = sib.starts[0];
                    return Ok(());
                }
                None => {}
            }
        }

        // Split the full leaf: the left part gets `at` of the CAP + 1
        // entries, the right part the rest.
        let mid = if i <= CAP / 2 { CAP / 2 + 1 } else { CAP / 2 };
        let at = split_point(i, MIN_LEAF, mid, CAP + 1 - MIN_LEAF);
        let leaf = &mut self.leaves[node as usize];
        let mut right = if i < at {
            let right = leaf.split_off(at - 1);
            leaf.insert_at(i, start, end, value);
            right
        } else {
            let mut right = leaf.split_off(at);
            right.insert_at(i - at, start, end, value);
            right
        };
        right.next = leaf.next;
        let key = right.starts[0];
        let r = self.alloc_leaf(right);
        self.leaves[node as usize].next = r;
        self.insert_upward(&path, key, r);
        Ok(())
    }

    /// After the node at the end of `path` split, inserts the new right half
    /// `child` (whose least start is `key`) beside it in its parent. A full
    /// parent first tries to spill children into a sibling, like a full
    /// leaf, and else splits, and so on up to the root.
    fn insert_upward(&mut self, path: &Path, mut key: u64, mut child: u32) {
        for level in (0..path.len).rev() {
            let (p, i) = path.steps[level];
            let node = &mut self.inners[p as usize];
            if node.nkeys() < CAP {
                node.insert_at(i, key, child);
                return;
            }
            if level > 0 {
                let (pp, c) = path.steps[level - 1];
                let parent = &self.inners[pp as usize];
                let room = |j: usize| CAP - self.inners[parent.children[j] as usize].nkeys();
                // The new child goes to `children[i + 1]`: `i + 1` children
                // are before it, of which `i` may move left (the one just
                // before it stays), and `CAP - i` after it.
                match spill(i, c, parent.nkeys(), room) {
                    Some(Spill::Left(k)) => {
                        let (l, sep) = (parent.children[c - 1], parent.keys[c - 1]);
                        let (sib, node) = pair_mut(&mut self.inners, l as usize, p as usize);
                        let sep = inner_take_front(sib, node, sep, k);
                        node.insert_at(i - k, key, child);
                        self.inners[pp as usize].keys[c - 1] = sep;
                        return;
                    }
                    Some(Spill::Right(k)) => {
                        let (r, sep) = (parent.children[c + 1], parent.keys[c]);
                        let (node, sib) = pair_mut(&mut self.inners, p as usize, r as usize);
                        let sep = inner_move_tail_to(node, sib, sep, k);
                        node.insert_at(i, key, child);
                        self.inners[pp as usize].keys[c] = sep;
                        return;
                    }
                    None => {}
                }
            }
            let m = split_point(i, MIN_KEYS, CAP / 2, CAP - MIN_KEYS);
            let (up, right) = self.inners[p as usize].insert_split(i, key, child, m);
            key = up;
            child = self.alloc_inner(right);
        }
        assert!(
            self.height <= MAX_INNER_LEVELS,
            "area tree: height limit exceeded"
        );
        let mut root = Inner::new();
        root.keys[0] = key;
        root.children[0] = self.root;
        root.children[1] = child;
        root.nkeys = 1;
        self.root = self.alloc_inner(root);
        self.height += 1;
    }

    /// Removes the entry starting exactly at `start`, returning its end and
    /// value.
    pub fn remove(&mut self, start: u64) -> Option<(u64, V)> {
        if self.height == 0 {
            return None;
        }
        let mut path = Path::new();
        let (node, _) = self.descend_path(start, &mut path);
        let leaf = &mut self.leaves[node as usize];
        let pos = leaf.position(start)?;
        let (_, end, value) = leaf.remove_at(pos);
        let remaining = leaf.len();
        self.len -= 1;

        if self.height == 1 {
            if remaining == 0 {
                self.free_leaf(node);
                self.root = NIL;
                self.height = 0;
            }
            return Some((end, value));
        }
        // A non-root leaf had at least MIN_LEAF >= 2 entries, so it still
        // has one. If its first entry went, the separator naming it (the
        // lowest one on the route with a child to its left) must follow.
        if pos == 0 {
            let first = self.leaves[node as usize].starts[0];
            if let Some(&(p, c)) = path.steps[..path.len].iter().rev().find(|&&(_, c)| c > 0) {
                self.inners[p as usize].keys[c - 1] = first;
            }
        }
        if remaining < MIN_LEAF {
            self.rebalance(&path);
        }
        Some((end, value))
    }

    /// Restores the fill after the leaf at the end of `path` fell below
    /// `MIN_LEAF`, level by level up, and collapses a root left with one
    /// child.
    fn rebalance(&mut self, path: &Path) {
        let (p, c) = path.steps[path.len - 1];
        if !self.fix_leaf(p, c) {
            return;
        }
        // path.steps[level].0 lost a key.
        for level in (1..path.len).rev() {
            let node = path.steps[level].0;
            if self.inners[node as usize].nkeys() >= MIN_KEYS {
                return;
            }
            let (p, c) = path.steps[level - 1];
            if !self.fix_inner(p, c) {
                return;
            }
        }
        let root = self.root;
        if self.inners[root as usize].nkeys == 0 {
            self.root = self.inners[root as usize].children[0];
            self.free_inner(root);
            self.height -= 1;
        }
    }

    /// Refills the leaf `children[c]` of inner node `p` from a sibling (the
    /// left one if there is one): evens the two out if they hold enough
    /// entries for both to reach `MIN_LEAF`, else merges them (into fewer
    /// than `2 * MIN_LEAF <= CAP`). Returns whether `p` lost a key.
    fn fix_leaf(&mut self, p: u32, c: usize) -> bool {
        let slot = c.saturating_sub(1); // separator between the two siblings
        let parent = &self.inners[p as usize];
        let (l, r) = (parent.children[slot], parent.children[slot + 1]);
        let (left, right) = pair_mut(&mut self.leaves, l as usize, r as usize);
        let (ln, rn) = (left.len(), right.len());
        if ln + rn < 2 * MIN_LEAF {
            left.take_front(right, rn);
            left.next = right.next;
            self.free_leaf(r);
            self.inners[p as usize].remove_at(slot);
            return true;
        }
        // The underfull one is the smaller; it gets half (rounded down).
        let half = (ln + rn) / 2;
        if ln < rn {
            left.take_front(right, half - ln);
        } else {
            left.move_tail_to(right, half - rn);
        }
        self.inners[p as usize].keys[slot] = right.starts[0];
        false
    }

    /// Refills the inner node `children[c]` of inner node `p` like
    /// [`fix_leaf`](Self::fix_leaf): evens out the children of the two
    /// siblings, rotating them through the parent, if both can reach
    /// `MIN_KEYS` keys, else merges the two around their separator (into at
    /// most `2 * MIN_KEYS <= CAP` keys). Returns whether `p` lost a key.
    fn fix_inner(&mut self, p: u32, c: usize) -> bool {
        let slot = c.saturating_sub(1);
        let parent = &self.inners[p as usize];
        let (l, r) = (parent.children[slot], parent.children[slot + 1]);
        let sep = parent.keys[slot];
        let (left, right) = pair_mut(&mut self.inners, l as usize, r as usize);
        let (ln, rn) = (left.nkeys(), right.nkeys());
        if ln + rn < 2 * MIN_KEYS {
            left.keys[ln] = sep;
            left.keys[ln + 1..ln + 1 + rn].copy_from_slice(&right.keys[..rn]);
            left.children[ln + 1..ln + 2 + rn].copy_from_slice(&right.children[..=rn]);
            left.nkeys = (ln + 1 + rn) as u32;
            self.free_inner(r);
            self.inners[p as usize].remove_at(slot);
            return true;
        }
        // The underfull one is the smaller; it gets half the children.
        let half = (ln + rn + 2) / 2;
        let new_sep = if ln < rn {
            inner_take_front(left, right, sep, half - (ln + 1))
        } else {
            inner_move_tail_to(left, right, sep, half - (rn + 1))
        };
        self.inners[p as usize].keys[slot] = new_sep;
        false
    }

    /// Changes the end of the entry starting at `start` to `end`. Refuses
    /// (returns `false`, changing nothing) if there is no such entry, if
    /// `end <= start`, or if the new range would intersect the next entry.
    pub fn set_end(&mut self, start: u64, end: u64) -> bool {
        if end <= start || self.height == 0 {
            return false;
        }
        let b = self.descend_bounds(start);
        let leaf = &mut self.leaves[b.leaf as usize];
        let Some(i) = leaf.position(start) else {
            return false;
        };
        let after = if i + 1 < leaf.len() {
            leaf.starts[i + 1]
        } else {
            b.next_start
        };
        if after < end {
            return false;
        }
        leaf.ends[i] = end;
        true
    }

    /// Covers `[start, end)` by growing a neighbouring entry over it, in one
    /// descent and without touching the tree's shape, when that is all it
    /// takes (the used space's common case: a page next to pages already
    /// used). Returns `Ok(())` if it did:
    ///
    /// * the entry ending exactly at `start` now ends at `end`, if nothing
    ///   starts in `[start, end]`; or
    /// * the entry starting exactly at `end` now starts at `start`, if
    ///   nothing intersects `[start, end)` and that entry is not the first of
    ///   its leaf (whose start routes the search).
    ///
    /// In every other case (`[start, end)` empty or intersecting an entry,
    /// touching entries on both sides, touching none, or the second case
    /// with the entry first in its leaf) it changes nothing and returns what
    /// [`neighbors`](Self::neighbors)`(start)` would, as `(start, end)`
    /// pairs, so the caller can finish the job without another search.
    #[allow(clippy::type_complexity)]
    pub fn grow_adjacent(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<(), (Option<(u64, u64)>, Option<(u64, u64)>)> {
        if self.height == 0 {
            return Err((None, None));
        }
        let b = self.descend_bounds(start);
        let leaf = &self.leaves[b.leaf as usize];
        // Entries `..r` start at or before `start`; the one at `r`, or else
        // the first of the next leaf, starts after it.
        let r = leaf.rank(start);
        let before = (r > 0).then(|| (leaf.starts[r - 1], leaf.ends[r - 1]));
        let after = if r < leaf.len() {
            Some((leaf.starts[r], leaf.ends[r]))
        } else {
            // A live leaf's successor is live (or NIL, which is no index).
            self.leaves
                .get(leaf.next as usize)
                .and_then(|next| next.entry(0))
                .map(|(s, e, _)| (s, e))
        };
        let free = start < end
            && after.is_none_or(|(s, _)| s >= end)
            && before.is_none_or(|(_, e)| e <= start);
        let leaf = &mut self.leaves[b.leaf as usize];
        match (before, after) {
            _ if !free => {}
            // Touching the entry before (which is in this leaf), not the one
            // after.
            (Some((_, e)), a) if e == start && a.is_none_or(|(s, _)| s != end) => {
                leaf.ends[r - 1] = end;
                return Ok(());
            }
            // Touching the entry after, which is not the first of this leaf
            // (`r > 0`), so its start is no separator; the entry before ends
            // short of `start`.
            (Some((_, e)), Some((s, _))) if e < start && s == end && r < leaf.len() => {
                leaf.starts[r] = start;
                return Ok(());
            }
            _ => {}
        }
        Err((before, after))
    }

    /// Changes the start of the entry starting at `start` to `new_start`,
    /// keeping its end and value. Refuses (returns `false`, changing
    /// nothing) if there is no such entry, if `new_start` is not below its
    /// end, or if the new range would intersect the entry before it.
    ///
    /// The entry keeps its place in the order, so no node splits or
    /// merges and nothing is allocated: one descent, and a second one only
    /// when the entry is the first of its leaf and moves down (to find the
    /// end of the entry before it, in another leaf).
    pub fn set_start(&mut self, start: u64, new_start: u64) -> bool {
        if self.height == 0 {
            return false;
        }
        let b = self.descend_bounds(start);
        let leaf = &self.leaves[b.leaf as usize];
        let Some(i) = leaf.position(start) else {
            return false;
        };
        if new_start >= leaf.ends[i] {
            return false;
        }
        if new_start < start {
            // `start > new_start >= 0`, so `start - 1` does not wrap.
            let before_end = if i > 0 {
                Some(leaf.ends[i - 1])
            } else {
                self.last_at_or_before(start - 1).map(|(_, e)| e)
            };
            if before_end.is_some_and(|e| e > new_start) {
                return false;
            }
        }
        self.leaves[b.leaf as usize].starts[i] = new_start;
        // The separator naming the leaf's first start must follow.
        if i == 0 {
            if let Some((p, k)) = b.left_sep {
                self.inners[p as usize].keys[k] = new_start;
            }
        }
        true
    }

    /// Removes every entry, returning them in ascending order; the tree
    /// keeps its arenas' capacity.
    pub fn drain(&mut self) -> Vec<(u64, u64, V)> {
        let mut out = Vec::with_capacity(self.len);
        let mut leaf = self.iter().leaf;
        while leaf != NIL {
            let l = &mut self.leaves[leaf as usize];
            for i in 0..l.len() {
                if let Some(v) = l.values[i].take() {
                    out.push((l.starts[i], l.ends[i], v));
                }
            }
            leaf = l.next;
        }
        self.leaves.clear();
        self.inners.clear();
        self.free_leaves = NIL;
        self.free_inners = NIL;
        self.free_leaf_count = 0;
        self.free_inner_count = 0;
        self.root = NIL;
        self.height = 0;
        self.len = 0;
        out
    }

    // -- Checking -----------------------------------------------------------

    /// Checks every structural invariant and panics, saying which, if one is
    /// broken: entries sorted, disjoint and non-empty; node fills; exact
    /// separators; all leaves at one depth and chained in order; `len`;
    /// free nodes empty and unreachable; the height bound of
    /// [`max_height`](Self::max_height). Costs O(nodes); for tests.
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        let mut seen_leaf = alloc::vec![false; self.leaves.len()];
        let mut seen_inner = alloc::vec![false; self.inners.len()];
        let (mut i, mut count) = (self.free_leaves, 0);
        while i != NIL {
            assert!(
                (i as usize) < self.leaves.len(),
                "free leaf {i} out of range"
            );
            let leaf = &self.leaves[i as usize];
            assert!(!seen_leaf[i as usize], "leaf {i} twice on the free list");
            seen_leaf[i as usize] = true;
            assert_eq!(leaf.len, 0, "free leaf {i} not empty");
            assert!(
                leaf.starts.iter().all(|&s| s == PAD) && leaf.values.iter().all(Option::is_none),
                "free leaf {i} holds data"
            );
            count += 1;
            i = leaf.next;
        }
        assert_eq!(count, self.free_leaf_count, "free leaf count");
        let (mut i, mut count) = (self.free_inners, 0);
        while i != NIL {
            assert!(
                (i as usize) < self.inners.len(),
                "free inner {i} out of range"
            );
            let inner = &self.inners[i as usize];
            assert!(!seen_inner[i as usize], "inner {i} twice on the free list");
            seen_inner[i as usize] = true;
            assert_eq!(inner.nkeys, 0, "free inner {i} not empty");
            assert!(
                inner.keys.iter().all(|&k| k == PAD)
                    && inner.children[1..].iter().all(|&c| c == NIL),
                "free inner {i} holds data"
            );
            count += 1;
            i = inner.children[0];
        }
        assert_eq!(count, self.free_inner_count, "free inner count");
        if self.height == 0 {
            assert_eq!(self.len, 0, "empty tree with len {}", self.len);
            assert!(seen_leaf.iter().all(|&s| s), "empty tree with a live leaf");
            assert!(
                seen_inner.iter().all(|&s| s),
                "empty tree with a live inner node"
            );
            return;
        }

        // Walk the tree depth-first, left to right, collecting the leaves.
        let mut leaves_in_order = Vec::new();
        let mut stack = alloc::vec![(self.root, 1usize, None::<u64>, None::<u64>)];
        while let Some((node, depth, lo, hi)) = stack.pop() {
            let is_root = depth == 1;
            if depth == self.height {
                let i = node as usize;
                assert!(i < self.leaves.len(), "leaf index {i} out of range");
                assert!(!seen_leaf[i], "leaf {i} reached twice or free");
                seen_leaf[i] = true;
                let leaf = &self.leaves[i];
                let n = leaf.len();
                assert!(n <= CAP, "leaf {i} overfull: {n}");
                if is_root {
                    assert!(n >= 1, "root leaf empty");
                } else {
                    assert!(n >= MIN_LEAF, "leaf {i} underfull: {n} < {MIN_LEAF}");
                }
                if let Some(lo) = lo {
                    assert_eq!(
                        leaf.starts[0], lo,
                        "leaf {i}: separator is not its first start"
                    );
                }
                for j in 0..n {
                    assert!(
                        leaf.starts[j] < leaf.ends[j],
                        "leaf {i}: empty entry at {j}"
                    );
                    assert!(leaf.values[j].is_some(), "leaf {i}: no value at {j}");
                    if j + 1 < n {
                        assert!(
                            leaf.ends[j] <= leaf.starts[j + 1],
                            "leaf {i}: overlap at {j}"
                        );
                    }
                    if let Some(hi) = hi {
                        assert!(leaf.starts[j] < hi, "leaf {i}: start above separator");
                    }
                }
                assert!(
                    leaf.starts[n..].iter().all(|&s| s == PAD),
                    "leaf {i}: bad padding"
                );
                assert!(
                    leaf.values[n..].iter().all(Option::is_none),
                    "leaf {i}: stray value"
                );
                leaves_in_order.push(node);
            } else {
                let i = node as usize;
                assert!(depth < self.height);
                assert!(i < self.inners.len(), "inner index {i} out of range");
                assert!(!seen_inner[i], "inner {i} reached twice or free");
                seen_inner[i] = true;
                let inner = &self.inners[i];
                let k = inner.nkeys();
                assert!(k <= CAP, "inner {i} overfull: {k}");
                if is_root {
                    assert!(k >= 1, "inner root with one child");
                } else {
                    assert!(k >= MIN_KEYS, "inner {i} underfull: {k} < {MIN_KEYS}");
                }
                assert!(
                    inner.keys[k..].iter().all(|&s| s == PAD),
                    "inner {i}: bad padding"
                );
                assert!(
                    inner.children[k + 1..].iter().all(|&c| c == NIL),
                    "inner {i}: stray child"
                );
                for j in 0..k {
                    assert!(
                        j == 0 || inner.keys[j - 1] < inner.keys[j],
                        "inner {i}: keys unsorted"
                    );
                    assert!(
                        lo.is_none_or(|lo| lo < inner.keys[j]),
                        "inner {i}: key below range"
                    );
                    assert!(
                        hi.is_none_or(|hi| inner.keys[j] < hi),
                        "inner {i}: key above range"
                    );
                }
                // Push right to left so that leaves pop left to right.
                for j in (0..=k).rev() {
                    let clo = if j == 0 { lo } else { Some(inner.keys[j - 1]) };
                    let chi = if j == k { hi } else { Some(inner.keys[j]) };
                    stack.push((inner.children[j], depth + 1, clo, chi));
                }
            }
        }
        assert!(
            seen_leaf.iter().all(|&s| s),
            "a leaf neither reachable nor free"
        );
        assert!(
            seen_inner.iter().all(|&s| s),
            "an inner node neither reachable nor free"
        );

        // The chain links the leaves in order; entries are disjoint across
        // leaves; len counts them.
        let mut count = 0;
        let mut prev_end = None::<u64>;
        for (j, &leaf) in leaves_in_order.iter().enumerate() {
            let l = &self.leaves[leaf as usize];
            let next = leaves_in_order.get(j + 1).copied().unwrap_or(NIL);
            assert_eq!(l.next, next, "leaf {leaf}: broken chain");
            if let Some(e) = prev_end {
                assert!(e <= l.starts[0], "leaf {leaf} overlaps the leaf before it");
            }
            prev_end = Some(l.ends[l.len() - 1]);
            count += l.len();
        }
        assert_eq!(
            count, self.len,
            "len is {} but the leaves hold {count}",
            self.len
        );
        assert!(
            self.height <= Self::max_height(self.len),
            "height {} above the bound {} for {} entries",
            self.height,
            Self::max_height(self.len),
            self.len
        );
    }
}

/// A node index from an arena length.
fn index(len: usize) -> u32 {
    match u32::try_from(len) {
        Ok(i) if i != NIL => i,
        _ => panic!("area tree: more than 2^32 - 1 nodes"),
    }
}

/// Iterator over the entries of an [`AreaTree`] in ascending order, as
/// `(start, end, &value)`; returned by [`AreaTree::iter`].
pub struct Iter<'a, V> {
    leaves: &'a [Leaf<V>],
    leaf: u32,
    pos: usize,
    remaining: usize,
}

impl<'a, V> Iterator for Iter<'a, V> {
    type Item = (u64, u64, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let leaf = self.leaves.get(self.leaf as usize)?;
            if self.pos < leaf.len() {
                let i = self.pos;
                self.pos += 1;
                self.remaining -= 1;
                return Some((leaf.starts[i], leaf.ends[i], leaf.values[i].as_ref()?));
            }
            self.leaf = leaf.next;
            self.pos = 0;
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<V> Clone for Iter<'_, V> {
    fn clone(&self) -> Self {
        Iter { ..*self }
    }
}

impl<V> ExactSizeIterator for Iter<'_, V> {}

impl<V> FusedIterator for Iter<'_, V> {}

impl<'a, V> IntoIterator for &'a AreaTree<V> {
    type Item = (u64, u64, &'a V);
    type IntoIter = Iter<'a, V>;

    fn into_iter(self) -> Iter<'a, V> {
        self.iter()
    }
}
