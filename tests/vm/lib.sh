# Guest helpers for the scenarios (busybox sh). Results are key=value lines in /tmp/result;
# the host parses them and asserts.

res() { echo "$1=$2" >>/tmp/result; }

# PID exists and is not a zombie. Shell builtins only: the scenarios poll this every 20 ms while
# memory runs out, and a fork per poll would be an allocation of its own at the worst moment.
alive() {
  local st
  read -r st 2>/dev/null <"/proc/$1/stat" || return 1
  st=${st##*) }
  case "${st%% *}" in Z | X) return 1 ;; esac
  return 0
}

oom_kills() { awk '/^oom_kill /{print $2}' /proc/vmstat; }
meminfo() { awk -v k="$1:" '$1==k{print $2}' /proc/meminfo; }

# wait_for SECONDS COMMAND...: polls every 20 ms until COMMAND succeeds; 1 on timeout.
wait_for() {
  local n=$(( $1 * 50 )); shift
  while [ "$n" -gt 0 ]; do "$@" && return 0; usleep 20000; n=$((n - 1)); done
  return 1
}
dead() { ! alive "$1"; }
holding() { grep -q holding "$1" 2>/dev/null; }

# Starts a process that holds SIZE of touched memory under NAME (hog links: innocent, precious,
# bystander); waits until it holds it. Sets $HELD to its PID.
hold() {
  local name=$1 size=$2
  "/bin/$name" --max "$size" >"/tmp/$name.out" 2>&1 &
  HELD=$!
  wait_for 30 holding "/tmp/$name.out" || echo "vm: $name did not reach $size"
}

# Swap per $SWAP: none, zram (SWAP_SIZE of compressed RAM) or disk (the virtio disk /dev/vda).
setup_swap() {
  case "${SWAP:-none}" in
    none) ;;
    zram)
      echo "${SWAP_SIZE:-256M}" >/sys/block/zram0/disksize
      mkswap /dev/zram0 >/dev/null && swapon /dev/zram0 ;;
    disk)
      wait_for 5 test -b /dev/vda || echo "vm: no /dev/vda"
      mkswap /dev/vda >/dev/null && swapon /dev/vda ;;
  esac
  res swap_total_kb "$(meminfo SwapTotal)"
}

# Starts the daemon under test per $DAEMON (none, oomguard, earlyoom) with $DARGS (oomguard:
# environment VAR=VALUE words in $DENV); $DPID.
start_daemon() {
  DPID=
  case "${DAEMON:-none}" in
    none) return 0 ;;
    oomguard)
      # shellcheck disable=SC2086
      env $DENV oomguard run --scope system --event-log /tmp/events.jsonl $DARGS >/tmp/daemon.log 2>&1 & ;;
    earlyoom)
      # shellcheck disable=SC2086
      earlyoom -r 0 $DARGS >/tmp/daemon.log 2>&1 & ;;
    nohang)
      # Debian's config with the same levels as the others: act at 10 % / 5 % of memory
      # and swap (its defaults are 5 % / 2 %).
      sed -e 's/^soft_threshold_min_mem *=.*/soft_threshold_min_mem = 10 %/' \
          -e 's/^hard_threshold_min_mem *=.*/hard_threshold_min_mem = 5 %/' \
          -e 's/^soft_threshold_min_swap *=.*/soft_threshold_min_swap = 10 %/' \
          -e 's/^hard_threshold_min_swap *=.*/hard_threshold_min_swap = 5 %/' \
          /etc/nohang/nohang.conf >/tmp/nohang.conf
      python3.11 /usr/sbin/nohang --monitor -c /tmp/nohang.conf >/tmp/daemon.log 2>&1 &
      DAEMON_SETTLE=${DAEMON_SETTLE:-4} ;;
  esac
  DPID=$!
  sleep "${DAEMON_SETTLE:-1.5}"
  alive "$DPID" || { echo "vm: daemon exited early"; cat /tmp/daemon.log; }
}

# Gated storm: the command waits on a FIFO so that the watcher starts sampling first and the
# storm's start is the watcher's time zero. Sets $STORM_PID (the command's own PID after exec).
start_gated() {
  rm -f /tmp/go; mkfifo /tmp/go
  sh -c 'read -r _ </tmp/go; exec "$@"' gate "$@" >/tmp/storm.out 2>&1 &
  STORM_PID=$!
}

