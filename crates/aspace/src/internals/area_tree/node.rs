//! The nodes: [`Leaf`] and [`Inner`], their fill constants, the branch-free
//! search within a node ([`rank`], [`rank_by_quarters`]), and the moves of
//! entries or children between two sibling nodes that both insertion (a
//! spill) and removal (a refill) make.

/// Entries per leaf and separator keys per inner node (an inner node has up
/// to `CAP + 1` children). 16 rather than 32: half the node size and the
/// work of shifting entries, at lookup speed within noise (BENCHMARKS.md).
pub const CAP: usize = 16;

/// The least number of entries in a leaf other than the root.
pub(super) const MIN_LEAF: usize = CAP / 2;

/// The least number of keys in an inner node other than the root (it has
/// one more child).
pub(super) const MIN_KEYS: usize = CAP / 2;

/// Padding of unused `starts` and separator slots: greater than any start.
pub(super) const PAD: u64 = u64::MAX;

/// "No node": the end of the leaf chain, unused child slots, an empty hint.
pub(super) const NIL: u32 = u32::MAX;

/// What an inner node knows of each child's subtree, for the free-gap
/// search: the largest gap between two consecutive entries inside it, the
/// lowest page any of its entries occupies (the first entry's start less
/// its guard) and the end of its last entry. Kept only by trees made with
/// [`AreaTree::with_gaps`](super::AreaTree::with_gaps).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(super) struct Sum {
    /// The largest `low(k) - end(k - 1)` over consecutive entries inside.
    pub(super) gap: u64,
    /// The first entry's start minus its guard.
    pub(super) lo: u64,
    /// The last entry's end.
    pub(super) hi: u64,
}

impl Sum {
    /// The summary of two neighbouring runs of entries, `self` before
    /// `next`.
    #[inline]
    pub(super) fn join(self, next: Sum) -> Sum {
        Sum {
            gap: self.gap.max(next.gap).max(next.lo.saturating_sub(self.hi)),
            lo: self.lo,
            hi: next.hi,
        }
    }
}

/// The summaries of an inner node's children, kept in an arena of their
/// own beside the nodes' (same index), so that a lookup's descent, which
/// never reads them, touches no more memory than without them.
pub(super) type Sums = [Sum; CAP + 1];

/// The most inner levels a tree can have. With `u32` node indices a tree has
/// fewer than 2^32 leaves, and height `h` needs at least
/// `2 * (MIN_KEYS + 1)^(h - 2)` of them, so `h - 1 <= 10` for `CAP = 16`;
/// the path arrays leave room to spare (and no more: every insertion and
/// removal fills one).
pub(super) const MAX_INNER_LEVELS: usize = 12;

// `rank` halves CAP down to a run of 4; a merge of an underfull node with a
// sibling at the minimum fits in one node; a non-root leaf keeps an entry
// after a removal.
const _: () = assert!(CAP.is_power_of_two() && CAP >= 8);
// One more inner level than the path arrays hold would take more leaves
// than `u32` indices can name.
const _: () =
    assert!(2 * ((MIN_KEYS + 1) as u128).pow(MAX_INNER_LEVELS as u32 - 1) > u32::MAX as u128);
const _: () = assert!(2 * MIN_LEAF <= CAP + 1 && 2 * MIN_KEYS <= CAP && MIN_LEAF >= 2);

/// How many of `keys` (sorted, padded with `u64::MAX`) are `<= n`, without
/// branches: binary steps over the whole fixed array narrow it to a run of
/// four keys (every key before the run is `<= n`, every key after it
/// `> n`), which are counted. For `CAP = 16` that is two conditional moves
/// and four compare-and-adds, with no bounds checks left. The caller clamps
/// the result to the node's length. Used for leaves (see
/// [`rank_by_quarters`] for inner nodes).
#[inline(always)]
fn rank(keys: &[u64; CAP], n: u64) -> usize {
    let mut base = 0;
    let mut size = CAP;
    while size > 4 {
        let half = size / 2;
        if keys[base + half - 1] <= n {
            base += half;
        }
        size -= half;
    }
    base + count_le(&keys[base..base + 4], n)
}

