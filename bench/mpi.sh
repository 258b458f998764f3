#!/bin/bash
# MPI benchmark: what running the ranks in gpurun costs against running them natively, in the
# same run, with the host's Open MPI and mpirun (examples/mpi/build-image.sh's image: host
# launcher, container ranks).
#
#   1. Intra-node ping-pong, 4 ranks on one node (2 pairs at once, oversubscribed where the node
#      has fewer cores; GPURUN_BENCH_RANKS sets another count): 8-byte latency and 4 MiB
#      bandwidth of examples/mpi/mpi_pingpong, the slowest pair's, over Open MPI's shared memory
#      with single-copy transfers REQUIRED: `--mca pml ob1 --mca btl self,vader
#      --mca btl_vader_single_copy_mechanism cma` (Open MPI 5: `sm`, btl_sm_single_copy_mechanism).
#      Open MPI then aborts the job where CMA is unavailable instead of copying through the shared
#      segment, so a gpurun figure here is a single-copy figure. `mpirun ... ./mpi_pingpong` (the
#      very binary in the image, taken from gpurun's unpacked rootfs) against
#      `mpirun ... $GPURUN IMAGE /mpi_pingpong`, REPS alternating repetitions each.
#      Targets: bandwidth gpurun/native >= 0.95, latency gpurun/native <= 1.1.
#   2. Start of 64 ranks on one node against one rank: wall time of
#      `mpirun --oversubscribe -np 64 $GPURUN IMAGE /mpi_pingpong init` and `-np 1`, image cached
#      (one warm-up run first), REPS repetitions in rotating order. `init` is MPI_Init, a barrier
#      and MPI_Finalize: every rank waits for all the others, so all 64 join one container (ranks
#      that exit at once, like `true`, may leave before the last has joined). Target: 64/1 <= 1.5.
#      For reference the same two natively (`mpirun -np 64 ./mpi_pingpong init`, `-np 1`): what
#      the node itself allows. A run that has not ended after GPURUN_BENCH_START_TIMEOUT seconds
#      is killed, counted and left out (Open MPI 4.1's mpirun now and then never returns when 64
#      processes as quick as `true` exit at once: natively, on a 2-core VM, in more than half of
#      the runs).
#
#   bench/mpi.sh [REPS]            REPS per command (default 7, at least 3)
#
# A benchmark, not a test: it prints numbers and exits 0 whatever they are, also when the gpurun
# ranks fail (it says so, with the end of their output); non-zero only when something could not
# be set up or the native reference itself failed.
#
# Unprivileged, CMA between gpurun ranks needs them in one user namespace: the ranks of one job
# on one node join one container (automatic for mpirun ranks). Where they do not (a gpurun
# without join, or GPURUN_BENCH_GPURUN_ARGS=--no-join), each rank has its own, the kernel refuses
# process_vm_readv between them and Open MPI aborts with "CMA support is not available due to
# different user namespaces": part 1's gpurun side fails, and says so. As root gpurun makes no
# user namespace and CMA works either way.
#
# As root it installs what it needs (openmpi-bin, libopenmpi-dev, umoci, skopeo,
# busybox-static), creates the unprivileged user `gpurun-test` if missing, builds the image and
# runs the measurements as that user, from copies of the binary, the image and this script it can
# read. GPURUN_BENCH_AS_ROOT=1 measures as root instead (no user namespace: CMA works in gpurun).
# As any other user it measures as that user and expects the tools to be installed.
#
# Results land in $GPURUN_BENCH_DIR (default /tmp/gpurun-bench-$USER): mpi.tsv (every run:
# measure, side, ranks, repetition, latency, bandwidth, wall seconds, status), logs/ (every run's
# output), the cache (GPURUN_CACHE_DIR; GPURUN_CONFIG is empty) and the image when built here.
# GPURUN_BENCH_PINGPONG_ARGS: mpi_pingpong's arguments (LAT_ITERS BW_REPS BW_ITERS; default its
# own). GPURUN_BENCH_GPURUN_ARGS: options for every gpurun run (e.g. --no-join), split on spaces.
# GPURUN_BENCH_START_TIMEOUT: default 10.
#
# On 2 cores the 4 ranks' figures vary from run to run far more than 2 ranks' do (a pair moves
# data only while both its busy-polling ranks hold a core at once): compare the two sides of one
# run, whose repetitions alternate, and not figures of different runs.
#
# The binary measured is $GPURUN, else target/release/gpurun (build it as README "Building" says).
set -euo pipefail

