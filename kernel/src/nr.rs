//! System-call numbers: the one list the kernel and the user programs
//! share (the user library includes this file).

pub const EXIT: u64 = 0;
pub const PRINT: u64 = 1;
pub const AREA_CREATE: u64 = 2;
pub const AREA_RESIZE: u64 = 3;
pub const AREA_CHANGE_FLAGS: u64 = 4;
pub const AREA_DESTROY: u64 = 5;
pub const YIELD: u64 = 6;
pub const SHARE_OFFER: u64 = 7;
pub const SHARE_ACCEPT: u64 = 8;
pub const THREAD_CREATE: u64 = 9;
pub const CPU: u64 = 10;
pub const PID: u64 = 11;
pub const AREA_CREATE_ANY: u64 = 12;
pub const AREA_GET_INFO: u64 = 13;
pub const AREA_LIST: u64 = 14;
pub const AREA_CREATE_PAGED: u64 = 15;
pub const PAGER_RECEIVE: u64 = 16;
pub const PAGER_ANSWER: u64 = 17;

// Linux's memory calls, with Linux's arguments (`mmap` takes six: the fifth
// in `r8` / `a4`, the sixth in `r9` / `a5`), flag values and errno values;
// each returns an address, 0, or a negative Linux errno (`brk`: the break).
pub const MMAP: u64 = 18;
pub const MUNMAP: u64 = 19;
pub const MPROTECT: u64 = 20;
pub const MREMAP: u64 = 21;
pub const BRK: u64 = 22;
pub const MADVISE: u64 = 23;

// Processes, with Linux's conventions and errno values.
/// `FORK()`: a new process whose address space is a copy-on-write copy of
/// the caller's (and of its Linux memory map), running a copy of the
/// calling thread only; returns 0 in the child and the child's process
/// number in the caller, or `-ENOMEM`, or `-EAGAIN` with
/// [`MAX_CHILDREN`] children not waited for or [`MAX_PROCESSES`] alive.
pub const FORK: u64 = 24;
/// `WAIT(pid, flags)`: waits until child `pid` of the caller has ended and
/// returns its Linux wait status (`(code & 0xff) << 8` for an exit,
/// [`KILLED_STATUS`] when the kernel killed it); `-ECHILD` when `pid` is
/// not a child of the caller that was not waited for, `-EINVAL` for flags
/// other than 0.
pub const WAIT: u64 = 25;

// More of Linux's memory calls, as `MMAP` to `MADVISE`.
pub const MSYNC: u64 = 26;
/// Linux's `mlock2(addr, len, flags)` (`mlock` with flags 0).
pub const MLOCK: u64 = 27;
pub const MUNLOCK: u64 = 28;
pub const MLOCKALL: u64 = 29;
pub const MUNLOCKALL: u64 = 30;
/// `MEMLOCK_LIMIT(bytes)`: Linux's `setrlimit(RLIMIT_MEMLOCK)` in this
/// kernel's form (the limit in a register, soft and hard alike;
/// `u64::MAX` for none), for a process without `CAP_IPC_LOCK`: its
/// `mlock` past it is `ENOMEM`, a locked `mmap` or `mremap` growth past it
/// `EAGAIN`. No limit until set. Returns 0.
pub const MEMLOCK_LIMIT: u64 = 31;
/// Linux's `mincore(addr, len, vec)`: a byte per page of the range written
/// to `vec` (1 resident, 0 not).
pub const MINCORE: u64 = 32;
/// Linux's `mseal(addr, len, flags)`: the range's mappings sealed against
/// unmapping, moves, resizes and changes of rights.
pub const MSEAL: u64 = 33;

/// The wait status of a killed process (Linux: ended by `SIGKILL`).
pub const KILLED_STATUS: u64 = 9;
/// Most children one process may have that it has not waited for.
pub const MAX_CHILDREN: usize = 8;
/// Most processes alive at once past which `FORK` is refused.
pub const MAX_PROCESSES: usize = 64;
/// Linux errno values (`FORK` and `WAIT` return them negated).
pub const ECHILD: i64 = 10;
/// Linux `EAGAIN`: too many processes.
pub const EAGAIN: i64 = 11;
/// Linux `ENOMEM`.
pub const ENOMEM: i64 = 12;
/// Linux `EINVAL`.
pub const EINVAL: i64 = 22;

/// The Linux calls' window of the address space: every Linux mapping and
/// the program break lie in `[LINUX_START, LINUX_END)` (64 GiB to 128 GiB,
/// inside both architectures' user halves and clear of the ELF image, the
/// stack and the areas the other calls make, which may not enter it).
pub const LINUX_START: u64 = 0x10_0000_0000;
/// One past the Linux window's last byte (the mmap base: `mmap(NULL)`
/// places top-down below it).
pub const LINUX_END: u64 = 0x20_0000_0000;
/// The file descriptor of the in-kernel file every process can map:
/// 64 MiB, its first [`BLOB_PAGES`] pages hold [`blob_byte`], the rest zeros.
pub const BLOB_FD: u64 = 3;
/// Pages of the file at [`BLOB_FD`] that hold the pattern.
pub const BLOB_PAGES: u64 = 4;
/// Most Linux mappings one process may have (its `vm.max_map_count`).
pub const LINUX_MAX_MAPS: usize = 256;

/// The byte at `offset` of the file at [`BLOB_FD`], within its first
/// [`BLOB_PAGES`] pages.
pub const fn blob_byte(offset: u64) -> u8 {
    (offset / 4096 * 37 + offset * 7 + 1) as u8
}

/// `PAGER_RECEIVE` flag: return `ENOENT` at once when nothing is queued.
pub const RECEIVE_NOWAIT: u64 = 1;
/// Bytes of the record `PAGER_RECEIVE` writes: handle, offset, size, the
/// three identifiers, the access (1 read, 2 write, 4 execute), the client's
/// process number, 8 bytes each.
pub const PAGE_IN_RECORD: usize = 64;
/// Bytes of the pager description `AREA_CREATE_PAGED` reads: the pager's
/// process number and the three identifiers, 8 bytes each.
pub const PAGER_INFO: usize = 32;
/// Bytes of one area record of `AREA_GET_INFO` and `AREA_LIST`.
pub const AREA_INFO: usize = 40;

/// Most share offers one process may have pending at once.
pub const MAX_OFFERS: usize = 8;
/// Most threads one process may have at once.
pub const MAX_THREADS: usize = 32;
