# Guest helpers for tests/vm/debian scenarios (POSIX sh, sourced by run.sh; D = data disk).
O=$D/out
RESULT=$O/result
: > "$RESULT"
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
DB_ROWS=${DB_ROWS:-5000}

# result KEY VALUE...: one fact for the host (out/result, key=value).
# Mirrored on the console, so a run cut short by the host's timeout still leaves its facts.
result() {
  k=$1; shift
  printf '%s=%s\n' "$k" "$*" >> "$RESULT"
  echo "RESULT $k=$*"
  echo "RESULT $k=$*" > /dev/console 2>/dev/null
}
now() { "$D/vmprobe" now; }
log() { echo "[$(cut -d' ' -f1 /proc/uptime)] $*"; }

# wait_for SECONDS CMD...: until CMD succeeds (0) or the time is up (1).
wait_for() {
  _t=$1; shift
  _end=$(( $(cut -d. -f1 /proc/uptime) + _t ))
  while ! "$@" >/dev/null 2>&1; do
    [ "$(cut -d. -f1 /proc/uptime)" -ge "$_end" ] && return 1
    sleep 0.3
  done
}

http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time "${2:-5}" "http://127.0.0.1/$1"; }
http_ok() { [ "$(http_code "$1")" = 200 ]; }
db_count() { mysql -N -B -e "SELECT COUNT(*) FROM oomtest.big" 2>/dev/null; }
db_ok() { [ "$(db_count)" = "$DB_ROWS" ]; }
main_pid() { systemctl show -p MainPID --value "$1"; }

# The .deb from the data disk, installed with apt as a user would.
install_oomguard() {
  cd "$D" || return 1
  log "apt install ./$(ls oomguard_*.deb)"
  apt-get install -y -q --no-install-recommends ./oomguard_*.deb > "$O/apt-install.log" 2>&1
  result install_rc $?
  cd / || true
  result deb_version "$(dpkg-query -W -f '${Version}' oomguard)"
  # OG_CONF (scenario variable, for experiments): TOML lines (\n escapes) that replace the
  # shipped config; the service is restarted with it.
  # OG_ENV (for experiments): NAME=VALUE words put into the service's environment.
  if [ -n "${OG_ENV:-}" ]; then
    mkdir -p /etc/systemd/system/oomguard.service.d
    printf '[Service]\nEnvironment=%s\n' "$OG_ENV" > /etc/systemd/system/oomguard.service.d/90-experiment.conf
    systemctl daemon-reload
    systemctl restart oomguard
    result og_env "$OG_ENV"
  fi
  if [ -n "${OG_CONF:-}" ]; then
    printf '%b\n' "$OG_CONF" > /etc/oomguard/oomguard.toml
    systemctl restart oomguard
    result og_conf "$(tr '\n' ';' < /etc/oomguard/oomguard.toml)"
  fi
  result unit_enabled "$(systemctl is-enabled oomguard)"
  wait_for 30 systemctl is-active oomguard
  result unit_active "$(systemctl is-active oomguard)"
}

