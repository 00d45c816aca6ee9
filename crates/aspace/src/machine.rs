//! The traits a kernel implements to run the subsystem on its machine.
//!
//! [`Machine`] bundles them: physical memory access, the frame allocator,
//! the local TLB of the running CPU, inter-processor shootdown, the page-table
//! format and the lock type. The hosted simulator (`aspace-sim`) and a real
//! kernel each provide one implementation.
//!
//! # A minimal machine
//!
//! What a kernel implements, in full, for one CPU with no TLB to speak of:
//! physical memory as a vector of words, a free-list frame allocator with
//! reference counts, no-op TLB control, no other CPU to interrupt, spin
//! locks from the `spin` crate and the x86_64 page-table format. A real
//! kernel reaches RAM through its direct map instead, loads CR3 in
//! `install` and sends IPIs in `shootdown`.
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
//! use std::sync::Mutex;
//!
//! use aspace::paging::x86_64::X86_64PageTable;
//! use aspace::{Access, AreaFlags, Asid, Config, CpuId, CpuSet, Cpus, FaultContext, FaultOutcome,
//!              Frame, FrameAllocator, Invalidation, Machine, PhysAddr, PhysMemory, Shootdown,
//!              System, Tlb, VirtAddr, PAGE_SIZE};
//!
//! /// RAM: `frames` pages of 64-bit words.
//! struct Ram(Vec<AtomicU64>);
//! impl Ram {
//!     fn word(&self, a: u64) -> &AtomicU64 { &self.0[(a / 8) as usize] }
//! }
//! // SAFETY: every access is to this vector (out of range panics), words
//! // are atomics, and nothing else holds references into it.
//! unsafe impl PhysMemory for Ram {
//!     fn read(&self, addr: PhysAddr, buf: &mut [u8]) {
//!         for (i, b) in buf.iter_mut().enumerate() {
//!             let a = addr.as_u64() + i as u64;
//!             *b = self.word(a).load(SeqCst).to_le_bytes()[(a % 8) as usize];
//!         }
//!     }
//!     fn write(&self, addr: PhysAddr, data: &[u8]) {
//!         for (i, &b) in data.iter().enumerate() {
//!             let a = addr.as_u64() + i as u64;
//!             let mut w = self.word(a).load(SeqCst).to_le_bytes();
//!             w[(a % 8) as usize] = b;
//!             self.word(a).store(u64::from_le_bytes(w), SeqCst);
//!         }
//!     }
//!     fn read_u64(&self, addr: PhysAddr) -> u64 { self.word(addr.as_u64()).load(SeqCst) }
//!     fn write_u64(&self, addr: PhysAddr, v: u64) { self.word(addr.as_u64()).store(v, SeqCst) }
//!     fn compare_exchange_u64(&self, addr: PhysAddr, old: u64, new: u64) -> Result<u64, u64> {
//!         self.word(addr.as_u64()).compare_exchange(old, new, SeqCst, SeqCst)
//!     }
//! }
//!
//! /// Free frames and a reference count per frame.
//! struct FreeList(Mutex<(Vec<u64>, Vec<u32>)>);
//! // SAFETY: hands out frames of `Ram` only, each once until its last
//! // reference goes; frame 0 is never handed out.
//! unsafe impl FrameAllocator for FreeList {
//!     fn alloc(&self) -> Option<Frame> {
//!         let mut l = self.0.lock().unwrap();
//!         let n = l.0.pop()?;
//!         l.1[n as usize] = 1;
//!         Some(Frame::from_number(n))
//!     }
//!     fn add_ref(&self, f: Frame) { self.0.lock().unwrap().1[f.number() as usize] += 1; }
//!     fn release(&self, f: Frame) -> bool {
//!         let mut l = self.0.lock().unwrap();
//!         l.1[f.number() as usize] -= 1;
//!         let freed = l.1[f.number() as usize] == 0;
//!         if freed { l.0.push(f.number()); }
//!         freed
//!     }
//! }
//!
//! /// One CPU, no TLB to flush, nobody to interrupt.
//! struct OneCpu;
//! impl Cpus for OneCpu {
//!     fn cpu_count(&self) -> usize { 1 }
//!     fn current_cpu(&self) -> Option<CpuId> { Some(0) }
//! }
//! impl Tlb for OneCpu {
//!     fn invalidate_local(&self, _: Invalidation) {}
//!     fn install(&self, _root: Frame, _asid: Asid) {}
//! }
//! impl Shootdown for OneCpu {
//!     fn shootdown(&self, _: CpuSet, _: Invalidation) -> usize { 0 }
//! }
//!
//! struct Tiny { ram: Ram, frames: FreeList }
//! impl Machine for Tiny {
//!     type Lock = aspace::spin::RawSpin;
//!     type RwLock = aspace::spin::RawSpinRw;
//!     type Memory = Ram;
//!     type Frames = FreeList;
//!     type Cpus = OneCpu;
//!     type Tlb = OneCpu;
//!     type Shootdown = OneCpu;
//!     type PageTable = X86_64PageTable;
//!     fn memory(&self) -> &Ram { &self.ram }
//!     fn frames(&self) -> &FreeList { &self.frames }
//!     fn cpus(&self) -> &OneCpu { &OneCpu }
//!     fn tlb(&self) -> &OneCpu { &OneCpu }
//!     fn shootdown(&self) -> &OneCpu { &OneCpu }
//! }
//!
//! let frames = 64;
//! let machine = Tiny {
//!     ram: Ram((0..frames * PAGE_SIZE / 8).map(|_| AtomicU64::new(0)).collect()),
//!     frames: FreeList(Mutex::new(((1..frames).rev().collect(), vec![0; frames as usize]))),
//! };
//! let system = System::new(machine, Config { asids: 1, ..Config::default() }).unwrap();
//! let free = || system.machine().frames.0.lock().unwrap().0.len();
//! let free_at_start = free();
//! let space = system.create().unwrap();
//! let heap = VirtAddr::new(0x40_0000);
//! space.area_create(heap, 4 * PAGE_SIZE, AreaFlags::READ | AreaFlags::WRITE).unwrap();
//! system.switch(None, &space).unwrap();
//! // The trap handler's part: a user store faulted, the core maps a page.
//! assert_eq!(space.page_fault(heap, Access::Write, FaultContext::User), FaultOutcome::Ok);
//! let (frame, _) = space.translate(heap.page()).unwrap();
//! system.machine().memory().write(frame.start(), b"hi");
//! let mut buf = [0; 2];
//! space.copy_from_user(heap, &mut buf).unwrap();
//! assert_eq!(&buf, b"hi");
//! // The scheduler leaves the space; its last reference going destroys it.
//! system.switch(Some(&space), system.kernel()).unwrap();
//! drop(space);
//! assert_eq!(free(), free_at_start);
//! ```

