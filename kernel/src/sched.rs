//! Tasks and the scheduler.

use aspace::{Access, VirtAddr};

use crate::cpu::TrapFrame;

/// Timer tick.
pub fn tick(_frame: &mut TrapFrame) {}

/// Kills the running task.
pub fn kill_current(_frame: &mut TrapFrame, why: &str) {
    panic!("no tasks yet: {why}");
}

/// A page fault from user mode.
pub fn user_page_fault(_frame: &mut TrapFrame, addr: VirtAddr, access: Access) {
    panic!("no tasks yet: user fault at {addr} {access:?}");
}
