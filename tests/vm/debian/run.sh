#!/usr/bin/env bash
# Boots the Debian image once with a data disk and prints what the guest reported.
#
#   tests/vm/debian/run.sh OUTDIR SCENARIO [VAR=VALUE...]
#
# The data disk (ext4, label OOMTEST, made with mke2fs -d: no mount) holds guest/run.sh's
# helpers (lib.sh, scenarios/, www/), vmprobe, the .deb given in $DEB and the hog given in
# $HOG (if any) and the
# variables (env). The guest's vmtest.service runs scenarios/SCENARIO.sh from it, writes out/
# on the same disk and powers off; out/ is copied to OUTDIR with debugfs. The root disk is
# the cached image, opened with snapshot=on (never written). Env: VM_MEM (MiB, default 1536),
# VM_SMP (2), VM_TIMEOUT (s, default 900), VM_LOG (serial console file, default OUTDIR/console),
# VM_NICE (niceness of qemu, default 0).
# Prints OUTDIR/out/result (key=value) and host_seconds=...
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
outdir=$1 scenario=$2
shift 2
[ -f "$here/scenarios/$scenario.sh" ] || { echo "run.sh: no scenario $scenario" >&2; exit 2; }
image=$("$here/build-image.sh")
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
data=$(mktemp -d "${TMPDIR:-/tmp}/oomguard-debvm.XXXXXX")
cleanup() { [ -n "${qpid:-}" ] && kill -9 "$qpid" 2>/dev/null; rm -rf "$data"; }
trap cleanup EXIT
mkdir -p "$data/d/out"
cp -r "$here/lib.sh" "$here/scenarios" "$here/www" "$data/d/"
cp "$here/guest-run.sh" "$data/d/run.sh"
# vmprobe (heartbeat and clock) from the busybox harness's source, built static once.
probe=$image/../vmprobe
if [ ! -x "$probe" ] || [ "$here/../vmprobe.c" -nt "$probe" ]; then
  gcc -O2 -static -Wall -o "$probe.tmp" "$here/../vmprobe.c" && mv "$probe.tmp" "$probe"
fi
cp "$probe" "$data/d/vmprobe"
if [ -n "${DEB:-}" ]; then cp "$DEB" "$data/d/"; fi
# The tests' memory hog (never shipped in the .deb): $HOG, installed by the guest as
# /usr/local/bin/oomguard-hog.
if [ -n "${HOG:-}" ]; then cp "$HOG" "$data/d/oomguard-hog"; fi
{
  echo "SCENARIO=$scenario"
  # Quoted for the guest's shell (values may hold spaces and brackets).
  for kv in "$@"; do printf '%s=%q\n' "${kv%%=*}" "${kv#*=}"; done
} > "$data/d/env"
mke2fs -q -t ext4 -L OOMTEST -d "$data/d" "$data/data.img" 256M >/dev/null
log=${VM_LOG:-$outdir/console}
start=$(date +%s.%N)
nice -n "${VM_NICE:-0}" qemu-system-x86_64 -accel tcg -m "${VM_MEM:-1536}" -smp "${VM_SMP:-2}" -nographic -no-reboot \
  -nic none -kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
  -append "root=/dev/vda rw console=ttyS0 quiet loglevel=4 psi=1 systemd.unified_cgroup_hierarchy=1 systemd.show_status=0 panic=-1" \
  -drive "file=$image/rootfs.img,if=virtio,format=raw,snapshot=on" \
  -drive "file=$data/data.img,if=virtio,format=raw" \
  </dev/null >"$log" 2>&1 &
qpid=$!
timeout=${VM_TIMEOUT:-900}
deadline=$(( $(date +%s) + timeout ))
while kill -0 "$qpid" 2>/dev/null; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "run.sh: the VM ran longer than ${timeout}s; killed qemu (PID $qpid)" >&2
    kill -9 "$qpid" 2>/dev/null || true
    break
  fi
  sleep 1
done
wait "$qpid" 2>/dev/null || true
qpid=
end=$(date +%s.%N)
rm -rf "$outdir/out"
debugfs -R "rdump /out $outdir" "$data/data.img" >/dev/null 2>&1 || true
[ -f "$outdir/out/result" ] || { echo "run.sh: the guest wrote no result (console: $log)" >&2; tail -n 30 "$log" >&2; exit 1; }
cat "$outdir/out/result"
cut -d" " -f1-3 /proc/loadavg > "$outdir/loadavg"
awk -v s="$start" -v e="$end" 'BEGIN { printf "host_seconds=%.1f\n", e - s }'
