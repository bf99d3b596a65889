#!/usr/bin/env python3
"""Report of scripts/bench-debian.sh: reads target/bench-debian/<guard>/out/ (the guest's
result file and per-run journals), writes docs/bench/debian-runs.jsonl, docs/bench/debian.md
and docs/bench/debian.png, prints the table.

    bench_debian.py RAW_DIR GUARDS LEAK_TIMEOUT_S
"""
import datetime
import json
import os
import re
import statistics
import sys

raw, guards, leak_timeout = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
docs = "docs/bench"
os.makedirs(docs, exist_ok=True)

KERNEL_KILL = re.compile(r"Out of memory: Killed process (\d+) \(([^)]+)\)")
OOMD_KILL = re.compile(r"systemd-oomd\[\d+\]: .*Killed (\S+) due to (.*)")


def load(guard):
    path = os.path.join(raw, guard, "out", "result")
    console = os.path.join(raw, guard, "console")
    kv = {}
    if os.path.exists(path):
        lines = open(path, errors="replace").read().splitlines()
    elif os.path.exists(console):
        # A boot cut short by the host's timeout: the facts its runs mirrored on the console.
        lines = [l.split("RESULT ", 1)[1] for l in open(console, errors="replace").read().splitlines()
                 if "RESULT " in l]
    else:
        return None, []
    for line in lines:
        if "=" in line:
            k, v = line.strip().split("=", 1)
            kv[k] = v
    runs = []
    i = 1
    while f"r{i}_http_gap_ms" in kv:
        p = f"r{i}_"
        g = lambda k, d="": kv.get(p + k, d)
        leak = g("leak_pid")
        # Kernel threads (kworker/...) that came and went are not deaths (older guest scripts
        # listed them).
        died = [d for d in g("died").split() if ":" in d and not d.split(":", 1)[1].startswith("kworker/")]
        journal_path = os.path.join(raw, guard, "out", f"r{i}.journal")
        journal = open(journal_path, errors="replace").read() if os.path.exists(journal_path) else ""
        kernel_victims = [f"{c}({p_})" for p_, c in KERNEL_KILL.findall(journal)]
        oomd = [m[0] for m in OOMD_KILL.findall(journal)]
        leak_death = float(g(f"death_ms_{leak}", "-1"))
        rec = {
            "guard": guard,
            "run": i,
            "leaker_died": g("leaker_died") == "1",
            "leak_request_ms": int(g("leak_ms", "0")),
            "timed_out": int(g("leak_ms", "0")) >= leak_timeout * 1000 - 500 and g("leaker_died") != "1",
            "leaker_death_ms": leak_death if leak_death >= 0 else None,
            "died": [d.split(":", 1)[1] for d in died],
            "innocent_kills": len([d for d in died if d.split(":", 1)[0] != leak]),
            "db_survived": g("db_same_pid") == "1" and g("db_answers") == "1",
            "db_same_pid": g("db_same_pid") == "1",
            "db_answers": g("db_answers") == "1",
            "http_after": g("http_after"),
            "http_gap_ms": int(g("http_gap_ms", "0")),
            "heartbeat_stall_ms": float(g("heartbeat_ms", "-1")),
            "kernel_oom_kills": int(g("kernel_kills", "0")),
            "kernel_victims": kernel_victims,
            "oomd_kills": oomd,
            "min_avail_kb": int(g("min_avail_kb", "-1")),
        }
        runs.append(rec)
        i += 1
    return kv, runs


all_runs, meta = [], {}
for g in guards:
    kv, runs = load(g)
    meta[g] = kv or {}
    all_runs += runs

with open(os.path.join(docs, "debian-runs.jsonl"), "w") as f:
    for r in all_runs:
        f.write(json.dumps(r) + "\n")


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def rng(xs, fmt):
    return f"{fmt(med(xs))} ({fmt(min(xs))}–{fmt(max(xs))})" if xs else "–"


