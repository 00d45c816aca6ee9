//! The runtime of the user programs: entry point, system calls, printing.
//!
//! System calls use `int 0x80` on x86_64 (number in `rax`, arguments in
//! `rdi`, `rsi`, `rdx`, `r10`, result in `rax`), `ecall` on riscv64
//! (number in `a7`, arguments in `a0` to `a3`, result in `a0`) and
//! `svc #0` on aarch64 (number in `x8`, arguments in `x0` to `x3`, result
//! in `x0`). The same
//! programs build for both; the few lines that differ per architecture
//! (the entry point, the system-call instruction, the architecture-specific
//! bad accesses of some programs) are chosen with `cfg(target_arch)`.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use core::arch::{asm, global_asm};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};

/// System-call numbers, shared with the kernel.
#[path = "../../src/nr.rs"]
pub mod nr;

/// Area rights (HelenOS `AS_AREA_*`).
pub const READ: u32 = 1;
pub const WRITE: u32 = 2;
pub const EXEC: u32 = 4;
/// An unmapped guard page below the area (HelenOS `AS_AREA_GUARD`).
pub const GUARD: u32 = 0x10;
/// Reserve memory page by page at fault time (`AS_AREA_LATE_RESERVE`).
pub const LATE_RESERVE: u32 = 0x20;
/// The area grows down a page per fault in its guard page (implies
/// [`GUARD`]), up to 8 MiB.
pub const GROWS_DOWN: u32 = 0x40;

/// `AREA_CREATE_ANY`'s "place it anywhere" base (HelenOS `AS_AREA_ANY`).
pub const ANY: usize = usize::MAX;

/// `UserAreaInfo::backend` values.
pub const BACKEND_ANON: u32 = 1;
pub const BACKEND_ELF: u32 = 2;
pub const BACKEND_USER: u32 = 4;

/// `as_area_create`'s failure value.
pub const CREATE_FAILED: usize = usize::MAX;

pub const PAGE: usize = 4096;

#[cfg(target_arch = "x86_64")]
global_asm!(
    r#"
    .section .text._start, "ax"
    .global _start
_start:
    andq $-16, %rsp
    xorq %rbp, %rbp
    call user_start
    ud2
    "#,
    options(att_syntax)
);

#[cfg(target_arch = "riscv64")]
global_asm!(
    r#"
    .section .text._start, "ax"
    .global _start
_start:
    andi sp, sp, -16
    li fp, 0
    call user_start
    unimp
    "#
);

#[cfg(target_arch = "aarch64")]
global_asm!(
    r#"
    .section .text._start, "ax"
    .global _start
_start:
    mov x9, sp
    and x9, x9, #-16
    mov sp, x9
    mov x29, #0
    mov x30, #0
    bl user_start
    udf #0
    "#
);

extern "Rust" {
    fn main(arg: u64) -> i32;
}

/// The process numbers of the peers the kernel named at start (0: none).
static PEERS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// The process number of peer `i` (0 or 1) the scenario gave this
/// program (`rsi`, `rdx` at start), 0 when none.
pub fn peer(i: usize) -> u64 {
    PEERS.get(i).map_or(0, |p| p.load(Ordering::Relaxed))
}

#[no_mangle]
extern "C" fn user_start(arg: u64, peer0: u64, peer1: u64) -> ! {
    PEERS[0].store(peer0, Ordering::Relaxed);
    PEERS[1].store(peer1, Ordering::Relaxed);
    // SAFETY: every program in src/bin defines `#[no_mangle] fn main(arg:
    // u64) -> i32` (the documented convention), the Rust-ABI function this
    // declaration names; a program without one fails to link.
    let code = unsafe { main(arg) };
    exit(code)
}

