//! The entry from QEMU (boot CPU, at the ELF entry) and from PSCI
//! `CPU_ON` (the others): EL1, MMU off, interrupts masked; `CPU_ON`
//! passes the CPU index in x0. The boot CPU clears the bss and builds the
//! boot page table; every CPU turns on floating point and the MMU (MAIR,
//! TCR, both TTBRs on the boot table), jumps from its physical load address
//! to the linked address in the direct map, and calls into Rust on its
//! boot stack.
//!
//! Boot table (4 KiB granule, 48 bits; one level-0 table used by both
//! `TTBR0_EL1` and `TTBR1_EL1`): slot 0 points to a level-1 table of
//! 1 GiB blocks mapping physical 0..4 GiB, global: the first gigabyte
//! (QEMU virt's devices) as device nGnRE, execute-never; the others as
//! normal write-back memory. Through `TTBR0_EL1` it is the identity map
//! the instructions after the MMU comes on run from; through `TTBR1_EL1`
//! it is the direct map at `0xffff_0000_0000_0000`, where the kernel is
//! linked. The kernel address space adopts slot 0; the identity half is
//! dropped when the kernel space is loaded (`TTBR0_EL1` then points to an
//! empty table, and the TLB is flushed).

use core::arch::global_asm;

use aspace::paging::aarch64::MAIR_EL1;

use super::DIRECT_MAP;

/// `TCR_EL1` but for IPS and AS: T0SZ = T1SZ = 16 (48 bits), 4 KiB
/// granules (TG0 = 0, TG1 = 2), walks inner/outer write-back cacheable
/// and inner shareable, the ASID from `TTBR0_EL1` (A1 = 0).
const TCR: u64 = 16 | 1 << 8 | 1 << 10 | 3 << 12 | 16 << 16 | 1 << 24 | 1 << 26 | 3 << 28 | 2 << 30;
/// `TCR_EL1.AS`: 16-bit ASIDs.
pub const TCR_AS: u64 = 1 << 36;
/// `SCTLR_EL1`: the ARMv8.0 RES1 bits (11, 20, 22, 23, 28, 29), the MMU
/// (M), data and instruction caches (C, I), EL0 access to `CTR_EL0` and
/// cache maintenance by address (UCT, UCI: the JIT program's instruction
/// sync), `wfi`/`wfe` at EL0 not trapped (nTWI, nTWE). No alignment
/// checks.
const SCTLR: u64 = 1 << 11
    | 1 << 20
    | 1 << 22
    | 1 << 23
    | 1 << 28
    | 1 << 29
    | 1
    | 1 << 2
    | 1 << 12
    | 1 << 15
    | 1 << 16
    | 1 << 18
    | 1 << 26;
/// A 1 GiB block of device nGnRE memory (AttrIndx 1), EL1 only,
/// execute-never, access flag set.
const DEVICE_BLOCK: u64 = 1 | 1 << 2 | 1 << 10 | 1 << 53 | 1 << 54;
/// A 1 GiB block of normal memory (AttrIndx 0), inner shareable, EL1
/// read/write/execute, EL0 execute-never, access flag set.
const NORMAL_BLOCK: u64 = 1 | 3 << 8 | 1 << 10 | 1 << 54;

global_asm!(
    r#"
    .section .text.entry, "ax"
    .global _start
_start:
    msr daifset, #0xf
    mov x0, #(3 << 20)
    msr cpacr_el1, x0
    isb
    /* clear the bss (at its physical address: adrp is pc-relative) */
    adrp x0, __bss_start
    add x0, x0, :lo12:__bss_start
    adrp x1, __bss_end
    add x1, x1, :lo12:__bss_end
1:
    cmp x0, x1
    b.hs 2f
    str xzr, [x0], #8
    b 1b
2:
    adrp x0, boot_l0
    adrp x1, boot_l1
    orr x2, x1, #3
    str x2, [x0]
    ldr x2, ={device}
    str x2, [x1]
    ldr x2, ={normal}
    mov x3, #0x40000000
    add x2, x2, x3
    str x2, [x1, #8]
    add x2, x2, x3
    str x2, [x1, #16]
    add x2, x2, x3
    str x2, [x1, #24]
    dsb sy
    bl boot_mmu_on
    ldr x0, =bsp_stack_top
    mov sp, x0
    bl a64_main
3:
    wfi
    b 3b

    .global _ap_start
_ap_start:
    msr daifset, #0xf
    mov x19, x0
    mov x0, #(3 << 20)
    msr cpacr_el1, x0
    isb
    bl boot_mmu_on
    ldr x0, =AP_STACK_TOPS
    ldr x1, [x0, x19, lsl #3]
    mov sp, x1
    mov x0, x19
    bl ap_main
4:
    wfi
    b 4b

    /* Turns on the MMU with the boot table in both TTBRs and returns to
       the caller's linked (direct-map) address; clobbers x0 to x4. */
boot_mmu_on:
    ldr x0, ={mair}
    msr mair_el1, x0
    mrs x1, id_aa64mmfr0_el1
    and x2, x1, #0xf
    mov x4, #5
    cmp x2, x4
    csel x2, x4, x2, hi
    ldr x0, ={tcr}
    orr x0, x0, x2, lsl #32
    ubfx x3, x1, #4, #4
    cmp x3, #2
    b.ne 5f
    orr x0, x0, #{tcr_as}
5:
    msr tcr_el1, x0
    adrp x0, boot_l0
    msr ttbr0_el1, x0
    msr ttbr1_el1, x0
    isb
    tlbi vmalle1
    dsb nsh
    isb
    ldr x0, ={sctlr}
    msr sctlr_el1, x0
    isb
    ldr x0, ={offset}
    add x30, x30, x0
    ret
    .ltorg

    .section .bss.boot, "aw", @nobits
    .balign 4096
    .global boot_l0
boot_l0:
    .skip 4096
boot_l1:
    .skip 4096
    .balign 16
bsp_stack:
    .skip 65536
bsp_stack_top:
    "#,
    device = const DEVICE_BLOCK,
    normal = const NORMAL_BLOCK,
    mair = const MAIR_EL1,
    tcr = const TCR,
    tcr_as = const TCR_AS,
    sctlr = const SCTLR,
    offset = const DIRECT_MAP,
);
