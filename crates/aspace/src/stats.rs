//! Event counters that tests, the command-line tool and benchmarks read.

use crate::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counter shards: CPU `c` updates shard `c % SHARDS`, so CPUs do not
/// fight over one cache line on every fault.
const SHARDS: usize = 8;

macro_rules! counters {
    (
        derived { $($(#[$ddoc:meta])* $dname:ident),* $(,)? }
        $($(#[$doc:meta])* $name:ident),* $(,)?
    ) => {
        /// One shard of the live counters, alone on its cache-line pair (x86
        /// prefetches lines in pairs).
        #[derive(Debug, Default)]
        #[repr(align(128))]
        pub(crate) struct Counters { $(pub(crate) $name: AtomicU64,)* }

        /// Live counters, sharded per CPU and updated with relaxed atomics.
        /// The ASID allocator keeps the counts of what it decides under
        /// its own lock instead (shootdown rounds, its share of the local
        /// invalidations, ASID allocations and steals):
        /// [`System::stats`](crate::System::stats) adds them in.
        #[derive(Debug, Default)]
        pub struct Stats { shards: [Counters; SHARDS] }

        /// A copy of the counters at one moment.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct StatsSnapshot {
            $($(#[$ddoc])* pub $dname: u64,)*
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Stats {
            /// Reads every counter (the sum over the shards), without the
            /// ASID allocator's counts.
            pub fn snapshot(&self) -> StatsSnapshot {
                let mut s = StatsSnapshot::default();
                for shard in &self.shards {
                    $(s.$name += shard.$name.load(Relaxed);)*
                }
                s.derive();
                s
            }
        }

        impl StatsSnapshot {
            /// Counter-wise `self - earlier`.
            pub fn since(&self, earlier: &StatsSnapshot) -> StatsSnapshot {
                StatsSnapshot {
                    $($dname: self.$dname.wrapping_sub(earlier.$dname),)*
                    $($name: self.$name.wrapping_sub(earlier.$name),)*
                }
            }
        }
    };
}

counters! {
    derived {
        /// Page faults that reached the handler (derived: resolved + raced +
        /// failed).
        faults,
        /// Pages mapped by the fault handler (derived: equals
        /// `faults_resolved`); each mapping holds one frame reference (a
        /// shared page's frame may already exist).
        pages_mapped,
    }
    /// Faults resolved by a backend (a page newly mapped).
    faults_resolved,
    /// Faults on a page already mapped with the rights asked for: another
    /// CPU had just mapped it, or this CPU's TLB held fewer rights (after a
    /// change that only added some, which flushes nothing): nothing to map,
    /// the CPU's entry for the page dropped.
    faults_raced,
    /// Faults refused (no area, rights, partial area, no memory).
    faults_failed,
    /// Shootdown rounds: one per operation that removed translations.
    shootdown_rounds,
    /// Inter-processor interrupts sent for shootdowns.
    ipis,
    /// Local TLB invalidations performed by the initiating CPU.
    local_invalidations,
    /// Lazy flushes: a CPU flushed an ASID when switching to it.
    lazy_flushes,
    /// ASIDs handed out from the free pool.
    asid_allocs,
    /// ASIDs taken from an inactive address space.
    asid_steals,
    /// Frame references released after a shootdown: those of mappings and
    /// of share records' page maps. A frame is freed with its last one.
    frame_refs_released,
    /// Copy-on-write pages given a frame of their own (see
    /// [`crate::cow`]): by a write fault (also counted in
    /// `faults_resolved`), a share or a pager's answer.
    cow_copies,
}

impl StatsSnapshot {
    /// Fills in the counters the fault handler does not keep, as they
    /// follow from others: every fault ends resolved, raced or failed, and
    /// every resolved fault maps one page.
    fn derive(&mut self) {
        self.faults = self.faults_resolved + self.faults_raced + self.faults_failed;
        self.pages_mapped = self.faults_resolved;
    }
}

impl Stats {
    /// The shard of CPU `cpu` (shard 0 outside any CPU).
    pub(crate) fn shard(&self, cpu: Option<usize>) -> &Counters {
        &self.shards[cpu.unwrap_or(0) % SHARDS]
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }
}