/// The same count as [`rank`], with fewer loads that wait for one another:
/// the last keys of the first three quarters are compared at once, which
/// picks the quarter, and its keys are counted. Two dependent rounds of
/// loads instead of three. Used for inner nodes, whose keys are the ones a
/// lookup in a large tree is most likely to miss in the cache; leaves
/// (mostly in the cache) keep [`rank`], which measured faster for them
/// (BENCHMARKS.md).
#[inline(always)]
fn rank_by_quarters(keys: &[u64; CAP], n: u64) -> usize {
    const Q: usize = CAP / 4;
    let quarter = usize::from(keys[Q - 1] <= n)
        + usize::from(keys[2 * Q - 1] <= n)
        + usize::from(keys[3 * Q - 1] <= n);
    let base = quarter * Q;
    base + count_le(&keys[base..base + Q], n)
}

/// How many of `keys` are `<= n` (compare-and-adds, no branches).
#[inline(always)]
fn count_le(keys: &[u64], n: u64) -> usize {
    keys.iter().map(|&k| usize::from(k <= n)).sum()
}

/// A leaf: up to `CAP` entries sorted by start.
#[derive(Clone)]
pub(super) struct Leaf<V> {
    /// Starts of the entries; `PAD` from `len` on.
    pub(super) starts: [u64; CAP],
    /// Ends of the entries; 0 from `len` on.
    pub(super) ends: [u64; CAP],
    /// Guard pages below each entry (kept free, though no lookup finds
    /// the entry there); 0 from `len` on.
    pub(super) guards: [u8; CAP],
    /// Values of the entries; `None` from `len` on.
    pub(super) values: [Option<V>; CAP],
    /// Number of entries; 0 for a freed leaf.
    pub(super) len: u32,
    /// The next leaf in key order, or `NIL`.
    pub(super) next: u32,
}

impl<V> Leaf<V> {
    pub(super) fn new() -> Self {
        Leaf {
            starts: [PAD; CAP],
            ends: [0; CAP],
            guards: [0; CAP],
            values: [const { None }; CAP],
            len: 0,
            next: NIL,
        }
    }

    #[inline(always)]
    pub(super) fn len(&self) -> usize {
        self.len as usize
    }

    /// The lowest page entry `j` occupies: its start less its guard.
    #[inline(always)]
    pub(super) fn low(&self, j: usize) -> u64 {
        self.starts[j] - u64::from(self.guards[j])
    }

    /// The summary of this (non-empty) leaf's entries.
    pub(super) fn summary(&self) -> Sum {
        let n = self.len();
        let mut gap = 0;
        for j in 1..n {
            gap = gap.max(self.low(j) - self.ends[j - 1]);
        }
        Sum {
            gap,
            lo: self.low(0),
            hi: self.ends[n.max(1) - 1],
        }
    }

    /// Number of entries whose start is `<= n`.
    #[inline(always)]
    pub(super) fn rank(&self, n: u64) -> usize {
        rank(&self.starts, n).min(self.len())
    }

    /// Position of the entry starting exactly at `start`.
    #[inline]
    pub(super) fn position(&self, start: u64) -> Option<usize> {
        let i = self.rank(start);
        (i > 0 && self.starts[i - 1] == start).then(|| i - 1)
    }

    /// Entry `j` (which must be below the length) as `(start, end, &value)`.
    #[inline]
    pub(super) fn entry(&self, j: usize) -> Option<(u64, u64, &V)> {
        Some((self.starts[j], self.ends[j], self.values[j].as_ref()?))
    }

    /// The entry of this leaf containing `n`.
    #[inline(always)]
    pub(super) fn lookup(&self, n: u64) -> Option<(u64, u64, &V)> {
        let i = self.rank(n);
        if i == 0 {
            return None;
        }
        let j = i - 1;
        if n < self.ends[j] {
            Some((self.starts[j], self.ends[j], self.values[j].as_ref()?))
        } else {
            None
        }
    }

