//! The per-mapping flags `madvise` and `mlock` set and clear (Linux's
//! `VM_RAND_READ`, `VM_SEQ_READ`, `VM_DONTCOPY`, `VM_DONTDUMP`,
//! `VM_WIPEONFORK`, `VM_HUGEPAGE`, `VM_NOHUGEPAGE`, `VM_MERGEABLE`,
//! `VM_LOCKED`, `VM_LOCKONFAULT`).
//!
//! None of them changes what the core maps: most are read-ahead, dump,
//! huge-page and page-merging hints; `fork` honours two (`MADV_DONTFORK`:
//! the child does not get the range; `MADV_WIPEONFORK`: the child gets it
//! empty); locked pages are faulted in when locked and refuse
//! `MADV_DONTNEED` (nothing is ever paged out here). But mappings that
//! differ in them are different VMAs on Linux: a flag given to part of a
//! mapping splits it, and neighbours merge again only once their flags
//! agree, which `/proc/PID/maps` shows.

use core::ops::{BitOr, Sub};

use crate::consts::*;
use crate::errno::Errno;
use crate::flags::Advice;

/// A set of those flags of one mapping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VmFlags(u16);

impl VmFlags {
    /// None.
    pub const NONE: VmFlags = VmFlags(0);
    /// `VM_RAND_READ` (`MADV_RANDOM`).
    pub const RAND_READ: VmFlags = VmFlags(1);
    /// `VM_SEQ_READ` (`MADV_SEQUENTIAL`).
    pub const SEQ_READ: VmFlags = VmFlags(1 << 1);
    /// `VM_DONTCOPY` (`MADV_DONTFORK`): a forked child does not get it.
    pub const DONTCOPY: VmFlags = VmFlags(1 << 2);
    /// `VM_DONTDUMP` (`MADV_DONTDUMP`).
    pub const DONTDUMP: VmFlags = VmFlags(1 << 3);
    /// `VM_WIPEONFORK` (`MADV_WIPEONFORK`): a forked child gets it empty.
    pub const WIPEONFORK: VmFlags = VmFlags(1 << 4);
    /// `VM_HUGEPAGE` (`MADV_HUGEPAGE`).
    pub const HUGEPAGE: VmFlags = VmFlags(1 << 5);
    /// `VM_NOHUGEPAGE` (`MADV_NOHUGEPAGE`).
    pub const NOHUGEPAGE: VmFlags = VmFlags(1 << 6);
    /// `VM_MERGEABLE` (`MADV_MERGEABLE`).
    pub const MERGEABLE: VmFlags = VmFlags(1 << 7);
    /// `VM_LOCKED` (`mlock`).
    pub const LOCKED: VmFlags = VmFlags(1 << 8);
    /// `VM_LOCKONFAULT` (`mlock2(MLOCK_ONFAULT)`).
    pub const LOCKONFAULT: VmFlags = VmFlags(1 << 9);
    /// Both lock flags (Linux's `VM_LOCKED_MASK`).
    pub const LOCK_MASK: VmFlags = VmFlags(3 << 8);
    /// `VM_SEALED` (`mseal`): never unmapped, moved, resized or given other
    /// rights again, nor its pages dropped if it is private anonymous
    /// memory without write.
    pub const SEALED: VmFlags = VmFlags(1 << 10);
    /// `VM_DROPPABLE` (`MAP_DROPPABLE`): its pages may be dropped under
    /// memory pressure (here: never); `MADV_KEEPONFORK` is refused on it.
    pub const DROPPABLE: VmFlags = VmFlags(1 << 11);

