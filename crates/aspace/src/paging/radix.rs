//! The walk, growth and teardown shared by the radix-tree formats with
//! 512 eight-byte entries per 4 KiB table (x86_64, RISC-V Sv39/Sv48,
//! AArch64): a
//! format says how its intermediate entries look, this module does the rest
//! under [`PageTable`](super::PageTable)'s concurrency rules.
//!
//! Intermediate tables are installed with one compare-and-swap after being
//! zeroed; a CPU that loses the race keeps its table spare. All tables a
//! path lacks are allocated before any is installed, so running out of
//! frames leaves the tree as it was. Intermediate tables stay when their
//! last page goes and are freed only by the owner's destroy.

use core::marker::PhantomData;
use core::ops::Range;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::addr::{Frame, Page, PhysAddr};
use crate::memory::{FrameAllocator, PhysMemory};
use crate::paging::{Rewritten, Unmapped};
use crate::{Error, Result};

/// The index of the word at `a` in its frame (an entry's in its table).
fn word_of_addr(a: PhysAddr) -> usize {
    (a.frame_offset() / 8) as usize
}

/// A leaf entry being visited: its address, and its word when the memory
/// lends the table ([`PhysMemory::frame_words`]).
#[derive(Clone, Copy)]
struct Slot<'a> {
    addr: PhysAddr,
    word: Option<&'a AtomicU64>,
}

impl Slot<'_> {
    /// Stores `value` in the entry: one atomic store either way.
    #[inline]
    fn write<P: PhysMemory>(self, mem: &P, value: u64) {
        match self.word {
            Some(w) => w.store(value, Ordering::Release),
            None => mem.write_u64(self.addr, value),
        }
    }
}

/// Entries per table.
pub(crate) const ENTRIES: u64 = 512;

/// How a format writes and reads the entries of its intermediate levels.
pub(crate) trait TableEntry {
    /// Whether an intermediate entry points to a next-level table.
    fn is_table(e: u64) -> bool;
    /// The entry pointing to the table in `frame`.
    fn table_entry(frame: Frame) -> u64;
    /// The table a table entry points to.
    fn next_table(e: u64) -> Frame;
}

/// A radix tree of `levels` levels rooted at `root`.
#[derive(Debug)]
pub(crate) struct Radix<E> {
    root: Frame,
    levels: u32,
    /// Frames of the root and the intermediate tables.
    tables: AtomicU64,
    _format: PhantomData<fn() -> E>,
}

#[inline]
fn entry_addr(table: Frame, index: u64) -> PhysAddr {
    PhysAddr::new(table.start().as_u64() + index * 8)
}

impl<E: TableEntry> Radix<E> {
    /// A tree with a zeroed root.
    pub(crate) fn new<P: PhysMemory, F: FrameAllocator>(
        mem: &P,
        frames: &F,
        levels: u32,
    ) -> Result<Self> {
        debug_assert!((2..=5).contains(&levels));
        let root = frames.alloc().ok_or(Error::NoMemory)?;
        mem.zero_frame(root);
        Ok(Self {
            root,
            levels,
            tables: AtomicU64::new(1),
            _format: PhantomData,
        })
    }

    /// A tree whose root slots `slots` (the kernel half) hold what
    /// `kernel`'s do, the others zeroed: user tables borrow the kernel's
    /// subtrees and never free them.
    pub(crate) fn new_sharing<P: PhysMemory, F: FrameAllocator>(
        mem: &P,
        frames: &F,
        levels: u32,
        kernel: Option<&Self>,
        slots: Range<u64>,
    ) -> Result<Self> {
        let tree = Self::new(mem, frames, levels)?;
        if let Some(k) = kernel {
            for i in slots {
                mem.write_u64(tree.root_slot(i), mem.read_u64(k.root_slot(i)));
            }
        }
        Ok(tree)
    }

