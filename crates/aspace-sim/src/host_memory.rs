//! The host memory behind the simulated physical memory: an array of zeroed
//! atomic words.
//!
//! On Linux hosts the array is an anonymous mapping of its own, aligned to
//! 2 MiB and advised for transparent huge pages (`MADV_HUGEPAGE`). A kernel
//! reaches physical memory through a direct map of large pages, so a page
//! table walk or a frame copy there costs no TLB miss per 4 KiB; backing the
//! simulated memory with 4 KiB host pages would add host TLB misses (and
//! cache-colouring luck that changes from process to process) a real kernel
//! does not pay. Where the host gives no huge pages (a `never` setting, or
//! not Linux) the array is the same, only slower to reach.

use core::ops::Deref;
use std::sync::atomic::AtomicU64;

/// The size and alignment of a host huge page.
#[cfg(all(target_os = "linux", not(miri)))]
const HUGE: usize = 2 << 20;

/// `len` zeroed words, in host huge pages where the host has them.
pub(crate) struct Words {
    #[cfg(all(target_os = "linux", not(miri)))]
    map: Mapping,
    #[cfg(not(all(target_os = "linux", not(miri))))]
    words: Box<[AtomicU64]>,
}

impl Words {
    /// `len` words, all zero.
    pub(crate) fn zeroed(len: usize) -> Self {
        #[cfg(all(target_os = "linux", not(miri)))]
        {
            Self {
                map: Mapping::new(len),
            }
        }
        #[cfg(not(all(target_os = "linux", not(miri))))]
        {
            Self {
                words: (0..len).map(|_| AtomicU64::new(0)).collect(),
            }
        }
    }
}

impl Deref for Words {
    type Target = [AtomicU64];

    #[inline]
    fn deref(&self) -> &[AtomicU64] {
        #[cfg(all(target_os = "linux", not(miri)))]
        {
            self.map.words()
        }
        #[cfg(not(all(target_os = "linux", not(miri))))]
        {
            &self.words
        }
    }
}

/// An anonymous host mapping holding the words from a 2 MiB boundary on.
#[cfg(all(target_os = "linux", not(miri)))]
struct Mapping {
    /// The first word (2 MiB-aligned), or a dangling pointer for none.
    base: core::ptr::NonNull<AtomicU64>,
    /// Words in the mapping.
    len: usize,
    /// Bytes mapped from `base` (`len` words rounded up to a host page).
    bytes: usize,
}

// SAFETY: the mapping is owned by this value alone and holds atomics, which
// any thread may reach through a shared reference.
#[cfg(all(target_os = "linux", not(miri)))]
unsafe impl Send for Mapping {}
// SAFETY: as for `Send`: shared access is only to `AtomicU64`s.
#[cfg(all(target_os = "linux", not(miri)))]
unsafe impl Sync for Mapping {}

#[cfg(all(target_os = "linux", not(miri)))]
impl Mapping {
    fn new(len: usize) -> Self {
        // SAFETY: sysconf only reads a system constant.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .ok()
            .filter(|p| p.is_power_of_two())
            .unwrap_or(4096);
        let bytes = len
            .checked_mul(8)
            .and_then(|b| b.checked_next_multiple_of(page))
            .filter(|b| b.checked_add(HUGE).is_some())
            .unwrap_or_else(|| panic!("simulated memory of {len} words is too large for the host"));
        if bytes == 0 {
            return Self {
                base: core::ptr::NonNull::dangling(),
                len: 0,
                bytes: 0,
            };
        }
        // Map a huge page more than needed, then give back what lies
        // before the first 2 MiB boundary and after the words.
        let total = bytes + HUGE;
        // SAFETY: a fresh private anonymous mapping at an address the host
        // chooses: it replaces nothing.
        let raw = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert!(
            raw != libc::MAP_FAILED,
            "the host refused {total} bytes for simulated memory"
        );
        let start = raw as usize;
        let aligned = start.next_multiple_of(HUGE);
        let (head, tail) = (aligned - start, total - (aligned - start) - bytes);
        // SAFETY: the head and the tail are parts of the mapping just made
        // that nothing refers to; `madvise` only advises on the words' part.
        unsafe {
            if head > 0 {
                libc::munmap(raw, head);
            }
            if tail > 0 {
                libc::munmap((aligned + bytes) as *mut libc::c_void, tail);
            }
            // Advice only: a host without transparent huge pages refuses it
            // and the mapping stays as it is.
            libc::madvise(aligned as *mut libc::c_void, bytes, libc::MADV_HUGEPAGE);
        }
        Self {
            // SAFETY: `aligned` lies inside a successful mapping: not null.
            base: unsafe { core::ptr::NonNull::new_unchecked(aligned as *mut AtomicU64) },
            len,
            bytes,
        }
    }

    #[inline]
    fn words(&self) -> &[AtomicU64] {
        // SAFETY: `base` starts `bytes >= len * 8` bytes of readable and
        // writable memory, zero-filled by the host (all-zero bytes are a
        // valid `AtomicU64`), mapped until `self` is dropped, and reached
        // only through shared references to atomics.
        unsafe { core::slice::from_raw_parts(self.base.as_ptr(), self.len) }
    }
}

#[cfg(all(target_os = "linux", not(miri)))]
impl Drop for Mapping {
    fn drop(&mut self) {
        if self.bytes > 0 {
            // SAFETY: the mapping made in `new`, which no reference
            // outlives (they borrow `self`).
            unsafe {
                libc::munmap(self.base.as_ptr().cast(), self.bytes);
            }
        }
    }
}
