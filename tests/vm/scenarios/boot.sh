# Boots and reports: guest uptime at this point, memory, swap modules loaded (harness check).
res uptime_s "$(cut -d' ' -f1 /proc/uptime)"
res mem_total_kb "$(meminfo MemTotal)"
res mem_available_kb "$(meminfo MemAvailable)"
res zram_loaded "$([ -e /sys/block/zram0 ] && echo 1 || echo 0)"
res psi "$([ -r /proc/pressure/memory ] && echo 1 || echo 0)"
res cgroup2_memory "$(grep -qw memory /sys/fs/cgroup/cgroup.controllers && echo 1 || echo 0)"
