//! System calls.

use crate::cpu::TrapFrame;

/// `int 0x80` from user mode.
pub fn dispatch(_frame: &mut TrapFrame) {}
