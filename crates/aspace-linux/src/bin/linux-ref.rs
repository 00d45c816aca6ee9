//! `linux-ref`: reads memory-call lines on stdin, runs each on this Linux
//! kernel inside a reserved window, and prints per line the outcome, the
//! window's maps and page digests (the protocol of `aspace_linux::protocol`).
//!
//! ```sh
//! printf 'mmap 0 4p rw private anon\n' | linux-ref
//! ```
//!
//! Options: `--aslr` keeps address randomisation (by default the runner
//! re-executes itself without it, so windows and breaks repeat);
//! `--memlock PAGES` sets `RLIMIT_MEMLOCK` and drops `CAP_IPC_LOCK`, so
//! the limit binds (the header's `memlock.bytes` says it).
//! Exit status: 0, or 1 when a line could not be read or an `expect` failed.

use aspace_linux::runner::{ArenaAlloc, Engine};
use aspace_linux::{Line, Outcome, ParseError};
use std::io::{self, BufRead, Write};
use std::os::unix::process::CommandExt;

#[global_allocator]
static HEAP: ArenaAlloc = ArenaAlloc::new();

const REEXEC: &str = "ASPACE_LINUX_REF_CHILD";

/// Re-executes this binary once, so the new image starts with
/// `ADDR_NO_RANDOMIZE` (unless `--aslr`) and with glibc's `malloc` taking
/// every block with `mmap` (`glibc.malloc.mmap_threshold=0`): glibc itself
/// allocates during start-up (`pthread_getattr_np` for the main thread's
/// stack guard), and would otherwise move the program break before the
/// runner can report it. Returns only if it did not re-execute.
fn reexec() {
    if std::env::var_os(REEXEC).is_some() {
        return;
    }
    if std::env::args().all(|a| a != "--aslr") {
        // SAFETY: personality(0xffffffff) only queries the persona.
        let current = unsafe { libc::personality(0xffff_ffff) };
        if current >= 0 {
            // SAFETY: sets a flag that takes effect at the next exec.
            unsafe { libc::personality((current | libc::ADDR_NO_RANDOMIZE) as libc::c_ulong) };
        }
    }
    let mut tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if !tunables.is_empty() {
        tunables.push(':');
    }
    tunables.push_str("glibc.malloc.mmap_threshold=0");
    let err = std::process::Command::new("/proc/self/exe")
        .args(std::env::args_os().skip(1))
        .env(REEXEC, "1")
        .env("GLIBC_TUNABLES", tunables)
        .exec();
    eprintln!("linux-ref: could not re-execute ({err}); going on as is");
}

fn main() {
    reexec();
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--memlock") {
        let pages = args
            .get(i + 1)
            .and_then(|n| aspace_linux::num::parse_u64(n));
        let Some(pages) = pages else {
            eprintln!("linux-ref: --memlock takes a number of pages");
            std::process::exit(2);
        };
        if let Err(e) = aspace_linux::runner::engine::limit_memlock(pages) {
            eprintln!("linux-ref: cannot limit locked memory: {e}");
            std::process::exit(2);
        }
    }
    let mut engine = match Engine::setup() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("linux-ref: cannot set up the window: {e}");
            std::process::exit(2);
        }
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut text = String::new();
    engine.header().write_block(&mut text);
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    let mut failed = false;
    for raw in io::stdin().lock().lines() {
        let Ok(raw) = raw else { break };
        text.clear();
        match Line::parse(&raw) {
            Err(ParseError::Empty) => continue,
            Err(e) => {
                failed = true;
                text.push_str(&format!(
                    "> {}\n= {}\n# bad line: {e}\n.\n",
                    raw.trim(),
                    Outcome::Refused
                ));
            }
            Ok(line) => match engine.run(&line) {
                Ok(resp) => {
                    failed |= resp.expect_failed.is_some();
                    resp.write_block(&mut text);
                }
                Err(e) => {
                    eprintln!("linux-ref: cannot observe the state: {e}");
                    std::process::exit(2);
                }
            },
        }
        if out
            .write_all(text.as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            break;
        }
    }
    std::process::exit(i32::from(failed));
}
