# Smoke: boot facts.
result pid1 "$(cat /proc/1/comm)"
result cgroup_fs "$(stat -fc %T /sys/fs/cgroup)"
result psi "$(head -c 60 /proc/pressure/memory)"
result uptime "$(cut -d' ' -f1 /proc/uptime)"
result mem "$(grep MemTotal /proc/meminfo)"
