#!/usr/bin/env bash
# Builds what the VM scenarios boot: a Debian cloud kernel (downloaded as a .deb with apt-get
# and unpacked, never installed on this host) and an initramfs holding busybox, oomguard and its
# shared libraries, the tests' memory hog (oomguard-hog), earlyoom (from its Debian package, unpacked), the vmprobe helper, the kernel
# modules the scenarios load, the guest init and the scenarios.
#
#   tests/vm/build.sh [OOMGUARD_BINARY [HOG_BINARY]]
#     (default: target/release/oomguard; the hog: oomguard-hog beside it, which only
#      `cargo test` or `cargo build --features test-support --bin oomguard-hog` builds)
#
# Output in tests/vm/work/ (git-ignored): vmlinuz, initrd.cpio (VM_NOHANG=1: initrd-nohang.cpio). Idempotent: downloads happen
# once; the initramfs is rebuilt on every call (about a second). Needs root only for apt-get.
#
# VM_KERNEL=jammy: Ubuntu 22.04's kernel instead (the newest linux-image-5.15.0-*-generic and
# its modules from jammy-updates, ${UBUNTU_MIRROR:-http://archive.ubuntu.com/ubuntu});
# VM_KERNEL=focal: Ubuntu 20.04's 5.4 (linux-image-5.4.0-*-generic and its modules, focal-updates);
# VM_KERNEL=focal-hwe: Ubuntu 20.04.2's hardware-enablement 5.8 (linux-image-5.8.0-*-generic, the
# kernel of 20.10, from focal-updates): the first release with the task iterator (bpf_iter_task);
# VM_KERNEL=bionic: Ubuntu 18.04's 4.15 (linux-image-4.15.0-*-generic and its modules,
# bionic-updates): a kernel before 4.17, which still gives root processes a 3 % bonus;
# VM_KERNEL=bullseye: Debian 11's (the newest linux-image-5.10.0-*-cloud-amd64 of
# bullseye-security). Each .deb is checked against the SHA256 of the archive's package list;
# out: vmlinuz-NAME, initrd-NAME.cpio. 5.x kernels: a cgroup lists its ancestors' ids
# (`ancestor_ids`), the mm's counters are the older `mm_rss_stat`, and 5.10 lacks
# bpf_get_current_task_btf. Ubuntu's zram (jammy, focal) is in linux-modules-extra, not fetched: swap
# scenarios there use a disk image (VM_DISK).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=${VM_WORK:-$here/work}
oomguard=${1:-$repo/target/release/oomguard}
hog=${2:-$(dirname "$oomguard")/oomguard-hog}
mkdir -p "$work/debs"

log() { echo "vm/build: $*" >&2; }

# Host tools, from Debian packages.
need=()
for pc in qemu-system-x86_64:qemu-system-x86 busybox:busybox-static cpio:cpio gcc:gcc \
          dpkg-deb:dpkg ${VM_KERNEL:+curl:curl xz:xz-utils}; do
  command -v "${pc%%:*}" >/dev/null 2>&1 || need+=("${pc##*:}")
done
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)
# The initramfs needs a static busybox (the busybox package is dynamic).
if [ -x /bin/busybox ] && ldd /bin/busybox >/dev/null 2>&1; then need+=(busybox-static); fi
apt_updated=
apt_update() { [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }; }
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt_update
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# apt-get download writes as _apt where it can; a root-owned work dir makes it warn only.
download() { (cd "$work/debs" && apt-get download -q "$@" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true); }

