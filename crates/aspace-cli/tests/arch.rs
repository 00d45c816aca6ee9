//! `aspace --arch`: the demo and every example scenario pass on each
//! simulated architecture, the machine's architecture shows in JSON, and the
//! user-space bound of scenario files is the architecture's.

use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;

const ARCHS: [&str; 4] = ["x86_64", "riscv64", "riscv64-sv48", "aarch64"];

fn aspace() -> Command {
    let mut c = Command::cargo_bin("aspace").expect("the aspace binary is built");
    c.env_remove("CI");
    c
}

fn json(args: &[&str]) -> (bool, Value) {
    let out = aspace().args(args).output().unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (out.status.success(), v)
}

#[test]
fn the_demo_passes_on_every_architecture() {
    for arch in ARCHS {
        let (ok, v) = json(&["--arch", arch, "demo", "--json"]);
        assert!(ok, "{arch}: {}", v["summary"]);
        assert_eq!(v["ok"], true, "{arch}");
        assert_eq!(v["machine"]["arch"], arch);
        let s = &v["summary"];
        assert_eq!(s["checks_failed"], 0, "{arch}");
        assert!(s["checks_passed"].as_u64().unwrap() >= 100, "{arch}: {s}");
        assert_eq!(s["stale_accesses"], 0, "{arch}");
        assert_eq!(
            s["frames_in_use_at_end"], s["frames_in_use_at_start"],
            "{arch}"
        );
        assert!(s["asid_steals"].as_u64().unwrap() >= 2, "{arch}: {s}");
    }
    // The stack sits at the top of each architecture's user space.
    let (_, v) = json(&["--arch", "riscv64", "demo", "--print-scenario", "--json"]);
    let text = v["scenario"].as_str().unwrap();
    assert!(
        text.contains("area init 0x3fffffe000 2p rw grows-down stack"),
        "{text}"
    );
    assert!(text.contains("fault init 0xffffffc000000000 read expect no-area"));
}

#[test]
fn every_example_scenario_passes_on_every_architecture() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "aspace"))
        .collect();
    files.sort();
    assert!(files.len() >= 5);
    for arch in ARCHS {
        for f in &files {
            let out = aspace()
                .args(["--arch", arch, "--no-progress", "run"])
                .arg(f)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{arch} {}: {}{}",
                f.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn user_space_ends_where_the_architecture_says() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("top.aspace");
    // The last page below 256 GiB is user space on every architecture; the
    // first above it only where addresses have 48 bits.
    std::fs::write(
        &path,
        "task A\ncpu 0 run A\narea A 0x3ffffff000 1p rw\nwrite A 0x3ffffff000 u64 7\n\
         read A 0x3ffffff000 u64 expect 7\narea A 0x4000000000 1p rw\n",
    )
    .unwrap();
    for arch in ARCHS {
        let out = aspace()
            .args(["--arch", arch, "run"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if arch == "riscv64" {
            assert_eq!(out.status.code(), Some(2), "{arch}: {stderr}");
            assert!(
                stderr.contains(
                    "address 0x4000000000 is out of range: areas live in user space, \
                     0x0..0x4000000000"
                ),
                "{stderr}"
            );
        } else {
            assert!(out.status.success(), "{arch}: {stderr}");
        }
    }
    let out = aspace().args(["--arch", "sparc", "demo"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown architecture 'sparc'"));
}
