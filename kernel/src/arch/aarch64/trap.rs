//! Exceptions: the trap frame, the vector table (`VBAR_EL1`), the entry
//! and exit paths (`eret`), and the dispatch of system calls (`svc`, EC
//! 0x15), instruction and data aborts (EC 0x20/0x21, 0x24/0x25), other
//! synchronous exceptions, and interrupts (the virtual timer, the GIC's
//! software-generated interrupt that carries IPIs).
//!
//! The kernel runs at EL1 on `SP_EL1` with IRQs masked; `TPIDR_EL1`
//! points to the CPU's record. An exception from EL0 arrives on `SP_EL1`,
//! which the exit path left at the top of the CPU's trap stack: a frame
//! returning to EL0 always sits just below that top (the dispatch moves
//! it there first when it is elsewhere: on the idle loop's stack, or on
//! the stack of a parked thread resumed here), and `eret` leaves `SP_EL1`
//! at the top. An exception at EL1 (a kernel-area fault, or an interrupt
//! of the idle loop) stays on the current stack. The frame holds every
//! general-purpose and SIMD register, `FPCR`, `FPSR`, the EL0 stack
//! pointer and the exception registers.

use core::arch::global_asm;
use core::mem::size_of;
use core::sync::atomic::{AtomicBool, Ordering};

use aspace::{Access, FaultContext, FaultOutcome, VirtAddr};

use super::{cpu_id, gic, stacks, tlb, MAX_CPUS};
use crate::{kprintln, sched, shootdown, stats, syscall};

/// `SPSR_EL1` of an EL0 frame: AArch64 EL0t, interrupts unmasked.
const SPSR_EL0: u64 = 0;
/// `SPSR_EL1` of the idle loop: EL1h (its own `SP_EL1`), IRQs unmasked.
const SPSR_EL1H: u64 = 0b0101;

/// Exception classes (`ESR_EL1` bits 31:26).
const EC_UNKNOWN: u64 = 0x00;
const EC_SVC64: u64 = 0x15;
const EC_IABT_LOW: u64 = 0x20;
const EC_IABT_CUR: u64 = 0x21;
const EC_DABT_LOW: u64 = 0x24;
const EC_DABT_CUR: u64 = 0x25;

/// Registers saved on every exception.
#[repr(C, align(16))]
#[derive(Clone)]
pub struct TrapFrame {
    /// x0 to x30 (x8 the system-call number, x0 to x5 its arguments).
    pub x: [u64; 31],
    /// The interrupted stack pointer (`SP_EL0` for EL0).
    pub sp: u64,
    /// Where the exception came from (where `eret` goes).
    pub elr: u64,
    /// The interrupted `PSTATE` (mode and interrupt masks).
    pub spsr: u64,
    /// The syndrome.
    pub esr: u64,
    /// The faulting address.
    pub far: u64,
    /// q0 to q31.
    pub q: [u128; 32],
    /// The floating-point control register.
    pub fpcr: u64,
    /// The floating-point status register.
    pub fpsr: u64,
}

/// The frame's size, as the assembly uses it.
const FRAME: usize = 816;
const _: () = assert!(size_of::<TrapFrame>() == FRAME);

impl TrapFrame {
    fn zeroed() -> Self {
        Self {
            x: [0; 31],
            sp: 0,
            elr: 0,
            spsr: 0,
            esr: 0,
            far: 0,
            q: [0; 32],
            fpcr: 0,
            fpsr: 0,
        }
    }

    /// An EL0 frame starting at `pc` with stack `sp` and `args` in x0, x1,
    /// x2; interrupts on after `eret`.
    pub fn new_user(pc: u64, sp: u64, args: [u64; 3]) -> Self {
        let mut f = Self::zeroed();
        f.elr = pc;
        f.sp = sp;
        f.x[..3].copy_from_slice(&args);
        f.spsr = SPSR_EL0;
        f
    }

    /// The instruction pointer.
    pub fn pc(&self) -> u64 {
        self.elr
    }

    /// The stack pointer.
    pub fn sp(&self) -> u64 {
        self.sp
    }

    /// Makes the system call just made run again when the frame returns
    /// (a call that waits: the task yields, then retries it). `ELR_EL1`
    /// points past the `svc` already.
    pub fn restart_syscall(&mut self) {
        self.elr -= 4;
    }

    /// A system call's number (x8) and arguments (x0 to x5; the kernel's
    /// own calls take four, Linux's `mmap` six).
    pub fn syscall_args(&self) -> (u64, [u64; 6]) {
        let x = &self.x;
        (x[8], [x[0], x[1], x[2], x[3], x[4], x[5]])
    }

