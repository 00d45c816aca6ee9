//! Linux's memory calls in scenarios: `mmap`, `munmap`, `mprotect`,
//! `mremap`, `brk` and `madvise` on a task, with Linux's errno names in
//! `expect`, and `maps TASK --linux` in `/proc/PID/maps` format.
//!
//! A line is the call text of [`aspace_linux::Line`] with the task after the
//! call's name (`mmap A 0x10000000 4p rw private anon fixed expect ok`): the
//! task is taken out and the rest is parsed by `aspace_linux`, so the
//! scenario language and the differential test's runner read the same
//! text. Each task gets its process map ([`LinuxMm`]) at its first call:
//! the break starts at a quarter of the user space, `mmap(NULL)` places
//! top-down from 256 MiB below its top. Such a task is best left to these
//! calls (areas made with `area` are not Linux mappings the calls know).

use std::collections::HashMap;
use std::sync::Arc;

use aspace::System;
use aspace_linux::mm::{HolePolicy, Layout, LinuxMm};
use aspace_linux::{Call, Command, Expect, Line, Outcome, Residency};
use aspace_sim::SimMachine;

/// The calls' names, which start a Linux line.
pub const CALLS: &[&str] = &[
    "mmap",
    "munmap",
    "mprotect",
    "mremap",
    "brk",
    "madvise",
    "msync",
    "mlock",
    "munlock",
    "mlockall",
    "munlockall",
    "mincore",
    "mseal",
];

/// Whether `word` starts a Linux call line.
pub fn is_call(word: &str) -> bool {
    CALLS.contains(&word)
}

/// Parses the words of a Linux call line (`mmap A 0x1000 ...`): the task
/// and the line without it.
pub fn parse(words: &[&str]) -> Result<(String, Line), String> {
    let (&call, rest) = words.split_first().ok_or("empty line")?;
    let (&task, args) = rest
        .split_first()
        .ok_or_else(|| format!("'{call}' needs a task: {call} TASK ..."))?;
    if task.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!(
            "'{call}' takes the task first ({call} TASK ...), not '{task}'"
        ));
    }
    let text = std::iter::once(call)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let line = Line::parse(&text).map_err(|e| format!("{call}: {e}"))?;
    if !matches!(line.command, Command::Call(_)) {
        return Err(format!("'{call}' is not a Linux call"));
    }
    Ok((task.to_string(), line))
}

/// Parses `maps TASK --linux` (or `map TASK --linux`): the task, or `None`
/// when the words are not that.
pub fn parse_maps(words: &[&str]) -> Option<Result<String, String>> {
    match words {
        ["map" | "maps", task, "--linux"] => Some(Ok(task.to_string())),
        ["map" | "maps", .., "--linux"] => Some(Err(
            "'maps --linux' takes one task: maps TASK --linux".into(),
        )),
        _ => None,
    }
}

/// A resource limit the scenario language sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rlimit {
    /// `RLIMIT_MEMLOCK` of a process without `CAP_IPC_LOCK`.
    Memlock,
    /// `RLIMIT_STACK`: how far a stack grows.
    Stack,
}

/// A task, one of its limits and the limit's value in bytes (`None`:
/// unlimited).
pub type RlimitSet = (String, Rlimit, Option<u64>);

/// Parses `rlimit TASK memlock|stack SIZE|unlimited` (SIZE in bytes or
/// with a unit, `4p`, `64K`): the task, the limit and its value in bytes
/// (`None`: unlimited), or `None` when the words are not that.
pub fn parse_rlimit(words: &[&str]) -> Option<Result<RlimitSet, String>> {
    let usage = "rlimit TASK memlock|stack SIZE|unlimited";
    let which = |w: &str| match w {
        "memlock" => Some(Rlimit::Memlock),
        "stack" => Some(Rlimit::Stack),
        _ => None,
    };
    match words {
        ["rlimit", task, w, "unlimited"] if which(w).is_some() => {
            Some(Ok((task.to_string(), which(w)?, None)))
        }
        ["rlimit", task, w, n] if which(w).is_some() => Some(
            aspace_linux::num::parse_len(n)
                .map(|b| (task.to_string(), which(w).expect("checked"), Some(b)))
                .ok_or_else(|| format!("'{n}' is not a size: {usage}")),
        ),
        ["rlimit", ..] => Some(Err(format!("usage: {usage}"))),
        _ => None,
    }
}

/// Parses `sysctl vm.max_map_count N`: the most mappings a process may
/// have, or `None` when the words are not a `sysctl`.
pub fn parse_sysctl(words: &[&str]) -> Option<Result<usize, String>> {
    let usage = "sysctl vm.max_map_count N";
    match words {
        ["sysctl", "vm.max_map_count", n] => Some(
            crate::num::parse_u64(n)
                .ok()
                .and_then(|v| usize::try_from(v).ok())
                .ok_or_else(|| format!("'{n}' is not a count: {usage}")),
        ),
        ["sysctl", ..] => Some(Err(format!("usage: {usage}"))),
        _ => None,
    }
}

