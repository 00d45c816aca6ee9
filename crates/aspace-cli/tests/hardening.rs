//! The holes in the `aspace` command found by trying to break it (issue 13,
//! items 6 to 11), each shut by a test: run-time failures are failed steps,
//! never panics; `aspace elf` stops when memory runs out; input files are
//! bounded; numeric options are bounded; the picture and the task table
//! scale; the work counter cannot overflow.
//!
//! Where the old behaviour was a hang, the command runs under a generous
//! timeout so that it fails instead of hanging the suite; no test asserts
//! how fast anything is (that is for the benchmarks).

use std::path::Path;
use std::time::Duration;

use aspace_cli::cli::{run_scenario_text, Opts, Outcome};
use aspace_cli::maps::{AreaView, TaskView};
use aspace_cli::svg::{self, Snapshot};
use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

/// Long enough for any of these commands on a slow, shared machine; only
/// there to turn a hang into a failure.
const HANG_GUARD: Duration = Duration::from_secs(300);

fn aspace() -> Command {
    let mut c = Command::cargo_bin("aspace").expect("the aspace binary is built");
    c.env_remove("CI");
    c.timeout(HANG_GUARD);
    c
}

/// Writes `text` to a scenario file in `dir`; returns its path.
fn scenario(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn json_of(out: &[u8]) -> Value {
    serde_json::from_slice(out).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}",
            String::from_utf8_lossy(out)
        )
    })
}

// ---- 6. A task whose creation failed at run time ----

