//! The x86_64 4-level page table (PML4, PDPT, PD, PT), 4 KiB pages.
//!
//! Works on any [`PhysMemory`]: the simulator's array or a real kernel's
//! direct map. Intermediate entries are created present, writable and
//! user-accessible; the rights of a page are decided by its leaf entry alone.
//! Entries of the kernel half (PML4 slots 256..512) are copied from the
//! kernel's table into every user table and never freed with it; a kernel
//! that maps kernel memory after creating user tables must preallocate its
//! PML4 slots first. Intermediate tables stay when their last page is
//! unmapped (so re-mapping never allocates) and are freed by
//! [`destroy`](PageTable::destroy).
//!
//! Of [`AreaFlags`](crate::AreaFlags), x86_64 expresses read-only,
//! read-write and read-execute exactly; it cannot deny loads of a present
//! page, so write-only, execute-only and no-rights pages read back (and
//! load) as readable. Non-cacheable memory sets PCD.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::addr::{Frame, Page, PhysAddr};
use crate::flags::PageFlags;
use crate::memory::{FrameAllocator, PhysMemory};
use crate::paging::{Layout, PageTable, Unmapped};
use crate::{Error, Result};

/// Entry bit: present.
pub const PTE_PRESENT: u64 = 1 << 0;
/// Entry bit: writable.
pub const PTE_WRITABLE: u64 = 1 << 1;
/// Entry bit: user accessible.
pub const PTE_USER: u64 = 1 << 2;
/// Entry bit: page-level write-through.
pub const PTE_WRITE_THROUGH: u64 = 1 << 3;
/// Entry bit: page-level cache disable.
pub const PTE_NO_CACHE: u64 = 1 << 4;
/// Entry bit: accessed (set by the MMU).
pub const PTE_ACCESSED: u64 = 1 << 5;
/// Entry bit: dirty (set by the MMU).
pub const PTE_DIRTY: u64 = 1 << 6;
/// Entry bit: huge page (PDPT/PD level); never set by this implementation.
pub const PTE_HUGE: u64 = 1 << 7;
/// Entry bit: global translation.
pub const PTE_GLOBAL: u64 = 1 << 8;
/// Software bit (ignored by the MMU): in an entry with [`PTE_PRESENT`]
/// clear, the page is mapped without any right. x86_64 cannot deny loads
/// of a present page, so a page of an area whose rights were all taken away
/// (Linux `PROT_NONE`) keeps its frame in a not-present entry: every access
/// faults, and [`PageTable::translate`] still reports the page mapped.
pub const PTE_SW_MAPPED: u64 = 1 << 9;
/// Entry bit: no execute.
pub const PTE_NO_EXECUTE: u64 = 1 << 63;
/// Mask of the frame address in an entry.
pub const PTE_ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Number of entries in each table.
pub const ENTRIES: u64 = 512;
/// First PML4 slot of the kernel half.
pub const KERNEL_PML4_START: u64 = 256;

/// Index into the table of `level` (4 = PML4 .. 1 = PT) for `page`.
pub const fn table_index(page: Page, level: u32) -> u64 {
    (page.number() >> (9 * (level - 1))) & (ENTRIES - 1)
}

/// Encodes a leaf entry.
pub fn encode_leaf(frame: Frame, flags: PageFlags) -> u64 {
    let mut e = frame.start().as_u64() & PTE_ADDR_MASK;
    let rights = PageFlags::READ | PageFlags::WRITE | PageFlags::EXEC;
    if flags.contains(PageFlags::PRESENT) {
        e |= if flags.intersects(rights) {
            PTE_PRESENT
        } else {
            PTE_SW_MAPPED
        };
    }
    if flags.contains(PageFlags::WRITE) {
        e |= PTE_WRITABLE;
    }
    if flags.contains(PageFlags::USER) {
        e |= PTE_USER;
    }
    if !flags.contains(PageFlags::EXEC) {
        e |= PTE_NO_EXECUTE;
    }
    if !flags.contains(PageFlags::CACHEABLE) {
        e |= PTE_NO_CACHE;
    }
    if flags.contains(PageFlags::GLOBAL) {
        e |= PTE_GLOBAL;
    }
    e
}

/// Decodes a leaf entry (x86_64 cannot deny reads of a present page; a
/// page mapped with no right at all is not present, see [`PTE_SW_MAPPED`]).
pub fn decode_leaf(e: u64) -> Option<(Frame, PageFlags)> {
    if e & PTE_PRESENT == 0 {
        if e & PTE_SW_MAPPED == 0 {
            return None;
        }
        let mut f = PageFlags::PRESENT;
        if e & PTE_USER != 0 {
            f |= PageFlags::USER;
        }
        if e & PTE_NO_CACHE == 0 {
            f |= PageFlags::CACHEABLE;
        }
        return Some((PhysAddr::new(e & PTE_ADDR_MASK).frame(), f));
    }
    let mut f = PageFlags::PRESENT | PageFlags::READ;
    if e & PTE_WRITABLE != 0 {
        f |= PageFlags::WRITE;
    }
    if e & PTE_USER != 0 {
        f |= PageFlags::USER;
    }
    if e & PTE_NO_EXECUTE == 0 {
        f |= PageFlags::EXEC;
    }
    if e & PTE_NO_CACHE == 0 {
        f |= PageFlags::CACHEABLE;
    }
    if e & PTE_GLOBAL != 0 {
        f |= PageFlags::GLOBAL;
    }
    Some((PhysAddr::new(e & PTE_ADDR_MASK).frame(), f))
}

