#!/usr/bin/env bash
# Benchmark (not a test): `oomguard explain --summary` against `grep -c` on a generated ~210 MB
# kernel log (real-looking syslog/dmesg filler lines with a corpus OOM report every few hundred
# lines), measured in the same run, runs interleaved; then peak RSS of `oomguard explain
# --summary` on a ~1 GB log (/usr/bin/time -v); and the log's filler alone, plain and after a
# report cut off inside Mem-Info (which must not make the rest read line by line). Prints the figures and ratios and writes them to
# docs/bench/explain.md. Generated logs go to a temporary directory (default /tmp) and are
# removed at the end.
# Usage: scripts/bench-explain.sh [MiB, default 200 (= 210 MB)] [corpus dir]
# BENCH_RUNS (default 5): runs of each tool; the best is kept (the machine is shared).
# OOMGUARD_BASE_BIN: another build (the code before a change) run in the same rounds: prints
# the median of the per-round CPU ratios and whether both print the same summary (take
# BENCH_RUNS=41 or so for a ratio: the host's noise is of the size of a few per cent).
set -euo pipefail
cd "$(dirname "$0")/.."

mb=${1:-200}
corpus=${2:-${OOMGUARD_CORPUS_DIR:-../shared/corpus/oom-reports}}
runs=${BENCH_RUNS:-5}
[ -d "$corpus" ] || { echo "no corpus at $corpus (give it as the second argument)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed to generate the log" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "GNU time is needed: apt-get install time" >&2; exit 1; }

# OOMGUARD_BIN: a binary already built (skips the release build).
bin=${OOMGUARD_BIN:-target/release/oomguard}
base=${OOMGUARD_BASE_BIN:-}
[ -z "$base" ] || [ -x "$base" ] || { echo "OOMGUARD_BASE_BIN=$base is not an executable" >&2; exit 1; }
[ -n "${OOMGUARD_BIN:-}" ] || cargo build --release --quiet --bin oomguard
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
# Beside it, the same filler with no report (out + ".filler").
with open(out, 'wb', buffering=1 << 20) as f, open(out + ".filler", 'wb', buffering=1 << 20) as g:
    while size < target:
        chunk = []
        for _ in range(rnd.randint(300, 800)):
            t += 0.0001
            chunk.append(rnd.choice(filler) % (t, rnd.randint(1, 99999), rnd.randint(1, 99999)))
        g.write(b"".join(chunk))
        chunk.append(rnd.choice(reports))
        n_reports += 1
        data = b"".join(chunk)
        f.write(data)
        size += len(data)
print(f"generated {size / 1048576:.0f} MiB with {n_reports} OOM reports", file=sys.stderr)
PY

cat "$log" > /dev/null   # page cache warm for every tool
size=$(stat -c %s "$log")
# One run of "$@": "wall_seconds cpu_seconds" (stdout to a file: GNU grep stops at the first
# match when its output is /dev/null). CPU time (user+sys) is the fairer figure on a shared
# machine; both are printed. Microsecond figures from wait4(2)'s rusage and a monotonic clock
# (GNU time rounds to 10 ms, a quarter of what grep takes here).
once() {
  python3 - "$work/out" "$@" <<'PY'
import os, sys, time
out, argv = sys.argv[1], sys.argv[2:]
fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.dup2(fd, 1)
    os.execvp(argv[0], argv)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t0
if os.waitstatus_to_exitcode(status) not in (0, 1):
    sys.exit(f"{argv[0]} failed: {status}")
print(f"{wall:.6f} {ru.ru_utime + ru.ru_stime:.6f}")
PY
}
# Interleaved: grep, oomguard, grep, oomguard, ... so both see the same load.
: > "$work/times"
for _ in $(seq "$runs"); do
  echo "grep_killed $(once grep -c 'Killed process' "$log")" >> "$work/times"
  echo "grep_invoked $(once grep -c 'invoked oom-killer' "$log")" >> "$work/times"
  echo "oomguard $(once "$bin" explain --summary "$log")" >> "$work/times"
  [ -z "$base" ] || echo "base $(once "$base" explain --summary "$log")" >> "$work/times"
done
events=$("$bin" explain --summary "$log" | tail -n +2 | wc -l)
same=-
if [ -n "$base" ]; then
  if cmp -s <("$bin" explain --summary "$log") <("$base" explain --summary "$log"); then same=yes; else same=no; fi
fi

