//! A seeded generator of random call sequences confined to a window, with
//! the mix the differential test needs: `mmap` fixed, no-replace, with a
//! hint and without; partial `munmap`/`mprotect` across several mappings
//! and holes; `mremap` shrink, grow, may-move and fixed (and with an old
//! length of 0: a second mapping of a shared object); `madvise` (every
//! advice but `MADV_COLLAPSE` and `MADV_PAGEOUT`, guard
//! pages in and out unless [`GenConfig::guards`] is off); `msync`, `mlock2`,
//! `munlock`; `mincore`; `brk`;
//! and `write`/`read` between calls so page contents diverge.
//!
//! The same seed and [`GenConfig`] give the same lines, with addresses
//! relative to the window's start, so a failing seed replays anywhere the
//! window has the same size. Most addresses fall in a hot zone at the
//! window's top (where placement without a hint lands too) or near the ends
//! of earlier mappings, so calls meet each other's mappings often.

use crate::call::{Call, FileRef};
use crate::command::{Command, Line};
use crate::consts::*;
use crate::flags::{Advice, LockAllFlags, LockFlags, MapFlags, RemapFlags, SyncFlags};
use crate::prot::Prot;
use alloc::format;
use alloc::vec::Vec;

/// The advice that set or clear a mapping's hint flags (and so split and
/// merge mappings).
const HINTS: [i32; 13] = [
    MADV_NORMAL,
    MADV_RANDOM,
    MADV_SEQUENTIAL,
    MADV_DONTFORK,
    MADV_DOFORK,
    MADV_DONTDUMP,
    MADV_DODUMP,
    MADV_WIPEONFORK,
    MADV_KEEPONFORK,
    MADV_HUGEPAGE,
    MADV_NOHUGEPAGE,
    MADV_MERGEABLE,
    MADV_UNMERGEABLE,
];

/// A small, fast, seedable PRNG (SplitMix64): the same seed gives the same
/// numbers on every machine.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    /// One element of a non-empty slice.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Where and what the generator may produce.
#[derive(Clone, Debug)]
pub struct GenConfig {
    /// The window's first address (page-aligned).
    pub window_start: u64,
    /// The window's length (page multiple).
    pub window_len: u64,
    /// `[lo, hi)` for `brk` calls, or `None` for none.
    pub brk_span: Option<(u64, u64)>,
    /// The longest mapping a call makes, in pages (keep it under 512: Linux
    /// aligns anonymous mappings of 2 MiB and more to 2 MiB).
    pub max_pages: u64,
    /// The hot zone at the window's top, in pages.
    pub hot_pages: u64,
    /// Whether to map in-memory files (`file F0`..`file F2`).
    pub files: bool,
    /// Whether to make shared anonymous mappings. Growing one with `mremap`
    /// leaves pages past its object's end (`SIGBUS` on Linux, reported as
    /// `bus` ranges).
    pub shared_anon: bool,
    /// Whether to use `MAP_GROWSDOWN`.
    pub growsdown: bool,
    /// Percent of lines that are plainly invalid (unaligned, zero length),
    /// to compare errno paths.
    pub invalid_percent: u64,
    /// Whether to ask for writable and executable pages at once (`rwx`);
    /// without it `rwx` becomes `r-x` (aspace refuses W+X).
    pub write_exec: bool,
    /// Whether to make `mlockall` and `munlockall` calls (on Linux they
    /// meet `RLIMIT_MEMLOCK` over the whole process unless the caller has
    /// `CAP_IPC_LOCK`).
    pub lock_all: bool,
    /// Whether `mlockall` may have `MCL_CURRENT` (on Linux it faults in
    /// every mapping of the whole process, the runner's own too).
    pub lock_current: bool,
    /// Whether `madvise` may put guard pages in and take them out
    /// (`MADV_GUARD_INSTALL`, `MADV_GUARD_REMOVE`: Linux 6.13+).
    pub guards: bool,
    /// Whether to make `mseal` calls (the kernel has it: Linux 6.10+).
    pub seal: bool,
}

/// The longest file offset the generator uses, in pages; the runner makes
/// its files longer than this plus `max_pages`.
pub const MAX_FILE_OFFSET_PAGES: u64 = 64;