# mariadb (a MEMORY table of DB_ROWS x 60 KB makes it the largest process) and apache2 (prefork,
# mod_php) serving leak.php and db.php.
setup_services() {
  mkdir -p /var/lib/oomtest && chown www-data: /var/lib/oomtest
  cat > /etc/mysql/mariadb.conf.d/99-oomtest.cnf <<'CNF'
[mysqld]
max_heap_table_size = 1G
performance_schema = OFF
skip-name-resolve
CNF
  cat > /etc/apache2/conf-enabled/oomtest.conf <<'CNF'
<IfModule mpm_prefork_module>
  StartServers 4
  MinSpareServers 4
  MaxSpareServers 8
  MaxRequestWorkers 16
  MaxConnectionsPerChild 0
</IfModule>
CNF
  cp "$D"/www/*.php /var/www/html/
  ensure_services
}

db_fill() {
  mysql -e "CREATE DATABASE IF NOT EXISTS oomtest; USE oomtest;
    CREATE USER IF NOT EXISTS 'oomtest'@'localhost' IDENTIFIED BY 'oomtest';
    GRANT SELECT ON oomtest.* TO 'oomtest'@'localhost';
    SET SESSION max_heap_table_size = 1073741824;
    CREATE TABLE IF NOT EXISTS oomtest.big (id INT PRIMARY KEY, pad VARBINARY(60000)) ENGINE=MEMORY;
    INSERT IGNORE INTO oomtest.big SELECT seq, REPEAT('x', 60000) FROM seq_1_to_$DB_ROWS;"
}

# Both services up, the table full, db.php answering. Restarts what an earlier run killed.
ensure_services() {
  systemctl is-active -q mariadb || systemctl restart mariadb
  db_ok || db_fill
  systemctl is-active -q apache2 || systemctl restart apache2
  wait_for 60 http_ok db.php || log "db.php does not answer"
}

# Long-lived user-space processes as "pid comm" lines (the test's own short-lived tools left out).
snapshot() {
  # Kernel threads (children of kthreadd) come and go on their own: left out.
  ps -e -o pid=,ppid=,comm= | awk '$1 != 2 && $2 != 2 {print $1, $3}' | awk '$2 !~ /^(ps|awk|sh|curl|sleep|vmprobe|mysql|cat|grep|sed|systemctl|journalctl|timeout|date|cut|head|tail|sort|wc|kill|runuser|dbus-monitor)$/ {print $1, $2}' | sort -n
}

# story_run TAG: the seed's story once. A leaking request in one apache worker, db.php probed
# every 0.2 s, a heartbeat; facts as TAG_key=value. LEAK_TIMEOUT bounds the run.
story_run() {
  tag=$1
  ensure_services
  db_pid=$(main_pid mariadb)
  snapshot > "$O/$tag.before"
  oom0=$(awk '/^oom_kill /{print $2}' /proc/vmstat)
  cursor=$(journalctl -n0 --show-cursor 2>/dev/null | sed -n 's/^-- cursor: //p')
  # The guard's CPU time over the run (utime + stime), when GUARD_COMM (scenario variable) names it.
  gpid=$(pgrep -o -x "${GUARD_COMM:-none}" 2>/dev/null || true)
  gcpu0=$([ -n "$gpid" ] && awk '{print $14 + $15}' /proc/$gpid/stat 2>/dev/null || true)
  rm -f /var/lib/oomtest/leak.pid "$O/$tag.probe" /dev/shm/hb /dev/shm/hb.at /tmp/watch
  ( while :; do
      printf '%s %s\n' "$(now)" "$(http_code db.php 3)" >> "$O/$tag.probe"
      sleep 0.2
    done ) &
  probe_pid=$!
  "$D/vmprobe" heartbeat /dev/shm/hb &
  hb_pid=$!
  # TOP=1 (scenario variable, for experiments): what ran, every 0.2 s for 15 s, into TAG.top.
  if [ "${TOP:-0}" = 1 ]; then
    ( while :; do echo "== $(now)"; top -b -n 1 -w 200 | sed -n '8,16p'; sleep 0.2; done ) > "$O/$tag.top" 2>&1 &
    top_pid=$!
  fi
  # TOP=2: the guard's threads' CPU ticks (utime+stime), every 0.1 s, into TAG.threads.
  if [ "${TOP:-0}" = 2 ] && [ -n "$gpid" ]; then
    ( while :; do printf '%s' "$(now)"; for f in /proc/$gpid/task/*/stat; do awk '{printf " %s:%d", $2, $14 + $15}' "$f" 2>/dev/null; done; echo; sleep 0.1; done ) > "$O/$tag.threads" 2>&1 &
    top_pid=$!
  fi
  t0=$(now)
  curl -s -o /dev/null --max-time "${LEAK_TIMEOUT:-150}" "http://127.0.0.1/leak.php?mb=${LEAK_MB:-8}&us=${LEAK_US:-20000}" &
  curl_pid=$!
  wait_for 20 test -s /var/lib/oomtest/leak.pid
  leak_pid=$(cat /var/lib/oomtest/leak.pid 2>/dev/null)
  avail=$(awk '/^MemAvailable:/{print $2}' /proc/meminfo)
  "$D/vmprobe" watch /tmp/watch $(( avail / 2 )) "$leak_pid" "$db_pid" &
  watch_pid=$!
  log "$tag: leaking worker $leak_pid, mariadbd $db_pid"
  wait "$curl_pid"
  t_end=$(now)
  # Let the guard (or systemd) finish what it does after the kill, then see what answers.
  sleep "${SETTLE:-5}"
  kill "$watch_pid"; wait "$watch_pid" 2>/dev/null
  wait_for 60 http_ok db.php
  t_back=$(now)
  kill "$probe_pid" "$hb_pid" ${top_pid:-}; wait "$probe_pid" "$hb_pid" ${top_pid:-} 2>/dev/null
  snapshot > "$O/$tag.after"
  if [ -n "$gpid" ] && [ -n "$gcpu0" ]; then
    result "${tag}_guard_cpu_ms" "$(( ( $(awk '{print $14 + $15}' /proc/$gpid/stat 2>/dev/null || echo "$gcpu0") - gcpu0 ) * 1000 / $(getconf CLK_TCK) ))"
  fi
  journalctl --after-cursor "$cursor" -o short-monotonic --no-pager > "$O/$tag.journal" 2>/dev/null
  died=$(awk 'NR==FNR {seen[$1]=1; next} !($1 in seen) {printf "%s:%s ", $1, $2}' "$O/$tag.after" "$O/$tag.before")
  result "${tag}_leak_pid" "$leak_pid"
  result "${tag}_db_pid" "$db_pid"
  result "${tag}_leak_ms" "$(( t_end - t0 ))"
  result "${tag}_died" "$died"
  result "${tag}_innocent" "$(echo "$died" | tr ' ' '\n' | grep -c -v -e "^$leak_pid:" -e '^$')"
  result "${tag}_leaker_died" "$(kill -0 "$leak_pid" 2>/dev/null && echo 0 || echo 1)"
  result "${tag}_db_same_pid" "$([ "$(main_pid mariadb)" = "$db_pid" ] && kill -0 "$db_pid" 2>/dev/null && echo 1 || echo 0)"
  result "${tag}_db_answers" "$(db_ok && echo 1 || echo 0)"
  result "${tag}_http_after" "$(http_code db.php)"
  result "${tag}_kernel_kills" "$(( $(awk '/^oom_kill /{print $2}' /proc/vmstat) - oom0 ))"
  result "${tag}_heartbeat_ms" "$(cat /dev/shm/hb 2>/dev/null || echo -1)"
  # When the worst stall ended, in ms from the leak's start (t0; the leak request ended at leak_ms).
  hb_at=$(cut -d. -f1 /dev/shm/hb.at 2>/dev/null)
  result "${tag}_heartbeat_at_ms" "$([ -n "$hb_at" ] && echo $(( hb_at - t0 )) || echo -1)"
  # Worst gap between answered probes from the start of the leak until db.php answered again.
  result "${tag}_http_gap_ms" "$(awk -v t0="$t0" -v tb="$t_back" '
      $2 == 200 { if (last == "") last = t0; if ($1 - last > gap) gap = $1 - last; last = $1 }
      END { if (last == "") last = t0; if (tb - last > gap) gap = tb - last; printf "%d", gap }' "$O/$tag.probe")"
  sed "s/^/${tag}_/" /tmp/watch >> "$RESULT"
  sed "s/^/RESULT ${tag}_/" /tmp/watch > /dev/console 2>/dev/null
}

