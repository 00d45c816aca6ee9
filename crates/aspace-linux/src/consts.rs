//! Linux's memory-call constants for x86_64, as `<sys/mman.h>` and
//! `<linux/mman.h>` define them (the runner's tests check them against `libc`).

/// The page size these calls work in (x86_64's base page).
pub const PAGE_SIZE: u64 = 4096;

/// `len` rounded up to whole pages as Linux's `PAGE_ALIGN` rounds it, with
/// wrapping arithmetic: a length within a page of 2^64 becomes 0 (the
/// calls that round so, `mremap` and `msync`, then see a length of 0).
pub const fn page_align(len: u64) -> u64 {
    len.wrapping_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}

/// Pages may not be accessed.
pub const PROT_NONE: u32 = 0x0;
/// Pages may be read.
pub const PROT_READ: u32 = 0x1;
/// Pages may be written.
pub const PROT_WRITE: u32 = 0x2;
/// Pages may be executed.
pub const PROT_EXEC: u32 = 0x4;
/// `mprotect`: extend the change down to the start of a grows-down mapping.
pub const PROT_GROWSDOWN: u32 = 0x0100_0000;
/// `mprotect`: extend the change up to the end of a grows-up mapping (none
/// on x86-64: always `EINVAL` where a mapping is).
pub const PROT_GROWSUP: u32 = 0x0200_0000;
/// x86's `PROT_SEM` (atomic operations allowed): accepted and meaning
/// nothing.
pub const PROT_SEM: u32 = 0x8;

/// Share the mapping: writes reach the object and every other mapping of it.
pub const MAP_SHARED: u32 = 0x01;
/// Private copy-on-write mapping.
pub const MAP_PRIVATE: u32 = 0x02;
/// `MAP_SHARED` that refuses unknown flags.
pub const MAP_SHARED_VALIDATE: u32 = 0x03;
/// The mask of the sharing type.
pub const MAP_TYPE: u32 = 0x0f;
/// Place exactly at `addr`, replacing what was there.
pub const MAP_FIXED: u32 = 0x10;
/// Not backed by a file: zero-filled; `fd` is ignored.
pub const MAP_ANONYMOUS: u32 = 0x20;
/// A stack-like mapping that grows down on faults below it.
pub const MAP_GROWSDOWN: u32 = 0x0100;
/// Ignored (historic).
pub const MAP_DENYWRITE: u32 = 0x0800;
/// Ignored (historic).
pub const MAP_EXECUTABLE: u32 = 0x1000;
/// Lock the pages in memory.
pub const MAP_LOCKED: u32 = 0x2000;
/// Do not reserve swap (overcommit accounting) for the mapping.
pub const MAP_NORESERVE: u32 = 0x4000;
/// Fault every page in now.
pub const MAP_POPULATE: u32 = 0x8000;
/// With `MAP_POPULATE`: do not block on I/O.
pub const MAP_NONBLOCK: u32 = 0x1_0000;
/// A hint that the mapping is a thread stack.
pub const MAP_STACK: u32 = 0x2_0000;
/// Back the mapping with huge pages.
pub const MAP_HUGETLB: u32 = 0x4_0000;
/// Synchronous page faults for DAX files.
pub const MAP_SYNC: u32 = 0x8_0000;
/// Place exactly at `addr`, but fail with `EEXIST` if anything is mapped there.
pub const MAP_FIXED_NOREPLACE: u32 = 0x10_0000;
/// `MAP_DROPPABLE` (a mapping type, Linux 6.11+): private anonymous
/// memory the kernel may drop under pressure, never reserved, not inherited
/// by a child's fork.
pub const MAP_DROPPABLE: u32 = 0x08;
/// `MAP_UNINITIALIZED` (ignored without `CONFIG_MMAP_ALLOW_UNINITIALIZED`).
pub const MAP_UNINITIALIZED: u32 = 0x400_0000;
/// `MAP_32BIT` (x86_64): place below 2 GiB (a hint here).
pub const MAP_32BIT: u32 = 0x40;
/// `MAP_ABOVE4G` (x86_64): place above 4 GiB (a hint here).
pub const MAP_ABOVE4G: u32 = 0x80;
/// `MAP_HUGE_2MB`: the huge page size `MAP_HUGETLB` asks for (bits 26..32).
pub const MAP_HUGE_2MB: u32 = 21 << 26;
/// `MAP_HUGE_1GB`: likewise.
pub const MAP_HUGE_1GB: u32 = 30 << 26;
/// The flags `MAP_SHARED_VALIDATE` accepts on a file (Linux's
/// `LEGACY_MAP_MASK` on x86_64); any other bit there is `EOPNOTSUPP`.
pub const LEGACY_MAP_MASK: u32 = MAP_SHARED
    | MAP_PRIVATE
    | MAP_FIXED
    | MAP_ANONYMOUS
    | MAP_DENYWRITE
    | MAP_EXECUTABLE
    | MAP_UNINITIALIZED
    | MAP_GROWSDOWN
    | MAP_LOCKED
    | MAP_NORESERVE
    | MAP_POPULATE
    | MAP_NONBLOCK
    | MAP_STACK
    | MAP_HUGETLB
    | MAP_32BIT
    | MAP_ABOVE4G
    | MAP_HUGE_2MB
    | MAP_HUGE_1GB;

