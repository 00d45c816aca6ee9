//! Removal: an entry leaves its leaf, and a node that falls below the
//! minimum is refilled from a sibling or merged with it, up to the root;
//! [`AreaTree::drain`] empties the tree at once.

use alloc::vec::Vec;

use super::arena::pair_mut;
use super::node::{inner_move_tail_to, inner_take_front, MIN_KEYS, MIN_LEAF, NIL};
use super::search::Path;
use super::AreaTree;

impl<V> AreaTree<V> {
    /// Removes the entry starting exactly at `start`, returning its end and
    /// value.
    pub fn remove(&mut self, start: u64) -> Option<(u64, V)> {
        self.remove_if(start, |_, _| true)
    }

    /// Removes the entry starting exactly at `start` if `take` says so
    /// of its end and value, returning them; one descent either way.
    pub fn remove_if(
        &mut self,
        start: u64,
        take: impl FnOnce(u64, &V) -> bool,
    ) -> Option<(u64, V)> {
        if self.height == 0 {
            return None;
        }
        let mut path = Path::new();
        let (node, _) = self.descend_path(start, &mut path);
        let leaf = &mut self.leaves[node as usize];
        let pos = leaf.position(start)?;
        if !take(leaf.ends[pos], leaf.values[pos].as_ref()?) {
            return None;
        }
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
        } else {
            self.refresh_leaf(&path);
        }
        Some((end, value))
    }

    /// Restores the fill after the leaf at the end of `path` fell below
    /// `MIN_LEAF`, level by level up, and collapses a root left with one
    /// child.
    fn rebalance(&mut self, path: &Path) {
        let (p, c) = path.steps[path.len - 1];
        if !self.fix_leaf(p, c) {
            self.refresh_up(path, path.len - 1);
            return;
        }
        // path.steps[level].0 lost a key.
        for level in (1..path.len).rev() {
            let node = path.steps[level].0;
            if self.inners[node as usize].nkeys() >= MIN_KEYS {
                self.refresh_up(path, level);
                return;
            }
            let (p, c) = path.steps[level - 1];
            if !self.fix_inner(p, c) {
                self.refresh_up(path, level - 1);
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
            self.inners[p as usize].remove_at(&mut self.sums[p as usize], slot);
            self.refresh_leaf_slots(p, slot, slot);
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
        self.refresh_leaf_slots(p, slot, slot + 1);
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
        let (ls, rs) = pair_mut(&mut self.sums, l as usize, r as usize);
        let (ln, rn) = (left.nkeys(), right.nkeys());
        if ln + rn < 2 * MIN_KEYS {
            left.keys[ln] = sep;
            left.keys[ln + 1..ln + 1 + rn].copy_from_slice(&right.keys[..rn]);
            left.children[ln + 1..ln + 2 + rn].copy_from_slice(&right.children[..=rn]);
            ls[ln + 1..ln + 2 + rn].copy_from_slice(&rs[..=rn]);
            left.nkeys = (ln + 1 + rn) as u32;
            self.free_inner(r);
            self.inners[p as usize].remove_at(&mut self.sums[p as usize], slot);
            self.refresh_inner_slots(p, slot, slot);
            return true;
        }
        // The underfull one is the smaller; it gets half the children.
        let half = (ln + rn + 2) / 2;
        let new_sep = if ln < rn {
            inner_take_front((left, ls), (right, rs), sep, half - (ln + 1))
        } else {
            inner_move_tail_to((left, ls), (right, rs), sep, half - (rn + 1))
        };
        self.inners[p as usize].keys[slot] = new_sep;
        self.refresh_inner_slots(p, slot, slot + 1);
        false
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
        self.sums.clear();
        self.free_leaves = NIL;
        self.free_inners = NIL;
        self.free_leaf_count = 0;
        self.free_inner_count = 0;
        self.root = NIL;
        self.height = 0;
        self.len = 0;
        out
    }
}
