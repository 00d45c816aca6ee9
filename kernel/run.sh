#!/bin/sh
# Builds the kernel and boots it in QEMU: ./run.sh [extra qemu args]
# Software emulation (TCG) by default; ASPACE_QEMU_ACCEL=kvm uses KVM (not
# every host's KVM can run it: paravirtual ones like PVM cannot emulate SSE in
# the higher half). SMP=n sets the CPU count.
set -e
cd "$(dirname "$0")"
cargo build --release
objcopy -O elf32-i386 target/x86_64-unknown-linux-gnu/release/aspace-kernel target/aspace-kernel.elf32
if [ "${ASPACE_QEMU_ACCEL:-}" = kvm ]; then
    ACCEL="-enable-kvm -cpu host,-arch-capabilities"
else
    ACCEL="-cpu max"
fi
set +e
qemu-system-x86_64 -kernel target/aspace-kernel.elf32 -m 256M -smp "${SMP:-2}" \
    -display none -monitor none -serial stdio -no-reboot \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 $ACCEL "$@"
status=$?
case $status in
    33) echo "[qemu] kernel reported success" ;;
    35) echo "[qemu] kernel reported failure" ;;
    *) echo "[qemu] exited with status $status" ;;
esac
exit $status
