//! `/proc/PID/maps` lines exactly as Linux prints them, read back, and the
//! comparison key of a window.
//!
//! Linux (`fs/proc/task_mmu.c`, `show_vma_header_prefix` and `show_map_vma`)
//! prints: start and end in lower-case hex of at least 8 digits joined by
//! `-`, a space, `r`/`w`/`x` or `-` and `s` (may share) or `p`, a space, the
//! file offset in hex of at least 8 digits (0 without a file), a space, the
//! device major and minor in hex of at least 2 digits joined by `:`, a space,
//! the inode in decimal, and a space. A line with a name (file path,
//! `[heap]`, `[stack]`, ...) is then padded with spaces to column 72
//! (`25 + 6 * sizeof(void *) - 1`) and gets one more space and the name, so
//! names start at column 73 unless the prefix is longer; a line without one
//! ends with that space.

use crate::prot::Prot;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

/// The column up to which Linux pads before a name, on 64-bit.
pub const NAME_PAD: usize = 25 + 6 * 8 - 1;

/// One line of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MapsLine {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Read, write and execute rights.
    pub prot: Prot,
    /// `s` (`VM_MAYSHARE`) rather than `p`.
    pub shared: bool,
    /// Offset into the file, in bytes (0 without a file).
    pub offset: u64,
    /// Device major number.
    pub dev_major: u32,
    /// Device minor number.
    pub dev_minor: u32,
    /// Inode number (0 without a file).
    pub inode: u64,
    /// The name: a path, `[heap]`, `[stack]`, `[anon:...]`; `None` prints none.
    pub path: Option<String>,
}

impl fmt::Display for MapsLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [r, w, x] = self.prot.rwx();
        let prefix = alloc::format!(
            "{:08x}-{:08x} {r}{w}{x}{} {:08x} {:02x}:{:02x} {} ",
            self.start,
            self.end,
            if self.shared { 's' } else { 'p' },
            self.offset,
            self.dev_major,
            self.dev_minor,
            self.inode
        );
        f.write_str(&prefix)?;
        if let Some(path) = &self.path {
            for _ in prefix.len()..NAME_PAD {
                f.write_str(" ")?;
            }
            write!(f, " {path}")?;
        }
        Ok(())
    }
}

/// A maps line that cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapsError(pub String);

impl fmt::Display for MapsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad maps line: `{}`", self.0)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for MapsError {}

fn hex(text: &str) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

impl MapsLine {
    /// Reads one line as Linux prints it (without its newline).
    pub fn parse(line: &str) -> Result<MapsLine, MapsError> {
        let bad = || MapsError(line.to_string());
        let mut rest = line;
        let mut field = || -> Option<&str> {
            let t = rest.trim_start_matches(' ');
            let end = t.find(' ').unwrap_or(t.len());
            let (word, after) = t.split_at(end);
            rest = after;
            Some(word).filter(|w| !w.is_empty())
        };
        let range = field().ok_or_else(bad)?;
        let perms = field().ok_or_else(bad)?;
        let offset = field().and_then(hex).ok_or_else(bad)?;
        let dev = field().ok_or_else(bad)?;
        let inode = field().and_then(|w| w.parse().ok()).ok_or_else(bad)?;
        let (start, end) = range.split_once('-').ok_or_else(bad)?;
        let (major, minor) = dev.split_once(':').ok_or_else(bad)?;
        let p = perms.as_bytes();
        if p.len() != 4 {
            return Err(bad());
        }
        let mut prot = 0;
        for (c, want, bit) in [(p[0], b'r', 1), (p[1], b'w', 2), (p[2], b'x', 4)] {
            match c {
                c if c == want => prot |= bit,
                b'-' => {}
                _ => return Err(bad()),
            }
        }
        let shared = match p[3] {
            b's' => true,
            b'p' => false,
            _ => return Err(bad()),
        };
        let path = rest.trim_start_matches(' ');
        Ok(MapsLine {
            start: hex(start).ok_or_else(bad)?,
            end: hex(end).ok_or_else(bad)?,
            prot: Prot(prot),
            shared,
            offset,
            dev_major: hex(major)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(bad)?,
            dev_minor: hex(minor)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(bad)?,
            inode,
            path: (!path.is_empty()).then(|| path.to_string()),
        })
    }

    /// Reads every non-empty line of a maps file.
    pub fn parse_all(text: &str) -> Result<Vec<MapsLine>, MapsError> {
        text.lines()
            .filter(|l| !l.is_empty())
            .map(MapsLine::parse)
            .collect()
    }

    /// What backs the mapping, from its name (see [`Backing`]).
    pub fn backing(&self) -> Backing {
        Backing::of(self.path.as_deref(), self.inode)
    }
}

