#!/usr/bin/env python3
"""Report of scripts/bench-debian.sh: reads target/bench-debian/<guard>/r<round>/ (the guest's
result file and journal, the host's load average around the boot), writes docs/bench/debian-runs.jsonl, docs/bench/debian.md
and docs/bench/debian.png, prints the table.

    bench_debian.py RAW_DIR GUARDS LEAK_TIMEOUT_S [ROUNDS]
"""
import datetime
import json
import os
import re
import statistics
import sys

raw, guards, leak_timeout = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 5
docs = "docs/bench"
os.makedirs(docs, exist_ok=True)

KERNEL_KILL = re.compile(r"Out of memory: Killed process (\d+) \(([^)]+)\)")
OOMD_KILL = re.compile(r"systemd-oomd\[\d+\]: .*Killed (\S+) due to (.*)")


def read_kv(path):
    kv = {}
    if os.path.exists(path):
        for line in open(path, errors="replace").read().splitlines():
            if "=" in line:
                k, v = line.strip().split("=", 1)
                kv[k] = v
    return kv


def load_boot(guard, d):
    """One boot of the interleaved session: target/bench-debian/<guard>/r<round>/."""
    path = os.path.join(d, "out", "result")
    console = os.path.join(d, "console")
    host = read_kv(os.path.join(d, "host"))
    kv = {}
    if os.path.exists(console):
        # What the guest mirrored on its console: all there is of a boot cut short by the
        # host's timeout (the data disk's result file may miss its last, unflushed lines).
        for l in open(console, errors="replace").read().splitlines():
            if "RESULT " in l and "=" in l:
                k, v = l.split("RESULT ", 1)[1].strip().split("=", 1)
                kv[k] = v
    kv.update(read_kv(path))
    rep = os.path.join(d, "report")
    hs = None
    if os.path.exists(rep):
        m = re.search(r"host_seconds=([0-9.]+)", open(rep, errors="replace").read())
        hs = float(m.group(1)) if m else None
    rnd = int(host.get("round", os.path.basename(d).lstrip("r") or 0))
    boot = {"guard": guard, "round": rnd, "position": int(host.get("position", 0)),
            "start": host.get("start"), "load_start": host.get("load_start"),
            "load_end": host.get("load_end"), "host_seconds": hs, "kv": kv,
            "attempts": int(host.get("attempts", "1")), "redone": host.get("redone") == "1"}
    if "r1_died" not in kv:
        return boot, None
    # Cut short: the host stopped the VM (VM_TIMEOUT) after the run's leak ended but before
    # it had reported everything; what it did report counts, the rest is unknown (None).
    cut = "r1_http_gap_ms" not in kv
    console_text = open(console, errors="replace").read() if os.path.exists(console) else ""
    g = lambda k, dflt="": kv.get("r1_" + k, dflt)
    leak = g("leak_pid")
    # Kernel threads (kworker/...) that came and went are not deaths.
    died = [x for x in g("died").split() if ":" in x and not x.split(":", 1)[1].startswith("kworker/")]
    journal_path = os.path.join(d, "out", "r1.journal")
    journal = open(journal_path, errors="replace").read() if os.path.exists(journal_path) else ""
    # Debian's phpsessionclean.timer (at :09 and :39) runs sessionclean and php8.2 for a few
    # seconds; when the journal shows that job ending on its own, its processes were not killed.
    cleaned = "phpsessionclean.service: Deactivated successfully" in journal
    if cleaned:
        died = [x for x in died if x.split(":", 1)[1] not in ("sessionclean", "php8.2")]
    kernel_victims = [f"{c}({p_})" for p_, c in KERNEL_KILL.findall(journal if not cut else console_text)]
    oomd = [m[0] for m in OOMD_KILL.findall(journal)]
    leak_death = float(g(f"death_ms_{leak}", "-1"))
    load1 = lambda s: float(s.split()[0]) if s else None
    rec = {
        "session": session,
        "guard": guard,
        "run": rnd,
        "round": rnd,
        "position": boot["position"],
        "start": boot["start"],
        "host_load_start": load1(boot["load_start"]),
        "host_load_end": load1(boot["load_end"]),
        "host_loadavg_end": boot["load_end"],
        "host_seconds": hs,
        "boot_attempts": boot["attempts"],
        "redone_after_session": boot["redone"],
        "leaker_died": g("leaker_died") == "1",
        "leak_request_ms": int(g("leak_ms", "0")),
        "timed_out": int(g("leak_ms", "0")) >= leak_timeout * 1000 - 500 and g("leaker_died") != "1",
        "leaker_death_ms": leak_death if leak_death >= 0 else None,
        "died": [x.split(":", 1)[1] for x in died],
        "innocent_kills": len([x for x in died if x.split(":", 1)[0] != leak]),
        "cut_short": cut,
        "db_survived": None if cut and "r1_db_answers" not in kv else g("db_same_pid") == "1" and g("db_answers") == "1",
        "db_same_pid": g("db_same_pid") == "1",
        "db_answers": None if cut and "r1_db_answers" not in kv else g("db_answers") == "1",
        "http_after": g("http_after") or None,
        "http_gap_ms": None if cut else int(g("http_gap_ms", "0")),
        "heartbeat_stall_ms": None if cut else float(g("heartbeat_ms", "-1")),
        # The guard process's CPU time (utime + stime) from the leak's start to db.php's answer.
        "guard_cpu_ms": int(g("guard_cpu_ms")) if g("guard_cpu_ms") not in (None, "") else None,
        # When the worst stall ended, in ms after the leak request ended (the worker's death
        # or the client's time-out); negative: before.
        "heartbeat_stall_after_leak_ms": (int(g("heartbeat_at_ms")) - int(g("leak_ms", "0")))
            if not cut and g("heartbeat_at_ms") not in (None, "", "-1") else None,
        # Cut short: the kernel's kills as its console printed them.
        "kernel_oom_kills": len(KERNEL_KILL.findall(console_text)) if cut else int(g("kernel_kills", "0")),
        "kernel_victims": kernel_victims,
        "oomd_kills": oomd,
        "min_avail_kb": int(g("min_avail_kb", "-1")),
        "phpsessionclean_ran": "phpsessionclean" in journal,
    }
    if guard == "systemd-oomd":
        rec["oomd_active"] = kv.get("guard_active")
        rec["oomd_monitored_before"] = kv.get("oomd_monitored", "").split()
        rec["oomd_monitored_after"] = g("oomd_monitored").split()
        rec["oomd_active_after"] = g("guard_active")
        rec["swap_kb"] = int(kv.get("swap_kb", "0") or 0)
        # system.slice's memory pressure as oomctl showed it after the run.
        oc = os.path.join(d, "out", "r1.oomctl.txt")
        m = re.search(r"Path: /system\.slice\n\s*Memory Pressure Limit: [^\n]*\n\s*Pressure: ([^\n]*)",
                      open(oc, errors="replace").read()) if os.path.exists(oc) else None
        rec["oomd_system_slice_pressure_after"] = m.group(1).strip() if m else None
        rec["oomd_kill_reasons"] = sorted({"swap" if "swap used" in x else "pressure" if "pressure" in x else x
                                           for x in (y[1] for y in OOMD_KILL.findall(journal))})
    return boot, rec


