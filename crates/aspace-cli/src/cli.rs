//! The command line: options, commands, and running them. [`main`] is the
//! whole `aspace` binary; [`run_scenario_text`] and [`run_elf_bytes`] run
//! one scenario or executable in-process, printing nothing when
//! [`Opts::quiet`] is set.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aspace_sim::Arch;
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::engine::{Engine, MachineSpec};
use crate::out::Out;
use crate::script::{MachineShape, Script, ScriptError};
use crate::{demo, elfcmd, input, num, script, svg};

const LONG_ABOUT: &str = "\
Runs the aspace address-space subsystem (after HelenOS as.c) on a simulated multi-CPU x86_64 \
machine: physical memory, a frame allocator, per-CPU ASID-tagged TLBs and MMUs walking real \
x86_64 page tables, and TLB-shootdown IPIs. Everything happens in this process; no file is \
needed for the demo.

With no command, `aspace` runs the demo: an ELF executable paged in on demand, a heap grown \
and shrunk, a stack faulted in page by page, memory shared between tasks, rights changed from \
RW to RX, a task forked copy-on-write, bad accesses refused, ASIDs recycled, and every task \
destroyed with every frame back. Each step is narrated with what it cost (faults, data pages and page-table frames \
counted apart, shootdowns, IPIs, ASID steals); a summary table ends the run.

`aspace run FILE` drives the same engine from a scenario file (see `aspace run --help` for the \
format), and `aspace elf PATH` loads any x86_64 executable and reports how its pages come in.

Exit status: 0 when every check held, 1 when a check or a step failed, 2 for bad input \
(options, scenario files, unreadable files). Input files must be regular files of at most \
16 MiB (scenarios) or 256 MiB (executables).";

const EXAMPLES: &str = "\
Examples:
  aspace                                   the demo, on 4 CPUs with 8 ASIDs
  aspace demo --cpus 8 --asids 16          the demo on a bigger machine
  aspace demo --print-scenario > d.txt     the demo as a scenario file to edit
  aspace run d.txt                         ...and run it
  aspace run crates/aspace-cli/examples/scenarios/share.aspace --svg share.svg
  aspace elf /bin/ls                       how /bin/ls pages in
  aspace elf builtin --json                the built-in ELF, as JSON
  aspace demo --json | jq .summary         the counters, for scripts";

const RUN_ABOUT: &str = "\
Runs a scenario file: one operation per line, `#` starts a comment, blank lines are ignored. \
Tasks are address spaces; CPUs run tasks; memory accesses are made by a CPU that runs the task \
(the lowest-numbered one), through its TLB and the page tables, faulting into the core.

Numbers: 4096, 0x1000, 0x7fff_f000. Sizes: bytes (4096, 0x1000), pages (16p) or units \
(64K, 1M, 2G). Rights: letters r, w, x (rw, rx, r-x). Text: a word or \"quoted\" (\\n, \\t, \
\\\", \\\\ escapes).

