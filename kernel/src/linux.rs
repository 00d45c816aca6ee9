//! Linux's memory calls as system calls: `mmap`, `munmap`, `mprotect`,
//! `mremap`, `brk`, `madvise`, `msync`, `mlock2`, `munlock`, `mlockall`,
//! `munlockall`, `setrlimit(RLIMIT_MEMLOCK)` ([`nr::MEMLOCK_LIMIT`]), `mincore` and `mseal`, with Linux's arguments, flag values and
//! errno values, done by `aspace-linux`'s [`LinuxMm`] on the process's
//! address space.
//!
//! Each process gets its Linux memory map on its first Linux call (a
//! process that never makes one pays nothing). The map owns the window
//! `[nr::LINUX_START, nr::LINUX_END)` of the address space: its mappings,
//! the program break (starting at the window's bottom) and `mmap(NULL)`'s
//! top-down placement (from the window's top) stay inside it, and the other
//! area calls may not enter it ([`owns`]), so neither side changes the
//! other's areas behind its back. Ranges that reach out of the window are
//! refused as on Linux for addresses outside the user space: `munmap` and
//! `mremap` `EINVAL`, a fixed `mmap` or `mremap` target below the window
//! `EPERM` (the window's start is the map's `vm.mmap_min_addr`), above it
//! `ENOMEM`; a hint below the window is no hint (raised to the window's
//! start, as Linux raises one to `mmap_min_addr`, it would land on the
//! break); `mprotect` and `madvise` only ever see the window's mappings.
//!
//! A mapping asked to be faulted in at once (`MAP_POPULATE`, `MAP_LOCKED`)
//! longer than the machine's memory is `ENOMEM` ([`ram`]); others are
//! bounded as on Linux by what they are charged (a `PROT_NONE` reservation
//! of address space larger than the memory is fine, made writable it is
//! refused by the commit limit).
//!
//! Differences from Linux's argument checks, by this kernel's rule that a
//! word with bits a call does not define is refused (not cut down): the
//! `mmap` flags this layer does not implement (`MAP_HUGETLB`, `MAP_SYNC`,
//! unknown bits) and any `PROT_*` bit but read,
//! write and execute are `EINVAL` (Linux ignores unknown `mmap` flags
//! unless `MAP_SHARED_VALIDATE`); a file mapping's `fd` must be
//! [`nr::BLOB_FD`], the one file (`EBADF` otherwise).
//!
//! A private file mapping's pages are the file's, lent to the mapping and
//! copied by aspace's fault handler at the first write; the page-fault
//! path calls [`touched`] after a write fault served in the window, and
//! the system calls that copy out to the window ([`wrote`]: `mincore`'s
//! vector, a pager's request record) after their copies, as `LinuxMm`
//! asks (it decides how mappings merge).

use alloc::boxed::Box;
use alloc::string::String;

use aspace::{FrameAllocator, Machine, PhysMemory, VirtAddr};
use aspace_linux::consts::*;
use aspace_linux::mm::{Layout, LinuxMm};
use aspace_linux::{
    Advice, Errno, FileRef, LockAllFlags, LockFlags, MapFlags, Prot, RemapFlags, SyncFlags,
};

use crate::machine::KMachine;
use crate::sched::Process;
use crate::syscall::nr;
use crate::SYSTEM;

/// One process's Linux memory map.
pub type Mm = LinuxMm<KMachine>;

/// The name of the file at [`nr::BLOB_FD`] in the map's file table.
const BLOB: &str = "blob";

/// The `mmap` flags this kernel takes: the sharing type (checked by
/// `LinuxMm`), those `LinuxMm` implements, and the ones Linux ignores.
const MAP_KNOWN: u32 = MAP_TYPE
    | MAP_FIXED
    | MAP_ANONYMOUS
    | MAP_GROWSDOWN
    | MAP_DENYWRITE
    | MAP_EXECUTABLE
    | MAP_NORESERVE
    | MAP_LOCKED
    | MAP_POPULATE
    | MAP_NONBLOCK
    | MAP_STACK
    | MAP_FIXED_NOREPLACE;

/// The layout of every process's Linux map (see the module docs).
fn layout() -> Layout {
    Layout {
        mmap_base: nr::LINUX_END,
        mmap_min: nr::LINUX_START,
        task_size: nr::LINUX_END,
        brk_start: nr::LINUX_START,
        max_map_count: nr::LINUX_MAX_MAPS,
    }
}