/// The reproducer: `task B` fails (frames exhausted), and every
/// later use of B is an ordinary failed step naming the line that failed,
/// where it used to panic (exit 101).
#[test]
fn every_use_of_a_task_whose_creation_failed_is_a_failed_step() {
    let dir = tempfile::tempdir().unwrap();
    let text = "\
machine cpus 1 asids 1 memory 1M
task A
cpu 0 run A
area A 0x400000 1M rw late-reserve
touch A 0x400000 1M write expect no-memory
task B expect ENOMEM
area B 0x400000 1p rw
resize B 0x400000 2p
flags B 0x400000 r
share A 0x400000 B 0x800000 r
share B 0x400000 A 0x800000 r
elf B builtin
cpu 0 run B
write B 0x400000 u8 1
read B 0x400000 u8
fetch B 0x400000
fault B 0x400000 read
touch B 0x400000 2p
check resident B == 0
map B
destroy B 0x400000
exit B
";
    let path = scenario(dir.path(), "lost.aspace", text);
    let out = aspace().arg("run").arg(&path).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let name = path.display().to_string();
    for line in 7..=22 {
        assert!(
            err.contains(&format!("{name}:{line}: not done: no task 'B'")),
            "line {line} is a failed step: {err}"
        );
    }
    assert!(
        err.contains("creating it failed on line 6"),
        "the failure names the line that failed: {err}"
    );
    assert!(err.contains("16 checks FAILED"), "{err}");
    // The JSON document says the same, step by step.
    let out = aspace()
        .args(["run", "--json"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v = json_of(&out.stdout);
    assert_eq!(v["ok"], false);
    assert_eq!(
        v["summary"]["frames_in_use_at_end"],
        v["summary"]["frames_in_use_at_start"]
    );
    let failed: Vec<u64> = v["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            f["at"]
                .as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(failed, (7..=22).collect::<Vec<u64>>());
}

/// The same scenario in-process, as the fuzz test runs it.
#[test]
fn a_lost_task_in_process_ends_as_a_failed_run() {
    let opts = Opts {
        quiet: true,
        ..Opts::default()
    };
    let text = "machine cpus 1 asids 1 memory 1M\ntask A\ncpu 0 run A\narea A 0x400000 1M rw late-reserve\ntouch A 0x400000 1M write\ntask B\narea B 0x400000 1p rw\n";
    let o = run_scenario_text(&opts, "t", text, Path::new("."));
    assert!(matches!(o, Outcome::Failed(_)), "{o:?}");
}

// ---- 7. `aspace elf` on a segment far bigger than memory ----

/// The built-in executable with the last segment's `p_memsz` set.
fn elf_with_last_memsz(memsz: u64) -> Vec<u8> {
    let mut b = aspace_cli::elfgen::builtin_elf();
    let phoff = u64::from_le_bytes(b[32..40].try_into().unwrap()) as usize;
    let phnum = u16::from_le_bytes(b[56..58].try_into().unwrap()) as usize;
    let last = phoff + (phnum - 1) * 56;
    assert_eq!(u32::from_le_bytes(b[last..last + 4].try_into().unwrap()), 1);
    b[last + 40..last + 48].copy_from_slice(&memsz.to_le_bytes());
    b
}

#[test]
fn elf_stops_at_the_first_out_of_memory_refusal() {
    let dir = tempfile::tempdir().unwrap();
    // 16 MiB of bss on a 1 MiB machine: memory runs out after ~250 pages;
    // it used to go on touching and list every one of the ~4000 pages
    // refused after that.
    let small = dir.path().join("bss16m");
    std::fs::write(&small, elf_with_last_memsz(16 << 20)).unwrap();
    // 1 TiB of bss: it used to touch 2^28 pages, for minutes.
    let huge = dir.path().join("bss1t");
    std::fs::write(&huge, elf_with_last_memsz(0x100_0000_0000)).unwrap();
    // Within the commit limit (by default the free frames) the bss could
    // not even be reserved: the load is refused up front.
    aspace()
        .args(["elf", "--memory", "1M"])
        .arg(&small)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("out of memory (ENOMEM)"));
    // With the limit lifted, the faults run out of frames instead.
    const NO_LIMIT: &str = "1048576T";
    for f in [&small, &huge] {
        let out = aspace()
            .args([
                "elf",
                "--json",
                "--memory",
                "1M",
                "--commit-limit",
                NO_LIMIT,
            ])
            .arg(f)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v = json_of(&out.stdout);
        assert_eq!(v["refusals"], 1, "{}", v["refused"]);
        assert_eq!(v["refused"].as_array().unwrap().len(), 1);
        assert!(v["refused"][0].as_str().unwrap().contains("out of memory"));
        let stopped = v["stopped"].as_str().expect("says where it stopped");
        assert!(stopped.contains("out of memory"), "{stopped}");
        assert!(stopped.contains("raise --memory"), "{stopped}");
        assert_eq!(v["faults"], v["pages_touched"]);
        assert!(v["pages_touched"].as_u64().unwrap() > 100);
    }
    // In text, once.
    aspace()
        .args(["elf", "--memory", "1M", "--commit-limit", NO_LIMIT])
        .arg(&huge)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("stopped: out of memory").count(1))
        .stdout(predicate::str::contains("\n   refused: ").count(1))
        .stderr(predicate::str::contains("FAILED"));
}

// ---- 8. Input files are bounded ----

#[test]
fn devices_fifos_directories_and_huge_files_are_refused() {
    aspace()
        .args(["run", "/dev/zero"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "cannot read /dev/zero: it is a character device; scenario files are read only from regular files",
        ));
    aspace()
        .args(["elf", "/dev/urandom"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "cannot read /dev/urandom: it is a character device; ELF files are read only from regular files",
        ));
    let dir = tempfile::tempdir().unwrap();
    aspace()
        .arg("run")
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("it is a directory"));
    // A FIFO nobody writes to: opening it used to block forever.
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success());
    if made {
        aspace()
            .arg("run")
            .arg(&fifo)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("it is a FIFO"));
        aspace()
            .arg("elf")
            .arg(&fifo)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("it is a FIFO"));
    } else {
        eprintln!("mkfifo failed here; the FIFO case is skipped");
    }
    // Files over the limits (sparse: no disk used).
    let big = dir.path().join("big.aspace");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(aspace_cli::input::MAX_SCENARIO_BYTES + 1)
        .unwrap();
    aspace()
        .arg("run")
        .arg(&big)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!(
            "it has {} bytes, more than the 16M limit for scenario files",
            aspace_cli::input::MAX_SCENARIO_BYTES + 1
        )));
    let big_elf = dir.path().join("big.elf");
    let f = std::fs::File::create(&big_elf).unwrap();
    f.set_len(aspace_cli::input::MAX_ELF_BYTES + 1).unwrap();
    aspace()
        .arg("elf")
        .arg(&big_elf)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "more than the 256M limit for ELF files",
        ));
    // ... and from a scenario's `elf` line, before anything runs.
    let s = scenario(
        dir.path(),
        "elf.aspace",
        &format!("task A\nelf A /dev/zero\nelf A {}\n", big_elf.display()),
    );
    let out = aspace().arg("run").arg(&s).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(":2: cannot read /dev/zero: it is a character device"),
        "{err}"
    );
    assert!(
        err.contains(":3: cannot read") && err.contains("256M limit"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "nothing ran");
}

