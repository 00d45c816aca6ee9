//! Builds the kernel in `kernel/` (its own cargo workspace, built for bare
//! metal with the stable toolchain), turns it into the 32-bit ELF file that
//! QEMU's multiboot loader accepts, boots it with a timeout and collects the
//! serial output and the exit code of the `isa-debug-exit` device; or
//! boots it under Bochs from a GRUB ISO ([`boot_bochs`]), whose CPU has
//! PCID and INVPCID; or builds the riscv64 or aarch64 kernel with the
//! nightly toolchain and boots it on QEMU's virt machine
//! ([`boot_riscv64`], [`boot_aarch64`]).

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
        .args(accel_args(kvm));
    run_qemu(cmd, kvm, timeout)
}

/// Runs the QEMU command `cmd` (stdout: the serial console) until it exits
/// or `timeout` passes (then it is killed); with `kvm`, also stops it when
/// the banner has not appeared within [`KVM_BANNER_DEADLINE`] or KVM
/// reports an emulation failure (status `Some(-1)`).
fn run_qemu(mut cmd: Command, kvm: bool, timeout: Duration) -> Result<Run, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
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

// ---------------------------------------------------------------------------
// riscv64: QEMU's virt machine with OpenSBI.
// ---------------------------------------------------------------------------

/// The bare-metal target of the riscv64 kernel (built with the nightly
/// toolchain and `-Zbuild-std`).
pub const RISCV64_TARGET: &str = "riscv64gc-unknown-none-elf";
/// Exit status of `qemu-system-riscv64` when the kernel wrote the SiFive
/// test device's pass value (every scenario passed).
pub const RISCV64_SUCCESS: i32 = 0;
/// Exit status for the failure value the kernel writes (a failed check or
/// a panic).
pub const RISCV64_FAILURE: i32 = 1;

