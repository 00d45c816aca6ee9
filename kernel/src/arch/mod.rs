//! The architecture-specific half of the kernel, one directory per
//! architecture. Each exports the same names, which the shared modules
//! use through `crate::arch`:
//!
//! - constants: `MAX_CPUS`, `RAM_BASE` (the frame allocator's window),
//!   `LAYOUT` (the user/kernel split), `STACK_TOP` (a task's stack),
//!   `KERNEL_AREAS` (demand-paged kernel memory), `USER_ENTRY_ARGS`;
//! - `cpu_id`, `halt`, `phys_to_virt`, `flush_all`, `start_timer`;
//! - `TrapFrame` (user registers, system-call arguments and result),
//!   `idle_frame`, `enter`;
//! - `online`, `wake` (a scheduler IPI), `send_shootdown_ipi`;
//! - `ArchTlb` (aspace's `Cpus` and `Tlb`), `PageTableFormat`;
//! - `adopt_boot_mappings` (the boot page tables' kernel half into the
//!   kernel address space), `serial` (the UART and the emulator's exit).

#[cfg(any(target_arch = "aarch64", target_arch = "riscv64"))]
mod cpu_stacks;

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "aarch64")]
pub use aarch64::*;

#[cfg(target_arch = "riscv64")]
mod riscv64;
#[cfg(target_arch = "riscv64")]
pub use riscv64::*;

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use x86_64::*;
