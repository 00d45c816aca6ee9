//! The aspace benchmarks: every comparison runs in this one process, in the
//! same run as our figure, and the run ends with a table of ratios built
//! from criterion's estimates (see `BENCHMARKS.md`).
//!
//! `cargo bench -p aspace-bench --bench aspace [-- FILTER] [criterion options]`;
//! `-- --test` runs every benchmark once without measuring.

#![deny(clippy::undocumented_unsafe_blocks)]

use std::path::PathBuf;
use std::time::SystemTime;

use aspace_bench::{test_mode, Settings};
use criterion::Criterion;

mod asid;
mod churn;
mod clock;
mod fault;
mod lookup;
mod paired;
mod report;
mod scaling;
mod used;

/// Where criterion writes: `$CRITERION_HOME`, else `target/criterion`
/// (found from this executable, `target/<profile>/deps/aspace-*`).
fn output_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    let exe = std::env::current_exe().expect("own path");
    exe.ancestors()
        .nth(3)
        .map(|t| t.join("criterion"))
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

fn main() {
    let settings = Settings::from_env();
    let out = output_dir();
    let started = SystemTime::now();
    let load = report::load_average();
    let clock = clock::Clock::from_env();
    let clock_name = clock.name();
    let mut c = Criterion::default()
        .with_measurement(clock)
        .warm_up_time(settings.warm_up)
        .measurement_time(settings.measurement)
        .sample_size(settings.samples)
        .nresamples(10_000)
        .output_directory(&out)
        .configure_from_args();
    lookup::bench(&mut c, &settings);
    churn::bench(&mut c, &settings);
    fault::bench(&mut c);
    used::bench(&mut c);
    asid::bench(&mut c);
    scaling::bench(&mut c);
    c.final_summary();
    if !test_mode() {
        report::write(&out, started, &load, clock_name);
    }
}