# The filler alone, plain and after a report cut off inside Mem-Info (a log excerpt, a crash
# mid-report): what follows such a report must still be skimmed, not read line by line.
# Both written the same way here (a file's page-cache layout changes how fast it reads).
plain=$work/plain.log
cut=$work/cut.log
cat "$log.filler" > "$plain"
{
  printf '[    1.000000] hog invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0\n'
  printf '[    1.000001] Mem-Info:\n'
  printf '[    1.000002] active_anon:1 inactive_anon:2 isolated_anon:0\n'
  printf '[    1.000003]  free:100 free_pcp:0 free_cma:0\n'
  cat "$log.filler"
} > "$cut"
rm -f "$log.filler"
sync "$cut" "$plain"   # no writeback of either during the runs
for _ in $(seq "$runs"); do
  echo "filler $(once "$bin" explain --summary "$plain")" >> "$work/times"
  echo "filler_cut $(once "$bin" explain --summary "$cut")" >> "$work/times"
done
filler_size=$(stat -c %s "$plain")
rm -f "$cut" "$plain"
kills=$(grep -c 'Killed process' "$log" || true)
headers=$(grep -c 'invoked oom-killer' "$log" || true)

# Peak RSS on ~1 GB: the same log five times.
big=$work/big.log
for _ in 1 2 3 4 5; do cat "$log"; done > "$big"
rm -f "$log"
big_size=$(stat -c %s "$big")
rss=$( { /usr/bin/time -v "$bin" explain --summary "$big" > /dev/null; } 2>&1 | awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}')
rm -f "$big"

python3 - "$size" "$events" "$kills" "$headers" "$big_size" "$rss" "$runs" "$work/times" "$(cat /proc/loadavg)" "$(git rev-parse --short HEAD 2>/dev/null || echo '?')" "$filler_size" "$base" "$same" <<'PY' | tee docs/bench/explain.md
import sys, datetime
size, events, kills, headers, big, rss, runs = (int(x) for x in sys.argv[1:8])
times, load, rev = sys.argv[8], sys.argv[9], sys.argv[10]
filler_mb = int(sys.argv[11]) / 1e6
base, same = sys.argv[12], sys.argv[13]
import statistics
all_runs = {}
for line in open(times):
    name, w, c = line.split()
    all_runs.setdefault(name, []).append((float(w), float(c)))
best = {k: (min(w for w, _ in v), min(c for _, c in v)) for k, v in all_runs.items()}
med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in all_runs.items()}
mb = size / 1e6
rate = lambda t: f"{mb / t:.0f}" if t > 0 else "inf"
print("# `oomguard explain` against `grep -c`\n")
print(f"Written by `scripts/bench-explain.sh` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC (commit {rev}); "
      f"host load (1, 5, 15 min, at the end): {' '.join(load.split()[:3])}. "
      f"Log: {mb:.0f} MB generated (filler kernel lines with one of the corpus OOM reports every 300-800 lines), "
      f"{events} events found (grep counts {kills} 'Killed process' and {headers} 'invoked oom-killer' lines). "
      f"Best of {runs} interleaved runs, page cache warm; CPU = user + sys from wait4(2), wall from a monotonic clock.\n")
print("| command | wall s | MB/s | CPU s | MB/s |")
print("|---|---|---|---|---|")
rows = [("grep -c 'Killed process'", "grep_killed"), ("grep -c 'invoked oom-killer'", "grep_invoked"),
        ("oomguard explain --summary", "oomguard")]
for label, k in rows:
    w, c = best[k]
    print(f"| `{label}` | {w:.4f} | {rate(w)} | {c:.4f} | {rate(c)} |")
ow, oc = best["oomguard"]
print()
for label, k in rows[:2]:
    w, c = best[k]
    mw, mc = med[k]
    print(f"- speed of oomguard / `{label}`: wall {w / ow:.2f}, CPU {c / oc if oc else 0:.2f} (target >= 0.50); "
          f"medians of the {runs} runs: wall {mw / med['oomguard'][0]:.2f}, CPU {mc / med['oomguard'][1]:.2f}")
fw, fc = best["filler"]
cw, cc = best["filler_cut"]
print(f"- the log's {filler_mb:.0f} MB of filler alone: wall {fw:.4f} s, CPU {fc:.4f} s; after a report cut off "
      f"inside Mem-Info: wall {cw:.4f} s, CPU {cc:.4f} s ({cw / fw:.2f} of the plain filler's wall time, "
      f"{cc / fc if fc else 0:.2f} of its CPU time)")
print(f"- peak RSS of `oomguard explain --summary` on {big / 1e6:.0f} MB: {rss} kB = {rss / 1024:.1f} MiB (target <= 8 MiB)")
if base:
    # Round by round (the two ran back to back in each), so a load change hits both.
    r = sorted(o[1] / b[1] for o, b in zip(all_runs["oomguard"], all_runs["base"]) if b[1] > 0)
    q = lambda f: r[min(len(r) - 1, int(f * len(r)))]
    print(f"- against `{base}` in the same rounds: CPU of this build / that one, median of the {len(r)} rounds' "
          f"ratios {statistics.median(r):.3f} (quartiles {q(0.25):.3f}-{q(0.75):.3f}; this build the faster in "
          f"{sum(x < 1 for x in r)} of {len(r)}); the same summary printed: {same}")
PY