/// Bytes of memory the machine has: no mapping faulted in at once
/// (`MAP_POPULATE`, `MAP_LOCKED`) may be longer (`ENOMEM`), which bounds
/// that page-by-page work, done with interrupts off, before it starts. (It
/// stops at the first page that cannot be had in any case.)
fn ram() -> u64 {
    crate::mm::FRAMES.total() * aspace::PAGE_SIZE
}

/// Whether `[base, base + size)` meets the Linux window (a `size` of 0 is
/// one byte: the address alone).
pub fn owns(base: u64, size: u64) -> bool {
    let end = base.saturating_add(size.max(1));
    base < nr::LINUX_END && end > nr::LINUX_START
}

/// A new Linux map of `proc`'s space, its file filled with the pattern;
/// `None` without memory for the file's pages.
fn create(proc: &Process) -> Option<Box<Mm>> {
    let sys = SYSTEM.clone();
    let mut mm = Box::new(LinuxMm::new(sys.clone(), proc.space.clone(), layout()));
    let file = mm.file(BLOB).ok()?;
    let (memory, frames) = (sys.machine().memory(), sys.machine().frames());
    let mut page = [0u8; 4096];
    for i in 0..nr::BLOB_PAGES {
        // Dropping `mm` gives back the pages made so far.
        let frame = file.frame(memory, frames, i)?;
        for (j, b) in page.iter_mut().enumerate() {
            *b = nr::blob_byte(i * 4096 + j as u64);
        }
        memory.write(frame.start(), &page);
        frames.release(frame);
    }
    Some(mm)
}

/// Runs `f` on `proc`'s Linux map, made now if it has none; `ENOMEM` when
/// it cannot be made.
fn with<R>(proc: &Process, f: impl FnOnce(&mut Mm) -> Result<R, Errno>) -> Result<R, Errno> {
    let mut slot = proc.linux.lock();
    if slot.is_none() {
        *slot = Some(create(proc).ok_or(Errno::ENOMEM)?);
    }
    match slot.as_mut() {
        Some(mm) => f(mm),
        None => Err(Errno::ENOMEM),
    }
}

/// A 64-bit flag word as the 32 bits Linux defines; more is `EINVAL`.
fn word32(w: u64) -> Result<u32, Errno> {
    u32::try_from(w).map_err(|_| Errno::EINVAL)
}

/// Linux's return convention: the value, or the negative errno.
fn ret(r: Result<u64, Errno>) -> u64 {
    match r {
        Ok(v) => v,
        Err(e) => (-i64::from(e.0)) as u64,
    }
}

/// Whether `n` is one of the Linux calls.
pub fn is_linux_call(n: u64) -> bool {
    (nr::MMAP..=nr::MADVISE).contains(&n) || (nr::MSYNC..=nr::MSEAL).contains(&n)
}

/// Runs Linux call `n` with its six argument words for `proc`.
///
/// Not run as `sched::parkable`: it holds the process's map lock, and none
/// of its work waits for a pager (the window holds no paged area, see
/// [`owns`]).
pub fn call(proc: &Process, n: u64, a: [u64; 6]) -> u64 {
    ret(match n {
        nr::MMAP => mmap(proc, a),
        nr::MUNMAP => munmap(proc, a[0], a[1]),
        nr::MPROTECT => {
            word32(a[2]).and_then(|p| with(proc, |mm| mm.mprotect(a[0], a[1], Prot(p)).map(|()| 0)))
        }
        nr::MREMAP => mremap(proc, a),
        nr::BRK => brk(proc, a[0]),
        nr::MADVISE => madvise(proc, a[0], a[1], a[2]),
        nr::MSYNC => word32(a[2])
            .and_then(|f| with(proc, |mm| mm.msync(a[0], a[1], SyncFlags(f)).map(|()| 0))),
        nr::MLOCK => word32(a[2])
            .and_then(|f| with(proc, |mm| mm.mlock(a[0], a[1], LockFlags(f)).map(|()| 0))),
        nr::MUNLOCK => with(proc, |mm| mm.munlock(a[0], a[1]).map(|()| 0)),
        nr::MLOCKALL => {
            word32(a[0]).and_then(|f| with(proc, |mm| mm.mlockall(LockAllFlags(f)).map(|()| 0)))
        }
        nr::MUNLOCKALL => with(proc, |mm| mm.munlockall().map(|()| 0)),
        nr::MEMLOCK_LIMIT => with(proc, |mm| {
            mm.set_memlock_limit((a[0] != u64::MAX).then_some(a[0]));
            Ok(0)
        }),
        nr::MINCORE => mincore(proc, a[0], a[1], a[2]),
        nr::MSEAL => with(proc, |mm| mm.mseal(a[0], a[1], a[2]).map(|()| 0)),
        _ => Err(Errno::ENOSYS),
    })
}

