#!/usr/bin/env bash
# Benchmark (not a test): a cold start, `gpurun IMAGE true` on an empty cache, of a large
# single-layer image against GNU `tar -xzf` of the same gzip layer and `umoci unpack --rootless`,
# plus gpurun's peak RSS and the warm (already cached) `gpurun unpack` path.
#
#   bench/unpack.sh [DIR]      (DIR defaults to target/bench; run as root)
#
# The image, built once and kept in DIR/image: `debootstrap --variant=minbase bookworm` with
# python3, python3-numpy, gcc, g++, perl and git (about 750 MB and 17k files), made into a
# one-layer OCI image by umoci (gzip) and then into an oci-archive by skopeo. debootstrap uses
# DEBOOTSTRAP_MIRROR, else the first Debian mirror in this machine's own apt sources. Timed commands run as the unprivileged user
# gpurun-bench (created if missing); RUNS (default 3) cold runs each, WARM_RUNS (default 20) warm.
#
# BENCH_FS=tmpfs (the default) writes every tool's output to a fresh tmpfs, so the figures compare
# the tools' own work (reading, inflating, hashing, creating files) under identical kernel
# conditions; BENCH_FS=disk writes to DIR's filesystem. On an ext4 without a journal (as on some
# VMs) disk figures are dominated by the kernel: ext4 skips every inode deleted in the last
# 12 hours when it allocates one (recently_deleted), so each file created after the previous run's
# tree was removed costs a scan; that hits every tool alike and grows with every run.
# BENCH_FS=ext4 formats a fresh ext4 (mkfs.ext4 defaults, journal included, as a Debian install
# has) in a 16 GiB sparse loop file in DIR and writes there: a real disk filesystem without that
# history.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${1:-$repo/target/bench}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
runs=${RUNS:-3}
warm_runs=${WARM_RUNS:-20}
bench_user=gpurun-bench

if [[ $(id -u) -ne 0 ]]; then
    echo "bench/unpack.sh: run as root (debootstrap, and to run the timings as $bench_user)" >&2
    exit 1
fi
source "$repo/bench/image.sh"
bench_prepare "$repo" debootstrap:debootstrap umoci:umoci skopeo:skopeo

# ---------------------------------------------------------------------------------------------
# The image (cached in DIR/image; bench/image.sh).
img=$dir/image
build_bench_image "$img"
chmod -R a+rX "$img"

# ---------------------------------------------------------------------------------------------
# Timings, as an unprivileged user in a scratch directory it owns.
id "$bench_user" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$bench_user"
scratch=$dir/scratch
make_scratch "$scratch" "$bench_user"
cd "$scratch"   # the timed commands run (and gpurun binds the working directory) here
gpurun=$scratch/gpurun
cp "$repo/target/release/gpurun" "$gpurun"
chmod 0755 "$gpurun"
as_user() { runuser -u "$bench_user" -- env -i PATH=/usr/bin:/bin HOME="$scratch" TMPDIR="$scratch" "$@"; }
as_user cp -a "$img/oci" "$scratch/oci"   # umoci wants a layout it may write (locks)
wipe() { as_user sh -c 'chmod -R u+rwX "$1" 2>/dev/null; rm -rf "$1"' - "$1"; }

