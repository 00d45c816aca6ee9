//! Traps: the trap frame, the entry and exit paths (`stvec`, `sscratch`,
//! `sret`), and the dispatch of exceptions, system calls (`ecall`, scause
//! 8), page faults (scause 12, 13, 15) and interrupts (the SBI timer, the
//! supervisor software interrupt that carries IPIs).
//!
//! In the kernel, `tp` points to the hart's [`Hart`] record and
//! `sscratch` is 0; while a task runs in U-mode, `sscratch` holds that
//! pointer. So the entry swaps `tp` and `sscratch`: non-zero means the trap
//! came from U-mode (switch to the hart's kernel stack), zero means from
//! the kernel (stay on the current stack: kernel code runs with
//! interrupts off, so that is an exception such as a kernel-area page
//! fault, or an interrupt of the idle loop). The frame holds every integer
//! and floating-point register, `fcsr` and the trap CSRs.

use core::arch::global_asm;
use core::mem::size_of;
use core::sync::atomic::Ordering;

use aspace::{Access, FaultContext, FaultOutcome, VirtAddr};

use super::{cpu_id, hart, tlb, MAX_CPUS};
use crate::{kprintln, sched, shootdown, stats, syscall};

/// `sstatus.SPP`: the trap came from (`sret` returns to) S-mode.
pub const SSTATUS_SPP: u64 = 1 << 8;
/// `sstatus.SPIE`: interrupts on after `sret`.
pub const SSTATUS_SPIE: u64 = 1 << 5;
/// `sstatus.FS` = Initial: floating-point registers usable.
pub const SSTATUS_FS_INITIAL: u64 = 1 << 13;
/// The `sstatus` bits a frame restores (`sret` target mode, interrupts
/// after it, the floating-point state).
const SSTATUS_RESTORED: u64 = 0x6120;

/// `scause` bit 63: an interrupt.
const INTERRUPT: u64 = 1 << 63;
/// Supervisor software interrupt (IPIs).
const IRQ_SOFT: u64 = 1;
/// Supervisor timer interrupt.
const IRQ_TIMER: u64 = 5;
/// Environment call from U-mode.
const ECALL_U: u64 = 8;

/// Registers saved on every trap.
#[repr(C, align(16))]
#[derive(Clone)]
pub struct TrapFrame {
    /// x0 to x31 (x0 unused; x2 is `sp`, x4 `tp`, x10 to x17 `a0` to `a7`).
    pub x: [u64; 32],
    /// Where the trap came from (where `sret` goes).
    pub sepc: u64,
    /// `sstatus` at the trap (SPP, SPIE, FS are restored).
    pub sstatus: u64,
    /// The trap's cause.
    pub scause: u64,
    /// The faulting address, or the instruction bits.
    pub stval: u64,
    /// f0 to f31.
    pub f: [u64; 32],
    /// The floating-point control and status register.
    pub fcsr: u64,
    _pad: u64,
}

const _: () = assert!(size_of::<TrapFrame>() == 560);

impl TrapFrame {
    fn zeroed() -> Self {
        Self {
            x: [0; 32],
            sepc: 0,
            sstatus: 0,
            scause: 0,
            stval: 0,
            f: [0; 32],
            fcsr: 0,
            _pad: 0,
        }
    }

    /// A U-mode frame starting at `pc` with stack `sp` and `args` in `a0`,
    /// `a1`, `a2`; interrupts on after `sret`.
    pub fn new_user(pc: u64, sp: u64, args: [u64; 3]) -> Self {
        let mut f = Self::zeroed();
        f.sepc = pc;
        f.x[2] = sp;
        f.x[10..13].copy_from_slice(&args);
        f.sstatus = SSTATUS_SPIE | SSTATUS_FS_INITIAL;
        f
    }

    /// The instruction pointer.
    pub fn pc(&self) -> u64 {
        self.sepc
    }

    /// The stack pointer.
    pub fn sp(&self) -> u64 {
        self.x[2]
    }

    /// Makes the system call just made run again when the frame returns
    /// (a call that waits: the task yields, then retries it). The entry
    /// moved `sepc` past the `ecall` already.
    pub fn restart_syscall(&mut self) {
        self.sepc -= 4;
    }

    /// A system call's number (`a7`) and arguments (`a0` to `a5`; the
    /// kernel's own calls take four, Linux's `mmap` six).
    pub fn syscall_args(&self) -> (u64, [u64; 6]) {
        let x = &self.x;
        (x[17], [x[10], x[11], x[12], x[13], x[14], x[15]])
    }