session = open(os.path.join(raw, "session")).read().strip() if os.path.exists(os.path.join(raw, "session")) else None
boots, all_runs, meta = [], [], {}
for gd in guards:
    gdir = os.path.join(raw, gd)
    dirs = sorted((x for x in (os.listdir(gdir) if os.path.isdir(gdir) else []) if re.fullmatch(r"r\d+", x)),
                  key=lambda x: int(x[1:]))
    for x in dirs:
        boot, rec = load_boot(gd, os.path.join(gdir, x))
        boots.append(boot)
        if boot["kv"]:
            meta.setdefault(gd, boot["kv"])
        if rec:
            all_runs.append(rec)
all_runs.sort(key=lambda r: (r["start"] or "", r["guard"]))

with open(os.path.join(docs, "debian-runs.jsonl"), "w") as f:
    for r in all_runs:
        f.write(json.dumps(r) + "\n")


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def rng(xs, fmt):
    return f"{fmt(med(xs))} ({fmt(min(xs))}–{fmt(max(xs))})" if xs else "–"


# Remarks written by hand after reading the session's runs (why a guard did what it did):
# docs/bench/debian-remarks.md, copied into debian.md.
_rp = os.path.join(docs, "debian-remarks.md")
REMARKS = open(_rp).read().strip() if os.path.exists(_rp) else ""
def kills_text(kills):
    """systemd-oomd's kills of one run: each cgroup once, with how often it was killed."""
    n = {}
    for c in kills:
        n[c] = n.get(c, 0) + 1
    return ", ".join(f"{c} ×{k}" if k > 1 else c for c, k in n.items())


