//! The engine: runs a parsed scenario on a simulated machine, narrating each
//! step, checking what each step was expected to do, and ending with a
//! summary. The demo and `aspace run` both go through it.

use std::collections::{BTreeMap, HashMap, HashSet};

use aspace::backend::elf::ElfImage;
use aspace::Placement;
use aspace::{
    loader, AreaFlags, FaultReason, PhysAddr, PhysMemory, StatsSnapshot, VirtAddr, PAGE_SIZE,
};
use aspace_sim::pager::SimPager;
use aspace_sim::{AccessFault, Arch, Cpu, HwStats, Sim, SimConfig, Space};
use serde::Serialize;
use serde_json::{json, Value};

use crate::maps::{self, ShareGroups, TaskView};
use crate::num::{human_bytes, rights_text};
use crate::out::{step_prefix, Out};
use crate::script::{
    reason_name, Check, Data, ElfSource, Expect, Kind, Op, ReadAs, Script, Stmt, COUNTERS,
};
use crate::svg::Snapshot;
use crate::{elfgen, elfnames, input};

/// The most entries a simulated TLB may have (`--tlb-entries`).
pub const MAX_TLB_ENTRIES: usize = 4096;

/// The size of the simulated machine.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct MachineSpec {
    /// The architecture: page-table format, MMU and TLB instructions.
    #[serde(serialize_with = "arch_name")]
    pub arch: Arch,
    /// CPUs.
    pub cpus: usize,
    /// Bytes of physical memory.
    pub memory: u64,
    /// User ASIDs.
    pub asids: u16,
    /// Entries per TLB.
    pub tlb_entries: usize,
    /// The commit limit in pages (`None`: the free frames).
    pub commit_limit: Option<u64>,
}

/// Writes an architecture as its command-line name.
fn arch_name<S: serde::Serializer>(arch: &Arch, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(arch.name())
}

impl MachineSpec {
    /// Builds the machine, with a message a person can act on when the
    /// numbers do not fit together.
    pub fn build(&self) -> Result<Sim, String> {
        self.check()?;
        let sim = Sim::new(SimConfig {
            arch: self.arch,
            cpus: self.cpus,
            memory: self.memory,
            asids: self.asids,
            tlb_entries: self.tlb_entries,
        })
        .map_err(|e| format!("cannot build the machine: {e}"))?;
        if let Some(limit) = self.commit_limit {
            sim.system().reserve().set_limit(limit);
        }
        Ok(sim)
    }

    /// Whether the numbers fit together, with a message a person can act on.
    pub fn check(&self) -> Result<(), String> {
        if self.cpus == 0 || self.cpus > 64 {
            return Err(format!(
                "--cpus {}: the machine has 1 to 64 CPUs",
                self.cpus
            ));
        }
        if (self.asids as usize) < self.cpus || self.asids > 4095 {
            return Err(format!(
                "--asids {}: need at least one ASID per CPU ({}) and at most 4095",
                self.asids, self.cpus
            ));
        }
        if self.memory < (1 << 20) || self.memory > (4 << 30) {
            return Err(format!(
                "--memory {}: use 1M to 4G (the simulator maps all of it in the host)",
                human_bytes(self.memory)
            ));
        }
        if self.tlb_entries == 0 || self.tlb_entries > MAX_TLB_ENTRIES {
            return Err(format!(
                "--tlb-entries {}: a TLB has 1 to {MAX_TLB_ENTRIES} entries",
                self.tlb_entries
            ));
        }
        Ok(())
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        let limit = match self.commit_limit {
            Some(l) => format!(", commit limit {l} pages"),
            None => String::new(),
        };
        format!(
            "{}, {} CPUs, {} of memory ({} frames), {} ASIDs, {}-entry TLBs{limit}",
            self.arch,
            self.cpus,
            human_bytes(self.memory),
            self.memory / PAGE_SIZE,
            self.asids,
            self.tlb_entries
        )
    }
}

struct Task {
    name: String,
    space: aspace_sim::SpaceHandle,
    labels: BTreeMap<u64, String>,
}

struct Image {
    key: String,
    bytes: Vec<u8>,
    image: aspace::TryArc<ElfImage>,
}

/// How one step ended.
enum Got {
    /// Done; an optional word on what happened.
    Done(Option<String>),
    /// A number was read.
    Value(u64),
    /// Bytes were read.
    Text(Vec<u8>),
    /// The core refused.
    Refused(aspace::Error, String),
    /// A user access faulted.
    Fault(AccessFault, Option<String>),
    /// A `check` did not hold.
    CheckFailed(String),
    /// The step could not be carried out: its task does not exist or runs
    /// on no CPU because an earlier step failed. Always a failed step.
    Unavailable(String),
}

impl Got {
    fn describe(&self) -> String {
        match self {
            Got::Done(d) => d.clone().unwrap_or_else(|| "done".into()),
            Got::Value(v) => format!("-> {v} ({v:#x})"),
            Got::CheckFailed(m) => m.clone(),
            Got::Unavailable(m) => format!("not done: {m}"),
            Got::Text(b) => format!("-> {:?}", text_of(b)),
            Got::Refused(e, why) if *why == e.to_string() => format!("refused: {e}"),
            Got::Refused(e, why) => format!("refused: {why} ({})", e.errno_name()),
            Got::Fault(f, after) => match after {
                Some(a) => format!("{f} {a}"),
                None => format!("{f}"),
            },
        }
    }

    fn meets(&self, e: &Expect) -> bool {
        match (e, self) {
            (Expect::Ok, Got::Done(_) | Got::Value(..) | Got::Text(_)) => true,
            (Expect::Error(want), Got::Refused(got, _)) => want == got,
            (Expect::Fault(want), Got::Fault(f, _)) => *want == f.reason,
            (Expect::Value(want), Got::Value(got)) => want == got,
            (Expect::Text(want), Got::Text(b)) => text_of(b) == *want,
            _ => false,
        }
    }
}

/// Bytes as text, trailing NULs dropped.
fn text_of(b: &[u8]) -> String {
    let end = b.iter().rposition(|&c| c != 0).map_or(0, |p| p + 1);
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// A check that failed.
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    /// Where (`file:line`).
    pub at: String,
    /// The line.
    pub text: String,
    /// What went wrong.
    pub message: String,
}

/// The counters at the end of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Faults resolved by a backend (a page newly mapped).
    pub faults_served: u64,
    /// Faults refused (no area, rights, ...).
    pub faults_refused: u64,
    /// Faults on a page already mapped meanwhile.
    pub faults_raced: u64,
    /// Page faults the simulated MMUs raised.
    pub hw_faults: u64,
    /// Frames allocated by the frame allocator (data, page tables, images).
    pub frames_allocated: u64,
    /// Of those, data pages: faulted-in pages and private copies (summed
    /// over the steps that took them).
    pub pages_allocated: u64,
    /// Of those, page-table frames: each task's root and the intermediate
    /// tables its mappings needed.
    pub page_table_frames_allocated: u64,
    /// Of those, the frames ELF images were copied into.
    pub image_frames_allocated: u64,
    /// Of those, the frames allocated before the run: the kernel's page
    /// table.
    pub kernel_frames_allocated: u64,
    /// Frames given back to it.
    pub frames_freed: u64,
    /// The most frames in use at once.
    pub frames_peak: u64,
    /// Frames in use when the run started (the kernel's page table).
    pub frames_in_use_at_start: u64,
    /// Frames in use at the end.
    pub frames_in_use_at_end: u64,
    /// Frames backends supplied for mappings.
    pub backend_frames: u64,
    /// Frame references released after shootdowns.
    pub frames_released_after_shootdown: u64,
    /// Shootdown rounds.
    pub shootdown_rounds: u64,
    /// IPIs sent for shootdowns and ASID steals.
    pub ipis: u64,
    /// Local TLB invalidations.
    pub local_invalidations: u64,
    /// ASIDs flushed lazily on switch.
    pub lazy_flushes: u64,
    /// ASIDs handed out from the pool.
    pub asid_allocs: u64,
    /// ASIDs taken from inactive spaces.
    pub asid_steals: u64,
    /// TLB hits.
    pub tlb_hits: u64,
    /// TLB misses.
    pub tlb_misses: u64,
    /// Accesses through stale TLB entries (must be 0).
    pub stale_accesses: u64,
    /// Instruction fetches from frames the kernel wrote and did not sync
    /// for instruction fetches (must be 0).
    pub stale_fetches: u64,
    /// Checks that held.
    pub checks_passed: usize,
    /// Checks that failed.
    pub checks_failed: usize,
    /// Pages reserved against the commit limit now (see `aspace::reserve`).
    pub pages_reserved: u64,
    /// The commit limit in pages.
    pub commit_limit: u64,
}