    /// Sets a system call's result (x0).
    pub fn set_syscall_result(&mut self, v: u64) {
        self.x[0] = v;
    }

    /// Whether the exception came from EL0.
    pub fn is_user(&self) -> bool {
        self.spsr & 0xf == 0
    }

    /// Whether `eret` may return to this EL0 frame: an instruction and a
    /// stack pointer below `user_end`. (`eret` itself would not fault on
    /// others, the task would; the kernel treats them as on x86_64.)
    pub fn returnable(&self, user_end: u64) -> bool {
        self.is_user() && self.elr < user_end && self.sp < user_end
    }
}

global_asm!(
    r#"
    .macro VENTRY kind
    .balign 0x80
    sub sp, sp, #{frame}
    stp x0, x1, [sp, #0]
    mov x0, #\kind
    b trap_common
    .endm

    .text
    .balign 2048
    .global trap_vectors
trap_vectors:
    /* current EL with SP_EL0 (unused by this kernel) */
    VENTRY 0
    VENTRY 1
    VENTRY 2
    VENTRY 3
    /* current EL with SP_ELx */
    VENTRY 0
    VENTRY 1
    VENTRY 2
    VENTRY 3
    /* lower EL, AArch64 */
    VENTRY 0
    VENTRY 1
    VENTRY 2
    VENTRY 3
    /* lower EL, AArch32 (never: EL0 runs AArch64 only) */
    VENTRY 3
    VENTRY 3
    VENTRY 3
    VENTRY 3

trap_common:
    stp x2, x3, [sp, #16]
    stp x4, x5, [sp, #32]
    stp x6, x7, [sp, #48]
    stp x8, x9, [sp, #64]
    stp x10, x11, [sp, #80]
    stp x12, x13, [sp, #96]
    stp x14, x15, [sp, #112]
    stp x16, x17, [sp, #128]
    stp x18, x19, [sp, #144]
    stp x20, x21, [sp, #160]
    stp x22, x23, [sp, #176]
    stp x24, x25, [sp, #192]
    stp x26, x27, [sp, #208]
    stp x28, x29, [sp, #224]
    str x30, [sp, #240]
    mrs x1, spsr_el1
    tst x1, #0xf
    b.ne 1f
    mrs x2, sp_el0
    b 2f
1:
    add x2, sp, #{frame}
2:
    str x2, [sp, #248]
    mrs x2, elr_el1
    stp x2, x1, [sp, #256]
    mrs x2, esr_el1
    mrs x3, far_el1
    stp x2, x3, [sp, #272]
    stp q0, q1, [sp, #288]
    stp q2, q3, [sp, #320]
    stp q4, q5, [sp, #352]
    stp q6, q7, [sp, #384]
    stp q8, q9, [sp, #416]
    stp q10, q11, [sp, #448]
    stp q12, q13, [sp, #480]
    stp q14, q15, [sp, #512]
    stp q16, q17, [sp, #544]
    stp q18, q19, [sp, #576]
    stp q20, q21, [sp, #608]
    stp q22, q23, [sp, #640]
    stp q24, q25, [sp, #672]
    stp q26, q27, [sp, #704]
    stp q28, q29, [sp, #736]
    stp q30, q31, [sp, #768]
    mrs x2, fpcr
    mrs x3, fpsr
    str x2, [sp, #800]
    str x3, [sp, #808]
    mov x1, x0
    mov x0, sp
    bl trap_dispatch

    .global trap_return
trap_return:
    /* sp: the frame */
    ldr x2, [sp, #800]
    ldr x3, [sp, #808]
    msr fpcr, x2
    msr fpsr, x3
    ldp q0, q1, [sp, #288]
    ldp q2, q3, [sp, #320]
    ldp q4, q5, [sp, #352]
    ldp q6, q7, [sp, #384]
    ldp q8, q9, [sp, #416]
    ldp q10, q11, [sp, #448]
    ldp q12, q13, [sp, #480]
    ldp q14, q15, [sp, #512]
    ldp q16, q17, [sp, #544]
    ldp q18, q19, [sp, #576]
    ldp q20, q21, [sp, #608]
    ldp q22, q23, [sp, #640]
    ldp q24, q25, [sp, #672]
    ldp q26, q27, [sp, #704]
    ldp q28, q29, [sp, #736]
    ldp q30, q31, [sp, #768]
    ldp x2, x1, [sp, #256]
    msr elr_el1, x2
    msr spsr_el1, x1
    ldr x2, [sp, #248]
    /* the flags of this test decide below too (loads keep them) */
    tst x1, #0xf
    b.ne 3f
    /* to EL0: its stack pointer; page-table stores done before its
       accesses walk the tables */
    msr sp_el0, x2
    dsb ish
    b 4f
3:
    /* to EL1: SP_EL0 (unused at EL1; the next return to EL0 sets it)
       carries x0 while sp becomes the frame's */
    ldr x0, [sp, #0]
    msr sp_el0, x0
4:
    ldp x2, x3, [sp, #16]
    ldp x4, x5, [sp, #32]
    ldp x6, x7, [sp, #48]
    ldp x8, x9, [sp, #64]
    ldp x10, x11, [sp, #80]
    ldp x12, x13, [sp, #96]
    ldp x14, x15, [sp, #112]
    ldp x16, x17, [sp, #128]
    ldp x18, x19, [sp, #144]
    ldp x20, x21, [sp, #160]
    ldp x22, x23, [sp, #176]
    ldp x24, x25, [sp, #192]
    ldp x26, x27, [sp, #208]
    ldp x28, x29, [sp, #224]
    ldr x30, [sp, #240]
    b.ne 5f
    ldp x0, x1, [sp, #0]
    add sp, sp, #{frame}
    eret
5:
    ldr x1, [sp, #8]
    ldr x0, [sp, #248]
    mov sp, x0
    mrs x0, sp_el0
    eret

    .global enter_frame
enter_frame:
    mov sp, x0
    b trap_return

    .global idle_loop
idle_loop:
    wfi
    b idle_loop
    "#,
    frame = const FRAME,
);

extern "C" {
    /// The vector table (`VBAR_EL1`).
    fn trap_vectors();
    fn enter_frame(frame: *const TrapFrame) -> !;
    fn idle_loop() -> !;
}

/// Leaves the boot path (or the current stack) for good: runs `frame` (a
/// task or the idle loop) on this CPU, from the top of its trap stack.
pub fn enter(cpu: usize, frame: &TrapFrame) -> ! {
    let slot = (stacks(cpu).kstack_top - size_of::<TrapFrame>() as u64) as *mut TrapFrame;
    // SAFETY: `slot` is the 16-aligned top of this CPU's trap stack
    // (static memory of `stacks(cpu)`, or a replacement from `kstack`), not
    // in use: the callers (`sched::start` on the boot stack, `after_park`
    // on the switch stack, and `trap_dispatch` on a stack that is not the
    // trap stack, or below a frame that is not at its top only on another
    // stack) run on no part of it, and `frame` is not there.
    unsafe { slot.write(frame.clone()) };
    // SAFETY: `slot` holds a complete frame (a task's from `new_user` or a
    // saved exception, or the idle frame); `enter_frame` makes it the stack
    // and leaves through `trap_return` (`eret`), never returning. Nothing
    // on the current stack is needed afterwards.
    unsafe { enter_frame(slot) }
}

/// The frame of this CPU's idle loop (EL1h, interrupts on after `eret`,
/// its own stack).
pub fn idle_frame(cpu: usize) -> TrapFrame {
    let h = stacks(cpu);
    let mut f = TrapFrame::zeroed();
    f.elr = idle_loop as *const () as u64;
    f.sp = h.idle_top;
    f.spsr = SPSR_EL1H;
    f
}

/// Installs the vector table on this CPU.
pub fn init_cpu() {
    // SAFETY: `trap_vectors` is the 2 KiB-aligned vector table above;
    // IRQs stay masked in the kernel.
    unsafe {
        core::arch::asm!(
            "msr vbar_el1, {v}",
            "isb",
            v = in(reg) trap_vectors as *const () as u64,
            options(nostack)
        );
    }
}

fn exception_name(ec: u64) -> &'static str {
    match ec {
        EC_UNKNOWN => "undefined instruction",
        0x01 => "wfi/wfe trapped",
        0x07 => "SIMD/floating point trapped",
        0x0e => "illegal execution state",
        0x18 => "system register access trapped",
        EC_IABT_LOW | EC_IABT_CUR => "instruction abort",
        0x22 => "PC alignment fault",
        EC_DABT_LOW | EC_DABT_CUR => "data abort",
        0x26 => "SP alignment fault",
        0x2c => "floating-point exception",
        0x2f => "SError",
        0x30..=0x35 => "debug exception",
        0x3c => "brk instruction",
        _ => "exception",
    }
}

/// A pending wake-up (a task became ready) per CPU, carried by the same
/// software-generated interrupt as shootdowns.
pub static WAKE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Entered from the vectors with the saved registers and the kind of
/// exception (0 synchronous, 1 IRQ, 2 FIQ, 3 SError or AArch32).
#[no_mangle]
extern "C" fn trap_dispatch(frame: &mut TrapFrame, kind: u64) {
    sched::trap_entered(frame.is_user());
    match kind {
        0 => synchronous(frame),
        1 => irq(frame),
        _ => {
            if frame.is_user() {
                let why =
                    alloc::format!("unexpected exception (kind {kind}, ESR {:#x})", frame.esr);
                sched::kill_current(frame, &why);
            } else {
                kernel_fault(frame, "unexpected exception");
            }
        }
    }
    sched::check_return(frame);
    if frame.is_user() {
        // EL0 exceptions enter at the top of the trap stack: the frame
        // must be there when `eret` leaves it.
        let cpu = cpu_id();
        let at = frame as *const TrapFrame as u64;
        if at + FRAME as u64 != stacks(cpu).kstack_top {
            let f = frame.clone();
            enter(cpu, &f);
        }
    }
}

fn irq(frame: &mut TrapFrame) {
    let Some(id) = gic::acknowledge() else {
        return;
    };
    match id & 0x3ff {
        gic::TIMER_PPI => {
            // The timer's line stays up until it is rearmed: end the
            // interrupt after.
            super::rearm_timer();
            gic::end(id);
            stats::TICKS.fetch_add(1, Ordering::Relaxed);
            if cpu_id() == 0 {
                crate::scenario::watchdog();
            }
            sched::tick(frame);
        }
        gic::SGI_IPI => {
            gic::end(id);
            shootdown::ipi();
            if WAKE[cpu_id()].swap(false, Ordering::AcqRel) {
                sched::tick(frame);
            }
        }
        _ => gic::end(id),
    }
}

fn synchronous(frame: &mut TrapFrame) {
    let ec = frame.esr >> 26 & 0x3f;
    match ec {
        EC_SVC64 if frame.is_user() => syscall::dispatch(frame),
        EC_IABT_LOW | EC_IABT_CUR | EC_DABT_LOW | EC_DABT_CUR => abort(frame, ec),
        _ if frame.is_user() => {
            let why = alloc::format!(
                "{} (ESR {:#x}, FAR {:#x}) at elr {:#x}",
                exception_name(ec),
                frame.esr,
                frame.far,
                frame.elr
            );
            sched::kill_current(frame, &why);
        }
        _ => kernel_fault(frame, exception_name(ec)),
    }
}

/// Fault status codes (`ESR_EL1` ISS bits 5:0) the core serves:
/// translation (0b0001xx), access flag (0b0010xx) and permission
/// (0b0011xx) faults at any level. Others (alignment, external aborts)
/// are not the page table's business.
fn is_mmu_fault(esr: u64) -> bool {
    matches!(esr & 0x3f, 0x04..=0x0f)
}

fn abort(frame: &mut TrapFrame, ec: u64) {
    let addr = frame.far;
    let access = match ec {
        EC_IABT_LOW | EC_IABT_CUR => Access::Exec,
        // WnR (bit 6); cache maintenance (CM, bit 8) reports as a write
        // but only needs read access.
        _ if frame.esr & (1 << 6) != 0 && frame.esr & (1 << 8) == 0 => Access::Write,
        _ => Access::Read,
    };
    if !is_mmu_fault(frame.esr) {
        let name = exception_name(ec);
        if frame.is_user() {
            let why = alloc::format!(
                "{name} (ESR {:#x}, FAR {addr:#x}) at elr {:#x}",
                frame.esr,
                frame.elr
            );
            sched::kill_current(frame, &why);
            return;
        }
        kernel_fault(frame, name);
    }
    if frame.is_user() {
        stats::USER_FAULTS.fetch_add(1, Ordering::Relaxed);
        sched::user_page_fault(frame, VirtAddr::new(addr), access);
        tlb::fault_served();
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
                tlb::fault_served();
                return;
            }
        }
    }
    kprintln!(
        "kernel page fault at {:#x} ({:?}, ESR {:#x})",
        addr,
        access,
        frame.esr
    );
    kernel_fault(frame, "page fault");
}

fn kernel_fault(frame: &TrapFrame, what: &str) -> ! {
    panic!(
        "{} in kernel on cpu {}: ESR {:#x} FAR {:#x} elr {:#x} sp {:#x} lr {:#x}",
        what,
        cpu_id(),
        frame.esr,
        frame.far,
        frame.elr,
        frame.sp,
        frame.x[30]
    );
}
