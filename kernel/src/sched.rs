//! Processes (an address space and its threads), tasks (threads), and a
//! preemptive round-robin scheduler over one global ready queue shared by
//! all CPUs.
//!
//! A task's registers live in its saved [`TrapFrame`]; switching tasks
//! means saving the frame of the trap that entered the kernel and
//! overwriting it with the next task's before the trap returns. Switching
//! address spaces goes through aspace's `System::switch`, which hands out
//! the ASID (PCID) and loads CR3.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::sync::{Arc, Weak};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use aspace::backend::elf::ElfImage;
use aspace::{
    Access, AreaFlags, FaultContext, FaultOutcome, FaultReason, SpaceHold, SpaceRef, TryArc,
    VirtAddr,
};

pub use crate::arch::STACK_TOP;
use crate::arch::{cpu_id, idle_frame, TrapFrame, MAX_CPUS};
use crate::machine::{KMachine, Space};
use crate::mm::FRAMES;
use crate::pager::KPager;
use crate::sync::SpinLock;
use crate::{arch, kprintln, kstack, scenario, stats, SYSTEM};

/// Size of the main stack area at start (demand paged: pages appear on
/// first touch). It grows downwards, a page per fault in the guard page
/// below it, up to [`STACK_LIMIT`]; a fault in the guard page beyond that
/// kills the task as a stack overflow.
pub const STACK_SIZE: u64 = 64 * 1024;
/// The most the main stack grows to.
pub const STACK_LIMIT: u64 = 1024 * 1024;
/// Most threads a process may have at once (`THREAD_CREATE` beyond this
/// fails with `ENOMEM`): one task cannot exhaust the kernel heap with
/// thread control blocks.
pub use crate::syscall::nr::MAX_THREADS;
/// The end of the user half: the lowest non-canonical address. Every user
/// address the kernel hands to the CPU (an entry point, a stack pointer)
/// is below it.
pub const USER_END: u64 = arch::LAYOUT.user_end;

/// A user program instance: an address space and its threads.
pub struct Process {
    /// Process number.
    pub pid: u64,
    /// Program name.
    pub name: &'static str,
    /// The address space (dropped with the process: destroyed then).
    pub space: SpaceRef<KMachine>,
    /// The executable, shared with the processes forked from this one;
    /// released when the last of them is gone, with its address space.
    image: SpinLock<Option<Arc<Image>>>,
    threads: AtomicUsize,
    /// The scenario it belongs to.
    pub scenario: usize,
    /// Its pager object, made when it first serves or is named as a pager;
    /// `closed` once the process ended (no new one is made then).
    pager: SpinLock<PagerSlot>,
    /// Its Linux memory map, made by its first Linux memory call
    /// ([`crate::linux`]).
    pub linux: SpinLock<Option<Box<crate::linux::Mm>>>,
    /// Its first thread (`u64::MAX` until it is made).
    main_tid: AtomicU64,
    /// How its first thread ended (code, killed), once it did: the
    /// process's status, whichever thread ends last (as Linux, where the
    /// main thread's end is the process's, and a thread still running then
    /// cannot turn a clean exit into a kill by faulting afterwards).
    main_end: SpinLock<Option<(i64, bool)>>,
    /// Killed: a thread of it was (a fault, a return the CPU cannot make),
    /// and so the whole task is, as HelenOS kills the task and Linux's
    /// `SIGSEGV` the thread group: each of its other threads ends when it
    /// next returns to user mode (one waiting for a pager once answered).
    dying: AtomicBool,
}

/// An executable shared by a process and those forked from it: the last
/// one to end releases it (see [`finish_process`]).
struct Image(TryArc<ElfImage>);

#[derive(Default)]
struct PagerSlot {
    pager: Option<Arc<KPager>>,
    closed: bool,
}

impl Process {
    /// The process's pager object (made on first use); `NotFound` once
    /// the process has ended.
    pub fn pager(&self) -> Result<Arc<KPager>, aspace::Error> {
        let mut slot = self.pager.lock();
        if slot.closed {
            return Err(aspace::Error::NotFound);
        }
        Ok(slot
            .pager
            .get_or_insert_with(|| Arc::new(KPager::new()))
            .clone())
    }
}

/// Every process, to find a pager by its process number.
static PROCS: SpinLock<alloc::vec::Vec<Weak<Process>>> = SpinLock::new(alloc::vec::Vec::new());

/// The pager object of live process `pid` and a hold on its address space
/// (the space a pager answers from); `NotFound` when there is none.
pub fn pager_of(pid: u64) -> Result<(Arc<KPager>, SpaceHold<KMachine>), aspace::Error> {
    let proc = PROCS
        .lock()
        .iter()
        .filter_map(Weak::upgrade)
        .find(|p| p.pid == pid)
        .ok_or(aspace::Error::NotFound)?;
    let pager = proc.pager()?;
    Ok((pager, SpaceHold::new(&proc.space)))
}