Operations:
  machine [cpus N] [memory SIZE] [asids N] [commit-limit SIZE]
                                             size the machine (before any other line; options
                                             given on the command line win)
  task NAME                                  create a task (an empty address space)
  fork TASK NAME                             create task NAME as a copy of TASK (Unix fork):
                                             private pages are shared copy-on-write (the first
                                             write on either side copies one page), shared
                                             areas stay shared
  exit NAME                                  destroy it: areas, frames, ASID, page table
  cpu N run NAME | cpu N idle                switch CPU N to a task, or to the kernel
  area TASK ADDR SIZE RIGHTS [LABEL]         create an anonymous area (LABEL names it in maps);
                                             RIGHTS may be followed by `guard` (a free page is
                                             kept below the area), `grows-down` (a fault in
                                             that page grows the area down a page, up to 8M)
                                             and `late-reserve` (memory reserved page by page
                                             at fault time instead of all at once) or
                                             `reserve-on-write` (late-reserve until the area is
                                             given write, then all its pages at once: Linux's
                                             charge of a private mapping made writable)
  area TASK any SIZE RIGHTS [above ADDR] [align SIZE] [guard] [grows-down] [LABEL]
                                             create it at the lowest free place at or above ADDR
                                             (default 0), aligned; prints the base chosen
  area TASK ADDR SIZE RIGHTS pager NAME [LABEL]
                                             an area whose pages pager NAME supplies on faults
  pager NAME file TEXT                       start a pager task serving TEXT as a file, page by
                                             page from its own memory, when a fault asks
  pager NAME kill                            the pager dies: later page-ins fail (pager-gone)
  resize TASK ADDR SIZE                      make the area at ADDR end at ADDR+SIZE
  destroy TASK ADDR                          destroy the area containing ADDR
  share SRC ADDR DST ADDR2 RIGHTS [LABEL]    DST maps SRC's whole area at ADDR2
  flags TASK ADDR RIGHTS                     change an area's rights, keeping its data
  elf TASK builtin|PATH [bias ADDR]          load an ELF executable (relative to the file)
  write TASK ADDR u8|u16|u32|u64 VALUE       a user store (little-endian)
  write TASK ADDR str TEXT                   store the bytes of TEXT
  read TASK ADDR u8|u16|u32|u64              a user load
  read TASK ADDR str LEN                     load LEN bytes, shown as text
  fetch TASK ADDR                            an instruction fetch of one byte
  fault TASK ADDR read|write|exec            a one-byte access; reports how it ends
  touch TASK ADDR SIZE [read|write|exec] [down]
                                             one access per page (down: highest page first);
                                             fault and touch writes store back the byte there
  map [TASK...]                              print address spaces like /proc/PID/maps + pmap
  stats                                      print the counters so far
  snapshot [TITLE]                           record every address space for --svg (one panel
                                             each; with none, --svg draws the end state)
  check clean                                no task left, every frame back, no stale TLB use
  check COUNTER CMP N                        e.g. check asid_steals >= 1
  check resident TASK [ADDR] CMP N           resident pages of a task (or of one area)
  say TEXT                                   print a heading
  echo on|off                                print each step, or only failures

