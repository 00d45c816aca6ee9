//! Links the kernel with its architecture's linker script, and builds the
//! user programs (`user/`, its own cargo workspace) first, for the same
//! target, embedding each one. x86_64 builds on stable for the host target;
//! riscv64 (`riscv64gc-unknown-none-elf`) and aarch64
//! (`aarch64-unknown-none`) on nightly with `-Zbuild-std`, and the user
//! programs then too (the `cargo` running this script is the nightly one).

use std::path::Path;
use std::process::Command;

/// The user programs' flags for the x86_64 host target: a static
/// executable without the C runtime.
const USER_FLAGS: &[&str] = &[
    "-C",
    "relocation-model=static",
    "-C",
    "target-feature=+crt-static",
    "-C",
    "link-arg=-nostartfiles",
    "-C",
    "link-arg=-nostdlib",
    "-C",
    "link-arg=-static",
    "-C",
    "link-arg=-Wl,--build-id=none",
    "-C",
    "link-arg=-Wl,-z,max-page-size=4096",
];

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let target = std::env::var("TARGET").unwrap();
    let riscv = target.starts_with("riscv64");
    let arm = target.starts_with("aarch64");
    let script = if riscv {
        "src/arch/riscv64/kernel.ld"
    } else if arm {
        "src/arch/aarch64/kernel.ld"
    } else {
        "kernel.ld"
    };
    println!("cargo:rustc-link-arg-bins=-T{dir}/{script}");
    println!("cargo:rerun-if-changed={script}");
    println!("cargo:rerun-if-changed=build.rs");
    for p in [
        "user/src",
        "user/Cargo.toml",
        "user/user.ld",
        "user/build.rs",
        "memfuncs.s",
        "src/nr.rs",
    ] {
        println!("cargo:rerun-if-changed={p}");
    }

    let user = Path::new(&dir).join("user");
    let target_dir = Path::new(&dir).join("target/user");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&user)
        .args(["build", "--release", "--bins", "--target", &target])
        .arg("--target-dir")
        .arg(&target_dir);
    if riscv || arm {
        // `core` from source; its `compiler-builtins` provides memcpy and
        // friends (no libc, and memfuncs.s is x86_64 assembly). lld's
        // default page size for aarch64 is 64 KiB: the programs' segments
        // are laid out for 4 KiB pages.
        let flags = if arm {
            "-Clink-arg=-zmax-page-size=4096"
        } else {
            ""
        };
        cmd.args([
            "-Zbuild-std=core",
            "-Zbuild-std-features=compiler-builtins-mem",
        ])
        .env("CARGO_ENCODED_RUSTFLAGS", flags);
    } else {
        cmd.env("CARGO_ENCODED_RUSTFLAGS", USER_FLAGS.join("\x1f"));
    }
    for v in [
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_PKG_NAME",
        "OUT_DIR",
        "TARGET",
        "HOST",
        "PROFILE",
        "OPT_LEVEL",
        "DEBUG",
    ] {
        cmd.env_remove(v);
    }
    let status = cmd
        .status()
        .expect("cannot run cargo for the user programs");
    assert!(status.success(), "building the user programs failed");

    let bin_dir = target_dir.join(&target).join("release");
    let mut names: Vec<String> = std::fs::read_dir(user.join("src/bin"))
        .expect("user/src/bin")
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "rs").then(|| p.file_stem().unwrap().to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    let mut out = String::from(
        "/// The user programs: (name, static ELF executable).\n\
         pub static PROGRAMS: &[(&str, &[u8])] = &[\n",
    );
    for n in &names {
        let path = bin_dir.join(n);
        assert!(
            path.exists(),
            "user program {} was not built",
            path.display()
        );
        out.push_str(&format!(
            "    ({n:?}, include_bytes!({:?})),\n",
            path.display().to_string()
        ));
    }
    out.push_str("];\n");
    let gen = Path::new(&std::env::var("OUT_DIR").unwrap()).join("user_programs.rs");
    std::fs::write(gen, out).unwrap();
}