/// What backs a mapping, as far as the differential test compares it:
/// device and inode numbers differ between Linux and aspace, names do not.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Backing {
    /// Private anonymous memory (no name; Linux prints offset 0).
    Anon,
    /// `MAP_SHARED | MAP_ANONYMOUS` (Linux: a shmem object named
    /// `/dev/zero (deleted)`, offsets follow splits). Two such mappings are
    /// different objects even though the key does not say which.
    SharedAnon,
    /// An in-memory file of the call text (`file F`; Linux: a memfd named
    /// `/memfd:F (deleted)`).
    File(String),
    /// The program break's area (`[heap]`).
    Heap,
    /// The main stack (`[stack]`).
    Stack,
    /// Anything else, by its name.
    Other(String),
}

impl Backing {
    /// Classifies a maps line's name (and inode, for an anonymous name).
    pub fn of(path: Option<&str>, inode: u64) -> Backing {
        let Some(path) = path else {
            return if inode == 0 {
                Backing::Anon
            } else {
                Backing::Other(String::new())
            };
        };
        if path == "[heap]" {
            return Backing::Heap;
        }
        if path == "[stack]" {
            return Backing::Stack;
        }
        let live = path.strip_suffix(" (deleted)").unwrap_or(path);
        if live == "/dev/zero" && inode != 0 {
            return Backing::SharedAnon;
        }
        if let Some(name) = live.strip_prefix("/memfd:") {
            return Backing::File(name.to_string());
        }
        Backing::Other(path.to_string())
    }

    /// Whether the offset says where in an object the mapping starts (so
    /// merging needs contiguous offsets); anonymous memory has offset 0.
    pub fn has_offset(&self) -> bool {
        matches!(
            self,
            Backing::SharedAnon | Backing::File(_) | Backing::Other(_)
        )
    }
}

/// The comparison key of one mapping, as the differential test compares the
/// two sides: (start, end, rights, private/shared, offset, backing).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MapKey {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Read, write and execute rights.
    pub prot: Prot,
    /// Shared (`s`) rather than private (`p`).
    pub shared: bool,
    /// Offset into the backing object of `start` (0 for anonymous memory).
    pub offset: u64,
    /// What backs it.
    pub backing: Backing,
}

impl fmt::Display for MapKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:#x}-{:#x} {}{} {:#x} {:?}",
            self.start,
            self.end,
            self.prot,
            if self.shared { 's' } else { 'p' },
            self.offset,
            self.backing
        )
    }
}

impl MapKey {
    /// A maps line with this key, as an implementation other than Linux
    /// prints its areas (`maps A --linux`): files and shared anonymous
    /// objects on device `00:01` with the given `inode` (any non-zero number
    /// naming the object), named as Linux names them (`/memfd:F (deleted)`,
    /// `/dev/zero (deleted)`, `[heap]`, `[stack]`); anonymous memory on
    /// `00:00`, inode 0, offset 0. `MapsLine::backing` gives the key's
    /// backing back.
    pub fn to_line(&self, inode: u64) -> MapsLine {
        let (dev_minor, inode, path) = match &self.backing {
            Backing::Anon => (0, 0, None),
            Backing::Heap => (0, 0, Some("[heap]".to_string())),
            Backing::Stack => (0, 0, Some("[stack]".to_string())),
            Backing::SharedAnon => (1, inode.max(1), Some("/dev/zero (deleted)".to_string())),
            Backing::File(name) => (
                1,
                inode.max(1),
                Some(alloc::format!("/memfd:{name} (deleted)")),
            ),
            Backing::Other(name) => (1, inode.max(1), Some(name.clone())),
        };
        MapsLine {
            start: self.start,
            end: self.end,
            prot: self.prot,
            shared: self.shared,
            offset: if self.backing.has_offset() {
                self.offset
            } else {
                0
            },
            dev_major: 0,
            dev_minor,
            inode,
            path,
        }
    }
}

/// The keys of the lines that meet `[lo, hi)`, cut to it (a cut file
/// mapping's offset moves with its start), in address order.
pub fn window_keys(lines: &[MapsLine], lo: u64, hi: u64) -> Vec<MapKey> {
    let mut keys: Vec<MapKey> = lines
        .iter()
        .filter(|l| l.start < hi && l.end > lo)
        .map(|l| {
            let start = l.start.max(lo);
            let backing = l.backing();
            let offset = if backing.has_offset() {
                l.offset + (start - l.start)
            } else {
                0
            };
            MapKey {
                start,
                end: l.end.min(hi),
                prot: l.prot,
                shared: l.shared,
                offset,
                backing,
            }
        })
        .collect();
    keys.sort_by_key(|k| k.start);
    keys
}

