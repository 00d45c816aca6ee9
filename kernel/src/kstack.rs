//! Kernel stacks for threads parked inside the kernel (`sched::relax_parked`,
//! `sched::PagerSleep`).
//!
//! A thread that waits in a page fault (or a system call's user copy) for
//! a pager keeps the stack it runs on (one of the CPU's trap stacks); the
//! CPU gets another one from here.
//! Stacks come from the kernel heap and are never given back to it: a
//! stack no longer used goes to a pool (as many as threads ever parked at
//! once, plus one per CPU). Each CPU also has a small switch stack, on
//! which it picks the next task after a thread parked.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::MAX_CPUS;
use crate::sync::SpinLock;

/// Bytes of a trap stack (as the static ones).
pub const SIZE: u64 = crate::arch::TRAP_STACK_SIZE;
/// Bytes of a switch stack.
const SWITCH_SIZE: usize = 16 * 1024;

static POOL: SpinLock<Vec<u64>> = SpinLock::new(Vec::new());
static SWITCH: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// A new stack from the heap: its (16-aligned) top.
fn new_stack(size: usize) -> Option<u64> {
    let layout = core::alloc::Layout::from_size_align(size, 16).ok()?;
    // SAFETY: `layout` has a non-zero size.
    let p = unsafe { alloc::alloc::alloc(layout) };
    (!p.is_null()).then(|| p as u64 + size as u64)
}

/// A free trap stack (its top), or `None` when the heap is exhausted.
pub fn alloc() -> Option<u64> {
    let reused = POOL.lock().pop();
    reused.or_else(|| {
        // Room in the pool for it to come back without allocating.
        POOL.lock().try_reserve(1).ok()?;
        new_stack(SIZE as usize)
    })
}

/// Gives back a trap stack no thread runs on any more.
pub fn free(top: u64) {
    let mut pool = POOL.lock();
    if pool.try_reserve(1).is_ok() {
        pool.push(top);
    }
}

/// The top of CPU `cpu`'s switch stack (allocated on first use).
pub fn switch_top(cpu: usize) -> Option<u64> {
    match SWITCH[cpu].load(Ordering::Relaxed) {
        0 => {
            let top = new_stack(SWITCH_SIZE)?;
            SWITCH[cpu].store(top, Ordering::Relaxed);
            Some(top)
        }
        t => Some(t),
    }
}
