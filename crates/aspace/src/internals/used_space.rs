//! The used space of an area: which of its pages are mapped, as merged
//! intervals of pages.
//!
//! Semantics follow HelenOS `used_space_insert` / `used_space_remove`: an
//! insertion merges with the interval that ends where it starts and/or the
//! one that starts where it ends, and is refused if it overlaps any page
//! already used; a removal must lie inside one interval and may shrink it
//! from either end or split it in two.
//!
//! One interval (an area's usual used space: none, or one run) is kept
//! inline; more live in an [`AreaTree<()>`](AreaTree), the crate's arena
//! B+tree, as half-open ranges of page numbers. Its nodes are reused after
//! removals, so a page fault (which inserts one page) allocates nothing once
//! the tree has been as large as it needs to be, or once
//! [`reserve`](UsedSpace::reserve) made room: an extension of an interval
//! at either end changes one bound in place, and a new interval takes a
//! slot in a leaf or a reserved or freed node.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::iter::FusedIterator;
use core::ops::{Deref, DerefMut};

use crate::addr::{Page, PageRange};
use crate::internals::area_tree::{self, AreaTree};

/// Why a used-space update was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum UsedSpaceError {
    /// The inserted pages overlap pages already in use.
    Overlap,
    /// The removed pages are not all inside one interval.
    NotUsed,
    /// Zero pages, or a range that wraps.
    Empty,
    /// The heap refused a node the insertion needed; nothing changed.
    NoMemory,
}

/// Set of used pages kept as disjoint, non-adjacent intervals; lookups and
/// updates are O(log n) in the number of intervals.
///
/// Most areas hold one run of pages or none, so a set of at most one
/// interval keeps it inline (no heap, a few words in the area); the tree
/// comes with the second interval, or when room for more is reserved, and
/// stays until the set is emptied with [`take`](Self::take).
#[derive(Clone, Default)]
pub struct UsedSpace {
    runs: Runs,
    /// Pages in all intervals.
    pages: u64,
}

/// Where the intervals live, each as `[first page number, one past the
/// last)`.
#[derive(Clone)]
enum Runs {
    /// At most one interval, inline.
    One(Option<(u64, u64)>),
    /// Any number, in the crate's arena B+tree (boxed, so that a set, and
    /// the area holding two of them, stays a few words).
    Tree(BoxedTree),
}

/// An [`AreaTree<()>`] on the heap, allocated fallibly.
#[derive(Clone)]
struct BoxedTree(Box<[AreaTree<()>; 1]>);

impl BoxedTree {
    /// `tree` moved to the heap; `None` (and `tree` dropped) if the heap
    /// refuses.
    fn try_new(tree: AreaTree<()>) -> Option<Self> {
        let mut v = Vec::new();
        v.try_reserve_exact(1).ok()?;
        v.push(tree);
        // Exactly one element: the conversion cannot fail or reallocate.
        v.into_boxed_slice().try_into().ok().map(BoxedTree)
    }
}

impl Deref for BoxedTree {
    type Target = AreaTree<()>;
    fn deref(&self) -> &AreaTree<()> {
        &self.0[0]
    }
}

impl DerefMut for BoxedTree {
    fn deref_mut(&mut self) -> &mut AreaTree<()> {
        &mut self.0[0]
    }
}

impl Default for Runs {
    fn default() -> Self {
        Runs::One(None)
    }
}

/// Equal when the same pages are used (the intervals are maximal, so
/// they are the same too), whatever the representations.
impl PartialEq for UsedSpace {
    fn eq(&self, other: &Self) -> bool {
        self.pages == other.pages
            && self.intervals() == other.intervals()
            && self.iter().eq(other.iter())
    }
}

impl Eq for UsedSpace {}

impl fmt::Debug for UsedSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsedSpace")
            .field("pages", &self.pages)
            .field("intervals", &DebugRuns(self))
            .finish()
    }
}

/// The intervals of a used space as a list of page-number ranges.
struct DebugRuns<'a>(&'a UsedSpace);

impl fmt::Debug for DebugRuns<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|r| r.start.number()..r.end().number()))
            .finish()
    }
}