    /// Sets a system call's result (`a0`).
    pub fn set_syscall_result(&mut self, v: u64) {
        self.x[10] = v;
    }

    /// Whether the trap came from U-mode.
    pub fn is_user(&self) -> bool {
        self.sstatus & SSTATUS_SPP == 0
    }

    /// Whether `sret` may return to this U-mode frame: an instruction and a
    /// stack pointer below `user_end`. (`sret` itself would not fault on
    /// others, the task would; the kernel treats them as on x86_64.)
    pub fn returnable(&self, user_end: u64) -> bool {
        self.is_user() && self.sepc < user_end && self.x[2] < user_end
    }
}

global_asm!(
    r#"
    .text
    .option push
    .option arch, +d
    .balign 4
    .global trap_entry
trap_entry:
    csrrw tp, sscratch, tp
    bnez tp, 1f
    /* from S-mode: sscratch holds the kernel's tp */
    csrr tp, sscratch
    sd sp, 8(tp)
    j 2f
1:
    /* from U-mode: tp is the hart record, sscratch the task's tp */
    sd sp, 8(tp)
    ld sp, 0(tp)
2:
    addi sp, sp, -560
    sd x1, 8(sp)
    sd x3, 24(sp)
    sd x5, 40(sp)
    sd x6, 48(sp)
    sd x7, 56(sp)
    sd x8, 64(sp)
    sd x9, 72(sp)
    sd x10, 80(sp)
    sd x11, 88(sp)
    sd x12, 96(sp)
    sd x13, 104(sp)
    sd x14, 112(sp)
    sd x15, 120(sp)
    sd x16, 128(sp)
    sd x17, 136(sp)
    sd x18, 144(sp)
    sd x19, 152(sp)
    sd x20, 160(sp)
    sd x21, 168(sp)
    sd x22, 176(sp)
    sd x23, 184(sp)
    sd x24, 192(sp)
    sd x25, 200(sp)
    sd x26, 208(sp)
    sd x27, 216(sp)
    sd x28, 224(sp)
    sd x29, 232(sp)
    sd x30, 240(sp)
    sd x31, 248(sp)
    ld t0, 8(tp)
    sd t0, 16(sp)
    csrr t0, sscratch
    sd t0, 32(sp)
    csrw sscratch, zero
    csrr t0, sepc
    sd t0, 256(sp)
    csrr t0, sstatus
    sd t0, 264(sp)
    csrr t0, scause
    sd t0, 272(sp)
    csrr t0, stval
    sd t0, 280(sp)
    fsd f0, 288(sp)
    fsd f1, 296(sp)
    fsd f2, 304(sp)
    fsd f3, 312(sp)
    fsd f4, 320(sp)
    fsd f5, 328(sp)
    fsd f6, 336(sp)
    fsd f7, 344(sp)
    fsd f8, 352(sp)
    fsd f9, 360(sp)
    fsd f10, 368(sp)
    fsd f11, 376(sp)
    fsd f12, 384(sp)
    fsd f13, 392(sp)
    fsd f14, 400(sp)
    fsd f15, 408(sp)
    fsd f16, 416(sp)
    fsd f17, 424(sp)
    fsd f18, 432(sp)
    fsd f19, 440(sp)
    fsd f20, 448(sp)
    fsd f21, 456(sp)
    fsd f22, 464(sp)
    fsd f23, 472(sp)
    fsd f24, 480(sp)
    fsd f25, 488(sp)
    fsd f26, 496(sp)
    fsd f27, 504(sp)
    fsd f28, 512(sp)
    fsd f29, 520(sp)
    fsd f30, 528(sp)
    fsd f31, 536(sp)
    frcsr t0
    sd t0, 544(sp)
    mv a0, sp
    call trap_dispatch

    .global trap_return
trap_return:
    /* sp: the frame; tp: this hart's record */
    ld t0, 544(sp)
    fscsr t0
    fld f0, 288(sp)
    fld f1, 296(sp)
    fld f2, 304(sp)
    fld f3, 312(sp)
    fld f4, 320(sp)
    fld f5, 328(sp)
    fld f6, 336(sp)
    fld f7, 344(sp)
    fld f8, 352(sp)
    fld f9, 360(sp)
    fld f10, 368(sp)
    fld f11, 376(sp)
    fld f12, 384(sp)
    fld f13, 392(sp)
    fld f14, 400(sp)
    fld f15, 408(sp)
    fld f16, 416(sp)
    fld f17, 424(sp)
    fld f18, 432(sp)
    fld f19, 440(sp)
    fld f20, 448(sp)
    fld f21, 456(sp)
    fld f22, 464(sp)
    fld f23, 472(sp)
    fld f24, 480(sp)
    fld f25, 488(sp)
    fld f26, 496(sp)
    fld f27, 504(sp)
    fld f28, 512(sp)
    fld f29, 520(sp)
    fld f30, 528(sp)
    fld f31, 536(sp)
    ld t0, 256(sp)
    csrw sepc, t0
    ld t0, 264(sp)
    li t1, {restored}
    csrc sstatus, t1
    and t0, t0, t1
    csrs sstatus, t0
    andi t0, t0, 0x100
    bnez t0, 3f
    /* back to U-mode: the next trap finds this hart's record */
    csrw sscratch, tp
3:
    ld x1, 8(sp)
    ld x3, 24(sp)
    ld x4, 32(sp)
    ld x5, 40(sp)
    ld x6, 48(sp)
    ld x7, 56(sp)
    ld x8, 64(sp)
    ld x9, 72(sp)
    ld x10, 80(sp)
    ld x11, 88(sp)
    ld x12, 96(sp)
    ld x13, 104(sp)
    ld x14, 112(sp)
    ld x15, 120(sp)
    ld x16, 128(sp)
    ld x17, 136(sp)
    ld x18, 144(sp)
    ld x19, 152(sp)
    ld x20, 160(sp)
    ld x21, 168(sp)
    ld x22, 176(sp)
    ld x23, 184(sp)
    ld x24, 192(sp)
    ld x25, 200(sp)
    ld x26, 208(sp)
    ld x27, 216(sp)
    ld x28, 224(sp)
    ld x29, 232(sp)
    ld x30, 240(sp)
    ld x31, 248(sp)
    ld x2, 16(sp)
    sret

    .global enter_frame
enter_frame:
    mv sp, a0
    j trap_return

    .global idle_loop
idle_loop:
    wfi
    j idle_loop
    .option pop
    "#,
    restored = const SSTATUS_RESTORED,
);

