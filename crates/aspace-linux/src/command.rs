//! One line of the protocol: a [`Command`] (a [`Call`] or a memory access)
//! with an optional `expect` suffix, and the [`Outcome`] it has.
//!
//! ```text
//! mmap 0x7f0000000000 4p rw- private anon noreplace expect EEXIST
//! write 0x7f0000000000 0x2a            # store one byte
//! read 0x7f0000000000 expect 0x2a      # load one byte
//! ```

use crate::call::{Call, Words};
use crate::errno::Errno;
use crate::num::{parse_u64, Addr};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;

/// What goes wrong reading a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Nothing but blanks or a comment.
    Empty,
    /// The first word is no command.
    Unknown(String),
    /// An argument is missing (its name).
    Missing(&'static str),
    /// An argument cannot be read (its name, the word).
    Bad(&'static str, String),
    /// Words left over after the command.
    Extra(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Empty => write!(f, "empty line"),
            ParseError::Unknown(w) => write!(f, "unknown command `{w}`"),
            ParseError::Missing(what) => write!(f, "missing {what}"),
            ParseError::Bad(what, w) => write!(f, "bad {what}: `{w}`"),
            ParseError::Extra(w) => write!(f, "unexpected `{w}`"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ParseError {}

/// A step of a sequence: a memory call, or one access that makes page
/// contents diverge (`write`) or checks them (`read`). An access is done only
/// where the maps allow it; elsewhere its outcome is [`Outcome::Fault`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// A memory call.
    Call(Call),
    /// `write ADDR BYTE`: store one byte.
    Write {
        /// Where.
        addr: u64,
        /// What.
        byte: u8,
    },
    /// `read ADDR`: load one byte.
    Read {
        /// Where.
        addr: u64,
    },
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Call(call) => call.fmt(f),
            Command::Write { addr, byte } => write!(f, "write {} {byte:#04x}", Addr(*addr)),
            Command::Read { addr } => write!(f, "read {}", Addr(*addr)),
        }
    }
}

/// How a command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Success without a value (`munmap`, `mprotect`, `madvise`, `write`).
    Ok,
    /// Success with an address (`mmap`, `mremap`, `brk`).
    Addr(u64),
    /// The byte a `read` loaded.
    Byte(u8),
    /// The call failed with this errno.
    Err(Errno),
    /// The access is not allowed by the maps (nothing was done).
    Fault,
    /// The runner would not run it: it reaches outside the window it may
    /// touch (nothing was done).
    Refused,
    /// What `mincore` answered.
    Resident(Residency),
}

/// A `mincore` vector in brief: its pages, how many are resident, and a
/// hash of which (equal vectors, equal hashes; the aspace tool prints the
/// vector itself).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Residency {
    /// Pages answered.
    pub pages: u64,
    /// Of them resident.
    pub resident: u64,
    /// FNV-1a over the answers, in order.
    pub hash: u64,
}

impl Residency {
    /// No page answered yet.
    pub fn new() -> Self {
        Residency {
            pages: 0,
            resident: 0,
            hash: 0xcbf2_9ce4_8422_2325,
        }
    }

    /// Adds the next page's answer.
    pub fn push(&mut self, resident: bool) {
        self.pages += 1;
        self.resident += u64::from(resident);
        self.hash = (self.hash ^ u64::from(resident)).wrapping_mul(0x100_0000_01b3);
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok => write!(f, "ok"),
            Outcome::Addr(a) => write!(f, "addr {}", Addr(*a)),
            Outcome::Byte(b) => write!(f, "byte {b:#04x}"),
            Outcome::Err(e) => write!(f, "err {e}"),
            Outcome::Fault => write!(f, "fault"),
            Outcome::Refused => write!(f, "refused"),
            Outcome::Resident(r) => {
                write!(f, "resident {}/{} {:#x}", r.resident, r.pages, r.hash)
            }
        }
    }
}

