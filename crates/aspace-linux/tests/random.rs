//! Random call sequences through `linux-ref`, checked for the runner's own
//! consistency: every maps line it prints reads back and prints again the
//! same; every outcome has the kind its command allows; a successful call
//! left the maps it promises; accesses fault exactly where the maps forbid.
//!
//! `ASPACE_LINUX_SEED` replays one seed; `ASPACE_LINUX_STEPS` sets the
//! number of steps (2,000 by default).

use aspace_linux::call::Call;
use aspace_linux::consts::PAGE_SIZE;
use aspace_linux::gen::{GenConfig, Generator};
use aspace_linux::maps::MapsLine;
use aspace_linux::protocol::{Response, State};
use aspace_linux::runner::LinuxRef;
use aspace_linux::{Command, Errno, Line, Outcome};
use std::collections::BTreeMap;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .and_then(|v| aspace_linux::num::parse_u64(&v))
}

fn covering(state: &State, addr: u64) -> Option<&MapsLine> {
    state.maps.iter().find(|l| l.start <= addr && addr < l.end)
}

fn in_bus(state: &State, addr: u64) -> bool {
    state.bus.iter().any(|&(lo, hi)| lo <= addr && addr < hi)
}

/// Checks one step; returns what is wrong.
fn check(line: &Line, r: &Response, raw: &[String], window: (u64, u64)) -> Result<(), String> {
    // The block prints again exactly as the runner printed it: maps lines
    // round-trip through `MapsLine::parse` and `Display`.
    let mut again = String::new();
    r.write_block(&mut again);
    let printed: Vec<&str> = again.lines().collect();
    if printed[..printed.len() - 1] != raw.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        return Err(format!(
            "block does not print back:\n{}\nvs\n{again}",
            raw.join("\n")
        ));
    }
    if r.command != line.command.to_string() {
        return Err(format!("echo `{}`", r.command));
    }
    let s = &r.state;
    for pair in s.maps.windows(2) {
        if pair[0].end > pair[1].start {
            return Err(format!(
                "maps overlap or out of order: {} / {}",
                pair[0], pair[1]
            ));
        }
    }
    let (lo, hi) = window;
    for l in &s.maps {
        if l.start < hi && l.end > lo && (l.start < lo || l.end > hi) {
            return Err(format!("a mapping crosses the window's edge: {l}"));
        }
    }
    for &(page, _) in &s.pages {
        match covering(s, page) {
            Some(l) if l.prot.read() && !in_bus(s, page) => {}
            _ => return Err(format!("digest of a page that is not readable: {page:#x}")),
        }
    }
    let o = r.outcome;
    let ok_kind = match &line.command {
        Command::Call(Call::Mmap { .. } | Call::Mremap { .. }) => {
            matches!(o, Outcome::Addr(_) | Outcome::Err(_))
        }
        Command::Call(Call::Brk { .. }) => matches!(o, Outcome::Addr(_)),
        Command::Call(Call::Mincore { .. }) => matches!(o, Outcome::Resident(_) | Outcome::Err(_)),
        Command::Call(_) => matches!(o, Outcome::Ok | Outcome::Err(_)),
        Command::Write { .. } => matches!(o, Outcome::Ok | Outcome::Fault),
        Command::Read { .. } => matches!(o, Outcome::Byte(_) | Outcome::Fault),
    };
    if !ok_kind {
        return Err(format!("outcome {o} for this command"));
    }
    match (&line.command, o) {
        (
            Command::Call(Call::Mmap {
                addr,
                len,
                prot,
                flags,
                ..
            }),
            Outcome::Addr(got),
        ) => {
            if flags.fixed() && got != *addr {
                return Err(format!("fixed mmap placed at {got:#x}"));
            }
            if got >= lo && got < hi {
                let end = got + len.div_ceil(PAGE_SIZE) * PAGE_SIZE;
                let mut at = got;
                while at < end {
                    let l = covering(s, at)
                        .ok_or_else(|| format!("mapped {at:#x} missing from the maps"))?;
                    if l.prot.0 != prot.0 & 7 || l.shared != flags.shared() {
                        return Err(format!(
                            "mapped with {prot} shared={} but maps say {l}",
                            flags.shared()
                        ));
                    }
                    at = l.end;
                }
            }
        }
        (Command::Call(Call::Munmap { addr, len }), Outcome::Ok) => {
            let end = addr + len.div_ceil(PAGE_SIZE) * PAGE_SIZE;
            if let Some(l) = s.maps.iter().find(|l| l.start < end && l.end > *addr) {
                return Err(format!("unmapped range still has {l}"));
            }
        }
        (Command::Call(Call::Mprotect { addr, len, prot }), Outcome::Ok) if *len != 0 => {
            let end = addr + len.div_ceil(PAGE_SIZE) * PAGE_SIZE;
            for l in s.maps.iter().filter(|l| l.start < end && l.end > *addr) {
                if l.prot.0 != prot.0 & 7 {
                    return Err(format!("mprotect {prot} left {l}"));
                }
            }
        }
        (Command::Call(Call::Mincore { addr, len }), Outcome::Resident(r)) => {
            // One answer per page; a page holding data is resident.
            let end = addr + len.div_ceil(PAGE_SIZE) * PAGE_SIZE;
            let with_data = s
                .pages
                .iter()
                .filter(|&&(p, _)| p >= *addr && p < end)
                .count();
            if r.pages != len.div_ceil(PAGE_SIZE) || (r.resident as usize) < with_data {
                return Err(format!("mincore {o} where {with_data} pages hold data"));
            }
        }
        (Command::Write { addr, .. }, o) => {
            let allowed = covering(s, *addr).is_some_and(|l| l.prot.write()) && !in_bus(s, *addr);
            if allowed != (o == Outcome::Ok) {
                return Err(format!("write {o} where the maps allow it: {allowed}"));
            }
            if o == Outcome::Ok && covering(s, *addr).is_some_and(|l| l.prot.read()) {
                let page = addr & !(PAGE_SIZE - 1);
                if !s.pages.iter().any(|&(p, _)| p == page) {
                    return Err("a written readable page has no digest".into());
                }
            }
        }
        (Command::Read { addr }, o) => {
            let allowed = covering(s, *addr).is_some_and(|l| l.prot.read()) && !in_bus(s, *addr);
            if allowed == (o == Outcome::Fault) {
                return Err(format!("read {o} where the maps allow it: {allowed}"));
            }
            if let Outcome::Byte(b) = o {
                let page = addr & !(PAGE_SIZE - 1);
                if b != 0 && !s.pages.iter().any(|&(p, _)| p == page) {
                    return Err("a non-zero byte read from a page listed as zeros".into());
                }
            }
        }
        _ => {}
    }
    Ok(())
}

