//! The differential test: the same random lines run on aspace (a `LinuxMm`
//! on the simulated machine, 4 CPUs taking turns at the accesses) and on
//! this machine's Linux kernel (`linux-ref` in a child process), compared
//! after every step: the outcome (value or errno), the maps of the window
//! and of the break's span, the digest of every non-zero readable page and
//! the ranges past their objects' ends.
//!
//! 20,000 steps by default, as sequences of 2,500 from fresh runners and
//! machines on parallel workers, every other one with an `RLIMIT_MEMLOCK`
//! of 24 pages binding on both sides (the runner drops `CAP_IPC_LOCK`);
//! `ASPACE_LINUX_STEPS` sets the number of steps, `ASPACE_LINUX_SEED` with
//! it replays one sequence, `ASPACE_LINUX_MEMLOCK` its limit (a divergence
//! prints all three).
//!
//! Pinned policies (see the crate README): no `rwx` (aspace refuses W+X);
//! the runner allocates every page of its shmem objects up front (and
//! again after each `MADV_REMOVE`'s hole), so that Linux cannot drop a
//! clean page from its cache (`mincore` would show it) when the machine
//! drops caches.
//! `MAP_GROWSDOWN` mappings are in, and an access below a readable one at
//! least `stack_guard_gap` above the window's start grows it where Linux
//! does (the runner reads it in a child sharing its memory; `LinuxMm::expand_stack`
//! on the aspace side); below the window's first 256 pages or an
//! unreadable stack, an access no mapping holds faults on both sides. Private file mappings are in (copy-on-write
//! in the core: the file's frames lent, copied at the first write;
//! `ASPACE_LINUX_NO_PRIVATE_FILES=1` makes them shared). Maps are compared after
//! coalescing ([`MapsMatch::Coalesced`]): Linux keeps some mergeable
//! neighbours apart for reasons its maps do not show. A line the layer
//! would not do (`ENOSYS`, see `aspace_linux::mm`; none is left) would be
//! skipped on both sides and counted.

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
    cfg.write_exec = false;
    // MCL_CURRENT would fault in the runner's own 4 GiB heap arena
    // (`runner::alloc`), and with RLIMIT_MEMLOCK it counts every mapping of
    // the runner's process: tests/mm.rs checks it on aspace alone.
    cfg.lock_current = false;
    // Guard pages where this kernel has them (and shows them to the runner).
    cfg.guards = h.sysctl.iter().any(|(k, v)| k == "madv.guard" && v == "1");
    // mseal where the kernel has it (Linux 6.10+); ASPACE_LINUX_NO_SEAL=1
    // leaves it out.
    cfg.seal = std::env::var_os("ASPACE_LINUX_NO_SEAL").is_none()
        && h.sysctl.iter().any(|(k, v)| k == "mseal" && v == "1");
    cfg
}

/// Private file mappings made shared (`ASPACE_LINUX_NO_PRIVATE_FILES=1`,
/// to tell a copy-on-write problem from others).
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

