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
unit=$(grep -o '\./\(usr/\)\?lib/systemd/system/oomguard\.service$' <<<"$listing" || true)
[ -n "$unit" ] || { echo "deb-check: oomguard.service missing from the package" >&2; exit 1; }
for f in ./usr/bin/oomguard ./etc/oomguard/oomguard.toml ./etc/init.d/oomguard \
         ./usr/share/man/man1/oomguard.1.gz ./usr/share/man/man1/oomguard-run.1.gz \
         ./usr/share/bash-completion/completions/oomguard ./usr/share/zsh/vendor-completions/_oomguard \
         ./usr/share/fish/vendor_completions.d/oomguard.fish ./etc/logrotate.d/oomguard \
         ./usr/share/man/man5/oomguard.toml.5.gz; do
  grep -q " $f\$" <<<"$listing" || { echo "deb-check: $f missing from the package" >&2; exit 1; }
done
# The tests' hog is never shipped.
if grep -q 'hog' <<<"$listing"; then echo "deb-check: the package ships a test hog" >&2; exit 1; fi
# The control file: a one-line synopsis (under 80 characters), then the extended description.
# `sed -n 1p`, not `head -n1`: head exits after the first line, and under `pipefail` a writer
# that writes after that dies of SIGPIPE and fails the script (exit 141 in a CI run).
synopsis=$(dpkg-deb --field "$deb" Description | sed -n 1p)
[ ${#synopsis} -lt 80 ] || { echo "deb-check: synopsis longer than 79 characters: $synopsis" >&2; exit 1; }
second=$(dpkg-deb --field "$deb" Description | sed -n 2p)
case $second in " "*) ;; *) echo "deb-check: the description's second line is not indented" >&2; exit 1 ;; esac
# Maintainer scripts: enable/start and stop through deb-systemd-helper/-invoke, purge cleans state.
ctl=$(mktemp -d); trap 'rm -rf "$ctl"' EXIT
dpkg-deb --control "$deb" "$ctl"
grep -q 'deb-systemd-helper enable' "$ctl/postinst" || { echo "deb-check: postinst does not enable the unit" >&2; exit 1; }
grep -q '_dh_action=start' "$ctl/postinst" || { echo "deb-check: postinst does not start the unit" >&2; exit 1; }
grep -q 'deb-systemd-invoke stop' "$ctl/prerm" || { echo "deb-check: prerm does not stop the unit" >&2; exit 1; }
grep -q 'rm -rf /var/lib/oomguard' "$ctl/postrm" || { echo "deb-check: postrm does not remove /var/lib/oomguard" >&2; exit 1; }
grep -q '/etc/init.d/oomguard' "$ctl/conffiles" || { echo "deb-check: the init script is not a conffile" >&2; exit 1; }
# The binary is stripped (no symbol table).
dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/bin/oomguard > "$ctl/oomguard"
if readelf -S "$ctl/oomguard" | grep -q '\.symtab'; then echo "deb-check: /usr/bin/oomguard is not stripped" >&2; exit 1; fi
echo "deb-check: control ok (synopsis: $synopsis), maintainer scripts ok, binary stripped"
# Installing starts oomguard.service where systemd runs: never here (a real guard on the build
# host). There, the Debian VM test (tests/vm_debian.rs) installs, runs and purges it.
if [ -d /run/systemd/system ]; then
  echo "deb-check: systemd runs on this host; the install/remove/purge cycle is left to the VM test"
  exit 0
fi
dpkg -i "$deb"
version=$(/usr/bin/oomguard --version)
echo "deb-check: installed: $version"
[ "$version" = "oomguard $(awk -F'"' '/^version = /{print $2; exit}' Cargo.toml)" ]
/usr/bin/oomguard check-config /etc/oomguard/oomguard.toml
man -w oomguard-events >/dev/null 2>&1 || [ -f /usr/share/man/man1/oomguard-events.1.gz ]
dpkg -r oomguard
[ ! -e /usr/bin/oomguard ] || { echo "deb-check: /usr/bin/oomguard left after dpkg -r" >&2; exit 1; }
dpkg --purge oomguard
for f in /etc/oomguard/oomguard.toml "/${unit#./}" /etc/init.d/oomguard /usr/share/man/man1/oomguard.1.gz \
         /var/lib/oomguard /etc/systemd/system/multi-user.target.wants/oomguard.service; do
  [ ! -e "$f" ] || { echo "deb-check: $f left after purge" >&2; exit 1; }
done
if dpkg -s oomguard >/dev/null 2>&1; then echo "deb-check: package still known to dpkg" >&2; exit 1; fi
echo "deb-check: ok (built, installed, ran, removed, purged)"
