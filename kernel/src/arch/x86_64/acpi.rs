//! Just enough ACPI to count the CPUs: the RSDP, the RSDT/XSDT and the
//! MADT's processor entries.

use alloc::vec::Vec;

use super::regs::phys_to_virt;

// The helpers below read firmware memory through the direct map. Their
// callers pass only addresses of the BIOS data area, the EBDA, the BIOS
// area 0xe0000-0xfffff, and tables reached from the RSDP (RSDT/XSDT,
// MADT): memory the firmware placed below 4 GiB (so inside the direct map),
// reserved or below 1 MiB, thus never given to the frame allocator (which
// starts at 2 MiB and takes only available RAM) nor written by the kernel.
// The kernel trusts the firmware for the addresses and lengths in them.

/// `len` bytes of firmware memory at physical `pa` (see above).
fn bytes(pa: u64, len: usize) -> &'static [u8] {
    // SAFETY: `pa..pa + len` is firmware memory inside the direct map that
    // nothing writes (see above), so it is readable, initialised and
    // immutable for as long as the slice lives; `u8` needs no alignment.
    unsafe { core::slice::from_raw_parts(phys_to_virt(pa), len) }
}

/// The little-endian `u32` of firmware memory at physical `pa`.
fn u32_at(pa: u64) -> u32 {
    // SAFETY: 4 bytes of mapped, never-written firmware memory (see above);
    // ACPI fields need not be aligned, hence `read_unaligned`.
    unsafe { (phys_to_virt(pa) as *const u32).read_unaligned() }
}

/// The little-endian `u64` of firmware memory at physical `pa`.
fn u64_at(pa: u64) -> u64 {
    // SAFETY: 8 bytes of mapped, never-written firmware memory (see above);
    // ACPI fields need not be aligned, hence `read_unaligned`.
    unsafe { (phys_to_virt(pa) as *const u64).read_unaligned() }
}

fn checksum_ok(pa: u64, len: usize) -> bool {
    bytes(pa, len).iter().fold(0u8, |a, b| a.wrapping_add(*b)) == 0
}

fn find_rsdp() -> Option<u64> {
    // SAFETY: 0x40e is the BIOS data area's word holding the EBDA segment:
    // two bytes of low memory inside the direct map that the kernel never
    // writes (see above).
    let ebda = (unsafe { (phys_to_virt(0x40e) as *const u16).read_unaligned() } as u64) << 4;
    let ranges = [(ebda, ebda + 1024), (0xe0000, 0x100000)];
    for (lo, hi) in ranges {
        if lo == 0 {
            continue;
        }
        let mut a = lo;
        while a + 20 <= hi {
            if bytes(a, 8) == b"RSD PTR " && checksum_ok(a, 20) {
                return Some(a);
            }
            a += 16;
        }
    }
    None
}

/// APIC IDs of the enabled processors, in MADT order (the boot CPU is not
/// necessarily first). `None` when there is no usable table.
pub fn processors() -> Option<Vec<u32>> {
    let rsdp = find_rsdp()?;
    let revision = bytes(rsdp + 15, 1)[0];
    let (table, entry) = if revision >= 2 && u64_at(rsdp + 24) != 0 {
        (u64_at(rsdp + 24), 8)
    } else {
        (u32_at(rsdp + 16) as u64, 4)
    };
    let len = u32_at(table + 4) as u64;
    let mut madt = None;
    let mut p = table + 36;
    while p + entry <= table + len {
        let t = if entry == 8 {
            u64_at(p)
        } else {
            u32_at(p) as u64
        };
        if bytes(t, 4) == b"APIC" {
            madt = Some(t);
            break;
        }
        p += entry;
    }
    let madt = madt?;
    let len = u32_at(madt + 4) as u64;
    let mut ids = Vec::new();
    let mut p = madt + 44;
    while p + 2 <= madt + len {
        let b = bytes(p, 2);
        let (kind, elen) = (b[0], b[1] as u64);
        if elen < 2 {
            break;
        }
        if kind == 0 {
            let e = bytes(p, 8);
            let flags = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
            if flags & 1 != 0 {
                ids.push(e[3] as u32);
            }
        }
        p += elen;
    }
    Some(ids)
}
