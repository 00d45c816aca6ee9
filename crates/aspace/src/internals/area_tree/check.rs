//! Invariant checking for tests: [`AreaTree::check_invariants`] (always
//! compiled, since `UsedSpace::check_invariants` calls it) and
//! `AreaTree::node_counts` (compiled only for tests and with the
//! `check-invariants` feature).

use alloc::vec::Vec;

use super::node::{CAP, MIN_KEYS, MIN_LEAF, NIL, PAD};
use super::AreaTree;

impl<V> AreaTree<V> {
    /// Live nodes: `(leaves, inner nodes)`, not counting freed ones. For
    /// tests and statistics.
    #[doc(hidden)]
    pub fn node_counts(&self) -> (usize, usize) {
        (
            self.leaves.len() - self.free_leaf_count,
            self.inners.len() - self.free_inner_count,
        )
    }

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
                    assert!(
                        u64::from(leaf.guards[j]) <= leaf.starts[j],
                        "leaf {i}: guard below page 0 at {j}"
                    );
                    if j + 1 < n {
                        assert!(
                            leaf.ends[j] <= leaf.low(j + 1),
                            "leaf {i}: overlap (guards included) at {j}"
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
                assert!(
                    leaf.guards[n..].iter().all(|&g| g == 0),
                    "leaf {i}: stray guard"
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
                assert!(e <= l.low(0), "leaf {leaf} overlaps the leaf before it");
            }
            prev_end = Some(l.ends[l.len() - 1]);
            count += l.len();
        }
        assert_eq!(
            count, self.len,
            "len is {} but the leaves hold {count}",
            self.len
        );
        if self.gaps {
            self.check_sums(self.root, 1);
        }
        assert!(
            self.height <= Self::max_height(self.len),
            "height {} above the bound {} for {} entries",
            self.height,
            Self::max_height(self.len),
            self.len
        );
    }

    /// Checks, for a tree with gaps, that every inner node's summary of
    /// each child equals the child's true summary, computed here from the
    /// entries themselves (not from stored summaries); returns the true
    /// summary of `node`'s subtree as `(largest gap, low, end)`.
    fn check_sums(&self, node: u32, depth: usize) -> (u64, u64, u64) {
        if depth == self.height {
            let leaf = &self.leaves[node as usize];
            let n = leaf.len();
            let low = |j: usize| leaf.starts[j] - u64::from(leaf.guards[j]);
            let gap = (1..n).map(|j| low(j) - leaf.ends[j - 1]).max().unwrap_or(0);
            return (gap, low(0), leaf.ends[n - 1]);
        }
        let inner = &self.inners[node as usize];
        let mut whole: Option<(u64, u64, u64)> = None;
        for c in 0..=inner.nkeys() {
            let (gap, lo, hi) = self.check_sums(inner.children[c], depth + 1);
            let stored = self.sums[node as usize][c];
            assert_eq!(
                (stored.gap, stored.lo, stored.hi),
                (gap, lo, hi),
                "inner {node}: summary of child {c} (gap, low, end) is stale"
            );
            whole = Some(match whole {
                None => (gap, lo, hi),
                Some((g, l, h)) => (g.max(gap).max(lo - h), l, hi),
            });
        }
        whole.expect("an inner node has children")
    }
}
