//! The entry from OpenSBI (boot hart) and from SBI HSM `hart_start` (the
//! others): MMU off, S-mode, the hart ID in a0. The boot hart clears the
//! bss and builds the boot page table; every hart loads it, jumps from its
//! physical load address to the linked address in the direct map, and
//! calls into Rust on its boot stack.
//!
//! Boot page table (Sv39 root, 1 GiB leaves; V R W X A D):
//! - slot 2: identity map of 0x8000_0000..0xc000_0000 (the RAM holding
//!   the kernel), for the instructions between the `satp` write and the
//!   jump to the linked address;
//! - slots 256 to 259: the direct map of physical 0..4 GiB at
//!   `0xffff_ffc0_0000_0000` (devices and RAM; global), where the kernel
//!   is linked. The kernel address space adopts these four slots.

use core::arch::global_asm;

global_asm!(
    r#"
    .section .text.entry, "ax"
    .global _start
_start:
    csrw sie, zero
    csrw sscratch, zero
    mv s0, a0
    mv s1, a1
    /* clear the bss (at its physical address: `la` is pc-relative) */
    la t0, __bss_start
    la t1, __bss_end
1:
    bgeu t0, t1, 2f
    sd zero, 0(t0)
    addi t0, t0, 8
    j 1b
2:
    la t0, boot_root
    li t1, 0x200000cf
    sd t1, 16(t0)
    li t4, 2048
    add t3, t0, t4
    li t1, 0xef
    li t2, 0x10000000
    sd t1, 0(t3)
    add t1, t1, t2
    sd t1, 8(t3)
    add t1, t1, t2
    sd t1, 16(t3)
    add t1, t1, t2
    sd t1, 24(t3)
    call boot_paging_on
    la sp, bsp_stack_top
    mv a0, s0
    mv a1, s1
    call rv_main
3:
    wfi
    j 3b

    .global _ap_start
_ap_start:
    csrw sie, zero
    csrw sscratch, zero
    mv s0, a0
    mv s1, a1
    call boot_paging_on
    la t0, AP_STACK_TOPS
    slli t1, s1, 3
    add t0, t0, t1
    ld sp, 0(t0)
    mv a0, s1
    call ap_main
4:
    wfi
    j 4b

    /* Loads the boot page table and returns to the caller's linked
       (direct-map) address; clobbers t0 to t2. */
boot_paging_on:
    la t0, boot_root
    srli t0, t0, 12
    li t1, 8
    slli t1, t1, 60
    or t0, t0, t1
    sfence.vma
    csrw satp, t0
    sfence.vma
    li t2, 0xffffffc000000000
    add ra, ra, t2
    ret

    .section .bss.boot, "aw", @nobits
    .balign 4096
    .global boot_root
boot_root:
    .skip 4096
    .balign 16
bsp_stack:
    .skip 65536
bsp_stack_top:
    "#
);