#[test]
fn random_sequences_keep_the_runner_consistent() {
    let seed = env_u64("ASPACE_LINUX_SEED").unwrap_or(0x5eed);
    let steps = env_u64("ASPACE_LINUX_STEPS").unwrap_or(2000) as usize;
    let mut r = LinuxRef::spawn_at(env!("CARGO_BIN_EXE_linux-ref")).expect("start linux-ref");
    let h = r.header().clone();
    let mut cfg = GenConfig::new(h.window.0, h.window.1 - h.window.0);
    cfg.brk_span = Some(h.brk_span);
    let mut gen = Generator::new(cfg, seed);
    let print = std::env::var_os("ASPACE_LINUX_PRINT").is_some();
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    // In chunks, so millions of steps (`ASPACE_LINUX_STEPS`) stay in bounded memory.
    let mut recent: Vec<Line> = Vec::new();
    let mut done = 0;
    while done < steps {
        let lines = gen.lines((steps - done).min(1000));
        if print {
            lines.iter().for_each(|l| println!("{l}"));
        }
        let responses = r.run_all_raw(&lines).expect("runner answers");
        for (line, (resp, raw)) in lines.iter().zip(&responses) {
            recent.push(line.clone());
            if recent.len() > 12 {
                recent.remove(0);
            }
            if let Err(why) = check(line, resp, raw, h.window) {
                let context: Vec<String> = recent.iter().map(|l| l.to_string()).collect();
                panic!(
                    "seed {seed:#x} (ASPACE_LINUX_SEED={seed:#x}), step {done}: {why}\nwindow {:#x}-{:#x}; last lines:\n{}",
                    h.window.0,
                    h.window.1,
                    context.join("\n")
                );
            }
            let what = match (&line.command, resp.outcome) {
                (Command::Call(c), Outcome::Err(e)) => format!("{} {e}", c.name()),
                (Command::Call(c), _) => format!("{} ok", c.name()),
                (Command::Write { .. }, o) | (Command::Read { .. }, o) => {
                    format!(
                        "access {}",
                        if o == Outcome::Fault { "fault" } else { "ok" }
                    )
                }
            };
            *tally.entry(what).or_default() += 1;
            done += 1;
        }
    }
    println!("seed {seed:#x}: {tally:#?}");
    // The mix reaches the paths the differential test needs.
    for wanted in [
        "mmap ok",
        "munmap ok",
        "mprotect ok",
        "mremap ok",
        "madvise ok",
        "brk ok",
        "access ok",
        "access fault",
    ] {
        assert!(
            tally.get(wanted).copied().unwrap_or(0) > 0,
            "no `{wanted}` in {tally:#?}"
        );
    }
    for e in [Errno::EEXIST, Errno::ENOMEM, Errno::EINVAL] {
        assert!(
            tally.keys().any(|k| k.ends_with(&e.to_string())),
            "no {e} in {tally:#?}"
        );
    }
    let status = r.finish().expect("runner ends");
    assert!(status.success(), "runner exit status {status}");
}

/// The differential loop, Linux against Linux: two runners given the same
/// seed agree step by step, line for line. This is the loop the aspace side
/// plugs into (with its own responses in place of the second runner's), and
/// it shows the reference is deterministic under the pinned policies.
#[test]
fn two_runners_agree_step_by_step() {
    use aspace_linux::protocol::{compare, MapsMatch};
    let seed = env_u64("ASPACE_LINUX_SEED").unwrap_or(0xd1ff);
    let steps = env_u64("ASPACE_LINUX_STEPS").unwrap_or(2000) as usize / 2;
    let bin = env!("CARGO_BIN_EXE_linux-ref");
    let (mut a, mut b) = (
        LinuxRef::spawn_at(bin).unwrap(),
        LinuxRef::spawn_at(bin).unwrap(),
    );
    let h = a.header().clone();
    assert_eq!(
        h,
        *b.header(),
        "same window and break in both (no address randomisation)"
    );
    let mut cfg = GenConfig::new(h.window.0, h.window.1 - h.window.0);
    cfg.brk_span = Some(h.brk_span);
    let mut gen = Generator::new(cfg, seed);
    let mut done = 0;
    while done < steps {
        let lines = gen.lines((steps - done).min(1000));
        let (ra, rb) = (a.run_all(&lines).unwrap(), b.run_all(&lines).unwrap());
        for (line, (x, y)) in lines.iter().zip(ra.iter().zip(&rb)) {
            if let Err(d) = compare(x, y, &[h.window, h.brk_span], MapsMatch::Exact) {
                panic!("seed {seed:#x}, step {done} `{line}`: {d}");
            }
            done += 1;
        }
    }
}
