//! The scenarios the kernel runs after boot, one after the other: each
//! starts a group of user programs and ends when the last of them has
//! ended; then its counters and the frame balance are printed.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::sync::SpinLock;
use crate::{console, kprintln, sched, Report};

include!(concat!(env!("OUT_DIR"), "/user_programs.rs"));

/// How a program is expected to end.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Expect {
    /// `exit(code)`.
    Exit(i64),
    /// Killed by the kernel (a fault).
    Killed,
    /// Either: a process made by `FORK`, whose ending its parent checks
    /// (`WAIT`).
    Forked,
}

/// How many instances of a program to start.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Copies {
    /// One, with the spawn's argument.
    One,
    /// As many as the kernel has user ASIDs plus this many (so ASIDs are
    /// stolen whatever the CPU count), with arguments `arg`, `arg + 1`, ...
    AsidsPlus(usize),
}

/// Program `prog` started with `arg` in `rdi` and the process numbers of
/// the scenario's spawns `peers` (indexes into its list) in `rsi` and
/// `rdx`.
pub struct Spawn {
    pub prog: &'static str,
    pub arg: u64,
    pub expect: Expect,
    pub peers: &'static [usize],
    pub copies: Copies,
}

const fn run(prog: &'static str, arg: u64, expect: Expect) -> Spawn {
    Spawn {
        prog,
        arg,
        expect,
        peers: &[],
        copies: Copies::One,
    }
}

const fn with_peers(
    prog: &'static str,
    arg: u64,
    expect: Expect,
    peers: &'static [usize],
) -> Spawn {
    Spawn {
        prog,
        arg,
        expect,
        peers,
        copies: Copies::One,
    }
}

/// One scenario.
pub struct Scenario {
    pub name: &'static str,
    /// Fewer CPUs than this: the scenario is skipped, with the reason.
    pub min_cpus: usize,
    pub spawns: &'static [Spawn],
}

use Expect::{Exit, Killed};

/// A scenario still running after this many seconds (by the boot CPU's
/// timer) fails, naming the tasks still alive, and the run ends; the
/// command line's `watchdog=SECONDS` changes it.
pub const DEFAULT_TIMEOUT_S: u64 = 60;

static TIMEOUT_S: AtomicU64 = AtomicU64::new(DEFAULT_TIMEOUT_S);

fn timeout_ticks() -> u64 {
    TIMEOUT_S.load(Ordering::Relaxed) * 1_000_000 / crate::TIMESLICE_US as u64
}

/// Scenarios run only when the command line names them.
pub static ON_REQUEST: &[Scenario] = &[Scenario {
    name: "hang",
    min_cpus: 1,
    spawns: &[run("spin", 0, Exit(0))],
}];

/// The scenarios to run, in order.
static SELECTED: SpinLock<Vec<&'static Scenario>> = SpinLock::new(Vec::new());

/// Applies the kernel command line (after the kernel's file name, which
/// multiboot loaders put first): `scenarios=NAME,NAME,...` runs those
/// (from [`SCENARIOS`] and [`ON_REQUEST`]) instead of every scenario of
/// [`SCENARIOS`]; `watchdog=SECONDS` sets the scenario timeout.
pub fn configure(cmdline: &str) -> Result<(), alloc::string::String> {
    let mut selected: Vec<&'static Scenario> = SCENARIOS.iter().collect();
    // The loader puts the kernel's file name first.
    for word in cmdline.split_ascii_whitespace().skip(1) {
        match word.split_once('=') {
            Some(("scenarios", names)) => {
                selected.clear();
                for n in names.split(',') {
                    let sc = SCENARIOS
                        .iter()
                        .chain(ON_REQUEST)
                        .find(|s| s.name == n)
                        .ok_or_else(|| alloc::format!("no scenario {n:?}"))?;
                    selected.push(sc);
                }
            }
            Some(("watchdog", secs)) => {
                let s: u64 = secs
                    .parse()
                    .ok()
                    .filter(|s| (1..=3600).contains(s))
                    .ok_or_else(|| alloc::format!("watchdog={secs}: 1 to 3600 seconds"))?;
                TIMEOUT_S.store(s, Ordering::Relaxed);
            }
            _ => return Err(alloc::format!("unknown option {word:?}")),
        }
    }
    *SELECTED.lock() = selected;
    Ok(())
}

