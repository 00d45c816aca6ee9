//! The runner's output, block by block. Both sides of the differential test
//! produce the same structures ([`Header`], [`Response`], [`State`]), so a
//! step compares with `==` on the parts that must agree.
//!
//! Every block is a run of lines ending with a line holding only `.`.
//! The header block, once at start:
//!
//! ```text
//! linux-ref 1
//! window 0xLO 0xHI                 # the window calls may touch
//! brk 0xSTART_BRK 0xBRK            # the break's start and its value now
//! brk-span 0xLO 0xHI               # where brk calls may move it
//! sysctl kernel.osrelease 6.18.44   # the kernel and the policies
//! sysctl vm.overcommit_memory 0     # the results depend on
//! sysctl vm.overcommit_ratio 50
//! sysctl vm.max_map_count 65530
//! .
//! ```
//!
//! Then one block per command line:
//!
//! ```text
//! > mmap 0x7ffff0000000 4p rw- private anon fixed    # the command, canonical
//! = addr 0x7ffff0000000                               # its Outcome
//! ! expected EEXIST                                   # only if `expect` failed
//! map 7ffff0000000-7ffff0004000 rw-p 00000000 00:00 0 # Linux's maps lines meeting
//!                                                     # the window or brk span
//! page 0x7ffff0000000 0x1c2b...                       # each readable mapped page
//!                                                     # that is not all zeros
//! bus 0x7ffff0010000 0x7ffff0012000                   # readable but past the end
//!                                                     # of its object (not read)
//! .
//! ```

use crate::command::{Expect, Outcome, ParseError};
use crate::maps::{window_keys, MapKey, MapsLine};
use crate::num::parse_u64;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Write;

/// The protocol's version in the header's first line.
pub const VERSION: u32 = 1;

/// What the runner says once at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// The window `[lo, hi)` that calls may touch; placements without a hint
    /// land top-down from `hi` (see `runner::window`).
    pub window: (u64, u64),
    /// The program break's start (`start_brk`).
    pub brk_start: u64,
    /// The program break when the runner started.
    pub brk_now: u64,
    /// `[lo, hi)` that `brk` may move the break in; its maps are reported too.
    pub brk_span: (u64, u64),
    /// Kernel settings the results depend on, by dotted name
    /// (`kernel.osrelease`, `vm.overcommit_memory`, `vm.max_map_count`, ...),
    /// `memlock.unlimited` (`1` when the runner may lock any amount of
    /// memory: `CAP_IPC_LOCK` or no `RLIMIT_MEMLOCK`), `memlock.bytes`
    /// (`RLIMIT_MEMLOCK`, or `unlimited`), `stack.bytes` (`RLIMIT_STACK`, or
    /// `unlimited`) and `madv.guard` (`1` when the
    /// kernel has guard pages, `MADV_GUARD_INSTALL`, and shows them in
    /// `/proc/PID/pagemap`: Linux 6.14+).
    pub sysctl: Vec<(String, String)>,
}

/// The observable state after a step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// The maps lines meeting the window or the brk span, in address order.
    pub maps: Vec<MapsLine>,
    /// `(page address, digest)` of every readable mapped page that is not
    /// all zeros, in address order.
    pub pages: Vec<(u64, u64)>,
    /// `[lo, hi)` ranges mapped readable but past the end of their object
    /// (an access there is `SIGBUS` on Linux), in address order.
    pub bus: Vec<(u64, u64)>,
}

impl State {
    /// The comparison keys of the maps within `[lo, hi)` (see
    /// [`window_keys`]).
    pub fn keys(&self, lo: u64, hi: u64) -> Vec<MapKey> {
        window_keys(&self.maps, lo, hi)
    }
}

/// The answer to one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The command as the runner read it, printed canonically.
    pub command: String,
    /// How it ended.
    pub outcome: Outcome,
    /// The `expect` suffix it did not meet, if any.
    pub expect_failed: Option<Expect>,
    /// The state after it.
    pub state: State,
}

/// A block that cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockError(pub String);

impl core::fmt::Display for BlockError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "bad runner output: {}", self.0)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for BlockError {}

fn two(rest: &str, line: &str) -> Result<(u64, u64), BlockError> {
    let mut it = rest.split_whitespace().map(parse_u64);
    match (it.next(), it.next(), it.next()) {
        (Some(Some(a)), Some(Some(b)), None) => Ok((a, b)),
        _ => Err(BlockError(line.to_string())),
    }
}

impl Header {
    /// Prints the block (with its final `.` line).
    pub fn write_block(&self, out: &mut String) {
        let _ = writeln!(out, "linux-ref {VERSION}");
        let _ = writeln!(out, "window {:#x} {:#x}", self.window.0, self.window.1);
        let _ = writeln!(out, "brk {:#x} {:#x}", self.brk_start, self.brk_now);
        let _ = writeln!(
            out,
            "brk-span {:#x} {:#x}",
            self.brk_span.0, self.brk_span.1
        );
        for (k, v) in &self.sysctl {
            let _ = writeln!(out, "sysctl {k} {v}");
        }
        out.push_str(".\n");
    }