/// Joins neighbours that differ only in where one ends and the next starts:
/// contiguous, same rights, sharing and backing, and (for backed mappings)
/// contiguous offsets. Linux sometimes keeps such neighbours apart for
/// reasons its maps do not show (different `anon_vma`s once both were
/// faulted, `VM_ACCOUNT`/`VM_NORESERVE`/`VM_GROWSDOWN` differences); a
/// comparison that should not depend on those compares coalesced keys.
pub fn coalesce(keys: &[MapKey]) -> Vec<MapKey> {
    let mut out: Vec<MapKey> = Vec::with_capacity(keys.len());
    for k in keys {
        if let Some(last) = out.last_mut() {
            let joins = last.end == k.start
                && last.prot == k.prot
                && last.shared == k.shared
                && last.backing == k.backing
                && (!k.backing.has_offset() || last.offset + (last.end - last.start) == k.offset);
            if joins {
                last.end = k.end;
                continue;
            }
        }
        out.push(k.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as this machine's Linux printed them.
    const REAL: &[&str] = &[
        "56135cc86000-56135cc88000 r--p 00000000 fe:00 247030                     /usr/bin/cat",
        "56137ac23000-56137ac44000 rw-p 00000000 00:00 0                          [heap]",
        "7fa0e7fa9000-7fa0e806d000 rw-p 00000000 00:00 0 ",
        "7fa0e80f3000-7fa0e8249000 r-xp 00026000 fe:00 326279                     /usr/lib/x86_64-linux-gnu/libc.so.6",
        "7fa0e82b3000-7fa0e82ba000 r--s 00000000 fe:00 325745                     /usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache",
        "7f898a3bb000-7f898a3bd000 rw-s 00000000 00:01 76                         /memfd:F (deleted)",
        "ffffffffff600000-ffffffffff601000 r-xp 00000000 08:02 12345678901234567890  /x",
        "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]",
    ];

    #[test]
    fn real_lines_round_trip() {
        for &line in REAL {
            let parsed = MapsLine::parse(line).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(parsed.to_string(), line);
        }
        let l = MapsLine::parse(REAL[5]).unwrap();
        assert_eq!(
            (l.start, l.end, l.prot, l.shared, l.inode),
            (0x7f898a3bb000, 0x7f898a3bd000, Prot::RW, true, 76)
        );
        assert_eq!(l.backing(), Backing::File("F".into()));
        assert_eq!(MapsLine::parse(REAL[1]).unwrap().backing(), Backing::Heap);
        assert_eq!(MapsLine::parse(REAL[2]).unwrap().backing(), Backing::Anon);
        assert!(MapsLine::parse("0-1 rwq 0 00:00 0").is_err());
        assert!(MapsLine::parse("01 rw-p 0 00:00 0").is_err());
        assert!(MapsLine::parse("0-1 rw-p 0 00:00").is_err());
    }

    #[test]
    fn keys_print_as_lines_that_read_back_as_the_same_keys() {
        let mut k = MapKey {
            start: 0x1000,
            end: 0x3000,
            prot: Prot::RX,
            shared: false,
            offset: 0,
            backing: Backing::Anon,
        };
        for backing in [
            Backing::Anon,
            Backing::Heap,
            Backing::Stack,
            Backing::SharedAnon,
            Backing::File("F1".into()),
            Backing::Other("/bin/x".into()),
        ] {
            k.offset = if backing.has_offset() { 0x5000 } else { 0 };
            k.shared = matches!(backing, Backing::SharedAnon | Backing::File(_));
            k.backing = backing;
            let line = k.to_line(42);
            let text = line.to_string();
            let back = MapsLine::parse(&text).unwrap();
            assert_eq!(
                window_keys(&[back], 0, u64::MAX),
                alloc::vec![k.clone()],
                "{text}"
            );
        }
    }

    fn line(start: u64, end: u64, prot: Prot, offset: u64, path: Option<&str>) -> MapsLine {
        let inode = if path.is_some() { 9 } else { 0 };
        MapsLine {
            start,
            end,
            prot,
            shared: path.is_some(),
            offset,
            dev_major: 0,
            dev_minor: 1,
            inode,
            path: path.map(Into::into),
        }
    }

    #[test]
    fn window_cuts_and_coalesce_joins() {
        let f = Some("/memfd:F (deleted)");
        let lines = [
            line(0x1000, 0x5000, Prot::RW, 0, None),
            line(0x5000, 0x6000, Prot::RW, 0, None),
            line(0x6000, 0x8000, Prot::RW, 0x3000, f),
            line(0x8000, 0x9000, Prot::RW, 0x5000, f),
            line(0x9000, 0xa000, Prot::RW, 0x9000, f),
        ];
        let keys = window_keys(&lines, 0x2000, 0x9800);
        assert_eq!(keys.len(), 5);
        assert_eq!((keys[0].start, keys[0].offset), (0x2000, 0));
        assert_eq!(keys[4].end, 0x9800);
        let joined = coalesce(&keys);
        assert_eq!(joined.len(), 3, "{joined:?}");
        assert_eq!((joined[0].start, joined[0].end), (0x2000, 0x6000));
        assert_eq!(
            (joined[1].start, joined[1].end, joined[1].offset),
            (0x6000, 0x9000, 0x3000)
        );
        assert_eq!(joined[2].offset, 0x9000);
    }
}
