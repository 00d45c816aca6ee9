//! The typed memory calls and their text form:
//!
//! ```text
//! mmap ADDR LEN PROT private|shared anon [fixed|noreplace] [populate] [noreserve] [growsdown]
//! mmap ADDR LEN PROT private|shared file F OFFSET [fixed|noreplace] [...]
//! mmap ... anon offset OFFSET ...     (an anonymous call's offset, if not 0)
//! munmap ADDR LEN
//! mprotect ADDR LEN PROT
//! mremap OLD OLDLEN NEWLEN [maymove] [fixed NEW] [dontunmap]
//! brk ADDR
//! madvise ADDR LEN ADVICE                    (dontneed, free, random, ...)
//! msync ADDR LEN [async] [invalidate] [sync]
//! mlock ADDR LEN [onfault]                   (mlock2; no flag: mlock)
//! munlock ADDR LEN
//! mlockall [current] [future] [onfault]
//! munlockall
//! mincore ADDR LEN                           (which pages are resident)
//! ```
//!
//! Flag words also take `bits=0xN` for bits without a word.
//!
//! Addresses are `0x...` or decimal, lengths also `16p`, `64K`, `1M`, rights
//! `rw`, `r-x`, `none`. Flag words may come in any order; printing uses one
//! canonical order, so `parse(print(c)) == c` for every call.

use crate::command::ParseError;
use crate::consts::{MAP_ANONYMOUS, MREMAP_DONTUNMAP, MREMAP_FIXED, MREMAP_MAYMOVE};
use crate::flags::{Advice, FlagWords, LockAllFlags, LockFlags, MapFlags, RemapFlags, SyncFlags};
use crate::num::{parse_len, parse_u64, Addr, Len};
use crate::prot::Prot;
use alloc::string::{String, ToString};
use core::fmt;

/// An in-memory file named in the call text (`file F 0`). Every mapping of
/// the same name maps the same object (on Linux: one memfd per name).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileRef(pub String);

/// One Linux memory call, with its arguments as the system call takes them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    /// `mmap(addr, len, prot, flags, fd, offset)`; `file: None` is `fd = -1`.
    Mmap {
        /// The hint, or the place with `MAP_FIXED`/`MAP_FIXED_NOREPLACE`.
        addr: u64,
        /// Bytes (rounded up to pages by the kernel).
        len: u64,
        /// Access rights.
        prot: Prot,
        /// `MAP_*` bits.
        flags: MapFlags,
        /// The mapped file, if any.
        file: Option<FileRef>,
        /// Offset into the file (bytes, page-aligned to be valid).
        offset: u64,
    },
    /// `munmap(addr, len)`.
    Munmap {
        /// Start (page-aligned to be valid).
        addr: u64,
        /// Bytes.
        len: u64,
    },
    /// `mprotect(addr, len, prot)`.
    Mprotect {
        /// Start (page-aligned to be valid).
        addr: u64,
        /// Bytes.
        len: u64,
        /// The new rights.
        prot: Prot,
    },
    /// `mremap(old_addr, old_len, new_len, flags, new_addr)`.
    Mremap {
        /// The mapping's start.
        old_addr: u64,
        /// Its length (0 with a shared mapping: duplicate it).
        old_len: u64,
        /// The new length.
        new_len: u64,
        /// `MREMAP_*` bits.
        flags: RemapFlags,
        /// The target with `MREMAP_FIXED`; 0 otherwise.
        new_addr: u64,
    },
    /// `brk(addr)`: returns the (new or unchanged) program break.
    Brk {
        /// The requested break (0 asks for the current one).
        addr: u64,
    },
    /// `madvise(addr, len, advice)`.
    Madvise {
        /// Start (page-aligned to be valid).
        addr: u64,
        /// Bytes.
        len: u64,
        /// The advice.
        advice: Advice,
    },
    /// `msync(addr, len, flags)`.
    Msync {
        /// Start (page-aligned to be valid).
        addr: u64,
        /// Bytes.
        len: u64,
        /// `MS_*` bits.
        flags: SyncFlags,
    },
    /// `mlock2(addr, len, flags)` (`mlock` with no flag).
    Mlock {
        /// Start (rounded down to its page).
        addr: u64,
        /// Bytes (from `addr`, rounded up to pages).
        len: u64,
        /// `MLOCK_*` bits.
        flags: LockFlags,
    },
    /// `munlock(addr, len)`.
    Munlock {
        /// Start (rounded down to its page).
        addr: u64,
        /// Bytes (from `addr`, rounded up to pages).
        len: u64,
    },
    /// `mlockall(flags)`.
    Mlockall {
        /// `MCL_*` bits.
        flags: LockAllFlags,
    },
    /// `munlockall()`.
    Munlockall,
    /// `mincore(addr, len, vec)`: which pages of the range are resident
    /// (the vector is the caller's: see `LinuxMm::mincore`).
    Mincore {
        /// Start (page-aligned to be valid).
        addr: u64,
        /// Bytes (rounded up to pages).
        len: u64,
    },
    /// `mseal(addr, len, flags)` (Linux 6.10+).
    Mseal {
        /// Start (page-aligned to be valid).
        addr: u64,
        /// Bytes (rounded up to pages).
        len: u64,
        /// Must be 0 (`EINVAL` otherwise).
        flags: u64,
    },
}