fn quiet_ok(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What is missing to build and boot a nightly-built kernel here: the
/// nightly toolchain (through rustup), its `rust-src` component (for
/// `-Zbuild-std`), and the emulator `qemu` (from Debian's `package`);
/// `None` when everything is there.
fn nightly_missing(qemu: &str, package: &str) -> Option<String> {
    let mut missing = Vec::new();
    let sysroot = Command::new("rustc")
        .args(["+nightly", "--print", "sysroot"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match sysroot {
        None => missing.push("the nightly toolchain (`rustc +nightly` fails)".to_string()),
        Some(root) => {
            let core = Path::new(&root).join("lib/rustlib/src/rust/library/core");
            if !core.is_dir() {
                missing.push(format!(
                    "nightly's rust-src component ({} is missing)",
                    core.display()
                ));
            }
        }
    }
    if !quiet_ok(Command::new(qemu).arg("--version")) {
        missing.push(format!("{qemu} (Debian package {package})"));
    }
    (!missing.is_empty()).then(|| missing.join("; "))
}

/// What is missing to build and boot the riscv64 kernel here: the nightly
/// toolchain (through rustup), its `rust-src` component (for
/// `-Zbuild-std`), `qemu-system-riscv64` (Debian's `qemu-system-misc`);
/// `None` when everything is there.
pub fn riscv64_missing() -> Option<String> {
    nightly_missing("qemu-system-riscv64", "qemu-system-misc")
}

/// Builds the kernel for the bare-metal `target` (release, nightly,
/// `-Zbuild-std=core,alloc`) and returns the path of its ELF file, which
/// QEMU loads at its physical addresses.
fn build_kernel_nightly(target: &str) -> Result<PathBuf, String> {
    let kernel = repo_root().join("kernel");
    // The rustup proxy, not the running cargo: `+nightly` picks the
    // toolchain.
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&kernel).args([
        "+nightly",
        "build",
        "--release",
        "-Zbuild-std=core,alloc",
        "-Zbuild-std-features=compiler-builtins-mem",
        "--target",
        target,
    ]);
    for v in CARGO_LEAKS
        .iter()
        .chain(&["RUSTUP_TOOLCHAIN", "RUSTC", "RUSTDOC", "CARGO"])
    {
        cmd.env_remove(v);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run cargo +nightly for the kernel: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{target} kernel build failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(kernel.join(format!("target/{target}/release/aspace-kernel")))
}

/// Builds the riscv64 kernel (release, nightly, `-Zbuild-std=core,alloc`)
/// and returns the path of its ELF file, which QEMU loads at its physical
/// addresses.
pub fn build_kernel_riscv64() -> Result<PathBuf, String> {
    build_kernel_nightly(RISCV64_TARGET)
}

/// Boots `image` with `qemu` on its `virt` machine (`machine`: the
/// machine's own arguments; 256 MiB) with `cpus` CPUs and the command line
/// `append` (none when empty), killing it after `timeout`.
fn boot_virt(
    qemu: &str,
    machine: &[&str],
    image: &Path,
    cpus: u32,
    append: &str,
    timeout: Duration,
) -> Result<Run, String> {
    let mut cmd = Command::new(qemu);
    if !append.is_empty() {
        cmd.args(["-append", append]);
    }
    cmd.args(["-machine", "virt"])
        .args(machine)
        .arg("-kernel")
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
        ]);
    run_qemu(cmd, false, timeout)
}

/// Boots the riscv64 kernel `image` on QEMU's virt machine (OpenSBI as
/// firmware, 256 MiB) with `harts` harts and the command line `append`
/// (none when empty), killing it after `timeout`.
pub fn boot_riscv64(
    image: &Path,
    harts: u32,
    append: &str,
    timeout: Duration,
) -> Result<Run, String> {
    boot_virt(
        "qemu-system-riscv64",
        &["-bios", "default"],
        image,
        harts,
        append,
        timeout,
    )
}

// ---------------------------------------------------------------------------
// aarch64: QEMU's virt machine, the kernel at EL1.
// ---------------------------------------------------------------------------

/// The bare-metal target of the aarch64 kernel (built with the nightly
/// toolchain and `-Zbuild-std`).
pub const AARCH64_TARGET: &str = "aarch64-unknown-none";
/// Exit status of `qemu-system-aarch64` when the kernel reported success
/// through semihosting's `SYS_EXIT` (every scenario passed).
pub const AARCH64_SUCCESS: i32 = 0;
/// Exit status for the failure the kernel reports (a failed check or a
/// panic).
pub const AARCH64_FAILURE: i32 = 1;

/// What is missing to build and boot the aarch64 kernel here: the nightly
/// toolchain (through rustup), its `rust-src` component (for
/// `-Zbuild-std`), `qemu-system-aarch64` (Debian's `qemu-system-arm`);
/// `None` when everything is there.
pub fn aarch64_missing() -> Option<String> {
    nightly_missing("qemu-system-aarch64", "qemu-system-arm")
}

/// Builds the aarch64 kernel (release, nightly, `-Zbuild-std=core,alloc`)
/// and returns the path of its ELF file, which QEMU loads at its physical
/// addresses.
pub fn build_kernel_aarch64() -> Result<PathBuf, String> {
    build_kernel_nightly(AARCH64_TARGET)
}

/// Boots the aarch64 kernel `image` on QEMU's virt machine (a Cortex-A57:
/// EL1 without EL2 or EL3, PSCI through `hvc`, GICv2; semihosting on for
/// the exit status; 256 MiB) with `cpus` CPUs and the command line
/// `append` (none when empty), killing it after `timeout`.
pub fn boot_aarch64(
    image: &Path,
    cpus: u32,
    append: &str,
    timeout: Duration,
) -> Result<Run, String> {
    boot_virt(
        "qemu-system-aarch64",
        &["-cpu", "cortex-a57", "-semihosting"],
        image,
        cpus,
        append,
        timeout,
    )
}

// ---------------------------------------------------------------------------
// Bochs: a CPU with PCID and INVPCID.
// ---------------------------------------------------------------------------

/// The CPU model Bochs emulates: Skylake-X has PCID, INVPCID, SMEP and
/// SMAP (QEMU's TCG has no PCID).
pub const BOCHS_CPU_MODEL: &str = "corei7_skylake_x";

/// Instructions per emulated second. Bochs runs with `clock: sync=none`
/// (emulated time is the instruction count), so a small value makes the
/// BIOS's and GRUB's waits short; the kernel calibrates its timer in
/// emulated time, so its 5 ms time slice stays 5 ms of emulated time.
/// 4 million gives the shortest run here (about 20 s for every scenario
/// on 2 CPUs; 50 million: 34 s, 200 million: 70 s).
pub const BOCHS_IPS: u64 = 4_000_000;

/// Where Bochs looks for its plugins (the compile-time default on Debian
/// and on a build from source), after `LTDL_LIBRARY_PATH`.
const BOCHS_PLUGIN_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/bochs/plugins",
    "/usr/lib/bochs/plugins",
    "/usr/local/lib/bochs/plugins",
];

/// The BIOS images Bochs boots (Debian's `bochsbios` and `vgabios`).
pub const BOCHS_BIOS: &str = "/usr/share/bochs/BIOS-bochs-latest";
/// See [`BOCHS_BIOS`].
pub const BOCHS_VGA_BIOS: &str = "/usr/share/bochs/VGABIOS-lgpl-latest";