use crate::addr::{Frame, PageRange};
pub use crate::memory::{FrameAllocator, PhysMemory};
pub use crate::paging::Layout;
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

/// A way for a page fault to sleep while a user pager works on its page
/// ([`Machine::pager_sleep`]), instead of polling with [`Machine::relax`].
///
/// The core reads a [`token`](Self::token), looks whether the answer is
/// in, and if not calls [`sleep`](Self::sleep) with the token; after it
/// records any answer (a page, an error, a request dropped unanswered) it
/// calls [`wake`](Self::wake), from whatever thread answered and with no
/// lock of the core held. An implementation keeps a counter that `wake`
/// advances: `sleep(t)` returns at once if the counter is no longer `t`,
/// and otherwise once a later `wake` has run, so a wake that comes between
/// the core's look and its sleep is not lost. It may return early (the
/// core looks again). One `Sleep` serves every waiting fault: a wake may
/// rouse faults waiting for other answers, which sleep again.
pub trait Sleep: Sync {
    /// The wake counter now (read with sequentially consistent ordering,
    /// before the core looks at the answer).
    fn token(&self) -> u64;
    /// Sleeps until the wake counter is no longer `token` (see the trait).
    fn sleep(&self, token: u64);
    /// Advances the wake counter (sequentially consistent) and rouses
    /// every sleeper.
    fn wake(&self);
}

/// A machine the subsystem runs on: the bundle of the traits above.
pub trait Machine: Send + Sync + Sized + 'static {
    /// The lock that protects address spaces and the ASID allocator: a
    /// spinlock or a sleeping mutex, as the kernel prefers
    /// ([`crate::spin`] has a spinning one, released by a store).
    type Lock: lock_api::RawMutex + Send + Sync;
    /// The reader-writer lock of an address space's area tree: page faults
    /// and lookups read it (in parallel), creating, resizing and destroying
    /// areas write it. A spinning or a sleeping one, as for `Lock`. Each
    /// tree has one per CPU (up to 16): a reader takes its CPU's, a writer
    /// all of them. ([`crate::spin`] has a spinning one.)
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
    /// The variant of the page-table format the kernel's table is created
    /// in (RISC-V: Sv39 or Sv48), chosen at boot; the format's default
    /// unless overridden. User tables take their kernel table's.
    fn paging_mode(&self) -> <Self::PageTable as PageTable>::Mode {
        Default::default()
    }
    /// The user/kernel split: by default the page-table format's in
    /// [`paging_mode`](Self::paging_mode).
    fn layout(&self) -> Layout {
        <Self::PageTable as PageTable>::layout(self.paging_mode())
    }
    /// Called in each round of a wait for other CPUs (a fault out of memory
    /// waiting for faults that hold prepared frames): a spin-loop hint by
    /// default; a kernel with sleeping locks may yield the CPU instead.
    fn relax(&self) {
        crate::sync::hint::spin_loop();
    }
    /// How a fault waits for a user pager's answer: `None` (the default)
    /// polls, calling [`relax`](Self::relax) in each round; a kernel that
    /// can put a thread to sleep returns its [`Sleep`], so a waiting
    /// thread need not be scheduled again until an answer comes. A request
    /// keeps the `Sleep` it was made with: every fault waiting for it
    /// sleeps there.
    fn pager_sleep(&self) -> Option<&'static dyn Sleep> {
        None
    }
}