/// A raw system call.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn syscall(n: u64, a0: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    let r: u64;
    // SAFETY: `int 0x80` enters the kernel through the one gate user mode may
    // use. The kernel saves every register in its trap frame and restores it
    // on return, changing only RAX (the result, declared `inlateout`); the
    // CPU switches to the kernel's stack for the trap, so the user stack and
    // its red zone are untouched (`nostack`). Memory is not declared
    // untouched: the kernel reads buffers passed by pointer (checked by
    // `copy_from_user`, never trusted) and maps areas. What a call does to
    // the program's memory (destroying or protecting an area) is the
    // caller's business: the programs reach areas only through raw pointers
    // and `read`/`write`, never through Rust references.
    unsafe {
        asm!("int 0x80", inlateout("rax") n => r, in("rdi") a0, in("rsi") a1, in("rdx") a2, in("r10") a3, options(nostack));
    }
    r
}

/// A raw system call.
#[cfg(target_arch = "riscv64")]
#[inline(always)]
pub fn syscall(n: u64, a0: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    let r: u64;
    // SAFETY: `ecall` from U-mode traps into the kernel, which saves every
    // register in its trap frame and restores it on return, changing only
    // `a0` (the result, declared `inlateout`) and resuming after the
    // `ecall`. The trap runs on the kernel's own stack, so the user stack is
    // untouched (`nostack`). Memory is not declared untouched, for the same
    // reasons as on x86_64: the kernel reads buffers passed by pointer and
    // maps areas.
    unsafe {
        asm!("ecall", inlateout("a0") a0 => r, in("a1") a1, in("a2") a2, in("a3") a3, in("a7") n, options(nostack));
    }
    r
}

/// Makes code just written at `addr` (one cache line) visible to this
/// CPU's instruction fetches: the data cache line cleaned to the point of
/// unification, the instruction cache's invalidated (EL0 may:
/// `SCTLR_EL1.UCI`). The page must be readable.
#[cfg(target_arch = "aarch64")]
pub fn sync_icache(addr: usize) {
    // SAFETY: cache maintenance by address of a line the caller mapped
    // readable, then barriers; no register or memory changes.
    unsafe {
        asm!(
            "dc cvau, {a}",
            "dsb ish",
            "ic ivau, {a}",
            "dsb ish",
            "isb",
            a = in(reg) addr,
            options(nostack)
        )
    };
}

/// A raw system call.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
pub fn syscall(n: u64, a0: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    let r: u64;
    // SAFETY: `svc #0` at EL0 traps into the kernel, which saves every
    // register in its trap frame and restores it on return, changing only
    // `x0` (the result, declared `inlateout`) and resuming after the `svc`.
    // The exception runs on the kernel's own stack, so the user stack is
    // untouched (`nostack`). Memory is not declared untouched, for the same
    // reasons as on x86_64: the kernel reads buffers passed by pointer and
    // maps areas.
    unsafe {
        asm!("svc #0", inlateout("x0") a0 => r, in("x1") a1, in("x2") a2, in("x3") a3, in("x8") n, options(nostack));
    }
    r
}

/// A raw system call with six arguments (Linux's `mmap`): the fifth in
/// `r8`, the sixth in `r9`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn syscall6(n: u64, a: [u64; 6]) -> u64 {
    let r: u64;
    // SAFETY: as for `syscall`: the kernel saves and restores every
    // register but RAX, and the trap runs on the kernel's stack.
    unsafe {
        asm!("int 0x80", inlateout("rax") n => r, in("rdi") a[0], in("rsi") a[1], in("rdx") a[2], in("r10") a[3], in("r8") a[4], in("r9") a[5], options(nostack));
    }
    r
}

/// A raw system call with six arguments (Linux's `mmap`): the fifth in
/// `a4`, the sixth in `a5`.
#[cfg(target_arch = "riscv64")]
#[inline(always)]
pub fn syscall6(n: u64, a: [u64; 6]) -> u64 {
    let r: u64;
    // SAFETY: as for `syscall`: the kernel saves and restores every
    // register but `a0`, and the trap runs on the kernel's stack.
    unsafe {
        asm!("ecall", inlateout("a0") a[0] => r, in("a1") a[1], in("a2") a[2], in("a3") a[3], in("a4") a[4], in("a5") a[5], in("a7") n, options(nostack));
    }
    r
}

