//! `aspace`: the address-space subsystem on a simulated multi-CPU x86_64
//! machine, driven by a built-in demo, by scenario files, or by an ELF
//! executable. See `aspace --help`.

fn main() -> std::process::ExitCode {
    aspace_cli::cli::main()
}
