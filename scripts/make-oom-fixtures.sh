#!/usr/bin/env bash
# Regenerates the project's own kernel OOM report fixtures, tests/fixtures/oom-reports/, from
# OOMs this project causes itself (nothing is copied from elsewhere):
#   1xx  throwaway QEMU VMs (tests/vm/, scenario oomreport; the guest's Debian cloud kernel):
#        global OOM, a 4-thread hog, a bigger process at oom_score_adj -1000 passed over,
#        vm.oom_dump_tasks=0, a cgroup v2 memcg OOM, a cgroup v2 memory.oom.group kill.
#   2xx  this host's kernel, cgroup v1: memcg OOMs in a test memory group made under this
#        process's own group (limit 64 MiB; never a global OOM), read from /dev/kmsg.
# Each NNN-name.log holds the kernel's lines as captured, NNN-name.json the facts (shape of
# ../shared/corpus/oom-reports/README.md), read off the lines by scripts/oom_fixtures.py and
# cross-checked against what the run knows (PIDs, names, cgroups, kill counters).
#
#   scripts/make-oom-fixtures.sh [vm|host]     (default: both; needs root, qemu for vm)
#
# Uses target/release/oomguard and the tests' hog target/release/oomguard-hog (built if missing). PIDs and timestamps differ on every run, so
# regenerating rewrites every file; tests/explain_fixtures.rs checks whatever is there.
set -euo pipefail
cd "$(dirname "$0")/.."
out=tests/fixtures/oom-reports
what=${1:-all}
mkdir -p "$out"
[ -x target/release/oomguard ] || cargo build --release --bin oomguard
[ -x target/release/oomguard-hog ] || cargo build --release --features test-support --bin oomguard-hog
bin=$PWD/target/release/oomguard
hog=$PWD/target/release/oomguard-hog

if [ "$what" = all ] || [ "$what" = vm ]; then
  tests/vm/build.sh "$bin" "$hog"
  kver=$(basename "$(ls -d tests/vm/work/kpkg/lib/modules/*)")
  short=$(echo "$kver" | cut -d. -f1-2)
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/oom-fixtures.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  n=101
  for case in global threads protected nodump memcg group; do
    name=$(printf '%03d-vm-%s-%s' "$n" "$short" "$case")
    echo "make-oom-fixtures: $name"
    VM_TIMEOUT=${VM_TIMEOUT:-300} tests/vm/run.sh oomreport "CASE=$case" >"$tmp/$case.out"
    rm -f "$out/$(printf '%03d' "$n")"-*
    python3 scripts/oom_fixtures.py vm "$case" "$tmp/$case.out" "$out/$name"
    n=$((n + 1))
  done
fi

if [ "$what" = all ] || [ "$what" = host ]; then
  short=$(uname -r | cut -d. -f1-2)
  n=201
  for case in cgroup1-memcg cgroup1-invoker-not-victim; do
    name=$(printf '%03d-host-%s-%s' "$n" "$short" "$case")
    echo "make-oom-fixtures: $name"
    rm -f "$out/$(printf '%03d' "$n")"-*
    python3 scripts/oom_fixtures.py host "$case" "$hog" "$out/$name"
    n=$((n + 1))
  done
fi
