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

# Starts the watcher (vmprobe watch) on the given PIDs and opens the gate. $WATCH_PID.
start_watch_and_go() {
  local recover=$(( $(meminfo MemAvailable) * 8 / 10 ))
  res recover_kb "$recover"
  vmprobe heartbeat /tmp/heartbeat &
  HB_PID=$!
  vmprobe watch /tmp/watch "$recover" "$@" &
  WATCH_PID=$!
  usleep 20000
  res go_mono_ms "$(vmprobe now)"
  echo go >/tmp/go
}

stop_watch() {
  kill "$WATCH_PID" "$HB_PID" 2>/dev/null
  wait "$WATCH_PID" 2>/dev/null
  cat /tmp/watch >>/tmp/result
  res heartbeat_worst_ms "$(cat /tmp/heartbeat 2>/dev/null || echo -1)"
  res heartbeat_worst_at_ms "$(cat /tmp/heartbeat.at 2>/dev/null || echo -1)"
  # Every stall of 5 ms or more, "END_MS:LATE_MS" (CLOCK_MONOTONIC), for locating them.
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
    earlyoom) grep -i 'sending SIG' /tmp/daemon.log | sed 's/^/earlyoom_kill=/' >>/tmp/result ;;
    nohang) grep -iE 'SIGTERM|SIGKILL|victim' /tmp/daemon.log | sed 's/^/nohang_kill=/' >>/tmp/result ;;
  esac
  if [ -n "$VM_DEBUG" ]; then
    sed 's/^/daemon_log=/' /tmp/daemon.log >>/tmp/result 2>/dev/null
  fi
  res mem_total_kb "$(meminfo MemTotal)"
}
