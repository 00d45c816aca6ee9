//! The `aspace` command as a library: the binary is a thin `main` over
//! [`cli::main`], and tests (the scenario fuzz test among them) drive the
//! same code in-process through [`cli::run_scenario_text`] and
//! [`cli::run_elf_bytes`].

#![warn(missing_docs)]

pub mod cli;
pub mod demo;
pub mod elfcmd;
pub mod elfgen;
pub mod elfnames;
pub mod engine;
pub mod input;
pub mod linux;
pub mod maps;
pub mod num;
pub mod out;
pub mod script;
pub mod svg;