/// The process maps of the tasks that made Linux calls.
#[derive(Default)]
pub struct Procs {
    procs: HashMap<String, LinuxMm<SimMachine>>,
    /// `vm.max_map_count` as set by `sysctl` (Linux's default until then).
    max_map_count: Option<usize>,
}

impl Procs {
    /// The map of `task`, made at its first call.
    pub fn get(
        &mut self,
        task: &str,
        system: &Arc<System<SimMachine>>,
        space: &aspace_sim::SpaceHandle,
    ) -> &mut LinuxMm<SimMachine> {
        self.procs.entry(task.to_string()).or_insert_with(|| {
            let top = space.user_end();
            let mut layout = Layout::new((top - (256 << 20)) & !0xfff, (top / 4) & !0xfff);
            layout.task_size = top;
            if let Some(max) = self.max_map_count {
                layout.max_map_count = max;
            }
            LinuxMm::new(system.clone(), space.clone(), layout)
        })
    }

    /// Sets `vm.max_map_count` for every process, as the sysctl does:
    /// those with maps now and those made later.
    pub fn set_max_map_count(&mut self, max: usize) {
        self.max_map_count = Some(max);
        for mm in self.procs.values_mut() {
            mm.set_max_map_count(max);
        }
    }

    /// The map of `task`, if it made a Linux call.
    pub fn existing(&mut self, task: &str) -> Option<&mut LinuxMm<SimMachine>> {
        self.procs.get_mut(task)
    }

    /// Takes `task`'s map out, if it has one (to be put back).
    pub fn take(&mut self, task: &str) -> Option<LinuxMm<SimMachine>> {
        self.procs.remove(task)
    }

    /// Gives `task` the map `mm` (taken out, or a forked child's).
    pub fn put(&mut self, task: &str, mm: LinuxMm<SimMachine>) {
        self.procs.insert(task.to_string(), mm);
    }

    /// Forgets `task`'s map (its task exits), returning it to drop.
    pub fn remove(&mut self, task: &str) -> Option<LinuxMm<SimMachine>> {
        self.procs.remove(task)
    }

    /// `task`'s maps in Linux's format, one line each; `None` if it made
    /// no Linux call.
    pub fn maps(&self, task: &str) -> Option<String> {
        let mm = self.procs.get(task)?;
        let mut text = String::new();
        for l in mm.maps() {
            text.push_str(&format!("   {l}\n"));
        }
        if text.is_empty() {
            text.push_str("   (no mappings)\n");
        }
        Some(text)
    }
}

/// Runs `line` on `mm`; returns its outcome. A line ending in
/// `refuse-holes` runs all-or-nothing ([`HolePolicy::Refuse`]): a hole in an
/// `mprotect` or `madvise` range is `ENOMEM` with nothing changed.
pub fn run(mm: &mut LinuxMm<SimMachine>, line: &Line) -> Ran {
    let Command::Call(call) = &line.command else {
        return Ran::of(Outcome::Refused);
    };
    mm.set_hole_policy(if line.refuse_holes {
        HolePolicy::Refuse
    } else {
        HolePolicy::Linux
    });
    if let Call::Mincore { addr, len } = *call {
        let mut answer = Residency::new();
        let mut bits = String::new();
        let r = mm.mincore_each(addr, len, |i, resident| {
            answer.push(resident);
            if i < SHOWN_PAGES {
                bits.push(if resident { '1' } else { '0' });
            }
        });
        return match r {
            Ok(()) => Ran {
                outcome: Outcome::Resident(answer),
                bits,
            },
            Err(e) => Ran::of(Outcome::Err(e)),
        };
    }
    Ran::of(match mm.call(call) {
        Ok(v) if call.returns_addr() => Outcome::Addr(v),
        Ok(_) => Outcome::Ok,
        Err(e) => Outcome::Err(e),
    })
}

/// The pages of a `mincore` answer printed one by one (the rest counted).
const SHOWN_PAGES: u64 = 128;

/// What a Linux line did: its outcome, and for `mincore` the first
/// [`SHOWN_PAGES`] answers as `0`/`1`.
pub struct Ran {
    /// How the call ended.
    pub outcome: Outcome,
    /// `mincore`'s answers, page by page.
    pub bits: String,
}

impl Ran {
    fn of(outcome: Outcome) -> Ran {
        Ran {
            outcome,
            bits: String::new(),
        }
    }
}

/// Whether the line's outcome meets its `expect` (success when it has
/// none), and the words to print.
pub fn verdict(line: &Line, ran: Ran) -> Result<String, String> {
    let expect = line.expect.unwrap_or(Expect::Ok);
    let outcome = ran.outcome;
    let said = match outcome {
        Outcome::Addr(a) => format!("-> {a:#x}"),
        Outcome::Err(e) => format!("-> {e}"),
        Outcome::Resident(r) => {
            let more = if r.pages > SHOWN_PAGES { " ..." } else { "" };
            format!("-> {}/{} resident: {}{more}", r.resident, r.pages, ran.bits)
        }
        o => format!("-> {o}"),
    };
    if expect.matches(outcome) {
        Ok(said)
    } else {
        Err(format!("expected {expect}, got {outcome}"))
    }
}
