#!/bin/sh
# Warm-start benchmark: `gpurun IMAGE.tar /bin/true` against `ch-run DIR -- /bin/true` on the same
# tree, for a static busybox image and a glibc one (Debian 12 minbase, where /bin/true loads libc),
# interleaved by hyperfine. Also, like for like, gpurun without its default PID namespace
# (`--pid-ns host`: ch-run makes none), and the kernel's price of one on this machine (util-linux
# unshare with and without `--pid --fork`). A benchmark, not a test: it prints numbers and exits 0
# whatever they are (non-zero only when something could not be set up).
#
#   bench/start.sh [RUNS]          RUNS per command (default 200, at least 50), in 4 rounds
#
# As root it installs what it needs (busybox-static, umoci, skopeo, hyperfine, charliecloud, jq),
# creates the unprivileged user `gpurun-test` if missing, and runs the measurements as that user
# (both tools then use a user namespace, the way they run on a cluster). As any other user it runs
# as that user and expects the tools to be installed. Results land in $GPURUN_BENCH_DIR
# (default /tmp/gpurun-bench-$USER): start.json (hyperfine's export) and the image and cache.
#
# The binary measured is target/release/gpurun (build it as README "Building" says, or set GPURUN).
set -eu

runs=${1:-200}
[ "$runs" -ge 50 ] || runs=50
here=$(cd "$(dirname "$0")/.." && pwd)
gpurun=${GPURUN:-$here/target/release/gpurun}
user=gpurun-test

need() {
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || return 1
    done
}

# A glibc image (Debian 12 minbase, dynamically linked /bin/true) as a docker-archive, built once
# as root from rootfs-tests/fresh-debian.sh's pristine debootstrap tarball and kept beside it.
debian_image() {
    out=/var/cache/gpurun-bench/debian.tar
    if [ ! -s "$out" ]; then
        tarball=$("$here/rootfs-tests/fresh-debian.sh" --tarball) || return 1
        mkdir -p /var/cache/gpurun-bench
        tmp=$(mktemp -d /var/tmp/gpurun-bench-debian.XXXXXX)
        (cd "$tmp" && umoci init --layout oci >/dev/null && umoci new --image oci:deb >/dev/null \
            && umoci unpack --image oci:deb bundle >/dev/null \
            && tar --numeric-owner --exclude='./dev/*' -C bundle/rootfs -xf "$tarball" \
            && umoci repack --image oci:deb bundle >/dev/null \
            && umoci config --image oci:deb --config.cmd /bin/bash >/dev/null \
            && skopeo copy -q oci:oci:deb "docker-archive:$out.tmp:debian:bookworm") || { rm -rf "$tmp"; return 1; }
        rm -rf "$tmp"
        mv "$out.tmp" "$out"
        chmod 0644 "$out"
    fi
    echo "$out"
}

if [ "$(id -u)" = 0 ] && [ -z "${GPURUN_BENCH_AS_ROOT:-}" ]; then
    if ! need umoci skopeo hyperfine ch-run jq || [ ! -x /bin/busybox ]; then
        apt-get install -y -q busybox-static umoci skopeo hyperfine charliecloud-runtime jq >/dev/null
    fi
    id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$user"
    debian=$(debian_image) || exit 1
    [ -x "$gpurun" ] || { echo "no $gpurun: run cargo rustc --release --bin gpurun -- -C target-feature=+crt-static" >&2; exit 1; }
    # The user needs to execute the binary and this script; copy both somewhere it can reach.
    stage=$(mktemp -d /tmp/gpurun-bench-bin.XXXXXX)
    cp "$gpurun" "$stage/gpurun"
    mkdir -p "$stage/bench"
    cp "$0" "$stage/bench/start.sh"
    chmod -R a+rX "$stage"
    status=0
    runuser -u "$user" -- env -i PATH=/usr/local/bin:/usr/bin:/bin USER="$user" LOGNAME="$user" HOME="$(getent passwd "$user" | cut -d: -f6)" \
        GPURUN="$stage/gpurun" GPURUN_BENCH_DEBIAN="$debian" ${GPURUN_BENCH_DIR:+GPURUN_BENCH_DIR=$GPURUN_BENCH_DIR} \
        sh "$stage/bench/start.sh" "$runs" || status=$?
    rm -rf "$stage"
    exit $status