reps=${1:-7}
[ "$reps" -ge 3 ] || reps=3
here=$(cd "$(dirname "$0")/.." && pwd)
# Absolute paths: the measurements run in the results directory. GPURUN may be a name in PATH.
gpurun=${GPURUN:-$here/target/release/gpurun}
case $gpurun in
/*) ;;
*/*) gpurun=$PWD/$gpurun ;;
*) gpurun=$(command -v "$gpurun" || echo "$gpurun") ;;
esac
given_image=${GPURUN_BENCH_IMAGE:-}
case $given_image in
'' | /*) ;;
*) given_image=$PWD/$given_image ;;
esac
user=gpurun-test

need() {
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || return 1
    done
}

if [ "$(id -u)" = 0 ]; then
    if ! need mpirun mpicc ompi_info umoci skopeo timeout || [ ! -x /bin/busybox ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q openmpi-bin libopenmpi-dev umoci skopeo busybox-static >/dev/null
    fi
fi
if [ "$(id -u)" = 0 ] && [ -z "${GPURUN_BENCH_AS_ROOT:-}" ]; then
    id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$user"
    [ -x "$gpurun" ] || { echo "no $gpurun: build it (cargo build --release) or set GPURUN" >&2; exit 1; }
    pass=()
    for var in GPURUN_BENCH_DIR GPURUN_BENCH_PINGPONG_ARGS GPURUN_BENCH_GPURUN_ARGS \
        GPURUN_BENCH_START_TIMEOUT GPURUN_BENCH_RANKS; do
        [ -z "${!var:-}" ] || pass+=("$var=${!var}")
    done
    # The user needs to execute the binary and this script and read the image and the sources;
    # copy them somewhere it can reach.
    stage=$(mktemp -d /tmp/gpurun-bench-mpi.XXXXXX)
    trap 'rm -rf "$stage"' EXIT
    mkdir -p "$stage/bench" "$stage/examples"
    cp "$gpurun" "$stage/gpurun"
    cp "$0" "$stage/bench/mpi.sh"
    cp -r "$here/examples/mpi" "$stage/examples/mpi"
    "$here/examples/mpi/build-image.sh" "$stage/mpi-image.tar" >/dev/null
    chmod -R a+rX "$stage"
    status=0
    runuser -u "$user" -- env -i PATH=/usr/local/bin:/usr/bin:/bin USER="$user" LOGNAME="$user" \
        HOME="$(getent passwd "$user" | cut -d: -f6)" \
        GPURUN="$stage/gpurun" GPURUN_BENCH_IMAGE="$stage/mpi-image.tar" "${pass[@]}" \
        bash "$stage/bench/mpi.sh" "$reps" || status=$?
    exit $status
fi

need mpirun ompi_info umoci skopeo timeout awk || {
    echo "missing tools: apt-get install openmpi-bin libopenmpi-dev umoci skopeo busybox-static" >&2
    exit 1
}
[ -x "$gpurun" ] || { echo "no $gpurun: build it (cargo build --release) or set GPURUN" >&2; exit 1; }

work=${GPURUN_BENCH_DIR:-/tmp/gpurun-bench-$(id -un)}
mkdir -p "$work"
cd "$work"
export GPURUN_CACHE_DIR="$work/cache"
export GPURUN_CONFIG=
pingpong_args=${GPURUN_BENCH_PINGPONG_ARGS:-}
start_timeout=${GPURUN_BENCH_START_TIMEOUT:-10}
ranks=${GPURUN_BENCH_RANKS:-4}
# shellcheck disable=SC2206 # options split on spaces on purpose
gpurun_args=(${GPURUN_BENCH_GPURUN_ARGS:-})
pingpong_timeout=300
rm -rf "$work/logs"
mkdir -p "$work/logs"

# 1. The image (built here unless given), cached by gpurun, and the native binary: the image's
# own /mpi_pingpong from the unpacked rootfs (same file, run on the host's libraries, which the
# image copied), else compiled here.
image=$given_image
if [ -z "$image" ]; then
    image="$work/mpi-image.tar"
    "$here/examples/mpi/build-image.sh" "$image" >/dev/null
fi
[ -r "$image" ] || { echo "cannot read the image $image" >&2; exit 1; }
native="$work/mpi_pingpong"
rm -f "$native"
if rootfs=$("$gpurun" unpack "$image" 2>"$work/logs/unpack.log") && [ -f "$rootfs/mpi_pingpong" ]; then
    cp "$rootfs/mpi_pingpong" "$native"
    native_from="the image's /mpi_pingpong"
elif need mpicc; then
    mpicc -O2 -o "$native" "$here/examples/mpi/mpi_pingpong.c"
    native_from="compiled here (gpurun unpack failed: $(tail -n 1 "$work/logs/unpack.log"))"
else
    echo "no native mpi_pingpong: gpurun unpack failed and there is no mpicc" >&2
    cat "$work/logs/unpack.log" >&2
    exit 1
fi
chmod 755 "$native"

# Open MPI's shared-memory BTL and its single-copy parameter, by major version.
ompi_version=$(ompi_info --version 2>/dev/null | sed -n 's/^Open MPI v\([0-9][0-9.]*\).*/\1/p' |
    head -n 1)
