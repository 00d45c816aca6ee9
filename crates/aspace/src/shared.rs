//! The state every address space of a system shares with the system: the
//! machine, the ASID allocator, the counters, the per-CPU lookup hints,
//! the count of faults holding prepared frames and the memory reservation. Built by
//! [`System::new`](crate::System::new); address spaces, the fault handler and
//! the shootdown batch reach it through their `Arc`.

use core::sync::atomic::AtomicU64 as PlainAtomicU64;
use core::sync::atomic::Ordering;

use crate::asid::AsidAllocator;
use crate::backend::{AnonBackend, BackendRef};
use crate::internals::area_tree::Hint;
use crate::machine::{Cpus, Layout, Machine};
use crate::reserve::Reserve;
use crate::stats::Stats;
use crate::sync::atomic::{AtomicU64, Ordering::Relaxed};
use crate::Result;

/// State shared by the system and every address space.
pub(crate) struct Shared<M: Machine> {
    pub machine: M,
    pub asids: lock_api::Mutex<M::Lock, AsidAllocator>,
    pub stats: Stats,
    pub hints: LookupHints,
    pub preparing: Preparing,
    pub next_id: PlainAtomicU64,
    pub layout: Layout,
    pub reserve: Reserve,
    /// The one anonymous-memory backend every anonymous area shares, made
    /// once so that creating an area allocates no backend.
    pub anon: BackendRef<M::Memory, M::Frames>,
}

impl<M: Machine> Shared<M> {
    /// The shared state of a new system on `machine` with `asids` user ASIDs.
    /// `NoMemory` if the heap refuses the ASID allocator's free list.
    pub(crate) fn new(machine: M, asids: u16, commit_limit: u64) -> Result<Self> {
        Ok(Self {
            reserve: Reserve::new(commit_limit),
            layout: machine.layout(),
            machine,
            asids: lock_api::Mutex::new(AsidAllocator::new(asids)?),
            stats: Stats::default(),
            hints: LookupHints::default(),
            preparing: Preparing::default(),
            next_id: PlainAtomicU64::new(1),
            anon: BackendRef::stateless(AnonBackend),
        })
    }

    /// The counter shard of the current CPU.
    pub(crate) fn counters(&self) -> &crate::stats::Counters {
        self.stats.shard(self.machine.cpus().current_cpu())
    }

    /// A number no other address space of the system has.
    pub(crate) fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Last-hit hints for area lookups, one per CPU (CPU `c` uses `c %
/// HINTS`), each alone on its cache-line pair. A hint only names a leaf and
/// is checked against that leaf's contents before use, so one hint serves
/// every address space's tree: a stale or foreign one costs a descent,
/// never a wrong answer.
#[derive(Default)]
pub(crate) struct LookupHints([CpuHint; HINTS]);

const HINTS: usize = 8;

#[derive(Default)]
#[repr(align(128))]
struct CpuHint(Hint);

impl LookupHints {
    /// The hint of CPU `cpu` (the first one outside any CPU).
    pub(crate) fn of(&self, cpu: Option<usize>) -> &Hint {
        &self.0[cpu.unwrap_or(0) % HINTS].0
    }
}

/// Faults between preparing a frame and mapping or releasing it, counted
/// per CPU: a fault that runs out of memory waits for them before it tries
/// again, as one of them may hold the last frame for the very same page.
///
/// CPUs 0–7 each have a counter of their own (on its own cache lines);
/// other CPUs and threads outside any CPU share a ninth. Changes are atomic
/// read-modify-writes of the counter that was entered, so a task that moves
/// to another CPU between entering and leaving (under a sleeping lock) still
/// leaves the count it raised. Read with relaxed loads: a count missed by a
/// reordering only shortens the wait, which the bounded retries cover.
#[derive(Default)]
pub(crate) struct Preparing([PreparingCount; OWNED + 1]);

const OWNED: usize = 8;

/// Most [`Machine::relax`] calls one wait makes while faults still hold
/// prepared frames.
const WAIT_LIMIT: u32 = 1 << 16;

#[derive(Default)]
#[repr(align(128))]
struct PreparingCount(AtomicU64);

impl Preparing {
    /// Counts a fault preparing a frame on `cpu`; returns the counter to
    /// hand to [`leave`](Self::leave).
    pub(crate) fn enter(&self, cpu: Option<usize>) -> usize {
        let counter = cpu.filter(|&c| c < OWNED).unwrap_or(OWNED);
        self.0[counter].0.fetch_add(1, Relaxed);
        counter
    }

    /// Ends what [`enter`](Self::enter) counted on `counter`.
    pub(crate) fn leave(&self, counter: usize) {
        self.0[counter].0.fetch_sub(1, Relaxed);
    }

    /// Relaxes `pause` times, then while any fault (this one excepted: it
    /// holds none now) has a prepared frame, up to [`WAIT_LIMIT`] more
    /// times.
    pub(crate) fn wait_idle(&self, pause: u32, relax: impl Fn()) {
        for _ in 0..pause {
            relax();
        }
        for _ in 0..WAIT_LIMIT {
            if self.0.iter().all(|c| c.0.load(Relaxed) == 0) {
                return;
            }
            relax();
        }
    }
}
