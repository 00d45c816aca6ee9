//! A deterministic schedule explorer for the concurrency core (issue 13):
//! [loom] runs each model below under every interleaving of its threads that
//! can matter (up to a bound on preemptions), with the core's atomics, the
//! sharded lock's cell and the machine's locks all visible to it.
//!
//! Built only with `--cfg loom` (in a normal build this file is empty):
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 \
//!     cargo test -p aspace --test loom --release --target-dir target/loom -- --nocapture
//! ```
//!
//! Each model prints its name, the preemption bound and how many schedules
//! it explored. `LOOM_MAX_PREEMPTIONS` overrides each model's own bound
//! (unset: [`DEFAULT_PREEMPTIONS`]). On a failure loom panics with the
//! failing check; to see the schedule that led there, run the one model
//! again with `LOOM_LOG=trace LOOM_LOCATION=1` (every step of every thread,
//! with source locations). Exploration is deterministic, so the same
//! command reaches the same schedule again; loom's `checkpoint` feature
//! (`LOOM_CHECKPOINT_FILE`, not enabled here to keep the dependencies
//! lean) would also save the path to a file to replay it directly.
//!
//! The models:
//! - [`shard_lock_two_readers_one_writer`] and
//!   [`shard_lock_two_writers_one_reader`]: the per-CPU-sharded
//!   reader-writer lock, over a blocking raw lock built on loom's mutex and
//!   condition variable (the `System` models run it over a spinning one
//!   built on loom's atomics, as the area trees' lock): mutual exclusion (loom tracks the lock's cell, and a writer keeps a
//!   pair of words equal that readers check), no lost update, no deadlock.
//! - [`asid_steal_against_switch`] and
//!   [`dying_space_asid_release_against_switch`]: the real [`System`] on a
//!   tiny loom-aware [`Machine`], two CPUs with two ASIDs switching between
//!   more spaces than ASIDs (and dropping one): no switch fails, and no CPU
//!   loads an ASID while its TLB still holds entries that another space
//!   left under that ASID. [`asid_steal_while_victim_still_loaded`] does
//!   the same on CPUs that fill their TLBs speculatively (it found the
//!   flush-before-install hazard: see its documentation).
//! - [`fault_against_destroy_with_shootdown`] and
//!   [`fault_against_destroy_lazy_flush`]: a page fault (and the access
//!   after it) on one CPU against destroying the area on the other, which
//!   runs the same space or none: every frame is freed once, and only when
//!   no TLB that can still be used reaches it.
//! - [`share_last_reference_teardown`]: both sides of a share fault the
//!   page and destroy their area at once: the shared frame is freed exactly
//!   once, by whichever goes last, after the flush.
//! - [`pager_answer_against_sleeping_fault`]: a fault on a user pager's
//!   area sleeps on the machine's `Sleep` while the pager answers (or
//!   fails) the request on the other CPU: the fault always wakes (a lost
//!   wake would spin the sleep forever, which loom reports), and the
//!   answered page is mapped with its one reference.
//!
//! The model machine keeps physical memory, the TLBs and the frame table in
//! plain `std` mutexes that loom does not see: each access to them is
//! atomic and is no scheduling point (a page-table word is read or written
//! in one step, a TLB fill is atomic with its walk, an IPI is handled at
//! once). What loom interleaves are the core's own atomics, the area
//! tree's reader-writer locks, the address-space, area and ASID locks
//! (`Machine::Lock`), and the frame allocator's calls (behind a loom
//! mutex). Races between page-table walkers and the compare-and-swap that
//! installs intermediate tables are therefore not explored here (the
//! simulator's stress tests cover them).
//!
//! [loom]: https://docs.rs/loom
#![cfg(loom)]

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering::Relaxed as StdRelaxed};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard as StdMutexGuard, OnceLock};
use std::time::Instant;

use aspace::loom_internals::ShardedRwLock;
use aspace::paging::x86_64::X86_64PageTable;
use aspace::{
    Access, AddressSpace, AreaFlags, Asid, Config, CpuId, CpuSet, Cpus, FaultOutcome, Frame,
    FrameAllocator, Invalidation, Machine, Page, PhysAddr, PhysMemory, Shootdown, System, Tlb,
    VirtAddr, PAGE_SIZE,
};
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The preemption bound of a model when `LOOM_MAX_PREEMPTIONS` is unset.
const DEFAULT_PREEMPTIONS: usize = 3;

/// Runs `model` under loom, printing its name, bound, schedule count and
/// time.
fn explore(name: &str, model: impl Fn() + Sync + Send + 'static) {
    let schedules = Arc::new(StdAtomicUsize::new(0));
    let counted = schedules.clone();
    let model = move || {
        counted.fetch_add(1, StdRelaxed);
        model();
    };
    let start = Instant::now();
    let bound = if std::env::var_os("LOOM_LOG").is_some() {
        // `loom::model` installs the subscriber that prints the log; it
        // takes every setting from the environment.
        let bound = std::env::var("LOOM_MAX_PREEMPTIONS").ok();
        eprintln!("loom model {name}: preemption bound {bound:?} (from the environment)");
        loom::model(model);
        bound
    } else {
        let mut builder = loom::model::Builder::new();
        let bound = *builder.preemption_bound.get_or_insert(DEFAULT_PREEMPTIONS);
        builder.max_branches = builder.max_branches.max(100_000);
        eprintln!("loom model {name}: preemption bound {bound}");
        builder.check(model);
        Some(bound.to_string())
    };
    eprintln!(
        "loom model {name}: {} schedules, preemption bound {}, {:.1?}",
        schedules.load(StdRelaxed),
        bound.as_deref().unwrap_or("none"),
        start.elapsed()
    );
}