impl Call {
    /// The call's name as in the text (`"mmap"`).
    pub fn name(&self) -> &'static str {
        match self {
            Call::Mmap { .. } => "mmap",
            Call::Munmap { .. } => "munmap",
            Call::Mprotect { .. } => "mprotect",
            Call::Mremap { .. } => "mremap",
            Call::Brk { .. } => "brk",
            Call::Madvise { .. } => "madvise",
            Call::Msync { .. } => "msync",
            Call::Mlock { .. } => "mlock",
            Call::Munlock { .. } => "munlock",
            Call::Mlockall { .. } => "mlockall",
            Call::Munlockall => "munlockall",
            Call::Mincore { .. } => "mincore",
            Call::Mseal { .. } => "mseal",
        }
    }

    /// Whether a successful call returns an address (`mmap`, `mremap`,
    /// `brk`) rather than 0.
    pub fn returns_addr(&self) -> bool {
        matches!(
            self,
            Call::Mmap { .. } | Call::Mremap { .. } | Call::Brk { .. }
        )
    }

    /// Parses the words of one call (`["mmap", "0x1000", ...]`).
    pub fn parse_words(words: &[&str]) -> Result<Call, ParseError> {
        let (&name, args) = words.split_first().ok_or(ParseError::Empty)?;
        let mut it = Words {
            words: args,
            pos: 0,
        };
        let call = match name {
            "mmap" => {
                let addr = it.addr("ADDR")?;
                let len = it.len("LEN")?;
                let prot = it.prot()?;
                let mut flags = 0;
                let mut file = None;
                let mut offset = 0;
                while let Some(word) = it.next() {
                    if word == "file" {
                        file = Some(FileRef(it.need("file name")?.to_string()));
                        offset = it.len("OFFSET")?;
                    } else if word == "offset" {
                        offset = it.len("OFFSET")?;
                    } else if let Some(bits) = word.strip_prefix("bits=") {
                        let bits = parse_u64(bits).and_then(|b| u32::try_from(b).ok());
                        flags |= bits.ok_or_else(|| ParseError::Bad("bits", word.to_string()))?;
                    } else {
                        flags |= MapFlags::word_bit(word)
                            .ok_or_else(|| ParseError::Bad("mmap flag", word.to_string()))?;
                    }
                }
                Call::Mmap {
                    addr,
                    len,
                    prot,
                    flags: MapFlags(flags),
                    file,
                    offset,
                }
            }
            "munmap" => Call::Munmap {
                addr: it.addr("ADDR")?,
                len: it.len("LEN")?,
            },
            "mprotect" => Call::Mprotect {
                addr: it.addr("ADDR")?,
                len: it.len("LEN")?,
                prot: it.prot()?,
            },
            "mremap" => {
                let old_addr = it.addr("OLD")?;
                let old_len = it.len("OLDLEN")?;
                let new_len = it.len("NEWLEN")?;
                let mut flags = 0;
                let mut new_addr = 0;
                while let Some(word) = it.next() {
                    match word {
                        "maymove" => flags |= MREMAP_MAYMOVE,
                        "dontunmap" => flags |= MREMAP_DONTUNMAP,
                        "fixed" => {
                            flags |= MREMAP_FIXED;
                            new_addr = it.addr("NEW")?;
                        }
                        _ => return Err(ParseError::Bad("mremap flag", word.to_string())),
                    }
                }
                Call::Mremap {
                    old_addr,
                    old_len,
                    new_len,
                    flags: RemapFlags(flags),
                    new_addr,
                }
            }
            "brk" => Call::Brk {
                addr: it.addr("ADDR")?,
            },
            "madvise" => {
                let addr = it.addr("ADDR")?;
                let len = it.len("LEN")?;
                let word = it.need("advice")?;
                let advice = Advice::parse(word)
                    .ok_or_else(|| ParseError::Bad("advice", word.to_string()))?;
                Call::Madvise { addr, len, advice }
            }
            "msync" => Call::Msync {
                addr: it.addr("ADDR")?,
                len: it.len("LEN")?,
                flags: it.flag_words("msync flag")?,
            },
            "mlock" => Call::Mlock {
                addr: it.addr("ADDR")?,
                len: it.len("LEN")?,
                flags: it.flag_words("mlock flag")?,
            },
            "munlock" => Call::Munlock {
                addr: it.addr("ADDR")?,
                len: it.len("LEN")?,
            },
            "mlockall" => Call::Mlockall {
                flags: it.flag_words("mlockall flag")?,
            },
            "munlockall" => Call::Munlockall,
            "mincore" => Call::Mincore {
                addr: it.addr("ADDR")?,
                len: it.len("LEN")?,
            },
            "mseal" => Call::Mseal {
                addr: it.addr("ADDR")?,
                len: it.len("LEN")?,
                flags: match it.next() {
                    Some(w) => {
                        parse_u64(w).ok_or_else(|| ParseError::Bad("FLAGS", w.to_string()))?
                    }
                    None => 0,
                },
            },
            _ => return Err(ParseError::Unknown(name.to_string())),
        };
        match it.next() {
            Some(extra) => Err(ParseError::Extra(extra.to_string())),
            None => Ok(call),
        }
    }
}

