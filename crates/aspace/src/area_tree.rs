//! [`AreaTree`]: a B+tree interval map from disjoint half-open page ranges
//! `[start, end)` to values, built for fast point lookups ("which area holds
//! page `n`?").
//!
//! # Layout
//!
//! Every entry lives in a *leaf*; *inner* nodes only route the search. Both
//! kinds sit in arenas and refer to each other by `u32` index, so there is
//! no `Box` per node, and freed nodes go on a free list to be reused. The
//! free lists are threaded through the freed nodes themselves (a leaf's
//! `next`, an inner node's first child slot), so freeing a node never
//! allocates, and a new node comes from the free list before the arena
//! grows. An arena grows by doubling, so allocating a node is amortised
//! O(1); once the arenas are as large as the tree has ever needed (or
//! [`AreaTree::reserve`] made them), changes allocate nothing.
//!
//! The arenas hold only the nodes' *words* (bounds, tags, keys, lengths,
//! links), all atomics, in buffers that never move: growing one copies it
//! into a new buffer and keeps the old one until the tree and its readers
//! are gone (the old ones add up to less than the current one), or frees
//! it at once if the tree has no reader. The values
//! sit in a plain vector beside them, by leaf index. That is what lets a
//! [`Reader`] look entries up with no lock at all (see [lock-free
//! reads](self#lock-free-reads)).
//!
//! * A leaf holds up to [`CAP`] entries in parallel fixed-size arrays,
//!   `starts`, `ends`, `tags` (a word per entry that its owner may change at
//!   any time; the address space keeps each area's summary there) and the
//!   values, sorted by start, plus its length and the index of the next
//!   leaf (for in-order iteration). Unused `starts` slots
//!   hold `u64::MAX`.
//! * An inner node holds up to `CAP` separator keys (unused ones `u64::MAX`)
//!   and one more child index than keys. Separators are *exact*: key `i` is
//!   the smallest start stored under child `i + 1`, so all starts under
//!   child `i` lie in `[key[i - 1], key[i])`.
//!
//! Searching a node counts the keys `<= n` without branches and without
//! reading the node's length: binary steps (conditional moves) over the
//! whole fixed array narrow it to four keys, which are counted. The padding
//! keeps the padded array sorted, so the steps need no length; a real start
//! is at most `u64::MAX - 1` (because `start < end <= u64::MAX`), so padding
//! only counts for `n == u64::MAX`, and the count is clamped to the length
//! anyway, which costs one more conditional move.
//!
//! (A plain count over the whole array, `keys.iter().map(|&k| (k <= n) as
//! usize).sum()`, measured slower: baseline x86-64 has no 64-bit vector
//! compare, so it becomes 16 scalar compares with register spills, and
//! even with AVX2 it did not beat the narrowed count.)
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
//! full). Random insertion ends about 84% full instead of about 70%. The
//! search within a node, the descent and the hint are unaffected.
//!
//! (A lower minimum, such as `CAP / 4`, would let a split at an end keep
//! more in the full part, but with spilling it filled sequential insertions
//! no better, and it left trees sparser after removals and weakened the
//! height bound, so the minimum stays `CAP / 2`.)
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
//! # Lock-free reads
//!
//! The tree's owner changes it through `&mut self`; a [`Reader`], made by
//! [`AreaTree::reader`], finds entries meanwhile from any thread, without a
//! lock, in the manner of a sequence lock. Every change bumps a sequence
//! count to odd before it touches a node and back to even after it (with
//! release ordering, and after publishing the root and height). A reader
//! reads the count, descends reading node words with relaxed loads, and
//! reads the count again; if it was odd or moved, the words may be torn,
//! and it tries again (a few times, then it reports [`Busy`] and the
//! caller takes whatever lock keeps the tree still). Torn words can send a
//! reader anywhere in the arenas, but never outside them: every index is
//! bounds-checked against a buffer that stays allocated, lengths never
//! exceed [`CAP`], and the descent is bounded by the height, so garbage
//! costs a retry and never a wrong answer or a panic. A reader writes
//! nothing the writer reads (only, after a successful read, its own hint),
//! so readers on many CPUs share no cache line in write mode: a lookup
//! costs two more loads than under a lock, where taking a reader-writer
//! lock costs two atomic read-modify-writes.
//!
//! Values are never read this way (the writer moves them non-atomically);
//! a reader returns an entry's bounds and its tag.
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

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::iter::FusedIterator;
use core::ops::Range;
use core::ptr::{self, NonNull};
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use core::sync::atomic::{fence, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize};

