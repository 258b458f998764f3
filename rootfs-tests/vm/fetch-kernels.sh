#!/bin/sh
# Fetches the Debian kernels the VM tests boot, without touching the system's apt configuration:
# the current stable's (bookworm: 6.1) and the previous one's (bullseye: 5.10, where overlayfs in
# a user namespace and mount_setattr do not exist yet). Each linux-image package is downloaded
# through a PRIVATE sources list derived from this machine's own (/etc/apt/sources.list.d/*.sources
# and /etc/apt/sources.list: the same mirrors, the suites rewritten) and extracted with dpkg -x
# into DEST/<suite>/. No host name is written here: the mirrors come from the machine.
# Usage: fetch-kernels.sh DEST        Prints one line per kernel: SUITE VMLINUZ MODULES_DIR
set -eu
dest=${1:?usage: fetch-kernels.sh DEST}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
if [ -z "${FETCH_KERNELS_LOCKED:-}" ] && command -v flock >/dev/null 2>&1; then
    FETCH_KERNELS_LOCKED=1 exec flock "$dest/.lock" sh "$0" "$dest"
fi
current=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[ -n "$current" ] || { echo "fetch-kernels: no VERSION_CODENAME in /etc/os-release" >&2; exit 1; }
case "$current" in
    bookworm) suites="bookworm bullseye" ;;
    trixie) suites="trixie bookworm bullseye" ;;
    *) echo "fetch-kernels: unknown Debian release $current" >&2; exit 1 ;;
esac

show() {
    for suite in $suites; do
        dir="$dest/$suite"
        vmlinuz=$(ls "$dir"/boot/vmlinuz-* 2>/dev/null | head -n 1 || true)
        [ -n "$vmlinuz" ] && [ -e "$dir/.complete" ] || return 1
        echo "$suite $vmlinuz $(ls -d "$dir"/lib/modules/* | head -n 1)"
    done
}
show 2>/dev/null && exit 0

apt_dir="$dest/apt"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial"
sources="$apt_dir/sources.list"
: >"$sources"
# The machine's main archive URIs (the stanzas whose Suites name the current release itself).
uris=""
for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    uris="$uris $(awk -v cur="$current" '
        function flush() { if (types ~ /deb/ && (" " suites " ") ~ (" " cur " ")) print uris; types = uris = suites = "" }
        /^[ \t]*#/ { next }
        /^[ \t]*$/ { flush(); next }
        { key = $1; sub(/:$/, "", key); $1 = ""; sub(/^ /, "")
          if (key == "Types") types = $0; else if (key == "URIs") uris = $0; else if (key == "Suites") suites = $0 }
        END { flush() }' "$f")"
done
if [ -f /etc/apt/sources.list ]; then
    # One-line entries: `deb [options] URI SUITE COMPONENTS...`.
    uris="$uris $(awk -v cur="$current" '$1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
        if ($(i + 1) == cur) print $i }' /etc/apt/sources.list)"
fi
for uri in $uris; do
    for suite in $suites; do
        echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $suite main" >>"$sources"
    done
done
[ -s "$sources" ] || { echo "fetch-kernels: no Debian archive found in this machine's apt sources" >&2; exit 1; }
# shellcheck source=rootfs-tests/support/private-apt.sh
. "$(dirname "$0")/../support/private-apt.sh"
private_apt_update "$apt_dir" "$sources" || exit 1
for suite in $suites; do
    # The metapackage of the suite names the versioned kernel package.
    # shellcheck disable=SC2086
    pkg=$(apt-cache $opts show "linux-image-amd64/$suite" 2>/dev/null \
        | sed -n 's/^Depends: \(linux-image-[0-9][^ ,]*\).*/\1/p' | head -n 1)
    [ -n "$pkg" ] || { echo "fetch-kernels: no linux-image-amd64 in $suite" >&2; exit 1; }
    mkdir -p "$apt_dir/debs/$suite"
    # shellcheck disable=SC2086
    (cd "$apt_dir/debs/$suite" && apt-get $opts -q download "$pkg/$suite" >"$apt_dir/download.log" 2>&1) \
        || { cat "$apt_dir/download.log" >&2; exit 1; }
    rm -rf "${dest:?}/$suite"
    dpkg -x "$apt_dir"/debs/"$suite"/*.deb "$dest/$suite"
    rm -f "$apt_dir"/debs/"$suite"/*.deb
    touch "$dest/$suite/.complete"
done
show
