//! Multiboot 1 entry: the 32-bit code the loader jumps to, the boot page
//! tables, the switch to long mode and the jump to the higher half.
//!
//! Boot page tables (all 2 MiB pages, none global):
//! - PML4[0]   -> identity map of the first 1 GiB (for this code and the AP
//!   trampoline);
//! - PML4[256] -> direct map of the first 4 GiB of physical memory at
//!   `0xffff_8000_0000_0000` (the last GiB uncached: devices, the local APIC);
//! - PML4[511] -> the first GiB again at `0xffff_ffff_8000_0000` (the kernel
//!   image, linked there).

use core::arch::global_asm;

global_asm!(
    r#"
    .section .multiboot, "a"
    .balign 4
    .long 0x1BADB002
    .long 0x00000003
    .long -(0x1BADB002 + 0x00000003)

    .section .boot.text, "ax"
    .code32
    .global _start32
_start32:
    cli
    cld
    movl $boot_stack_top, %esp
    movl %ebx, boot_mb_info
    movl %eax, boot_mb_magic

    /* zero the tables (9 pages) */
    movl $boot_pml4, %edi
    movl $(9 * 1024), %ecx
    xorl %eax, %eax
    rep stosl

    movl $(boot_pdpt_low + 3), boot_pml4
    movl $(boot_pdpt_dmap + 3), boot_pml4 + 256 * 8
    movl $(boot_pdpt_high + 3), boot_pml4 + 511 * 8
    movl $(boot_pd + 3), boot_pdpt_low
    movl $(boot_pd + 3), boot_pdpt_high + 510 * 8
    movl $(boot_pd + 3), boot_pdpt_dmap
    movl $(boot_pd + 4096 + 3), boot_pdpt_dmap + 8
    movl $(boot_pd + 8192 + 3), boot_pdpt_dmap + 16
    movl $(boot_pd + 12288 + 3), boot_pdpt_dmap + 24

    /* 2048 PD entries: i * 2 MiB | present | writable | huge; the 4th GiB
       also cache-disabled and write-through */
    movl $boot_pd, %edi
    xorl %ecx, %ecx
1:
    movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax
    cmpl $1536, %ecx
    jb 2f
    orl $0x18, %eax
2:
    movl %eax, (%edi, %ecx, 8)
    movl $0, 4(%edi, %ecx, 8)
    incl %ecx
    cmpl $2048, %ecx
    jb 1b

    /* PAE, then the PML4, then EFER.LME | EFER.NXE, then paging */
    movl %cr4, %eax
    orl $(1 << 5), %eax
    movl %eax, %cr4
    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx
    rdmsr
    orl $((1 << 8) | (1 << 11)), %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80010001, %eax
    movl %eax, %cr0

    lgdt boot_gdtr
    ljmp $0x08, $boot_long_mode

    .code64
    .global boot_long_mode
boot_long_mode:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    /* SSE: CR0.EM off, CR0.MP on; CR4.OSFXSR | CR4.OSXMMEXCPT */
    movq %cr0, %rax
    andq $~(1 << 2), %rax
    orq $(1 << 1), %rax
    movq %rax, %cr0
    movq %cr4, %rax
    orq $((1 << 9) | (1 << 10)), %rax
    movq %rax, %cr4
    movabsq $bsp_stack_top, %rsp
    xorq %rbp, %rbp
    movl boot_mb_magic, %edi
    movl boot_mb_info, %esi
    movabsq $kmain, %rax
    callq *%rax
3:
    hlt
    jmp 3b

    .section .boot.data, "aw"
    .balign 16
    .global boot_gdt
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF
    .quad 0x00CF92000000FFFF
boot_gdt_end:
    .balign 4
    .word 0
    .global boot_gdtr
boot_gdtr:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt
    .balign 4
    .global boot_mb_info
boot_mb_info:
    .long 0
boot_mb_magic:
    .long 0

    .section .bss.bsp_stack, "aw", @nobits
    .balign 16
bsp_stack:
    .skip 65536
bsp_stack_top:

    .section .boot.bss, "aw", @nobits
    .balign 4096
    .global boot_pml4
boot_pml4:
    .skip 4096
boot_pdpt_low:
    .skip 4096
boot_pdpt_dmap:
    .skip 4096
boot_pdpt_high:
    .skip 4096
boot_pd:
    .skip 4 * 4096
    .skip 4096
boot_stack:
    .skip 16384
boot_stack_top:
    "#,
    options(att_syntax)
);

// Memory functions the compiler calls (no libc here), shared with the
// user programs.
global_asm!(include_str!("../../../memfuncs.s"), options(att_syntax));
