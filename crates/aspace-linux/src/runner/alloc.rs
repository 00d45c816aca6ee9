//! A global allocator that never touches the program break: the runner's
//! `brk` calls then move a break nothing else uses.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicBool, Ordering};

/// Address space reserved (not committed) for the heap.
const ARENA: usize = 1 << 32;
/// The smallest block: 16 bytes (`1 << 4`).
const MIN_SHIFT: u32 = 4;
/// Size classes: 16 bytes to 2 GiB, powers of two.
const CLASSES: usize = 28;

struct State {
    next: usize,
    end: usize,
    free: [usize; CLASSES],
}

/// A power-of-two size-class allocator over one `MAP_NORESERVE` region taken
/// with `mmap` on first use: freed blocks go to a list per class and are
/// reused, so memory stays bounded over millions of steps. One spin lock;
/// the runner is single-threaded.
pub struct ArenaAlloc {
    lock: AtomicBool,
    state: UnsafeCell<State>,
}

// SAFETY: `state` is only touched while `lock` is held (acquire/release).
unsafe impl Sync for ArenaAlloc {}

impl ArenaAlloc {
    /// An allocator that maps its region on first use.
    pub const fn new() -> ArenaAlloc {
        ArenaAlloc {
            lock: AtomicBool::new(false),
            state: UnsafeCell::new(State {
                next: 0,
                end: 0,
                free: [0; CLASSES],
            }),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        while self
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        // SAFETY: the lock is held, so this is the only reference.
        let r = f(unsafe { &mut *self.state.get() });
        self.lock.store(false, Ordering::Release);
        r
    }

    fn class(layout: Layout) -> Option<(usize, usize)> {
        let size = layout
            .size()
            .max(layout.align())
            .max(1 << MIN_SHIFT)
            .checked_next_power_of_two()?;
        let class = (size.trailing_zeros() - MIN_SHIFT) as usize;
        (class < CLASSES).then_some((class, size))
    }
}

impl Default for ArenaAlloc {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: blocks are disjoint pieces of one private mapping, aligned to
// their power-of-two size (which is at least the layout's alignment), and a
// block is on a free list only after `dealloc` gave it back.
unsafe impl GlobalAlloc for ArenaAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some((class, size)) = Self::class(layout) else {
            return ptr::null_mut();
        };
        self.with(|s| {
            if s.end == 0 {
                // SAFETY: a fresh anonymous mapping; no existing memory is affected.
                let base = unsafe {
                    libc::mmap(
                        ptr::null_mut(),
                        ARENA,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                        -1,
                        0,
                    )
                };
                if base == libc::MAP_FAILED {
                    return ptr::null_mut();
                }
                s.next = base as usize;
                s.end = base as usize + ARENA;
            }
            let head = s.free[class];
            if head != 0 {
                // SAFETY: a free block holds the next free block's address in its first word.
                s.free[class] = unsafe { *(head as *const usize) };
                return head as *mut u8;
            }
            let at = (s.next + size - 1) & !(size - 1);
            if at + size > s.end {
                return ptr::null_mut();
            }
            s.next = at + size;
            at as *mut u8
        })
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some((class, _)) = Self::class(layout) else {
            return;
        };
        self.with(|s| {
            // SAFETY: the block is ours, at least 16 bytes and aligned for a usize.
            unsafe { *(block as *mut usize) = s.free[class] };
            s.free[class] = block as usize;
        })
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if Self::class(layout).map(|c| c.0) == Self::class(new_layout).map(|c| c.0) {
            return block;
        }
        // SAFETY: as for `alloc`.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for the smaller size and do not overlap.
            unsafe {
                ptr::copy_nonoverlapping(block, new, layout.size().min(new_size));
                self.dealloc(block, layout);
            }
        }
        new
    }
}
