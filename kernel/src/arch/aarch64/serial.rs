//! The console on QEMU virt's PL011 UART at 0x0900_0000, and the end of
//! the run through semihosting's `SYS_EXIT` (QEMU's `-semihosting`: the
//! emulator exits with the status given), PSCI `SYSTEM_OFF` as the
//! fallback.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use super::phys_to_virt;

/// The UART's registers.
const UART: u64 = 0x0900_0000;
/// Data register.
const DR: u64 = 0x000;
/// Flag register (bit 5: transmit FIFO full).
const FR: u64 = 0x018;
/// Semihosting: the operation number of `SYS_EXIT`.
const SYS_EXIT: u64 = 0x18;
/// Semihosting: `ADP_Stopped_ApplicationExit`, the reason that carries an
/// exit status.
const APPLICATION_EXIT: u64 = 0x20026;

/// The UART.
pub struct Serial;

fn reg(off: u64) -> *mut u32 {
    phys_to_virt(UART + off) as *mut u32
}

impl Serial {
    fn put(&mut self, b: u8) {
        // SAFETY: the PL011's flag register through the direct map's
        // device gigabyte (MMIO outside any Rust allocation, hence
        // volatile); reading it has no side effect.
        while unsafe { reg(FR).read_volatile() } & 0x20 != 0 {
            core::hint::spin_loop();
        }
        // SAFETY: the data register (see above); the FIFO has room.
        unsafe { reg(DR).write_volatile(b as u32) };
    }
}

impl Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
        Ok(())
    }
}

static EXITING: AtomicBool = AtomicBool::new(false);

/// Ends the run: QEMU exits with 0 on success, 1 on failure (semihosting;
/// a second attempt, e.g. from a fault in the first, goes straight to
/// PSCI), else the machine is turned off; then halts.
pub fn exit(success: bool) -> ! {
    if !EXITING.swap(true, Ordering::SeqCst) {
        let block: [u64; 2] = [APPLICATION_EXIT, if success { 0 } else { 1 }];
        // SAFETY: the semihosting call (`hlt #0xf000`, operation in w0,
        // the parameter block's address in x1): QEMU reads the two words
        // of `block` (on this stack, mapped) and exits. Without
        // `-semihosting` the instruction is a debug exception, a kernel
        // fault whose panic comes back here and turns the machine off.
        unsafe {
            core::arch::asm!("hlt #0xf000", inlateout("x0") SYS_EXIT => _,
                             in("x1") block.as_ptr(), options(nostack));
        }
    }
    super::psci::system_off();
    super::halt()
}
