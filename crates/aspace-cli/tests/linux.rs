//! The scenario language's Linux calls: `mmap`, `munmap`, `mprotect`,
//! `mremap`, `brk`, `madvise` with Linux's errno names in `expect`, and
//! `maps TASK --linux` in `/proc/PID/maps` format.

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;

fn aspace() -> Command {
    let mut c = Command::cargo_bin("aspace").expect("the aspace binary is built");
    c.env_remove("CI");
    c
}

/// Runs `aspace run` on `text`; returns (exit code, stdout, stderr, path).
fn run_text(text: &str) -> (i32, String, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("linux.aspace");
    std::fs::write(&path, text).unwrap();
    let out = aspace().arg("run").arg(&path).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        path.display().to_string(),
    )
}

#[test]
fn the_linux_example_splits_merges_and_prints_linux_maps() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/scenarios");
    aspace()
        .arg("run")
        .arg(dir.join("linux.aspace"))
        .assert()
        .success()
        // mprotect of the middle splits the mapping in three ...
        .stdout(predicate::str::contains(
            "   10000000-10004000 rw-p 00000000 00:00 0 \n   10004000-10008000 r--p 00000000 00:00 0 \n   10008000-10010000 rw-p 00000000 00:00 0 \n",
        ))
        // ... and back merges it into one.
        .stdout(predicate::str::contains(
            "   10000000-10010000 rw-p 00000000 00:00 0 \n   7fff",
        ))
        .stdout(predicate::str::contains("expect EEXIST").and(predicate::str::contains("-> EEXIST")))
        .stdout(predicate::str::contains(
            "20000000-20002000 rw-s 00000000 00:01 2                                  /memfd:F (deleted)",
        ))
        .stdout(predicate::str::contains("read A 0x20100008 u64 expect 77"))
        // A stack grown by an access below it, up to RLIMIT_STACK.
        .stdout(predicate::str::contains("   30002000-30006000 rw-p 00000000 00:00 0 \n"))
        .stdout(predicate::str::contains(
            "write A 0x2fffd000 u64 6 expect no-area        ok",
        ));
}

#[test]
fn linux_expectations_use_linux_errno_names() {
    let (code, out, _, path) = run_text(
        "task A\ncpu 0 run A\n\
         mmap A 0x10000000 2p rw private anon fixed\n\
         mmap A 0x10001000 1p rw private anon noreplace expect ok\n\
         munmap A 0x10000001 1p expect EINVAL\n\
         mremap A 0x30000000 1p 2p expect EFAULT\n\
         mprotect A 0x10000000 2p rwx expect EACCES\n\
         brk A 0\n\
         madvise A 0x10000000 3p dontneed expect ENOMEM\n\
         exit A\ncheck clean\n",
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("{path}:4: FAILED: expected ok, got err EEXIST")),
        "{out}"
    );
    assert_eq!(out.matches("FAILED:").count(), 1, "{out}");
}

#[test]
fn bad_linux_lines_are_reported_at_their_line() {
    let (code, _, err, path) = run_text(
        "task A\nmmap A 0x1000 1p rw private wat\nmmap 0x1000 1p rw private anon\nmaps A B --linux\nmunmap B 0x1000 1p\n",
    );
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("{path}:2: mmap: bad mmap flag: `wat`")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{path}:3: 'mmap' takes the task first")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{path}:4: 'maps --linux' takes one task")),
        "{err}"
    );
    assert!(err.contains(&format!("{path}:5:")), "{err}");
}

#[test]
fn sysctl_max_map_count_reaches_every_process() {
    // A's maps exist before the sysctl, B's after it, and B's fork child
    // C inherits it: each is refused a split at the limit.
    let (code, out, err, _) = run_text(
        "task A\ntask B\n\
         mmap A 0x10000000 4p rw private anon fixed\n\
         sysctl vm.max_map_count 1\n\
         mprotect A 0x10001000 1p r expect ENOMEM\n\
         mmap B 0x10000000 4p rw private anon fixed\n\
         munmap B 0x10001000 1p expect ENOMEM\n\
         fork B C\n\
         mprotect C 0x10000000 1p r expect ENOMEM\n\
         sysctl vm.max_map_count 65530\n\
         mprotect C 0x10000000 1p r\n\
         munmap A 0x10001000 1p\n\
         maps A --linux\n\
         exit C\nexit B\nexit A\ncheck clean\n",
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("   10000000-10001000 rw-p 00000000 00:00 0 \n   10002000-10004000 rw-p"),
        "{out}"
    );
    let (code, _, err, path) = run_text("sysctl vm.max_map_count -1\nsysctl vm.swappiness 1\n");
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("{path}:1: '-1' is not a count")),
        "{err}"
    );
    assert!(err.contains(&format!("{path}:2: usage: sysctl")), "{err}");
}

#[test]
fn help_lists_the_linux_calls() {
    aspace()
        .args(["run", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("maps TASK --linux"))
        .stdout(predicate::str::contains("mremap TASK OLD OLDLEN NEWLEN"));
}

#[test]
fn refuse_holes_makes_mprotect_and_madvise_all_or_nothing() {
    let (code, out, err, _) = run_text(
        "task A\ncpu 0 run A\n\
         mmap A 0x10000000 2p rw private anon fixed\n\
         mmap A 0x10003000 1p rw private anon fixed\n\
         write A 0x10000000 u64 7\n\
         mprotect A 0x10000000 4p r refuse-holes expect ENOMEM\n\
         madvise A 0x10000000 4p dontneed refuse-holes expect ENOMEM\n\
         read A 0x10000000 u64 expect 7\n\
         write A 0x10000000 u64 8\n\
         maps A --linux\n\
         mprotect A 0x10000000 4p r expect ENOMEM\n\
         write A 0x10000000 u64 9 expect access\n\
         exit A\ncheck clean\n",
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("   10000000-10002000 rw-p 00000000 00:00 0 \n   10003000-10004000 rw-p"),
        "{out}"
    );
}
