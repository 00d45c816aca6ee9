//! The core's own data structures, public so that the crate's tests and
//! benchmarks (and a curious reader) can drive them directly. A kernel does
//! not need them: they are what [`AddressSpace`](crate::AddressSpace) is built
//! from, and they carry no promise of stability.
//!
//! - [`area_tree`]: the B+tree interval map behind every address space's
//!   areas and every area's used space;
//! - [`used_space`]: an area's mapped pages as merged runs.

pub mod area_tree;
pub mod used_space;
