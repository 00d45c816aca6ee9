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
use crate::space::AddressSpace;
use crate::Result;

/// The failure value of [`sys_as_area_create`].
pub const CREATE_FAILED: usize = usize::MAX;

fn errno(r: Result<()>) -> isize {
    match r {
        Ok(()) => 0,
        Err(e) => e.errno() as isize,
    }
}

/// Creates an anonymous, cacheable area at `address` of `size` bytes.
pub fn sys_as_area_create<M: Machine>(
    space: &AddressSpace<M>,
    address: usize,
    size: usize,
    flags: u32,
) -> usize {
    let r = AreaFlags::from_user(flags).and_then(|f| {
        space.area_create(
            VirtAddr::new(address as u64),
            size as u64,
            f | AreaFlags::CACHEABLE,
        )
    });
    match r {
        Ok(a) => a.as_u64() as usize,
        Err(_) => CREATE_FAILED,
    }
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