impl GenConfig {
    /// The default mix in a window.
    pub fn new(window_start: u64, window_len: u64) -> GenConfig {
        GenConfig {
            window_start,
            window_len,
            brk_span: None,
            max_pages: 16,
            hot_pages: 256,
            files: true,
            shared_anon: true,
            growsdown: true,
            invalid_percent: 3,
            write_exec: true,
            lock_all: true,
            lock_current: true,
            guards: true,
            seal: true,
        }
    }
}

/// Produces lines; see the module docs.
#[derive(Clone, Debug)]
pub struct Generator {
    cfg: GenConfig,
    rng: Rng,
    /// Ends of earlier mappings (window-relative page numbers).
    marks: Vec<u64>,
}

const PROTS: &[Prot] = &[
    Prot::NONE,
    Prot::R,
    Prot::RW,
    Prot::RW,
    Prot::RW,
    Prot::RX,
    Prot::RWX,
];

impl Generator {
    /// A generator for `cfg` from `seed`.
    pub fn new(cfg: GenConfig, seed: u64) -> Generator {
        Generator {
            cfg,
            rng: Rng::new(seed),
            marks: Vec::new(),
        }
    }

    fn pages(&self) -> u64 {
        self.cfg.window_len / PAGE_SIZE
    }

    /// A window-relative page where something interesting is likely.
    fn page(&mut self) -> u64 {
        let total = self.pages();
        let hot = self.cfg.hot_pages.min(total);
        let p = match self.rng.below(100) {
            0..=39 if !self.marks.is_empty() => {
                let m = self.rng.pick(&self.marks);
                (m + self.rng.below(5)).saturating_sub(2)
            }
            0..=96 => total - hot + self.rng.below(hot),
            _ => self.rng.below(total),
        };
        p.min(total - 1)
    }

    fn len_pages(&mut self) -> u64 {
        1 + if self.rng.chance(60) {
            self.rng.below(4)
        } else {
            self.rng.below(self.cfg.max_pages)
        }
    }

    /// A range `[page, page + n)` inside the window, as an address and length.
    fn range(&mut self) -> (u64, u64) {
        let start = self.page();
        let n = self.len_pages().min(self.pages() - start);
        (self.cfg.window_start + start * PAGE_SIZE, n * PAGE_SIZE)
    }

    fn mark(&mut self, addr: u64, len: u64) {
        if addr < self.cfg.window_start {
            return;
        }
        let rel = (addr - self.cfg.window_start) / PAGE_SIZE;
        if self.marks.len() >= 32 {
            let i = self.rng.below(32) as usize;
            self.marks.swap_remove(i);
        }
        self.marks.push(rel);
        self.marks.push(rel + len / PAGE_SIZE);
    }

    /// Makes a valid call invalid in one of the ways Linux checks first.
    fn spoil(&mut self, call: &mut Call) {
        match call {
            Call::Mmap {
                addr, len, offset, ..
            } => match self.rng.below(3) {
                0 => *len = 0,
                1 if *addr != 0 => *addr += 1,
                _ => *offset += 1,
            },
            Call::Munmap { addr, len }
            | Call::Mprotect { addr, len, .. }
            | Call::Madvise { addr, len, .. }
            | Call::Msync { addr, len, .. }
            | Call::Mlock { addr, len, .. }
            | Call::Munlock { addr, len }
            | Call::Mincore { addr, len }
            | Call::Mseal { addr, len, .. } => {
                if self.rng.chance(50) {
                    *addr += 8;
                } else {
                    *len = 0;
                }
            }
            Call::Mremap {
                old_addr, new_len, ..
            } => {
                if self.rng.chance(50) {
                    *old_addr += 8;
                } else {
                    *new_len = 0;
                }
            }
            Call::Brk { addr } => *addr = addr.saturating_sub(3 * PAGE_SIZE) + 5,
            Call::Mlockall { flags } => flags.0 = 0,
            Call::Munlockall => {}
        }
    }