    /// Reads the block's lines (without the final `.`).
    pub fn parse_block(lines: &[&str]) -> Result<Header, BlockError> {
        let mut h = Header::default();
        let first = lines.first().copied().unwrap_or("");
        if first != alloc::format!("linux-ref {VERSION}") {
            return Err(BlockError(alloc::format!(
                "not a linux-ref {VERSION} header: `{first}`"
            )));
        }
        for &line in &lines[1..] {
            let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
            match tag {
                "window" => h.window = two(rest, line)?,
                "brk" => (h.brk_start, h.brk_now) = two(rest, line)?,
                "brk-span" => h.brk_span = two(rest, line)?,
                "sysctl" => {
                    let (k, v) = rest
                        .split_once(' ')
                        .ok_or_else(|| BlockError(line.to_string()))?;
                    h.sysctl.push((k.to_string(), v.to_string()));
                }
                _ => return Err(BlockError(line.to_string())),
            }
        }
        Ok(h)
    }
}

impl Response {
    /// Prints the block (with its final `.` line).
    pub fn write_block(&self, out: &mut String) {
        let _ = writeln!(out, "> {}", self.command);
        let _ = writeln!(out, "= {}", self.outcome);
        if let Some(e) = self.expect_failed {
            let _ = writeln!(out, "! expected {e}");
        }
        for m in &self.state.maps {
            let _ = writeln!(out, "map {m}");
        }
        for (addr, digest) in &self.state.pages {
            let _ = writeln!(out, "page {addr:#x} {digest:#x}");
        }
        for (lo, hi) in &self.state.bus {
            let _ = writeln!(out, "bus {lo:#x} {hi:#x}");
        }
        out.push_str(".\n");
    }

    /// Reads the block's lines (without the final `.`).
    pub fn parse_block(lines: &[&str]) -> Result<Response, BlockError> {
        let bad = |l: &str| BlockError(l.to_string());
        let command = lines
            .first()
            .and_then(|l| l.strip_prefix("> "))
            .ok_or_else(|| bad(lines.first().copied().unwrap_or("(empty block)")))?
            .to_string();
        let outcome_line = lines.get(1).copied().unwrap_or("");
        let outcome = outcome_line
            .strip_prefix("= ")
            .and_then(|o| o.parse::<Outcome>().ok())
            .ok_or_else(|| bad(outcome_line))?;
        let mut r = Response {
            command,
            outcome,
            expect_failed: None,
            state: State::default(),
        };
        for &line in &lines[2..] {
            let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
            match tag {
                "!" => {
                    let what = rest.strip_prefix("expected ").ok_or_else(|| bad(line))?;
                    let parsed =
                        crate::command::Line::parse(&alloc::format!("brk 0 expect {what}"));
                    r.expect_failed = Some(
                        parsed
                            .ok()
                            .and_then(|l| l.expect)
                            .ok_or_else(|| bad(line))?,
                    );
                }
                "map" => r
                    .state
                    .maps
                    .push(MapsLine::parse(rest).map_err(|_| bad(line))?),
                "page" => r.state.pages.push(two(rest, line)?),
                "bus" => r.state.bus.push(two(rest, line)?),
                "#" => {}
                _ => return Err(bad(line)),
            }
        }
        Ok(r)
    }
}

impl From<ParseError> for BlockError {
    fn from(e: ParseError) -> BlockError {
        BlockError(e.to_string())
    }
}

/// How [`compare`] compares maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapsMatch {
    /// Line for line: the same mappings split at the same places.
    Exact,
    /// After [`coalesce`](crate::maps::coalesce): the same memory with the
    /// same rights, sharing, backing and offsets, wherever the splits are.
    Coalesced,
}

/// Where two sides' responses to the same step differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// What differs: `"outcome"`, `"maps"`, `"pages"` or `"bus"`.
    pub what: &'static str,
    /// Linux's side, printed.
    pub linux: String,
    /// The other side, printed.
    pub other: String,
}

impl core::fmt::Display for Divergence {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} differs:\n  linux: {}\n  other: {}",
            self.what, self.linux, self.other
        )
    }
}

fn inside(ranges: &[(u64, u64)], addr: u64) -> bool {
    ranges.iter().any(|&(lo, hi)| lo <= addr && addr < hi)
}

