#!/usr/bin/env python3
"""Makes the project's kernel OOM report fixtures (tests/fixtures/oom-reports/); run by
scripts/make-oom-fixtures.sh, which documents the whole procedure.

  oom_fixtures.py vm CASE RUN_OUTPUT OUT_BASE      one VM run (tests/vm/run.sh oomreport CASE=...)
  oom_fixtures.py host CASE OOMGUARD OUT_BASE      one cgroup v1 memcg OOM on this host (root)

Writes OUT_BASE.log (the kernel's lines as captured) and OUT_BASE.json (the facts, same shape as
the shared corpus: ../shared/corpus/oom-reports/README.md). The facts are read off the lines by
this script's own regular expressions (not by oomguard's parser, which the fixtures test) and
cross-checked against what the run itself knows (the PIDs it started, their names, cgroups,
oom_score_adj and the kernel's kill counters); any disagreement aborts without writing.
"""

import json
import os
import re
import subprocess
import sys
import time

DMESG = re.compile(r"^\[\s*\d+\.\d+\] ?")
KMSG = re.compile(r"^\d+,\d+,\d+,[^;]*;")
HEADER = re.compile(
    r"^(.*) invoked oom-killer: gfp_mask=(0x[0-9a-f]+)\((.*)\), order=(-?\d+), oom_score_adj=(-?\d+)$"
)
CPU = re.compile(r"^CPU: \d+ (?:UID: \d+ )?PID: (\d+) Comm: ")
ROW = re.compile(r"^\[\s*\d+\]")
KILLED = re.compile(
    r"^(?:Memory cgroup out of memory|Out of memory): Killed process (\d+) \((.*)\) "
    r"total-vm:(\d+)kB, anon-rss:(\d+)kB, file-rss:(\d+)kB, shmem-rss:(\d+)kB, "
    r"UID:(\d+) pgtables:(\d+)kB oom_score_adj:(-?\d+)$"
)
REAPED = re.compile(r"^oom_reaper: reaped process (\d+) ")
GROUP = re.compile(r"^Tasks in (\S+) are going to be killed due to memory.oom.group set$")
FIELDS = [
    "invocation", "kind", "invoker_comm", "invoker_pid", "gfp_mask", "gfp_flags", "order",
    "invoker_oom_score_adj", "constraint", "memcg", "task_memcg", "victim_pid", "victim_comm",
    "total_vm_kb", "anon_rss_kb", "file_rss_kb", "shmem_rss_kb", "uid", "pgtables_kb",
    "victim_oom_score_adj", "score", "tasks_listed", "reaped",
]


def die(msg):
    sys.exit(f"oom_fixtures: {msg}")


def message(line):
    """The kernel message of a dmesg line or a /dev/kmsg record; None for kmsg metadata."""
    if line.startswith(" "):
        return None
    for p in (DMESG, KMSG):
        m = p.match(line)
        if m:
            return line[m.end():]
    return line


def facts(lines):
    """One entry per kill, grouped by invocation, plus the task dump rows per invocation."""
    invocations = []
    cur = None
    in_dump = False
    for line in lines:
        msg = message(line)
        if msg is None:
            continue
        m = HEADER.match(msg)
        if m:
            cur = {
                "invoker_comm": m[1], "invoker_pid": None, "gfp_mask": m[2], "gfp_flags": m[3],
                "order": int(m[4]), "invoker_oom_score_adj": int(m[5]), "constraint": None,
                "memcg": None, "task_memcg": None, "tasks_listed": None, "rows": [],
                "kills": [], "group": None,
            }
            invocations.append(cur)
            in_dump = False
            continue
        if cur is None:
            if KILLED.match(msg):
                die("a Killed process line without a header (not expected in a fixture run)")
            continue
        m = CPU.match(msg)
        if m and cur["invoker_pid"] is None:
            cur["invoker_pid"] = int(m[1])
            continue
        if msg.startswith("Tasks state (memory values in pages):"):
            cur["tasks_listed"] = 0
            in_dump = True
            continue
        if in_dump and ROW.match(msg):
            cur["tasks_listed"] += 1
            cur["rows"].append(msg)
            continue
        if msg.startswith("oom-kill:"):
            in_dump = False
            kv = dict(p.split("=", 1) for p in msg[len("oom-kill:"):].split(",") if "=" in p)
            cur["constraint"] = kv.get("constraint")
            cur["memcg"] = kv.get("oom_memcg")
            cur["task_memcg"] = kv.get("task_memcg")
            continue
        m = GROUP.match(msg)
        if m:
            cur["group"] = m[1]
            continue
        m = KILLED.match(msg)
        if m:
            pid = int(m[1])
            if any(k["victim_pid"] == pid for k in cur["kills"]):
                continue  # a group kill line reprinted for the first victim: one kill
            cur["kills"].append({
                "victim_pid": pid, "victim_comm": m[2], "total_vm_kb": int(m[3]),
                "anon_rss_kb": int(m[4]), "file_rss_kb": int(m[5]), "shmem_rss_kb": int(m[6]),
                "uid": int(m[7]), "pgtables_kb": int(m[8]), "victim_oom_score_adj": int(m[9]),
                "reaped": None,
            })
            continue
        m = REAPED.match(msg)
        if m:
            for inv in invocations:
                for k in inv["kills"]:
                    if k["victim_pid"] == int(m[1]):
                        k["reaped"] = True
    events = []
    for n, inv in enumerate(invocations, 1):
        kind = {"CONSTRAINT_NONE": "global", "CONSTRAINT_MEMCG": "memcg"}.get(inv["constraint"])
        for j, k in enumerate(inv["kills"] or [None]):
            e = {f: None for f in FIELDS}
            e.update({f: inv[f] for f in FIELDS if f in inv})
            e["invocation"], e["kind"] = n, kind
            if k:
                e.update(k)
            if j > 0:
                e["task_memcg"] = None
                e["notes"] = "memory.oom.group kill"
            events.append(e)
    return events, invocations