/// `mmap(addr, len, prot, flags, fd, offset)`.
fn mmap(proc: &Process, [addr, len, prot, flags, fd, offset]: [u64; 6]) -> Result<u64, Errno> {
    let prot = word32(prot)?;
    let flags = word32(flags)?;
    if prot & !(PROT_READ | PROT_WRITE | PROT_EXEC) != 0 || flags & !MAP_KNOWN != 0 {
        return Err(Errno::EINVAL);
    }
    if flags & (MAP_POPULATE | MAP_LOCKED) != 0 && len > ram() {
        return Err(Errno::ENOMEM);
    }
    let flags = MapFlags(flags);
    // A hint below the window is no hint: raised to the window's start
    // (vm.mmap_min_addr here) it would land on the break. A fixed address
    // there is LinuxMm's EPERM (below vm.mmap_min_addr).
    let addr = if !flags.fixed() && addr < nr::LINUX_START {
        0
    } else {
        addr
    };
    let file = match (flags.anonymous(), fd) {
        (true, _) => None,
        (false, nr::BLOB_FD) => Some(FileRef(String::from(BLOB))),
        (false, _) => return Err(Errno::EBADF),
    };
    with(proc, |mm| {
        mm.mmap(addr, len, Prot(prot), flags, file.as_ref(), offset)
    })
}

/// `munmap(addr, len)`: below the window `EINVAL` (`LinuxMm` refuses
/// above it).
fn munmap(proc: &Process, addr: u64, len: u64) -> Result<u64, Errno> {
    if addr < nr::LINUX_START {
        return Err(Errno::EINVAL);
    }
    with(proc, |mm| mm.munmap(addr, len).map(|()| 0))
}

/// `mremap(old, old_len, new_len, flags, new_addr)`: an old range reaching
/// past the window `EINVAL` (LinuxMm refuses a shrink's tail there too; this
/// keeps every other path off the areas above the window). A fixed target
/// below the window is LinuxMm's `EPERM` (below vm.mmap_min_addr).
fn mremap(
    proc: &Process,
    [old, old_len, new_len, flags, new_addr, _]: [u64; 6],
) -> Result<u64, Errno> {
    let flags = RemapFlags(word32(flags)?);
    // The old length rounded as Linux rounds it (wrapping to 0: a copy).
    let old_end = old.checked_add(page_align(old_len)).ok_or(Errno::EINVAL)?;
    if old_end > nr::LINUX_END {
        return Err(Errno::EINVAL);
    }
    if new_len > ram() {
        return Err(Errno::ENOMEM);
    }
    with(proc, |mm| mm.mremap(old, old_len, new_len, flags, new_addr))
}

/// `brk(addr)`: the new break, or the current one when refused (past the
/// window too).
fn brk(proc: &Process, addr: u64) -> Result<u64, Errno> {
    with(proc, |mm| {
        Ok(if addr > nr::LINUX_END {
            mm.brk_now()
        } else {
            mm.brk(addr)
        })
    })
}

/// `madvise(addr, len, advice)`: the advice is Linux's `int`; a word that
/// is not one is `EINVAL`.
fn madvise(proc: &Process, addr: u64, len: u64, advice: u64) -> Result<u64, Errno> {
    let advice = i32::try_from(advice).map_err(|_| Errno::EINVAL)?;
    with(proc, |mm| mm.madvise(addr, len, Advice(advice)).map(|()| 0))
}

