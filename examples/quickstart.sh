#!/usr/bin/env bash
# Quickstart: build gpurun, make a tiny busybox image as a `docker save`-style archive with umoci
# and skopeo (no Docker daemon needed), and run a command in it.
#
#   examples/quickstart.sh
#
# As root it installs what it needs with apt-get (Debian/Ubuntu); otherwise install umoci, skopeo,
# busybox-static, gcc and ca-certificates first. Needs Rust >= 1.89 (rustup). The image is built in a temporary directory, removed at exit.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
need=()
command -v umoci >/dev/null || need+=(umoci)
command -v skopeo >/dev/null || need+=(skopeo)
[[ -x /bin/busybox ]] || need+=(busybox-static)
# Rust links with the system C compiler, and cargo fetches crates over HTTPS (CA bundle).
command -v cc >/dev/null || need+=(gcc libc6-dev)
[[ -s /etc/ssl/certs/ca-certificates.crt ]] || need+=(ca-certificates)
if ((${#need[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "quickstart: please install ${need[*]} (sudo apt-get install ${need[*]})" >&2
        exit 1
    fi
    echo "==> apt-get install ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
    apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null || {
    echo "quickstart: cargo not found: install Rust >= 1.89 with rustup (https://rustup.rs)" >&2
    exit 1
}

# A static-pie binary starts about half a millisecond faster than a dynamically linked one
# (README "Building"); `cargo build --release` works too.
echo "==> cargo rustc --release --bin gpurun -- -C target-feature=+crt-static (about 2 minutes the first time)"
(cd "$repo" && cargo rustc --release --locked --bin gpurun -- -C target-feature=+crt-static)
gpurun=$repo/target/release/gpurun

work=$(mktemp -d)
trap 'chmod -R u+rwX "$work" 2>/dev/null; rm -rf "$work"' EXIT
export GPURUN_CACHE_DIR=${GPURUN_CACHE_DIR:-$work/cache}

echo "==> building a busybox image with umoci"
umoci_flags=()
[[ $(id -u) -ne 0 ]] && umoci_flags+=(--rootless)
umoci init --layout "$work/oci"
umoci new --image "$work/oci:demo"
umoci unpack "${umoci_flags[@]}" --image "$work/oci:demo" "$work/bundle" >/dev/null
rootfs=$work/bundle/rootfs
mkdir -p "$rootfs"/{bin,etc,tmp}
cp /bin/busybox "$rootfs/bin/busybox"
for applet in sh cat echo ls; do ln -s busybox "$rootfs/bin/$applet"; done
echo "gpurun-demo (busybox $(/bin/busybox | head -n1 | awk '{print $2}'))" >"$rootfs/etc/os-release-ish"
umoci repack "${umoci_flags[@]}" --image "$work/oci:demo" "$work/bundle" >/dev/null
umoci config --image "$work/oci:demo" --config.env PATH=/bin --config.cmd /bin/sh >/dev/null

echo "==> converting it to a docker-archive with skopeo"
skopeo --insecure-policy copy -q "oci:$work/oci:demo" "docker-archive:$work/demo.tar:demo:latest"
demo=$work/demo.tar

echo "==> gpurun $demo /bin/sh -c 'echo hello from \$(cat /etc/os-release-ish)'"
# shellcheck disable=SC2016 # $(...) is for the shell inside the container
"$gpurun" "$demo" /bin/sh -c 'echo hello from $(cat /etc/os-release-ish)'
