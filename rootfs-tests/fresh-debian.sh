#!/usr/bin/env bash
# Runs a command (default: the README's test command) in a FRESH minimal Debian root, as a
# newcomer's new machine would be: debootstrap --variant=minbase, plus only the Rust toolchain.
# CI (.ci/run) runs the test suite this way, so that a missing install step, a test that leans on
# an earlier run's users, packages or daemons, or a race that only a new machine shows fails CI
# instead of a user's first try.
#
#   rootfs-tests/fresh-debian.sh [CMD ARGS...]     # as root; CMD runs in the checkout's copy
#   rootfs-tests/fresh-debian.sh --tarball         # only print the pristine tarball's path
#
# What it does, and why:
# * The root comes from a pristine tarball, made once by debootstrap and cached in
#   $GPURUN_FRESH_CACHE (default /var/cache/gpurun-fresh); nothing else of a run is kept there but
#   download caches (.deb files, crates), which a new machine would fetch anyway.
# * The mirror is the one this machine's own apt sources name for the suite, and the root gets
#   this machine's enabled apt sources: no registry's host name is written in the repository.
# * It is entered with pivot_root (unprivileged user namespaces, which the tests need, are refused
#   inside a chroot), in new mount, PID and UTS namespaces: the host's daemons are invisible, so
#   the suite must start its own; the hostname is one that /etc/hosts does not know, as on many
#   real machines; and when the command ends, everything it left running dies with the PID
#   namespace. The network is the host's (apt and crates.io are needed).
# * The checkout is copied in as git sees it (tracked files and untracked, not ignored ones): no
#   build outputs, no fixtures. The toolchain ($RUSTUP_HOME, $CARGO_HOME/bin) is bound read-only.
# * The root is removed afterwards (GPURUN_FRESH_KEEP=1 keeps it and prints where).
set -euo pipefail

