//! The hardware page-table walks, one per architecture, each written from
//! that architecture's manual and independently of the core's page-table
//! code, so that tests check the entries the core writes against what the
//! architecture's MMU would do with them. Each module also carries out the
//! core's TLB invalidations with its architecture's instructions.
//!
//! A walk answers for one address with the frame and the rights user mode
//! (U-mode, EL0, ring 3) has there, or with the fault the hardware raises
//! before looking at rights (nothing mapped, a reserved encoding, an entry
//! whose accessed flag is clear). The CPU caches the answer in its TLB and
//! checks the access against it.

pub mod aarch64;
pub mod riscv64;
pub mod x86_64;

use aspace::{Frame, Invalidation, Layout, PhysMemory, VirtAddr};

use crate::tlb::SimTlb;

/// The architecture a simulated machine has, chosen when it is built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Arch {
    /// x86_64, 4-level paging, PCIDs.
    #[default]
    X86_64,
    /// RISC-V with Sv39 (3 levels).
    Riscv64Sv39,
    /// RISC-V with Sv48 (4 levels).
    Riscv64Sv48,
    /// AArch64, 4 KiB granule, 48-bit addresses.
    Aarch64,
}

impl Arch {
    /// Every architecture, for tests that run on each.
    pub const ALL: [Arch; 4] = [
        Arch::X86_64,
        Arch::Riscv64Sv39,
        Arch::Riscv64Sv48,
        Arch::Aarch64,
    ];

    /// Whether a fault drops the TLB entry that refused the access: x86
    /// does (a page fault invalidates the faulting address's entries);
    /// RISC-V and AArch64 may keep it, so the fault handler must drop it
    /// itself after a spurious fault (one on a page whose rights grew
    /// without a flush).
    pub const fn fault_drops_entry(self) -> bool {
        matches!(self, Arch::X86_64)
    }

    /// The name used on the command line (`x86_64`, `riscv64`,
    /// `riscv64-sv48`, `aarch64`).
    pub const fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Riscv64Sv39 => "riscv64",
            Arch::Riscv64Sv48 => "riscv64-sv48",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// The architecture named `name` (also `riscv64-sv39`).
    pub fn from_name(name: &str) -> Option<Arch> {
        match name {
            "riscv64-sv39" => Some(Arch::Riscv64Sv39),
            _ => Arch::ALL.into_iter().find(|a| a.name() == name),
        }
    }

    /// The user/kernel split of the architecture's page-table format.
    pub const fn layout(self) -> Layout {
        match self {
            Arch::X86_64 => Layout::X86_64,
            Arch::Riscv64Sv39 => Layout::SV39,
            Arch::Riscv64Sv48 => Layout::SV48,
            Arch::Aarch64 => Layout::AARCH64,
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The translation registers a walk starts from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Roots {
    /// The table of the running address space (CR3, `satp`, `TTBR0_EL1`);
    /// `None` when translation of the user range is off.
    pub user: Option<Frame>,
    /// AArch64's `TTBR1_EL1`: the kernel's table for the high half.
    pub kernel: Option<Frame>,
}

/// What a walk found: the frame and what user mode may do with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Walk {
    /// The frame mapped.
    pub frame: Frame,
    /// User-mode loads allowed.
    pub readable: bool,
    /// User-mode stores allowed.
    pub writable: bool,
    /// User-mode instruction fetches allowed.
    pub executable: bool,
    /// Some user-mode access is allowed at all.
    pub user: bool,
    /// A global translation (not tagged with the ASID).
    pub global: bool,
}

/// Why a walk raised a fault before rights were looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkFault {
    /// The address is outside the translated ranges (not canonical, not
    /// sign-extended).
    Address,
    /// No valid entry at the given level (0 = leaf level).
    NotMapped(u32),
    /// An entry with a reserved encoding at the given level.
    Reserved(u32),
    /// A leaf whose accessed flag (RISC-V A, AArch64 AF) is clear, which
    /// faults without hardware flag management.
    AccessFlag,
}

/// Walks the tables of `arch` for `va` from `roots`.
pub fn walk(
    arch: Arch,
    mem: &impl PhysMemory,
    roots: Roots,
    va: VirtAddr,
) -> Result<Walk, WalkFault> {
    match arch {
        Arch::X86_64 => x86_64::walk(mem, roots.user, va),
        Arch::Riscv64Sv39 => riscv64::walk(mem, riscv64::Scheme::Sv39, roots.user, va, false),
        Arch::Riscv64Sv48 => riscv64::walk(mem, riscv64::Scheme::Sv48, roots.user, va, false),
        Arch::Aarch64 => aarch64::walk(mem, roots.user, roots.kernel, va),
    }
}

/// Carries out the core's `what` on `tlb` with `arch`'s instructions.
pub fn invalidate(arch: Arch, tlb: &mut SimTlb, what: Invalidation) {
    match arch {
        Arch::X86_64 => x86_64::invalidate(tlb, what),
        Arch::Riscv64Sv39 | Arch::Riscv64Sv48 => riscv64::invalidate(tlb, what),
        Arch::Aarch64 => aarch64::invalidate(tlb, what),
    }
}
