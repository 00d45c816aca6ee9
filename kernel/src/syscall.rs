//! System calls (x86_64: `int 0x80`, number in `rax`, arguments in `rdi`,
//! `rsi`, `rdx`, `r10` (`r8`, `r9`), result in `rax`; riscv64: `ecall`,
//! number in `a7`, arguments in `a0` to `a3` (`a4`, `a5`), result in `a0`;
//! aarch64: `svc #0`, number in `x8`, arguments in `x0` to `x3` (`x4`,
//! `x5`), result in `x0`).
//! Arguments that point into user memory are read with aspace's
//! `copy_from_user`, so a bad pointer is an error (`EBADMEM`, -9), never a
//! kernel fault. Every argument is a full 64-bit
//! word: a flag word with bits the call does not define (the high 32 bits
//! included) is refused with `EINVAL`, never cut down to what is known.
//! Linux's memory calls (`mmap` and the rest) are in [`crate::linux`]; the
//! area calls here may not enter their window ([`crate::linux::owns`]).

use alloc::sync::Arc;
use alloc::vec::Vec;

use aspace::backend::PagerIds;
use aspace::syscall::{
    sys_as_area_change_flags, sys_as_area_create, sys_as_area_destroy, sys_as_area_get_info,
    sys_as_area_list, sys_as_area_resize, AS_AREA_ANY, CREATE_FAILED,
};
use aspace::{AreaFlags, Error, Placement, TryArc, TryWeak, VirtAddr, PAGE_SIZE};

use crate::arch::{cpu_id, TrapFrame};
use crate::machine::Space;
use crate::sched::{self, Process};
use crate::sync::SpinLock;

/// System-call numbers.
#[path = "nr.rs"]
pub mod nr;

/// An area offered by process `from` to process `to` under `key`.
struct Offer {
    from: u64,
    to: u64,
    key: u64,
    space: TryWeak<Space>,
    addr: u64,
    size: u64,
    /// The most rights the receiver may map it with (the offerer's say,
    /// as HelenOS's share-out names the flags it permits).
    rights: AreaFlags,
}

/// Pending offers: at most [`nr::MAX_OFFERS`] per live offering process
/// (those of processes that ended are dropped on the next offer or accept).
static OFFERS: SpinLock<Vec<Offer>> = SpinLock::new(Vec::new());

fn errno(e: Error) -> u64 {
    e.errno() as i64 as u64
}

/// A 64-bit flag word as the 32 bits aspace takes; bits above them are
/// unknown, hence `InvalidArgument`.
fn flag_word(w: u64) -> Result<u32, Error> {
    u32::try_from(w).map_err(|_| Error::InvalidArgument)
}

/// Handles the system call in `frame`.
pub fn dispatch(frame: &mut TrapFrame) {
    let (n, args) = frame.syscall_args();
    let [a0, a1, a2, a3, a4, _] = args;
    if n == nr::EXIT {
        sched::exit_current(frame, a0 as i32 as i64, None);
        return;
    }
    if n == nr::YIELD {
        frame.set_syscall_result(0);
        sched::yield_now(frame);
        return;
    }
    if n == nr::PAGER_RECEIVE {
        pager_receive(frame, a0, a1);
        return;
    }
    if n == nr::WAIT {
        wait(frame, a0, a1);
        return;
    }
    if let Some(refusal) = heap_refusal(n) {
        frame.set_syscall_result(refusal);
        return;
    }
    let proc = sched::current_process().expect("a task is running");
    if n == nr::FORK {
        let r = match sched::fork(&proc, frame) {
            Ok(pid) => pid,
            Err(sched::ForkError::NoMemory) => (-nr::ENOMEM) as u64,
            Err(sched::ForkError::TooMany) => (-nr::EAGAIN) as u64,
        };
        frame.set_syscall_result(r);
        return;
    }
    if crate::linux::is_linux_call(n) {
        frame.set_syscall_result(crate::linux::call(&proc, n, args));
        return;
    }
    // A user copy may wait for a pager: the thread may park meanwhile.
    let result = sched::parkable(|| call(&proc, n, [a0, a1, a2, a3, a4]));
    frame.set_syscall_result(result);
}