/// What the Debian packages that boot the kernel under Bochs are called.
pub const BOCHS_PACKAGES: &str =
    "bochs bochs-term bochsbios vgabios grub-pc-bin grub-common xorriso mtools";

/// A Bochs that can boot the kernel: its display library and whether it
/// has the internal debugger (which stops at the first instruction unless
/// told to continue).
#[derive(Debug, Clone)]
pub struct Bochs {
    /// `term` (curses on a terminal, from `bochs-term`), `rfb` (a VNC
    /// server on port 5900 and up, which Bochs told not to wait for a
    /// client) or `nogui`.
    pub display: &'static str,
    /// Built with `--enable-debugger` (Debian's is).
    pub debugger: bool,
}

fn runs(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Some(text)
}

/// Whether `name` (a shared object, any version suffix) is in one of
/// Bochs's plugin directories; `None` when no plugin directory exists (a
/// Bochs built without plugins has its display libraries built in).
fn bochs_plugin(name: &str) -> Option<bool> {
    let ltdl = std::env::var("LTDL_LIBRARY_PATH").ok();
    let dirs: Vec<PathBuf> = ltdl
        .iter()
        .flat_map(|p| p.split(':'))
        .chain(BOCHS_PLUGIN_DIRS.iter().copied())
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .collect();
    if dirs.is_empty() {
        return None;
    }
    Some(dirs.iter().any(|d| {
        std::fs::read_dir(d).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(name))
        })
    }))
}

/// The Bochs to boot the kernel with, or why there is none: `bochs`, its
/// BIOS images, the [`BOCHS_CPU_MODEL`], a display library that runs
/// without a screen, and `grub-mkrescue` with GRUB's BIOS modules and
/// `xorriso` (for the boot ISO). Install them with
/// `apt-get install` [`BOCHS_PACKAGES`].
pub fn bochs() -> Result<Bochs, String> {
    let help = runs("bochs", &["--help"]).ok_or("bochs not found")?;
    let cpus = runs("bochs", &["--help", "cpu"]).unwrap_or_default();
    if !cpus.lines().any(|l| l.trim() == BOCHS_CPU_MODEL) {
        return Err(format!("this bochs has no CPU model {BOCHS_CPU_MODEL}"));
    }
    for f in [BOCHS_BIOS, BOCHS_VGA_BIOS] {
        if !Path::new(f).exists() {
            return Err(format!("{f} not found (bochsbios, vgabios)"));
        }
    }
    let display = match (
        bochs_plugin("libbx_term_gui"),
        bochs_plugin("libbx_rfb_gui"),
    ) {
        (Some(true), _) => "term",
        (_, Some(true)) => "rfb",
        (None, None) => "nogui",
        _ => return Err("no display library for bochs without a screen (bochs-term)".into()),
    };
    if runs("grub-mkrescue", &["--version"]).is_none() {
        return Err("grub-mkrescue not found (grub-common)".into());
    }
    if !Path::new("/usr/lib/grub/i386-pc").is_dir() {
        return Err("GRUB's BIOS modules /usr/lib/grub/i386-pc not found (grub-pc-bin)".into());
    }
    if runs("xorriso", &["--version"]).is_none() {
        return Err("xorriso not found".into());
    }
    Ok(Bochs {
        display,
        debugger: help.contains("-rc filename"),
    })
}

