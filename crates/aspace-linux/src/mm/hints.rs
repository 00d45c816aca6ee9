//! The per-mapping flags `madvise` sets and clears (Linux's `VM_RAND_READ`,
//! `VM_SEQ_READ`, `VM_DONTCOPY`, `VM_DONTDUMP`, `VM_WIPEONFORK`,
//! `VM_HUGEPAGE`, `VM_NOHUGEPAGE`, `VM_MERGEABLE`).
//!
//! None of them changes what the core maps: they are read-ahead, dump,
//! huge-page and page-merging hints, except the two `fork` honours
//! (`MADV_DONTFORK`: the child does not get the range; `MADV_WIPEONFORK`:
//! the child gets it empty). But mappings that differ in them are
//! different VMAs on Linux: a hint given to part of a mapping splits it, and
//! neighbours merge again only once their flags agree, which
//! `/proc/PID/maps` shows.

use core::ops::{BitOr, Sub};

use crate::consts::*;
use crate::errno::Errno;
use crate::flags::Advice;

/// A set of the hint flags of one mapping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Hints(u8);

impl Hints {
    /// None.
    pub const NONE: Hints = Hints(0);
    /// `VM_RAND_READ` (`MADV_RANDOM`).
    pub const RAND_READ: Hints = Hints(1);
    /// `VM_SEQ_READ` (`MADV_SEQUENTIAL`).
    pub const SEQ_READ: Hints = Hints(1 << 1);
    /// `VM_DONTCOPY` (`MADV_DONTFORK`): a forked child does not get it.
    pub const DONTCOPY: Hints = Hints(1 << 2);
    /// `VM_DONTDUMP` (`MADV_DONTDUMP`).
    pub const DONTDUMP: Hints = Hints(1 << 3);
    /// `VM_WIPEONFORK` (`MADV_WIPEONFORK`): a forked child gets it empty.
    pub const WIPEONFORK: Hints = Hints(1 << 4);
    /// `VM_HUGEPAGE` (`MADV_HUGEPAGE`).
    pub const HUGEPAGE: Hints = Hints(1 << 5);
    /// `VM_NOHUGEPAGE` (`MADV_NOHUGEPAGE`).
    pub const NOHUGEPAGE: Hints = Hints(1 << 6);
    /// `VM_MERGEABLE` (`MADV_MERGEABLE`).
    pub const MERGEABLE: Hints = Hints(1 << 7);

    /// Whether every flag of `other` is set here.
    pub const fn contains(self, other: Hints) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for Hints {
    type Output = Hints;
    fn bitor(self, other: Hints) -> Hints {
        Hints(self.0 | other.0)
    }
}

impl Sub for Hints {
    type Output = Hints;
    fn sub(self, other: Hints) -> Hints {
        Hints(self.0 & !other.0)
    }
}

/// What `madvise(advice)` makes of the hints `hints` of a mapping that is
/// `anonymous` (private anonymous memory or the heap: no file, not shared)
/// and `shared` (`MAP_SHARED`), as Linux 6.18's `madvise_vma_behavior`
/// computes its new flags: `None` if `advice` sets no hint; `EINVAL` for
/// `MADV_WIPEONFORK` on anything but anonymous memory. `MADV_MERGEABLE` on
/// a shared mapping is ignored, as Linux's `ksm_madvise` does.
pub fn after(
    advice: Advice,
    hints: Hints,
    anonymous: bool,
    shared: bool,
) -> Option<Result<Hints, Errno>> {
    let read_ahead = Hints::RAND_READ | Hints::SEQ_READ;
    let huge = Hints::HUGEPAGE | Hints::NOHUGEPAGE;
    let new = match advice.0 {
        MADV_NORMAL => hints - read_ahead,
        MADV_RANDOM => (hints - read_ahead) | Hints::RAND_READ,
        MADV_SEQUENTIAL => (hints - read_ahead) | Hints::SEQ_READ,
        MADV_DONTFORK => hints | Hints::DONTCOPY,
        MADV_DOFORK => hints - Hints::DONTCOPY,
        MADV_DONTDUMP => hints | Hints::DONTDUMP,
        MADV_DODUMP => hints - Hints::DONTDUMP,
        MADV_WIPEONFORK if !anonymous => return Some(Err(Errno::EINVAL)),
        MADV_WIPEONFORK => hints | Hints::WIPEONFORK,
        MADV_KEEPONFORK => hints - Hints::WIPEONFORK,
        MADV_HUGEPAGE => (hints - huge) | Hints::HUGEPAGE,
        MADV_NOHUGEPAGE => (hints - huge) | Hints::NOHUGEPAGE,
        MADV_MERGEABLE if shared => hints,
        MADV_MERGEABLE => hints | Hints::MERGEABLE,
        MADV_UNMERGEABLE => hints - Hints::MERGEABLE,
        _ => return None,
    };
    Some(Ok(new))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ahead_hints_replace_each_other_and_normal_clears_them() {
        let h = after(Advice(MADV_RANDOM), Hints::DONTDUMP, true, false);
        assert_eq!(h, Some(Ok(Hints::DONTDUMP | Hints::RAND_READ)));
        let h = after(Advice(MADV_SEQUENTIAL), Hints::RAND_READ, true, false);
        assert_eq!(h, Some(Ok(Hints::SEQ_READ)));
        let h = after(
            Advice::NORMAL,
            Hints::SEQ_READ | Hints::DONTCOPY,
            true,
            false,
        );
        assert_eq!(h, Some(Ok(Hints::DONTCOPY)));
    }

    #[test]
    fn fork_hints_follow_linux_rules() {
        assert_eq!(
            after(Advice(MADV_WIPEONFORK), Hints::NONE, false, true),
            Some(Err(Errno::EINVAL))
        );
        assert_eq!(
            after(Advice(MADV_WIPEONFORK), Hints::NONE, false, false),
            Some(Err(Errno::EINVAL)),
            "a private file mapping"
        );
        assert_eq!(
            after(Advice(MADV_KEEPONFORK), Hints::WIPEONFORK, true, false),
            Some(Ok(Hints::NONE))
        );
        assert_eq!(
            after(Advice(MADV_MERGEABLE), Hints::NONE, false, true),
            Some(Ok(Hints::NONE)),
            "ignored on a shared mapping"
        );
        assert_eq!(after(Advice::DONTNEED, Hints::NONE, true, false), None);
    }
}
