//! An entry cut in two, and two adjacent entries joined: the tree's side of
//! an area split and merge, in one descent when the leaf allows it.
//!
//! Neither changes a free gap: the two parts of a cut meet (no gap between
//! them, no guard above the cut), and so do two entries that join. So the
//! leaf's summary (largest gap, lowest page, last end) stays as it was and
//! nothing is refreshed up the tree; only a leaf too full to take the
//! second part, or one that would fall below its minimum by losing an
//! entry, goes the general way (a separate insertion or removal).

use super::node::{CAP, MIN_LEAF};
use super::AreaTree;

impl<V> AreaTree<V> {
    /// Cuts the entry starting at `start` at `at`: it ends at `at`, and
    /// `[at, end) -> value`, without guard pages, follows it; returns the
    /// value of the entry cut, to be changed with its range. Refuses,
    /// handing the value back, if no entry starts at `start` or `at` is not
    /// inside it (`start < at < end`). Allocates only when the leaf is full
    /// (then as [`insert`](Self::insert) does, which may refuse too).
    pub fn split_entry(&mut self, start: u64, at: u64, value: V) -> Result<&mut V, V> {
        if self.height == 0 {
            return Err(value);
        }
        let l = self.descend(start) as usize;
        let leaf = &mut self.leaves[l];
        let Some(i) = leaf.position(start) else {
            return Err(value);
        };
        let end = leaf.ends[i];
        if !(start < at && at < end) {
            return Err(value);
        }
        if leaf.len() < CAP {
            leaf.ends[i] = at;
            leaf.insert_at(i + 1, at, end, 0, value);
            self.len += 1;
            return match self.leaves[l].values[i].as_mut() {
                Some(v) => Ok(v),
                None => unreachable!("a live entry has a value"),
            };
        }
        // A full leaf: the end moves (which frees `[at, end)`), then the
        // upper part goes in as any insertion, splitting or spilling.
        let shrunk = self.set_end(start, at);
        debug_assert!(shrunk, "shrinking an entry always fits");
        if let Err(value) = self.insert(at, end, value) {
            // The heap refused a node: the entry takes its end back.
            let grown = self.set_end(start, end);
            debug_assert!(grown, "the entry's own pages are free");
            return Err(value);
        }
        match self.get_mut(start) {
            Some((_, v)) => Ok(v),
            None => unreachable!("the entry cut is still there"),
        }
    }

    /// Joins the entry that starts where the one starting at `left` ends
    /// to it: `left`'s entry grows to the other's end, and the other goes.
    /// Returns the new end, the value of the entry taken out and the value
    /// of the one grown; `None` (nothing changed) if no entry starts at
    /// `left` or none starts at its end. Allocates nothing.
    pub fn join_next(&mut self, left: u64) -> Option<(u64, V, &mut V)> {
        if self.height == 0 {
            return None;
        }
        let l = self.descend(left) as usize;
        let leaf = &self.leaves[l];
        let i = leaf.position(left)?;
        let boundary = leaf.ends[i];
        let in_leaf = i + 1 < leaf.len() && leaf.starts[i + 1] == boundary;
        if in_leaf && (self.height == 1 || leaf.len() > MIN_LEAF) {
            // Both here, and the leaf keeps its minimum: no separator
            // names the entry taken out (it is not the leaf's first).
            let leaf = &mut self.leaves[l];
            let (_, end, value) = leaf.remove_at(i + 1);
            leaf.ends[i] = end;
            self.len -= 1;
            return Some((end, value, leaf.values[i].as_mut()?));
        }
        // No entry at `boundary`: the removal finds none and changes nothing.
        let (end, value) = self.remove(boundary)?;
        let grown = self.set_end_mut(left, end);
        debug_assert!(grown.is_some(), "the pages of the entry taken out are free");
        Some((end, value, grown?))
    }
}

impl<V> AreaTree<V> {
    /// Cuts the entry starting at `start` in three, at `lo` and at `hi`:
    /// it ends at `lo`, and `[lo, hi) -> mid` and `[hi, end) -> upper`
    /// follow it, without guard pages (a range cut out of the middle of an
    /// entry); returns the value of the entry cut. Refuses, handing both values back, if no entry starts at
    /// `start` or the cuts are not inside it in order (`start < lo < hi <
    /// end`). One descent when the leaf has room for both; allocates only
    /// when it has not (then as two [`split_entry`](Self::split_entry)
    /// calls do, and a refusal undoes the first).
    pub fn split_entry_twice(
        &mut self,
        start: u64,
        [lo, hi]: [u64; 2],
        [mid, upper]: [V; 2],
    ) -> Result<&mut V, [V; 2]> {
        if self.height == 0 {
            return Err([mid, upper]);
        }
        let l = self.descend(start) as usize;
        let leaf = &mut self.leaves[l];
        let Some(i) = leaf.position(start) else {
            return Err([mid, upper]);
        };
        let end = leaf.ends[i];
        if !(start < lo && lo < hi && hi < end) {
            return Err([mid, upper]);
        }
        if leaf.len() + 2 <= CAP {
            leaf.ends[i] = lo;
            leaf.insert_at(i + 1, lo, hi, 0, mid);
            leaf.insert_at(i + 2, hi, end, 0, upper);
            self.len += 2;
            return match self.leaves[l].values[i].as_mut() {
                Some(v) => Ok(v),
                None => unreachable!("a live entry has a value"),
            };
        }
        if let Some(upper) = self.split_entry(start, hi, upper).err() {
            return Err([mid, upper]);
        }
        if let Err(mid) = self.split_entry(start, lo, mid) {
            return match self.join_next(start) {
                Some((_, upper, _)) => Err([mid, upper]),
                None => unreachable!("the entry cut at `hi` is still there"),
            };
        }
        match self.get_mut(start) {
            Some((_, v)) => Ok(v),
            None => unreachable!("the entry cut is still there"),
        }
    }

    /// Joins the two entries that follow the one starting at `left`
    /// (the first starting where it ends, the second where the first ends)
    /// to it: `left`'s entry grows to the second one's end, and both go.
    /// Returns the new end, the values of the two entries taken out (in
    /// address order) and the value of the one grown; `None` (nothing
    /// changed) if any of the three is missing. One descent when the leaf
    /// holds all three and keeps its minimum; allocates nothing.
    pub fn join_next_two(&mut self, left: u64) -> Option<(u64, [V; 2], &mut V)> {
        if self.height == 0 {
            return None;
        }
        let l = self.descend(left) as usize;
        let leaf = &self.leaves[l];
        let i = leaf.position(left)?;
        let in_leaf = i + 2 < leaf.len()
            && leaf.starts[i + 1] == leaf.ends[i]
            && leaf.starts[i + 2] == leaf.ends[i + 1];
        if in_leaf && (self.height == 1 || leaf.len() >= MIN_LEAF + 2) {
            let leaf = &mut self.leaves[l];
            let (_, end, second) = leaf.remove_at(i + 2);
            let (_, _, first) = leaf.remove_at(i + 1);
            leaf.ends[i] = end;
            self.len -= 2;
            return Some((end, [first, second], leaf.values[i].as_mut()?));
        }
        // All three must be there before the first join changes anything.
        let (b1, _) = self.get(left)?;
        let (b2, _) = self.get(b1)?;
        self.get(b2)?;
        let (_, first, _) = self.join_next(left)?;
        match self.join_next(left) {
            Some((end, second, grown)) => Some((end, [first, second], grown)),
            None => unreachable!("all three entries were there"),
        }
    }
}
