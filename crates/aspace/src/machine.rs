//! The traits a kernel implements to run the subsystem on its machine.
//!
//! [`Machine`] bundles them: physical memory access, the frame allocator,
//! the local TLB of the running CPU, inter-processor shootdown, the page-table
//! format and the lock type. The hosted simulator (`aspace-sim`) and a real
//! kernel each provide one implementation.

use crate::addr::{Frame, PageRange};
pub use crate::memory::{FrameAllocator, PhysMemory};
use crate::paging::PageTable;

/// Index of a CPU, `0 .. cpu_count`.
pub type CpuId = usize;

/// An address-space identifier that tags TLB entries (x86_64: a PCID).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub struct Asid(pub u16);

impl Asid {
    /// The ASID of the kernel address space; never handed to user spaces.
    pub const KERNEL: Asid = Asid(0);
}

/// A set of CPUs (at most 64).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
pub struct CpuSet(pub u64);

impl CpuSet {
    /// The empty set.
    pub const EMPTY: CpuSet = CpuSet(0);
    /// The set `{0, .., n-1}`.
    pub const fn first(n: usize) -> CpuSet {
        if n >= 64 {
            CpuSet(u64::MAX)
        } else {
            CpuSet((1u64 << n) - 1)
        }
    }
    /// Whether `cpu` is in the set.
    pub const fn contains(self, cpu: CpuId) -> bool {
        cpu < 64 && self.0 & (1 << cpu) != 0
    }
    /// Adds `cpu`.
    pub fn insert(&mut self, cpu: CpuId) {
        self.0 |= 1 << cpu;
    }
    /// Removes `cpu`.
    pub fn remove(&mut self, cpu: CpuId) {
        if cpu < 64 {
            self.0 &= !(1 << cpu);
        }
    }
    /// The set without `other`'s members.
    pub const fn minus(self, other: CpuSet) -> CpuSet {
        CpuSet(self.0 & !other.0)
    }
    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// Number of CPUs in the set.
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }
    /// The members, lowest first.
    pub fn iter(self) -> impl Iterator<Item = CpuId> {
        (0..64).filter(move |c| self.contains(*c))
    }
}

/// What a TLB invalidation removes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Invalidation {
    /// The entries of `asid` for the pages of `range`; with
    /// [`Asid::KERNEL`], the global (kernel) entries of those pages under
    /// every ASID.
    Pages {
        /// Whose entries.
        asid: Asid,
        /// Which pages.
        range: PageRange,
    },
    /// Every entry tagged with the ASID.
    Asid(Asid),
    /// Every entry.
    All,
}

/// The CPUs: how many there are and which one runs the caller.
pub trait Cpus: Send + Sync {
    /// Number of CPUs of the machine (at most 64).
    fn cpu_count(&self) -> usize;
    /// The CPU running the caller, or `None` outside any CPU (a host thread
    /// of the simulator, early boot).
    fn current_cpu(&self) -> Option<CpuId>;
}

/// The TLB and translation registers of the CPU that runs the caller.
pub trait Tlb: Send + Sync {
    /// Invalidates entries of the current CPU's TLB.
    fn invalidate_local(&self, what: Invalidation);
    /// Loads the page-table root and ASID on the current CPU (CR3 with PCID).
    fn install(&self, root: Frame, asid: Asid);
}

/// Inter-processor TLB shootdown.
pub trait Shootdown: Send + Sync {
    /// Makes every CPU in `targets` (never the current one) perform `what`
    /// on its TLB, and returns only when all of them have done so. Returns
    /// the number of inter-processor interrupts sent.
    fn shootdown(&self, targets: CpuSet, what: Invalidation) -> usize;
}

/// Where user and kernel areas may live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// One past the highest user address (x86_64: `0x0000_8000_0000_0000`).
    pub user_end: u64,
    /// Lowest kernel address (x86_64: `0xffff_8000_0000_0000`); the kernel
    /// range runs from here to the top of the address space.
    pub kernel_start: u64,
}

impl Layout {
    /// The canonical x86_64 split with 48-bit addresses.
    pub const X86_64: Layout = Layout {
        user_end: 0x0000_8000_0000_0000,
        kernel_start: 0xffff_8000_0000_0000,
    };
}

/// A machine the subsystem runs on: the bundle of the traits above.
pub trait Machine: Send + Sync + Sized + 'static {
    /// The lock that protects address spaces and the ASID allocator: a
    /// spinlock or a sleeping mutex, as the kernel prefers.
    type Lock: lock_api::RawMutex + Send + Sync;
    /// The reader-writer lock of an address space's area tree: page faults
    /// and lookups read it (in parallel), creating, resizing and destroying
    /// areas write it. A spinning or a sleeping one, as for `Lock`. Each
    /// tree has one per CPU (up to 16): a reader takes its CPU's, a writer
    /// all of them.
    type RwLock: lock_api::RawRwLock + Send + Sync;
    /// Physical memory access.
    type Memory: PhysMemory;
    /// The frame allocator.
    type Frames: FrameAllocator;
    /// CPU count and identity.
    type Cpus: Cpus;
    /// Local TLB and translation registers.
    type Tlb: Tlb;
    /// Remote TLB shootdown.
    type Shootdown: Shootdown;
    /// The page-table format.
    type PageTable: PageTable;

    /// Physical memory.
    fn memory(&self) -> &Self::Memory;
    /// The frame allocator.
    fn frames(&self) -> &Self::Frames;
    /// The CPUs.
    fn cpus(&self) -> &Self::Cpus;
    /// The local TLB.
    fn tlb(&self) -> &Self::Tlb;
    /// Remote shootdown.
    fn shootdown(&self) -> &Self::Shootdown;
    /// The user/kernel split.
    fn layout(&self) -> Layout {
        Layout::X86_64
    }
    /// Called in each round of a wait for other CPUs (a fault out of memory
    /// waiting for faults that hold prepared frames): a spin-loop hint by
    /// default; a kernel with sleeping locks may yield the CPU instead.
    fn relax(&self) {
        crate::sync::hint::spin_loop();
    }
}