// ---- 9. Numeric options are bounded ----

#[test]
fn numeric_options_out_of_bounds_are_input_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(dir.path(), "t.aspace", "task A\n");
    for (args, msg) in [
        (
            vec!["--tlb-entries", "18446744073709551615"],
            "--tlb-entries 18446744073709551615: a TLB has 1 to 4096 entries",
        ),
        (vec!["--tlb-entries", "4097"], "a TLB has 1 to 4096 entries"),
        (vec!["--tlb-entries", "0"], "a TLB has 1 to 4096 entries"),
        (
            vec!["--tlb-entries", "18446744073709551616"],
            "invalid value '18446744073709551616' for '--tlb-entries <N>'",
        ),
        (
            vec!["--cpus", "18446744073709551615"],
            "the machine has 1 to 64 CPUs",
        ),
        (
            vec!["--asids", "65536"],
            "invalid value '65536' for '--asids <N>'",
        ),
        (vec!["--cpus", "1", "--asids", "4096"], "at most 4095"),
        (vec!["--memory", "16T"], "use 1M to 4G"),
        (vec!["--memory", "99999999999T"], "out of range"),
    ] {
        for cmd in [
            vec!["demo"],
            vec!["elf", "builtin"],
            vec!["run", s.to_str().unwrap()],
        ] {
            let out = aspace().args(&cmd).args(&args).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{cmd:?} {args:?}: {err}");
            assert!(err.contains(msg), "{cmd:?} {args:?}: {err}");
        }
    }
    // A scenario's machine line, likewise.
    for (line, msg) in [
        ("machine cpus 18446744073709551615", "1 to 64 CPUs"),
        ("machine asids 70000", "out of range"),
        ("machine memory 16T", "use 1M to 4G"),
    ] {
        let s = scenario(dir.path(), "m.aspace", &format!("{line}\ntask A\n"));
        let out = aspace().arg("run").arg(&s).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{line}: {err}");
        assert!(err.contains(msg), "{line}: {err}");
    }
    // The bounds themselves are fine.
    aspace()
        .args([
            "run",
            "--tlb-entries",
            "4096",
            "--cpus",
            "1",
            "--asids",
            "1",
        ])
        .arg(&s)
        .assert()
        .success();
}

// ---- 10. The picture and the task table scale ----

/// 100,000 areas in four bands, a quarter of them in share groups, drawn
/// into one well-formed picture (it took minutes when every stretch of the
/// axis was checked against every area).
#[test]
fn a_picture_of_100k_areas_is_drawn_and_well_formed() {
    const AREAS: u64 = 100_000;
    let mut tasks: Vec<TaskView> = (0..4)
        .map(|t| TaskView {
            task: format!("T{t}"),
            space_id: t,
            asid: None,
            cpus: vec![],
            areas: Vec::new(),
            resident_pages: 0,
            reserved_pages: 0,
            page_table_frames: 1,
        })
        .collect();
    for i in 0..AREAS {
        let base = 0x40_0000 + i * 0x3000 + (i % 3) * 0x1000;
        let pages = 1 + i % 2;
        tasks[(i % 4) as usize].areas.push(AreaView {
            start: format!("{base:#x}"),
            end: format!("{:#x}", base + pages * 4096),
            pages,
            kbytes: pages * 4,
            resident: i % 2,
            image_pages: 0,
            private_pages: i % 2,
            reserved: pages,
            late_reserve: false,
            reserve_on_write: false,
            mode: "rw-p".into(),
            backend: "anon",
            shared: i % 4 == 0,
            share_group: (i % 4 == 0).then_some((i / 8) as usize),
            label: None,
            base,
            runs: if i % 2 == 1 { vec![(0, 1)] } else { vec![] },
        });
    }
    let snap = Snapshot {
        title: "100k".into(),
        tasks,
    };
    let pic = svg::render(&[snap], "scale");
    let doc = roxmltree::Document::parse(&pic).expect("well-formed XML");
    let rects = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "rect")
        .count() as u64;
    // One per area, one per resident run, plus background and legend.
    assert!(rects >= AREAS + AREAS / 2, "{rects} rects");
    let links = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "path")
        .count();
    assert!(links > 0, "share groups are linked");
}

