#!/usr/bin/env bash
# Benchmark (not a test): SIF/SquashFS images. The large benchmark image (bench/image.sh: Debian
# with python3, numpy, gcc, about 750 MB and 17k files) as SquashFS by mksquashfs, gzip and zstd,
# timed in the same run:
#
#   cold `gpurun IMG true` (empty cache)   vs  `unsquashfs -d DIR IMG` (squashfs-tools, all CPUs)
#                                          vs  `squashfuse IMG MNT` + a full read of the tree
#   warm `gpurun IMG true` on the SquashFS  vs  warm `gpurun IMG true` on the same image as an
#                                              OCI archive (bench.tar)
#   gpurun's peak RSS (cold)
#
#   bench/sif.sh [DIR]      (DIR defaults to target/bench; run as root)
#
# Output goes to a fresh tmpfs (BENCH_FS=tmpfs, the default) or a fresh journaled ext4 in a loop
# file (BENCH_FS=ext4). gpurun, unsquashfs and the warm runs run as the unprivileged gpurun-bench;
# squashfuse runs as root when /dev/fuse is not open to others (Debian's default is 0666; some
# VMs have 0600), which the report says. RUNS (default 3) cold runs each, WARM_RUNS (default 30).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${1:-$repo/target/bench}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
runs=${RUNS:-3}
warm_runs=${WARM_RUNS:-30}
bench_user=gpurun-bench
[[ $(id -u) -eq 0 ]] || { echo "bench/sif.sh: run as root" >&2; exit 1; }
source "$repo/bench/image.sh"
bench_prepare "$repo" debootstrap:debootstrap umoci:umoci skopeo:skopeo mksquashfs:squashfs-tools \
    squashfuse:squashfuse fusermount3:fuse3

img=$dir/image
build_bench_image "$img"
for comp in gzip zstd; do
    if [[ ! -f $img/bench-$comp.sqsh ]]; then
        echo "bench: mksquashfs -comp $comp"
        tree=$(mktemp -d "$dir/tree.XXXXXX")
        tar -xzf "$img/layer.tar.gz" -C "$tree" --exclude='dev/*'
        mksquashfs "$tree" "$img/bench-$comp.sqsh.tmp" -comp "$comp" -noappend -quiet -no-progress >/dev/null
        rm -rf "$tree"
        mv "$img/bench-$comp.sqsh.tmp" "$img/bench-$comp.sqsh"
    fi
done
chmod -R a+rX "$img"