// ---------------------------------------------------------------------------
// Spinning raw locks over loom's atomics.
//
// `lock_api` wants a `const INIT`, and loom's atomics cannot be made in a
// constant, so each lock makes its atomic on first use. A model uses every
// lock once before it spawns threads (creating an area write-locks the
// tree, and so on), so that first use never races: were it to, loom would
// report the unsynchronised creation as a causality violation, not miss it.
// ---------------------------------------------------------------------------

/// A spinlock: `Machine::Lock` of the model machine.
struct SpinMutex(OnceLock<AtomicBool>);

impl SpinMutex {
    fn flag(&self) -> &AtomicBool {
        self.0.get_or_init(|| AtomicBool::new(false))
    }
}

// SAFETY: `try_lock` succeeds only by moving the flag from free to taken
// (acquire), `unlock` frees it (release): one holder at a time.
unsafe impl lock_api::RawMutex for SpinMutex {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = SpinMutex(OnceLock::new());
    type GuardMarker = lock_api::GuardSend;

    fn lock(&self) {
        while !self.try_lock() {
            loom::thread::yield_now();
        }
    }

    fn try_lock(&self) -> bool {
        self.flag()
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    unsafe fn unlock(&self) {
        self.flag().store(false, Ordering::Release);
    }
}

/// A reader-writer spinlock: `Machine::RwLock` of the model machine (the
/// area trees' shards). Bit 0 of the state is the writer,
/// the rest twice the number of readers (with readers that are backing
/// out). Every operation is a read-modify-write, which always sees the
/// latest state: spinning on plain loads would let loom feed each load an
/// older value, and the schedules would multiply without end.
struct SpinRwLock(OnceLock<AtomicUsize>);

const WRITER: usize = 1;
const READER: usize = 2;

impl SpinRwLock {
    fn state(&self) -> &AtomicUsize {
        self.0.get_or_init(|| AtomicUsize::new(0))
    }
}

// SAFETY: a reader is in only when its increment found no writer, and a
// writer only when its compare-and-swap found no reader and no writer;
// entering acquires, leaving releases.
unsafe impl lock_api::RawRwLock for SpinRwLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = SpinRwLock(OnceLock::new());
    type GuardMarker = lock_api::GuardSend;

    fn lock_shared(&self) {
        while !self.try_lock_shared() {
            loom::thread::yield_now();
        }
    }

    fn try_lock_shared(&self) -> bool {
        if self.state().fetch_add(READER, Ordering::Acquire) & WRITER == 0 {
            return true;
        }
        self.state().fetch_sub(READER, Ordering::Relaxed);
        false
    }

    unsafe fn unlock_shared(&self) {
        self.state().fetch_sub(READER, Ordering::Release);
    }

    fn lock_exclusive(&self) {
        while !self.try_lock_exclusive() {
            loom::thread::yield_now();
        }
    }

