//! The COM1 serial console and the `isa-debug-exit` device.

use core::fmt::{self, Write};

use super::regs::{inb, outb};

const COM1: u16 = 0x3f8;

/// The COM1 UART.
pub struct Serial;

/// Programs COM1 for 115200 baud, 8N1, FIFOs on, interrupts off.
pub fn init() {
    // SAFETY: ports 0x3f8-0x3fc are COM1's 16550 UART registers (IER, LCR,
    // divisor latch, FCR, MCR); this is the standard programming sequence
    // for it, with its interrupts kept off. The UART does no DMA, so the
    // writes affect no memory.
    unsafe {
        outb(COM1 + 1, 0x00);
        outb(COM1 + 3, 0x80);
        outb(COM1, 0x01);
        outb(COM1 + 1, 0x00);
        outb(COM1 + 3, 0x03);
        outb(COM1 + 2, 0xC7);
        outb(COM1 + 4, 0x03);
    }
}

impl Serial {
    fn put(&mut self, b: u8) {
        // SAFETY: COM1 + 5 is the UART's line status register; reading it
        // only clears its error flags, which nothing uses.
        while unsafe { inb(COM1 + 5) } & 0x20 == 0 {
            core::hint::spin_loop();
        }
        // SAFETY: COM1 is the UART's transmit register (DLAB is clear since
        // `init`), and the status bit above says it is empty: the byte is
        // just sent.
        unsafe { outb(COM1, b) };
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

/// Exit codes through `isa-debug-exit` (QEMU exits with `code << 1 | 1`).
pub const EXIT_SUCCESS: u8 = 0x10;
/// QEMU exits with 35.
pub const EXIT_FAILURE: u8 = 0x11;

/// Ends the QEMU run with `code` (halts if the device is absent).
pub fn exit_qemu(code: u8) -> ! {
    // SAFETY: port 0xf4 is QEMU's `isa-debug-exit` device, which ends the
    // emulator; without the device nothing decodes the port and the write
    // is dropped.
    unsafe { outb(0xf4, code) };
    super::regs::halt()
}

/// Ends the run: QEMU exits with 33 on success, 35 on failure.
pub fn exit(success: bool) -> ! {
    exit_qemu(if success { EXIT_SUCCESS } else { EXIT_FAILURE })
}