    /// Writes the leaf entry `entry` for `page`, creating missing tables;
    /// the entry must not map a page now (`mapped` says whether one does):
    /// the core never rewrites a valid entry, so no CPU can hold a
    /// translation of what it overwrites.
    pub(crate) fn set_leaf<P: PhysMemory, F: FrameAllocator>(
        &self,
        mem: &P,
        frames: &F,
        page: Page,
        entry: u64,
        mapped: impl Fn(u64) -> bool,
    ) -> Result<()> {
        let addr = self.leaf(mem, frames, page)?;
        debug_assert!(!mapped(mem.read_u64(addr)), "map over a mapped entry");
        mem.write_u64(addr, entry);
        Ok(())
    }

    /// The leaf entry of `page`, if its leaf table exists.
    pub(crate) fn read_leaf<P: PhysMemory>(&self, mem: &P, page: Page) -> Option<u64> {
        Some(mem.read_u64(self.find_leaf(mem, page)?))
    }

    /// Clears `page`'s leaf entry if it maps a frame (`frame_of` decodes
    /// it) and returns what it mapped.
    pub(crate) fn take_leaf<P: PhysMemory>(
        &self,
        mem: &P,
        page: Page,
        frame_of: impl Fn(u64) -> Option<Frame>,
    ) -> Option<Unmapped> {
        let addr = self.find_leaf(mem, page)?;
        let frame = frame_of(mem.read_u64(addr))?;
        mem.write_u64(addr, 0);
        Some(Unmapped::new(page, frame))
    }

