#!/usr/bin/env bash
# Builds the Debian bookworm VM image for tests/vm/debian, once per machine: mmdebstrap (minbase
# + packages.txt) into a directory, the boot-time runner from guest/, then `mke2fs -d` makes
# rootfs.img without mounting; the image's own kernel and initrd are copied beside it.
# Cached under ${OOMGUARD_VM_CACHE:-/var/cache/oomguard-vm}/debian-<hash>, the hash being of
# packages.txt, this script and guest/. Prints the cache directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${OOMGUARD_VM_CACHE:-/var/cache/oomguard-vm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
hash=$(cat "$here/packages.txt" "$here/build-image.sh" "$here"/guest/* | sha256sum | cut -c1-16)
out=$cache/debian-$hash
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ -f "$out/done" ]; then echo "$out"; exit 0; fi
for t in mmdebstrap:mmdebstrap mke2fs:e2fsprogs qemu-system-x86_64:qemu-system-x86 debugfs:e2fsprogs; do
  command -v "${t%%:*}" >/dev/null || { echo "build-image: ${t%%:*} missing (apt-get install ${t##*:})" >&2; exit 1; }
done
rm -rf "$out" "$out.tmp"
mkdir -p "$out.tmp"
root=$out.tmp/root
pkgs=$(grep -v '^#' "$here/packages.txt" | tr -s ' \n' ',' | sed 's/^,//; s/,$//')
echo "build-image: mmdebstrap bookworm ($pkgs) into $root" >&2
mmdebstrap --variant=minbase --include="$pkgs" \
  --customize-hook='echo oomtest > "$1/etc/hostname"' \
  --customize-hook='printf "/dev/vda / ext4 defaults 0 1\n" > "$1/etc/fstab"' \
  --customize-hook="install -m 755 '$here/guest/vmtest-run' \"\$1/usr/local/sbin/vmtest-run\"" \
  --customize-hook="install -m 644 '$here/guest/vmtest.service' \"\$1/etc/systemd/system/vmtest.service\"" \
  --customize-hook='systemctl --root="$1" enable vmtest.service' \
  --customize-hook='systemctl --root="$1" disable earlyoom.service nohang.service nohang-desktop.service systemd-oomd.service systemd-oomd.socket apache2.service mariadb.service 2>/dev/null || true' \
  --customize-hook='systemctl --root="$1" mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer logrotate.timer man-db.timer dpkg-db-backup.timer systemd-tmpfiles-clean.timer phpsessionclean.timer 2>/dev/null || true' \
  --customize-hook='chroot "$1" useradd -m -u 1000 -s /bin/sh user' \
  --customize-hook='chroot "$1" passwd -d root' \
  --customize-hook='rm -rf "$1"/usr/share/doc/* "$1"/usr/share/man/* "$1"/var/cache/apt/archives/*.deb' \
  bookworm "$root" "deb $mirror bookworm main" "deb ${mirror%/debian}/debian-security bookworm-security main" >&2
cp "$(ls "$root"/boot/vmlinuz-* | tail -n1)" "$out.tmp/vmlinuz"
cp "$(ls "$root"/boot/initrd.img-* | tail -n1)" "$out.tmp/initrd.img"
# stdout is the image path (run.sh reads it); mke2fs 1.47 says "Creating regular file" there.
mke2fs -q -t ext4 -L root -d "$root" "$out.tmp/rootfs.img" 3G >&2
rm -rf "$root"
date -u +%FT%TZ > "$out.tmp/done"
mv "$out.tmp" "$out"
echo "$out"
