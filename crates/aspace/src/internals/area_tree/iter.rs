//! In-order iteration: [`Iter`] walks the chain of leaves.

use core::iter::FusedIterator;

use super::node::{Leaf, NIL};
use super::AreaTree;

impl<V> AreaTree<V> {
    /// The entries in ascending order, as `(start, end, &value)`.
    pub fn iter(&self) -> Iter<'_, V> {
        let mut leaf = if self.height == 0 { NIL } else { self.root };
        for _ in 1..self.height {
            leaf = self.inners[leaf as usize].children[0];
        }
        Iter {
            leaves: &self.leaves,
            leaf,
            pos: 0,
            remaining: self.len,
        }
    }
}

/// Iterator over the entries of an [`AreaTree`] in ascending order, as
/// `(start, end, &value)`; returned by [`AreaTree::iter`].
pub struct Iter<'a, V> {
    pub(super) leaves: &'a [Leaf<V>],
    pub(super) leaf: u32,
    pub(super) pos: usize,
    pub(super) remaining: usize,
}

impl<'a, V> Iterator for Iter<'a, V> {
    type Item = (u64, u64, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let leaf = self.leaves.get(self.leaf as usize)?;
            if self.pos < leaf.len() {
                let i = self.pos;
                self.pos += 1;
                self.remaining -= 1;
                return Some((leaf.starts[i], leaf.ends[i], leaf.values[i].as_ref()?));
            }
            self.leaf = leaf.next;
            self.pos = 0;
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<V> Clone for Iter<'_, V> {
    fn clone(&self) -> Self {
        Iter { ..*self }
    }
}

impl<V> ExactSizeIterator for Iter<'_, V> {}

impl<V> FusedIterator for Iter<'_, V> {}

impl<'a, V> IntoIterator for &'a AreaTree<V> {
    type Item = (u64, u64, &'a V);
    type IntoIter = Iter<'a, V>;

    fn into_iter(self) -> Iter<'a, V> {
        self.iter()
    }
}
