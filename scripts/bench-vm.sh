#!/usr/bin/env bash
# Side-by-side OOM benchmark in throwaway VMs: the same memory storms with oomguard, earlyoom
# nohang and the kernel alone, >= 10 runs each, interleaved. Not a test and not in CI: about
# 15-30 s of host time per run, two VMs at a time (4 storms x 4 daemons x 10 runs: ~30 min).
#
#   scripts/bench-vm.sh [--runs N] [--jobs N] [--storms fast1,fast4,slow,forkstorm]
#                       [--daemons oomguard,earlyoom,nohang,kernel]
#
# Writes docs/bench/vm.md (tables: medians, ranges, oomguard/peer ratios), docs/bench/vm.png
# and docs/bench/vm-runs.jsonl (one record per run).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 python3-matplotlib >/dev/null
fi
cargo build --release --quiet --bin oomguard
# The storms' hog is the tests' helper binary (never part of a release build).
cargo build --release --quiet --features test-support --bin oomguard-hog
export VM_NOHANG=1
tests/vm/build.sh target/release/oomguard target/release/oomguard-hog
exec /usr/bin/python3 scripts/bench_vm.py "$@"
