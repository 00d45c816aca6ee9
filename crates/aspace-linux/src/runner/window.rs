//! Reserving the window: a free range right below every hole Linux's
//! top-down placement could use first, so placement without a hint lands
//! top-down from the window's end.

use crate::consts::PAGE_SIZE;
use crate::maps::MapsLine;
use std::io;
use std::string::ToString;
use std::vec::Vec;

/// The window's default length: 64 MiB.
pub const WINDOW_LEN: u64 = 64 << 20;

/// This process's maps, read now.
pub fn read_maps() -> io::Result<Vec<MapsLine>> {
    let text = std::fs::read_to_string("/proc/self/maps")?;
    MapsLine::parse_all(&text)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

fn mmap_raw(addr: u64, len: u64, prot: i32, flags: i32) -> io::Result<u64> {
    // SAFETY: only ever called without MAP_FIXED (the kernel picks a free
    // range) or with MAP_FIXED_NOREPLACE (fails rather than replace), so no
    // existing memory is affected.
    let p = unsafe { libc::mmap(addr as *mut libc::c_void, len as usize, prot, flags, -1, 0) };
    if p == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(p as u64)
    }
}

fn munmap_raw(addr: u64, len: u64) {
    // SAFETY: only called on ranges this module mapped itself and nothing
    // else uses.
    unsafe { libc::munmap(addr as *mut libc::c_void, len as usize) };
}

const PLACEHOLDER: i32 = libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;

/// Finds and checks a window of `len` bytes; returns `[lo, hi)`.
///
/// Repeatedly maps one `PROT_NONE` page where the kernel's top-down search
/// puts it. If the free range below that page is at least `len`, the page
/// stays as a guard above the window (a shared anonymous mapping: it never
/// merges with anything the calls make) and the window is the `len` bytes
/// below it. Otherwise the hole is filled with a `PROT_NONE` placeholder and
/// the search goes on. Finally the window is checked free (mapped with
/// `MAP_FIXED_NOREPLACE`, then unmapped) and a hint-less one-page mapping is
/// checked to land at its top.
pub fn reserve(len: u64) -> io::Result<(u64, u64)> {
    for _ in 0..1024 {
        let probe = mmap_raw(0, PAGE_SIZE, libc::PROT_NONE, PLACEHOLDER)?;
        let below = read_maps()?
            .iter()
            .filter(|l| l.end <= probe)
            .map(|l| l.end)
            .max()
            .unwrap_or(0);
        if probe - below >= len + PAGE_SIZE {
            let (lo, hi) = (probe - len, probe);
            let got = mmap_raw(
                lo,
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            )?;
            munmap_raw(got, len);
            if got != lo {
                return Err(io::Error::other(std::format!(
                    "window {lo:#x} not free (got {got:#x})"
                )));
            }
            let top = mmap_raw(
                0,
                PAGE_SIZE,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            )?;
            munmap_raw(top, PAGE_SIZE);
            if top != hi - PAGE_SIZE {
                return Err(io::Error::other(std::format!(
                    "placement not pinned: a page went to {top:#x}, not the window's top {:#x}",
                    hi - PAGE_SIZE
                )));
            }
            return Ok((lo, hi));
        }
        munmap_raw(probe, PAGE_SIZE);
        mmap_raw(
            below,
            probe + PAGE_SIZE - below,
            libc::PROT_NONE,
            PLACEHOLDER | libc::MAP_FIXED_NOREPLACE,
        )?;
    }
    Err(io::Error::other("no window found after filling 1024 holes"))
}