sec = lambda v: f"{v / 1000:.1f} s"
ms = lambda v: f"{v:.0f} ms"
rows = []
for g in guards:
    rs = [r for r in all_runs if r["guard"] == g]
    if not rs:
        rows.append(f"| {g} | 0 | no result | | | | | | | | | |")
        continue
    n = len(rs)
    died = {}
    for r in rs:
        for c in r["died"]:
            died[c] = died.get(c, 0) + 1
    who = ", ".join(f"{c} ×{k}" for c, k in sorted(died.items(), key=lambda x: -x[1])) or "nobody"
    loads = [r["host_load_start"] for r in rs if r["host_load_start"] is not None]
    cut = sum(bool(r.get("cut_short")) for r in rs)
    dbk = [r for r in rs if r["db_survived"] is not None]
    rows.append(
        f"| {g} | {n}" + (f" ({cut} cut short)" if cut else "") + " | "
        f"{sum(r['leaker_died'] for r in rs)}/{n} | {who} | "
        f"{sum(bool(r['db_survived']) for r in dbk)}/{len(dbk)}"
        + (f" ({n - len(dbk)} unknown)" if len(dbk) < n else "") + " | "
        f"{rng([r['leaker_death_ms'] for r in rs if r['leaker_death_ms'] is not None], sec)} | "
        f"{rng([r['http_gap_ms'] for r in rs if r['http_gap_ms'] is not None], sec)} | "
        f"{rng([r['heartbeat_stall_ms'] for r in rs if r['heartbeat_stall_ms'] is not None], ms)} | "
        f"{rng([r['guard_cpu_ms'] for r in rs if r.get('guard_cpu_ms') is not None], ms)} | "
        f"{sum(r['innocent_kills'] for r in rs)} | {sum(r['kernel_oom_kills'] for r in rs)} | "
        f"{rng(loads, lambda v: f'{v:.1f}')} |"
    )

host = os.uname()
first = min((b["start"] for b in boots if b["start"]), default=None)
last = max((b["start"] for b in boots if b["start"]), default=None)
out = []
w = out.append
w("# The seed's story on Debian 12: oomguard, earlyoom, nohang, systemd-oomd, the kernel alone")
w("")
w(f"Written by `scripts/bench-debian.sh` on {datetime.date.today().isoformat()}; per-run records in "
  "`debian-runs.jsonl`, chart `debian.png`. Raw guest output (results, journals, probe logs, "
  "`oomctl dump`) stays in `target/bench-debian/<guard>/r<round>/`.")
w("")
w(f"All runs below come from one interleaved session (boots started {first} – {last}). It "
  "replaces the earlier runs of this file, which ran one boot per guard at different times and "
  "host loads (the kernel alone had 2 runs, systemd-oomd none).")
w("")
w("## Method")
w("")
w("- **Machine:** the VM of `tests/vm/debian/`: Debian bookworm built with mmdebstrap "
  "(`tests/vm/debian/packages.txt`), systemd 252 as PID 1, cgroup v2, journald, "
  f"linux-image-cloud-amd64, qemu `-accel tcg` (no KVM), 2 vCPUs, MemTotal "
  f"{int(next((m.get('mem_total_kb', 0) for m in meta.values() if m), 0)) // 1024} MiB, no swap "
  "(except systemd-oomd: 512 MiB zram, which its swap rule needs). Host: "
  f"{host.machine}, 2 cores shared with other work (other helpers' builds and VMs), so absolute "
  "times are TCG times on a busy host: compare guards, not with real hardware.")
w("- **Services:** apache2 2.4 prefork with mod_php 8.2 (4–16 workers); MariaDB 10.11 holding a "
  "MEMORY table of 5 000 × 60 KB rows, which makes mariadbd the largest process (≈ 420 MiB RSS) "
  "before the leak.")
w("- **The leak:** one request to `leak.php` whose memory grows by 8 MiB every 20 ms without end "
  "(a runaway PHP request; `memory_limit=-1`), in one prefork worker. Meanwhile `db.php` (a page "
  "that queries MariaDB) is fetched every 0.2 s and a 10 ms heartbeat (`vmprobe heartbeat`) records "
  f"its worst lateness. A run ends when the leak request ends (the worker died) or after "
  f"{leak_timeout} s (the client gives up; the worker leaks on), then 5 s settle and up to 60 s "
  "for db.php to answer again.")