Linux's memory calls (Linux's semantics and errno names; the task's first call gives it a
process map: break at a quarter of the user space, mmap(NULL) top-down from 256M below its top):
  mmap TASK ADDR LEN PROT private|shared anon|file F OFFSET [fixed|noreplace] [populate]
       [noreserve] [growsdown]               map (ADDR 0: placed top-down; a free hint is
                                             taken); file F: the task's in-memory file F,
                                             one object for all its mappings of F (a memfd:
                                             fork children share it, another task's F is
                                             another file); prints the address
  munmap TASK ADDR LEN                       unmap any range (several mappings, holes)
  mprotect TASK ADDR LEN PROT [refuse-holes] change rights (PROT: rw, r-x, none), splitting and
                                             merging mappings as Linux does; a hole: ENOMEM
                                             after the part before it changed (Linux), or
                                             with nothing changed (refuse-holes)
  mremap TASK OLD OLDLEN NEWLEN [maymove] [fixed NEW] [dontunmap]
                                             shrink, grow in place, or move the pages;
                                             dontunmap leaves the old range mapped and
                                             empty; OLDLEN 0 maps a shared page again
  brk TASK ADDR                              move the program break (0 asks for it)
  madvise TASK ADDR LEN ADVICE [refuse-holes]
                                             ADVICE is MADV_* in lower case without MADV_:
                                             dontneed drops pages (private ones read as
                                             zeros after), free; random, sequential,
                                             dontfork, wipeonfork, dontdump, hugepage,
                                             mergeable, ... (and their undoing) set hints
                                             that split and merge mappings; populate_read,
                                             populate_write fault pages in; guard_install
                                             makes guard pages (every access faults),
                                             guard_remove empty pages again; willneed, cold,
                                             pageout do nothing here
  msync TASK ADDR LEN [async] [invalidate] [sync]
                                             Linux's checks (the objects live in memory:
                                             nothing to write back)
  mlock TASK ADDR LEN [onfault] [refuse-holes]
                                             lock (mlock2): splits and merges mappings,
                                             faults the pages in (not with onfault)
  munlock TASK ADDR LEN [refuse-holes]       unlock
  mlockall TASK [current] [future] [onfault] lock every mapping now, or later ones as made
  munlockall TASK                            unlock all, and stop locking new ones
  mincore TASK ADDR LEN                      which pages are resident (1) or not (0)
  mseal TASK ADDR LEN                        seal the range's mappings: no unmap, move, resize
                                             or rights change any more (EPERM)
  rlimit TASK memlock SIZE|unlimited          RLIMIT_MEMLOCK without CAP_IPC_LOCK (none by
                                             default): mlock past it ENOMEM, locked mmap or
                                             mremap growth EAGAIN, 0 makes locking EPERM
  rlimit TASK stack SIZE|unlimited            RLIMIT_STACK (8M by default): how far a
                                             growsdown mapping grows when an access below
                                             it faults (it grows, and the access is retried)
  sysctl vm.max_map_count N                  the most mappings a process may have (65530 by
                                             default): a call that would pass it ENOMEM
  maps TASK --linux                          the mappings as /proc/PID/maps prints them
  These take `expect ok|ADDR|EEXIST|ENOMEM|EINVAL|EFAULT|EACCES|...` (Linux's names).

Any operation that can fail may end with `expect OUTCOME`; without it, success is expected \
(`fault` alone only reports). Outcomes: ok; an errno name for area operations (ENOENT, ENOMEM, \
EPERM, EBADMEM, ENOTSUP, EADDRNOTAVAIL, EINVAL); a fault reason for accesses (no-area, access, \
partial, no-memory, guard, pager-error, pager-gone); a value for read and fetch (expect 42); a text for read str \
(expect \"hi\"). A step whose outcome differs is reported as FAILED with file:line, the run \
goes on, and the exit status is 1.

COUNTER is one of: faults, faults_resolved, faults_raced, faults_failed, shootdown_rounds, \
ipis, local_invalidations, lazy_flushes, asid_allocs, asid_steals, cow_copies, frames_allocated, \
frames_released, frames_in_use, frames_freed, tlb_hits, tlb_misses, hw_faults, \
stale_accesses, stale_fetches, pages_reserved, commit_limit. CMP is one of == != < <= > >=.

Memory reservation: an anonymous area reserves its pages against the commit limit when it is \
created or grown (ENOMEM beyond it, nothing changed) and gives them back when it shrinks or \
goes; a shared area's pages count once; a late-reserve area reserves each page when a fault \
maps it (no-memory beyond the limit), a reserve-on-write one too until `flags` (or Linux's \
`mprotect`) gives it write, which reserves the rest (ENOMEM beyond the limit, nothing changed). The limit is all free frames unless --commit-limit SIZE \
or `machine commit-limit SIZE` sets it (e.g. 64p); maps show each area's reserved pages \
(Resv.), stats the pages reserved of the limit.

Before anything runs the whole file is checked; every bad line is reported, all in one run, \
as FILE:LINE: message (unknown operation, bad number, missing task, a CPU the machine lacks, \
an access by a task no CPU runs, an area address outside user space) and the exit status is 2. Whatever the \
scenario leaves is destroyed at the end, and the run checks that every frame came back.

Example:
  task A
  cpu 0 run A
  area A 0x400000 16p rw heap
  write A 0x400000 u64 42
  read A 0x400000 u64 expect 42
  fault A 0x0 read expect no-area
  resize A 0x400000 4p
  map A";

const ELF_ABOUT: &str = "\
Loads an x86_64 ELF executable (ET_EXEC or ET_DYN; position-independent ones at \
0x555555554000) into a fresh address space, one demand-paged area per PT_LOAD segment, and \
shows the areas, each named after the sections it holds (.text, .rodata, .eh_frame, .data...; \
text, rodata or data from its rights when the file has no section headers). Then touches every page (a read, or an instruction fetch where the area is \
not readable) and reports how many faults that took, how many pages got frames of their own \
(copies: writable segments, partial pages, bss) and how many map the image's own frames \
(read-only pages wholly inside the file: shared with the image, no copy). Touching stops at \
the first page refused for lack of memory (the exit status is then 1: raise --memory). PATH \
may be `builtin` for the small executable the tool carries.";

/// The parsed command line.
#[derive(Parser, Debug)]
#[command(
    name = "aspace",
    version,
    about = "Address spaces after HelenOS as.c, on a simulated multi-CPU x86_64 machine",
    long_about = LONG_ABOUT,
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = false
)]
pub struct Cli {
    /// What to do (the demo when absent).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options for every command.
    #[command(flatten)]
    pub opts: Opts,
}

