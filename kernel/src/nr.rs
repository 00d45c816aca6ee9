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

/// Most share offers one process may have pending at once.
pub const MAX_OFFERS: usize = 8;
/// Most threads one process may have at once.
pub const MAX_THREADS: usize = 32;