# Kernel: the newest linux-image-*-cloud-amd64 that apt offers (what the meta-package points at),
# or (VM_KERNEL) an older distribution's, fetched with curl from its archive into kpkg-NAME.
kernel=${VM_KERNEL:+-$VM_KERNEL}
# newest LIST REGEX: the package in the list LIST whose name matches REGEX, the highest version.
newest() { awk -v re="$2" '/^Package: /{ if ($2 ~ re) print $2 }' "$1" | sort -V | tail -n1; }
# fetch_deb LIST MIRROR PACKAGE DIR: PACKAGE's .deb from MIRROR, checked against the SHA256
# the list gives for it, unpacked into DIR.
fetch_deb() {
  local file sum deb
  read -r file sum < <(awk -v want="$3" '/^Package: /{p=$2} /^Filename: /{f=$2} /^SHA256: /{s=$2}
    /^$/{if (p == want) print f, s; p=""} END{if (p == want) print f, s}' "$1") ||
    { log "no $3 in $1"; exit 1; }
  deb=$(dirname "$1")/$(basename "$file")
  if [ ! -e "$deb" ] || ! echo "$sum  $deb" | sha256sum -c --quiet - 2>/dev/null; then
    log "downloading $(basename "$file")"
    curl -fsS --retry 3 -m 600 -o "$deb.tmp" "$2/$file"
    echo "$sum  $deb.tmp" | sha256sum -c --quiet - || { log "$(basename "$file"): SHA256 mismatch"; exit 1; }
    mv "$deb.tmp" "$deb"
  fi
  dpkg-deb -x "$deb" "$4"
}
# fetch_list MIRROR SUITE: the suite's amd64 package list, into debs-$VM_KERNEL; prints its path.
fetch_list() {
  local dir=$work/debs-$VM_KERNEL
  mkdir -p "$dir"
  log "fetching the $2 package list from $1"
  curl -fsS --retry 3 -m 300 "$1/dists/$2/main/binary-amd64/Packages.xz" | xz -dc >"$dir/$2-Packages.tmp"
  mv "$dir/$2-Packages.tmp" "$dir/$2-Packages"
  echo "$dir/$2-Packages"
}
if [ -n "$kernel" ]; then
  kdir=$work/kpkg$kernel
  if [ ! -e "$work/vmlinuz$kernel" ] || [ ! -d "$kdir/lib/modules" ]; then
    rm -rf "$kdir"; mkdir -p "$kdir"
    case $VM_KERNEL in
      jammy|focal|focal-hwe|bionic)
        # Ubuntu's newest generic kernel of a series in its -updates suite, and its modules:
        # 22.04's 5.15, 20.04's 5.4 (before the task iterator: the guard scans /proc), or
        # 20.04's HWE 5.8 (the task iterator's first release), or 18.04's 4.15.
        case $VM_KERNEL in
          jammy) suite=jammy-updates series=5.15.0 ;;
          focal) suite=focal-updates series=5.4.0 ;;
          focal-hwe) suite=focal-updates series=5.8.0 ;;
          bionic) suite=bionic-updates series=4.15.0 ;;
        esac
        mirror=${UBUNTU_MIRROR:-http://archive.ubuntu.com/ubuntu}
        list=$(fetch_list "$mirror" "$suite")
        img=$(newest "$list" "^linux-image-${series//./\\.}-[0-9]+-generic\$")
        [ -n "$img" ] || { log "no linux-image-$series-*-generic in $suite"; exit 1; }
        fetch_deb "$list" "$mirror" "$img" "$kdir"
        fetch_deb "$list" "$mirror" "linux-modules-${img#linux-image-}" "$kdir" ;;
      bullseye)
        # Debian 11: the newest 5.10 cloud kernel of bullseye-security (modules included).
        mirror=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
        list=$(fetch_list "$mirror" bullseye-security)
        img=$(newest "$list" '^linux-image-5\.10\.0-[0-9]+-cloud-amd64$')
        [ -n "$img" ] || { log "no linux-image-5.10.0-*-cloud-amd64 in bullseye-security"; exit 1; }
        fetch_deb "$list" "$mirror" "$img" "$kdir" ;;
      *) log "unknown VM_KERNEL=$VM_KERNEL (jammy, focal, focal-hwe, bionic, bullseye, or unset for Debian 12's)"; exit 1 ;;
    esac
    ln -sf "$(ls "$kdir"/boot/vmlinuz-*)" "$work/vmlinuz$kernel"
  fi
  kver=$(basename "$(ls -d "$kdir"/lib/modules/*)")
fi
if [ -z "$kernel" ] && { [ ! -e "$work/vmlinuz" ] || [ ! -d "$work/kpkg/lib/modules" ]; }; then
  kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  if [ -z "$kpkg" ]; then apt_update; kpkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}'); fi
  [ -n "$kpkg" ] || { log "apt offers no linux-image-cloud-amd64"; exit 1; }
  log "downloading $kpkg"
  rm -f "$work"/debs/linux-image-*.deb
  download "$kpkg"
  rm -rf "$work/kpkg"; mkdir -p "$work/kpkg"
  dpkg-deb -x "$work"/debs/linux-image-*.deb "$work/kpkg"
  ln -sf "$(ls "$work"/kpkg/boot/vmlinuz-*)" "$work/vmlinuz"
fi
[ -n "$kernel" ] || { kdir=$work/kpkg; kver=$(basename "$(ls -d "$kdir"/lib/modules/*)"); }

# earlyoom, unpacked from its Debian package (a daemon: never installed or started on the host).
if [ ! -x "$work/earlyoom/usr/bin/earlyoom" ]; then
  ls "$work"/debs/earlyoom_*.deb >/dev/null 2>&1 || { download earlyoom || { apt_update; download earlyoom; }; }
  rm -rf "$work/earlyoom"; mkdir -p "$work/earlyoom"
  dpkg-deb -x "$work"/debs/earlyoom_*.deb "$work/earlyoom"
fi

# vmprobe, static.
if [ ! -x "$work/vmprobe" ] || [ "$here/vmprobe.c" -nt "$work/vmprobe" ]; then
  gcc -O2 -static -Wall -o "$work/vmprobe" "$here/vmprobe.c"
fi

[ -x "$oomguard" ] || { log "no oomguard binary at $oomguard (cargo build --release)"; exit 1; }
[ -x "$hog" ] || { log "no oomguard-hog binary at $hog (cargo build --release --features test-support --bin oomguard-hog)"; exit 1; }