/// Entries per leaf and separator keys per inner node (an inner node has up
/// to `CAP + 1` children). 16 and 32 measured within noise of each other for
/// lookups from 16 to a million entries (16 a little ahead for small trees,
/// 32 for mid-sized ones); 16 halves the node size (a leaf's words take
/// 392 bytes) and the work of shifting entries.
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
/// the result to the node's length.
#[inline(always)]
fn rank(keys: &[W64; CAP], n: u64) -> usize {
    let mut base = 0;
    let mut size = CAP;
    while size > 4 {
        let half = size / 2;
        if keys[base + half - 1].get() <= n {
            base += half;
        }
        size -= half;
    }
    base + keys[base..base + 4]
        .iter()
        .map(|k| usize::from(k.get() <= n))
        .sum::<usize>()
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

// -- Node words ---------------------------------------------------------------

/// A word of a node that lock-free readers may read while the writer
/// changes it: an atomic, accessed with relaxed ordering (the tree's
/// sequence count orders everything; see [`Reader`]). On x86-64 such loads
/// and stores are plain moves.
trait Word {
    type T: Copy;
    fn get(&self) -> Self::T;
    fn set(&self, v: Self::T);
}

/// A 64-bit node word: a start, an end, a tag or a separator.
#[repr(transparent)]
struct W64(AtomicU64);

/// A 32-bit node word: a length or a node index.
#[repr(transparent)]
struct W32(AtomicU32);

impl Word for W64 {
    type T = u64;
    #[inline(always)]
    fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
    #[inline(always)]
    fn set(&self, v: u64) {
        self.0.store(v, Relaxed)
    }
}

impl Word for W32 {
    type T = u32;
    #[inline(always)]
    fn get(&self) -> u32 {
        self.0.load(Relaxed)
    }
    #[inline(always)]
    fn set(&self, v: u32) {
        self.0.store(v, Relaxed)
    }
}

/// Copies `a[src]` to `a[dest..]` within one array, like
/// `slice::copy_within`.
#[inline]
fn shift<W: Word>(a: &[W], src: Range<usize>, dest: usize) {
    let n = src.len();
    if dest > src.start {
        for k in (0..n).rev() {
            a[dest + k].set(a[src.start + k].get());
        }
    } else {
        for k in 0..n {
            a[dest + k].set(a[src.start + k].get());
        }
    }
}

/// Copies `src` into `dst` (two arrays, or parts that do not overlap).
#[inline]
fn copy<W: Word>(dst: &[W], src: &[W]) {
    debug_assert_eq!(dst.len(), src.len());
    for (d, s) in dst.iter().zip(src) {
        d.set(s.get());
    }
}

/// Sets every word of `a` to `v`.
#[inline]
fn fill<W: Word>(a: &[W], v: W::T) {
    for w in a {
        w.set(v);
    }
}

/// A node kind kept in an [`Arena`].
trait Node {
    /// An empty node.
    fn empty() -> Self;
    /// Copies every word of `other` into this node.
    fn copy_from(&self, other: &Self);
}

/// The words of a leaf: up to `CAP` entries sorted by start. The values
/// live beside the arena, in the tree's own vector, since lock-free
/// readers never read them.
struct Leaf {
    /// Starts of the entries; `PAD` from `len` on.
    starts: [W64; CAP],
    /// Ends of the entries; 0 from `len` on.
    ends: [W64; CAP],
    /// Tags of the entries (see [`AreaTree::insert_tagged`]); 0 from `len`
    /// on.
    tags: [W64; CAP],
    /// Number of entries; 0 for a freed leaf.
    len: W32,
    /// The next leaf in key order, or `NIL`.
    next: W32,
}

impl Node for Leaf {
    fn empty() -> Self {
        Leaf {
            starts: [const { W64(AtomicU64::new(PAD)) }; CAP],
            ends: [const { W64(AtomicU64::new(0)) }; CAP],
            tags: [const { W64(AtomicU64::new(0)) }; CAP],
            len: W32(AtomicU32::new(0)),
            next: W32(AtomicU32::new(NIL)),
        }
    }

    fn copy_from(&self, other: &Self) {
        copy(&self.starts, &other.starts);
        copy(&self.ends, &other.ends);
        copy(&self.tags, &other.tags);
        self.len.set(other.len.get());
        self.next.set(other.next.get());
    }
}

impl Leaf {
    /// Resets the leaf to empty.
    fn clear(&self) {
        fill(&self.starts, PAD);
        fill(&self.ends, 0);
        fill(&self.tags, 0);
        self.len.set(0);
        self.next.set(NIL);
    }

    /// Number of entries (at most `CAP`: every value ever stored is).
    #[inline(always)]
    fn len(&self) -> usize {
        (self.len.get() as usize).min(CAP)
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
        (i > 0 && self.starts[i - 1].get() == start).then(|| i - 1)
    }

    /// Position of the entry containing `n`.
    #[inline(always)]
    fn lookup(&self, n: u64) -> Option<usize> {
        let j = self.rank(n).checked_sub(1)?;
        (n < self.ends[j].get()).then_some(j)
    }

    /// `(start, end)` of entry `j`.
    #[inline(always)]
    fn bounds(&self, j: usize) -> (u64, u64) {
        (self.starts[j].get(), self.ends[j].get())
    }

    /// Whether this leaf, if it is live, answers a lookup of `n`: it has an
    /// entry and `starts[0] <= n < ends[len - 1]` (see the [module
    /// documentation](self#the-lookup-hint)).
    #[inline(always)]
    fn covers(&self, n: u64) -> bool {
        let len = self.len();
        len > 0 && self.starts[0].get() <= n && n < self.ends[len - 1].get()
    }
}

/// The values of a leaf, by entry position; `None` from `len` on.
type Values<V> = [Option<V>; CAP];

/// Inserts an entry at position `i` of a leaf that is not full.
fn leaf_insert<V>(
    l: &Leaf,
    vals: &mut Values<V>,
    i: usize,
    (start, end, tag): (u64, u64, u64),
    value: V,
) {
    let len = l.len();
    debug_assert!(len < CAP && i <= len);
    shift(&l.starts, i..len, i + 1);
    shift(&l.ends, i..len, i + 1);
    shift(&l.tags, i..len, i + 1);
    vals[i..=len].rotate_right(1);
    l.starts[i].set(start);
    l.ends[i].set(end);
    l.tags[i].set(tag);
    vals[i] = Some(value);
    l.len.set(len as u32 + 1);
}

/// Removes the entry at position `i` of a leaf: `(start, end, value)`.
fn leaf_remove<V>(l: &Leaf, vals: &mut Values<V>, i: usize) -> (u64, u64, V) {
    let len = l.len();
    debug_assert!(i < len);
    let (start, end) = l.bounds(i);
    let value = vals[i]
        .take()
        .expect("area tree: live entry without a value");
    shift(&l.starts, i + 1..len, i);
    shift(&l.ends, i + 1..len, i);
    shift(&l.tags, i + 1..len, i);
    vals[i..len].rotate_left(1);
    l.starts[len - 1].set(PAD);
    l.ends[len - 1].set(0);
    l.tags[len - 1].set(0);
    l.len.set(len as u32 - 1);
    (start, end, value)
}

/// Moves the first `k` entries of `right` (the right sibling of `left`:
/// all its entries are greater) to the end of `left`.
fn leaf_take_front<V>(
    (left, lv): (&Leaf, &mut Values<V>),
    (right, rv): (&Leaf, &mut Values<V>),
    k: usize,
) {
    let (len, rn) = (left.len(), right.len());
    debug_assert!(k <= rn && len + k <= CAP);
    copy(&left.starts[len..len + k], &right.starts[..k]);
    copy(&left.ends[len..len + k], &right.ends[..k]);
    copy(&left.tags[len..len + k], &right.tags[..k]);
    for (dst, src) in lv[len..].iter_mut().zip(&mut rv[..k]) {
        *dst = src.take();
    }
    shift(&right.starts, k..rn, 0);
    shift(&right.ends, k..rn, 0);
    shift(&right.tags, k..rn, 0);
    rv[..rn].rotate_left(k);
    fill(&right.starts[rn - k..rn], PAD);
    fill(&right.ends[rn - k..rn], 0);
    fill(&right.tags[rn - k..rn], 0);
    left.len.set((len + k) as u32);
    right.len.set((rn - k) as u32);
}

/// Moves the last `k` entries of `left` to the front of `right` (its right
/// sibling).
fn leaf_give_back<V>(
    (left, lv): (&Leaf, &mut Values<V>),
    (right, rv): (&Leaf, &mut Values<V>),
    k: usize,
) {
    let (len, rn) = (left.len(), right.len());
    debug_assert!(k <= len && rn + k <= CAP);
    shift(&right.starts, 0..rn, k);
    shift(&right.ends, 0..rn, k);
    shift(&right.tags, 0..rn, k);
    rv[..rn + k].rotate_right(k);
    copy(&right.starts[..k], &left.starts[len - k..len]);
    copy(&right.ends[..k], &left.ends[len - k..len]);
    copy(&right.tags[..k], &left.tags[len - k..len]);
    for (dst, src) in rv[..k].iter_mut().zip(&mut lv[len - k..len]) {
        *dst = src.take();
    }
    fill(&left.starts[len - k..len], PAD);
    fill(&left.ends[len - k..len], 0);
    fill(&left.tags[len - k..len], 0);
    left.len.set((len - k) as u32);
    right.len.set((rn + k) as u32);
}

/// An inner node: `nkeys` separators and `nkeys + 1` children.
struct Inner {
    /// Separators: `keys[i]` is the least start under `children[i + 1]`;
    /// `PAD` from `nkeys` on.
    keys: [W64; CAP],
    /// Child indices (leaves on the lowest inner level, inner nodes above);
    /// `NIL` from `nkeys + 1` on.
    children: [W32; CAP + 1],
    /// Number of keys; 0 for a freed node.
    nkeys: W32,
}

impl Node for Inner {
    fn empty() -> Self {
        Inner {
            keys: [const { W64(AtomicU64::new(PAD)) }; CAP],
            children: [const { W32(AtomicU32::new(NIL)) }; CAP + 1],
            nkeys: W32(AtomicU32::new(0)),
        }
    }

    fn copy_from(&self, other: &Self) {
        copy(&self.keys, &other.keys);
        copy(&self.children, &other.children);
        self.nkeys.set(other.nkeys.get());
    }
}

impl Inner {
    /// Resets the node to empty.
    fn clear(&self) {
        fill(&self.keys, PAD);
        fill(&self.children, NIL);
        self.nkeys.set(0);
    }

    /// Number of keys (at most `CAP`: every value ever stored is).
    #[inline(always)]
    fn nkeys(&self) -> usize {
        (self.nkeys.get() as usize).min(CAP)
    }

    #[inline(always)]
    fn key(&self, i: usize) -> u64 {
        self.keys[i].get()
    }

    #[inline(always)]
    fn child(&self, c: usize) -> u32 {
        self.children[c].get()
    }

    /// The slot of the child whose subtree holds the greatest start `<= n`.
    #[inline(always)]
    fn child_for(&self, n: u64) -> usize {
        rank(&self.keys, n).min(self.nkeys())
    }

    /// Inserts `key` at `keys[i]` and `child` at `children[i + 1]`; the node
    /// must not be full.
    fn insert_at(&self, i: usize, key: u64, child: u32) {
        let n = self.nkeys();
        debug_assert!(n < CAP && i <= n);
        shift(&self.keys, i..n, i + 1);
        shift(&self.children, i + 1..n + 1, i + 2);
        self.keys[i].set(key);
        self.children[i + 1].set(child);
        self.nkeys.set(n as u32 + 1);
    }

    /// Removes `keys[i]` and `children[i + 1]`.
    fn remove_at(&self, i: usize) {
        let n = self.nkeys();
        debug_assert!(i < n);
        shift(&self.keys, i + 1..n, i);
        shift(&self.children, i + 2..n + 1, i + 1);
        self.keys[n - 1].set(PAD);
        self.children[n].set(NIL);
        self.nkeys.set(n as u32 - 1);
    }

    /// Inserts like [`insert_at`](Inner::insert_at) into a full node by
    /// splitting the `CAP + 1` keys: keeps the lower `m`, moves the upper
    /// `CAP - m` into `right` (an empty node) and returns key `m`, to go up.
    fn insert_split(&self, i: usize, key: u64, child: u32, m: usize, right: &Inner) -> u64 {
        debug_assert!(self.nkeys() == CAP && (MIN_KEYS..=CAP - MIN_KEYS).contains(&m));
        let mut keys = [PAD; CAP + 1];
        let mut children = [NIL; CAP + 2];
        for (j, k) in keys.iter_mut().enumerate() {
            *k = match j.cmp(&i) {
                core::cmp::Ordering::Less => self.key(j),
                core::cmp::Ordering::Equal => key,
                core::cmp::Ordering::Greater => self.key(j - 1),
            };
        }
        for (j, c) in children.iter_mut().enumerate() {
            *c = match j.cmp(&(i + 1)) {
                core::cmp::Ordering::Less => self.child(j),
                core::cmp::Ordering::Equal => child,
                core::cmp::Ordering::Greater => self.child(j - 1),
            };
        }
        for (w, &k) in right.keys.iter().zip(&keys[m + 1..]) {
            w.set(k);
        }
        for (w, &c) in right.children.iter().zip(&children[m + 1..]) {
            w.set(c);
        }
        right.nkeys.set((CAP - m) as u32);
        for (j, w) in self.keys.iter().enumerate() {
            w.set(if j < m { keys[j] } else { PAD });
        }
        for (j, w) in self.children.iter().enumerate() {
            w.set(if j <= m { children[j] } else { NIL });
        }
        self.nkeys.set(m as u32);
        keys[m]
    }
}

/// Moves the first `k` children of `right` (and the keys between them) to
/// the end of its left sibling `left`, rotating through `sep`, the
/// separator between the two in their parent; returns the new separator.
fn inner_take_front(left: &Inner, right: &Inner, sep: u64, k: usize) -> u64 {
    let (ln, rn) = (left.nkeys(), right.nkeys());
    debug_assert!(k >= 1 && k <= rn && ln + k <= CAP);
    left.keys[ln].set(sep);
    copy(&left.keys[ln + 1..ln + k], &right.keys[..k - 1]);
    copy(&left.children[ln + 1..ln + 1 + k], &right.children[..k]);
    left.nkeys.set((ln + k) as u32);
    let new_sep = right.key(k - 1);
    shift(&right.keys, k..rn, 0);
    shift(&right.children, k..rn + 1, 0);
    fill(&right.keys[rn - k..rn], PAD);
    fill(&right.children[rn + 1 - k..=rn], NIL);
    right.nkeys.set((rn - k) as u32);
    new_sep
}

/// Moves the last `k` children of `left` (and the keys between them) to
/// the front of its right sibling `right`, rotating through `sep` like
/// [`inner_take_front`]; returns the new separator.
fn inner_give_back(left: &Inner, right: &Inner, sep: u64, k: usize) -> u64 {
    let (ln, rn) = (left.nkeys(), right.nkeys());
    debug_assert!(k >= 1 && k <= ln && rn + k <= CAP);
    shift(&right.keys, 0..rn, k);
    shift(&right.children, 0..rn + 1, k);
    copy(&right.keys[..k - 1], &left.keys[ln + 1 - k..ln]);
    right.keys[k - 1].set(sep);
    copy(&right.children[..k], &left.children[ln + 1 - k..=ln]);
    right.nkeys.set((rn + k) as u32);
    let new_sep = left.key(ln - k);
    fill(&left.keys[ln - k..ln], PAD);
    fill(&left.children[ln + 1 - k..=ln], NIL);
    left.nkeys.set((ln - k) as u32);
    new_sep
}

// -- Arenas -------------------------------------------------------------------

/// Node storage that never moves: a buffer of `cap` nodes, all initialised.
/// Growing it copies the nodes into a buffer twice as large and, if a
/// lock-free reader may still be reading the old one, keeps that (on the
/// `retired` list) until the arena is dropped. The retired buffers add up
/// to less than the current one.
struct Arena<T> {
    /// Number of nodes in the buffer `ptr` points to (or in a larger one).
    cap: AtomicUsize,
    /// The current buffer; null while `cap` is 0.
    ptr: AtomicPtr<T>,
    /// Buffers replaced by a larger one.
    retired: AtomicPtr<Retired<T>>,
}

/// A buffer an [`Arena`] grew out of.
struct Retired<T> {
    ptr: *mut T,
    cap: usize,
    next: *mut Retired<T>,
}

impl<T: Node> Arena<T> {
    const fn new() -> Self {
        Arena {
            cap: AtomicUsize::new(0),
            ptr: AtomicPtr::new(ptr::null_mut()),
            retired: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// The nodes. The capacity is read before the pointer, and a grown
    /// buffer is published before its capacity, so the slice never runs
    /// past the buffer (capacities only grow).
    #[inline(always)]
    fn nodes(&self) -> &[T] {
        let cap = self.cap.load(Acquire);
        if cap == 0 {
            return &[];
        }
        let ptr = self.ptr.load(Acquire);
        // SAFETY: `ptr` is a buffer of at least `cap` initialised nodes (see
        // above), published with release ordering after it was filled, and
        // freed only when the arena drops, which cannot happen while `self`
        // is borrowed. Nodes are only ever changed through their atomics.
        unsafe { core::slice::from_raw_parts(ptr, cap) }
    }

    fn capacity(&self) -> usize {
        self.cap.load(Relaxed)
    }

    /// Grows the buffer to `cap` nodes, copying the current ones. The old
    /// buffer is kept for readers that may be in it if `retire`, else freed.
    ///
    /// # Safety
    ///
    /// Only one thread at a time may call this (the tree, through `&mut`):
    /// two at once would retire the same buffer twice. Without `retire`,
    /// nothing may be reading the arena (no [`Reader`] exists), and every
    /// read of it by another thread must happen before this call.
    unsafe fn grow_to(&self, cap: usize, retire: bool) {
        let old = self.nodes();
        if cap <= old.len() {
            return;
        }
        let fresh: Box<[T]> = (0..cap)
            .map(|i| {
                let node = T::empty();
                if let Some(o) = old.get(i) {
                    node.copy_from(o);
                }
                node
            })
            .collect();
        let (old_ptr, old_cap) = (self.ptr.load(Relaxed), old.len());
        self.ptr.store(Box::into_raw(fresh).cast::<T>(), Release);
        self.cap.store(cap, Release);
        if old_cap > 0 && !retire {
            // SAFETY: the old buffer came from `Box::<[T]>::into_raw` of
            // `old_cap` nodes, was replaced above, and (the caller promises)
            // nobody reads it.
            drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(old_ptr, old_cap)) });
        } else if old_cap > 0 {
            let retired = Box::new(Retired {
                ptr: old_ptr,
                cap: old_cap,
                next: self.retired.load(Relaxed),
            });
            self.retired.store(Box::into_raw(retired), Relaxed);
        }
    }
}

