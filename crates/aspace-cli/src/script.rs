//! The scenario format: one operation per line, `#` starts a comment.
//!
//! Parsing turns the text into [`Stmt`]s and reports every line it cannot
//! read as `file:line: message`; [`validate`] then checks the statements
//! against the machine (tasks exist when used, CPUs exist, accesses happen
//! on a CPU that runs the task) before anything runs. [`parse_all`] and
//! [`check`] do both in one pass over a file with errors, so that every
//! error, of either kind, is reported at once.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use aspace::{AreaFlags, Error, FaultReason, Layout, PAGE_SIZE};

use crate::input;
use crate::num::{parse_rights, parse_size, parse_u64, NumError, SizeError};

/// Every operation: name, synopsis, what it does.
pub const OPS: &[(&str, &str, &str)] = &[
    (
        "task",
        "task NAME",
        "create an empty address space (a task)",
    ),
    (
        "fork",
        "fork TASK NAME",
        "create task NAME as a copy of TASK (Unix fork): private pages are \
         shared copy-on-write, the first write on either side copies one; \
         shared areas stay shared; a task that made Linux calls forks as \
         Linux does (MADV_DONTFORK ranges left out, MADV_WIPEONFORK ones empty)",
    ),
    (
        "exit",
        "exit NAME",
        "destroy a task: its areas, frames, ASID and page table",
    ),
    (
        "cpu",
        "cpu N run NAME | cpu N idle",
        "switch CPU N to a task (or to the kernel)",
    ),
    (
        "area",
        "area TASK ADDR SIZE RIGHTS [guard] [grows-down] [late-reserve|reserve-on-write] [LABEL]",
        "create an area of anonymous memory; after RIGHTS: 'guard' (a free page \
         is kept below the area, a fault there is 'guard'), 'grows-down' (the \
         area grows a page per fault in that page, up to 8M), 'late-reserve' \
         (reserve pages at fault time), 'reserve-on-write' (late-reserve until \
         the area is given write, then all its pages)",
    ),
    (
        "area",
        "area TASK any SIZE RIGHTS [above ADDR] [align SIZE] [guard] [grows-down] [late-reserve|reserve-on-write] [LABEL]",
        "create an area at the lowest free place at or above ADDR (default \
         0), and print its base",
    ),
    (
        "pager",
        "pager NAME file TEXT | pager NAME kill",
        "start a pager task serving TEXT as a file (areas: area TASK ADDR SIZE RIGHTS pager NAME), or kill it",
    ),
    (
        "resize",
        "resize TASK ADDR SIZE",
        "make the area at ADDR end at ADDR+SIZE",
    ),
    (
        "destroy",
        "destroy TASK ADDR",
        "destroy the area containing ADDR",
    ),
    (
        "share",
        "share SRC ADDR DST ADDR2 RIGHTS [LABEL]",
        "share SRC's area at ADDR with DST at ADDR2",
    ),
    (
        "flags",
        "flags TASK ADDR RIGHTS",
        "change the rights of the area containing ADDR",
    ),
    (
        "elf",
        "elf TASK builtin|PATH [bias ADDR]",
        "load an ELF executable, one area per segment",
    ),
    (
        "write",
        "write TASK ADDR u8|u16|u32|u64 VALUE | write TASK ADDR str TEXT",
        "a user store",
    ),
    (
        "read",
        "read TASK ADDR u8|u16|u32|u64 | read TASK ADDR str LEN",
        "a user load",
    ),
    (
        "fetch",
        "fetch TASK ADDR",
        "an instruction fetch of one byte",
    ),
    (
        "fault",
        "fault TASK ADDR read|write|exec",
        "a one-byte access, reporting how it ends",
    ),
    (
        "touch",
        "touch TASK ADDR SIZE [read|write|exec] [down]",
        "one access per page of a range",
    ),
    (
        "map",
        "map [TASK...]",
        "print address spaces like /proc/PID/maps and pmap",
    ),
    ("stats", "stats", "print the counters so far"),
    (
        "snapshot",
        "snapshot [TITLE]",
        "record every address space for --svg",
    ),
    (
        "check",
        "check clean | check COUNTER CMP N | check resident TASK [ADDR] CMP N",
        "assert",
    ),
    ("say", "say TEXT", "print a heading"),
    (
        "echo",
        "echo on|off",
        "turn the printing of each step on or off",
    ),
    (
        "machine",
        "machine [cpus N] [memory SIZE] [asids N] [commit-limit SIZE]",
        "size the machine (first lines only)",
    ),
    (
        "mmap",
        "mmap TASK ADDR LEN PROT private|shared anon|file F OFFSET [fixed|noreplace] ...",
        "Linux's mmap",
    ),
    ("munmap", "munmap TASK ADDR LEN", "Linux's munmap"),
    ("mprotect", "mprotect TASK ADDR LEN PROT", "Linux's mprotect"),
    (
        "mremap",
        "mremap TASK OLD OLDLEN NEWLEN [maymove] [fixed NEW] [dontunmap]",
        "Linux's mremap",
    ),
    ("brk", "brk TASK ADDR", "Linux's brk"),
    (
        "madvise",
        "madvise TASK ADDR LEN ADVICE (dontneed, free, random, dontfork, populate_write, guard_install, ...)",
        "Linux's madvise",
    ),
    (
        "msync",
        "msync TASK ADDR LEN [async] [invalidate] [sync]",
        "Linux's msync",
    ),
    ("mlock", "mlock TASK ADDR LEN [onfault]", "Linux's mlock2"),
    ("munlock", "munlock TASK ADDR LEN", "Linux's munlock"),
    (
        "mlockall",
        "mlockall TASK [current] [future] [onfault]",
        "Linux's mlockall",
    ),
    ("munlockall", "munlockall TASK", "Linux's munlockall"),
    (
        "mincore",
        "mincore TASK ADDR LEN",
        "Linux's mincore: which pages are resident",
    ),
    (
        "mseal",
        "mseal TASK ADDR LEN",
        "Linux's mseal: the mappings sealed against change",
    ),
    (
        "rlimit",
        "rlimit TASK memlock|stack SIZE|unlimited",
        "RLIMIT_MEMLOCK for the task's locking calls, RLIMIT_STACK for its stacks' growth",
    ),
    (
        "sysctl",
        "sysctl vm.max_map_count N",
        "the most mappings a Linux process may have (65530 by default)",
    ),
];

