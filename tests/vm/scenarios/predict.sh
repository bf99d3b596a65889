# `oomguard why --json` against the guest kernel's own /proc/PID/oom_score: two processes with
# CAP_SYS_ADMIN (root's: the 3 % root bonus of kernels before 4.17), one at oom_score_adj 300,
# and one without it, each holding 96 MiB. Reports why's document and the kernel's score.
hog --name withadmin --max 96M >/tmp/withadmin.out 2>&1 &
A=$!
hog --name adjusted --max 96M >/tmp/adjusted.out 2>&1 &
B=$!
hog --name noadmin --max 96M --no-sys-admin >/tmp/noadmin.out 2>&1 &
C=$!
echo 300 >"/proc/$B/oom_score_adj"
for n in withadmin adjusted noadmin; do
  wait_for 30 holding "/tmp/$n.out" || echo "vm: $n did not reach 96M"
done
for pair in "withadmin $A" "adjusted $B" "noadmin $C"; do
  set -- $pair
  res "capeff_$1" "$(awk '/^CapEff/{print $2}' "/proc/$2/status")"
  oomguard why "$2" --json >/tmp/why.json 2>/tmp/why.err
  res "why_exit_$1" $?
  res "why_$1" "$(tr '\n' ' ' </tmp/why.json)"
  res "why_stderr_$1" "$(head -c 300 /tmp/why.err | tr '\n' ' ')"
  res "kernel_score_$1" "$(cat "/proc/$2/oom_score")"
  res "why_text_$1" "$(oomguard why "$2" 2>&1 | tr '\n' '|')"
done
kill -9 "$A" "$B" "$C"