sec = lambda v: f"{v / 1000:.1f} s"
ms = lambda v: f"{v:.0f} ms"
rows = []
for g in guards:
    rs = [r for r in all_runs if r["guard"] == g]
    if not rs:
        rows.append(f"| {g} | 0 | no result | | | | | | | |")
        continue
    n = len(rs)
    died = {}
    for r in rs:
        for c in r["died"]:
            died[c] = died.get(c, 0) + 1
    who = ", ".join(f"{c} ×{k}" for c, k in sorted(died.items(), key=lambda x: -x[1])) or "nobody"
    rows.append(
        f"| {g} | {n} | {sum(r['leaker_died'] for r in rs)}/{n} | {who} | "
        f"{sum(r['db_survived'] for r in rs)}/{n} | "
        f"{rng([r['leaker_death_ms'] for r in rs if r['leaker_death_ms'] is not None], sec)} | "
        f"{rng([r['http_gap_ms'] for r in rs], sec)} | "
        f"{rng([r['heartbeat_stall_ms'] for r in rs], ms)} | "
        f"{sum(r['innocent_kills'] for r in rs)} | {sum(r['kernel_oom_kills'] for r in rs)} |"
    )

host = os.uname()
out = []
w = out.append
w("# The seed's story on Debian 12: oomguard, earlyoom, nohang, systemd-oomd, the kernel alone")
w("")
w(f"Written by `scripts/bench-debian.sh` on {datetime.date.today().isoformat()}; per-run records in "
  "`debian-runs.jsonl`, chart `debian.png`. Raw guest output (results, journals, probe logs) "
  "stays in `target/bench-debian/`.")
w("")
w("## Method")
w("")
w("- **Machine:** the VM of `tests/vm/debian/`: Debian bookworm built with mmdebstrap "
  "(`tests/vm/debian/packages.txt`), systemd 252 as PID 1, cgroup v2, journald, "
  f"linux-image-cloud-amd64, qemu `-accel tcg` (no KVM), 2 vCPUs, MemTotal "
  f"{int(next((m.get('mem_total_kb', 0) for m in meta.values() if m), 0)) // 1024} MiB, no swap "
  "(except systemd-oomd: 512 MiB zram, which its swap rule needs). Host: "
  f"{host.machine}, 2 cores shared with other work, so absolute times are TCG times on a busy host: "
  "compare guards, not with real hardware.")
w("- **Services:** apache2 2.4 prefork with mod_php 8.2 (4–16 workers); MariaDB 10.11 holding a "
  "MEMORY table of 5 000 × 60 KB rows, which makes mariadbd the largest process (≈ 420 MiB RSS) "
  "before the leak.")
w("- **The leak:** one request to `leak.php` whose memory grows by 8 MiB every 20 ms without end "
  "(a runaway PHP request; `memory_limit=-1`), in one prefork worker. Meanwhile `db.php` (a page "
  "that queries MariaDB) is fetched every 0.2 s and a 10 ms heartbeat (`vmprobe heartbeat`) records "
  f"its worst lateness. A run ends when the leak request ends (the worker died) or after "
  f"{leak_timeout} s, then 5 s settle and up to 60 s for db.php to answer again. Between runs "
  "what died is restarted (systemctl) and the table refilled.")
w("- **Guards**, each as packaged by Debian with its defaults unless said: **oomguard** = the "
  "project's .deb installed with `apt install ./oomguard_*.deb`, shipped config (act below 10 % "
  "available); **earlyoom** 1.7 (`systemctl start earlyoom`, 10 %/5 %); **nohang** 0.2.0 "
  "(`/etc/nohang/nohang.conf`); **systemd-oomd** 252 as documented in systemd-oomd.service(8): "
  "swap on zram, `ManagedOOMSwap=kill` on `-.slice`, `ManagedOOMMemoryPressure=kill` on "
  "`system.slice` and `user.slice`, default limits (60 % pressure for 30 s, 90 % swap); "
  "**kernel** = no guard. One boot per guard, its runs back to back.")
w("- **Columns:** *leak stopped* = the leaking worker died; *who died* = long-lived processes "
  "present before the run and gone after it (process names); *DB survived* = same mariadbd PID "
  "and it still answers the row count; *HTTP gap* = longest time without an answered db.php "
  "probe from the start of the leak until it answers again; *leaker dead after* = from the "
  "leak's start (its PID known) until the worker was gone; *stall* = worst heartbeat "
  "lateness; *innocent* = processes that died other than the leaking worker; *kernel kills* = "
  "`oom_kill` in /proc/vmstat. Median (min–max).")