# The nohang build is a file of its own, so the tests and the benchmark can run side by side.
flavour=${VM_NOHANG:+-nohang}$kernel
root=$work/root$flavour
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,run,etc,lib/modules,vm/scenarios,usr/bin}
cp /bin/busybox "$root/bin/busybox"
cp "$oomguard" "$root/bin/oomguard"
# Without debug symbols: a debug build of the hog alone would not fit the guest's RAM.
strip -o "$root/bin/oomguard-hog" "$hog"
cp "$work/earlyoom/usr/bin/earlyoom" "$root/bin/earlyoom"
cp "$work/vmprobe" "$root/bin/vmprobe"
# Process names the scenarios tell apart (comm is the name exec'd): all run `oomguard-hog`.
for n in hog innocent precious bystander jobmate; do ln -s oomguard-hog "$root/bin/$n"; done

# Shared libraries of the dynamic binaries, at the same paths.
for b in "$oomguard" "$hog" "$work/earlyoom/usr/bin/earlyoom"; do
  ldd "$b" | awk '{for(i=1;i<=NF;i++) if ($i ~ /^\//) print $i}' | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
done

# Kernel modules with their dependencies (from each module's depends= field), in load order.
mods=$kdir/lib/modules/$kver
: >"$root/vm/modules.list"
declare -A loaded=()
load_mod() {
  local name=$1 f dep
  [ -z "${loaded[$name]:-}" ] || return 0
  f=$(find "$mods/kernel" -name "$name.ko" -o -name "${name//_/-}.ko" | head -n1)
  [ -n "$f" ] || { log "module $name not in $kver (built in?)"; loaded[$name]=builtin; return 0; }
  loaded[$name]=1
  for dep in $(strings -a "$f" | sed -n 's/^depends=//p' | tr ',' ' '); do load_mod "$dep"; done
  cp "$f" "$root/lib/modules/"
  basename "$f" >>"$root/vm/modules.list"
}
for m in virtio_pci virtio_blk zram lzo_rle loop; do load_mod "$m"; done

# nohang (VM_NOHANG=1, for the benchmark): a Python program, so the guest also gets Debian's
# python3.11 with only the stdlib modules nohang imports (found by running the unpacked
# interpreter with -v on the host on `nohang --check`, which only reads its config), ~8 MiB.
if [ -n "${VM_NOHANG:-}" ]; then
  py=$work/nohang-pkgs
  if [ ! -x "$py/usr/sbin/nohang" ]; then
    ls "$work"/debs/nohang_*.deb >/dev/null 2>&1 ||
      download nohang python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libffi8
    rm -rf "$py"; mkdir -p "$py"
    for d in "$work"/debs/{nohang,python3.11-minimal,libpython3.11-minimal,libpython3.11-stdlib,libffi8}_*.deb; do
      dpkg-deb -x "$d" "$py"
    done
  fi
  # shellcheck disable=SC2016
  { PYTHONHOME=$py/usr "$py/usr/bin/python3.11" -v "$py/usr/sbin/nohang" --check -c "$py/etc/nohang/nohang.conf"
    PYTHONHOME=$py/usr "$py/usr/bin/python3.11" -v -c 'import random, logging, threading, shlex, subprocess'
  } 2>&1 >/dev/null | grep -oE "$py/usr/lib/python3\.11/[^' ]+\.(py|so)" | sort -u |
    grep -v sitecustomize | while read -r f; do
      rel=${f#"$py"}; mkdir -p "$root$(dirname "$rel")"; cp "$f" "$root$rel"
      pyc=$(dirname "$f")/__pycache__/$(basename "$f" .py).cpython-311.pyc
      if [ -e "$pyc" ]; then mkdir -p "$root$(dirname "$rel")/__pycache__"; cp "$pyc" "$root$(dirname "$rel")/__pycache__/"; fi
    done
  mkdir -p "$root/usr/sbin" "$root/etc/nohang"
  cp "$py/usr/bin/python3.11" "$root/usr/bin/python3.11"
  ln -sf python3.11 "$root/usr/bin/python3"
  cp "$py/usr/sbin/nohang" "$root/usr/sbin/nohang"
  cp "$py/etc/nohang/nohang.conf" "$root/etc/nohang/nohang.conf"
  for b in "$py/usr/bin/python3.11" "$py"/usr/lib/python3.11/lib-dynload/_ctypes.*.so; do
    LD_LIBRARY_PATH=$py/usr/lib/x86_64-linux-gnu ldd "$b" | awk '{for(i=1;i<=NF;i++) if ($i ~ /^\//) print $i}' |
      while read -r lib; do
        dest=${lib#"$py"}; mkdir -p "$root$(dirname "$dest")"; cp -L "$lib" "$root$dest"
      done
  done
fi

cp "$here/init" "$root/init"
cp "$here/lib.sh" "$root/vm/lib.sh"
cp "$here"/scenarios/*.sh "$root/vm/scenarios/"
chmod +x "$root/init"

out=$work/initrd$flavour.cpio
(cd "$root" && find . -print0 | cpio --null -o -H newc --quiet) >"$out.tmp.$$"
mv "$out.tmp.$$" "$out"
log "kernel $kver, initramfs $out $(du -h "$out" | cut -f1)"