    /// Inserts an entry with `guard` guard pages at position `i`; the leaf
    /// must not be full.
    pub(super) fn insert_at(&mut self, i: usize, start: u64, end: u64, guard: u8, value: V) {
        let len = self.len();
        debug_assert!(len < CAP && i <= len);
        if i < len {
            self.starts.copy_within(i..len, i + 1);
            self.ends.copy_within(i..len, i + 1);
            self.guards.copy_within(i..len, i + 1);
        }
        // Adjacent swaps: a few entries at most, moved inline (a rotation
        // goes through a general copy routine).
        for j in (i..len).rev() {
            self.values.swap(j, j + 1);
        }
        self.starts[i] = start;
        self.ends[i] = end;
        self.guards[i] = guard;
        self.values[i] = Some(value);
        self.len += 1;
    }

    /// Removes the entry at position `i`: `(start, end, value)`.
    pub(super) fn remove_at(&mut self, i: usize) -> (u64, u64, V) {
        let len = self.len();
        debug_assert!(i < len);
        let (start, end) = (self.starts[i], self.ends[i]);
        let value = self.values[i]
            .take()
            .expect("area tree: live entry without a value");
        if i + 1 < len {
            self.starts.copy_within(i + 1..len, i);
            self.ends.copy_within(i + 1..len, i);
            self.guards.copy_within(i + 1..len, i);
        }
        for j in i..len - 1 {
            self.values.swap(j, j + 1);
        }
        self.starts[len - 1] = PAD;
        self.ends[len - 1] = 0;
        self.guards[len - 1] = 0;
        self.len -= 1;
        (start, end, value)
    }

    /// Moves the entries from position `at` on into a new leaf, which takes
    /// this leaf's place in the chain's order (the caller links it).
    pub(super) fn split_off(&mut self, at: usize) -> Leaf<V> {
        let len = self.len();
        let n = len - at;
        let mut right = Leaf::new();
        right.starts[..n].copy_from_slice(&self.starts[at..len]);
        right.ends[..n].copy_from_slice(&self.ends[at..len]);
        right.guards[..n].copy_from_slice(&self.guards[at..len]);
        for (dst, src) in right.values.iter_mut().zip(&mut self.values[at..len]) {
            *dst = src.take();
        }
        self.starts[at..len].fill(PAD);
        self.ends[at..len].fill(0);
        self.guards[at..len].fill(0);
        right.len = n as u32;
        self.len = at as u32;
        right
    }

    /// Moves the first `k` entries of `right` (its right sibling: all its
    /// entries are greater) to the end of this leaf.
    pub(super) fn take_front(&mut self, right: &mut Leaf<V>, k: usize) {
        let (len, rn) = (self.len(), right.len());
        debug_assert!(k <= rn && len + k <= CAP);
        self.starts[len..len + k].copy_from_slice(&right.starts[..k]);
        self.ends[len..len + k].copy_from_slice(&right.ends[..k]);
        self.guards[len..len + k].copy_from_slice(&right.guards[..k]);
        for (dst, src) in self.values[len..].iter_mut().zip(&mut right.values[..k]) {
            *dst = src.take();
        }
        right.starts.copy_within(k..rn, 0);
        right.ends.copy_within(k..rn, 0);
        right.guards.copy_within(k..rn, 0);
        right.values[..rn].rotate_left(k);
        right.starts[rn - k..rn].fill(PAD);
        right.ends[rn - k..rn].fill(0);
        right.guards[rn - k..rn].fill(0);
        self.len += k as u32;
        right.len -= k as u32;
    }

