//! The COM1 serial console and the `isa-debug-exit` device.

use core::fmt::{self, Write};

use crate::arch::{inb, outb};
use crate::sync::SpinLock;

const COM1: u16 = 0x3f8;

/// Serialises whole lines from several CPUs.
pub static CONSOLE: SpinLock<Serial> = SpinLock::new(Serial);

/// The COM1 UART.
pub struct Serial;

/// Programs COM1 for 115200 baud, 8N1, FIFOs on, interrupts off.
pub fn init() {
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
        unsafe {
            while inb(COM1 + 5) & 0x20 == 0 {
                core::hint::spin_loop();
            }
            outb(COM1, b);
        }
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

#[doc(hidden)]
pub fn _print(args: fmt::Arguments) {
    let mut c = CONSOLE.lock();
    let _ = c.write_fmt(args);
}

/// Prints to the serial console.
#[macro_export]
macro_rules! kprint {
    ($($arg:tt)*) => { $crate::serial::_print(format_args!($($arg)*)) };
}

/// Prints a line to the serial console (one lock for the whole line).
#[macro_export]
macro_rules! kprintln {
    () => { $crate::kprint!("\n") };
    ($($arg:tt)*) => { $crate::serial::_print(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Exit codes through `isa-debug-exit` (QEMU exits with `code << 1 | 1`).
pub const EXIT_SUCCESS: u8 = 0x10;
/// QEMU exits with 35.
pub const EXIT_FAILURE: u8 = 0x11;

/// Ends the QEMU run with `code` (halts if the device is absent).
pub fn exit_qemu(code: u8) -> ! {
    unsafe {
        outb(0xf4, code);
    }
    loop {
        unsafe { core::arch::asm!("cli; hlt") };
    }
}
