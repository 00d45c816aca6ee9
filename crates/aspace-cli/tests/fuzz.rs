//! Scenario fuzzing, in-process: thousands of scenario files (written from
//! the grammar, HelenOS area calls and Linux calls mixed, mutated from the shipped examples and the demo, or plain
//! random text) and mutated ELF executables, each run through the same
//! functions as the `aspace` command. Every outcome must be exit status 0,
//! 1 or 2 with a message: never a panic, a hang (a watchdog fails the test
//! when one case runs for minutes), or memory beyond the machines' (the
//! process's peak is checked at the end). A run's own end-of-run checks
//! (every frame back, no stale TLB use) must hold whatever the scenario
//! did, and a picture, when drawn, must be well-formed.
//!
//! Seeds are fixed, so a CI run is reproducible; a failure prints the seed
//! and the input. Environment:
//!
//! - `ASPACE_FUZZ_CASES=N` scales the number of cases of each kind (the
//!   default keeps the test to a few seconds);
//! - `ASPACE_FUZZ_SEED=S` runs the one case with seed `S` (as printed),
//!   for every kind;
//! - `ASPACE_FUZZ_SHOW_INPUT=1` prints the first message of each case
//!   refused as bad input (with `--nocapture`), to see what keeps the
//!   grammar's cases from running.
//!
//! Longer, coverage-guided runs: the `cargo fuzz` targets in
//! `crates/aspace-cli/fuzz/`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use aspace_cli::cli::{run_elf_bytes, run_scenario_text, Opts, Outcome};

/// A case that runs this long is taken for a hang.
const HANG: Duration = Duration::from_secs(120);

/// splitmix64: small, fast, and good enough to pick test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// The seed of case `i` of a kind whose base seed is `base`.
fn seed_of(base: u64, i: u64) -> u64 {
    Rng(base ^ i.wrapping_mul(0x2545_f491_4f6c_dd1d)).next()
}

const TASKS: &[&str] = &["A", "B", "C", "D"];
/// Addresses in user space, where areas can be.
const USER_ADDRS: &[&str] = &[
    "0x0",
    "0x1000",
    "0x400000",
    "0x401000",
    "0x402000",
    "0x403000",
    "0x404000",
    "0x405000",
    "0x408000",
    "0x410000",
    "0x500000",
    "0x800000",
    "0x801000",
    "0x60002000",
    "0x400123",
    "0x7ffffffff000",
    "0x7fffffffffff",
];
/// Addresses past user space (an access may name them; an area may not).
const HIGH_ADDRS: &[&str] = &["0x800000000000", "0xffff800000000000", "0xfffffffffffff000"];
const SIZES: &[&str] = &[
    "1",
    "4096",
    "4097",
    "1p",
    "2p",
    "3p",
    "4p",
    "16p",
    "64K",
    "256p",
    "1M",
    "1M",
    "2M",
    "0x7fff00000000",
];
/// Sizes that are refused when parsed, or by the core.
const ODD_SIZES: &[&str] = &["0", "0xfffffffffffff000", "99999999T"];
const RIGHTS: &[&str] = &["r", "w", "x", "rw", "rx", "r-x", "rwx", "wx", "c", "rwc"];
const ERRNOS: &[&str] = &[
    "ok",
    "ENOMEM",
    "EINVAL",
    "ENOENT",
    "EADDRNOTAVAIL",
    "EPERM",
    "ENOTSUP",
    "EBADMEM",
];
/// Linux's errno names, for the Linux calls.
const LINUX_ERRNOS: &[&str] = &[
    "ok",
    "EINVAL",
    "ENOMEM",
    "EEXIST",
    "EFAULT",
    "EACCES",
    "EPERM",
    "EAGAIN",
    "EOVERFLOW",
    "EOPNOTSUPP",
];
const REASONS: &[&str] = &["ok", "no-area", "access", "partial", "no-memory"];
const VALUES: &[&str] = &["0", "42", "72", "no-area", "ok"];
const TEXTS: &[&str] = &["\"Hello\"", "\"\"", "ok", "access"];
const ANY_EXPECT: &[&str] = &["ok", "ENOMEM", "no-area", "42", "\"Hello\"", "bogus"];
const COUNTERS: &[&str] = &[
    "faults",
    "faults_failed",
    "shootdown_rounds",
    "ipis",
    "asid_steals",
    "frames_in_use",
    "stale_accesses",
    "tlb_misses",
];
const CMPS: &[&str] = &["==", "!=", "<", "<=", ">", ">="];

