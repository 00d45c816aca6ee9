//! Counting heap allocations, for tests that check a path allocates
//! nothing (the page-fault path above all).
//!
//! [`CountingAlloc`] passes every call to the system allocator and counts
//! the allocations (and reallocations) a thread makes while it runs inside
//! [`allocations`]; other threads, such as the test harness's, are not
//! counted. A test binary installs it with
//! `#[global_allocator] static A: CountingAlloc = CountingAlloc;`. With
//! `ASPACE_ALLOC_TRACE=1` each counted allocation also prints a backtrace,
//! to find the culprit.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting the calling thread's allocations while
/// it runs inside [`allocations`].
pub struct CountingAlloc;

thread_local! {
    /// Allocations counted while measuring.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    /// Whether this thread is measuring.
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    /// Whether to print a backtrace per counted allocation.
    static TRACE: Cell<bool> = const { Cell::new(false) };
}

fn counted() {
    // `try_with`: the thread's slots may be gone while it exits.
    if !MEASURING.try_with(Cell::get).unwrap_or(false) {
        return;
    }
    let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
    if TRACE.try_with(Cell::get).unwrap_or(false) {
        // Stop measuring while the backtrace (which allocates) is printed.
        MEASURING.with(|m| m.set(false));
        eprintln!(
            "counted allocation:\n{}",
            std::backtrace::Backtrace::force_capture()
        );
        MEASURING.with(|m| m.set(true));
    }
}

// SAFETY: every call is passed on to `System` unchanged; the bookkeeping
// uses const-initialised thread-locals, which do not allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        counted();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        counted();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        counted();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Runs `f` and returns how many allocations the calling thread made in it
/// (counted only if [`CountingAlloc`] is the global allocator), with `f`'s
/// result.
pub fn allocations<R>(f: impl FnOnce() -> R) -> (u64, R) {
    let trace = std::env::var_os("ASPACE_ALLOC_TRACE").is_some_and(|v| v == "1");
    let outer = MEASURING.with(|m| m.replace(true));
    TRACE.with(|t| t.set(trace));
    let before = ALLOCS.with(Cell::get);
    let r = f();
    let n = ALLOCS.with(Cell::get) - before;
    MEASURING.with(|m| m.set(outer));
    (n, r)
}
