#!/usr/bin/env bash
# Regenerates link/hot-symbols.txt: the functions a running daemon enters after start-up (the
# kill path's warm-up and the idle loop), in the order it first enters them. The linker wrapper
# (link/hot-first.sh) packs them together at the start of .text.
#
# How: the release binary runs `oomguard run --dry-run` (nothing is killed) under gdb, guarding
# the machine, then a memory cgroup made for the profile (50 of the sleepers in it), then the
# machine with Prometheus metrics on and scraped every 2 s; from the
# second return of act::harden::trim_and_lock (where start-up's pages are dropped for good, about
# 3 s after start) the functions on every thread's stack are taken, then every function gets
# a one-shot breakpoint, for PROF_SECS seconds (default 75: the floor re-reads /proc/zoneinfo
# every 60 s), while PROF_PROCS sleepers (default 1000) run. Needs gdb, curl, python3 and root (the daemon reads every process's /proc files). Rerun after
# changing what the loop or the kill path calls: `tests/link_order.rs` fails when the list has
# gone stale; a name the compiler no longer emits is simply not matched.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v gdb >/dev/null || { echo "hot-symbols: gdb is needed (apt-get install gdb)" >&2; exit 1; }
command -v c++filt >/dev/null || { echo "hot-symbols: c++filt is needed (apt-get install binutils)" >&2; exit 1; }
command -v curl >/dev/null || { echo "hot-symbols: curl is needed (apt-get install curl)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "hot-symbols: python3 is needed (apt-get install python3)" >&2; exit 1; }
work=$(mktemp -d)
list_before=$work/hot-symbols.before
cp link/hot-symbols.txt "$list_before" 2>/dev/null || : > "$list_before"
# Two builds: with the `test-support` feature (what `cargo test` and `cargo bench` run: the tests
# enable it for the library) and without (what is shipped). They inline differently, so each
# has out-of-line functions the other has not; the list is the union of both profiles. The
# shipped build comes last, so target/release/oomguard is that one afterwards.
cargo build --release --features test-support --bin oomguard >&2
cp target/release/oomguard "$work/oomguard-test-support"
cargo build --release --bin oomguard >&2
cp target/release/oomguard "$work/oomguard"
sleepers=()
churn=
scraper=
cg_dir=
cleanup() {
    rm -rf "$work"
    [ ${#sleepers[@]} -eq 0 ] || kill "${sleepers[@]}" 2>/dev/null || true
    [ -z "$churn" ] || kill "$churn" 2>/dev/null || true
    [ -z "$scraper" ] || kill "$scraper" 2>/dev/null || true
    if [ -n "$cg_dir" ]; then
        # The churner's last `sleep 0.3` outlives it by up to 0.3 s.
        for _ in $(seq 20); do
            rmdir "$cg_dir" 2>/dev/null && break
            sleep 0.1
        done
    fi
}
trap cleanup EXIT
# A machine with many processes (PROF_PROCS sleepers, default 1000) takes paths a quiet one
# does not: sorting a long PID list, newcomers, a large table.
for _ in $(seq "${PROF_PROCS:-1000}"); do
    sleep 3600 &
    sleepers+=($!)
done
# And processes come and go, as on any machine: a short-lived one every 0.3 s (newcomers learnt,
# leavers dropped; a quiet profile missed those functions, which a real daemon then faulted in).
( while :; do sleep 0.3; done ) &
churn=$!
# The daemon of one cgroup (`--scope cgroup:…`, a container host's) runs readers the machine's
# does not: the group's process list and memory files, each member's /proc files (a group that
# holds under 1 in 12 of the machine's threads is not listed with the task iterator; a larger
# one is, as the machine is, which the machine's daemon profiles). A memory group of our own
# holds the churner (its children start there) and 50 of the sleepers; both daemons see them.
if grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
    cg_base=/sys/fs/cgroup
    cg_own=$(awk -F: '$1 == "0" { print $3 }' /proc/self/cgroup)
    cg_limit=memory.max
else
    cg_base=/sys/fs/cgroup/memory
    cg_own=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ { print $3 }' /proc/self/cgroup)
    cg_limit=memory.limit_in_bytes
fi
cg_rel=${cg_own%/}/hot-symbols-$$
if mkdir "$cg_base$cg_rel" 2>/dev/null; then
    cg_dir=$cg_base$cg_rel
    echo $((1 << 30)) > "$cg_dir/$cg_limit"
    for p in "$churn" "${sleepers[@]:0:50}"; do echo "$p" > "$cg_dir/cgroup.procs"; done
else
    echo "hot-symbols: cannot make a memory cgroup under $cg_base${cg_own}: profiling the machine's daemon only" >&2
fi
cat > "$work/prof.py" <<'PY'
import gdb, os, signal, subprocess, threading
exe = gdb.current_progspace().filename
out = os.environ["PROF_OUT"]
for c in ["set pagination off", "set confirm off", "set print thread-events off"]:
    gdb.execute(c)
for s in ["SIGTERM", "SIGPIPE", "SIGUSR1", "SIGHUP", "SIGCHLD", "SIGALRM"]:
    gdb.execute(f"handle {s} nostop noprint pass")
gdb.execute("starti", to_string=True)
# The load bias: the first mapping's address minus the first LOAD segment's link-time page
# (0 for a PIE, 0x200000 for the fixed-address executable build.rs links: bias 0).
first_load = min(int(l.split()[2], 16) for l in
                 subprocess.run(["readelf", "-lW", exe], capture_output=True, text=True).stdout.splitlines()
                 if l.split()[:1] == ["LOAD"])
base = next(int(l.split()[0], 16) for l in gdb.execute("info proc mappings", to_string=True).splitlines()
            if l.split() and l.split()[-1] == exe) - (first_load & ~0xfff)
syms = {}
for l in subprocess.run(["nm", "--defined-only", exe], capture_output=True, text=True).stdout.splitlines():
    p = l.split()
    if len(p) == 3 and p[1] in "tTwW":
        syms.setdefault(int(p[0], 16), p[2])
trim = [a for a, n in syms.items() if "harden13trim_and_lock" in n]
if not trim:
    raise SystemExit("hot-symbols: act::harden::trim_and_lock not found in the binary")
# The daemon trims twice: at start and when start-up has settled (side threads included).
bp = gdb.Breakpoint(f"*{base + trim[0]:#x}", internal=True)
for _ in range(2):
    gdb.execute("continue", to_string=True)
    gdb.execute("finish", to_string=True)
bp.delete()
# Functions already running (each thread's loop, the main loop) are never entered again: take
# them from every thread's stack first, innermost first, down to the thread's entry (where a
# side thread's loop is inlined) or the daemon's start-up; what calls those runs again only at
# exit. Frames in libc are skipped.
starts = sorted(syms)
import bisect
running = []
entry = ("__rust_begin_short_backtrace", "6daemon5start5start", "thread_start")
for t in gdb.selected_inferior().threads():
    t.switch()
    f = gdb.newest_frame()
    while f is not None:
        off = f.pc() - base
        i = bisect.bisect_right(starts, off) - 1
        if 0 <= i < len(starts) - 1:
            n = syms[starts[i]]
            if n not in running:
                running.append(n)
            if any(e in n for e in entry):
                break
        f = f.older()
for a in syms:
    gdb.Breakpoint(f"*{base + a:#x}", internal=True, temporary=True)
# The daemon ends on SIGTERM after PROF_SECS: once every function it runs has been entered,
# no breakpoint is left to stop it.
# What runs from then on (the shutdown) is not recorded.
pid = gdb.selected_inferior().pid
ended = threading.Event()
def end():
    ended.set()
    os.kill(pid, signal.SIGTERM)
threading.Timer(float(os.environ.get("PROF_SECS", "75")), end).start()
seen = set(running)
with open(out, "w") as f:
    for n in running:
        f.write(n + "\n")
    while True:
        try:
            gdb.execute("continue", to_string=True)
            pc = int(gdb.parse_and_eval("$pc"))
        except gdb.error:
            break
        n = syms.get(pc - base)
        if n and n not in seen and not ended.is_set():
            seen.add(n)
            f.write(n + "\n")
            f.flush()
gdb.execute("kill")
PY
scopes=system
[ -z "$cg_dir" ] || scopes="system cgroup:$cg_rel"
# Profiles in the order the list takes them: the machine's daemon of both builds first, so the
# code it runs is packed at the front and its fault-around windows stay off the code only a
# cgroup's daemon runs, which comes after.
# Last, the machine's daemon with Prometheus metrics on and scraped every 2 s: the sampling at
# each wake-up, the server thread and the exposition (off by default, so after the rest; with
# them outside the list an idle daemon with metrics had 0.6-0.8 MiB more resident, scraped
# 1.3-1.4 MiB, session 47).
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
( while :; do sleep 2; curl -s -o /dev/null "http://127.0.0.1:$port/metrics" || true; done ) &
scraper=$!
hits=()
for scope in $scopes metrics; do
    for build in oomguard oomguard-test-support; do
        out=$work/hits-$build-${scope%%:*}
        args=(--scope "$scope")
        [ "$scope" != metrics ] || args=(--scope system --metrics "127.0.0.1:$port")
        PROF_OUT="$out" timeout 600 gdb -q -batch -nx -x "$work/prof.py" \
            --args "$work/$build" run --dry-run "${args[@]}" --lock-dir "$work" \
            --event-log "$work/events.jsonl" >"$work/gdb.log" 2>&1 || true
        [ -s "$out" ] || { echo "hot-symbols: the profile of $build ($scope) recorded nothing; gdb said:" >&2; tail -20 "$work/gdb.log" >&2; exit 1; }
        hits+=("$out")
    done
done
# As `nm -C` (which link/hot-first.sh matches against) prints them: c++filt writes a const
# generic's type (`4: usize`), nm -C does not.
clean() { sed -E 's/\[[0-9a-f]{6,}\]//g; s/\.llvm\.[0-9]+$//; s/ \[clone [^]]*\]$//; s/::h[0-9a-f]+$//; s/\b([0-9]+): [iu](size|8|16|32|64|128)\b/\1/g; s/\b(true|false): bool\b/\1/g'; }
# What either build defines, to keep the earlier list's names that are still emitted.
for build in oomguard oomguard-test-support; do
    nm -C --defined-only "$work/$build" | sed -E 's/^[0-9a-f]+ [^ ] //' | clean
done | sort -u > "$work/defined"
{
    echo "# Functions the daemon runs after start-up (warm-up of the kill path, idle loop), in the order"
    echo "# it first ran them (guarding the machine, then one cgroup, then the machine with metrics"
    echo "# scraped; the shipped build's, then the"
    echo "# test-support build's); demangled v0 names"
    echo "# without crate disambiguators or LTO suffixes. Regenerate: scripts/hot-symbols.sh"
    # Only Rust paths: a plain C name (libm's `round`, from a precompiled object) stays where
    # its object put it, far from the packed functions, and tests/link_order.rs fails on it.
    cat "${hits[@]}" | c++filt | clean | grep -F '::' | awk '!seen[$0]++' > "$work/new"
    cat "$work/new"
    # A profile sees what one run entered: a path a run skipped (a sort of one element, a
    # record without pressure) is missing from it. So the earlier list's names that the builds
    # still define stay, after the new ones; a name added by hand (a function seen faulting in
    # `perf record -e page-faults -d` but not entered under gdb) stays the same way.
    grep -v '^#' "$list_before" | grep -vxFf "$work/new" | grep -xFf "$work/defined" || true
} > link/hot-symbols.txt
echo "link/hot-symbols.txt: $(grep -vc '^#' link/hot-symbols.txt) functions" >&2