/// A thread of a process.
pub struct Task {
    tid: u64,
    proc: Arc<Process>,
    frame: Box<TrapFrame>,
    /// Parked inside the kernel (waiting in a page fault for a pager): its
    /// registers are on its kernel stack, not in `frame`.
    parked: Option<Parked>,
}

/// A thread parked inside the kernel: where its kernel stack is and the
/// stack pointer `park_switch` saved there.
struct Parked {
    sp: u64,
    stack: u64,
}

struct Sched {
    ready: VecDeque<Box<Task>>,
    /// Threads parked in a page fault until a pager answers (see
    /// [`PagerSleep`]): off the ready queue until a wake moves them back.
    sleeping: VecDeque<Box<Task>>,
    current: [Option<Box<Task>>; MAX_CPUS],
    /// The user address space loaded on each CPU (`None`: the kernel's).
    loaded: [Option<SpaceRef<KMachine>>; MAX_CPUS],
}

static SCHED: SpinLock<Sched> = SpinLock::new(Sched {
    ready: VecDeque::new(),
    sleeping: VecDeque::new(),
    current: [const { None }; MAX_CPUS],
    loaded: [const { None }; MAX_CPUS],
});

static NEXT_PID: AtomicU64 = AtomicU64::new(1);
static NEXT_TID: AtomicU64 = AtomicU64::new(1);

/// Reserves a process number for a process about to be spawned (so that
/// the processes of a scenario can be told each other's numbers).
pub fn reserve_pid() -> u64 {
    NEXT_PID.fetch_add(1, Ordering::Relaxed)
}

/// Why a spawn failed.
#[derive(Debug)]
pub enum SpawnError {
    /// aspace refused something.
    Aspace(aspace::Error),
    /// The ELF file was refused.
    Elf(aspace::loader::ElfError),
}

impl core::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SpawnError::Aspace(e) => write!(f, "{e}"),
            SpawnError::Elf(e) => write!(f, "{e}"),
        }
    }
}

/// Creates process `pid` (from [`reserve_pid`]) running `bytes` (a static
/// ELF executable) with `args` in `rdi`, `rsi` and `rdx`, and makes its
/// first thread ready. (No reference to the process stays behind: its last
/// thread ending destroys it, possibly on another CPU before this returns.)
pub fn spawn(
    name: &'static str,
    bytes: &[u8],
    pid: u64,
    args: [u64; 3],
    scenario: usize,
) -> Result<(), SpawnError> {
    let sys = &*SYSTEM;
    let space = sys.create().map_err(SpawnError::Aspace)?;
    let image = ElfImage::load(sys.machine(), bytes).map_err(SpawnError::Aspace)?;
    let loaded = match aspace::loader::load(&space, &image, bytes, None) {
        Ok(l) => l,
        Err(e) => {
            drop(space);
            let _ = ElfImage::release(image, sys.machine());
            return Err(SpawnError::Elf(e));
        }
    };
    if let Err(e) = space.area_create_grows_down(
        VirtAddr::new(STACK_TOP - STACK_SIZE),
        STACK_SIZE,
        STACK_LIMIT,
        AreaFlags::READ | AreaFlags::WRITE | AreaFlags::CACHEABLE,
    ) {
        drop(space);
        let _ = ElfImage::release(image, sys.machine());
        return Err(SpawnError::Aspace(e));
    }
    let proc = Arc::new(Process {
        pid,
        name,
        space,
        image: SpinLock::new(Some(Arc::new(Image(image)))),
        threads: AtomicUsize::new(1),
        scenario,
        pager: SpinLock::new(PagerSlot::default()),
        linux: SpinLock::new(None),
        main_tid: AtomicU64::new(u64::MAX),
        main_end: SpinLock::new(None),
        dying: AtomicBool::new(false),
    });
    register(&proc);
    // The loader checked the entry point (inside a segment, so in the user
    // half) and the stack top is a constant below USER_END.
    let frame = Box::new(TrapFrame::new_user(loaded.entry.as_u64(), STACK_TOP, args));
    add_thread(&proc, frame);
    drop(proc);
    Ok(())
}

/// Lists `proc` in [`PROCS`] and counts it alive.
fn register(proc: &Arc<Process>) {
    LIVE.fetch_add(1, Ordering::Relaxed);
    let mut procs = PROCS.lock();
    procs.retain(|p| p.strong_count() > 0);
    if procs.try_reserve(1).is_ok() {
        procs.push(Arc::downgrade(proc));
    }
}

/// Processes alive (spawned or forked, not yet ended).
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Processes killed whose threads have not all ended: while there are
/// none, a return to user mode does not look (see [`check_return`]).
static DYING: AtomicUsize = AtomicUsize::new(0);

