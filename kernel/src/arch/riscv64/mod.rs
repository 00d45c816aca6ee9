//! riscv64 (placeholder)