impl FromStr for Outcome {
    type Err = ParseError;
    fn from_str(text: &str) -> Result<Outcome, ParseError> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let bad = || ParseError::Bad("outcome", text.to_string());
        match words.as_slice() {
            ["ok"] => Ok(Outcome::Ok),
            ["fault"] => Ok(Outcome::Fault),
            ["refused"] => Ok(Outcome::Refused),
            ["addr", a] => parse_u64(a).map(Outcome::Addr).ok_or_else(bad),
            ["byte", b] => parse_u64(b)
                .and_then(|b| u8::try_from(b).ok())
                .map(Outcome::Byte)
                .ok_or_else(bad),
            ["err", e] => Errno::parse(e).map(Outcome::Err).ok_or_else(bad),
            ["resident", counts, hash] => {
                let (r, p) = counts.split_once('/').ok_or_else(bad)?;
                Ok(Outcome::Resident(Residency {
                    pages: parse_u64(p).ok_or_else(bad)?,
                    resident: parse_u64(r).ok_or_else(bad)?,
                    hash: parse_u64(hash).ok_or_else(bad)?,
                }))
            }
            _ => Err(bad()),
        }
    }
}

/// The `expect` suffix of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Expect {
    /// `expect ok`: any success.
    Ok,
    /// `expect EEXIST`: failure with this errno.
    Err(Errno),
    /// `expect fault`: the access is not allowed.
    Fault,
    /// `expect 0x2a`: success returning this address or byte.
    Value(u64),
}

impl Expect {
    /// Whether `outcome` is what this expects.
    pub fn matches(self, outcome: Outcome) -> bool {
        match (self, outcome) {
            (
                Expect::Ok,
                Outcome::Ok | Outcome::Addr(_) | Outcome::Byte(_) | Outcome::Resident(_),
            ) => true,
            (Expect::Err(e), Outcome::Err(got)) => e == got,
            (Expect::Fault, Outcome::Fault) => true,
            (Expect::Value(v), Outcome::Addr(a)) => v == a,
            (Expect::Value(v), Outcome::Byte(b)) => v == u64::from(b),
            _ => false,
        }
    }

    fn parse(word: &str) -> Option<Expect> {
        match word {
            "ok" => Some(Expect::Ok),
            "fault" => Some(Expect::Fault),
            _ => Errno::parse(word)
                .map(Expect::Err)
                .or_else(|| parse_u64(word).map(Expect::Value)),
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Ok => write!(f, "ok"),
            Expect::Err(e) => write!(f, "{e}"),
            Expect::Fault => write!(f, "fault"),
            Expect::Value(v) => write!(f, "{}", Addr(*v)),
        }
    }
}

/// A command and what it should give: one line of a sequence.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Line {
    /// What to do.
    pub command: Command,
    /// What it must give, if anything.
    pub expect: Option<Expect>,
    /// `refuse-holes` (on `mprotect`, `madvise`, `mlock` and `munlock`
    /// only): run the call with
    /// [`HolePolicy::Refuse`](crate::mm::HolePolicy) (all-or-nothing) on
    /// aspace. Linux has no such mode: the reference runner ignores it.
    pub refuse_holes: bool,
}

impl From<Call> for Line {
    fn from(call: Call) -> Line {
        Line {
            command: Command::Call(call),
            expect: None,
            refuse_holes: false,
        }
    }
}

impl From<Command> for Line {
    fn from(command: Command) -> Line {
        Line {
            command,
            expect: None,
            refuse_holes: false,
        }
    }
}

