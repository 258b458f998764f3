#!/usr/bin/env bash
# THE test command (README, CI): style, lints, build, fixture images, then every test as root and
# again as an unprivileged user. On a fresh Debian 12 machine run it as root; as non-root it runs
# what it can and reports the unprivileged pass as skipped.
#
#   rootfs-tests/run.sh            # GPURUN_TEST_NO_SKIP=1 turns every SKIP into a failure (CI)
#
# Ends with one line "N passed, N failed" and exits non-zero on any failure.
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# The tests run gpurun, the fixtures and the repository's scripts and files as the unprivileged
# gpurun-test user too. A checkout it cannot read (a root's clone under /root, mode 0700) is run
# from a copy in /var/tmp instead (its build is kept there for the next run), never by opening up
# the caller's home directory.
if [[ $(id -u) -eq 0 && -z ${GPURUN_TEST_CHECKOUT_COPY:-} ]] && ! runuser -u nobody -- test -r "$repo/Cargo.toml" 2>/dev/null; then
    copy=/var/tmp/gpurun-test-checkout
    # Checked after it exists (mkdir without -p fails on anything already there), so another
    # user cannot slip in a directory of their own between the check and the copy.
    mkdir -m 0755 "$copy" 2>/dev/null || true
    if [[ -L $copy || ! -d $copy || ! -O $copy ]]; then
        echo "run.sh: $copy exists but is not root's own directory; remove it and run again" >&2
        echo "0 passed, 1 failed"
        exit 1
    fi
    echo "$repo is not readable by other users: running the suite from a copy in $copy"
    chmod 0755 "$copy"
    find "$copy" -mindepth 1 -maxdepth 1 ! -name target ! -name .fixtures -exec rm -rf {} +
    # What git sees (tracked, and untracked but not ignored): no build outputs, and no ignored
    # private files made world-readable. Without git, everything but build outputs and .git.
    if command -v git >/dev/null && git -c safe.directory="$repo" -C "$repo" rev-parse 2>/dev/null; then
        git -c safe.directory="$repo" -C "$repo" ls-files -z -co --exclude-standard \
            | tar -C "$repo" --null -T - -cf - | tar -C "$copy" -xf -
    else
        tar -C "$repo" --exclude=./target --exclude=./.fixtures --exclude=./.git -cf - . | tar -C "$copy" -xf -
    fi
    find "$copy" -mindepth 1 -maxdepth 1 ! -name target ! -name .fixtures -exec chmod -R a+rX {} +
    GPURUN_TEST_CHECKOUT_COPY=$repo exec "$copy/rootfs-tests/run.sh" "$@"
fi
fixtures=${GPURUN_FIXTURES:-$repo/.fixtures}
export GPURUN_FIXTURES=$fixtures
export GPURUN_CORPUS=${GPURUN_CORPUS:-$fixtures/corpus}
logs=$repo/target/run-logs
mkdir -p "$logs"
test_user=gpurun-test
no_skip=${GPURUN_TEST_NO_SKIP:-0}
[[ $no_skip == 0 ]] && no_skip=""