/// Builds a GRUB rescue ISO in `dir` that boots `image` by multiboot with
/// the command line `cmdline` (the kernel's options, see
/// `kernel/README.md`), GRUB's own output on the serial port too; returns
/// the ISO's path.
pub fn grub_iso(image: &Path, cmdline: &str, dir: &Path) -> Result<PathBuf, String> {
    if !cmdline
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || " =,-_.".contains(c))
    {
        return Err(format!(
            "command line {cmdline:?}: only letters, digits and =,-_. "
        ));
    }
    let root = dir.join("iso");
    let _ = std::fs::remove_dir_all(&root);
    let grub = root.join("boot/grub");
    std::fs::create_dir_all(&grub).map_err(|e| format!("{}: {e}", grub.display()))?;
    std::fs::copy(image, root.join("boot/aspace-kernel"))
        .map_err(|e| format!("copying {}: {e}", image.display()))?;
    let cfg = format!(
        "set timeout=0\nset default=0\nserial --unit=0 --speed=115200\n\
         terminal_input serial console\nterminal_output serial console\n\
         menuentry \"aspace\" {{\n    multiboot /boot/aspace-kernel {cmdline}\n    boot\n}}\n"
    );
    std::fs::write(grub.join("grub.cfg"), cfg).map_err(|e| format!("grub.cfg: {e}"))?;
    let iso = dir.join("aspace.iso");
    let out = Command::new("grub-mkrescue")
        .args(["-d", "/usr/lib/grub/i386-pc", "-o"])
        .arg(&iso)
        .arg(&root)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run grub-mkrescue: {e}"))?;
    if !out.status.success() || !iso.exists() {
        return Err(format!(
            "grub-mkrescue failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(iso)
}

/// How a Bochs boot ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The kernel printed `ALL SCENARIOS PASSED`.
    Passed,
    /// It printed `SOME SCENARIOS FAILED`, `KERNEL PANIC` or a `FAIL:`
    /// line of its own (a bad command line, no multiboot loader).
    Failed,
    /// Bochs stopped by itself (a triple fault, a Bochs panic) before a
    /// verdict.
    BochsExited,
    /// No verdict within the timeout.
    TimedOut,
}

/// One boot under Bochs.
#[derive(Debug, Clone)]
pub struct BochsRun {
    /// Serial output (GRUB's, then the kernel's).
    pub serial: String,
    /// How it ended.
    pub verdict: Verdict,
    /// From Bochs's start to the verdict.
    pub elapsed: Duration,
    /// From Bochs's start to the kernel's [`BANNER`] (BIOS and GRUB).
    pub banner_after: Option<Duration>,
    /// The end of Bochs's log (its panics and errors).
    pub log_tail: String,
    /// The directory with the ISO, `bochsrc`, the serial output and the
    /// log, to boot it again by hand (see `kernel/README.md`).
    pub dir: PathBuf,
}

/// The kernel's verdict in its serial output so far.
fn verdict(serial: &str) -> Option<Verdict> {
    for line in serial.lines() {
        let line = line.trim_end_matches('\r');
        if line.contains("ALL SCENARIOS PASSED") {
            return Some(Verdict::Passed);
        }
        if line.contains("SOME SCENARIOS FAILED")
            || line.contains("KERNEL PANIC")
            || line.starts_with("FAIL: ")
        {
            return Some(Verdict::Failed);
        }
    }
    None
}

/// Boots `image` under Bochs ([`BOCHS_CPU_MODEL`], `cpus` CPUs, 256 MiB)
/// from a GRUB ISO with the kernel command line `cmdline`, reading COM1
/// (a file) until the kernel's verdict, then stops Bochs: it has no
/// `isa-debug-exit`, and the kernel halts. Stops it after `timeout`
/// without one. Works in `kernel/target/bochs-<cpus>cpus/`, which keeps
/// the files for a boot by hand.
pub fn boot_bochs(
    bochs: &Bochs,
    image: &Path,
    cpus: u32,
    cmdline: &str,
    timeout: Duration,
) -> Result<BochsRun, String> {
    let dir = image
        .parent()
        .ok_or("the kernel image has no directory")?
        .join(format!("bochs-{cpus}cpus"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let iso = grub_iso(image, cmdline, &dir)?;
    let serial_path = dir.join("serial.txt");
    let log_path = dir.join("bochs.log");
    let _ = std::fs::remove_file(&serial_path);
    let _ = std::fs::remove_file(&log_path);
    let display = match bochs.display {
        // Without a client to wait for.
        "rfb" => "rfb, options=\"timeout=0\"",
        d => d,
    };
    let rc = format!(
        "# Written by aspace-kernel-test (crates/aspace-kernel-test/src/lib.rs).\n\
         # Boot by hand: cd {dir} && TERM=vt100 bochs -q -f bochsrc{rcflag}\n\
         megs: 256\n\
         cpu: model={BOCHS_CPU_MODEL}, count={cpus}, ips={BOCHS_IPS}, reset_on_triple_fault=0\n\
         romimage: file={BOCHS_BIOS}\n\
         vgaromimage: file={BOCHS_VGA_BIOS}\n\
         ata0-master: type=cdrom, path={iso}, status=inserted\n\
         boot: cdrom\n\
         display_library: {display}\n\
         com1: enabled=1, mode=file, dev={serial}\n\
         speaker: enabled=0\n\
         sound: waveoutdrv=dummy, waveindrv=dummy, midioutdrv=dummy\n\
         clock: sync=none, time0=local\n\
         log: {log}\n\
         panic: action=fatal\n\
         error: action=report\n\
         info: action=report\n\
         debug: action=ignore\n",
        dir = dir.display(),
        rcflag = if bochs.debugger {
            " -rc continue.rc"
        } else {
            ""
        },
        iso = iso.display(),
        serial = serial_path.display(),
        log = log_path.display(),
    );
    std::fs::write(dir.join("bochsrc"), rc).map_err(|e| format!("bochsrc: {e}"))?;
    let mut cmd = Command::new("bochs");
    cmd.current_dir(&dir).args(["-q", "-f", "bochsrc"]);
    if bochs.debugger {
        // The debugger stops before the first instruction: continue.
        std::fs::write(dir.join("continue.rc"), "continue\n")
            .map_err(|e| format!("continue.rc: {e}"))?;
        cmd.args(["-rc", "continue.rc"]);
    }
    let stderr = std::fs::File::create(dir.join("bochs.stderr"))
        .map_err(|e| format!("bochs.stderr: {e}"))?;
    // The term display draws the VGA screen with curses on stdout; nobody
    // reads it (the kernel writes to COM1).
    cmd.env("TERM", "vt100")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start bochs: {e}"))?;
    let read_serial = || {
        std::fs::read(&serial_path)
            .map(|b| String::from_utf8_lossy(&b).replace('\r', ""))
            .unwrap_or_default()
    };
    let mut banner_after = None;
    let verdict = loop {
        std::thread::sleep(Duration::from_millis(200));
        let serial = read_serial();
        if banner_after.is_none() && serial.contains(BANNER) {
            banner_after = Some(start.elapsed());
        }
        if let Some(v) = verdict(&serial) {
            break v;
        }
        match child.try_wait() {
            Ok(Some(_)) => break verdict(&read_serial()).unwrap_or(Verdict::BochsExited),
            Ok(None) if start.elapsed() > timeout => break Verdict::TimedOut,
            Ok(None) => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("waiting for bochs: {e}"));
            }
        }
    };
    let elapsed = start.elapsed();
    if verdict != Verdict::Passed {
        // The rest of a panic message.
        std::thread::sleep(Duration::from_millis(500));
    }
    // Debian's `bochs` is a shell script that `exec`s `bochs-bin`: this
    // kills Bochs itself.
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let log_tail = log
        .lines()
        .rev()
        .take(40)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    Ok(BochsRun {
        serial: read_serial(),
        verdict,
        elapsed,
        banner_after,
        log_tail,
        dir,
    })
}

/// Every scenario a kernel runs without a command line, in order (the
/// kernel fault first); the same list on x86_64, riscv64 and aarch64.
pub const SCENARIOS: [&str; 20] = [
    "kernel-fault",
    "hello",
    "heap",
    "stack",
    "stack-overflow",
    "areas",
    "pager",
    "pager-slow",
    "pager-dying",
    "pager-refused",
    "pager-flood",
    "jit",
    "bad-accesses",
    "bad-arguments",
    "share",
    "share-guard",
    "linux-alloc",
    "fork",
    "shootdown",
    "asid-pressure",
];

/// Panics, showing the serial output, unless some line of `run` contains
/// `text`.
pub fn has(run: &Run, text: &str) {
    assert!(
        run.serial.lines().any(|l| l.contains(text)),
        "serial output lacks {text:?}:\n{}",
        run.serial
    );
}

/// The line of scenario `name` that starts with `== scenario name: tag`;
/// panics, showing the serial output, when there is none.
pub fn scenario_line<'a>(run: &'a Run, name: &str, tag: &str) -> &'a str {
    let start = format!("== scenario {name}: {tag}");
    run.serial
        .lines()
        .find(|l| l.starts_with(&start))
        .unwrap_or_else(|| panic!("no line {start:?}:\n{}", run.serial))
}

