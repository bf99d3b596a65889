#!/bin/sh
# Linker wrapper (set in .cargo/config.toml): puts the code the daemon runs after start-up
# next to each other at the start of .text.
#
# Why: the kernel maps file pages around every page fault (fault-around, 64 KiB), and the daemon
# locks what it maps (mlockall, MCL_ONFAULT). Spread over 5 MiB of code, the functions its loop
# and kill path use kept about 2.5 MiB of text resident; packed together, under 1 MiB.
#
# How: link/hot-symbols.txt lists those functions (from `scripts/hot-symbols.sh`, a profile of
# a running daemon) by their demangled names: with v0 symbol names (.cargo/config.toml) a
# generic function's instances are told apart by their types, and no name carries a hash that
# changes with the compiler, the dependencies or the checkout's path. At each link of an
# `oomguard` binary this script finds the mangled names the objects define for them (nm, nm -C),
# adds every function of the daemon's own modules (sense, decide, act, record, daemon) after
# them, and passes the list to LLD as --symbol-ordering-file. Any other link, or a link without
# LLD, is passed through unchanged: the order changes where code sits, never what it does.
set -eu
cc=${OOMGUARD_LINK_CC:-cc}

out=
lld=no
prev=
for a in "$@"; do
    [ "$prev" = "-o" ] && out=$a
    case $a in -fuse-ld=lld) lld=yes ;; esac
    prev=$a
done

list=$(dirname "$0")/hot-symbols.txt
case $out in
    */oomguard-*|*/oomguard) ;;
    *) exec "$cc" "$@" ;;
esac
if [ "$lld" != yes ] || [ ! -r "$list" ] || ! command -v nm >/dev/null 2>&1; then
    exec "$cc" "$@"
fi

order=$out.hot-order
objs=
for a in "$@"; do
    case $a in *.o | *.rlib | *.a) [ -f "$a" ] && objs="$objs $a" ;; esac
done
# Two listings of the same objects, line for line: mangled, and demangled.
# shellcheck disable=SC2086 # one argument per object file
nm --defined-only $objs > "$order.nm" 2>/dev/null || true
# shellcheck disable=SC2086
nm -C --defined-only $objs > "$order.nmc" 2>/dev/null || true
awk -v list="$list" '
    # A demangled name without what varies between builds: crate disambiguators, a legacy
    # hash, an LTO suffix.
    function key(s) {
        sub(/^[^ ]* [^ ] /, "", s)
        gsub(/\[[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]+\]/, "", s)
        sub(/\.llvm\.[0-9]+$/, "", s)
        sub(/ \[clone [^]]*\]$/, "", s)
        sub(/::h[0-9a-f]+$/, "", s)
        return s
    }
    BEGIN {
        n = 0
        while ((getline l < list) > 0) {
            if (l == "" || l ~ /^#/) continue
            if (!(l in rank)) rank[l] = ++n
        }
    }
    NR == FNR { d[FNR] = $0; next }
    NF == 3 && $2 ~ /^[tTwW]$/ {
        k = key(d[FNR])
        if (k in rank) { print rank[k], $3; next }
        if (k ~ /^<?oomguard::(daemon|sense|decide|act|record)::/) print n + 1, $3
    }' "$order.nmc" "$order.nm" | sort -n -s -k1,1 | awk '!seen[$2]++ { print $2 }' > "$order"
rm -f "$order.nm" "$order.nmc"

exec "$cc" "$@" -Wl,--symbol-ordering-file="$order" -Wl,--no-warn-symbol-ordering