/// Options for every command.
#[derive(Args, Debug, Clone, Default)]
pub struct Opts {
    /// Print one JSON document on stdout instead of the narration.
    #[arg(long, global = true)]
    pub json: bool,
    /// Architecture of the simulated machine: x86_64, riscv64 (Sv39),
    /// riscv64-sv48 or aarch64 [default: x86_64].
    #[arg(long, global = true, value_name = "ARCH", value_parser = parse_arch)]
    pub arch: Option<Arch>,
    /// CPUs of the simulated machine (1-64) [default: 4].
    #[arg(long, global = true, value_name = "N")]
    pub cpus: Option<usize>,
    /// Physical memory, e.g. 64M, 1G (1M-4G) [default: 64M].
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_memory)]
    pub memory: Option<u64>,
    /// User ASIDs (at least one per CPU, at most 4095) [default: 8].
    #[arg(long, global = true, value_name = "N")]
    pub asids: Option<u16>,
    /// Entries per TLB (1-4096) [default: 64].
    #[arg(long, global = true, value_name = "N")]
    pub tlb_entries: Option<usize>,
    /// The commit limit: memory anonymous areas may reserve, e.g. 256p,
    /// 1M [default: all free frames].
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_memory)]
    pub commit_limit: Option<u64>,
    /// Draw the address spaces as an SVG picture into FILE.
    #[arg(long, global = true, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Never show a progress bar (it only shows on long runs, when stderr
    /// is a terminal).
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// Print nothing at all (for running scenarios in-process, as tests
    /// do); not a command-line option.
    #[arg(skip)]
    pub quiet: bool,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the built-in demo (what `aspace` alone does).
    #[command(
        long_about = "Runs the built-in demo: an ELF executable loaded on demand, a heap grown \
        and shrunk, a stack that grows by faults, an area shared between tasks, rights changed \
        RW -> RX, a task forked copy-on-write, bad accesses refused, ASIDs recycled (one more \
        task than --asids, plus one), \
        every task destroyed with every frame back. Its own checks decide the exit status.",
        after_help = "Examples:\n  aspace demo\n  aspace demo --cpus 2 --asids 2\n  aspace demo --svg demo.svg\n  aspace demo --print-scenario"
    )]
    Demo {
        /// Print the demo as a scenario file (for `aspace run`) and exit.
        #[arg(long)]
        print_scenario: bool,
    },
    /// Run a scenario file (see `aspace run --help` for the format).
    #[command(long_about = RUN_ABOUT)]
    Run {
        /// The scenario file.
        file: PathBuf,
    },
    /// Load an ELF executable, touch every page, report faults and copies.
    #[command(
        long_about = ELF_ABOUT,
        after_help = "Examples:\n  aspace elf /bin/ls\n  aspace elf builtin --svg elf.svg\n  aspace elf /usr/bin/env --json"
    )]
    Elf {
        /// The executable, or `builtin`.
        path: String,
    },
}

/// `--arch`: an architecture's name.
fn parse_arch(s: &str) -> Result<Arch, String> {
    Arch::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = Arch::ALL.iter().map(|a| a.name()).collect();
        format!("unknown architecture '{s}': use {}", names.join(", "))
    })
}

fn parse_memory(s: &str) -> Result<u64, String> {
    num::parse_size(s).map_err(|e| e.to_string())
}

/// An error in the input (options, scenario files, unreadable files): the
/// exit status is 2. Each message is one line for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputError(pub Vec<String>);

impl InputError {
    /// One message.
    pub fn one(m: String) -> InputError {
        InputError(vec![m])
    }
}

