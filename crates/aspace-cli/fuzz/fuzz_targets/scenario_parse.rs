//! The scenario parser and validator on any text: they report errors with
//! a line and a message, and never panic.

#![no_main]

use std::path::Path;

use aspace_cli::script::{self, MachineShape};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match script::parse("fuzz.aspace", &text, Path::new("/nonexistent")) {
        Ok(s) => {
            for cpus in [1, 4] {
                if let Err(errors) = script::validate(&s, &MachineShape { cpus }) {
                    assert!(errors.iter().all(|e| e.line > 0 && !e.message.is_empty()));
                }
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            assert!(errors.iter().all(|e| e.line > 0 && !e.message.is_empty()));
        }
    }
});