    fn mmap(&mut self) -> Call {
        let (mut addr, len) = self.range();
        let mut flags = if self.cfg.shared_anon && self.rng.chance(15) {
            MAP_SHARED
        } else {
            MAP_PRIVATE
        };
        match self.rng.below(20) {
            0..=1 => addr = 0,                 // placed by the kernel
            2..=5 => {}                        // a hint
            6..=14 => flags |= MAP_FIXED,      // replace
            _ => flags |= MAP_FIXED_NOREPLACE, // EEXIST if taken
        }
        let mut file = None;
        let mut offset = 0;
        if self.cfg.files && self.rng.chance(25) {
            if !flags_shared(flags) && self.rng.chance(30) {
                flags = (flags & !MAP_PRIVATE) | MAP_SHARED;
            }
            file = Some(FileRef(format!("F{}", self.rng.below(3))));
            offset = self.rng.below(MAX_FILE_OFFSET_PAGES) * PAGE_SIZE;
        } else {
            flags |= MAP_ANONYMOUS;
        }
        if self.rng.chance(8) {
            flags |= MAP_POPULATE;
        }
        if self.rng.chance(8) {
            flags |= MAP_NORESERVE;
        }
        if self.cfg.growsdown && file.is_none() && self.rng.chance(3) {
            flags |= MAP_GROWSDOWN;
        }
        if self.rng.chance(3) {
            flags |= MAP_LOCKED;
        }
        let prot = self.prot();
        Call::Mmap {
            addr,
            len,
            prot,
            flags: MapFlags(flags),
            file,
            offset,
        }
    }

    /// Rights for a call (the same random draws with or without `rwx`).
    fn prot(&mut self) -> Prot {
        let p = self.rng.pick(PROTS);
        if p == Prot::RWX && !self.cfg.write_exec {
            Prot::RX
        } else {
            p
        }
    }

    fn mremap(&mut self) -> Call {
        let (mut old_addr, mut old_len) = self.range();
        if !self.marks.is_empty() && self.rng.chance(50) {
            // Exactly at an earlier mapping's start or end, a few pages long.
            let m = self.rng.pick(&self.marks).min(self.pages() - 1);
            old_addr = self.cfg.window_start + m * PAGE_SIZE;
            old_len = (1 + self.rng.below(4)).min(self.pages() - m) * PAGE_SIZE;
        }
        let kind = self.rng.below(10);
        if kind >= 5 && self.rng.chance(8) {
            // An old length of 0: a second mapping of a shared object.
            let new_len = (1 + self.rng.below(self.cfg.max_pages)) * PAGE_SIZE;
            let (flags, new_addr) = if kind >= 8 {
                let (to, _) = self.range();
                let room = self.cfg.window_start + self.cfg.window_len - new_len;
                (MREMAP_MAYMOVE | MREMAP_FIXED, to.min(room))
            } else {
                (MREMAP_MAYMOVE, 0)
            };
            return Call::Mremap {
                old_addr,
                old_len: 0,
                new_len,
                flags: RemapFlags(flags),
                new_addr,
            };
        }
        if kind >= 5 && self.rng.chance(8) {
            // MREMAP_DONTUNMAP: the same size, the old range left empty.
            let new_addr = if kind >= 8 {
                let (to, _) = self.range();
                to.min(self.cfg.window_start + self.cfg.window_len - old_len)
            } else {
                0
            };
            let fixed = if kind >= 8 { MREMAP_FIXED } else { 0 };
            return Call::Mremap {
                old_addr,
                old_len,
                new_len: old_len,
                flags: RemapFlags(MREMAP_MAYMOVE | MREMAP_DONTUNMAP | fixed),
                new_addr,
            };
        }
        let shrink = |rng: &mut Rng| rng.below(old_len / PAGE_SIZE).max(1) * PAGE_SIZE;
        let new_len = match kind {
            0..=2 => shrink(&mut self.rng), // shrink (or same)
            // A fixed move shrinks, keeps its size or grows.
            8 | 9 if self.rng.chance(25) => shrink(&mut self.rng),
            8 | 9 if self.rng.chance(15) => old_len,
            _ => old_len + (1 + self.rng.below(self.cfg.max_pages)) * PAGE_SIZE, // grow
        };
        let (flags, new_addr) = match kind {
            0..=4 => (0, 0),
            5..=7 => (MREMAP_MAYMOVE, 0),
            _ => {
                let (to, _) = self.range();
                let room = self.cfg.window_start + self.cfg.window_len - new_len;
                (MREMAP_MAYMOVE | MREMAP_FIXED, to.min(room))
            }
        };
        Call::Mremap {
            old_addr,
            old_len,
            new_len,
            flags: RemapFlags(flags),
            new_addr,
        }
    }