/// A cursor over the words of a line.
pub(crate) struct Words<'a, 'b> {
    pub(crate) words: &'a [&'b str],
    pub(crate) pos: usize,
}

impl<'b> Words<'_, 'b> {
    pub(crate) fn next(&mut self) -> Option<&'b str> {
        let w = self.words.get(self.pos).copied();
        self.pos += 1;
        w
    }
    pub(crate) fn need(&mut self, what: &'static str) -> Result<&'b str, ParseError> {
        self.next().ok_or(ParseError::Missing(what))
    }
    pub(crate) fn addr(&mut self, what: &'static str) -> Result<u64, ParseError> {
        let w = self.need(what)?;
        parse_u64(w).ok_or_else(|| ParseError::Bad(what, w.to_string()))
    }
    fn len(&mut self, what: &'static str) -> Result<u64, ParseError> {
        let w = self.need(what)?;
        parse_len(w).ok_or_else(|| ParseError::Bad(what, w.to_string()))
    }
    /// The rest of the words as flag words of `F`, or-ed.
    fn flag_words<F: FlagWords>(&mut self, what: &'static str) -> Result<F, ParseError> {
        let mut bits = 0;
        while let Some(word) = self.next() {
            bits |= F::word_bits(word).ok_or_else(|| ParseError::Bad(what, word.to_string()))?;
        }
        Ok(F::of(bits))
    }
    fn prot(&mut self) -> Result<Prot, ParseError> {
        let w = self.need("PROT")?;
        Prot::parse(w).ok_or_else(|| ParseError::Bad("PROT", w.to_string()))
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::Mmap {
                addr,
                len,
                prot,
                flags,
                file,
                offset,
            } => {
                write!(f, "mmap {} {} {}", Addr(*addr), Len(*len), prot)?;
                let mut words = *flags;
                // The sharing type first, then the backing, then the rest.
                for (word, bit) in [
                    ("private", crate::consts::MAP_PRIVATE),
                    ("shared", crate::consts::MAP_SHARED),
                ] {
                    if words.has(bit) {
                        write!(f, " {word}")?;
                        words.0 &= !bit;
                    }
                }
                if flags.anonymous() {
                    write!(f, " anon")?;
                }
                match file {
                    Some(FileRef(name)) => write!(f, " file {name} {}", Len(*offset))?,
                    None if *offset != 0 => write!(f, " offset {}", Len(*offset))?,
                    None => {}
                }
                MapFlags(words.0 & !MAP_ANONYMOUS).fmt_words(f)
            }
            Call::Munmap { addr, len } => write!(f, "munmap {} {}", Addr(*addr), Len(*len)),
            Call::Mprotect { addr, len, prot } => {
                write!(f, "mprotect {} {} {}", Addr(*addr), Len(*len), prot)
            }
            Call::Mremap {
                old_addr,
                old_len,
                new_len,
                flags,
                new_addr,
            } => {
                write!(
                    f,
                    "mremap {} {} {}",
                    Addr(*old_addr),
                    Len(*old_len),
                    Len(*new_len)
                )?;
                if flags.may_move() {
                    write!(f, " maymove")?;
                }
                if flags.fixed() {
                    write!(f, " fixed {}", Addr(*new_addr))?;
                }
                if flags.dont_unmap() {
                    write!(f, " dontunmap")?;
                }
                Ok(())
            }
            Call::Brk { addr } => write!(f, "brk {}", Addr(*addr)),
            Call::Madvise { addr, len, advice } => {
                write!(f, "madvise {} {} {}", Addr(*addr), Len(*len), advice)
            }
            Call::Msync { addr, len, flags } => {
                write!(f, "msync {} {}", Addr(*addr), Len(*len))?;
                flags.fmt_words(f)
            }
            Call::Mlock { addr, len, flags } => {
                write!(f, "mlock {} {}", Addr(*addr), Len(*len))?;
                flags.fmt_words(f)
            }
            Call::Munlock { addr, len } => write!(f, "munlock {} {}", Addr(*addr), Len(*len)),
            Call::Mlockall { flags } => {
                write!(f, "mlockall")?;
                flags.fmt_words(f)
            }
            Call::Munlockall => write!(f, "munlockall"),
            Call::Mincore { addr, len } => write!(f, "mincore {} {}", Addr(*addr), Len(*len)),
            Call::Mseal { addr, len, flags } => {
                write!(f, "mseal {} {}", Addr(*addr), Len(*len))?;
                if *flags != 0 {
                    write!(f, " {flags:#x}")?;
                }
                Ok(())
            }
        }
    }
}