w("- **Guards**, each as packaged by Debian with its defaults unless said: **oomguard** = the "
  "project's .deb installed with `apt install ./oomguard_*.deb`, shipped config (act below 10 % "
  "available); **earlyoom** 1.7 (`systemctl start earlyoom`, 10 %/5 %); **nohang** 0.2.0 "
  "(`/etc/nohang/nohang.conf`); **systemd-oomd** 252 (Debian's `systemd-oomd` package) as "
  "documented in systemd-oomd.service(8) and oomd.conf(5): 512 MiB swap on zram, drop-ins "
  "`ManagedOOMSwap=kill` on `-.slice` and `ManagedOOMMemoryPressure=kill` on `system.slice` "
  "(where apache2.service and mariadb.service run) and `user.slice`, default limits, "
  "`systemctl start systemd-oomd`; each boot checks that it is active and that `oomctl dump` "
  "lists the managed cgroups (below); **kernel** = no guard.")
w(f"- **Session:** {rounds} rounds; round r boots the VM once per guard in an order rotated by r "
  f"({', '.join(guards)} in round 1, then starting one guard later each round), one run per "
  "boot on a fresh copy of the image (`snapshot=on`: nothing carries over from a run to the "
  "next), at most 2 boots at once, taken from the queue in that order. Load on the shared "
  "host thus falls on every guard alike; each run records the host's load average when its "
  "boot starts and ends (`host_load_start`, `host_loadavg_end` in the jsonl).")
w("- **Columns:** *leak stopped* = the leaking worker died; *who died* = long-lived processes "
  "present before the run and gone after it (process names); *DB survived* = same mariadbd PID "
  "and it still answers the row count; *HTTP gap* = longest time without an answered db.php "
  "probe from the start of the leak until it answers again; *leaker dead after* = from the "
  "leak's start (its PID known) until the worker was gone; *stall* = worst lateness of a "
  "10 ms heartbeat (`vmprobe heartbeat`, writing to /dev/shm); *guard CPU* = the guard "
  "process's CPU time (utime + stime, 10 ms ticks) from the leak's start until db.php "
  "answered again; *innocent* = processes that died other than the leaking worker; *kernel kills* = "
  "`oom_kill` in /proc/vmstat; *host load* = the host's 1-minute load average as the run's "
  "boot started. Median (min–max).")
w("")
w("## Results")
w("")
w("| guard | runs | leak stopped | who died (all runs) | DB survived | leaker dead after | HTTP gap | stall | guard CPU | innocent kills | kernel OOM kills | host load |")
w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
out += rows
w("")
for g in guards:
    rs = [r for r in all_runs if r["guard"] == g]
    to = [r["run"] for r in rs if r["timed_out"]]
    kv = [f"{r['run']}: {', '.join(r['kernel_victims'])}" for r in rs if r["kernel_victims"]]
    od = [f"{r['run']}: {kills_text(r['oomd_kills'])}" for r in rs if r["oomd_kills"]]
    notes = []
    if to:
        notes.append(f"rounds {to} hit the {leak_timeout} s bound with the leak still growing")
    if kv:
        notes.append("kernel victims in round " + "; ".join(kv))
    if od:
        notes.append("systemd-oomd killed in round " + "; ".join(od))
    cs = [r["run"] for r in rs if r.get("cut_short")]
    if cs:
        notes.append(f"in round {cs} the host stopped the VM at its time limit "
                     f"({420 + leak_timeout + 150 + (300 if g == 'kernel' else 0)} s of host time for boot and run) while the guest "
                     "was still stalled after the leak: those runs count for what they reported "
                     "(who died, the leak stopped, mariadbd's PID), their times and the "
                     "database's answer are unknown and left out")
    missing = [b["round"] for b in boots if b["guard"] == g and not any(
        r["round"] == b["round"] for r in rs)]
    again = [b["round"] for b in boots if b["guard"] == g and b["redone"]]
    if again:
        notes.append(f"the boot of round {again} reported nothing in the session (its console "
                     "is in `r<round>.session/`) and was booted again after the session's last round")
    if missing:
        notes.append(f"no result from the boot of round {missing} (see its report)")
    sa = [r["heartbeat_stall_after_leak_ms"] for r in rs if r.get("heartbeat_stall_after_leak_ms") is not None]
    if sa:
        notes.append("the worst heartbeat stall ended, per run, at " + ", ".join(
            f"{v / 1000:+.1f} s" for v in sa) + " from the end of the leak request")
    if notes:
        w(f"- **{g}:** " + "; ".join(notes) + ".")
