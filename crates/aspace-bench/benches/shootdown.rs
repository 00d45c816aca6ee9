//! Shootdown batching: shootdown rounds and IPIs per resize, destroy and
//! change_flags of 1…4096 resident pages, with the address space running on
//! no other CPU, on 1 or 3 other CPUs, or having run on another CPU that has
//! since switched away. Prints a markdown table (counters from
//! `sim.system().stats()` and the simulated hardware).
//!
//! `cargo bench -p aspace-bench --bench shootdown`

#![deny(clippy::undocumented_unsafe_blocks)]

use std::time::{Duration, Instant};

use aspace::{AreaFlags, StatsSnapshot, VirtAddr, PAGE_SIZE};
use aspace_bench::{sim, RW};
use aspace_sim::{Cpu, Sim};

const BASE: u64 = 0x40_0000;
const REPS: usize = 3;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Destroy,
    Resize,
    ChangeFlags,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Destroy => "area_destroy",
            Op::Resize => "area_resize (shrink by N)",
            Op::ChangeFlags => "area_change_flags (rw → r)",
        }
    }
}

#[derive(Clone, Copy)]
enum Scenario {
    /// Runs on the operating CPU only.
    Alone,
    /// Also runs on `n` other CPUs.
    Running(usize),
    /// Ran on one other CPU, which has switched to the kernel since.
    Idle,
}

impl Scenario {
    fn name(self) -> String {
        match self {
            Scenario::Alone => "this CPU only".into(),
            Scenario::Running(n) => format!("+{n} other CPU(s) running it"),
            Scenario::Idle => "+1 CPU that ran it, now idle".into(),
        }
    }
}

struct Outcome {
    core: StatsSnapshot,
    hw_ipis: u64,
    time: Duration,
}

struct Rig {
    cpus: Vec<Cpu>,
    space: aspace_sim::SpaceHandle,
    sim: Sim,
}

fn rig(scenario: Scenario) -> Rig {
    let sim = sim(4, 64 << 20, 64, 64);
    let space = sim.system().create().expect("space");
    let mut cpus: Vec<Cpu> = (0..4).map(|i| sim.cpu(i)).collect();
    cpus[0].switch_to(&space).expect("ASID");
    let others = match scenario {
        Scenario::Alone => 0,
        Scenario::Running(n) => n,
        Scenario::Idle => 1,
    };
    for cpu in &mut cpus[1..=others] {
        cpu.switch_to(&space).expect("ASID");
    }
    if let Scenario::Idle = scenario {
        cpus[1].idle();
    }
    Rig { cpus, space, sim }
}

/// One operation on `pages` resident pages, run as CPU 0.
fn measure(r: &mut Rig, op: Op, pages: u64) -> Outcome {
    let base = VirtAddr::new(BASE);
    let size = if op == Op::Resize { pages + 1 } else { pages };
    r.space
        .area_create(base, size * PAGE_SIZE, RW)
        .expect("free");
    for p in 0..size {
        r.cpus[0]
            .write_u64(VirtAddr::new(BASE + p * PAGE_SIZE), p)
            .expect("anonymous memory");
    }
    let before = r.sim.system().stats();
    let hw_before = r.sim.hardware().stats().ipis;
    let t = Instant::now();
    r.cpus[0]
        .run(|| match op {
            Op::Destroy => r.space.area_destroy(base),
            Op::Resize => r.space.area_resize(base, PAGE_SIZE),
            Op::ChangeFlags => r.space.area_change_flags(base, AreaFlags::READ),
        })
        .expect("operation");
    let time = t.elapsed();
    let out = Outcome {
        core: r.sim.system().stats().since(&before),
        hw_ipis: r.sim.hardware().stats().ipis - hw_before,
        time,
    };
    if op != Op::Destroy {
        r.cpus[0].run(|| r.space.area_destroy(base)).expect("area");
    }
    out
}

fn main() {
    let scenarios = [
        Scenario::Alone,
        Scenario::Running(1),
        Scenario::Running(3),
        Scenario::Idle,
    ];
    println!("## Shootdown batching (simulated machine, 4 CPUs; the operation runs on CPU 0)\n");
    println!("Each cell: shootdown rounds / IPIs sent (core counter) / IPIs delivered (hardware counter), for one operation; then the fastest of {REPS} runs.\n");
    let mut head = vec!["operation".to_owned(), "pages".to_owned()];
    head.extend(scenarios.iter().map(|s| s.name()));
    println!("| {} |", head.join(" | "));
    println!("|{}", "---|".repeat(head.len()));
    let mut remote_when_alone = 0;
    let mut max_rounds = 0;
    for op in [Op::Resize, Op::Destroy, Op::ChangeFlags] {
        for pages in [1u64, 16, 256, 4096] {
            let mut cells = vec![op.name().to_owned(), pages.to_string()];
            for &sc in &scenarios {
                let mut r = rig(sc);
                let runs: Vec<Outcome> = (0..REPS).map(|_| measure(&mut r, op, pages)).collect();
                let o = &runs[0];
                let fastest = runs.iter().map(|o| o.time).min().unwrap();
                if let Scenario::Alone = sc {
                    remote_when_alone += runs.iter().map(|o| o.core.ipis + o.hw_ipis).sum::<u64>();
                }
                max_rounds = runs
                    .iter()
                    .map(|o| o.core.shootdown_rounds)
                    .fold(max_rounds, u64::max);
                cells.push(format!(
                    "{} / {} / {} — {:.1} µs",
                    o.core.shootdown_rounds,
                    o.core.ipis,
                    o.hw_ipis,
                    fastest.as_secs_f64() * 1e6
                ));
            }
            println!("| {} |", cells.join(" | "));
        }
    }
    println!();
    println!(
        "Remote IPIs while the space ran on no other CPU: {remote_when_alone}{}",
        if remote_when_alone == 0 {
            " (as required)"
        } else {
            " — EXPECTED 0"
        }
    );
    println!(
        "Most shootdown rounds for one operation: {max_rounds}{}",
        if max_rounds <= 1 {
            " (one batch per operation, whatever the page count)"
        } else {
            " — batching is broken"
        }
    );
}