fi

need umoci skopeo hyperfine ch-run jq || {
    echo "missing tools: apt-get install umoci skopeo hyperfine charliecloud-runtime jq busybox-static" >&2
    exit 1
}
[ -x /bin/busybox ] || { echo "missing /bin/busybox: apt-get install busybox-static" >&2; exit 1; }

work=${GPURUN_BENCH_DIR:-/tmp/gpurun-bench-$(id -un)}
mkdir -p "$work"
cd "$work"
export GPURUN_CACHE_DIR="$work/cache"

# 1. A small image with real tools: busybox-static in one layer, saved as a docker-archive.
image="$work/busybox.tar"
if [ ! -f "$image" ]; then
    rm -rf oci bundle
    umoci init --layout oci >/dev/null
    umoci new --image oci:bb >/dev/null
    umoci unpack --rootless --image oci:bb bundle >/dev/null
    mkdir -p bundle/rootfs/bin bundle/rootfs/etc bundle/rootfs/tmp bundle/rootfs/dev \
        bundle/rootfs/proc bundle/rootfs/sys bundle/rootfs/home bundle/rootfs/mnt
    cp /bin/busybox bundle/rootfs/bin/busybox
    for applet in $(/bin/busybox --list); do
        [ "$applet" = busybox ] || ln -sf busybox "bundle/rootfs/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n' >bundle/rootfs/etc/passwd
    printf 'root:x:0:\nnogroup:x:65534:\n' >bundle/rootfs/etc/group
    : >bundle/rootfs/etc/hosts
    : >bundle/rootfs/etc/resolv.conf
    umoci repack --image oci:bb bundle >/dev/null
    umoci config --image oci:bb --config.cmd /bin/sh >/dev/null
    skopeo copy -q oci:oci:bb "docker-archive:$image:busybox:latest"
    rm -rf oci bundle
fi

# 2. Warm gpurun's cache, and give ch-run the same tree as a directory image.
ch_dir() { # IMAGE DIR
    rootfs=$("$gpurun" unpack "$1")
    if [ ! -d "$2" ]; then
        cp -a "$rootfs" "$2.tmp"
        chmod -R u+w "$2.tmp"
        mv "$2.tmp" "$2"
    fi
    "$gpurun" "$1" /bin/true
    ch-run "$2" -- /bin/true
}
debian=${GPURUN_BENCH_DEBIAN:-}
[ -n "$debian" ] && [ -r "$debian" ] || { echo "no Debian image (GPURUN_BENCH_DEBIAN): run as root" >&2; exit 1; }
chdir="$work/ch-dir"
debdir="$work/ch-debian"
ch_dir "$image" "$chdir"
ch_dir "$debian" "$debdir"

