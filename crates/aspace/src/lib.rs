//! Address spaces for Rust microkernels, after the HelenOS kernel's `as.c`.
//!
//! An [`AddressSpace`] holds *areas* (runs of pages with one set of rights
//! and one [`Backend`](backend::Backend)); pages are mapped lazily by the
//! [page-fault handler](AddressSpace::page_fault), each area keeps its
//! [used space](internals::used_space::UsedSpace) equal to what the page table maps,
//! ASIDs are handed out on [switch](System::switch) and stolen from inactive
//! spaces when the pool runs dry, and every change that removes translations
//! goes through a [TLB shootdown](tlb::ShootdownBatch) before its frames are
//! released.
//!
//! The crate is `no_std` + `alloc` and generic over the [`Machine`]: the
//! kernel supplies physical memory access, a frame allocator, the local TLB,
//! inter-processor shootdown, the lock type and the page-table format
//! (x86_64, RISC-V Sv39/Sv48 and AArch64 formats ship with the crate:
//! [`paging::x86_64::X86_64PageTable`], [`paging::riscv64::RiscvPageTable`],
//! [`paging::aarch64::Aarch64PageTable`]).
//!
//! # Example
//!
//! The `aspace-sim` crate provides a simulated machine that implements
//! [`Machine`]; on it, an address space gets an area, a CPU touches it (the
//! fault handler maps zeroed frames), and shrinking the area releases the
//! frames after one TLB shootdown:
//!
//! ```
//! use aspace::{AreaFlags, Error, VirtAddr, PAGE_SIZE};
//! use aspace_sim::{Sim, SimConfig};
//!
//! let sim = Sim::new(SimConfig::default()).unwrap();
//! let space = sim.system().create().unwrap();
//! let heap = VirtAddr::new(0x40_0000);
//! space.area_create(heap, 8 * PAGE_SIZE, AreaFlags::READ | AreaFlags::WRITE).unwrap();
//!
//! let mut cpu = sim.cpu(0);
//! cpu.switch_to(&space).unwrap();
//! for i in 0..8 {
//!     cpu.write_u64(VirtAddr::new(heap.as_u64() + i * PAGE_SIZE), i).unwrap();
//! }
//! assert_eq!(space.resident_pages(), 8);
//!
//! let before = sim.system().stats();
//! cpu.run(|| space.area_resize(heap, 2 * PAGE_SIZE)).unwrap();
//! let after = sim.system().stats().since(&before);
//! assert_eq!((after.shootdown_rounds, after.frame_refs_released), (1, 6));
//!
//! // Refusals are errors with HelenOS errno values, never panics.
//! let err = space.area_create(VirtAddr::new(0), PAGE_SIZE, AreaFlags::READ).unwrap_err();
//! assert_eq!(err, Error::AddressNotAvailable);
//! assert_eq!(err.errno(), -11);
//! print!("{}", space.map());
//! ```
#![no_std]
#![warn(missing_docs)]
// `unsafe` only where raw memory needs it: the sharded lock, its cell, the
// ready-made spinning locks (`lock_api`'s traits are `unsafe`), and the
// traits whose implementers make promises.
#![deny(unsafe_code)]

extern crate alloc;

pub mod addr;
pub mod area;
mod asid;
pub mod backend;
pub mod cow;
pub mod discard;
pub mod error;
pub mod extend;
pub mod fault;
pub mod flags;
pub mod fork;
pub mod hold;
pub mod internals;
pub mod loader;
pub mod lookup;
pub mod machine;
#[allow(unsafe_code)]
pub mod memory;
mod page_in;
pub mod paging;
pub mod placement;
mod protect;
pub mod range;
pub mod remap;
pub mod replace;
pub mod reserve;
#[allow(unsafe_code)]
mod shard_lock;
pub mod share;
mod shared;
pub mod space;
#[allow(unsafe_code)]
pub mod spin;
pub mod split;
pub mod stats;
#[allow(unsafe_code)]
mod sync;
pub mod syscall;
pub mod system;
pub mod tlb;
pub mod uaccess;

pub use addr::{Frame, Page, PageRange, PhysAddr, VirtAddr, PAGE_SIZE};
pub use backend::{AreaInfo, BackendRef};
pub use error::{Error, Result};
pub use fault::{FaultContext, FaultOutcome, FaultReason};
pub use flags::{Access, AreaAttrs, AreaFlags, PageFlags};
pub use fork::{ForkRange, Inherit};
pub use hold::SpaceHold;
pub use internals::try_arc::{TryArc, TryWeak};
pub use lookup::AreaLookup;
pub use machine::{
    Asid, CpuId, CpuSet, Cpus, FrameAllocator, Invalidation, Layout, Machine, PhysMemory,
    Shootdown, Sleep, Tlb,
};
pub use placement::Placement;
pub use reserve::{Reserve, ReserveSnapshot};
pub use space::{AddressSpace, SpaceRef};
pub use stats::StatsSnapshot;
pub use system::{Config, System};

/// What the schedule explorer (`tests/loom.rs`, built with
/// `RUSTFLAGS="--cfg loom"`) checks beyond the public API: the sharded
/// reader-writer lock. Not part of the API; absent from normal builds.
#[cfg(loom)]
#[doc(hidden)]
pub mod loom_internals {
    pub use crate::shard_lock::{ReadGuard, ShardedRwLock, WriteGuard};
}