/// Counters `check` knows.
pub const COUNTERS: &[&str] = &[
    "faults",
    "faults_resolved",
    "faults_raced",
    "faults_failed",
    "shootdown_rounds",
    "ipis",
    "local_invalidations",
    "lazy_flushes",
    "asid_allocs",
    "asid_steals",
    "cow_copies",
    "frames_allocated",
    "frames_released",
    "frames_in_use",
    "frames_freed",
    "tlb_hits",
    "tlb_misses",
    "hw_faults",
    "stale_accesses",
    "stale_fetches",
    "pages_reserved",
    "commit_limit",
];

/// A kind of user access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Load.
    Read,
    /// Store.
    Write,
    /// Instruction fetch.
    Exec,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        match s {
            "read" | "r" => Some(Kind::Read),
            "write" | "w" => Some(Kind::Write),
            "exec" | "x" | "fetch" => Some(Kind::Exec),
            _ => None,
        }
    }

    /// The word for it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Read => "read",
            Kind::Write => "write",
            Kind::Exec => "exec",
        }
    }
}

/// Width of an integer access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    /// 1 byte.
    U8,
    /// 2 bytes.
    U16,
    /// 4 bytes.
    U32,
    /// 8 bytes.
    U64,
}

impl Width {
    fn parse(s: &str) -> Option<Width> {
        match s {
            "u8" => Some(Width::U8),
            "u16" => Some(Width::U16),
            "u32" => Some(Width::U32),
            "u64" => Some(Width::U64),
            _ => None,
        }
    }

    /// Bytes.
    pub fn bytes(self) -> usize {
        match self {
            Width::U8 => 1,
            Width::U16 => 2,
            Width::U32 => 4,
            Width::U64 => 8,
        }
    }

    fn max(self) -> u64 {
        match self {
            Width::U64 => u64::MAX,
            w => (1u64 << (8 * w.bytes())) - 1,
        }
    }
}

/// What a write stores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    /// A little-endian integer.
    Int(Width, u64),
    /// Bytes of a text.
    Str(String),
}

impl Data {
    /// The bytes stored.
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Data::Int(w, v) => v.to_le_bytes()[..w.bytes()].to_vec(),
            Data::Str(s) => s.as_bytes().to_vec(),
        }
    }
}

/// What a read loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadAs {
    /// A little-endian integer.
    Int(Width),
    /// `n` bytes shown as text.
    Str(usize),
}

/// Where an ELF file comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ElfSource {
    /// The executable built into the tool.
    Builtin,
    /// A file (relative paths are relative to the scenario file).
    Path(PathBuf),
}

/// A comparison in `check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Cmp {
    fn parse(s: &str) -> Option<Cmp> {
        Some(match s {
            "==" | "=" => Cmp::Eq,
            "!=" => Cmp::Ne,
            "<" => Cmp::Lt,
            "<=" => Cmp::Le,
            ">" => Cmp::Gt,
            ">=" => Cmp::Ge,
            _ => return None,
        })
    }

    /// Whether `a CMP b`.
    pub fn holds(self, a: u64, b: u64) -> bool {
        match self {
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
        }
    }

    /// The symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            Cmp::Eq => "==",
            Cmp::Ne => "!=",
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
        }
    }
}

/// What `check` asserts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// No task left, every ELF image released, every frame back, no stale
    /// TLB access.
    Clean,
    /// A counter compared with a number.
    Counter(String, Cmp, u64),
    /// Resident pages of a task (or of its area at an address).
    Resident(String, Option<u64>, Cmp, u64),
}

/// One operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Print a heading.
    Say(String),
    /// Print steps or not.
    Echo(bool),
    /// Create a task.
    Task(String),
    /// Create a task (the second name) as a copy-on-write copy of the
    /// first.
    Fork(String, String),
    /// Destroy a task.
    Exit(String),
    /// Switch a CPU to a task.
    Run(usize, String),
    /// Switch a CPU to the kernel.
    Idle(usize),
    /// Create an anonymous area.
    Area {
        /// Task.
        task: String,
        /// Base.
        addr: u64,
        /// Bytes.
        size: u64,
        /// Rights.
        rights: AreaFlags,
        /// Name shown in maps.
        label: Option<String>,
    },
    /// Start a built-in pager serving a text as a file (`Some`), or kill
    /// it (`None`).
    Pager(String, Option<String>),
    /// Create an area whose pages a pager supplies.
    PagedArea {
        /// Task.
        task: String,
        /// Base.
        addr: u64,
        /// Bytes.
        size: u64,
        /// Rights.
        rights: AreaFlags,
        /// The pager's name.
        pager: String,
        /// Name shown in maps.
        label: Option<String>,
    },
    /// Create an anonymous area wherever there is room.
    AreaAny {
        /// Task.
        task: String,
        /// Least base.
        bound: u64,
        /// Alignment of the base in bytes (a power of two).
        align: u64,
        /// Bytes.
        size: u64,
        /// Rights (with the placement flags).
        rights: AreaFlags,
        /// Name shown in maps.
        label: Option<String>,
    },
    /// Resize an area.
    Resize(String, u64, u64),
    /// Destroy an area.
    Destroy(String, u64),
    /// Share an area.
    Share {
        /// Source task.
        src: String,
        /// Address in the source area.
        src_addr: u64,
        /// Destination task.
        dst: String,
        /// Base of the new area.
        dst_addr: u64,
        /// Rights of the new area.
        rights: AreaFlags,
        /// Name shown in maps.
        label: Option<String>,
    },
    /// Change rights.
    Flags(String, u64, AreaFlags),
    /// Load an ELF executable.
    Elf(String, ElfSource, Option<u64>),
    /// A store.
    Write(String, u64, Data),
    /// A load.
    Read(String, u64, ReadAs),
    /// An instruction fetch.
    Fetch(String, u64),
    /// A one-byte access.
    Fault(String, u64, Kind),
    /// One access per page.
    Touch {
        /// Task.
        task: String,
        /// First address.
        addr: u64,
        /// Bytes.
        size: u64,
        /// Access.
        kind: Kind,
        /// Highest page first.
        down: bool,
    },
    /// Print maps (all tasks when empty).
    Map(Vec<String>),
    /// Print counters.
    Stats,
    /// Record a picture.
    Snapshot(Option<String>),
    /// Assert.
    Check(Check),
    /// A Linux memory call on a task (see [`crate::linux`]); the line
    /// carries its own `expect`.
    Linux {
        /// The task.
        task: String,
        /// The call and what it must give.
        line: aspace_linux::Line,
    },
    /// `maps TASK --linux`: the task's Linux mappings.
    LinuxMaps(String),
    /// `rlimit TASK memlock|stack SIZE|unlimited`: the task's
    /// `RLIMIT_MEMLOCK` or `RLIMIT_STACK`, in bytes.
    LinuxRlimit(String, crate::linux::Rlimit, Option<u64>),
    /// `sysctl vm.max_map_count N`: the most mappings each task's Linux
    /// process may have.
    LinuxMaxMapCount(usize),
}

