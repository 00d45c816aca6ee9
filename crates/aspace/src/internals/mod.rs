//! The core's own data structures, public so that the crate's tests and
//! benchmarks (and a curious reader) can drive them directly. A kernel does
//! not need them: they are what [`AddressSpace`](crate::AddressSpace) is built
//! from, and they carry no promise of stability.
//!
//! - [`area_tree`]: the B+tree interval map behind every address space's
//!   areas and every area's used space;
//! - [`used_space`]: an area's mapped pages as merged runs;
//! - [`try_arc`]: a reference-counted box whose creation can fail cleanly
//!   (areas, address spaces, backends and ELF images live in it, so a full
//!   heap refuses an operation instead of aborting; re-exported at the
//!   crate root as [`TryArc`](crate::TryArc), since the API hands it out).

pub mod area_tree;
#[allow(unsafe_code)]
pub mod try_arc;
pub mod used_space;