impl<T> Drop for Arena<T> {
    fn drop(&mut self) {
        let (ptr, cap) = (*self.ptr.get_mut(), *self.cap.get_mut());
        if cap > 0 {
            // SAFETY: `ptr` came from `Box::<[T]>::into_raw` of `cap` nodes,
            // and `&mut self` means no reader is left.
            drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(ptr, cap)) });
        }
        let mut r = *self.retired.get_mut();
        while !r.is_null() {
            // SAFETY: each list node came from `Box::into_raw` and holds a
            // buffer from `Box::<[T]>::into_raw`; each is freed once, here.
            let retired = unsafe { Box::from_raw(r) };
            drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(retired.ptr, retired.cap)) });
            r = retired.next;
        }
    }
}

/// What a tree shares with its [`Reader`]s: the node arenas, the root and
/// height, and the sequence count that tells a reader whether the tree
/// changed while it read.
struct Header {
    /// Odd while the writer changes the tree; bumped at both ends.
    seq: AtomicU64,
    root: AtomicU32,
    height: AtomicU32,
    leaves: Arena<Leaf>,
    inners: Arena<Inner>,
}

impl Header {
    const fn new() -> Self {
        Header {
            seq: AtomicU64::new(0),
            root: AtomicU32::new(NIL),
            height: AtomicU32::new(0),
            leaves: Arena::new(),
            inners: Arena::new(),
        }
    }
}

/// Where a tree keeps its header: inside itself until a reader is first
/// asked for, then shared with the readers. A tree that never has one,
/// such as an area's used space, allocates no header and publishes nothing.
enum Home {
    Alone(Header),
    Shared(Arc<Header>),
}

impl core::ops::Deref for Home {
    type Target = Header;
    #[inline(always)]
    fn deref(&self) -> &Header {
        match self {
            Home::Alone(h) => h,
            Home::Shared(h) => h,
        }
    }
}