/// What a statement is expected to end with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Success.
    Ok,
    /// The core refuses with this error.
    Error(Error),
    /// The access faults for this reason.
    Fault(FaultReason),
    /// A read (or fetch) gives this number.
    Value(u64),
    /// A `str` read gives this text.
    Text(String),
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Ok => write!(f, "ok"),
            Expect::Error(e) => write!(f, "{e}"),
            Expect::Fault(r) => write!(f, "a fault: {}", reason_name(*r)),
            Expect::Value(v) => write!(f, "{v} ({v:#x})"),
            Expect::Text(t) => write!(f, "{t:?}"),
        }
    }
}

/// The scenario word for a fault reason.
pub fn reason_name(r: FaultReason) -> &'static str {
    match r {
        FaultReason::NoArea => "no-area",
        FaultReason::Partial => "partial",
        FaultReason::Access => "access",
        FaultReason::NoMemory => "no-memory",
        FaultReason::PagerError => "pager-error",
        FaultReason::PagerGone => "pager-gone",
        FaultReason::Guard => "guard",
    }
}

const ERRORS: [Error; 7] = [
    Error::NotFound,
    Error::NoMemory,
    Error::PermissionDenied,
    Error::BadMemory,
    Error::NotSupported,
    Error::AddressNotAvailable,
    Error::InvalidArgument,
];

/// One line that does something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stmt {
    /// 1-based line number.
    pub line: usize,
    /// The line as written (comment removed, trimmed).
    pub text: String,
    /// The operation.
    pub op: Op,
    /// What it must end with (`None`: report only, for `fault`).
    pub expect: Option<Expect>,
}

/// Machine size asked for by a `machine` line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MachineReq {
    /// CPUs.
    pub cpus: Option<usize>,
    /// Bytes of memory.
    pub memory: Option<u64>,
    /// ASIDs.
    pub asids: Option<u16>,
    /// The commit limit in pages.
    pub commit_limit: Option<u64>,
}

/// A parsed scenario.
#[derive(Clone, Debug, Default)]
pub struct Script {
    /// Name shown in messages (the path, or `<demo>`).
    pub name: String,
    /// The statements.
    pub stmts: Vec<Stmt>,
    /// Machine size requested by the file.
    pub machine: MachineReq,
}

/// An error in a scenario file, at a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptError {
    /// The file name.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
    /// The offending line.
    pub source: String,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// A token: a word or a quoted text.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Tok {
    text: String,
    quoted: bool,
}

/// Splits a line into tokens, dropping a `#` comment; `"..."` is one token
/// (with `\"`, `\\`, `\n`, `\t` escapes).
fn tokenize(line: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.peek() {
            None | Some('#') => break,
            Some('"') => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err("unterminated quoted text (missing '\"')".into()),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some('0') => s.push('\0'),
                            Some(c @ ('"' | '\\')) => s.push(c),
                            Some(c) => {
                                return Err(format!("unknown escape '\\{c}' in quoted text"))
                            }
                            None => return Err("unterminated quoted text (missing '\"')".into()),
                        },
                        Some(c) => s.push(c),
                    }
                }
                toks.push(Tok {
                    text: s,
                    quoted: true,
                });
            }
            Some(_) => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || c == '#' {
                        break;
                    }
                    s.push(c);
                    chars.next();
                }
                toks.push(Tok {
                    text: s,
                    quoted: false,
                });
            }
        }
    }
    Ok(toks)
}

/// The operation name closest to `word`, if any is close.
fn suggest(word: &str) -> Option<&'static str> {
    fn dist(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, &cb) in b.iter().enumerate() {
                let sub = prev[j] + usize::from(ca != cb);
                cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
            }
            prev = cur;
        }
        prev[b.len()]
    }
    OPS.iter()
        .map(|(n, _, _)| (dist(&word.to_ascii_lowercase(), n), *n))
        .filter(|&(d, n)| d <= 2 && d < n.len())
        .min()
        .map(|(_, n)| n)
}

/// The synopsis of an operation.
pub fn usage(op: &str) -> &'static str {
    OPS.iter()
        .find(|(n, _, _)| *n == op)
        .map_or("", |(_, u, _)| u)
}

/// Reads the arguments of one operation.
struct Args<'a> {
    op: &'a str,
    toks: &'a [Tok],
    pos: usize,
}

type Res<T> = Result<T, String>;

impl<'a> Args<'a> {
    fn missing(&self, what: &str) -> String {
        format!(
            "'{}' is missing {what} (usage: {})",
            self.op,
            usage(self.op)
        )
    }

    fn next(&mut self, what: &str) -> Res<&'a Tok> {
        let t = self.toks.get(self.pos).ok_or_else(|| self.missing(what))?;
        self.pos += 1;
        Ok(t)
    }

    fn peek(&self) -> Option<&'a Tok> {
        self.toks.get(self.pos)
    }

    fn done(&self) -> bool {
        self.pos >= self.toks.len()
    }

    fn end(&self) -> Res<()> {
        match self.peek() {
            None => Ok(()),
            Some(t) => Err(format!(
                "unexpected '{}' after the arguments of '{}' (usage: {})",
                t.text,
                self.op,
                usage(self.op)
            )),
        }
    }

    fn word(&mut self, what: &str) -> Res<&'a str> {
        Ok(&self.next(what)?.text)
    }

    fn task(&mut self) -> Res<String> {
        let t = self.word("a task name")?;
        check_name(t)?;
        Ok(t.to_string())
    }

    fn number(&mut self, what: &str) -> Res<u64> {
        let t = self.word(what)?;
        parse_u64(t).map_err(|e| e.to_string())
    }

    /// Any 64-bit address.
    fn addr(&mut self) -> Res<u64> {
        let t = self.word("an address")?;
        parse_u64(t).map_err(|e| match e {
            NumError::Bad(_) => e.to_string(),
            NumError::TooBig(s) => {
                format!("address {s} is out of range: addresses are 64-bit")
            }
        })
    }

    /// An address where an area can be: inside the widest user space of
    /// any architecture (the machine's own is checked with the machine, in
    /// [`check`]).
    fn user_addr(&mut self) -> Res<u64> {
        let a = self.addr()?;
        let end = WIDEST_USER_END;
        if a >= end {
            return Err(past_user_space(a, end));
        }
        Ok(a)
    }

    fn size(&mut self) -> Res<u64> {
        let t = self.word("a size")?;
        parse_size(t).map_err(|e: SizeError| e.to_string())
    }

    fn rights(&mut self) -> Res<AreaFlags> {
        parse_rights(self.word("rights (e.g. rw)")?)
    }

    /// The next word, if it is `w` (consumed).
    fn keyword(&mut self, w: &str) -> bool {
        let hit = self.toks.get(self.pos).is_some_and(|t| t.text == w);
        if hit {
            self.pos += 1;
        }
        hit
    }

    /// `guard`, `grows-down`, `late-reserve` and `reserve-on-write` after
    /// the rights of an area.
    fn placement_flags(&mut self, mut rights: AreaFlags) -> AreaFlags {
        loop {
            if self.keyword("guard") {
                rights |= AreaFlags::GUARD;
            } else if self.keyword("grows-down") {
                rights |= AreaFlags::GROWS_DOWN;
            } else if self.keyword("late-reserve") {
                rights |= AreaFlags::LATE_RESERVE;
            } else if self.keyword("reserve-on-write") {
                rights |= AreaFlags::LATE_RESERVE | AreaFlags::RESERVE_ON_WRITE;
            } else {
                return rights;
            }
        }
    }

    fn cpu(&mut self) -> Res<usize> {
        let t = self.word("a CPU number")?;
        let n = parse_u64(t).map_err(|_| format!("bad CPU number '{t}'"))?;
        Ok(n as usize)
    }

    fn label(&mut self) -> Res<Option<String>> {
        let rest: Vec<&str> = self.toks[self.pos..]
            .iter()
            .map(|t| t.text.as_str())
            .collect();
        self.pos = self.toks.len();
        Ok((!rest.is_empty()).then(|| rest.join(" ")))
    }

    fn rest_text(&mut self, what: &str) -> Res<String> {
        if self.done() {
            return Err(self.missing(what));
        }
        Ok(self.label()?.unwrap_or_default())
    }
}