/// Writes scenarios from the grammar, keeping track of which tasks exist
/// and which CPU runs which, so that most files pass validation and run
/// deep. A "loose" file breaks a rule now and then on purpose (a task not
/// created, an access by a task no CPU runs, an address past user space, a
/// CPU the machine lacks, an outcome the operation cannot have), so that
/// validation is fuzzed too.
struct Gen<'r> {
    rng: &'r mut Rng,
    loose: bool,
    cpus: usize,
    alive: Vec<&'static str>,
    running: Vec<Option<&'static str>>,
    out: String,
}

/// Which outcomes an operation can expect.
#[derive(Clone, Copy)]
enum Can {
    Errno,
    Linux,
    Fault,
    Value,
    Text,
}

impl Gen<'_> {
    fn line(&mut self, l: String) {
        self.out.push_str(&l);
        self.out.push('\n');
    }

    /// Whether to break a rule here.
    fn rogue(&mut self) -> bool {
        self.loose && self.rng.chance(4)
    }

    fn any_task(&mut self) -> &'static str {
        self.rng.pick(TASKS)
    }

    /// A task that exists (created here if need be).
    fn task(&mut self) -> &'static str {
        let t = self.any_task();
        if !self.alive.contains(&t) && !self.rogue() {
            self.line(format!("task {t}"));
            self.alive.push(t);
        }
        t
    }

    /// A task that some CPU runs (switched to if need be).
    fn running_task(&mut self) -> &'static str {
        let t = self.task();
        if !self.running.contains(&Some(t)) && !self.rogue() {
            let c = self.rng.below(self.cpus as u64) as usize;
            self.line(format!("cpu {c} run {t}"));
            self.running[c] = Some(t);
        }
        t
    }

    /// An address where an area may be.
    fn user_addr(&mut self) -> String {
        if self.rogue() {
            self.rng.pick(HIGH_ADDRS).to_string()
        } else if self.rng.chance(30) {
            format!("{:#x}", 0x40_0000 + self.rng.below(64) * 0x1000)
        } else {
            self.rng.pick(USER_ADDRS).to_string()
        }
    }

    /// Any address, for an access.
    fn addr(&mut self) -> String {
        if self.rng.chance(5) {
            self.rng.pick(HIGH_ADDRS).to_string()
        } else {
            self.user_addr()
        }
    }

    fn size(&mut self) -> String {
        if self.rogue() {
            self.rng.pick(ODD_SIZES).to_string()
        } else if self.rng.chance(30) {
            format!("{}p", 1 + self.rng.below(32))
        } else {
            self.rng.pick(SIZES).to_string()
        }
    }

    fn rights(&mut self) -> &'static str {
        self.rng.pick(RIGHTS)
    }

    fn expect(&mut self, can: Can) -> String {
        if self.rogue() {
            return format!(" expect {}", self.rng.pick(ANY_EXPECT));
        }
        if !self.rng.chance(40) {
            return String::new();
        }
        let outcomes = match can {
            Can::Errno => ERRNOS,
            Can::Linux => LINUX_ERRNOS,
            Can::Fault => REASONS,
            Can::Value => VALUES,
            Can::Text => TEXTS,
        };
        format!(" expect {}", self.rng.pick(outcomes))
    }

    fn cpu(&mut self) -> u64 {
        if self.rogue() {
            self.cpus as u64
        } else {
            self.rng.below(self.cpus as u64)
        }
    }

    /// A Linux call's line (the `aspace-linux` layer's calls, with the
    /// hostile values the rogue paths pick).
    fn linux_op(&mut self) {
        let t = self.running_task();
        let (a, s) = (self.user_addr(), self.size());
        let prot = self.rng.pick(&["rw", "r", "none", "r-x", "rwx", "w"]);
        let e = self.expect(Can::Linux);
        let line = match self.rng.below(9) {
            0 | 1 => {
                let kind = self
                    .rng
                    .pick(&["private", "shared", "droppable", "private shared"]);
                let backing = match self.rng.below(4) {
                    0 => format!(
                        "file F {}",
                        self.rng
                            .pick(&["0", "0x1000", "0xfffffffffffff000", "0x3ffff000"])
                    ),
                    _ => "anon".to_string(),
                };
                let mut extra = String::new();
                for w in [
                    "fixed",
                    "noreplace",
                    "populate",
                    "noreserve",
                    "growsdown",
                    "locked",
                ] {
                    if self.rng.chance(15) {
                        extra.push(' ');
                        extra.push_str(w);
                    }
                }
                format!("mmap {t} {a} {s} {prot} {kind} {backing}{extra}")
            }
            2 => format!("munmap {t} {a} {s}"),
            3 => format!("mprotect {t} {a} {s} {prot}"),
            4 => {
                let n = self.size();
                let f = self.rng.pick(&["", " maymove", " maymove dontunmap"]);
                let fixed = match self.rng.chance(20) {
                    true if f.is_empty() => format!(" maymove fixed {}", self.user_addr()),
                    true => format!(" fixed {}", self.user_addr()),
                    false => String::new(),
                };
                format!("mremap {t} {a} {s} {n}{f}{fixed}")
            }
            5 => {
                let adv = self.rng.pick(&[
                    "dontneed",
                    "free",
                    "remove",
                    "dontfork",
                    "wipeonfork",
                    "keeponfork",
                    "populate_read",
                    "populate_write",
                    "guard_install",
                    "guard_remove",
                ]);
                format!("madvise {t} {a} {s} {adv}")
            }
            6 => format!("brk {t} {a}"),
            7 => format!("mlock {t} {a} {s}"),
            _ => format!("maps {t} --linux"),
        };
        let e = if line.starts_with("maps") {
            String::new()
        } else {
            e
        };
        self.line(format!("{line}{e}"));
    }

    fn op(&mut self) {
        match self.rng.below(32) {
            28..=31 => self.linux_op(),
            26 | 27 => {
                // An area filled with pages: memory runs out now and then
                // (late-reserving areas pass the commit limit's check at
                // creation, so their faults do run out of frames).
                let (t, a) = (self.running_task(), self.user_addr());
                let s = self.rng.pick(&["64p", "256p", "1M", "2M"]);
                if self.rng.chance(25) {
                    // Reserving on write: read-only, then given write
                    // (which reserves the rest, or runs out).
                    let e = self.expect(Can::Errno);
                    self.line(format!("area {t} {a} {s} r reserve-on-write{e}"));
                    let e = self.expect(Can::Fault);
                    self.line(format!("touch {t} {a} {s} read{e}"));
                    let e = self.expect(Can::Errno);
                    self.line(format!("flags {t} {a} rw{e}"));
                } else {
                    let late = if self.rng.chance(60) {
                        " late-reserve"
                    } else {
                        ""
                    };
                    let e = self.expect(Can::Errno);
                    self.line(format!("area {t} {a} {s} rw{late}{e}"));
                }
                let e = self.expect(Can::Fault);
                self.line(format!("touch {t} {a} {s} write{e}"));
            }
            0 | 1 => {
                let t = self.any_task();
                if !self.alive.contains(&t) || self.rogue() {
                    let e = self.expect(Can::Errno);
                    self.line(format!("task {t}{e}"));
                    self.alive.push(t);
                }
            }
            2 => {
                let t = self.task();
                self.line(format!("exit {t}"));
                self.alive.retain(|&n| n != t);
                for r in self.running.iter_mut() {
                    if *r == Some(t) {
                        *r = None;
                    }
                }
            }
            3 => {
                let (t, c, e) = (self.task(), self.cpu(), self.expect(Can::Errno));
                self.line(format!("cpu {c} run {t}{e}"));
                if let Some(r) = self.running.get_mut(c as usize) {
                    *r = Some(t);
                }
            }
            4 => {
                let c = self.cpu();
                self.line(format!("cpu {c} idle"));
                if let Some(r) = self.running.get_mut(c as usize) {
                    *r = None;
                }
            }
            5..=7 => {
                let (t, a, s, r) = (self.task(), self.user_addr(), self.size(), self.rights());
                let label = if self.rng.chance(20) { " heap" } else { "" };
                let place = self.rng.pick(&["", "", "", " guard", " grows-down"]);
                let e = self.expect(Can::Errno);
                if self.rng.chance(25) {
                    // Placed anywhere, above an address and aligned or not.
                    let above = if self.rng.chance(50) {
                        format!(" above {a}")
                    } else {
                        String::new()
                    };
                    let align = self.rng.pick(&["", "", " align 64K", " align 3p"]);
                    self.line(format!(
                        "area {t} any {s} {r}{above}{align}{place}{label}{e}"
                    ));
                } else {
                    self.line(format!("area {t} {a} {s} {r}{place}{label}{e}"));
                }
            }
            8 => {
                let (t, a, s) = (self.task(), self.user_addr(), self.size());
                let e = self.expect(Can::Errno);
                self.line(format!("resize {t} {a} {s}{e}"));
            }
            9 => {
                let (t, a, e) = (self.task(), self.user_addr(), self.expect(Can::Errno));
                self.line(format!("destroy {t} {a}{e}"));
            }
            10 | 11 => {
                let (s, a, d, b, r) = (
                    self.task(),
                    self.user_addr(),
                    self.task(),
                    self.user_addr(),
                    self.rights(),
                );
                let e = self.expect(Can::Errno);
                self.line(format!("share {s} {a} {d} {b} {r}{e}"));
            }
            12 => {
                let (t, a, r) = (self.task(), self.user_addr(), self.rights());
                let e = self.expect(Can::Errno);
                self.line(format!("flags {t} {a} {r}{e}"));
            }
            13 => {
                let t = self.task();
                let bias = if self.rng.chance(20) {
                    format!(" bias {}", self.addr())
                } else {
                    String::new()
                };
                let e = self.expect(Can::Errno);
                self.line(format!("elf {t} builtin{bias}{e}"));
            }
            14 | 15 => {
                let (t, a) = (self.running_task(), self.addr());
                let what = match self.rng.below(4) {
                    0 => format!("u8 {}", self.rng.below(256)),
                    1 => format!("u64 {}", self.rng.next()),
                    2 => "u16 42".to_string(),
                    _ => "str \"Hello\"".to_string(),
                };
                let e = self.expect(Can::Fault);
                self.line(format!("write {t} {a} {what}{e}"));
            }
            16 | 17 => {
                let (t, a) = (self.running_task(), self.addr());
                let (what, can) = self.rng.pick(&[
                    ("u8", Can::Value),
                    ("u64", Can::Value),
                    ("str 5", Can::Text),
                ]);
                let e = self.expect(can);
                self.line(format!("read {t} {a} {what}{e}"));
            }
            18 => {
                let (t, a, e) = (self.running_task(), self.addr(), self.expect(Can::Value));
                self.line(format!("fetch {t} {a}{e}"));
            }
            19 => {
                let (t, a) = (self.running_task(), self.addr());
                let k = self.rng.pick(&["read", "write", "exec"]);
                let e = self.expect(Can::Fault);
                self.line(format!("fault {t} {a} {k}{e}"));
            }
            20 | 21 => {
                let (t, a, s) = (self.running_task(), self.user_addr(), self.size());
                let k = self
                    .rng
                    .pick(&["", " read", " write", " exec", " write down", " down"]);
                let e = self.expect(Can::Fault);
                self.line(format!("touch {t} {a} {s}{k}{e}"));
            }
            22 => {
                let m = if self.rng.chance(50) {
                    String::new()
                } else {
                    format!(" {}", self.task())
                };
                self.line(format!("map{m}"));
            }
            23 => {
                let w = self
                    .rng
                    .pick(&["stats", "snapshot", "snapshot after", "say hello"]);
                self.line(w.to_string());
            }
            24 => {
                let c = match self.rng.below(3) {
                    0 => "clean".to_string(),
                    1 => format!(
                        "{} {} {}",
                        self.rng.pick(COUNTERS),
                        self.rng.pick(CMPS),
                        self.rng.below(4)
                    ),
                    _ => {
                        let t = self.task();
                        format!("resident {t} {} {}", self.rng.pick(CMPS), self.rng.below(8))
                    }
                };
                self.line(format!("check {c}"));
            }
            _ => {
                let on = if self.rng.chance(70) { "off" } else { "on" };
                self.line(format!("echo {on}"));
            }
        }
    }
}

