//! A heap that runs out on request, for tests that check the core answers a
//! refused heap allocation with `Error::NoMemory` and changes nothing.
//!
//! [`FailingHeap`] passes every call to the system allocator until the
//! calling thread arms it with [`fail_from`]`(n)`: from then on that
//! thread's `n`-th allocation (counting from 0) and every later one return
//! null, as a heap that ran out would, until [`disarm`]. Other threads are
//! never refused. Growing an allocation (`realloc` to a larger size) counts
//! as an allocation; freeing and shrinking never fail.
//!
//! The simulated machine's own bookkeeping, which a kernel would not do on
//! the core's heap, runs inside [`exempt`] and is never refused. A test
//! binary installs the heap with
//! `#[global_allocator] static H: FailingHeap = FailingHeap;`. An
//! allocation the core makes infallibly (`Box::new`, `Vec::push` beyond
//! capacity, ...) while armed then aborts the binary with "memory
//! allocation failed": that is how a test finds the sites left. With
//! `ASPACE_HEAP_TRACE=1` each refusal prints a backtrace first, so the last
//! one printed before an abort names the culprit.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, refusing the calling thread's allocations from a
/// chosen one onward (see the module documentation).
pub struct FailingHeap;

/// Not armed: [`FIRST_REFUSED`] holds this.
const NEVER: u64 = u64::MAX;

thread_local! {
    /// Allocations made (or refused) since the thread armed the heap.
    static COUNT: Cell<u64> = const { Cell::new(0) };
    /// The index of the first allocation to refuse, or [`NEVER`].
    static FIRST_REFUSED: Cell<u64> = const { Cell::new(NEVER) };
    /// Allocations refused since arming.
    static REFUSED: Cell<u64> = const { Cell::new(0) };
    /// Depth of [`exempt`] scopes the thread is in.
    static EXEMPT: Cell<u32> = const { Cell::new(0) };
    /// Whether to print a backtrace per refusal.
    static TRACE: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread's next allocation is to be refused (and
/// counts it).
fn refuse() -> bool {
    // `try_with`: the thread's slots may be gone while it exits.
    let first = FIRST_REFUSED.try_with(Cell::get).unwrap_or(NEVER);
    if first == NEVER || EXEMPT.try_with(Cell::get).unwrap_or(0) > 0 {
        return false;
    }
    // A panicking thread (from the moment the panic starts, before its
    // message is formatted) gets what it asks, so a failed assertion while
    // armed reports as usual instead of aborting.
    if std::thread::panicking() {
        return false;
    }
    let n = COUNT.with(|c| c.replace(c.get() + 1));
    if n < first {
        return false;
    }
    REFUSED.with(|r| r.set(r.get() + 1));
    if TRACE.with(Cell::get) {
        exempt(|| {
            eprintln!(
                "refused heap allocation {n}:\n{}",
                std::backtrace::Backtrace::force_capture()
            )
        });
    }
    true
}

// SAFETY: every call is either passed on to `System` unchanged or answered
// with null, which `GlobalAlloc` allows for any allocation (a `realloc`
// answered with null leaves the old block untouched, as the contract says);
// the bookkeeping uses const-initialised thread-locals, which do not
// allocate.
unsafe impl GlobalAlloc for FailingHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if refuse() {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if refuse() {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() && refuse() {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Arms the heap on the calling thread: its allocations numbered `n` and
/// above (from 0, counted from now) are refused. Counts start afresh.
pub fn fail_from(n: u64) {
    let trace = exempt(|| std::env::var_os("ASPACE_HEAP_TRACE").is_some_and(|v| v == "1"));
    TRACE.with(|t| t.set(trace));
    COUNT.with(|c| c.set(0));
    REFUSED.with(|r| r.set(0));
    FIRST_REFUSED.with(|f| f.set(n));
}

/// Disarms the heap on the calling thread and returns (allocations counted,
/// allocations refused) since it was armed.
pub fn disarm() -> (u64, u64) {
    FIRST_REFUSED.with(|f| f.set(NEVER));
    (COUNT.with(Cell::get), REFUSED.with(Cell::get))
}

/// Runs `f` with the heap armed as by [`fail_from`]`(n)`, disarmed again
/// afterwards even if `f` panics (so the test harness, which carries on on
/// this thread, gets its memory); returns `f`'s result and (allocations
/// counted, allocations refused).
pub fn refusing_from<R>(n: u64, f: impl FnOnce() -> R) -> (R, (u64, u64)) {
    struct Disarm;
    impl Drop for Disarm {
        fn drop(&mut self) {
            disarm();
        }
    }
    fail_from(n);
    let guard = Disarm;
    let r = f();
    std::mem::forget(guard);
    (r, disarm())
}

/// Runs `f` with the calling thread's allocations never refused: for the
/// simulated machine's own bookkeeping, which is not the core's heap use.
pub fn exempt<R>(f: impl FnOnce() -> R) -> R {
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            EXEMPT.with(|e| e.set(e.get() - 1));
        }
    }
    EXEMPT.with(|e| e.set(e.get() + 1));
    let _leave = Leave;
    f()
}