fn check_name(t: &str) -> Res<()> {
    let ok = t
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bad task name '{t}': use letters, digits, '_', '-' or '.', starting with a letter"
        ))
    }
}

/// What kinds of `expect` an operation takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expects {
    /// ok or an errno name.
    Errno,
    /// ok or a fault reason.
    Fault,
    /// a value, ok or a fault reason.
    Value,
    /// a text, ok or a fault reason.
    Text,
    /// nothing.
    Nothing,
}

fn parse_expect(kind: Expects, op: &str, toks: &[Tok]) -> Res<Expect> {
    let Some(first) = toks.first() else {
        return Err("'expect' needs an outcome (e.g. expect ok)".into());
    };
    if toks.len() > 1 {
        return Err(format!(
            "unexpected '{}' after 'expect {}'",
            toks[1].text, first.text
        ));
    }
    let w = first.text.as_str();
    let lower = w.to_ascii_lowercase();
    let errnos = || {
        ERRORS
            .iter()
            .map(|e| e.errno_name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let reason = match lower.as_str() {
        "no-area" => Some(FaultReason::NoArea),
        "partial" => Some(FaultReason::Partial),
        "access" => Some(FaultReason::Access),
        "no-memory" => Some(FaultReason::NoMemory),
        "pager-error" => Some(FaultReason::PagerError),
        "pager-gone" => Some(FaultReason::PagerGone),
        "guard" => Some(FaultReason::Guard),
        _ => None,
    };
    if lower == "ok" && !first.quoted {
        return Ok(Expect::Ok);
    }
    match kind {
        Expects::Nothing => Err(format!("'{op}' takes no 'expect'")),
        Expects::Errno => ERRORS
            .iter()
            .find(|e| e.errno_name().eq_ignore_ascii_case(w))
            .map(|&e| Expect::Error(e))
            .ok_or_else(|| format!("'{op}' can expect ok or an error ({}), not '{w}'", errnos())),
        Expects::Fault => reason
            .map(Expect::Fault)
            .ok_or_else(|| format!("'{op}' can expect ok, {REASONS}, not '{w}'")),
        Expects::Value => {
            if let Some(r) = reason {
                return Ok(Expect::Fault(r));
            }
            parse_u64(w)
                .map(Expect::Value)
                .map_err(|e| format!("{e} (a '{op}' expects a value, ok, {REASONS})"))
        }
        Expects::Text => match reason {
            Some(r) if !first.quoted => Ok(Expect::Fault(r)),
            _ => Ok(Expect::Text(first.text.clone())),
        },
    }
}

/// The fault reasons an access may expect, for messages.
const REASONS: &str = "no-area, access, partial, no-memory, pager-error or pager-gone";

/// Most pagers a scenario may have alive at once (each is a thread).
pub const MAX_PAGERS: usize = 16;

/// `area TASK ADDR SIZE RIGHTS pager NAME [LABEL]`: an area a pager serves.
fn is_paged_area(toks: &[Tok]) -> bool {
    toks[0].text == "area" && toks.get(5).is_some_and(|t| t.text == "pager" && !t.quoted)
}

fn parse_paged_area(a: &mut Args<'_>) -> Res<Op> {
    let (task, addr, size, rights) = (a.task()?, a.user_addr()?, a.size()?, a.rights()?);
    a.word("'pager'")?;
    Ok(Op::PagedArea {
        task,
        addr,
        size,
        rights,
        pager: a.task()?,
        label: a.label()?,
    })
}

fn parse_pager(a: &mut Args<'_>) -> Res<Op> {
    let name = a.task()?;
    match a.word("'file TEXT' or 'kill'")? {
        "file" => {
            let text = a.next("a text")?.text.clone();
            Ok(Op::Pager(name, Some(text)))
        }
        "kill" => Ok(Op::Pager(name, None)),
        w => Err(format!(
            "'pager {name}' takes 'file TEXT' or 'kill', not '{w}'"
        )),
    }
}

/// Parses one line's tokens (no `expect` part) into an operation.
fn parse_op(toks: &[Tok], base_dir: &Path) -> Res<(Op, Expects)> {
    let name = toks[0].text.as_str();
    let mut a = Args {
        op: name,
        toks: &toks[1..],
        pos: 0,
    };
    let (op, expects) = match name {
        _ if is_paged_area(toks) => (parse_paged_area(&mut a)?, Expects::Errno),
        "pager" => (parse_pager(&mut a)?, Expects::Errno),
        "say" => (Op::Say(a.rest_text("a text")?), Expects::Nothing),
        "echo" => {
            let w = a.word("on or off")?;
            let on = match w {
                "on" => true,
                "off" => false,
                _ => return Err(format!("'echo' takes on or off, not '{w}'")),
            };
            (Op::Echo(on), Expects::Nothing)
        }
        "task" => (Op::Task(a.task()?), Expects::Errno),
        "fork" => (Op::Fork(a.task()?, a.task()?), Expects::Errno),
        "exit" => (Op::Exit(a.task()?), Expects::Nothing),
        "cpu" => {
            let cpu = a.cpu()?;
            match a.word("'run TASK' or 'idle'")? {
                "run" => (Op::Run(cpu, a.task()?), Expects::Errno),
                "idle" => (Op::Idle(cpu), Expects::Nothing),
                w => return Err(format!("'cpu {cpu}' takes 'run TASK' or 'idle', not '{w}'")),
            }
        }
        "area" => {
            let task = a.task()?;
            if a.keyword("any") {
                let size = a.size()?;
                let rights = a.rights()?;
                let (mut bound, mut align) = (0, 1);
                loop {
                    if a.keyword("above") {
                        bound = a.user_addr()?;
                    } else if a.keyword("align") {
                        align = a.size()?;
                        if !align.is_power_of_two() {
                            return Err(format!("alignment {align:#x} is not a power of two"));
                        }
                    } else {
                        break;
                    }
                }
                let rights = a.placement_flags(rights);
                let label = a.label()?;
                let op = Op::AreaAny {
                    task,
                    bound,
                    align,
                    size,
                    rights,
                    label,
                };
                (op, Expects::Errno)
            } else {
                let addr = a.user_addr()?;
                let size = a.size()?;
                let rights = a.rights()?;
                let rights = a.placement_flags(rights);
                let label = a.label()?;
                let op = Op::Area {
                    task,
                    addr,
                    size,
                    rights,
                    label,
                };
                (op, Expects::Errno)
            }
        }
        "resize" => (
            Op::Resize(a.task()?, a.user_addr()?, a.size()?),
            Expects::Errno,
        ),
        "destroy" => (Op::Destroy(a.task()?, a.user_addr()?), Expects::Errno),
        "share" => (
            Op::Share {
                src: a.task()?,
                src_addr: a.user_addr()?,
                dst: a.task()?,
                dst_addr: a.user_addr()?,
                rights: a.rights()?,
                label: a.label()?,
            },
            Expects::Errno,
        ),
        "flags" => (
            Op::Flags(a.task()?, a.user_addr()?, a.rights()?),
            Expects::Errno,
        ),
        "elf" => {
            let task = a.task()?;
            let src = a.word("'builtin' or a path")?;
            let source = if src == "builtin" {
                ElfSource::Builtin
            } else {
                let p = Path::new(src);
                ElfSource::Path(if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    base_dir.join(p)
                })
            };
            let bias = match a.peek() {
                Some(t) if t.text == "bias" => {
                    a.pos += 1;
                    Some(a.addr()?)
                }
                _ => None,
            };
            (Op::Elf(task, source, bias), Expects::Errno)
        }
        "write" => {
            let task = a.task()?;
            let addr = a.addr()?;
            let ty = a.word("a type (u8, u16, u32, u64 or str)")?;
            let data = if ty == "str" {
                Data::Str(a.rest_text("a text")?)
            } else if let Some(w) = Width::parse(ty) {
                let v = a.number("a value")?;
                if v > w.max() {
                    return Err(format!("value {v} does not fit in {ty}"));
                }
                Data::Int(w, v)
            } else {
                return Err(format!("unknown type '{ty}': use u8, u16, u32, u64 or str"));
            };
            let len = data.bytes().len() as u64;
            if len == 0 {
                return Err("'write ... str' needs a non-empty text".into());
            }
            if addr.checked_add(len - 1).is_none() {
                return Err(format!(
                    "address {addr:#x} is out of range: the write would wrap past 2^64"
                ));
            }
            (Op::Write(task, addr, data), Expects::Fault)
        }
        "read" => {
            let task = a.task()?;
            let addr = a.addr()?;
            let ty = a.word("a type (u8, u16, u32, u64 or str LEN)")?;
            let (what, expects) = if ty == "str" {
                let n = a.number("a length")?;
                if n == 0 || n > 1 << 20 {
                    return Err(format!("bad length {n}: read 1 to 1048576 bytes"));
                }
                (ReadAs::Str(n as usize), Expects::Text)
            } else if let Some(w) = Width::parse(ty) {
                (ReadAs::Int(w), Expects::Value)
            } else {
                return Err(format!(
                    "unknown type '{ty}': use u8, u16, u32, u64 or str LEN"
                ));
            };
            let len = match what {
                ReadAs::Int(w) => w.bytes() as u64,
                ReadAs::Str(n) => n as u64,
            };
            if addr.checked_add(len - 1).is_none() {
                return Err(format!(
                    "address {addr:#x} is out of range: the read would wrap past 2^64"
                ));
            }
            (Op::Read(task, addr, what), expects)
        }
        "fetch" => (Op::Fetch(a.task()?, a.addr()?), Expects::Value),
        "fault" => {
            let task = a.task()?;
            let addr = a.addr()?;
            let w = a.word("an access (read, write or exec)")?;
            let kind = Kind::parse(w)
                .ok_or_else(|| format!("bad access '{w}': use read, write or exec"))?;
            (Op::Fault(task, addr, kind), Expects::Fault)
        }
        "touch" => {
            let task = a.task()?;
            let addr = a.addr()?;
            let size = a.size()?;
            let mut kind = Kind::Read;
            let mut down = false;
            while let Some(t) = a.peek() {
                if t.text == "down" {
                    down = true;
                } else if t.text == "up" {
                    down = false;
                } else if let Some(k) = Kind::parse(&t.text) {
                    kind = k;
                } else {
                    break;
                }
                a.pos += 1;
            }
            if size == 0 {
                return Err("'touch' needs a size of at least one byte".into());
            }
            if addr.checked_add(size - 1).is_none() {
                return Err(format!(
                    "address {addr:#x} is out of range: {size:#x} bytes from it wrap past 2^64"
                ));
            }
            (
                Op::Touch {
                    task,
                    addr,
                    size,
                    kind,
                    down,
                },
                Expects::Fault,
            )
        }
        "map" => {
            let mut tasks = Vec::new();
            while !a.done() {
                tasks.push(a.task()?);
            }
            (Op::Map(tasks), Expects::Nothing)
        }
        "stats" => (Op::Stats, Expects::Nothing),
        "snapshot" => (Op::Snapshot(a.label()?), Expects::Nothing),
        "check" => (Op::Check(parse_check(&mut a)?), Expects::Nothing),
        "machine" => return Err("'machine' must come before every other operation".into()),
        "expect" => return Err("'expect' ends an operation; it cannot start a line".into()),
        other => {
            let hint = suggest(other).map_or_else(
                || {
                    format!(
                        " (known: {})",
                        OPS.iter().map(|o| o.0).collect::<Vec<_>>().join(", ")
                    )
                },
                |s| format!(" (did you mean '{s}'?)"),
            );
            return Err(format!("unknown operation '{other}'{hint}"));
        }
    };
    a.end()?;
    Ok((op, expects))
}

fn parse_check(a: &mut Args) -> Res<Check> {
    let what = a.word("what to check (clean, a counter, or resident)")?;
    let cmp_value = |a: &mut Args| -> Res<(Cmp, u64)> {
        let c = a.word("a comparison (==, !=, <, <=, >, >=)")?;
        let cmp = Cmp::parse(c)
            .ok_or_else(|| format!("bad comparison '{c}': use ==, !=, <, <=, > or >="))?;
        Ok((cmp, a.number("a number")?))
    };
    match what {
        "clean" => Ok(Check::Clean),
        "resident" => {
            let task = a.task()?;
            let addr = match a.peek() {
                Some(t) if Cmp::parse(&t.text).is_none() => Some(a.user_addr()?),
                _ => None,
            };
            let (cmp, v) = cmp_value(a)?;
            Ok(Check::Resident(task, addr, cmp, v))
        }
        c if COUNTERS.contains(&c) => {
            let (cmp, v) = cmp_value(a)?;
            Ok(Check::Counter(c.to_string(), cmp, v))
        }
        c => Err(format!(
            "unknown counter '{c}' (check clean, resident TASK, or one of: {})",
            COUNTERS.join(", ")
        )),
    }
}

fn parse_machine(toks: &[Tok], req: &mut MachineReq) -> Res<()> {
    let mut a = Args {
        op: "machine",
        toks: &toks[1..],
        pos: 0,
    };
    if a.done() {
        return Err(a.missing("a setting (cpus N, memory SIZE, asids N or commit-limit SIZE)"));
    }
    while !a.done() {
        match a.word("a setting")? {
            "cpus" => req.cpus = Some(a.number("a CPU count")? as usize),
            "memory" => req.memory = Some(a.size()?),
            "commit-limit" => req.commit_limit = Some(a.size()?.div_ceil(PAGE_SIZE)),
            "asids" => {
                let n = a.number("an ASID count")?;
                req.asids = Some(
                    u16::try_from(n).map_err(|_| format!("{n} ASIDs is out of range (1..4095)"))?,
                );
            }
            w => {
                return Err(format!(
                    "unknown machine setting '{w}': use cpus N, memory SIZE, asids N or \
                     commit-limit SIZE"
                ))
            }
        }
    }
    Ok(())
}

/// A scenario parsed as far as it goes: the lines that parsed, an error
/// for each line that did not, and what those lines may have named, so
/// that checking the rest does not blame a line for what a bad line would
/// have done (see [`check`]).
#[derive(Clone, Debug, Default)]
pub struct Parsed {
    /// The lines that parsed.
    pub script: Script,
    /// One error per line that did not, in line order.
    pub errors: Vec<ScriptError>,
    /// The words of the lines that did not parse but meant to create, end
    /// or run a task (`task`, `exit`, `cpu`, or a near miss of one): such
    /// a task is not reported as missing, or as there already, after them.
    pub unsure_names: HashSet<String>,
    /// A `machine` line did not parse, so the number of CPUs is unknown.
    pub machine_unsure: bool,
}

/// Parses a whole scenario. Relative ELF paths are taken relative to
/// `base_dir`. Returns every error found, one per bad line.
pub fn parse(name: &str, text: &str, base_dir: &Path) -> Result<Script, Vec<ScriptError>> {
    let p = parse_all(name, text, base_dir);
    if p.errors.is_empty() {
        Ok(p.script)
    } else {
        Err(p.errors)
    }
}

/// Parses every line it can: the good lines into a script, an error for
/// each bad one (see [`Parsed`]). Never stops at the first error.
pub fn parse_all(name: &str, text: &str, base_dir: &Path) -> Parsed {
    let mut script = Script {
        name: name.to_string(),
        ..Script::default()
    };
    let mut errors = Vec::new();
    let mut unsure_names = HashSet::new();
    let mut machine_unsure = false;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let err = |message: String| ScriptError {
            file: name.to_string(),
            line,
            message,
            source: raw.trim().to_string(),
        };
        // The words of a bad line that meant to create, end or run a
        // task: checking the lines after it must not say that task is
        // missing (or already there).
        let mut unsure = |words: Vec<String>| {
            let meant = words.first().map(|w| w.to_ascii_lowercase());
            let op = meant.as_deref().and_then(|w| {
                OPS.iter()
                    .map(|(n, _, _)| *n)
                    .find(|n| *n == w)
                    .or_else(|| suggest(w))
            });
            if matches!(op, Some("task" | "fork" | "exit" | "cpu")) {
                unsure_names.extend(words.into_iter().skip(1));
            }
        };
        let toks = match tokenize(raw) {
            Ok(t) => t,
            Err(m) => {
                errors.push(err(m));
                unsure(
                    strip_comment(raw)
                        .split_whitespace()
                        .map(str::to_string)
                        .collect(),
                );
                continue;
            }
        };
        if toks.is_empty() {
            continue;
        }
        if toks[0].text == "machine" && !toks[0].quoted {
            if !script.stmts.is_empty() {
                errors.push(err(
                    "'machine' must come before every other operation".into()
                ));
            } else if let Err(m) = parse_machine(&toks, &mut script.machine) {
                errors.push(err(m));
                machine_unsure = true;
            }
            continue;
        }
        // Linux calls (and `maps TASK --linux`) are read by aspace_linux,
        // `expect` with Linux's errno names included.
        let words: Vec<&str> = toks.iter().map(|t| t.text.as_str()).collect();
        let linux = if crate::linux::is_call(&toks[0].text) {
            Some(crate::linux::parse(&words).map(|(task, l)| Op::Linux { task, line: l }))
        } else if let Some(r) = crate::linux::parse_rlimit(&words) {
            Some(r.map(|(task, which, bytes)| Op::LinuxRlimit(task, which, bytes)))
        } else if let Some(r) = crate::linux::parse_sysctl(&words) {
            Some(r.map(Op::LinuxMaxMapCount))
        } else {
            crate::linux::parse_maps(&words).map(|r| r.map(Op::LinuxMaps))
        };
        if let Some(op) = linux {
            match op {
                Ok(op) => script.stmts.push(Stmt {
                    line,
                    text: strip_comment(raw),
                    op,
                    expect: None,
                }),
                Err(m) => errors.push(err(m)),
            }
            continue;
        }
        // `say` and `write ... str` take everything: "expect" is text there
        // unless it comes after the text in an operation that can expect.
        let split = if toks[0].text == "say" {
            None
        } else {
            toks.iter()
                .position(|t| !t.quoted && t.text == "expect")
                .filter(|&p| p > 0)
        };
        let (op_toks, expect_toks) = match split {
            Some(p) => (&toks[..p], Some(&toks[p + 1..])),
            None => (&toks[..], None),
        };
        let stmt = parse_op(op_toks, base_dir).and_then(|(op, kind)| {
            let expect = match expect_toks {
                Some(t) => Some(parse_expect(kind, &toks[0].text, t)?),
                None if matches!(op, Op::Fault(..)) => None,
                None => Some(Expect::Ok),
            };
            Ok(Stmt {
                line,
                text: strip_comment(raw),
                op,
                expect,
            })
        });
        match stmt {
            Ok(s) => script.stmts.push(s),
            Err(m) => {
                errors.push(err(m));
                unsure(toks.into_iter().map(|t| t.text).collect());
            }
        }
    }
    Parsed {
        script,
        errors,
        unsure_names,
        machine_unsure,
    }
}

