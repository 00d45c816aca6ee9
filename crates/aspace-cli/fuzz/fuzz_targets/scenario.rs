//! Whole scenarios on a 1 MiB machine: every outcome is exit 0, 1 or 2 with
//! a message, and the run's own end-of-run checks (every frame back, no
//! stale TLB use) hold.

#![no_main]

use std::path::Path;

use aspace_cli::cli::{run_scenario_text, Opts, Outcome};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let opts = Opts {
        quiet: true,
        memory: Some(1 << 20),
        ..Opts::default()
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/scenarios");
    match run_scenario_text(&opts, "fuzz.aspace", &text, &dir) {
        Outcome::Passed => {}
        Outcome::Failed(f) => {
            assert!(!f.is_empty());
            assert!(
                !f.iter()
                    .any(|m| m.contains("frames leaked") || m.contains("stale TLB")),
                "{f:?}"
            );
        }
        Outcome::Input { errors, .. } => {
            assert!(!errors.0.is_empty() && errors.0.iter().all(|m| !m.is_empty()));
        }
    }
});
