//! The console on QEMU virt's ns16550 UART at 0x1000_0000, and the end of
//! the run through the SiFive test device at 0x10_0000.

use core::fmt::{self, Write};

use super::phys_to_virt;

/// The UART's registers (one byte apart).
const UART: u64 = 0x1000_0000;
/// The SiFive test ("finisher") device.
const TEST_DEVICE: u64 = 0x10_0000;
/// Written to the test device: QEMU exits with status 0.
const TEST_PASS: u32 = 0x5555;
/// Written to the test device with an exit code in the upper half: QEMU
/// exits with that code (here 1).
const TEST_FAIL: u32 = 1 << 16 | 0x3333;

/// The UART.
pub struct Serial;

fn reg(off: u64) -> *mut u8 {
    phys_to_virt(UART + off)
}

/// Programs the UART: 8N1, FIFOs on, interrupts off (QEMU ignores the
/// baud rate).
pub fn init() {
    // SAFETY: the UART's registers (IER, LCR, FCR, MCR at offsets 1, 3, 2,
    // 4) through the direct map, which covers the first 4 GiB of physical
    // addresses (devices included); byte-wide MMIO outside any Rust
    // allocation, hence volatile. The UART does no DMA.
    unsafe {
        reg(1).write_volatile(0x00);
        reg(3).write_volatile(0x03);
        reg(2).write_volatile(0x07);
        reg(4).write_volatile(0x03);
    }
}

impl Serial {
    fn put(&mut self, b: u8) {
        // SAFETY: offset 5 is the line status register (see `init` for the
        // mapping); reading it has no effect that matters here.
        while unsafe { reg(5).read_volatile() } & 0x20 == 0 {
            core::hint::spin_loop();
        }
        // SAFETY: offset 0 is the transmit register (the divisor latch is
        // off), empty as the status bit says: the byte is just sent.
        unsafe { reg(0).write_volatile(b) };
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

/// Ends the run: QEMU exits with 0 on success, 1 on failure (the test
/// device), else the SBI shuts the machine down; then halts.
pub fn exit(success: bool) -> ! {
    let word = if success { TEST_PASS } else { TEST_FAIL };
    // SAFETY: the SiFive test device's register at 0x10_0000 through the
    // direct map (MMIO outside any Rust allocation); writing it ends the
    // emulator. On a machine without it nothing is there to write and the
    // SBI reset below is the fallback.
    unsafe { (phys_to_virt(TEST_DEVICE) as *mut u32).write_volatile(word) };
    super::sbi::shutdown(!success);
    super::halt()
}
