//! Moving the ends of an entry in place: [`AreaTree::set_end`],
//! [`AreaTree::set_start`], [`AreaTree::grow_adjacent`] and
//! [`AreaTree::relocate`] change no node's shape and allocate nothing.

use super::search::Path;
use super::AreaTree;

impl<V> AreaTree<V> {
    /// Changes the end of the entry starting at `start` to `end`. Refuses
    /// (returns `false`, changing nothing) if there is no such entry, if
    /// `end <= start`, or if the new range would intersect the next entry.
    pub fn set_end(&mut self, start: u64, end: u64) -> bool {
        self.set_end_at(start, end).is_some()
    }

    /// [`set_end`](Self::set_end), handing back the entry's value to be
    /// changed with its range (`None`: refused, nothing changed).
    pub fn set_end_mut(&mut self, start: u64, end: u64) -> Option<&mut V> {
        let (leaf, i) = self.set_end_at(start, end)?;
        self.leaves[leaf as usize].values[i].as_mut()
    }

    /// [`set_end`](Self::set_end): the leaf and position of the entry
    /// changed.
    fn set_end_at(&mut self, start: u64, end: u64) -> Option<(u32, usize)> {
        if end <= start || self.height == 0 {
            return None;
        }
        let b = self.descend_bounds(start);
        let i = self.leaves[b.leaf as usize].position(start)?;
        // The next entry's guard counts.
        if self
            .low_after(b.leaf, i + 1)
            .is_some_and(|after| after < end)
        {
            return None;
        }
        self.leaves[b.leaf as usize].ends[i] = end;
        self.refresh_after_change(start);
        Some((b.leaf, i))
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
        // The entry after keeps its guard free too.
        let after_low = self.low_after(b.leaf, r);
        let free = start < end
            && after_low.is_none_or(|s| s >= end)
            && before.is_none_or(|(_, e)| e <= start);
        let leaf = &mut self.leaves[b.leaf as usize];
        match (before, after) {
            _ if !free => {}
            // Touching the entry before (which is in this leaf), not the one
            // after.
            (Some((_, e)), a) if e == start && a.is_none_or(|(s, _)| s != end) => {
                leaf.ends[r - 1] = end;
                self.refresh_after_change(start);
                return Ok(());
            }
            // Touching the entry after, which is not the first of this leaf
            // (`r > 0`), so its start is no separator; the entry before ends
            // short of `start`.
            (Some((_, e)), Some((s, _))) if e < start && s == end && r < leaf.len() => {
                leaf.starts[r] = start;
                self.refresh_after_change(start);
                return Ok(());
            }
            _ => {}
        }
        Err((before, after))
    }

    /// Changes the start of the entry starting at `start` to `new_start`,
    /// keeping its end, guard and value. Refuses (returns `false`, changing
    /// nothing) if there is no such entry, if `new_start` is not below its
    /// end or is below its guard, or if the new range with its guard would
    /// intersect the entry before it.
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
        let Some(new_low) = new_start.checked_sub(u64::from(leaf.guards[i])) else {
            return false;
        };
        if new_start < start {
            // `start > new_start >= 0`, so `start - 1` does not wrap.
            let before_end = if i > 0 {
                Some(leaf.ends[i - 1])
            } else {
                self.last_at_or_before(start - 1).map(|(_, e)| e)
            };
            if before_end.is_some_and(|e| e > new_low) {
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
        self.refresh_after_change(new_start);
        true
    }

    /// Moves the entry starting at `start` to `[new_start, new_end)` with
    /// `guard` guard pages below it, keeping its value, when its leaf is
    /// where the new range belongs too (the tree's only leaf, or a new
    /// start inside the leaf's part of the keys, past its first entry or in
    /// the first leaf): the entry changes place within the leaf, in one
    /// descent, no node splits or merges. Refuses (returns `false`,
    /// changing nothing) if there is no such entry, the range is empty or
    /// starts below its guard, the new range with its guard would
    /// intersect another entry or another entry's guard, or the new place
    /// is in another leaf (the caller then removes and inserts).
    pub fn relocate(&mut self, start: u64, new_start: u64, new_end: u64, guard: u8) -> bool {
        if self.height == 0 || new_start >= new_end {
            return false;
        }
        let Some(low) = new_start.checked_sub(u64::from(guard)) else {
            return false;
        };
        let mut path = Path::new();
        let (node, next_start) = self.descend_path(start, &mut path);
        // Not the first leaf: a separator on the route names this one.
        let first_leaf = path.steps[..path.len].iter().all(|&(_, c)| c == 0);
        let leaf = &self.leaves[node as usize];
        let Some(i) = leaf.position(start) else {
            return false;
        };
        if new_start >= next_start {
            return false;
        }
        // `j`: the new position among the other entries of the leaf.
        let len = leaf.len();
        let r = leaf.rank(new_start);
        let j = if start <= new_start { r - 1 } else { r };
        let other = |k: usize| if k < i { k } else { k + 1 };
        if j == 0 && !first_leaf {
            return false;
        }
        if j > 0 && leaf.ends[other(j - 1)] > low {
            return false;
        }
        let after_low = if j + 1 < len {
            Some(leaf.low(other(j)))
        } else {
            self.low_after(node, len)
        };
        if after_low.is_some_and(|a| a < new_end) {
            return false;
        }
        // The entries between the two places shift by one (a few: a loop
        // each, not a rotation's general machinery).
        let leaf = &mut self.leaves[node as usize];
        let value = leaf.values[i].take();
        if j > i {
            for k in i..j {
                leaf.starts[k] = leaf.starts[k + 1];
                leaf.ends[k] = leaf.ends[k + 1];
                leaf.guards[k] = leaf.guards[k + 1];
                leaf.values[k] = leaf.values[k + 1].take();
            }
        } else {
            for k in (j..i).rev() {
                leaf.starts[k + 1] = leaf.starts[k];
                leaf.ends[k + 1] = leaf.ends[k];
                leaf.guards[k + 1] = leaf.guards[k];
                leaf.values[k + 1] = leaf.values[k].take();
            }
        }
        leaf.starts[j] = new_start;
        leaf.ends[j] = new_end;
        leaf.guards[j] = guard;
        leaf.values[j] = value;
        // The separator naming the leaf's first start must follow.
        let first = leaf.starts[0];
        if !first_leaf && (i == 0 || j == 0) {
            if let Some(&(p, c)) = path.steps[..path.len].iter().rev().find(|&&(_, c)| c > 0) {
                self.inners[p as usize].keys[c - 1] = first;
            }
        }
        self.refresh_leaf(&path);
        true
    }
}