/// Every scenario, in order.
pub static SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "hello",
        min_cpus: 1,
        spawns: &[run("hello", 7, Exit(0))],
    },
    Scenario {
        name: "heap",
        min_cpus: 1,
        spawns: &[run("heap", 0, Exit(0))],
    },
    Scenario {
        name: "stack",
        min_cpus: 1,
        spawns: &[run("stack", 0, Exit(0))],
    },
    Scenario {
        name: "stack-overflow",
        min_cpus: 1,
        spawns: &[run("stack_overflow", 0, Killed)],
    },
    Scenario {
        name: "areas",
        min_cpus: 1,
        spawns: &[run("areas", 0, Exit(0))],
    },
    Scenario {
        name: "pager",
        min_cpus: 1,
        spawns: &[
            run("pager", 0, Exit(0)),
            with_peers("pager_client", 0, Exit(0), &[0]),
        ],
    },
    Scenario {
        name: "pager-slow",
        min_cpus: 1,
        spawns: &[
            run("pager", 1, Exit(0)),
            with_peers("pager_client", 1, Exit(0), &[0]),
        ],
    },
    Scenario {
        name: "pager-dying",
        min_cpus: 1,
        spawns: &[
            run("pager", 2, Exit(0)),
            with_peers("pager_client", 2, Killed, &[0]),
        ],
    },
    Scenario {
        name: "pager-refused",
        min_cpus: 1,
        spawns: &[
            run("pager", 3, Exit(0)),
            with_peers("pager_client", 3, Killed, &[0]),
        ],
    },
    Scenario {
        name: "pager-flood",
        min_cpus: 1,
        spawns: &[
            run("pager", 4, Exit(0)),
            with_peers("pager_client", 4, Killed, &[0]),
            with_peers("pager_client", 5, Exit(0), &[0]),
        ],
    },
    Scenario {
        name: "jit",
        min_cpus: 1,
        spawns: &[run("jit", 0, Exit(0))],
    },
    Scenario {
        name: "bad-accesses",
        min_cpus: 1,
        spawns: &[
            run("bad", 0, Killed),
            run("bad", 1, Killed),
            run("bad", 2, Killed),
            run("bad", 3, Killed),
            run("bad", 4, Killed),
            run("jit", 1, Killed),
        ],
    },
    Scenario {
        name: "bad-arguments",
        min_cpus: 1,
        spawns: &[
            run("threads", 0, Exit(0)),
            run("flags", 0, Exit(0)),
            run("edge", 0, Killed),
            run("edge", 1, Killed),
        ],
    },
    Scenario {
        name: "share",
        min_cpus: 1,
        spawns: &[
            with_peers("share_writer", 77, Exit(0), &[1]),
            with_peers("share_reader", 77, Exit(0), &[0]),
        ],
    },
    Scenario {
        name: "share-guard",
        min_cpus: 1,
        spawns: &[
            with_peers("share_owner", 5, Exit(0), &[1, 2]),
            with_peers("share_reader", 5, Exit(0), &[0]),
            with_peers("share_thief", 5, Exit(0), &[0, 1]),
            run("share_flood", 0, Exit(0)),
        ],
    },
    Scenario {
        name: "linux-alloc",
        min_cpus: 1,
        spawns: &[
            run("linux_alloc", 0, Exit(0)),
            run("linux_alloc", 1, Killed),
            run("linux_alloc", 2, Killed),
            run("linux_alloc", 3, Killed),
            run("linux_alloc", 4, Exit(0)),
            run("linux_alloc", 5, Exit(0)),
            run("linux_alloc", 6, Killed),
        ],
    },
    Scenario {
        name: "fork",
        min_cpus: 1,
        spawns: &[run("fork", 0, Exit(0))],
    },
    Scenario {
        name: "shootdown",
        min_cpus: 2,
        spawns: &[run("shootdown", 0, Killed)],
    },
    Scenario {
        name: "asid-pressure",
        min_cpus: 1,
        spawns: &[Spawn {
            prog: "pressure",
            arg: 0,
            expect: Exit(0),
            peers: &[],
            copies: Copies::AsidsPlus(3),
        }],
    },
];

/// A process of the running scenario.
struct Task {
    pid: u64,
    prog: &'static str,
    expect: Expect,
    ended: bool,
}

struct State {
    index: usize,
    live: usize,
    ok: bool,
    report: Option<Report>,
    tasks: Vec<Task>,
    /// Boot-CPU timer ticks when the scenario started.
    started: u64,
}

static STATE: SpinLock<State> = SpinLock::new(State {
    index: 0,
    live: 0,
    ok: true,
    report: None,
    tasks: Vec::new(),
    started: 0,
});

/// Set when any scenario (or boot check) failed.
pub static FAILED: AtomicBool = AtomicBool::new(false);

/// Timer ticks of the boot CPU (the scenario clock).
pub static BSP_TICKS: AtomicU64 = AtomicU64::new(0);

fn program(name: &str) -> Option<&'static [u8]> {
    PROGRAMS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

fn finish_run() -> ! {
    let failed = FAILED.load(Ordering::SeqCst);
    kprintln!(
        "end: frames in use {}, kernel heap in use {} bytes",
        crate::mm::FRAMES.in_use(),
        crate::mm::heap_used()
    );
    kprintln!(
        "{}",
        if failed {
            "SOME SCENARIOS FAILED"
        } else {
            "ALL SCENARIOS PASSED"
        }
    );
    console::exit(!failed);
}