/// A process made by `FORK`, until its parent waited for it or ended.
struct Child {
    parent: u64,
    /// 0 while its fork is under way.
    pid: u64,
    /// Its Linux wait status, once it ended.
    status: Option<u64>,
}

/// The children not waited for, of every process.
static CHILDREN: SpinLock<alloc::vec::Vec<Child>> = SpinLock::new(alloc::vec::Vec::new());

/// Why a fork was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForkError {
    /// Frames, the commit limit or kernel memory ran out (Linux `ENOMEM`).
    NoMemory,
    /// [`nr::MAX_CHILDREN`](crate::syscall::nr::MAX_CHILDREN) children
    /// not waited for, or
    /// [`nr::MAX_PROCESSES`](crate::syscall::nr::MAX_PROCESSES) alive
    /// (Linux `EAGAIN`).
    TooMany,
}

/// `FORK` for the thread of `proc` whose system call is `frame`: a new
/// process whose address space is `System::fork` of `proc`'s (through
/// `LinuxMm::fork` when `proc` has a Linux memory map, which the child
/// gets a copy of), sharing the executable, with one thread: a copy of the
/// caller's registers returning 0. Returns the child's process number;
/// refused, nothing changed (the child's number is taken only once the
/// copy succeeded).
pub fn fork(proc: &Arc<Process>, frame: &TrapFrame) -> Result<u64, ForkError> {
    use crate::syscall::nr;
    if LIVE.load(Ordering::Relaxed) >= nr::MAX_PROCESSES {
        return Err(ForkError::TooMany);
    }
    // A place among the parent's children first (the limit holds for
    // threads forking at once), given back on failure.
    {
        let mut ch = CHILDREN.lock();
        if ch.iter().filter(|c| c.parent == proc.pid).count() >= nr::MAX_CHILDREN {
            return Err(ForkError::TooMany);
        }
        ch.try_reserve(1).map_err(|_| ForkError::NoMemory)?;
        ch.push(Child {
            parent: proc.pid,
            pid: 0,
            status: None,
        });
    }
    let unreserve = || {
        let mut ch = CHILDREN.lock();
        if let Some(i) = ch.iter().position(|c| c.parent == proc.pid && c.pid == 0) {
            ch.swap_remove(i);
        }
    };
    // The Linux map's lock is held across the copy: no Linux call of
    // another thread changes the map meanwhile.
    let copied = {
        let mut slot = proc.linux.lock();
        match slot.as_mut() {
            Some(mm) => mm
                .fork()
                .map(|child| (child.space().clone(), Some(Box::new(child)))),
            None => SYSTEM
                .fork(&proc.space)
                .map(|space| (space, None))
                .map_err(|_| aspace_linux::Errno::ENOMEM),
        }
    };
    let Ok((space, linux)) = copied else {
        unreserve();
        return Err(ForkError::NoMemory);
    };
    let pid = reserve_pid();
    let child = Arc::new(Process {
        pid,
        name: proc.name,
        space,
        image: SpinLock::new(proc.image.lock().clone()),
        threads: AtomicUsize::new(1),
        scenario: proc.scenario,
        pager: SpinLock::new(PagerSlot::default()),
        linux: SpinLock::new(linux),
        main_tid: AtomicU64::new(u64::MAX),
        main_end: SpinLock::new(None),
        dying: AtomicBool::new(false),
    });
    if let Some(c) = CHILDREN
        .lock()
        .iter_mut()
        .find(|c| c.parent == proc.pid && c.pid == 0)
    {
        c.pid = pid;
    }
    register(&child);
    // Counted in its scenario before it can run (and end).
    scenario::process_forked(pid, proc.name);
    kprintln!("task {} ({}) forked task {pid}", proc.pid, proc.name);
    let mut regs = Box::new(frame.clone());
    regs.set_syscall_result(0);
    add_thread(&child, regs);
    Ok(pid)
}

/// What [`reap`] found.
pub enum Reaped {
    /// The child ended with this wait status (its record is gone now).
    Status(u64),
    /// The child still runs.
    Running,
    /// `pid` is no child of the caller's not waited for.
    NotChild,
}

/// Child `pid` of process `parent`: its status if it ended (then it is
/// forgotten), or whether it runs.
pub fn reap(parent: u64, pid: u64) -> Reaped {
    let mut ch = CHILDREN.lock();
    let Some(i) = ch
        .iter()
        .position(|c| pid != 0 && c.parent == parent && c.pid == pid)
    else {
        return Reaped::NotChild;
    };
    match ch[i].status {
        Some(s) => {
            ch.swap_remove(i);
            Reaped::Status(s)
        }
        None => Reaped::Running,
    }
}

