//! Executes lines on the real kernel and observes the window afterwards.

use super::window::{self, read_maps, WINDOW_LEN};
use crate::call::{Call, FileRef};
use crate::command::{Command, Line, Outcome, Residency};
use crate::consts::{MADV_GUARD_INSTALL, MADV_REMOVE, PAGE_SIZE};
use crate::digest::words_digest;
use crate::errno::Errno;
use crate::gen::MAX_FILE_OFFSET_PAGES;
use crate::maps::MapsLine;
use crate::mm::STACK_GUARD_GAP;
use crate::protocol::{Header, Response, State};
use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::string::{String, ToString};
use std::vec;

/// How far above its start the break may be moved: 16 MiB.
pub const BRK_SPAN: u64 = 16 << 20;

/// The size of every in-memory file: 64 MiB, far past the offsets and
/// lengths the generator uses (every page allocated when the file is made,
/// so that Linux keeps each page it hands out).
pub const FILE_SIZE: u64 = 64 << 20;

const _: () = assert!(MAX_FILE_OFFSET_PAGES * PAGE_SIZE < FILE_SIZE / 2);

fn round_up(len: u64) -> Option<u64> {
    len.checked_add(PAGE_SIZE - 1).map(|l| l & !(PAGE_SIZE - 1))
}