/// The system calls that neither end nor switch the calling thread.
fn call(proc: &Arc<Process>, n: u64, [a0, a1, a2, a3, a4]: [u64; 5]) -> u64 {
    let space = &proc.space;
    // The Linux window is the Linux calls' own: an area call that would
    // make, change or share an area there (or one whose guard page or
    // growth would reach it) is refused (`EPERM`), and areas placed
    // anywhere are placed outside it.
    let linux = crate::linux::owns;
    let refused = errno(Error::PermissionDenied);
    match n {
        nr::PRINT => print(proc, a0, a1),
        nr::AREA_CREATE if a0 == AS_AREA_ANY as u64 => {
            match flag_word(a2).and_then(|f| create_anywhere(space, a1, f, 0)) {
                Ok(base) => base.as_u64(),
                Err(_) => CREATE_FAILED as u64,
            }
        }
        nr::AREA_CREATE | nr::AREA_CREATE_PAGED if reaches_linux(a0, a1, a2) => match n {
            nr::AREA_CREATE => CREATE_FAILED as u64,
            _ => refused,
        },
        nr::AREA_RESIZE | nr::SHARE_OFFER if linux(a0, a1) => refused,
        nr::AREA_CHANGE_FLAGS | nr::AREA_DESTROY if linux(a0, 1) => refused,
        nr::AREA_CREATE => match flag_word(a2) {
            Ok(f) => sys_as_area_create(space, a0 as usize, a1 as usize, f) as u64,
            Err(_) => CREATE_FAILED as u64,
        },
        // No resize flag is defined: any bit set is unknown.
        nr::AREA_RESIZE if a2 != 0 => errno(Error::InvalidArgument),
        nr::AREA_RESIZE => sys_as_area_resize(space, a0 as usize, a1 as usize, 0) as u64,
        nr::AREA_CHANGE_FLAGS => match flag_word(a1) {
            Ok(f) => sys_as_area_change_flags(space, a0 as usize, f) as u64,
            Err(e) => errno(e),
        },
        nr::AREA_DESTROY => sys_as_area_destroy(space, a0 as usize) as u64,
        nr::SHARE_OFFER => result(offer(proc, [a0, a1, a2, a3], a4)),
        nr::SHARE_ACCEPT => result(accept(proc, a0, a1, a2, a3)),
        nr::THREAD_CREATE => match sched::spawn_thread(proc, a0, a1, a2) {
            Ok(tid) => tid,
            Err(e) => errno(e),
        },
        nr::AREA_CREATE_ANY => match flag_word(a2) {
            Ok(f) => create_any(space, a0, a1, f, a3),
            Err(_) => CREATE_FAILED as u64,
        },
        nr::AREA_GET_INFO => sys_as_area_get_info(space, a0 as usize, a1 as usize) as u64,
        nr::AREA_LIST => sys_as_area_list(space, a0 as usize, a1 as usize) as u64,
        nr::AREA_CREATE_PAGED => match create_paged(proc, a0, a1, a2, a3) {
            Ok(base) => base,
            Err(e) => errno(e),
        },
        nr::PAGER_ANSWER => result(pager_answer(proc, a0, a1, a2)),
        nr::CPU => cpu_id() as u64,
        nr::PID => proc.pid,
        _ => errno(Error::NotSupported),
    }
}

