//! End-to-end tests of the `aspace` binary: the demo, the example
//! scenarios, JSON, SVG, the ELF command and the error messages for broken
//! scenario files.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

fn aspace() -> Command {
    let mut c = Command::cargo_bin("aspace").expect("the aspace binary is built");
    c.env_remove("CI"); // output must not depend on it
    c
}

fn scenarios() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/scenarios");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/scenarios exists")
        .map(|e| e.expect("readable dir").path())
        .filter(|p| p.extension().is_some_and(|e| e == "aspace"))
        .collect();
    v.sort();
    assert!(v.len() >= 5, "expected the shipped scenarios, found {v:?}");
    v
}

fn json_of(out: &[u8]) -> Value {
    serde_json::from_slice(out).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}",
            String::from_utf8_lossy(out)
        )
    })
}

/// Runs `aspace run` on a file holding `text`; returns (exit code, stdout,
/// stderr, the file's path as shown).
fn run_text(text: &str, extra: &[&str]) -> (i32, String, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.aspace");
    std::fs::write(&path, text).unwrap();
    let out = aspace().arg("run").arg(&path).args(extra).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        path.display().to_string(),
    )
}

#[test]
fn no_arguments_runs_the_demo_and_every_check_holds() {
    aspace()
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "1. An ELF executable, loaded on demand",
        ))
        .stdout(predicate::str::contains(
            "A heap placed anywhere, grown and shrunk",
        ))
        .stdout(predicate::str::contains("A stack that grows by faults"))
        .stdout(predicate::str::contains("refused: guard page"))
        .stdout(predicate::str::contains(
            "Memory reserved up front, or page by page",
        ))
        .stdout(predicate::str::contains("A user-space pager serves a file"))
        .stdout(predicate::str::contains("Memory shared between two tasks"))
        .stdout(predicate::str::contains("RW -> RX"))
        .stdout(predicate::str::contains("ASIDs recycled"))
        .stdout(predicate::str::contains(
            "read at 0x0 refused: no area there",
        ))
        .stdout(predicate::str::contains(
            "write at 0x401000 refused: area does not allow it",
        ))
        .stdout(predicate::str::contains("ELF image builtin released"))
        .stdout(predicate::str::contains("== Summary"))
        .stdout(predicate::str::contains("ASID steals"))
        .stdout(predicate::str::contains("shootdown rounds"))
        .stdout(predicate::str::contains("All checks passed."))
        .stdout(predicate::str::contains("FAILED").not());
}

#[test]
fn demo_json_is_one_document_with_the_counters() {
    let out = aspace().args(["demo", "--json"]).output().unwrap();
    assert!(out.status.success());
    let v = json_of(&out.stdout);
    assert_eq!(v["ok"], true);
    assert_eq!(v["command"], "demo");
    assert_eq!(v["machine"]["cpus"], 4);
    let s = &v["summary"];
    assert!(s["asid_steals"].as_u64().unwrap() >= 2, "{s}");
    assert!(s["ipis"].as_u64().unwrap() >= 1, "{s}");
    assert!(s["shootdown_rounds"].as_u64().unwrap() >= 1, "{s}");
    assert!(s["faults_served"].as_u64().unwrap() >= 80, "{s}");
    assert_eq!(s["frames_in_use_at_end"], s["frames_in_use_at_start"]);
    assert_eq!(s["stale_accesses"], 0);
    assert_eq!(s["checks_failed"], 0);
    let steps = v["steps"].as_array().unwrap();
    let ops: Vec<&str> = steps.iter().filter_map(|s| s["op"].as_str()).collect();
    for op in [
        "elf", "resize", "share", "flags", "fetch", "fault", "exit", "map",
    ] {
        assert!(ops.contains(&op), "no {op} step in {ops:?}");
    }
    assert!(steps.iter().all(|s| s["ok"] != false));
    let null = steps
        .iter()
        .find(|s| s["text"] == "fault init 0x0 read expect no-area")
        .expect("the NULL access step");
    assert_eq!(null["fault"]["reason"], "no-area");
    let map = steps.iter().find(|s| s["op"] == "map").unwrap();
    let areas = map["maps"][0]["areas"].as_array().unwrap();
    assert_eq!(areas.len(), 3, "the ELF's three areas");
    assert_eq!(areas[0]["mode"], "r-xp");
    assert_eq!(areas[0]["backend"], "elf");
}

