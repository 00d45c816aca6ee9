//! Builds the kernel in `kernel/` (its own cargo workspace, built for bare
//! metal with the stable toolchain), turns it into the 32-bit ELF file that
//! QEMU's multiboot loader accepts, boots it with a timeout and collects the
//! serial output and the exit code of the `isa-debug-exit` device.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Exit status QEMU reports when the kernel wrote `0x10` to the debug-exit
/// port (success).
pub const QEMU_SUCCESS: i32 = 0x10 << 1 | 1;
/// Exit status for `0x11` (failure: a panic or a failed check).
pub const QEMU_FAILURE: i32 = 0x11 << 1 | 1;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/<name> is two levels below the root")
        .to_path_buf()
}

/// Environment variables of an enclosing cargo that must not leak into the
/// kernel's own build.
const CARGO_LEAKS: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
];

/// Builds the kernel (release) and returns the path of the multiboot image
/// (`kernel/target/aspace-kernel.elf32`).
pub fn build_kernel() -> Result<PathBuf, String> {
    let kernel = repo_root().join("kernel");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&kernel).args(["build", "--release"]);
    for v in CARGO_LEAKS {
        cmd.env_remove(v);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run cargo for the kernel: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "kernel build failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let elf = kernel.join("target/x86_64-unknown-linux-gnu/release/aspace-kernel");
    let image = kernel.join("target/aspace-kernel.elf32");
    let out = Command::new("objcopy")
        .args(["-O", "elf32-i386"])
        .arg(&elf)
        .arg(&image)
        .output()
        .map_err(|e| format!("cannot run objcopy: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "objcopy failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(image)
}

/// Whether `qemu-system-x86_64` can be started.
pub fn qemu_available() -> bool {
    Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Kernel modules of KVMs known not to run this kernel: PVM (a paravirtual
/// KVM for hosts without hardware virtualisation) emulates every guest
/// instruction and stops with an emulation failure on SSE code in the
/// higher half, after seconds.
pub const UNFIT_KVM_MODULES: &[&str] = &["kvm_pvm"];

/// Why KVM is not tried, or `None` when it is: `ASPACE_QEMU_ACCEL=tcg`,
/// `/dev/kvm` does not open for reading and writing, or the KVM behind it
/// is one of [`UNFIT_KVM_MODULES`] (found in `/sys/module`). Takes no time:
/// nothing is booted.
pub fn kvm_unusable_reason() -> Option<String> {
    if std::env::var("ASPACE_QEMU_ACCEL").is_ok_and(|v| v == "tcg") {
        return Some("ASPACE_QEMU_ACCEL=tcg".into());
    }
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return Some(format!("/dev/kvm: {e}"));
    }
    UNFIT_KVM_MODULES
        .iter()
        .find(|m| Path::new("/sys/module").join(m).exists())
        .map(|m| format!("/dev/kvm is {m}, which cannot run this kernel"))
}

/// Whether to try KVM (see [`kvm_unusable_reason`]). A KVM that passes
/// these checks but still cannot run the kernel is detected by [`boot`]
/// (an emulation failure, or no boot banner within [`KVM_BANNER_DEADLINE`])
/// and the boot repeated with TCG.
pub fn kvm_usable() -> bool {
    kvm_unusable_reason().is_none()
}

/// Under KVM the kernel's first line appears well within this (firmware and
/// multiboot loading take a fraction of a second); a KVM that has not got
/// there is emulating, and TCG is faster.
pub const KVM_BANNER_DEADLINE: Duration = Duration::from_secs(2);

/// The kernel's first serial line starts with this.
pub const BANNER: &str = "aspace kernel: booting";

/// The accelerator arguments: KVM with the host CPU (PCID, INVPCID), or
/// TCG with the richest emulated CPU.
pub fn accel_args(kvm: bool) -> Vec<&'static str> {
    if kvm {
        // arch-capabilities is refused by some nested KVM hosts.
        vec!["-enable-kvm", "-cpu", "host,-arch-capabilities"]
    } else {
        vec!["-cpu", "max"]
    }
}

/// One boot of the kernel.
#[derive(Debug, Clone)]
pub struct Run {
    /// Serial output.
    pub serial: String,
    /// QEMU's exit status (`None`: killed on timeout).
    pub status: Option<i32>,
    /// Whether KVM was used.
    pub kvm: bool,
    /// Wall time of the run.
    pub elapsed: Duration,
}

/// Boots `image` with `cpus` CPUs and the kernel command line `append`
/// (none when empty; see `kernel/README.md`), and kills QEMU after
/// `timeout` (with
/// KVM, also when the kernel's banner has not appeared within
/// [`KVM_BANNER_DEADLINE`], or KVM reports an emulation failure: the status
/// is then `Some(-1)`).
pub fn boot(
    image: &Path,
    cpus: u32,
    append: &str,
    kvm: bool,
    timeout: Duration,
) -> Result<Run, String> {
    let mut cmd = Command::new("qemu-system-x86_64");
    if !append.is_empty() {
        cmd.args(["-append", append]);
    }
    cmd.arg("-kernel")
        .arg(image)
        .args(["-m", "256M", "-smp"])
        .arg(cpus.to_string())
        .args([
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ])
        .args(accel_args(kvm))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start qemu-system-x86_64: {e}"))?;
    let mut stdout = child.stdout.take().expect("piped");
    let bannered = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = bannered.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut chunk) {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if !seen.load(std::sync::atomic::Ordering::Relaxed)
                && String::from_utf8_lossy(&buf).contains(BANNER)
            {
                seen.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        buf
    });
    let mut stderr = child.stderr.take().expect("piped");
    let broken = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = broken.clone();
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut chunk) {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf);
            if text.contains("KVM internal error") || text.contains("emulation failure") {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        buf
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st.code(),
            Ok(None)
                if broken.load(std::sync::atomic::Ordering::SeqCst)
                    || (kvm
                        && start.elapsed() > KVM_BANNER_DEADLINE
                        && !bannered.load(std::sync::atomic::Ordering::Relaxed)) =>
            {
                // The accelerator gave up (QEMU would wait forever), or
                // it is too slow to be a hardware one.
                std::thread::sleep(Duration::from_millis(200));
                let _ = child.kill();
                let _ = child.wait();
                break Some(-1);
            }
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("waiting for qemu: {e}")),
        }
    };
    let out = reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    let mut serial = String::from_utf8_lossy(&out).replace('\r', "");
    if !err.is_empty() {
        serial.push_str("\n[qemu stderr]\n");
        serial.push_str(&String::from_utf8_lossy(&err));
    }
    Ok(Run {
        serial,
        status,
        kvm,
        elapsed: start.elapsed(),
    })
}