/// Every error of a scenario in one list, in line order: the lines that
/// did not parse, and the lines that parsed but do not check against the
/// machine (see [`validate`]); the script when there is none.
pub fn check(parsed: Parsed, shape: &MachineShape) -> Result<Script, Vec<ScriptError>> {
    let more = validate_with(&parsed.script, shape, &parsed).err();
    let mut errors = parsed.errors;
    errors.extend(more.into_iter().flatten());
    if errors.is_empty() {
        Ok(parsed.script)
    } else {
        errors.sort_by_key(|e| e.line);
        Err(errors)
    }
}

/// The line without its comment, trimmed.
fn strip_comment(raw: &str) -> String {
    let mut in_quote = false;
    let mut escaped = false;
    for (i, c) in raw.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quote => escaped = true,
            '"' => in_quote = !in_quote,
            '#' if !in_quote => return raw[..i].trim().to_string(),
            _ => {}
        }
    }
    raw.trim().to_string()
}

/// One past the highest user address of any simulated architecture
/// (AArch64's, 2^48).
pub const WIDEST_USER_END: u64 = Layout::AARCH64.user_end;

/// The message for an area address past user space.
fn past_user_space(a: u64, end: u64) -> String {
    format!("address {a:#x} is out of range: areas live in user space, 0x0..{end:#x}")
}

