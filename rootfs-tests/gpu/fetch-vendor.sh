#!/bin/sh
# Fetches the real vendor userspace the fake-GPU-host tests run, without touching the system's apt
# configuration for the non-free part:
#   * rocminfo and libhsa-runtime64-1 (Debian main) are installed normally with apt-get, and so is
#     clang 15 with lld and the offload bundler (clang-15, lld-15, clang-tools-15), with which the
#     gfx-override tests build HIP device code for chosen targets;
#   * librocsparse0 (Debian main: a real ROCm library whose offload bundle carries code for
#     gfx803, gfx900, gfx906, gfx908, gfx90a and gfx1030) is downloaded and extracted into
#     DEST/rocsparse, not installed (1.3 GB);
#   * nvidia-smi, libnvidia-ml1 and libcuda1 (Debian non-free) are downloaded through a PRIVATE
#     sources list derived from this machine's own /etc/apt/sources.list.d/*.sources (the same
#     mirrors and suites, with the component non-free added) and extracted with dpkg -x into
#     DEST/root. No host name is written here: the mirrors come from the machine's configuration.
# Usage: fetch-vendor.sh DEST      (root needed for the apt-get install step)
# Prints nothing but errors; exits non-zero when something could not be fetched.
set -eu
dest=${1:?usage: fetch-vendor.sh DEST}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
# The GPU tests call this from parallel test threads with the same DEST: serialize them, or one
# run's `apt-get update` reads the sources list another is still writing.
if [ -z "${FETCH_VENDOR_LOCKED:-}" ] && command -v flock >/dev/null 2>&1; then
    FETCH_VENDOR_LOCKED=1 exec flock "$dest/.lock" sh "$0" "$dest"
fi

if ! command -v rocminfo >/dev/null 2>&1 || ! ldconfig -p | grep -q 'libhsa-runtime64.so.1 '; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        rocminfo libhsa-runtime64-1 >/dev/null
fi

if ! command -v clang++-15 >/dev/null 2>&1 || ! command -v ld.lld-15 >/dev/null 2>&1 \
    || [ ! -x /usr/lib/llvm-15/bin/clang-offload-bundler ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        clang-15 lld-15 clang-tools-15 >/dev/null
fi

if [ -x "$dest/root/usr/bin/nvidia-smi" ] && [ -e "$dest/.complete" ] && [ -e "$dest/rocsparse/.complete" ]; then
    exit 0
fi

apt_dir="$dest/apt"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/debs"
sources="$apt_dir/sources.list"
: >"$sources"
# deb822 stanzas: Types/URIs/Suites/Components; each becomes one-line entries with non-free added.
for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    awk -v out="$sources" '
        function flush() {
            if (uris != "" && suites != "" && types ~ /(^| )deb( |$)/) {
                n = split(uris, u, " "); m = split(suites, s, " ")
                comps = components
                if (comps !~ /(^| )non-free( |$)/) comps = comps " non-free"
                for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) {
                    line = "deb"
                    if (signed != "") line = line " [signed-by=" signed "]"
                    print line " " u[i] " " s[j] " " comps >> out
                }
            }
            types = uris = suites = components = signed = ""
        }
        /^[ \t]*#/ { next }
        /^[ \t]*$/ { flush(); next }
        {
            key = $1; sub(/:$/, "", key); $1 = ""; sub(/^ /, "")
            if (key == "Types") types = $0
            else if (key == "URIs") uris = $0
            else if (key == "Suites") suites = $0
            else if (key == "Components") components = $0
            else if (key == "Signed-By") signed = $0
        }
        END { flush() }
    ' "$f"
done
# Old-style one-line sources, if any.
if [ -f /etc/apt/sources.list ]; then
    grep -E '^deb ' /etc/apt/sources.list | awk '{ if ($0 !~ / non-free( |$)/) $0 = $0 " non-free"; print }' >>"$sources" || true
fi
[ -s "$sources" ] || { echo "fetch-vendor: no apt sources found on this machine" >&2; exit 1; }

# shellcheck source=rootfs-tests/support/private-apt.sh
. "$(dirname "$0")/../support/private-apt.sh"
private_apt_update "$apt_dir" "$sources" || exit 1
# apt-get download writes into the current directory.
# shellcheck disable=SC2086
(cd "$apt_dir/debs" && apt-get $opts -q download nvidia-smi libnvidia-ml1 libcuda1 >"$apt_dir/download.log" 2>&1) \
    || { cat "$apt_dir/download.log" >&2; exit 1; }
mkdir -p "$apt_dir/rocsparse"
# shellcheck disable=SC2086
(cd "$apt_dir/rocsparse" && apt-get $opts -q download librocsparse0 >"$apt_dir/download.log" 2>&1) \
    || { cat "$apt_dir/download.log" >&2; exit 1; }
rm -rf "$dest/rocsparse"
dpkg -x "$apt_dir"/rocsparse/librocsparse0_*.deb "$dest/rocsparse"
rm -f "$apt_dir"/rocsparse/*.deb
# Laid out as an image root: the library where the image's loader finds it, and busybox to run.
mkdir -p "$dest/rocsparse/bin"
cp /bin/busybox "$dest/rocsparse/bin/busybox"
for applet in sh env; do ln -sf busybox "$dest/rocsparse/bin/$applet"; done
touch "$dest/rocsparse/.complete"
mkdir -p "$dest/root"
for deb in "$apt_dir"/debs/*.deb; do
    dpkg -x "$deb" "$dest/root"
done
# Debian installs these through update-alternatives (nvidia-alternative); recreate the links the
# alternatives would make, inside the extracted tree only.
root="$dest/root"
if [ ! -e "$root/usr/bin/nvidia-smi" ]; then
    smi=$(find "$root/usr/lib" -type f -perm -u+x -name nvidia-smi | head -n 1)
    # A relative link, so the tree can move.
    [ -n "$smi" ] && mkdir -p "$root/usr/bin" && ln -sf "../${smi#"$root/usr/"}" "$root/usr/bin/nvidia-smi"
fi
touch "$dest/.complete"