/// Checks a run of every scenario: each of [`SCENARIOS`] started, in
/// order, and passed with every frame returned; the kernel said so, did
/// not panic, and no program printed `BAD`.
pub fn every_scenario_passed(run: &Run) {
    has(run, "ALL SCENARIOS PASSED");
    assert!(!run.serial.contains("KERNEL PANIC"), "{}", run.serial);
    let starts: Vec<&str> = run
        .serial
        .lines()
        .filter(|l| l.starts_with("== scenario ") && l.ends_with(": start"))
        .collect();
    let expected: Vec<String> = SCENARIOS
        .iter()
        .map(|s| format!("== scenario {s}: start"))
        .collect();
    assert_eq!(starts, expected, "{}", run.serial);
    for s in SCENARIOS {
        scenario_line(run, s, "PASS");
        assert!(
            scenario_line(run, s, "frames in use").ends_with("(all returned)"),
            "{s}: {}",
            run.serial
        );
    }
    assert!(!run.serial.contains(": FAIL"), "{}", run.serial);
    assert!(!run.serial.contains("BAD"), "{}", run.serial);
}

/// Lines the user programs print alike on riscv64 and aarch64 (whose
/// user halves, unlike x86_64's, differ only in the stack's place): the
/// JIT's code, growing guarded stacks, placement anywhere, the commit
/// limit, late reservation, the pagers and their refused pages, and
/// `linux_alloc`'s and `fork`'s checks.
pub fn check_portable_lines(run: &Run) {
    for l in [
        "jit: change to read+exec = 0; generated code returned 42",
        "stack: grew downwards: ok",
        "(write): guard page",
        "heap: created anywhere above 0x10000000: at 0x10000000",
        "areas: 1 GiB refused by the commit limit: ok",
        "areas: late reserve: 0, then 2 pages: ok",
        "areas: kernel heap filled: areas, threads, forks, mappings refused (ENOMEM): ok",
        "areas: kernel heap given back: all destroyed, an area made again: ok",
        "pager: served 4 pages, each asked for once: ok",
        "pager_client: read 16384 bytes: ok, again: ok",
        "pager_client: print from an unread page of the area = 0",
        "pager_client: other work proceeded while faults waited (",
        "killed: page fault at 0x50001000 (read): the pager is gone",
        "killed: page fault at 0x50000000 (read): the pager refused the page",
        "page fault at 0x0 (read): no area",
        "(execute): access not permitted by the area",
        "shootdown: area made read-only = 0 while the writer held a writable translation",
    ]
    .iter()
    .chain(&LINUX_ALLOC_LINES)
    .chain(&LINUX_ALLOC_KILLS)
    .chain(&FORK_LINES)
    {
        has(run, l);
    }
    check_fork_copies(scenario_line(run, "fork", "faults="));
    // The shootdown scenario: the other CPU is interrupted, serves the
    // request, and the writer's next write faults.
    let k = scenario_line(run, "shootdown", "kernel ");
    let sent = counter(&[k], "shootdown_ipis_sent");
    assert!(sent > 0, "{k}");
    assert_eq!(counter(&[k], "shootdown_ipis_served"), sent, "{k}");
}