impl Summary {
    /// The table for people.
    pub fn table(&self) -> String {
        let kinds = self
            .kernel_frames_allocated
            .saturating_add(self.pages_allocated)
            .saturating_add(self.page_table_frames_allocated)
            .saturating_add(self.image_frames_allocated);
        let mut rows: Vec<(&str, String, &str)> = vec![
            (
                "faults served",
                self.faults_served.to_string(),
                "pages mapped by a backend on a fault",
            ),
            (
                "faults refused",
                self.faults_refused.to_string(),
                "no area, or rights the area lacks",
            ),
            (
                "frames allocated",
                self.frames_allocated.to_string(),
                "from the frame allocator, of which:",
            ),
            (
                "  kernel page table",
                self.kernel_frames_allocated.to_string(),
                "before the run; it stays",
            ),
            (
                "  data pages",
                self.pages_allocated.to_string(),
                "faulted-in pages and private copies",
            ),
            (
                "  page-table frames",
                self.page_table_frames_allocated.to_string(),
                "a root per task, then tables for its mappings",
            ),
            (
                "  ELF image frames",
                self.image_frames_allocated.to_string(),
                "each executable copied in once",
            ),
            (
                "frames freed",
                self.frames_freed.to_string(),
                "back to the allocator",
            ),
            (
                "frames at peak",
                self.frames_peak.to_string(),
                "most in use at once",
            ),
            (
                "frames in use",
                format!(
                    "{} -> {}",
                    self.frames_in_use_at_start, self.frames_in_use_at_end
                ),
                "start -> end (the kernel's page table stays)",
            ),
            (
                "shootdown rounds",
                self.shootdown_rounds.to_string(),
                "one per change that unmapped pages",
            ),
            (
                "IPIs",
                self.ipis.to_string(),
                "TLB invalidations sent to other CPUs",
            ),
            (
                "lazy TLB flushes",
                self.lazy_flushes.to_string(),
                "done on switch instead of an IPI",
            ),
            (
                "ASID allocations",
                self.asid_allocs.to_string(),
                "from the free pool",
            ),
            (
                "ASID steals",
                self.asid_steals.to_string(),
                "taken from an address space not running",
            ),
            (
                "TLB hits / misses",
                format!("{} / {}", self.tlb_hits, self.tlb_misses),
                "",
            ),
            (
                "stale TLB accesses",
                self.stale_accesses.to_string(),
                "must be 0",
            ),
            (
                "stale code fetches",
                self.stale_fetches.to_string(),
                "must be 0: code the kernel wrote, fetched unsynced",
            ),
            (
                "pages reserved",
                format!("{} of {}", self.pages_reserved, self.commit_limit),
                "committed now, of the commit limit",
            ),
            (
                "checks",
                format!(
                    "{} passed, {} failed",
                    self.checks_passed, self.checks_failed
                ),
                "",
            ),
        ];
        if self.frames_allocated > kinds {
            rows.insert(
                7,
                (
                    "  others",
                    (self.frames_allocated - kinds).to_string(),
                    "freed again within the step that took them",
                ),
            );
        }
        let w = rows
            .iter()
            .filter(|(_, _, note)| !note.is_empty())
            .map(|(_, v, _)| v.chars().count())
            .max()
            .unwrap_or(0)
            .max(12);
        let mut s = String::from("== Summary\n");
        for (k, v, note) in rows {
            if note.is_empty() {
                s.push_str(&format!("   {k:<20} {v:>w$}\n"));
            } else {
                s.push_str(&format!("   {k:<20} {v:>w$}   {note}\n"));
            }
        }
        s
    }
}

/// Runs scenarios.
pub struct Engine {
    // Dropped in this order: CPUs let go of spaces, then the spaces go, then
    // the images, then the machine.
    cpus: Vec<Cpu>,
    running: Vec<Option<String>>,
    /// The tasks alive, in the order they were created.
    tasks: BTreeMap<u64, Task>,
    /// Name to key in `tasks`.
    task_keys: HashMap<String, u64>,
    next_task: u64,
    /// Why a task the scenario names does not exist at run time (its
    /// creation failed).
    lost: HashMap<String, String>,
    /// The built-in pagers running, by name (each a thread with its own
    /// address space); dropped after the tasks, before the machine.
    pagers: HashMap<String, SimPager>,
    /// The line of the step running.
    line: usize,
    images: Vec<Image>,
    sim: Sim,
    spec: MachineSpec,
    name: String,
    baseline: u64,
    echo: bool,
    out: Out,
    groups: ShareGroups,
    passed: usize,
    failures: Vec<Failure>,
    steps: Vec<Value>,
    snapshots: Vec<Snapshot>,
    want_snapshots: bool,
    allocated: Allocated,
    /// Frames the allocator had handed out before the run.
    allocated_at_start: u64,
    /// The process maps of tasks that made Linux calls.
    linux: crate::linux::Procs,
}

struct Before {
    stats: StatsSnapshot,
    parts: FrameParts,
}

/// Frames in use, and how many of them page tables and ELF images hold.
#[derive(Clone, Copy)]
struct FrameParts {
    in_use: u64,
    tables: u64,
    images: u64,
}

/// Frames allocated during the run, by kind, summed over the steps that
/// took them.
#[derive(Clone, Copy, Default)]
struct Allocated {
    pages: u64,
    tables: u64,
    images: u64,
}