/// Starts scenario `index` (or ends the run after the last one); skips
/// scenarios that need more CPUs than are running, saying why.
fn start(st: &mut State, mut index: usize) {
    let cpus = crate::machine::CPU_COUNT.load(Ordering::Relaxed);
    let list = SELECTED.lock();
    while let Some(sc) = list.get(index) {
        if cpus >= sc.min_cpus {
            break;
        }
        kprintln!("== scenario {}: start", sc.name);
        kprintln!(
            "== scenario {}: SKIPPED: needs {} CPUs, {} running",
            sc.name,
            sc.min_cpus,
            cpus
        );
        index += 1;
    }
    let Some(&sc) = list.get(index) else {
        finish_run();
    };
    drop(list);
    st.index = index;
    st.ok = true;
    st.report = Some(Report::start(sc.name));
    st.live = 0;
    st.tasks.clear();
    st.started = BSP_TICKS.load(Ordering::Relaxed);
    // Every process number first, so each program can be told its peers'.
    let asids = crate::ASIDS.load(Ordering::Relaxed) as usize;
    let first: Vec<u64> = sc
        .spawns
        .iter()
        .map(|s| {
            let n = match s.copies {
                Copies::One => 1,
                Copies::AsidsPlus(k) => asids + k,
            };
            let first = sched::reserve_pid();
            (1..n).for_each(|_| {
                sched::reserve_pid();
            });
            first
        })
        .collect();
    for (i, s) in sc.spawns.iter().enumerate() {
        let n = match s.copies {
            Copies::One => 1,
            Copies::AsidsPlus(k) => asids + k,
        };
        let Some(bytes) = program(s.prog) else {
            kprintln!("{}: no program {}", sc.name, s.prog);
            st.ok = false;
            continue;
        };
        let peer = |j: usize| s.peers.get(j).map_or(0, |&p| first[p]);
        for c in 0..n as u64 {
            let (pid, arg) = (first[i] + c, s.arg + c);
            // Recorded first: the task may end on another CPU before
            // `spawn` returns (it then waits for this lock).
            st.tasks.push(Task {
                pid,
                prog: s.prog,
                expect: s.expect,
                ended: false,
            });
            st.live += 1;
            match sched::spawn(s.prog, bytes, pid, [arg, peer(0), peer(1)], index) {
                Ok(()) => kprintln!("{}: started task {} ({}) arg {}", sc.name, pid, s.prog, arg),
                Err(e) => {
                    kprintln!("{}: cannot start {}: {}", sc.name, s.prog, e);
                    st.tasks.pop();
                    st.live -= 1;
                    st.ok = false;
                }
            }
        }
    }
    if st.live == 0 {
        end(st);
    }
}

fn end(st: &mut State) {
    let report = st.report.take().expect("a scenario is running");
    if !report.finish(st.ok, 0) {
        FAILED.store(true, Ordering::SeqCst);
    }
    let next = st.index + 1;
    start(st, next);
}

/// Starts the first scenario.
pub fn start_all() {
    let mut st = STATE.lock();
    start(&mut st, 0);
}

/// Process `pid` of scenario `scen` ended (`clean`: it gave everything
/// back).
pub fn process_ended(scen: usize, pid: u64, code: i64, clean: bool, killed: bool) {
    let mut st = STATE.lock();
    let sc = SELECTED.lock()[scen];
    let got = if killed { Killed } else { Exit(code) };
    let forked = |e: &Expect| *e == Expect::Forked;
    let task = st.tasks.iter_mut().find(|t| t.pid == pid && !t.ended);
    let (name, expect) = match task {
        Some(t) => {
            t.ended = true;
            (t.prog, Some(t.expect))
        }
        None => ("?", None),
    };
    if !(expect == Some(got) || expect.as_ref().is_some_and(forked)) || !clean {
        kprintln!(
            "{}: task {} ({}) ended as {:?}, expected {:?}",
            sc.name,
            pid,
            name,
            got,
            expect
        );
        st.ok = false;
    }
    st.live -= 1;
    if st.live == 0 {
        end(&mut st);
    }
}

/// Process `pid` (running `prog`) was forked by a process of the running
/// scenario: the scenario waits for it too; its ending is its parent's to
/// check.
pub fn process_forked(pid: u64, prog: &'static str) {
    let mut st = STATE.lock();
    st.tasks.push(Task {
        pid,
        prog,
        expect: Expect::Forked,
        ended: false,
    });
    st.live += 1;
}

/// A timer tick of the boot CPU: a scenario running for longer than
/// the timeout (`watchdog=`) fails with the tasks still alive, and the run ends
/// (they cannot be trusted to end).
pub fn watchdog() {
    let now = BSP_TICKS.fetch_add(1, Ordering::Relaxed) + 1;
    let Some(st) = STATE.try_lock() else { return };
    if st.report.is_none() || now - st.started <= timeout_ticks() {
        return;
    }
    let Some(sc) = SELECTED.try_lock().map(|l| l[st.index]) else {
        return;
    };
    let alive: Vec<alloc::string::String> = st
        .tasks
        .iter()
        .filter(|t| !t.ended)
        .map(|t| alloc::format!("{} ({})", t.pid, t.prog))
        .collect();
    kprintln!(
        "== scenario {}: FAIL: still running after {} s: tasks {}",
        sc.name,
        TIMEOUT_S.load(Ordering::Relaxed),
        alive.join(", ")
    );
    FAILED.store(true, Ordering::SeqCst);
    finish_run();
}
