#!/usr/bin/env bash
# Builds the Debian package: the release binary, man pages and shell completions generated
# from the CLI (`oomguard generate`), then `cargo deb --no-build`. Prints the .deb's path.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --locked
cargo build --release --bin oomguard
rm -rf target/assets
target/release/oomguard generate target/assets >&2
cargo deb --no-build "$@"