/// Checks the hardware-ASID path of a run of every scenario on 2 CPUs
/// with 4 user ASIDs, by the kernel's counters: in asid-pressure (7 tasks
/// on 4 ASIDs, preempted by the timer) ASIDs allocated, stolen and flushed
/// lazily, user ASIDs loaded (the TLB counter `user_asid_loads`), each
/// steal's flush one by ASID (`asid_flushes`); in heap, pages flushed by
/// address and ASID as it shrinks (`page_flushes`).
pub fn check_asid_path(run: &Run, user_asid_loads: &str, asid_flushes: &str, page_flushes: &str) {
    has(run, "; 4 user ASIDs");
    let core = scenario_line(run, "asid-pressure", "faults=");
    assert!(counter(&[core], "asid_allocs") >= 4, "{core}");
    assert!(counter(&[core], "asid_steals") > 0, "{core}");
    assert!(counter(&[core], "lazy_flushes") > 0, "{core}");
    let kernel = scenario_line(run, "asid-pressure", "kernel ");
    assert!(counter(&[kernel], "preemptions") > 0, "{kernel}");
    let tlb = scenario_line(run, "asid-pressure", "tlb ");
    assert!(counter(&[tlb], user_asid_loads) > 0, "{tlb}");
    assert!(
        counter(&[tlb], asid_flushes) >= counter(&[core], "lazy_flushes"),
        "{core}\n{tlb}"
    );
    let heap = scenario_line(run, "heap", "tlb ");
    assert!(counter(&[heap], page_flushes) > 0, "{heap}");
}

/// Checks a run on one CPU with the command line `hang` (`scenarios=hang,
/// hello watchdog=2`), read from the device tree: the CPU line starts with
/// `cpus`, the watchdog failed the spinning task's scenario and ended the
/// run (QEMU's status `failure`) before `hello`.
pub fn check_watchdog_hang(run: &Run, hang: &str, cpus: &str, failure: i32) {
    assert_eq!(run.status, Some(failure), "{}", run.serial);
    has(run, &format!("command line: kernel {hang}"));
    has(run, cpus);
    has(run, "== scenario hang: start");
    has(
        run,
        "== scenario hang: FAIL: still running after 2 s: tasks ",
    );
    has(run, "SOME SCENARIOS FAILED");
    assert!(!run.serial.contains("== scenario hello"), "{}", run.serial);
}