log() { printf 'fresh-debian: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
[[ $(id -u) -eq 0 ]] || die "must run as root (it makes a Debian root and enters it with pivot_root)"

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
suite=${GPURUN_FRESH_SUITE:-bookworm}
cache=${GPURUN_FRESH_CACHE:-/var/cache/gpurun-fresh}
arch=$(dpkg --print-architecture)
tarball=$cache/debian-$suite-$arch-minbase.tar
(($#)) || set -- ./rootfs-tests/run.sh


# The first URI of an enabled apt source for $suite with component main (deb822 or one-line).
host_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        awk -v suite="$suite" '
            function flush() { if (deb && has_suite && has_main && uri != "") { print uri; found = 1; exit }
                               deb = has_suite = has_main = 0; uri = "" }
            /^[[:space:]]*$/ { flush(); next }
            /^Types:/ { deb = ($0 ~ /[[:space:]]deb([[:space:]]|$)/) }
            /^URIs:/ { uri = $2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) has_suite = 1 }
            /^Components:/ { for (i = 2; i <= NF; i++) if ($i == "main") has_main = 1 }
            /^Enabled:[[:space:]]*no/ { deb = 0 }
            END { if (!found) flush() }' "$f"
    done
    { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true; } \
        | sed -E 's/\[[^]]*\]//' \
        | awk -v suite="$suite" '$1 == "deb" && $3 == suite { for (i = 4; i <= NF; i++) if ($i == "main") { print $2; exit } }'
}

make_tarball() {
    command -v debootstrap >/dev/null || {
        log "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends debootstrap >/dev/null \
            || { apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null \
                 && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends debootstrap >/dev/null; }
    }
    local mirror dir
    mirror=$(host_mirror | head -n 1) || true
    [[ -n $mirror ]] || die "no enabled apt source for '$suite' main in /etc/apt: cannot choose a mirror"
    dir=$(mktemp -d "$cache/debootstrap.XXXXXX")
    log "debootstrap --variant=minbase $suite (mirror from this machine's apt sources); about 2 minutes"
    if ! debootstrap --variant=minbase --arch="$arch" "$suite" "$dir" "$mirror" >"$cache/debootstrap.log" 2>&1; then
        tail -n 30 "$cache/debootstrap.log" >&2
        rm -rf --one-file-system "$dir"
        die "debootstrap failed (log: $cache/debootstrap.log)"
    fi
    rm -rf "$dir/var/cache/apt/archives/"*.deb "$dir/var/lib/apt/lists/"*_*
    chmod 0755 "$dir" # mktemp made it 0700, and it becomes the root's "/"
    local tmp
    tmp=$(mktemp "$tarball.XXXXXX")
    tar --numeric-owner -C "$dir" -cf "$tmp" .
    mv "$tmp" "$tarball"
    rm -rf --one-file-system "$dir"
}

mkdir -p "$cache/apt-archives/partial" "$cache/cargo-registry"
[[ -s $tarball ]] || make_tarball
# `--tarball`: only make sure the pristine tarball exists and print its path (bench/start.sh
# builds its glibc image from it).
if [[ $1 == --tarball ]]; then
    echo "$tarball"
    exit 0
fi
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
cargo_home=${CARGO_HOME:-$HOME/.cargo}
[[ -x $cargo_home/bin/cargo && -d $rustup_home/toolchains ]] \
    || die "no Rust toolchain at $cargo_home/bin and $rustup_home (install it with rustup first)"
work=$(mktemp -d /var/tmp/gpurun-fresh.XXXXXX)
root=$work/root
cleanup() {
    if [[ ${GPURUN_FRESH_KEEP:-0} == 1 ]]; then
        log "kept the root: $root"
    else
        chmod -R u+rwX "$work" 2>/dev/null || true
        rm -rf --one-file-system "$work"
    fi
}
trap cleanup EXIT
mkdir -p "$root"
tar --numeric-owner -C "$root" -xf "$tarball"
chmod 0755 "$root"

# This machine's enabled apt sources and its Acquire settings (proxies, validity checks), which
# are how this network reaches Debian; the minbase root's own sources.list is replaced.
rm -f "$root/etc/apt/sources.list"
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] && cp "$f" "$root$f"
done
for f in /etc/apt/apt.conf.d/*; do
    [[ -f $f ]] && grep -q '^[[:space:]]*Acquire' "$f" && cp "$f" "$root/etc/apt/apt.conf.d/"
done
# Keep downloaded packages between runs (a download cache, not installed state).
rm -f "$root/etc/apt/apt.conf.d/"*clean*
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
# This machine's local trust anchors (a site CA, a network's TLS proxy): on every machine of its
# network they are there before anything is installed; ca-certificates adds them to the bundle
# when the suite installs it, as it would on a new machine.
if [[ -d /usr/local/share/ca-certificates ]]; then
    cp -a /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
fi
host=gpurun-fresh-$$
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
echo "$host" >"$root/etc/hostname"

apt_uid=$(awk -F: '$1 == "_apt" { print $3 }' "$root/etc/passwd")
[[ -z $apt_uid ]] || chown -R "$apt_uid" "$cache/apt-archives/partial" "$root/var/lib/apt/lists/partial"
mkdir -p "$root/root/gpurun" "$root/root/.rustup" "$root/root/.cargo/bin" "$root/root/.cargo/registry"
(cd "$repo" && git -c safe.directory="$repo" ls-files -z -co --exclude-standard | tar --null -T - -cf -) | tar -C "$root/root/gpurun" -xf -
log "root $root from $(basename "$tarball"); hostname $host; running: $*"

# Runs as PID 1 of the new PID namespace, in the new mount and UTS namespaces.
enter() {
    local root=$1 host=$2 cache=$3 rustup_home=$4 cargo_home=$5
    shift 5
    hostname "$host"
    mount --bind "$root" "$root"
    mount -t proc proc "$root/proc"
    mount --rbind /sys "$root/sys"
    mount -t tmpfs -o mode=0755,nosuid tmpfs "$root/dev"
    local n
    for n in null zero full random urandom tty kvm fuse; do
        [[ -e /dev/$n ]] || continue
        touch "$root/dev/$n"
        mount --bind "/dev/$n" "$root/dev/$n"
    done
    mkdir -p "$root/dev/pts" "$root/dev/shm"
    mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$root/dev/pts"
    ln -s pts/ptmx "$root/dev/ptmx"
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/dev/shm"
    ln -s /proc/self/fd "$root/dev/fd"
    ln -s /proc/self/fd/0 "$root/dev/stdin"
    ln -s /proc/self/fd/1 "$root/dev/stdout"
    ln -s /proc/self/fd/2 "$root/dev/stderr"
    mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$root/run"
    mount --bind -o ro "$rustup_home" "$root/root/.rustup"
    mount --bind -o ro "$cargo_home/bin" "$root/root/.cargo/bin"
    mount --bind "$cache/cargo-registry" "$root/root/.cargo/registry"
    mount --bind "$cache/apt-archives" "$root/var/cache/apt/archives"
    mkdir -p "$root/.old-root"
    cd "$root"
    pivot_root . .old-root
    cd /
    umount -l /.old-root
    rmdir /.old-root
    cd /root/gpurun
    exec env -i HOME=/root USER=root LOGNAME=root LANG=C.UTF-8 TERM=dumb \
        PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        ${CI:+CI=$CI} ${GPURUN_TEST_NO_SKIP:+GPURUN_TEST_NO_SKIP=$GPURUN_TEST_NO_SKIP} "$@"
}
set +e
unshare --mount --pid --uts --fork --propagation private \
    bash -c "$(declare -f enter); set -euo pipefail; enter \"\$@\"" enter \
    "$root" "$host" "$cache" "$rustup_home" "$cargo_home" "$@"
rc=$?
set -e
log "$* exited $rc in the fresh root"
exit $rc
