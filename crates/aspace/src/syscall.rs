//! The `sys_as_area_*` system calls with HelenOS's return conventions.
//!
//! Arguments arrive as raw machine words from user space and are checked
//! here: unknown flag bits and write+exec are refused, addresses are
//! validated by the core. `sys_as_area_create` returns the area's address on
//! success and `usize::MAX` (-1) on failure; the others return 0 or a
//! negative HelenOS errno (see [`Error::errno`](crate::Error::errno)).

use crate::addr::VirtAddr;
use crate::flags::AreaFlags;
use crate::machine::Machine;
use crate::placement::Placement;
use crate::space::AddressSpace;
use crate::Result;

/// The failure value of [`sys_as_area_create`] (HelenOS `AS_MAP_FAILED`).
pub const CREATE_FAILED: usize = usize::MAX;

/// The address that asks [`sys_as_area_create`] and
/// [`sys_as_area_create_any`] to place the area anywhere (HelenOS
/// `AS_AREA_ANY`, `(void *) -1`).
pub const AS_AREA_ANY: usize = usize::MAX;

fn errno(r: Result<()>) -> isize {
    match r {
        Ok(()) => 0,
        Err(e) => e.errno() as isize,
    }
}

/// Creates an anonymous, cacheable area at `address` of `size` bytes, or,
/// for `address ==` [`AS_AREA_ANY`], at the lowest free place (as
/// [`sys_as_area_create_any`] with a bound of 0).
pub fn sys_as_area_create<M: Machine>(
    space: &AddressSpace<M>,
    address: usize,
    size: usize,
    flags: u32,
) -> usize {
    let r = AreaFlags::from_user(flags)
        .and_then(|f| create(space, address, size, f | AreaFlags::CACHEABLE, 0));
    match r {
        Ok(a) => a.as_u64() as usize,
        Err(_) => CREATE_FAILED,
    }
}

/// A fixed or anywhere creation, for both system calls.
fn create<M: Machine>(
    space: &AddressSpace<M>,
    address: usize,
    size: usize,
    flags: AreaFlags,
    bound: usize,
) -> Result<VirtAddr> {
    if address == AS_AREA_ANY {
        let placement = Placement::above(VirtAddr::new(bound as u64));
        space.area_create_anywhere(placement, size as u64, flags)
    } else {
        space.area_create(VirtAddr::new(address as u64), size as u64, flags)
    }
}

/// HelenOS's `sys_as_area_create(base *, size, flags, bound)`: reads the
/// wanted base from user memory at `base_ptr` (a machine word); if it is
/// [`AS_AREA_ANY`], places an anonymous, cacheable area of `size` bytes at
/// the lowest free base at or above `bound`, else at that base; writes the
/// base chosen back to `base_ptr` and returns it. [`CREATE_FAILED`] if the
/// word cannot be read or written (the area is then destroyed again, so a
/// failed call leaves nothing behind) or the creation is refused.
pub fn sys_as_area_create_any<M: Machine>(
    space: &AddressSpace<M>,
    base_ptr: usize,
    size: usize,
    flags: u32,
    bound: usize,
) -> usize {
    let ptr = VirtAddr::new(base_ptr as u64);
    let mut word = [0u8; core::mem::size_of::<usize>()];
    let created = space.copy_from_user(ptr, &mut word).and_then(|()| {
        let address = usize::from_ne_bytes(word);
        let flags = AreaFlags::from_user(flags)?;
        create(space, address, size, flags | AreaFlags::CACHEABLE, bound)
    });
    let Ok(base) = created else {
        return CREATE_FAILED;
    };
    let chosen = base.as_u64() as usize;
    if space.copy_to_user(ptr, &chosen.to_ne_bytes()).is_err() {
        let _ = space.area_destroy(base);
        return CREATE_FAILED;
    }
    chosen
}

/// Resizes the area containing `address` to end at `address + size`.
pub fn sys_as_area_resize<M: Machine>(
    space: &AddressSpace<M>,
    address: usize,
    size: usize,
    _flags: u32,
) -> isize {
    errno(space.area_resize(VirtAddr::new(address as u64), size as u64))
}

/// Changes the rights of the area containing `address`.
pub fn sys_as_area_change_flags<M: Machine>(
    space: &AddressSpace<M>,
    address: usize,
    flags: u32,
) -> isize {
    errno(AreaFlags::from_user(flags).and_then(|f| {
        space.area_change_flags(VirtAddr::new(address as u64), f | AreaFlags::CACHEABLE)
    }))
}

/// Destroys the area containing `address`.
pub fn sys_as_area_destroy<M: Machine>(space: &AddressSpace<M>, address: usize) -> isize {
    errno(space.area_destroy(VirtAddr::new(address as u64)))
}

