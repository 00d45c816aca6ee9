//! A software TLB: a small fully associative array of translations tagged
//! by ASID, with round-robin replacement.

use aspace::{Asid, Frame, Page};

/// One cached translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlbEntry {
    /// Tag: the ASID it was filled under.
    pub asid: Asid,
    /// The virtual page.
    pub page: Page,
    /// The frame it maps.
    pub frame: Frame,
    /// Readable in user mode.
    pub readable: bool,
    /// Writable.
    pub writable: bool,
    /// Executable.
    pub executable: bool,
    /// User accessible.
    pub user: bool,
    /// Global: not tagged with the ASID (kept by ASID-wide invalidations).
    pub global: bool,
    /// The frame's allocator generation when the entry was filled; a
    /// mismatch at use time means the frame was freed under the entry.
    pub generation: u32,
}

/// The TLB of one CPU.
#[derive(Debug)]
pub struct SimTlb {
    entries: Vec<TlbEntry>,
    capacity: usize,
    next: usize,
}

impl SimTlb {
    /// An empty TLB of `capacity` entries (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Vec::with_capacity(capacity.max(1)),
            capacity: capacity.max(1),
            next: 0,
        }
    }

    /// The entry for `page` under `asid`.
    pub fn lookup(&self, asid: Asid, page: Page) -> Option<TlbEntry> {
        self.entries
            .iter()
            .find(|e| e.asid == asid && e.page == page)
            .copied()
    }

    /// Caches `entry`, replacing an older one for the same page or, when
    /// full, the next victim in round-robin order.
    pub fn insert(&mut self, entry: TlbEntry) {
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| e.asid == entry.asid && e.page == entry.page)
        {
            *e = entry;
        } else if self.entries.len() < self.capacity {
            self.entries.push(entry);
        } else {
            self.entries[self.next] = entry;
            self.next = (self.next + 1) % self.capacity;
        }
    }

    /// Drops the entry for one page.
    pub fn remove(&mut self, asid: Asid, page: Page) {
        self.entries.retain(|e| !(e.asid == asid && e.page == page));
        self.next = 0;
    }

    /// Keeps only the entries `keep` accepts: the primitive each
    /// architecture's invalidation instructions are built on (see
    /// [`mmu`](crate::mmu)).
    pub fn retain(&mut self, keep: impl FnMut(&TlbEntry) -> bool) {
        self.entries.retain(keep);
        self.next = 0;
    }

    /// Every cached entry.
    pub fn entries(&self) -> &[TlbEntry] {
        &self.entries
    }
}
