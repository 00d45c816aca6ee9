//! Insertion: a new entry goes into its leaf; a full node first spills
//! items into a sibling, and else splits, up to a new root.

use super::arena::pair_mut;
use super::node::{
    inner_move_tail_to, inner_take_front, Inner, Sum, Sums, CAP, MAX_INNER_LEVELS, MIN_KEYS,
    MIN_LEAF,
};
use super::search::Path;
use super::AreaTree;

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

impl<V> AreaTree<V> {
    /// Inserts `[start, end) -> value`. Refuses, handing the value back, if
    /// the range is empty (`start >= end`) or intersects an entry (or an
    /// entry's guard pages).
    pub fn insert(&mut self, start: u64, end: u64, value: V) -> Result<(), V> {
        self.insert_guarded(start, end, 0, value)
    }

    /// Inserts `[start, end) -> value` with `guard` guard pages below it:
    /// `[start - guard, start)` is kept free of other entries (and of their
    /// guards), though lookups there find nothing. Refuses, handing the
    /// value back, if the range is empty, `start < guard`, or
    /// `[start - guard, end)` intersects an entry or an entry's guard.
    pub fn insert_guarded(&mut self, start: u64, end: u64, guard: u8, value: V) -> Result<(), V> {
        let Some(low) = start.checked_sub(u64::from(guard)) else {
            return Err(value);
        };
        if start >= end {
            return Err(value);
        }
        if self.height == 0 {
            let root = self.alloc_empty_leaf();
            self.leaves[root as usize].insert_at(0, start, end, guard, value);
            self.root = root;
            self.height = 1;
            self.len = 1;
            return Ok(());
        }
        let mut path = Path::new();
        let (node, _) = self.descend_path(start, &mut path);
        let leaf = &self.leaves[node as usize];
        let i = leaf.rank(start);
        // The entry before: the greatest start <= `start` (also catches an
        // equal start, since its end is greater).
        if i > 0 && leaf.ends[i - 1] > low {
            return Err(value);
        }
        // The entry after: the least start > `start`; its guard counts.
        if self.low_after(node, i).is_some_and(|after| after < end) {
            return Err(value);
        }
        self.len += 1;
        let leaf = &mut self.leaves[node as usize];
        if leaf.len() < CAP {
            leaf.insert_at(i, start, end, guard, value);
            self.refresh_leaf(&path);
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
                    leaf.insert_at(i - k, start, end, guard, value);
                    self.inners[p as usize].keys[c - 1] = leaf.starts[0];
                    self.refresh_leaf_slots(p, c - 1, c);
                    self.refresh_up(&path, path.len - 1);
                    return Ok(());
                }
                Some(Spill::Right(k)) => {
                    let r = parent.children[c + 1];
                    let (leaf, sib) = pair_mut(&mut self.leaves, node as usize, r as usize);
                    leaf.move_tail_to(sib, k);
                    leaf.insert_at(i, start, end, guard, value);
                    self.inners[p as usize].keys[c] = sib.starts[0];
                    self.refresh_leaf_slots(p, c, c + 1);
                    self.refresh_up(&path, path.len - 1);
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
            leaf.insert_at(i, start, end, guard, value);
            right
        } else {
            let mut right = leaf.split_off(at);
            right.insert_at(i - at, start, end, guard, value);
            right
        };
        right.next = leaf.next;
        let key = right.starts[0];
        let sum = if self.gaps {
            right.summary()
        } else {
            Sum::default()
        };
        let r = self.alloc_leaf(right);
        self.leaves[node as usize].next = r;
        // The left part is still its parent's child `c`.
        if let Some(&(p, c)) = path.steps[..path.len].last() {
            self.refresh_leaf_slots(p, c, c);
        }
        self.insert_upward(&path, key, r, sum);
        Ok(())
    }

    /// After the node at the end of `path` split, inserts the new right half
    /// `child` (whose least start is `key`) beside it in its parent. A full
    /// parent first tries to spill children into a sibling, like a full
    /// leaf, and else splits, and so on up to the root.
    fn insert_upward(&mut self, path: &Path, mut key: u64, mut child: u32, mut sum: Sum) {
        for level in (0..path.len).rev() {
            let (p, i) = path.steps[level];
            let node = &mut self.inners[p as usize];
            if node.nkeys() < CAP {
                node.insert_at(&mut self.sums[p as usize], i, key, child, sum);
                self.refresh_up(path, level);
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
                        let (ss, ns) = pair_mut(&mut self.sums, l as usize, p as usize);
                        let sep = inner_take_front((sib, ss), (&mut *node, &mut *ns), sep, k);
                        node.insert_at(ns, i - k, key, child, sum);
                        self.inners[pp as usize].keys[c - 1] = sep;
                        self.refresh_inner_slots(pp, c - 1, c);
                        self.refresh_up(path, level - 1);
                        return;
                    }
                    Some(Spill::Right(k)) => {
                        let (r, sep) = (parent.children[c + 1], parent.keys[c]);
                        let (node, sib) = pair_mut(&mut self.inners, p as usize, r as usize);
                        let (ns, ss) = pair_mut(&mut self.sums, p as usize, r as usize);
                        let sep = inner_move_tail_to((&mut *node, &mut *ns), (sib, ss), sep, k);
                        node.insert_at(ns, i, key, child, sum);
                        self.inners[pp as usize].keys[c] = sep;
                        self.refresh_inner_slots(pp, c, c + 1);
                        self.refresh_up(path, level - 1);
                        return;
                    }
                    None => {}
                }
            }
            let m = split_point(i, MIN_KEYS, CAP / 2, CAP - MIN_KEYS);
            let own = &mut self.sums[p as usize];
            let (up, right, right_sums) =
                self.inners[p as usize].insert_split(own, i, (key, child, sum), m);
            sum = if self.gaps {
                right.summary(&right_sums)
            } else {
                Sum::default()
            };
            key = up;
            child = self.alloc_inner(right, right_sums);
            // The left part is still its parent's child.
            if level > 0 {
                let (pp, c) = path.steps[level - 1];
                self.refresh_inner_slots(pp, c, c);
            }
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
        let mut sums = Sums::default();
        if self.gaps {
            sums[0] = if self.height == 1 {
                self.leaves[self.root as usize].summary()
            } else {
                let r = self.root as usize;
                self.inners[r].summary(&self.sums[r])
            };
            sums[1] = sum;
        }
        self.root = self.alloc_inner(root, sums);
        self.height += 1;
    }
}