# Starts the watcher (vmprobe watch) on the given PIDs; after its first samples it opens the
# gate itself and reports the time as go_mono_ms (no fork or exec of the harness's own at the
# storm's start, where the heartbeat would count it). $WATCH_PID.
start_watch_and_go() {
  local recover=$(( $(meminfo MemAvailable) * 8 / 10 ))
  res recover_kb "$recover"
  VMPROBE_GATE=/tmp/go vmprobe watch /tmp/watch "$recover" "$@" &
  WATCH_PID=$!
  # Started last: the heartbeat's first 10 ms sleep begins after the harness's last fork.
  vmprobe heartbeat /tmp/heartbeat &
  HB_PID=$!
}

stop_watch() {
  kill "$WATCH_PID" "$HB_PID" 2>/dev/null
  wait "$WATCH_PID" 2>/dev/null
  cat /tmp/watch >>/tmp/result
  res heartbeat_worst_ms "$(cat /tmp/heartbeat 2>/dev/null || echo -1)"
  res heartbeat_worst_at_ms "$(cat /tmp/heartbeat.at 2>/dev/null || echo -1)"
  # Every stall of 1 ms or more, "END_MS:LATE_MS" (CLOCK_MONOTONIC): what happened after the
  # storm's start (go_mono_ms) is read from them.
  res heartbeat_stalls "$(tr ' \n' ': ' </tmp/heartbeat.log 2>/dev/null)"
}

# The kernel's OOM victims since boot, from the kernel log: "pid:comm" separated by spaces.
kernel_victims() {
  dmesg | sed -n 's/.*Killed process \([0-9]*\) (\(.*\)) total-vm.*/\1:\2/p' | tr '\n' ' '
}

# Facts every storm reports at its end.
report_common() {
  res kernel_oom_kills_total "$(oom_kills)"
  res kernel_victims "$(kernel_victims)"
  [ -n "$DPID" ] && { alive "$DPID" && res daemon_alive 1 || res daemon_alive 0; }
  if [ -r /tmp/events.jsonl ]; then
    while IFS= read -r line; do res event "$line"; done </tmp/events.jsonl
  fi
  case "${DAEMON:-none}" in
    oomguard)
      grep -m1 'scanning' /tmp/daemon.log | sed 's/^/og_scanning=/' >>/tmp/result
      # What doctor says of the same kernel (its text line).
      oomguard doctor 2>&1 | grep -m1 ' process_listing ' | sed 's/^/og_doctor_listing=/' >>/tmp/result ;;
    earlyoom) grep -i 'sending SIG' /tmp/daemon.log | sed 's/^/earlyoom_kill=/' >>/tmp/result ;;
    nohang) grep -iE 'SIGTERM|SIGKILL|victim' /tmp/daemon.log | sed 's/^/nohang_kill=/' >>/tmp/result ;;
  esac
  if [ -n "$VM_DEBUG" ]; then
    sed 's/^/daemon_log=/' /tmp/daemon.log >>/tmp/result 2>/dev/null
  fi
  res mem_total_kb "$(meminfo MemTotal)"
}

# VM_TRACE=1: the scheduler's record (ftrace sched_switch/sched_wakeup, CLOCK_MONOTONIC) from
# the storm's start, and for each heartbeat stall of 5 ms or more, who had the CPU meanwhile.
# VM_TRACE=syscalls: also the guard main thread's system calls in each of its bursts of 3 ms or
# more (TRACE_BURST_MS; this slows the emulated CPU: use it to see what a burst is made of, not for figures).
trace_start() {
  [ -n "$VM_TRACE" ] || return 0
  local t=/sys/kernel/tracing
  mount -t tracefs nodev $t 2>/dev/null
  echo mono >$t/trace_clock
  echo "${TRACE_KB:-16384}" >$t/buffer_size_kb
  echo 1 >$t/events/sched/sched_switch/enable
  echo 1 >$t/events/sched/sched_wakeup/enable
  echo 1 >$t/events/sched/sched_process_exit/enable
  if [ "$VM_TRACE" = syscalls ]; then
    # The guard's main thread's system calls too (what its bursts at nice -20 are made of).
    echo 1 >$t/events/raw_syscalls/enable || res trace_syscalls "cannot enable"
  fi
  echo 1 >$t/tracing_on
}