/// Allocates every page of the shmem object behind `fd` (`len` bytes, its
/// size kept), so that Linux keeps each page it hands out. A page of a
/// memfd or shared anonymous object that a read fault allocated is clean,
/// and once no page table maps it Linux may drop it from the page cache
/// whenever it drops caches (`drop_caches`, reclaim): its contents were
/// zero, so only `mincore` could tell, but that made the differential
/// test's answers depend on when the machine dropped caches (aspace keeps
/// the page). A page `fallocate` made is dirty, so it stays; until it is
/// first touched it is not up to date, and `mincore` reports it absent, as
/// it does a hole.
fn keep_pages(fd: i32, len: u64) -> io::Result<()> {
    // SAFETY: fallocate changes only the object behind `fd`, which the
    // caller owns; mode 0 within the size keeps the size.
    if unsafe { libc::fallocate(fd, 0, 0, len as libc::off_t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `cachestat(2)` (Linux 6.5+; one number on every architecture).
const SYS_CACHESTAT: libc::c_long = 451;
/// `mseal` (Linux 6.10+), the same number on every architecture.
const SYS_MSEAL: libc::c_long = 462;

/// Whether this kernel has `mseal` (a length of 0 does nothing where it
/// does; `ENOSYS` where not).
fn mseal_supported() -> bool {
    // SAFETY: a length of 0 seals nothing.
    unsafe { libc::syscall(SYS_MSEAL, 0u64, 0u64, 0u64) == 0 }
}

/// How many of the pages `[lo, hi)` of the object behind `fd` are in its
/// page cache (allocated, up to date or not); `None` if `cachestat`
/// cannot say.
fn cached(fd: i32, lo: u64, hi: u64) -> Option<u64> {
    let range = [lo * PAGE_SIZE, (hi - lo) * PAGE_SIZE];
    let mut stat = [0u64; 5];
    // SAFETY: cachestat reads the two-word range and writes the five-word
    // result, both ours and of those sizes; it changes nothing else.
    let r = unsafe { libc::syscall(SYS_CACHESTAT, fd, range.as_ptr(), stat.as_mut_ptr(), 0) };
    (r == 0).then_some(stat[0])
}

/// Allocates ([`keep_pages`]'s way) every page of the first `len` bytes
/// of the object behind `fd` that is not in its page cache: the holes
/// `MADV_REMOVE` punched, and nothing else (found by halving the range
/// where some pages are missing).
fn fill_holes(fd: i32, len: u64) {
    fn fill(fd: i32, lo: u64, hi: u64) {
        match cached(fd, lo, hi) {
            Some(n) if n >= hi - lo => {}
            Some(0) => {
                let (at, n) = (
                    (lo * PAGE_SIZE) as libc::off_t,
                    ((hi - lo) * PAGE_SIZE) as libc::off_t,
                );
                // SAFETY: as in keep_pages, within the object's size.
                unsafe { libc::fallocate(fd, 0, at, n) };
            }
            Some(_) => {
                let mid = lo + (hi - lo) / 2;
                fill(fd, lo, mid);
                fill(fd, mid, hi);
            }
            None => {}
        }
    }
    if len >= PAGE_SIZE {
        fill(fd, 0, len / PAGE_SIZE);
    }
}

fn errno() -> Errno {
    Errno(io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

/// The runner's state: the window, the break's span, the in-memory files and
/// the sizes of the objects behind shared mappings.
pub struct Engine {
    header: Header,
    /// File name -> descriptor.
    files: HashMap<String, i32>,
    /// Inode -> object size in bytes (files and shared anonymous objects).
    sizes: HashMap<u64, u64>,
    /// The lowest break `brk` may ask for without being refused.
    brk_floor: u64,
    /// `/proc/self/pagemap`, which tells guard pages.
    pagemap: std::fs::File,
}

/// Bit 58 of a `/proc/PID/pagemap` entry: the page is a guard page
/// (`MADV_GUARD_INSTALL`; Linux 6.14+).
const PM_GUARD_REGION: u64 = 1 << 58;

fn start_brk() -> io::Result<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name's closing parenthesis start at field 3;
    // `start_brk` is field 47.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    after
        .split_whitespace()
        .nth(47 - 3)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| io::Error::other("no start_brk in /proc/self/stat"))
}

/// A setting under `/proc/sys`, by its dotted name (`vm.max_map_count`).
fn sysctl(name: &str) -> String {
    let path = std::format!("/proc/sys/{}", name.replace('.', "/"));
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Whether this kernel has guard pages as the runner needs them:
/// `MADV_GUARD_INSTALL` in private anonymous memory (Linux 6.13+) and in
/// shared file memory (6.15+), and their bit in `/proc/self/pagemap`
/// (6.14+), each tried on a page of its own.
fn guards_supported() -> bool {
    // SAFETY: memfd_create touches no memory of ours; the descriptor is
    // closed below.
    let fd = unsafe { libc::memfd_create(c"guard-probe".as_ptr(), libc::MFD_CLOEXEC) };
    // SAFETY: sizes the memfd just made.
    let sized = fd >= 0 && unsafe { libc::ftruncate(fd, PAGE_SIZE as libc::off_t) } == 0;
    let ok = sized
        && guard_probe(libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1)
        && guard_probe(libc::MAP_SHARED, fd);
    if fd >= 0 {
        // SAFETY: the descriptor made above, used by nothing else.
        unsafe { libc::close(fd) };
    }
    ok
}

/// Whether a page mapped with `flags` (of `fd`) takes a guard page that
/// `/proc/self/pagemap` shows.
fn guard_probe(flags: i32, fd: i32) -> bool {
    use std::os::unix::fs::FileExt;
    // SAFETY: a new page placed by the kernel, which nothing else uses.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            PAGE_SIZE as usize,
            libc::PROT_READ,
            flags,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return false;
    }
    // SAFETY: the page just mapped, which nothing else uses.
    let installed = unsafe { libc::madvise(p, PAGE_SIZE as usize, MADV_GUARD_INSTALL) } == 0;
    let mut entry = [0u8; 8];
    let seen = std::fs::File::open("/proc/self/pagemap")
        .and_then(|f| f.read_exact_at(&mut entry, p as u64 / PAGE_SIZE * 8))
        .is_ok_and(|()| u64::from_le_bytes(entry) & PM_GUARD_REGION != 0);
    // SAFETY: unmaps the page just mapped.
    unsafe { libc::munmap(p, PAGE_SIZE as usize) };
    installed && seen
}

/// Whether this process may lock any amount of memory (`CAP_IPC_LOCK` in
/// its effective set, or no `RLIMIT_MEMLOCK`): `mlockall` and locked
/// mappings then never meet a limit, as on the aspace side.
fn memlock_unlimited() -> bool {
    let cap = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))?
                .trim()
                .to_string();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|caps| caps >> 14 & 1 == 1);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the limit into `lim`, which it may.
    let r = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    cap || (r == 0 && lim.rlim_cur == libc::RLIM_INFINITY)
}