# timed FILE CMD...: runs CMD as the user under /usr/bin/time; appends "seconds maxrss_kb user_s
# sys_s" to FILE (user and system CPU show how much of the wall time is the kernel's writeback).
timed() {
    local file=$1
    shift
    as_user /usr/bin/time -f '%e %M %U %S' -o "$scratch/time.out" "$@" >/dev/null 2>"$scratch/stderr" || {
        cat "$scratch/stderr" >&2
        echo "bench: failed: $*" >&2
        exit 1
    }
    cat "$scratch/time.out" >>"$file"
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
runs_of() { cut -d' ' -f1 "$1" | paste -sd' '; }
cpu_of() { printf 'user %.2f s, sys %.2f s' "$(cut -d' ' -f3 "$1" | median)" "$(cut -d' ' -f4 "$1" | median)"; }

: >"$scratch/gpurun.t"; : >"$scratch/tar.t"; : >"$scratch/umoci.t"; : >"$scratch/warm.t"
# Every timed run starts from the same state: all outputs removed and synced, so no tool pays for
# another's deletion or writeback. The order rotates each round.
clean_slate() {
    wipe "$scratch/cache"
    wipe "$scratch/tar-out"
    wipe "$scratch/umoci-bundle"
    sync
}
run_gpurun() {
    timed "$scratch/gpurun.t" env GPURUN_CACHE_DIR="$scratch/cache" GPURUN_CONFIG= "$gpurun" -q "$img/bench.tar" true
}
run_tar() {
    as_user mkdir "$scratch/tar-out"
    # (--exclude: an unprivileged tar cannot mknod; gpurun and umoci skip device nodes too.)
    timed "$scratch/tar.t" tar -xzf "$img/layer.tar.gz" -C "$scratch/tar-out" --wildcards --exclude='dev/*'
}
run_umoci() {
    timed "$scratch/umoci.t" umoci unpack --rootless --image "$scratch/oci:bench" "$scratch/umoci-bundle"
}
order=(run_gpurun run_tar run_umoci)
for i in $(seq "$runs"); do
    echo "bench: cold run $i/$runs (${order[*]})"
    for tool in "${order[@]}"; do
        clean_slate
        "$tool"
    done
    order=("${order[@]:1}" "${order[0]}")
done
clean_slate
echo "bench: warm runs"
# Timed inside one user shell with nanosecond clocks (/usr/bin/time has 10 ms resolution).
as_user env GPURUN_CACHE_DIR="$scratch/cache" sh -c '
    for _ in $(seq "$1"); do
        s=$(date +%s%N); "$2" unpack -q "$3" >/dev/null || exit 1; e=$(date +%s%N)
        echo "$(( (e - s) / 1000 ))" | awk "{ printf \"%.4f\\n\", \$1 / 1000000 }"
    done' - "$warm_runs" "$gpurun" "$img/bench.tar" >"$scratch/warm.t"

g=$(cut -d' ' -f1 "$scratch/gpurun.t" | median)
t=$(cut -d' ' -f1 "$scratch/tar.t" | median)
u=$(cut -d' ' -f1 "$scratch/umoci.t" | median)
w=$(cut -d' ' -f1 "$scratch/warm.t" | median)
rss=$(cut -d' ' -f2 "$scratch/gpurun.t" | sort -n | tail -n1)
echo
echo "== gpurun unpack benchmark ($(nproc) CPUs, $(uname -r), user $bench_user, output on $bench_fs)"
printf 'image:                      %s (%d MB unpacked, %d entries, gzip layer %d MB)\n' \
    "$img/bench.tar" $(($(cat "$img/bytes") / 1000000)) "$(cat "$img/files")" \
    $(($(stat -c %s "$img/layer.tar.gz") / 1000000))
printf 'cold gpurun IMAGE true:     median %6.2f s   (runs: %s; %s)\n' "$g" "$(runs_of "$scratch/gpurun.t")" "$(cpu_of "$scratch/gpurun.t")"
printf 'GNU tar -xzf (layer):       median %6.2f s   (runs: %s; %s)\n' "$t" "$(runs_of "$scratch/tar.t")" "$(cpu_of "$scratch/tar.t")"
printf 'umoci unpack --rootless:    median %6.2f s   (runs: %s; %s)\n' "$u" "$(runs_of "$scratch/umoci.t")" "$(cpu_of "$scratch/umoci.t")"
awk -v g="$g" -v t="$t" -v u="$u" 'BEGIN {
    printf "ratio gpurun/tar:           %6.2f\n", (t > 0 ? g / t : 0)
    printf "ratio gpurun/umoci:         %6.2f\n", (u > 0 ? g / u : 0) }'
printf 'gpurun peak RSS (cold):     %6.1f MB\n' "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')"
printf 'warm gpurun unpack:         median %6.1f ms  over %d runs\n' "$(awk -v w="$w" 'BEGIN { print w * 1000 }')" "$warm_runs"
wipe "$scratch/cache"
wipe "$scratch/oci"
