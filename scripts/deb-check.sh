#!/usr/bin/env bash
# Builds the Debian package, installs it, runs the installed oomguard, removes and purges it,
# and checks that nothing is left behind. Needs root and dpkg. Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ] || ! command -v dpkg >/dev/null 2>&1; then
  echo "deb-check: SKIPPED (needs root and dpkg)"; [ "${CI:-}" = true ] && exit 1; exit 0
fi
if [ -e /usr/bin/oomguard ] && ! dpkg -s oomguard >/dev/null 2>&1; then
  echo "deb-check: /usr/bin/oomguard exists and is not from our package; not touching it" >&2
  exit 1
fi
deb=$(scripts/deb.sh | tail -n1)
echo "deb-check: built $deb"
dpkg-deb --info "$deb" >/dev/null
listing=$(dpkg-deb --contents "$deb")
for f in ./usr/bin/oomguard ./lib/systemd/system/oomguard.service ./etc/oomguard/oomguard.toml \
         ./usr/share/man/man1/oomguard.1.gz ./usr/share/man/man1/oomguard-run.1.gz \
         ./usr/share/bash-completion/completions/oomguard ./usr/share/zsh/vendor-completions/_oomguard \
         ./usr/share/fish/vendor_completions.d/oomguard.fish; do
  grep -q " $f\$" <<<"$listing" || { echo "deb-check: $f missing from the package" >&2; exit 1; }
done
dpkg -i "$deb"
version=$(/usr/bin/oomguard --version)
echo "deb-check: installed: $version"
[ "$version" = "oomguard $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)" ]
/usr/bin/oomguard check-config /etc/oomguard/oomguard.toml
man -w oomguard-events >/dev/null 2>&1 || [ -f /usr/share/man/man1/oomguard-events.1.gz ]
dpkg -r oomguard
[ ! -e /usr/bin/oomguard ] || { echo "deb-check: /usr/bin/oomguard left after dpkg -r" >&2; exit 1; }
dpkg --purge oomguard
for f in /etc/oomguard/oomguard.toml /lib/systemd/system/oomguard.service /usr/share/man/man1/oomguard.1.gz; do
  [ ! -e "$f" ] || { echo "deb-check: $f left after purge" >&2; exit 1; }
done
if dpkg -s oomguard >/dev/null 2>&1; then echo "deb-check: package still known to dpkg" >&2; exit 1; fi
echo "deb-check: ok (built, installed, ran, removed, purged)"