/// Runs one sequence of `steps` lines from `seed` on both sides, comparing
/// after each, with `RLIMIT_MEMLOCK` binding at `memlock` pages if given
/// (the runner drops `CAP_IPC_LOCK`); returns the tally of outcomes or the
/// divergence, printed.
fn sequence(
    seed: u64,
    steps: usize,
    memlock: Option<u64>,
) -> Result<BTreeMap<String, usize>, String> {
    let limit = memlock.map(|p| p.to_string());
    let args: Vec<&str> = match &limit {
        Some(p) => vec!["--memlock", p],
        None => vec![],
    };
    let mut linux =
        LinuxRef::spawn_with(env!("CARGO_BIN_EXE_linux-ref"), &args).expect("start linux-ref");
    let h = linux.header().clone();
    let mut ours = SimEngine::new(&h, 4).expect("simulated machine");
    let mut gen = Generator::new(config(&h), seed);
    let ranges = [h.window, h.brk_span];
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    let mut recent: Vec<String> = Vec::new();
    let mut before: Vec<String> = Vec::new();
    let mut done = 0usize;
    let pin_private = std::env::var_os("ASPACE_LINUX_NO_PRIVATE_FILES").is_some();
    // `ASPACE_LINUX_PRINT=1`: every line, as it runs.
    let print = std::env::var_os("ASPACE_LINUX_PRINT").is_some();
    while done < steps {
        let chunk: Vec<Line> = gen
            .lines((steps - done).min(500))
            .into_iter()
            .map(|l| if pin_private { pin(l) } else { l })
            .collect();
        // Our side first (it does not depend on Linux's answers); a line it
        // could not do (ENOSYS: none now) would be left out on both sides.
        let mut sent = Vec::new();
        let mut mine = Vec::new();
        for line in chunk {
            done += 1;
            if print {
                println!("{line}");
            }
            let r = ours.run(&line);
            if unsupported(r.outcome) {
                *tally
                    .entry(format!("skipped {}", what(&line, &r)))
                    .or_default() += 1;
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
                let show = |maps: &[aspace_linux::maps::MapsLine]| {
                    maps.iter()
                        .map(|m| m.to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                let memlock =
                    memlock.map_or(String::new(), |p| format!(" ASPACE_LINUX_MEMLOCK={p}"));
                return Err(format!(
                    "ASPACE_LINUX_SEED={seed:#x} ASPACE_LINUX_STEPS={step}{memlock}: step {step} `{line}`: {d}\n\
                     window {:#x}-{:#x}; last lines sent to both:\n{}\nLinux's maps before:\n{}\n\
                     aspace's maps after:\n{}",
                    h.window.0,
                    h.window.1,
                    recent.join("\n"),
                    before.join("\n"),
                    show(&a.state.maps),
                ));
            }
            before = l.state.maps.iter().map(|m| m.to_string()).collect();
            *tally.entry(what(line, l)).or_default() += 1;
        }
    }
    let status = linux.finish().expect("runner ends");
    if !status.success() {
        return Err(format!("seed {seed:#x}: runner exit status {status}"));
    }
    Ok(tally)
}

/// Steps per sequence: each starts from an empty window (a fresh runner and
/// machine), so the maps stay small enough to observe after every step.
const SEQUENCE: usize = 2500;

/// `RLIMIT_MEMLOCK` of every other sequence, in pages: small enough that
/// locked mappings meet it.
const MEMLOCK: u64 = 24;

#[test]
fn aspace_matches_linux_step_by_step() {
    let started = Instant::now();
    let steps = env_u64("ASPACE_LINUX_STEPS").unwrap_or(20_000) as usize;
    // One seed replays one sequence of that many steps (with
    // `ASPACE_LINUX_MEMLOCK` pages of RLIMIT_MEMLOCK if set); without it,
    // the steps are split into sequences of `SEQUENCE` from seeds 0xa5ace,
    // ..., every other one with `MEMLOCK`.
    let plan: Vec<(u64, usize, Option<u64>)> = match env_u64("ASPACE_LINUX_SEED") {
        Some(seed) => vec![(seed, steps, env_u64("ASPACE_LINUX_MEMLOCK"))],
        None => (0..steps.div_ceil(SEQUENCE))
            .map(|i| {
                let n = SEQUENCE.min(steps - i * SEQUENCE);
                (0xa5ace + i as u64, n, (i % 2 == 1).then_some(MEMLOCK))
            })
            .collect(),
    };
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Result<BTreeMap<String, usize>, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&(seed, n, memlock)) = plan.get(i) else {
                            return out;
                        };
                        out.push(sequence(seed, n, memlock));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker"))
            .collect()
    });
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for r in results {
        match r {
            Ok(t) => t
                .into_iter()
                .for_each(|(k, v)| *tally.entry(k).or_default() += v),
            Err(e) => panic!("divergence (replay with the variables below):\n{e}"),
        }
    }
    let compared: usize = tally
        .iter()
        .filter(|(k, _)| !k.starts_with("skipped"))
        .map(|(_, v)| v)
        .sum();
    println!(
        "{steps} steps in {} sequences, {compared} compared, in {:?}: {tally:#?}",
        plan.len(),
        started.elapsed()
    );
    assert!(
        compared * 10 >= steps * 9,
        "too many lines skipped: {compared} of {steps} compared"
    );
    for wanted in [
        "mmap ok",
        "munmap ok",
        "mprotect ok",
        "mprotect ENOMEM",
        "mremap ok",
        "madvise ok",
        "brk ok",
        "access ok",
        "access fault",
        "mmap EEXIST",
    ] {
        assert!(tally.contains_key(wanted), "no `{wanted}` in {tally:#?}");
    }
}