    fn try_lock_exclusive(&self) -> bool {
        self.state()
            .compare_exchange(0, WRITER, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    unsafe fn unlock_exclusive(&self) {
        // Not a store of 0: readers backing out may have their count in.
        self.state().fetch_sub(WRITER, Ordering::Release);
    }
}

/// A blocking reader-writer lock over loom's mutex and condition variable:
/// the shard of the shard-lock models. A waiter sleeps until woken instead
/// of spinning, which keeps the schedules to explore few: with spinning
/// shards, three threads at two preemptions run past ten thousand
/// schedules without end in sight. The sharded lock's own logic (which
/// shards, in which order, unlocked by which guard) is the same over
/// either kind.
struct BlockingRwLock(OnceLock<(loom::sync::Mutex<usize>, loom::sync::Condvar)>);

impl BlockingRwLock {
    /// The state (a reader count, or `usize::MAX` for a writer) and the
    /// condition its waiters sleep on.
    fn parts(&self) -> &(loom::sync::Mutex<usize>, loom::sync::Condvar) {
        self.0
            .get_or_init(|| (loom::sync::Mutex::new(0), loom::sync::Condvar::new()))
    }

    /// Waits until `free` holds of the state, then applies `take` to it.
    fn acquire(&self, free: impl Fn(usize) -> bool, take: impl Fn(&mut usize)) {
        let (state, cv) = self.parts();
        let mut s = state.lock().unwrap();
        while !free(*s) {
            s = cv.wait(s).unwrap();
        }
        take(&mut s);
    }

    /// Applies `take` if `free` holds of the state; whether it did.
    fn try_acquire(&self, free: impl Fn(usize) -> bool, take: impl Fn(&mut usize)) -> bool {
        let mut s = self.parts().0.lock().unwrap();
        let ok = free(*s);
        if ok {
            take(&mut s);
        }
        ok
    }

    /// Applies `give` to the state and wakes every waiter.
    fn release(&self, give: impl Fn(&mut usize)) {
        let (state, cv) = self.parts();
        give(&mut state.lock().unwrap());
        cv.notify_all();
    }
}

// SAFETY: the state, under its mutex, admits readers only while no writer
// is in and a writer only while nobody is; the mutex orders the accesses.
unsafe impl lock_api::RawRwLock for BlockingRwLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = BlockingRwLock(OnceLock::new());
    type GuardMarker = lock_api::GuardSend;

    fn lock_shared(&self) {
        self.acquire(|s| s != usize::MAX, |s| *s += 1);
    }

    fn try_lock_shared(&self) -> bool {
        self.try_acquire(|s| s != usize::MAX, |s| *s += 1)
    }

    unsafe fn unlock_shared(&self) {
        self.release(|s| *s -= 1);
    }

    fn lock_exclusive(&self) {
        self.acquire(|s| s == 0, |s| *s = usize::MAX);
    }

    fn try_lock_exclusive(&self) -> bool {
        self.try_acquire(|s| s == 0, |s| *s = usize::MAX)
    }

    unsafe fn unlock_exclusive(&self) {
        self.release(|s| *s = 0);
    }
}

// ---------------------------------------------------------------------------
// The shard lock.
// ---------------------------------------------------------------------------

/// Two readers through different shards (CPUs 0 and 1 of two) and a
/// writer that makes both words of a pair one larger: the readers see the
/// pair equal, before or after the write, and the write is not lost. loom
/// checks the lock's cell itself: a reader and the writer inside at once
/// is a reported race even if the values happened to agree.
#[test]
fn shard_lock_two_readers_one_writer() {
    explore("shard_lock_two_readers_one_writer", || {
        let lock = Arc::new(ShardedRwLock::<BlockingRwLock, (u64, u64)>::new((0, 0), 2));
        assert_eq!(lock.shards(), 2);
        // First use of every shard, before any thread (see SpinMutex).
        drop(lock.write());
        let readers: Vec<_> = (0..2)
            .map(|cpu| {
                let lock = lock.clone();
                loom::thread::spawn(move || {
                    let g = lock.read(Some(cpu));
                    assert_eq!(g.0, g.1, "torn read through shard {cpu}");
                    assert!(g.0 <= 1);
                })
            })
            .collect();
        {
            let mut g = lock.write();
            g.0 += 1;
            g.1 += 1;
        }
        for r in readers {
            r.join().unwrap();
        }
        assert_eq!(*lock.read(None), (1, 1));
    });
}

/// Two writers (each locks both shards, lowest first) and a reader on the
/// second shard: no deadlock (loom fails a model whose threads spin
/// forever), no lost update, no torn read.
#[test]
fn shard_lock_two_writers_one_reader() {
    explore("shard_lock_two_writers_one_reader", || {
        let lock = Arc::new(ShardedRwLock::<BlockingRwLock, (u64, u64)>::new((0, 0), 2));
        drop(lock.write());
        let writer = {
            let lock = lock.clone();
            loom::thread::spawn(move || {
                let mut g = lock.write();
                g.0 += 1;
                g.1 += 1;
            })
        };
        let reader = {
            let lock = lock.clone();
            loom::thread::spawn(move || {
                let g = lock.read(Some(1));
                assert_eq!(g.0, g.1, "torn read");
            })
        };
        {
            let mut g = lock.write();
            g.0 += 1;
            g.1 += 1;
        }
        writer.join().unwrap();
        reader.join().unwrap();
        assert_eq!(*lock.read(Some(0)), (2, 2));
    });
}

// ---------------------------------------------------------------------------
// The model machine.
// ---------------------------------------------------------------------------

loom::thread_local! {
    /// The CPU the current model thread runs as (`None`: outside any CPU).
    static CPU: Cell<Option<CpuId>> = Cell::new(None);
}

/// Makes the current model thread run as CPU `cpu`.
fn become_cpu(cpu: Option<CpuId>) {
    CPU.with(|c| c.set(cpu));
}

/// One cached translation. `map` is `None` for what a CPU caches merely by
/// running a space (paging-structure caches, speculative fills): enough to
/// tell whose entries an ASID still tags.
#[derive(Clone, Copy, Debug)]
struct Entry {
    asid: Asid,
    /// The root of the space that was loaded when the entry was made.
    root: Frame,
    /// Page, frame and the frame's generation when the entry was made.
    map: Option<(Page, Frame, u32)>,
}

#[derive(Default)]
struct CpuState {
    loaded: Option<(Frame, Asid)>,
    tlb: Vec<Entry>,
}

impl CpuState {
    /// Performs `what`; with `speculative` fills, the CPU caches something
    /// of the space it has loaded again at once, as a CPU may at any time.
    fn invalidate(&mut self, what: Invalidation, speculative: bool) {
        self.retain(what);
        if let (true, Some((root, asid))) = (speculative, self.loaded) {
            self.tlb.push(Entry {
                asid,
                root,
                map: None,
            });
        }
    }