extern "C" {
    /// The trap entry (`stvec`, direct mode).
    pub fn trap_entry();
    fn enter_frame(frame: *const TrapFrame) -> !;
    fn idle_loop() -> !;
}

/// Leaves the boot path for good: runs `frame` (a task or the idle loop)
/// on this hart.
pub fn enter(cpu: usize, frame: &TrapFrame) -> ! {
    let slot = (hart(cpu).kstack_top - size_of::<TrapFrame>() as u64) as *mut TrapFrame;
    // SAFETY: `slot` is the 16-aligned top of this hart's kernel trap stack
    // (static memory of `hart(cpu)`, or a replacement from `kstack`), not
    // in use: the callers, `sched::start` on the boot stack outside any
    // trap and `sched::after_park` on the hart's switch stack after a
    // thread parked (taking the stack it ran on with it), run on no trap
    // stack, and `frame` is not there.
    unsafe { slot.write(frame.clone()) };
    // SAFETY: `slot` holds a complete frame (a task's from `new_user` or a
    // saved trap, or the idle frame); `enter_frame` makes it the stack and
    // leaves through `trap_return` (`sret`), never returning. Nothing on
    // the boot stack is needed afterwards.
    unsafe { enter_frame(slot) }
}

/// The frame of this hart's idle loop (S-mode, interrupts on after
/// `sret`, its own stack, `tp` the hart record).
pub fn idle_frame(cpu: usize) -> TrapFrame {
    let h = hart(cpu);
    let mut f = TrapFrame::zeroed();
    f.sepc = idle_loop as *const () as u64;
    f.x[2] = h.idle_top;
    f.x[4] = h.record();
    f.sstatus = SSTATUS_SPP | SSTATUS_SPIE | SSTATUS_FS_INITIAL;
    f
}

/// Installs the trap entry on this hart (`stvec`, `sscratch` 0: in the
/// kernel) and turns on the floating-point unit for the frames' saves.
pub fn init_hart() {
    // SAFETY: `trap_entry` is 4-aligned code (direct mode: the low bits
    // stay 0); `sscratch` 0 tells the entry the trap came from the kernel;
    // FS=Initial lets the entry save the floating-point registers. None
    // of this touches memory. Interrupts stay off (sstatus.SIE is clear
    // in the kernel).
    unsafe {
        core::arch::asm!(
            "csrw stvec, {entry}",
            "csrw sscratch, zero",
            "csrs sstatus, {fs}",
            entry = in(reg) trap_entry as *const () as u64,
            fs = in(reg) SSTATUS_FS_INITIAL,
            options(nostack)
        );
    }
}

