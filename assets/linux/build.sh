#!/usr/bin/env bash
# Builds kvmscope's test kernel from Debian's linux-source-6.1 (`make tinyconfig` plus kvmscope.config)
# and a busybox initramfs, into $KVMSCOPE_CACHE (default ~/.cache/kvmscope/linux). Does nothing when
# they are there already for this config. Prints the directory on its last line.
# Needs root for apt-get on a fresh machine; about 5 minutes of compiling on 2 cores.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${KVMSCOPE_CACHE:-$HOME/.cache/kvmscope}/linux
stamp=$(cat "$here/kvmscope.config" "$here/init" | sha256sum | cut -c1-16)
out=$cache/$stamp
mkdir -p "$cache"
# One build at a time (tests may ask for the kernel in parallel).
exec 9>"$cache/.lock"
flock 9
if [ -f "$out/vmlinux" ] && [ -f "$out/bzImage" ] && [ -f "$out/initramfs.cpio" ]; then
    echo "$out"
    exit 0
fi
need=()
[ -f /usr/src/linux-source-6.1.tar.xz ] || need+=(linux-source-6.1)
[ -x /bin/busybox ] || need+=(busybox-static)
for tool in flex bison bc cpio make gcc; do command -v $tool >/dev/null || need+=($tool); done
[ -f /usr/include/libelf.h ] || need+=(libelf-dev)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
src=$cache/src
if [ ! -d "$src/linux-source-6.1" ]; then
    mkdir -p "$src"
    tar -xf /usr/src/linux-source-6.1.tar.xz -C "$src"
fi
cd "$src/linux-source-6.1"
make -s tinyconfig
scripts/kconfig/merge_config.sh -m .config "$here/kvmscope.config" >/dev/null
make -s olddefconfig
make -s -j"$(nproc)" vmlinux bzImage
mkdir -p "$out"
cp vmlinux "$out/vmlinux"
cp arch/x86/boot/bzImage "$out/bzImage"
root=$(mktemp -d)
mkdir -p "$root"/{bin,dev,proc,sys}
cp /bin/busybox "$root/bin/busybox"
cp "$here/init" "$root/init"
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet) > "$out/initramfs.cpio"
rm -rf "$root"
echo "$out"