impl Line {
    /// Parses one line; `#` starts a comment. A blank or comment-only line
    /// is [`ParseError::Empty`].
    pub fn parse(text: &str) -> Result<Line, ParseError> {
        let text = text.split('#').next().unwrap_or("");
        let mut words: Vec<&str> = text.split_whitespace().collect();
        if words.is_empty() {
            return Err(ParseError::Empty);
        }
        let mut expect = None;
        if let Some(at) = words.iter().position(|&w| w == "expect") {
            let what = words
                .get(at + 1)
                .ok_or(ParseError::Missing("expected outcome"))?;
            expect = Some(
                Expect::parse(what)
                    .ok_or_else(|| ParseError::Bad("expected outcome", what.to_string()))?,
            );
            if let Some(extra) = words.get(at + 2) {
                return Err(ParseError::Extra(extra.to_string()));
            }
            words.truncate(at);
        }
        let refuse_holes = words.last() == Some(&"refuse-holes");
        if refuse_holes {
            words.pop();
            if !matches!(
                words.first(),
                Some(&"mprotect" | &"madvise" | &"mlock" | &"munlock")
            ) {
                return Err(ParseError::Bad(
                    "refuse-holes (mprotect, madvise, mlock, munlock only)",
                    words.first().unwrap_or(&"").to_string(),
                ));
            }
        }
        let command = match words[0] {
            "write" | "read" => {
                let mut it = Words {
                    words: &words[1..],
                    pos: 0,
                };
                let addr = it.addr("ADDR")?;
                let command = if words[0] == "write" {
                    let w = it.need("BYTE")?;
                    let byte = parse_u64(w)
                        .and_then(|b| u8::try_from(b).ok())
                        .ok_or_else(|| ParseError::Bad("BYTE", w.to_string()))?;
                    Command::Write { addr, byte }
                } else {
                    Command::Read { addr }
                };
                if let Some(extra) = it.next() {
                    return Err(ParseError::Extra(extra.to_string()));
                }
                command
            }
            _ => Command::Call(Call::parse_words(&words)?),
        };
        Ok(Line {
            command,
            expect,
            refuse_holes,
        })
    }
}

