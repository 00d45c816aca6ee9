//! The reference runner: executes call lines on this machine's Linux kernel
//! inside a window of the process's address space and reports, after each,
//! the outcome, the window's maps and its pages' digests (see [`crate::protocol`]).
//!
//! It runs as the `linux-ref` binary, in a child process so the caller's own
//! address space stays clean; [`LinuxRef`] starts it and exchanges lines.
//!
//! Linux's policies the results depend on, and how they are pinned down:
//! - **Placement without a hint** (`mmap(0, ...)`, a taken hint, `mremap`
//!   may-move) is top-down below `mmap_base`. At start [`window::reserve`]
//!   fills every hole between `mmap_base` and the window with `PROT_NONE`
//!   placeholders and keeps a guard page just above the window, so such
//!   placements land top-down from the window's end: the aspace side places
//!   top-down from the same end. A placement that does not fit in the window
//!   lands below it; the runner unmaps it at once and reports its address
//!   (outside the window).
//! - **Address randomisation**: the binary re-executes itself with
//!   `ADDR_NO_RANDOMIZE` (unless `--aslr`), so the window and the break are
//!   the same from run to run and printed sequences replay.
//! - **brk** is per process and starts where the executable ends, not in the
//!   window. The runner's own heap does not use it (the binary's allocator
//!   is [`ArenaAlloc`], which takes memory with `mmap`), so `brk` calls move
//!   a break nothing else uses; the header gives its start and a span
//!   (`brk-span`) whose maps are reported too. The aspace side starts its
//!   break at the same address. If something moved the break before the
//!   runner started, the span starts at the current break and calls below
//!   it are refused.
//! - **Overcommit** (`vm.overcommit_memory`, in the header) decides when a
//!   large private writable mapping fails with `ENOMEM`; the generator's
//!   mappings are small enough never to meet it, and `MAP_NORESERVE` is
//!   passed through.
//! - **Map count** (`vm.max_map_count`, in the header) is far above what a
//!   window can hold.
//! - **Huge-page alignment**: Linux aligns anonymous mappings of 2 MiB or
//!   more to 2 MiB when it places them; the generator stays below.
//! - **`MADV_FREE`** keeps the data of pages not reclaimed yet; without
//!   memory pressure they read back unchanged.
//! - **Past the object's end**: a shared anonymous mapping grown by
//!   `mremap` (or a file mapping past its file) has pages that raise
//!   `SIGBUS`; the runner reads none of them and reports them as `bus`.

pub mod alloc;
pub mod client;
pub mod engine;
pub mod window;

pub use self::alloc::ArenaAlloc;
pub use client::LinuxRef;
pub use engine::Engine;
