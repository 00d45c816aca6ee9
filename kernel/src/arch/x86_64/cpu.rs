//! Per-CPU descriptor tables (GDT, TSS), the shared IDT, the trap entry and
//! exit paths, and the trap frame.
//!
//! Every interrupt and exception enters through an IST stack of the TSS, so
//! the CPU never pushes onto the interrupted kernel stack (the host target's
//! code uses the red zone below the stack pointer). Interrupts from user
//! mode, the timer, IPIs and system calls use IST1; exceptions IST2; double
//! faults, NMIs and machine checks IST3. Kernel code runs with interrupts
//! off, so IST1 is never entered twice on one CPU.

use core::arch::{asm, global_asm};
use core::mem::size_of;

use super::regs::MAX_CPUS;

/// Kernel code selector.
pub const KCODE: u16 = 0x08;
/// Kernel data selector.
pub const KDATA: u16 = 0x10;
/// User data selector (RPL 3).
pub const UDATA: u16 = 0x18 | 3;
/// User code selector (RPL 3).
pub const UCODE: u16 = 0x20 | 3;
const TSS_SEL: u16 = 0x28;

/// Vector of the local APIC timer.
pub const VEC_TIMER: u8 = 0x20;
/// Vector of TLB shootdown IPIs.
pub const VEC_SHOOTDOWN: u8 = 0xf0;
/// Vector of the wake-up IPI (a task became ready).
pub const VEC_WAKE: u8 = 0xf1;
/// Spurious-interrupt vector of the local APIC.
pub const VEC_SPURIOUS: u8 = 0xff;
/// System-call gate (`int 0x80`), callable from ring 3.
pub const VEC_SYSCALL: u8 = 0x80;

/// Registers saved on every trap, in stack order (lowest address first).
#[repr(C, align(16))]
#[derive(Clone)]
pub struct TrapFrame {
    /// FXSAVE area: x87/SSE state of the interrupted code.
    pub fx: [u8; 512],
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

const _: () = assert!(size_of::<TrapFrame>() == 512 + 22 * 8);

impl TrapFrame {
    /// A frame that starts at `rip` with stack `rsp`, in user mode or in the
    /// kernel, interrupts enabled, clean FPU/SSE state.
    pub fn new(rip: u64, rsp: u64, user: bool) -> Self {
        let mut fx = [0u8; 512];
        fx[0..2].copy_from_slice(&0x037fu16.to_le_bytes()); // FCW
        fx[24..28].copy_from_slice(&0x1f80u32.to_le_bytes()); // MXCSR
        let (cs, ss) = if user {
            (UCODE as u64, UDATA as u64)
        } else {
            (KCODE as u64, KDATA as u64)
        };
        Self {
            fx,
            r15: 0,
            r14: 0,
            r13: 0,
            r12: 0,
            r11: 0,
            r10: 0,
            r9: 0,
            r8: 0,
            rbp: 0,
            rdi: 0,
            rsi: 0,
            rdx: 0,
            rcx: 0,
            rbx: 0,
            rax: 0,
            vector: 0,
            error: 0,
            rip,
            cs,
            rflags: 0x202,
            rsp,
            ss,
        }
    }

    /// A ring-3 frame starting at `pc` with stack `sp` and `args` in the
    /// first three argument registers (`rdi`, `rsi`, `rdx`).
    pub fn new_user(pc: u64, sp: u64, args: [u64; 3]) -> Self {
        let mut f = Self::new(pc, sp, true);
        [f.rdi, f.rsi, f.rdx] = args;
        f
    }

    /// The instruction pointer.
    pub fn pc(&self) -> u64 {
        self.rip
    }

    /// The stack pointer.
    pub fn sp(&self) -> u64 {
        self.rsp
    }

    /// Makes the system call just made run again when the frame returns
    /// (a call that waits: the task yields, then retries it).
    pub fn restart_syscall(&mut self) {
        // `int 0x80` is two bytes (CD 80).
        self.rip -= 2;
    }