/// Singular or plural.
fn n_of(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

impl Engine {
    /// A fresh machine for the scenario `name`.
    pub fn new(
        spec: MachineSpec,
        name: &str,
        out: Out,
        want_snapshots: bool,
    ) -> Result<Self, String> {
        let sim = spec.build()?;
        let cpus = (0..spec.cpus).map(|i| sim.cpu(i)).collect();
        let baseline = sim.frames_in_use();
        let allocated_at_start = sim.hardware().frames().stats().allocated;
        Ok(Engine {
            cpus,
            running: vec![None; spec.cpus],
            tasks: BTreeMap::new(),
            task_keys: HashMap::new(),
            next_task: 0,
            lost: HashMap::new(),
            pagers: HashMap::new(),
            line: 0,
            images: Vec::new(),
            sim,
            spec,
            name: name.to_string(),
            baseline,
            echo: true,
            out,
            groups: ShareGroups::default(),
            passed: 0,
            failures: Vec::new(),
            steps: Vec::new(),
            snapshots: Vec::new(),
            want_snapshots,
            allocated: Allocated::default(),
            allocated_at_start,
            linux: crate::linux::Procs::default(),
        })
    }

    /// The task `name`, or why there is none: validation saw it created,
    /// but its creation may have failed at run time.
    fn task(&self, name: &str) -> Result<&Task, Got> {
        self.task_keys
            .get(name)
            .and_then(|k| self.tasks.get(k))
            .ok_or_else(|| self.no_task(name))
    }

    fn no_task(&self, name: &str) -> Got {
        Got::Unavailable(self.lost_task(name))
    }

    /// Why there is no task `name`.
    fn lost_task(&self, name: &str) -> String {
        match self.lost.get(name) {
            Some(why) => format!("no task '{name}': {why}"),
            None => format!("no task '{name}'"),
        }
    }

    /// The address space of task `name`.
    fn space(&self, name: &str) -> Result<aspace_sim::SpaceHandle, Got> {
        self.task(name).map(|t| t.space.clone())
    }

    /// The labels of task `name`, when it exists.
    fn labels_mut(&mut self, name: &str) -> Option<&mut BTreeMap<u64, String>> {
        let k = self.task_keys.get(name)?;
        self.tasks.get_mut(k).map(|t| &mut t.labels)
    }

    /// The lowest CPU running `task`, for a user access: validation saw one,
    /// but switching it may have failed at run time.
    fn access_cpu(&self, task: &str) -> Result<usize, Got> {
        self.task(task)?;
        self.cpu_of(task).ok_or_else(|| {
            Got::Unavailable(format!(
                "task '{task}' runs on no CPU (a 'cpu N run {task}' before failed)"
            ))
        })
    }

    fn cpu_of(&self, task: &str) -> Option<usize> {
        self.running.iter().position(|r| r.as_deref() == Some(task))
    }

    /// Runs `f` as the lowest CPU running `task` (so shootdowns see it as
    /// the local CPU), or outside any CPU when none runs it.
    fn as_task<R>(&self, task: &str, f: impl FnOnce() -> R) -> R {
        match self.cpu_of(task) {
            Some(i) => self.cpus[i].run(f),
            None => f(),
        }
    }

    /// Starts pager `name` serving `text` as a file, or (`None`) kills it:
    /// its thread ends and its address space goes; pages it served stay
    /// mapped where they are, and later page-ins fail.
    fn pager(&mut self, name: &str, text: Option<&str>) -> Got {
        match text {
            Some(text) => match SimPager::file(&self.sim, text.as_bytes().to_vec()) {
                Ok(p) => {
                    let pages = p.space().resident_pages();
                    let id = p.space().id();
                    self.pagers.insert(name.to_string(), p);
                    Got::Done(Some(format!(
                        "serves {} as a file from address space {id} ({pages} resident)",
                        n_of(text.len() as u64, "byte", "bytes")
                    )))
                }
                Err(e) => Self::refused(e),
            },
            None => match self.pagers.remove(name) {
                Some(p) => {
                    drop(p);
                    Got::Done(Some("killed: later page-ins fail".into()))
                }
                None => Got::Unavailable(format!("no pager '{name}'")),
            },
        }
    }

    fn image_frames(&self) -> HashSet<u64> {
        self.images
            .iter()
            .flat_map(|i| i.image.frames().iter().map(|f| f.number()))
            .collect()
    }

    /// The tasks named (every task when none is), listed; and the names
    /// of those that do not exist at run time.
    fn views(&mut self, names: &[String]) -> (Vec<TaskView>, Vec<String>) {
        let frames = self.image_frames();
        let keys: Vec<u64> = if names.is_empty() {
            self.tasks.keys().copied().collect()
        } else {
            names
                .iter()
                .filter_map(|n| self.task_keys.get(n).copied())
                .collect()
        };
        let missing: Vec<String> = names
            .iter()
            .filter(|n| !self.task_keys.contains_key(n.as_str()))
            .cloned()
            .collect();
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            if let Some(t) = self.tasks.get(&k) {
                out.push(maps::view(
                    &t.name,
                    &t.space,
                    &t.labels,
                    &frames,
                    &mut self.groups,
                ));
            }
        }
        (out, missing)
    }

    /// Frames held now by page tables and by ELF images; the rest in use,
    /// beyond the baseline, are data pages.
    fn frame_parts(&self) -> FrameParts {
        let in_use = self.sim.frames_in_use();
        let tables = self
            .tasks
            .values()
            .fold(0u64, |n, t| n.saturating_add(t.space.page_table_frames()));
        let images = self
            .images
            .iter()
            .fold(0u64, |n, i| n.saturating_add(i.image.frames().len() as u64));
        FrameParts {
            in_use,
            tables,
            images,
        }
    }

    fn before(&self) -> Before {
        Before {
            stats: self.sim.system().stats(),
            parts: self.frame_parts(),
        }
    }

    /// What a step cost: its parts for people (`1 fault, +1 page, +3
    /// page-table frames`) and as JSON; counts the frames allocated by kind
    /// for the summary.
    fn delta(&mut self, b: &Before) -> (Vec<String>, Value) {
        let d = self.sim.system().stats().since(&b.stats);
        let now = self.frame_parts();
        let frames = i128::from(now.in_use) - i128::from(b.parts.in_use);
        let tables = i128::from(now.tables) - i128::from(b.parts.tables);
        let images = i128::from(now.images) - i128::from(b.parts.images);
        let pages = frames - tables - images;
        for (n, total) in [
            (pages, &mut self.allocated.pages),
            (tables, &mut self.allocated.tables),
            (images, &mut self.allocated.images),
        ] {
            if n > 0 {
                *total = total.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
            }
        }
        let mut parts = Vec::new();
        if d.faults_resolved > 0 {
            parts.push(n_of(d.faults_resolved, "fault", "faults"));
        }
        for (n, one, many) in [
            (pages, "page", "pages"),
            (tables, "page-table frame", "page-table frames"),
            (images, "image frame", "image frames"),
        ] {
            if n != 0 {
                parts.push(format!("{n:+} {}", if n.abs() == 1 { one } else { many }));
            }
        }
        if d.shootdown_rounds > 0 {
            parts.push(n_of(d.shootdown_rounds, "shootdown", "shootdowns"));
        }
        if d.ipis > 0 {
            parts.push(n_of(d.ipis, "IPI", "IPIs"));
        }
        if d.asid_steals > 0 {
            parts.push(n_of(d.asid_steals, "ASID steal", "ASID steals"));
        }
        if d.lazy_flushes > 0 {
            parts.push(n_of(d.lazy_flushes, "lazy flush", "lazy flushes"));
        }
        if d.cow_copies > 0 {
            parts.push(n_of(
                d.cow_copies,
                "copy-on-write copy",
                "copy-on-write copies",
            ));
        }
        let v = json!({
            "faults_served": d.faults_resolved,
            "faults_refused": d.faults_failed,
            "frames": frames,
            "pages": pages,
            "page_table_frames": tables,
            "image_frames": images,
            "shootdown_rounds": d.shootdown_rounds,
            "ipis": d.ipis,
            "asid_steals": d.asid_steals,
            "lazy_flushes": d.lazy_flushes,
        });
        (parts, v)
    }

    /// Number of steps of work in `script`, for the progress bar.
    pub fn work(script: &Script) -> u64 {
        script.stmts.iter().fold(0u64, |n, s| {
            n.saturating_add(match &s.op {
                Op::Touch { size, .. } => size.div_ceil(PAGE_SIZE),
                _ => 1,
            })
        })
    }

    /// Runs every statement, then destroys what is left and checks that
    /// every frame came back.
    pub fn run(&mut self, script: &Script) {
        self.out.heading(&format!(
            "aspace: {} on a simulated machine: {}",
            script.name,
            self.spec.describe()
        ));
        for s in &script.stmts {
            self.step(s);
        }
        self.finish();
    }

    fn record_failure(&mut self, s: &Stmt, message: String) {
        let at = format!("{}:{}", self.name, s.line);
        self.out.error_line(&format!("   {at}: FAILED: {message}"));
        self.failures.push(Failure {
            at,
            text: s.text.clone(),
            message,
        });
    }

    fn step(&mut self, s: &Stmt) {
        self.line = s.line;
        match &s.op {
            Op::Say(t) => {
                self.out.heading(&format!("\n== {t}"));
                self.steps
                    .push(json!({"line": s.line, "op": "say", "text": t}));
                self.out.tick(1);
                return;
            }
            Op::Echo(on) => {
                self.echo = *on;
                self.out.tick(1);
                return;
            }
            Op::Map(names) => {
                let (views, missing) = self.views(names);
                if !missing.is_empty() {
                    let why: Vec<String> = missing.iter().map(|n| self.lost_task(n)).collect();
                    let m = format!("not done: {}", why.join("; "));
                    self.out
                        .error_line(&format!("{} {m}", step_prefix(&s.text, "FAILED")));
                    self.record_failure(s, m.clone());
                    self.steps.push(json!({
                        "line": s.line, "op": "map", "text": s.text, "ok": false, "failure": m,
                    }));
                    self.out.tick(1);
                    return;
                }
                if self.echo {
                    let mut text = String::new();
                    for v in &views {
                        text.push_str(&maps::render(v, "   "));
                    }
                    if views.is_empty() {
                        text.push_str("   (no tasks)\n");
                    }
                    self.out.block(&text);
                }
                self.steps.push(json!({
                    "line": s.line, "op": "map", "text": s.text, "ok": true, "maps": views,
                }));
                self.out.tick(1);
                return;
            }
            Op::Stats => {
                let sum = self.summary();
                if self.echo {
                    let table = sum.table().replacen("== Summary", "   counters so far:", 1);
                    self.out.block(&table);
                }
                self.steps.push(json!({
                    "line": s.line, "op": "stats", "text": s.text, "ok": true, "stats": sum,
                }));
                self.out.tick(1);
                return;
            }
            Op::LinuxMaps(task) => {
                let text = self
                    .linux
                    .maps(task)
                    .unwrap_or_else(|| "   (no Linux calls made)\n".into());
                if self.echo {
                    self.out.line(&step_prefix(&s.text, "ok"));
                    self.out.block(&text);
                }
                self.steps.push(json!({
                    "line": s.line, "op": "maps-linux", "text": s.text, "ok": true, "maps": text,
                }));
                self.out.tick(1);
                return;
            }
            Op::Snapshot(title) => {
                let title = title
                    .clone()
                    .unwrap_or_else(|| format!("{} line {}", self.name, s.line));
                if self.want_snapshots {
                    let (tasks, _) = self.views(&[]);
                    self.snapshots.push(Snapshot {
                        title: title.clone(),
                        tasks,
                    });
                }
                if self.echo {
                    self.out.line(&format!("   (snapshot: {title})"));
                }
                self.steps
                    .push(json!({"line": s.line, "op": "snapshot", "text": s.text, "ok": true}));
                self.out.tick(1);
                return;
            }
            _ => {}
        }
        let before = self.before();
        let got = self.exec(&s.op);
        let (deltas, delta_json) = self.delta(&before);
        let verdict: Result<(), String> = match (&s.op, &s.expect, &got) {
            (_, _, Got::Unavailable(m)) => Err(format!("not done: {m}")),
            (Op::Check(_) | Op::Linux { .. }, _, Got::Done(_)) => Ok(()),
            (Op::Check(_) | Op::Linux { .. }, _, other) => Err(other.describe()),
            (_, None, _) => Ok(()),
            (_, Some(e), g) if g.meets(e) => Ok(()),
            (_, Some(e), g) => Err(format!("expected {e}, got {}", g.describe())),
        };
        let checked = s.expect.is_some() || matches!(s.op, Op::Check(_) | Op::Linux { .. });
        let ok = verdict.is_ok();
        if self.echo || !ok {
            let status = if ok { "ok" } else { "FAILED" };
            let mut line = step_prefix(&s.text, status);
            let desc = got.describe();
            if !(matches!(got, Got::Done(None))) {
                line.push(' ');
                line.push_str(&desc);
            }
            if !deltas.is_empty() {
                line.push_str(&format!("  [{}]", deltas.join(", ")));
            }
            if ok {
                self.out.line(&line);
            } else {
                self.out.error_line(&line);
            }
        }
        if let Err(m) = &verdict {
            self.record_failure(s, m.clone());
        } else if checked {
            self.passed += 1;
        }
        let mut rec = json!({
            "line": s.line,
            "op": op_name(&s.op),
            "text": s.text,
            "ok": ok,
            "outcome": got.describe(),
            "delta": delta_json,
        });
        match &got {
            Got::Value(v) => rec["value"] = json!(v),
            Got::Text(b) => rec["value"] = json!(text_of(b)),
            Got::Refused(e, why) => {
                rec["error"] = json!({"errno": e.errno_name(), "code": e.errno(), "message": why})
            }
            Got::Fault(f, _) => {
                rec["fault"] = json!({
                    "addr": format!("{:#x}", f.addr.as_u64()),
                    "access": format!("{:?}", f.access).to_lowercase(),
                    "reason": reason_name(f.reason),
                    "message": f.to_string(),
                })
            }
            Got::Done(_) | Got::CheckFailed(_) | Got::Unavailable(_) => {}
        }
        if let Some(e) = &s.expect {
            rec["expect"] = json!(e.to_string());
        }
        if let Err(m) = verdict {
            rec["failure"] = json!(m);
        }
        self.steps.push(rec);
        if !matches!(s.op, Op::Touch { .. }) {
            self.out.tick(1);
        }
    }

    fn refused(e: aspace::Error) -> Got {
        Got::Refused(e, e.to_string())
    }

    fn exec(&mut self, op: &Op) -> Got {
        match self.try_exec(op) {
            Ok(g) | Err(g) => g,
        }
    }

    /// Carries out one operation; `Err` when it could not even start (its
    /// task is missing at run time).
    fn try_exec(&mut self, op: &Op) -> Result<Got, Got> {
        Ok(match op {
            Op::Task(name) => match self.sim.system().create() {
                Ok(space) => {
                    let id = space.id();
                    let key = self.next_task;
                    self.next_task += 1;
                    self.tasks.insert(
                        key,
                        Task {
                            name: name.clone(),
                            space,
                            labels: BTreeMap::new(),
                        },
                    );
                    self.task_keys.insert(name.clone(), key);
                    self.lost.remove(name);
                    Got::Done(Some(format!("address space {id}")))
                }
                Err(e) => {
                    self.lost.insert(
                        name.clone(),
                        format!("creating it failed on line {} ({e})", self.line),
                    );
                    Self::refused(e)
                }
            },
            Op::Fork(src, name) => {
                let parent = self.space(src)?;
                let labels = self.task(src)?.labels.clone();
                // A task that made Linux calls forks as Linux does (its
                // mappings, break, MADV_DONTFORK / WIPEONFORK ranges).
                let mut linux = self.linux.take(src);
                let forked = match linux.as_mut() {
                    Some(mm) => self
                        .as_task(src, || mm.fork())
                        .map(|child| {
                            let space = child.space().clone();
                            (space, Some(child))
                        })
                        .map_err(|_| aspace::Error::NoMemory),
                    None => self
                        .as_task(src, || self.sim.system().fork(&parent))
                        .map(|space| (space, None)),
                };
                if let Some(mm) = linux {
                    self.linux.put(src, mm);
                }
                match forked {
                    Ok((space, child_mm)) => {
                        if let Some(mm) = child_mm {
                            self.linux.put(name, mm);
                        }
                        let id = space.id();
                        let key = self.next_task;
                        self.next_task += 1;
                        let name = name.clone();
                        let task = Task {
                            name: name.clone(),
                            space,
                            labels,
                        };
                        self.tasks.insert(key, task);
                        self.task_keys.insert(name.clone(), key);
                        self.lost.remove(&name);
                        let cow: u64 = parent
                            .areas()
                            .iter()
                            .filter_map(|a| parent.cow_pages(a.base))
                            .map(|c| c.pages())
                            .sum();
                        Got::Done(Some(format!(
                            "address space {id}, {} copy-on-write",
                            n_of(cow, "page", "pages")
                        )))
                    }
                    Err(e) => {
                        self.lost.insert(
                            name.clone(),
                            format!("forking it failed on line {} ({e})", self.line),
                        );
                        Self::refused(e)
                    }
                }
            }
            Op::Exit(name) => {
                // The task's threads stop; the address space is destroyed on
                // the CPU that ran it (if one did), as the last thread's
                // exit would.
                self.task(name)?;
                let home = self.cpu_of(name);
                for (i, r) in self.running.iter_mut().enumerate() {
                    if r.as_deref() == Some(name.as_str()) {
                        self.cpus[i].idle();
                        *r = None;
                    }
                }
                let Some(t) = self
                    .task_keys
                    .remove(name)
                    .and_then(|k| self.tasks.remove(&k))
                else {
                    return Err(self.no_task(name));
                };
                let mm = self.linux.remove(name);
                match home {
                    Some(i) => self.cpus[i].run(|| drop(mm)),
                    None => drop(mm),
                }
                let areas = t.space.areas().len();
                let resident = t.space.resident_pages();
                match home {
                    Some(i) => self.cpus[i].run(|| drop(t)),
                    None => drop(t),
                }
                let released = self.release_images();
                let mut d = format!(
                    "{} and {} destroyed",
                    n_of(areas as u64, "area", "areas"),
                    n_of(resident, "resident page", "resident pages")
                );
                if !released.is_empty() {
                    d.push_str(&format!("; ELF image {} released", released.join(", ")));
                }
                Got::Done(Some(d))
            }
            Op::Run(cpu, name) => {
                let space = self.space(name)?;
                match self.cpus[*cpu].switch_to(&space) {
                    Ok(asid) => {
                        self.running[*cpu] = Some(name.clone());
                        Got::Done(Some(format!("CPU {cpu} runs {name} with ASID {}", asid.0)))
                    }
                    Err(e) => Self::refused(e),
                }
            }
            Op::Idle(cpu) => {
                self.cpus[*cpu].idle();
                self.running[*cpu] = None;
                Got::Done(Some(format!("CPU {cpu} runs the kernel")))
            }
            Op::Area {
                task,
                addr,
                size,
                rights,
                label,
            } => {
                let space = self.space(task)?;
                let r = self.as_task(task, || {
                    space.area_create(VirtAddr::new(*addr), *size, *rights)
                });
                match r {
                    Ok(_) => {
                        if let (Some(l), Some(labels)) = (label, self.labels_mut(task)) {
                            labels.insert(*addr, l.clone());
                        }
                        let pages = size.div_ceil(PAGE_SIZE);
                        Got::Done(Some(format!(
                            "{} ({}) {}, none resident yet",
                            n_of(pages, "page", "pages"),
                            human_bytes(pages.saturating_mul(PAGE_SIZE)),
                            rights_text(*rights)
                        )))
                    }
                    Err(e) => Self::refused(e),
                }
            }
            Op::Pager(name, text) => self.pager(name, text.as_deref()),
            Op::PagedArea {
                task,
                addr,
                size,
                rights,
                pager,
                label,
            } => {
                let space = self.space(task)?;
                let Some(p) = self.pagers.get(pager) else {
                    return Err(Got::Unavailable(format!("no pager '{pager}'")));
                };
                let (link, pager_space) = (p.link(), p.space().clone());
                let ids = aspace::backend::PagerIds::default();
                let r = self.as_task(task, || {
                    space.area_create_paged(
                        VirtAddr::new(*addr),
                        *size,
                        *rights,
                        link,
                        &pager_space,
                        ids,
                    )
                });
                match r {
                    Ok(_) => {
                        if let (Some(l), Some(labels)) = (label, self.labels_mut(task)) {
                            labels.insert(*addr, l.clone());
                        }
                        Got::Done(Some(format!(
                            "{} {}, served by pager {pager}, none resident yet",
                            n_of(size.div_ceil(PAGE_SIZE), "page", "pages"),
                            rights_text(*rights)
                        )))
                    }
                    Err(e) => Self::refused(e),
                }
            }
            Op::AreaAny {
                task,
                bound,
                align,
                size,
                rights,
                label,
            } => {
                let space = self.space(task)?;
                let placement = Placement::LowestAbove {
                    bound: VirtAddr::new(*bound),
                    align: *align,
                };
                let r = self.as_task(task, || {
                    space.area_create_anywhere(placement, *size, *rights)
                });
                match r {
                    Ok(base) => {
                        if let (Some(l), Some(labels)) = (label, self.labels_mut(task)) {
                            labels.insert(base.as_u64(), l.clone());
                        }
                        let pages = size.div_ceil(PAGE_SIZE);
                        Got::Done(Some(format!(
                            "at {:#x}: {} ({}) {}, none resident yet",
                            base.as_u64(),
                            n_of(pages, "page", "pages"),
                            human_bytes(pages.saturating_mul(PAGE_SIZE)),
                            rights_text(*rights)
                        )))
                    }
                    Err(e) => Self::refused(e),
                }
            }
            Op::Resize(task, addr, size) => {
                let space = self.space(task)?;
                let old = space.area(VirtAddr::new(*addr)).map(|a| a.pages);
                let r = self.as_task(task, || space.area_resize(VirtAddr::new(*addr), *size));
                match r {
                    Ok(()) => {
                        let new = space.area(VirtAddr::new(*addr)).map(|a| a.pages);
                        Got::Done(Some(format!(
                            "{} -> {} pages",
                            old.unwrap_or(0),
                            new.unwrap_or(0)
                        )))
                    }
                    Err(e) => Self::refused(e),
                }
            }
            Op::Destroy(task, addr) => {
                let space = self.space(task)?;
                let info = space.area(VirtAddr::new(*addr));
                let r = self.as_task(task, || space.area_destroy(VirtAddr::new(*addr)));
                match r {
                    Ok(()) => {
                        if let (Some(i), Some(labels)) = (info, self.labels_mut(task)) {
                            let area = i.base.as_u64()..i.end().as_u64();
                            labels.retain(|at, _| !area.contains(at));
                        }
                        let released = self.release_images();
                        let mut d = info.map_or(String::new(), |i| {
                            format!(
                                "{}, {} resident",
                                n_of(i.pages, "page", "pages"),
                                i.resident
                            )
                        });
                        if !released.is_empty() {
                            d.push_str(&format!("; ELF image {} released", released.join(", ")));
                        }
                        Got::Done(Some(d))
                    }
                    Err(e) => Self::refused(e),
                }
            }
            Op::Share {
                src,
                src_addr,
                dst,
                dst_addr,
                rights,
                label,
            } => {
                let (s, d) = (self.space(src)?, self.space(dst)?);
                let src_va = VirtAddr::new(*src_addr);
                let size = s.area_size(src_va);
                let r = self.as_task(src, || {
                    s.area_share(src_va, size, &d, VirtAddr::new(*dst_addr), *rights)
                });
                match r {
                    Ok(()) => {
                        let base = s.area(src_va).map_or(*src_addr, |a| a.base.as_u64());
                        let src_label = self.task(src)?.labels.get(&base).cloned();
                        let l = label.clone().unwrap_or_else(|| match src_label {
                            Some(l) => format!("{l} (from {src})"),
                            None => format!("shared from {src}"),
                        });
                        if let Some(labels) = self.labels_mut(dst) {
                            labels.insert(*dst_addr, l);
                        }
                        let refs = s.share_info(src_va).map_or(0, |i| i.refs());
                        Got::Done(Some(format!(
                            "{dst} maps the same {} at {dst_addr:#x} ({}, {} areas share them)",
                            n_of(size / PAGE_SIZE, "page", "pages"),
                            rights_text(*rights),
                            refs
                        )))
                    }
                    Err(e) => Self::refused(e),
                }
            }
            Op::Flags(task, addr, rights) => {
                let space = self.space(task)?;
                let old = space.area(VirtAddr::new(*addr)).map(|a| a.flags);
                let r = self.as_task(task, || {
                    space.area_change_flags(VirtAddr::new(*addr), *rights)
                });
                match r {
                    Ok(()) => Got::Done(Some(format!(
                        "{} -> {}",
                        rights_text(old.unwrap_or(AreaFlags::empty())),
                        rights_text(*rights)
                    ))),
                    Err(e) => Self::refused(e),
                }
            }
            Op::Elf(task, source, bias) => self.load_elf(task, source, *bias)?,
            Op::Write(task, addr, data) => {
                let cpu = self.access_cpu(task)?;
                let bytes = data.bytes();
                let r = self.growing_stack(task, cpu, |e| {
                    e.cpus[cpu].write(VirtAddr::new(*addr), &bytes)
                });
                match r {
                    Ok(()) => Got::Done(Some(format!(
                        "CPU {cpu} stored {}",
                        match data {
                            Data::Int(_, v) => format!("{v} ({v:#x})"),
                            Data::Str(s) => format!("{s:?}"),
                        }
                    ))),
                    Err(f) => Got::Fault(f, None),
                }
            }
            Op::Read(task, addr, what) => {
                let cpu = self.access_cpu(task)?;
                let n = match what {
                    ReadAs::Int(w) => w.bytes(),
                    ReadAs::Str(n) => *n,
                };
                let mut buf = vec![0u8; n];
                let r = self.growing_stack(task, cpu, |e| {
                    e.cpus[cpu].read(VirtAddr::new(*addr), &mut buf)
                });
                match r {
                    Ok(()) => match what {
                        ReadAs::Int(_) => {
                            let mut b = [0u8; 8];
                            b[..n].copy_from_slice(&buf);
                            Got::Value(u64::from_le_bytes(b))
                        }
                        ReadAs::Str(_) => Got::Text(buf),
                    },
                    Err(f) => Got::Fault(f, None),
                }
            }
            Op::Fetch(task, addr) => {
                let cpu = self.access_cpu(task)?;
                match self.cpus[cpu].fetch(VirtAddr::new(*addr)) {
                    Ok(b) => Got::Value(b as u64),
                    Err(f) => Got::Fault(f, None),
                }
            }
            Op::Fault(task, addr, kind) => {
                let cpu = self.access_cpu(task)?;
                let a = VirtAddr::new(*addr);
                let space = self.space(task)?;
                let r = self.growing_stack(task, cpu, |e| e.access(cpu, &space, a, *kind));
                match r {
                    Ok(()) => Got::Done(Some(format!("CPU {cpu}: {} at {a} allowed", kind.name()))),
                    Err(f) => Got::Fault(f, None),
                }
            }
            Op::Touch {
                task,
                addr,
                size,
                kind,
                down,
            } => self.touch(task, *addr, *size, *kind, *down)?,
            Op::Check(c) => self.check(c)?,
            Op::Linux { task, line } => {
                let space = self.space(task)?;
                let system = self.sim.system().clone();
                let mm = self.linux.get(task, &system, &space);
                let outcome = match self.running.iter().position(|r| r.as_deref() == Some(task)) {
                    Some(i) => self.cpus[i].run(|| crate::linux::run(mm, line)),
                    None => crate::linux::run(mm, line),
                };
                match crate::linux::verdict(line, outcome) {
                    Ok(said) => Got::Done(Some(said)),
                    Err(why) => Got::CheckFailed(why),
                }
            }
            Op::LinuxRlimit(task, which, bytes) => {
                let space = self.space(task)?;
                let system = self.sim.system().clone();
                let mm = self.linux.get(task, &system, &space);
                match which {
                    crate::linux::Rlimit::Memlock => mm.set_memlock_limit(*bytes),
                    crate::linux::Rlimit::Stack => mm.set_stack_limit(*bytes),
                }
                Got::Done(None)
            }
            Op::LinuxMaxMapCount(max) => {
                self.linux.set_max_map_count(*max);
                Got::Done(None)
            }
            Op::Say(_)
            | Op::Echo(_)
            | Op::Map(_)
            | Op::LinuxMaps(_)
            | Op::Stats
            | Op::Snapshot(_) => Got::Done(None),
        })
    }

    /// One access of `kind` at `a` on `cpu` (a store keeps the byte).
    fn access(
        &mut self,
        cpu: usize,
        space: &Space,
        a: VirtAddr,
        kind: Kind,
    ) -> Result<(), AccessFault> {
        match kind {
            Kind::Read => self.cpus[cpu].read(a, &mut [0u8]),
            Kind::Write => self.store_same(cpu, space, a),
            Kind::Exec => self.cpus[cpu].fetch(a).map(|_| ()),
        }
    }

    /// `access` on `cpu` for `task`, tried once more if its fault grew a
    /// Linux process's stack ([`grew_stack`](Self::grew_stack)).
    fn growing_stack<T>(
        &mut self,
        task: &str,
        cpu: usize,
        mut access: impl FnMut(&mut Self) -> Result<T, AccessFault>,
    ) -> Result<T, AccessFault> {
        match access(self) {
            Err(f) if self.grew_stack(task, cpu, &f) => access(self),
            r => r,
        }
    }

    /// What a kernel does with a fault no area holds in a Linux process
    /// (`task` made a Linux call): asks its map to grow the stack above
    /// the address (`LinuxMm::expand_stack`); whether it grew, so that
    /// the access is tried again.
    fn grew_stack(&mut self, task: &str, cpu: usize, f: &AccessFault) -> bool {
        if f.reason != FaultReason::NoArea {
            return false;
        }
        let Some(mm) = self.linux.existing(task) else {
            return false;
        };
        let addr = f.addr.as_u64();
        let grown = self.cpus[cpu].run(|| mm.expand_stack(addr)).is_ok();
        // Only when the stack below the address changed (not an address
        // some mapping already held).
        grown && mm.vma_at(addr).is_some()
    }

    fn touch(
        &mut self,
        task: &str,
        addr: u64,
        size: u64,
        kind: Kind,
        down: bool,
    ) -> Result<Got, Got> {
        let cpu = self.access_cpu(task)?;
        let first = addr / PAGE_SIZE;
        // The parser refuses a range that wraps; saturate all the same.
        let last = addr.saturating_add(size.saturating_sub(1)) / PAGE_SIZE;
        let count = last - first + 1;
        let before = self.sim.system().stats().faults_resolved;
        let space = self.space(task)?;
        let mut done = 0u64;
        for i in 0..count {
            let page = if down { last - i } else { first + i };
            // The first byte of the range in the first page, the page start
            // elsewhere.
            let a = VirtAddr::new(page.saturating_mul(PAGE_SIZE).max(addr));
            let r = self.growing_stack(task, cpu, |e| e.access(cpu, &space, a, kind));
            self.out.tick(1);
            if let Err(f) = r {
                self.out.tick(count - i - 1);
                return Ok(Got::Fault(
                    f,
                    Some(format!("(after {})", n_of(done, "page", "pages"))),
                ));
            }
            done += 1;
        }
        let faults = self
            .sim
            .system()
            .stats()
            .faults_resolved
            .saturating_sub(before);
        Ok(Got::Done(Some(format!(
            "CPU {cpu} touched {} {}, {} already resident",
            n_of(done, "page", "pages"),
            if down { "downwards" } else { "upwards" },
            done.saturating_sub(faults)
        ))))
    }

    /// A one-byte user store on `cpu` that keeps the byte as it was, so
    /// probing and touching never change data, and faults as one store
    /// would: a mapped page is read in software (no access, no fault) and
    /// its byte stored back; an unmapped page of an area that may be read
    /// and written is faulted in by a load first (the store then hits the
    /// writable mapping the fault made); anywhere else the store of a zero
    /// is refused or lands in memory nobody can read.
    fn store_same(&mut self, cpu: usize, space: &Space, a: VirtAddr) -> Result<(), AccessFault> {
        let c = &mut self.cpus[cpu];
        let rw = AreaFlags::READ | AreaFlags::WRITE;
        match space.translate(a.page()) {
            Some((frame, _)) => {
                let mut b = [0u8];
                let pa = PhysAddr::new(frame.start().as_u64() + a.page_offset());
                self.sim.hardware().memory().read(pa, &mut b);
                c.write(a, &b)
            }
            None if space.area(a).is_some_and(|i| i.flags.contains(rw)) => {
                let mut b = [0u8];
                c.read(a, &mut b)?;
                c.write(a, &b)
            }
            None => c.write(a, &[0u8]),
        }
    }

    fn load_elf(&mut self, task: &str, source: &ElfSource, bias: Option<u64>) -> Result<Got, Got> {
        let space = self.space(task)?;
        let (key, short) = match source {
            ElfSource::Builtin => ("builtin".to_string(), "builtin".to_string()),
            ElfSource::Path(p) => (
                p.display().to_string(),
                p.file_name().map_or_else(
                    || p.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                ),
            ),
        };
        let idx = match self.images.iter().position(|i| i.key == key) {
            Some(i) => i,
            None => {
                let bytes = match source {
                    ElfSource::Builtin => elfgen::builtin_elf(),
                    ElfSource::Path(p) => {
                        match input::read_bounded(p, input::MAX_ELF_BYTES, "ELF file") {
                            Ok(b) => b,
                            Err(m) => return Ok(Got::Refused(aspace::Error::NotFound, m)),
                        }
                    }
                };
                match ElfImage::load(self.sim.system().machine(), &bytes) {
                    Ok(image) => self.images.push(Image {
                        key: key.clone(),
                        bytes,
                        image,
                    }),
                    Err(e) => return Ok(Self::refused(e)),
                }
                self.images.len() - 1
            }
        };
        let (image, bytes) = (self.images[idx].image.clone(), &self.images[idx].bytes);
        let r = self.as_task(task, || loader::load(&space, &image, bytes, bias));
        let frames = image.frames().len();
        drop(image);
        match r {
            Ok(l) => {
                let names = elfnames::segment_names(&self.images[idx].bytes, &l);
                for (s, n) in l.segments.iter().zip(names) {
                    let base = s.vaddr & !(PAGE_SIZE - 1);
                    if let Some(labels) = self.labels_mut(task) {
                        labels.insert(base, format!("{short}:{}", n.name));
                    }
                }
                Ok(Got::Done(Some(format!(
                    "{} areas, entry {}, image of {} frames, nothing resident yet",
                    l.segments.len(),
                    l.entry,
                    frames
                ))))
            }
            Err(e) => {
                self.release_images();
                Ok(Got::Refused(e.into(), e.to_string()))
            }
        }
    }

    /// Gives back the frames of images no area uses any more; returns
    /// their names.
    fn release_images(&mut self) -> Vec<String> {
        let mut released = Vec::new();
        let machine = self.sim.system().machine().clone();
        let mut keep = Vec::new();
        for img in self.images.drain(..) {
            if aspace::TryArc::refs(&img.image) != 1 {
                keep.push(img);
                continue;
            }
            let Image { key, bytes, image } = img;
            match ElfImage::release(image, &machine) {
                Ok(()) => released.push(key),
                Err(image) => keep.push(Image { key, bytes, image }),
            }
        }
        self.images = keep;
        released
    }

    /// The counter `name`; `None` for a name the parser does not admit.
    fn counter(&self, name: &str) -> Option<u64> {
        let s = self.sim.system().stats();
        let hw: HwStats = self.sim.hardware().stats();
        let fr = self.sim.hardware().frames().stats();
        Some(match name {
            "faults" => s.faults,
            "faults_resolved" => s.faults_resolved,
            "faults_raced" => s.faults_raced,
            "faults_failed" => s.faults_failed,
            "shootdown_rounds" => s.shootdown_rounds,
            "ipis" => s.ipis,
            "local_invalidations" => s.local_invalidations,
            "lazy_flushes" => s.lazy_flushes,
            "asid_allocs" => s.asid_allocs,
            "asid_steals" => s.asid_steals,
            "cow_copies" => s.cow_copies,
            "frames_allocated" => fr.allocated,
            "frames_released" => s.frame_refs_released,
            "frames_in_use" => fr.in_use,
            "frames_freed" => fr.freed,
            "tlb_hits" => hw.tlb_hits,
            "tlb_misses" => hw.tlb_misses,
            "hw_faults" => hw.faults,
            "stale_accesses" => hw.stale_accesses,
            "stale_fetches" => hw.stale_fetches,
            "pages_reserved" => self.sim.system().reserve().committed(),
            "commit_limit" => self.sim.system().reserve().limit(),
            _ => return None,
        })
    }

    fn check(&mut self, c: &Check) -> Result<Got, Got> {
        Ok(match c {
            Check::Clean => {
                self.release_images();
                let mut wrong = Vec::new();
                if !self.tasks.is_empty() {
                    let names: Vec<&str> = self.tasks.values().map(|t| t.name.as_str()).collect();
                    wrong.push(format!("tasks still alive: {}", names.join(", ")));
                }
                if !self.images.is_empty() {
                    wrong.push(format!("{} ELF images still in use", self.images.len()));
                }
                if !self.pagers.is_empty() {
                    let mut names: Vec<&str> = self.pagers.keys().map(|n| n.as_str()).collect();
                    names.sort_unstable();
                    wrong.push(format!("pagers still running: {}", names.join(", ")));
                }
                let in_use = self.sim.frames_in_use();
                if in_use != self.baseline {
                    wrong.push(format!(
                        "{in_use} frames in use, {} at start",
                        self.baseline
                    ));
                }
                let hw = self.sim.hardware().stats();
                if hw.stale_accesses != 0 {
                    wrong.push(format!("{} stale TLB accesses", hw.stale_accesses));
                }
                if hw.stale_fetches != 0 {
                    wrong.push(format!("{} stale instruction fetches", hw.stale_fetches));
                }
                if wrong.is_empty() {
                    Got::Done(Some(format!(
                        "no task left, all frames back ({in_use} in use, as at start)"
                    )))
                } else {
                    Got::CheckFailed(wrong.join("; "))
                }
            }
            Check::Counter(name, cmp, v) => {
                let got = self.counter(name).ok_or_else(|| {
                    Got::Unavailable(format!(
                        "unknown counter '{name}' (known: {})",
                        COUNTERS.join(", ")
                    ))
                })?;
                if cmp.holds(got, *v) {
                    Got::Done(Some(format!("{name} = {got}")))
                } else {
                    Got::CheckFailed(format!("{name} is {got}, not {} {v}", cmp.symbol()))
                }
            }
            Check::Resident(task, addr, cmp, v) => {
                let space = &self.task(task)?.space;
                let got = match addr {
                    None => Some(space.resident_pages()),
                    Some(a) => space.area(VirtAddr::new(*a)).map(|i| i.resident),
                };
                let what = match addr {
                    None => format!("{task} has"),
                    Some(a) => format!("{task}'s area at {a:#x} has"),
                };
                match got {
                    None => {
                        Got::CheckFailed(format!("{task} has no area at {:#x}", addr.unwrap_or(0)))
                    }
                    Some(g) if cmp.holds(g, *v) => Got::Done(Some(format!(
                        "{what} {}",
                        n_of(g, "resident page", "resident pages")
                    ))),
                    Some(g) => Got::CheckFailed(format!(
                        "{what} {g} resident pages, not {} {v}",
                        cmp.symbol()
                    )),
                }
            }
        })
    }

    /// Destroys what the scenario left and checks every frame came back.
    fn finish(&mut self) {
        if self.want_snapshots && self.snapshots.is_empty() {
            let (tasks, _) = self.views(&[]);
            self.snapshots.push(Snapshot {
                title: format!("{}: end", self.name),
                tasks,
            });
        }
        if !self.tasks.is_empty() {
            let names: Vec<String> = self.tasks.values().map(|t| t.name.clone()).collect();
            self.out.heading(&format!(
                "\n== End of scenario: destroying {} left ({})",
                n_of(names.len() as u64, "task", "tasks"),
                names.join(", ")
            ));
            for n in names {
                let before = self.before();
                let got = self.exec(&Op::Exit(n.clone()));
                let (deltas, _) = self.delta(&before);
                let mut line = format!(
                    "{} {}",
                    step_prefix(&format!("exit {n}"), "ok"),
                    got.describe()
                );
                if !deltas.is_empty() {
                    line.push_str(&format!("  [{}]", deltas.join(", ")));
                }
                self.out.line(&line);
            }
        }
        for i in 0..self.cpus.len() {
            self.cpus[i].idle();
            self.running[i] = None;
        }
        // Pagers outlive their clients: the frames they lent are theirs.
        self.pagers.clear();
        self.release_images();
        let in_use = self.sim.frames_in_use();
        let hw = self.sim.hardware().stats();
        let end = Stmt {
            line: 0,
            text: "(end of run)".into(),
            op: Op::Check(Check::Clean),
            expect: None,
        };
        if in_use == self.baseline {
            self.passed += 1;
        } else {
            self.record_failure(
                &end,
                format!(
                    "frames leaked: {in_use} in use at the end, {} at start",
                    self.baseline
                ),
            );
        }
        if hw.stale_accesses == 0 && hw.stale_fetches == 0 {
            self.passed += 1;
        } else {
            let message = format!(
                "{} accesses through stale TLB entries, {} stale instruction fetches",
                hw.stale_accesses, hw.stale_fetches
            );
            self.record_failure(&end, message);
        }
        let sum = self.summary();
        self.out.block(&format!("\n{}", sum.table()));
        if self.failures.is_empty() {
            self.out.line("All checks passed.");
        } else {
            let mut s = format!(
                "{} FAILED:\n",
                n_of(self.failures.len() as u64, "check", "checks")
            );
            for f in &self.failures {
                s.push_str(&format!("   {}: {}\n", f.at, f.message));
            }
            self.out.error_block(&s);
        }
    }

    /// The counters now.
    pub fn summary(&self) -> Summary {
        let s = self.sim.system().stats();
        let hw = self.sim.hardware().stats();
        let fr = self.sim.hardware().frames().stats();
        Summary {
            faults_served: s.faults_resolved,
            faults_refused: s.faults_failed,
            faults_raced: s.faults_raced,
            hw_faults: hw.faults,
            frames_allocated: fr.allocated,
            pages_allocated: self.allocated.pages,
            page_table_frames_allocated: self.allocated.tables,
            image_frames_allocated: self.allocated.images,
            kernel_frames_allocated: self.allocated_at_start,
            frames_freed: fr.freed,
            frames_peak: fr.peak,
            frames_in_use_at_start: self.baseline,
            frames_in_use_at_end: fr.in_use,
            backend_frames: s.pages_mapped,
            frames_released_after_shootdown: s.frame_refs_released,
            shootdown_rounds: s.shootdown_rounds,
            ipis: s.ipis,
            local_invalidations: s.local_invalidations,
            lazy_flushes: s.lazy_flushes,
            asid_allocs: s.asid_allocs,
            asid_steals: s.asid_steals,
            tlb_hits: hw.tlb_hits,
            tlb_misses: hw.tlb_misses,
            stale_accesses: hw.stale_accesses,
            stale_fetches: hw.stale_fetches,
            checks_passed: self.passed,
            checks_failed: self.failures.len(),
            pages_reserved: self.sim.system().reserve().committed(),
            commit_limit: self.sim.system().reserve().limit(),
        }
    }

    /// Whether every check held.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// The checks that failed so far.
    pub fn failures(&self) -> &[Failure] {
        &self.failures
    }

    /// The snapshots taken.
    pub fn snapshots(&self) -> &[Snapshot] {
        &self.snapshots
    }

    /// The whole run as JSON.
    pub fn json(&self, command: &str) -> Value {
        json!({
            "command": command,
            "scenario": self.name,
            "machine": self.spec,
            "steps": self.steps,
            "failures": self.failures,
            "summary": self.summary(),
            "ok": self.ok(),
        })
    }

    /// The output channel (to finish the progress bar).
    pub fn out(&self) -> &Out {
        &self.out
    }
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Say(_) => "say",
        Op::Echo(_) => "echo",
        Op::Task(_) => "task",
        Op::Fork(..) => "fork",
        Op::Exit(_) => "exit",
        Op::Run(..) => "cpu-run",
        Op::Idle(_) => "cpu-idle",
        Op::Area { .. } => "area",
        Op::Pager(..) => "pager",
        Op::PagedArea { .. } => "area",
        Op::AreaAny { .. } => "area-any",
        Op::Resize(..) => "resize",
        Op::Destroy(..) => "destroy",
        Op::Share { .. } => "share",
        Op::Flags(..) => "flags",
        Op::Elf(..) => "elf",
        Op::Write(..) => "write",
        Op::Read(..) => "read",
        Op::Fetch(..) => "fetch",
        Op::Fault(..) => "fault",
        Op::Touch { .. } => "touch",
        Op::Map(_) => "map",
        Op::Stats => "stats",
        Op::Snapshot(_) => "snapshot",
        Op::Check(_) => "check",
        Op::Linux { line, .. } => match &line.command {
            aspace_linux::Command::Call(c) => c.name(),
            _ => "linux",
        },
        Op::LinuxMaps(_) => "maps-linux",
        Op::LinuxRlimit(..) => "rlimit",
        Op::LinuxMaxMapCount(_) => "sysctl",
    }
}
