//! The ELF loader: turns an executable into one area per loadable segment,
//! backed by [`ElfBackend`], after checking the whole file first so that a
//! refused image leaves the address space as it was.

use alloc::vec::Vec;
use core::fmt;

use ::elf::abi;
use ::elf::endian::AnyEndian;
use ::elf::ElfBytes;

use crate::addr::{VirtAddr, PAGE_SHIFT, PAGE_SIZE};
use crate::backend::elf::{ElfBackend, ElfImage, Segment};
use crate::flags::{AreaAttrs, AreaFlags};
use crate::internals::try_arc::TryArc;
use crate::machine::Machine;
use crate::space::AddressSpace;
use crate::Error;

/// Default load address of position-independent executables.
pub const DEFAULT_PIE_BIAS: u64 = 0x5555_5555_4000;

/// Why an ELF file was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// The headers could not be parsed (bad magic, truncated, bad sizes).
    Malformed(&'static str),
    /// Not a 64-bit little-endian x86_64 executable (`ET_EXEC` or `ET_DYN`).
    Unsupported(&'static str),
    /// No loadable segment.
    NoSegments,
    /// Segment `index`'s file part lies outside the file.
    OutsideFile(usize),
    /// Segment `index` has more file bytes than memory bytes.
    FileLargerThanMemory(usize),
    /// Segment `index` is writable and executable.
    WriteExec(usize),
    /// Segment `index` lies outside user space (NULL page, kernel space,
    /// wrapping).
    OutsideUserSpace(usize),
    /// Segments `.0` and `.1` share a page.
    Overlap(usize, usize),
    /// Creating an area failed (e.g. it collides with an existing one).
    Area(Error),
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::Malformed(why) => write!(f, "malformed ELF file: {why}"),
            ElfError::Unsupported(why) => write!(f, "unsupported ELF file: {why}"),
            ElfError::NoSegments => write!(f, "no loadable segment"),
            ElfError::OutsideFile(i) => write!(f, "segment {i} extends past the end of the file"),
            ElfError::FileLargerThanMemory(i) => write!(f, "segment {i} has filesz > memsz"),
            ElfError::WriteExec(i) => write!(f, "segment {i} is writable and executable"),
            ElfError::OutsideUserSpace(i) => write!(f, "segment {i} lies outside user space"),
            ElfError::Overlap(a, b) => write!(f, "segments {a} and {b} overlap"),
            ElfError::Area(e) => write!(f, "cannot create area: {e}"),
        }
    }
}

impl From<ElfError> for Error {
    /// `Area` errors keep their error; every other refusal is
    /// `InvalidArgument`.
    fn from(e: ElfError) -> Error {
        match e {
            ElfError::Area(e) => e,
            _ => Error::InvalidArgument,
        }
    }
}

/// What the loader did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedElf {
    /// Entry point, bias applied.
    pub entry: VirtAddr,
    /// The bias added to every address of the file.
    pub bias: u64,
    /// The segments, bias applied, in file order; one area each.
    pub segments: Vec<Segment>,
}

