//! The node arenas: taking nodes from the free lists or the end of the
//! arenas and giving them back, and reserving ahead so that changes do not
//! allocate.

use alloc::vec::Vec;

use super::node::{Inner, Leaf, Sums, CAP, MIN_KEYS, MIN_LEAF, NIL, PAD};
use super::AreaTree;

impl<V> AreaTree<V> {
    /// The most leaves and inner nodes a tree of `len` entries can have:
    /// every leaf but the root holds at least `MIN_LEAF` entries, and every
    /// inner node but the root has at least `MIN_KEYS + 1` children, so a
    /// level of `k > 1` nodes has at most `max(1, k / (MIN_KEYS + 1))`
    /// parents.
    fn max_nodes(len: usize) -> (usize, usize) {
        if len == 0 {
            return (0, 0);
        }
        let leaves = (len / MIN_LEAF).max(1);
        let (mut inners, mut level) = (0, leaves);
        while level > 1 {
            level = (level / (MIN_KEYS + 1)).max(1);
            inners += level;
        }
        (leaves, inners)
    }

    /// Makes room for `additional` more entries: afterwards no insertion
    /// allocates (nor does anything else but [`clone`](Clone::clone) and
    /// [`drain`](Self::drain)'s result) as long as the tree holds at most
    /// `len() + additional` entries, whatever removals come in between.
    ///
    /// Why that suffices: node fills bound the live nodes of a tree of
    /// `len` entries (at most `len / (CAP / 2)` leaves, and inner levels
    /// above them that shrink by a factor `CAP / 2 + 1`), an insertion
    /// allocates nodes only for the splits it makes (a leaf, an inner node
    /// per level, and a new root) and frees none, so the tree right after
    /// it obeys the bound, and a removal only frees. Freed nodes go on free
    /// lists threaded through the nodes themselves, and a new node is taken
    /// from there before the arena grows; so an arena whose capacity covers
    /// the bound for the largest size the tree reaches never grows.
    ///
    /// Reserving on an empty arena reserves exactly; otherwise the arenas
    /// grow as a `Vec` does, so that repeated small reservations stay
    /// amortised O(1).
    pub fn reserve(&mut self, additional: usize) {
        let (leaves, inners) = Self::max_nodes(self.len.saturating_add(additional));
        fn grow<T>(arena: &mut Vec<T>, capacity: usize) {
            if capacity <= arena.capacity() {
                return;
            }
            let more = capacity - arena.len();
            if arena.capacity() == 0 {
                arena.reserve_exact(more);
            } else {
                arena.reserve(more);
            }
        }
        grow(&mut self.leaves, leaves);
        grow(&mut self.inners, inners);
        grow(&mut self.sums, inners);
    }

    /// Whether `additional` more entries fit without the arenas growing:
    /// what [`try_reserve`](Self::try_reserve) would find without
    /// allocating, asked without changing anything.
    pub fn has_room(&self, additional: usize) -> bool {
        let (leaves, inners) = Self::max_nodes(self.len.saturating_add(additional));
        self.leaves.capacity() >= leaves
            && self.inners.capacity() >= inners
            && self.sums.capacity() >= inners
    }

    /// [`reserve`](Self::reserve) that reports a refused heap allocation
    /// (`false`, the tree unchanged) instead of aborting: for operations
    /// that must fail cleanly before they change anything (a split of an
    /// area inserts an entry).
    pub fn try_reserve(&mut self, additional: usize) -> bool {
        let want = self.len.saturating_add(additional);
        if want <= self.covered {
            return true;
        }
        let (leaves, inners) = Self::max_nodes(want);
        fn grow<T>(arena: &mut Vec<T>, capacity: usize) -> bool {
            if capacity <= arena.capacity() {
                return true;
            }
            let more = capacity - arena.len();
            if arena.capacity() == 0 {
                arena.try_reserve_exact(more).is_ok()
            } else {
                arena.try_reserve(more).is_ok()
            }
        }
        let done = grow(&mut self.leaves, leaves)
            && grow(&mut self.inners, inners)
            && grow(&mut self.sums, inners);
        if done {
            self.covered = want;
        }
        done
    }

    /// A copy of the tree, or `None` (nothing kept) if the heap refuses
    /// the copy's nodes: for a copy that must fail cleanly (a forked
    /// process's records). The values are cloned as they are; a value
    /// whose clone allocates infallibly defeats the purpose.
    pub fn try_clone(&self) -> Option<Self>
    where
        V: Clone,
    {
        fn copy<T: Clone>(from: &[T]) -> Option<Vec<T>> {
            let mut to = Vec::new();
            to.try_reserve_exact(from.len()).ok()?;
            to.extend_from_slice(from);
            Some(to)
        }
        Some(self.copy_with(copy(&self.leaves)?, copy(&self.inners)?, copy(&self.sums)?))
    }

    /// This tree over the arenas `leaves`, `inners` and `sums` (copies of
    /// its own): the room it knows of is checked afresh (`covered` 0), as
    /// a copy's arenas hold only the nodes.
    pub(super) fn copy_with<W>(
        &self,
        leaves: Vec<Leaf<W>>,
        inners: Vec<Inner>,
        sums: Vec<Sums>,
    ) -> AreaTree<W> {
        AreaTree {
            leaves,
            inners,
            sums,
            free_leaves: self.free_leaves,
            free_inners: self.free_inners,
            free_leaf_count: self.free_leaf_count,
            free_inner_count: self.free_inner_count,
            root: self.root,
            height: self.height,
            len: self.len,
            gaps: self.gaps,
            covered: 0,
        }
    }

