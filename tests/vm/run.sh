#!/usr/bin/env bash
# Boots one scenario in a throwaway VM and prints its results (key=value lines).
#
#   tests/vm/run.sh SCENARIO [VAR=VALUE...]
#
# SCENARIO is a file in tests/vm/scenarios/ (without .sh); VAR=VALUE pairs become shell
# variables of the guest (see each scenario). Run tests/vm/build.sh first.
# Environment: VM_MEM (512M), VM_SMP (1), VM_TIMEOUT (seconds, 120), VM_DISK (size of a blank
# virtio disk for SWAP=disk, e.g. 256M), VM_DEBUG=1 (guest output and dmesg into the log),
# VM_LOG (file for the whole serial console; default: a temporary file removed on success),
# VM_NOHANG=1 (boot the initramfs with nohang), VM_KERNEL=jammy|focal|focal-hwe|bullseye (boot Ubuntu 22.04's 5.15, 20.04's 5.4, 20.04's HWE 5.8 or Debian 11's 5.10 kernel:
# tests/vm/build.sh with the same VM_KERNEL first), VM_NICE (niceness of qemu: the tests use 10 so that timing-sensitive host tests keep the CPU).
# Exit: 0 with results, 1 when the VM produced no result block (the console log is printed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${VM_WORK:-$here/work}
[ $# -ge 1 ] || { echo "usage: $0 SCENARIO [VAR=VALUE...]" >&2; exit 2; }
scenario=$1; shift
[ -r "$here/scenarios/$scenario.sh" ] || { echo "no scenario $scenario" >&2; exit 2; }
kernel=${VM_KERNEL:+-$VM_KERNEL}
initrd=$work/initrd${VM_NOHANG:+-nohang}$kernel.cpio
[ -r "$initrd" ] || { echo "run ${VM_NOHANG:+VM_NOHANG=1 }${VM_KERNEL:+VM_KERNEL=$VM_KERNEL }tests/vm/build.sh first" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/oomguard-vm.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/env/vm"
{
  echo "SCENARIO='$scenario'"
  [ -n "${VM_DEBUG:-}" ] && echo "VM_DEBUG=1"
  for kv in "$@"; do
    k=${kv%%=*}; v=${kv#*=}
    [[ $k =~ ^[A-Z_][A-Z0-9_]*$ ]] || { echo "bad variable $k" >&2; exit 2; }
    printf "%s='%s'\n" "$k" "${v//\'/\'\\\'\'}"
  done
} >"$tmp/env/vm/run.env"
# A second cpio archive appended to the first: the kernel unpacks both.
cp "$initrd" "$tmp/initrd"
(cd "$tmp/env" && find . | cpio -o -H newc --quiet) >>"$tmp/initrd"

disk=()
if [ -n "${VM_DISK:-}" ]; then
  truncate -s "$VM_DISK" "$tmp/disk.img"
  disk=(-drive "file=$tmp/disk.img,if=virtio,format=raw,cache=unsafe")
fi
log=${VM_LOG:-$tmp/console.log}
boot() {
  nice -n "${VM_NICE:-0}" timeout --kill-after=5 "${VM_TIMEOUT:-120}" qemu-system-x86_64 -accel tcg \
    -m "${VM_MEM:-512M}" -smp "${VM_SMP:-1}" -nographic -no-reboot -nodefaults -serial stdio -net none \
    -kernel "$work/vmlinuz$kernel" -initrd "$tmp/initrd" "${disk[@]}" \
    -append "console=ttyS0 psi=1 panic=-1 loglevel=1 oops=panic no_timer_check" </dev/null >"$log" 2>&1
}
start=$(date +%s.%N)
set +e
boot
rc=$?
# A kernel that died before it ran our init (under heavy host load TCG can fail the kernel's
# early boot checks) is booted once more; anything after init started is never retried.
if ! grep -q 'vm: scenario .* on ' "$log"; then
  echo "vm: $scenario: the kernel did not reach init (qemu exit $rc), booting again:" >&2
  grep -m3 -E 'panic|BUG|Oops' "$log" >&2
  boot
  rc=$?
fi
set -e
end=$(date +%s.%N)
if ! grep -q '^===OOMTEST-RESULT-END===' "$log"; then
  echo "vm: $scenario produced no result (qemu exit $rc); console:" >&2
  tail -n 60 "$log" >&2
  exit 1
fi
sed -n '/^===OOMTEST-RESULT-BEGIN===/,/^===OOMTEST-RESULT-END===/p' "$log" | sed '1d;$d' | tr -d '\r'
awk -v s="$start" -v e="$end" 'BEGIN{printf "host_seconds=%.1f\n", e - s}'
