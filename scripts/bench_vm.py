#!/usr/bin/python3
"""Side-by-side OOM benchmark in throwaway VMs (called by scripts/bench-vm.sh).

Boots tests/vm scenarios: the same storms with oomguard, earlyoom and the kernel alone, RUNS
times each, interleaved (run i of every daemon and storm before run i+1) so that host noise hits
all alike. Per run: who died, whether the kernel's OOM killer fired and whether it killed the
storm, time from the storm's start to the kill and to memory recovered, the lowest
MemAvailable, the worst scheduling stall of a 10 ms heartbeat. Writes docs/bench/vm.md,
docs/bench/vm-runs.jsonl and docs/bench/vm.png; prints the table.
"""
import argparse
import concurrent.futures as cf
import datetime
import json
import os
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join(REPO, "tests/vm/run.sh")

# Storm name -> guest variables. A 64 MiB bystander shows second (innocent) kills.
STORMS = {
    "fast1": ["STORM=fast", "THREADS=1"],
    "fast4": ["STORM=fast", "THREADS=4"],
    "slow": ["STORM=slow", "RATE=40M"],
    "forkstorm": ["STORM=forkstorm"],
}
# Daemon name -> guest variables. Same levels for both daemons: SIGTERM at 10 % of memory
# (and of swap), SIGKILL at 5 % (both defaults).
DAEMONS = {
    "oomguard": ["DAEMON=oomguard"],
    "earlyoom": ["DAEMON=earlyoom"],
    "nohang": ["DAEMON=nohang"],
    "kernel": ["DAEMON=none"],
}
EXTRA = {("oomguard", "forkstorm"): ["DARGS=--kill-unit tree"]}
COMMON = ["BYSTANDER_SIZE=64M", "SETTLE=2"]
# --trace: the scheduler's record in every run (VM_TRACE=1), to tell the daemon's share of the
# heartbeat's stalls from the storm's: each task's CPU time inside each stall of 5 ms or more.
TRACE = False
# A daemon's threads by their names in the record (nohang runs as python3.11).
COMMS = {"oomguard": ("oomguard",), "earlyoom": ("earlyoom",), "nohang": ("python3", "nohang")}
FIGURES = [
    ("reaction_ms", "reaction: kill - MemAvailable < 10 % (ms)", "lower"),
    ("kill_ms", "time to kill (ms)", "lower"),
    ("recovered_ms", "time to memory recovered (ms)", "lower"),
    ("min_avail_mib", "lowest MemAvailable (MiB)", "higher"),
    ("stall_ms", "worst heartbeat stall (ms)", "lower"),
    ("kill_stall_ms", "worst stall in the kill phase (ms)", "lower"),
]


def boot(daemon, storm, i):
    args = ["bash", RUN, "storm"] + DAEMONS[daemon] + STORMS[storm] + COMMON
    args += EXTRA.get((daemon, storm), [])
    if TRACE:
        args.append("VM_TRACE=1")
    p = subprocess.run(args, capture_output=True, text=True)
    kv, events = {}, []
    for line in p.stdout.splitlines():
        k, sep, v = line.partition("=")
        if not sep:
            continue
        if k == "event":
            try:
                events.append(json.loads(v))
            except ValueError:
                pass
        elif k == "trace_stall":
            kv.setdefault("trace_stalls", []).append(v)
        elif k == "earlyoom_kill":
            kv.setdefault("earlyoom_kills", []).append(v)
        else:
            kv[k] = v
    return summarize(daemon, storm, i, p.returncode, kv, events, p.stderr)


def num(kv, k, default=-1.0):
    try:
        return float(kv.get(k, default))
    except ValueError:
        return default