ompi_major=${ompi_version%%.*}
if [ "${ompi_major:-0}" -ge 5 ]; then
    shm=sm
else
    shm=vader
fi
mca=(--mca pml ob1 --mca btl "self,$shm" --mca "btl_${shm}_single_copy_mechanism" cma)
root_flag=()
[ "$(id -u)" = 0 ] && root_flag=(--allow-run-as-root)

echo "gpurun:  $("$gpurun" --version 2>/dev/null || echo "$gpurun")"
echo "Open MPI: ${ompi_version:-unknown}, mpirun $(command -v mpirun)"
echo "kernel:  $(uname -r), $(nproc) cpus, measuring as $(id -un) (uid $(id -u))"
echo "native:  $native_from"
echo "MCA:     ${mca[*]}"
[ ${#gpurun_args[@]} = 0 ] || echo "gpurun options: ${gpurun_args[*]}"

tsv="$work/mpi.tsv"
printf 'measure\tside\tranks\trep\tlat_8B_us\tbw_4MiB_MBps\tseconds\tstatus\n' >"$tsv"
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", b - a }'; }

# ping_once SIDE REP: one ping-pong run of $ranks ranks; appends its row; non-zero on failure.
ping_once() {
    local side=$1 rep=$2 log="$work/logs/pingpong-$1-$2.log" t0 t1 rc=0 line lat bw bad
    local -a cmd=(mpirun "${root_flag[@]}" --oversubscribe -np "$ranks" "${mca[@]}")
    if [ "$side" = native ]; then
        cmd+=("$native")
    else
        cmd+=("$gpurun" "${gpurun_args[@]}" "$image" /mpi_pingpong)
    fi
    # shellcheck disable=SC2206 # the arguments are words on purpose
    cmd+=($pingpong_args)
    t0=$(now)
    timeout -k 5 "$pingpong_timeout" "${cmd[@]}" </dev/null >"$log" 2>&1 || rc=$?
    t1=$(now)
    line=$(grep '^pingpong:' "$log" | tail -n 1 || true)
    lat=$(echo "$line" | awk '{ for (i = 1; i < NF; i++) if ($i == "lat_8B_us") print $(i + 1) }')
    bw=$(echo "$line" | awk '{ for (i = 1; i < NF; i++) if ($i == "bw_4MiB_MBps") print $(i + 1) }')
    bad=$(echo "$line" | awk '{ for (i = 1; i < NF; i++) if ($i == "bad_ints") print $(i + 1) }')
    local status=ok
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        status=timeout
    elif [ "$rc" != 0 ] || [ -z "$lat" ] || [ -z "$bw" ]; then
        status="exit-$rc"
    elif [ "${bad:-0}" != 0 ]; then
        status="bad-ints-$bad"
    fi
    [ "$status" = ok ] || { lat=-; bw=-; }
    printf 'pingpong\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$side" "$ranks" "$rep" "${lat:--}" "${bw:--}" \
        "$(elapsed "$t0" "$t1")" "$status" >>"$tsv"
    [ "$status" = ok ]
}

# start_once SIDE NP REP: one start run of NP ranks of `mpi_pingpong init`; appends its row.
start_once() {
    local side=$1 np=$2 rep=$3 log="$work/logs/start-$1-$2-$3.log" t0 t1 rc=0 status=ok
    local -a cmd=(mpirun "${root_flag[@]}" --oversubscribe -np "$np")
    if [ "$side" = native ]; then
        cmd+=("$native" init)
    else
        cmd+=("$gpurun" "${gpurun_args[@]}" "$image" /mpi_pingpong init)
    fi
    t0=$(now)
    timeout -k 5 "$start_timeout" "${cmd[@]}" </dev/null >"$log" 2>&1 || rc=$?
    t1=$(now)
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        status=timeout
    elif [ "$rc" != 0 ]; then
        status="exit-$rc"
    fi
    printf 'start\t%s\t%s\t%s\t-\t-\t%s\t%s\n' "$side" "$np" "$rep" "$(elapsed "$t0" "$t1")" "$status" \
        >>"$tsv"
}

# Says why a side's runs failed, with the end of the first failed run's output. For gpurun also
# which user namespaces its ranks are in (each rank stays a second, so that all live at once as
# MPI ranks do): CMA needs them all in one.
failed() { # SIDE REP
    local log="$work/logs/pingpong-$1-$2.log" status why ns
    status=$(awk -F'\t' -v s="$1" -v r="$2" '$1 == "pingpong" && $2 == s && $4 == r { print $8 }' \
        "$tsv")
    if grep -q 'different user namespaces' "$log"; then
        why="Open MPI refused CMA: \"not available due to different user namespaces\""
    elif grep -q 'BTL is aborting the MPI job' "$log"; then
        # Open MPI's help text sometimes arrives garbled (ORTE_ERROR_LOG ... show_help.c).
        why="Open MPI's $shm BTL aborted the job, its help text lost on the way (with CMA required:"
        why="$why CMA unavailable between the ranks)"
    elif [ "$status" = timeout ]; then
        why="no result within ${pingpong_timeout}s (killed)"
    else
        why="$status$(grep -m1 -E 'ERROR|[Ee]rror|usage' "$log" | sed 's/^ */, /' || true)"
    fi
    echo
    echo "$1 ranks failed: $why"
    if [ "$1" = gpurun ]; then
        ns=$(timeout -k 5 60 mpirun "${root_flag[@]}" --oversubscribe -np "$ranks" "$gpurun" \
            "${gpurun_args[@]}" "$image" sh -c 'readlink /proc/self/ns/user; sleep 1' </dev/null \
            2>/dev/null | sort | uniq -c | awk '{ printf "%s%s x%s", sep, $2, $1; sep = ", " }') || true
        echo "  user namespaces of $ranks gpurun ranks: ${ns:-unknown}"
        if [ "$(id -u)" != 0 ]; then
            echo "  (unprivileged, CMA works only between ranks that joined one container: not with a"
            echo "  gpurun without join, nor with --no-join)"
        fi
    fi
    echo "  last lines of $log:"
    tail -n 25 "$log" | sed 's/^/  | /'
}

# 2. Ping-pong, alternating which side goes first; a side that failed once is not run again.
native_ok=1 gpurun_ok=1 native_fail="" gpurun_fail=""
for rep in $(seq 1 "$reps"); do
    if [ $((rep % 2)) = 1 ]; then order="native gpurun"; else order="gpurun native"; fi
    for side in $order; do
        if [ "$side" = native ] && [ $native_ok = 1 ]; then
            ping_once native "$rep" || { native_ok=0; native_fail=$rep; }
        elif [ "$side" = gpurun ] && [ $gpurun_ok = 1 ]; then
            ping_once gpurun "$rep" || { gpurun_ok=0; gpurun_fail=$rep; }
        fi
    done
done

# 3. Start times: one warm-up each, then REPS rounds in rotating order.
for np in 1 64; do
    timeout -k 5 "$start_timeout" mpirun "${root_flag[@]}" --oversubscribe -np $np "$gpurun" \
        "${gpurun_args[@]}" "$image" /mpi_pingpong init </dev/null >>"$work/logs/start-warmup.log" 2>&1 || true
done
starts=("gpurun 1" "gpurun 64" "native 1" "native 64")
for rep in $(seq 1 "$reps"); do
    for k in 0 1 2 3; do
        # shellcheck disable=SC2086 # "side np"
        start_once ${starts[$(((k + rep) % 4))]} "$rep"
    done
done

# 4. Summary: medians over the successful runs.
median_of() { # MEASURE SIDE RANKS COLUMN
    awk -F'\t' -v m="$1" -v s="$2" -v n="$3" -v c="$4" \
        '$1 == m && $2 == s && $3 == n && $8 == "ok" { print $c }' "$tsv" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2];
             else printf "%.4f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
count_of() { # MEASURE SIDE RANKS STATUS-PATTERN
    awk -F'\t' -v m="$1" -v s="$2" -v n="$3" -v p="$4" \
        '$1 == m && $2 == s && $3 == n && $8 ~ p { k++ } END { print k + 0 }' "$tsv"
}
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b == 0) print "n/a";
        else printf "%.3f", a / b }'
}
verdict() { # RATIO OP TARGET
    awk -v r="$1" -v op="$2" -v t="$3" 'BEGIN { if (r == "n/a") print "";
        else if ((op == ">=" && r >= t) || (op == "<=" && r <= t)) print "met";
        else print "MISSED" }'
}
ms() { awk -v s="$1" 'BEGIN { if (s == "n/a") print "n/a"; else printf "%.1f", s * 1000 }'; }