/// A scenario written from the grammar.
fn grammar_scenario(rng: &mut Rng) -> String {
    let cpus = 1 + rng.below(4) as usize;
    let loose = rng.chance(25);
    let mut g = Gen {
        loose,
        cpus,
        alive: Vec::new(),
        running: vec![None; cpus],
        out: String::new(),
        rng,
    };
    if !g.rng.chance(10) {
        let asids = if g.rogue() {
            g.rng.below(cpus as u64)
        } else {
            cpus as u64 + g.rng.below(4)
        };
        let limit = if g.rng.chance(20) {
            format!(" commit-limit {}p", g.rng.below(300))
        } else {
            String::new()
        };
        g.line(format!("machine cpus {cpus} asids {asids}{limit}"));
    } else {
        // The default machine has 4 CPUs.
        g.cpus = 4;
        g.running = vec![None; 4];
    }
    let n = 1 + g.rng.below(60);
    for _ in 0..n {
        g.op();
    }
    g.out
}

/// The shipped example scenarios and the demo: material for mutation.
fn corpus() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/scenarios");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/scenarios exists")
        .map(|e| e.expect("readable dir").path())
        .filter(|p| p.extension().is_some_and(|e| e == "aspace"))
        .collect();
    v.sort();
    let mut texts: Vec<String> = v
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("readable example"))
        .collect();
    let spec = Opts::default().spec(&Default::default());
    let spec = aspace_cli::engine::MachineSpec {
        cpus: 2,
        asids: 3,
        ..spec
    };
    texts.push(aspace_cli::demo::scenario(&spec));
    texts
}

