# Scenario 4 (benchmark): GUARD against the seed's story, RUNS times in this boot.
log "guard $GUARD, $RUNS runs"
result guard "$GUARD"
result mem_total_kb "$(awk '/^MemTotal:/{print $2}' /proc/meminfo)"
setup_services
result db_rss_kb "$(awk '/^VmRSS:/{print $2}' /proc/"$(main_pid mariadb)"/status)"
start_guard "$GUARD"
# Whose CPU time story_run reports (the kernel alone has no guard process).
case $GUARD in kernel) GUARD_COMM=none ;; *) GUARD_COMM=${GUARD_COMM:-$GUARD} ;; esac
i=1
while [ "$i" -le "$RUNS" ]; do
  story_run "r$i"
  if [ "$GUARD" = systemd-oomd ]; then
    # Still running and monitoring after the run? Its view of the cgroups then (pressure
    # averages, swap use).
    result "r${i}_guard_active" "$(systemctl is-active systemd-oomd)"
    oomd_dump "$O/r$i.oomctl.txt" "r${i}_"
  fi
  i=$((i + 1))
done
result runs_done "$RUNS"
