# One kernel OOM report made on purpose, for the project's fixtures
# (scripts/make-oom-fixtures.sh writes tests/fixtures/oom-reports/ from it). No daemon runs.
#   CASE=global     a hog fills the VM: global OOM, the hog is killed
#   CASE=threads    the same with a 4-thread hog (the invoker is one of its threads)
#   CASE=protected  a bigger process at oom_score_adj -1000 is passed over, the hog dies
#   CASE=nodump     vm.oom_dump_tasks=0: a report without the task dump
#   CASE=memcg      cgroup v2 app (memory.max 96M): a memcg OOM; the hog runs at adj 500
#   CASE=group      cgroup v2 app/job with memory.oom.group: one invocation kills the whole job
# Reports what the guest knows (PIDs, names, cgroup paths, kill counters) and the whole kernel
# log as kmsg=LINE lines (busybox dmesg: "[seconds] message").
res case "$CASE"
hold innocent 16M; res innocent_pid "$HELD"
res oom_kills_before "$(oom_kills)"
cg=/sys/fs/cgroup
case "$CASE" in
  global) HOGCMD="exec hog --max 2G" ;;
  threads) HOGCMD="exec hog --max 2G --threads 4" ;;
  protected)
    hold precious 200M; res precious_pid "$HELD"
    echo -1000 >"/proc/$HELD/oom_score_adj"
    res precious_adj "$(cat "/proc/$HELD/oom_score_adj")"
    HOGCMD="exec hog --max 2G" ;;
  nodump)
    echo 0 >/proc/sys/vm/oom_dump_tasks
    res oom_dump_tasks "$(cat /proc/sys/vm/oom_dump_tasks)"
    HOGCMD="exec hog --max 2G" ;;
  memcg)
    echo +memory >$cg/cgroup.subtree_control
    mkdir -p $cg/app
    echo 96M >$cg/app/memory.max
    sh -c "echo \$\$ >$cg/app/cgroup.procs; exec bystander --max 24M" >/tmp/bystander.out 2>&1 &
    res bystander_pid "$!"
    wait_for 30 holding /tmp/bystander.out
    res memcg /app
    HOGCMD="echo \$\$ >$cg/app/cgroup.procs; echo 500 >/proc/self/oom_score_adj; exec hog --max 1G" ;;
  group)
    echo +memory >$cg/cgroup.subtree_control
    mkdir -p $cg/app
    echo 96M >$cg/app/memory.max
    echo +memory >$cg/app/cgroup.subtree_control
    mkdir -p $cg/app/job
    echo 1 >$cg/app/job/memory.oom.group
    sh -c "echo \$\$ >$cg/app/job/cgroup.procs; exec jobmate --max 16M" >/tmp/jobmate.out 2>&1 &
    res jobmate_pid "$!"
    wait_for 30 holding /tmp/jobmate.out
    res memcg /app
    res task_memcg /app/job
    HOGCMD="echo \$\$ >$cg/app/job/cgroup.procs; exec hog --max 1G" ;;
  *) echo "vm: unknown CASE $CASE"; exit 2 ;;
esac
sh -c "$HOGCMD" >/tmp/hog.out 2>&1 &
HOG=$!
res hog_pid "$HOG"
wait "$HOG"; res hog_exit $?
# The reaper's line and the rest of the report reach the log just after the victim's death.
sleep 1
res oom_kills_after "$(oom_kills)"
[ -r $cg/app/memory.events ] && res app_oom_kill "$(awk '$1=="oom_kill"{print $2}' $cg/app/memory.events)"
dmesg | sed 's/^/kmsg=/' >>/tmp/result
