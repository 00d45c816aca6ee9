//! The scenarios the kernel runs after boot, one after the other: each
//! starts a group of user programs and ends when the last of them has
//! ended; then its counters and the frame balance are printed.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::sync::SpinLock;
use crate::{kprintln, sched, serial, Report};

include!(concat!(env!("OUT_DIR"), "/user_programs.rs"));

/// How a program is expected to end.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Expect {
    /// `exit(code)`.
    Exit(i64),
    /// Killed by the kernel (a fault).
    Killed,
}

/// Program `prog` started with `arg` in `rdi`.
pub struct Spawn {
    pub prog: &'static str,
    pub arg: u64,
    pub expect: Expect,
}

const fn run(prog: &'static str, arg: u64, expect: Expect) -> Spawn {
    Spawn { prog, arg, expect }
}

/// One scenario.
pub struct Scenario {
    pub name: &'static str,
    pub spawns: &'static [Spawn],
}

use Expect::{Exit, Killed};

/// Every scenario, in order.
pub static SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "hello",
        spawns: &[run("hello", 7, Exit(0))],
    },
    Scenario {
        name: "heap",
        spawns: &[run("heap", 0, Exit(0))],
    },
    Scenario {
        name: "stack",
        spawns: &[run("stack", 0, Exit(0))],
    },
    Scenario {
        name: "jit",
        spawns: &[run("jit", 0, Exit(0))],
    },
    Scenario {
        name: "bad-accesses",
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
        name: "share",
        spawns: &[
            run("share_writer", 77, Exit(0)),
            run("share_reader", 77, Exit(0)),
        ],
    },
    Scenario {
        name: "shootdown",
        spawns: &[run("shootdown", 0, Exit(0))],
    },
    Scenario {
        name: "asid-pressure",
        spawns: &[
            run("pressure", 0, Exit(0)),
            run("pressure", 1, Exit(0)),
            run("pressure", 2, Exit(0)),
            run("pressure", 3, Exit(0)),
            run("pressure", 4, Exit(0)),
            run("pressure", 5, Exit(0)),
            run("pressure", 6, Exit(0)),
        ],
    },
];

struct State {
    index: usize,
    live: usize,
    ok: bool,
    report: Option<Report>,
}

static STATE: SpinLock<State> = SpinLock::new(State {
    index: 0,
    live: 0,
    ok: true,
    report: None,
});

/// Set when any scenario (or boot check) failed.
pub static FAILED: AtomicBool = AtomicBool::new(false);

fn program(name: &str) -> Option<&'static [u8]> {
    PROGRAMS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// Starts scenario `index` (or ends the run after the last one).
fn start(st: &mut State, index: usize) {
    let Some(sc) = SCENARIOS.get(index) else {
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
        serial::exit_qemu(if failed {
            serial::EXIT_FAILURE
        } else {
            serial::EXIT_SUCCESS
        });
    };
    st.index = index;
    st.ok = true;
    st.report = Some(Report::start(sc.name));
    st.live = 0;
    for s in sc.spawns {
        let Some(bytes) = program(s.prog) else {
            kprintln!("{}: no program {}", sc.name, s.prog);
            st.ok = false;
            continue;
        };
        match sched::spawn(s.prog, bytes, s.arg, index) {
            Ok(pid) => {
                st.live += 1;
                kprintln!(
                    "{}: started task {} ({}) arg {}",
                    sc.name,
                    pid,
                    s.prog,
                    s.arg
                );
            }
            Err(e) => {
                kprintln!("{}: cannot start {}: {}", sc.name, s.prog, e);
                st.ok = false;
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

/// A process of scenario `scen` ended.
pub fn process_ended(scen: usize, name: &str, arg: u64, code: i64, clean: bool, killed: bool) {
    let mut st = STATE.lock();
    let sc = &SCENARIOS[scen];
    let expect = sc
        .spawns
        .iter()
        .find(|s| s.prog == name && s.arg == arg)
        .map(|s| s.expect);
    let got = if killed { Killed } else { Exit(code) };
    if expect != Some(got) || !clean {
        kprintln!(
            "{}: task {} ended as {:?}, expected {:?}",
            sc.name,
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