trace_report() {
  [ -n "$VM_TRACE" ] || return 0
  local t=/sys/kernel/tracing
  echo 0 >$t/tracing_on
  res trace_overrun "$(grep -m1 overrun $t/per_cpu/cpu0/stats)"
  cat $t/trace >/tmp/trace.txt
  awk -v hb="$HB_PID" -v burst="${TRACE_BURST_MS:-3}" '
    FNR==NR { if ($2 >= 5) { n++; e[n]=$1/1000; s[n]=($1-$2-1)/1000; late[n]=$2 }; next }
    /sched_switch:/ {
      ts=$0; sub(/^.*\] [^ ]* +/, "", ts); sub(/:.*/, "", ts); ts+=0
      prev=$0; sub(/.*prev_comm=/, "", prev); sub(/ ==>.*/, "", prev); gsub(/ prev_[a-z]*=/, ":", prev)
      nxt=$0; sub(/.*next_comm=/, "", nxt); gsub(/ next_[a-z]*=/, ":", nxt)
      for (i=1;i<=n;i++) if (cur!="" && ts>s[i] && last<e[i]) {
        a=(last>s[i]?last:s[i]); b=(ts<e[i]?ts:e[i]); if (b>a) on[i","cur]+=b-a
      }
      for (i=1;i<=n;i++) if (ts>=s[i] && ts<=e[i]) lines[i]=lines[i] sprintf("\n  %.3f %s -> %s", ts*1000, prev, nxt)
      if (nxt ~ /^oomguard:[0-9]*:100$/) { gstart=ts; bl="" }
      if (prev ~ /^oomguard:[0-9]*:100:/ && gstart && ts-gstart>=0.001) bursts=bursts sprintf(" %.1f+%.2f%s", gstart*1000, (ts-gstart)*1000, substr(prev, length(prev)))
      if (prev ~ /^oomguard:[0-9]*:100:/ && gstart && ts-gstart>=burst/1000 && bl != "") slow=slow sprintf("\n  %.1f+%.2f:%s", gstart*1000, (ts-gstart)*1000, bl)
      cur=nxt; last=ts; next
    }
    /sys_e(nter|xit): NR/ && $1 ~ /^oomguard-[0-9]+$/ {
      ts=$0; sub(/^.*\] [^ ]* +/, "", ts); sub(/:.*/, "", ts); ts+=0
      nr=$0; sub(/.*NR /, "", nr); sub(/ .*/, "", nr)
      if ($0 ~ /sys_enter/) { enter[nr]=ts; next }
      if (nr in enter) {
        d=(ts-enter[nr])*1000; sc[nr]+=d; cnt[nr]++
        if (nr != 271 && nr != 230 && nr != 7) { bl=bl sprintf(" %s%s", nr, (d>=0.1?sprintf("+%.2f", d):"")) }
      }
      next
    }
    /sched_wakeup:.*pid=/ {
      ts=$0; sub(/^.*\] [^ ]* +/, "", ts); sub(/:.*/, "", ts); ts+=0
      if (index($0, "pid=" hb " ")) for (i=1;i<=n;i++) if (ts>=s[i] && ts<=e[i]) lines[i]=lines[i] sprintf("\n  %.3f wakeup heartbeat", ts*1000)
      next
    }
    END {
      printf "trace_guard_bursts=%s\n", bursts
      if (slow != "") printf "trace_guard_burst_syscalls=(NR[+ms] in each burst of %s ms or more)%s\n", burst, slow
      out=""; for (k in sc) out=out sprintf(" NR%s:%d/%.1fms", k, cnt[k], sc[k]); if (out != "") printf "trace_guard_syscalls=%s\n", out
      for (i=1;i<=n;i++) {
        out=""
        for (k in on) { split(k, p, ","); if (p[1]==i) out=out sprintf(" %s=%.2f", substr(k, length(i)+2), on[k]*1000) }
        printf "trace_stall=%.1f late %.1f oncpu_ms:%s%s\n", e[i]*1000, late[i], out, lines[i]
      }
    }' /tmp/heartbeat.log /tmp/trace.txt >>/tmp/result
}