n_lat=$(median_of pingpong native "$ranks" 5)
n_bw=$(median_of pingpong native "$ranks" 6)
g_lat=$(median_of pingpong gpurun "$ranks" 5)
g_bw=$(median_of pingpong gpurun "$ranks" 6)
g1=$(median_of start gpurun 1 7)
g64=$(median_of start gpurun 64 7)
n1=$(median_of start native 1 7)
n64=$(median_of start native 64 7)
bw_ratio=$(ratio "$g_bw" "$n_bw")
lat_ratio=$(ratio "$g_lat" "$n_lat")
g_start=$(ratio "$g64" "$g1")
n_start=$(ratio "$n64" "$n1")

echo
echo "== ping-pong, $ranks ranks, $shm + CMA required, medians of successful runs =="
printf '%-8s %8s %14s %18s\n' side "runs ok" "lat 8 B (us)" "bw 4 MiB (MB/s)"
for side in native gpurun; do
    if [ $side = native ]; then a=$n_lat b=$n_bw; else a=$g_lat b=$g_bw; fi
    printf '%-8s %8s %14s %18s\n' $side \
        "$(count_of pingpong $side "$ranks" '^ok$')/$(count_of pingpong $side "$ranks" .)" "$a" "$b"
done
printf 'ratio gpurun/native bandwidth  %8s   (target >= 0.95) %s\n' "$bw_ratio" \
    "$(verdict "$bw_ratio" '>=' 0.95)"