/// Words to splice into mutated lines.
fn random_word(rng: &mut Rng) -> String {
    match rng.below(8) {
        0 => rng.pick(TASKS).to_string(),
        1 => rng.pick(USER_ADDRS).to_string(),
        2 => rng.pick(SIZES).to_string(),
        3 => rng.pick(RIGHTS).to_string(),
        4 => format!("expect {}", rng.pick(ANY_EXPECT)),
        5 => rng.next().to_string(),
        6 => rng
            .pick(&[
                "\"", "#", "\\", "\"a\\q\"", "", "  ", "\u{0}", "é", "machine",
            ])
            .to_string(),
        _ => format!("{:#x}", rng.next()),
    }
}

/// One of the corpus, mutated a few times.
fn mutated_scenario(rng: &mut Rng, corpus: &[String]) -> String {
    let text = &corpus[rng.below(corpus.len() as u64) as usize];
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for _ in 0..1 + rng.below(6) {
        if lines.is_empty() {
            lines.push(String::new());
        }
        let i = rng.below(lines.len() as u64) as usize;
        match rng.below(7) {
            0 => {
                lines.remove(i);
            }
            1 => {
                let l = lines[i].clone();
                lines.insert(i, l);
            }
            2 => {
                let j = rng.below(lines.len() as u64) as usize;
                lines.swap(i, j);
            }
            3 | 4 => {
                // Replace one word.
                let mut words: Vec<String> =
                    lines[i].split_whitespace().map(str::to_string).collect();
                if words.is_empty() {
                    words.push(random_word(rng));
                } else {
                    let w = rng.below(words.len() as u64) as usize;
                    words[w] = random_word(rng);
                }
                lines[i] = words.join(" ");
            }
            5 => {
                let l = grammar_scenario(rng);
                let extra: Vec<String> = l.lines().skip(1).take(3).map(str::to_string).collect();
                for (k, e) in extra.into_iter().enumerate() {
                    lines.insert(i + k, e);
                }
            }
            _ => {
                // Cut the line at a character boundary.
                let l = &lines[i];
                let cut = rng.below(l.len() as u64 + 1) as usize;
                let cut = (0..=cut)
                    .rev()
                    .find(|&c| l.is_char_boundary(c))
                    .unwrap_or(0);
                lines[i] = l[..cut].to_string();
            }
        }
    }
    lines.join("\n")
}