# The guard under test: oomguard (installed from the .deb, shipped config), earlyoom or nohang
# (Debian's packages and defaults), systemd-oomd (its documented setup: swap on zram for the
# swap rule, ManagedOOMSwap=kill on -.slice, ManagedOOMMemoryPressure=kill on system.slice and
# user.slice, default limits), or kernel (none).
start_guard() {
  case $1 in
    oomguard) install_oomguard ;;
    earlyoom|nohang) systemctl start "$1"; result guard_active "$(systemctl is-active "$1")" ;;
    systemd-oomd)
      modprobe zram
      echo lzo-rle > /sys/block/zram0/comp_algorithm 2>/dev/null
      echo 512M > /sys/block/zram0/disksize
      mkswap /dev/zram0 >/dev/null && swapon /dev/zram0
      mkdir -p /etc/systemd/system/-.slice.d /etc/systemd/system/system.slice.d /etc/systemd/system/user.slice.d
      printf '[Slice]\nManagedOOMSwap=kill\n' > /etc/systemd/system/-.slice.d/10-oomd.conf
      printf '[Slice]\nManagedOOMMemoryPressure=kill\n' > /etc/systemd/system/system.slice.d/10-oomd.conf
      printf '[Slice]\nManagedOOMMemoryPressure=kill\n' > /etc/systemd/system/user.slice.d/10-oomd.conf
      systemctl daemon-reload
      systemctl start systemd-oomd
      result guard_active "$(systemctl is-active systemd-oomd)"
      result swap_kb "$(awk '/^SwapTotal:/{print $2}' /proc/meminfo)"
      result oomd_settings "-.slice ManagedOOMSwap=$(systemctl show -p ManagedOOMSwap --value -- -.slice)" \
        "system.slice ManagedOOMMemoryPressure=$(systemctl show -p ManagedOOMMemoryPressure --value system.slice)" \
        "user.slice ManagedOOMMemoryPressure=$(systemctl show -p ManagedOOMMemoryPressure --value user.slice)"
      # systemd-oomd learns the managed cgroups from PID 1 over varlink: wait until oomctl
      # lists them (proof that it monitors, not only runs).
      wait_for 30 sh -c 'oomctl dump | grep -q "Path: /system.slice"'
      oomd_dump "$O/oomctl.txt"
      ;;
    kernel) : ;;
    *) echo "unknown guard $1"; return 1 ;;
  esac
}

# oomd_dump FILE [PREFIX]: `oomctl dump` into FILE; its limits and monitored cgroups as results
# (PREFIXoomd_limits, PREFIXoomd_monitored: "swap:/ pressure:/system.slice ...").
oomd_dump() {
  oomctl dump > "$1" 2>&1
  result "${2:-}oomd_limits" "$(grep -E '^(Swap Used Limit|Default Memory Pressure Limit|Default Memory Pressure Duration):' "$1" | tr '\n' ';')"
  result "${2:-}oomd_monitored" "$(awk '/^Swap Monitored CGroups/ {k="swap"} /^Memory Pressure Monitored CGroups/ {k="pressure"} /Path:/ {printf "%s:%s ", k, $2}' "$1")"
}
