#!/usr/bin/env bash
# Scenario 4 of issue 18: the seed's story (a leaking PHP request in apache2 beside a large
# MariaDB) on the Debian bookworm VM (tests/vm/debian), side by side: oomguard (the .deb,
# shipped config), earlyoom and nohang (Debian's packages and defaults), systemd-oomd (its
# documented setup) and the kernel alone. Not a test and not in CI.
#
# One session, interleaved: round r boots the VM once per guard, in an order rotated by r
# (round 1: A B C D E, round 2: B C D E A, ...), one story run per boot on a fresh copy of the
# image, at most --jobs boots at once, taken from the queue in that order. Load on the shared
# host then falls on every guard alike; each run records the host's load average at its start
# and end.
#
#   scripts/bench-debian.sh [--runs N] [--jobs N] [--guards oomguard,earlyoom,...]
#                           [--leak-timeout S] [--report-only] [--redo GUARD:ROUND,...]
#
# A boot that reports nothing (under TCG a boot now and then hangs before userspace) is
# started once more at once; --redo boots again only the given runs of the last session (its
# other runs stay) and says so in the report.
#
# Writes docs/bench/debian-runs.jsonl (one record per run, this session's only),
# docs/bench/debian.md (method, table) and docs/bench/debian.png (chart). Raw guest output
# stays in target/bench-debian/<guard>/r<round>/. VM_NICE (niceness of qemu, default 0) is passed on.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=5 jobs=2 guards=oomguard,earlyoom,systemd-oomd,nohang,kernel leak_timeout=120 report_only=0 redo=
while [ $# -gt 0 ]; do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --guards) guards=$2; shift 2 ;;
    --leak-timeout) leak_timeout=$2; shift 2 ;;
    --report-only) report_only=1; shift ;;
    --redo) redo=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
if ! /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 python3-matplotlib >/dev/null
fi
raw=target/bench-debian
mkdir -p "$raw"
IFS=, read -r -a list <<<"$guards"
n=${#list[@]}
# boot GUARD ROUND POSITION: one run in its own boot, into $raw/GUARD/rROUND (host facts in
# host: round, position, start, load_start, end, load_end, attempts).
boot() {
  local g=$1 r=$2 pos=$3 dir=$raw/$1/r$2 attempt
  rm -rf "$dir"
  mkdir -p "$dir"
  for attempt in 1 2; do
    {
      echo "round=$r"
      echo "position=$pos"
      echo "attempts=$attempt"
      echo "start=$(date -u +%FT%TZ)"
      echo "load_start=$(cut -d' ' -f1-3 /proc/loadavg)"
    } > "$dir/host"
    # The kernel alone leaves the guest thrashing for minutes after the leak: more time.
    local limit=$(( 420 + leak_timeout + 150 ))
    [ "$g" = kernel ] && limit=$(( limit + 300 ))
    if DEB=$deb VM_TIMEOUT=$limit \
        tests/vm/debian/run.sh "$dir" bench GUARD="$g" RUNS=1 LEAK_TIMEOUT="$leak_timeout" \
        > "$dir/report" 2>&1; then
      break
    fi
    echo "bench-debian: round $r $g, attempt $attempt failed (see $dir/report)" >&2
    [ "$attempt" = 1 ] && { mv "$dir/report" "$dir/report.1"; mv "$dir/console" "$dir/console.1" 2>/dev/null || true; }
  done
  {
    echo "end=$(date -u +%FT%TZ)"
    echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)"
  } >> "$dir/host"
}
if [ "$report_only" = 0 ]; then
  deb=$(scripts/deb.sh | tail -n1)
  tests/vm/debian/build-image.sh >/dev/null
  if [ -n "$redo" ]; then
    IFS=, read -r -a again <<<"$redo"
    for gr in "${again[@]}"; do
      g=${gr%%:*} r=${gr##*:}
      while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 2; done
      echo "bench-debian: again: round $r, $g" >&2
      # The session's boot stays beside it for the record.
      rm -rf "$raw/$g/r$r.session"
      [ -d "$raw/$g/r$r" ] && mv "$raw/$g/r$r" "$raw/$g/r$r.session"
      pos=$(sed -n 's/^position=//p' "$raw/$g/r$r.session/host" 2>/dev/null || echo 0)
      ( boot "$g" "$r" "${pos:-0}"; echo "redone=1" >> "$raw/$g/r$r/host" ) &
      sleep 5
    done
    wait
  else
    for g in "${list[@]}"; do rm -rf "${raw:?}/$g"; done
    date -u +%FT%TZ > "$raw/session"
    for r in $(seq 1 "$runs"); do
      for k in $(seq 0 $((n - 1))); do
        g=${list[$(( (k + r - 1) % n ))]}
        while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 2; done
        echo "bench-debian: round $r, $g (position $((k + 1)))" >&2
        boot "$g" "$r" $((k + 1)) &
        sleep 5
      done
    done
    wait
  fi
fi
exec /usr/bin/python3 scripts/bench_debian.py "$raw" "$guards" "$leak_timeout" "$runs"
