//! Free gaps: keeping each inner node's summaries of its children
//! ([`Sum`]: largest gap inside, lowest page taken, end of the last entry)
//! up to date after a change, and the two searches that use them to skip
//! whole subtrees, [`AreaTree::lowest_fit`] and [`AreaTree::highest_fit`].
//!
//! A *gap* is the free run between two consecutive entries, from the end of
//! the first to the *low* of the second (its start less its guard pages).
//! A subtree's summary holds the largest gap between entries inside it; the
//! gaps between two neighbouring subtrees are read off their summaries
//! (`next.lo - prev.hi`). A search for `size` pages with `guard` guard
//! pages enters a subtree only if its largest gap is at least
//! `size + guard` and it reaches past the bound, so it descends along at
//! most a few routes: O(log n) node visits. An alignment can make a gap
//! that is large enough not fit; such a gap costs a visit, and the search
//! goes on to the next one (so results equal a scan's exactly).

use core::ops::Range;

use super::node::{Sum, NIL, PAD};
use super::search::Path;
use super::AreaTree;

/// What a free-range search looks for: `size` pages at a base that is a
/// multiple of `align` pages, with `guard` free pages below the base
/// (which no entry, nor an entry's guard, may take).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fit {
    /// Pages of the range (at least 1).
    pub size: u64,
    /// Free pages kept below it.
    pub guard: u64,
    /// Alignment of the base, in pages: a power of two (1 for none).
    pub align: u64,
}

impl Fit {
    /// The least gap that can hold this fit (ignoring alignment).
    fn need(&self) -> u64 {
        self.size.saturating_add(self.guard)
    }

    /// Whether the request is well formed.
    fn valid(&self) -> bool {
        self.size > 0 && self.align.is_power_of_two()
    }
}

/// A search's fixed part: the window the whole range, guard included, must
/// lie in, and (searching upwards) the least base.
struct Query {
    lo: u64,
    hi: u64,
    bound: u64,
    fit: Fit,
}

impl Query {
    /// The lowest base in the free run `[a, b)`.
    fn lowest_in(&self, a: u64, b: u64) -> Option<u64> {
        let (a, b) = (a.max(self.lo), b.min(self.hi));
        let least = a.checked_add(self.fit.guard)?.max(self.bound);
        let base = least.checked_next_multiple_of(self.fit.align)?;
        (base.checked_add(self.fit.size)? <= b).then_some(base)
    }

    /// The highest base in the free run `[a, b)`.
    fn highest_in(&self, a: u64, b: u64) -> Option<u64> {
        let (a, b) = (a.max(self.lo), b.min(self.hi));
        let top = b.checked_sub(self.fit.size)?;
        let base = top & !(self.fit.align - 1);
        (base >= a.checked_add(self.fit.guard)? && base >= self.bound).then_some(base)
    }
}

/// How a search of one subtree ended.
enum Step {
    /// The base found.
    Found(u64),
    /// Nothing here; later subtrees may hold one.
    Next,
    /// Nothing here nor anywhere further in the search's direction.
    Stop,
}

impl<V> AreaTree<V> {
    // -- Keeping the summaries ------------------------------------------------

    /// The first page taken (start less guard) by the entry at position `i`
    /// of leaf `l`, or else by the first entry of the next leaf; `None` if
    /// there is no entry there.
    pub(super) fn low_after(&self, l: u32, i: usize) -> Option<u64> {
        let leaf = &self.leaves[l as usize];
        if i < leaf.len() {
            return Some(leaf.low(i));
        }
        self.leaves
            .get(leaf.next as usize)
            .filter(|n| n.len() > 0)
            .map(|n| n.low(0))
    }

    /// Recomputes the summaries of leaf children `a..=b` of inner node `p`.
    pub(super) fn refresh_leaf_slots(&mut self, p: u32, a: usize, b: usize) {
        if !self.gaps {
            return;
        }
        for c in a..=b {
            let child = self.inners[p as usize].children[c];
            self.sums[p as usize][c] = self.leaves[child as usize].summary();
        }
    }

    /// Recomputes the summaries of inner children `a..=b` of inner node `p`.
    pub(super) fn refresh_inner_slots(&mut self, p: u32, a: usize, b: usize) {
        if !self.gaps {
            return;
        }
        for c in a..=b {
            let child = self.inners[p as usize].children[c];
            let c_ = child as usize;
            self.sums[p as usize][c] = self.inners[c_].summary(&self.sums[c_]);
        }
    }

