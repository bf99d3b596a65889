#!/usr/bin/env bash
# Benchmark (not a test): `oomguard explain --summary` against `grep -c 'Killed process'` on
# a generated ~200 MB kernel log (corpus OOM reports between filler lines), in the same run;
# then peak RSS of `oomguard explain --summary` on a ~1 GB log (/usr/bin/time -v).
# Generated logs go to a temporary directory (default /tmp) and are removed at the end.
# Usage: scripts/bench-explain.sh [MB] [corpus dir]
set -euo pipefail
cd "$(dirname "$0")/.."

mb=${1:-200}
corpus=${2:-${OOMGUARD_CORPUS_DIR:-../shared/corpus/oom-reports}}
[ -d "$corpus" ] || { echo "no corpus at $corpus (give it as the second argument)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed to generate the log" >&2; exit 1; }

cargo build --release --quiet
bin=target/release/oomguard
work=$(mktemp -d "${TMPDIR:-/tmp}/oomguard-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
log=$work/kern.log

python3 - "$corpus" "$log" "$mb" <<'PY'
import glob, os, random, sys
corpus, out, mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
reports = [open(p, 'rb').read() for p in sorted(glob.glob(os.path.join(corpus, '*.log')))]
rnd = random.Random(42)
filler = [
    b"[%12.6f] audit: type=1400 audit(1700000000.123:%d): apparmor=\"ALLOWED\" operation=\"open\" profile=\"snap.x\" name=\"/proc/1/stat\" pid=%d comm=\"x\"\n",
    b"[%12.6f] EXT4-fs (sda1): mounted filesystem %d with ordered data mode. Quota mode: none. pid %d\n",
    b"[%12.6f] e1000e 0000:00:1f.6 eth0: NIC Link is Up 1000 Mbps Full Duplex, Flow Control: %d %d\n",
    b"[%12.6f] usb 1-4: new high-speed USB device number %d using xhci_hcd port %d\n",
    b"[%12.6f] systemd[1]: Started session-%d.scope - Session %d of User root.\n",
    b"[%12.6f] TCP: request_sock_TCP: Possible SYN flooding on port %d. Sending cookies. %d\n",
]
target = mb * 1024 * 1024
size, t, n_reports = 0, 1.0, 0
with open(out, 'wb', buffering=1 << 20) as f:
    while size < target:
        chunk = []
        for _ in range(rnd.randint(300, 800)):
            t += 0.0001
            chunk.append(rnd.choice(filler) % (t, rnd.randint(1, 99999), rnd.randint(1, 99999)))
        chunk.append(rnd.choice(reports))
        n_reports += 1
        data = b"".join(chunk)
        f.write(data)
        size += len(data)
print(f"generated {size / 1048576:.0f} MiB with {n_reports} OOM reports", file=sys.stderr)
PY

cat "$log" > /dev/null   # page cache warm for both tools
size=$(stat -c %s "$log")
# Best of 3 runs of "$@": "wall_seconds cpu_seconds" (stdout to a file: GNU grep stops at
# the first match when its output is /dev/null). CPU time (user+sys) is the fairer figure on
# a shared machine; both are printed.
best() {
  local bw=999999 bc=999999 w c
  for _ in 1 2 3; do
    read -r w c < <( { /usr/bin/time -f "%e %U %S" "$@" > "$work/out"; } 2>&1 | awk 'END {print $1, $2 + $3}')
    bw=$(python3 -c "print(min($bw, $w))"); bc=$(python3 -c "print(min($bc, $c))")
  done
  echo "$bw $bc"
}
read -r w_grep c_grep < <(best grep -c 'Killed process' "$log")
read -r w_og c_og < <(best "$bin" explain --summary "$log")
events=$("$bin" explain --summary "$log" | tail -n +2 | wc -l)
kills=$(grep -c 'Killed process' "$log" || true)
python3 - "$size" "$w_grep" "$c_grep" "$w_og" "$c_og" "$events" "$kills" <<'PY'
import sys
size, wg, cg, wo, co = int(sys.argv[1]), *map(float, sys.argv[2:6])
ev, kills = sys.argv[6], sys.argv[7]
mb = size / 1e6
rate = lambda t: mb / t if t > 0 else float('inf')
print(f"log: {mb:.0f} MB, {ev} events (grep counts {kills} 'Killed process' lines)")
print(f"{'':28}{'wall s':>8}{'MB/s':>9}{'cpu s':>8}{'MB/s':>9}")
print(f"{'grep -c Killed process':28}{wg:8.3f}{rate(wg):9.0f}{cg:8.3f}{rate(cg):9.0f}")
print(f"{'oomguard explain --summary':28}{wo:8.3f}{rate(wo):9.0f}{co:8.3f}{rate(co):9.0f}")
print(f"ratio of speeds oomguard/grep: wall {wg / wo:.2f}, cpu {cg / co if co else 0:.2f} (target >= 0.50)")
PY

# Peak RSS on ~1 GB: the same log five times.
big=$work/big.log
for _ in 1 2 3 4 5; do cat "$log"; done > "$big"
rm -f "$log"
rss=$( { /usr/bin/time -v "$bin" explain --summary "$big" > /dev/null; } 2>&1 | awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}')
echo "peak RSS on $(( $(stat -c %s "$big") / 1000000 )) MB: ${rss} kB ($(( rss / 1024 )) MiB; target < 32 MiB)"
