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

/// `PAGER_RECEIVE` flag: return `ENOENT` at once when nothing is queued.
pub const RECEIVE_NOWAIT: u64 = 1;
/// Bytes of the record `PAGER_RECEIVE` writes: handle, offset, size, the
/// three identifiers, the access (1 read, 2 write, 4 execute), 8 bytes each.
pub const PAGE_IN_RECORD: usize = 56;
/// Bytes of the pager description `AREA_CREATE_PAGED` reads: the pager's
/// process number and the three identifiers, 8 bytes each.
pub const PAGER_INFO: usize = 32;
/// Bytes of one area record of `AREA_GET_INFO` and `AREA_LIST`.
pub const AREA_INFO: usize = 40;

/// Most share offers one process may have pending at once.
pub const MAX_OFFERS: usize = 8;
/// Most threads one process may have at once.
pub const MAX_THREADS: usize = 32;
