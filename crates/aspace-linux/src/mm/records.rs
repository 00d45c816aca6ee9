//! The layer's records of Linux mappings (VMAs) by address, in the core's
//! arena B+tree: one descent answers "the mapping at or below this address
//! and the one above". The tree keeps no free-gap summaries: the records
//! cover exactly the core's areas, so top-down placement asks the core's
//! tree (`AddressSpace::highest_free`), which keeps them anyway.
//!
//! The tree keys each record by its page range; a record's `start` and
//! `end` change only through [`Records::set_end`], [`Records::split_twice`],
//! [`Records::join_next`] and [`Records::join_next_two`] (or by taking it
//! out and putting it back), so the
//! two never disagree ([`Records::get_mut`] lends the rest, checked in
//! debug builds).

use aspace::internals::area_tree::AreaTree;
use aspace::PAGE_SIZE;

use super::Vma;

/// The mappings, by start address.
pub(super) struct Records {
    tree: AreaTree<Vma>,
}

/// A record lent for a change of anything but its range: the tree keys it
/// by its range, so the two must not disagree.
pub(super) struct RecordMut<'a> {
    v: &'a mut Vma,
    range: (u64, u64),
}

impl core::ops::Deref for RecordMut<'_> {
    type Target = Vma;
    fn deref(&self) -> &Vma {
        self.v
    }
}

impl core::ops::DerefMut for RecordMut<'_> {
    fn deref_mut(&mut self) -> &mut Vma {
        self.v
    }
}

impl Drop for RecordMut<'_> {
    fn drop(&mut self) {
        debug_assert_eq!(
            (self.v.start, self.v.end),
            self.range,
            "a record's range changes only through Records::set_end"
        );
    }
}

/// The page holding byte address `a`.
fn page(a: u64) -> u64 {
    a / PAGE_SIZE
}

impl Records {
    /// No mappings.
    pub fn new() -> Self {
        Records {
            tree: AreaTree::new(),
        }
    }

    /// Makes room for `more` records: until the count passes `len() +
    /// more`, no insertion or split allocates, whatever removals come in
    /// between. `false` (nothing changed) if the heap refuses. Every call
    /// takes the room its record changes need before it changes anything.
    pub fn try_reserve(&mut self, more: usize) -> bool {
        self.tree.try_reserve(more)
    }

    /// A copy, or `None` if the heap refuses it (a record's clone does not
    /// allocate: objects are shared by reference).
    pub fn try_clone(&self) -> Option<Self> {
        Some(Records {
            tree: self.tree.try_clone()?,
        })
    }

    /// How many mappings there are.
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// The mapping starting at `start`.
    pub fn get(&self, start: u64) -> Option<&Vma> {
        debug_assert!(start % PAGE_SIZE == 0);
        self.tree.get(page(start)).map(|(_, v)| v)
    }