/// Makes a thread of `proc` ready; the caller has counted it in
/// `proc.threads` already (before it can run, so a thread ending cannot
/// see zero early).
fn add_thread(proc: &Arc<Process>, frame: Box<TrapFrame>) -> u64 {
    let tid = NEXT_TID.fetch_add(1, Ordering::Relaxed);
    // The process's first thread is its main one.
    let _ = proc
        .main_tid
        .compare_exchange(u64::MAX, tid, Ordering::AcqRel, Ordering::Relaxed);
    let task = Box::new(Task {
        tid,
        proc: proc.clone(),
        frame,
        parked: None,
    });
    let idle: alloc::vec::Vec<usize> = {
        let mut s = lock_sched();
        s.ready.push_back(task);
        let me = cpu_id();
        (0..crate::machine::CPU_COUNT.load(Ordering::Relaxed))
            .filter(|&c| c != me && s.current[c].is_none() && arch::online().contains(c))
            .collect()
    };
    for c in idle {
        arch::wake(c);
    }
    tid
}

/// Starts a thread of `proc` at `entry` with stack pointer `stack` and
/// `arg` in `rdi`; returns its thread number. Both addresses reach `iretq`,
/// which faults in ring 0 on a non-canonical one, so both must be user
/// addresses (below [`USER_END`]), else `InvalidArgument`; beyond
/// [`MAX_THREADS`] threads, `NoMemory`.
pub fn spawn_thread(
    proc: &Arc<Process>,
    entry: u64,
    stack: u64,
    arg: u64,
) -> Result<u64, aspace::Error> {
    if entry >= USER_END || stack >= USER_END {
        return Err(aspace::Error::InvalidArgument);
    }
    proc.threads
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < MAX_THREADS).then_some(n + 1)
        })
        .map_err(|_| aspace::Error::NoMemory)?;
    let frame = Box::new(TrapFrame::new_user(entry, stack, [arg, 0, 0]));
    Ok(add_thread(proc, frame))
}

/// Called before a trap returns to `frame`: a task parked in the kernel
/// that this CPU is to run now continues there instead (this never
/// returns then); a user frame whose
/// instruction or stack pointer is not a canonical user address (code
/// that ran up to the end of the user half, or a stack pointer set there)
/// would make `iretq` fault in ring 0, so its task is killed instead and
/// the next frame checked in turn; a thread of a killed task ends here
/// rather than return to it.
pub fn check_return(frame: &mut TrapFrame) {
    loop {
        resume_parked();
        // A thread of a killed task ends instead of returning to it.
        if frame.is_user() && DYING.load(Ordering::Acquire) > 0 && current_dying() {
            exit_current(frame, -1, Some("its task was killed"));
            continue;
        }
        if !frame.is_user() || frame.returnable(USER_END) {
            return;
        }
        let why = alloc::format!(
            "cannot return to user mode at a non-canonical address ({} {:#x}, {} {:#x})",
            arch::PC_NAME,
            frame.pc(),
            arch::SP_NAME,
            frame.sp()
        );
        kill_current(frame, &why);
    }
}

/// The scheduler, locked, with the threads a pager answer woke back on the
/// ready queue ([`wake_sleepers`]). Every scheduling decision takes it so.
fn lock_sched() -> crate::sync::SpinLockGuard<'static, Sched> {
    let mut s = SCHED.lock();
    wake_sleepers(&mut s);
    s
}

/// Pager answers recorded so far: the wake counter of [`PagerSleep`].
static PAGER_EPOCH: AtomicU64 = AtomicU64::new(0);
/// A wake ran whose sleepers may not be back on the ready queue yet: the
/// next holder of the scheduler lock moves them.
static WAKE_PENDING: AtomicBool = AtomicBool::new(false);
/// The token of a park that only yields (not a sleep).
const NO_TOKEN: u64 = u64::MAX;
/// Per CPU: the wake counter the thread parking now sleeps on, or
/// `NO_TOKEN`; read by `after_park` on the same CPU.
static PARK_TOKEN: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(NO_TOKEN) }; MAX_CPUS];

/// Moves every sleeping thread back to the ready queue if a wake is
/// pending (they look at their answer again; those without one sleep
/// again); whether it moved any.
fn wake_sleepers(s: &mut Sched) -> bool {
    // A load first: every trap return takes the lock, and most find no
    // wake pending (one missed here is the next taker's).
    if WAKE_PENDING.load(Ordering::Relaxed)
        && WAKE_PENDING.swap(false, Ordering::SeqCst)
        && !s.sleeping.is_empty()
    {
        let Sched {
            ready, sleeping, ..
        } = s;
        ready.append(sleeping);
        return true;
    }
    false
}

