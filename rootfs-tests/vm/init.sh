#!/bin/busybox sh
# PID 1 of the VM that rootfs-tests/vm.rs boots on a Debian kernel: sets up a minimal system from
# the initramfs (busybox, gpurun with the host's glibc, test images), runs gpurun as an
# unprivileged user the way a cluster user would, and prints one line per check on the serial
# console: `VMTEST PASS name`, `VMTEST FAIL name: detail`, `VMBENCH name value`, then
# `VMTEST DONE`, and powers off. Nothing here decides pass or fail for the harness but those lines.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin
# pivot_root(2) refuses the initramfs itself as the root it leaves, as on no real machine: move
# everything onto a tmpfs first and start again from there.
if [ ! -e /.switched ]; then
    mkdir -p /newroot
    mount -t tmpfs -o mode=755 root /newroot
    for d in /*; do
        case "$d" in /proc | /sys | /dev | /newroot) mkdir -p "/newroot$d" ;; *) cp -a "$d" /newroot/ ;; esac
    done
    touch /newroot/.switched
    exec switch_root /newroot /init
fi
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || mount -t tmpfs -o mode=755 dev /dev
mkdir -p /dev/pts /dev/shm /tmp /home/user /data
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmp /tmp
mount -t tmpfs -o mode=1777 shm /dev/shm
# The host's mounts carry flags a user namespace cannot clear: the :ro bind of /data must keep them.
mount -t tmpfs -o nosuid,nodev,noexec,mode=755 data /data
echo "from the host" >/data/in.txt
chown -R 1000:1000 /home/user
[ -e /modules/overlay.ko ] && insmod /modules/overlay.ko 2>/dev/null
# FUSE for fuse-overlayfs (--writable-tmpfs without overlayfs), usable by every user as the fuse3
# package's udev rule makes it.
[ -e /modules/fuse.ko ] && insmod /modules/fuse.ko 2>/dev/null
[ -e /dev/fuse ] || mknod /dev/fuse c 10 229
chmod 666 /dev/fuse
[ -e /proc/sys/kernel/unprivileged_userns_clone ] && echo 1 >/proc/sys/kernel/unprivileged_userns_clone
echo "VMTEST KERNEL $(uname -r)"

pass() { echo "VMTEST PASS $1"; }
fail() { echo "VMTEST FAIL $1: $2"; }
# as_user SCRIPT: runs SCRIPT with sh as uid 1000 (HOME=/home/user, cache in it).
as_user() {
    su -s /bin/sh user -c "cd /home/user && HOME=/home/user GPURUN_CACHE_DIR=/home/user/cache $1" 2>&1
}
check() { # check NAME EXPECTED_SUBSTRING SCRIPT
    out=$(as_user "$3")
    case "$out" in
        *"$2"*) pass "$1" ;;
        *) fail "$1" "$(echo "$out" | tr '\n' '|' | cut -c1-600)" ;;
    esac
}
G=/gpurun/gpurun
IMG=/images/busybox

check identity "uid=1000" "$G -c $IMG id"
check glibc-image "glibc-ran" "$G -c /images/glibc /usr/bin/true && $G -c --env MARK=glibc-ran /images/glibc /usr/bin/printenv MARK"
check exit-code "code=7" "$G -c $IMG sh -c 'exit 7'; echo code=\$?"
check signal "code=143" "$G -c $IMG sh -c 'kill -TERM \$\$'; echo code=\$?"
check read-only-root "Read-only file system" "$G -c $IMG touch /new"
check ro-bind-refuses-writes "Read-only file system" "$G -c -B /data:/data:ro $IMG touch /data/x"
check ro-bind-keeps-host-flags "ro,nosuid,nodev,noexec" "$G -c -B /data:/data:ro $IMG grep ' /data ' /proc/self/mountinfo"
check bind-reads "from the host" "$G -c -B /data:/deep/new/place:ro $IMG cat /deep/new/place/in.txt"
check contain "private" "$G --contain $IMG sh -c 'echo private > /tmp/p && cat /tmp/p'"
check home "/home/user" "$G $IMG sh -c 'echo \$HOME; test -d /home/user && echo ok'"
check fakeroot-without-subuid "uid=0" "$G -c --fakeroot $IMG id"
check cold-unpack-layers "layer2-wins|gone" "rm -rf /home/user/cache; $G -c /images/layers.tar sh -c 'cat /file; test -e /removed || echo gone' | tr '\n' '|'"
check warm-start "layer2-wins" "$G -c /images/layers.tar cat /file"
out=$(as_user "$G -c /images/hostile.tar true; echo code=\$?")
if [ ! -e /tmp/pwned ] && [ ! -e /pwned ]; then pass hostile-sample-contained; else fail hostile-sample-contained "$out"; fi
# A fake AMD GPU: its sysfs over /sys and its nodes in /dev, in a mount namespace of its own.
mknod -m 666 /dev/kfd c 235 0 2>/dev/null
mkdir -p /dev/dri
mknod -m 666 /dev/dri/card0 c 226 0 2>/dev/null
mknod -m 666 /dev/dri/renderD128 c 226 128 2>/dev/null
out=$(unshare -m sh -c "mount --rbind /fakesys /sys && su -s /bin/sh user -c 'cd /home/user && HOME=/home/user GPURUN_CACHE_DIR=/home/user/cache $G -c --rocm $IMG ls /dev/dri /dev/kfd'" 2>&1)
case "$out" in
    *renderD128*kfd* | *kfd*renderD128*) pass rocm-fake-gpu ;;
    *) fail rocm-fake-gpu "$(echo "$out" | tr '\n' '|' | cut -c1-600)" ;;
esac
check writable-tmpfs "w|gone|" "$G -c --writable-tmpfs $IMG sh -c 'echo w > /new && cat /new' | tr '\n' '|'; $G -c $IMG sh -c 'test -e /new || echo gone' | tr '\n' '|'"
check writable-tmpfs-fuse "fuse.fuse-overlayfs" "$G -c --root-mode bind --writable-tmpfs $IMG grep ' / ' /proc/self/mountinfo"
check writable-tmpfs-needs-fuse-overlayfs "needs fuse-overlayfs" "PATH=/bin $G -c --root-mode bind --writable-tmpfs $IMG true"
echo "VMTEST WRITABLE_ROOT $(as_user "$G -c --writable-tmpfs $IMG grep ' / ' /proc/self/mountinfo" | sed 's/.* - //' | cut -d' ' -f1)"
# A gpurun killed mid-run (a scheduler's last word) leaves no daemon and no workload behind.
for ns in private host; do
    as_user "$G -c --pid-ns $ns --root-mode bind --writable-tmpfs $IMG sleep 300 & sleep 3; kill -KILL \$!" >/dev/null
done
sleep 1
left=""
for p in /proc/[0-9]*; do
    cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null)
    # The daemon, the workload, and gpurun's own processes (whose command line names it too).
    case "$cmd" in *fuse-overlayfs* | *"sleep 300"*) left="$left ${p#/proc/}($cmd)" ;; esac
done
if [ -z "$left" ]; then pass no-daemon-left; else fail no-daemon-left "still running:$left"; fi
# Two runs sharing one container (--join): each sees the other's mark in the /tmp they share.
cat >/tmp/join.sh <<EOF
for n in 1 2; do
    $G -c --join vm --join-count 2 $IMG sh -c 'touch /tmp/m.\$\$; for j in \$(seq 100); do
        [ \$(ls /tmp | grep -c m) -ge 2 ] && echo joined && exit 0; sleep 0.1; done; echo alone' &
done
wait
EOF
check join "joined" "sh /tmp/join.sh"
check doctor "kernel" "$G doctor"
# /dev/fuse as some sites leave it (root only): doctor says so, and a run that needs it names it.
chmod 600 /dev/fuse
echo "VMTEST DOCTOR_NO_FUSE $(as_user "$G doctor" | grep kernel)"
echo "VMTEST RUN_NO_FUSE $(as_user "$G -c --writable-tmpfs $IMG echo ran" | head -n 1)"
chmod 666 /dev/fuse
echo "VMTEST DOCTOR $(as_user "$G doctor" | grep kernel)"
echo "VMTEST ROOT $(as_user "$G --dry-run -c $IMG true" | grep '"root"')"

# Warm starts, 20 each, timed by /proc/uptime (centiseconds): the root this kernel gets by
# default, and both kinds where the kernel has both.
warm() { # warm NAME OPTIONS
    t0=$(cut -d' ' -f1 /proc/uptime)
    as_user "i=0; while [ \$i -lt 20 ]; do $G -c $2 $IMG /bin/true || exit 1; i=\$((i+1)); done" >/dev/null \
        || fail "warm-$1" "a run failed"
    t1=$(cut -d' ' -f1 /proc/uptime)
    echo "VMBENCH warm_start_$1_ms $(echo "$t0 $t1" | awk '{ printf "%.1f", ($2 - $1) * 1000 / 20 }')"
}
warm default ""
warm bind "--root-mode bind"
# Cold unpack of the many-file archive, with openat2 and with the userspace walk (the seccomp
# helper), interleaved after one unpack that warms the page cache.
as_user "rm -rf /home/user/cache; $G unpack /images/many.tar" >/dev/null
total_openat2=0
total_userspace=0
i=0
while [ $i -lt 3 ]; do
    for mode in openat2 userspace; do
        wrap=""
        [ "$mode" = userspace ] && wrap=/gpurun/old-kernel
        t0=$(cut -d' ' -f1 /proc/uptime)
        as_user "rm -rf /home/user/cache; $wrap $G unpack /images/many.tar" >/dev/null || fail "unpack-$mode" "failed"
        t1=$(cut -d' ' -f1 /proc/uptime)
        ms=$(echo "$t0 $t1" | awk '{ printf "%d", ($2 - $1) * 1000 }')
        eval "total_$mode=\$((total_$mode + ms))"
    done
    i=$((i + 1))
done
echo "VMBENCH cold_unpack_openat2_ms $((total_openat2 / 3))"
echo "VMBENCH cold_unpack_userspace_ms $((total_userspace / 3))"
echo "VMTEST DONE"
poweroff -f
