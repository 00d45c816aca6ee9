//! Parking a thread inside the kernel (see `crate::park`): the stack
//! switch and the exception stack (IST2, where user page faults enter).

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering};

use super::regs::MAX_CPUS;

global_asm!(
    r#"
    .text
    .global park_switch
park_switch:
    /* rdi: where to save the stack pointer, rsi: the new stack's top,
       rdx: the function to call there, rcx: its argument */
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    mov [rdi], rsp
    mov rsp, rsi
    mov rdi, rcx
    call rdx
    ud2

    .global park_resume
park_resume:
    /* rdi: a stack pointer park_switch saved */
    mov rsp, rdi
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret
    "#
);

extern "C" {
    /// Saves the callee-saved registers on the current stack, stores the
    /// stack pointer at `save`, and calls `f(arg)` on the stack whose top
    /// is `top` (16-aligned); returns when [`park_resume`] is given the
    /// saved stack pointer (on any CPU).
    pub fn park_switch(save: *mut u64, top: u64, f: extern "C" fn(usize) -> !, arg: usize);
    /// Continues the code that called [`park_switch`] and saved `sp`,
    /// leaving the current stack for good.
    pub fn park_resume(sp: u64) -> !;
}

/// Bytes of each trap stack (IST1, IST2 and their replacements).
pub const TRAP_STACK_SIZE: u64 = 64 * 1024;

/// The tops of each CPU's IST1 and IST2 stacks when replaced (0: the
/// static ones).
static TOPS: [[AtomicU64; 2]; MAX_CPUS] =
    [const { [AtomicU64::new(0), AtomicU64::new(0)] }; MAX_CPUS];

/// The tops of CPU `cpu`'s trap stacks: IST1 (interrupts and system
/// calls) and IST2 (exceptions, user page faults among them).
pub fn trap_stack_tops(cpu: usize) -> [u64; 2] {
    let (ist1, ist2) = super::cpu::static_trap_stack_tops(cpu);
    let get = |i: usize, d: u64| match TOPS[cpu][i].load(Ordering::Relaxed) {
        0 => d,
        t => t,
    };
    [get(0, ist1), get(1, ist2)]
}

/// Makes `top` (16-aligned, [`TRAP_STACK_SIZE`] bytes below it) trap
/// stack `slot` of this CPU `cpu` (0: IST1, 1: IST2).
pub fn replace_trap_stack(cpu: usize, slot: usize, top: u64) {
    TOPS[cpu][slot].store(top, Ordering::Relaxed);
    super::cpu::set_ist(cpu, slot, top);
}

/// The current stack pointer.
#[inline(always)]
pub fn stack_pointer() -> u64 {
    let sp: u64;
    // SAFETY: reads RSP into a register; no memory, no flags touched.
    unsafe {
        core::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    sp
}