/// The machine a script runs on, as far as validation needs it.
pub struct MachineShape {
    /// CPUs.
    pub cpus: usize,
    /// One past the highest user address of its architecture.
    pub user_end: u64,
}

impl Op {
    /// The addresses of areas the operation names (which must lie in user
    /// space).
    fn area_addrs(&self) -> Vec<u64> {
        match self {
            Op::Area { addr, .. }
            | Op::Resize(_, addr, _)
            | Op::Destroy(_, addr)
            | Op::Flags(_, addr, _)
            | Op::Check(Check::Resident(_, Some(addr), ..)) => vec![*addr],
            Op::Share {
                src_addr, dst_addr, ..
            } => vec![*src_addr, *dst_addr],
            _ => Vec::new(),
        }
    }
}

/// A `pager` line against the pagers alive: a new one must have a new name
/// (and not too many may live), a killed one must exist.
fn validate_pager(pagers: &mut HashSet<String>, name: &str, start: bool) -> Result<(), String> {
    if start {
        if pagers.contains(name) {
            return Err(format!("pager '{name}' already runs"));
        }
        if pagers.len() >= MAX_PAGERS {
            return Err(format!("at most {MAX_PAGERS} pagers may run at once"));
        }
        pagers.insert(name.to_string());
        Ok(())
    } else if pagers.remove(name) {
        Ok(())
    } else {
        Err(format!("no pager named '{name}' at this point"))
    }
}