    /// Makes sure an insertion at `start` allocates nothing: room for the
    /// nodes its splits may take (a leaf if its leaf is full, an inner node
    /// per full inner node above, a new root if the root is full too), from
    /// the free lists or the arenas' spare capacity, growing the arenas
    /// only if those fall short. `false` (the tree unchanged) if the heap
    /// refuses. O(log n), and allocates nothing when there is room: cheap
    /// enough to call before every insertion of a new entry.
    pub fn try_reserve_insertion(&mut self, start: u64) -> bool {
        let (bound_leaves, bound_inners) = Self::max_nodes(self.len.saturating_add(1));
        if self.leaves.capacity() >= bound_leaves
            && self.inners.capacity() >= bound_inners
            && self.sums.capacity() >= bound_inners
        {
            // Covered by the bound `reserve` relies on.
            return true;
        }
        let (leaves, inners) = if self.height == 0 {
            (1, 0)
        } else {
            let mut path = super::search::Path::new();
            let (node, _) = self.descend_path(start, &mut path);
            if self.leaves[node as usize].len() < CAP {
                return true;
            }
            // Each full inner node on the route may split; if all do (or
            // the root is the leaf), a new root comes on top.
            let full = path.steps[..path.len]
                .iter()
                .rev()
                .take_while(|&&(p, _)| self.inners[p as usize].nkeys() >= CAP)
                .count();
            let new_root = usize::from(full == path.len);
            (1, full + new_root)
        };
        fn room<T>(arena: &mut Vec<T>, free: usize, need: usize) -> bool {
            let spare = arena.capacity() - arena.len() + free;
            need <= spare || arena.try_reserve(need - spare).is_ok()
        }
        room(&mut self.leaves, self.free_leaf_count, leaves)
            && room(&mut self.inners, self.free_inner_count, inners)
            && room(&mut self.sums, self.free_inner_count, inners)
    }

    /// Stores `leaf` in a freed slot, or else at the end of the arena.
    pub(super) fn alloc_leaf(&mut self, leaf: Leaf<V>) -> u32 {
        let i = self.free_leaves;
        if i != NIL {
            let slot = &mut self.leaves[i as usize];
            self.free_leaves = slot.next;
            self.free_leaf_count -= 1;
            *slot = leaf;
            i
        } else {
            let i = index(self.leaves.len());
            self.leaves.push(leaf);
            i
        }
    }

    /// An empty leaf: a freed one reset in place (a leaf is large: no copy
    /// of a new one into the slot), or else a new one at the end of the
    /// arena.
    pub(super) fn alloc_empty_leaf(&mut self) -> u32 {
        let i = self.free_leaves;
        if i == NIL {
            return self.alloc_leaf(Leaf::new());
        }
        let slot = &mut self.leaves[i as usize];
        self.free_leaves = slot.next;
        self.free_leaf_count -= 1;
        debug_assert!(slot.len == 0 && slot.values.iter().all(Option::is_none));
        slot.starts = [PAD; CAP];
        slot.ends = [0; CAP];
        slot.guards = [0; CAP];
        slot.next = NIL;
        i
    }

    /// Puts an emptied leaf on the free list (linked through its `next`).
    /// Its length is 0, so hints naming it fail validation.
    pub(super) fn free_leaf(&mut self, i: u32) {
        let leaf = &mut self.leaves[i as usize];
        debug_assert!(leaf.len == 0 && leaf.values.iter().all(Option::is_none));
        leaf.len = 0;
        leaf.next = self.free_leaves;
        self.free_leaves = i;
        self.free_leaf_count += 1;
    }

    /// Stores `inner` with its children's summaries in a freed slot, or
    /// else at the end of the arenas.
    pub(super) fn alloc_inner(&mut self, inner: Inner, sums: Sums) -> u32 {
        let i = self.free_inners;
        if i != NIL {
            let slot = &mut self.inners[i as usize];
            self.free_inners = slot.children[0];
            self.free_inner_count -= 1;
            *slot = inner;
            self.sums[i as usize] = sums;
            i
        } else {
            let i = index(self.inners.len());
            self.inners.push(inner);
            self.sums.push(sums);
            i
        }
    }

    /// Clears an inner node and puts it on the free list (linked through
    /// its first child slot).
    pub(super) fn free_inner(&mut self, i: u32) {
        self.sums[i as usize] = Sums::default();
        let node = &mut self.inners[i as usize];
        *node = Inner::new();
        node.children[0] = self.free_inners;
        self.free_inners = i;
        self.free_inner_count += 1;
    }
}

/// A node index from an arena length.
fn index(len: usize) -> u32 {
    match u32::try_from(len) {
        Ok(i) if i != NIL => i,
        _ => panic!("area tree: more than 2^32 - 1 nodes"),
    }
}

/// Mutable references to two distinct elements of a slice.
pub(super) fn pair_mut<T>(v: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    assert_ne!(a, b, "pair_mut of one element");
    if a < b {
        let (lo, hi) = v.split_at_mut(b);
        (&mut lo[a], &mut hi[0])
    } else {
        let (lo, hi) = v.split_at_mut(a);
        (&mut hi[0], &mut lo[b])
    }
}