/// What [`sys_as_area_get_info`] and [`sys_as_area_list`] write to user
/// memory for one area: six little-endian words of 8 bytes (the C layout
/// `struct { u64 base, size; u32 flags, backend; u64 resident, reserved; }`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserAreaInfo {
    /// First address.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
    /// Rights (`AreaFlags` bits, HelenOS values).
    pub flags: u32,
    /// The backend: one of the `BACKEND_*` constants.
    pub backend: u32,
    /// Pages mapped now.
    pub resident: u64,
    /// Pages reserved against the commit limit.
    pub reserved: u64,
}

/// [`UserAreaInfo::backend`] of an anonymous area.
pub const BACKEND_ANON: u32 = 1;
/// [`UserAreaInfo::backend`] of an ELF segment.
pub const BACKEND_ELF: u32 = 2;
/// [`UserAreaInfo::backend`] of physical memory (device or framebuffer).
pub const BACKEND_PHYS: u32 = 3;
/// [`UserAreaInfo::backend`] of an area served by a user-space pager.
pub const BACKEND_USER: u32 = 4;
/// [`UserAreaInfo::backend`] of a backend the crate does not know (a
/// kernel's own).
pub const BACKEND_OTHER: u32 = 0;

impl UserAreaInfo {
    /// Bytes one record takes in user memory.
    pub const SIZE: usize = 40;

    /// The record of `info`.
    pub fn new(info: &crate::AreaInfo) -> Self {
        let backend = match info.backend {
            "anon" => BACKEND_ANON,
            "elf" => BACKEND_ELF,
            "phys" => BACKEND_PHYS,
            "pager" => BACKEND_USER,
            _ => BACKEND_OTHER,
        };
        Self {
            base: info.base.as_u64(),
            size: info.size(),
            flags: info.flags.bits(),
            backend,
            resident: info.resident,
            reserved: info.reserved,
        }
    }

    /// The record as user memory holds it.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..8].copy_from_slice(&self.base.to_le_bytes());
        b[8..16].copy_from_slice(&self.size.to_le_bytes());
        b[16..20].copy_from_slice(&self.flags.to_le_bytes());
        b[20..24].copy_from_slice(&self.backend.to_le_bytes());
        b[24..32].copy_from_slice(&self.resident.to_le_bytes());
        b[32..40].copy_from_slice(&self.reserved.to_le_bytes());
        b
    }

    /// A record read back from user memory.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or([0; 4]));
        Self {
            base: u64_at(0),
            size: u64_at(8),
            flags: u32_at(16),
            backend: u32_at(20),
            resident: u64_at(24),
            reserved: u64_at(32),
        }
    }
}

/// Writes the [`UserAreaInfo`] of the area containing `address` to user
/// memory at `dest` (HelenOS `as_area_get_info`). Returns 0, `ENOENT` when
/// no area contains `address`, or `EBADMEM` when `dest` cannot take the
/// record (nothing is written then but, as for any user copy, the bytes of
/// pages before the failing one).
pub fn sys_as_area_get_info<M: Machine>(
    space: &AddressSpace<M>,
    address: usize,
    dest: usize,
) -> isize {
    let Some(info) = space.area(VirtAddr::new(address as u64)) else {
        return errno(Err(crate::Error::NotFound));
    };
    let record = UserAreaInfo::new(&info).to_bytes();
    errno(space.copy_to_user(VirtAddr::new(dest as u64), &record))
}

/// Writes the records of the space's areas, lowest first, to user memory
/// at `dest`, at most `max` of them, and returns how many areas the space
/// has (so a caller whose buffer was short can retry with a larger one), or
/// `EBADMEM` when the buffer is not writable user memory, or `ENOMEM` when
/// the kernel heap refuses the records' buffer (nothing written then).
pub fn sys_as_area_list<M: Machine>(space: &AddressSpace<M>, dest: usize, max: usize) -> isize {
    // The records are gathered under one hold of the tree, into a buffer
    // the heap may refuse (`ENOMEM`), then copied once the hold is gone.
    let mut bytes = alloc::vec::Vec::new();
    let count = {
        let lookup = space.lookup();
        let count = lookup.iter().count();
        let n = count.min(max);
        if bytes.try_reserve_exact(n * UserAreaInfo::SIZE).is_err() {
            return errno(Err(crate::Error::NoMemory));
        }
        for info in lookup.iter().take(n) {
            bytes.extend_from_slice(&UserAreaInfo::new(&info).to_bytes());
        }
        count
    };
    if !bytes.is_empty() {
        if let Err(e) = space.copy_to_user(VirtAddr::new(dest as u64), &bytes) {
            return e.errno() as isize;
        }
    }
    count as isize
}