passed=0 failed=0 skipped=0
failures=()
say() { printf '\n=== %s\n' "$*"; }
ok() { passed=$((passed + 1)); printf 'PASS: %s\n' "$1"; }
bad() { failed=$((failed + 1)); failures+=("$1"); printf 'FAIL: %s\n' "$1"; }
skipped_step() {
    skipped=$((skipped + 1))
    printf 'SKIP: %s\n' "$1"
    [[ -n $no_skip ]] && bad "skipped (GPURUN_TEST_NO_SKIP): $1"
}
# logged LOG CMD...: runs CMD with its output in LOG and, every 30 s while it runs, one progress
# line (elapsed time and the log's last line), so that no phase is silent for long.
logged() {
    local log=$1 pid t=0 rc
    shift
    "$@" >"$log" 2>&1 &
    pid=$!
    # A background job of a script starts with SIGINT ignored: forward Ctrl-C and SIGTERM.
    trap 'kill -TERM "$pid" 2>/dev/null; exit 130' INT TERM
    while kill -0 "$pid" 2>/dev/null; do
        sleep 1
        t=$((t + 1))
        if ((t % 30 == 0)); then
            printf '  ... %ss: %s\n' "$t" "$(tail -n 1 "$log" 2>/dev/null | tr -d '\r' | cut -c1-110)"
        fi
    done
    wait "$pid"
    rc=$?
    trap - INT TERM
    printf '  (%ss)\n' "$t"
    return $rc
}
# step NAME CMD...: one pass/fail for a whole command, its output in target/run-logs.
step() {
    local name=$1 log="$logs/$1.log"
    shift
    say "$name: $*"
    if logged "$log" "$@"; then
        ok "$name"
    else
        tail -n 60 "$log"
        bad "$name (full log: $log)"
        return 1
    fi
}
# Adds the libtest results of a log to the totals; a test binary that died without a result line
# counts as one failure.
count_tests() {
    local log=$1 what=$2 p f
    read -r p f < <(awk '/^test result:/ { for (i = 2; i <= NF; i++) {
        if ($i == "passed;") p += $(i - 1); if ($i == "failed;") f += $(i - 1) } }
        END { print p + 0, f + 0 }' "$log")
    passed=$((passed + p))
    failed=$((failed + f))
    grep -E '^test .* \.\.\. FAILED$' "$log" | sed "s/^/  [$what] /" || true
    # What the failing tests printed, so that a CI report that shows only this script's output
    # still says why. libtest writes two "failures:" headings per failing test program: the first
    # opens the tests' output, the second the list of names; a log holds one pair per program.
    if grep -qE '^test .* \.\.\. FAILED$' "$log"; then
        awk '/^failures:$/ { inside = !inside; next } /^test result:/ { inside = 0 } inside' "$log" \
            | head -n 300 | sed "s/^/  [$what] | /"
    fi
    while read -r t; do failures+=("[$what] $t"); done < <(grep -E '^test .* \.\.\. FAILED$' "$log" | sed -E 's/^test (.*) \.\.\. FAILED$/\1/')
    local s
    s=$(grep -hE '^SKIP:' "$log" | sort -u)
    if [[ -n $s ]]; then
        sed "s/^/  [$what] /" <<<"$s"
        skipped=$((skipped + $(wc -l <<<"$s")))
    fi
    # Root-only tests name themselves in the unprivileged pass; they ran (and counted) as root.
    grep -hE '^ROOT-ONLY:' "$log" | sort -u | sed "s/^/  [$what] /" || true
}

# ---------------------------------------------------------------------------------------------
say "setup"
is_root=""
[[ $(id -u) -eq 0 ]] && is_root=1
[[ -n ${GPURUN_TEST_CHECKOUT_COPY:-} ]] && echo "(a copy of $GPURUN_TEST_CHECKOUT_COPY)"
if [[ -n $is_root ]]; then
    cat <<'EOF'
As root this suite changes the machine (README "Testing"): it installs Debian packages (about 200:
build tools, umoci, skopeo, Slurm, MariaDB, Open MPI, docker-registry, qemu), creates users gpurun-test
and gpurun-nogpu and groups render and video, starts MariaDB, munged, slurmdbd, slurmctld and
slurmd, and three registries on 127.0.0.1 (ports 5443, 5444, 5445, 5080) whose test CA it puts in
/etc/containers/certs.d/127.0.0.1:544[345]/; it stops the daemons again at the end
(GPURUN_TEST_KEEP_DAEMONS=1 keeps them; rootfs-tests/hpc/setup.sh --stop and
rootfs-tests/registry/setup.sh --stop stop them later).
EOF
fi
if ! command -v cargo >/dev/null && [[ -x $HOME/.cargo/bin/cargo ]]; then
    export PATH=$HOME/.cargo/bin:$PATH
fi
if ! command -v cargo >/dev/null; then
    cat >&2 <<'EOF'