    /// Calls `visit(page, entry address, entry)` for each leaf entry of
    /// the `count` pages from `first` that maps a frame (`frame_of` decodes
    /// it), in page order: one walk per leaf table; a missing table skips
    /// its pages.
    fn each_mapped<P: PhysMemory>(
        &self,
        mem: &P,
        first: Page,
        count: u64,
        frame_of: impl Fn(u64) -> Option<Frame>,
        mut visit: impl FnMut(Page, Slot<'_>, u64, Frame),
    ) {
        let mut i = 0;
        while i < count {
            let page = first.add(i);
            let chunk = (ENTRIES - Self::index(page, 1)).min(count - i);
            if let Some(at) = self.find_leaf(mem, page) {
                match mem.frame_words(at.frame()) {
                    // The table's words lent: one bounds check for the run.
                    Some(words) => {
                        let w0 = word_of_addr(at);
                        for (k, w) in words[w0..w0 + chunk as usize].iter().enumerate() {
                            let e = w.load(Ordering::Acquire);
                            if let Some(frame) = frame_of(e) {
                                let k = k as u64;
                                let addr = PhysAddr::new(at.as_u64() + k * 8);
                                let slot = Slot {
                                    addr,
                                    word: Some(w),
                                };
                                visit(page.add(k), slot, e, frame);
                            }
                        }
                    }
                    None => {
                        for k in 0..chunk {
                            let addr = PhysAddr::new(at.as_u64() + k * 8);
                            let e = mem.read_u64(addr);
                            if let Some(frame) = frame_of(e) {
                                visit(page.add(k), Slot { addr, word: None }, e, frame);
                            }
                        }
                    }
                }
            }
            i += chunk;
        }
    }

    /// Clears the leaf entries of the `count` pages from `first` that map
    /// a frame (`frame_of` decodes them), handing each to `out` in page
    /// order: one walk per leaf table.
    pub(crate) fn unmap_run<P: PhysMemory>(
        &self,
        mem: &P,
        first: Page,
        count: u64,
        frame_of: impl Fn(u64) -> Option<Frame>,
        out: &mut dyn FnMut(Unmapped),
    ) {
        self.each_mapped(mem, first, count, frame_of, |page, slot, _, frame| {
            slot.write(mem, 0);
            out(Unmapped::new(page, frame));
        });
    }

    /// Rewrites the leaf entry of each of the `count` pages from `first`
    /// that maps a frame (`frame_of` decodes them) to `rewrite(entry)`
    /// where that differs, noting each page rewritten. One walk per leaf
    /// table.
    pub(crate) fn protect_run<P: PhysMemory>(
        &self,
        mem: &P,
        first: Page,
        count: u64,
        frame_of: impl Fn(u64) -> Option<Frame>,
        rewrite: impl Fn(u64) -> u64,
    ) -> Rewritten {
        let mut rewritten = Rewritten::new();
        self.each_mapped(mem, first, count, frame_of, |page, slot, e, _| {
            let new = rewrite(e);
            if new != e {
                slot.write(mem, new);
                rewritten.note(page);
            }
        });
        rewritten
    }

    /// Moves the leaf entries of the `count` pages from `from` to the same
    /// places from `to`, as they are (accessed and dirty bits too): one
    /// walk per pair of leaf tables, the target's path made only where a
    /// source page is mapped (`mapped` says which). In a leaf table from
    /// its first mapped entry on every entry moves without a test (an
    /// unmapped one is empty, and so is its target): the run's pages move
    /// at the cost of their loads and stores. On `NoMemory` every entry
    /// moved is moved back first (which allocates nothing: the source
    /// tables are there).
    pub(crate) fn move_run<P: PhysMemory, F: FrameAllocator>(
        &self,
        mem: &P,
        frames: &F,
        from: Page,
        to: Page,
        count: u64,
        mapped: &impl Fn(u64) -> bool,
    ) -> Result<()> {
        let mut i = 0;
        while i < count {
            let (src, dst) = (from.add(i), to.add(i));
            let chunk = (ENTRIES - Self::index(src, 1))
                .min(ENTRIES - Self::index(dst, 1))
                .min(count - i);
            if let Some(at) = self.find_leaf(mem, src) {
                // The first mapped entry decides whether the target's
                // leaf table is needed (made only then).
                let first = (0..chunk).find(|&k| mapped(mem.read_u64(Self::slot(at, k))));
                if let Some(k0) = first {
                    let target = match self.leaf(mem, frames, dst) {
                        Ok(t) => t,
                        Err(err) => {
                            let _ = self.move_run(mem, frames, to, from, i, mapped);
                            return Err(err);
                        }
                    };
                    Self::move_entries(mem, at, target, k0, chunk, mapped);
                }
            }
            i += chunk;
        }
        Ok(())
    }

    /// The address of entry `k` of the table at `table`.
    #[inline]
    fn slot(table: PhysAddr, k: u64) -> PhysAddr {
        PhysAddr::new(table.as_u64() + k * 8)
    }

    /// Moves the entries `[k0, end)` of the leaf table at `src` to the same
    /// slots of the one at `dst` (whose entries there are all empty) and
    /// empties them. A loop of its own, so its counters stay in registers.
    #[inline]
    fn move_entries<P: PhysMemory>(
        mem: &P,
        src: PhysAddr,
        dst: PhysAddr,
        k0: u64,
        end: u64,
        mapped: &impl Fn(u64) -> bool,
    ) {
        // `src` and `dst` are the first entries' addresses, anywhere in
        // their tables.
        let lent = (mem.frame_words(src.frame()), mem.frame_words(dst.frame()));
        if let (Some(s), Some(d)) = lent {
            // The same atomic loads and stores, on lent words.
            let (k0, end) = (k0 as usize, end as usize);
            let (s, d) = (&s[word_of_addr(src)..], &d[word_of_addr(dst)..]);
            for (old, new) in s[k0..end].iter().zip(&d[k0..end]) {
                debug_assert!(
                    !mapped(new.load(Ordering::Acquire)),
                    "move over a mapped entry"
                );
                new.store(old.load(Ordering::Acquire), Ordering::Release);
                old.store(0, Ordering::Release);
            }
            return;
        }
        for k in k0..end {
            let (old, new) = (Self::slot(src, k), Self::slot(dst, k));
            debug_assert!(!mapped(mem.read_u64(new)), "move over a mapped entry");
            mem.write_u64(new, mem.read_u64(old));
            mem.write_u64(old, 0);
        }
    }

    /// The root table.
    pub(crate) fn root(&self) -> Frame {
        self.root
    }

    /// Frames the tree occupies.
    pub(crate) fn table_frames(&self) -> u64 {
        self.tables.load(Ordering::Relaxed)
    }

    /// Index into the table of `level` (`levels` = root .. 1 = leaf table).
    pub(crate) fn index(page: Page, level: u32) -> u64 {
        (page.number() >> (9 * (level - 1))) & (ENTRIES - 1)
    }

    /// Address of root slot `index`.
    pub(crate) fn root_slot(&self, index: u64) -> PhysAddr {
        entry_addr(self.root, index)
    }

    /// The address of `page`'s leaf entry, if its leaf table exists.
    pub(crate) fn find_leaf<P: PhysMemory>(&self, mem: &P, page: Page) -> Option<PhysAddr> {
        let mut table = self.root;
        for level in (2..=self.levels).rev() {
            let e = mem.read_u64(entry_addr(table, Self::index(page, level)));
            if !E::is_table(e) {
                return None;
            }
            table = E::next_table(e);
        }
        Some(entry_addr(table, Self::index(page, 1)))
    }

    /// The address of `page`'s leaf entry, creating missing tables: all of
    /// them allocated and zeroed before any is installed.
    pub(crate) fn leaf<P: PhysMemory, F: FrameAllocator>(
        &self,
        mem: &P,
        frames: &F,
        page: Page,
    ) -> Result<PhysAddr> {
        let mut table = self.root;
        let mut level = self.levels;
        while level >= 2 {
            let e = mem.read_u64(entry_addr(table, Self::index(page, level)));
            if !E::is_table(e) {
                break;
            }
            table = E::next_table(e);
            level -= 1;
        }
        if level < 2 {
            return Ok(entry_addr(table, Self::index(page, 1)));
        }
        let mut spare = [None; 4];
        for slot in spare.iter_mut().take(level as usize - 1) {
            let Some(f) = frames.alloc() else {
                spare.iter().flatten().for_each(|&f| {
                    frames.release(f);
                });
                return Err(Error::NoMemory);
            };
            mem.zero_frame(f);
            *slot = Some(f);
        }
        while level >= 2 {
            let addr = entry_addr(table, Self::index(page, level));
            let mut e = mem.read_u64(addr);
            if !E::is_table(e) {
                let slot = spare
                    .iter_mut()
                    .find(|s| s.is_some())
                    .expect("one spare table per missing level");
                let new = slot.expect("found above");
                e = match self.install(mem, addr, e, new) {
                    Ok(entry) => {
                        *slot = None;
                        entry
                    }
                    Err(found) => found,
                };
            }
            table = E::next_table(e);
            level -= 1;
        }
        spare.iter().flatten().for_each(|&f| {
            frames.release(f);
        });
        Ok(entry_addr(table, Self::index(page, 1)))
    }

    /// Installs the zeroed table `new` in the empty entry at `addr` with a
    /// compare-and-swap; `Err` with the table entry another CPU installed
    /// first.
    fn install<P: PhysMemory>(
        &self,
        mem: &P,
        addr: PhysAddr,
        mut old: u64,
        new: Frame,
    ) -> core::result::Result<u64, u64> {
        let entry = E::table_entry(new);
        loop {
            match mem.compare_exchange_u64(addr, old, entry) {
                Ok(_) => {
                    self.tables.fetch_add(1, Ordering::Relaxed);
                    return Ok(entry);
                }
                Err(found) if E::is_table(found) => return Err(found),
                Err(found) => old = found,
            }
        }
    }

    fn free_subtree<P: PhysMemory, F: FrameAllocator>(
        mem: &P,
        frames: &F,
        table: Frame,
        level: u32,
    ) {
        if level > 1 {
            for i in 0..ENTRIES {
                let e = mem.read_u64(entry_addr(table, i));
                if E::is_table(e) {
                    Self::free_subtree(mem, frames, E::next_table(e), level - 1);
                }
            }
        }
        frames.release(table);
    }

    /// Frees the subtrees under root slots `owned`, then the root.
    pub(crate) fn destroy<P: PhysMemory, F: FrameAllocator>(
        self,
        mem: &P,
        frames: &F,
        owned: Range<u64>,
    ) {
        for i in owned {
            let e = mem.read_u64(entry_addr(self.root, i));
            if E::is_table(e) {
                Self::free_subtree(mem, frames, E::next_table(e), self.levels - 1);
            }
        }
        frames.release(self.root);
    }
}