/// `mremap`: the mapping may move if it cannot grow in place.
pub const MREMAP_MAYMOVE: u32 = 1;
/// `mremap`: move to `new_address` (needs `MREMAP_MAYMOVE`).
pub const MREMAP_FIXED: u32 = 2;
/// `mremap`: move, but leave the old range mapped (empty).
pub const MREMAP_DONTUNMAP: u32 = 4;

/// `madvise`: no special treatment.
pub const MADV_NORMAL: i32 = 0;
/// `madvise`: drop the pages now; private anonymous pages read as zero after.
pub const MADV_DONTNEED: i32 = 4;
/// `madvise`: the pages may be freed lazily (private anonymous only).
pub const MADV_FREE: i32 = 8;
/// `madvise`: free the range and its backing store (shared mappings).
pub const MADV_REMOVE: i32 = 9;
/// `madvise`: expect references in random order (`VM_RAND_READ`).
pub const MADV_RANDOM: i32 = 1;
/// `madvise`: expect references in order (`VM_SEQ_READ`).
pub const MADV_SEQUENTIAL: i32 = 2;
/// `madvise`: the range will be needed soon (read ahead).
pub const MADV_WILLNEED: i32 = 3;
/// `madvise`: a forked child does not get the range (`VM_DONTCOPY`).
pub const MADV_DONTFORK: i32 = 10;
/// `madvise`: undoes `MADV_DONTFORK`.
pub const MADV_DOFORK: i32 = 11;
/// `madvise`: the range's pages may be merged with equal ones (KSM).
pub const MADV_MERGEABLE: i32 = 12;
/// `madvise`: undoes `MADV_MERGEABLE`.
pub const MADV_UNMERGEABLE: i32 = 13;
/// `madvise`: prefer transparent huge pages (`VM_HUGEPAGE`).
pub const MADV_HUGEPAGE: i32 = 14;
/// `madvise`: no transparent huge pages (`VM_NOHUGEPAGE`).
pub const MADV_NOHUGEPAGE: i32 = 15;
/// `madvise`: leave the range out of core dumps (`VM_DONTDUMP`).
pub const MADV_DONTDUMP: i32 = 16;
/// `madvise`: undoes `MADV_DONTDUMP`.
pub const MADV_DODUMP: i32 = 17;
/// `madvise`: a forked child gets the range zero-filled (`VM_WIPEONFORK`;
/// private anonymous memory only).
pub const MADV_WIPEONFORK: i32 = 18;
/// `madvise`: undoes `MADV_WIPEONFORK`.
pub const MADV_KEEPONFORK: i32 = 19;
/// `madvise`: the range's pages are cold (reclaim them first).
pub const MADV_COLD: i32 = 20;
/// `madvise`: reclaim the range's pages now.
pub const MADV_PAGEOUT: i32 = 21;
/// `madvise`: fault the range in as reads would.
pub const MADV_POPULATE_READ: i32 = 22;
/// `madvise`: fault the range in as writes would.
pub const MADV_POPULATE_WRITE: i32 = 23;
/// `madvise`: `MADV_DONTNEED`, locked pages too.
pub const MADV_DONTNEED_LOCKED: i32 = 24;
/// `madvise`: make the pages guard pages, every access a fault (Linux 6.13+).
pub const MADV_GUARD_INSTALL: i32 = 102;
/// `madvise`: guard pages back to ordinary ones, empty (Linux 6.13+).
pub const MADV_GUARD_REMOVE: i32 = 103;

/// `msync`: schedule the write-back and return.
pub const MS_ASYNC: u32 = 1;
/// `msync`: invalidate other mappings of the same file.
pub const MS_INVALIDATE: u32 = 2;
/// `msync`: write back and wait.
pub const MS_SYNC: u32 = 4;

/// `mlock2`: lock pages as they are faulted in, not all at once.
pub const MLOCK_ONFAULT: u32 = 1;

/// `mlockall`: lock every current mapping.
pub const MCL_CURRENT: u32 = 1;
/// `mlockall`: lock every later mapping as it is made.
pub const MCL_FUTURE: u32 = 2;
/// `mlockall`: lock pages as they are faulted in.
pub const MCL_ONFAULT: u32 = 4;
