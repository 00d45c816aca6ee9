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