w("")
om = [r for r in all_runs if r["guard"] == "systemd-oomd"]
w("## systemd-oomd: configured, monitoring, and what it did")
w("")
if om:
    mk = next((m for m in [b["kv"] for b in boots if b["guard"] == "systemd-oomd"] if m), {})
    w(f"- Unit properties in the guest: {mk.get('oomd_settings', '?')}; swap "
      f"{int(mk.get('swap_kb', '0') or 0) // 1024} MiB (zram).")
    w(f"- `oomctl dump` limits: {mk.get('oomd_limits', '?').rstrip(';').replace(';', '; ')}.")
    act = sum(r.get("oomd_active") == "active" for r in om)
    mon = [" ".join(r.get("oomd_monitored_before", [])) for r in om]
    w(f"- Active before the run in {act}/{len(om)} boots; monitored cgroups (`oomctl dump`, "
      f"section:path) before each run: " + "; ".join(f"round {r['run']}: `{m or 'none'}`" for r, m in zip(om, mon)) + ".")
    w("- After each run: " + "; ".join(
        f"round {r['run']}: {r.get('oomd_active_after') or '?'}, `{' '.join(r.get('oomd_monitored_after', [])) or 'none'}`"
        for r in om) + ".")
    w("- system.slice's memory pressure in `oomctl dump` after each run (the pressure rule acts "
      "above its limit sustained for its duration): " + "; ".join(
        f"round {r['run']}: {r.get('oomd_system_slice_pressure_after') or '?'}" for r in om) + ".")
    w("- Rule behind each kill (its journal line): " + "; ".join(
        f"round {r['run']}: {', '.join(r.get('oomd_kill_reasons') or ['none'])}" for r in om) + ".")
    k = sum(bool(r["oomd_kills"]) for r in om)
    w(f"- systemd-oomd killed something in {k}/{len(om)} runs"
      + (": " + "; ".join(f"round {r['run']}: {kills_text(r['oomd_kills'])}" for r in om if r["oomd_kills"]) if k else "")
      + f"; the kernel's OOM killer fired in {sum(r['kernel_oom_kills'] > 0 for r in om)}/{len(om)}.")
else:
    w("- no completed run.")
w("")
w(REMARKS)
w("")
w("## The session, round by round")
w("")
w("Order of the boots in each round and the host's 1-minute load average at each boot's start "
  "(and end), host wall time of the boot:")
w("")
w("| round | " + " | ".join(f"#{i + 1}" for i in range(len(guards))) + " |")
w("| --- |" + " --- |" * len(guards))
for r in sorted({b["round"] for b in boots}):
    cells = []
    for b in sorted((b for b in boots if b["round"] == r), key=lambda b: b["position"]):
        ls = (b["load_start"] or "?").split()[0]
        le = (b["load_end"] or "?").split()[0]
        hs = f"{b['host_seconds']:.0f} s" if b["host_seconds"] else "no result"
        cut = " (cut short)" if any(x["guard"] == b["guard"] and x["round"] == r and x.get("cut_short")
                                     for x in all_runs) else ""
        again = f" (booted again after round {max(x['round'] for x in boots)})" if b["redone"] else ""
        cells.append(f"{b['guard']} {ls}→{le}, {hs}{cut}{again}")
    w(f"| {r} | " + " | ".join(cells) + " |")
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
    data = [[r[key] / scale for r in all_runs if r["guard"] == g and r[key] is not None] for g in present]
    ax[i].boxplot(data, labels=present, showfliers=False)
    for j, d in enumerate(data):
        ax[i].scatter([j + 1] * len(d), d, s=12, alpha=0.7)
    ax[i].set_title(title)
    ax[i].tick_params(axis="x", rotation=30)
n = [len([r for r in all_runs if r["guard"] == g]) for g in present]
surv = [sum(bool(r["db_survived"]) for r in all_runs if r["guard"] == g) for g in present]
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
