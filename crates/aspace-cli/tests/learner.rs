//! The `aspace` command for a learner (issue 14): step costs that count
//! data pages and page-table frames apart, every error of a scenario in
//! one run, ELF segments named from their sections, and step lines whose
//! columns survive long commands.

use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;

fn aspace() -> Command {
    let mut c = Command::cargo_bin("aspace").expect("the aspace binary is built");
    c.env_remove("CI");
    c
}

/// Runs `aspace run` on a file holding `text`; returns (exit code, stdout,
/// stderr, the file's path as shown).
fn run_text(text: &str, extra: &[&str]) -> (i32, String, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("s.aspace");
    std::fs::write(&f, text).unwrap();
    let out = aspace()
        .arg("run")
        .arg(&f)
        .arg("--no-progress")
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        f.display().to_string(),
    )
}

fn step_line<'a>(stdout: &'a str, command: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.trim_start().starts_with(command))
        .unwrap_or_else(|| panic!("no step line for {command:?} in:\n{stdout}"))
}

const ONE_PAGE: &str = "task A\ncpu 0 run A\narea A 0x400000 4p rw heap\n\
                        write A 0x400000 u64 42\nwrite A 0x400008 u64 43\n";

#[test]
fn one_faulted_page_is_one_page_and_its_page_tables() {
    let (code, out, err, _) = run_text(ONE_PAGE, &[]);
    assert_eq!(code, 0, "{out}{err}");
    // A fresh space has only its root: the first page needs a PDPT, a PD
    // and a PT besides its own frame.
    let first = step_line(&out, "write A 0x400000 u64 42");
    assert!(
        first.ends_with("[1 fault, +1 page, +3 page-table frames]"),
        "{first}"
    );
    assert!(!first.contains("+4 frames"), "{first}");
    // The second store lands on the same page: no cost at all.
    let second = step_line(&out, "write A 0x400008 u64 43");
    assert!(!second.contains('['), "{second}");
    // Creating the task took its page-table root.
    assert!(step_line(&out, "task A").ends_with("[+1 page-table frame]"));
    // At the end: the page and the tables go back, counted apart.
    let exit = step_line(&out, "exit A");
    assert!(exit.contains("[-1 page, -4 page-table frames"), "{exit}");
    // The summary splits the frames allocated the same way.
    let row = |k: &str| -> String {
        out.lines()
            .find(|l| l.starts_with(&format!("   {k} ")))
            .unwrap_or_else(|| panic!("no summary row {k:?} in:\n{out}"))
            .to_string()
    };
    let n = |k: &str| -> u64 {
        row(k)[3 + k.len()..]
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("row {k:?}: {}", row(k)))
    };
    assert_eq!(n("frames allocated"), 6, "{out}");
    assert_eq!(n("  kernel page table"), 1, "{out}");
    assert_eq!(n("  data pages"), 1, "{out}");
    assert_eq!(n("  page-table frames"), 4, "{out}");
    assert_eq!(n("  ELF image frames"), 0, "{out}");
}

