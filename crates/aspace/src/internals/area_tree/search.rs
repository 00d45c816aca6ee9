//! Lookups: the descents from the root (plain, recording the route, or
//! noting the separators beside it), the point and exact-start queries,
//! neighbours and overlap checks, and the [`Hint`] that lets a lookup skip
//! the descent.

use core::sync::atomic::{AtomicU32, Ordering::Relaxed};

use super::node::{Leaf, MAX_INNER_LEVELS, NIL, PAD};
use super::{AreaTree, Entry};

/// The route of a descent: for each inner level from the root, the node and
/// the slot of the child taken.
pub(super) struct Path {
    pub(super) steps: [(u32, usize); MAX_INNER_LEVELS],
    pub(super) len: usize,
}

impl Path {
    pub(super) fn new() -> Self {
        Path {
            steps: [(NIL, 0); MAX_INNER_LEVELS],
            len: 0,
        }
    }
}

/// What [`AreaTree::descend_bounds`] found.
pub(super) struct Bounds {
    /// The leaf reached.
    pub(super) leaf: u32,
    /// `(inner node, key index)` of the separator equal to the leaf's first
    /// start, unless it is the first leaf.
    pub(super) left_sep: Option<(u32, usize)>,
    /// The first start after the leaf, or `PAD`.
    pub(super) next_start: u64,
}

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

impl<V> AreaTree<V> {
    // -- Descents -----------------------------------------------------------

    /// The leaf whose entries include the greatest start `<= key`, if there
    /// is such an entry (the tree must not be empty).
    #[inline(always)]
    pub(super) fn descend(&self, key: u64) -> u32 {
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
    pub(super) fn descend_path(&self, key: u64, path: &mut Path) -> (u32, u64) {
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
    pub(super) fn descend_bounds(&self, key: u64) -> Bounds {
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
    pub(super) fn last_at_or_before(&self, key: u64) -> Option<(u64, u64)> {
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
    /// records the leaf it reached (a single-leaf tree skips the hint). See the [module documentation](super#the-lookup-hint)
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
        (before, self.entry_from(leaf, i))
    }

    /// The entry at rank `i` of `leaf`, or the first entry of the next leaf
    /// when `i` is past the leaf's last entry.
    fn entry_from<'a>(&'a self, leaf: &'a Leaf<V>, i: usize) -> Option<Entry<'a, V>> {
        if i < leaf.len() {
            leaf.entry(i)
        } else {
            // A live leaf's successor is live (or NIL, which is no index).
            self.leaves
                .get(leaf.next as usize)
                .and_then(|next| next.entry(0))
        }
    }

    /// The entry with the greatest start `<= n` (the one containing `n`,
    /// if any does) with the entries just before and just after it, each
    /// as `(start, end, &value)`: `[before, at, after]`. One descent unless
    /// the entry at `n` is the first of its leaf (then a second one looks
    /// for the entry before it).
    pub fn around(&self, n: u64) -> [Option<Entry<'_, V>>; 3] {
        if self.height == 0 {
            return [None, None, None];
        }
        let leaf = &self.leaves[self.descend(n) as usize];
        let i = leaf.rank(n);
        let after = self.entry_from(leaf, i);
        let at = if i > 0 { leaf.entry(i - 1) } else { None };
        let before = match i {
            0 | 1 => at.and_then(|(s, _, _)| {
                let p = s.checked_sub(1)?;
                let leaf = &self.leaves[self.descend(p) as usize];
                let j = leaf.rank(p);
                if j > 0 {
                    leaf.entry(j - 1)
                } else {
                    None
                }
            }),
            _ => leaf.entry(i - 2),
        };
        [before, at, after]
    }

    /// Whether `[start, end)` intersects any entry, or any entry's guard
    /// pages, other than the entry starting at `ignore` (if there is one).
    /// An empty range (`start >= end`) intersects nothing.
    ///
    /// Only the entry with the greatest start `< end` can intersect, since
    /// every earlier entry ends at or before that one's start; if that one
    /// is ignored, only the entry before it can. The guard of the entry
    /// after it (the least start `>= end`) may reach below `end`. So this
    /// is one descent, two when the ignored entry is the first of its leaf.
    pub fn overlaps(&self, start: u64, end: u64, ignore: Option<u64>) -> bool {
        if start >= end || self.height == 0 {
            return false;
        }
        let l = self.descend(end - 1);
        let leaf = &self.leaves[l as usize];
        let i = leaf.rank(end - 1);
        let next_guard_hit = match i < leaf.len() {
            true => Some(leaf.starts[i]) != ignore && leaf.low(i) < end,
            false => self
                .leaves
                .get(leaf.next as usize)
                .is_some_and(|n| n.len() > 0 && Some(n.starts[0]) != ignore && n.low(0) < end),
        };
        if next_guard_hit {
            return true;
        }
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
}
