//! System calls (`int 0x80`): number in `rax`, arguments in `rdi`, `rsi`,
//! `rdx`, `r10`, result in `rax`. Arguments that point into user memory are
//! read with aspace's `copy_from_user`, so a bad pointer is an error
//! (`EBADMEM`, -9), never a kernel fault.

use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;

use aspace::syscall::{
    sys_as_area_change_flags, sys_as_area_create, sys_as_area_destroy, sys_as_area_resize,
};
use aspace::{AreaFlags, Error, VirtAddr};

use crate::arch::cpu_id;
use crate::cpu::TrapFrame;
use crate::machine::Space;
use crate::sched;
use crate::sync::SpinLock;

/// System-call numbers.
#[path = "nr.rs"]
pub mod nr;

struct Offer {
    key: u64,
    space: Weak<Space>,
    addr: u64,
    size: u64,
}

static OFFERS: SpinLock<Vec<Offer>> = SpinLock::new(Vec::new());

fn errno(e: Error) -> u64 {
    e.errno() as i64 as u64
}

/// Handles the system call in `frame`.
pub fn dispatch(frame: &mut TrapFrame) {
    let (n, a0, a1, a2) = (frame.rax, frame.rdi, frame.rsi, frame.rdx);
    if n == nr::EXIT {
        sched::exit_current(frame, a0 as i32 as i64, None);
        return;
    }
    if n == nr::YIELD {
        frame.rax = 0;
        sched::yield_now(frame);
        return;
    }
    let proc = sched::current_process().expect("a task is running");
    let space = &proc.space;
    frame.rax = match n {
        nr::PRINT => print(&proc, a0, a1),
        nr::AREA_CREATE => sys_as_area_create(space, a0 as usize, a1 as usize, a2 as u32) as u64,
        nr::AREA_RESIZE => sys_as_area_resize(space, a0 as usize, a1 as usize, a2 as u32) as u64,
        nr::AREA_CHANGE_FLAGS => sys_as_area_change_flags(space, a0 as usize, a1 as u32) as u64,
        nr::AREA_DESTROY => sys_as_area_destroy(space, a0 as usize) as u64,
        nr::SHARE_OFFER => {
            if space.area_size(VirtAddr::new(a0)) == 0 {
                errno(Error::NotFound)
            } else {
                OFFERS.lock().push(Offer {
                    key: a2,
                    space: Arc::downgrade(space),
                    addr: a0,
                    size: a1,
                });
                0
            }
        }
        nr::SHARE_ACCEPT => accept(space, a0, a1, a2),
        nr::THREAD_CREATE => sched::spawn_thread(a0, a1, a2),
        nr::CPU => cpu_id() as u64,
        _ => errno(Error::NotSupported),
    };
}

fn print(proc: &sched::Process, ptr: u64, len: u64) -> u64 {
    let len = len.min(4096) as usize;
    let mut buf = [0u8; 4096];
    if let Err(e) = proc
        .space
        .copy_from_user(VirtAddr::new(ptr), &mut buf[..len])
    {
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

/// Maps the area offered under `key` into `space` at `dst`.
fn accept(space: &Arc<Space>, key: u64, dst: u64, flags: u64) -> u64 {
    let offer = {
        let mut offers = OFFERS.lock();
        offers.retain(|o| o.space.strong_count() > 0);
        match offers.iter().position(|o| o.key == key) {
            Some(i) => offers.remove(i),
            None => return errno(Error::NotFound),
        }
    };
    let Some(src) = offer.space.upgrade() else {
        return errno(Error::NotFound);
    };
    let mask = match AreaFlags::from_user(flags as u32) {
        Ok(m) => m,
        Err(e) => return errno(e),
    };
    match src.area_share(
        VirtAddr::new(offer.addr),
        offer.size,
        space,
        VirtAddr::new(dst),
        mask,
    ) {
        Ok(()) => 0,
        Err(e) => errno(e),
    }
}
