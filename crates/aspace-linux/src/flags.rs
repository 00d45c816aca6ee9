//! The flag words of `mmap`, `mremap`, `madvise`, `msync` and `mlock2`,
//! typed, with their text.

use crate::consts::*;
use core::fmt;

/// `mmap` flags: raw `MAP_*` bits. In text, each known bit is a word
/// (`private`, `shared`, `anon`, `fixed`, `noreplace`, `populate`,
/// `noreserve`, `growsdown`, `locked`); any other bits print as `bits=0xN`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MapFlags(pub u32);

/// The words of [`MapFlags`] in the order they are printed. `anon` is not
/// among them: the call prints it in the backing's place (`anon` or `file F
/// OFFSET`).
pub const MAP_WORDS: &[(&str, u32)] = &[
    ("private", MAP_PRIVATE),
    ("shared", MAP_SHARED),
    ("droppable", MAP_DROPPABLE),
    ("fixed", MAP_FIXED),
    ("noreplace", MAP_FIXED_NOREPLACE),
    ("populate", MAP_POPULATE),
    ("noreserve", MAP_NORESERVE),
    ("growsdown", MAP_GROWSDOWN),
    ("locked", MAP_LOCKED),
];

impl MapFlags {
    /// Whether every bit of `bits` is set.
    pub fn has(self, bits: u32) -> bool {
        self.0 & bits == bits
    }
    /// `MAP_SHARED` (and not private: `MAP_SHARED_VALIDATE` counts as shared).
    pub fn shared(self) -> bool {
        self.0 & MAP_TYPE == MAP_SHARED || self.0 & MAP_TYPE == MAP_SHARED_VALIDATE
    }
    /// `MAP_ANONYMOUS`.
    pub fn anonymous(self) -> bool {
        self.has(MAP_ANONYMOUS)
    }
    /// `MAP_FIXED` or `MAP_FIXED_NOREPLACE`: the address is not a hint.
    pub fn fixed(self) -> bool {
        self.0 & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0
    }
    /// The flag word for one bit, if it has one (`anon` included).
    pub fn word_bit(word: &str) -> Option<u32> {
        if word == "anon" {
            return Some(MAP_ANONYMOUS);
        }
        MAP_WORDS.iter().find(|(w, _)| *w == word).map(|&(_, b)| b)
    }
    /// Prints the words of the bits other than `MAP_ANONYMOUS`, each preceded
    /// by a space.
    pub fn fmt_words(self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        FlagWords::fmt_words(MapFlags(self.0 & !MAP_ANONYMOUS), f)
    }
}

impl FlagWords for MapFlags {
    const WORDS: &'static [(&'static str, u32)] = MAP_WORDS;
    fn bits(self) -> u32 {
        self.0
    }
    fn of(bits: u32) -> Self {
        MapFlags(bits)
    }
}

/// `mremap` flags: raw `MREMAP_*` bits; words `maymove`, `fixed NEW`,
/// `dontunmap`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RemapFlags(pub u32);

impl RemapFlags {
    /// `MREMAP_MAYMOVE`.
    pub fn may_move(self) -> bool {
        self.0 & MREMAP_MAYMOVE != 0
    }
    /// `MREMAP_FIXED`.
    pub fn fixed(self) -> bool {
        self.0 & MREMAP_FIXED != 0
    }
    /// `MREMAP_DONTUNMAP`.
    pub fn dont_unmap(self) -> bool {
        self.0 & MREMAP_DONTUNMAP != 0
    }
}

/// An `madvise` advice (`MADV_*`): in text its name without `MADV_` in
/// lower case (`dontneed`, `populate_write`, ...; see
/// [`WORDS`](Self::WORDS)), any other value as its number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Advice(pub i32);

impl Advice {
    /// `MADV_DONTNEED`.
    pub const DONTNEED: Advice = Advice(MADV_DONTNEED);
    /// `MADV_FREE`.
    pub const FREE: Advice = Advice(MADV_FREE);
    /// `MADV_NORMAL`.
    pub const NORMAL: Advice = Advice(MADV_NORMAL);
    /// `MADV_REMOVE`.
    pub const REMOVE: Advice = Advice(MADV_REMOVE);