def summarize(daemon, storm, i, rc, kv, events, err):
    r = {"daemon": daemon, "storm": storm, "run": i, "ok": rc == 0 and "storm_pid" in kv}
    if not r["ok"]:
        r["error"] = err[-400:]
        return r
    pid = kv["storm_pid"]
    kernel_victims = [v.split(":", 1) for v in kv.get("kernel_victims", "").split()]
    died = []
    if kv.get("storm_alive") == "0":
        died.append(storm if storm == "forkstorm" else "hog")
    for who in ("innocent", "bystander"):
        if kv.get(f"{who}_alive") == "0":
            died.append(who)
    kill = num(kv, f"death_ms_{pid}")
    r.update(
        victims=died,
        second_kill=any(w in ("innocent", "bystander") for w in died),
        storm_survived=kv.get("storm_alive") == "1",
        kernel_fired=num(kv, "kernel_oom_kills", 0) > 0,
        kernel_killed_storm=any(p == pid for p, _ in kernel_victims),
        kernel_victims=[c for _, c in kernel_victims],
        kill_ms=kill if kill >= 0 else None,
        reaction_ms=kill - num(kv, "below10_ms") if kill >= 0 and num(kv, "below10_ms") >= 0 else None,
        recovered_ms=num(kv, "recovered_ms") if num(kv, "recovered_ms") >= 0 else None,
        min_avail_mib=round(num(kv, "min_avail_kb") / 1024, 1),
        stall_ms=num(kv, "heartbeat_worst_ms"),
        oomguard_kills=sum(1 for e in events if e.get("action") == "kill"),
        host_seconds=num(kv, "host_seconds"),
        kernel=kv.get("kernel"),
    )
    if storm == "forkstorm":
        r["stormchildren_alive"] = int(num(kv, "stormchildren_alive", 0))
    # oomguard's own account of its first kill: the decision's time (us), and how many signals
    # it sent over how long (ms after the decision).
    kills = [e for e in events if e.get("action") == "kill"]
    if kills:
        sigs = kills[0].get("signals") or []
        r["decision_us"] = kills[0].get("decision_us")
        r["signals"] = len(sigs)
        r["signals_ms"] = max((s.get("ms") or 0 for s in sigs), default=None)
    # The worst stall from the storm's start and when it ended, and every stall of 20 ms or
    # more ("END:LATE"), in ms from the storm's gate opening (the guest's CLOCK_MONOTONIC), to
    # place them against the kill.
    go = num(kv, "go_mono_ms")
    if go >= 0 and num(kv, "heartbeat_worst_at_ms") >= 0:
        every = [
            (float(e) - go, float(l))
            for e, _, l in (x.partition(":") for x in kv.get("heartbeat_stalls", "").split())
            if l
        ]
        r["stalls"] = [[round(e, 1), l] for e, l in every if l >= 20]
        # The worst stall from the storm's start on: the heartbeat starts a little before it,
        # and its own first wake-ups (or the harness starting it) are not the storm's.
        after = [(l, e) for e, l in every if e >= 0]
        worst = max(after, default=(0.0, None))
        r["stall_ms"] = worst[0]
        r["stall_end_ms"] = None if worst[1] is None else round(worst[1], 1)
        # The kill phase: from MemAvailable first below 10 % to 1 s after the storm died (the
        # watcher's times, moved onto the heartbeat's clock). Its worst stall is the guard's
        # kill and what follows it, apart from the storm's own rise; 0: none of 5 ms or more.
        t0 = num(kv, "watch_t0_mono_ms")
        below = num(kv, "below10_ms")
        if t0 >= 0 and below >= 0 and kill >= 0:
            lo, hi = t0 + below - go, t0 + kill + 1000 - go
            inside = [(l, e) for e, l in every if lo <= e <= hi and l >= 5]
            r["kill_stall_ms"] = max(inside, default=(0.0, None))[0]
            if inside:
                # When it ended, in ms from MemAvailable's crossing of 10 %.
                r["kill_stall_end_ms"] = round(max(inside)[1] - lo, 1)
    if TRACE:
        r.update(trace_shares(daemon, kv.get("trace_stalls", []), go))
    return r


def trace_shares(daemon, stalls, go):
    """From VM_TRACE's `trace_stall=END late MS oncpu_ms: comm:pid:prio=MS ...` lines (stalls
    of 5 ms or more): the most CPU the daemon's threads took inside one stall after the storm's
    start, and the worst stall in which they ran 0.5 ms or more (0: none)."""
    own = COMMS.get(daemon, ())
    most, worst_with = 0.0, 0.0
    for line in stalls:
        f = line.split()
        try:
            end, late = float(f[0]), float(f[2])
        except (IndexError, ValueError):
            continue
        if go >= 0 and end < go:
            continue
        mine = 0.0
        for cell in f[4:]:
            name, _, ms = cell.rpartition("=")
            if name.split(":", 1)[0].startswith(own) and own:
                mine += float(ms)
        most = max(most, mine)
        if mine >= 0.5:
            worst_with = max(worst_with, late)
    return {"daemon_in_stall_ms": round(most, 2), "stall_with_daemon_ms": worst_with}


