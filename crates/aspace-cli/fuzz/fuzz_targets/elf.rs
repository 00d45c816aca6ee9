//! `aspace elf` on any bytes, on a 1 MiB machine: exit 0, 1 or 2 with a
//! message, every frame back, and never a walk over pages that cannot be
//! had (it stops when memory runs out).

#![no_main]

use aspace_cli::cli::{run_elf_bytes, Opts, Outcome};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let opts = Opts {
        quiet: true,
        memory: Some(1 << 20),
        cpus: Some(1),
        asids: Some(1),
        ..Opts::default()
    };
    match run_elf_bytes(&opts, "fuzz.elf", data) {
        Outcome::Passed => {}
        Outcome::Failed(f) => {
            assert!(!f.is_empty());
            assert!(!f.iter().any(|m| m.contains("frames leaked")), "{f:?}");
        }
        Outcome::Input { errors, .. } => {
            assert!(!errors.0.is_empty() && errors.0.iter().all(|m| !m.is_empty()));
        }
    }
});
