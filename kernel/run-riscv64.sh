#!/bin/sh
# Builds the riscv64 kernel (nightly toolchain, -Zbuild-std) and boots it
# on QEMU's virt machine with OpenSBI: ./run-riscv64.sh [extra qemu args]
# SMP=n sets the hart count (1 to 8; default 2). QEMU exits with 0 when
# every scenario passed (the SiFive test device), 1 on a failure or panic.
set -e
cd "$(dirname "$0")"
TARGET=riscv64gc-unknown-none-elf
cargo +nightly build --release -Zbuild-std=core,alloc \
    -Zbuild-std-features=compiler-builtins-mem --target $TARGET
set +e
qemu-system-riscv64 -machine virt -bios default \
    -kernel target/$TARGET/release/aspace-kernel -m 256M -smp "${SMP:-2}" \
    -display none -monitor none -serial stdio -no-reboot "$@"
status=$?
case $status in
    0) echo "[qemu] kernel reported success" ;;
    1) echo "[qemu] kernel reported failure" ;;
    *) echo "[qemu] exited with status $status" ;;
esac
exit $status