/// Random text: bytes, mostly printable, as UTF-8 (lossily).
fn random_text(rng: &mut Rng) -> String {
    let n = rng.below(400) as usize;
    let bytes: Vec<u8> = (0..n)
        .map(|_| match rng.below(10) {
            0 => b'\n',
            1 => b' ',
            2 => rng.next() as u8,
            _ => 0x21 + rng.below(94) as u8,
        })
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The built-in executable, mutated: header fields set to edge values,
/// bytes flipped, or the file cut short.
fn mutated_elf(rng: &mut Rng) -> Vec<u8> {
    let mut b = aspace_cli::elfgen::builtin_elf();
    const EDGES: &[u64] = &[
        0,
        1,
        0xfff,
        0x1000,
        0x1001,
        0x3000,
        0x4800,
        0x10_0000,
        0x100_0000_0000,
        0x7fff_ffff_f000,
        0x8000_0000_0000,
        u64::MAX,
        u64::MAX - 0xfff,
        1 << 63,
    ];
    for _ in 0..1 + rng.below(4) {
        match rng.below(4) {
            0 | 1 => {
                // A program header field (offset, vaddr, paddr, filesz,
                // memsz, align) of one of the three segments.
                let seg = rng.below(3) as usize;
                let field = 8 + 8 * rng.below(6) as usize;
                let at = 64 + seg * 56 + field;
                b[at..at + 8].copy_from_slice(&rng.pick(EDGES).to_le_bytes());
            }
            2 => {
                // A header field: type, flags, entry, phoff, phnum...
                let at = rng.pick(&[4usize, 16, 24, 32, 54, 56, 64, 68, 120, 124]);
                let v = rng.next().to_le_bytes();
                let n = rng.pick(&[1usize, 2, 4]);
                b[at..at + n].copy_from_slice(&v[..n]);
            }
            _ => {
                let at = rng.below(b.len() as u64) as usize;
                b[at] ^= 1 << rng.below(8);
            }
        }
    }
    if rng.chance(10) {
        let n = rng.below(b.len() as u64 + 1) as usize;
        b.truncate(n);
    }
    b
}

/// Small machines: the simulator maps all its memory at once.
fn opts_for(rng: &mut Rng, dir: &Path, i: u64) -> Opts {
    Opts {
        quiet: true,
        json: rng.chance(10),
        memory: Some(rng.pick(&[1u64 << 20, 1 << 20, 1 << 20, 2 << 20, 4 << 20])),
        tlb_entries: rng.pick(&[None, Some(1), Some(8)]),
        svg: rng.chance(5).then(|| dir.join(format!("{i}.svg"))),
        ..Opts::default()
    }
}

/// What one case was, for the failure report.
#[derive(Clone, Default)]
struct Case {
    kind: &'static str,
    seed: u64,
    input: String,
}

/// Checks one outcome; `Err` says what is wrong.
fn check(o: &Outcome, svg: Option<&Path>) -> Result<(), String> {
    match o {
        Outcome::Passed => {}
        Outcome::Failed(f) => {
            if f.is_empty() || f.iter().any(|m| m.trim().is_empty()) {
                return Err(format!("exit 1 without a message: {f:?}"));
            }
            if let Some(m) = f
                .iter()
                .find(|m| m.contains("frames leaked") || m.contains("stale TLB"))
            {
                return Err(format!("an end-of-run check failed: {m}"));
            }
        }
        Outcome::Input { errors, .. } => {
            if std::env::var_os("ASPACE_FUZZ_SHOW_INPUT").is_some() {
                eprintln!("exit 2: {:?}", errors.0.first());
            }
            if errors.0.is_empty() || errors.0.iter().any(|m| m.trim().is_empty()) {
                return Err(format!("exit 2 without a message: {errors:?}"));
            }
        }
    }
    if let Some(p) = svg {
        if let Ok(text) = std::fs::read_to_string(p) {
            roxmltree::Document::parse(&text)
                .map_err(|e| format!("the picture is not well-formed: {e}"))?;
            let _ = std::fs::remove_file(p);
        }
    }
    Ok(())
}

/// How the cases of one kind ended: exit 0, 1, 2, and how many of the
/// runs had a step that did not happen because an earlier one failed (a
/// task whose creation failed, a CPU that could not switch).
type Tally = Vec<(&'static str, [u64; 4])>;

/// Runs `count` cases of each kind (or the one seed asked for) on a worker
/// thread, watched for hangs; returns the failures and the tally.
fn fuzz(count: u64, only_seed: Option<u64>) -> (Vec<(Case, String)>, Tally) {
    let current = Arc::new(Mutex::new(Case::default()));
    let (tx, rx) = mpsc::channel();
    let worker = {
        let current = current.clone();
        std::thread::spawn(move || {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let corpus = corpus();
            let mut failures = Vec::new();
            let mut tally: Tally = Vec::new();
            let kinds: [(&'static str, u64); 4] = [
                ("grammar", 0x5eed_0001),
                ("mutated", 0x5eed_0002),
                ("random", 0x5eed_0003),
                ("elf", 0x5eed_0004),
            ];
            for (kind, base) in kinds {
                let seeds: Vec<u64> = match only_seed {
                    Some(s) => vec![s],
                    None => (0..count).map(|i| seed_of(base, i)).collect(),
                };
                tally.push((kind, [0; 4]));
                for (i, seed) in seeds.into_iter().enumerate() {
                    let mut rng = Rng(seed);
                    let opts = opts_for(&mut rng, dir.path(), i as u64);
                    let (input, elf) = match kind {
                        "grammar" => (grammar_scenario(&mut rng), None),
                        "mutated" => (mutated_scenario(&mut rng, &corpus), None),
                        "random" => (random_text(&mut rng), None),
                        _ => {
                            let b = mutated_elf(&mut rng);
                            (
                                format!("{} bytes: {:02x?}", b.len(), &b[..b.len().min(256)]),
                                Some(b),
                            )
                        }
                    };
                    let case = Case { kind, seed, input };
                    *current.lock().unwrap() = case.clone();
                    let _ = tx.send(());
                    let scenario_dir =
                        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/scenarios");
                    let r = catch_unwind(AssertUnwindSafe(|| match &elf {
                        Some(b) => run_elf_bytes(&opts, "fuzz.elf", b),
                        None => run_scenario_text(&opts, "fuzz.aspace", &case.input, &scenario_dir),
                    }));
                    let verdict = match r {
                        Ok(o) => {
                            if let Some(t) = tally.last_mut() {
                                t.1[usize::from(o.exit_code().min(2))] += 1;
                                if matches!(&o, Outcome::Failed(f) if f.iter().any(|m| m.contains("not done")))
                                {
                                    t.1[3] += 1;
                                }
                            }
                            check(&o, opts.svg.as_deref())
                        }
                        Err(p) => Err(format!(
                            "panicked: {}",
                            p.downcast_ref::<String>()
                                .cloned()
                                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_default()
                        )),
                    };
                    if let Err(m) = verdict {
                        failures.push((case, m));
                        if failures.len() >= 5 {
                            return (failures, tally);
                        }
                    }
                }
            }
            (failures, tally)
        })
    };
    // The watchdog: each case sends a tick when it starts.
    let mut last = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(()) => last = Instant::now(),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if last.elapsed() > HANG {
                    let c = current.lock().unwrap().clone();
                    panic!(
                        "a {} case ran for over {HANG:?}: seed {:#x} (rerun with ASPACE_FUZZ_SEED={}):\n{}",
                        c.kind, c.seed, c.seed, c.input
                    );
                }
            }
        }
    }
    worker.join().expect("the worker catches every panic")
}