/// A soft resource limit in bytes, as the header gives it
/// (`memlock.bytes` for `RLIMIT_MEMLOCK`, `stack.bytes` for
/// `RLIMIT_STACK`), or `unlimited`.
fn limit_bytes(resource: libc::__rlimit_resource_t) -> String {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the limit into `lim`, which it may.
    let r = unsafe { libc::getrlimit(resource, &mut lim) };
    match (r, lim.rlim_cur) {
        (0, libc::RLIM_INFINITY) => "unlimited".into(),
        (0, bytes) => bytes.to_string(),
        _ => "?".into(),
    }
}

/// Whether the mapping of this process starting at `start` grows down
/// (`gd` among its smaps `VmFlags`).
fn grows_down(start: u64) -> io::Result<bool> {
    let text = std::fs::read_to_string("/proc/self/smaps")?;
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    let mut ours = false;
    for l in text.lines() {
        let range = l.split(' ').next().and_then(|r| r.split_once('-'));
        if let Some((a, b)) = range.filter(|(a, b)| hex(a) && hex(b)) {
            ours = u64::from_str_radix(a, 16) == Ok(start) && b.len() <= 16;
        } else if ours {
            if let Some(flags) = l.strip_prefix("VmFlags:") {
                return Ok(flags.split_whitespace().any(|f| f == "gd"));
            }
        }
    }
    Ok(false)
}

