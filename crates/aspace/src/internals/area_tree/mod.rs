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
//! # Free gaps and guards
//!
//! An entry may keep *guard pages* below its start
//! ([`AreaTree::insert_guarded`]): no other entry, nor its guard, may take
//! them, though lookups there find nothing ([`AreaTree::guarded_by`] names
//! the entry guarding a page). A tree made with [`AreaTree::with_gaps`]
//! also keeps, for every child of every inner node, the largest free gap
//! between consecutive entries of the child's subtree, its lowest page
//! taken (guard included) and its end. These summaries sit in an arena of
//! their own, indexed like the inner nodes', so a lookup's descent reads
//! no more memory than without them. [`AreaTree::lowest_fit`] and
//! [`AreaTree::highest_fit`] then find the lowest (or highest) free range
//! of a size, alignment and guard in a window, skipping every subtree whose
//! largest gap is too small: O(log n) node visits rather than a scan of
//! every entry (which is what a tree without gaps does). Every change
//! recomputes the summaries on its route (and of the siblings a spill,
//! refill or merge touched), stopping where one comes out unchanged. The
//! used space's trees keep no gaps and pay nothing for them.
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
//! use aspace::internals::area_tree::{AreaTree, Hint};
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

mod arena;
mod augment;
// The invariant checkers, for tests (and the `check-invariants` feature).
#[cfg(any(test, feature = "check-invariants"))]
mod check;
mod insert;
mod iter;
mod node;
mod remove;
mod resize;
mod search;
mod splice;

pub use augment::Fit;
pub use iter::Iter;
pub use node::CAP;
pub use search::Hint;

use node::{Inner, Leaf, Sums, MIN_KEYS, MIN_LEAF, NIL};

/// An entry as the queries return it: `(start, end, &value)`.
pub type Entry<'a, V> = (u64, u64, &'a V);

/// A map from disjoint half-open ranges `[start, end)` of `u64` (page
/// numbers) to values, kept in a B+tree that answers "which entry contains
/// `n`?" with one descent through dense nodes, or none with a [`Hint`].
///
/// See the [module documentation](self) for the layout and its guarantees.
pub struct AreaTree<V> {
    leaves: Vec<Leaf<V>>,
    inners: Vec<Inner>,
    /// The summaries of each inner node's children, by the node's index
    /// (kept up to date only in trees [with gaps](Self::with_gaps)).
    sums: Vec<Sums>,
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
    /// Whether inner nodes keep their children's summaries ([`Sum`]) for
    /// the free-gap search ([`with_gaps`](Self::with_gaps)).
    gaps: bool,
    /// A count of entries the arenas' capacity is known to cover (see
    /// [`try_reserve`](Self::try_reserve)): capacity never shrinks, so a
    /// reservation up to it has nothing to check.
    covered: usize,
}

/// A copy whose arenas hold only what the tree uses (see
/// [`try_clone`](AreaTree::try_clone) for one that reports a refused heap).
impl<V: Clone> Clone for AreaTree<V> {
    fn clone(&self) -> Self {
        self.copy_with(self.leaves.clone(), self.inners.clone(), self.sums.clone())
    }
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
            sums: Vec::new(),
            free_leaves: NIL,
            free_inners: NIL,
            free_leaf_count: 0,
            free_inner_count: 0,
            root: NIL,
            height: 0,
            len: 0,
            gaps: false,
            covered: 0,
        }
    }

    /// An empty tree that also keeps, for every subtree, the largest free
    /// gap between its entries, so that [`lowest_fit`](Self::lowest_fit)
    /// and [`highest_fit`](Self::highest_fit) skip whole subtrees (see
    /// [the module documentation](self#free-gaps-and-guards)). Changes cost a little
    /// more (the summaries on the route are recomputed); lookups cost the
    /// same.
    pub const fn with_gaps() -> Self {
        let mut t = Self::new();
        t.gaps = true;
        t
    }

    /// Whether this tree keeps free-gap summaries
    /// ([`with_gaps`](Self::with_gaps)).
    pub fn tracks_gaps(&self) -> bool {
        self.gaps
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
}
