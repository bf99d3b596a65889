#!/usr/bin/env bash
# Benchmark of `oomguard top`: a full refresh (`top --once`) at 1 000 and 10 000 processes,
# wall time and CPU, against `ps -eo pid,rss,comm --sort=-rss` in the same run; then the CPU
# use of the live view at a 1 s refresh with 1 000 processes (in a tmux terminal).
#
# Idle processes are `sleep` children in a process group of their own (setsid), killed at the
# end (also on failure). Usage: scripts/bench-top.sh [ROUNDS] (default 7; medians are printed).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${1:-7}
LIVE_SECONDS=${LIVE_SECONDS:-30}
cargo build --release --quiet
BIN=$PWD/target/release/oomguard
TICKS=$(getconf CLK_TCK)
SOCK="oomguard-bench-$$"
PGIDS=()

cleanup() {
  tmux -L "$SOCK" kill-server 2>/dev/null || true
  for g in "${PGIDS[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done
}
trap cleanup EXIT

# Processes on the machine now.
count_procs() { local p=(/proc/[0-9]*); echo "${#p[@]}"; }

# Starts idle processes until the machine has at least $1 processes in all.
fill_to() {
  local want=$1 have
  have=$(count_procs)
  local add=$((want - have))
  [ "$add" -gt 0 ] || return 0
  setsid bash -c "for ((i = 0; i < $add; i++)); do sleep 3600 & done; wait" </dev/null >/dev/null 2>&1 &
  local leader=$!
  PGIDS+=("$leader")
  # Wait until they are all there.
  for _ in $(seq 600); do
    have=$(count_procs)
    [ "$have" -ge "$want" ] && return 0
    sleep 0.1
  done
  echo "could only reach $have processes" >&2
}

# Arithmetic (awk, no bc needed).
calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }

# Median of numbers on stdin.
median() { sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

# Runs "$@" REPEAT times in a row, ROUNDS times; prints the median per-run wall and CPU
# (user + sys of the children, from getrusage via bash's `time`) in seconds.
REPEAT=${REPEAT:-10}
measure() {
  local walls=() cpus=() out w u s
  for _ in $(seq "$ROUNDS"); do
    out=$( { TIMEFORMAT='%3R %3U %3S'; time { for ((i = 0; i < REPEAT; i++)); do "$@" >/dev/null 2>&1; done; }; } 2>&1 | tail -1)
    read -r w u s <<<"$out"
    walls+=("$(calc "$w / $REPEAT")")
    cpus+=("$(calc "($u + $s) / $REPEAT")")
  done
  printf '%.4f %.4f\n' "$(printf '%s\n' "${walls[@]}" | median)" "$(printf '%s\n' "${cpus[@]}" | median)"
}

echo "oomguard top benchmark on $(uname -r), $(nproc) CPUs: median of $ROUNDS rounds of $REPEAT runs, per run"
printf '%-8s %-34s %10s %10s\n' procs command wall_s cpu_s
for n in 1000 10000; do
  fill_to "$n"
  total=$(count_procs)
  read -r ow oc < <(measure "$BIN" top --once)
  read -r jw jc < <(measure "$BIN" top --json)
  read -r pw pc < <(measure ps -eo pid,rss,comm --sort=-rss)
  printf '%-8s %-34s %10s %10s\n' "$total" "oomguard top --once" "$ow" "$oc"
  printf '%-8s %-34s %10s %10s\n' "$total" "oomguard top --json" "$jw" "$jc"
  printf '%-8s %-34s %10s %10s\n' "$total" "ps -eo pid,rss,comm --sort=-rss" "$pw" "$pc"
  printf '%-8s ratio ps/top (wall): %.2f   (cpu): %.2f\n' "$total" \
    "$(calc "$pw / $ow")" "$(calc "$pc / ($oc + 0.0001)")"
  if [ "$n" = 1000 ]; then
    # The live view at 1 s refresh, in a real terminal, for LIVE_SECONDS.
    tmux -L "$SOCK" -f /dev/null new-session -d -x 200 -y 50 "exec $BIN top --interval 1s"
    sleep 3
    pid=$(tmux -L "$SOCK" display -p '#{pane_pid}')
    c0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    sleep "$LIVE_SECONDS"
    c1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    printf '%-8s live view at 1 s refresh: %.3f%% of one core over %s s (RSS %s kB)\n' "$total" \
      "$(calc "($c1 - $c0) * 100 / $TICKS / $LIVE_SECONDS")" "$LIVE_SECONDS" "$rss"
    tmux -L "$SOCK" kill-server 2>/dev/null || true
  fi
done