/// The process's peak resident memory, from `/proc` (Linux), in bytes.
fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[test]
fn scenarios_and_executables_end_in_0_1_or_2_with_a_message() {
    let count = std::env::var("ASPACE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let only_seed = std::env::var("ASPACE_FUZZ_SEED").ok().and_then(|v| {
        let v = v.trim();
        match v.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => v.parse().ok(),
        }
    });
    let t = Instant::now();
    let (failures, tally) = fuzz(count, only_seed);
    eprintln!("{count} cases of each kind in {:?}", t.elapsed());
    for (kind, [ok, failed, input, lost]) in &tally {
        eprintln!(
            "  {kind:<8} exit 0: {ok:>5}  exit 1: {failed:>5} ({lost} with a step not done)  exit 2: {input:>5}"
        );
    }
    if !failures.is_empty() {
        let mut report = String::new();
        for (c, m) in &failures {
            report.push_str(&format!(
                "\n--- {} case, seed {:#x} (rerun with ASPACE_FUZZ_SEED={}): {m}\n{}\n",
                c.kind,
                c.seed,
                c.seed,
                c.input.chars().take(6000).collect::<String>()
            ));
        }
        panic!("{} fuzz cases went wrong:{report}", failures.len());
    }
    // Most grammar-written scenarios pass validation and run.
    if only_seed.is_none() {
        let [ok, failed, input, lost] = tally[0].1;
        assert!(ok + failed > input, "grammar cases mostly run: {tally:?}");
        assert!(lost > 0, "some grammar cases lose a task: {tally:?}");
    }
    if let Some(peak) = peak_rss() {
        // Machines of at most 4 MiB, one at a time: a few hundred MiB is
        // already far more than any case needs.
        assert!(peak < 1 << 30, "peak memory {peak} bytes");
    }
}
