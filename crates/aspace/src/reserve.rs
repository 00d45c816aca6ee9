//! Memory reservation (after HelenOS's `reserve.c`): the system's commit
//! limit and the pages committed against it.
//!
//! An area that will need frames for its pages *reserves* them when it is
//! created or grown, so that running out of memory shows up there, as
//! [`Error::NoMemory`](crate::Error::NoMemory) from a call that changes
//! nothing, rather than later, in a page fault the task cannot handle. The
//! reservation is a count, not frames: nothing is allocated until a fault.
//! How many pages an area reserves is its backend's policy
//! ([`Backend::reserve_pages`]: anonymous memory every page, device memory
//! none, an ELF segment the pages it may copy); an area with
//! [`AreaFlags::LATE_RESERVE`] reserves nothing up front and one page at a
//! time in the fault that maps it instead (a fault that cannot reserve
//! fails with [`FaultReason::NoMemory`](crate::FaultReason::NoMemory)),
//! giving it back when the page is unmapped; with
//! [`AreaFlags::RESERVE_ON_WRITE`] too, only until a change of rights
//! gives it write access, which reserves the rest of its pages up front
//! (or is refused). A shared area's reservation
//! belongs to its share record: taken once, by the area first shared, and
//! given back when the last sharer goes.
//!
//! The counters are two atomics, changed by compare-and-swap, so faults may
//! reserve without a lock.

use crate::backend::Backend;
use crate::flags::AreaFlags;
use crate::memory::{FrameAllocator, PhysMemory};
// Plain `core` atomics, also under loom: the counters order nothing else,
// so the schedule explorer need not branch on them.
use core::sync::atomic::{AtomicU64, Ordering};

/// The commit limit and the pages committed against it, shared by every
/// address space of a [`System`](crate::System) (read it with
/// [`System::reserve`](crate::System::reserve)).
///
/// A kernel may also account its own allocations here with
/// [`try_reserve`](Self::try_reserve) and [`release`](Self::release).
#[derive(Debug)]
pub struct Reserve {
    committed: AtomicU64,
    limit: AtomicU64,
}

/// The reservation counters at one moment (for statistics and listings).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReserveSnapshot {
    /// Pages reserved now.
    pub committed: u64,
    /// The commit limit in pages (`u64::MAX`: none).
    pub limit: u64,
}

impl Reserve {
    /// Nothing committed, against `limit` pages.
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            committed: AtomicU64::new(0),
            limit: AtomicU64::new(limit),
        }
    }

    /// Reserves `pages` if that keeps the committed total within the limit
    /// (HelenOS `reserve_try_alloc`); returns whether it did. Reserving 0
    /// pages always succeeds.
    pub fn try_reserve(&self, pages: u64) -> bool {
        if pages == 0 {
            return true;
        }
        let limit = self.limit.load(Ordering::Relaxed);
        let mut now = self.committed.load(Ordering::Relaxed);
        loop {
            match now.checked_add(pages) {
                Some(after) if after <= limit => {}
                _ => return false,
            }
            match self.committed.compare_exchange_weak(
                now,
                now + pages,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => now = seen,
            }
        }
    }

    /// Gives back `pages` reserved before (HelenOS `reserve_free`).
    ///
    /// # Panics
    /// In debug builds, if more is given back than was reserved (in release
    /// builds the count stops at zero).
    pub fn release(&self, pages: u64) {
        if pages == 0 {
            return;
        }
        let before = self
            .committed
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |c| {
                Some(c.saturating_sub(pages))
            })
            .unwrap_or(0);
        debug_assert!(
            before >= pages,
            "released {pages} reserved pages, only {before} were reserved"
        );
    }

    /// Pages reserved now.
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }

    /// The commit limit in pages (`u64::MAX`: none).
    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Pages that may still be reserved.
    pub fn available(&self) -> u64 {
        self.limit().saturating_sub(self.committed())
    }

    /// Changes the commit limit. A limit below what is committed now takes
    /// nothing back: later reservations fail until enough is released.
    pub fn set_limit(&self, limit: u64) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Both counters.
    pub fn snapshot(&self) -> ReserveSnapshot {
        ReserveSnapshot {
            committed: self.committed(),
            limit: self.limit(),
        }
    }
}

/// The limit a [`System`](crate::System) starts with when its
/// [`Config`](crate::Config) names none: the frames the allocator has free,
/// or no limit if it cannot tell.
pub(crate) fn default_limit<F: FrameAllocator>(frames: &F) -> u64 {
    frames.free_frames().unwrap_or(u64::MAX)
}

/// Pages an area with `flags` and `backend` reserves when it is created or
/// grown over page indices `[first, first + count)`: the backend's count,
/// or none for a late-reserving area.
pub(crate) fn up_front<P: PhysMemory, F: FrameAllocator>(
    backend: &dyn Backend<P, F>,
    flags: AreaFlags,
    first: u64,
    count: u64,
) -> u64 {
    if flags.contains(AreaFlags::LATE_RESERVE) || count == 0 {
        0
    } else {
        backend.reserve_pages(first, count)
    }
}

/// Pages an area with `flags` and `backend` reserves when page `index` is
/// mapped by a fault (and gives back when it is unmapped): the backend's
/// count for that page in a late-reserving area, none otherwise.
pub(crate) fn per_page<P: PhysMemory, F: FrameAllocator>(
    backend: &dyn Backend<P, F>,
    flags: AreaFlags,
    index: u64,
    count: u64,
) -> u64 {
    if flags.contains(AreaFlags::LATE_RESERVE) && count > 0 {
        backend.reserve_pages(index, count)
    } else {
        0
    }
}