/// Boots with KVM when usable, falling back to TCG when the KVM run does
/// not report success (QEMU cannot start the guest, KVM fails to run it, or
/// it times out); the KVM attempt's output goes to stderr.
pub fn boot_best(image: &Path, cpus: u32, append: &str, timeout: Duration) -> Result<Run, String> {
    if kvm_usable() {
        let run = boot(image, cpus, append, true, timeout)?;
        if run.status == Some(QEMU_SUCCESS) {
            return Ok(run);
        }
        eprintln!(
            "QEMU with KVM failed (status {:?}); retrying with TCG:\n{}",
            run.status, run.serial
        );
    }
    boot(image, cpus, append, false, timeout)
}

/// Boots `image` once for each (CPU count, command line) of `boots`, all at
/// once (each with [`boot_best`]), and returns the runs in the same order.
pub fn boot_each(
    image: &Path,
    boots: &[(u32, &str)],
    timeout: Duration,
) -> Vec<Result<Run, String>> {
    std::thread::scope(|s| {
        let runs: Vec<_> = boots
            .iter()
            .map(|&(n, append)| s.spawn(move || boot_best(image, n, append, timeout)))
            .collect();
        runs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("boot thread panicked".into()))
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a host whose `/dev/kvm` is PVM, KVM is ruled out without booting
    /// anything (it used to cost ~11 s per boot before falling back).
    #[test]
    fn an_unfit_kvm_is_ruled_out_without_booting() {
        let start = Instant::now();
        let reason = kvm_unusable_reason();
        assert!(start.elapsed() < Duration::from_millis(100));
        if Path::new("/sys/module/kvm_pvm").exists() {
            let reason = reason.expect("PVM must rule KVM out");
            assert!(
                reason.contains("kvm_pvm") || reason.contains("ASPACE_QEMU_ACCEL"),
                "{reason}"
            );
            assert!(!kvm_usable());
        }
    }
}