/// The leaf, if any, holding the entry with the greatest start `<= n` in
/// the tree of `root` and `height` over the arenas `leaves` and `inners`,
/// trying the leaf `hint` names first (when the tree has inner nodes). A
/// lock-free reader may read with a writer at work: then the answer may be
/// wrong, and is `None` when an index leads nowhere; the reader checks the
/// sequence count.
#[inline(always)]
fn locate(
    leaves: &[Leaf],
    inners: &[Inner],
    (root, height): (u32, usize),
    n: u64,
    hint: Option<&Hint>,
) -> Option<u32> {
    if height > 1 {
        if let Some(h) = hint {
            let h = h.0.load(Relaxed);
            if leaves.get(h as usize).is_some_and(|l| l.covers(n)) {
                return Some(h);
            }
        }
    }
    let mut node = root;
    for _ in 1..height {
        let inner = inners.get(node as usize)?;
        node = inner.child(inner.child_for(n));
    }
    Some(node)
}

/// The tree's own copy of an arena's buffer (pointer and capacity), so
/// that its lookups reach a node in one load rather than two through the
/// shared header. Refreshed whenever the arena grows.
struct Buf<T> {
    ptr: NonNull<T>,
    cap: usize,
}

// SAFETY: a `Buf` only lends `&[T]` (see `get`), and the nodes (atomics
// only) are `Sync`.
unsafe impl<T: Sync> Send for Buf<T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for Buf<T> {}

impl<T: Node> Buf<T> {
    /// The current buffer of `arena`.
    fn of(arena: &Arena<T>) -> Self {
        let nodes = arena.nodes();
        Buf {
            ptr: NonNull::from(nodes).cast(),
            cap: nodes.len(),
        }
    }

    #[inline(always)]
    fn get(&self) -> &[T] {
        // SAFETY: the buffer belongs to an arena in the tree's header, and
        // is freed only when that header drops (with the tree, or after the
        // tree's last reader) or when the tree, through `&mut self`, grows
        // the arena with no reader and then refreshes this copy; so it is
        // live while `self` is borrowed. (A capacity of 0 comes with a dangling, aligned,
        // non-null pointer, which an empty slice allows.)
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.cap) }
    }
}

/// A tree's published root was read while the tree changed: try again.
const TRIES: usize = 4;

// -- Routes ---------------------------------------------------------------------

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

/// An entry with its tag: `(start, end, &value, &tag)`. The tag is a word
/// the tree keeps beside the entry (see [`AreaTree::insert_tagged`]); its
/// owner may store into it at any time, and lock-free readers see it.
pub type Tagged<'a, V> = (u64, u64, &'a V, &'a AtomicU64);

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

// -- The tree -------------------------------------------------------------------

/// A map from disjoint half-open ranges `[start, end)` of `u64` (page
/// numbers) to values, kept in a B+tree that answers "which entry contains
/// `n`?" with one descent through dense nodes, or none with a [`Hint`].
/// A [`Reader`] answers the same question without any lock, while the tree
/// changes.
///
/// See the [module documentation](self) for the layout and its guarantees.
pub struct AreaTree<V> {
    /// The nodes, shared with readers once there are any.
    header: Home,
    /// The leaf arena's buffer, as of its last growth.
    leaf_buf: Buf<Leaf>,
    /// The inner-node arena's buffer, as of its last growth.
    inner_buf: Buf<Inner>,
    /// The values of the leaves, by leaf index: one entry per leaf ever
    /// allocated (`values.len()` is the leaf arena's length).
    values: Vec<Values<V>>,
    /// Inner nodes ever allocated (the inner arena's length).
    inners_len: usize,
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
    /// The sequence count as this writer last set it.
    seq: u64,
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

impl<V: Clone> Clone for AreaTree<V> {
    /// A tree with the same entries, values and tags, built densely.
    fn clone(&self) -> Self {
        let mut t = AreaTree::new();
        t.reserve(self.len);
        for (start, end, value, tag) in self.iter_tagged() {
            let cloned = t.insert_tagged(start, end, tag.load(Relaxed), value.clone());
            debug_assert!(cloned.is_ok());
        }
        t
    }
}

impl<V> Drop for AreaTree<V> {
    /// Leaves the tree empty for any [`Reader`] that outlives it.
    fn drop(&mut self) {
        // A change that panicked left its section open (the count odd):
        // close that one rather than open another.
        if self.seq & 1 == 0 {
            self.begin_write();
        }
        self.root = NIL;
        self.height = 0;
        self.end_write();
    }
}

impl<V> AreaTree<V> {
    /// An empty tree; allocates nothing until the first insertion.
    pub const fn new() -> Self {
        AreaTree {
            header: Home::Alone(Header::new()),
            leaf_buf: Buf {
                ptr: NonNull::dangling(),
                cap: 0,
            },
            inner_buf: Buf {
                ptr: NonNull::dangling(),
                cap: 0,
            },
            values: Vec::new(),
            inners_len: 0,
            free_leaves: NIL,
            free_inners: NIL,
            free_leaf_count: 0,
            free_inner_count: 0,
            root: NIL,
            height: 0,
            len: 0,
            seq: 0,
        }
    }

    /// A handle that looks entries up without a lock, concurrently with
    /// changes to this tree (see [`Reader`]). The first call moves the
    /// tree's header into a shared allocation; from then on every change
    /// also publishes itself to readers.
    pub fn reader(&mut self) -> Reader {
        let shared = match &mut self.header {
            Home::Shared(h) => h.clone(),
            Home::Alone(h) => {
                let shared = Arc::new(core::mem::replace(h, Header::new()));
                self.header = Home::Shared(shared.clone());
                // Publish the root and height (closing, rather than
                // nesting, a change that panicked half-way, as `Drop` does).
                if self.seq & 1 == 0 {
                    self.begin_write();
                }
                self.end_write();
                shared
            }
        };
        Reader(shared)
    }