    fn retain(&mut self, what: Invalidation) {
        self.tlb.retain(|e| match what {
            Invalidation::All => false,
            Invalidation::Asid(a) => e.asid != a,
            Invalidation::Pages { asid, range } => {
                // The kernel ASID's invalidation reaches every ASID
                // (global pages); an entry without a page may cache any.
                let ours = asid == Asid::KERNEL || e.asid == asid;
                !(ours && e.map.is_none_or(|(p, _, _)| range.contains(p)))
            }
        });
    }
}

#[derive(Default)]
struct FrameTable {
    /// Reference count per frame.
    refs: Vec<u32>,
    /// Times each frame was allocated.
    generation: Vec<u32>,
    free: Vec<u64>,
}

/// The hardware of the model machine: memory, frames, one TLB per CPU.
struct Hw {
    mem: StdMutex<Vec<u8>>,
    /// The scheduling point of a frame-allocator call: loom interleaves
    /// these; the table itself is in `table`.
    frame_lock: loom::sync::Mutex<()>,
    table: StdMutex<FrameTable>,
    cpus: Vec<StdMutex<CpuState>>,
    /// Whether a CPU refills its TLB from what it has loaded right after
    /// every invalidation (speculative page walks).
    speculative: bool,
    /// Where faults waiting for a pager sleep (`Machine::pager_sleep`).
    sleep: Option<&'static LoomSleep>,
}

/// A `Sleep` over a loom atomic: `sleep` spins (yielding to loom) while
/// the wake counter is still the token, so a lost wake never ends.
struct LoomSleep {
    epoch: loom::sync::atomic::AtomicU64,
}

impl aspace::Sleep for LoomSleep {
    fn token(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }
    fn sleep(&self, token: u64) {
        while self.epoch.load(Ordering::SeqCst) == token {
            loom::thread::yield_now();
        }
    }
    fn wake(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }
}

fn lock<T>(m: &StdMutex<T>) -> StdMutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Hw {
    fn new(cpus: usize, frames: u64) -> Self {
        Self {
            mem: StdMutex::new(vec![0; (frames * PAGE_SIZE) as usize]),
            frame_lock: loom::sync::Mutex::new(()),
            table: StdMutex::new(FrameTable {
                refs: vec![0; frames as usize],
                generation: vec![0; frames as usize],
                // Frame 0 stays out: a zero entry must never look valid.
                free: (1..frames).rev().collect(),
            }),
            cpus: (0..cpus).map(|_| StdMutex::default()).collect(),
            speculative: false,
            sleep: None,
        }
    }

    fn frames_in_use(&self) -> u64 {
        lock(&self.table).refs.iter().filter(|&&r| r > 0).count() as u64
    }

    /// Checks what CPU `cpu` could use under `asid`: every entry tagged with
    /// it was made while the same space (`root`) was loaded and still
    /// reaches the frame it reached then, not a freed or reused one.
    fn check_reachable(&self, cpu: CpuId, st: &CpuState, root: Frame, asid: Asid, when: &str) {
        let table = lock(&self.table);
        for e in st.tlb.iter().filter(|e| e.asid == asid) {
            assert_eq!(
                e.root, root,
                "{when}: CPU {cpu} runs the space rooted at {root:?} with {asid:?}, but its TLB \
                 still holds an entry another space (root {:?}) left under that ASID: {e:?}",
                e.root
            );
            if let Some((_, f, generation)) = e.map {
                let n = f.number() as usize;
                assert!(
                    table.refs[n] > 0 && table.generation[n] == generation,
                    "{when}: CPU {cpu} can reach frame {f:?} through a stale TLB entry {e:?}, \
                     but that frame was freed (refs {}, generation {} now)",
                    table.refs[n],
                    table.generation[n]
                );
            }
        }
    }

    /// What CPU `cpu` does when it accesses `page` of `space` (which it
    /// must run): walks the page table and caches the translation, as one
    /// step. Returns whether the page was mapped.
    fn touch(&self, space: &AddressSpace<LoomMachine>, page: Page) -> bool {
        let cpu = CPU.with(|c| c.get()).expect("touch runs on a CPU");
        let mut st = lock(&self.cpus[cpu]);
        let (root, asid) = st.loaded.expect("a space is loaded");
        assert_eq!(root, space.root(), "CPU {cpu} does not run that space");
        self.check_reachable(cpu, &st, root, asid, "access");
        let Some((frame, _)) = space.translate(page) else {
            return false;
        };
        let generation = {
            let table = lock(&self.table);
            let n = frame.number() as usize;
            assert!(
                table.refs[n] > 0,
                "CPU {cpu}: the page table of {root:?} maps {page:?} to the free frame {frame:?}"
            );
            table.generation[n]
        };
        st.tlb.push(Entry {
            asid,
            root,
            map: Some((page, frame, generation)),
        });
        true
    }
}

// SAFETY: the model's memory is this vector, reached by index (out of
// range panics), each word access done under its mutex.
unsafe impl PhysMemory for Hw {
    fn read(&self, addr: PhysAddr, buf: &mut [u8]) {
        let a = addr.as_u64() as usize;
        buf.copy_from_slice(&lock(&self.mem)[a..a + buf.len()]);
    }

    fn write(&self, addr: PhysAddr, data: &[u8]) {
        let a = addr.as_u64() as usize;
        lock(&self.mem)[a..a + data.len()].copy_from_slice(data);
    }

    fn read_u64(&self, addr: PhysAddr) -> u64 {
        let mut b = [0; 8];
        self.read(addr, &mut b);
        u64::from_le_bytes(b)
    }

    fn write_u64(&self, addr: PhysAddr, value: u64) {
        self.write(addr, &value.to_le_bytes());
    }

    fn compare_exchange_u64(&self, addr: PhysAddr, current: u64, new: u64) -> Result<u64, u64> {
        let a = addr.as_u64() as usize;
        let mut mem = lock(&self.mem);
        let word: &mut [u8; 8] = (&mut mem[a..a + 8]).try_into().unwrap();
        let found = u64::from_le_bytes(*word);
        if found == current {
            *word = new.to_le_bytes();
            Ok(found)
        } else {
            Err(found)
        }
    }
}

// SAFETY: the model's frame table hands out only free frames of its own
// memory and counts references exactly (over-release panics).
unsafe impl FrameAllocator for Hw {
    fn alloc(&self) -> Option<Frame> {
        let _step = self.frame_lock.lock().unwrap();
        let mut table = lock(&self.table);
        let n = table.free.pop()?;
        table.refs[n as usize] = 1;
        table.generation[n as usize] += 1;
        Some(Frame::from_number(n))
    }

