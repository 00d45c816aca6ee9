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
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use aspace::backend::elf::ElfImage;
use aspace::{Access, AreaFlags, FaultOutcome, FaultReason, VirtAddr};

use crate::arch::{cpu_id, MAX_CPUS};
use crate::cpu::{idle_frame, TrapFrame, VEC_WAKE};
use crate::machine::Space;
use crate::mm::FRAMES;
use crate::sync::SpinLock;
use crate::{apic, kprintln, scenario, stats, SYSTEM};

/// Top of every task's main stack.
pub const STACK_TOP: u64 = 0x0000_7fff_ffff_0000;
/// Size of the main stack area (demand paged: pages appear on first touch).
pub const STACK_SIZE: u64 = 256 * 1024;

/// A user program instance: an address space and its threads.
pub struct Process {
    /// Process number.
    pub pid: u64,
    /// Program name.
    pub name: &'static str,
    /// The address space (dropped with the process: destroyed then).
    pub space: Arc<Space>,
    /// The executable, released when the address space is gone.
    image: SpinLock<Option<Arc<ElfImage>>>,
    threads: AtomicUsize,
    /// The scenario it belongs to.
    pub scenario: usize,
    /// The argument it was started with.
    pub arg: u64,
}

/// A thread of a process.
pub struct Task {
    tid: u64,
    proc: Arc<Process>,
    frame: Box<TrapFrame>,
}

struct Sched {
    ready: VecDeque<Box<Task>>,
    current: [Option<Box<Task>>; MAX_CPUS],
    /// The user address space loaded on each CPU (`None`: the kernel's).
    loaded: [Option<Arc<Space>>; MAX_CPUS],
}

static SCHED: SpinLock<Sched> = SpinLock::new(Sched {
    ready: VecDeque::new(),
    current: [const { None }; MAX_CPUS],
    loaded: [const { None }; MAX_CPUS],
});

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

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

/// Creates a process running `bytes` (a static ELF executable) with `arg`
/// in `rdi`, and makes its first thread ready; returns its pid. (No
/// reference to the process stays behind: its last thread ending destroys
/// it, possibly on another CPU before this returns.)
pub fn spawn(
    name: &'static str,
    bytes: &[u8],
    arg: u64,
    scenario: usize,
) -> Result<u64, SpawnError> {
    let sys = &*SYSTEM;
    let space = sys.create().map_err(SpawnError::Aspace)?;
    let image = ElfImage::load(sys.machine(), bytes).map_err(SpawnError::Aspace)?;
    let loaded = match aspace::loader::load(&space, &image, bytes, None) {
        Ok(l) => l,
        Err(e) => {
            drop(space);
            let _ = image.release(sys.machine());
            return Err(SpawnError::Elf(e));
        }
    };
    space
        .area_create(
            VirtAddr::new(STACK_TOP - STACK_SIZE),
            STACK_SIZE,
            AreaFlags::READ | AreaFlags::WRITE | AreaFlags::CACHEABLE,
        )
        .map_err(SpawnError::Aspace)?;
    let proc = Arc::new(Process {
        pid: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        name,
        space,
        image: SpinLock::new(Some(image)),
        threads: AtomicUsize::new(0),
        scenario,
        arg,
    });
    let mut frame = Box::new(TrapFrame::new(loaded.entry.as_u64(), STACK_TOP, true));
    frame.rdi = arg;
    let pid = proc.pid;
    add_thread(&proc, frame);
    drop(proc);
    Ok(pid)
}

fn add_thread(proc: &Arc<Process>, frame: Box<TrapFrame>) -> u64 {
    // Counted before it can run, so a thread ending cannot see zero early.
    proc.threads.fetch_add(1, Ordering::AcqRel);
    let tid = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let task = Box::new(Task {
        tid,
        proc: proc.clone(),
        frame,
    });
    let idle: alloc::vec::Vec<usize> = {
        let mut s = SCHED.lock();
        s.ready.push_back(task);
        let me = cpu_id();
        (0..crate::machine::CPU_COUNT.load(Ordering::Relaxed))
            .filter(|&c| c != me && s.current[c].is_none() && apic::online().contains(c))
            .collect()
    };
    for c in idle {
        apic::send_ipi(c, VEC_WAKE);
    }
    tid
}

/// Starts a thread of the running task's process at `entry` with `stack`.
pub fn spawn_thread(entry: u64, stack: u64, arg: u64) -> u64 {
    let proc = current_process().expect("a task is running");
    let mut frame = Box::new(TrapFrame::new(entry, stack, true));
    frame.rdi = arg;
    add_thread(&proc, frame)
}

