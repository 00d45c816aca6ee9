//! Area flags, area attributes, page-table entry rights and access kinds.

use bitflags::bitflags;

bitflags! {
    /// Access rights of an area (HelenOS `AS_AREA_*`, same bit values).
    ///
    /// The fault handler enforces them exactly; the page table may be
    /// coarser: x86_64 cannot deny reads of a present page, so once a
    /// write-only or execute-only area has a page mapped, loads from it
    /// succeed. RISC-V and AArch64 keep execute-only pages unreadable but,
    /// like x86_64, map write-only pages readable (see each format in
    /// [`paging`](crate::paging)).
    #[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
    pub struct AreaFlags: u32 {
        /// Pages may be read.
        const READ = 1;
        /// Pages may be written.
        const WRITE = 2;
        /// Pages may be executed.
        const EXEC = 4;
        /// Pages are cached (normal memory rather than device memory).
        const CACHEABLE = 8;
        /// Memory is reserved page by page when a fault maps it, instead of
        /// for the whole area when it is created or grown (HelenOS
        /// `AS_AREA_LATE_RESERVE`; see [`crate::reserve`]). Not a right:
        /// a change of rights keeps the area's own bit. Such areas cannot
        /// be shared (as in HelenOS).
        const LATE_RESERVE = 0x20;
        /// One unmapped guard page is kept below the area (HelenOS
        /// `AS_AREA_GUARD`, same value): no other area may take it, fixed,
        /// anywhere or by growing, and an access there faults with
        /// [`FaultReason::Guard`](crate::FaultReason::Guard). Unlike
        /// HelenOS, which keeps a page free on both sides of a guarded
        /// area, only the page below is kept (where a stack overflows).
        const GUARD = 0x10;
        /// The area grows downwards (Linux `VM_GROWSDOWN`; our extension,
        /// HelenOS has none): a fault in its guard page moves its base
        /// down a page, up to its growth limit. Implies [`GUARD`](Self::GUARD).
        const GROWS_DOWN = 0x40;
        /// With [`LATE_RESERVE`](Self::LATE_RESERVE) on an area without
        /// write access: the area reserves page by page only until it is
        /// given write access, and then reserves all its pages up front,
        /// the change of rights refused with
        /// [`Error::NoMemory`](crate::Error::NoMemory) if the commit limit
        /// refuses them (Linux's `VM_ACCOUNT`, set on a private mapping
        /// when `mprotect` first makes it writable). Our extension; not a
        /// right: a change of rights keeps it until it applies. Refused
        /// without `LATE_RESERVE` or with `WRITE`.
        const RESERVE_ON_WRITE = 0x80;
    }
}

impl AreaFlags {
    /// Checks raw flag bits from user space: unknown bits and write+exec are
    /// refused with [`Error::InvalidArgument`](crate::Error::InvalidArgument).
    pub fn from_user(bits: u32) -> crate::Result<AreaFlags> {
        let flags = AreaFlags::from_bits_retain(bits);
        flags.validate()?;
        Ok(flags)
    }

    /// Refuses bits that name no right (as `from_bits_retain` can make),
    /// write together with execute, and
    /// [`RESERVE_ON_WRITE`](Self::RESERVE_ON_WRITE) without
    /// `LATE_RESERVE` or with write, with
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument).
    pub fn validate(self) -> crate::Result<()> {
        if self.bits() & !AreaFlags::all().bits() != 0
            || self.contains(AreaFlags::WRITE | AreaFlags::EXEC)
            || (self.contains(AreaFlags::RESERVE_ON_WRITE)
                && (!self.contains(AreaFlags::LATE_RESERVE) || self.contains(AreaFlags::WRITE)))
        {
            return Err(crate::Error::InvalidArgument);
        }
        Ok(())
    }

    /// The flags that say where an area may lie rather than what it may
    /// do: fixed at creation, kept by a change of rights.
    pub const PLACEMENT: AreaFlags = AreaFlags::GUARD.union(AreaFlags::GROWS_DOWN);

    /// The access rights: read, write, execute (what a share, a lent page
    /// or an offer can bound).
    pub const RIGHTS: AreaFlags = AreaFlags::READ
        .union(AreaFlags::WRITE)
        .union(AreaFlags::EXEC);

    /// Guard pages kept below an area with these flags: 1 with
    /// [`GUARD`](Self::GUARD) or [`GROWS_DOWN`](Self::GROWS_DOWN), else 0.
    pub fn guard_pages(self) -> u64 {
        u64::from(self.intersects(AreaFlags::PLACEMENT))
    }

    /// Whether these rights permit `access`.
    pub fn permits(self, access: Access) -> bool {
        self.contains(match access {
            Access::Read => AreaFlags::READ,
            Access::Write => AreaFlags::WRITE,
            Access::Exec => AreaFlags::EXEC,
        })
    }

    /// The rights a page of an area with these flags is mapped with.
    pub fn page_flags(self) -> PageFlags {
        let mut f = PageFlags::PRESENT | PageFlags::USER;
        if self.contains(AreaFlags::READ) {
            f |= PageFlags::READ;
        }
        if self.contains(AreaFlags::WRITE) {
            f |= PageFlags::WRITE;
        }
        if self.contains(AreaFlags::EXEC) {
            f |= PageFlags::EXEC;
        }
        if self.contains(AreaFlags::CACHEABLE) {
            f |= PageFlags::CACHEABLE;
        }
        f
    }
}