    fn add_ref(&self, frame: Frame) {
        let _step = self.frame_lock.lock().unwrap();
        let mut table = lock(&self.table);
        let r = &mut table.refs[frame.number() as usize];
        assert!(*r > 0, "add_ref of the free frame {frame:?}");
        *r += 1;
    }

    fn release(&self, frame: Frame) -> bool {
        let _step = self.frame_lock.lock().unwrap();
        let mut table = lock(&self.table);
        let n = frame.number() as usize;
        assert!(table.refs[n] > 0, "frame {frame:?} released once too often");
        table.refs[n] -= 1;
        if table.refs[n] > 0 {
            return false;
        }
        let generation = table.generation[n];
        // Freed only when no CPU can reach it: no entry for it under the
        // ASID a CPU has loaded. (Entries under other ASIDs are checked when
        // their ASID is next loaded: a lazy flush must remove them first.)
        for (cpu, st) in self.cpus.iter().enumerate() {
            let st = lock(st);
            let Some((_, asid)) = st.loaded else { continue };
            for e in &st.tlb {
                if let (true, Some((_, f, g))) = (e.asid == asid, e.map) {
                    assert!(
                        f != frame || g != generation,
                        "frame {frame:?} freed while CPU {cpu}, running {asid:?}, still \
                         reaches it through {e:?}"
                    );
                }
            }
        }
        table.free.push(n as u64);
        true
    }
}

impl Cpus for Hw {
    fn cpu_count(&self) -> usize {
        self.cpus.len()
    }

    fn current_cpu(&self) -> Option<CpuId> {
        CPU.with(|c| c.get())
    }
}

impl Tlb for Hw {
    fn invalidate_local(&self, what: Invalidation) {
        if let Some(cpu) = self.current_cpu() {
            lock(&self.cpus[cpu]).invalidate(what, self.speculative);
        }
    }

    fn install(&self, root: Frame, asid: Asid) {
        let cpu = self.current_cpu().expect("install runs on a CPU");
        let mut st = lock(&self.cpus[cpu]);
        // Checked when the switch returns (see `switch`), not here: the core
        // flushes what a stolen or lazily flushed ASID may still tag only
        // once the new root is loaded.
        st.loaded = Some((root, asid));
        // Running a space caches something of it at once.
        st.tlb.push(Entry {
            asid,
            root,
            map: None,
        });
    }
}

impl Shootdown for Hw {
    fn shootdown(&self, targets: CpuSet, what: Invalidation) -> usize {
        let me = self.current_cpu();
        let mut sent = 0;
        for cpu in targets.iter().filter(|&c| Some(c) != me) {
            // Handled at once: the target's next step sees its TLB flushed.
            lock(&self.cpus[cpu]).invalidate(what, self.speculative);
            sent += 1;
        }
        sent
    }
}

/// The [`Machine`] of the models.
#[derive(Clone)]
struct LoomMachine(Arc<Hw>);

impl Machine for LoomMachine {
    type Lock = SpinMutex;
    type RwLock = SpinRwLock;
    type Memory = Hw;
    type Frames = Hw;
    type Cpus = Hw;
    type Tlb = Hw;
    type Shootdown = Hw;
    type PageTable = X86_64PageTable;

