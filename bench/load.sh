#!/bin/bash
# Start latency under load: N (default 64) concurrent `gpurun IMAGE true` on one warm cached
# image, each timed from its own fork to its exit; prints the median and the worst, plus how
# many failed. A benchmark, not a test (rootfs-tests/hpc.rs checks that 64 starts all succeed).
#
#   bench/load.sh IMAGE [N] [ROUNDS]      (GPURUN=path/to/gpurun; default target/release/gpurun)
set -euo pipefail
IMAGE=${1:?usage: bench/load.sh IMAGE [N] [ROUNDS]}
N=${2:-64}
ROUNDS=${3:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
GPURUN=${GPURUN:-$here/target/release/gpurun}
[ -x "$GPURUN" ] || { echo "build first: cargo rustc --release --bin gpurun -- -C target-feature=+crt-static (or set GPURUN)" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/gpurun-load.XXXXXX")
trap 'chmod -R u+rwX "$work"; rm -rf "$work"' EXIT
export GPURUN_CACHE_DIR=${GPURUN_CACHE_DIR:-$work/cache} GPURUN_CONFIG=""

"$GPURUN" -q "$IMAGE" true    # unpack once: the measured starts are warm
for round in $(seq "$ROUNDS"); do
    for i in $(seq "$N"); do
        (
            t0=$(date +%s%N)
            if "$GPURUN" -q "$IMAGE" true </dev/null >/dev/null 2>"$work/err.$i"; then s=ok; else s=fail; fi
            echo "$(( ($(date +%s%N) - t0) / 1000000 )) $s" >"$work/t.$i"
        ) &
    done
    wait
    cat "$work"/t.* >"$work/round.$round"
    rm -f "$work"/t.*
done
cat "$work"/round.* | sort -n | awk -v n="$N" -v r="$ROUNDS" -v cores="$(nproc)" '
    { ms[NR] = $1; if ($2 != "ok") fail++ }
    END {
        printf "%d concurrent starts x %d rounds on %d cores: median %d ms, worst %d ms, failed %d\n",
            n, r, cores, ms[int((NR + 1) / 2)], ms[NR], fail + 0
    }'