    /// Whether a reader may exist.
    #[inline(always)]
    fn has_readers(&self) -> bool {
        match &self.header {
            Home::Alone(_) => false,
            Home::Shared(h) if Arc::strong_count(h) > 1 => true,
            Home::Shared(_) => {
                // The count is read with relaxed ordering; this pairs with
                // the release decrement of each dropped reader's `Arc`, so
                // every read a gone reader made happens before whatever the
                // caller frees next.
                fence(Acquire);
                false
            }
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
            self.values.len() - self.free_leaf_count,
            self.inners_len - self.free_inner_count,
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
    /// allocates (nor does anything else but [`clone`](Clone::clone),
    /// [`drain`](Self::drain)'s result and the first
    /// [`reader`](Self::reader)) as long as the tree holds at most
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
    /// at least double, so that repeated small reservations stay amortised
    /// O(1). The nodes are allocated and initialised (empty) at once. A
    /// buffer outgrown is freed at once if no [`Reader`] exists, else kept
    /// until the tree and its readers are gone.
    pub fn reserve(&mut self, additional: usize) {
        let (leaves, inners) = Self::max_nodes(self.len.saturating_add(additional));
        self.grow_leaves(leaves);
        self.grow_inners(inners);
        if leaves > self.values.capacity() {
            let more = leaves - self.values.len();
            if self.values.capacity() == 0 {
                self.values.reserve_exact(more);
            } else {
                self.values.reserve(more);
            }
        }
    }

    /// Grows the leaf arena to hold at least `needed` nodes (see
    /// [`grow`](Self::grow)).
    fn grow_leaves(&mut self, needed: usize) {
        let readers = self.has_readers();
        // SAFETY: `&mut self`: the tree is the arena's one writer; with the
        // header unshared or held by the tree alone, no reader exists (only
        // `reader(&mut self)` makes one).
        unsafe { Self::grow(&self.header.leaves, needed, readers) };
        self.leaf_buf = Buf::of(&self.header.leaves);
    }

    /// Grows the inner-node arena like [`grow_leaves`](Self::grow_leaves).
    fn grow_inners(&mut self, needed: usize) {
        let readers = self.has_readers();
        // SAFETY: as in `grow_leaves`.
        unsafe { Self::grow(&self.header.inners, needed, readers) };
        self.inner_buf = Buf::of(&self.header.inners);
    }

    /// Grows `arena` to hold at least `needed` nodes: exactly if it is
    /// empty, else to at least twice its size. The old buffer is kept for
    /// readers if there may be any, else freed at once.
    ///
    /// # Safety
    ///
    /// As for [`Arena::grow_to`].
    unsafe fn grow<T: Node>(arena: &Arena<T>, needed: usize, readers: bool) {
        let cap = arena.capacity();
        if needed > cap {
            let cap = if cap == 0 {
                needed
            } else {
                needed.max(2 * cap)
            };
            // SAFETY: passed on from the caller.
            unsafe { arena.grow_to(cap, readers) };
        }
    }

    // -- Writing --------------------------------------------------------------

    /// Starts a change readers must not trust: makes the sequence count odd.
    #[inline]
    fn begin_write(&mut self) {
        debug_assert!(self.seq & 1 == 0, "area tree: nested change");
        self.seq += 1;
        if let Home::Shared(h) = &self.header {
            h.seq.store(self.seq, Relaxed);
            fence(Release);
        }
    }

    /// Ends a change: publishes the root and height, and makes the sequence
    /// count even again.
    #[inline]
    fn end_write(&mut self) {
        self.seq += 1;
        if let Home::Shared(h) = &self.header {
            h.root.store(self.root, Relaxed);
            h.height.store(self.height as u32, Relaxed);
            h.seq.store(self.seq, Release);
        }
    }

    /// Runs `f`, a change, between [`begin_write`](Self::begin_write) and
    /// [`end_write`](Self::end_write).
    #[inline]
    fn write<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        self.begin_write();
        let r = f(self);
        self.end_write();
        r
    }

    #[inline(always)]
    fn leaves(&self) -> &[Leaf] {
        self.leaf_buf.get()
    }

    #[inline(always)]
    fn inners(&self) -> &[Inner] {
        self.inner_buf.get()
    }

    #[inline(always)]
    fn leaf(&self, i: u32) -> &Leaf {
        &self.leaves()[i as usize]
    }

    #[inline(always)]
    fn inner(&self, i: u32) -> &Inner {
        &self.inners()[i as usize]
    }

    // -- Node allocation ----------------------------------------------------

    /// An empty leaf: a freed one, or else the next one of the arena.
    fn alloc_leaf(&mut self) -> u32 {
        let i = self.free_leaves;
        if i != NIL {
            let leaf = &self.leaf_buf.get()[i as usize];
            self.free_leaves = leaf.next.get();
            leaf.clear();
            self.free_leaf_count -= 1;
            return i;
        }
        let i = self.values.len();
        self.grow_leaves(i + 1);
        self.values.push([const { None }; CAP]);
        self.leaves()[i].clear();
        index(i)
    }

    /// Puts an emptied leaf on the free list (linked through its `next`).
    /// Its length is 0, so hints naming it fail validation.
    fn free_leaf(&mut self, i: u32) {
        debug_assert!(self.values[i as usize].iter().all(Option::is_none));
        let leaf = self.leaf(i);
        debug_assert!(leaf.len() == 0);
        leaf.clear();
        leaf.next.set(self.free_leaves);
        self.free_leaves = i;
        self.free_leaf_count += 1;
    }

    /// An empty inner node: a freed one, or else the next one of the arena.
    fn alloc_inner(&mut self) -> u32 {
        let i = self.free_inners;
        if i != NIL {
            let node = &self.inner_buf.get()[i as usize];
            self.free_inners = node.child(0);
            node.clear();
            self.free_inner_count -= 1;
            return i;
        }
        let i = self.inners_len;
        self.grow_inners(i + 1);
        self.inners_len += 1;
        self.inners()[i].clear();
        index(i)
    }

    /// Clears an inner node and puts it on the free list (linked through
    /// its first child slot).
    fn free_inner(&mut self, i: u32) {
        let node = self.inner(i);
        node.clear();
        node.children[0].set(self.free_inners);
        self.free_inners = i;
        self.free_inner_count += 1;
    }

    // -- Descents -----------------------------------------------------------

    /// The leaf whose entries include the greatest start `<= key`, if there
    /// is such an entry (the tree must not be empty).
    #[inline(always)]
    fn descend(&self, key: u64) -> u32 {
        let inners = self.inners();
        let mut node = self.root;
        for _ in 1..self.height {
            let inner = &inners[node as usize];
            node = inner.child(inner.child_for(key));
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
            let inner = self.inner(node);
            let c = inner.child_for(key);
            if c < inner.nkeys() {
                next_start = inner.key(c);
            }
            path.steps[path.len] = (node, c);
            path.len += 1;
            node = inner.child(c);
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
            let inner = self.inner(b.leaf);
            let c = inner.child_for(key);
            if c > 0 {
                b.left_sep = Some((b.leaf, c - 1));
            }
            if c < inner.nkeys() {
                b.next_start = inner.key(c);
            }
            b.leaf = inner.child(c);
        }
        b
    }

    /// `(start, end)` of the entry with the greatest start `<= key`.
    fn last_at_or_before(&self, key: u64) -> Option<(u64, u64)> {
        if self.height == 0 {
            return None;
        }
        let leaf = self.leaf(self.descend(key));
        let i = leaf.rank(key);
        (i > 0).then(|| leaf.bounds(i - 1))
    }

    /// Entry `j` of leaf `l` with its tag.
    #[inline(always)]
    fn tagged(&self, l: u32, j: usize) -> Option<Tagged<'_, V>> {
        let leaf = self.leaf(l);
        let (start, end) = leaf.bounds(j);
        let value = self.values[l as usize][j].as_ref()?;
        Some((start, end, value, &leaf.tags[j].0))
    }

    // -- Queries ------------------------------------------------------------

    /// The entry containing point `n` (`start <= n < end`), as
    /// `(start, end, &value)`: one descent, no allocation.
    #[inline]
    pub fn find(&self, n: u64) -> Option<Entry<'_, V>> {
        self.find_tagged(n, None).map(|(s, e, v, _)| (s, e, v))
    }