/// What call `n` returns instead of running when the kernel heap is
/// low ([`crate::mm::heap_free`] below [`crate::mm::HEAP_RESERVE`]), for
/// the calls that may keep more heap (areas, shares, threads, processes,
/// Linux mappings): a user task that fills the heap is refused before the
/// kernel's own allocations (a thread's, a fork's, a message) could fail.
/// `munmap`, which mostly gives heap back (a cut in the middle of a
/// mapping keeps a little), runs until half the reserve is gone. `None` to
/// run the call.
fn heap_refusal(n: u64) -> Option<u64> {
    let reserve = crate::mm::HEAP_RESERVE;
    let needed = if n == nr::MUNMAP {
        reserve / 2
    } else {
        reserve
    };
    if crate::mm::heap_free() >= needed {
        return None;
    }
    Some(match n {
        nr::AREA_CREATE | nr::AREA_CREATE_ANY => CREATE_FAILED as u64,
        nr::AREA_CREATE_PAGED
        | nr::AREA_RESIZE
        | nr::SHARE_OFFER
        | nr::SHARE_ACCEPT
        | nr::THREAD_CREATE => errno(Error::NoMemory),
        nr::FORK => (-nr::ENOMEM) as u64,
        n if crate::linux::is_linux_call(n) => (-nr::ENOMEM) as u64,
        _ => return None,
    })
}

/// Whether an area of `size` bytes at `base` with the flag word `flags`
/// could reach the Linux window: the area, its guard page below it, and
/// for a grows-down area all it may grow over.
fn reaches_linux(base: u64, size: u64, flags: u64) -> bool {
    let flags = AreaFlags::from_bits_truncate(flags as u32);
    let below = if flags.contains(AreaFlags::GROWS_DOWN) {
        aspace::placement::DEFAULT_GROW_LIMIT + PAGE_SIZE
    } else {
        flags.guard_pages() * PAGE_SIZE
    };
    let lo = base.saturating_sub(below);
    crate::linux::owns(lo, base.saturating_add(size).saturating_sub(lo))
}

/// HelenOS's placement anywhere (the lowest free base at or above
/// `bound`) kept out of the Linux window: below it if there is room, else
/// above it (a grows-down area far enough above that it cannot grow into
/// it).
fn create_anywhere(space: &Space, size: u64, flags: u32, bound: u64) -> Result<VirtAddr, Error> {
    let flags = AreaFlags::from_user(flags)? | AreaFlags::CACHEABLE;
    if bound < nr::LINUX_START {
        let below = Placement::LowestBetween {
            bound: VirtAddr::new(bound),
            ceiling: VirtAddr::new(nr::LINUX_START),
            align: 1,
        };
        match space.area_create_anywhere(below, size, flags) {
            Err(Error::NoMemory) => {}
            made => return made,
        }
    }
    let past = nr::LINUX_END
        + if flags.contains(AreaFlags::GROWS_DOWN) {
            aspace::placement::DEFAULT_GROW_LIMIT + PAGE_SIZE
        } else {
            0
        };
    space.area_create_anywhere(
        Placement::above(VirtAddr::new(bound.max(past))),
        size,
        flags,
    )
}

/// HelenOS's `sys_as_area_create(base *, size, flags, bound)`, as
/// [`aspace::syscall::sys_as_area_create_any`] but kept out of the Linux
/// window: the base word read from `base_ptr` is checked (a fixed base
/// reaching the window fails), and a placement anywhere avoids it. The
/// chosen base is written back (the area destroyed again if it cannot be).
fn create_any(space: &Space, base_ptr: u64, size: u64, flags: u32, bound: u64) -> u64 {
    let ptr = VirtAddr::new(base_ptr);
    let mut word = [0u8; 8];
    let made = space.copy_from_user(ptr, &mut word).and_then(|()| {
        let base = u64::from_ne_bytes(word);
        if base == AS_AREA_ANY as u64 {
            create_anywhere(space, size, flags, bound)
        } else if reaches_linux(base, size, u64::from(flags)) {
            Err(Error::PermissionDenied)
        } else {
            let flags = AreaFlags::from_user(flags)? | AreaFlags::CACHEABLE;
            space.area_create(VirtAddr::new(base), size, flags)
        }
    });
    let Ok(base) = made else {
        return CREATE_FAILED as u64;
    };
    if space
        .copy_to_user(ptr, &base.as_u64().to_ne_bytes())
        .is_err()
    {
        let _ = space.area_destroy(base);
        return CREATE_FAILED as u64;
    }
    base.as_u64()
}

