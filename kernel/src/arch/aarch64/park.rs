//! Parking a thread inside the kernel (see `crate::park`): the stack
//! switch and the trap stack EL0 exceptions enter on (the CPU record's
//! `kstack_top`).

use core::arch::global_asm;

global_asm!(
    r#"
    .text
    .global park_switch
park_switch:
    /* x0: where to save sp, x1: the new stack's top, x2: the function to
       call there, x3: its argument. TPIDR_EL1 (the CPU record) is not
       saved: the thread resumes with the record of the CPU it resumes on. */
    sub sp, sp, #160
    stp x19, x20, [sp, #0]
    stp x21, x22, [sp, #16]
    stp x23, x24, [sp, #32]
    stp x25, x26, [sp, #48]
    stp x27, x28, [sp, #64]
    stp x29, x30, [sp, #80]
    stp d8, d9, [sp, #96]
    stp d10, d11, [sp, #112]
    stp d12, d13, [sp, #128]
    stp d14, d15, [sp, #144]
    mov x4, sp
    str x4, [x0]
    mov sp, x1
    mov x0, x3
    blr x2
    brk #0

    .global park_resume
park_resume:
    mov sp, x0
    ldp x19, x20, [sp, #0]
    ldp x21, x22, [sp, #16]
    ldp x23, x24, [sp, #32]
    ldp x25, x26, [sp, #48]
    ldp x27, x28, [sp, #64]
    ldp x29, x30, [sp, #80]
    ldp d8, d9, [sp, #96]
    ldp d10, d11, [sp, #112]
    ldp d12, d13, [sp, #128]
    ldp d14, d15, [sp, #144]
    add sp, sp, #160
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

/// Bytes of a trap stack (the CPU's and their replacements).
pub const TRAP_STACK_SIZE: u64 = 64 * 1024;

/// The top of CPU `cpu`'s trap stack (EL0 exceptions enter on it).
pub fn trap_stack_tops(cpu: usize) -> [u64; 1] {
    [super::stacks(cpu).kstack_top]
}

/// Makes `top` (16-aligned, [`TRAP_STACK_SIZE`] bytes below it) the trap
/// stack of this CPU `cpu` (`slot` 0, the only one).
pub fn replace_trap_stack(cpu: usize, slot: usize, top: u64) {
    debug_assert_eq!(slot, 0);
    super::set_kstack_top(cpu, top);
}

/// The current stack pointer.
#[inline(always)]
pub fn stack_pointer() -> u64 {
    let sp: u64;
    // SAFETY: copies `sp` into a register; no memory touched.
    unsafe {
        core::arch::asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    sp
}