#[test]
fn demo_svg_is_well_formed_and_links_shared_areas() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("demo.svg");
    aspace()
        .args([
            "demo", "--cpus", "2", "--asids", "2", "--memory", "16M", "--svg",
        ])
        .arg(&svg)
        .assert()
        .success()
        .stdout(predicate::str::contains("Picture written to"));
    let text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
    let count = |name: &str| {
        doc.descendants()
            .filter(|n| n.tag_name().name() == name)
            .count()
    };
    assert!(count("rect") > 10);
    assert!(count("path") >= 2, "shared areas are linked");
    let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
    for t in ["init", "logger", "viewer", "heap", "stack"] {
        assert!(texts.iter().any(|x| x.contains(t)), "no {t} in the picture");
    }
}

#[test]
fn demo_fits_small_machines_and_prints_itself_as_a_scenario() {
    aspace()
        .args(["--cpus", "1", "--asids", "1", "--memory", "8M"])
        .assert()
        .success()
        .stdout(predicate::str::contains("All checks passed."));
    let out = aspace()
        .args(["demo", "--print-scenario", "--cpus", "2", "--asids", "3"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("demo.aspace");
    std::fs::write(&file, &out.stdout).unwrap();
    aspace()
        .args(["run", "--cpus", "2", "--asids", "3", "--memory", "16M"])
        .arg(&file)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "ASIDs recycled: 5 more tasks, 3 ASIDs",
        ));
}

#[test]
fn every_example_scenario_passes_in_text_and_json() {
    for path in scenarios() {
        aspace()
            .arg("run")
            .arg(&path)
            .assert()
            .success()
            .stdout(predicate::str::contains("All checks passed."))
            .stdout(predicate::str::contains("== Summary"));
        let out = aspace()
            .args(["run", "--json", "--memory", "16M"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", path.display());
        let v = json_of(&out.stdout);
        assert_eq!(v["ok"], true, "{}", path.display());
        assert_eq!(v["command"], "run");
        assert!(!v["steps"].as_array().unwrap().is_empty());
    }
}

#[test]
fn example_scenarios_show_what_they_are_about() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/scenarios");
    aspace()
        .arg("run")
        .arg(dir.join("basics.aspace"))
        .assert()
        .success()
        .stdout(predicate::str::contains("Kbytes"))
        .stdout(predicate::str::contains("rw-p  anon"))
        .stdout(predicate::str::contains("-> 42 (0x2a)"))
        .stdout(predicate::str::contains(
            "refused: address range not available (EADDRNOTAVAIL)",
        ));
    aspace()
        .arg("run")
        .arg(dir.join("share.aspace"))
        .assert()
        .success()
        .stdout(predicate::str::contains("rw-s  anon    s#1"))
        .stdout(predicate::str::contains("r--s  anon    s#1"));
    let out = aspace()
        .args(["run", "--json"])
        .arg(dir.join("asids.aspace"))
        .output()
        .unwrap();
    let v = json_of(&out.stdout);
    assert_eq!(v["machine"]["asids"], 2, "the file's machine line");
    assert_eq!(v["summary"]["asid_steals"], 6);
}

#[test]
fn placement_scenario_prints_the_bases_chosen() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/scenarios");
    aspace()
        .arg("run")
        .arg(dir.join("placement.aspace"))
        .assert()
        .success()
        .stdout(predicate::str::contains("at 0x404000: 2 pages"))
        .stdout(predicate::str::contains("at 0x500000: 1 page"))
        .stdout(predicate::str::contains("at 0x1000: 1 page"))
        .stdout(predicate::str::contains("refused: guard page"))
        .stdout(predicate::str::contains(
            "0000000001fef000        72      18      17",
        ));
    // The parser refuses a bad alignment, at its line.
    let (code, _, err, path) = run_text("task A\narea A any 1p rw align 3p\n", &[]);
    assert_eq!(code, 2);
    assert!(err.contains(&format!("{path}:2: alignment")), "{err}");
}

#[test]
fn machine_options_override_the_file() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/scenarios");
    let out = aspace()
        .args(["run", "--json", "--asids", "3"])
        .arg(dir.join("asids.aspace"))
        .output()
        .unwrap();
    let v = json_of(&out.stdout);
    assert_eq!(v["machine"]["asids"], 3);
    // With a third ASID the counts in the file no longer hold.
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(v["ok"], false);
}