    /// After the slots of `path.steps[level]`'s node changed: its summary
    /// goes into its parent's slot, and so on up while summaries change.
    /// The route must still be the tree's above `level`.
    pub(super) fn refresh_up(&mut self, path: &Path, level: usize) {
        if !self.gaps {
            return;
        }
        for l in (0..level).rev() {
            let child = path.steps[l + 1].0;
            let sum = self.inners[child as usize].summary(&self.sums[child as usize]);
            let (p, c) = path.steps[l];
            debug_assert_eq!(self.inners[p as usize].children[c], child);
            let slot = &mut self.sums[p as usize][c];
            if *slot == sum {
                return;
            }
            *slot = sum;
        }
    }

    /// After the leaf at the end of `path` changed (in place, no node
    /// moved): its summary goes up the route.
    pub(super) fn refresh_leaf(&mut self, path: &Path) {
        if !self.gaps || path.len == 0 {
            return;
        }
        let (p, c) = path.steps[path.len - 1];
        let leaf = self.inners[p as usize].children[c];
        let sum = self.leaves[leaf as usize].summary();
        let slot = &mut self.sums[p as usize][c];
        if *slot == sum {
            return;
        }
        *slot = sum;
        self.refresh_up(path, path.len - 1);
    }

    /// After the leaf that a descent with `key` reaches changed in place:
    /// one more descent, recording the route, and the summaries up it.
    pub(super) fn refresh_after_change(&mut self, key: u64) {
        if !self.gaps || self.height <= 1 {
            return;
        }
        let mut path = Path::new();
        self.descend_path(key, &mut path);
        self.refresh_leaf(&path);
    }

    /// The summary of the whole tree (which must not be empty).
    fn root_summary(&self) -> Sum {
        if self.height == 1 {
            self.leaves[self.root as usize].summary()
        } else {
            let r = self.root as usize;
            self.inners[r].summary(&self.sums[r])
        }
    }

    /// The guard pages kept below the entry starting at `start`, if there is
    /// one.
    pub fn guard_of(&self, start: u64) -> Option<u64> {
        if self.height == 0 {
            return None;
        }
        let leaf = &self.leaves[self.descend(start) as usize];
        leaf.position(start).map(|i| u64::from(leaf.guards[i]))
    }

    /// The entry whose guard pages hold page `n` (it starts above `n`,
    /// and `n` is at or above its start less its guard), as
    /// `(start, end, &value)`.
    pub fn guarded_by(&self, n: u64) -> Option<(u64, u64, &V)> {
        if self.height == 0 {
            return None;
        }
        let l = self.descend(n);
        let leaf = &self.leaves[l as usize];
        let i = leaf.rank(n);
        let (leaf, j) = if i < leaf.len() {
            (leaf, i)
        } else {
            let next = self.leaves.get(leaf.next as usize)?;
            (next, 0)
        };
        let (s, e, v) = leaf.entry(j)?;
        (leaf.low(j) <= n && n < s).then_some((s, e, v))
    }

    // -- The searches ---------------------------------------------------------

    /// The lowest base `b >= bound` such that `[b - fit.guard, b + fit.size)`
    /// lies in `window` and meets no entry nor any entry's guard, with `b`
    /// a multiple of `fit.align` (HelenOS's placement of an area at any
    /// address, above a bound). `None` if there is none or the request is
    /// malformed (zero size, alignment not a power of two).
    ///
    /// O(log n) in a tree [with gaps](Self::with_gaps) (see the [module
    /// documentation](super#free-gaps-and-guards)); a scan of every entry in one
    /// without.
    pub fn lowest_fit(&self, window: Range<u64>, bound: u64, fit: Fit) -> Option<u64> {
        let q = Query {
            lo: window.start,
            hi: window.end,
            bound,
            fit,
        };
        if !fit.valid() || q.lo >= q.hi {
            return None;
        }
        if self.height == 0 {
            return q.lowest_in(0, PAD);
        }
        if !self.gaps {
            let mut prev = 0;
            for (s, e, _) in self.iter_lows() {
                if let Some(b) = q.lowest_in(prev, s) {
                    return Some(b);
                }
                prev = e;
            }
            return q.lowest_in(prev, PAD);
        }
        let root = self.root_summary();
        if let Some(b) = q.lowest_in(0, root.lo) {
            return Some(b);
        }
        match self.lowest_below(self.root, 1, &q) {
            Step::Found(b) => Some(b),
            Step::Stop => None,
            Step::Next => q.lowest_in(root.hi, PAD),
        }
    }