/// A raw system call with six arguments (Linux's `mmap`): the fifth in
/// `x4`, the sixth in `x5`.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
pub fn syscall6(n: u64, a: [u64; 6]) -> u64 {
    let r: u64;
    // SAFETY: as for `syscall`: the kernel saves and restores every
    // register but `x0`, and the exception runs on the kernel's stack.
    unsafe {
        asm!("svc #0", inlateout("x0") a[0] => r, in("x1") a[1], in("x2") a[2], in("x3") a[3], in("x4") a[4], in("x5") a[5], in("x8") n, options(nostack));
    }
    r
}

/// Linux's memory calls (the kernel's `MMAP` to `MADVISE`, `MSYNC` to
/// `MINCORE`) with Linux's
/// constants; each returns what the Linux system call returns: an
/// address, 0, or a negative errno (`brk`: the break).
pub mod linux {
    use super::{nr, syscall6};

    pub const PROT_NONE: u64 = 0;
    pub const PROT_READ: u64 = 1;
    pub const PROT_WRITE: u64 = 2;
    pub const PROT_EXEC: u64 = 4;
    pub const MAP_SHARED: u64 = 0x01;
    pub const MAP_PRIVATE: u64 = 0x02;
    pub const MAP_DROPPABLE: u64 = 0x08;
    pub const MAP_FIXED: u64 = 0x10;
    pub const MAP_ANONYMOUS: u64 = 0x20;
    pub const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;
    pub const MAP_LOCKED: u64 = 0x2000;
    pub const MAP_GROWSDOWN: u64 = 0x0100;
    pub const MREMAP_MAYMOVE: u64 = 1;
    pub const MREMAP_FIXED: u64 = 2;
    pub const MREMAP_DONTUNMAP: u64 = 4;
    pub const MADV_WILLNEED: u64 = 3;
    pub const MADV_DONTNEED: u64 = 4;
    pub const MADV_REMOVE: u64 = 9;
    pub const MADV_DONTFORK: u64 = 10;
    pub const MADV_DODUMP: u64 = 17;
    pub const MADV_WIPEONFORK: u64 = 18;
    pub const MADV_POPULATE_READ: u64 = 22;
    pub const MADV_GUARD_INSTALL: u64 = 102;
    pub const MADV_GUARD_REMOVE: u64 = 103;
    pub const EPERM: i64 = -1;
    pub const EBADF: i64 = -9;
    pub const EAGAIN: i64 = -11;
    pub const ENOMEM: i64 = -12;
    pub const EEXIST: i64 = -17;
    pub const EINVAL: i64 = -22;

    pub fn mmap(addr: u64, len: u64, prot: u64, flags: u64, fd: u64, offset: u64) -> i64 {
        syscall6(nr::MMAP, [addr, len, prot, flags, fd, offset]) as i64
    }
    pub fn munmap(addr: u64, len: u64) -> i64 {
        syscall6(nr::MUNMAP, [addr, len, 0, 0, 0, 0]) as i64
    }
    pub fn mprotect(addr: u64, len: u64, prot: u64) -> i64 {
        syscall6(nr::MPROTECT, [addr, len, prot, 0, 0, 0]) as i64
    }
    pub fn mremap(old: u64, old_len: u64, new_len: u64, flags: u64, new_addr: u64) -> i64 {
        syscall6(nr::MREMAP, [old, old_len, new_len, flags, new_addr, 0]) as i64
    }
    pub fn brk(addr: u64) -> u64 {
        syscall6(nr::BRK, [addr, 0, 0, 0, 0, 0])
    }
    pub fn madvise(addr: u64, len: u64, advice: u64) -> i64 {
        syscall6(nr::MADVISE, [addr, len, advice, 0, 0, 0]) as i64
    }
    pub fn msync(addr: u64, len: u64, flags: u64) -> i64 {
        syscall6(nr::MSYNC, [addr, len, flags, 0, 0, 0]) as i64
    }
    /// `mlock2` (`mlock` with flags 0).
    pub fn mlock(addr: u64, len: u64, flags: u64) -> i64 {
        syscall6(nr::MLOCK, [addr, len, flags, 0, 0, 0]) as i64
    }
    pub fn munlock(addr: u64, len: u64) -> i64 {
        syscall6(nr::MUNLOCK, [addr, len, 0, 0, 0, 0]) as i64
    }
    pub fn mlockall(flags: u64) -> i64 {
        syscall6(nr::MLOCKALL, [flags, 0, 0, 0, 0, 0]) as i64
    }
    pub fn munlockall() -> i64 {
        syscall6(nr::MUNLOCKALL, [0; 6]) as i64
    }
    /// `setrlimit(RLIMIT_MEMLOCK)`: `bytes`, or `u64::MAX` for none.
    pub fn memlock_limit(bytes: u64) -> i64 {
        syscall6(nr::MEMLOCK_LIMIT, [bytes, 0, 0, 0, 0, 0]) as i64
    }
    /// `mincore`: a byte per page of `[addr, addr + len)` into `vec`.
    pub fn mincore(addr: u64, len: u64, vec: *mut u8) -> i64 {
        syscall6(nr::MINCORE, [addr, len, vec as u64, 0, 0, 0]) as i64
    }
    /// `mseal`: the mappings of `[addr, addr + len)` sealed.
    pub fn mseal(addr: u64, len: u64, flags: u64) -> i64 {
        syscall6(nr::MSEAL, [addr, len, flags, 0, 0, 0]) as i64
    }
}