fn result(r: Result<(), Error>) -> u64 {
    match r {
        Ok(()) => 0,
        Err(e) => errno(e),
    }
}

fn print(proc: &Process, ptr: u64, len: u64) -> u64 {
    let len = len.min(4096) as usize;
    let mut buf = [0u8; 4096];
    let copied = crate::linux::copy_growing_stack(proc, ptr, len as u64, || {
        proc.space
            .copy_from_user(VirtAddr::new(ptr), &mut buf[..len])
    });
    if let Err(e) = copied {
        return errno(e);
    }
    let text = core::str::from_utf8(&buf[..len]).unwrap_or("<not utf-8>");
    crate::kprintln!(
        "[{} {}] {}",
        proc.pid,
        proc.name,
        text.trim_end_matches('\n')
    );
    0
}

/// Offers `size` bytes at `addr` (in an area of the caller) to process
/// `to` under `key`, to be mapped with at most `rights` (read, write,
/// execute; other bits `InvalidArgument`). The same receiver and key again
/// replaces the offer; beyond [`nr::MAX_OFFERS`] pending offers of the
/// caller, `NoMemory`.
fn offer(proc: &Arc<Process>, [addr, size, to, key]: [u64; 4], rights: u64) -> Result<(), Error> {
    let rights = AreaFlags::from_user(flag_word(rights)?)?;
    if !AreaFlags::RIGHTS.contains(rights) {
        return Err(Error::InvalidArgument);
    }
    if proc.space.area_size(VirtAddr::new(addr)) == 0 {
        return Err(Error::NotFound);
    }
    let new = Offer {
        from: proc.pid,
        to,
        key,
        space: TryArc::downgrade(&proc.space),
        addr,
        size,
        rights,
    };
    let mut offers = OFFERS.lock();
    offers.retain(|o| o.space.strong_count() > 0);
    if let Some(o) = offers
        .iter_mut()
        .find(|o| o.from == new.from && o.to == to && o.key == key)
    {
        *o = new;
        return Ok(());
    }
    if offers.iter().filter(|o| o.from == new.from).count() >= nr::MAX_OFFERS {
        return Err(Error::NoMemory);
    }
    offers.try_reserve(1).map_err(|_| Error::NoMemory)?;
    offers.push(new);
    Ok(())
}

/// Maps the area that process `from` offered to the caller under `key` at
/// `dst` with the rights `flags` (at most those offered, and at most the
/// source's: `PermissionDenied` otherwise). An offer made to another
/// process is not found; the offer is used up by the attempt.
fn accept(proc: &Arc<Process>, from: u64, key: u64, dst: u64, flags: u64) -> Result<(), Error> {
    let mask = AreaFlags::from_user(flag_word(flags)?)?;
    let offer = {
        let mut offers = OFFERS.lock();
        offers.retain(|o| o.space.strong_count() > 0);
        let i = offers
            .iter()
            .position(|o| o.from == from && o.to == proc.pid && o.key == key)
            .ok_or(Error::NotFound)?;
        offers.swap_remove(i)
    };
    let src = offer.space.upgrade().ok_or(Error::NotFound)?;
    if crate::linux::owns(dst, offer.size) || !offer.rights.contains(mask & AreaFlags::RIGHTS) {
        return Err(Error::PermissionDenied);
    }
    src.area_share(
        VirtAddr::new(offer.addr),
        offer.size,
        &proc.space,
        VirtAddr::new(dst),
        mask,
    )
}