/// Reads and checks the loadable segments of `bytes`, with `bias` added
/// (`None`: 0 for `ET_EXEC`, [`DEFAULT_PIE_BIAS`] for `ET_DYN`).
pub fn parse(
    bytes: &[u8],
    bias: Option<u64>,
    user_end: u64,
) -> Result<(VirtAddr, u64, Vec<Segment>), ElfError> {
    let file = ElfBytes::<AnyEndian>::minimal_parse(bytes)
        .map_err(|_| ElfError::Malformed("bad ELF header"))?;
    let h = &file.ehdr;
    if h.class != ::elf::file::Class::ELF64 {
        return Err(ElfError::Unsupported("not a 64-bit file"));
    }
    // The loader only places segments; which instruction set runs them is
    // the kernel's business (it embeds programs built for its own).
    if ![abi::EM_X86_64, abi::EM_RISCV, abi::EM_AARCH64].contains(&h.e_machine) {
        return Err(ElfError::Unsupported(
            "not an x86_64, riscv64 or aarch64 file",
        ));
    }
    let bias = match (h.e_type, bias) {
        (abi::ET_EXEC, None) => 0,
        (abi::ET_DYN, None) => DEFAULT_PIE_BIAS,
        (abi::ET_EXEC | abi::ET_DYN, Some(b)) => b,
        _ => return Err(ElfError::Unsupported("not an executable")),
    };
    let table = file.segments().ok_or(ElfError::NoSegments)?;
    let len = bytes.len() as u64;
    let mut segments = Vec::new();
    let mut ranges: Vec<(u64, u64, usize)> = Vec::new();
    for (i, ph) in table.iter().enumerate() {
        if ph.p_type != abi::PT_LOAD || ph.p_memsz == 0 {
            continue;
        }
        if ph.p_filesz > ph.p_memsz {
            return Err(ElfError::FileLargerThanMemory(i));
        }
        match ph.p_offset.checked_add(ph.p_filesz) {
            Some(end) if end <= len => {}
            _ => return Err(ElfError::OutsideFile(i)),
        }
        let mut flags = AreaFlags::CACHEABLE;
        if ph.p_flags & abi::PF_R != 0 {
            flags |= AreaFlags::READ;
        }
        if ph.p_flags & abi::PF_W != 0 {
            flags |= AreaFlags::WRITE;
        }
        if ph.p_flags & abi::PF_X != 0 {
            flags |= AreaFlags::EXEC;
        }
        if flags.validate().is_err() {
            return Err(ElfError::WriteExec(i));
        }
        let vaddr = ph
            .p_vaddr
            .checked_add(bias)
            .ok_or(ElfError::OutsideUserSpace(i))?;
        let end = vaddr
            .checked_add(ph.p_memsz)
            .and_then(|e| e.checked_add(PAGE_SIZE - 1))
            .ok_or(ElfError::OutsideUserSpace(i))?;
        let (first, last) = (vaddr >> PAGE_SHIFT, end >> PAGE_SHIFT);
        if first == 0 || end > user_end {
            return Err(ElfError::OutsideUserSpace(i));
        }
        if let Some(&(_, _, j)) = ranges.iter().find(|&&(a, b, _)| first < b && a < last) {
            return Err(ElfError::Overlap(j, i));
        }
        if ranges.try_reserve(1).is_err() || segments.try_reserve(1).is_err() {
            return Err(ElfError::Area(Error::NoMemory));
        }
        ranges.push((first, last, i));
        segments.push(Segment {
            vaddr,
            memsz: ph.p_memsz,
            filesz: ph.p_filesz,
            offset: ph.p_offset,
            flags,
        });
    }
    if segments.is_empty() {
        return Err(ElfError::NoSegments);
    }
    let entry = h.e_entry.wrapping_add(bias);
    Ok((VirtAddr::new(entry), bias, segments))
}

/// Loads the executable `bytes`, already copied into `image`, into `space`:
/// one demand-paged area per loadable segment. Nothing is created unless
/// the whole file checks out; if an area cannot be created, those made
/// before it are destroyed again.
pub fn load<M: Machine>(
    space: &AddressSpace<M>,
    image: &TryArc<ElfImage>,
    bytes: &[u8],
    bias: Option<u64>,
) -> Result<LoadedElf, ElfError> {
    if image.len() != bytes.len() as u64 {
        return Err(ElfError::Malformed("image and bytes differ in size"));
    }
    let (entry, bias, segments) = parse(bytes, bias, space.user_end())?;
    let mut created: Vec<VirtAddr> = Vec::new();
    if created.try_reserve_exact(segments.len()).is_err() {
        return Err(ElfError::Area(Error::NoMemory));
    }
    for s in &segments {
        let base = VirtAddr::new(s.vaddr & !(PAGE_SIZE - 1));
        let size = s.vaddr + s.memsz - base.as_u64();
        let made = TryArc::try_backend(ElfBackend::new(image.clone(), *s));
        let created_area = made.and_then(|backend| {
            space.area_create_with(base, size, s.flags, AreaAttrs::empty(), backend)
        });
        if let Err(e) = created_area {
            for b in created {
                let _ = space.area_destroy(b);
            }
            return Err(ElfError::Area(e));
        }
        created.push(base);
    }
    Ok(LoadedElf {
        entry,
        bias,
        segments,
    })
}
