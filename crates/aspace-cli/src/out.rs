//! Where narration goes: stdout for people (nothing in `--json` mode, where
//! stdout carries the JSON document), failures also to stderr, and a
//! progress bar on stderr for long runs when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Runs with at least this many steps of work (a page touched is one) get
/// a progress bar.
pub const PROGRESS_THRESHOLD: u64 = 20_000;

/// The output channel of one command.
pub struct Out {
    json: bool,
    quiet: bool,
    bar: Option<ProgressBar>,
}

impl Out {
    /// Narration on stdout unless `json`; a progress bar over `work` steps
    /// when `progress` is allowed, the work is long and stderr is a
    /// terminal.
    pub fn new(json: bool, work: u64, progress: bool) -> Out {
        let bar = (progress && work >= PROGRESS_THRESHOLD && std::io::stderr().is_terminal()).then(
            || {
                let b = ProgressBar::with_draw_target(Some(work), ProgressDrawTarget::stderr());
                b.set_style(
                    ProgressStyle::with_template(
                        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} steps ({eta} left)",
                    )
                    .expect("valid template"),
                );
                b.enable_steady_tick(Duration::from_millis(120));
                b
            },
        );
        Out {
            json,
            quiet: false,
            bar,
        }
    }

    /// An output channel that prints nothing, not even failures (for
    /// running scenarios in-process).
    pub fn quiet() -> Out {
        Out {
            json: true,
            quiet: true,
            bar: None,
        }
    }

    fn print(&self, text: &str, err: bool) {
        if self.quiet {
            return;
        }
        // A closed pipe (`aspace | head`) is not an error of the run: what
        // cannot be written is dropped, never a panic.
        let emit = || {
            let _ = if err {
                std::io::stderr().lock().write_all(text.as_bytes())
            } else {
                std::io::stdout().lock().write_all(text.as_bytes())
            };
        };
        match &self.bar {
            Some(b) => b.suspend(emit),
            None => emit(),
        }
    }

    /// A line of narration.
    pub fn line(&self, s: &str) {
        if !self.json {
            self.print(&format!("{s}\n"), false);
        }
    }

    /// A heading.
    pub fn heading(&self, s: &str) {
        self.line(s);
    }

    /// Several lines (ending in a newline).
    pub fn block(&self, s: &str) {
        if !self.json {
            self.print(s, false);
        }
    }

    /// A line about a failure, in the narration.
    pub fn error_line(&self, s: &str) {
        self.line(s);
    }

    /// Failures at the end: on stderr, in every mode.
    pub fn error_block(&self, s: &str) {
        self.print(s, true);
    }

    /// Advances the progress bar.
    pub fn tick(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    /// Restarts the progress bar's clock (after a slow setup such as
    /// allocating the machine's memory).
    pub fn restart(&self) {
        if let Some(b) = &self.bar {
            b.reset();
        }
    }

    /// Removes the progress bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Width of the command column of a step line.
pub const COMMAND_WIDTH: usize = 46;

/// The most characters of a command shown on a line of its own; a longer
/// command is cut there and ends in `...`.
pub const COMMAND_MAX: usize = 120;

/// The start of a step line: `command` in a column of [`COMMAND_WIDTH`],
/// then `status` in a column of 6; the caller appends what happened.
///
/// A command wider than its column goes on a line of its own (cut at
/// [`COMMAND_MAX`] characters with `...`), and the columns follow on the
/// next line, so every status starts in the same column. Tabs and other
/// control characters show as spaces.
pub fn step_prefix(command: &str, status: &str) -> String {
    let clean: String = command
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let n = clean.chars().count();
    if n <= COMMAND_WIDTH {
        return format!("   {clean:<COMMAND_WIDTH$} {status:<6}");
    }
    let shown = if n <= COMMAND_MAX {
        clean
    } else {
        let mut cut: String = clean.chars().take(COMMAND_MAX - 3).collect();
        cut.push_str("...");
        cut
    };
    format!("   {shown}\n   {:<COMMAND_WIDTH$} {status:<6}", "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_commands_keep_the_columns() {
        let short = step_prefix("task A", "ok");
        let long = step_prefix(&"x".repeat(300), "ok");
        let last = long.lines().last().unwrap();
        assert_eq!(short.find("ok"), last.find("ok"));
        let first = long.lines().next().unwrap();
        assert!(first.ends_with("..."));
        assert_eq!(first.chars().count(), 3 + COMMAND_MAX);
        assert!(!step_prefix("a\tb", "ok").contains('\t'));
    }
}
