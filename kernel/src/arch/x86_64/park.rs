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

/// The exception stack's top per CPU (mirrors TSS.IST2; 0: the boot one).
static EXC_TOP: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// The top of the stack user page faults enter on, on `cpu`.
pub fn trap_stack_top(cpu: usize) -> u64 {
    match EXC_TOP[cpu].load(Ordering::Relaxed) {
        0 => super::cpu::exception_stack_top(cpu),
        t => t,
    }
}

/// Makes `top` the stack user page faults enter on, on this CPU `cpu`.
pub fn set_trap_stack_top(cpu: usize, top: u64) {
    EXC_TOP[cpu].store(top, Ordering::Relaxed);
    super::cpu::set_exception_stack(cpu, top);
}
