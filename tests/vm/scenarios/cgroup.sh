# cgroup v2 scope: app (memory.max = APP_MAX) holds job (memory.oom.group = 1: hog + jobmate)
# and other (bystander); innocent runs outside, in a sibling group of app (elsewhere). DAEMON=oomguard runs with
# --scope cgroup:/sys/fs/cgroup/app --kill-unit cgroup; DAEMON=none leaves it to the kernel.
# CGNS=1: the daemon runs in a cgroup namespace of its own (rooted at the hierarchy's root), in
# a group one level down (guard): its path there is all it has to say how deep groups are.
# CGNS=ct: as a container runtime sets one up: app and elsewhere live in ct, the root of the
# daemon's cgroup namespace (taken while a process of the scenario was in ct, before ct handed
# the memory controller down), the daemon in ct/guard, with cgroup2 mounted from that root in a
# mount namespace of its own: there app is /sys/fs/cgroup/app, at level 1 of ct's 2.
cg=/sys/fs/cgroup
echo +memory >$cg/cgroup.subtree_control
top=$cg
if [ "${CGNS:-}" = ct ]; then
  top=$cg/ct
  mkdir -p $top/guard
  mkfifo /tmp/cgns.go
  # Waits for the scenario's go, then mounts and runs what /tmp/cgns-run.sh says by then.
  sh -c "echo \$\$ >$top/cgroup.procs; exec vmprobe cgns $top/guard sh -c 'read go </tmp/cgns.go; exec unshare -m sh /tmp/cgns-run.sh'" >/tmp/daemon.log 2>&1 &
  CGNS_PID=$!
  in_guard() { [ -n "$(cat $top/guard/cgroup.procs)" ]; }
  wait_for 30 in_guard || echo "vm: the daemon-to-be did not move into $top/guard"
  # ct holds no process now: it may hand the memory controller down.
  echo +memory >$top/cgroup.subtree_control
fi
mkdir -p $top/app
echo "${APP_MAX:-160M}" >$top/app/memory.max
echo +memory >$top/app/cgroup.subtree_control
mkdir -p $top/app/job $top/app/other
echo 1 >$top/app/job/memory.oom.group
res oom_group "$(cat $top/app/job/memory.oom.group)"
hold innocent 16M; INNOCENT=$HELD
# At app's level, beside it: a filter that checked only the level would list it.
mkdir -p $top/elsewhere
echo "$INNOCENT" >$top/elsewhere/cgroup.procs
sh -c "echo \$\$ >$top/app/other/cgroup.procs; exec bystander --max 24M" >/tmp/bystander.out 2>&1 &
BYST=$!
sh -c "echo \$\$ >$top/app/job/cgroup.procs; exec jobmate --max 16M" >/tmp/jobmate.out 2>&1 &
MATE=$!
wait_for 30 holding /tmp/bystander.out; wait_for 30 holding /tmp/jobmate.out
# Sleepers beside the bystander: with them the group's processes number more than 1 in 12 of
# the guest's threads, and oomguard lists the group with the task iterator's program for it.
i=0; while [ $i -lt "${SLEEPERS:-24}" ]; do
  sh -c "echo \$\$ >$top/app/other/cgroup.procs; exec sleep 600" &
  i=$((i + 1))
done
DARGS="--scope cgroup:$cg/app --kill-unit cgroup -v $DARGS"
if [ "${DAEMON:-none}" = oomguard ]; then
  if [ "${CGNS:-}" = ct ]; then
    echo "umount -l $cg && mount -t cgroup2 none $cg && exec oomguard run --event-log /tmp/events.jsonl $DARGS" >/tmp/cgns-run.sh
    echo go >/tmp/cgns.go
  elif [ -n "${CGNS:-}" ]; then
    mkdir -p $cg/guard
    # shellcheck disable=SC2086
    vmprobe cgns $cg/guard oomguard run --event-log /tmp/events.jsonl $DARGS >/tmp/daemon.log 2>&1 &
  else
    # shellcheck disable=SC2086
    oomguard run --event-log /tmp/events.jsonl $DARGS >/tmp/daemon.log 2>&1 &
  fi
  DPID=${CGNS_PID:-$!}
  sleep 1.5
  if [ -n "${CGNS:-}" ]; then
    ns=$(readlink /proc/$DPID/ns/cgroup)
    [ -n "$ns" ] && [ "$ns" != "$(readlink /proc/1/ns/cgroup)" ] && res og_cgns 1 || res og_cgns 0
    res og_cgroup "$(cat /proc/$DPID/cgroup)"
  fi
else DPID=; fi
res oom_kills_before "$(oom_kills)"
start_gated sh -c "echo \$\$ >$top/app/job/cgroup.procs; exec hog --max 1G"
res storm_pid "$STORM_PID"
# shellcheck disable=SC2086
start_watch_and_go "$STORM_PID" "$MATE" "$BYST" "$INNOCENT" $DPID
wait_for 60 dead "$STORM_PID"
sleep "${SETTLE:-2}"
stop_watch
alive "$STORM_PID" && res storm_alive 1 || res storm_alive 0
alive "$MATE" && res jobmate_alive 1 || res jobmate_alive 0
alive "$BYST" && res bystander_alive 1 || res bystander_alive 0
alive "$INNOCENT" && res innocent_alive 1 || res innocent_alive 0
res app_oom_kill "$(awk '$1=="oom_kill"{print $2}' $top/app/memory.events)"
res other_procs "$(wc -l <$top/app/other/cgroup.procs)"
if [ "${DAEMON:-none}" = oomguard ]; then
  res og_listing "$(grep -m1 'listing cgroup:' /tmp/daemon.log)"
  res og_found_none "$(grep -c 'task iterator found none' /tmp/daemon.log)"
  # The processes the first decision ranked: the group's (hog, jobmate, bystander, sleepers),
  # no others.
  res og_table "$(sed -n 's/.*decision in .* precise reads, \([0-9]*\) processes in the table.*/\1/p' /tmp/daemon.log | head -n1)"
fi
res job_oom_kill "$(awk '$1=="oom_kill"{print $2}' $top/app/job/memory.events)"
report_common