/// The number after ` key=` in the first of `lines` that has one; panics
/// naming the key and the lines when none does.
pub fn counter<S: AsRef<str> + core::fmt::Debug>(lines: &[S], key: &str) -> u64 {
    let pat = format!(" {key}=");
    lines
        .iter()
        .find_map(|l| {
            let l = l.as_ref();
            let i = l.find(&pat)? + pat.len();
            let v: String = l[i..].chars().take_while(char::is_ascii_digit).collect();
            v.parse().ok()
        })
        .unwrap_or_else(|| panic!("no counter {key} in {lines:#?}"))
}

/// The lines (or parts of lines) `linux_alloc` prints in every run (issue
/// 16): the allocator on Linux's memory calls, each step checked by the
/// program itself, the run of random calls that must all be answered and
/// leave nothing behind, and two threads making calls and faults at once.
pub const LINUX_ALLOC_LINES: [&str; 27] = [
    "linux_alloc: grow: 5 chunks, first at 0x1fffff0000, hinted at 0x1040000000, 48 blocks written and checked: PASS",
    "linux_alloc: partial munmap of 0x1ffffe6000..0x1ffffea000 = 0: other blocks intact true, range free true, again = 0: PASS",
    "linux_alloc: guard page at 0x1ffffdf000 = 0, read-only and back = 0, 0, data intact true; unaligned = -22, over a hole = -12: PASS",
    "linux_alloc: MADV_GUARD_INSTALL at 0x1ffffde000 = 0: populate = -14, mincore [1, 0], data around intact true; MADV_GUARD_REMOVE = 0, reads zero true: PASS",
    "linux_alloc: mremap 0x1fffff0000 to 64 pages: in place = -12, may move = 0x1ffff80000, data moved true, old range free true: PASS",
    "linux_alloc: MREMAP_DONTUNMAP: moved true, old range zero true, no MAYMOVE = -22; old length 0: shared page twice true, private = -22, no MAYMOVE = -12: PASS",
    "linux_alloc: mremap of three mappings with a guard page to the fixed target = true: data, guard page and rights moved true: PASS",
    "linux_alloc: mremap 3 to 6 pages with a guard page on top to the fixed target = true: data moved true, guard page kept true, growth fresh true: PASS",
    "linux_alloc: MREMAP_DONTUNMAP of 3 pages with a guard page = true: data and guard page moved true, old range empty without it true: PASS",
    "linux_alloc: brk from 0x1000000000: up 0x100000a000, down 0x1000002000 (data kept true), up again 0x1000004000 (fresh pages zero true), below the start refused true: PASS",
    "linux_alloc: madvise DONTNEED = 0: pages read zero true, neighbours intact true; unknown advice = -22; mincore [1, 1, 1] then [1, 0, 0], kernel vector = -14: PASS",
    "linux_alloc: MADV_REMOVE = 0 on a shared page mapped twice (true): a hole in both true, the other page kept true; private = -22: PASS",
    "linux_alloc: MADV_REMOVE = 0 in a shared page after fork = 1: the child read zeros (status 0), the parent too true: PASS",
    "linux_alloc: MAP_DROPPABLE: written and read back true; mlock = 0, then MADV_DONTNEED = 0 (zero true); MADV_DODUMP = -22, locked = -22; forked child read zeros (status 0), parent kept true: PASS",
    "linux_alloc: a PROT_NONE reservation of 16 GiB: 4 pages made writable = 0, used true; all made writable = -12, data kept true; given back true: PASS",
    "linux_alloc: a stack written 3 pages below grew: data true, pages taken true; mincore's vector 2 pages below it = 0, Some([1, 1]), grew true; unmapped whole true: PASS",
    "linux_alloc: mseal = 0: munmap, mprotect, mremap, MADV_DONTNEED = [-1, -1, -1, -1], data kept true; a hole = -12, a flag = -22: PASS",
    "linux_alloc: mlock = 0: MADV_DONTNEED refused = -22, data kept true; msync = 0, async+sync = -22, invalidate = -16; munlock = 0, then dropped = 0, zero true",
    "linux_alloc: mlockall(MCL_FUTURE) = 0: a new mapping refuses MADV_DONTNEED (-22) until munlockall = 0 (0)",
    "linux_alloc: RLIMIT_MEMLOCK 4 pages = 0: mlock 3 = 0, 3 more = -12, locked mmap of 2 = -11: PASS",
    "linux_alloc: file: pattern read true, private write copied true, shared write seen true, bad fd = -9: PASS",
    "linux_alloc: refused: length 0 = -22, fixed on the program = -1, bad prot = -22, high flag = -22, noreplace = -17",
    "linux_alloc: refused: kernel munmap = -22, low munmap = -22, write+exec = -13, area in the window = -1 (stored base -1, growing into it -1): PASS",
    "linux_alloc: arena given back true; all: PASS",
    "linux_alloc: 3000 random calls (seed 0x5eed0016): ",
    "all answered; window cleared = 0, areas left in it 0: PASS",
    "linux_alloc: two threads: the worker wrote 24 rounds of copy-on-write pages (done true, words as expected true) while the main thread made calls: PASS",
];

