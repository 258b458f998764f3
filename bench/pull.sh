#!/usr/bin/env bash
# Benchmark (not a test): pulling the big fixture image from the local test registry (TLS,
# Basic auth; rootfs-tests/registry/setup.sh), in the same run:
#
#   cold `gpurun docker://.../big true` (empty cache)       vs
#   `skopeo copy docker://... oci:DIR` + `umoci unpack --rootless`, and `skopeo copy` alone;
#   gpurun's peak RSS; and the warm start of the cached tag against the warm start of the same
#   image from an OCI archive (hyperfine).
#
#   bench/pull.sh            (as root; RUNS cold runs each, default 3; output on a fresh tmpfs)
#
# Prints the medians and the ratios; exits 0 whatever they are.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runs=${RUNS:-3}
[[ $(id -u) -eq 0 ]] || { echo "bench/pull.sh: run as root (it starts the test registries)" >&2; exit 1; }
need=()
command -v hyperfine >/dev/null || need+=(hyperfine)
[[ -x /usr/bin/time ]] || need+=(time)
command -v umoci >/dev/null || need+=(umoci)
if ((${#need[@]})); then
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
fixtures=${GPURUN_FIXTURES:-$repo/.fixtures}
[[ -d $fixtures/big ]] || { echo "bench/pull.sh: no $fixtures/big: run rootfs-tests/images/build.sh $fixtures" >&2; exit 1; }
gpurun=${GPURUN:-$repo/target/release/gpurun}
[[ -x $gpurun ]] || { echo "bench/pull.sh: build $gpurun first (README \"Building\")" >&2; exit 1; }

"$repo/rootfs-tests/registry/setup.sh" "$fixtures" >/dev/null
password=$(cat /run/gpurun-registry/password)
registry=127.0.0.1:5443
ref=$registry/bench/big:latest
skopeo copy -q --dest-creds "gpurun-test:$password" "oci:$fixtures/big:latest" "docker://$ref"

scratch=$(mktemp -d /tmp/gpurun-bench-pull.XXXXXX)
mount -t tmpfs -o size=8g,mode=0755 gpurun-bench-pull "$scratch"
trap 'cd /; umount "$scratch" 2>/dev/null; rmdir "$scratch"' EXIT
cd "$scratch"
auth=$scratch/auth.json
printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$registry" "$(printf 'gpurun-test:%s' "$password" | base64 -w0)" >"$auth"
skopeo copy -q "oci:$fixtures/big:latest" "oci-archive:$scratch/big.tar:latest"
export REGISTRY_AUTH_FILE=$auth GPURUN_CONFIG=

# timed FILE CMD...: appends "seconds maxrss_kb" of CMD to FILE.
timed() {
    local file=$1
    shift
    /usr/bin/time -f '%e %M' -o "$scratch/time.out" "$@" >/dev/null 2>"$scratch/stderr" \
        || { cat "$scratch/stderr" >&2; echo "bench: failed: $*" >&2; exit 1; }
    cat "$scratch/time.out" >>"$file"
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
clean() { rm -rf "$scratch/cache" "$scratch/oci" "$scratch/bundle"; sync; }

: >g.t; : >s.t; : >u.t
for i in $(seq "$runs"); do
    echo "bench: cold run $i/$runs"
    clean
    timed g.t env GPURUN_CACHE_DIR="$scratch/cache" "$gpurun" -q "docker://$ref" true
    clean
    timed s.t skopeo copy -q --authfile "$auth" "docker://$ref" "oci:$scratch/oci:latest"
    timed u.t umoci unpack --rootless --image "$scratch/oci:latest" "$scratch/bundle"
done
clean
# Warm: the cached tag (no network) against the same image from an archive.
GPURUN_CACHE_DIR=$scratch/cache "$gpurun" -q "docker://$ref" true
GPURUN_CACHE_DIR=$scratch/cache "$gpurun" -q "$scratch/big.tar" true
GPURUN_CACHE_DIR=$scratch/cache hyperfine -N --style basic --warmup 10 --runs 200 --export-json warm.json \
    -n tag "$gpurun docker://$ref true" -n archive "$gpurun $scratch/big.tar true" >/dev/null
warm() { python3 -c 'import json,sys; r={x["command"]: x for x in json.load(open("warm.json"))["results"]}; print(r[sys.argv[1]]["median"] * 1000)' "$1"; }

g=$(cut -d' ' -f1 g.t | median)
s=$(cut -d' ' -f1 s.t | median)
u=$(cut -d' ' -f1 u.t | median)
rss=$(cut -d' ' -f2 g.t | sort -n | tail -n1)
wt=$(warm tag)
wa=$(warm archive)
echo
echo "== pull benchmark ($(nproc) CPUs, $(uname -r), output on tmpfs, registry on 127.0.0.1 with TLS)"
echo "image: $fixtures/big ($(du -sh "$fixtures/big" | cut -f1) of blobs), $runs cold runs each"
printf 'cold gpurun docker://REF true:      median %6.2f s\n' "$g"
printf 'skopeo copy docker:// oci:DIR:      median %6.2f s\n' "$s"
printf 'umoci unpack --rootless:            median %6.2f s\n' "$u"
awk -v g="$g" -v s="$s" -v u="$u" 'BEGIN {
    printf "ratio gpurun / (skopeo + umoci):    %6.2f   (target <= 0.5)\n", g / (s + u)
    printf "ratio gpurun / skopeo copy:         %6.2f   (target <= 1.1)\n", g / s }'
printf 'gpurun peak RSS (cold):             %6.1f MB (target <= 64)\n' "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')"
printf 'warm start, cached tag:             %6.3f ms\n' "$wt"
printf 'warm start, same image as archive:  %6.3f ms\n' "$wa"
awk -v t="$wt" -v a="$wa" 'BEGIN { printf "ratio tag / archive:                %6.3f   (target <= 1.05)\n", t / a }'
