//! Port I/O, control registers, MSRs and the CPU number.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, Ordering};

/// Most CPUs the kernel supports.
pub const MAX_CPUS: usize = 8;

/// Virtual address of physical address 0 in the direct map.
pub const DIRECT_MAP: u64 = 0xffff_8000_0000_0000;
/// Where the kernel image is linked (physical address + this).
pub const KERNEL_VMA: u64 = 0xffff_ffff_8000_0000;

/// Writes a byte to an I/O port.
///
/// # Safety
/// Port I/O can do anything to the machine.
#[inline]
pub unsafe fn outb(port: u16, v: u8) {
    // SAFETY: the caller vouches for the effect of writing `v` to `port`
    // (see # Safety). The instruction itself only reads DX and AL, touches no
    // memory or stack and leaves the flags alone, as the options declare;
    // the kernel runs in ring 0, so the port access cannot fault.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags));
    }
}

/// Reads a byte from an I/O port.
///
/// # Safety
/// Port I/O can do anything to the machine.
#[inline]
pub unsafe fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: the caller vouches for the effect of reading `port` (see
    // # Safety; some device registers change state when read). `in` writes
    // only AL, declared as the output, and touches no memory, stack or
    // flags; ring 0 may access every port.
    unsafe {
        asm!("in al, dx", out("al") v, in("dx") port, options(nomem, nostack, preserves_flags));
    }
    v
}

/// Reads a model-specific register.
///
/// # Safety
/// The MSR must exist.
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller guarantees that `msr` exists (reading a missing one
    // raises #GP). `rdmsr` reads ECX and writes only EDX:EAX, both declared;
    // it touches no memory or stack, and the kernel runs in ring 0.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack));
    }
    (hi as u64) << 32 | lo as u64
}

/// Writes a model-specific register.
///
/// # Safety
/// The MSR must exist and the value be valid.
pub unsafe fn wrmsr(msr: u32, v: u64) {
    // SAFETY: the caller guarantees that `msr` exists and that `v` is a valid
    // value for it whose effect the kernel expects. `wrmsr` only reads ECX
    // and EDX:EAX and uses no stack; memory is not declared untouched since
    // an MSR can change how memory is accessed.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32, options(nostack));
    }
}

/// CR2: the faulting address of the last page fault.
pub fn cr2() -> u64 {
    let v;
    // SAFETY: reading CR2 has no side effect and is allowed in ring 0, where
    // all kernel code runs; only the declared output register is written.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack)) };
    v
}

/// CR3.
pub fn cr3() -> u64 {
    let v;
    // SAFETY: reading CR3 has no side effect and is allowed in ring 0, where
    // all kernel code runs; only the declared output register is written.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack)) };
    v
}

/// Loads CR3.
///
/// # Safety
/// The table must map the running code and stack.
pub unsafe fn set_cr3(v: u64) {
    // SAFETY: the caller guarantees that `v` names a page table mapping the
    // running code, its stack and the kernel's data (see # Safety), with
    // PCID bits only when CR4.PCIDE is on, so execution continues
    // unchanged. No `nomem`: the switch changes what memory addresses mean,
    // so the compiler must not cache memory across it.
    unsafe { asm!("mov cr3, {}", in(reg) v, options(nostack)) };
}

/// CR4.
pub fn cr4() -> u64 {
    let v;
    // SAFETY: reading CR4 has no side effect and is allowed in ring 0, where
    // all kernel code runs; only the declared output register is written.
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack)) };
    v
}

/// Loads CR4.
///
/// # Safety
/// Valid bits only.
pub unsafe fn set_cr4(v: u64) {
    // SAFETY: the caller guarantees that `v` sets only bits the CPU supports
    // and whose preconditions hold (e.g. PCIDE only with CR3's PCID zero);
    // the asm reads just its input register. No `nomem`: paging controls
    // change how memory is accessed.
    unsafe { asm!("mov cr4, {}", in(reg) v, options(nostack)) };
}

/// CPUID leaf `leaf`, subleaf `sub`: (eax, ebx, ecx, edx).
pub fn cpuid(leaf: u32, sub: u32) -> (u32, u32, u32, u32) {
    let r = core::arch::x86_64::__cpuid_count(leaf, sub);
    (r.eax, r.ebx, r.ecx, r.edx)
}

static HAVE_RDTSCP: AtomicBool = AtomicBool::new(false);
static CPU_IDS_READY: AtomicBool = AtomicBool::new(false);

/// IA32_TSC_AUX: holds the CPU number, read back by `rdtscp`.
const IA32_TSC_AUX: u32 = 0xC000_0103;

/// Records this CPU's number where [`cpu_id`] finds it, and marks the CPU
/// online.
pub fn set_cpu_id(id: usize) {
    set_cpu_id_only(id);
    super::apic::register_cpu(id);
}

/// Records this CPU's number where [`cpu_id`] finds it.
pub fn set_cpu_id_only(id: usize) {
    let (_, _, _, edx) = cpuid(0x8000_0001, 0);
    if edx & (1 << 27) != 0 {
        // SAFETY: CPUID.80000001h:EDX[27] (RDTSCP) says IA32_TSC_AUX exists.
        // Its value only feeds `rdtscp`/`rdpid` (nothing else depends on
        // it), and callers pass a CPU number below MAX_CPUS, so the
        // reserved high half stays zero.
        unsafe { wrmsr(IA32_TSC_AUX, id as u64) };
        HAVE_RDTSCP.store(true, Ordering::Relaxed);
    }
    CPU_IDS_READY.store(true, Ordering::Release);
}

/// The number of the running CPU (0 is the boot CPU). Cannot be changed
/// from user mode (unlike the GS base).
#[inline]
pub fn cpu_id() -> usize {
    if !CPU_IDS_READY.load(Ordering::Acquire) {
        return 0;
    }
    if HAVE_RDTSCP.load(Ordering::Relaxed) {
        let aux: u32;
        // SAFETY: HAVE_RDTSCP is set only after CPUID reported RDTSCP, and
        // the kernel runs in ring 0 (CR4.TSD cannot forbid it); `rdtscp`
        // writes exactly EAX, EDX and ECX, all declared, and touches no
        // memory or stack.
        unsafe {
            asm!("rdtscp", out("eax") _, out("edx") _, out("ecx") aux, options(nomem, nostack));
        }
        aux as usize
    } else {
        super::apic::cpu_from_apic_id()
    }
}

/// Disables interrupts and halts forever.
pub fn halt() -> ! {
    loop {
        // SAFETY: `cli` and `hlt` are allowed in ring 0 and only stop this
        // CPU; they touch no memory or stack. An NMI can still wake it, hence
        // the loop.
        unsafe { asm!("cli; hlt", options(nomem, nostack)) };
    }
}

/// Physical address to its direct-map pointer.
pub fn phys_to_virt(pa: u64) -> *mut u8 {
    (DIRECT_MAP + pa) as *mut u8
}