    /// Whether any flag of `other` is set here.
    pub const fn intersects(self, other: VmFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether every flag of `other` is set here.
    pub const fn contains(self, other: VmFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for VmFlags {
    type Output = VmFlags;
    fn bitor(self, other: VmFlags) -> VmFlags {
        VmFlags(self.0 | other.0)
    }
}

impl Sub for VmFlags {
    type Output = VmFlags;
    fn sub(self, other: VmFlags) -> VmFlags {
        VmFlags(self.0 & !other.0)
    }
}

/// What `madvise(advice)` makes of the flags `flags` of a mapping that is
/// `anonymous` (private anonymous memory or the heap: no file, not shared)
/// and `shared` (`MAP_SHARED`), as Linux 6.18's `madvise_vma_behavior`
/// computes its new flags: `None` if `advice` sets no hint; `EINVAL` for
/// `MADV_WIPEONFORK` on anything but anonymous memory and
/// `MADV_KEEPONFORK` or `MADV_DODUMP` on a droppable mapping.
/// `MADV_MERGEABLE` on a shared or droppable mapping is ignored, as Linux's
/// `ksm_madvise` does.
pub fn after(
    advice: Advice,
    flags: VmFlags,
    anonymous: bool,
    shared: bool,
) -> Option<Result<VmFlags, Errno>> {
    let read_ahead = VmFlags::RAND_READ | VmFlags::SEQ_READ;
    let huge = VmFlags::HUGEPAGE | VmFlags::NOHUGEPAGE;
    let new = match advice.0 {
        MADV_NORMAL => flags - read_ahead,
        MADV_RANDOM => (flags - read_ahead) | VmFlags::RAND_READ,
        MADV_SEQUENTIAL => (flags - read_ahead) | VmFlags::SEQ_READ,
        MADV_DONTFORK => flags | VmFlags::DONTCOPY,
        MADV_DOFORK => flags - VmFlags::DONTCOPY,
        MADV_DONTDUMP => flags | VmFlags::DONTDUMP,
        MADV_DODUMP if flags.contains(VmFlags::DROPPABLE) => return Some(Err(Errno::EINVAL)),
        MADV_DODUMP => flags - VmFlags::DONTDUMP,
        MADV_WIPEONFORK if !anonymous => return Some(Err(Errno::EINVAL)),
        MADV_WIPEONFORK => flags | VmFlags::WIPEONFORK,
        MADV_KEEPONFORK if flags.contains(VmFlags::DROPPABLE) => return Some(Err(Errno::EINVAL)),
        MADV_KEEPONFORK => flags - VmFlags::WIPEONFORK,
        MADV_HUGEPAGE => (flags - huge) | VmFlags::HUGEPAGE,
        MADV_NOHUGEPAGE => (flags - huge) | VmFlags::NOHUGEPAGE,
        MADV_MERGEABLE if shared || flags.contains(VmFlags::DROPPABLE) => flags,
        MADV_MERGEABLE => flags | VmFlags::MERGEABLE,
        MADV_UNMERGEABLE => flags - VmFlags::MERGEABLE,
        _ => return None,
    };
    Some(Ok(new))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ahead_hints_replace_each_other_and_normal_clears_them() {
        let h = after(Advice(MADV_RANDOM), VmFlags::DONTDUMP, true, false);
        assert_eq!(h, Some(Ok(VmFlags::DONTDUMP | VmFlags::RAND_READ)));
        let h = after(Advice(MADV_SEQUENTIAL), VmFlags::RAND_READ, true, false);
        assert_eq!(h, Some(Ok(VmFlags::SEQ_READ)));
        let h = after(
            Advice::NORMAL,
            VmFlags::SEQ_READ | VmFlags::DONTCOPY,
            true,
            false,
        );
        assert_eq!(h, Some(Ok(VmFlags::DONTCOPY)));
    }

    #[test]
    fn fork_hints_follow_linux_rules() {
        assert_eq!(
            after(Advice(MADV_WIPEONFORK), VmFlags::NONE, false, true),
            Some(Err(Errno::EINVAL))
        );
        assert_eq!(
            after(Advice(MADV_WIPEONFORK), VmFlags::NONE, false, false),
            Some(Err(Errno::EINVAL)),
            "a private file mapping"
        );
        assert_eq!(
            after(Advice(MADV_KEEPONFORK), VmFlags::WIPEONFORK, true, false),
            Some(Ok(VmFlags::NONE))
        );
        assert_eq!(
            after(Advice(MADV_MERGEABLE), VmFlags::NONE, false, true),
            Some(Ok(VmFlags::NONE)),
            "ignored on a shared mapping"
        );
        assert_eq!(after(Advice::DONTNEED, VmFlags::NONE, true, false), None);
    }
}