    /// Every advice with a word, in `MADV_*` order.
    pub const WORDS: &'static [(&'static str, i32)] = &[
        ("normal", MADV_NORMAL),
        ("random", MADV_RANDOM),
        ("sequential", MADV_SEQUENTIAL),
        ("willneed", MADV_WILLNEED),
        ("dontneed", MADV_DONTNEED),
        ("free", MADV_FREE),
        ("remove", MADV_REMOVE),
        ("dontfork", MADV_DONTFORK),
        ("dofork", MADV_DOFORK),
        ("mergeable", MADV_MERGEABLE),
        ("unmergeable", MADV_UNMERGEABLE),
        ("hugepage", MADV_HUGEPAGE),
        ("nohugepage", MADV_NOHUGEPAGE),
        ("dontdump", MADV_DONTDUMP),
        ("dodump", MADV_DODUMP),
        ("wipeonfork", MADV_WIPEONFORK),
        ("keeponfork", MADV_KEEPONFORK),
        ("cold", MADV_COLD),
        ("pageout", MADV_PAGEOUT),
        ("populate_read", MADV_POPULATE_READ),
        ("populate_write", MADV_POPULATE_WRITE),
        ("dontneed_locked", MADV_DONTNEED_LOCKED),
        ("guard_install", MADV_GUARD_INSTALL),
        ("guard_remove", MADV_GUARD_REMOVE),
    ];

    /// Parses a word or a decimal number.
    pub fn parse(text: &str) -> Option<Advice> {
        Self::WORDS
            .iter()
            .find(|(w, _)| *w == text)
            .map(|&(_, v)| Advice(v))
            .or_else(|| text.parse().ok().map(Advice))
    }
}

impl fmt::Display for Advice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Self::WORDS.iter().find(|&&(_, v)| v == self.0) {
            Some((w, _)) => f.write_str(w),
            None => write!(f, "{}", self.0),
        }
    }
}

/// Flag bits whose known bits have words: parses and prints them.
pub trait FlagWords: Sized + Copy {
    /// The words, in the order they print.
    const WORDS: &'static [(&'static str, u32)];
    /// The raw bits.
    fn bits(self) -> u32;
    /// The flags of raw bits.
    fn of(bits: u32) -> Self;
    /// The bit of `word` (a word of [`WORDS`](Self::WORDS) or `bits=0xN`).
    fn word_bits(word: &str) -> Option<u32> {
        if let Some(b) = word.strip_prefix("bits=") {
            return crate::num::parse_u64(b).and_then(|b| u32::try_from(b).ok());
        }
        Self::WORDS
            .iter()
            .find(|(w, _)| *w == word)
            .map(|&(_, b)| b)
    }
    /// Prints each known bit's word, then any other bits as `bits=0xN`,
    /// each preceded by a space.
    fn fmt_words(self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.bits();
        for &(word, bit) in Self::WORDS {
            if rest & bit == bit {
                write!(f, " {word}")?;
                rest &= !bit;
            }
        }
        if rest != 0 {
            write!(f, " bits={rest:#x}")?;
        }
        Ok(())
    }
}

/// `msync` flags: raw `MS_*` bits; words `async`, `invalidate`, `sync`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SyncFlags(pub u32);

impl FlagWords for SyncFlags {
    const WORDS: &'static [(&'static str, u32)] = &[
        ("async", MS_ASYNC),
        ("invalidate", MS_INVALIDATE),
        ("sync", MS_SYNC),
    ];
    fn bits(self) -> u32 {
        self.0
    }
    fn of(bits: u32) -> Self {
        SyncFlags(bits)
    }
}

/// `mlock2` flags: raw `MLOCK_*` bits; word `onfault`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LockFlags(pub u32);

impl FlagWords for LockFlags {
    const WORDS: &'static [(&'static str, u32)] = &[("onfault", MLOCK_ONFAULT)];
    fn bits(self) -> u32 {
        self.0
    }
    fn of(bits: u32) -> Self {
        LockFlags(bits)
    }
}

/// `mlockall` flags: raw `MCL_*` bits; words `current`, `future`,
/// `onfault`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LockAllFlags(pub u32);

impl FlagWords for LockAllFlags {
    const WORDS: &'static [(&'static str, u32)] = &[
        ("current", MCL_CURRENT),
        ("future", MCL_FUTURE),
        ("onfault", MCL_ONFAULT),
    ];
    fn bits(self) -> u32 {
        self.0
    }
    fn of(bits: u32) -> Self {
        LockAllFlags(bits)
    }
}
