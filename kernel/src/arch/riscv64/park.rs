//! Parking a thread inside the kernel (see `crate::park`): the stack
//! switch and the trap stack U-mode traps enter on (the hart record's
//! `kstack_top`).

use core::arch::global_asm;

global_asm!(
    r#"
    .text
    .option push
    .option arch, +d
    .global park_switch
park_switch:
    /* a0: where to save sp, a1: the new stack's top, a2: the function to
       call there, a3: its argument. tp (the hart record) is not saved:
       the thread resumes with the record of the hart it resumes on. */
    addi sp, sp, -208
    sd ra, 0(sp)
    sd s0, 8(sp)
    sd s1, 16(sp)
    sd s2, 24(sp)
    sd s3, 32(sp)
    sd s4, 40(sp)
    sd s5, 48(sp)
    sd s6, 56(sp)
    sd s7, 64(sp)
    sd s8, 72(sp)
    sd s9, 80(sp)
    sd s10, 88(sp)
    sd s11, 96(sp)
    fsd fs0, 104(sp)
    fsd fs1, 112(sp)
    fsd fs2, 120(sp)
    fsd fs3, 128(sp)
    fsd fs4, 136(sp)
    fsd fs5, 144(sp)
    fsd fs6, 152(sp)
    fsd fs7, 160(sp)
    fsd fs8, 168(sp)
    fsd fs9, 176(sp)
    fsd fs10, 184(sp)
    fsd fs11, 192(sp)
    sd sp, 0(a0)
    mv sp, a1
    mv a0, a3
    jalr a2
    unimp

    .global park_resume
park_resume:
    mv sp, a0
    ld ra, 0(sp)
    ld s0, 8(sp)
    ld s1, 16(sp)
    ld s2, 24(sp)
    ld s3, 32(sp)
    ld s4, 40(sp)
    ld s5, 48(sp)
    ld s6, 56(sp)
    ld s7, 64(sp)
    ld s8, 72(sp)
    ld s9, 80(sp)
    ld s10, 88(sp)
    ld s11, 96(sp)
    fld fs0, 104(sp)
    fld fs1, 112(sp)
    fld fs2, 120(sp)
    fld fs3, 128(sp)
    fld fs4, 136(sp)
    fld fs5, 144(sp)
    fld fs6, 152(sp)
    fld fs7, 160(sp)
    fld fs8, 168(sp)
    fld fs9, 176(sp)
    fld fs10, 184(sp)
    fld fs11, 192(sp)
    addi sp, sp, 208
    ret
    .option pop
    "#
);

extern "C" {
    /// Saves the callee-saved registers on the current stack, stores the
    /// stack pointer at `save`, and calls `f(arg)` on the stack whose top
    /// is `top` (16-aligned); returns when [`park_resume`] is given the
    /// saved stack pointer (on any hart).
    pub fn park_switch(save: *mut u64, top: u64, f: extern "C" fn(usize) -> !, arg: usize);
    /// Continues the code that called [`park_switch`] and saved `sp`,
    /// leaving the current stack for good.
    pub fn park_resume(sp: u64) -> !;
}

/// Bytes of a trap stack (the hart's and their replacements).
pub const TRAP_STACK_SIZE: u64 = 64 * 1024;

/// The top of hart `cpu`'s trap stack (U-mode traps enter on it).
pub fn trap_stack_tops(cpu: usize) -> [u64; 1] {
    [super::hart(cpu).kstack_top]
}

/// Makes `top` (16-aligned, [`TRAP_STACK_SIZE`] bytes below it) the trap
/// stack of this hart `cpu` (`slot` 0, the only one).
pub fn replace_trap_stack(cpu: usize, slot: usize, top: u64) {
    debug_assert_eq!(slot, 0);
    super::set_kstack_top(cpu, top);
}

/// The current stack pointer.
#[inline(always)]
pub fn stack_pointer() -> u64 {
    let sp: u64;
    // SAFETY: copies `sp` into a register; no memory touched.
    unsafe { core::arch::asm!("mv {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    sp
}
