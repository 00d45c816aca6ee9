//! TLB shootdown by inter-processor interrupts.

/// Serves a shootdown request addressed to this CPU, if one is pending.
pub fn poll() {}