/// Compares one step's responses from Linux and from another implementation
/// over the watched `ranges` (the window and the brk span): the outcome
/// (an address outside every range counts only as "outside": placement there
/// is each side's own policy), the maps keys of each range, the digests of
/// the pages in the ranges, and the ranges past their objects' ends.
pub fn compare(
    linux: &Response,
    other: &Response,
    ranges: &[(u64, u64)],
    maps: MapsMatch,
) -> Result<(), Divergence> {
    let norm = |o: Outcome| match o {
        Outcome::Addr(a) if !inside(ranges, a) => Outcome::Addr(u64::MAX),
        o => o,
    };
    if norm(linux.outcome) != norm(other.outcome) {
        return Err(Divergence {
            what: "outcome",
            linux: linux.outcome.to_string(),
            other: other.outcome.to_string(),
        });
    }
    for &(lo, hi) in ranges {
        let (mut a, mut b) = (linux.state.keys(lo, hi), other.state.keys(lo, hi));
        if maps == MapsMatch::Coalesced {
            a = crate::maps::coalesce(&a);
            b = crate::maps::coalesce(&b);
        }
        if a != b {
            let show = |keys: &[MapKey]| {
                keys.iter()
                    .map(|k| alloc::format!("\n    {k}"))
                    .collect::<String>()
            };
            return Err(Divergence {
                what: "maps",
                linux: show(&a),
                other: show(&b),
            });
        }
    }
    let pages = |s: &State| {
        s.pages
            .iter()
            .filter(|p| inside(ranges, p.0))
            .copied()
            .collect::<Vec<_>>()
    };
    let (pa, pb) = (pages(&linux.state), pages(&other.state));
    if pa != pb {
        let first = pa
            .iter()
            .zip(&pb)
            .position(|(x, y)| x != y)
            .unwrap_or(pa.len().min(pb.len()));
        return Err(Divergence {
            what: "pages",
            linux: alloc::format!("{:x?}", pa.get(first)),
            other: alloc::format!("{:x?}", pb.get(first)),
        });
    }
    let bus = |s: &State| {
        s.bus
            .iter()
            .filter(|r| inside(ranges, r.0))
            .copied()
            .collect::<Vec<_>>()
    };
    if bus(&linux.state) != bus(&other.state) {
        return Err(Divergence {
            what: "bus",
            linux: alloc::format!("{:x?}", bus(&linux.state)),
            other: alloc::format!("{:x?}", bus(&other.state)),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errno::Errno;

    #[test]
    fn blocks_round_trip() {
        let h = Header {
            window: (0x1000, 0x9000),
            brk_start: 0x5000,
            brk_now: 0x5000,
            brk_span: (0x4000, 0x6000),
            sysctl: alloc::vec![("vm.overcommit_memory".into(), "0".into())],
        };
        let mut out = String::new();
        h.write_block(&mut out);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.last(), Some(&"."));
        assert_eq!(Header::parse_block(&lines[..lines.len() - 1]), Ok(h));

        let r = Response {
            command: "munmap 0x1000 1p".into(),
            outcome: Outcome::Err(Errno::EINVAL),
            expect_failed: Some(Expect::Ok),
            state: State {
                maps: alloc::vec![
                    MapsLine::parse("00002000-00003000 rw-p 00000000 00:00 0 ").unwrap()
                ],
                pages: alloc::vec![(0x2000, 0xdead)],
                bus: alloc::vec![(0x3000, 0x4000)],
            },
        };
        let mut out = String::new();
        r.write_block(&mut out);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(Response::parse_block(&lines[..lines.len() - 1]), Ok(r));
        assert!(Response::parse_block(&["> x", "= what"]).is_err());
    }

    #[test]
    fn compare_finds_each_kind_of_divergence() {
        let line = |t: &str| MapsLine::parse(t).unwrap();
        let base = Response {
            command: "mmap 0x0 2p rw- private anon".into(),
            outcome: Outcome::Addr(0x8000),
            expect_failed: None,
            state: State {
                maps: alloc::vec![
                    line("00007000-00008000 rw-p 00000000 00:00 0 "),
                    line("00008000-00009000 rw-p 00000000 00:00 0 "),
                ],
                pages: alloc::vec![(0x8000, 1)],
                bus: alloc::vec![],
            },
        };
        let ranges = [(0x1000, 0x9000)];
        assert_eq!(compare(&base, &base, &ranges, MapsMatch::Exact), Ok(()));
        let mut merged = base.clone();
        merged.state.maps = alloc::vec![line("00007000-00009000 rw-p 00000000 00:00 0 ")];
        assert_eq!(
            compare(&base, &merged, &ranges, MapsMatch::Exact)
                .unwrap_err()
                .what,
            "maps"
        );
        assert_eq!(
            compare(&base, &merged, &ranges, MapsMatch::Coalesced),
            Ok(())
        );
        let mut other = base.clone();
        other.outcome = Outcome::Addr(0x7000);
        assert_eq!(
            compare(&base, &other, &ranges, MapsMatch::Exact)
                .unwrap_err()
                .what,
            "outcome"
        );
        // Both outside the ranges: each side's own placement.
        let (mut x, mut y) = (base.clone(), base.clone());
        x.outcome = Outcome::Addr(0x10_0000);
        y.outcome = Outcome::Addr(0x20_0000);
        assert_eq!(compare(&x, &y, &ranges, MapsMatch::Exact), Ok(()));
        let mut other = base.clone();
        other.state.pages[0].1 = 2;
        assert_eq!(
            compare(&base, &other, &ranges, MapsMatch::Exact)
                .unwrap_err()
                .what,
            "pages"
        );
        let mut other = base.clone();
        other.state.bus.push((0x8000, 0x9000));
        assert_eq!(
            compare(&base, &other, &ranges, MapsMatch::Exact)
                .unwrap_err()
                .what,
            "bus"
        );
    }
}