def med_range(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None, None
    return statistics.median(xs), min(xs), max(xs)


def fmt(m, lo, hi):
    if m is None:
        return "–"
    return f"{m:.0f} ({lo:.0f}–{hi:.0f})"


def report(runs, args):
    lines = []
    out = lines.append
    ok = [r for r in runs if r["ok"]]
    kernel = next((r["kernel"] for r in ok if r.get("kernel")), "?")
    out("# OOM daemons side by side in a VM")
    out("")
    out(
        f"Written by `scripts/bench-vm.sh` on {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC: "
        f"{args.runs} runs per daemon and storm, interleaved, {args.jobs} VM{'s' if args.jobs != 1 else ''} at a time; "
        f"guest kernel {kernel}, 512 MiB RAM, no swap, qemu TCG (emulated: absolute times are "
        "slower than on hardware; compare daemons only within this run)."
    )
    out("")
    desc = {
        "fast1": "`fast1` = `oomguard-hog` allocating as fast as it can, 1 thread",
        "fast4": "`fast4` = the same with 4 threads",
        "slow": "`slow` = a 40 MiB/s leak",
        "forkstorm": "`forkstorm` = a parent forking 150 children of 3 MiB each while growing "
        "2 MiB per child (oomguard with `--kill-unit tree`)",
    }
    out(
        "Storms: " + "; ".join(desc[s] for s in args.storms) + ". A 64 MiB bystander and a 16 MiB "
        "innocent run beside every storm. Levels: oomguard and earlyoom defaults (SIGTERM at 10 %, "
        "SIGKILL at 5 % of memory); nohang 0.2.0 (Debian, run by Debian's python3.11 in the guest) "
        "with its soft/hard memory and swap thresholds set to the same 10 % / 5 %. Times from the "
        "storm's start; `recovered` = MemAvailable back to 80 % of its pre-storm value (– when it "
        "never was: the storm's children outlived their parent); `reaction` = from MemAvailable "
        "first below 10 % of MemTotal (the SIGTERM level) to the storm process gone (it does not "
        "depend on how fast the emulated hog ran; a few ms below 0 is the 5 ms sampling); stall = "
        "worst lateness of a 10 ms heartbeat from the storm's start to the run's end; "
        "`kill-phase stall` = the same "
        "from MemAvailable first below 10 % to 1 s after the storm died, where the guards act "
        "(0: no stall of 5 ms or more); `storm children left` = forkstorm children alive "
        "at the end (– for the other storms)."
    )
    out("")
    failed = [r for r in runs if not r["ok"]]
    if failed:
        out(f"{len(failed)} run(s) gave no result and are left out.")
        out("")
    out("| storm | daemon | runs | storm killed by the daemon | kernel fired first (killed the storm) | innocent killed "
        "| storm children left | reaction ms | time to kill ms | recovered ms | lowest MemAvailable MiB | worst stall ms "
        "| kill-phase stall ms |")
    out("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    stats = {}
    for storm in args.storms:
        for daemon in args.daemons:
            rs = [r for r in ok if r["storm"] == storm and r["daemon"] == daemon]
            if not rs:
                continue
            n = len(rs)
            by_daemon = sum(1 for r in rs if not r["storm_survived"] and not r["kernel_killed_storm"])
            fired = sum(1 for r in rs if r["kernel_killed_storm"])
            second = sum(1 for r in rs if r["second_kill"])
            s = {k: med_range([r.get(k) for r in rs]) for k, _, _ in FIGURES}
            stats[(storm, daemon)] = s
            left = fmt(*med_range([r.get("stormchildren_alive") for r in rs]))
            out(
                f"| {storm} | {daemon} | {n} | {by_daemon}/{n} | {fired}/{n} | {second}/{n} | {left} | "
                + " | ".join(fmt(*s[k]) for k, _, _ in FIGURES)
                + " |"
            )
    out("")
    out("Medians (range). Ratios oomguard/peer of the medians (below 1 is better for times "
        "and stalls, above 1 for lowest MemAvailable):")
    out("")
    out("| storm | peer | " + " | ".join(t for _, t, _ in FIGURES) + " |")
    out("| --- | --- | " + " | ".join("---" for _ in FIGURES) + " |")
    for storm in args.storms:
        og = stats.get((storm, "oomguard"))
        if not og:
            continue
        for peer in args.daemons:
            if peer == "oomguard" or (storm, peer) not in stats:
                continue
            ps = stats[(storm, peer)]
            cells = []
            for k, _, _ in FIGURES:
                a, b = og[k][0], ps[k][0]
                if a is None or not b:
                    cells.append("–")
                else:
                    cells.append(f"{a / b:.2f}" if a / b >= 0.005 else "<0.01")
            out(f"| {storm} | {peer} | " + " | ".join(cells) + " |")
    out("")
    traced = [r for r in ok if "daemon_in_stall_ms" in r]
    if traced:
        out("Traced runs (`--trace`: the scheduler's record, which slows the emulated CPU a "
            "little): the most CPU the daemon's threads took inside one heartbeat stall of 5 ms or "
            "more, and the worst stall in which they ran 0.5 ms or more (0: none). A stall in "
            "which the daemon did not run is the storm's (or the emulator's) alone.")
        out("")
        out("| storm | daemon | traced runs | daemon CPU inside a stall ms | worst stall with the daemon ms "
            "| runs whose worst stall had the daemon |")
        out("| --- | --- | --- | --- | --- | --- |")
        for storm in args.storms:
            for daemon in args.daemons:
                rs = [r for r in traced if r["storm"] == storm and r["daemon"] == daemon]
                if not rs:
                    continue
                part = sum(1 for r in rs if r["stall_with_daemon_ms"] and r["stall_with_daemon_ms"] >= r["stall_ms"])
                f1 = lambda xs: "{:.1f} ({:.1f}–{:.1f})".format(*med_range(xs))
                out(f"| {storm} | {daemon} | {len(rs)} | "
                    f"{f1([r['daemon_in_stall_ms'] for r in rs])} | "
                    f"{f1([r['stall_with_daemon_ms'] for r in rs])} | {part}/{len(rs)} |")
        out("")
    out("Per-run records: `docs/bench/vm-runs.jsonl`. Chart: `vm.png`. Remarks and the measurements "
        "behind the tree kill's waves and the deferred `process_mrelease`: `vm-remarks.md`.")
    return "\n".join(lines) + "\n", stats


def chart(stats, args, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing (apt-get install python3-matplotlib): no chart", file=sys.stderr)
        return False
    fig, axes = plt.subplots(1, len(FIGURES), figsize=(4.2 * len(FIGURES), 4))
    width = 0.8 / max(1, len(args.daemons))
    for ax, (k, title, better) in zip(axes, FIGURES):
        for j, daemon in enumerate(args.daemons):
            xs, ms, lo, hi = [], [], [], []
            for i, storm in enumerate(args.storms):
                s = stats.get((storm, daemon))
                if not s or s[k][0] is None:
                    continue
                m, a, b = s[k]
                xs.append(i + (j - (len(args.daemons) - 1) / 2) * width)
                ms.append(m)
                lo.append(m - a)
                hi.append(b - m)
            ax.bar(xs, ms, width, yerr=[lo, hi], capsize=3, label=daemon)
        ax.set_xticks(range(len(args.storms)))
        ax.set_xticklabels(args.storms)
        ax.set_title(f"{title}\n({better} is better)", fontsize=9)
    axes[0].legend(fontsize=8)
    fig.suptitle("OOM storms in a 512 MiB VM: median and range per daemon", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("VM_JOBS", "2")))
    ap.add_argument("--storms", default="fast1,fast4,slow,forkstorm")
    ap.add_argument("--daemons", default="oomguard,earlyoom,nohang,kernel")
    ap.add_argument("--out", default=os.path.join(REPO, "docs/bench"))
    ap.add_argument(
        "--report-only",
        action="store_true",
        help="no VM runs: rewrite vm.md and vm.png from the runs in OUT/vm-runs.jsonl",
    )
    ap.add_argument(
        "--trace",
        action="store_true",
        help="record the scheduler in every run (VM_TRACE=1) and report the daemon's share of "
        "the heartbeat's stalls",
    )
    args = ap.parse_args()
    global TRACE
    TRACE = args.trace
    args.storms = args.storms.split(",")
    args.daemons = args.daemons.split(",")
    if args.report_only:
        with open(os.path.join(args.out, "vm-runs.jsonl")) as f:
            runs = [json.loads(line) for line in f]
        args.storms = [s for s in args.storms if any(r["storm"] == s for r in runs)]
        args.runs = max(r["run"] for r in runs) + 1
        write(runs, args)
        return
    order = []
    for i in range(args.runs):
        ds = args.daemons[i % len(args.daemons):] + args.daemons[: i % len(args.daemons)]
        for storm in args.storms:
            for d in ds:
                order.append((d, storm, i))
    print(f"bench-vm: {len(order)} VM runs, {args.jobs} at a time", file=sys.stderr)
    runs = []
    with cf.ThreadPoolExecutor(args.jobs) as pool:
        for r in pool.map(lambda a: boot(*a), order):
            runs.append(r)
            tag = "ok" if r["ok"] else "NO RESULT"
            print(
                f"  {r['storm']:9} {r['daemon']:8} #{r['run']}: {tag} "
                + (f"victims={r['victims']} kill_ms={r['kill_ms']} kernel_fired={r['kernel_fired']}"
                   if r["ok"] else r.get("error", "")[-200:]),
                file=sys.stderr,
            )
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "vm-runs.jsonl"), "w") as f:
        for r in runs:
            f.write(json.dumps(r) + "\n")
    write(runs, args)


def write(runs, args):
    md, stats = report(runs, args)
    with open(os.path.join(args.out, "vm.md"), "w") as f:
        f.write(md)
    chart(stats, args, os.path.join(args.out, "vm.png"))
    print(md)


if __name__ == "__main__":
    main()
