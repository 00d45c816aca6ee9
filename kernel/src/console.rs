//! The kernel console: whole lines from several CPUs through one lock, on
//! the architecture's UART (`arch::serial`), and the end of the run.

use core::fmt::{self, Write};

use crate::arch::serial::Serial;
use crate::sync::SpinLock;

/// Serialises whole lines from several CPUs.
pub static CONSOLE: SpinLock<Serial> = SpinLock::new(Serial);

#[doc(hidden)]
pub fn _print(args: fmt::Arguments) {
    let mut c = CONSOLE.lock();
    let _ = c.write_fmt(args);
}

/// Prints without the console lock: for the panic handler, since a CPU may
/// have died holding it (`Serial` has no state, so a second one just
/// writes the same UART).
pub fn panic_print(args: fmt::Arguments) {
    let _ = Serial.write_fmt(args);
}

/// Ends the emulator's run with success or failure (QEMU's exit device of
/// the architecture); halts where there is none.
pub fn exit(success: bool) -> ! {
    crate::arch::serial::exit(success)
}

/// Prints to the console.
#[macro_export]
macro_rules! kprint {
    ($($arg:tt)*) => { $crate::console::_print(format_args!($($arg)*)) };
}

/// Prints a line to the console (one lock for the whole line).
#[macro_export]
macro_rules! kprintln {
    () => { $crate::kprint!("\n") };
    ($($arg:tt)*) => { $crate::console::_print(format_args!("{}\n", format_args!($($arg)*))) };
}