/// The interval `[start, end)` of page numbers as a [`PageRange`].
fn range(start: u64, end: u64) -> PageRange {
    PageRange::new(Page::from_number(start), end - start)
}

/// The part of `[s, e)` in `[lo, hi)`, if any.
fn clip((s, e): (u64, u64), lo: u64, hi: u64) -> Option<(u64, u64)> {
    let (a, b) = (s.max(lo), e.min(hi));
    (a < b).then_some((a, b))
}

impl UsedSpace {
    /// An empty set; allocates nothing.
    pub const fn new() -> Self {
        Self {
            runs: Runs::One(None),
            pages: 0,
        }
    }

    /// An empty set with room for `intervals` intervals (see
    /// [`reserve`](Self::reserve)), so that filling it allocates nothing.
    pub fn with_capacity(intervals: usize) -> Self {
        let mut s = Self::new();
        s.reserve(intervals);
        s
    }

    /// [`with_capacity`](Self::with_capacity) that answers `None` instead
    /// of aborting when the heap refuses.
    pub fn try_with_capacity(intervals: usize) -> Option<Self> {
        let mut s = Self::new();
        s.try_reserve(intervals).then_some(s)
    }

    /// The intervals in a tree with room for `room` of them (the inline
    /// one moved in); `false` (nothing changed) if the heap refuses.
    fn try_into_tree(&mut self, room: usize) -> bool {
        let Runs::One(one) = self.runs else {
            return true;
        };
        let mut tree = AreaTree::new();
        if !tree.try_reserve(room.max(1)) {
            return false;
        }
        if let Some((s, e)) = one {
            let added = tree.insert(s, e, ()).is_ok();
            debug_assert!(added, "an empty tree takes any interval");
        }
        let Some(tree) = BoxedTree::try_new(tree) else {
            return false;
        };
        self.runs = Runs::Tree(tree);
        true
    }

    /// [`reserve`](Self::reserve) that answers `false` (the set unchanged)
    /// instead of aborting when the heap refuses: operations reserve the
    /// room an insertion needs before they change anything.
    pub fn try_reserve(&mut self, additional: usize) -> bool {
        match &mut self.runs {
            Runs::One(one) => {
                let want = usize::from(one.is_some()).saturating_add(additional);
                want <= 1 || self.try_into_tree(want)
            }
            Runs::Tree(t) => t.try_reserve(additional),
        }
    }

    /// Makes sure that removing pages ending at `end` from the middle of an
    /// interval (which splits it, a new interval from `end`) allocates
    /// nothing; `false` (nothing changed) if the heap refuses.
    pub fn try_reserve_cut(&mut self, end: Page) -> bool {
        match &mut self.runs {
            Runs::One(None) => true,
            Runs::One(Some(_)) => self.try_into_tree(2),
            Runs::Tree(t) => t.try_reserve_insertion(end.number()),
        }
    }

    /// Makes room for `additional` more intervals: afterwards no insertion
    /// or removal allocates as long as the set has at most
    /// `intervals() + additional` intervals. An area reserves one when it is
    /// created, so its first page fault does not allocate.
    pub fn reserve(&mut self, additional: usize) {
        assert!(self.try_reserve(additional), "used space: out of memory");
    }

    /// Total number of used pages.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// Number of intervals.
    pub fn intervals(&self) -> usize {
        match &self.runs {
            Runs::One(one) => usize::from(one.is_some()),
            Runs::Tree(t) => t.len(),
        }
    }

    /// Whether no page is used.
    pub fn is_empty(&self) -> bool {
        self.pages == 0
    }