    /// The same result as [`find`](Self::find), but first tries the leaf
    /// recorded in `hint` and, if that does not cover `n`, descends and
    /// records the leaf it reached (a single-leaf tree skips the hint). See
    /// the [module documentation](self#the-lookup-hint) for why a hinted
    /// leaf that covers `n` gives the right answer.
    #[inline]
    pub fn find_hinted(&self, n: u64, hint: &Hint) -> Option<Entry<'_, V>> {
        self.find_tagged(n, Some(hint))
            .map(|(s, e, v, _)| (s, e, v))
    }

    /// [`find`](Self::find) or, with a hint, [`find_hinted`](Self::find_hinted),
    /// also returning the entry's tag.
    #[inline]
    pub fn find_tagged(&self, n: u64, hint: Option<&Hint>) -> Option<Tagged<'_, V>> {
        if self.height == 0 {
            return None;
        }
        let Some(l) = locate(
            self.leaves(),
            self.inners(),
            (self.root, self.height),
            n,
            hint,
        ) else {
            debug_assert!(false, "area tree: a descent left the arena");
            return None;
        };
        if let Some(h) = hint.filter(|_| self.height > 1) {
            if h.0.load(Relaxed) != l {
                h.0.store(l, Relaxed);
            }
        }
        let j = self.leaf(l).lookup(n)?;
        self.tagged(l, j)
    }

    /// The entry starting exactly at `start`, as `(end, &value)`.
    pub fn get(&self, start: u64) -> Option<(u64, &V)> {
        if self.height == 0 {
            return None;
        }
        let l = self.descend(start);
        let i = self.leaf(l).position(start)?;
        Some((
            self.leaf(l).ends[i].get(),
            self.values[l as usize][i].as_ref()?,
        ))
    }

    /// The entry starting exactly at `start`, as `(end, &mut value)`.
    pub fn get_mut(&mut self, start: u64) -> Option<(u64, &mut V)> {
        if self.height == 0 {
            return None;
        }
        let l = self.descend(start);
        let i = self.leaf(l).position(start)?;
        let end = self.leaf(l).ends[i].get();
        Some((end, self.values[l as usize][i].as_mut()?))
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
        let l = self.descend(n);
        let leaf = self.leaf(l);
        let i = leaf.rank(n);
        let entry = |l: u32, j: usize| self.tagged(l, j).map(|(s, e, v, _)| (s, e, v));
        let before = if i > 0 { entry(l, i - 1) } else { None };
        let after = if i < leaf.len() {
            entry(l, i)
        } else {
            // A live leaf's successor is live (or NIL).
            let next = leaf.next.get();
            if next == NIL {
                None
            } else {
                entry(next, 0)
            }
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
        let leaf = self.leaf(self.descend(end - 1));
        let i = leaf.rank(end - 1);
        if i == 0 {
            return false;
        }
        let (s, e) = leaf.bounds(i - 1);
        if Some(s) != ignore {
            return e > start;
        }
        // The entry before the ignored one ends at or before `s`.
        if s <= start {
            return false;
        }
        let before = if i >= 2 {
            Some(leaf.ends[i - 2].get())
        } else {
            self.last_at_or_before(s - 1).map(|(_, e)| e)
        };
        before.is_some_and(|e| e > start)
    }

    /// The entries in ascending order, as `(start, end, &value)`.
    pub fn iter(&self) -> Iter<'_, V> {
        let mut leaf = if self.height == 0 { NIL } else { self.root };
        for _ in 1..self.height {
            leaf = self.inner(leaf).child(0);
        }
        Iter {
            tree: self,
            leaf,
            pos: 0,
            remaining: self.len,
        }
    }

    /// The entries in ascending order with their tags, as
    /// `(start, end, &value, &tag)`.
    pub fn iter_tagged(&self) -> impl Iterator<Item = Tagged<'_, V>> + '_ {
        let mut it = self.iter();
        core::iter::from_fn(move || it.next_tagged())
    }

    // -- Changes ------------------------------------------------------------

    /// Inserts `[start, end) -> value` with tag 0. Refuses, handing the
    /// value back, if the range is empty (`start >= end`) or intersects an
    /// entry.
    pub fn insert(&mut self, start: u64, end: u64, value: V) -> Result<(), V> {
        self.insert_tagged(start, end, 0, value)
    }

    /// Inserts `[start, end) -> value` like [`insert`](Self::insert), with
    /// the tag `tag`: a word kept beside the entry, which
    /// [`find_tagged`](Self::find_tagged) hands out as an atomic that its
    /// owner may change at any time, and which a [`Reader`] returns with the
    /// entry. (The area tree of an address space keeps each area's summary
    /// there.)
    pub fn insert_tagged(&mut self, start: u64, end: u64, tag: u64, value: V) -> Result<(), V> {
        if start >= end {
            return Err(value);
        }
        let r = self.insert_inner((start, end, tag), value);
        self.end_write_if_open();
        r
    }

    /// Ends the change under way, if one was begun (a refused change
    /// begins none, so readers need not retry for it).
    #[inline]
    fn end_write_if_open(&mut self) {
        if self.seq & 1 == 1 {
            self.end_write();
        }
    }

    fn insert_inner(&mut self, entry: (u64, u64, u64), value: V) -> Result<(), V> {
        let (start, end, _) = entry;
        if self.height == 0 {
            self.begin_write();
            let l = self.alloc_leaf();
            leaf_insert(
                &self.leaf_buf.get()[l as usize],
                &mut self.values[l as usize],
                0,
                entry,
                value,
            );
            self.root = l;
            self.height = 1;
            self.len = 1;
            return Ok(());
        }
        let mut path = Path::new();
        let (node, next_start) = self.descend_path(start, &mut path);
        let leaf = self.leaf(node);
        let i = leaf.rank(start);
        // The entry before: the greatest start <= `start` (also catches an
        // equal start, since its end is greater).
        if i > 0 && leaf.ends[i - 1].get() > start {
            return Err(value);
        }
        // The entry after: the least start > `start`.
        let after = if i < leaf.len() {
            leaf.starts[i].get()
        } else {
            next_start
        };
        if after < end {
            return Err(value);
        }
        self.begin_write();
        self.len += 1;
        let leaves = self.leaf_buf.get();
        if leaves[node as usize].len() < CAP {
            leaf_insert(
                &leaves[node as usize],
                &mut self.values[node as usize],
                i,
                entry,
                value,
            );
            return Ok(());
        }
        // A full leaf spills into a sibling if it can.
        if path.len > 0 {
            let (p, c) = path.steps[path.len - 1];
            let parent = &self.inner_buf.get()[p as usize];
            let room = |j: usize| CAP - leaves[parent.child(j) as usize].len();
            match spill(i, c, parent.nkeys(), room) {
                Some(Spill::Left(k)) => {
                    let l = parent.child(c - 1);
                    let (lv, nv) = pair_mut(&mut self.values, l as usize, node as usize);
                    let (sib, leaf) = (&leaves[l as usize], &leaves[node as usize]);
                    leaf_take_front((sib, lv), (leaf, &mut *nv), k);
                    leaf_insert(leaf, nv, i - k, entry, value);
                    parent.keys[c - 1].set(leaf.starts[0].get());
                    return Ok(());
                }
                Some(Spill::Right(k)) => {
                    let r = parent.child(c + 1);
                    let (nv, rv) = pair_mut(&mut self.values, node as usize, r as usize);
                    let (leaf, sib) = (&leaves[node as usize], &leaves[r as usize]);
                    leaf_give_back((leaf, &mut *nv), (sib, rv), k);
                    leaf_insert(leaf, nv, i, entry, value);
                    parent.keys[c].set(sib.starts[0].get());
                    return Ok(());
                }
                None => {}
            }
        }

        // Split the full leaf: the left part gets `at` of the CAP + 1
        // entries, the right part the rest.
        let mid = if i <= CAP / 2 { CAP / 2 + 1 } else { CAP / 2 };
        let at = split_point(i, MIN_LEAF, mid, CAP + 1 - MIN_LEAF);
        let r = self.alloc_leaf();
        let leaves = self.leaf_buf.get();
        let (leaf, right) = (&leaves[node as usize], &leaves[r as usize]);
        let (nv, rv) = pair_mut(&mut self.values, node as usize, r as usize);
        if i < at {
            leaf_give_back((leaf, &mut *nv), (right, &mut *rv), CAP - (at - 1));
            leaf_insert(leaf, nv, i, entry, value);
        } else {
            leaf_give_back((leaf, &mut *nv), (right, &mut *rv), CAP - at);
            leaf_insert(right, rv, i - at, entry, value);
        }
        right.next.set(leaf.next.get());
        leaf.next.set(r);
        let key = right.starts[0].get();
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
            let node = self.inner(p);
            if node.nkeys() < CAP {
                node.insert_at(i, key, child);
                return;
            }
            if level > 0 {
                let (pp, c) = path.steps[level - 1];
                let parent = self.inner(pp);
                let room = |j: usize| CAP - self.inner(parent.child(j)).nkeys();
                // The new child goes to `children[i + 1]`: `i + 1` children
                // are before it, of which `i` may move left (the one just
                // before it stays), and `CAP - i` after it.
                match spill(i, c, parent.nkeys(), room) {
                    Some(Spill::Left(k)) => {
                        let (sib, sep) = (self.inner(parent.child(c - 1)), parent.key(c - 1));
                        let sep = inner_take_front(sib, node, sep, k);
                        node.insert_at(i - k, key, child);
                        parent.keys[c - 1].set(sep);
                        return;
                    }
                    Some(Spill::Right(k)) => {
                        let (sib, sep) = (self.inner(parent.child(c + 1)), parent.key(c));
                        let sep = inner_give_back(node, sib, sep, k);
                        node.insert_at(i, key, child);
                        parent.keys[c].set(sep);
                        return;
                    }
                    None => {}
                }
            }
            let m = split_point(i, MIN_KEYS, CAP / 2, CAP - MIN_KEYS);
            let right = self.alloc_inner();
            key = self
                .inner(p)
                .insert_split(i, key, child, m, self.inner(right));
            child = right;
        }
        assert!(
            self.height <= MAX_INNER_LEVELS,
            "area tree: height limit exceeded"
        );
        let r = self.alloc_inner();
        let root = self.inner(r);
        root.keys[0].set(key);
        root.children[0].set(self.root);
        root.children[1].set(child);
        root.nkeys.set(1);
        self.root = r;
        self.height += 1;
    }

    /// Removes the entry starting exactly at `start`, returning its end and
    /// value.
    pub fn remove(&mut self, start: u64) -> Option<(u64, V)> {
        if self.height == 0 {
            return None;
        }
        let r = self.remove_inner(start);
        self.end_write_if_open();
        r
    }

    fn remove_inner(&mut self, start: u64) -> Option<(u64, V)> {
        let mut path = Path::new();
        let (node, _) = self.descend_path(start, &mut path);
        let pos = self.leaf(node).position(start)?;
        self.begin_write();
        let leaf = &self.leaf_buf.get()[node as usize];
        let (_, end, value) = leaf_remove(leaf, &mut self.values[node as usize], pos);
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
            let first = self.leaf(node).starts[0].get();
            if let Some(&(p, c)) = path.steps[..path.len].iter().rev().find(|&&(_, c)| c > 0) {
                self.inner(p).keys[c - 1].set(first);
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
            if self.inner(node).nkeys() >= MIN_KEYS {
                return;
            }
            let (p, c) = path.steps[level - 1];
            if !self.fix_inner(p, c) {
                return;
            }
        }
        let root = self.root;
        if self.inner(root).nkeys() == 0 {
            self.root = self.inner(root).child(0);
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
        let parent = &self.inner_buf.get()[p as usize];
        let (l, r) = (parent.child(slot), parent.child(slot + 1));
        let leaves = self.leaf_buf.get();
        let (left, right) = (&leaves[l as usize], &leaves[r as usize]);
        let (lv, rv) = pair_mut(&mut self.values, l as usize, r as usize);
        let (ln, rn) = (left.len(), right.len());
        if ln + rn < 2 * MIN_LEAF {
            leaf_take_front((left, lv), (right, rv), rn);
            left.next.set(right.next.get());
            self.free_leaf(r);
            self.inner(p).remove_at(slot);
            return true;
        }
        // The underfull one is the smaller; it gets half (rounded down).
        let half = (ln + rn) / 2;
        if ln < rn {
            leaf_take_front((left, lv), (right, rv), half - ln);
        } else {
            leaf_give_back((left, lv), (right, rv), half - rn);
        }
        parent.keys[slot].set(right.starts[0].get());
        false
    }

    /// Refills the inner node `children[c]` of inner node `p` like
    /// [`fix_leaf`](Self::fix_leaf): evens out the children of the two
    /// siblings, rotating them through the parent, if both can reach
    /// `MIN_KEYS` keys, else merges the two around their separator (into at
    /// most `2 * MIN_KEYS <= CAP` keys). Returns whether `p` lost a key.
    fn fix_inner(&mut self, p: u32, c: usize) -> bool {
        let slot = c.saturating_sub(1);
        let parent = self.inner(p);
        let (l, r) = (parent.child(slot), parent.child(slot + 1));
        let sep = parent.key(slot);
        let (left, right) = (self.inner(l), self.inner(r));
        let (ln, rn) = (left.nkeys(), right.nkeys());
        if ln + rn < 2 * MIN_KEYS {
            left.keys[ln].set(sep);
            copy(&left.keys[ln + 1..ln + 1 + rn], &right.keys[..rn]);
            copy(&left.children[ln + 1..ln + 2 + rn], &right.children[..=rn]);
            left.nkeys.set((ln + 1 + rn) as u32);
            self.free_inner(r);
            self.inner(p).remove_at(slot);
            return true;
        }
        // The underfull one is the smaller; it gets half the children.
        let half = (ln + rn + 2) / 2;
        let new_sep = if ln < rn {
            inner_take_front(left, right, sep, half - (ln + 1))
        } else {
            inner_give_back(left, right, sep, half - (rn + 1))
        };
        parent.keys[slot].set(new_sep);
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
        let leaf = self.leaf(b.leaf);
        let Some(i) = leaf.position(start) else {
            return false;
        };
        let after = if i + 1 < leaf.len() {
            leaf.starts[i + 1].get()
        } else {
            b.next_start
        };
        if after < end {
            return false;
        }
        self.write(|t| t.leaf(b.leaf).ends[i].set(end));
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
        let leaf = self.leaf(b.leaf);
        // Entries `..r` start at or before `start`; the one at `r`, or else
        // the first of the next leaf, starts after it.
        let r = leaf.rank(start);
        let before = (r > 0).then(|| leaf.bounds(r - 1));
        let after = if r < leaf.len() {
            Some(leaf.bounds(r))
        } else {
            // A live leaf's successor is live (or NIL).
            let next = leaf.next.get();
            (next != NIL).then(|| self.leaf(next).bounds(0))
        };
        let free = start < end
            && after.is_none_or(|(s, _)| s >= end)
            && before.is_none_or(|(_, e)| e <= start);
        match (before, after) {
            _ if !free => {}
            // Touching the entry before (which is in this leaf), not the one
            // after.
            (Some((_, e)), a) if e == start && a.is_none_or(|(s, _)| s != end) => {
                self.write(|t| t.leaf(b.leaf).ends[r - 1].set(end));
                return Ok(());
            }
            // Touching the entry after, which is not the first of this leaf
            // (`r > 0`), so its start is no separator; the entry before ends
            // short of `start`.
            (Some((_, e)), Some((s, _))) if e < start && s == end && r < leaf.len() => {
                self.write(|t| t.leaf(b.leaf).starts[r].set(start));
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
        let leaf = self.leaf(b.leaf);
        let Some(i) = leaf.position(start) else {
            return false;
        };
        if new_start >= leaf.ends[i].get() {
            return false;
        }
        if new_start < start {
            // `start > new_start >= 0`, so `start - 1` does not wrap.
            let before_end = if i > 0 {
                Some(leaf.ends[i - 1].get())
            } else {
                self.last_at_or_before(start - 1).map(|(_, e)| e)
            };
            if before_end.is_some_and(|e| e > new_start) {
                return false;
            }
        }
        self.write(|t| {
            t.leaf(b.leaf).starts[i].set(new_start);
            // The separator naming the leaf's first start must follow.
            if i == 0 {
                if let Some((p, k)) = b.left_sep {
                    t.inner(p).keys[k].set(new_start);
                }
            }
        });
        true
    }

    /// Removes every entry, returning them in ascending order; the tree
    /// keeps its arenas' capacity.
    pub fn drain(&mut self) -> Vec<(u64, u64, V)> {
        let mut out = Vec::with_capacity(self.len);
        self.begin_write();
        let mut leaf = self.iter().leaf;
        while leaf != NIL {
            let l = &self.leaf_buf.get()[leaf as usize];
            for (i, v) in self.values[leaf as usize].iter_mut().enumerate() {
                if let Some(v) = v.take() {
                    out.push((l.starts[i].get(), l.ends[i].get(), v));
                }
            }
            leaf = l.next.get();
        }
        // Nodes past the arenas' lengths must be empty: a hint may name one.
        self.leaf_buf.get()[..self.values.len()]
            .iter()
            .for_each(Leaf::clear);
        self.inner_buf.get()[..self.inners_len]
            .iter()
            .for_each(Inner::clear);
        self.values.clear();
        self.inners_len = 0;
        self.free_leaves = NIL;
        self.free_inners = NIL;
        self.free_leaf_count = 0;
        self.free_inner_count = 0;
        self.root = NIL;
        self.height = 0;
        self.len = 0;
        self.end_write();
        out
    }

    // -- Checking -----------------------------------------------------------

    /// Checks every structural invariant and panics, saying which, if one is
    /// broken: entries sorted, disjoint and non-empty; node fills; exact
    /// separators; all leaves at one depth and chained in order; `len`;
    /// free nodes empty and unreachable; the height bound of
    /// [`max_height`](Self::max_height); the root and height published to
    /// readers. Costs O(nodes); for tests.
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        assert_eq!(self.seq % 2, 0, "a change left open");
        if let Home::Shared(h) = &self.header {
            assert_eq!(
                h.seq.load(Relaxed),
                self.seq,
                "sequence count not published"
            );
            assert_eq!(h.root.load(Relaxed), self.root, "root not published");
            assert_eq!(
                h.height.load(Relaxed) as usize,
                self.height,
                "height not published"
            );
        }
        let mut seen_leaf = alloc::vec![false; self.values.len()];
        let mut seen_inner = alloc::vec![false; self.inners_len];
        let (mut i, mut count) = (self.free_leaves, 0);
        while i != NIL {
            assert!(
                (i as usize) < self.values.len(),
                "free leaf {i} out of range"
            );
            let leaf = self.leaf(i);
            assert!(!seen_leaf[i as usize], "leaf {i} twice on the free list");
            seen_leaf[i as usize] = true;
            assert_eq!(leaf.len(), 0, "free leaf {i} not empty");
            assert!(
                leaf.starts.iter().all(|s| s.get() == PAD)
                    && self.values[i as usize].iter().all(Option::is_none),
                "free leaf {i} holds data"
            );
            count += 1;
            i = leaf.next.get();
        }
        assert_eq!(count, self.free_leaf_count, "free leaf count");
        let (mut i, mut count) = (self.free_inners, 0);
        while i != NIL {
            assert!(
                (i as usize) < self.inners_len,
                "free inner {i} out of range"
            );
            let inner = self.inner(i);
            assert!(!seen_inner[i as usize], "inner {i} twice on the free list");
            seen_inner[i as usize] = true;
            assert_eq!(inner.nkeys(), 0, "free inner {i} not empty");
            assert!(
                inner.keys.iter().all(|k| k.get() == PAD)
                    && inner.children[1..].iter().all(|c| c.get() == NIL),
                "free inner {i} holds data"
            );
            count += 1;
            i = inner.child(0);
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
                assert!(i < self.values.len(), "leaf index {i} out of range");
                assert!(!seen_leaf[i], "leaf {i} reached twice or free");
                seen_leaf[i] = true;
                let leaf = &self.leaves()[i];
                let n = leaf.len();
                assert!(n <= CAP, "leaf {i} overfull: {n}");
                if is_root {
                    assert!(n >= 1, "root leaf empty");
                } else {
                    assert!(n >= MIN_LEAF, "leaf {i} underfull: {n} < {MIN_LEAF}");
                }
                if let Some(lo) = lo {
                    assert_eq!(
                        leaf.starts[0].get(),
                        lo,
                        "leaf {i}: separator is not its first start"
                    );
                }
                for j in 0..n {
                    assert!(
                        leaf.starts[j].get() < leaf.ends[j].get(),
                        "leaf {i}: empty entry at {j}"
                    );
                    assert!(self.values[i][j].is_some(), "leaf {i}: no value at {j}");
                    if j + 1 < n {
                        assert!(
                            leaf.ends[j].get() <= leaf.starts[j + 1].get(),
                            "leaf {i}: overlap at {j}"
                        );
                    }
                    if let Some(hi) = hi {
                        assert!(leaf.starts[j].get() < hi, "leaf {i}: start above separator");
                    }
                }
                assert!(
                    leaf.starts[n..].iter().all(|s| s.get() == PAD),
                    "leaf {i}: bad padding"
                );
                assert!(
                    self.values[i][n..].iter().all(Option::is_none),
                    "leaf {i}: stray value"
                );
                leaves_in_order.push(node);
            } else {
                let i = node as usize;
                assert!(depth < self.height);
                assert!(i < self.inners_len, "inner index {i} out of range");
                assert!(!seen_inner[i], "inner {i} reached twice or free");
                seen_inner[i] = true;
                let inner = &self.inners()[i];
                let k = inner.nkeys();
                assert!(k <= CAP, "inner {i} overfull: {k}");
                if is_root {
                    assert!(k >= 1, "inner root with one child");
                } else {
                    assert!(k >= MIN_KEYS, "inner {i} underfull: {k} < {MIN_KEYS}");
                }
                assert!(
                    inner.keys[k..].iter().all(|s| s.get() == PAD),
                    "inner {i}: bad padding"
                );
                assert!(
                    inner.children[k + 1..].iter().all(|c| c.get() == NIL),
                    "inner {i}: stray child"
                );
                for j in 0..k {
                    assert!(
                        j == 0 || inner.key(j - 1) < inner.key(j),
                        "inner {i}: keys unsorted"
                    );
                    assert!(
                        lo.is_none_or(|lo| lo < inner.key(j)),
                        "inner {i}: key below range"
                    );
                    assert!(
                        hi.is_none_or(|hi| inner.key(j) < hi),
                        "inner {i}: key above range"
                    );
                }
                // Push right to left so that leaves pop left to right.
                for j in (0..=k).rev() {
                    let clo = if j == 0 { lo } else { Some(inner.key(j - 1)) };
                    let chi = if j == k { hi } else { Some(inner.key(j)) };
                    stack.push((inner.child(j), depth + 1, clo, chi));
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
            let l = self.leaf(leaf);
            let next = leaves_in_order.get(j + 1).copied().unwrap_or(NIL);
            assert_eq!(l.next.get(), next, "leaf {leaf}: broken chain");
            if let Some(e) = prev_end {
                assert!(
                    e <= l.starts[0].get(),
                    "leaf {leaf} overlaps the leaf before it"
                );
            }
            prev_end = Some(l.ends[l.len() - 1].get());
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
    tree: &'a AreaTree<V>,
    leaf: u32,
    pos: usize,
    remaining: usize,
}

impl<'a, V> Iter<'a, V> {
    /// The next entry with its tag.
    fn next_tagged(&mut self) -> Option<Tagged<'a, V>> {
        let tree = self.tree;
        loop {
            let leaf = tree.leaves().get(self.leaf as usize)?;
            if self.pos < leaf.len() {
                let i = self.pos;
                self.pos += 1;
                self.remaining -= 1;
                return tree.tagged(self.leaf, i);
            }
            self.leaf = leaf.next.get();
            self.pos = 0;
        }
    }
}

impl<'a, V> Iterator for Iter<'a, V> {
    type Item = (u64, u64, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        self.next_tagged().map(|(s, e, v, _)| (s, e, v))
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

// -- Lock-free reads --------------------------------------------------------------

/// Looks entries of an [`AreaTree`] up without a lock, while the tree's
/// owner may be changing it; made by [`AreaTree::reader`].
///
/// A lookup reads the tree's sequence count, descends as a locked lookup
/// would (every word it reads is an atomic, in node buffers that never
/// move or go away while the reader lives), and reads the count again: if
/// it was odd (a change under way) or moved, the answer may be torn and is
/// thrown away. So an answer that comes back is one the tree gave at some
/// moment during the call. It costs two more loads than a locked lookup
/// and writes nothing shared (unless it moves the hint), where a lock costs
/// two atomic read-modify-writes. A reader that outlives its tree finds it
/// empty.
#[derive(Clone)]
pub struct Reader(Arc<Header>);

/// [`Reader::find`] gave up: the tree changed under every attempt. The
/// caller takes the lock that keeps the tree still instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("seq", &self.0.seq.load(Relaxed))
            .finish_non_exhaustive()
    }
}

impl Reader {
    /// The entry containing `n` as `(start, end, tag)` (the tag's value at
    /// some moment of the call), or `None` if no entry contains it, with
    /// the same hint semantics as [`AreaTree::find_hinted`]. `Err(Busy)`
    /// after a few attempts that each saw the tree change.
    #[inline]
    pub fn find(&self, n: u64, hint: Option<&Hint>) -> Result<Option<(u64, u64, u64)>, Busy> {
        self.find_hinted_by(n, || hint)
    }

    /// [`find`](Self::find) with the hint fetched by `hint`, which runs only
    /// if the tree has inner nodes (a single leaf ignores hints), at most
    /// once: for a caller whose hint costs something to find, such as the
    /// current CPU's.
    #[inline(always)]
    pub fn find_hinted_by<'h>(
        &self,
        n: u64,
        hint: impl FnOnce() -> Option<&'h Hint>,
    ) -> Result<Option<(u64, u64, u64)>, Busy> {
        let h = &*self.0;
        let mut hint = Lazy {
            fetch: Some(hint),
            hint: None,
        };
        for _ in 0..TRIES {
            let seq = h.seq.load(Acquire);
            if seq & 1 == 1 {
                core::hint::spin_loop();
                continue;
            }
            let height = h.height.load(Relaxed) as usize;
            let root = h.root.load(Relaxed);
            let read = if height == 0 {
                Some((None, NIL))
            } else if height > MAX_INNER_LEVELS + 1 {
                None
            } else {
                let hint = if height > 1 { hint.get() } else { None };
                let (leaves, inners) = (h.leaves.nodes(), h.inners.nodes());
                locate(leaves, inners, (root, height), n, hint).and_then(|l| {
                    let leaf = leaves.get(l as usize)?;
                    let found = leaf.lookup(n).map(|j| {
                        let (s, e) = leaf.bounds(j);
                        (s, e, leaf.tags[j].get())
                    });
                    Some((found, l))
                })
            };
            fence(Acquire);
            if h.seq.load(Relaxed) != seq {
                continue;
            }
            let Some((found, leaf)) = read else {
                continue;
            };
            if let Some(hint) = if height > 1 { hint.get() } else { None } {
                if hint.0.load(Relaxed) != leaf {
                    hint.0.store(leaf, Relaxed);
                }
            }
            return Ok(found);
        }
        Err(Busy)
    }
}

/// A hint fetched on first use.
struct Lazy<'h, F> {
    fetch: Option<F>,
    hint: Option<&'h Hint>,
}

impl<'h, F: FnOnce() -> Option<&'h Hint>> Lazy<'h, F> {
    #[inline(always)]
    fn get(&mut self) -> Option<&'h Hint> {
        if let Some(fetch) = self.fetch.take() {
            self.hint = fetch();
        }
        self.hint
    }
}
