//! Physical memory and frames: the two traits through which the core
//! reaches RAM. Implementing them is the kernel's promise that the core
//! touches nothing it was not given, hence `unsafe trait`s.

use core::sync::atomic::AtomicU64;

use crate::addr::{Frame, PhysAddr, PAGE_SIZE};

/// 64-bit words in a frame (a page table's entries).
pub const WORDS_PER_FRAME: usize = (PAGE_SIZE / 8) as usize;

/// Access to physical memory (through the kernel's direct map on real
/// hardware, or the simulator's memory array).
///
/// # Safety
///
/// The core writes page tables and page contents through this trait and
/// trusts what it reads back, so an implementation must promise that:
/// - every method reaches exactly the physical memory at the addresses
///   given (for all frames the [`FrameAllocator`] can hand out and the
///   page-table frames it handed out), never other memory, and either
///   performs the access or panics — it never reads or writes elsewhere,
///   even for an address outside physical memory;
/// - [`write_u64`](PhysMemory::write_u64) is a single atomic store and
///   [`compare_exchange_u64`](PhysMemory::compare_exchange_u64) an atomic
///   compare-and-swap (with release ordering on success and acquire on the
///   loads), as the page-table walker of every CPU may read the word
///   concurrently;
/// - no Rust reference to that memory is live while the core uses it (the
///   kernel reaches it only through this trait), but for the atomics
///   [`frame_words`](PhysMemory::frame_words) lends: those are the frame's
///   words themselves, reached by the other methods too.
pub unsafe trait PhysMemory: Send + Sync {
    /// The 512 words of `frame` as atomics, if this memory can lend them:
    /// the core then walks a page table through them, with one bounds
    /// check per table instead of one per entry (moving a run of entries).
    /// The default lends nothing; the core then uses the methods below.
    fn frame_words(&self, frame: Frame) -> Option<&[AtomicU64; WORDS_PER_FRAME]> {
        let _ = frame;
        None
    }

    /// Reads `buf.len()` bytes at `addr`.
    fn read(&self, addr: PhysAddr, buf: &mut [u8]);
    /// Writes `data` at `addr`.
    fn write(&self, addr: PhysAddr, data: &[u8]);
    /// Reads the naturally aligned 64-bit word at `addr` (page-table entries).
    fn read_u64(&self, addr: PhysAddr) -> u64;
    /// Writes the naturally aligned 64-bit word at `addr` in one store, so a
    /// concurrent page-table walker sees the old or the new entry.
    fn write_u64(&self, addr: PhysAddr, value: u64);
    /// Replaces the naturally aligned 64-bit word at `addr` with `new` if it
    /// still holds `current`, atomically; returns the word found (`Ok` when
    /// it was replaced). Installs intermediate page tables: two CPUs may race
    /// to create the same one, and the loser must see the winner's. A success
    /// also publishes the writes made before it (such as zeroing the new
    /// table) to whoever reads the new word.
    fn compare_exchange_u64(&self, addr: PhysAddr, current: u64, new: u64) -> Result<u64, u64>;
    /// Fills a frame with zeros.
    fn zero_frame(&self, frame: Frame) {
        let zeros = [0u8; 512];
        for i in 0..(PAGE_SIZE / 512) {
            self.write(PhysAddr::new(frame.start().as_u64() + i * 512), &zeros);
        }
    }
    /// Copies the contents of `src` into `dst`.
    fn copy_frame(&self, dst: Frame, src: Frame) {
        let mut buf = [0u8; 512];
        for i in 0..(PAGE_SIZE / 512) {
            let off = i * 512;
            self.read(PhysAddr::new(src.start().as_u64() + off), &mut buf);
            self.write(PhysAddr::new(dst.start().as_u64() + off), &buf);
        }
    }
    /// Makes what was written into `frame` through this memory visible to
    /// instruction fetches, on every CPU: the core calls it before it maps a
    /// frame executable into a task whose contents the kernel just wrote (a
    /// page a backend filled, zeroed or read in, a copy-on-write copy). On
    /// AArch64 that is the data cache cleaned to the point of unification
    /// and the instruction cache invalidated for the frame; on RISC-V a
    /// `fence.i` on every hart. The default does nothing, which is right
    /// where instruction fetches see earlier stores (x86) and for memory no
    /// CPU executes from (a simulator). What a task writes into its own
    /// pages (a JIT) it makes visible itself.
    fn sync_icache(&self, frame: Frame) {
        let _ = frame;
    }
    /// [`sync_icache`](Self::sync_icache) for every frame of `frames`: the
    /// core calls it when a change of rights makes an area's resident pages
    /// executable. The default syncs them one by one; a machine whose sync
    /// costs the same for one frame as for many (RISC-V, whose `fence.i`
    /// covers the whole cache and is sent to every other hart) overrides it
    /// to sync once. The frames are looked up (a page-table walk each) as
    /// the iterator runs: a machine that needs no sync (x86) leaves it
    /// unused.
    fn sync_icache_frames(&self, frames: &mut dyn Iterator<Item = Frame>) {
        for frame in frames {
            self.sync_icache(frame);
        }
    }
}

/// The physical frame allocator, with a reference count per frame.
///
/// A frame comes out of [`alloc`](FrameAllocator::alloc) with one reference;
/// [`add_ref`](FrameAllocator::add_ref) takes another (a second mapping, a
/// share record); [`release`](FrameAllocator::release) drops one and frees
/// the frame when none is left.
///
/// # Safety
///
/// The core maps the frames it is given into user address spaces and uses
/// them as page tables, so an implementation must promise that a frame
/// [`alloc`](FrameAllocator::alloc) returns is real, usable RAM that nothing
/// else uses (not the kernel's image or heap, not a device, not a frame
/// handed out and not yet freed), and that a frame goes back into use only
/// when its last reference is released: reference counts are exact and
/// per frame.
pub unsafe trait FrameAllocator: Send + Sync {
    /// A free frame with reference count one, or `None` when memory is out.
    /// Its contents are unspecified.
    fn alloc(&self) -> Option<Frame>;
    /// Takes one more reference to an allocated frame. The core calls it
    /// only while it holds a reference to `frame` itself (a mapping's, a
    /// share record's), so a frame whose count is one is held by its
    /// releaser alone: an allocator may free such a frame without an
    /// atomic read-modify-write.
    fn add_ref(&self, frame: Frame);
    /// Drops one reference; returns `true` when this freed the frame.
    fn release(&self, frame: Frame) -> bool;
    /// Drops one reference of each of `frames` (a TLB shootdown's worth);
    /// returns how many this freed. [`release`](Self::release) frame by
    /// frame; an allocator may take its free list's lock once for all.
    fn release_many(&self, frames: &[Frame]) -> u64 {
        let mut freed = 0;
        for &f in frames {
            if self.release(f) {
                freed += 1;
            }
        }
        freed
    }
    /// The references `frame` has now, if the allocator can tell (by
    /// default it cannot). The core asks only about a frame it maps
    /// copy-on-write: with one reference nobody else holds it, so a write
    /// takes it over instead of copying it (see [`crate::cow`]).
    fn ref_count(&self, frame: Frame) -> Option<u32> {
        let _ = frame;
        None
    }
    /// Frames free now, if the allocator can tell (by default it cannot).
    /// A [`System`](crate::System) whose [`Config`](crate::Config) names no
    /// commit limit takes this as its limit (see [`crate::reserve`]);
    /// `None` means no limit.
    fn free_frames(&self) -> Option<u64> {
        None
    }
}