impl FromStr for Line {
    type Err = ParseError;
    fn from_str(text: &str) -> Result<Line, ParseError> {
        Line::parse(text)
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.command.fmt(f)?;
        if self.refuse_holes {
            write!(f, " refuse-holes")?;
        }
        if let Some(e) = self.expect {
            write!(f, " expect {e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::FileRef;
    use crate::consts::*;
    use crate::flags::{Advice, MapFlags, RemapFlags};
    use crate::prot::Prot;

    fn round_trip(text: &str) -> Line {
        let line = Line::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let printed = line.to_string();
        assert_eq!(
            Line::parse(&printed).as_ref(),
            Ok(&line),
            "{text} -> {printed}"
        );
        line
    }

    #[test]
    fn refuse_holes_is_for_mprotect_and_madvise() {
        let l = round_trip("mprotect 0x10000 4p r-- refuse-holes expect ENOMEM");
        assert!(l.refuse_holes);
        assert_eq!(l.expect, Some(Expect::Err(Errno::ENOMEM)));
        assert_eq!(
            l.to_string(),
            "mprotect 0x10000 4p r-- refuse-holes expect ENOMEM"
        );
        assert!(round_trip("madvise 0x10000 4p dontneed refuse-holes").refuse_holes);
        assert!(!round_trip("mprotect 0x10000 4p r").refuse_holes);
        assert!(Line::parse("munmap 0x10000 4p refuse-holes").is_err());
        assert!(Line::parse("refuse-holes").is_err());
    }

    #[test]
    fn msync_and_the_lock_calls_round_trip() {
        use crate::flags::{LockAllFlags, LockFlags, SyncFlags};
        let l = round_trip("msync 0x10000 4p sync invalidate");
        assert_eq!(
            l.command,
            Command::Call(Call::Msync {
                addr: 0x10000,
                len: 4 * PAGE_SIZE,
                flags: SyncFlags(MS_SYNC | MS_INVALIDATE),
            })
        );
        assert_eq!(l.to_string(), "msync 0x10000 4p invalidate sync");
        let l = round_trip("mlock 0x10001 2p onfault bits=0x8 refuse-holes");
        assert!(l.refuse_holes);
        assert_eq!(
            l.command,
            Command::Call(Call::Mlock {
                addr: 0x10001,
                len: 2 * PAGE_SIZE,
                flags: LockFlags(MLOCK_ONFAULT | 8),
            })
        );
        assert_eq!(
            round_trip("mlockall future current").command,
            Command::Call(Call::Mlockall {
                flags: LockAllFlags(MCL_CURRENT | MCL_FUTURE)
            })
        );
        round_trip("munlock 0x10000 1p");
        round_trip("munlockall expect ok");
        round_trip("madvise 0x10000 1p populate_write expect EINVAL");
        assert!(Line::parse("mlockall sometimes").is_err());
        assert!(Line::parse("msync 0x10000 1p refuse-holes").is_err());
    }

    #[test]
    fn the_issue_syntax() {
        let l = round_trip("mmap 0x10000 4p rw private anon noreplace populate expect EEXIST");
        assert_eq!(
            l.command,
            Command::Call(Call::Mmap {
                addr: 0x10000,
                len: 4 * PAGE_SIZE,
                prot: Prot::RW,
                flags: MapFlags(MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE | MAP_POPULATE),
                file: None,
                offset: 0,
            })
        );
        assert_eq!(l.expect, Some(Expect::Err(Errno::EEXIST)));
        assert_eq!(
            l.to_string(),
            "mmap 0x10000 4p rw- private anon noreplace populate expect EEXIST"
        );
        let l = round_trip("mmap 0x20000 8K r shared file F 0x1000 fixed");
        assert!(
            matches!(&l.command, Command::Call(Call::Mmap { file: Some(FileRef(n)), offset: 4096, .. }) if n == "F")
        );
        round_trip("mmap 0 1 rwx private anon noreserve growsdown bits=0x40000");
        round_trip("munmap 0x1000 1p expect ok");
        round_trip("mprotect 0x1000 3p r-x expect ENOMEM");
        let l = round_trip("mremap 0x1000 1p 4p maymove fixed 0x9000");
        assert_eq!(
            l.command,
            Command::Call(Call::Mremap {
                old_addr: 0x1000,
                old_len: 4096,
                new_len: 4 * 4096,
                flags: RemapFlags(MREMAP_MAYMOVE | MREMAP_FIXED),
                new_addr: 0x9000
            })
        );
        round_trip("brk 0x555555560000 expect 0x555555560000");
        let l = round_trip("madvise 0x1000 2p dontneed");
        assert!(matches!(
            l.command,
            Command::Call(Call::Madvise {
                advice: Advice::DONTNEED,
                ..
            })
        ));
        round_trip("madvise 0x1000 2p free # comment");
        round_trip("write 0x1000 0x2a");
        round_trip("read 0x1000 expect fault");
    }

    #[test]
    fn bad_lines_say_why() {
        assert_eq!(Line::parse("  # only"), Err(ParseError::Empty));
        assert!(matches!(
            Line::parse("mmap 0x1000"),
            Err(ParseError::Missing("LEN"))
        ));
        assert!(matches!(
            Line::parse("mmap 0x1000 1p rw private wat"),
            Err(ParseError::Bad("mmap flag", _))
        ));
        assert!(matches!(
            Line::parse("munmap 0x1000 1p 3"),
            Err(ParseError::Extra(_))
        ));
        assert!(matches!(Line::parse("frob 1"), Err(ParseError::Unknown(_))));
        assert!(matches!(
            Line::parse("write 0x1000 256"),
            Err(ParseError::Bad("BYTE", _))
        ));
        assert!(matches!(
            Line::parse("munmap 0 1p expect"),
            Err(ParseError::Missing(_))
        ));
    }

    #[test]
    fn expectations_and_outcomes() {
        assert!(Expect::Ok.matches(Outcome::Addr(5)));
        assert!(!Expect::Ok.matches(Outcome::Err(Errno::EINVAL)));
        assert!(Expect::Err(Errno::ENOMEM).matches(Outcome::Err(Errno::ENOMEM)));
        assert!(Expect::Value(0x2a).matches(Outcome::Byte(0x2a)));
        assert!(!Expect::Fault.matches(Outcome::Refused));
        for o in [
            Outcome::Ok,
            Outcome::Addr(0x7000),
            Outcome::Byte(7),
            Outcome::Err(Errno::EEXIST),
            Outcome::Fault,
            Outcome::Refused,
        ] {
            assert_eq!(o.to_string().parse::<Outcome>(), Ok(o));
        }
    }
}
