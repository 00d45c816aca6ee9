#!/bin/sh
# Builds the aarch64 kernel (nightly toolchain, -Zbuild-std) and boots it
# on QEMU's virt machine at EL1: ./run-aarch64.sh [extra qemu args]
# SMP=n sets the CPU count (1 to 8; default 2). QEMU exits with 0 when
# every scenario passed and 1 on a failure or panic (semihosting SYS_EXIT).
set -e
cd "$(dirname "$0")"
TARGET=aarch64-unknown-none
cargo +nightly build --release -Zbuild-std=core,alloc \
    -Zbuild-std-features=compiler-builtins-mem --target $TARGET
set +e
qemu-system-aarch64 -machine virt -cpu cortex-a57 -semihosting \
    -kernel target/$TARGET/release/aspace-kernel -m 256M -smp "${SMP:-2}" \
    -display none -monitor none -serial stdio -no-reboot "$@"
status=$?
case $status in
    0) echo "[qemu] kernel reported success" ;;
    1) echo "[qemu] kernel reported failure" ;;
    *) echo "[qemu] exited with status $status" ;;
esac
exit $status
