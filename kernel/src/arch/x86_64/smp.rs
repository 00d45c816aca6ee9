//! Starting the other CPUs: a real-mode trampoline copied to 0x8000, the
//! INIT-SIPI-SIPI sequence through the local APIC, and the 64-bit entry of
//! the application processors.

use core::arch::global_asm;
use core::sync::atomic::{AtomicUsize, Ordering};

use super::regs::{phys_to_virt, MAX_CPUS};
use super::{apic, cpu, regs, tlb};
use crate::{kprintln, sched, SYSTEM};

/// Physical page of the trampoline (the SIPI vector is its page number).
const TRAMPOLINE: u64 = 0x8000;

global_asm!(
    r#"
    .section .rodata.trampoline, "a"
    .balign 16
    .global tramp_start
    .code16
tramp_start:
    cli
    cld
    xorw %ax, %ax
    movw %ax, %ds
    lgdtl (tramp_gdtr - tramp_start + 0x8000)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, $(tramp32 - tramp_start + 0x8000)

    .code32
tramp32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl %cr4, %eax
    orl $(1 << 5), %eax
    movl %eax, %cr4
    movl (tramp_cr3 - tramp_start + 0x8000), %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx
    rdmsr
    orl $((1 << 8) | (1 << 11)), %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80010001, %eax
    movl %eax, %cr0
    ljmpl $0x18, $(tramp64 - tramp_start + 0x8000)

    .code64
tramp64:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movq %cr0, %rax
    andq $~(1 << 2), %rax
    orq $(1 << 1), %rax
    movq %rax, %cr0
    movq %cr4, %rax
    orq $((1 << 9) | (1 << 10)), %rax
    movq %rax, %cr4
    movq (tramp_stack - tramp_start + 0x8000), %rsp
    xorq %rbp, %rbp
    movq (tramp_entry - tramp_start + 0x8000), %rax
    callq *%rax
1:
    hlt
    jmp 1b

    .balign 8
tramp_gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF
    .quad 0x00CF92000000FFFF
    .quad 0x00AF9A000000FFFF
tramp_gdtr:
    .word tramp_gdtr - tramp_gdt - 1
    .long tramp_gdt - tramp_start + 0x8000
    .balign 8
    .global tramp_cr3
tramp_cr3:
    .quad 0
    .global tramp_stack
tramp_stack:
    .quad 0
    .global tramp_entry
tramp_entry:
    .quad 0
    .global tramp_end
tramp_end:
    .text
    "#,
    options(att_syntax)
);

extern "C" {
    static tramp_start: u8;
    static tramp_end: u8;
    static tramp_cr3: u8;
    static tramp_stack: u8;
    static tramp_entry: u8;
    static boot_pml4: u8;
}

#[repr(C, align(16))]
struct Stack([u8; 64 * 1024]);
static mut AP_STACKS: [Stack; MAX_CPUS] = [const { Stack([0; 64 * 1024]) }; MAX_CPUS];

/// The CPU number the trampoline is starting.
static BOOTING: AtomicUsize = AtomicUsize::new(0);

fn tramp_offset(sym: *const u8) -> u64 {
    sym as u64 - &raw const tramp_start as u64
}

/// Starts every other CPU; returns how many came up.
#[allow(clippy::needless_range_loop)]
pub fn start_aps() -> usize {
    let count = crate::machine::CPU_COUNT.load(Ordering::Relaxed);
    let len = tramp_offset(&raw const tramp_end) as usize;
    // SAFETY: the source is the trampoline's `len` bytes in the kernel's
    // read-only data (`tramp_start`..`tramp_end`, one global_asm block). The
    // destination is physical 0x8000 through the direct map: low memory
    // below the frame allocator's 2 MiB floor that nothing else of the
    // kernel uses (the multiboot information was read at boot). The two are
    // distinct memory, and no CPU runs the trampoline while it is copied.
    unsafe {
        core::ptr::copy_nonoverlapping(&raw const tramp_start, phys_to_virt(TRAMPOLINE), len);
    }
    let slot = |sym: *const u8| phys_to_virt(TRAMPOLINE + tramp_offset(sym)) as *mut u64;
    let mut up = 0;
    for c in 1..count {
        // SAFETY: only the address of AP_STACKS[c] is taken (`&raw`: no
        // reference is made, nothing is read), with a bounds-checked index;
        // CPU c alone will use that stack, from its top down.
        let stack = unsafe { (&raw const AP_STACKS[c]) as u64 } + 64 * 1024;
        // SAFETY: `tramp_cr3`, `tramp_stack` and `tramp_entry` are 8-byte
        // aligned quads inside the trampoline (`.balign 8`), and the copy at
        // 0x8000 keeps that alignment; the slots point into that copy,
        // memory outside any Rust allocation that only the boot CPU writes
        // (here). CPU c reads them after the SIPI that follows.
        unsafe {
            slot(&raw const tramp_cr3).write_volatile(&raw const boot_pml4 as u64);
            slot(&raw const tramp_stack).write_volatile(stack);
            slot(&raw const tramp_entry).write_volatile(ap_main as *const () as u64);
        }
        BOOTING.store(c, Ordering::SeqCst);
        apic::start_cpu(c, (TRAMPOLINE >> 12) as u8);
        let mut waited = 0;
        while !apic::online().contains(c) && waited < 1_000 {
            apic::delay_us(1_000);
            waited += 1;
        }
        if apic::online().contains(c) {
            up += 1;
        } else {
            kprintln!(
                "smp: cpu {} (APIC ID {}) did not start",
                c,
                apic::apic_id(c)
            );
        }
    }
    up
}

/// The 64-bit entry of an application processor, on its boot stack, with
/// the boot page tables and interrupts off.
extern "C" fn ap_main() -> ! {
    let c = BOOTING.load(Ordering::SeqCst);
    cpu::init_cpu(c);
    apic::init();
    let f = tlb::init_features();
    let sys = &*SYSTEM;
    // Not online yet: only this CPU's number is needed for the switch.
    regs::set_cpu_id_only(c);
    sys.switch(None, sys.kernel())
        .expect("switch to the kernel space");
    tlb::flush_all();
    kprintln!(
        "smp: cpu {} up (APIC ID {}), pcid={}, kernel space loaded",
        c,
        apic::id(),
        if f.pcid { "on" } else { "off" }
    );
    apic::register_cpu(c);
    apic::start_timer(crate::TIMESLICE_US);
    sched::start(c)
}