fn exception_name(code: u64) -> &'static str {
    match code {
        0 => "instruction address misaligned",
        1 => "instruction access fault",
        2 => "illegal instruction",
        3 => "breakpoint",
        4 => "load address misaligned",
        5 => "load access fault",
        6 => "store address misaligned",
        7 => "store access fault",
        8 => "environment call from U-mode",
        9 => "environment call from S-mode",
        12 => "instruction page fault",
        13 => "load page fault",
        15 => "store page fault",
        _ => "exception",
    }
}

/// A pending wake-up (a task became ready) per CPU, carried by the same
/// software interrupt as shootdowns.
pub static WAKE: [core::sync::atomic::AtomicBool; MAX_CPUS] =
    [const { core::sync::atomic::AtomicBool::new(false) }; MAX_CPUS];

/// Entered from `trap_entry` with the saved registers.
#[no_mangle]
extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    sched::trap_entered(frame.is_user());
    let cause = frame.scause;
    if cause & INTERRUPT != 0 {
        match cause & !INTERRUPT {
            IRQ_TIMER => {
                super::rearm_timer();
                stats::TICKS.fetch_add(1, Ordering::Relaxed);
                if cpu_id() == 0 {
                    crate::scenario::watchdog();
                }
                sched::tick(frame);
            }
            IRQ_SOFT => {
                // SAFETY: clears this hart's pending supervisor software
                // interrupt (sip.SSIP), which the SBI set for the IPI;
                // before serving, so a later IPI is not lost.
                unsafe { core::arch::asm!("csrc sip, {}", in(reg) 2u64, options(nostack)) };
                shootdown::ipi();
                if WAKE[cpu_id()].swap(false, Ordering::AcqRel) {
                    sched::tick(frame);
                }
            }
            _ => {}
        }
    } else {
        match cause {
            ECALL_U => {
                frame.sepc += 4;
                syscall::dispatch(frame);
            }
            12 | 13 | 15 => page_fault(frame),
            _ if frame.is_user() => {
                let why = alloc::format!(
                    "{} (scause {}, stval {:#x}) at sepc {:#x}",
                    exception_name(cause),
                    cause,
                    frame.stval,
                    frame.sepc
                );
                sched::kill_current(frame, &why);
            }
            _ => kernel_fault(frame, exception_name(cause)),
        }
    }
    sched::check_return(frame);
}

fn page_fault(frame: &mut TrapFrame) {
    let addr = frame.stval;
    let access = match frame.scause {
        12 => Access::Exec,
        15 => Access::Write,
        _ => Access::Read,
    };
    if frame.is_user() {
        stats::USER_FAULTS.fetch_add(1, Ordering::Relaxed);
        sched::user_page_fault(frame, VirtAddr::new(addr), access);
        // A fault served: this hart may have cached the invalid entry.
        tlb::fence_fault(addr);
        return;
    }
    if addr >= super::LAYOUT.kernel_start {
        if let Some(sys) = crate::SYSTEM.get() {
            if sys
                .kernel()
                .page_fault(VirtAddr::new(addr), access, FaultContext::Kernel)
                == FaultOutcome::Ok
            {
                stats::KERNEL_FAULTS.fetch_add(1, Ordering::Relaxed);
                tlb::fence_fault(addr);
                return;
            }
        }
    }
    kprintln!(
        "kernel page fault at {:#x} ({:?}, scause {})",
        addr,
        access,
        frame.scause
    );
    kernel_fault(frame, "page fault");
}

fn kernel_fault(frame: &TrapFrame, what: &str) -> ! {
    panic!(
        "{} in kernel on cpu {}: scause {} stval {:#x} sepc {:#x} sp {:#x} ra {:#x}",
        what,
        cpu_id(),
        frame.scause,
        frame.stval,
        frame.sepc,
        frame.x[2],
        frame.x[1]
    );
}

/// Turns on this hart's timer and software interrupts (taken only where
/// `sstatus.SIE` is on: U-mode and the idle loop).
pub fn enable_interrupts() {
    // SAFETY: sets sie.SSIE and sie.STIE; the kernel itself runs with
    // sstatus.SIE clear, so only U-mode and the idle loop take them.
    unsafe { core::arch::asm!("csrs sie, {}", in(reg) (1u64 << 1) | (1 << 5), options(nostack)) };
}
