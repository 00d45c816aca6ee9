//! The multiboot information: the memory map and the command line.

use super::regs::{phys_to_virt, KERNEL_VMA};
use crate::mm::{FRAMES, MAX_FRAMES};
use aspace::PAGE_SIZE;

extern "C" {
    static __kernel_end: u8;
}

/// Physical address one past the kernel image (including its bss).
pub fn kernel_end_phys() -> u64 {
    &raw const __kernel_end as u64 - KERNEL_VMA
}

/// One region of the multiboot memory map.
#[derive(Clone, Copy, Debug)]
pub struct Region {
    /// First byte.
    pub base: u64,
    /// Length in bytes.
    pub len: u64,
    /// 1 = available RAM.
    pub kind: u32,
}

// `mb_u32` and `mb_u64` read the multiboot information and its memory map,
// which the loader leaves at 32-bit physical addresses (inside the direct
// map) in low memory: QEMU puts them around 0x9000, below the frame
// allocator's 2 MiB floor and outside the kernel image, so nothing has
// written them, not even `add_range` while `memory_map` walks the map.
// `memory_map` only reads fields that the flags and lengths there say exist;
// `command_line` reads the string the flags say exists, up to its NUL.

/// The `u32` of the multiboot information at physical `pa` (see above).
fn mb_u32(pa: u64) -> u32 {
    // SAFETY: 4 readable, never-written bytes of the loader's structures
    // (see above), outside any Rust allocation; they are only 4-byte
    // aligned at best, hence `read_unaligned`.
    unsafe { (phys_to_virt(pa) as *const u32).read_unaligned() }
}

/// The byte of the multiboot information at physical `pa` (see above).
fn mb_u8(pa: u64) -> u8 {
    // SAFETY: a readable, never-written byte of the loader's structures (the
    // command line, read up to its NUL), outside any Rust allocation.
    unsafe { phys_to_virt(pa).read() }
}

/// The `u64` of the multiboot information at physical `pa` (see above).
fn mb_u64(pa: u64) -> u64 {
    // SAFETY: 8 readable, never-written bytes of the loader's structures
    // (see above), outside any Rust allocation; memory-map entries put their
    // 64-bit fields at offsets 4 and 12, hence `read_unaligned`.
    unsafe { (phys_to_virt(pa) as *const u64).read_unaligned() }
}

/// The kernel command line the loader passed (QEMU's `-append`), up to 255
/// bytes; empty when there is none. Read before the frame allocator hands
/// out anything, like the memory map.
pub fn command_line(mb_info: u32) -> alloc::string::String {
    let info = mb_info as u64;
    let mut line = alloc::string::String::new();
    if mb_u32(info) & (1 << 2) == 0 {
        return line;
    }
    let at = mb_u32(info + 16) as u64;
    for i in 0..255 {
        let b = mb_u8(at + i);
        if b == 0 {
            break;
        }
        line.push(if b.is_ascii_graphic() || b == b' ' {
            b as char
        } else {
            '?'
        });
    }
    line
}

/// Reads the multiboot memory map and calls `f` on each region.
pub fn memory_map(mb_info: u32, mut f: impl FnMut(Region)) -> bool {
    let info = mb_info as u64;
    let flags = mb_u32(info);
    if flags & (1 << 6) == 0 {
        return false;
    }
    let len = mb_u32(info + 44) as u64;
    let addr = mb_u32(info + 48) as u64;
    let mut off = 0;
    while off < len {
        let e = addr + off;
        let size = mb_u32(e) as u64;
        let base = mb_u64(e + 4);
        let rlen = mb_u64(e + 12);
        let kind = mb_u32(e + 20);
        f(Region {
            base,
            len: rlen,
            kind,
        });
        off += size + 4;
    }
    true
}

/// Feeds the available RAM above the kernel image to the frame allocator.
pub fn init_frames(mb_info: u32) {
    let floor = kernel_end_phys().max(0x20_0000);
    let ok = memory_map(mb_info, |r| {
        crate::kprintln!(
            "  memory {:#012x}-{:#012x} {}",
            r.base,
            r.base + r.len,
            if r.kind == 1 { "available" } else { "reserved" }
        );
        if r.kind == 1 {
            let start = r.base.max(floor);
            let end = (r.base + r.len).min(MAX_FRAMES as u64 * PAGE_SIZE);
            if start < end {
                FRAMES.add_range(start, end);
            }
        }
    });
    if !ok {
        panic!("the multiboot loader gave no memory map");
    }
}