    /// The next line.
    pub fn next_line(&mut self) -> Line {
        let roll = self.rng.below(100);
        let mut call = match roll {
            0..=31 => self.mmap(),
            32..=45 => {
                let (addr, mut len) = self.range();
                if self.rng.chance(10) {
                    // A sweep across several mappings and holes.
                    let room = self.cfg.window_start + self.cfg.window_len - addr;
                    len = ((1 + self.rng.below(4 * self.cfg.max_pages)) * PAGE_SIZE).min(room);
                }
                Call::Munmap { addr, len }
            }
            46..=59 => {
                let (addr, len) = self.range();
                let mut prot = self.prot();
                // Now and then the flags beyond the rights: PROT_GROWSDOWN
                // (where stacks are made), PROT_GROWSUP, PROT_SEM.
                match self.rng.below(100) {
                    0..=5 if self.cfg.growsdown => prot.0 |= PROT_GROWSDOWN,
                    6 => prot.0 |= PROT_GROWSUP,
                    7 => prot.0 |= PROT_SEM,
                    _ => {}
                }
                Call::Mprotect { addr, len, prot }
            }
            60..=69 => self.mremap(),
            70..=75 => {
                let (addr, len) = self.range();
                let advice = match self.rng.below(20) {
                    5..=6 if self.cfg.guards => Advice(if self.rng.chance(60) {
                        MADV_GUARD_INSTALL
                    } else {
                        MADV_GUARD_REMOVE
                    }),
                    0..=6 => Advice::DONTNEED,
                    7..=9 => Advice::FREE,
                    10..=15 => Advice(self.rng.pick(&HINTS)),
                    16..=18 => Advice(self.rng.pick(&[MADV_POPULATE_READ, MADV_POPULATE_WRITE])),
                    // Not MADV_PAGEOUT: Linux reclaims MADV_FREE'd pages with
                    // it (they read as zeros after), where aspace keeps them.
                    _ => Advice(self.rng.pick(&[
                        MADV_WILLNEED,
                        MADV_COLD,
                        MADV_DONTNEED_LOCKED,
                        MADV_REMOVE,
                        MADV_REMOVE,
                    ])),
                };
                Call::Madvise { addr, len, advice }
            }
            80..=83 if self.cfg.lock_all && self.rng.chance(8) => {
                if self.rng.chance(35) {
                    let mut flags = self.rng.pick(&[
                        MCL_CURRENT,
                        MCL_FUTURE,
                        MCL_CURRENT | MCL_FUTURE,
                        MCL_CURRENT | MCL_ONFAULT,
                        MCL_FUTURE | MCL_ONFAULT,
                        MCL_ONFAULT,
                        0,
                        8,
                    ]);
                    if !self.cfg.lock_current {
                        flags &= !MCL_CURRENT;
                    }
                    Call::Mlockall {
                        flags: LockAllFlags(flags),
                    }
                } else {
                    Call::Munlockall
                }
            }
            80..=83 if self.cfg.seal && self.rng.chance(5) => {
                // Rarely: what is sealed stays so for the sequence.
                let (addr, len) = self.range();
                let flags = if self.rng.chance(10) { 1 } else { 0 };
                Call::Mseal { addr, len, flags }
            }
            80..=83 => {
                let (addr, len) = self.range();
                match self.rng.below(10) {
                    0..=3 => {
                        // Any address: mlock takes its page.
                        let addr = addr + self.rng.pick(&[0, 0, 0, 1, PAGE_SIZE - 1]);
                        let flags = self.rng.pick(&[0, 0, 0, 0, MLOCK_ONFAULT, 2]);
                        Call::Mlock {
                            addr,
                            len,
                            flags: LockFlags(flags),
                        }
                    }
                    4..=7 => Call::Munlock { addr, len },
                    _ => {
                        let flags =
                            self.rng
                                .pick(&[0, MS_ASYNC, MS_SYNC, MS_INVALIDATE, 3, 6, 5, 8]);
                        Call::Msync {
                            addr,
                            len,
                            flags: SyncFlags(flags),
                        }
                    }
                }
            }
            76..=79 if self.cfg.brk_span.is_some() => {
                let (lo, hi) = self.cfg.brk_span.unwrap_or_default();
                Call::Brk {
                    addr: lo + self.rng.below((hi - lo) / PAGE_SIZE / 4) * PAGE_SIZE,
                }
            }
            _ if self.rng.chance(15) => {
                // Which pages are resident: a length in bytes (rounded up
                // to pages), over mappings and holes.
                let (addr, len) = self.range();
                let len = len - self.rng.pick(&[0, 0, 0, 1, PAGE_SIZE - 1]).min(len);
                Call::Mincore { addr, len }
            }
            _ => {
                let (addr, _) = self.range();
                let addr = addr + self.rng.below(PAGE_SIZE);
                let command = if self.rng.chance(65) {
                    Command::Write {
                        addr,
                        byte: self.rng.below(255) as u8 + 1,
                    }
                } else {
                    Command::Read { addr }
                };
                return Line {
                    command,
                    expect: None,
                    refuse_holes: false,
                };
            }
        };
        if self.rng.below(100) < self.cfg.invalid_percent {
            self.spoil(&mut call);
        }
        match &call {
            Call::Mmap { addr, len, .. } => self.mark(*addr, *len),
            Call::Mremap {
                old_addr,
                new_len,
                flags,
                new_addr,
                ..
            } => {
                self.mark(*old_addr, *new_len);
                if flags.fixed() {
                    self.mark(*new_addr, *new_len);
                }
            }
            _ => {}
        }
        Line::from(call)
    }