#[test]
fn one_faulted_page_in_json() {
    let (code, out, err, _) = run_text(ONE_PAGE, &["--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let step = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["text"] == "write A 0x400000 u64 42")
        .unwrap();
    assert_eq!(step["delta"]["pages"], 1);
    assert_eq!(step["delta"]["page_table_frames"], 3);
    assert_eq!(step["delta"]["image_frames"], 0);
    assert_eq!(step["delta"]["frames"], 4);
    let s = &v["summary"];
    assert_eq!(s["pages_allocated"], 1);
    assert_eq!(s["page_table_frames_allocated"], 4);
    assert_eq!(s["image_frames_allocated"], 0);
    assert_eq!(s["kernel_frames_allocated"], 1);
    assert_eq!(s["frames_allocated"], 6);
}

#[test]
fn elf_steps_count_image_frames_apart() {
    let text = "task A\nelf A builtin\ncpu 0 run A\nread A 0x402000 u8\n";
    let (code, out, err, _) = run_text(text, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(step_line(&out, "elf A builtin").ends_with("[+5 image frames]"));
    // A read-only page inside the file maps the image's frame: no page.
    let read = step_line(&out, "read A 0x402000 u8");
    assert!(read.ends_with("[1 fault, +3 page-table frames]"), "{read}");
}

#[test]
fn parse_and_validation_errors_come_out_in_one_run() {
    let text = "task A\n\
                area A 0x400000 1q rw\n\
                cpu 0 run A\n\
                task A\n\
                write B 0x400000 u8 1\n\
                say \"unterminated\n";
    let (code, out, err, f) = run_text(text, &[]);
    assert_eq!(code, 2, "{out}{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("aspace: ")).collect();
    assert_eq!(lines.len(), 4, "{err}");
    assert!(
        lines[0].starts_with(&format!("aspace: {f}:2: bad size '1q'")),
        "{err}"
    );
    assert!(
        lines[1].starts_with(&format!("aspace: {f}:4: task 'A' already exists")),
        "{err}"
    );
    assert!(
        lines[2].starts_with(&format!("aspace: {f}:5: no task named 'B'")),
        "{err}"
    );
    assert!(
        lines[3].starts_with(&format!("aspace: {f}:6: unterminated")),
        "{err}"
    );
    // Nothing ran.
    assert!(!out.contains("Summary"), "{out}");

    let (code, out, _, _) = run_text(text, &["--json"]);
    assert_eq!(code, 2);
    let v: Value = serde_json::from_str(&out).unwrap();
    let at: Vec<u64> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    assert_eq!(at, [2, 4, 5, 6]);
}

#[test]
fn a_line_that_did_not_parse_is_not_blamed_on_the_lines_after_it() {
    // Line 1 would have created B; line 3 must not say B is missing, nor
    // line 4 that CPU 6 is missing when the machine line was bad.
    let text = "machine cpus eight\ntask B extra\ncpu 0 run B\ncpu 6 run B\nwrite B 0x1000 u8 1\n";
    let (code, _, err, f) = run_text(text, &[]);
    assert_eq!(code, 2);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("aspace: ")).collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[0].starts_with(&format!("aspace: {f}:1:")), "{err}");
    assert!(lines[1].starts_with(&format!("aspace: {f}:2:")), "{err}");
}

fn segments(path: &str) -> Vec<Value> {
    let out = aspace()
        .args(["elf", path, "--json", "--no-progress"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["segments"].as_array().unwrap().clone()
}

/// Names distinct, and each one of the segment's own sections.
fn named_from_sections(segs: &[Value]) {
    let names: Vec<&str> = segs.iter().map(|s| s["name"].as_str().unwrap()).collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "{names:?}");
    for s in segs {
        let secs: Vec<&str> = s["sections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap())
            .collect();
        assert!(secs.contains(&s["name"].as_str().unwrap()), "{s}");
    }
}

#[test]
fn builtin_elf_segments_are_named_from_its_sections() {
    let segs = segments("builtin");
    named_from_sections(&segs);
    let names: Vec<&str> = segs.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, [".text", ".rodata", ".data"]);
    // The scenario engine labels the same way (one piece of code).
    let (code, out, _, _) = run_text("task A\nelf A builtin\nmap A\n", &[]);
    assert_eq!(code, 0);
    for n in names {
        assert!(out.contains(&format!("builtin:{n}\n")), "{out}");
    }
}

#[test]
fn two_read_only_segments_of_a_real_executable_get_different_names() {
    let ls = Path::new("/bin/ls");
    if !ls.is_file() {
        eprintln!("no /bin/ls here; skipped");
        return;
    }
    let segs = segments("/bin/ls");
    named_from_sections(&segs);
    let read_only: Vec<&Value> = segs.iter().filter(|s| s["rights"] == "r--").collect();
    if read_only.len() >= 2 {
        assert_ne!(read_only[0]["name"], read_only[1]["name"]);
    }
    let text = format!("task A\nelf A {}\nmap A\n", ls.display());
    let (code, out, err, _) = run_text(&text, &[]);
    assert_eq!(code, 0, "{err}");
    for s in &segs {
        assert!(
            out.contains(&format!("ls:{}\n", s["name"].as_str().unwrap())),
            "{out}"
        );
    }
}

/// The column where the status of a step line starts.
fn status_column(line: &str) -> usize {
    let cut = line.find(" ok ").or_else(|| line.find(" FAILED ")).unwrap();
    line[..cut].chars().count() + 1
}

#[test]
fn a_very_long_command_keeps_the_columns() {
    let long = "x".repeat(400);
    let text = format!(
        "task A\ncpu 0 run A\narea A 0x400000 1p rw\n\
         write A 0x400000 str \"{long}\"\n\
         read A 0x400000 str 4 expect \"xxxx\"\n\
         read A 0x400000 str 400 expect \"{long}y\"\n\
         write A 0x400000 u8 1\n"
    );
    let (code, out, _, _) = run_text(&text, &[]);
    assert_eq!(code, 1, "{out}");
    let col = status_column(step_line(&out, "task A"));
    // Every status, short command or long, starts in the same column.
    let statuses: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(" ok ") || l.contains(" FAILED "))
        .filter(|l| l.starts_with("   ") && !l.starts_with("   /"))
        .collect();
    assert!(statuses.len() >= 7, "{out}");
    for l in &statuses {
        assert_eq!(status_column(l), col, "{l:?}\n{out}");
    }
    // The long commands are shown on a line of their own, cut short.
    let shown: Vec<&str> = out
        .lines()
        .filter(|l| {
            l.starts_with("   write A 0x400000 str") || l.starts_with("   read A 0x400000 str 400")
        })
        .collect();
    assert_eq!(shown.len(), 2, "{out}");
    for l in shown {
        assert!(l.ends_with("..."), "{l}");
        assert!(l.chars().count() <= 3 + aspace_cli::out::COMMAND_MAX, "{l}");
    }
}
