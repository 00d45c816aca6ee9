//! Linux's memory calls as values, text and `/proc/PID/maps` lines, and a
//! reference runner that executes them on the real Linux kernel.
//!
//! This crate is the Linux side of a differential test (issue 16): the same
//! call lines run on the real kernel here and on aspace, and after every step
//! the results, the maps of a window of address space and the contents of its
//! pages are compared. See `README.md` for the plan.
//!
//! The vocabulary (everything but [`runner`]) is `no_std` + `alloc`, so a
//! kernel can use the same types and errno values:
//! - [`consts`]: `PROT_*`, `MAP_*`, `MREMAP_*`, `MADV_*`, `MS_*`, `MLOCK_*`
//!   for x86_64 Linux;
//! - [`Errno`]: Linux errno numbers and names;
//! - [`Prot`], [`MapFlags`], [`RemapFlags`], [`Advice`], [`SyncFlags`],
//!   [`LockFlags`], [`LockAllFlags`] and the typed [`Call`];
//! - [`Command`], [`Line`], [`Expect`], [`Outcome`]: the line protocol's text;
//! - [`maps`]: `/proc/PID/maps` lines printed and parsed exactly as Linux does,
//!   and the comparison key ([`maps::MapKey`]) of a window;
//! - [`digest`]: the page digest both sides compute;
//! - [`protocol`]: the runner's response blocks;
//! - [`gen`]: a seeded generator of random call sequences confined to a window.
//!
//! With the `runner` feature (default, Linux only): [`runner`] executes lines on
//! this kernel, `linux-ref` is its binary, and [`runner::LinuxRef`] drives it in
//! a child process.
//!
//! With the `aspace` feature (default; `no_std` + `alloc`): [`mm::LinuxMm`],
//! the calls with Linux's semantics and errno values on an aspace address
//! space. With `sim` (default): [`mm::sim::SimEngine`], `LinuxMm` on the
//! simulated machine answering lines as the runner does: the aspace side of
//! the differential test (`tests/differential.rs`).
#![no_std]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod call;
pub mod command;
pub mod consts;
pub mod digest;
pub mod errno;
pub mod flags;
pub mod gen;
pub mod maps;
#[cfg(feature = "aspace")]
pub mod mm;
pub mod num;
pub mod prot;
pub mod protocol;
#[cfg(all(feature = "runner", target_os = "linux"))]
pub mod runner;

pub use call::{Call, FileRef};
pub use command::{Command, Expect, Line, Outcome, ParseError, Residency};
pub use errno::Errno;
pub use flags::{Advice, FlagWords, LockAllFlags, LockFlags, MapFlags, RemapFlags, SyncFlags};
pub use prot::Prot;
