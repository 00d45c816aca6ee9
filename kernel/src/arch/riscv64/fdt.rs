//! What the kernel reads from the flattened device tree OpenSBI passes
//! (a1 at entry): the kernel command line (`/chosen/bootargs`, QEMU's
//! `-append`) and the RAM (`/memory@.../reg`). Everything else of QEMU
//! virt's layout is hard-coded (see `mod.rs`).

use alloc::string::String;

use super::phys_to_virt;

const MAGIC: u32 = 0xd00d_feed;
const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const NOP: u32 = 4;

/// What the device tree said.
#[derive(Default)]
pub struct BootInfo {
    /// The command line (empty when none).
    pub bootargs: String,
    /// The first RAM region: (base, size).
    pub memory: Option<(u64, u64)>,
}

/// A big-endian word of the device tree at physical `pa`.
fn be32(pa: u64) -> u32 {
    // SAFETY: `pa` lies inside the device tree blob (callers bound every
    // offset by its `totalsize`), which OpenSBI and QEMU left in RAM below
    // 4 GiB, inside the direct map, and which nothing writes before the
    // frame allocator gets the RAM (after this is read). Unaligned reads
    // are allowed by `read_unaligned`.
    u32::from_be(unsafe { (phys_to_virt(pa) as *const u32).read_unaligned() })
}

fn byte(pa: u64) -> u8 {
    // SAFETY: as in `be32`, one byte inside the blob.
    unsafe { phys_to_virt(pa).read() }
}

/// Reads the device tree at physical `dtb`; a missing or malformed one
/// gives the defaults.
pub fn parse(dtb: u64) -> BootInfo {
    let mut info = BootInfo::default();
    if dtb == 0 || be32(dtb) != MAGIC {
        return info;
    }
    let total = be32(dtb + 4) as u64;
    let structs = dtb + be32(dtb + 8) as u64;
    let strings = dtb + be32(dtb + 12) as u64;
    let end = dtb + total;
    let cstr = |mut at: u64| {
        let mut s = String::new();
        while at < end && byte(at) != 0 && s.len() < 256 {
            s.push(byte(at) as char);
            at += 1;
        }
        s
    };
    let mut at = structs;
    let mut depth = 0usize;
    let mut node = String::new();
    while at + 4 <= end {
        let token = be32(at);
        at += 4;
        match token {
            BEGIN_NODE => {
                let name = cstr(at);
                at += (name.len() as u64 + 1).div_ceil(4) * 4;
                depth += 1;
                if depth == 2 {
                    node = name;
                }
            }
            END_NODE => depth = depth.saturating_sub(1),
            PROP => {
                let len = be32(at) as u64;
                let name = cstr(strings + be32(at + 4) as u64);
                let value = at + 8;
                at = value + len.div_ceil(4) * 4;
                if depth != 2 || value + len > end {
                    continue;
                }
                if node == "chosen" && name == "bootargs" {
                    info.bootargs = cstr(value);
                } else if node.starts_with("memory") && name == "reg" && len >= 16 {
                    let word = |o: u64| (be32(value + o) as u64) << 32 | be32(value + o + 4) as u64;
                    info.memory.get_or_insert((word(0), word(8)));
                }
            }
            NOP => {}
            _ => break,
        }
    }
    info
}