/// The lines the `fork` program prints in every run: the child (without
/// the parent's second thread) sees the parent's data and writes its own, the grandchild the child's; the
/// parent's data is unchanged; the ninth child not waited for is refused
/// (`-EAGAIN`), every status comes back once (`WAIT`); a fork whose child
/// could not reserve the parent's memory is refused (`-ENOMEM`); a
/// `MADV_DONTFORK` page is left out of a child, a `MADV_WIPEONFORK` one
/// given to it zero-filled.
pub const FORK_LINES: [&str; 7] = [
    "fork: grandchild: saw the child's data true, wrote its own true",
    "fork: child: own process number true, only the forking thread true, saw the parent's data true, wrote its own true; grandchild status 0x0, own data unchanged true",
    "fork: child status 0x0; the parent's 16 area and 8 mmap pages unchanged true, written again true; its second thread still counting true: PASS",
    "fork: 8 children forked, one more refused = -11; statuses (killed 0x9, exits 0x100 to 0x700) true; waited again = -10, not a child = -10; then a fork = status 0x0: PASS",
    "fork: more than half the free memory reserved: fork = -12, data intact true; given back: fork = status 0x0: PASS",
    "fork: hints: dontfork = 0, wipeonfork = 0, guard = 0; child status 0x0 (page left out, pages wiped, no guard page, others copied); parent's kept true, guard page true: PASS",
    "fork: all: PASS",
];

/// Checks the `fork` scenario's copy-on-write copies (its counter line):
/// the child's and the grandchild's writes to the 24 pages copy each
/// (48); the parent's second writes, after both wrote their own copies,
/// take its frames over and copy nothing (else 72 or more). The few
/// stack pages the forked processes write add some.
pub fn check_fork_copies(counters: &str) {
    let copies = counter(&[counters], "cow_copies");
    assert!(
        (48..72).contains(&copies),
        "cow_copies={copies}: {counters}"
    );
}

/// The kill reasons of the four `linux_alloc` tasks that make an access
/// the kernel must refuse: the freed middle of a chunk, a guard page, a
/// read-only private file mapping, a page made a guard page with
/// `MADV_GUARD_INSTALL`.
pub const LINUX_ALLOC_KILLS: [&str; 4] = [
    "killed: page fault at 0x1fffffb000 (read): no area",
    "killed: page fault at 0x1ffffff000 (write): access not permitted by the area (area 0x1ffffff000+0x1000 ---)",
    "killed: page fault at 0x1ffffff000 (write): access not permitted by the area (area 0x1ffffff000+0x1000 r--)",
    "killed: page fault at 0x1fffffd000 (read): guard page",
];

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

    #[test]
    fn the_verdict_is_the_kernels_last_word() {
        assert_eq!(verdict("booting\n== scenario hello: PASS\n"), None);
        assert_eq!(
            verdict("x\r\nALL SCENARIOS PASSED\r\n"),
            Some(Verdict::Passed)
        );
        assert_eq!(verdict("SOME SCENARIOS FAILED\n"), Some(Verdict::Failed));
        assert_eq!(
            verdict("KERNEL PANIC on cpu 1: oops\n"),
            Some(Verdict::Failed)
        );
        assert_eq!(
            verdict("FAIL: command line: unknown option\n"),
            Some(Verdict::Failed)
        );
        // A scenario's own failure is not the end of the run.
        assert_eq!(verdict("== scenario heap: FAIL\n"), None);
    }

    #[test]
    fn a_command_line_that_could_break_grub_cfg_is_refused() {
        let dir = std::env::temp_dir().join(format!("aspace-grub-{}", std::process::id()));
        for bad in ["a\nb", "x\"y", "$root", "a;b", "{x}"] {
            let e = grub_iso(Path::new("/nonexistent"), bad, &dir).unwrap_err();
            assert!(e.contains("only letters"), "{bad:?}: {e}");
        }
    }
}