    /// The next `n` lines.
    pub fn lines(&mut self, n: usize) -> Vec<Line> {
        (0..n).map(|_| self.next_line()).collect()
    }
}

fn flags_shared(flags: u32) -> bool {
    flags & MAP_TYPE == MAP_SHARED
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    const W: u64 = 0x7000_0000_0000;
    const LEN: u64 = 64 << 20;

    fn inside(addr: u64, len: u64) -> bool {
        addr >= W && addr.saturating_add(len) <= W + LEN + PAGE_SIZE
    }

    #[test]
    fn same_seed_same_lines_all_inside_and_parsable() {
        let mut cfg = GenConfig::new(W, LEN);
        cfg.brk_span = Some((0x5555_0000_0000, 0x5555_0100_0000));
        let a = Generator::new(cfg.clone(), 7).lines(3000);
        let b = Generator::new(cfg, 7).lines(3000);
        assert_eq!(a, b);
        let mut kinds = [0usize; 8];
        for line in &a {
            let text = line.to_string();
            assert_eq!(Line::parse(&text).as_ref(), Ok(line), "{text}");
            match &line.command {
                Command::Call(Call::Mmap { addr, len, .. }) => {
                    kinds[0] += 1;
                    assert!(*addr == 0 || inside(*addr, *len), "{text}");
                }
                Command::Call(
                    Call::Munmap { addr, len }
                    | Call::Mprotect { addr, len, .. }
                    | Call::Madvise { addr, len, .. }
                    | Call::Msync { addr, len, .. }
                    | Call::Mlock { addr, len, .. }
                    | Call::Munlock { addr, len },
                ) => {
                    kinds[1] += 1;
                    assert!(inside(*addr, *len), "{text}");
                }
                Command::Call(Call::Mincore { addr, len } | Call::Mseal { addr, len, .. }) => {
                    kinds[5] += 1;
                    assert!(inside(*addr, *len), "{text}");
                }
                Command::Call(Call::Mremap {
                    old_addr,
                    old_len,
                    new_len,
                    new_addr,
                    flags,
                }) => {
                    kinds[2] += 1;
                    assert!(inside(*old_addr, *old_len), "{text}");
                    assert!(!flags.fixed() || inside(*new_addr, *new_len), "{text}");
                }
                Command::Call(Call::Brk { .. } | Call::Mlockall { .. } | Call::Munlockall) => {
                    kinds[3] += 1
                }
                Command::Write { addr, .. } | Command::Read { addr } => {
                    kinds[4] += 1;
                    assert!(inside(*addr, 1), "{text}");
                }
            }
        }
        assert!(kinds[..6].iter().all(|&k| k > 50), "{kinds:?}");
    }
}