    /// The intervals in ascending order (double-ended: stepping from the
    /// back costs a tree descent per interval).
    pub fn iter(&self) -> Iter<'_> {
        Iter(match &self.runs {
            Runs::One(one) => IterRuns::One(one.map(|(s, e)| range(s, e))),
            Runs::Tree(t) => IterRuns::Tree {
                runs: t,
                front: t.iter(),
                back: None,
                remaining: t.len(),
            },
        })
    }

    /// The pages in ascending order.
    pub fn iter_pages(&self) -> impl Iterator<Item = Page> + '_ {
        self.iter()
            .flat_map(|r| (0..r.count).map(move |i| r.start.add(i)))
    }

    /// Whether `page` is used.
    pub fn contains(&self, page: Page) -> bool {
        let n = page.number();
        match &self.runs {
            Runs::One(one) => one.is_some_and(|(s, e)| s <= n && n < e),
            Runs::Tree(t) => t.find(n).is_some(),
        }
    }

    /// Marks `count` pages from `page` as used.
    ///
    /// Allocates only if a new interval needs a tree node that was neither
    /// reserved nor freed before; if the heap refuses it, `NoMemory` with
    /// nothing changed.
    pub fn insert(&mut self, page: Page, count: u64) -> Result<(), UsedSpaceError> {
        let start = page.number();
        let end = start.checked_add(count).ok_or(UsedSpaceError::Empty)?;
        if count == 0 {
            return Err(UsedSpaceError::Empty);
        }
        if let Runs::One(one) = &mut self.runs {
            match *one {
                None => *one = Some((start, end)),
                Some((s, e)) if start < e && s < end => return Err(UsedSpaceError::Overlap),
                Some((s, e)) if end == s => *one = Some((start, e)),
                Some((s, e)) if start == e => *one = Some((s, end)),
                Some(_) => {
                    // A second interval: the tree, with room for it.
                    if !self.try_into_tree(2) {
                        return Err(UsedSpaceError::NoMemory);
                    }
                    return self.insert(page, count);
                }
            }
            self.pages += count;
            return Ok(());
        }
        let Runs::Tree(runs) = &mut self.runs else {
            unreachable!("the inline form returned above")
        };
        // Mostly the page extends a run, and this one descent does it all;
        // else it tells the runs around the page.
        let Err((left, right)) = runs.grow_adjacent(start, end) else {
            self.pages += count;
            return Ok(());
        };
        if left.is_some_and(|(_, e)| start < e) || right.is_some_and(|(s, _)| s < end) {
            return Err(UsedSpaceError::Overlap);
        }
        let merge_left = left.filter(|&(_, e)| e == start);
        let merge_right = right.filter(|&(s, _)| s == end);
        let done = match (merge_left, merge_right) {
            (Some((ls, _)), Some((rs, re))) => runs.remove(rs).is_some() && runs.set_end(ls, re),
            (Some((ls, _)), None) => runs.set_end(ls, end),
            (None, Some((rs, _))) => runs.set_start(rs, start),
            (None, None) => {
                if !runs.try_reserve_insertion(start) {
                    return Err(UsedSpaceError::NoMemory);
                }
                runs.insert(start, end, ()).is_ok()
            }
        };
        debug_assert!(done, "used space: checked update refused");
        self.pages += count;
        Ok(())
    }

    /// Marks `count` pages from `page` as unused; they must all be used and
    /// lie in one interval.
    ///
    /// Allocates only when it splits an interval and the new one needs a
    /// tree node that was neither reserved nor freed before.
    pub fn remove(&mut self, page: Page, count: u64) -> Result<(), UsedSpaceError> {
        let start = page.number();
        let end = start.checked_add(count).ok_or(UsedSpaceError::Empty)?;
        if count == 0 {
            return Err(UsedSpaceError::Empty);
        }
        if let Runs::One(one) = &mut self.runs {
            let (s, e) = one.ok_or(UsedSpaceError::NotUsed)?;
            if start < s || end > e {
                return Err(UsedSpaceError::NotUsed);
            }
            match (s == start, end == e) {
                (true, true) => *one = None,
                (true, false) => *one = Some((end, e)),
                (false, true) => *one = Some((s, start)),
                (false, false) => {
                    // Two intervals: the tree (the caller reserves it with
                    // `try_reserve_cut` where it must not allocate).
                    self.reserve(1);
                    return self.remove(page, count);
                }
            }
            self.pages -= count;
            return Ok(());
        }
        let Runs::Tree(runs) = &mut self.runs else {
            unreachable!("the inline form returned above")
        };
        let (s, e, ()) = runs.find(start).ok_or(UsedSpaceError::NotUsed)?;
        if end > e {
            return Err(UsedSpaceError::NotUsed);
        }
        let done = match (s == start, end == e) {
            (true, true) => runs.remove(s).is_some(),
            (true, false) => runs.set_start(s, end),
            (false, true) => runs.set_end(s, start),
            (false, false) => runs.set_end(s, start) && runs.insert(end, e, ()).is_ok(),
        };
        debug_assert!(done, "used space: checked update refused");
        self.pages -= count;
        Ok(())
    }

    /// How many more intervals this set holds once it has taken in the
    /// `runs` intervals of a set lying wholly at or above page `boundary`
    /// (this one wholly below it), whose lowest interval starts at
    /// `first`: one fewer when that interval continues this set's last.
    pub fn added_by_join(&self, boundary: u64, runs: usize, first: Option<u64>) -> usize {
        let joins = first == Some(boundary) && self.last().is_some_and(|(_, e)| e == boundary);
        runs - usize::from(joins)
    }

    /// The first page of the lowest interval, if any.
    pub fn first_page(&self) -> Option<u64> {
        self.first_in(0, u64::MAX).map(|r| r.start.number())
    }

    /// The last interval, if any.
    fn last(&self) -> Option<(u64, u64)> {
        match &self.runs {
            Runs::One(one) => *one,
            Runs::Tree(t) => t.neighbors(u64::MAX).0.map(|(s, e, ())| (s, e)),
        }
    }

    /// Takes the pages at or above `cut` off the last interval (which ends
    /// above it); returns the part taken, and whether the interval went
    /// whole. Allocates nothing.
    fn cut_last(&mut self, cut: u64) -> Option<((u64, u64), bool)> {
        let (s, e) = self.last().filter(|&(_, e)| e > cut)?;
        let from = s.max(cut);
        match &mut self.runs {
            Runs::One(one) => *one = (s < cut).then_some((s, cut)),
            Runs::Tree(t) => {
                let done = if s >= cut {
                    t.remove(s).is_some()
                } else {
                    t.set_end(s, cut)
                };
                debug_assert!(done, "used space: shrinking refused");
            }
        }
        self.pages -= e - from;
        Some(((from, e), s >= cut))
    }

    /// Removes and returns every interval at or above `page`, splitting the
    /// one that straddles it; highest first.
    pub fn split_off(&mut self, page: Page) -> Vec<PageRange> {
        let mut out = Vec::new();
        while let Some(((s, e), whole)) = self.cut_last(page.number()) {
            out.push(range(s, e));
            if !whole {
                break;
            }
        }
        out
    }

    /// How many intervals hold pages at or above `page` (what
    /// [`split_off_into`](Self::split_off_into) moves).
    pub fn intervals_from(&self, page: Page) -> usize {
        self.overlap(page.number(), u64::MAX).0
    }

    /// How many intervals hold pages in `[lo, hi)` (page numbers), and how
    /// many pages there are used: what an operation on that range needs
    /// room for. O(k log n) for the k intervals met.
    pub fn overlap(&self, lo: u64, hi: u64) -> (usize, u64) {
        if lo >= hi {
            return (0, 0);
        }
        let runs = match &self.runs {
            Runs::One(one) => {
                return one
                    .and_then(|r| clip(r, lo, hi))
                    .map_or((0, 0), |(a, b)| (1, b - a))
            }
            Runs::Tree(t) => t,
        };
        let mut intervals = 0;
        let mut pages = 0;
        let mut next = match runs.neighbors(lo) {
            (Some((s, e, ())), _) if e > lo => Some((s, e)),
            (_, after) => after.map(|(s, e, ())| (s, e)),
        };
        while let Some((s, e)) = next {
            if s >= hi {
                break;
            }
            intervals += 1;
            pages += e.min(hi) - s.max(lo);
            next = runs.neighbors(e - 1).1.map(|(s, e, ())| (s, e));
        }
        (intervals, pages)
    }

    /// [`split_off`](Self::split_off) into `into` (an empty set): moves
    /// every page at or above `page` there. Allocates nothing if `into` has
    /// room for [`intervals_from`](Self::intervals_from)`(page)` intervals.
    pub fn split_off_into(&mut self, page: Page, into: &mut UsedSpace) {
        while let Some(((s, e), whole)) = self.cut_last(page.number()) {
            let added = into.insert(Page::from_number(s), e - s);
            debug_assert!(added.is_ok(), "runs are disjoint");
            if !whole {
                break;
            }
        }
    }

    /// The first part of an interval that lies in `[lo, hi)` (page
    /// numbers), if any: O(log n), allocates nothing.
    pub fn first_in(&self, lo: u64, hi: u64) -> Option<PageRange> {
        if lo >= hi {
            return None;
        }
        let run = match &self.runs {
            Runs::One(one) => (*one)?,
            Runs::Tree(t) => match t.neighbors(lo) {
                (Some((s, e, ())), _) if e > lo => (s, e),
                (_, after) => after.map(|(s, e, ())| (s, e))?,
            },
        };
        clip(run, lo, hi).map(|(a, b)| range(a, b))
    }

    /// Empties the set, returning the intervals it held.
    pub fn take(&mut self) -> UsedSpace {
        core::mem::take(self)
    }

    /// Checks the tree's structural invariants and that the intervals are
    /// maximal and add up to [`pages`](Self::pages); panics if not. Costs
    /// O(intervals); for tests.
    #[doc(hidden)]
    #[cfg(any(test, feature = "check-invariants"))]
    pub fn check_invariants(&self) {
        if let Runs::Tree(t) = &self.runs {
            t.check_invariants();
        }
        let mut pages = 0u64;
        let mut prev_end = None;
        for r in self.iter() {
            let (s, e) = (r.start.number(), r.end().number());
            assert!(s < e, "used space: an empty interval at {s}");
            assert!(
                prev_end.is_none_or(|p| p < s),
                "used space: intervals touch or overlap at {s}"
            );
            pages += e - s;
            prev_end = Some(e);
        }
        assert_eq!(pages, self.pages, "used space: page count");
    }
}

