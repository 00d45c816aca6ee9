//! The differential test: the same random lines run on aspace (a `LinuxMm`
//! on the simulated machine, 4 CPUs taking turns at the accesses) and on
//! this machine's Linux kernel (`linux-ref` in a child process), compared
//! after every step: the outcome (value or errno), the maps of the window
//! and of the break's span, the digest of every non-zero readable page and
//! the ranges past their objects' ends.
//!
//! `ASPACE_LINUX_SEED` replays one seed (printed on failure);
//! `ASPACE_LINUX_STEPS` sets the number of steps (20,000 by default).
//!
//! Pinned policies (see the crate README): no `rwx` (aspace refuses W+X),
//! no `MAP_GROWSDOWN` (aspace keeps a guard page below a stack, Linux a
//! 256-page placement gap), no private file mappings (aspace copies a page
//! at its first fault, Linux at its first write). Maps are compared after
//! coalescing ([`MapsMatch::Coalesced`]): Linux keeps some mergeable
//! neighbours apart for reasons its maps do not show. A line the layer
//! cannot do yet (`ENOSYS`: a cut the core's split would make) is skipped
//! on both sides and counted.

use aspace_linux::command::{Command, Line, Outcome};
use aspace_linux::gen::{GenConfig, Generator};
use aspace_linux::mm::sim::{unsupported, SimEngine};
use aspace_linux::protocol::{compare, MapsMatch, Response};
use aspace_linux::runner::LinuxRef;
use aspace_linux::Call;
use std::collections::BTreeMap;
use std::time::Instant;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .and_then(|v| aspace_linux::num::parse_u64(&v))
}

/// The generator's mix for this test (see the module docs).
fn config(h: &aspace_linux::protocol::Header) -> GenConfig {
    let mut cfg = GenConfig::new(h.window.0, h.window.1 - h.window.0);
    cfg.brk_span = Some(h.brk_span);
    cfg.growsdown = false;
    cfg.write_exec = false;
    cfg
}

/// Private file mappings are pinned out: their lines become shared.
fn pin(line: Line) -> Line {
    match line.command {
        Command::Call(Call::Mmap {
            addr,
            len,
            prot,
            mut flags,
            file: Some(file),
            offset,
        }) => {
            use aspace_linux::consts::{MAP_PRIVATE, MAP_SHARED};
            if flags.0 & MAP_PRIVATE != 0 {
                flags.0 = (flags.0 & !MAP_PRIVATE) | MAP_SHARED;
            }
            Line::from(Call::Mmap {
                addr,
                len,
                prot,
                flags,
                file: Some(file),
                offset,
            })
        }
        _ => line,
    }
}

fn what(line: &Line, r: &Response) -> String {
    match (&line.command, r.outcome) {
        (Command::Call(c), Outcome::Err(e)) => format!("{} {e}", c.name()),
        (Command::Call(c), _) => format!("{} ok", c.name()),
        (_, Outcome::Fault) => "access fault".into(),
        _ => "access ok".into(),
    }
}

#[test]
fn aspace_matches_linux_step_by_step() {
    let seed = env_u64("ASPACE_LINUX_SEED").unwrap_or(0xa5ace);
    let steps = env_u64("ASPACE_LINUX_STEPS").unwrap_or(20_000) as usize;
    let started = Instant::now();
    let mut linux = LinuxRef::spawn_at(env!("CARGO_BIN_EXE_linux-ref")).expect("start linux-ref");
    let h = linux.header().clone();
    let mut ours = SimEngine::new(&h, 4).expect("simulated machine");
    let mut gen = Generator::new(config(&h), seed);
    let ranges = [h.window, h.brk_span];
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    let mut recent: Vec<String> = Vec::new();
    let (mut done, mut compared) = (0usize, 0usize);
    let mut before: Vec<String> = Vec::new();
    while done < steps {
        let chunk: Vec<Line> = gen
            .lines((steps - done).min(500))
            .into_iter()
            .map(pin)
            .collect();
        // Our side first (it does not depend on Linux's answers); lines it
        // cannot do yet are left out on both sides.
        let mut sent = Vec::new();
        let mut mine = Vec::new();
        for line in chunk {
            done += 1;
            let r = ours.run(&line);
            if unsupported(r.outcome) {
                *tally.entry(format!("skipped {}", what(&line, &r))).or_default() += 1;
                continue;
            }
            sent.push((done, line));
            mine.push(r);
        }
        let lines: Vec<Line> = sent.iter().map(|(_, l)| l.clone()).collect();
        let theirs = linux.run_all(&lines).expect("linux-ref answers");
        for (((step, line), a), l) in sent.iter().zip(&mine).zip(&theirs) {
            recent.push(line.to_string());
            if recent.len() > 16 {
                recent.remove(0);
            }
            if let Err(d) = compare(l, a, &ranges, MapsMatch::Coalesced) {
                panic!(
                    "seed {seed:#x} (ASPACE_LINUX_SEED={seed:#x}), step {step}: `{line}`: {d}\n\
                     window {:#x}-{:#x}; last lines sent to both:\n{}\nLinux's maps before:\n{}\n\
                     aspace's maps after:\n{}",
                    h.window.0,
                    h.window.1,
                    recent.join("\n"),
                    before.join("\n"),
                    a.state.maps.iter().map(|m| m.to_string()).collect::<Vec<_>>().join("\n"),
                );
            }
            before = l.state.maps.iter().map(|m| m.to_string()).collect();
            *tally.entry(what(line, l)).or_default() += 1;
            compared += 1;
        }
    }
    println!(
        "seed {seed:#x}: {done} steps, {compared} compared in {:?}: {tally:#?}",
        started.elapsed()
    );
    assert!(
        compared * 10 >= done * 6,
        "too many lines skipped: {compared} of {done} compared"
    );
    for wanted in ["mmap ok", "munmap ok", "mprotect ok", "brk ok", "access ok"] {
        assert!(tally.contains_key(wanted), "no `{wanted}` in {tally:#?}");
    }
    let status = linux.finish().expect("runner ends");
    assert!(status.success(), "runner exit status {status}");
}
