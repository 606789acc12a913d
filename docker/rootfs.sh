#!/bin/sh
# docker/rootfs.sh: assembles the root file system of the herd image from
# two built binaries: herd and herdctl, the shared libraries they load (as
# ldd lists them, dynamic loader included), the container settings, and the
# user the servers run as (65532, "herd"). Both Dockerfiles copy its output
# into an image FROM scratch, so the image from a registry build and the one
# built without any registry are the same.
#
# usage: docker/rootfs.sh BIN_DIR OUT_DIR
set -eu

bin_dir=${1:?usage: rootfs.sh BIN_DIR OUT_DIR}
out=${2:?usage: rootfs.sh BIN_DIR OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
uid=65532

for b in herd herdctl; do
    [ -x "$bin_dir/$b" ] || { echo "rootfs.sh: $bin_dir/$b is missing; build it first" >&2; exit 1; }
done

rm -rf "$out"
mkdir -p "$out/etc/herd" "$out/tmp"
chmod 1777 "$out/tmp"
cp "$bin_dir/herd" "$bin_dir/herdctl" "$out/"
# Debug line tables halve the image; panics still name their functions.
if command -v strip >/dev/null 2>&1; then
    strip --strip-debug "$out/herd" "$out/herdctl"
fi

# Every library the binaries load, at the path the loader looks for it, and
# the loader itself (the line of ldd without "=>").
libs=$(ldd "$bin_dir/herd" "$bin_dir/herdctl" | awk '
    /=> \// { print $3 }
    /^[ \t]*\/[^ ]*ld-linux/ { print $1 }
' | sort -u)
[ -n "$libs" ] || { echo "rootfs.sh: ldd listed no libraries (a static build needs none)" >&2; }
for lib in $libs; do
    mkdir -p "$out$(dirname "$lib")"
    cp -L "$lib" "$out$lib"
done

cp "$here/Settings.toml" "$out/etc/herd/Settings.toml"
printf 'root:x:0:0:root:/:/sbin/nologin\nherd:x:%s:%s:herd:/data:/sbin/nologin\n' "$uid" "$uid" >"$out/etc/passwd"
printf 'root:x:0:\nherd:x:%s:\n' "$uid" >"$out/etc/group"
printf 'hosts: files dns\n' >"$out/etc/nsswitch.conf"