/// Where a page fault waiting for a user pager sleeps (aspace's `Sleep`):
/// its thread parks off the ready queue, and the core's wake after an
/// answer puts it back. A wake never waits for the scheduler lock (it may
/// come from any context, this CPU's holding it included): it advances the
/// counter, marks the wake pending, and moves the sleepers itself only if
/// the lock is free (waking an idle CPU for them); else the next taker of
/// the lock (`lock_sched`: every trap return and timer tick) does. A
/// thread about to sleep looks at the counter under the lock, so a wake
/// after its token was read sends it to the ready queue instead.
pub struct PagerSleep;

impl aspace::Sleep for PagerSleep {
    fn token(&self) -> u64 {
        PAGER_EPOCH.load(Ordering::SeqCst)
    }

    fn sleep(&self, token: u64) {
        if !park(token) {
            crate::sync::relax();
        }
    }

    fn wake(&self) {
        // The counter first: a taker of the lock that clears the pending
        // mark then finds the thread asleep, or the thread finds the new
        // counter.
        PAGER_EPOCH.fetch_add(1, Ordering::SeqCst);
        WAKE_PENDING.store(true, Ordering::SeqCst);
        let idle = SCHED.try_lock().and_then(|mut s| {
            if !wake_sleepers(&mut s) {
                return None;
            }
            let me = cpu_id();
            (0..crate::machine::CPU_COUNT.load(Ordering::Relaxed))
                .find(|&c| c != me && s.current[c].is_none() && arch::online().contains(c))
        });
        if let Some(c) = idle {
            arch::wake(c);
        }
    }
}