printf 'ratio gpurun/native latency    %8s   (target <= 1.1)  %s\n' "$lat_ratio" \
    "$(verdict "$lat_ratio" '<=' 1.1)"
echo
echo "== start of \`mpirun -np N ... mpi_pingpong init\`, medians of runs that ended within ${start_timeout}s =="
printf '%-8s %18s %18s %8s\n' side "N=1 ms (runs ok)" "N=64 ms (runs ok)" "64/1"
for side in gpurun native; do
    if [ $side = gpurun ]; then a=$g1 b=$g64 r=$g_start; else a=$n1 b=$n64 r=$n_start; fi
    printf '%-8s %18s %18s %8s\n' $side "$(ms "$a") ($(count_of start $side 1 '^ok$')/$reps)" \
        "$(ms "$b") ($(count_of start $side 64 '^ok$')/$reps)" "$r"
done
printf 'ratio gpurun 64/1 ranks        %8s   (target <= 1.5)  %s\n' "$g_start" \
    "$(verdict "$g_start" '<=' 1.5)"
printf 'ratio native 64/1 ranks        %8s   (reference: what this node allows)\n' "$n_start"
for side in gpurun native; do
    for np in 1 64; do
        hung=$(count_of start $side $np '^timeout$')
        other=$(count_of start $side $np '^exit-')
        [ "$hung" = 0 ] ||
            echo "note: $hung of $reps $side -np $np runs hung (killed after ${start_timeout}s, left out)"
        [ "$other" = 0 ] ||
            echo "note: $other of $reps $side -np $np runs failed: $work/logs/start-$side-$np-*.log"
    done
done
[ -z "$gpurun_fail" ] || failed gpurun "$gpurun_fail"
[ -z "$native_fail" ] || failed native "$native_fail"
echo
echo "raw: $tsv (logs in $work/logs)"
# The native reference failing is a setup problem (no shared memory, CMA refused on the host).
[ -z "$native_fail" ]
