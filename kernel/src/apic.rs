//! The local APIC.

/// Records the running CPU's APIC ID under number `id`.
pub fn register_cpu(_id: usize) {}

/// The CPU number of the running CPU from its APIC ID.
pub fn cpu_from_apic_id() -> usize {
    0
}