/// Makes this process one that `RLIMIT_MEMLOCK` binds: the limit set to
/// `pages` pages (soft and hard) and `CAP_IPC_LOCK` dropped from its
/// capability sets (a root process keeps every other capability).
pub fn limit_memlock(pages: u64) -> io::Result<()> {
    let bytes = pages.saturating_mul(4096);
    let lim = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: setrlimit reads `lim` only.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    /// `struct __user_cap_header_struct`.
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    /// `struct __user_cap_data_struct`.
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_IPC_LOCK: u32 = 14;
    let mut head = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget writes two data structs (version 3) and the header.
    if unsafe { libc::syscall(libc::SYS_capget, &mut head, data.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let bit = !(1u32 << CAP_IPC_LOCK);
    data[0].effective &= bit;
    data[0].permitted &= bit;
    data[0].inheritable &= bit;
    // SAFETY: capset reads the header and two data structs.
    if unsafe { libc::syscall(libc::SYS_capset, &head, data.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn brk_now() -> u64 {
    // SAFETY: brk(0) only asks for the current break.
    unsafe { libc::syscall(libc::SYS_brk, 0u64) as u64 }
}

impl Engine {
    /// Reserves the window (see [`window::reserve`]) and reads the break.
    pub fn setup() -> io::Result<Engine> {
        // No transparent huge pages in this process: a fault in a
        // `MADV_HUGEPAGE` mapping would make 512 pages resident at once
        // (and `khugepaged` collapse others later), which `mincore` shows;
        // aspace maps pages one by one.
        // SAFETY: prctl with these arguments reads nothing of ours.
        if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let win = window::reserve(WINDOW_LEN)?;
        let start = start_brk()?;
        let now = brk_now();
        let floor = now.max(start);
        let header = Header {
            window: win,
            brk_start: start,
            brk_now: now,
            brk_span: (floor, floor + BRK_SPAN),
            sysctl: [
                "kernel.osrelease",
                "vm.overcommit_memory",
                "vm.overcommit_ratio",
                "vm.max_map_count",
            ]
            .iter()
            .map(|k| (k.to_string(), sysctl(k)))
            .chain([
                (
                    "memlock.unlimited".to_string(),
                    if memlock_unlimited() { "1" } else { "0" }.to_string(),
                ),
                (
                    "memlock.bytes".to_string(),
                    limit_bytes(libc::RLIMIT_MEMLOCK),
                ),
                ("stack.bytes".to_string(), limit_bytes(libc::RLIMIT_STACK)),
                (
                    "madv.guard".to_string(),
                    if guards_supported() { "1" } else { "0" }.to_string(),
                ),
                (
                    "mseal".to_string(),
                    if mseal_supported() { "1" } else { "0" }.to_string(),
                ),
            ])
            .collect(),
        };
        Ok(Engine {
            header,
            files: HashMap::new(),
            sizes: HashMap::new(),
            brk_floor: floor,
            pagemap: std::fs::File::open("/proc/self/pagemap")?,
        })
    }

    /// What the runner says at start.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Whether `[addr, addr + len)` (pages rounded up) lies in the window.
    /// An unaligned `addr` passes: every call that takes a range (`munmap`,
    /// `mprotect`, `madvise`, `mremap`, `mmap` with `MAP_FIXED*`) refuses it
    /// with `EINVAL` before touching anything, and that answer is wanted.
    fn in_window(&self, addr: u64, len: u64) -> bool {
        let (lo, hi) = self.header.window;
        // An unaligned address counts from its page, as `mlock` takes it
        // (the calls that refuse one refuse it on both sides anyway).
        let offset = addr % PAGE_SIZE;
        let (addr, len) = (addr - offset, len.saturating_add(offset));
        match round_up(len).and_then(|l| addr.checked_add(l)) {
            Some(end) => addr >= lo && end <= hi,
            None => false,
        }
    }

    fn file(&mut self, FileRef(name): &FileRef) -> io::Result<i32> {
        if let Some(&fd) = self.files.get(name) {
            return Ok(fd);
        }
        let cname =
            CString::new(name.as_str()).map_err(|_| io::Error::other("NUL in file name"))?;
        // SAFETY: a valid C string; memfd_create touches no memory of ours.
        let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is the descriptor just created; `st` is written by fstat.
        let ino = unsafe {
            if libc::ftruncate(fd, FILE_SIZE as libc::off_t) != 0 {
                return Err(io::Error::last_os_error());
            }
            let mut st: libc::stat = core::mem::zeroed();
            if libc::fstat(fd, &mut st) != 0 {
                return Err(io::Error::last_os_error());
            }
            st.st_ino
        };
        keep_pages(fd, FILE_SIZE)?;
        self.sizes.insert(ino, FILE_SIZE);
        self.files.insert(name.clone(), fd);
        Ok(fd)
    }

    /// Unmaps a placement that landed outside the window (keeps the process
    /// clean); the outcome still reports where it landed.
    fn evict_outside(&self, addr: u64, len: u64) {
        if !self.in_window(addr, len) {
            if let Some(len) = round_up(len) {
                // SAFETY: the kernel just placed this mapping for us outside
                // the window; nothing else uses it.
                unsafe { libc::munmap(addr as *mut libc::c_void, len as usize) };
            }
        }
    }

    fn call(&mut self, call: &Call) -> Outcome {
        match call {
            Call::Mmap {
                addr,
                len,
                prot,
                flags,
                file,
                offset,
            } => {
                if flags.fixed() && *len != 0 && !self.in_window(*addr, *len) {
                    return Outcome::Refused;
                }
                let fd = match file {
                    Some(f) => match self.file(f) {
                        Ok(fd) => fd,
                        Err(_) => return Outcome::Refused,
                    },
                    None => -1,
                };
                // SAFETY: with MAP_FIXED the range lies in the window, which
                // only the calls use; without it the kernel picks a free range.
                let p = unsafe {
                    libc::mmap(
                        *addr as *mut libc::c_void,
                        *len as usize,
                        prot.0 as i32,
                        flags.0 as i32,
                        fd,
                        *offset as libc::off_t,
                    )
                };
                if p == libc::MAP_FAILED {
                    return Outcome::Err(errno());
                }
                let got = p as u64;
                if flags.shared() && file.is_none() {
                    self.note_object(got, *len);
                }
                self.evict_outside(got, *len);
                Outcome::Addr(got)
            }
            Call::Munmap { addr, len } => {
                if *len != 0 && !self.in_window(*addr, *len) {
                    return Outcome::Refused;
                }
                // SAFETY: the range lies in the window, which only the calls use.
                Self::zero_or_errno(unsafe {
                    libc::munmap(*addr as *mut libc::c_void, *len as usize)
                })
            }
            Call::Mprotect { addr, len, prot } => {
                if *len != 0 && !self.in_window(*addr, *len) {
                    return Outcome::Refused;
                }
                // SAFETY: as for munmap.
                Self::zero_or_errno(unsafe {
                    libc::mprotect(*addr as *mut libc::c_void, *len as usize, prot.0 as i32)
                })
            }
            Call::Madvise { addr, len, advice } => {
                if *len != 0 && !self.in_window(*addr, *len) {
                    return Outcome::Refused;
                }
                // SAFETY: as for munmap.
                let r = Self::zero_or_errno(unsafe {
                    libc::madvise(*addr as *mut libc::c_void, *len as usize, advice.0)
                });
                if advice.0 == MADV_REMOVE {
                    // The hole's pages are allocated again, as every
                    // object's are ([`keep_pages`]).
                    self.fill_holes();
                }
                r
            }
            Call::Msync { addr, len, flags } => {
                if *len != 0 && !self.in_window(*addr, *len) {
                    return Outcome::Refused;
                }
                // SAFETY: as for munmap; msync changes no mapping.
                Self::zero_or_errno(unsafe {
                    libc::msync(*addr as *mut libc::c_void, *len as usize, flags.0 as i32)
                })
            }
            Call::Mlock { addr, len, flags } => {
                if *len != 0 && !self.in_window(*addr, *len) {
                    return Outcome::Refused;
                }
                // SAFETY: as for munmap; locking changes no contents.
                Self::zero_or_errno(unsafe {
                    libc::syscall(libc::SYS_mlock2, *addr, *len, flags.0) as i32
                })
            }
            Call::Munlock { addr, len } => {
                if *len != 0 && !self.in_window(*addr, *len) {
                    return Outcome::Refused;
                }
                // SAFETY: as for munmap.
                Self::zero_or_errno(unsafe {
                    libc::munlock(*addr as *const libc::c_void, *len as usize)
                })
            }
            Call::Mlockall { flags } => {
                // SAFETY: locking changes no mapping's contents; the whole
                // process's mappings get locked, which is allowed.
                Self::zero_or_errno(unsafe { libc::mlockall(flags.0 as i32) })
            }
            Call::Munlockall => {
                // SAFETY: unlocking changes no mapping's contents.
                Self::zero_or_errno(unsafe { libc::munlockall() })
            }
            Call::Mseal { addr, len, flags } => {
                if *len != 0 && !self.in_window(*addr, *len) {
                    return Outcome::Refused;
                }
                // SAFETY: sealing changes no contents, only what later
                // calls may do to the window's mappings (this runner ends
                // with its sequence).
                Self::zero_or_errno(unsafe { libc::syscall(SYS_MSEAL, *addr, *len, *flags) as i32 })
            }
            Call::Mincore { addr, len } => {
                if *len != 0 && !self.in_window(*addr, *len) {
                    return Outcome::Refused;
                }
                // At most the window's pages (checked above).
                let mut vec = vec![0u8; len.div_ceil(PAGE_SIZE) as usize];
                // SAFETY: mincore only reads the page tables and writes
                // `vec`, which has a byte for every page of the range.
                let r = unsafe {
                    libc::mincore(*addr as *mut libc::c_void, *len as usize, vec.as_mut_ptr())
                };
                if r != 0 {
                    return Outcome::Err(errno());
                }
                let mut answer = Residency::new();
                for b in vec {
                    answer.push(b & 1 != 0);
                }
                Outcome::Resident(answer)
            }
            Call::Mremap {
                old_addr,
                old_len,
                new_len,
                flags,
                new_addr,
            } => {
                if !self.in_window(*old_addr, (*old_len).max(1))
                    || (flags.fixed() && !self.in_window(*new_addr, *new_len))
                {
                    return Outcome::Refused;
                }
                // SAFETY: the old range (and a fixed target) lie in the window,
                // which only the calls use; any other target is picked free by
                // the kernel.
                let r = unsafe {
                    libc::syscall(
                        libc::SYS_mremap,
                        *old_addr,
                        *old_len,
                        *new_len,
                        flags.0 as u64,
                        *new_addr,
                    )
                };
                if r == -1 {
                    return Outcome::Err(errno());
                }
                let got = r as u64;
                self.evict_outside(got, *new_len);
                Outcome::Addr(got)
            }
            Call::Brk { addr } => {
                let (_, hi) = self.header.brk_span;
                let below_floor =
                    *addr != 0 && *addr < self.brk_floor && self.brk_floor != self.header.brk_start;
                if below_floor || *addr >= hi {
                    return Outcome::Refused;
                }
                // SAFETY: the break moves within its span, which nothing else
                // in this process uses (see the module docs).
                Outcome::Addr(unsafe { libc::syscall(libc::SYS_brk, *addr) } as u64)
            }
        }
    }

    fn zero_or_errno(r: i32) -> Outcome {
        if r == 0 {
            Outcome::Ok
        } else {
            Outcome::Err(errno())
        }
    }

    /// Allocates again ([`keep_pages`]) the pages `MADV_REMOVE` punched out
    /// of the files and of the objects mapped in the window: a read fault
    /// in such a hole would bring in a clean page Linux may drop. Only the
    /// holes: `fallocate` over a page it allocated before but that was
    /// never touched makes that page up to date, and `mincore` would then
    /// see it (`SEEK_HOLE` takes such a page for a hole, `cachestat` does
    /// not, so the holes are found with `cachestat`; without it, Linux
    /// before 6.5, nothing is done).
    fn fill_holes(&self) {
        for &fd in self.files.values() {
            fill_holes(fd, FILE_SIZE);
        }
        let (lo, hi) = self.header.window;
        let Ok(maps) = read_maps() else { return };
        for l in maps
            .iter()
            .filter(|l| l.inode != 0 && l.start >= lo && l.end <= hi)
        {
            let Some(&size) = self.sizes.get(&l.inode) else {
                continue;
            };
            let path = std::format!("/proc/self/map_files/{:x}-{:x}", l.start, l.end);
            if let Ok(f) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
            {
                use std::os::fd::AsRawFd;
                fill_holes(f.as_raw_fd(), size);
            }
        }
    }

    /// Records the size of the shared anonymous object just mapped at `addr`
    /// and allocates its pages ([`keep_pages`], through the mapping's entry
    /// in `/proc/self/map_files`, which needs `CAP_SYS_ADMIN`; without it
    /// the object stays sparse).
    fn note_object(&mut self, addr: u64, len: u64) {
        if let Ok(maps) = read_maps() {
            if let Some(l) = maps.iter().find(|l| l.start <= addr && addr < l.end) {
                let size = round_up(len).unwrap_or(0);
                self.sizes.insert(l.inode, size);
                let path = std::format!("/proc/self/map_files/{:x}-{:x}", l.start, l.end);
                if let Ok(f) = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                {
                    use std::os::fd::AsRawFd;
                    let _ = keep_pages(f.as_raw_fd(), size);
                }
            }
        }
    }

    /// Whether the page at `page` of mapping `l` lies past its object's end.
    fn past_end(&self, l: &MapsLine, page: u64) -> bool {
        if l.inode == 0 {
            return false;
        }
        match self.sizes.get(&l.inode) {
            Some(&size) => l.offset + (page - l.start) >= size,
            None => true,
        }
    }

    /// Whether the page at `page` may be a guard page, which the runner must
    /// not touch (the access would kill it with `SIGSEGV`): its pagemap
    /// entry says so, or cannot be read (then it is taken for one).
    fn guarded(&self, page: u64) -> bool {
        use std::os::unix::fs::FileExt;
        let mut entry = [0u8; 8];
        match self.pagemap.read_exact_at(&mut entry, page / PAGE_SIZE * 8) {
            Ok(()) => u64::from_le_bytes(entry) & PM_GUARD_REGION != 0,
            Err(_) => true,
        }
    }

    fn access(&self, addr: u64, write: Option<u8>) -> io::Result<Outcome> {
        let mut maps = read_maps()?;
        if !maps.iter().any(|l| l.start <= addr && addr < l.end) {
            // No mapping: a stack above may grow down to it.
            if !self.grow_stack(addr, &maps)? {
                return Ok(Outcome::Fault);
            }
            maps = read_maps()?;
        }
        let Some(l) = maps.iter().find(|l| l.start <= addr && addr < l.end) else {
            return Ok(Outcome::Fault);
        };
        let (lo, hi) = self.header.window;
        let allowed = if write.is_some() {
            l.prot.write()
        } else {
            l.prot.read()
        };
        let page = addr & !(PAGE_SIZE - 1);
        if !allowed || addr < lo || addr >= hi || self.past_end(l, page) || self.guarded(page) {
            return Ok(Outcome::Fault);
        }
        Ok(match write {
            Some(byte) => {
                // SAFETY: the maps say this byte is mapped writable and within its
                // object, its pagemap entry that it is no guard page; it lies in the
                // window, which only the calls use.
                unsafe { core::ptr::write_volatile(addr as *mut u8, byte) };
                Outcome::Ok
            }
            // SAFETY: the maps say this byte is mapped readable and within its
            // object, its pagemap entry that it is no guard page.
            None => Outcome::Byte(unsafe { core::ptr::read_volatile(addr as *const u8) }),
        })
    }

    /// Grows the stack above `addr` down to it if Linux does, for an
    /// access there that no mapping holds; whether it grew. Only a readable
    /// `MAP_GROWSDOWN` mapping (smaps' `gd`) at least `stack_guard_gap`
    /// above the window's start is tried (what lies below the window is
    /// not the aspace side's to know), by a child sharing this process's
    /// memory that reads the byte (a refused growth kills the child, not
    /// the runner). The aspace side follows the same rule
    /// ([`crate::mm::sim::SimEngine`]).
    fn grow_stack(&self, addr: u64, maps: &[MapsLine]) -> io::Result<bool> {
        let (lo, hi) = self.header.window;
        if addr < lo + STACK_GUARD_GAP || addr >= hi {
            return Ok(false);
        }
        let Some(above) = maps.iter().find(|l| l.start > addr) else {
            return Ok(false);
        };
        if !above.prot.read() || !grows_down(above.start)? {
            return Ok(false);
        }
        // A child sharing this process's memory (CLONE_VM), with a copy of
        // its signal handlers (no CLONE_SIGHAND), this process waiting
        // until it ends (CLONE_VFORK): its read grows the stack here, as
        // this process's own would (the same mappings, locks and limits),
        // or a SIGSEGV ends it and nothing changed. (A forked copy would not
        // do: it has no MADV_DONTFORK mapping and no lock.)
        let mut stack = vec![0u128; 4096];
        let top = stack.as_mut_ptr_range().end as *mut libc::c_void;
        extern "C" fn probe(at: *mut libc::c_void) -> libc::c_int {
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: the child's own copies of the handlers and limits:
            // the default action for a fault (std's handler would run on
            // this process's alternate stack) and no core file for a
            // refused growth; the byte is below a stack: grown, or SIGSEGV.
            unsafe {
                libc::signal(libc::SIGSEGV, libc::SIG_DFL);
                libc::signal(libc::SIGBUS, libc::SIG_DFL);
                libc::setrlimit(libc::RLIMIT_CORE, &none);
                core::ptr::read_volatile(at as *const u8);
            }
            0
        }
        let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
        // SAFETY: the child runs `probe` on `stack` (64 KiB, ours until it
        // ends, which CLONE_VFORK waits for): it resets its own signal
        // actions and core limit, reads one byte and exits (glibc's clone
        // ends it with a bare exit: no atexit handler, no stdio flush).
        let pid = unsafe { libc::clone(probe, top, flags, addr as *mut libc::c_void) };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut status = 0;
        // SAFETY: waits for the child just made; `status` is ours.
        if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
            return Err(io::Error::last_os_error());
        }
        drop(stack);
        Ok(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0)
    }

    /// Executes one line and observes the state after it.
    pub fn run(&mut self, line: &Line) -> io::Result<Response> {
        let outcome = match &line.command {
            Command::Call(call) => self.call(call),
            Command::Write { addr, byte } => self.access(*addr, Some(*byte))?,
            Command::Read { addr } => self.access(*addr, None)?,
        };
        let expect_failed = line.expect.filter(|e| !e.matches(outcome));
        Ok(Response {
            command: line.command.to_string(),
            outcome,
            expect_failed,
            state: self.state()?,
        })
    }

    /// The maps meeting the window or the brk span, the digests of their
    /// readable pages that are not all zeros, and the ranges past their
    /// objects' ends.
    pub fn state(&self) -> io::Result<State> {
        let ranges = [self.header.window, self.header.brk_span];
        let mut state = State::default();
        for l in read_maps()? {
            let mut meets = false;
            for &(lo, hi) in &ranges {
                if l.start >= hi || l.end <= lo {
                    continue;
                }
                meets = true;
                if !l.prot.read() {
                    continue;
                }
                let (from, to) = (l.start.max(lo), l.end.min(hi));
                // Only resident pages are read: a read would make a page
                // resident (the zero page, a shared object's new page),
                // which `mincore` would show and aspace's observer does not
                // do. A page that is not resident reads as zeros anyway,
                // unless it was swapped out (not resident, but holding
                // data): the comparison assumes nothing of the runner's is
                // swapped out, as on a machine without swap or not short of
                // memory (the calls use a few MiB).
                let mut resident = vec![1u8; ((to - from) / PAGE_SIZE) as usize];
                // SAFETY: mincore reads the page tables of `[from, to)`, a
                // mapped range, and writes a byte per page into `resident`.
                let r = unsafe {
                    libc::mincore(
                        from as *mut libc::c_void,
                        (to - from) as usize,
                        resident.as_mut_ptr(),
                    )
                };
                if r != 0 {
                    resident.fill(1);
                }
                let mut page = from;
                while page < to {
                    let unread = resident[((page - from) / PAGE_SIZE) as usize] & 1 == 0;
                    if self.past_end(&l, page) {
                        match state.bus.last_mut() {
                            Some(last) if last.1 == page => last.1 = page + PAGE_SIZE,
                            _ => state.bus.push((page, page + PAGE_SIZE)),
                        }
                    } else if !unread && !self.guarded(page) {
                        // SAFETY: the maps say the page is mapped readable and
                        // within its object, its pagemap entry that it is no
                        // guard page, and nothing writes it while this
                        // single-threaded runner reads it.
                        let words = unsafe {
                            core::slice::from_raw_parts(page as *const u64, PAGE_SIZE as usize / 8)
                        };
                        if words.iter().any(|&w| w != 0) {
                            state
                                .pages
                                .push((page, words_digest(words.iter().copied())));
                        }
                    }
                    page += PAGE_SIZE;
                }
            }
            if meets {
                state.maps.push(l);
            }
        }
        Ok(state)
    }
}
