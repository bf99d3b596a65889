#!/usr/bin/env python3
"""How fast a new process carries its rule's oom_score_adj.

Measured in one run, against the usual alternative measured the same way:
  oomguard   `oomguard protect --watch --no-scan` (process events only)
  cron-1s    a shell loop rewriting oom_score_adj of matching processes every second
             (a cron job does it every minute: 60x worse than this)
For each, N processes named `oomg-bench` are started one after another; the latency is the
time from the moment the process exists (spawn returned, exec done) until its
/proc/PID/oom_score_adj reads the target, polled every 0.1 ms. oomguard's own figure, from
the kernel's event timestamp to the completed write, is read from its event log.

Usage: scripts/bench-protect.py [N] [path/to/oomguard]   (root; positive value, no caps needed)
"""
import json, os, shutil, statistics, subprocess, sys, tempfile, time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 50
BIN = sys.argv[2] if len(sys.argv) > 2 else "target/release/oomguard"
TARGET = 500
tmp = tempfile.mkdtemp()
link = os.path.join(tmp, "oomg-bench")
os.symlink(shutil.which("sleep"), link)


def adj(pid):
    try:
        with open(f"/proc/{pid}/oom_score_adj") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def measure(label):
    lat = []
    for _ in range(N):
        p = subprocess.Popen([link, "30"])
        t0 = time.perf_counter()
        while adj(p.pid) != TARGET and time.perf_counter() - t0 < 5:
            time.sleep(0.0001)
        lat.append((time.perf_counter() - t0) * 1000)
        p.kill()
        p.wait()
    lat.sort()
    print(f"{label:10} n={N} p50={statistics.median(lat):8.2f} ms  p95={lat[int(N * .95) - 1]:8.2f} ms  max={lat[-1]:8.2f} ms")
    sys.stdout.flush()
    return statistics.median(lat)


cfg = os.path.join(tmp, "rules.toml")
with open(cfg, "w") as f:
    f.write(f'[[protect]]\nname = "^oomg-bench$"\noom_score_adj = {TARGET}\n')
log = os.path.join(tmp, "events.jsonl")
g = subprocess.Popen([BIN, "protect", "--watch", "--no-scan", "--config", cfg, "--event-log", log],
                     stderr=subprocess.PIPE, text=True)
g.stderr.readline()  # "watching ..."
ours = measure("oomguard")
g.terminate()
g.wait()
kernel = sorted(r["latency_ms"] for r in map(json.loads, open(log)) if "latency_ms" in r)
if kernel:
    print(f"{'':10} from the kernel's event to the completed write: p50={statistics.median(kernel):.3f} ms max={kernel[-1]:.3f} ms")

cron = subprocess.Popen(["sh", "-c", f"while :; do for p in $(pgrep -x oomg-bench); do echo {TARGET} 2>/dev/null > /proc/$p/oom_score_adj; done; sleep 1; done"])
theirs = measure("cron-1s")
cron.kill()
cron.wait()
print(f"ratio: cron-1s p50 / oomguard p50 = {theirs / max(ours, 1e-3):.0f}x (a real cron job runs every 60 s)")
shutil.rmtree(tmp)