/// `mincore(addr, len, vec)`, in chunks of [`MINCORE_CHUNK`] pages as
/// Linux does (a page of answers at a time): each chunk's answers gathered
/// under the map's lock, then copied to `vec` with the lock released. A
/// `vec` past the user space is `EFAULT` before anything (Linux's
/// `access_ok`), one the copy cannot write `EFAULT` then; a hole is
/// `ENOMEM` with the answers before it copied, as on Linux.
fn mincore(proc: &Process, addr: u64, len: u64, vec: u64) -> Result<u64, Errno> {
    let pages = with(proc, |mm| mm.mincore_check(addr, len))?;
    if vec
        .checked_add(pages)
        .is_none_or(|end| end > proc.space.user_end())
    {
        return Err(Errno::EFAULT);
    }
    let mut done = 0;
    while done < pages {
        let n = (pages - done).min(MINCORE_CHUNK);
        let mut answers = [0u8; MINCORE_CHUNK as usize];
        let mut got = 0;
        let walked = with(proc, |mm| {
            let at = addr + done * aspace::PAGE_SIZE;
            Ok(mm.mincore_walk(at, n, |i, resident| {
                answers[i as usize] = u8::from(resident);
                got = i + 1;
            }))
        })?;
        if got > 0 {
            let to = VirtAddr::new(vec + done);
            let answers = &answers[..got as usize];
            copy_growing_stack(proc, to.as_u64(), got, || {
                crate::sched::parkable(|| proc.space.copy_to_user(to, answers))
            })
            .map_err(|_| Errno::EFAULT)?;
            wrote(proc, to.as_u64(), got);
        }
        walked?;
        done += n;
    }
    Ok(0)
}

/// Pages [`mincore`] answers per hold of the map's lock.
const MINCORE_CHUNK: u64 = 512;

/// A write fault at `addr` served: tells the Linux map (its first write
/// gives a private mapping Linux's `anon_vma`).
pub fn touched(proc: &Process, addr: u64) {
    if !owns(addr, 1) {
        return;
    }
    if let Some(mm) = proc.linux.lock().as_mut() {
        mm.touched(addr, true);
    }
}

/// The kernel wrote `len` bytes of `proc`'s memory at `addr` (a system
/// call's copy out): each page of it in the window is a served write, as
/// the copy's write faults are on Linux ([`touched`]).
pub fn wrote(proc: &Process, addr: u64, len: u64) {
    let end = addr.saturating_add(len);
    let mut page = Some(addr & !(aspace::PAGE_SIZE - 1));
    while let Some(p) = page.filter(|&p| p < end) {
        touched(proc, p);
        page = p.checked_add(aspace::PAGE_SIZE);
    }
}

/// A fault at `addr` that no area holds: grows the `MAP_GROWSDOWN`
/// mapping above it down to it if Linux would (`LinuxMm::expand_stack`);
/// whether it did, so that the fault is served again.
pub fn expand_stack(proc: &Process, addr: u64) -> bool {
    if !owns(addr, 1) {
        return false;
    }
    match proc.linux.lock().as_mut() {
        Some(mm) => mm.expand_stack(addr).is_ok() && mm.vma_at(addr).is_some(),
        None => false,
    }
}

/// `copy`, a system call's copy to or from `len` bytes of `proc`'s user
/// memory at `addr`, tried again after each growth of a Linux stack down
/// over the lowest page of the range that no area holds, as Linux's fault
/// handler grows a stack under a system call's user copy too (a `mincore`
/// vector or a `read` buffer below the stack). Each growth covers one more
/// hole of the range, so the tries end; a copy refused with every page in
/// an area (no rights), or a hole no stack grows over, is the copy's
/// error. Called without the process's Linux map locked.
pub fn copy_growing_stack(
    proc: &Process,
    addr: u64,
    len: u64,
    mut copy: impl FnMut() -> aspace::Result<()>,
) -> aspace::Result<()> {
    loop {
        let err = match copy() {
            Err(e @ aspace::Error::BadMemory) => e,
            r => return r,
        };
        let end = addr.saturating_add(len);
        let mut at = addr & !(aspace::PAGE_SIZE - 1);
        let hole = loop {
            if at >= end {
                break None;
            }
            match proc.space.area(VirtAddr::new(at)) {
                Some(a) => at = a.end().as_u64(),
                None => break Some(at),
            }
        };
        if !hole.is_some_and(|h| expand_stack(proc, h)) {
            return Err(err);
        }
    }
}

/// Drops `proc`'s Linux map (its mappings and file go) before the process
/// ends, so that only the process holds its address space.
pub fn release(proc: &Process) {
    let mm: Option<Box<Mm>> = proc.linux.lock().take();
    drop(mm);
}