/// The process of the task running on this CPU.
pub fn current_process() -> Option<Arc<Process>> {
    SCHED.lock().current[cpu_id()]
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
                .is_some_and(|l| Arc::ptr_eq(l, target));
            if !same {
                let old = s.loaded[cpu].take();
                let old_ref: &Space = old.as_deref().unwrap_or(sys.kernel());
                sys.switch(Some(old_ref), target)
                    .expect("an ASID is always available: there are more ASIDs than CPUs");
                s.loaded[cpu] = Some(target.clone());
            }
            s.current[cpu] = Some(task);
        }
        None => {
            *frame = idle_frame(cpu);
            if let Some(old) = s.loaded[cpu].take() {
                sys.switch(Some(&old), sys.kernel())
                    .expect("the kernel space needs no ASID");
            }
            s.current[cpu] = None;
        }
    }
}

/// Timer tick or wake-up: round robin.
pub fn tick(frame: &mut TrapFrame) {
    let cpu = cpu_id();
    let mut s = SCHED.lock();
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
    let mut s = SCHED.lock();
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
        let mut s = SCHED.lock();
        let next = s.ready.pop_front();
        run(&mut s, cpu, &mut frame, next);
    }
    crate::cpu::enter(cpu, &frame)
}

/// Ends the running thread with `code` (`reason`: why it was killed).
pub fn exit_current(frame: &mut TrapFrame, code: i64, reason: Option<&str>) {
    let cpu = cpu_id();
    let task = {
        let mut s = SCHED.lock();
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
    }
    if proc.threads.fetch_sub(1, Ordering::AcqRel) > 1 {
        return;
    }
    finish_process(proc, code, reason.is_some());
    // Starting the next scenario may have made tasks ready while this CPU
    // went idle.
    let mut s = SCHED.lock();
    if s.current[cpu].is_none() && !s.ready.is_empty() {
        let next = s.ready.pop_front();
        run(&mut s, cpu, frame, next);
    }
}

/// Destroys a process whose last thread ended: its address space (every
/// area, frame, page table and the ASID), then its executable image.
fn finish_process(proc: Arc<Process>, code: i64, killed: bool) {
    let resident = proc.space.resident_pages();
    let tables = proc.space.page_table_frames();
    let image = proc.image.lock().take();
    let (pid, name, scen, arg) = (proc.pid, proc.name, proc.scenario, proc.arg);
    // The spawner may still be returning with its reference (the process
    // can end on another CPU first): wait for such transient references.
    let mut spins = 0u64;
    while (Arc::strong_count(&proc) > 1 || Arc::strong_count(&proc.space) > 1)
        && spins < 100_000_000
    {
        crate::sync::relax();
        spins += 1;
    }
    let unique = Arc::strong_count(&proc) == 1 && Arc::strong_count(&proc.space) == 1;
    drop(proc);
    let released = match image {
        Some(img) => img.release(SYSTEM.machine()).is_ok(),
        None => true,
    };
    let ok = unique && released;
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
    scenario::process_ended(scen, name, arg, code, ok, killed);
}

/// Kills the running thread, reporting `why`.
pub fn kill_current(frame: &mut TrapFrame, why: &str) {
    exit_current(frame, -1, Some(why));
}

fn reason_text(r: FaultReason) -> &'static str {
    match r {
        FaultReason::NoArea => "no area",
        FaultReason::Partial => "area being set up",
        FaultReason::Access => "access not permitted by the area",
        FaultReason::NoMemory => "out of memory",
    }
}

fn access_text(a: Access) -> &'static str {
    match a {
        Access::Read => "read",
        Access::Write => "write",
        Access::Exec => "execute",
    }
}

/// A page fault from user mode: served by aspace, or the thread dies.
pub fn user_page_fault(frame: &mut TrapFrame, addr: VirtAddr, access: Access) {
    let Some(proc) = current_process() else {
        panic!("user fault without a task");
    };
    let why: String = if addr.as_u64() >= proc.space.user_end() {
        alloc::format!(
            "page fault at {addr} ({}): kernel address, rip {:#x}",
            access_text(access),
            frame.rip
        )
    } else {
        match proc.space.page_fault(addr, access, false) {
            FaultOutcome::Ok => return,
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
                    "page fault at {addr} ({}): {}{}, rip {:#x}",
                    access_text(access),
                    reason_text(r),
                    area,
                    frame.rip
                )
            }
        }
    };
    drop(proc);
    kill_current(frame, &why);
}