# 3. Measurements. hyperfine runs all runs of one command before the next, so the commands are
# interleaved in rounds (alternating which goes first) and the rounds' times merged: drift in
# the machine's state (frequency, page cache, other jobs) hits both sides alike.
echo "gpurun: $("$gpurun" --version 2>/dev/null || echo "$gpurun")"
echo "ch-run: $(ch-run --version 2>&1 | head -1)"
echo "kernel: $(uname -r), $(nproc) cpus"
rounds=4
per=$(( (runs + rounds - 1) / rounds ))
g_cmd="$gpurun $image /bin/true"
c_cmd="ch-run $chdir -- /bin/true"
u_cmd="$gpurun unpack $image"
gd_cmd="$gpurun $debian /bin/true"
cd_cmd="ch-run $debdir -- /bin/true"
# Like for like: ch-run makes no PID namespace, and gpurun's default (a private one with an init)
# costs what the kernel charges for one. `--pid-ns host` is gpurun without it, and util-linux's
# unshare with and without `--pid --fork` prices the kernel's part on this machine.
gh_cmd="$gpurun --pid-ns host $image /bin/true"
gdh_cmd="$gpurun --pid-ns host $debian /bin/true"
un_cmd="unshare --user --map-root-user --mount /bin/true"
unp_cmd="unshare --user --map-root-user --mount --pid --fork /bin/true"
r=1
while [ "$r" -le "$rounds" ]; do
    if [ $((r % 2)) = 1 ]; then
        set -- -n gpurun "$g_cmd" -n ch-run "$c_cmd" -n warm-path "$u_cmd" -n gpurun-debian "$gd_cmd" -n ch-run-debian "$cd_cmd" \
            -n gpurun-hostpid "$gh_cmd" -n gpurun-debian-hostpid "$gdh_cmd" -n unshare "$un_cmd" -n unshare-pid "$unp_cmd"
    else
        set -- -n unshare-pid "$unp_cmd" -n unshare "$un_cmd" -n gpurun-debian-hostpid "$gdh_cmd" -n gpurun-hostpid "$gh_cmd" \
            -n ch-run "$c_cmd" -n gpurun "$g_cmd" -n warm-path "$u_cmd" -n ch-run-debian "$cd_cmd" -n gpurun-debian "$gd_cmd"
    fi
    hyperfine -N --style basic --warmup 10 --runs "$per" --export-json "$work/round$r.json" "$@"
    r=$((r + 1))
done
# One JSON: every run's time per command, with mean and median over all rounds.
jq -s '[.[].results[]] | group_by(.command) | map({command: .[0].command,
        times: (map(.times) | add)}) | map(. + {runs: (.times | length),
        mean: ((.times | add) / (.times | length)),
        median: (.times | sort | if length % 2 == 1 then .[length / 2 | floor]
                 else (.[length / 2 - 1] + .[length / 2]) / 2 end)}) | {results: .}' \
    "$work"/round*.json >"$work/start.json"
rm -f "$work"/round*.json

median() {
    jq -r --arg n "$1" '.results[] | select(.command == $n) | .median * 1000' "$work/start.json"
}
g=$(median gpurun)
c=$(median ch-run)
u=$(median warm-path)
gd=$(median gpurun-debian)
cdeb=$(median ch-run-debian)
gh=$(median gpurun-hostpid)
gdh=$(median gpurun-debian-hostpid)
un=$(median unshare)
unp=$(median unshare-pid)
n=$(jq -r '.results[0].runs' "$work/start.json")
ratio() { echo "$1 $2" | awk '{ print $1 / $2 }'; }
echo
echo "== warm start, $n runs each, medians =="
printf 'busybox: gpurun IMAGE.tar /bin/true     %8.3f ms\n' "$g"
printf 'busybox: ch-run DIR -- /bin/true        %8.3f ms\n' "$c"
printf 'busybox: gpurun unpack (warm path alone) %8.3f ms\n' "$u"
printf 'debian:  gpurun IMAGE.tar /bin/true     %8.3f ms\n' "$gd"
printf 'debian:  ch-run DIR -- /bin/true        %8.3f ms\n' "$cdeb"
printf 'ratio gpurun/ch-run, busybox            %8.3f   (target <= 1.0)\n' "$(ratio "$g" "$c")"
printf 'ratio gpurun/ch-run, debian (glibc)     %8.3f   (target <= 1.0)\n' "$(ratio "$gd" "$cdeb")"
echo "== like for like: no PID namespace on either side (gpurun --pid-ns host) =="
printf 'busybox: gpurun --pid-ns host           %8.3f ms   ratio %.3f\n' "$gh" "$(ratio "$gh" "$c")"
printf 'debian:  gpurun --pid-ns host           %8.3f ms   ratio %.3f\n' "$gdh" "$(ratio "$gdh" "$cdeb")"
echo "== the kernel's price of a PID namespace here (util-linux unshare, user+mount namespaces) =="
printf 'unshare ... /bin/true                   %8.3f ms\n' "$un"
printf 'unshare ... --pid --fork /bin/true      %8.3f ms   (+%.3f ms)\n' "$unp" "$(echo "$unp $un" | awk '{ print $1 - $2 }')"
echo "JSON: $work/start.json"