/// Thousands of tasks, each used after all were created, listed and
/// pictured, in-process (every lookup went through a list of every task).
#[test]
fn thousands_of_tasks_run_listed_and_pictured() {
    const TASKS: usize = 5_000;
    let mut text = String::from("machine cpus 2 asids 2\n");
    for i in 0..TASKS {
        text.push_str(&format!("task T{i}\n"));
    }
    for i in 0..TASKS {
        text.push_str(&format!("area T{i} 0x400000 1p rw\n"));
    }
    text.push_str("echo off\nmap\nsnapshot\ncpu 0 run T4999\ntouch T4999 0x400000 1p write\n");
    for i in (0..TASKS).step_by(2) {
        text.push_str(&format!("exit T{i}\n"));
    }
    let dir = tempfile::tempdir().unwrap();
    let opts = Opts {
        quiet: true,
        memory: Some(64 << 20),
        svg: Some(dir.path().join("t.svg")),
        ..Opts::default()
    };
    let o = run_scenario_text(&opts, "tasks", &text, Path::new("."));
    assert!(matches!(o, Outcome::Passed), "{o:?}");
    let pic = std::fs::read_to_string(dir.path().join("t.svg")).unwrap();
    let doc = roxmltree::Document::parse(&pic).expect("well-formed XML");
    let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
    assert!(texts.contains(&"T4999"));
}

// ---- 11. The work counter does not overflow ----

/// 4100 touches of 2^52 pages each: their page counts add up past 2^64,
/// which overflowed the progress counter in debug builds (a panic).
#[test]
fn many_huge_touches_do_not_overflow_the_work_counter() {
    let mut text = String::from("task A\ncpu 0 run A\n");
    for _ in 0..4100 {
        text.push_str("touch A 0x0 0xffff_ffff_ffff_f000 read expect no-area\n");
    }
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(dir.path(), "touch.aspace", &text);
    let out = aspace()
        .args(["run", "--memory", "2M"])
        .arg(&s)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // The counter itself saturates.
    let script = aspace_cli::script::parse("t", &text, Path::new(".")).unwrap();
    assert_eq!(aspace_cli::engine::Engine::work(&script), u64::MAX);
}

// ---- Core items 2 and 3, as a user of the tool meets them ----

fn quiet() -> Opts {
    Opts {
        quiet: true,
        ..Opts::default()
    }
}

/// An ELF area shared into another task at another address reads the
/// file's bytes there, and the source still reads its own.
#[test]
fn an_elf_area_shared_at_another_address_reads_the_file() {
    let text = "task A\ntask B\nelf A builtin\ncpu 1 run B\n\
                share A 0x402000 B 0x60002000 r\n\
                read B 0x60002000 str 5 expect \"Hello\"\n\
                cpu 0 run A\nread A 0x402000 str 5 expect \"Hello\"\n";
    let o = run_scenario_text(&quiet(), "t", text, Path::new("."));
    assert!(matches!(o, Outcome::Passed), "{o:?}");
}

/// A share refused at its destination leaves the source unshared: it can
/// still grow.
#[test]
fn a_refused_share_leaves_the_source_resizable() {
    let text = "task A\ntask B\narea A 0x400000 4p rw\narea B 0x800000 1p rw\n\
                share A 0x400000 B 0x800000 r expect EADDRNOTAVAIL\n\
                resize A 0x400000 8p expect ok\nflags A 0x400000 r expect ok\n";
    let o = run_scenario_text(&quiet(), "t", text, Path::new("."));
    assert!(matches!(o, Outcome::Passed), "{o:?}");
}