/// Ends the calling thread (the task ends with its last thread).
pub fn exit(code: i32) -> ! {
    syscall(nr::EXIT, code as u64, 0, 0, 0);
    loop {
        core::hint::spin_loop();
    }
}

/// Prints raw bytes; returns 0 or a negative errno.
pub fn print_raw(ptr: *const u8, len: usize) -> isize {
    syscall(nr::PRINT, ptr as u64, len as u64, 0, 0) as isize
}

/// `as_area_create`.
pub fn area_create(addr: usize, size: usize, flags: u32) -> usize {
    syscall(nr::AREA_CREATE, addr as u64, size as u64, flags as u64, 0) as usize
}

/// `as_area_resize`.
pub fn area_resize(addr: usize, size: usize) -> isize {
    syscall(nr::AREA_RESIZE, addr as u64, size as u64, 0, 0) as isize
}

/// `as_area_change_flags`.
pub fn area_change_flags(addr: usize, flags: u32) -> isize {
    syscall(nr::AREA_CHANGE_FLAGS, addr as u64, flags as u64, 0, 0) as isize
}

/// `as_area_destroy`.
pub fn area_destroy(addr: usize) -> isize {
    syscall(nr::AREA_DESTROY, addr as u64, 0, 0, 0) as isize
}

/// Gives up the CPU.
pub fn yield_now() {
    syscall(nr::YIELD, 0, 0, 0, 0);
}

/// Offers `size` bytes at `addr` (in an area of the caller) to process
/// `to` under `key`, to be mapped with at most `rights` (`READ`, `WRITE`,
/// `EXEC`); -2 (ENOMEM) with `nr::MAX_OFFERS` offers pending.
pub fn share_offer(addr: usize, size: usize, to: u64, key: u64, rights: u32) -> isize {
    syscall6(
        nr::SHARE_OFFER,
        [addr as u64, size as u64, to, key, rights as u64, 0],
    ) as isize
}

/// Maps what process `from` offered to this one under `key` at `dst` with
/// `flags`; -1 (ENOENT) while no such offer is pending, -6 (EPERM) for
/// more rights than were offered.
pub fn share_accept(from: u64, key: u64, dst: usize, flags: u32) -> isize {
    syscall(nr::SHARE_ACCEPT, from, key, dst as u64, flags as u64) as isize
}

/// Starts a thread in this address space at `entry(arg)` on the stack
/// below `stack_top`; returns its thread number or a negative errno. The
/// stack pointer the thread starts with is aligned as the ABI wants it at
/// a function's entry (x86_64: 8 below a 16-byte boundary, as after a
/// call; riscv64 and aarch64: on one), so the entry may use aligned vector
/// stores (formatting does).
pub fn thread_create(entry: extern "C" fn(u64) -> !, stack_top: usize, arg: u64) -> isize {
    let top = stack_top & !15;
    #[cfg(target_arch = "x86_64")]
    let top = top.wrapping_sub(8);
    thread_create_raw(entry as usize as u64, top as u64, arg)
}