bitflags! {
    /// Attributes of an area that are not access rights.
    #[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
    pub struct AreaAttrs: u32 {
        /// The area is still being set up (or torn down): faults on it fail.
        const PARTIAL = 1;
    }
}

bitflags! {
    /// Architecture-neutral rights of one page mapping; page-table
    /// implementations translate them to their entry format.
    #[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
    pub struct PageFlags: u32 {
        /// The mapping is valid.
        const PRESENT = 1;
        /// Readable.
        const READ = 2;
        /// Writable.
        const WRITE = 4;
        /// Executable.
        const EXEC = 8;
        /// Reachable from user mode.
        const USER = 16;
        /// Cached memory.
        const CACHEABLE = 32;
        /// Kept in the TLB across address-space switches (kernel mappings).
        const GLOBAL = 64;
    }
}

impl PageFlags {
    /// The bits that grant an access; the others (user, cacheable, global)
    /// say how the page is mapped.
    const ACCESS: PageFlags = PageFlags::PRESENT
        .union(PageFlags::READ)
        .union(PageFlags::WRITE)
        .union(PageFlags::EXEC);

    /// Whether rewriting an entry from `old` to these rights only adds
    /// access: a TLB still holding `old` can then only refuse an access
    /// the new entry allows, a spurious fault the fault handler resolves
    /// by dropping that entry (see
    /// [`AddressSpace::page_fault`](crate::AddressSpace::page_fault)), so
    /// no shootdown is needed. The architectures allow it (Intel's SDM
    /// lists R/W going from 0 to 1 among the changes software need not
    /// invalidate); Linux flushes here anyway on x86 (its
    /// `pte_needs_flush` skips only an old entry that was not present).
    pub fn widens(self, old: PageFlags) -> bool {
        self.contains(old) && (self - Self::ACCESS) == (old - Self::ACCESS)
    }

    /// Whether a mapping with these rights satisfies `access`.
    pub fn permits(self, access: Access) -> bool {
        self.contains(PageFlags::PRESENT)
            && match access {
                Access::Read => self.contains(PageFlags::READ),
                Access::Write => self.contains(PageFlags::WRITE),
                Access::Exec => self.contains(PageFlags::EXEC),
            }
    }
}

/// The kind of memory access that faulted (HelenOS `pf_access_t`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Access {
    /// A load.
    Read,
    /// A store.
    Write,
    /// An instruction fetch.
    Exec,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_on_write_needs_late_reserve_and_no_write() {
        let (r, w, late, row) = (
            AreaFlags::READ,
            AreaFlags::WRITE,
            AreaFlags::LATE_RESERVE,
            AreaFlags::RESERVE_ON_WRITE,
        );
        assert_eq!((r | late | row).validate(), Ok(()));
        assert_eq!(
            (r | row).validate(),
            Err(crate::Error::InvalidArgument),
            "without LATE_RESERVE"
        );
        assert_eq!(
            (r | w | late | row).validate(),
            Err(crate::Error::InvalidArgument),
            "with WRITE"
        );
        assert_eq!(AreaFlags::from_user(0x80 | 0x20 | 1), Ok(r | late | row));
        assert_eq!(
            AreaFlags::from_user(0x100),
            Err(crate::Error::InvalidArgument)
        );
    }
}