const TABLE_ENTRY: u64 = PTE_PRESENT | PTE_WRITABLE | PTE_USER;

/// An x86_64 4-level page table rooted at a PML4 frame.
///
/// Changed without a lock (see [`PageTable`]'s concurrency rules): a missing
/// intermediate table is zeroed first and then installed with one
/// compare-and-swap; a CPU that loses the race frees its own, which nothing
/// ever reached.
#[derive(Debug)]
pub struct X86_64PageTable {
    root: Frame,
    /// Frames of the root and the intermediate tables.
    tables: AtomicU64,
    kernel: bool,
}

fn entry_addr(table: Frame, index: u64) -> PhysAddr {
    PhysAddr::new(table.start().as_u64() + index * 8)
}

impl X86_64PageTable {
    /// The leaf-table frame for `page`, creating missing levels. All or
    /// nothing: the tables every missing level needs are allocated (and
    /// zeroed) before any is installed, so `NoMemory` leaves the table as
    /// it was, not with a half-built path.
    fn leaf_table<P: PhysMemory, F: FrameAllocator>(
        &self,
        mem: &P,
        frames: &F,
        page: Page,
    ) -> Result<Frame> {
        let mut table = self.root;
        let mut level = 4;
        // The common case: every level present.
        while level >= 2 {
            let e = mem.read_u64(entry_addr(table, table_index(page, level)));
            if e & PTE_PRESENT == 0 {
                break;
            }
            table = PhysAddr::new(e & PTE_ADDR_MASK).frame();
            level -= 1;
        }
        if level < 2 {
            return Ok(table);
        }
        // Levels `level..=2` lack a table: take one frame for each first.
        let mut spare = [None; 3];
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
            let addr = entry_addr(table, table_index(page, level));
            let mut e = mem.read_u64(addr);
            if e & PTE_PRESENT == 0 {
                let slot = spare
                    .iter_mut()
                    .find(|s| s.is_some())
                    .expect("one spare table per missing level");
                let new = slot.expect("found above");
                e = match self.install_table(mem, addr, e, new) {
                    Ok(entry) => {
                        *slot = None;
                        entry
                    }
                    // Another CPU installed one; ours, never reachable,
                    // stays spare.
                    Err(found) => found,
                };
            }
            table = PhysAddr::new(e & PTE_ADDR_MASK).frame();
            level -= 1;
        }
        spare.iter().flatten().for_each(|&f| {
            frames.release(f);
        });
        Ok(table)
    }

    /// Puts the zeroed table `new` into the empty entry at `addr` (holding
    /// `old`) with a compare-and-swap, so no walker ever sees it dirty;
    /// returns the entry installed, or `Err` with the present entry another
    /// CPU installed first (`new` then stays the caller's).
    fn install_table<P: PhysMemory>(
        &self,
        mem: &P,
        addr: PhysAddr,
        mut old: u64,
        new: Frame,
    ) -> core::result::Result<u64, u64> {
        let entry = new.start().as_u64() | TABLE_ENTRY;
        loop {
            match mem.compare_exchange_u64(addr, old, entry) {
                Ok(_) => {
                    self.tables.fetch_add(1, Ordering::Relaxed);
                    return Ok(entry);
                }
                Err(found) if found & PTE_PRESENT != 0 => return Err(found),
                // Not present but not the value read either: try again.
                Err(found) => old = found,
            }
        }
    }

    fn find_leaf<P: PhysMemory>(&self, mem: &P, page: Page) -> Option<PhysAddr> {
        let mut table = self.root;
        for level in (2..=4).rev() {
            let e = mem.read_u64(entry_addr(table, table_index(page, level)));
            if e & PTE_PRESENT == 0 {
                return None;
            }
            table = PhysAddr::new(e & PTE_ADDR_MASK).frame();
        }
        Some(entry_addr(table, table_index(page, 1)))
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
                if e & PTE_PRESENT != 0 {
                    Self::free_subtree(
                        mem,
                        frames,
                        PhysAddr::new(e & PTE_ADDR_MASK).frame(),
                        level - 1,
                    );
                }
            }
        }
        frames.release(table);
    }
}

impl PageTable for X86_64PageTable {
    type Mode = ();

    fn layout((): ()) -> Layout {
        Layout::X86_64
    }