/// Checks the statements against the machine before anything runs: tasks
/// exist when used and not twice, CPUs exist, and every access is made by
/// a task that some CPU runs at that point.
pub fn validate(script: &Script, shape: &MachineShape) -> Result<(), Vec<ScriptError>> {
    validate_with(script, shape, &Parsed::default())
}

/// [`validate`], giving the benefit of the doubt to the tasks and CPUs
/// that lines which did not parse may have been about.
fn validate_with(
    script: &Script,
    shape: &MachineShape,
    unsure: &Parsed,
) -> Result<(), Vec<ScriptError>> {
    let doubt = |t: &str| unsure.unsure_names.contains(t);
    let mut errors = Vec::new();
    let mut tasks: HashMap<String, usize> = HashMap::new(); // name -> line created
    let mut running: Vec<Option<String>> = vec![None; shape.cpus];
    let mut pagers: HashSet<String> = HashSet::new();
    for s in &script.stmts {
        let err = |message: String| ScriptError {
            file: script.name.clone(),
            line: s.line,
            message,
            source: s.text.clone(),
        };
        let exists = |t: &str, tasks: &HashMap<String, usize>| -> Result<(), String> {
            if tasks.contains_key(t) || doubt(t) {
                Ok(())
            } else {
                Err(format!(
                    "no task named '{t}' at this point (create it first with 'task {t}')"
                ))
            }
        };
        let on_cpu = |t: &str, tasks: &HashMap<String, usize>, running: &[Option<String>]| {
            exists(t, tasks)?;
            if running.iter().any(|r| r.as_deref() == Some(t)) || doubt(t) {
                Ok(())
            } else {
                Err(format!(
                    "task '{t}' runs on no CPU here, so it cannot access memory \
                     (add 'cpu N run {t}' before this line)"
                ))
            }
        };
        let cpu_ok = |c: usize| {
            if c < shape.cpus || unsure.machine_unsure {
                Ok(())
            } else {
                Err(format!(
                    "no CPU {c}: the machine has {} CPUs, 0..{} (see --cpus)",
                    shape.cpus,
                    shape.cpus - 1
                ))
            }
        };
        let r: Result<(), String> = match &s.op {
            Op::Task(t) => match tasks.get(t).filter(|_| !doubt(t)) {
                Some(l) => Err(format!("task '{t}' already exists (created on line {l})")),
                None => {
                    tasks.insert(t.clone(), s.line);
                    Ok(())
                }
            },
            Op::Fork(src, t) => exists(src, &tasks).and_then(|()| {
                match tasks.get(t).filter(|_| !doubt(t)) {
                    Some(l) => Err(format!("task '{t}' already exists (created on line {l})")),
                    None => {
                        tasks.insert(t.clone(), s.line);
                        Ok(())
                    }
                }
            }),
            Op::Exit(t) => exists(t, &tasks).map(|()| {
                tasks.remove(t);
                for r in running.iter_mut() {
                    if r.as_deref() == Some(t) {
                        *r = None;
                    }
                }
            }),
            Op::Run(c, t) => cpu_ok(*c).and_then(|()| exists(t, &tasks)).map(|()| {
                if let Some(r) = running.get_mut(*c) {
                    *r = Some(t.clone());
                }
            }),
            Op::Idle(c) => cpu_ok(*c).map(|()| {
                if let Some(r) = running.get_mut(*c) {
                    *r = None;
                }
            }),
            Op::Area { task, .. }
            | Op::AreaAny { task, .. }
            | Op::Resize(task, ..)
            | Op::Destroy(task, _)
            | Op::Flags(task, ..)
            | Op::Check(Check::Resident(task, ..)) => exists(task, &tasks),
            Op::Elf(task, source, _) => exists(task, &tasks).and_then(|()| match source {
                ElfSource::Builtin => Ok(()),
                ElfSource::Path(p) => {
                    input::check_file(p, input::MAX_ELF_BYTES, "ELF file").map(|_| ())
                }
            }),
            Op::Share { src, dst, .. } => exists(src, &tasks).and_then(|()| exists(dst, &tasks)),
            Op::Pager(p, text) => validate_pager(&mut pagers, p, text.is_some()),
            Op::PagedArea { task, pager, .. } => exists(task, &tasks).and_then(|()| {
                if pagers.contains(pager) {
                    Ok(())
                } else {
                    Err(format!(
                        "no pager named '{pager}' at this point (start it first with 'pager {pager} file TEXT')"
                    ))
                }
            }),
            Op::Write(t, ..)
            | Op::Read(t, ..)
            | Op::Fetch(t, _)
            | Op::Fault(t, ..)
            | Op::Touch { task: t, .. } => on_cpu(t, &tasks, &running),
            Op::Map(ts) => ts.iter().try_for_each(|t| exists(t, &tasks)),
            Op::Linux { task, .. } | Op::LinuxMaps(task) | Op::LinuxRlimit(task, ..) => {
                exists(task, &tasks)
            }
            Op::Say(_)
            | Op::Echo(_)
            | Op::Stats
            | Op::Snapshot(_)
            | Op::Check(_)
            | Op::LinuxMaxMapCount(_) => Ok(()),
        };
        let r =
            r.and_then(
                |()| match s.op.area_addrs().into_iter().find(|&a| a >= shape.user_end) {
                    Some(a) => Err(past_user_space(a, shape.user_end)),
                    None => Ok(()),
                },
            );
        if let Err(m) = r {
            errors.push(err(m));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Result<Stmt, String> {
        parse("t", line, Path::new("."))
            .map(|s| s.stmts.into_iter().next().expect("one statement"))
            .map_err(|e| e[0].message.clone())
    }

    #[test]
    fn tokens_and_comments() {
        let t = tokenize(r#"write A 0x10 str "a # b\n" # comment"#).unwrap();
        assert_eq!(t.len(), 5);
        assert_eq!(t[4].text, "a # b\n");
        assert!(tokenize(r#"say "open"#).is_err());
        assert_eq!(strip_comment(r#"say "x#y" # z"#), r#"say "x#y""#);
    }

    #[test]
    fn operations() {
        assert_eq!(
            one("area A 0x400000 16p rw heap").unwrap().op,
            Op::Area {
                task: "A".into(),
                addr: 0x40_0000,
                size: 16 * 4096,
                rights: AreaFlags::READ | AreaFlags::WRITE,
                label: Some("heap".into())
            }
        );
        let s = one("read A 0x400000 u64 expect 42").unwrap();
        assert_eq!(s.expect, Some(Expect::Value(42)));
        let s = one("fault A 0x0 read expect no-area").unwrap();
        assert_eq!(s.expect, Some(Expect::Fault(FaultReason::NoArea)));
        assert_eq!(one("fault A 0x0 read").unwrap().expect, None);
        let s = one("area A 0x0 1p rw expect EADDRNOTAVAIL").unwrap();
        assert_eq!(s.expect, Some(Expect::Error(Error::AddressNotAvailable)));
        let s = one(r#"read A 0x10 str 2 expect "hi""#).unwrap();
        assert_eq!(s.expect, Some(Expect::Text("hi".into())));
        assert_eq!(
            one("say hello  world").unwrap().op,
            Op::Say("hello world".into())
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert!(one("frobnicate A")
            .unwrap_err()
            .contains("unknown operation"));
        assert!(one("resise A 0x1000 1p")
            .unwrap_err()
            .contains("did you mean 'resize'"));
        assert!(one("area A 0x40zz 1p rw")
            .unwrap_err()
            .contains("bad number"));
        assert!(one("area A 0x400000 1q rw")
            .unwrap_err()
            .contains("bad size"));
        assert!(one("area A 0x1000000000000 1p rw")
            .unwrap_err()
            .contains("out of range"));
        assert!(one("read A 0x1_0000_0000_0000_0000 u64")
            .unwrap_err()
            .contains("out of range"));
        assert!(one("write A 0x10 u8 300")
            .unwrap_err()
            .contains("does not fit"));
        assert!(one("area A 0x1000").unwrap_err().contains("missing a size"));
        assert!(one("area A 0x1000 1p rw expect no-area")
            .unwrap_err()
            .contains("can expect ok or an error"));
        assert!(one("check bogus == 1")
            .unwrap_err()
            .contains("unknown counter"));
    }

    #[test]
    fn validation_finds_missing_tasks_and_cpus() {
        let s = parse(
            "t",
            "task A\ncpu 0 run B\ncpu 9 run A\nwrite A 0x1000 u8 1\nexit A\nmap A\n",
            Path::new("."),
        )
        .unwrap();
        let errs = validate(
            &s,
            &MachineShape {
                cpus: 2,
                user_end: Layout::X86_64.user_end,
            },
        )
        .unwrap_err();
        let lines: Vec<_> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 6]);
        assert!(errs[0].message.contains("no task named 'B'"));
        assert!(errs[1].message.contains("no CPU 9"));
        assert!(errs[2].message.contains("runs on no CPU"));
    }

    #[test]
    fn fork_needs_its_source_and_a_new_name() {
        assert_eq!(
            one("fork A B").unwrap().op,
            Op::Fork("A".into(), "B".into())
        );
        assert!(one("fork A").unwrap_err().contains("missing"));
        let s = parse(
            "t",
            "task A\nfork C D\nfork A B\nfork A B\nmap B\n",
            Path::new("."),
        )
        .unwrap();
        let shape = MachineShape {
            cpus: 1,
            user_end: Layout::X86_64.user_end,
        };
        let errs = validate(&s, &shape).unwrap_err();
        let lines: Vec<_> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 4]);
        assert!(errs[0].message.contains("no task named 'C'"));
        assert!(errs[1].message.contains("task 'B' already exists"));
    }
}
