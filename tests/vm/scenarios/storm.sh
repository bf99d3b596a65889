# A memory storm against the daemon named in $DAEMON (none, oomguard, earlyoom).
#   STORM=fast|slow|ignore_term|forkstorm  THREADS=N  RATE=SIZE  HOG_MAX=SIZE
#   SWAP=none|zram|disk  BYSTANDER_SIZE=SIZE  PRECIOUS_SIZE=SIZE  PROTECT_ADJ=-900|-1000
#   DARGS="daemon flags"  SETTLE=seconds after the storm's end (to see a second kill)
# Reports: who died and when (ms from the storm's start), the kernel's kills, the event log.
setup_swap
hold innocent 16M; INNOCENT=$HELD
BYST= PREC=
if [ -n "$BYSTANDER_SIZE" ]; then hold bystander "$BYSTANDER_SIZE"; BYST=$HELD; fi
if [ -n "$PRECIOUS_SIZE" ]; then hold precious "$PRECIOUS_SIZE"; PREC=$HELD; fi
if [ -n "$PROTECT_ADJ" ]; then
  printf '[[protect]]\nname = "^precious$"\noom_score_adj = %s\n' "$PROTECT_ADJ" >/tmp/oomguard.toml
  DARGS="$DARGS --config /tmp/oomguard.toml"
fi
start_daemon
[ -n "$PREC" ] && res precious_adj "$(cat "/proc/$PREC/oom_score_adj")"
res oom_kills_before "$(oom_kills)"
res avail_before_kb "$(meminfo MemAvailable)"

case "${STORM:-fast}" in
  fast) start_gated hog --max "${HOG_MAX:-2G}" --threads "${THREADS:-1}" ;;
  slow) start_gated hog --max "${HOG_MAX:-2G}" --rate "${RATE:-40M}" ;;
  ignore_term)
    # Fill memory to halfway between the term (10 %) and kill (5 %) levels and hold it there:
    # only the escalation after --term-grace can end this hog.
    total=$(meminfo MemTotal); avail=$(meminfo MemAvailable)
    size=$(( avail - total * 75 / 1000 ))
    res ignore_term_size_kb "$size"
    start_gated hog --max "${size}K" --ignore-term ;;
  forkstorm) start_gated vmprobe forkstorm "${FORKS:-150}" 3 2 10 ;;
esac
res storm_pid "$STORM_PID"
trace_start
# The wait for the storm's end starts before the gate opens: no fork or exec of the harness's
# own at the storm's start (the heartbeat would count it).
vmprobe waitexit "$STORM_PID" "${STORM_TIMEOUT:-60}" &
WAITER=$!
# shellcheck disable=SC2086
start_watch_and_go "$STORM_PID" "$INNOCENT" $BYST $PREC $DPID
wait "$WAITER"
sleep "${SETTLE:-2}"
stop_watch
trace_report
alive "$STORM_PID" && res storm_alive 1 || res storm_alive 0
kill -9 "$STORM_PID" 2>/dev/null
wait "$STORM_PID"; res storm_exit $?
alive "$INNOCENT" && res innocent_alive 1 || res innocent_alive 0
[ -n "$BYST" ] && { alive "$BYST" && res bystander_alive 1 || res bystander_alive 0; }
[ -n "$PREC" ] && { alive "$PREC" && res precious_alive 1 || res precious_alive 0; }
if [ "$STORM" = forkstorm ]; then
  n=0; for c in /proc/[0-9]*/comm; do
    [ "$(cat "$c" 2>/dev/null)" = stormchild ] && alive "$(basename "$(dirname "$c")")" && n=$((n + 1))
  done
  res stormchildren_alive "$n"
fi
report_common