id "$bench_user" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$bench_user"
scratch=$dir/scratch-sif
[[ ${BENCH_FS:-tmpfs} != disk ]] || { echo "bench/sif.sh: BENCH_FS is tmpfs or ext4" >&2; exit 2; }
BENCH_CLEANUP='fusermount3 -u "$scratch/mnt" 2>/dev/null || umount "$scratch/mnt" 2>/dev/null'
make_scratch "$scratch" "$bench_user"
cd "$scratch"
gpurun=$scratch/gpurun
cp "$repo/target/release/gpurun" "$gpurun"
chmod 0755 "$gpurun"
as_user() { runuser -u "$bench_user" -- env -i PATH=/usr/bin:/bin:/usr/sbin:/sbin HOME="$scratch" TMPDIR="$scratch" "$@"; }
fuse_as=root
if [[ $(stat -c %a /dev/fuse) == 666 ]]; then fuse_as=$bench_user; fi
as_fuse() { if [[ $fuse_as == root ]]; then "$@"; else as_user "$@"; fi; }
wipe() { chmod -R u+rwX "$1" 2>/dev/null || true; rm -rf "$1"; }
timed() {
    local file=$1 who=$2
    shift 2
    local run=as_user
    [[ $who == fuse ]] && run=as_fuse
    "$run" /usr/bin/time -f '%e %M %U %S' -o "$scratch/time.out" "$@" >/dev/null 2>"$scratch/stderr" || {
        cat "$scratch/stderr" >&2
        echo "bench: failed: $*" >&2
        exit 1
    }
    cat "$scratch/time.out" >>"$file"
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
runs_of() { cut -d' ' -f1 "$1" | paste -sd' '; }
clean_slate() { wipe "$scratch/cache"; wipe "$scratch/out"; sync; echo 3 >/proc/sys/vm/drop_caches; }
# The tree under the mount is read in full: every file's data (tar to a pipe; GNU tar skips the
# reads when its output is /dev/null).
fuse_read() {
    mkdir -p "$scratch/mnt"
    squashfuse "$1" "$scratch/mnt"
    tar -C "$scratch/mnt" -cf - . | cat >/dev/null
    fusermount3 -u "$scratch/mnt" 2>/dev/null || umount "$scratch/mnt"
}
export -f fuse_read
report=()
for comp in gzip zstd; do
    sq=$img/bench-$comp.sqsh
    : >"$scratch/g.t"; : >"$scratch/u.t"; : >"$scratch/f.t"
    for i in $(seq "$runs"); do
        echo "bench: $comp cold run $i/$runs"
        clean_slate
        timed "$scratch/g.t" user env GPURUN_CACHE_DIR="$scratch/cache" GPURUN_CONFIG= "$gpurun" -q "$sq" true
        clean_slate
        timed "$scratch/u.t" user unsquashfs -q -n -d "$scratch/out" "$sq"
        clean_slate
        timed "$scratch/f.t" fuse env scratch="$scratch" bash -c 'fuse_read "$0"' "$sq"
    done
    g=$(cut -d' ' -f1 "$scratch/g.t" | median)
    u=$(cut -d' ' -f1 "$scratch/u.t" | median)
    f=$(cut -d' ' -f1 "$scratch/f.t" | median)
    rss=$(cut -d' ' -f2 "$scratch/g.t" | sort -n | tail -n1)
    report+=("$(printf '%-5s cold gpurun %6.2f s (%s)   unsquashfs %6.2f s (%s)   squashfuse+read %6.2f s (%s, as %s)\n      ratio gpurun/unsquashfs %.2f   gpurun/squashfuse %.2f   gpurun peak RSS %.1f MB' \
        "$comp" "$g" "$(runs_of "$scratch/g.t")" "$u" "$(runs_of "$scratch/u.t")" "$f" "$(runs_of "$scratch/f.t")" "$fuse_as" \
        "$(awk -v a="$g" -v b="$u" 'BEGIN { print a / b }')" "$(awk -v a="$g" -v b="$f" 'BEGIN { print a / b }')" \
        "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')")")
done

echo "bench: warm runs (SquashFS and the OCI archive of the same image, alternating)"
clean_slate
as_user env GPURUN_CACHE_DIR="$scratch/cache" "$gpurun" -q "$img/bench-zstd.sqsh" true
as_user env GPURUN_CACHE_DIR="$scratch/cache" "$gpurun" -q "$img/bench.tar" true
as_user env GPURUN_CACHE_DIR="$scratch/cache" sh -c '
    for _ in $(seq "$1"); do
        for img in "$3" "$4"; do
            s=$(date +%s%N); "$2" -q "$img" true || exit 1; e=$(date +%s%N)
            echo "$img $(( (e - s) / 1000 ))"
        done
    done' - "$warm_runs" "$gpurun" "$img/bench-zstd.sqsh" "$img/bench.tar" >"$scratch/warm.t"
ws=$(grep -F "bench-zstd.sqsh " "$scratch/warm.t" | cut -d' ' -f2 | median)
wa=$(grep -F "bench.tar " "$scratch/warm.t" | cut -d' ' -f2 | median)

echo
echo "== gpurun SIF/SquashFS benchmark ($(nproc) CPUs, $(uname -r), user $bench_user, output on $bench_fs)"
printf 'image: %s (%d MB unpacked, %d entries); SquashFS gzip %d MB, zstd %d MB\n' "$img" \
    $(($(cat "$img/bytes") / 1000000)) "$(cat "$img/files")" \
    $(($(stat -c %s "$img/bench-gzip.sqsh") / 1000000)) $(($(stat -c %s "$img/bench-zstd.sqsh") / 1000000))
printf '%s\n' "${report[@]}"
printf 'warm gpurun IMG true: SquashFS median %.2f ms, OCI archive median %.2f ms, ratio %.3f (%d runs each)\n' \
    "$(awk -v w="$ws" 'BEGIN { print w / 1000 }')" "$(awk -v w="$wa" 'BEGIN { print w / 1000 }')" \
    "$(awk -v a="$ws" -v b="$wa" 'BEGIN { print a / b }')" "$warm_runs"
wipe "$scratch/cache"