    /// Moves the last `k` entries of this leaf to the front of `right` (its
    /// right sibling).
    pub(super) fn move_tail_to(&mut self, right: &mut Leaf<V>, k: usize) {
        let (len, rn) = (self.len(), right.len());
        debug_assert!(k <= len && rn + k <= CAP);
        right.starts.copy_within(0..rn, k);
        right.ends.copy_within(0..rn, k);
        right.guards.copy_within(0..rn, k);
        right.values[..rn + k].rotate_right(k);
        right.starts[..k].copy_from_slice(&self.starts[len - k..len]);
        right.ends[..k].copy_from_slice(&self.ends[len - k..len]);
        right.guards[..k].copy_from_slice(&self.guards[len - k..len]);
        for (dst, src) in right.values[..k]
            .iter_mut()
            .zip(&mut self.values[len - k..len])
        {
            *dst = src.take();
        }
        self.starts[len - k..len].fill(PAD);
        self.ends[len - k..len].fill(0);
        self.guards[len - k..len].fill(0);
        self.len -= k as u32;
        right.len += k as u32;
    }
}

/// An inner node: `nkeys` separators and `nkeys + 1` children.
#[derive(Clone)]
pub(super) struct Inner {
    /// Separators: `keys[i]` is the least start under `children[i + 1]`;
    /// `PAD` from `nkeys` on.
    pub(super) keys: [u64; CAP],
    /// Child indices (leaves on the lowest inner level, inner nodes above);
    /// `NIL` from `nkeys + 1` on.
    pub(super) children: [u32; CAP + 1],
    /// Number of keys; 0 for a freed node.
    pub(super) nkeys: u32,
}

impl Inner {
    pub(super) fn new() -> Self {
        Inner {
            keys: [PAD; CAP],
            children: [NIL; CAP + 1],
            nkeys: 0,
        }
    }

    #[inline(always)]
    pub(super) fn nkeys(&self) -> usize {
        self.nkeys as usize
    }

    /// The summary of this node's subtree, from its children's (`sums`).
    pub(super) fn summary(&self, sums: &Sums) -> Sum {
        let n = self.nkeys();
        let mut sum = sums[0];
        for s in &sums[1..=n] {
            sum = sum.join(*s);
        }
        sum
    }

    /// The slot of the child whose subtree holds the greatest start `<= n`.
    #[inline(always)]
    pub(super) fn child_for(&self, n: u64) -> usize {
        rank_by_quarters(&self.keys, n).min(self.nkeys())
    }

    /// Inserts `key` at `keys[i]` and `child` (with its summary `sum`) at
    /// `children[i + 1]`; the node must not be full.
    pub(super) fn insert_at(&mut self, sums: &mut Sums, i: usize, key: u64, child: u32, sum: Sum) {
        let n = self.nkeys();
        debug_assert!(n < CAP && i <= n);
        self.keys.copy_within(i..n, i + 1);
        self.children.copy_within(i + 1..n + 1, i + 2);
        sums.copy_within(i + 1..n + 1, i + 2);
        self.keys[i] = key;
        self.children[i + 1] = child;
        sums[i + 1] = sum;
        self.nkeys += 1;
    }

    /// Removes `keys[i]` and `children[i + 1]`.
    pub(super) fn remove_at(&mut self, sums: &mut Sums, i: usize) {
        let n = self.nkeys();
        debug_assert!(i < n);
        self.keys.copy_within(i + 1..n, i);
        self.children.copy_within(i + 2..n + 1, i + 1);
        sums.copy_within(i + 2..n + 1, i + 1);
        self.keys[n - 1] = PAD;
        self.children[n] = NIL;
        sums[n] = Sum::default();
        self.nkeys -= 1;
    }

