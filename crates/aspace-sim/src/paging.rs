//! The simulator's page table: one of the core's three formats, chosen
//! when the machine is built ([`Arch`]), behind one type so that the
//! simulator, its CPUs and every test keep a single `Machine`.

use aspace::paging::aarch64::Aarch64PageTable;
use aspace::paging::riscv64::{RiscvMode, RiscvPageTable};
use aspace::paging::x86_64::X86_64PageTable;
use aspace::paging::{Layout, PageTable, Rewritten, Unmapped};
use aspace::{Error, Frame, FrameAllocator, Page, PageFlags, PhysMemory};

use crate::mmu::Arch;

/// A page table in the format of the simulated machine's architecture.
#[derive(Debug)]
pub enum SimPageTable {
    /// x86_64 4-level.
    X86_64(X86_64PageTable),
    /// RISC-V Sv39 or Sv48.
    Riscv64(RiscvPageTable),
    /// AArch64 4-level, 4 KiB granule.
    Aarch64(Aarch64PageTable),
}

/// Runs `$body` on the table inside `$pt`, whatever its format.
macro_rules! each {
    ($pt:expr, $t:ident => $body:expr) => {
        match $pt {
            SimPageTable::X86_64($t) => $body,
            SimPageTable::Riscv64($t) => $body,
            SimPageTable::Aarch64($t) => $body,
        }
    };
}

impl PageTable for SimPageTable {
    type Mode = Arch;

    fn layout(arch: Arch) -> Layout {
        arch.layout()
    }

    /// Creates a table of `arch`'s format; a user table whose kernel table
    /// has another format is refused with `InvalidArgument`.
    fn create<P: PhysMemory, F: FrameAllocator>(
        mem: &P,
        frames: &F,
        kernel: Option<&Self>,
        arch: Arch,
    ) -> aspace::Result<Self> {
        let riscv = |mode| match kernel {
            None => RiscvPageTable::create(mem, frames, None, mode),
            Some(SimPageTable::Riscv64(k)) => RiscvPageTable::create(mem, frames, Some(k), mode),
            Some(_) => Err(Error::InvalidArgument),
        };
        Ok(match arch {
            Arch::X86_64 => SimPageTable::X86_64(match kernel {
                None => X86_64PageTable::create(mem, frames, None, ())?,
                Some(SimPageTable::X86_64(k)) => X86_64PageTable::create(mem, frames, Some(k), ())?,
                Some(_) => return Err(Error::InvalidArgument),
            }),
            Arch::Riscv64Sv39 => SimPageTable::Riscv64(riscv(RiscvMode::Sv39)?),
            Arch::Riscv64Sv48 => SimPageTable::Riscv64(riscv(RiscvMode::Sv48)?),
            Arch::Aarch64 => SimPageTable::Aarch64(match kernel {
                None => Aarch64PageTable::create(mem, frames, None, ())?,
                Some(SimPageTable::Aarch64(k)) => {
                    Aarch64PageTable::create(mem, frames, Some(k), ())?
                }
                Some(_) => return Err(Error::InvalidArgument),
            }),
        })
    }

    fn root(&self) -> Frame {
        each!(self, t => t.root())
    }

    fn map<P: PhysMemory, F: FrameAllocator>(
        &self,
        mem: &P,
        frames: &F,
        page: Page,
        frame: Frame,
        flags: PageFlags,
    ) -> aspace::Result<()> {
        each!(self, t => t.map(mem, frames, page, frame, flags))
    }

    fn unmap<P: PhysMemory>(&self, mem: &P, page: Page) -> Option<Unmapped> {
        each!(self, t => t.unmap(mem, page))
    }

    fn translate<P: PhysMemory>(&self, mem: &P, page: Page) -> Option<(Frame, PageFlags)> {
        each!(self, t => t.translate(mem, page))
    }

    fn unmap_run<P: PhysMemory>(
        &self,
        mem: &P,
        first: Page,
        count: u64,
        out: &mut dyn FnMut(Unmapped),
    ) {
        each!(self, t => t.unmap_run(mem, first, count, out))
    }

    fn protect_run<P: PhysMemory, F: FrameAllocator>(
        &self,
        mem: &P,
        frames: &F,
        first: Page,
        count: u64,
        flags: PageFlags,
    ) -> Rewritten {
        each!(self, t => t.protect_run(mem, frames, first, count, flags))
    }

    fn move_run<P: PhysMemory, F: FrameAllocator>(
        &self,
        mem: &P,
        frames: &F,
        from: Page,
        to: Page,
        count: u64,
    ) -> aspace::Result<()> {
        each!(self, t => t.move_run(mem, frames, from, to, count))
    }

    fn table_frames(&self) -> u64 {
        each!(self, t => t.table_frames())
    }

    fn destroy<P: PhysMemory, F: FrameAllocator>(self, mem: &P, frames: &F) {
        each!(self, t => t.destroy(mem, frames))
    }
}
