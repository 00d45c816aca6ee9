//! Calls into the SBI firmware (OpenSBI): the timer, IPIs, hart state
//! management (starting the other harts) and system reset.

use core::arch::asm;

/// The Timer extension ("TIME").
const EXT_TIME: u64 = 0x5449_4D45;
/// The IPI extension ("sPI").
const EXT_IPI: u64 = 0x0073_5049;
/// The Hart State Management extension ("HSM").
const EXT_HSM: u64 = 0x0048_534D;
/// The System Reset extension ("SRST").
const EXT_SRST: u64 = 0x5352_5354;
/// The Remote Fence extension ("RFNC").
const EXT_RFENCE: u64 = 0x5246_4E43;

/// An SBI call: `(error, value)`; error 0 is success.
fn call(ext: u64, fid: u64, a0: u64, a1: u64, a2: u64) -> (i64, u64) {
    let (err, val): (i64, u64);
    // SAFETY: `ecall` from S-mode enters the SBI firmware, which follows the
    // SBI calling convention: it reads a0-a2, a6 (function) and a7
    // (extension) and returns the error in a0 and the value in a1, leaving
    // every other register as it was. The calls made here (timer, IPI, hart
    // start and status, remote fence.i, reset) touch no memory of the
    // kernel.
    unsafe {
        asm!("ecall", inlateout("a0") a0 => err, inlateout("a1") a1 => val,
             in("a2") a2, in("a6") fid, in("a7") ext, options(nostack));
    }
    (err, val)
}

/// Programs this hart's timer to interrupt when `time` reaches `at`.
pub fn set_timer(at: u64) {
    call(EXT_TIME, 0, at, 0, 0);
}

/// Sends a supervisor software interrupt to the harts of `mask` (bit `i`:
/// hart `i`).
pub fn send_ipi(mask: u64) {
    call(EXT_IPI, 0, mask, 0, 0);
}

/// Starts hart `hart` at physical address `start` (MMU off, S-mode) with
/// its hart ID in a0 and `opaque` in a1. Returns the SBI error (0: started).
pub fn hart_start(hart: u64, start: u64, opaque: u64) -> i64 {
    call(EXT_HSM, 0, hart, start, opaque).0
}

/// The state of hart `hart` (0 started, 1 stopped, ...), or `None` when
/// there is no such hart.
pub fn hart_status(hart: u64) -> Option<u64> {
    let (err, v) = call(EXT_HSM, 2, hart, 0, 0);
    (err == 0).then_some(v)
}

/// Makes every started hart execute `fence.i` (`sbi_remote_fence_i`
/// with a hart-mask base of -1: all of them, this one included).
pub fn remote_fence_i_all() {
    call(EXT_RFENCE, 0, 0, u64::MAX, 0);
}

/// Shuts the machine down (`failure`: reports a system failure).
pub fn shutdown(failure: bool) {
    call(EXT_SRST, 0, 0, failure as u64, 0);
}