/// Per CPU: the running thread is in a user page fault or a system call,
/// holding no lock of the kernel's, so `relax` may park it.
static PARKABLE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Runs `f` (a user page fault's or a system call's work, with no kernel
/// lock held) letting `relax` park the thread in it; the thread may end
/// on another CPU.
pub fn parkable<R>(f: impl FnOnce() -> R) -> R {
    PARKABLE[cpu_id()].store(true, Ordering::Relaxed);
    let r = f();
    PARKABLE[cpu_id()].store(false, Ordering::Relaxed);
    r
}

/// Per CPU: the kernel stack of the parked thread this CPU resumed (top;
/// 0: none). It is free again once the CPU takes a trap from user mode.
static BORROWED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Per CPU: a borrowed stack left behind by a switch to a parked thread,
/// freed by that thread once it runs (on another stack).
static TO_FREE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Called on every trap entry: one from user mode means no thread runs
/// kernel code on a borrowed stack here any more, so that stack is free.
pub fn trap_entered(from_user: bool) {
    if from_user {
        let top = BORROWED[cpu_id()].swap(0, Ordering::Relaxed);
        if top != 0 {
            kstack::free(top);
        }
    }
}

/// `Machine::relax` of this kernel: in a user page fault or a system call
/// (a user copy) waiting for other CPUs, parks the thread (its kernel stack
/// goes with it) and runs other tasks on this CPU until the scheduler
/// picks the thread again, possibly on another CPU; returns `false` (the
/// caller spins) elsewhere, or when nothing else is ready to run.
pub fn relax_parked() -> bool {
    park(NO_TOKEN)
}

/// Parks the running thread as [`relax_parked`] says; with a `token`
/// other than `NO_TOKEN` it sleeps (off the ready queue) unless a pager
/// answer came since the token was read.
fn park(token: u64) -> bool {
    let cpu = cpu_id();
    if !PARKABLE[cpu].load(Ordering::Relaxed) {
        return false;
    }
    // The stack the thread runs on: one of the CPU's trap stacks (the CPU
    // gets a fresh one in its place) or the borrowed stack of a parked
    // thread resumed here.
    let sp = arch::stack_pointer();
    let within = |top: u64| top != 0 && sp < top && sp >= top - kstack::SIZE;
    let slot = arch::trap_stack_tops(cpu).iter().position(|&t| within(t));
    let borrowed = BORROWED[cpu].load(Ordering::Relaxed);
    if slot.is_none() && !within(borrowed) {
        return false;
    }
    // Nothing else to run: spin, without taking a stack to give back
    // (looked at again under the lock below).
    if lock_sched().ready.is_empty() {
        return false;
    }
    let fresh = match slot {
        Some(_) => match kstack::alloc() {
            Some(t) => t,
            None => return false,
        },
        None => 0,
    };
    let give_back = |fresh: u64| {
        if fresh != 0 {
            kstack::free(fresh);
        }
    };
    let Some(switch_top) = kstack::switch_top(cpu) else {
        give_back(fresh);
        return false;
    };
    let mut task = {
        let mut s = lock_sched();
        if s.ready.is_empty() {
            drop(s);
            give_back(fresh);
            return false;
        }
        s.current[cpu].take().expect("a task is running")
    };
    PARKABLE[cpu].store(false, Ordering::Relaxed);
    PARK_TOKEN[cpu].store(token, Ordering::Relaxed);
    let stack = match slot {
        Some(i) => {
            let old = arch::trap_stack_tops(cpu)[i];
            arch::replace_trap_stack(cpu, i, fresh);
            old
        }
        None => {
            BORROWED[cpu].store(0, Ordering::Relaxed);
            borrowed
        }
    };
    stats::PARKS.fetch_add(1, Ordering::Relaxed);
    let parked = task.parked.insert(Parked { sp: 0, stack });
    let save: *mut u64 = &mut parked.sp;
    let raw = Box::into_raw(task);
    // SAFETY: `save` points into the task's heap allocation, which stays
    // put (the box is only turned into a raw pointer) and is not touched
    // until `after_park` queues the task, after the switch wrote it.
    // `switch_top` is the top of this CPU's switch stack, used only here and
    // free (one park at a time per CPU, interrupts off); `after_park` takes
    // the task back from `raw` and never returns. No lock is held, and
    // nothing on this stack is touched until `park_resume` continues here.
    unsafe { arch::park_switch(save, switch_top, after_park, raw as usize) };
    // Resumed, on this CPU or another: this stack is the CPU's borrowed one.
    let cpu = cpu_id();
    let old = TO_FREE[cpu].swap(0, Ordering::Relaxed);
    if old != 0 {
        kstack::free(old);
    }
    PARKABLE[cpu].store(true, Ordering::Relaxed);
    true
}

/// Runs on the switch stack after a thread parked: queues it and runs the
/// next task on this CPU.
extern "C" fn after_park(raw: usize) -> ! {
    // SAFETY: `raw` is the `Box<Task>` `relax_parked` gave up with
    // `Box::into_raw`, passed here once.
    let task = unsafe { Box::from_raw(raw as *mut Task) };
    let cpu = cpu_id();
    let mut frame = idle_frame(cpu);
    let token = PARK_TOKEN[cpu].swap(NO_TOKEN, Ordering::Relaxed);
    {
        let mut s = lock_sched();
        // Under the lock: a wake that advanced the counter before this
        // look sends the thread to the ready queue; one after it finds
        // the thread asleep.
        if token != NO_TOKEN && PAGER_EPOCH.load(Ordering::SeqCst) == token {
            stats::SLEEPS.fetch_add(1, Ordering::Relaxed);
            s.sleeping.push_back(task);
        } else {
            s.ready.push_back(task);
        }
        let next = s.ready.pop_front();
        run(&mut s, cpu, &mut frame, next);
    }
    // A wake that found the lock taken above is taken up by the next
    // `lock_sched`: `check_return` just below, or any CPU's.
    check_return(&mut frame);
    arch::enter(cpu, &frame)
}

/// If the task this CPU is to run is parked in the kernel, continues it
/// (never returning): its stack becomes this CPU's borrowed one.
fn resume_parked() {
    let cpu = cpu_id();
    let parked = lock_sched().current[cpu]
        .as_mut()
        .and_then(|t| t.parked.take());
    let Some(p) = parked else {
        return;
    };
    let old = BORROWED[cpu].swap(p.stack, Ordering::Relaxed);
    if old != 0 {
        // Possibly the stack this runs on: freed by the resumed thread.
        TO_FREE[cpu].store(old, Ordering::Relaxed);
    }
    // SAFETY: `p.sp` was saved by `park_switch` on the parked thread's own
    // stack `p.stack`, which nothing has used since (it left this CPU's
    // trap stacks when it parked); taking `parked` out under the lock makes
    // this the one resumption. Nothing on the current stack is needed
    // afterwards, and no lock is held.
    unsafe { arch::park_resume(p.sp) }
}

/// Whether the task running on this CPU belongs to a killed process.
fn current_dying() -> bool {
    lock_sched().current[cpu_id()]
        .as_ref()
        .is_some_and(|t| t.proc.dying.load(Ordering::Acquire))
}

/// The process of the task running on this CPU.
pub fn current_process() -> Option<Arc<Process>> {
    lock_sched().current[cpu_id()]
        .as_ref()
        .map(|t| t.proc.clone())
}

/// Loads `next` into `frame` on this CPU, switching address spaces when it
/// runs in another one. Called with the scheduler locked.
fn run(s: &mut Sched, cpu: usize, frame: &mut TrapFrame, next: Option<Box<Task>>) {
    let sys = &*SYSTEM;
    match next {
        Some(task) => {
            *frame = (*task.frame).clone();
            let target = &task.proc.space;
            let same = s.loaded[cpu]
                .as_ref()
                .is_some_and(|l| TryArc::ptr_eq(l, target));
            if !same {
                let old = s.loaded[cpu].take();
                let old_ref: &Space = old.as_deref().unwrap_or(sys.kernel());
                if let Err(e) = sys.switch(Some(old_ref), target) {
                    // Cannot happen with two ASIDs per CPU (see
                    // `asids_for`); should it, the task waits for the next
                    // tick rather than the kernel stopping, and the space
                    // loaded before stays loaded.
                    stats::SWITCH_FAILURES.fetch_add(1, Ordering::Relaxed);
                    kprintln!(
                        "sched: cpu {cpu}: no ASID for task {} ({}): {e}; retried later",
                        task.proc.pid,
                        task.proc.name
                    );
                    s.loaded[cpu] = old;
                    s.ready.push_back(task);
                    *frame = idle_frame(cpu);
                    s.current[cpu] = None;
                    return;
                }
                s.loaded[cpu] = Some(target.clone());
            }
            s.current[cpu] = Some(task);
        }
        None => {
            *frame = idle_frame(cpu);
            if let Some(old) = s.loaded[cpu].take() {
                if let Err(e) = sys.switch(Some(&old), sys.kernel()) {
                    // The kernel space needs no ASID; should it fail, the
                    // idle loop runs on the user table (whose kernel half
                    // is the kernel's).
                    stats::SWITCH_FAILURES.fetch_add(1, Ordering::Relaxed);
                    kprintln!("sched: cpu {cpu}: cannot switch to the kernel space: {e}");
                    s.loaded[cpu] = Some(old);
                }
            }
            s.current[cpu] = None;
        }
    }
}

/// Timer tick or wake-up: round robin.
pub fn tick(frame: &mut TrapFrame) {
    let cpu = cpu_id();
    let mut s = lock_sched();
    if s.ready.is_empty() {
        return;
    }
    if let Some(mut cur) = s.current[cpu].take() {
        *cur.frame = frame.clone();
        s.ready.push_back(cur);
        stats::PREEMPTIONS.fetch_add(1, Ordering::Relaxed);
    }
    let next = s.ready.pop_front();
    run(&mut s, cpu, frame, next);
}

/// The running task gives up the CPU.
pub fn yield_now(frame: &mut TrapFrame) {
    let cpu = cpu_id();
    let mut s = lock_sched();
    if s.ready.is_empty() {
        return;
    }
    let mut cur = s.current[cpu].take().expect("a task is running");
    *cur.frame = frame.clone();
    s.ready.push_back(cur);
    let next = s.ready.pop_front();
    run(&mut s, cpu, frame, next);
}

/// Enters the scheduler on this CPU for good (after boot).
pub fn start(cpu: usize) -> ! {
    let mut frame = idle_frame(cpu);
    {
        let mut s = lock_sched();
        let next = s.ready.pop_front();
        run(&mut s, cpu, &mut frame, next);
    }
    check_return(&mut frame);
    arch::enter(cpu, &frame)
}

/// Ends the running thread with `code` (`reason`: why it was killed).
pub fn exit_current(frame: &mut TrapFrame, code: i64, reason: Option<&str>) {
    let cpu = cpu_id();
    let task = {
        let mut s = lock_sched();
        let task = s.current[cpu].take().expect("a task is running");
        let next = s.ready.pop_front();
        run(&mut s, cpu, frame, next);
        task
    };
    let proc = task.proc.clone();
    let tid = task.tid;
    drop(task);
    if let Some(why) = reason {
        kprintln!(
            "task {} ({}) thread {} killed: {}",
            proc.pid,
            proc.name,
            tid,
            why
        );
        // The whole task goes: its other threads end at their next return
        // to user mode.
        if !proc.dying.swap(true, Ordering::AcqRel) {
            DYING.fetch_add(1, Ordering::AcqRel);
        }
    }
    if tid == proc.main_tid.load(Ordering::Acquire) {
        *proc.main_end.lock() = Some((code, reason.is_some()));
    }
    if proc.threads.fetch_sub(1, Ordering::AcqRel) > 1 {
        return;
    }
    let main_end = *proc.main_end.lock();
    let (code, killed) = main_end.unwrap_or((code, reason.is_some()));
    finish_process(proc, code, killed);
    // Starting the next scenario may have made tasks ready while this CPU
    // went idle.
    let mut s = lock_sched();
    if s.current[cpu].is_none() && !s.ready.is_empty() {
        let next = s.ready.pop_front();
        run(&mut s, cpu, frame, next);
    }
}

/// Destroys a process whose last thread ended: its address space (every
/// area, frame, page table and the ASID), then its executable image.
fn finish_process(proc: Arc<Process>, code: i64, killed: bool) {
    if proc.dying.load(Ordering::Acquire) {
        DYING.fetch_sub(1, Ordering::AcqRel);
    }
    let resident = proc.space.resident_pages();
    let tables = proc.space.page_table_frames();
    // The Linux map holds the space too: it goes first.
    crate::linux::release(&proc);
    let image = proc.image.lock().take();
    let (pid, name, scen) = (proc.pid, proc.name, proc.scenario);
    // A pager that ended: the faults waiting for it fail (PagerGone).
    let pager = {
        let mut slot = proc.pager.lock();
        slot.closed = true;
        slot.pager.take()
    };
    if let Some(p) = pager {
        let dropped = p.close();
        if dropped > 0 {
            kprintln!("task {pid} ({name}): pager ended with {dropped} requests unanswered");
        }
    }
    // The spawner may still be returning with its reference (the process
    // can end on another CPU first): wait for such transient references.
    let mut spins = 0u64;
    while (Arc::strong_count(&proc) > 1 || TryArc::refs(&proc.space) > 1) && spins < 100_000_000 {
        crate::sync::relax();
        spins += 1;
    }
    let unique = Arc::strong_count(&proc) == 1 && TryArc::refs(&proc.space) == 1;
    drop(proc);
    // The last process of those sharing the executable releases it (its
    // address space gone, as those of the others ended before).
    let released = match image.and_then(Arc::into_inner) {
        Some(Image(img)) => ElfImage::release(img, SYSTEM.machine()).is_ok(),
        None => true,
    };
    let ok = unique && released;
    LIVE.fetch_sub(1, Ordering::Relaxed);
    {
        // Its children can no longer be waited for; its parent can now.
        let mut ch = CHILDREN.lock();
        ch.retain(|c| c.parent != pid);
        if let Some(c) = ch.iter_mut().find(|c| c.pid == pid) {
            c.status = Some(if killed {
                crate::syscall::nr::KILLED_STATUS
            } else {
                (code as u64 & 0xff) << 8
            });
        }
    }
    kprintln!(
        "task {} ({}) {} with code {}: {} resident pages and {} table frames freed{}; frames in use now {}",
        pid,
        name,
        if killed { "ended" } else { "exited" },
        code,
        resident,
        tables,
        if ok { "" } else { " (ADDRESS SPACE OR IMAGE STILL REFERENCED)" },
        FRAMES.in_use()
    );
    scenario::process_ended(scen, pid, code, ok, killed);
}

/// Kills the running thread and with it its task (see `Process::dying`),
/// reporting `why`.
pub fn kill_current(frame: &mut TrapFrame, why: &str) {
    exit_current(frame, -1, Some(why));
}

fn reason_text(r: FaultReason) -> &'static str {
    match r {
        FaultReason::NoArea => "no area",
        FaultReason::Partial => "area being set up",
        FaultReason::Access => "access not permitted by the area",
        FaultReason::NoMemory => "out of memory",
        FaultReason::PagerError => "the pager refused the page",
        FaultReason::PagerGone => "the pager is gone",
        FaultReason::Guard => "guard page",
    }
}