/// `thread_create` with any entry address.
pub fn thread_create_raw(entry: u64, stack_top: u64, arg: u64) -> isize {
    syscall(nr::THREAD_CREATE, entry, stack_top, arg, 0) as isize
}

/// HelenOS's `as_area_create(&base, size, flags, bound)`: `*base` is a
/// fixed address or [`ANY`] (then the lowest free place at or above
/// `bound`); the chosen base is written back to `*base` and returned, or
/// [`CREATE_FAILED`].
pub fn area_create_any(base: &mut usize, size: usize, flags: u32, bound: usize) -> usize {
    let p = base as *mut usize as u64;
    syscall(
        nr::AREA_CREATE_ANY,
        p,
        size as u64,
        flags as u64,
        bound as u64,
    ) as usize
}

/// An area anywhere at or above `bound`: its base, or [`CREATE_FAILED`].
pub fn area_anywhere(size: usize, flags: u32, bound: usize) -> usize {
    let mut base = ANY;
    area_create_any(&mut base, size, flags, bound)
}

/// One area as `AREA_GET_INFO` and `AREA_LIST` describe it.
#[derive(Clone, Copy, Default, Debug)]
#[repr(C)]
pub struct AreaInfo {
    pub base: u64,
    pub size: u64,
    pub flags: u32,
    pub backend: u32,
    /// Pages mapped now.
    pub resident: u64,
    /// Pages reserved against the commit limit.
    pub reserved: u64,
}

const _: () = assert!(core::mem::size_of::<AreaInfo>() == nr::AREA_INFO);

/// The area containing `addr`, or the negative errno (-1: none).
pub fn area_info(addr: usize) -> Result<AreaInfo, isize> {
    let mut info = AreaInfo::default();
    let r = syscall(
        nr::AREA_GET_INFO,
        addr as u64,
        &mut info as *mut AreaInfo as u64,
        0,
        0,
    ) as isize;
    if r == 0 {
        Ok(info)
    } else {
        Err(r)
    }
}

/// Fills `out` with this task's areas, lowest first; returns how many it
/// has (possibly more than `out` holds) or a negative errno.
pub fn area_list(out: &mut [AreaInfo]) -> isize {
    syscall(
        nr::AREA_LIST,
        out.as_mut_ptr() as u64,
        out.len() as u64,
        0,
        0,
    ) as isize
}

/// An area at `base` whose pages process `pager` supplies, with the
/// identifiers `ids`; returns the base or a negative errno.
pub fn area_create_paged(base: usize, size: usize, flags: u32, pager: u64, ids: [u64; 3]) -> isize {
    let info = [pager, ids[0], ids[1], ids[2]];
    syscall(
        nr::AREA_CREATE_PAGED,
        base as u64,
        size as u64,
        flags as u64,
        info.as_ptr() as u64,
    ) as isize
}

/// A page-in request as the pager receives it.
#[derive(Clone, Copy, Default, Debug)]
#[repr(C)]
pub struct PageIn {
    /// Answer with this.
    pub handle: u64,
    /// Byte offset of the page in its area.
    pub offset: u64,
    pub size: u64,
    pub ids: [u64; 3],
    /// 1 read, 2 write, 4 execute.
    pub access: u64,
    /// The process number of the client whose area faulted.
    pub client: u64,
}

const _: () = assert!(core::mem::size_of::<PageIn>() == nr::PAGE_IN_RECORD);

/// Waits for the next page-in request to this task (as a pager).
pub fn pager_receive() -> Result<PageIn, isize> {
    let mut r = PageIn::default();
    let e = syscall(nr::PAGER_RECEIVE, &mut r as *mut PageIn as u64, 0, 0, 0) as isize;
    if e == 0 {
        Ok(r)
    } else {
        Err(e)
    }
}