    /// Inserts like [`insert_at`](Inner::insert_at) into a full node by
    /// splitting the `CAP + 1` keys: keeps the lower `m`, returns key `m`
    /// (to go up) and a new node with the upper `CAP - m`.
    pub(super) fn insert_split(
        &mut self,
        own: &mut Sums,
        i: usize,
        (key, child, sum): (u64, u32, Sum),
        m: usize,
    ) -> (u64, Inner, Sums) {
        debug_assert!(self.nkeys() == CAP && (MIN_KEYS..=CAP - MIN_KEYS).contains(&m));
        let mut keys = [PAD; CAP + 1];
        let mut children = [NIL; CAP + 2];
        let mut sums = [Sum::default(); CAP + 2];
        keys[..i].copy_from_slice(&self.keys[..i]);
        keys[i] = key;
        keys[i + 1..].copy_from_slice(&self.keys[i..]);
        children[..=i].copy_from_slice(&self.children[..=i]);
        children[i + 1] = child;
        children[i + 2..].copy_from_slice(&self.children[i + 1..]);
        sums[..=i].copy_from_slice(&own[..=i]);
        sums[i + 1] = sum;
        sums[i + 2..].copy_from_slice(&own[i + 1..]);

        let mut right = Inner::new();
        right.keys[..CAP - m].copy_from_slice(&keys[m + 1..]);
        right.children[..=CAP - m].copy_from_slice(&children[m + 1..]);
        let mut right_sums = [Sum::default(); CAP + 1];
        right_sums[..=CAP - m].copy_from_slice(&sums[m + 1..]);
        right.nkeys = (CAP - m) as u32;
        self.keys = [PAD; CAP];
        self.keys[..m].copy_from_slice(&keys[..m]);
        self.children = [NIL; CAP + 1];
        self.children[..=m].copy_from_slice(&children[..=m]);
        *own = [Sum::default(); CAP + 1];
        own[..=m].copy_from_slice(&sums[..=m]);
        self.nkeys = m as u32;
        (keys[m], right, right_sums)
    }
}

/// Moves the first `k` children of `right` (and the keys and summaries
/// between and of them) to
/// the end of its left sibling `left`, rotating through `sep`, the
/// separator between the two in their parent; returns the new separator.
pub(super) fn inner_take_front(
    (left, ls): (&mut Inner, &mut Sums),
    (right, rs): (&mut Inner, &mut Sums),
    sep: u64,
    k: usize,
) -> u64 {
    let (ln, rn) = (left.nkeys(), right.nkeys());
    debug_assert!(k >= 1 && k <= rn && ln + k <= CAP);
    left.keys[ln] = sep;
    left.keys[ln + 1..ln + k].copy_from_slice(&right.keys[..k - 1]);
    left.children[ln + 1..ln + 1 + k].copy_from_slice(&right.children[..k]);
    ls[ln + 1..ln + 1 + k].copy_from_slice(&rs[..k]);
    left.nkeys += k as u32;
    let new_sep = right.keys[k - 1];
    right.keys.copy_within(k..rn, 0);
    right.children.copy_within(k..rn + 1, 0);
    rs.copy_within(k..rn + 1, 0);
    right.keys[rn - k..rn].fill(PAD);
    right.children[rn + 1 - k..=rn].fill(NIL);
    rs[rn + 1 - k..=rn].fill(Sum::default());
    right.nkeys -= k as u32;
    new_sep
}

/// Moves the last `k` children of `left` (and the keys between them) to
/// the front of its right sibling `right`, rotating through `sep` like
/// [`inner_take_front`]; returns the new separator.
pub(super) fn inner_move_tail_to(
    (left, ls): (&mut Inner, &mut Sums),
    (right, rs): (&mut Inner, &mut Sums),
    sep: u64,
    k: usize,
) -> u64 {
    let (ln, rn) = (left.nkeys(), right.nkeys());
    debug_assert!(k >= 1 && k <= ln && rn + k <= CAP);
    right.keys.copy_within(0..rn, k);
    right.children.copy_within(0..rn + 1, k);
    rs.copy_within(0..rn + 1, k);
    right.keys[..k - 1].copy_from_slice(&left.keys[ln + 1 - k..ln]);
    right.keys[k - 1] = sep;
    right.children[..k].copy_from_slice(&left.children[ln + 1 - k..=ln]);
    rs[..k].copy_from_slice(&ls[ln + 1 - k..=ln]);
    right.nkeys += k as u32;
    let new_sep = left.keys[ln - k];
    left.keys[ln - k..ln].fill(PAD);
    left.children[ln + 1 - k..=ln].fill(NIL);
    ls[ln + 1 - k..=ln].fill(Sum::default());
    left.nkeys -= k as u32;
    new_sep
}