fn access_text(a: Access) -> &'static str {
    match a {
        Access::Read => "read",
        Access::Write => "write",
        Access::Exec => "execute",
    }
}

/// A page fault from user mode: served by aspace, or the task dies.
pub fn user_page_fault(frame: &mut TrapFrame, addr: VirtAddr, access: Access) {
    let Some(proc) = current_process() else {
        panic!("user fault without a task");
    };
    let why: String = if addr.as_u64() >= proc.space.user_end() {
        alloc::format!(
            "page fault at {addr} ({}): kernel address, {} {:#x}",
            access_text(access),
            arch::PC_NAME,
            frame.pc()
        )
    } else {
        // The thread may move to another CPU while it is parked.
        let mut outcome = parkable(|| proc.space.page_fault(addr, access, FaultContext::User));
        // No area: a Linux process's stack may grow down to the address
        // (Linux's expand_stack), and the fault is served again.
        if matches!(outcome, FaultOutcome::Fault(FaultReason::NoArea))
            && crate::linux::expand_stack(&proc, addr.as_u64())
        {
            outcome = parkable(|| proc.space.page_fault(addr, access, FaultContext::User));
        }
        match outcome {
            FaultOutcome::Ok => {
                if access == Access::Write {
                    crate::linux::touched(&proc, addr.as_u64());
                }
                return;
            }
            FaultOutcome::Fault(r) | FaultOutcome::Defer(r) => {
                let area = proc
                    .space
                    .area(addr)
                    .map(|a| {
                        let r = a.rights();
                        alloc::format!(
                            " (area {:#x}+{:#x} {}{}{})",
                            a.base.as_u64(),
                            a.size(),
                            r[0] as char,
                            r[1] as char,
                            r[2] as char
                        )
                    })
                    .unwrap_or_default();
                alloc::format!(
                    "page fault at {addr} ({}): {}{}, {} {:#x}",
                    access_text(access),
                    reason_text(r),
                    area,
                    arch::PC_NAME,
                    frame.pc()
                )
            }
        }
    };
    drop(proc);
    kill_current(frame, &why);
}