    /// The highest base `b` such that `[b - fit.guard, b + fit.size)` lies
    /// in `window` and meets no entry nor any entry's guard, with `b` a
    /// multiple of `fit.align` (top-down placement below a ceiling, as
    /// Linux places `mmap(NULL, ...)`). `None` if there is none or the
    /// request is malformed. Costs as [`lowest_fit`](Self::lowest_fit).
    pub fn highest_fit(&self, window: Range<u64>, fit: Fit) -> Option<u64> {
        let q = Query {
            lo: window.start,
            hi: window.end,
            bound: 0,
            fit,
        };
        if !fit.valid() || q.lo >= q.hi {
            return None;
        }
        if self.height == 0 {
            return q.highest_in(0, PAD);
        }
        if !self.gaps {
            let mut best = None;
            let mut prev = 0;
            for (s, e, _) in self.iter_lows() {
                best = q.highest_in(prev, s).or(best);
                prev = e;
            }
            return q.highest_in(prev, PAD).or(best);
        }
        let root = self.root_summary();
        if let Some(b) = q.highest_in(root.hi, PAD) {
            return Some(b);
        }
        match self.highest_below(self.root, 1, &q) {
            Step::Found(b) => Some(b),
            Step::Stop => None,
            Step::Next => q.highest_in(0, root.lo),
        }
    }

    /// The entries in order as `(low, end, &value)` (low: start less
    /// guard), for the scans of trees without gaps.
    fn iter_lows(&self) -> impl Iterator<Item = (u64, u64, &V)> + '_ {
        let mut leaf = if self.height == 0 { NIL } else { self.root };
        for _ in 1..self.height {
            leaf = self.inners[leaf as usize].children[0];
        }
        let mut pos = 0;
        core::iter::from_fn(move || loop {
            let l = self.leaves.get(leaf as usize)?;
            if pos < l.len() {
                pos += 1;
                return Some((l.low(pos - 1), l.ends[pos - 1], l.values[pos - 1].as_ref()?));
            }
            leaf = l.next;
            pos = 0;
        })
    }

    /// [`lowest_fit`](Self::lowest_fit) inside the subtree of `node` at
    /// `depth` (1 for the root): the gaps between its entries, lowest first.
    fn lowest_below(&self, node: u32, depth: usize, q: &Query) -> Step {
        let need = q.fit.need();
        if depth == self.height {
            let leaf = &self.leaves[node as usize];
            for j in 1..leaf.len() {
                let a = leaf.ends[j - 1];
                if a.saturating_add(need) > q.hi {
                    return Step::Stop;
                }
                if let Some(b) = q.lowest_in(a, leaf.low(j)) {
                    return Step::Found(b);
                }
            }
            return Step::Next;
        }
        let inner = &self.inners[node as usize];
        let sums = &self.sums[node as usize];
        let n = inner.nkeys();
        let past_bound = q.bound.saturating_add(q.fit.size);
        for i in 0..=n {
            let s = sums[i];
            // Every gap from here on starts at or above `s.lo`.
            if s.lo.saturating_add(need) > q.hi {
                return Step::Stop;
            }
            if s.gap >= need && s.hi >= past_bound {
                match self.lowest_below(inner.children[i], depth + 1, q) {
                    Step::Next => {}
                    done => return done,
                }
            }
            if i < n {
                if let Some(b) = q.lowest_in(s.hi, sums[i + 1].lo) {
                    return Step::Found(b);
                }
            }
        }
        Step::Next
    }

    /// [`highest_fit`](Self::highest_fit) inside the subtree of `node` at
    /// `depth`: the gaps between its entries, highest first.
    fn highest_below(&self, node: u32, depth: usize, q: &Query) -> Step {
        let need = q.fit.need();
        let floor = q.lo.saturating_add(need);
        if depth == self.height {
            let leaf = &self.leaves[node as usize];
            for j in (1..leaf.len()).rev() {
                let b = leaf.low(j);
                if b < floor {
                    return Step::Stop;
                }
                if let Some(base) = q.highest_in(leaf.ends[j - 1], b) {
                    return Step::Found(base);
                }
            }
            return Step::Next;
        }
        let inner = &self.inners[node as usize];
        let sums = &self.sums[node as usize];
        let n = inner.nkeys();
        for i in (0..=n).rev() {
            let s = sums[i];
            if i < n {
                if let Some(b) = q.highest_in(s.hi, sums[i + 1].lo) {
                    return Step::Found(b);
                }
            }
            // Every gap from here on ends at or below `s.hi`.
            if s.hi < floor {
                return Step::Stop;
            }
            if s.gap >= need && s.lo.saturating_add(need) <= q.hi {
                match self.highest_below(inner.children[i], depth + 1, q) {
                    Step::Next => {}
                    done => return done,
                }
            }
        }
        Step::Next
    }
}
