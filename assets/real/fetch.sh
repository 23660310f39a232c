#!/usr/bin/env bash
# Fetches the real guests the tests boot, from Debian's own packages, into $KVMSCOPE_CACHE/real
# (default ~/.cache/kvmscope/real), when they are not there already:
#   memtest86+x64.bin  memtest86+ 6.10 (package memtest86+), a boot-protocol image
#   bios.bin           SeaBIOS 1.16.2 (package seabios), 128 KiB, loaded at 0xe0000
#   vmlinuz, vmlinux   Debian's 6.1 cloud kernel (linux-image-6.1.0-*-cloud-amd64-unsigned), and its
#                      payload decompressed (what the kernel's scripts/extract-vmlinux does)
# Prints the directory on its last line. Needs apt-get (and root for apt-get update/install).
set -euo pipefail
trap 'echo "fetch.sh: failed at line $LINENO" >&2' ERR
out=${KVMSCOPE_CACHE:-$HOME/.cache/kvmscope}/real
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9
cd "$out"
if [ -f memtest86+x64.bin ] && [ -f bios.bin ] && [ -f vmlinux ] && [ -f vmlinuz ]; then
    echo "$out"
    exit 0
fi
command -v apt-get >/dev/null || { echo "fetch.sh: apt-get is needed to fetch Debian's packages" >&2; exit 1; }

# Debian's cloud kernel: the package the metapackage depends on today (the ABI number moves).
kernel_package() {
    apt-cache depends linux-image-cloud-amd64 2>/dev/null | sed -n 's/.*Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1-unsigned/p' | head -1
}
pkg=$(kernel_package)
if [ -z "$pkg" ] && [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    pkg=$(kernel_package)
fi
[ -n "$pkg" ] || { echo "fetch.sh: no linux-image-cloud-amd64 in apt's lists (run apt-get update)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -q memtest86+ seabios "$pkg" >/dev/null 2>&1) || {
    echo "fetch.sh: apt-get download memtest86+ seabios $pkg failed" >&2
    exit 1
}
for deb in "$work"/*.deb; do dpkg -x "$deb" "$work/root"; done
cp "$work/root/boot/memtest86+x64.bin" memtest86+x64.bin.new
cp "$work/root/usr/share/seabios/bios.bin" bios.bin.new
cp "$work"/root/boot/vmlinuz-* vmlinuz.new

# The bzImage's payload, by its setup header (payload_offset at 0x248, payload_length at 0x24c,
# after (setup_sects + 1) sectors), decompressed by the tool its magic names.
u32() { od -An -t u4 -j "$1" -N4 vmlinuz.new | tr -d ' '; }
magic() { head -c 4 "$1" | od -An -t x1 | tr -d ' '; }
sects=$(od -An -t u1 -j 497 -N1 vmlinuz.new | tr -d ' ')
start=$(((${sects:-4} + 1) * 512 + $(u32 584)))
dd if=vmlinuz.new of="$work/payload" iflag=skip_bytes,count_bytes skip="$start" count="$(u32 588)" status=none
case $(magic "$work/payload") in
    02214c18) tool=lz4 cmd="lz4 -dc" ;;
    28b52ffd) tool=zstd cmd="zstd -dcq" ;;
    fd377a58) tool=xz-utils cmd="xz -dc" ;;
    1f8b*) tool=gzip cmd="gzip -dc" ;;
    *) echo "fetch.sh: unknown compression (magic $(magic "$work/payload")) in $pkg's vmlinuz" >&2; exit 1 ;;
esac
if ! command -v "${cmd%% *}" >/dev/null; then
    apt-get install -y -qq "$tool" >/dev/null
fi
$cmd "$work/payload" > vmlinux.new 2>/dev/null || true
[ "$(magic vmlinux.new)" = 7f454c46 ] || {
    echo "fetch.sh: $pkg's payload did not decompress to an ELF" >&2
    exit 1
}
for f in memtest86+x64.bin bios.bin vmlinuz vmlinux; do mv "$f.new" "$f"; done
echo "$pkg" > kernel-package
echo "$out"
