# The kernel alone meets a fast hog; then `oomguard explain --kmsg --json` reads the guest's own
# OOM report back. Reports what the guest knows (the hog's PID, its exit status, the kernel's
# kill count) beside explain's JSON, for the host to compare.
hold innocent 16M
res oom_kills_before "$(oom_kills)"
hog --max 2G >/tmp/hog.out 2>&1 &
HOG=$!
res hog_pid "$HOG"
wait "$HOG"; res hog_exit $?
res oom_kills_after "$(oom_kills)"
res kernel_victims "$(kernel_victims)"
oomguard explain --kmsg --json >/tmp/explain.json 2>/tmp/explain.err
res explain_exit $?
res explain_json "$(tr '\n' ' ' </tmp/explain.json)"
res explain_stderr "$(head -c 400 /tmp/explain.err | tr '\n' ' ')"