/// How a command ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Every check held: exit status 0.
    Passed,
    /// A check or a step failed: exit status 1. One message per failure
    /// (`file:line: what`), never empty.
    Failed(Vec<String>),
    /// Bad input, nothing (or not everything) ran: exit status 2.
    Input {
        /// The messages, one per problem, never empty.
        errors: InputError,
        /// The scenario errors with their lines, when there are some.
        script: Option<Vec<ScriptError>>,
    },
}

impl Outcome {
    /// The exit status: 0, 1 or 2.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Passed => 0,
            Outcome::Failed(_) => 1,
            Outcome::Input { .. } => 2,
        }
    }

    fn input(errors: InputError) -> Outcome {
        Outcome::Input {
            errors,
            script: None,
        }
    }

    fn from_result(r: Result<Vec<String>, InputError>) -> Outcome {
        match r {
            Ok(f) if f.is_empty() => Outcome::Passed,
            Ok(f) => Outcome::Failed(f),
            Err(e) => Outcome::input(e),
        }
    }
}

impl Opts {
    /// The machine: these options first, then the scenario's `machine`
    /// line, then the defaults.
    pub fn spec(&self, req: &script::MachineReq) -> MachineSpec {
        MachineSpec {
            arch: self.arch.unwrap_or_default(),
            cpus: self.cpus.or(req.cpus).unwrap_or(4),
            memory: self.memory.or(req.memory).unwrap_or(64 << 20),
            asids: self.asids.or(req.asids).unwrap_or(8),
            tlb_entries: self.tlb_entries.unwrap_or(64),
            commit_limit: self
                .commit_limit
                .map(|bytes| bytes.div_ceil(aspace::PAGE_SIZE))
                .or(req.commit_limit),
        }
    }

    /// The output channel for a command with `work` steps.
    pub fn out(&self, work: u64) -> Out {
        if self.quiet {
            Out::quiet()
        } else {
            Out::new(self.json, work, !self.no_progress)
        }
    }

    /// Prints a document (JSON, or a line) on stdout unless quiet.
    pub(crate) fn print(&self, text: &str) {
        if !self.quiet {
            // Dropped on a closed pipe, never a panic.
            let _ = writeln!(std::io::stdout().lock(), "{text}");
        }
    }
}

fn script_errors(errors: &[ScriptError]) -> InputError {
    InputError(
        errors
            .iter()
            .map(|e| format!("{e}\n    | {}", e.source))
            .collect(),
    )
}

fn report_input_error(json: bool, e: &InputError, structured: Option<&[ScriptError]>) {
    for m in &e.0 {
        let _ = writeln!(std::io::stderr().lock(), "aspace: {m}");
    }
    if json {
        let errors: Vec<_> = match structured {
            Some(se) => se
                .iter()
                .map(|e| json!({"file": e.file, "line": e.line, "message": e.message, "source": e.source}))
                .collect(),
            None => e.0.iter().map(|m| json!({"message": m})).collect(),
        };
        let _ = writeln!(
            std::io::stdout().lock(),
            "{}",
            serde_json::to_string_pretty(&json!({"ok": false, "errors": errors}))
                .unwrap_or_default()
        );
    }
}

/// Runs a parsed scenario; returns the checks that failed.
fn run_script(opts: &Opts, script: &Script, command: &str) -> Result<Vec<String>, InputError> {
    let spec = opts.spec(&script.machine);
    // Build once to report a bad machine before validating against it.
    let out = opts.out(Engine::work(script));
    let mut engine =
        Engine::new(spec, &script.name, out, opts.svg.is_some()).map_err(InputError::one)?;
    engine.out().restart();
    engine.run(script);
    engine.out().finish();
    if opts.json {
        opts.print(&serde_json::to_string_pretty(&engine.json(command)).unwrap_or_default());
    }
    if let Some(path) = &opts.svg {
        let pic = svg::render(
            engine.snapshots(),
            &if command == "demo" {
                "aspace demo".to_string()
            } else {
                format!("aspace {command} {}", script.name)
            },
        );
        write_svg(opts, path, &pic)?;
    }
    Ok(engine
        .failures()
        .iter()
        .map(|f| format!("{}: {}", f.at, f.message))
        .collect())
}