w("")
w("## Results")
w("")
w("| guard | runs | leak stopped | who died (all runs) | DB survived | leaker dead after | HTTP gap | stall | innocent kills | kernel OOM kills |")
w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
out += rows
w("")
for g in guards:
    rs = [r for r in all_runs if r["guard"] == g]
    to = [r["run"] for r in rs if r["timed_out"]]
    kv = [f"{r['run']}: {', '.join(r['kernel_victims'])}" for r in rs if r["kernel_victims"]]
    od = [f"{r['run']}: {', '.join(r['oomd_kills'])}" for r in rs if r["oomd_kills"]]
    notes = []
    if to:
        notes.append(f"runs {to} hit the {leak_timeout} s bound with the leak still growing")
    if kv:
        notes.append("kernel victims " + "; ".join(kv))
    if od:
        notes.append("systemd-oomd killed " + "; ".join(od))
    if notes:
        w(f"- **{g}:** " + "; ".join(notes) + ".")
w("")
w("Boots (one per guard), host wall time and the host's load average at the end of the boot:")
w("")
for g in guards:
    rep = os.path.join(raw, f"{g}.report")
    hs = ""
    if os.path.exists(rep):
        m = re.search(r"host_seconds=([0-9.]+)", open(rep, errors="replace").read())
        hs = f"{float(m.group(1)):.0f} s" if m else "cut short"
    lp = os.path.join(raw, g, "loadavg")
    la = f"load {open(lp).read().strip()}" if os.path.exists(lp) else "load not recorded"
    done = len([r for r in all_runs if r["guard"] == g])
    if not done:
        w(f"- {g}: no completed run" + (f" (boot stopped after {hs})" if hs else ""))
    else:
        w(f"- {g}: {done} runs in {hs or 'a boot cut short (its console)'}; {la}")
w("")
w("The host had 2 cores shared with other builds and VMs, and the guards ran in separate boots "
  "at different times: the outcome columns (who died, DB survived, innocent and kernel kills) "
  "compare across guards; the time columns compare only under equal load.")
w("")
w("![chart](debian.png)")
open(os.path.join(docs, "debian.md"), "w").write("\n".join(out) + "\n")
print("\n".join(rows))

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

present = [g for g in guards if any(r["guard"] == g for r in all_runs)]
fig, ax = plt.subplots(1, 3, figsize=(13, 4))
for i, (key, title, scale) in enumerate([
    ("http_gap_ms", "HTTP gap (s): db.php unanswered", 1000.0),
    ("heartbeat_stall_ms", "heartbeat stall (s)", 1000.0),
]):
    data = [[r[key] / scale for r in all_runs if r["guard"] == g] for g in present]
    ax[i].boxplot(data, labels=present, showfliers=False)
    for j, d in enumerate(data):
        ax[i].scatter([j + 1] * len(d), d, s=12, alpha=0.7)
    ax[i].set_title(title)
    ax[i].tick_params(axis="x", rotation=30)
n = [len([r for r in all_runs if r["guard"] == g]) for g in present]
surv = [sum(r["db_survived"] for r in all_runs if r["guard"] == g) for g in present]
inn = [sum(r["innocent_kills"] for r in all_runs if r["guard"] == g) for g in present]
x = range(len(present))
ax[2].bar([i - 0.2 for i in x], surv, width=0.4, label="DB survived (runs)")
ax[2].bar([i + 0.2 for i in x], inn, width=0.4, label="innocent kills (total)")
ax[2].plot(list(x), n, "k_", markersize=20, label="runs")
ax[2].set_xticks(list(x))
ax[2].set_xticklabels(present, rotation=30)
ax[2].legend(fontsize=8)
ax[2].set_title("MariaDB survival, collateral kills")
fig.suptitle("Leaking PHP request beside MariaDB, Debian 12 VM (TCG)")
fig.tight_layout()
fig.savefig(os.path.join(docs, "debian.png"), dpi=90)