/// Iterator over the intervals of a [`UsedSpace`] in ascending order;
/// returned by [`UsedSpace::iter`]. From the front it walks the leaves;
/// from the back each step is one descent.
#[derive(Clone)]
pub struct Iter<'a>(IterRuns<'a>);

/// The two forms of [`Iter`], after the set's.
#[derive(Clone)]
enum IterRuns<'a> {
    /// The inline interval, until taken.
    One(Option<PageRange>),
    /// The tree's intervals.
    Tree {
        runs: &'a AreaTree<()>,
        front: area_tree::Iter<'a, ()>,
        /// The first page of the interval last taken from the back, if any.
        back: Option<u64>,
        /// Intervals not yet taken from either end.
        remaining: usize,
    },
}

impl Iterator for Iter<'_> {
    type Item = PageRange;

    fn next(&mut self) -> Option<PageRange> {
        match &mut self.0 {
            IterRuns::One(one) => one.take(),
            IterRuns::Tree {
                front, remaining, ..
            } => {
                if *remaining == 0 {
                    return None;
                }
                *remaining -= 1;
                front.next().map(|(s, e, ())| range(s, e))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = match &self.0 {
            IterRuns::One(one) => usize::from(one.is_some()),
            IterRuns::Tree { remaining, .. } => *remaining,
        };
        (n, Some(n))
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<PageRange> {
        match &mut self.0 {
            IterRuns::One(one) => one.take(),
            IterRuns::Tree {
                runs,
                back,
                remaining,
                ..
            } => {
                if *remaining == 0 {
                    return None;
                }
                *remaining -= 1;
                // An interval remains before the one last taken, so that one
                // does not start at page 0.
                let key = back.map_or(u64::MAX, |b| b - 1);
                let (s, e, ()) = runs.neighbors(key).0?;
                *back = Some(s);
                Some(range(s, e))
            }
        }
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl FusedIterator for Iter<'_> {}
