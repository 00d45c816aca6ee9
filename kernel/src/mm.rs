//! Physical memory: the reference-counted frame
//! allocator (aspace's `FrameAllocator`), the direct map (aspace's
//! `PhysMemory`) and the kernel heap.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use aspace::memory::WORDS_PER_FRAME;
use aspace::{Frame, FrameAllocator, PhysAddr, PhysMemory, PAGE_SIZE};

use crate::arch::{phys_to_virt, RAM_BASE};
use crate::sync::SpinLock;

/// Frames the allocator can manage: 512 MiB of physical memory from
/// [`RAM_BASE`] (x86_64: 0; riscv64 `virt`: 0x8000_0000; aarch64 `virt`:
/// 0x4000_0000).
pub const MAX_FRAMES: usize = 128 * 1024;
/// The number of the first frame the allocator can manage.
const BASE_FRAME: u64 = RAM_BASE / PAGE_SIZE;
const NONE: u64 = u64::MAX;

/// The frame allocator: a reference count per frame and an intrusive free
/// list threaded through the free frames themselves (via the direct map).
pub struct Frames {
    refs: [AtomicU32; MAX_FRAMES],
    free: SpinLock<FreeList>,
    in_use: AtomicU64,
    total: AtomicU64,
}

struct FreeList {
    head: u64,
}

/// The one frame allocator.
pub static FRAMES: Frames = Frames {
    refs: [const { AtomicU32::new(0) }; MAX_FRAMES],
    free: SpinLock::new(FreeList { head: NONE }),
    in_use: AtomicU64::new(0),
    total: AtomicU64::new(0),
};

fn next_of(frame: u64) -> *mut u64 {
    phys_to_virt(frame * PAGE_SIZE) as *mut u64
}

impl Frames {
    /// Frames handed out now.
    pub fn in_use(&self) -> u64 {
        self.in_use.load(Ordering::Relaxed)
    }

    /// Frames managed.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Reference count of `frame`.
    pub fn refs(&self, frame: Frame) -> u32 {
        self.slot(frame.number()).load(Ordering::Relaxed)
    }

    /// The reference count of frame number `n` (which must lie in the
    /// managed window: an index out of it panics).
    fn slot(&self, n: u64) -> &AtomicU32 {
        &self.refs[n.wrapping_sub(BASE_FRAME) as usize]
    }

    /// Threads the free frame `n` onto `list` (whose lock the caller holds).
    fn push(&self, list: &mut FreeList, n: u64) {
        // SAFETY: frame `n` is free RAM owned by the allocator: available in
        // the boot memory map (multiboot, or riscv64 `virt`'s fixed RAM) and above the kernel image (`add_range`), or just
        // released by its last reference (`release`), so nobody else uses
        // it. It is inside the managed window, covered by the direct map, and its first word
        // is page-aligned. Writers of the list hold its lock (`list`).
        unsafe { next_of(n).write_volatile(list.head) };
        list.head = n;
    }