run.sh: cargo not found. gpurun needs Rust >= 1.89 (edition 2024); Debian 12's packaged rustc
(1.63) is too old. Install the toolchain with rustup (https://rustup.rs), e.g.
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy,rustfmt
then run this script again.
EOF
    echo "0 passed, 1 failed"
    exit 1
fi
need=()
command -v umoci >/dev/null || need+=(umoci)
command -v skopeo >/dev/null || need+=(skopeo)
[[ -x /bin/busybox ]] || need+=(busybox-static)
command -v python3 >/dev/null || need+=(python3)
command -v zstd >/dev/null || need+=(zstd)
# The VM tests (rootfs-tests/vm.rs) boot Debian's older kernels.
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v strip >/dev/null || need+=(binutils)
command -v cc >/dev/null || need+=(gcc libc6-dev)
command -v runuser >/dev/null || need+=(util-linux)
# --writable-tmpfs without overlayfs (sandbox.rs, vm.rs).
command -v fuse-overlayfs >/dev/null || need+=(fuse-overlayfs)
# The join tests hold a leader mid-setup with it (sandbox.rs).
command -v strace >/dev/null || need+=(strace)
command -v useradd >/dev/null || need+=(passwd)
# cargo fetches crates over HTTPS and checks the server against the system's CA bundle.
[[ -s /etc/ssl/certs/ca-certificates.crt ]] || need+=(ca-certificates)
if ((${#need[@]})); then
    if [[ -n $is_root ]]; then
        echo "installing: ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
        apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${need[@]}" >/dev/null \
            || { echo "run.sh: apt-get install ${need[*]} failed" >&2; echo "0 passed, 1 failed"; exit 1; }
    else
        echo "run.sh: missing ${need[*]} (run as root to install them)" >&2
    fi
fi
cargo --version

# ---------------------------------------------------------------------------------------------
step fmt cargo fmt --all --check
step clippy cargo clippy --workspace --all-targets --locked -- -D warnings
step build cargo build --workspace --all-targets --locked
# The binary under test is the one users get: the static-pie release build (README "Building").
step release cargo rustc --release --locked --bin gpurun -- -C target-feature=+crt-static
export GPURUN_BIN=$repo/target/release/gpurun
if [[ -n $is_root ]]; then
    step fixtures rootfs-tests/images/build.sh "$fixtures"
    step squash-fixtures rootfs-tests/squash/build.sh "$fixtures/squash"
else
    skipped_step "fixtures: building the fixture images needs root (setuid and 0000 source files); run rootfs-tests/images/build.sh $fixtures as root"
fi
if [[ -f rootfs-tests/corpus/make_corpus.py ]]; then
    step corpus python3 rootfs-tests/corpus/make_corpus.py "$GPURUN_CORPUS"
    chmod -R a+rX "$GPURUN_CORPUS" 2>/dev/null || true
fi

# ---------------------------------------------------------------------------------------------
say "cargo test as $(id -un)"
log="$logs/test-$(id -un).log"
logged "$log" cargo test --workspace --locked --no-fail-fast -- --show-output
rc=$?
grep -E '^(test |test result:|     Running|SKIP:)' "$log" | grep -vE '\.\.\. ok$' | head -n 200
count_tests "$log" "$(id -un)"
if [[ $rc -ne 0 ]] && ! grep -qE '^test result: FAILED' "$log"; then
    tail -n 40 "$log"
    bad "cargo test as $(id -un) exited $rc without a failed test (build error?): $log"
fi

# ---------------------------------------------------------------------------------------------
# The same compiled tests again as an unprivileged user with its own HOME, TMPDIR and cache.
run_as_user() {
    getent group render >/dev/null || groupadd --system render
    getent group video >/dev/null || groupadd --system video
    if id "$test_user" >/dev/null 2>&1; then
        usermod -a -G render,video "$test_user"
    else
        useradd --create-home --shell /bin/sh --groups render,video "$test_user"
    fi
    local stage
    stage=$(mktemp -d /tmp/gpurun-test-run.XXXXXX)
    chmod 0755 "$stage"
    mkdir -p "$stage/bin"
    # Test binaries, as cargo built them (the JSON lists every test target's executable).
    mapfile -t bins < <(cargo test --workspace --locked --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        print(m["executable"])
')
    if ((${#bins[@]} == 0)); then
        bad "no test binaries found for the unprivileged pass"
        return
    fi
    cp "${bins[@]}" "$GPURUN_BIN" "$stage/bin/"
    local fx=$fixtures corpus=$GPURUN_CORPUS
    # The user must reach the fixtures; when the checkout is private (e.g. under /root), use a copy.
    if ! runuser -u "$test_user" -- test -r "$fixtures/fixtures.json"; then
        echo "($fixtures is not readable by $test_user: copying it to $stage)"
        cp -a "$fixtures" "$stage/fixtures"
        fx=$stage/fixtures
        [[ $corpus == "$fixtures"/* ]] && corpus=$fx/${corpus#"$fixtures"/}
    fi
    # Its own HOME (/home/..., as in real life: some tests check that HOME is not under /tmp),
    # emptied first, and its own TMPDIR, which is also the working directory (not HOME: gpurun
    # binds the working directory, and tests check that --no-home hides HOME).
    local home
    home=$(getent passwd "$test_user" | cut -d: -f6)
    [[ -n $home && $home != / ]] || home=/home/$test_user
    rm -rf "$home"
    mkdir -p "$home" "$stage/tmp"
    chown "$test_user:" "$home" "$stage/tmp"
    chmod 0700 "$home"
    chmod -R a+rX "$stage/bin" "$fx" 2>/dev/null
    local b name ulog
    local extra=()
    [[ -n ${GPURUN_TEST_NO_SKIP:-} ]] && extra+=("GPURUN_TEST_NO_SKIP=$GPURUN_TEST_NO_SKIP")
    for b in "${bins[@]}"; do
        name=$(basename "$b")
        ulog="$logs/test-$test_user-$name.log"
        echo "     Running $name as $test_user"
        logged "$ulog" runuser -u "$test_user" -- env -i \
            PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
            HOME="$home" TMPDIR="$stage/tmp" USER="$test_user" LANG=C.UTF-8 \
            GPURUN_CACHE_DIR="$home/.cache/gpurun" \
            GPURUN_BIN="$stage/bin/gpurun" GPURUN_FIXTURES="$fx" GPURUN_CORPUS="$corpus" \
            RUST_BACKTRACE=1 GPURUN_TEST_UNPRIVILEGED_PASS=1 "${extra[@]}" \
            sh -c 'cd "$TMPDIR" && exec "$0" --show-output' "$stage/bin/$name"
        rc=$?
        grep -E '^(test |test result:|SKIP:|ROOT-ONLY:)' "$ulog" | grep -vE '\.\.\. ok$' | head -n 100
        count_tests "$ulog" "$test_user"
        if [[ $rc -ne 0 ]] && ! grep -qE '^test result: FAILED' "$ulog"; then
            tail -n 40 "$ulog"
            bad "$name as $test_user exited $rc without a test result: $ulog"
        fi
    done
    chmod -R u+rwX "$stage" 2>/dev/null
    rm -rf "$stage"
}
if [[ -n $is_root ]]; then
    say "tests as the unprivileged user $test_user"
    run_as_user
else
    skipped_step "unprivileged pass: run.sh is not root, so it cannot create or become $test_user"
fi

# The Slurm test cluster's daemons (started by hpc.rs through hpc/setup.sh) and the test
# registries (registry.rs, registry/setup.sh) stop with the suite.
if [[ -n $is_root && ${GPURUN_TEST_KEEP_DAEMONS:-0} != 1 ]]; then
    say "stopping the test cluster's and registries' daemons (GPURUN_TEST_KEEP_DAEMONS=1 keeps them)"
    rootfs-tests/hpc/setup.sh --stop || bad "rootfs-tests/hpc/setup.sh --stop failed"
    rootfs-tests/registry/setup.sh --stop || bad "rootfs-tests/registry/setup.sh --stop failed"
fi

# ---------------------------------------------------------------------------------------------
say "summary"
if ((${#failures[@]})); then
    printf 'failed:\n'
    printf '  %s\n' "${failures[@]}"
fi
((skipped)) && echo "$skipped skipped$([[ -n $no_skip ]] && echo ' (counted as failures: GPURUN_TEST_NO_SKIP)')"
echo "$passed passed, $failed failed"
((failed == 0))