    fn memory(&self) -> &Hw {
        &self.0
    }
    fn frames(&self) -> &Hw {
        &self.0
    }
    fn cpus(&self) -> &Hw {
        &self.0
    }
    fn tlb(&self) -> &Hw {
        &self.0
    }
    fn shootdown(&self) -> &Hw {
        &self.0
    }
    fn relax(&self) {
        loom::thread::yield_now();
    }
    fn pager_sleep(&self) -> Option<&'static dyn aspace::Sleep> {
        self.0.sleep.map(|s| s as &'static dyn aspace::Sleep)
    }
}

type Space = aspace::SpaceRef<LoomMachine>;

/// A system of `cpus` CPUs, `asids` ASIDs and 24 frames.
fn system(cpus: usize, asids: u16) -> (Arc<System<LoomMachine>>, Arc<Hw>) {
    system_on(Hw::new(cpus, 24), asids)
}

/// A system on `hw` with `asids` ASIDs.
fn system_on(hw: Hw, asids: u16) -> (Arc<System<LoomMachine>>, Arc<Hw>) {
    let hw = Arc::new(hw);
    let sys = System::new(
        LoomMachine(hw.clone()),
        Config {
            asids,
            ..Config::default()
        },
    )
    .expect("system");
    (Arc::new(sys), hw)
}

/// `System::switch`, then the check a return to user mode makes: every
/// entry the CPU can use under the ASID it loaded was made by the space it
/// now runs, and reaches a frame that is still that space's.
fn switch(
    sys: &System<LoomMachine>,
    old: Option<&AddressSpace<LoomMachine>>,
    new: &AddressSpace<LoomMachine>,
) -> aspace::Result<Asid> {
    let asid = sys.switch(old, new)?;
    let hw = &sys.machine().0;
    let cpu = hw.current_cpu().expect("switch runs on a CPU");
    let st = lock(&hw.cpus[cpu]);
    hw.check_reachable(cpu, &st, new.root(), asid, "return to user mode");
    Ok(asid)
}

/// After the threads: each CPU in turn switches from what it runs to the
/// kernel space, so the spaces can go (a space must not be dropped while
/// it runs).
fn park_cpus(sys: &System<LoomMachine>, running: &[(CpuId, &Space)]) {
    for &(cpu, space) in running {
        become_cpu(Some(cpu));
        switch(&sys, Some(space), sys.kernel()).expect("switch to the kernel");
    }
    become_cpu(None);
}

/// After the threads: every CPU, in turn, runs every space that holds an
/// ASID and comes back to what it ran (`running`; the kernel for a CPU not
/// listed), each switch checked as a return to user mode would be: entries
/// another space left under an ASID may linger in a TLB, but no CPU may be
/// able to use them when it runs the ASID's owner.
fn check_no_usable_foreign_entries(
    sys: &System<LoomMachine>,
    spaces: &[&Space],
    running: &[(CpuId, &Space)],
) {
    let cpus = sys.machine().0.cpus.len();
    for cpu in 0..cpus {
        become_cpu(Some(cpu));
        let now: &AddressSpace<LoomMachine> = running
            .iter()
            .find(|(c, _)| *c == cpu)
            .map_or(&**sys.kernel(), |(_, s)| &***s);
        for s in spaces.iter().filter(|s| s.asid().is_some()) {
            switch(sys, Some(now), s).expect("run a holder");
            switch(sys, Some(s), now).expect("and back");
        }
    }
    become_cpu(None);
}

// ---------------------------------------------------------------------------
// ASIDs.
// ---------------------------------------------------------------------------

/// Two CPUs, two ASIDs, three spaces: CPU 0 runs A then B, CPU 1 runs C
/// then A. Whatever the order, some switch steals an ASID from a space
/// that runs nowhere while the other CPU switches too. Checked: no switch
/// fails (`asids >= cpus`), the stolen ASID is flushed on every CPU that
/// may hold entries of its old owner before anyone loads it (see
/// [`Hw::check_reachable`], run at every install), and at the end no CPU
/// holds an entry under an ASID another space now holds.
#[test]
fn asid_steal_against_switch() {
    explore("asid_steal_against_switch", || {
        let (sys, _hw) = system(2, 2);
        let [a, b, c]: [Space; 3] = std::array::from_fn(|_| sys.create().unwrap());
        let t0 = {
            let (sys, a, b) = (sys.clone(), a.clone(), b.clone());
            loom::thread::spawn(move || {
                become_cpu(Some(0));
                switch(&sys, None, &a).expect("CPU 0: switch to A");
                switch(&sys, Some(&a), &b).expect("CPU 0: switch A -> B");
            })
        };
        let t1 = {
            let (sys, a, c) = (sys.clone(), a.clone(), c.clone());
            loom::thread::spawn(move || {
                become_cpu(Some(1));
                switch(&sys, None, &c).expect("CPU 1: switch to C");
                switch(&sys, Some(&c), &a).expect("CPU 1: switch C -> A");
            })
        };
        t0.join().unwrap();
        t1.join().unwrap();
        assert!(sys.stats().asid_steals >= 1, "the model must steal");
        check_no_usable_foreign_entries(&sys, &[&a, &b, &c], &[(0, &b), (1, &a)]);
        park_cpus(&sys, &[(0, &b), (1, &a)]);
    });
}

/// Two CPUs, two ASIDs, three spaces, on CPUs that may fill their TLBs
/// speculatively from whatever they have loaded (as x86 CPUs may, at any
/// time). CPU 0 runs A, then B, then C; CPU 1 starts C meanwhile. Checked
/// as above.
///
/// This model found a hazard, since fixed: a switch that stole an ASID
/// flushed it (locally, and by IPI on the CPUs that ran the victim)
/// *before* the switching CPU loaded the new space, while the victim could
/// still be loaded under that very ASID: on the switching CPU itself when
/// the victim is the space it leaves (`A -> B` steals A's ASID), or on a
/// remote CPU between the allocator work and the install of its own switch
/// away from it. A speculative fill in between left an entry of the victim
/// under the ASID for the new owner (the kernel loads CR3 with
/// `CR3_NOFLUSH`). Now every CPU that ran the victim flushes the ASID when
/// it first runs the new owner, after loading it.
#[test]
fn asid_steal_while_victim_still_loaded() {
    explore("asid_steal_while_victim_still_loaded", || {
        let mut hw = Hw::new(2, 24);
        hw.speculative = true;
        let (sys, _hw) = system_on(hw, 2);
        let [a, b, c]: [Space; 3] = std::array::from_fn(|_| sys.create().unwrap());
        let t0 = {
            let (sys, a, b, c) = (sys.clone(), a.clone(), b.clone(), c.clone());
            loom::thread::spawn(move || {
                become_cpu(Some(0));
                switch(&sys, None, &a).expect("CPU 0: switch to A");
                switch(&sys, Some(&a), &b).expect("CPU 0: switch A -> B");
                switch(&sys, Some(&b), &c).expect("CPU 0: switch B -> C");
            })
        };
        let t1 = {
            let (sys, c) = (sys.clone(), c.clone());
            loom::thread::spawn(move || {
                become_cpu(Some(1));
                switch(&sys, None, &c).expect("CPU 1: switch to C");
            })
        };
        t0.join().unwrap();
        t1.join().unwrap();
        check_no_usable_foreign_entries(&sys, &[&a, &b, &c], &[(0, &c), (1, &c)]);
        park_cpus(&sys, &[(0, &c), (1, &c)]);
    });
}

/// Two CPUs, two ASIDs, four spaces. CPU 0 runs A, then B, then drops the
/// last reference to A (which may still hold an ASID); CPU 1 runs C, then
/// D, and needs an ASID while A dies. Checked: no switch fails (a dying
/// space's ASID is never held by nobody), and no ASID A had reaches
/// another space's CPU before it was flushed.
#[test]
fn dying_space_asid_release_against_switch() {
    explore("dying_space_asid_release_against_switch", || {
        let (sys, _hw) = system(2, 2);
        let [a, b, c, d]: [Space; 4] = std::array::from_fn(|_| sys.create().unwrap());
        let t0 = {
            let (sys, b) = (sys.clone(), b.clone());
            loom::thread::spawn(move || {
                become_cpu(Some(0));
                switch(&sys, None, &a).expect("CPU 0: switch to A");
                switch(&sys, Some(&a), &b).expect("CPU 0: switch A -> B");
                drop(a);
            })
        };
        let t1 = {
            let (sys, c, d) = (sys.clone(), c.clone(), d.clone());
            loom::thread::spawn(move || {
                become_cpu(Some(1));
                switch(&sys, None, &c).expect("CPU 1: switch to C");
                switch(&sys, Some(&c), &d).expect("CPU 1: switch C -> D");
            })
        };
        t0.join().unwrap();
        t1.join().unwrap();
        check_no_usable_foreign_entries(&sys, &[&b, &c, &d], &[(0, &b), (1, &d)]);
        park_cpus(&sys, &[(0, &b), (1, &d)]);
        assert_eq!(sys.free_asids(), 0, "B and D hold the two ASIDs");
    });
}

// ---------------------------------------------------------------------------
// Faults, shootdowns and destruction.
// ---------------------------------------------------------------------------

const BASE: VirtAddr = VirtAddr::new(0x40_0000);

/// Frames the page tables hold (the only frames left once every area is
/// gone).
fn table_frames(sys: &System<LoomMachine>, spaces: &[&Space]) -> u64 {
    sys.kernel().page_table_frames() + spaces.iter().map(|s| s.page_table_frames()).sum::<u64>()
}

/// CPU 0 runs A and faults on (then accesses) a page of A's one-page area;
/// CPU 1 runs A as well and destroys the area. Checked: the data frame is
/// released exactly once, and only after CPU 0's TLB entry for it was shot
/// down (see `Hw::release`); afterwards nothing maps it and only the page
/// tables' frames are in use.
#[test]
fn fault_against_destroy_with_shootdown() {
    explore("fault_against_destroy_with_shootdown", || {
        let (sys, hw) = system(2, 2);
        let a = sys.create().unwrap();
        a.area_create(BASE, PAGE_SIZE, AreaFlags::READ | AreaFlags::WRITE)
            .unwrap();
        // First use of the area's lock before the threads (see SpinMutex).
        assert_eq!(a.resident_pages(), 0);
        let t0 = {
            let (sys, hw, a) = (sys.clone(), hw.clone(), a.clone());
            loom::thread::spawn(move || {
                become_cpu(Some(0));
                switch(&sys, None, &a).unwrap();
                match a.page_fault(BASE, Access::Write, aspace::FaultContext::User) {
                    FaultOutcome::Ok => {
                        // Mapped, unless destroyed since.
                        hw.touch(&a, BASE.page());
                    }
                    FaultOutcome::Fault(_) => assert!(a.area(BASE).is_none()),
                    FaultOutcome::Defer(r) => panic!("deferred outside a user copy: {r:?}"),
                }
            })
        };
        let t1 = {
            let (sys, a) = (sys.clone(), a.clone());
            loom::thread::spawn(move || {
                become_cpu(Some(1));
                switch(&sys, None, &a).unwrap();
                a.area_destroy(BASE).unwrap();
            })
        };
        t0.join().unwrap();
        t1.join().unwrap();
        assert!(a.translate(BASE.page()).is_none());
        assert_eq!(hw.frames_in_use(), table_frames(&sys, &[&a]));
        park_cpus(&sys, &[(0, &a), (1, &a)]);
    });
}

/// As above, but CPU 1 destroys the area while running no space, and CPU
/// 0 switches away from A after its access and then back: a CPU that ran A
/// but does not now gets no IPI, so it must flush A's ASID when it returns
/// (a lazy flush) before it may use the entry of the freed frame; the
/// check at every install catches it if not.
#[test]
fn fault_against_destroy_lazy_flush() {
    explore("fault_against_destroy_lazy_flush", || {
        let (sys, hw) = system(2, 2);
        let a = sys.create().unwrap();
        let b = sys.create().unwrap();
        a.area_create(BASE, PAGE_SIZE, AreaFlags::READ | AreaFlags::WRITE)
            .unwrap();
        assert_eq!(a.resident_pages(), 0);
        let t0 = {
            let (sys, hw, a, b) = (sys.clone(), hw.clone(), a.clone(), b.clone());
            loom::thread::spawn(move || {
                become_cpu(Some(0));
                switch(&sys, None, &a).unwrap();
                if a.page_fault(BASE, Access::Write, aspace::FaultContext::User) == FaultOutcome::Ok
                {
                    hw.touch(&a, BASE.page());
                }
                switch(&sys, Some(&a), &b).unwrap();
                switch(&sys, Some(&b), &a).unwrap();
                hw.touch(&a, BASE.page());
            })
        };
        let t1 = {
            let a = a.clone();
            loom::thread::spawn(move || {
                become_cpu(Some(1));
                a.area_destroy(BASE).unwrap();
            })
        };
        t0.join().unwrap();
        t1.join().unwrap();
        assert_eq!(hw.frames_in_use(), table_frames(&sys, &[&a, &b]));
        park_cpus(&sys, &[(0, &a)]);
    });
}

/// A's one-page area is shared into B. CPU 0 runs A, CPU 1 runs B; each
/// faults the page in, accesses it and destroys its own area, at once.
/// Checked: the one shared frame (one reference per mapping plus the share
/// record's) is freed exactly once, by whichever side goes last, after
/// both CPUs' entries for it were flushed; nothing else is left.
#[test]
fn share_last_reference_teardown() {
    explore("share_last_reference_teardown", || {
        let (sys, hw) = system(2, 2);
        let a = sys.create().unwrap();
        let b = sys.create().unwrap();
        let rw = AreaFlags::READ | AreaFlags::WRITE;
        a.area_create(BASE, PAGE_SIZE, rw).unwrap();
        a.area_share(BASE, PAGE_SIZE, &b, BASE, rw).unwrap();
        // First use of the areas' and the share record's locks.
        assert_eq!(a.resident_pages() + b.resident_pages(), 0);
        assert_eq!(a.share_info(BASE).expect("shared").refs(), 2);
        let side = |cpu: CpuId, s: &Space| {
            let (sys, hw, s) = (sys.clone(), hw.clone(), s.clone());
            loom::thread::spawn(move || {
                become_cpu(Some(cpu));
                switch(&sys, None, &s).unwrap();
                assert_eq!(
                    s.page_fault(BASE, Access::Write, aspace::FaultContext::User),
                    FaultOutcome::Ok
                );
                assert!(hw.touch(&s, BASE.page()));
                s.area_destroy(BASE).unwrap();
            })
        };
        let t0 = side(0, &a);
        let t1 = side(1, &b);
        t0.join().unwrap();
        t1.join().unwrap();
        assert_eq!(hw.frames_in_use(), table_frames(&sys, &[&a, &b]));
        park_cpus(&sys, &[(0, &a), (1, &b)]);
    });
}

/// The pager of [`pager_answer_against_sleeping_fault`]: keeps the request
/// for the pager thread.
struct LoomPager {
    request: loom::sync::Mutex<Option<aspace::backend::PageIn>>,
}

impl aspace::backend::Pager for LoomPager {
    fn send(&self, request: aspace::backend::PageIn) {
        *self.request.lock().unwrap() = Some(request);
    }
}

/// CPU 0 faults on a page of a user pager's area in space A and sleeps on
/// the machine's `Sleep` for the answer; CPU 1, the pager, takes the
/// request as soon as it is sent and answers it with a page of its own
/// space P (or, in the second round, fails it). Checked: the fault always
/// returns (the core reads the sleep's token before it looks at the answer
/// and the answer wakes it, so no wake is lost: a lost one spins the sleep
/// until loom gives up on the model), with the page mapped (the pager's
/// frame, one more reference) or `PagerError`; every frame is back after
/// teardown but the page tables'.
#[test]
fn pager_answer_against_sleeping_fault() {
    for fail in [false, true] {
        let name = if fail {
            "pager_fail_against_sleeping_fault"
        } else {
            "pager_answer_against_sleeping_fault"
        };
        explore(name, move || {
            let mut hw = Hw::new(2, 24);
            let sleep = Box::leak(Box::new(LoomSleep {
                epoch: loom::sync::atomic::AtomicU64::new(0),
            }));
            hw.sleep = Some(sleep);
            let (sys, hw) = system_on(hw, 2);
            let a = sys.create().unwrap();
            let p = sys.create().unwrap();
            let rw = AreaFlags::READ | AreaFlags::WRITE;
            // The pager's page, resident.
            p.area_create(BASE, PAGE_SIZE, rw).unwrap();
            assert_eq!(
                p.page_fault(BASE, Access::Write, aspace::FaultContext::Kernel),
                FaultOutcome::Ok
            );
            let pager = Arc::new(LoomPager {
                request: loom::sync::Mutex::new(None),
            });
            a.area_create_paged(
                BASE,
                PAGE_SIZE,
                AreaFlags::READ,
                pager.clone(),
                &p,
                aspace::backend::PagerIds::default(),
            )
            .unwrap();
            // First use of the area's lock before the threads.
            assert_eq!(a.resident_pages(), 0);
            let t0 = {
                let (sys, a) = (sys.clone(), a.clone());
                loom::thread::spawn(move || {
                    become_cpu(Some(0));
                    switch(&sys, None, &a).unwrap();
                    a.page_fault(BASE, Access::Read, aspace::FaultContext::User)
                })
            };
            let t1 = {
                let (p, pager) = (p.clone(), pager.clone());
                loom::thread::spawn(move || {
                    become_cpu(Some(1));
                    let request = loop {
                        if let Some(r) = pager.request.lock().unwrap().take() {
                            break r;
                        }
                        loom::thread::yield_now();
                    };
                    if fail {
                        request.fail();
                    } else {
                        request.answer(&p, BASE).unwrap();
                    }
                })
            };
            let outcome = t0.join().unwrap();
            t1.join().unwrap();
            if fail {
                assert_eq!(
                    outcome,
                    FaultOutcome::Fault(aspace::FaultReason::PagerError)
                );
                assert!(a.translate(BASE.page()).is_none());
            } else {
                assert_eq!(outcome, FaultOutcome::Ok);
                let (frame, _) = a.translate(BASE.page()).expect("mapped");
                assert_eq!(Some(frame), p.translate(BASE.page()).map(|(f, _)| f));
                assert_eq!(lock(&hw.table).refs[frame.number() as usize], 2);
            }
            park_cpus(&sys, &[(0, &a)]);
            drop((a, p, pager));
            assert_eq!(hw.frames_in_use(), table_frames(&sys, &[]));
        });
    }
}