    /// Adds the frames of `[start, end)` (bytes) to the pool.
    pub fn add_range(&self, start: u64, end: u64) {
        // Frame numbers, clipped to the managed window.
        let first = start.saturating_sub(RAM_BASE).div_ceil(PAGE_SIZE) + BASE_FRAME;
        let last = (end.saturating_sub(RAM_BASE) / PAGE_SIZE).min(MAX_FRAMES as u64) + BASE_FRAME;
        let mut list = self.free.lock();
        // Pushed from the top so the lowest frames come out first.
        for n in (first..last).rev() {
            self.push(&mut list, n);
            self.total.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// SAFETY: the pool holds only RAM the boot memory map calls available, above
// the kernel image and inside the managed window (`add_range`); a frame leaves it with
// one reference and returns only when its last one is released (an
// over-release asserts).
unsafe impl FrameAllocator for Frames {
    fn alloc(&self) -> Option<Frame> {
        let mut list = self.free.lock();
        let n = list.head;
        if n == NONE {
            return None;
        }
        // SAFETY: `n` heads the free list, so it is a free frame that `push`
        // wrote the next link into (see there): mapped, aligned, and no one
        // else touches it while the list's lock is held.
        list.head = unsafe { next_of(n).read_volatile() };
        drop(list);
        let old = self.slot(n).swap(1, Ordering::AcqRel);
        assert_eq!(old, 0, "free frame {n:#x} had references");
        self.in_use.fetch_add(1, Ordering::Relaxed);
        Some(Frame::from_number(n))
    }

    fn add_ref(&self, frame: Frame) {
        let old = self.slot(frame.number()).fetch_add(1, Ordering::AcqRel);
        assert!(old > 0, "add_ref on free frame {frame:?}");
    }

    fn release(&self, frame: Frame) -> bool {
        let n = frame.number();
        let old = self.slot(n).fetch_sub(1, Ordering::AcqRel);
        assert!(old > 0, "release of free frame {frame:?}");
        if old == 1 {
            self.in_use.fetch_sub(1, Ordering::Relaxed);
            let mut list = self.free.lock();
            self.push(&mut list, n);
            true
        } else {
            false
        }
    }

    /// The frame's reference count: a write to a copy-on-write page whose
    /// frame nobody else holds takes it over instead of copying it.
    /// Acquire: the other holder's last use of the frame (its release)
    /// happens before the take-over's writes.
    fn ref_count(&self, frame: Frame) -> Option<u32> {
        Some(self.slot(frame.number()).load(Ordering::Acquire))
    }

    /// The frames on the free list: the commit limit aspace starts with.
    fn free_frames(&self) -> Option<u64> {
        Some(self.total().saturating_sub(self.in_use()))
    }
}

/// Physical memory through the direct map (`arch::phys_to_virt`).
///
/// aspace calls these methods only inside frames it holds a reference to
/// (page tables, area pages, ELF images, all from [`FRAMES`]) and, for the
/// kernel half, on the boot page tables that `adopt_boot_mappings` hands it:
/// RAM of the managed window (512 MiB from `RAM_BASE`), inside the direct map, and never part of a Rust
/// allocation (the frame allocator only gets RAM above the kernel image, and
/// the boot tables are defined in assembly, not Rust statics). Each access
/// stays inside one frame (copies are split at page boundaries).
pub struct DirectMap;

/// The 64-bit word at `addr` (page-table entries), as an atomic: every CPU
/// reads and writes entries through here, atomically (plain `mov`s on
/// x86_64, as the hardware walker expects), so they never race in Rust's
/// memory model.
///
/// # Safety
///
/// `addr` must be naturally aligned (the `PhysMemory` contract) and lie in
/// frame memory covered by the direct map, outside any Rust allocation;
/// that memory lives as long as the kernel, hence `'static`.
unsafe fn entry(addr: PhysAddr) -> &'static AtomicU64 {
    mapped(addr, 8);
    // SAFETY: the caller's contract: aligned, mapped for the kernel's
    // lifetime, and accessed only atomically.
    unsafe { AtomicU64::from_ptr(phys_to_virt(addr.as_u64()) as *mut u64) }
}

/// The direct map's bound, checked before every access: `[addr, addr +
/// len)` must lie in the 512 MiB from `RAM_BASE` that the frame allocator
/// can manage (the direct map covers them). A core bug (or a
/// corrupted page-table entry) then stops the kernel here instead of
/// reaching memory the direct map does not cover.
fn mapped(addr: PhysAddr, len: usize) {
    let end = addr
        .as_u64()
        .checked_sub(RAM_BASE)
        .and_then(|offset| offset.checked_add(len as u64));
    assert!(
        end.is_some_and(|e| e <= MAX_FRAMES as u64 * PAGE_SIZE),
        "physical access {:#x}+{len:#x} outside the direct map",
        addr.as_u64()
    );
}

// SAFETY: every access is bounds-checked against the direct map (`mapped`)
// and goes to frame memory outside any Rust allocation (see `DirectMap`);
// `write_u64` and `compare_exchange_u64` are single atomic operations with
// release (and acquire) ordering.
unsafe impl PhysMemory for DirectMap {
    fn frame_words(&self, frame: Frame) -> Option<&[AtomicU64; WORDS_PER_FRAME]> {
        let start = frame.start().as_u64();
        let inside = start
            .checked_sub(RAM_BASE)
            .is_some_and(|offset| offset + PAGE_SIZE <= MAX_FRAMES as u64 * PAGE_SIZE);
        if !inside {
            return None;
        }
        // SAFETY: a whole frame of the managed window, page-aligned (each
        // word naturally aligned), mapped for the kernel's lifetime and
        // outside any Rust allocation (see `DirectMap`); the core uses a
        // lent frame's words for page-table entries, which every CPU reads
        // and writes only atomically (as through `entry`).
        Some(unsafe { &*(phys_to_virt(start) as *const [AtomicU64; WORDS_PER_FRAME]) })
    }
    fn read(&self, addr: PhysAddr, buf: &mut [u8]) {
        mapped(addr, buf.len());
        // SAFETY: `addr..addr + buf.len()` is mapped frame memory outside
        // any Rust allocation (see `DirectMap`), so it cannot overlap `buf`;
        // `u8` needs no alignment.
        unsafe {
            core::ptr::copy_nonoverlapping(phys_to_virt(addr.as_u64()), buf.as_mut_ptr(), buf.len())
        };
    }
    fn write(&self, addr: PhysAddr, data: &[u8]) {
        mapped(addr, data.len());
        // SAFETY: `addr..addr + data.len()` is mapped frame memory outside
        // any Rust allocation (see `DirectMap`), so writing it invalidates
        // no Rust value and cannot overlap `data`.
        unsafe {
            core::ptr::copy_nonoverlapping(data.as_ptr(), phys_to_virt(addr.as_u64()), data.len())
        };
        mark_unsynced(addr, data.len());
    }
    fn read_u64(&self, addr: PhysAddr) -> u64 {
        // SAFETY: see `entry`.
        unsafe { entry(addr) }.load(Ordering::Acquire)
    }
    fn write_u64(&self, addr: PhysAddr, value: u64) {
        // SAFETY: see `entry`. Release orders the writes before it (such as
        // zeroing a table) before the entry for other CPUs; one aligned
        // store, so a concurrent walker sees the old or the new entry.
        unsafe { entry(addr) }.store(value, Ordering::Release)
    }
    fn compare_exchange_u64(&self, addr: PhysAddr, current: u64, new: u64) -> Result<u64, u64> {
        // SAFETY: see `entry`.
        unsafe { entry(addr) }.compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
    }
    fn zero_frame(&self, frame: Frame) {
        mapped(frame.start(), PAGE_SIZE as usize);
        // SAFETY: the whole of `frame`, page-aligned and mapped, outside any
        // Rust allocation (see `DirectMap`).
        unsafe {
            core::ptr::write_bytes(phys_to_virt(frame.start().as_u64()), 0, PAGE_SIZE as usize)
        };
        mark_unsynced(frame.start(), PAGE_SIZE as usize);
    }
    fn copy_frame(&self, dst: Frame, src: Frame) {
        mapped(dst.start(), PAGE_SIZE as usize);
        mapped(src.start(), PAGE_SIZE as usize);
        // SAFETY: two whole mapped frames outside any Rust allocation (see
        // `DirectMap`), page-aligned; `copy` allows `dst == src`.
        unsafe {
            core::ptr::copy(
                phys_to_virt(src.start().as_u64()),
                phys_to_virt(dst.start().as_u64()),
                PAGE_SIZE as usize,
            )
        };
        mark_unsynced(dst.start(), PAGE_SIZE as usize);
    }
    #[cfg(target_arch = "aarch64")]
    fn sync_icache(&self, frame: Frame) {
        mapped(frame.start(), PAGE_SIZE as usize);
        if take_unsynced(frame) {
            crate::arch::sync_icache(phys_to_virt(frame.start().as_u64()), PAGE_SIZE as usize);
        }
    }
    /// The fence before the mark is cleared (see `sync_icache_frames`).
    #[cfg(target_arch = "riscv64")]
    fn sync_icache(&self, frame: Frame) {
        mapped(frame.start(), PAGE_SIZE as usize);
        if is_unsynced(frame) {
            crate::arch::sync_icache();
            take_unsynced(frame);
        }
    }
    /// One local and one remote `fence.i` for all the frames that need one
    /// (none if none does): the fence covers the whole instruction cache
    /// and every store made before it. It runs at the first frame found
    /// unsynced, and each mark is cleared only after it, so a hart that
    /// finds a mark cleared knows the fence is done.
    #[cfg(target_arch = "riscv64")]
    fn sync_icache_frames(&self, frames: &mut dyn Iterator<Item = Frame>) {
        let mut fenced = false;
        for frame in frames {
            mapped(frame.start(), PAGE_SIZE as usize);
            if !fenced && is_unsynced(frame) {
                crate::arch::sync_icache();
                fenced = true;
            }
            if fenced {
                take_unsynced(frame);
            }
        }
    }
    // x86: instruction fetches see earlier stores: `sync_icache` is the
    // default (nothing), and the frames are not even looked up.
    #[cfg(target_arch = "x86_64")]
    fn sync_icache_frames(&self, _frames: &mut dyn Iterator<Item = Frame>) {}
}

/// One bit per frame of the managed window: written through the direct map
/// since it was last synced for instruction fetches. All set at boot, when
/// nothing is known. Lets `sync_icache` skip a frame nothing wrote since
/// (an ELF text page mapped by task after task), as Linux's
/// `PG_dcache_clean` does. x86 keeps no such record: it needs no sync.
#[cfg(not(target_arch = "x86_64"))]
static UNSYNCED: [AtomicU64; MAX_FRAMES / 64] =
    [const { AtomicU64::new(u64::MAX) }; MAX_FRAMES / 64];

/// Marks the frames of `[addr, addr + len)` (checked by `mapped`) as written.
#[cfg(not(target_arch = "x86_64"))]
fn mark_unsynced(addr: PhysAddr, len: usize) {
    if len == 0 {
        return;
    }
    let first = (addr.as_u64() - RAM_BASE) / PAGE_SIZE;
    let last = (addr.as_u64() - RAM_BASE + len as u64 - 1) / PAGE_SIZE;
    for n in first..=last {
        // Release: the data written comes before the mark for the CPU that
        // takes it (`take_unsynced`) and syncs.
        UNSYNCED[n as usize / 64].fetch_or(1 << (n % 64), Ordering::Release);
    }
}

#[cfg(target_arch = "x86_64")]
fn mark_unsynced(_addr: PhysAddr, _len: usize) {}

/// Whether `frame` (checked by `mapped`) was written since its last sync.
#[cfg(target_arch = "riscv64")]
fn is_unsynced(frame: Frame) -> bool {
    let n = (frame.start().as_u64() - RAM_BASE) / PAGE_SIZE;
    // Acquire: the data written before the mark, for the fence after.
    UNSYNCED[n as usize / 64].load(Ordering::Acquire) & (1 << (n % 64)) != 0
}

/// Clears `frame`'s mark (checked by `mapped`); whether it was set, i.e.
/// whether the frame needs a sync. A write after this sets it again.
#[cfg(not(target_arch = "x86_64"))]
fn take_unsynced(frame: Frame) -> bool {
    let n = (frame.start().as_u64() - RAM_BASE) / PAGE_SIZE;
    let bit = 1u64 << (n % 64);
    UNSYNCED[n as usize / 64].fetch_and(!bit, Ordering::AcqRel) & bit != 0
}

const HEAP_SIZE: usize = 8 * 1024 * 1024;

#[repr(C, align(4096))]
struct HeapArea([u8; HEAP_SIZE]);
static mut HEAP_AREA: HeapArea = HeapArea([0; HEAP_SIZE]);

/// The kernel heap: a linked-list allocator over a static area in the
/// kernel's bss (so it needs no frames of the frame allocator).
pub struct KernelHeap(SpinLock<linked_list_allocator::Heap>);

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(SpinLock::new(linked_list_allocator::Heap::empty()));

/// Hands the heap area to the allocator.
pub fn init_heap() {
    let start = (&raw mut HEAP_AREA).cast::<u8>();
    let mut heap = HEAP.0.lock();
    assert!(heap.bottom().is_null(), "kernel heap initialised twice");
    // SAFETY: the heap is still `Heap::empty()` (checked above, under its
    // lock), so this is its one initialisation. HEAP_AREA is HEAP_SIZE bytes
    // of static, writable bss that nothing else names (only its address is
    // taken, here), so the range is valid for 'static and used by nothing
    // but the allocator.
    unsafe { heap.init(start, HEAP_SIZE) };
}

/// Bytes of kernel heap in use.
pub fn heap_used() -> usize {
    HEAP.0.lock().used()
}

/// Heap kept for the kernel's own allocations: the calls that let a user
/// task keep heap (areas, shares, threads, forks, Linux mappings) are
/// refused with less than this free.
pub const HEAP_RESERVE: usize = 1024 * 1024;

/// Bytes of kernel heap free.
pub fn heap_free() -> usize {
    HEAP.0.lock().free()
}

// SAFETY: `alloc` returns null or a block from `allocate_first_fit`, which
// fits `layout` (size and alignment) and is not handed out again until it
// is freed: the heap is only used under its spinlock, so CPUs never share
// it unsynchronised. Nothing here unwinds (panics abort) and neither method
// allocates through the global allocator itself.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0
            .lock()
            .allocate_first_fit(layout)
            .map_or(core::ptr::null_mut(), |p| p.as_ptr())
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `GlobalAlloc::dealloc`'s contract: `ptr` came from
        // `self.alloc(layout)`, which returns only non-null pointers from
        // `allocate_first_fit` of this heap, with this same `layout`, and
        // is freed once. That is what `NonNull::new_unchecked` and
        // `Heap::deallocate` require.
        unsafe {
            self.0
                .lock()
                .deallocate(NonNull::new_unchecked(ptr), layout)
        }
    }
}
