#!/usr/bin/env bash
# Builds the Debian package: the release binary, man pages and shell completions generated
# from the CLI (`cargo run --example assets`), then `cargo deb --no-build`. Prints the .deb's path.
set -euo pipefail
cd "$(dirname "$0")/.."
# A target directory of its own: the package is built without the test-only features that
# `cargo test` turns on, and building it never replaces the binary a running test suite uses.
export CARGO_TARGET_DIR="${OOMGUARD_DEB_TARGET:-$PWD/target/deb}"
command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --locked
cargo build --release --bin oomguard
rm -rf target/assets
cargo run --release --example assets -- target/assets >&2
cargo deb --no-build "$@"