#[test]
fn unknown_operation_is_reported_at_its_line() {
    let (code, _, err, path) = run_text("task A\n\nfrobnicate A\nresise A 0x1000 1p\n", &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("{path}:3: unknown operation 'frobnicate'")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{path}:4: unknown operation 'resise' (did you mean 'resize'?)"
        )),
        "{err}"
    );
    assert!(err.contains("| frobnicate A"), "the line is shown: {err}");
}

#[test]
fn bad_number_is_reported_at_its_line() {
    let (code, out, err, path) = run_text(
        "task A\narea A 0x40zz00 4p rw\narea A 0x400000 4q rw\nwrite A 0x1000 u8 300\n",
        &[],
    );
    assert_eq!(code, 2);
    assert!(out.is_empty(), "nothing runs: {out}");
    assert!(
        err.contains(&format!("{path}:2: bad number '0x40zz00'")),
        "{err}"
    );
    assert!(err.contains(&format!("{path}:3: bad size '4q'")), "{err}");
    assert!(
        err.contains(&format!("{path}:4: value 300 does not fit in u8")),
        "{err}"
    );
}

#[test]
fn missing_task_is_reported_at_its_line() {
    let (code, _, err, path) = run_text(
        "task A\ncpu 0 run A\nwrite B 0x1000 u64 1\narea A 0x1000 1p rw\nexit A\nmap A\nread A 0x1000 u8\n",
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!(
            "{path}:3: no task named 'B' at this point (create it first with 'task B')"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{path}:6: no task named 'A'")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{path}:7: no task named 'A'")),
        "{err}"
    );
}

#[test]
fn out_of_range_address_is_reported_at_its_line() {
    let (code, _, err, path) = run_text(
        "task A\narea A 0x800000000000 1p rw\ncpu 0 run A\nread A 0x1_0000_0000_0000_0000 u64\ntouch A 0xfffffffffffff000 2p\n",
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!(
            "{path}:2: address 0x800000000000 is out of range: areas live in user space"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{path}:4: address 0x1_0000_0000_0000_0000 is out of range"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{path}:5: address 0xfffffffffffff000 is out of range"
        )),
        "{err}"
    );
}

#[test]
fn other_mistakes_say_what_is_wrong() {
    // Lines that cannot be read are all reported first...
    let (code, _, err, path) = run_text(
        "task A\narea A 0x1000\narea A 0x1000 1p rw expect no-area\nmachine cpus 2\nsay \"unterminated\n",
        &[],
    );
    assert_eq!(code, 2);
    for (line, what) in [
        (
            2,
            "'area' is missing a size (usage: area TASK ADDR SIZE RIGHTS [guard] [grows-down] [late-reserve|reserve-on-write] [LABEL])",
        ),
        (3, "'area' can expect ok or an error"),
        (4, "'machine' must come before every other operation"),
        (5, "unterminated quoted text"),
    ] {
        assert!(
            err.contains(&format!("{path}:{line}: {what}")),
            "line {line}: {err}"
        );
    }
    // ...then what does not fit the machine or the tasks at that point.
    let (code, _, err, path) = run_text(
        "task A\ntask A\ncpu 7 run A\nwrite A 0x1000 u64 1\n",
        &["--cpus", "2"],
    );
    assert_eq!(code, 2);
    for (line, what) in [
        (2, "task 'A' already exists (created on line 1)"),
        (3, "no CPU 7: the machine has 2 CPUs"),
        (4, "task 'A' runs on no CPU here"),
    ] {
        assert!(
            err.contains(&format!("{path}:{line}: {what}")),
            "line {line}: {err}"
        );
    }
}

