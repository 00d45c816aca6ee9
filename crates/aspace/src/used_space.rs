//! The used space of an area: which of its pages are mapped, as merged
//! intervals of pages.
//!
//! Semantics follow HelenOS `used_space_insert` / `used_space_remove`: an
//! insertion merges with the interval that ends where it starts and/or the
//! one that starts where it ends, and is refused if it overlaps any page
//! already used; a removal must lie inside one interval and may shrink it
//! from either end or split it in two.

use alloc::collections::BTreeMap;

use crate::addr::{Page, PageRange};

/// Why a used-space update was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum UsedSpaceError {
    /// The inserted pages overlap pages already in use.
    Overlap,
    /// The removed pages are not all inside one interval.
    NotUsed,
    /// Zero pages, or a range that wraps.
    Empty,
}

/// Set of used pages kept as disjoint, non-adjacent intervals, keyed by the
/// first page number; lookups are O(log n) in the number of intervals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsedSpace {
    /// first page number -> page count
    intervals: BTreeMap<u64, u64>,
    pages: u64,
}

impl UsedSpace {
    /// An empty set.
    pub const fn new() -> Self {
        Self {
            intervals: BTreeMap::new(),
            pages: 0,
        }
    }

    /// Total number of used pages.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// Number of intervals.
    pub fn intervals(&self) -> usize {
        self.intervals.len()
    }

    /// Whether no page is used.
    pub fn is_empty(&self) -> bool {
        self.intervals.is_empty()
    }

    /// The intervals in ascending order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = PageRange> + '_ {
        self.intervals
            .iter()
            .map(|(&s, &c)| PageRange::new(Page::from_number(s), c))
    }

    /// The pages in ascending order.
    pub fn iter_pages(&self) -> impl Iterator<Item = Page> + '_ {
        self.iter()
            .flat_map(|r| (0..r.count).map(move |i| r.start.add(i)))
    }

    /// Whether `page` is used.
    pub fn contains(&self, page: Page) -> bool {
        let n = page.number();
        self.intervals
            .range(..=n)
            .next_back()
            .is_some_and(|(&s, &c)| n < s + c)
    }

    /// Marks `count` pages from `page` as used.
    pub fn insert(&mut self, page: Page, count: u64) -> Result<(), UsedSpaceError> {
        let start = page.number();
        let end = start.checked_add(count).ok_or(UsedSpaceError::Empty)?;
        if count == 0 {
            return Err(UsedSpaceError::Empty);
        }
        let left = self
            .intervals
            .range(..=start)
            .next_back()
            .map(|(&s, &c)| (s, c));
        let right = self.intervals.range(start..).next().map(|(&s, &c)| (s, c));
        if let Some((s, c)) = left {
            if start < s + c {
                return Err(UsedSpaceError::Overlap);
            }
        }
        if let Some((s, _)) = right {
            if s < end {
                return Err(UsedSpaceError::Overlap);
            }
        }
        let merge_left = left.filter(|&(s, c)| s + c == start);
        let merge_right = right.filter(|&(s, _)| s == end);
        match (merge_left, merge_right) {
            (Some((ls, lc)), Some((rs, rc))) => {
                self.intervals.remove(&rs);
                self.intervals.insert(ls, lc + count + rc);
            }
            (Some((ls, lc)), None) => {
                self.intervals.insert(ls, lc + count);
            }
            (None, Some((rs, rc))) => {
                self.intervals.remove(&rs);
                self.intervals.insert(start, count + rc);
            }
            (None, None) => {
                self.intervals.insert(start, count);
            }
        }
        self.pages += count;
        Ok(())
    }

    /// Marks `count` pages from `page` as unused; they must all be used and
    /// lie in one interval.
    pub fn remove(&mut self, page: Page, count: u64) -> Result<(), UsedSpaceError> {
        let start = page.number();
        let end = start.checked_add(count).ok_or(UsedSpaceError::Empty)?;
        if count == 0 {
            return Err(UsedSpaceError::Empty);
        }
        let (s, c) = self
            .intervals
            .range(..=start)
            .next_back()
            .map(|(&s, &c)| (s, c))
            .ok_or(UsedSpaceError::NotUsed)?;
        if end > s + c {
            return Err(UsedSpaceError::NotUsed);
        }
        if s == start {
            self.intervals.remove(&s);
        } else {
            self.intervals.insert(s, start - s);
        }
        if end < s + c {
            self.intervals.insert(end, s + c - end);
        }
        self.pages -= count;
        Ok(())
    }

    /// Removes and returns every interval at or above `page`, splitting the
    /// one that straddles it; highest first.
    pub fn split_off(&mut self, page: Page) -> alloc::vec::Vec<PageRange> {
        let cut = page.number();
        let mut out = alloc::vec::Vec::new();
        if let Some((&s, &c)) = self.intervals.range(..cut).next_back() {
            if s + c > cut {
                self.intervals.insert(s, cut - s);
                self.intervals.insert(cut, s + c - cut);
            }
        }
        let upper = self.intervals.split_off(&cut);
        for (s, c) in upper.into_iter().rev() {
            self.pages -= c;
            out.push(PageRange::new(Page::from_number(s), c));
        }
        out
    }

    /// Empties the set, returning the intervals it held.
    pub fn take(&mut self) -> UsedSpace {
        core::mem::take(self)
    }
}
