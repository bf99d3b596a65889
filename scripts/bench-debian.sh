#!/usr/bin/env bash
# Scenario 4 of issue 18: the seed's story (a leaking PHP request in apache2 beside a large
# MariaDB) on the Debian bookworm VM (tests/vm/debian), side by side: oomguard (the .deb,
# shipped config), earlyoom and nohang (Debian's packages and defaults), systemd-oomd (its
# documented setup) and the kernel alone. One boot per guard, RUNS runs per boot (services
# restored between runs). Not a test and not in CI: about 5-25 min per guard under TCG.
#
#   scripts/bench-debian.sh [--runs N] [--jobs N] [--guards oomguard,earlyoom,...]
#                           [--leak-timeout S] [--report-only]
#
# Writes docs/bench/debian-runs.jsonl (one record per run), docs/bench/debian.md (method,
# table) and docs/bench/debian.png (chart). Raw guest output stays in target/bench-debian/.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=5 jobs=2 guards=oomguard,earlyoom,nohang,systemd-oomd,kernel leak_timeout=120 report_only=0
while [ $# -gt 0 ]; do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --guards) guards=$2; shift 2 ;;
    --leak-timeout) leak_timeout=$2; shift 2 ;;
    --report-only) report_only=1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
if ! /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 python3-matplotlib >/dev/null
fi
raw=target/bench-debian
mkdir -p "$raw"
if [ "$report_only" = 0 ]; then
  deb=$(scripts/deb.sh | tail -n1)
  tests/vm/debian/build-image.sh >/dev/null
  IFS=, read -r -a list <<<"$guards"
  pids=()
  for g in "${list[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 2; done
    echo "bench-debian: $g, $runs runs" >&2
    rm -rf "${raw:?}/$g"
    ( DEB=$deb VM_TIMEOUT=$(( 300 + runs * (leak_timeout + 150) )) \
        tests/vm/debian/run.sh "$raw/$g" bench GUARD="$g" RUNS="$runs" LEAK_TIMEOUT="$leak_timeout" \
        > "$raw/$g.report" 2>&1 || echo "bench-debian: $g failed (see $raw/$g.report)" >&2 ) &
    pids+=($!)
  done
  wait "${pids[@]}"
fi
exec /usr/bin/python3 scripts/bench_debian.py "$raw" "$guards" "$leak_timeout"
