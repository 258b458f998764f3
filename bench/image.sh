# Shared by the benchmarks (sourced, not run): bench_prepare (packages and the release build),
# build_bench_image (the large benchmark image) and make_scratch (where the timed output goes).
#
# `debootstrap --variant=minbase bookworm` with python3, python3-numpy, gcc, g++, perl and git
# (about 750 MB and 17k files), made into a one-layer OCI image by umoci (gzip) and then into an
# oci-archive by skopeo. debootstrap uses DEBOOTSTRAP_MIRROR, else the first Debian mirror in this
# machine's own apt sources. build_bench_image DIR builds it once into DIR (DIR/done marks it).

# bench_prepare REPO TOOL:PACKAGE...: as root, installs the package of every missing tool (and
# /usr/bin/time), then builds the static-pie release binary the benchmarks time.
bench_prepare() {
    local repo=$1 spec need=()
    shift
    for spec in "$@" /usr/bin/time:time; do
        command -v "${spec%%:*}" >/dev/null || need+=("${spec#*:}")
    done
    if ((${#need[@]})); then
        echo "bench: apt-get install ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
        apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${need[@]}" >/dev/null
    fi
    echo "bench: cargo rustc --release --bin gpurun -- -C target-feature=+crt-static"
    (cd "$repo" && cargo rustc --release --locked --quiet --bin gpurun -- -C target-feature=+crt-static)
}

# The machine's own Debian mirror (deb822 .sources first, then one-line sources.list).
mirror_from_apt_sources() {
    local uri
    uri=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n1)
    [[ -n $uri ]] || uri=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; exit } }' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1)
    printf '%s' "$uri"
}
build_bench_image() {
    local img=$1
    if [[ ! -f $img/done ]]; then
        rm -rf "$img"
        mkdir -p "$img"
        : "${DEBOOTSTRAP_MIRROR:=$(mirror_from_apt_sources)}"
        echo "bench: debootstrap (minbase bookworm + python3 numpy gcc g++ perl git), a few minutes"
        debootstrap --variant=minbase --include=python3,python3-numpy,gcc,g++,perl,git \
            bookworm "$img/rootfs" ${DEBOOTSTRAP_MIRROR:+"$DEBOOTSTRAP_MIRROR"} >"$img/debootstrap.log" 2>&1 \
            || { tail -20 "$img/debootstrap.log"; exit 1; }
        rm -rf "$img/rootfs/var/cache/apt/archives/"*.deb
        # Images carry an empty /dev (the runtime provides one); debootstrap leaves device nodes.
        find "$img/rootfs/dev" -mindepth 1 -delete
        echo "bench: umoci: one gzip layer"
        umoci init --layout "$img/oci"
        umoci new --image "$img/oci:bench"
        umoci unpack --image "$img/oci:bench" "$img/bundle" >/dev/null
        rmdir "$img/bundle/rootfs"
        mv "$img/rootfs" "$img/bundle/rootfs"
        umoci repack --image "$img/oci:bench" "$img/bundle"
        umoci config --image "$img/oci:bench" --config.cmd /bin/bash >/dev/null
        (cd "$img/bundle/rootfs" && find . -mindepth 1 | wc -l) >"$img/files"
        du -sb "$img/bundle/rootfs" | cut -f1 >"$img/bytes"
        rm -rf "$img/bundle"
        echo "bench: skopeo: oci-archive"
        skopeo --insecure-policy copy -q "oci:$img/oci:bench" "oci-archive:$img/bench.tar:bench"
        # The layer blob itself, for GNU tar.
        manifest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"][7:])' "$img/oci/index.json")
        layer=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][0]["digest"][7:])' "$img/oci/blobs/sha256/$manifest")
        ln -f "$img/oci/blobs/sha256/$layer" "$img/layer.tar.gz"
        touch "$img/done"
    fi
}

# make_scratch SCRATCH USER: an empty SCRATCH owned by USER, on a fresh tmpfs (BENCH_FS=tmpfs, the
# default) or a fresh journaled ext4 in a 16 GiB loop file beside it (BENCH_FS=ext4), or on DIR's
# own filesystem (BENCH_FS=disk, where the caller allows it); removed or unmounted at exit
# (before that, the caller's BENCH_CLEANUP command runs, e.g. a FUSE unmount).
make_scratch() {
    local scratch=$1 user=$2
    mountpoint -q "$scratch" && umount "$scratch"
    rm -rf "$scratch"
    mkdir -p "$scratch"
    bench_fs=${BENCH_FS:-tmpfs}
    case $bench_fs in
    tmpfs)
        mount -t tmpfs -o size=8g,mode=0755 gpurun-bench "$scratch"
        trap 'cd /; { eval "${BENCH_CLEANUP:-}" || true; }; umount "'"$scratch"'" 2>/dev/null' EXIT
        ;;
    ext4)
        rm -f "$scratch.ext4"
        truncate -s 16G "$scratch.ext4"
        mkfs.ext4 -q -F "$scratch.ext4"
        mount -o loop "$scratch.ext4" "$scratch"
        trap 'cd /; { eval "${BENCH_CLEANUP:-}" || true; }; umount "'"$scratch"'" 2>/dev/null; rm -f "'"$scratch"'.ext4"' EXIT
        ;;
    disk) ;;
    *) echo "bench: BENCH_FS must be tmpfs, ext4 or disk, not $bench_fs" >&2; exit 2 ;;
    esac
    chown "$user:" "$scratch"
}