/// `AREA_CREATE_PAGED(base, size, flags, info)`: an area at `base` whose
/// pages the pager process described at `info` (its process number and
/// three identifiers, [`nr::PAGER_INFO`] bytes) supplies. Returns the base,
/// or an errno: `ENOENT` when no such process lives.
fn create_paged(proc: &Process, base: u64, size: u64, flags: u64, info: u64) -> Result<u64, Error> {
    let space = &proc.space;
    let flags = AreaFlags::from_user(flag_word(flags)?)? | AreaFlags::CACHEABLE;
    let mut raw = [0u8; nr::PAGER_INFO];
    space.copy_from_user(VirtAddr::new(info), &mut raw)?;
    let word = |i: usize| u64::from_le_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
    let ids = PagerIds {
        id1: word(1),
        id2: word(2),
        id3: word(3),
    };
    let (pager, pager_space) = sched::pager_of(word(0))?;
    let r = space.area_create_paged(
        VirtAddr::new(base),
        size,
        flags,
        crate::pager::for_client(&pager, proc.pid),
        &pager_space,
        ids,
    );
    // The hold goes now: the area keeps only the pager object.
    pager_space.release();
    r.map(|a| a.as_u64())
}

/// `PAGER_RECEIVE(dest, flags)`: copies the caller's next page-in request
/// ([`nr::PAGE_IN_RECORD`] bytes) to `dest` and returns 0. With nothing
/// queued it waits (the task yields and the call runs again), or, with
/// [`nr::RECEIVE_NOWAIT`], returns `ENOENT`.
fn pager_receive(frame: &mut TrapFrame, dest: u64, flags: u64) {
    let proc = sched::current_process().expect("a task is running");
    if flags & !nr::RECEIVE_NOWAIT != 0 {
        frame.set_syscall_result(errno(Error::InvalidArgument));
        return;
    }
    let pager = match proc.pager() {
        Ok(p) => p,
        Err(e) => {
            frame.set_syscall_result(errno(e));
            return;
        }
    };
    let Some(r) = pager.receive() else {
        if flags & nr::RECEIVE_NOWAIT != 0 {
            frame.set_syscall_result(errno(Error::NotFound));
        } else {
            drop((pager, proc));
            frame.restart_syscall();
            sched::yield_now(frame);
        }
        return;
    };
    let words = [
        r.handle, r.offset, r.size, r.ids[0], r.ids[1], r.ids[2], r.access, r.client,
    ];
    let mut record = [0u8; nr::PAGE_IN_RECORD];
    for (i, w) in words.iter().enumerate() {
        record[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    let copied = crate::linux::copy_growing_stack(&proc, dest, record.len() as u64, || {
        sched::parkable(|| proc.space.copy_to_user(VirtAddr::new(dest), &record))
    });
    let res = match copied {
        Ok(()) => {
            crate::linux::wrote(&proc, dest, record.len() as u64);
            0
        }
        Err(e) => {
            pager.unreceive(r.handle);
            errno(e)
        }
    };
    frame.set_syscall_result(res);
}

/// `WAIT(pid, flags)`: the wait status of child `pid` once it ended
/// (waiting meanwhile: the task yields and the call runs again);
/// `-ECHILD` when `pid` is no child of the caller's not waited for.
fn wait(frame: &mut TrapFrame, pid: u64, flags: u64) {
    let proc = sched::current_process().expect("a task is running");
    if flags != 0 {
        frame.set_syscall_result((-nr::EINVAL) as u64);
        return;
    }
    match sched::reap(proc.pid, pid) {
        sched::Reaped::Status(s) => frame.set_syscall_result(s),
        sched::Reaped::NotChild => frame.set_syscall_result((-nr::ECHILD) as u64),
        sched::Reaped::Running => {
            drop(proc);
            frame.restart_syscall();
            sched::yield_now(frame);
        }
    }
}

/// `PAGER_ANSWER(handle, addr, error)`: answers the received request
/// `handle` with the caller's page at `addr`, or, when `error` is not 0,
/// with an error (the faults waiting fail with `PagerError`). Returns 0, or
/// the reason the answer was refused (the faults fail then too); `ENOENT`
/// for an unknown handle.
fn pager_answer(proc: &Arc<Process>, handle: u64, addr: u64, error: u64) -> Result<(), Error> {
    let pager = proc.pager()?;
    let req = pager.take(handle)?;
    if error != 0 {
        req.fail();
        return Ok(());
    }
    req.answer(&proc.space, VirtAddr::new(addr))
}

const _: () = assert!(nr::AREA_INFO == aspace::syscall::UserAreaInfo::SIZE);