#[test]
fn broken_file_in_json_mode_gives_structured_errors() {
    let (code, out, _, _) = run_text("task A\nfrobnicate\n", &["--json"]);
    assert_eq!(code, 2);
    let v = json_of(out.as_bytes());
    assert_eq!(v["ok"], false);
    assert_eq!(v["errors"][0]["line"], 2);
    assert!(v["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("unknown operation"));
}

#[test]
fn a_failed_expectation_exits_1_and_names_the_line() {
    let (code, out, err, path) = run_text(
        "task A\ncpu 0 run A\narea A 0x1000 1p rw\nwrite A 0x1000 u64 5\nread A 0x1000 u64 expect 6\nfault A 0x1000 read expect no-area\ncheck resident A == 1\n",
        &[],
    );
    assert_eq!(code, 1);
    assert!(out.contains("FAILED"), "{out}");
    assert!(
        err.contains(&format!("{path}:5: expected 6 (0x6), got -> 5 (0x5)")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{path}:6: expected a fault: no-area, got CPU 0: read at 0x1000 allowed"
        )),
        "{err}"
    );
    assert!(err.contains("2 checks FAILED"), "{err}");
}

#[test]
fn missing_scenario_file_is_an_input_error() {
    aspace()
        .args(["run", "/nonexistent/x.aspace"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "cannot read /nonexistent/x.aspace",
        ));
}

#[test]
fn elf_builtin_counts_faults_copies_and_image_frames() {
    aspace()
        .args(["elf", "builtin"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Loadable segments"))
        .stdout(predicate::str::contains("builtin:.text"))
        .stdout(predicate::str::contains("all frames back"));
    let out = aspace()
        .args(["elf", "builtin", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v = json_of(&out.stdout);
    assert_eq!(v["pages_touched"], 8);
    assert_eq!(v["faults"], 8);
    // text (2 pages) and rodata (1) map the image; data + bss (5) are copies.
    assert_eq!(v["shared_image_frames"], 3);
    assert_eq!(v["private_copies"], 5);
    assert_eq!(v["image_frames"], 5);
    assert_eq!(v["areas"].as_array().unwrap().len(), 3);
    assert_eq!(v["ok"], true);
}

#[test]
fn elf_loads_a_real_executable() {
    let Some(path) = ["/bin/true", "/usr/bin/env", "/bin/ls"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        eprintln!("no executable to load here; skipped");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("elf.svg");
    let out = aspace()
        .args(["elf", path, "--json", "--memory", "32M", "--svg"])
        .arg(&svg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_of(&out.stdout);
    let touched = v["pages_touched"].as_u64().unwrap();
    assert!(touched > 0);
    assert_eq!(v["faults"].as_u64().unwrap(), touched);
    assert!(v["shared_image_frames"].as_u64().unwrap() > 0);
    assert!(v["private_copies"].as_u64().unwrap() > 0);
    assert_eq!(
        v["shared_image_frames"].as_u64().unwrap() + v["private_copies"].as_u64().unwrap(),
        touched
    );
    roxmltree::Document::parse(&std::fs::read_to_string(&svg).unwrap()).expect("well-formed");
}

#[test]
fn elf_refuses_what_is_not_an_executable() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("notes.txt");
    std::fs::write(&f, "not an ELF file").unwrap();
    aspace()
        .arg("elf")
        .arg(&f)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot load: malformed ELF file"));
}

#[test]
fn help_teaches_the_commands_and_the_format() {
    aspace()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("Examples:"))
        .stdout(predicate::str::contains("--asids"))
        .stdout(predicate::str::contains("Exit status"));
    aspace()
        .args(["run", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Operations:"))
        .stdout(predicate::str::contains("expect OUTCOME"))
        .stdout(predicate::str::contains("share SRC ADDR DST ADDR2 RIGHTS"));
}

#[test]
fn bad_machine_options_are_refused() {
    aspace()
        .args(["--cpus", "4", "--asids", "2"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("need at least one ASID per CPU"));
    aspace()
        .args(["--memory", "12q"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("bad size '12q'"));
    aspace()
        .args(["--cpus", "0"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("1 to 64 CPUs"));
}

#[test]
fn the_commit_limit_refuses_areas_and_late_reserve_faults_and_shows_in_maps_and_json() {
    let text = "task A\ncpu 0 run A\narea A 0x400000 4p rw heap\n\
                area A 0x800000 8p rw late-reserve stack\n\
                area A 0x1000000 3p rw expect ENOMEM\n\
                touch A 0x800000 2p write\n\
                fault A 0x802000 write expect no-memory\n\
                check pages_reserved == 6\ncheck commit_limit == 6\nmap A\nstats\n";
    let (code, out, err, _) = run_text(text, &["--commit-limit", "6p"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Resv."), "{out}");
    assert!(out.contains("stack (late reserve)"), "{out}");
    assert!(out.contains("6 of 6"), "{out}");
    // The same limit from the scenario's machine line; JSON carries it.
    let text = format!("machine commit-limit 24K\n{text}");
    let (code, out, err, _) = run_text(&text, &["--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v = json_of(out.as_bytes());
    assert_eq!(v["machine"]["commit_limit"], 6);
    let steps = v["steps"].as_array().unwrap();
    let map = steps.iter().find(|s| s["op"] == "map").unwrap();
    let areas = map["maps"][0]["areas"].as_array().unwrap();
    assert_eq!(areas[0]["reserved"], 4);
    assert_eq!(areas[1]["reserved"], 2);
    assert_eq!(areas[1]["late_reserve"], true);
    assert_eq!(map["maps"][0]["reserved_pages"], 6);
    let stats = steps.iter().find(|s| s["op"] == "stats").unwrap();
    assert_eq!(stats["stats"]["pages_reserved"], 6);
    assert_eq!(stats["stats"]["commit_limit"], 6);
    // Everything given back by the end.
    assert_eq!(v["summary"]["pages_reserved"], 0);
    // A machine line needs a size.
    let (code, _, err, _) = run_text("machine commit-limit\n", &[]);
    assert_eq!(code, 2, "{err}");
    aspace()
        .args(["run", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("late-reserve"))
        .stdout(predicate::str::contains("--commit-limit"));
}

/// A reserve-on-write area reserves the pages it reads in, and the rest
/// when `flags` gives it write: refused past the commit limit (nothing
/// changed), then granted under a higher one; maps say which it is.
#[test]
fn a_reserve_on_write_area_reserves_the_rest_when_given_write() {
    let text = "task A\ncpu 0 run A\narea A 0x800000 8p r reserve-on-write buf\n\
                touch A 0x800000 2p read\ncheck pages_reserved == 2\n\
                flags A 0x800000 rw expect ENOMEM\ncheck pages_reserved == 2\n\
                touch A 0x800000 1p write expect access\nmap A\n";
    let (code, out, err, _) = run_text(text, &["--commit-limit", "6p"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("buf (reserve on write)"), "{out}");
    let text = text.replace(
        "flags A 0x800000 rw expect ENOMEM\ncheck pages_reserved == 2\n\
         touch A 0x800000 1p write expect access\n",
        "flags A 0x800000 rw\ncheck pages_reserved == 8\ntouch A 0x800000 8p write\n\
         check pages_reserved == 8\n",
    );
    let (code, out, err, _) = run_text(&text, &["--commit-limit", "8p"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("reserve on write"), "up front now: {out}");
}

#[test]
fn the_pager_scenario_pages_a_file_in_and_survives_its_pager() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/scenarios");
    let out = aspace()
        .args(["run", "--json"])
        .arg(dir.join("pager.aspace"))
        .output()
        .unwrap();
    let v = json_of(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{v}");
    let steps = v["steps"].as_array().unwrap();
    let step = |text: &str| {
        steps
            .iter()
            .find(|s| s["text"].as_str().is_some_and(|t| t.starts_with(text)))
            .unwrap_or_else(|| panic!("no step '{text}'"))
    };
    assert_eq!(step("pager files file")["op"], "pager");
    assert_eq!(step("area reader")["op"], "area");
    assert_eq!(step("read reader 0x40000000 str 9")["value"], "Once upon");
    let past = step("read reader 0x40001000 u8 expect pager-error");
    assert_eq!(past["fault"]["reason"], "pager-error");
    let gone = step("read reader 0x40001000 u8 expect pager-gone");
    assert_eq!(gone["fault"]["reason"], "pager-gone");
    let map = step("map");
    let areas = map["maps"][0]["areas"].as_array().unwrap();
    assert_eq!(areas[0]["backend"], "pager");
    assert!(steps.iter().all(|s| s["ok"] != false));
    assert_eq!(
        v["summary"]["frames_in_use_at_end"],
        v["summary"]["frames_in_use_at_start"]
    );
}

#[test]
fn pager_lines_are_checked_before_anything_runs() {
    let (code, _, err, path) = run_text(
        "task A\narea A 0x400000 1p r pager P\npager Q file \"x\"\npager Q file \"y\"\n\
         pager R kill\npager Q burn\ncheck clean\n",
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("{path}:2: no pager named 'P'")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{path}:4: pager 'Q' already runs")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{path}:5: no pager named 'R'")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{path}:6: 'pager Q' takes 'file TEXT' or 'kill'")),
        "{err}"
    );
    // A pager left running is not clean: its memory is still in use.
    let (code, out, _, _) = run_text("pager Q file \"x\"\ncheck clean\n", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("pagers still running: Q"), "{out}");
}