    /// The mapping starting at `start`, to change anything but its range
    /// (which [`set_end`](Self::set_end) changes; debug builds check that
    /// the range is as it was when the handle goes).
    pub fn get_mut(&mut self, start: u64) -> Option<RecordMut<'_>> {
        self.tree.get_mut(page(start)).map(|(_, v)| RecordMut {
            range: (v.start, v.end),
            v,
        })
    }

    /// Records `v`, whose range must be free (else it is dropped: a bug,
    /// caught in debug builds).
    pub fn insert(&mut self, v: Vma) {
        let (s, e) = (page(v.start), page(v.end));
        let inserted = self.tree.insert(s, e, v).is_ok();
        debug_assert!(inserted, "a record's range is free");
    }

    /// Takes the mapping starting at `start` out.
    pub fn remove(&mut self, start: u64) -> Option<Vma> {
        // Starts are whole pages: the entry at `start`'s page starts there.
        self.tree.remove(page(start)).map(|(_, v)| v)
    }

    /// Takes out the mapping that spans exactly `[start, end)`, if there is
    /// one: one descent.
    pub fn remove_exact(&mut self, start: u64, end: u64) -> Option<Vma> {
        let last = page(end);
        self.tree
            .remove_if(page(start), |e, v| e == last && v.start == start)
            .map(|(_, v)| v)
    }

    /// Moves the end of the mapping starting at `start` to `end` (above
    /// its start; growth only into free addresses); hands it back to be
    /// changed further.
    pub fn set_end(&mut self, start: u64, end: u64) -> Option<&mut Vma> {
        let Some(v) = self.tree.set_end_mut(page(start), page(end)) else {
            debug_assert!(false, "no record at {start:#x}, or no room to {end:#x}");
            return None;
        };
        v.end = end;
        Some(v)
    }

    /// Moves the start of the mapping starting at `start` to `new_start`:
    /// down (growth only into free addresses: a stack grown) or up, below
    /// its end (a part cut off its bottom); hands it back to be changed
    /// further.
    pub fn set_start(&mut self, start: u64, new_start: u64) -> Option<&mut Vma> {
        if !self.tree.set_start(page(start), page(new_start)) {
            debug_assert!(
                false,
                "no record at {start:#x}, or no room to {new_start:#x}"
            );
            return None;
        }
        let (_, v) = self.tree.get_mut(page(new_start))?;
        v.start = new_start;
        Some(v)
    }

    /// Moves the mapping starting at `start` to `[new_start, new_end)`
    /// (free but for its own range) in place when its leaf of the tree is
    /// where it belongs there too; hands it back to be changed further.
    /// `None` (nothing changed) otherwise: the caller removes and inserts.
    pub fn relocate(&mut self, start: u64, new_start: u64, new_end: u64) -> Option<&mut Vma> {
        if !self
            .tree
            .relocate(page(start), page(new_start), page(new_end), 0)
        {
            return None;
        }
        let (_, v) = self.tree.get_mut(page(new_start))?;
        v.start = new_start;
        v.end = new_end;
        Some(v)
    }

    /// Cuts the mapping starting at `start` in three: it ends where `mid`
    /// starts, and `mid` and `upper` (which must span the rest, in two
    /// parts) follow it. One descent while its leaf of the tree has room
    /// for both.
    pub fn split_twice(&mut self, start: u64, mid: Vma, upper: Vma) {
        let (lo, hi) = (mid.start, upper.start);
        debug_assert!(lo < hi && mid.end == hi && upper.end > hi);
        let cuts = [page(lo), page(hi)];
        match self.tree.split_entry_twice(page(start), cuts, [mid, upper]) {
            Ok(lower) => lower.end = lo,
            Err(_) => debug_assert!(false, "no record at {start:#x} holding {lo:#x}..{hi:#x}"),
        }
    }

    /// Joins the two mappings that follow the one at `start` (each
    /// starting where the one before ends) to it (their ranges only: the
    /// caller settles the rest); hands back the one grown. One descent
    /// while the leaf keeps its minimum.
    pub fn join_next_two(&mut self, start: u64) -> Option<&mut Vma> {
        let (_, [_, last], grown) = self.tree.join_next_two(page(start))?;
        grown.end = last.end;
        Some(grown)
    }

    /// The mapping starting at `start` (`None` in the middle if none
    /// does) with the ones just before and just after it, wherever they
    /// end or start: one descent.
    pub fn with_neighbours(&self, start: u64) -> [Option<&Vma>; 3] {
        let [before, at, after] = self.tree.around(page(start));
        let at = at.filter(|&(s, _, _)| s == page(start));
        [before, at, after].map(|e| e.map(|(_, _, v)| v))
    }

    /// Joins the mapping that starts where the one at `start` ends to it
    /// (its range only: the caller settles the rest); hands back the one
    /// taken out and the one grown. One descent while the leaf keeps its
    /// minimum.
    pub fn join_next(&mut self, start: u64) -> Option<(Vma, &mut Vma)> {
        let (_, next, grown) = self.tree.join_next(page(start))?;
        grown.end = next.end;
        Some((next, grown))
    }

    /// The mapping ending at `at` (the one with the greatest start below
    /// it, if it ends there) and the one starting at `at`: one descent.
    pub fn meeting_at(&self, at: u64) -> (Option<&Vma>, Option<&Vma>) {
        let Some(b) = at.checked_sub(1) else {
            return (None, self.get(at));
        };
        let (lo, hi) = self.around(b);
        (lo.filter(|v| v.end == at), hi.filter(|v| v.start == at))
    }

    /// The mappings in address order.
    pub fn values(&self) -> impl Iterator<Item = &Vma> {
        self.tree.iter().map(|(_, _, v)| v)
    }

    /// The mapping with the greatest start at or below `a`.
    pub fn at_or_below(&self, a: u64) -> Option<&Vma> {
        self.tree.neighbors(page(a)).0.map(|(_, _, v)| v)
    }

    /// The mapping with the greatest start at or below `a` and the one
    /// with the least start above it: one descent.
    pub fn around(&self, a: u64) -> (Option<&Vma>, Option<&Vma>) {
        let (lo, hi) = self.tree.neighbors(page(a));
        (lo.map(|(_, _, v)| v), hi.map(|(_, _, v)| v))
    }

    /// The mapping with the greatest start below `a`.
    pub fn below(&self, a: u64) -> Option<&Vma> {
        self.at_or_below(a.checked_sub(1)?)
    }

    /// The mapping with the least start at or above `a`.
    pub fn from(&self, a: u64) -> Option<&Vma> {
        let found = match a.checked_sub(1) {
            // Starts are pages: a start above `a - 1` is at or above `a`.
            Some(b) => self.tree.neighbors(page(b)).1,
            // The greatest start at or below 0 is 0.
            None => {
                let (at0, above) = self.tree.neighbors(0);
                at0.or(above)
            }
        };
        found.map(|(_, _, v)| v).filter(|v| v.start >= a)
    }

    /// The mappings that start below `a`, highest first.
    pub fn rev_below(&self, a: u64) -> impl Iterator<Item = &Vma> {
        let mut next = self.below(a);
        core::iter::from_fn(move || {
            let v = next?;
            next = self.below(v.start);
            Some(v)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::Kind;
    use crate::Prot;
    use alloc::vec::Vec;

    fn anon(start: u64, end: u64) -> Vma {
        Vma {
            start,
            end,
            prot: Prot::RW,
            kind: Kind::Anon,
            first: start / PAGE_SIZE,
            noreserve: false,
            growsdown: false,
            account: true,
            anon: None,
            flags: crate::mm::VmFlags::NONE,
        }
    }

    #[test]
    fn split_and_join_keep_ranges_and_keys_together() {
        let mut r = Records::new();
        r.insert(anon(0x1000, 0x9000));
        r.split_twice(0x1000, anon(0x4000, 0x6000), anon(0x6000, 0x9000));
        let got: Vec<_> = r.values().map(|v| (v.start, v.end)).collect();
        assert_eq!(got, [(0x1000, 0x4000), (0x4000, 0x6000), (0x6000, 0x9000)]);
        assert_eq!(r.at_or_below(0x3fff).map(|v| v.start), Some(0x1000));
        assert_eq!(r.at_or_below(0x5fff).map(|v| v.start), Some(0x4000));
        let [before, at, after] = r.with_neighbours(0x4000).map(|v| v.map(|v| v.start));
        assert_eq!(
            [before, at, after],
            [Some(0x1000), Some(0x4000), Some(0x6000)]
        );
        assert_eq!(r.with_neighbours(0x5000)[1].map(|v| v.start), None);
        let grown = r.join_next_two(0x1000).unwrap();
        assert_eq!((grown.start, grown.end), (0x1000, 0x9000));
        assert_eq!(r.len(), 1);
        r.split_twice(0x1000, anon(0x2000, 0x3000), anon(0x3000, 0x9000));
        let (gone, grown) = r.join_next(0x2000).unwrap();
        assert_eq!((gone.start, gone.end), (0x3000, 0x9000));
        assert_eq!((grown.start, grown.end), (0x2000, 0x9000));
        let (_, grown) = r.join_next(0x1000).unwrap();
        assert_eq!((grown.start, grown.end), (0x1000, 0x9000));
        assert_eq!(r.len(), 1);
        assert_eq!(r.at_or_below(0x8fff).map(|v| v.end), Some(0x9000));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "only through Records::set_end")]
    fn a_lent_record_whose_range_changes_is_caught() {
        let mut r = Records::new();
        r.insert(anon(0x1000, 0x9000));
        let mut v = r.get_mut(0x1000).unwrap();
        v.end = 0x5000;
    }
}
