#!/usr/bin/env bash
# Installs what the tests need (Debian packages) and runs the whole test suite.
# Tests that need root and cgroups run for real; with CI=true a missing prerequisite fails.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg_cmd in "stress-ng:stress-ng" "tmux:tmux" "promtool:prometheus" "dbus-daemon:dbus" \
               "qemu-system-x86_64:qemu-system-x86" "busybox:busybox-static" "cpio:cpio" \
               "systemd-analyze:systemd" "zstd:zstd" "xz:xz-utils" \
               "mmdebstrap:mmdebstrap" "mke2fs:e2fsprogs" "debugfs:e2fsprogs" "gcc:gcc" \
               "readelf:binutils" "flock:util-linux" "strace:strace"; do
  cmd=${pkg_cmd%%:*}; pkg=${pkg_cmd##*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The Debian package: build (cargo-deb, installed if missing), dpkg -i, run, dpkg -r, purge.
# Skipped when test filters are given; run first so the test runner's summary comes last.
if [ $# -eq 0 ]; then
  ./scripts/deb-check.sh
fi

cargo test --release "$@"
# Tests that must run alone (marked #[ignore] with the reason; each named here), one at a time.
# A name that matches no test would run nothing and pass: the count of tests run is checked.
alone() {
  local want=$1 log
  shift
  log=$(mktemp)
  "$@" --ignored --exact --test-threads 1 2>&1 | tee "$log"
  if ! grep -q "test result: ok. $want passed" "$log"; then
    echo "expected $want test(s) run alone and passed: $*" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
}
if [ $# -eq 0 ]; then
  alone 3 cargo test --release --test integration -- \
    link_order::a_settled_daemons_resident_code_is_the_listed_code \
    near_rescans::near_the_levels_the_rescans_between_full_ones_are_bounded \
    idle_floor::far_from_the_levels_a_wake_up_reads_sysinfo_not_meminfo
  # The same on the shipped build (no test-support feature: it inlines differently). Built after
  # the suite (its crates are cached from deb-check's build: a relink), copied out of the way of
  # the tests' own build of target/release/oomguard.
  cargo build --release --quiet --bin oomguard
  # Copied just before the daemon starts: its pages are still dirty, which the daemon writes
  # back itself before it evicts its start-up code (the kernel keeps dirty pages cached on
  # POSIX_FADV_DONTNEED; kill_path::a_daemon_started_from_a_fresh_copy_evicts_what_it_does_not_map).
  cp target/release/oomguard target/oomguard-shipped
  OOMGUARD_RESIDENT_BIN="$PWD/target/oomguard-shipped" alone 1 cargo test --release \
    --test integration -- link_order::a_settled_daemons_resident_code_is_the_listed_code
fi