def check(ok, what):
    if not ok:
        die(f"cross-check failed: {what}")


def write(base, lines, doc):
    with open(base + ".log", "w") as f:
        f.write("".join(line + "\n" for line in lines))
    with open(base + ".json", "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    n = sum(1 for e in doc["events"] for k, v in e.items() if k != "notes" and v is not None)
    print(f"{base}: {len(doc['events'])} kill(s), {n} non-null facts")


VM_NOTES = {
    "global": "A hog (oomguard-hog, 1 thread) fills the VM; the kernel's global OOM killer kills it.",
    "threads": "A 4-thread hog fills the VM; the invoker is whichever of its threads faulted "
               "(invoker_pid is that thread's id, not the process id).",
    "protected": "A 200 MiB process \"precious\" at oom_score_adj -1000 is bigger than the hog "
                 "when memory runs out; the kernel passes over it and kills the hog (the task dump "
                 "lists precious at -1000).",
    "nodump": "vm.oom_dump_tasks=0: no \"Tasks state\" table (tasks_listed null).",
    "memcg": "cgroup v2 group /app with memory.max=96M holds a 24 MiB bystander and a hog at "
             "oom_score_adj 500: a memcg OOM (CONSTRAINT_MEMCG, oom_memcg=/app) kills the hog.",
    "group": "cgroup v2 /app (memory.max=96M) with a job /app/job (memory.oom.group=1) holding a "
             "16 MiB jobmate and the hog: one memcg OOM invocation kills both job members; the kernel "
             "prints a kill line for a thread of the hog too (and counts it in oom_kill).",
}


def vm(case, run_output, base):
    truth, lines = {}, []
    for raw in open(run_output, encoding="utf-8", errors="surrogateescape"):
        raw = raw.rstrip("\n")
        k, _, v = raw.partition("=")
        if k == "kmsg":
            lines.append(v.rstrip())
        else:
            truth[k] = v
    check(truth.get("case") == case and truth.get("scenario_exit") == "0",
          f"the VM run did not complete case {case}: {truth}")
    events, invs = facts(lines)
    hog = int(truth["hog_pid"])
    check(truth["hog_exit"] == "137", "the hog did not die of SIGKILL")
    check(len(invs) == 1, f"{len(invs)} OOM invocations, expected 1")
    inv = invs[0]
    kills = [k["victim_pid"] for k in inv["kills"]]
    check(int(truth["oom_kills_after"]) - int(truth["oom_kills_before"]) == len(kills),
          f"vmstat oom_kill moved by {int(truth['oom_kills_after']) - int(truth['oom_kills_before'])}, "
          f"the log shows kills of {kills}")
    first = events[0]
    check(first["victim_comm"] in ("hog", "jobmate"), f"victim {first['victim_comm']}")
    if case == "group":
        # The group kill walks the group's tasks thread by thread: a hog thread gets a kill
        # line (and a count in oom_kill) of its own.
        extra = [k for k in inv["kills"] if k["victim_pid"] not in (hog, int(truth["jobmate_pid"]))]
        check(set(kills) >= {hog, int(truth["jobmate_pid"])}
              and all(k["victim_comm"] == "hog" and k["victim_pid"] > hog for k in extra),
              f"group kills {kills}, expected hog {hog}, its threads and jobmate {truth['jobmate_pid']}")
        for e in events[1:]:
            if e["victim_pid"] in [k["victim_pid"] for k in extra]:
                e["notes"] = f"memory.oom.group kill of a thread of hog {hog} (one line per thread)"
        check(inv["group"] == truth["task_memcg"], f"group line names {inv['group']}")
        check(first["task_memcg"] == truth["task_memcg"], f"task_memcg {first['task_memcg']}")
    else:
        check(kills == [hog], f"kills {kills}, expected only the hog {hog}")
    if case in ("memcg", "group"):
        check(first["kind"] == "memcg" and first["memcg"] == truth["memcg"],
              f"kind {first['kind']} memcg {first['memcg']}")
        check(truth.get("app_oom_kill") == str(len(kills)), "app memory.events oom_kill")
    else:
        check(first["kind"] == "global" and first["memcg"] is None,
              f"kind {first['kind']} memcg {first['memcg']}")
    if case == "memcg":
        check(first["victim_oom_score_adj"] == 500, "the hog's oom_score_adj 500")
    # The hog allocates in threads of its own: the invoker is one of them (a thread id), or in
    # the group case possibly the jobmate.
    invokers = ("hog", "jobmate") if case == "group" else ("hog",)
    check(first["invoker_comm"] in invokers and first["invoker_pid"] is not None,
          f"invoker {first['invoker_comm']} {first['invoker_pid']}")
    if first["invoker_comm"] == "hog":
        check(first["invoker_pid"] > hog, f"invoker pid {first['invoker_pid']}, hog {hog}")
    if case == "protected":
        prec = truth["precious_pid"]
        row = [r for r in inv["rows"] if re.match(rf"^\[\s*{prec}\]", r)]
        check(truth["precious_adj"] == "-1000" and row and row[0].split()[-2] == "-1000",
              f"precious {prec} at -1000 in the dump: {row}")
    if case == "nodump":
        check(first["tasks_listed"] is None, "a task dump with vm.oom_dump_tasks=0")
    else:
        check(first["tasks_listed"] and first["tasks_listed"] >= 2, f"a task dump ({first['tasks_listed']} rows)")
    kernel = truth["kernel"]
    doc = {
        "source": f"oomguard's own VM harness: tests/vm/run.sh oomreport CASE={case} (QEMU TCG, "
                  f"512 MiB, busybox initramfs, Debian kernel {kernel}), made by "
                  "scripts/make-oom-fixtures.sh",
        "kernel": kernel,
        "format": "dmesg",
        "notes": "Complete guest dmesg from boot (busybox dmesg). " + VM_NOTES[case],
        "events": events,
    }
    write(base, lines, doc)


def own_v1_memcg():
    for line in open("/proc/self/cgroup"):
        _, ctl, path = line.rstrip("\n").split(":", 2)
        if "memory" in ctl.split(","):
            d = "/sys/fs/cgroup/memory" + path.rstrip("/")
            if os.path.exists(d + "/memory.limit_in_bytes"):
                return d
    die("no cgroup v1 memory controller for this process (needs root)")


HOST_CASES = {
    # name: (limit MiB, holder MiB or 0, grower MiB, uid of the holder, notes)
    "cgroup1-memcg": (64, 0, 256, None,
                      "One process (comm grower) grows in a cgroup v1 memory group limited to "
                      "64 MiB and is killed by the memcg OOM killer."),
    "cgroup1-invoker-not-victim": (
        64, 40, 40, 65534,
        "cgroup v1 group limited to 64 MiB: \"holder\" (uid 65534) holds 40 MiB, then \"grower\" "
        "(root) grows; grower invokes the OOM killer, which kills the bigger holder, so the "
        "invoker is not the victim."),
}


GENERIC_PARENT = "/oomguard-host"


def host(case, hog, base):
    limit, holder_mb, grower_mb, uid, notes = HOST_CASES[case]
    own = own_v1_memcg()
    group = f"{own}/oomguard-fixture-{case}-{os.getpid()}"
    rel = group[len("/sys/fs/cgroup/memory"):]
    os.mkdir(group)
    procs = []
    kmsg = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    try:
        with open(group + "/memory.limit_in_bytes", "w") as f:
            f.write(str(limit << 20))

        def start(name, mb, as_uid):
            def enter():
                # Into the group first (root writes cgroup.procs), then the user, then exec.
                with open(group + "/cgroup.procs", "w") as f:
                    f.write(str(os.getpid()))
                if as_uid is not None:
                    os.setgroups([])
                    os.setgid(as_uid)
                    os.setuid(as_uid)
            p = subprocess.Popen(
                [hog, "--max", f"{mb}M", "--name", name], preexec_fn=enter,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            procs.append(p)
            return p

        os.lseek(kmsg, 0, os.SEEK_END)
        holder = None
        if holder_mb:
            holder = start("holder", holder_mb, uid)
            check("holding" in holder.stdout.readline() + holder.stdout.readline(),
                  "the holder did not reach its size")
        grower = start("grower", grower_mb, None)
        victim = holder or grower
        deadline = time.time() + 60
        while victim.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        check(victim.returncode == -9, f"the expected victim ended with {victim.returncode}")
        time.sleep(1)
        records = []
        while True:
            try:
                rec = os.read(kmsg, 8192).decode("utf-8", "surrogateescape")
                records.extend(rec.rstrip("\n").split("\n"))
            except BlockingIOError:
                break
            except BrokenPipeError:  # records overwritten while reading: keep going
                continue
        with open(group + "/memory.oom_control") as f:
            group_kills = int(next(l.split()[1] for l in f if l.startswith("oom_kill ")))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        os.close(kmsg)
        os.rmdir(group)
    # Our report: from the last header before the oom-kill line naming our group (a unique
    # path) to our victim's last line.
    start_at = None
    for i, r in enumerate(records):
        msg = message(r) or ""
        if HEADER.match(msg):
            start_at = i
        if msg.startswith("oom-kill:") and f"oom_memcg={rel}," in msg:
            break
    else:
        start_at = None
    check(start_at is not None, f"no OOM report for {rel} in /dev/kmsg")
    end = start_at
    for i in range(start_at, len(records)):
        msg = message(records[i]) or ""
        m = KILLED.match(msg) or REAPED.match(msg)
        if m and int(m[1]) == victim.pid:
            end = i
    # The test host's own group (where its runner put this process) is named generically.
    lines = [r.replace(own[len("/sys/fs/cgroup/memory"):] + "/", GENERIC_PARENT + "/")
             for r in records[start_at:end + 1]]
    rel = GENERIC_PARENT + group[len(own):]
    events, invs = facts(lines)
    check(len(invs) == 1 and group_kills == 1, f"{len(invs)} invocations, group oom_kill {group_kills}")
    e = events[0]
    check(len(events) == 1 and e["victim_pid"] == victim.pid, f"victim {e['victim_pid']}")
    check(e["victim_comm"] == ("holder" if holder else "grower"), f"comm {e['victim_comm']}")
    # The invoker is the allocating thread (the hog allocates in a thread of its own).
    check(e["invoker_comm"] == "grower" and e["invoker_pid"] > grower.pid,
          f"invoker {e['invoker_comm']} {e['invoker_pid']}, grower {grower.pid}")
    check(e["kind"] == "memcg" and e["memcg"] == rel and e["task_memcg"] == rel,
          f"kind {e['kind']} memcg {e['memcg']} task_memcg {e['task_memcg']}, group {rel}")
    check(e["uid"] == (uid or 0), f"uid {e['uid']}")
    check(e["tasks_listed"] == len(procs), f"{e['tasks_listed']} rows, {len(procs)} processes")
    kernel = os.uname().release
    doc = {
        "source": f"oomguard's own cgroup OOM on a test host (kernel {kernel}, cgroup v1 memory "
                  f"controller), raw /dev/kmsg records, made by scripts/make-oom-fixtures.sh "
                  f"(case {case})",
        "kernel": kernel,
        "format": "other",
        "notes": "Raw /dev/kmsg records (pri,seq,usec,flags;message) from the OOM header to the "
                 "victim's last line, as read; the host's other records before and after are left "
                 f"out, and the test host's own cgroup path is written {GENERIC_PARENT}. " + notes,
        "events": events,
    }
    write(base, lines, doc)


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in ("vm", "host"):
        sys.exit(__doc__)
    if sys.argv[1] == "vm":
        if sys.argv[2] not in VM_NOTES:
            die(f"unknown VM case {sys.argv[2]}")
        vm(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        if sys.argv[2] not in HOST_CASES:
            die(f"unknown host case {sys.argv[2]}")
        host(sys.argv[2], sys.argv[3], sys.argv[4])


if __name__ == "__main__":
    main()