/// Writes the picture to `path`, saying so unless in JSON mode.
pub(crate) fn write_svg(opts: &Opts, path: &Path, pic: &str) -> Result<(), InputError> {
    std::fs::write(path, pic)
        .map_err(|e| InputError::one(format!("cannot write {}: {e}", path.display())))?;
    if !opts.json {
        opts.print(&format!("Picture written to {}", path.display()));
    }
    Ok(())
}

/// Parses and checks a scenario against the machine `opts` and its
/// `machine` line ask for: every parse error and every validation error
/// of the lines that parsed, in line order.
fn parse_and_check(
    opts: &Opts,
    name: &str,
    text: &str,
    dir: &Path,
) -> Result<Script, Vec<ScriptError>> {
    let parsed = script::parse_all(name, text, dir);
    let spec = opts.spec(&parsed.script.machine);
    script::check(
        parsed,
        &MachineShape {
            cpus: spec.cpus.clamp(1, 64),
            user_end: spec.arch.layout().user_end,
        },
    )
}

/// Parses, checks and runs the scenario `text` (named `name` in messages;
/// relative ELF paths are taken from `dir`).
pub fn run_scenario_text(opts: &Opts, name: &str, text: &str, dir: &Path) -> Outcome {
    match parse_and_check(opts, name, text, dir) {
        Err(errs) => Outcome::Input {
            errors: script_errors(&errs),
            script: Some(errs),
        },
        Ok(script) => Outcome::from_result(run_script(opts, &script, "run")),
    }
}

/// `aspace run FILE`: reads the file (a regular file of at most
/// [`input::MAX_SCENARIO_BYTES`]) and runs it.
pub fn run_scenario_file(opts: &Opts, file: &Path) -> Outcome {
    let name = file.display().to_string();
    let bytes = match input::read_bounded(file, input::MAX_SCENARIO_BYTES, "scenario file") {
        Ok(b) => b,
        Err(m) => return Outcome::input(InputError::one(m)),
    };
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            return Outcome::input(InputError::one(format!(
                "cannot read {name}: not UTF-8 text ({})",
                e.utf8_error()
            )))
        }
    };
    let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
    run_scenario_text(opts, &name, &text, &dir)
}

/// `aspace elf` on the bytes of an executable named `name`.
pub fn run_elf_bytes(opts: &Opts, name: &str, bytes: &[u8]) -> Outcome {
    Outcome::from_result(elfcmd::run_bytes(opts, name, bytes))
}

/// `aspace demo`.
fn run_demo(opts: &Opts, print_scenario: bool) -> Outcome {
    let spec = opts.spec(&script::MachineReq::default());
    if let Err(m) = spec.check() {
        return Outcome::input(InputError::one(m));
    }
    let text = demo::scenario(&spec);
    if print_scenario {
        if opts.json {
            opts.print(&json!({"command": "demo", "scenario": text}).to_string());
        } else if !opts.quiet {
            let _ = write!(std::io::stdout().lock(), "{text}");
        }
        return Outcome::Passed;
    }
    match parse_and_check(opts, "<demo>", &text, Path::new(".")) {
        Ok(script) => Outcome::from_result(run_script(opts, &script, "demo")),
        Err(errs) => Outcome::input(InputError(
            std::iter::once(format!(
                "internal error: the demo written for {} does not check",
                spec.describe()
            ))
            .chain(script_errors(&errs).0)
            .collect(),
        )),
    }
}

/// Runs a parsed command line.
pub fn execute(cli: Cli) -> Outcome {
    let opts = cli.opts;
    match cli.command.unwrap_or(Command::Demo {
        print_scenario: false,
    }) {
        Command::Demo { print_scenario } => run_demo(&opts, print_scenario),
        Command::Run { file } => run_scenario_file(&opts, &file),
        Command::Elf { path } => Outcome::from_result(elfcmd::run(&opts, &path)),
    }
}

/// The `aspace` binary: parses the command line, runs it, reports input
/// errors on stderr (and as JSON with `--json`), and returns the exit
/// status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.opts.json;
    let outcome = execute(cli);
    if let Outcome::Input { errors, script } = &outcome {
        report_input_error(json, errors, script.as_deref());
    }
    ExitCode::from(outcome.exit_code())
}