    /// A system call's number (`rax`) and arguments (`rdi`, `rsi`, `rdx`,
    /// `r10`, `r8`, `r9`: the kernel's own calls take four, Linux's `mmap`
    /// six, in Linux's registers).
    pub fn syscall_args(&self) -> (u64, [u64; 6]) {
        (
            self.rax,
            [self.rdi, self.rsi, self.rdx, self.r10, self.r8, self.r9],
        )
    }

    /// Sets a system call's result (`rax`).
    pub fn set_syscall_result(&mut self, v: u64) {
        self.rax = v;
    }

    /// Whether the trap came from ring 3.
    pub fn is_user(&self) -> bool {
        self.cs & 3 == 3
    }

    /// Whether `iretq` can return to this ring-3 frame without faulting in
    /// ring 0: the user selectors, an instruction and a stack pointer below
    /// `user_end` (canonical), and flags with interrupts on, I/O privilege
    /// level 0 and no virtual-8086 mode.
    pub fn returnable(&self, user_end: u64) -> bool {
        const IF: u64 = 1 << 9;
        const IOPL: u64 = 3 << 12;
        const VM: u64 = 1 << 17;
        self.cs == UCODE as u64
            && self.ss == UDATA as u64
            && self.rip < user_end
            && self.rsp < user_end
            && self.rflags & (IF | IOPL | VM) == IF
    }
}

global_asm!(
    r#"
    .text
    .balign 16
    .global trap_stubs
trap_stubs:
    .set vec, 0
    .rept 256
    .balign 16
    .if vec < 32
    .if ((0x60227d00 >> vec) & 1) == 0
    pushq $0
    .endif
    .else
    pushq $0
    .endif
    pushq $vec
    jmp trap_common
    .set vec, vec + 1
    .endr

trap_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $512, %rsp
    fxsave64 (%rsp)
    cld
    movq %rsp, %rdi
    call trap_dispatch
    .global trap_return
trap_return:
    fxrstor64 (%rsp)
    addq $512, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp
    iretq

    .global enter_frame
enter_frame:
    movq %rdi, %rsp
    jmp trap_return
    "#,
    options(att_syntax)
);

extern "C" {
    static trap_stubs: u8;
    fn enter_frame(frame: *const TrapFrame) -> !;
}

#[repr(C, packed)]
struct Tss {
    _r0: u32,
    rsp: [u64; 3],
    _r1: u64,
    ist: [u64; 7],
    _r2: u64,
    _r3: u16,
    iomap: u16,
}

#[repr(C, align(16))]
struct Gdt([u64; 7]);

#[repr(C, packed)]
struct Pointer {
    limit: u16,
    base: u64,
}

const IST1_SIZE: usize = 64 * 1024;
const IST2_SIZE: usize = 64 * 1024;
const IST3_SIZE: usize = 16 * 1024;
const IDLE_SIZE: usize = 4096;

#[repr(C, align(16))]
struct Stacks {
    ist1: [u8; IST1_SIZE],
    ist2: [u8; IST2_SIZE],
    ist3: [u8; IST3_SIZE],
    idle: [u8; IDLE_SIZE],
}

static mut STACKS: [Stacks; MAX_CPUS] = [const {
    Stacks {
        ist1: [0; IST1_SIZE],
        ist2: [0; IST2_SIZE],
        ist3: [0; IST3_SIZE],
        idle: [0; IDLE_SIZE],
    }
}; MAX_CPUS];

static mut TSS: [Tss; MAX_CPUS] = [const {
    Tss {
        _r0: 0,
        rsp: [0; 3],
        _r1: 0,
        ist: [0; 7],
        _r2: 0,
        _r3: 0,
        iomap: size_of::<Tss>() as u16,
    }
}; MAX_CPUS];

static mut GDT: [Gdt; MAX_CPUS] = [const { Gdt([0; 7]) }; MAX_CPUS];

#[repr(C, align(16))]
struct Idt([[u64; 2]; 256]);
static mut IDT: Idt = Idt([[0; 2]; 256]);

fn stack_tops(cpu: usize) -> (u64, u64, u64, u64) {
    // SAFETY: only addresses are computed: `&raw` makes no reference and
    // reads nothing, the index is bounds-checked, and the field projections
    // stay inside STACKS[cpu].
    unsafe {
        let s = &raw const STACKS[cpu];
        (
            (&raw const (*s).ist1) as u64 + IST1_SIZE as u64,
            (&raw const (*s).ist2) as u64 + IST2_SIZE as u64,
            (&raw const (*s).ist3) as u64 + IST3_SIZE as u64,
            (&raw const (*s).idle) as u64 + IDLE_SIZE as u64,
        )
    }
}

/// Fills the IDT (once, on the boot CPU).
pub fn init_idt() {
    let base = &raw const trap_stubs as u64;
    for v in 0..256usize {
        let addr = base + 16 * v as u64;
        let ist: u64 = match v {
            2 | 8 | 18 => 3,
            0..=31 => 2,
            _ => 1,
        };
        let dpl: u64 = if v == VEC_SYSCALL as usize { 3 } else { 0 };
        let lo = (addr & 0xffff)
            | (KCODE as u64) << 16
            | ist << 32
            | (0x8e | dpl << 5) << 40
            | ((addr >> 16) & 0xffff) << 48;
        // SAFETY: only the boot CPU runs this, once, before any CPU loads the
        // IDT (`init_cpu` comes after) and before the other CPUs start; no
        // reference to IDT exists (`init_cpu` takes its address with
        // `&raw`), so this write races with nothing.
        unsafe { IDT.0[v] = [lo, addr >> 32] };
    }
}

/// Loads this CPU's GDT, TSS and the IDT.
pub fn init_cpu(cpu: usize) {
    let (ist1, ist2, ist3, _) = stack_tops(cpu);
    // SAFETY: only the address of TSS[cpu] is taken (bounds-checked index,
    // no reference made).
    let tss = unsafe { &raw mut TSS[cpu] };
    // SAFETY: `tss` points to this CPU's own TSS: CPU `cpu` alone runs
    // `init_cpu(cpu)` (the boot CPU with 0, each AP with its number), once,
    // before `ltr` below hands the TSS to the hardware, and nothing else
    // references it. The fields are written in place (no reference to the
    // packed struct is made).
    unsafe {
        (*tss).rsp = [ist1, 0, 0];
        (*tss).ist[0] = ist1;
        (*tss).ist[1] = ist2;
        (*tss).ist[2] = ist3;
    }
    let t = tss as u64;
    let limit = size_of::<Tss>() as u64 - 1;
    let tss_lo = (limit & 0xffff)
        | (t & 0xff_ffff) << 16
        | 0x89 << 40
        | ((limit >> 16) & 0xf) << 48
        | ((t >> 24) & 0xff) << 56;
    // SAFETY: only the address of GDT[cpu] is taken (bounds-checked index,
    // no reference made).
    let gdt = unsafe { &raw mut GDT[cpu] };
    // SAFETY: this CPU's own GDT (same reasoning as for the TSS), written
    // before `lgdt` below loads it, while this CPU still runs on the
    // previous GDT (the boot or trampoline one).
    unsafe {
        (*gdt).0 = [
            0,
            0x00AF_9A00_0000_FFFF, // kernel code
            0x00CF_9200_0000_FFFF, // kernel data
            0x00CF_F200_0000_FFFF, // user data
            0x00AF_FA00_0000_FFFF, // user code
            tss_lo,
            t >> 32,
        ];
    }
    let gp = Pointer {
        limit: (size_of::<Gdt>() - 1) as u16,
        base: gdt as u64,
    };
    // SAFETY: `gp` describes this CPU's GDT, filled above and static, so it
    // outlives its use by the CPU. The new GDT has a 64-bit ring-0 code
    // segment at KCODE and a flat data segment at KDATA, so reloading CS
    // (`retfq` to the next instruction) and DS/ES/SS with them keeps this
    // CPU running in 64-bit ring 0 as before; `ltr` loads the available TSS
    // descriptor at TSS_SEL (filled above) and marks it busy. The two
    // pushes are popped by `retfq`; without `nostack` the compiler keeps
    // nothing in the red zone across the asm. Only `tmp` is clobbered, and
    // it is declared.
    unsafe {
        asm!(
            "lgdt [{gp}]",
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ds, {ds:x}",
            "mov es, {ds:x}",
            "mov ss, {ds:x}",
            "ltr {tss:x}",
            gp = in(reg) &gp,
            cs = in(reg) KCODE as u64,
            tmp = out(reg) _,
            ds = in(reg) KDATA as u64,
            tss = in(reg) TSS_SEL as u64,
        );
    }
    let ip = Pointer {
        limit: (size_of::<Idt>() - 1) as u16,
        base: &raw const IDT as u64,
    };
    // SAFETY: `ip` describes the static IDT, filled by `init_idt` on the
    // boot CPU before any `init_cpu` (and never written after): 256 gates
    // to the trap stubs, on IST stacks that this CPU's TSS, loaded above,
    // provides. The asm only reads `ip`.
    unsafe { asm!("lidt [{}]", in(reg) &ip) };
}

/// The tops of CPU `cpu`'s static IST1 and IST2 stacks.
pub fn static_trap_stack_tops(cpu: usize) -> (u64, u64) {
    let (ist1, ist2, _, _) = stack_tops(cpu);
    (ist1, ist2)
}

/// Makes `top` CPU `cpu`'s IST1 (`slot` 0, also the ring-0 stack of the
/// TSS) or IST2 (`slot` 1); called by that CPU only.
pub fn set_ist(cpu: usize, slot: usize, top: u64) {
    // SAFETY: only the address of TSS[cpu] is taken (bounds-checked index).
    let tss = unsafe { &raw mut TSS[cpu] };
    // SAFETY: CPU `cpu` alone writes its TSS after boot (this is called by
    // it, with interrupts off); the hardware reads the IST entries only at
    // the next interrupt or exception, which this write precedes. The
    // fields are written in place (no reference to the packed struct).
    unsafe {
        if slot == 0 {
            (*tss).rsp[0] = top;
            (*tss).ist[0] = top;
        } else {
            (*tss).ist[1] = top;
        }
    }
}

/// The frame slot at the top of this CPU's IST1 stack.
fn ist1_frame(cpu: usize) -> *mut TrapFrame {
    let ist1 = super::park::trap_stack_tops(cpu)[0];
    (ist1 - size_of::<TrapFrame>() as u64) as *mut TrapFrame
}

/// Leaves the kernel's boot path for good: runs `frame` (a user task or the
/// idle loop) on this CPU.
pub fn enter(cpu: usize, frame: &TrapFrame) -> ! {
    let slot = ist1_frame(cpu);
    // SAFETY: `slot` is the 16-aligned top `size_of::<TrapFrame>()` bytes of
    // this CPU's IST1 stack (ist1_frame), writable static or heap memory
    // (a replacement from `kstack`). The callers, `sched::start` on the
    // boot or AP stack outside any trap and `sched::after_park` on the
    // CPU's switch stack after a thread parked (taking the stack it ran on
    // with it), run on no IST stack, so nothing live is on IST1 (and
    // `frame` is not there): the write overwrites nothing in use.
    unsafe { slot.write(frame.clone()) };
    // SAFETY: `slot` holds a complete TrapFrame made by `TrapFrame::new` or
    // saved from a user trap (selectors, stack pointer and entry point valid
    // for its ring). `enter_frame` points RSP at it and leaves through
    // `trap_return` (FXRSTOR, register pops, `iretq`), never returning;
    // nothing on the current stack is needed afterwards, and the next trap
    // on this CPU reuses IST1 from its top.
    unsafe { enter_frame(slot) }
}

global_asm!(
    r#"
    .text
    .global idle_loop
idle_loop:
    sti
    hlt
    jmp idle_loop
    "#,
    options(att_syntax)
);

extern "C" {
    fn idle_loop() -> !;
}

/// The frame of this CPU's idle loop (ring 0, interrupts on, own stack).
pub fn idle_frame(cpu: usize) -> TrapFrame {
    let (_, _, _, idle) = stack_tops(cpu);
    TrapFrame::new(idle_loop as *const () as u64, idle, false)
}