    fn create<P: PhysMemory, F: FrameAllocator>(
        mem: &P,
        frames: &F,
        kernel: Option<&Self>,
        (): (),
    ) -> Result<Self> {
        let root = frames.alloc().ok_or(Error::NoMemory)?;
        mem.zero_frame(root);
        if let Some(k) = kernel {
            for i in KERNEL_PML4_START..ENTRIES {
                let e = mem.read_u64(entry_addr(k.root, i));
                mem.write_u64(entry_addr(root, i), e);
            }
        }
        Ok(Self {
            root,
            tables: AtomicU64::new(1),
            kernel: kernel.is_none(),
        })
    }

    fn root(&self) -> Frame {
        self.root
    }

    fn map<P: PhysMemory, F: FrameAllocator>(
        &self,
        mem: &P,
        frames: &F,
        page: Page,
        frame: Frame,
        flags: PageFlags,
    ) -> Result<()> {
        let leaf = self.leaf_table(mem, frames, page)?;
        let addr = entry_addr(leaf, table_index(page, 1));
        debug_assert_eq!(
            mem.read_u64(addr) & (PTE_PRESENT | PTE_SW_MAPPED),
            0,
            "map over a mapped entry"
        );
        mem.write_u64(addr, encode_leaf(frame, flags | PageFlags::PRESENT));
        Ok(())
    }

    fn unmap<P: PhysMemory>(&self, mem: &P, page: Page) -> Option<Unmapped> {
        let addr = self.find_leaf(mem, page)?;
        let (frame, _) = decode_leaf(mem.read_u64(addr))?;
        mem.write_u64(addr, 0);
        Some(Unmapped::new(page, frame))
    }

    fn translate<P: PhysMemory>(&self, mem: &P, page: Page) -> Option<(Frame, PageFlags)> {
        decode_leaf(mem.read_u64(self.find_leaf(mem, page)?))
    }

    /// One walk per leaf table: the entries of a run within one leaf
    /// table are cleared in a row; a missing table skips its pages.
    fn unmap_run<P: PhysMemory>(
        &self,
        mem: &P,
        first: Page,
        count: u64,
        out: &mut dyn FnMut(Unmapped),
    ) {
        let mut i = 0;
        while i < count {
            let page = first.add(i);
            let index = table_index(page, 1);
            let chunk = (ENTRIES - index).min(count - i);
            if let Some(at) = self.find_leaf(mem, page) {
                for k in 0..chunk {
                    let addr = PhysAddr::new(at.as_u64() + k * 8);
                    let Some((frame, _)) = decode_leaf(mem.read_u64(addr)) else {
                        continue;
                    };
                    mem.write_u64(addr, 0);
                    out(Unmapped::new(page.add(k), frame));
                }
            }
            i += chunk;
        }
    }

    /// One walk per pair of leaf tables (source and target); the target's
    /// path is made only where a source page is mapped. Entries move as
    /// they are (accessed and dirty bits too).
    fn move_run<P: PhysMemory, F: FrameAllocator>(
        &self,
        mem: &P,
        frames: &F,
        from: Page,
        to: Page,
        count: u64,
    ) -> Result<u64> {
        let mut moved = 0;
        let mut i = 0;
        while i < count {
            let (src, dst) = (from.add(i), to.add(i));
            let chunk = (ENTRIES - table_index(src, 1))
                .min(ENTRIES - table_index(dst, 1))
                .min(count - i);
            if let Some(at) = self.find_leaf(mem, src) {
                let mut target: Option<u64> = None;
                for k in 0..chunk {
                    let old = PhysAddr::new(at.as_u64() + k * 8);
                    let e = mem.read_u64(old);
                    if e & (PTE_PRESENT | PTE_SW_MAPPED) == 0 {
                        continue;
                    }
                    let base = match target {
                        Some(t) => t,
                        None => match self.leaf_table(mem, frames, dst) {
                            Ok(leaf) => {
                                let t = entry_addr(leaf, table_index(dst, 1)).as_u64();
                                target = Some(t);
                                t
                            }
                            Err(err) => {
                                // Back: the old tables are there.
                                let _ = self.move_run(mem, frames, to, from, i + k);
                                return Err(err);
                            }
                        },
                    };
                    let new = PhysAddr::new(base + k * 8);
                    debug_assert_eq!(
                        mem.read_u64(new) & (PTE_PRESENT | PTE_SW_MAPPED),
                        0,
                        "move over a mapped entry"
                    );
                    mem.write_u64(new, e);
                    mem.write_u64(old, 0);
                    moved += 1;
                }
            }
            i += chunk;
        }
        Ok(moved)
    }

    fn table_frames(&self) -> u64 {
        self.tables.load(Ordering::Relaxed)
    }

    fn destroy<P: PhysMemory, F: FrameAllocator>(self, mem: &P, frames: &F) {
        // The kernel's own table also owns the kernel half; a user table only
        // borrows it.
        let slots = if self.kernel {
            ENTRIES
        } else {
            KERNEL_PML4_START
        };
        for i in 0..slots {
            let e = mem.read_u64(entry_addr(self.root, i));
            if e & PTE_PRESENT != 0 {
                Self::free_subtree(mem, frames, PhysAddr::new(e & PTE_ADDR_MASK).frame(), 3);
            }
        }
        frames.release(self.root);
    }
}