/// The next page-in request if one is queued (`Err(-1)`: none).
pub fn pager_try_receive() -> Result<PageIn, isize> {
    let mut r = PageIn::default();
    let p = &mut r as *mut PageIn as u64;
    let e = syscall(nr::PAGER_RECEIVE, p, nr::RECEIVE_NOWAIT, 0, 0) as isize;
    if e == 0 {
        Ok(r)
    } else {
        Err(e)
    }
}

/// Answers request `handle` with this task's page at `addr`.
pub fn pager_answer(handle: u64, addr: usize) -> isize {
    syscall(nr::PAGER_ANSWER, handle, addr as u64, 0, 0) as isize
}

/// Answers request `handle` with an error.
pub fn pager_fail(handle: u64) -> isize {
    syscall(nr::PAGER_ANSWER, handle, 0, 1, 0) as isize
}

/// Linux's `fork`: 0 in the new process (a copy-on-write copy of this
/// one, running a copy of the calling thread only), the child's process
/// number here, or a negative Linux errno (`-ENOMEM`, `-EAGAIN`).
pub fn fork() -> i64 {
    syscall(nr::FORK, 0, 0, 0, 0) as i64
}

/// Waits for child `pid` to end: its Linux wait status (`code << 8`, or
/// `nr::KILLED_STATUS`), or a negative Linux errno (`-ECHILD`).
pub fn wait(pid: u64) -> i64 {
    syscall(nr::WAIT, pid, 0, 0, 0) as i64
}

/// The CPU running the caller.
pub fn cpu() -> u64 {
    syscall(nr::CPU, 0, 0, 0, 0)
}

/// The caller's process number.
pub fn pid() -> u64 {
    syscall(nr::PID, 0, 0, 0, 0)
}

/// A line buffer that prints on drop.
pub struct Line {
    buf: [u8; 200],
    len: usize,
}

impl Line {
    pub const fn new() -> Self {
        Self {
            buf: [0; 200],
            len: 0,
        }
    }
    pub fn flush(&mut self) {
        if self.len > 0 {
            print_raw(self.buf.as_ptr(), self.len);
            self.len = 0;
        }
    }
}

impl Default for Line {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

#[doc(hidden)]
pub fn _println(args: fmt::Arguments) {
    let mut l = Line::new();
    let _ = l.write_fmt(args);
    l.flush();
}

/// Prints one line through the kernel.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::_println(format_args!($($arg)*)) };
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    _println(format_args!("user panic: {}", info));
    exit(101)
}

#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

#[no_mangle]
pub extern "C" fn _Unwind_Resume() -> ! {
    exit(102)
}

/// Reads `p` so the compiler cannot drop the access. Deliberately safe to
/// call with any pointer: a bad one is the kernel's business (the task dies).
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub fn read<T: Copy>(p: *const T) -> T {
    // SAFETY: not sound for every `p`, on purpose: the test programs use it
    // for accesses the kernel must refuse. What holds: they pass aligned
    // pointers to integers (valid for every bit pattern) that are either
    // their own locals, or in areas they created (memory outside any Rust
    // allocation, which volatile accesses may reach), or addresses whose
    // access faults (NULL, kernel addresses). Such a fault never returns to
    // this code: the kernel kills the task, so no value is ever produced.
    unsafe { core::ptr::read_volatile(p) }
}

/// Writes `p` so the compiler cannot drop the access (see [`read`]).
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub fn write<T: Copy>(p: *mut T, v: T) {
    // SAFETY: as for `read`, deliberately not sound for every `p`: callers
    // pass aligned pointers to integers in their own locals or in areas they
    // created, or ones whose write faults (read-only data, a read+exec
    // page), which the kernel answers by killing the task before the store
    // happens.
    unsafe { core::ptr::write_volatile(p, v) }
}

// No libc: the memory functions the compiler calls, shared with the kernel
// (riscv64 builds `core` with `compiler-builtins-mem`, which has them).
#[cfg(target_arch = "x86_64")]
global_asm!(include_str!("../../memfuncs.s"), options(att_syntax));
