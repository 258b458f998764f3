#!/usr/bin/env bash
# Builds the fixture images for rootfs-tests/ with real tools: a busybox rootfs from Debian's
# busybox-static, made into a multi-layer OCI image by umoci, then converted by skopeo into every
# archive shape gpurun reads. OUTDIR/fixtures.json records, for each fixture, the images it holds
# (references, platforms, config, layers) and the exact listing of the rootfs that went in, so the
# tests can compare what gpurun unpacks with the source.
#
# Usage: rootfs-tests/images/build.sh OUTDIR
# Idempotent: when OUTDIR/.stamp matches the hash of this script and ocitool.py, it does nothing.
# Needs root for apt-get (when tools are missing) and for the setuid/0000 source files.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:?usage: build.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
tool="$here/ocitool.py"
stamp_want=$(cat "$here/build.sh" "$tool" | sha256sum | cut -d' ' -f1)

if [[ -f $out/.stamp && $(cat "$out/.stamp") == "$stamp_want" && -f $out/fixtures.json ]]; then
    echo "fixtures: $out is up to date"
    exit 0
fi

need=()
command -v umoci >/dev/null || need+=(umoci)
command -v skopeo >/dev/null || need+=(skopeo)
[[ -x /bin/busybox ]] || need+=(busybox-static)
command -v python3 >/dev/null || need+=(python3)
command -v zstd >/dev/null || need+=(zstd)
command -v buildah >/dev/null || need+=(buildah)
if ((${#need[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "build.sh: missing ${need[*]}; install them (apt-get install ${need[*]}) or run as root" >&2
        exit 1
    fi
    echo "fixtures: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${need[@]}" >/dev/null \
        || { apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null &&
             apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${need[@]}" >/dev/null; }
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "build.sh: must run as root (the source rootfs holds setuid and mode-0000 files)" >&2
    exit 1
fi

umask 022
rm -rf "$out/.work" "$out/.listings" "$out/.stamp"
work="$out/.work"
mkdir -p "$work" "$out/.listings"
trap 'rm -rf "$work"' EXIT
src="$work/src"   # the umoci layout every fixture is converted from
bundle="$work/bundle"
R="$bundle/rootfs"

log() { printf 'fixtures: %s\n' "$*"; }
# --refresh-bundle: the next repack diffs against this layer, not against the unpacked image.
repack() { umoci repack --refresh-bundle --image "$src:latest" --history.created_by "gpurun fixture: $1" "$bundle"; }

# ---------------------------------------------------------------------------------------------
# Layer 1: busybox base system, plus the things later layers change.
log "layer 1: busybox rootfs"
umoci init --layout "$src"
umoci new --image "$src:latest"
umoci unpack --image "$src:latest" "$bundle"
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,run,var/tmp,home/app,proc,sys,dev}
chmod 0700 "$R/root"
chmod 1777 "$R/tmp" "$R/var/tmp"
cp /bin/busybox "$R/bin/busybox"
# Applets as absolute symlinks to /bin/busybox (in-image absolute links: resolved in the rootfs).
for applet in $(/bin/busybox --list-full); do
    [[ $applet == bin/busybox ]] && continue
    mkdir -p "$R/$(dirname "$applet")"
    ln -sf /bin/busybox "$R/$applet"
done
ln -s /run "$R/var/run"                          # absolute parent symlink, as in Debian
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$R/etc/passwd"
printf 'root:x:0:\napp:x:1000:\nrender:x:105:\nvideo:x:44:\nnogroup:x:65534:\n' >"$R/etc/group"
printf 'root:*:19000:0:99999:7:::\n' >"$R/etc/shadow"
chmod 0000 "$R/etc/shadow"
printf 'NAME="gpurun fixture"\nID=gpurun-fixture\nVERSION_ID=1\n' >"$R/etc/os-release"
echo fixture >"$R/etc/hostname"
echo "welcome (deleted in layer 2)" >"$R/etc/motd"
mkdir -p "$R/del/dir/sub" "$R/repl/dir-to-file/sub" "$R/repl/dir-to-symlink" "$R/repl/target" "$R/opq"
echo 1 >"$R/del/file1"; echo 2 >"$R/del/keep"; echo 3 >"$R/del/dir/sub/f"
echo file >"$R/repl/file-to-dir"
echo child >"$R/repl/dir-to-file/sub/child"
echo x >"$R/repl/dir-to-symlink/x"
echo t >"$R/repl/target/t"
echo a >"$R/opq/a"; echo b >"$R/opq/b"
mkdir -p "$R/ro"; echo a >"$R/ro/a"; chmod 0555 "$R/ro"
printf '#!/bin/sh\necho setuid\n' >"$R/usr/bin/sudo-ish"; chmod 4755 "$R/usr/bin/sudo-ish"
printf '#!/bin/sh\necho setgid\n' >"$R/usr/bin/wall-ish"; chmod 2755 "$R/usr/bin/wall-ish"
mkdir -p "$R/usr/share/hl"; echo "shared inode" >"$R/usr/share/hl/orig"
ln "$R/usr/share/hl/orig" "$R/usr/share/hl/link1"
mkfifo "$R/run/fifo"
# Names: non-UTF-8 bytes, a newline, a backslash, a leading dash, a file literally named ".wh"
# (not a whiteout: only the ".wh." prefix is), a 255-byte component, a path > 256 bytes (PAX /
# GNU longname) and a 1000-byte symlink target.
mkdir -p "$R/names"
echo latin1 >"$R/names/caf"$'\xe9'
echo bytes >"$R/names/"$'\xff\xfe'"-bin"
echo nl >"$R/names/new"$'\n'"line"
echo bs >"$R/names/back\\slash"
echo dash >"$R/names/-leading-dash"
echo notwhiteout >"$R/names/.wh"
long255=$(printf 'l%.0s' {1..255})
echo long >"$R/names/$long255"
deep="$R/names/deep"
for i in 1 2 3 4 5 6; do deep="$deep/component-$i-$(printf 'd%.0s' {1..40})"; done
mkdir -p "$deep"; echo deep >"$deep/file"
ln -s "/$(printf 'target/%.0s' {1..142})end" "$R/names/longlink"
echo "layer1" >"$R/etc/layer"
repack "layer 1"
python3 "$tool" listing "$R" >"$out/.listings/base.json"
# (config after repack: repack builds on the manifest the bundle was unpacked from)
umoci config --image "$src:latest" --tag base --config.env PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    --config.cmd /bin/sh --config.label gpurun.test.rootfs=base >/dev/null

# ---------------------------------------------------------------------------------------------
# Layer 2: deletions (whiteouts), file -> directory, hardlinks, write into the 0555 directory.
log "layer 2: whiteouts, file->dir, hardlinks, write into read-only dir"
rm "$R/del/file1" "$R/etc/motd"
rm -r "$R/del/dir"
rm "$R/repl/file-to-dir"; mkdir "$R/repl/file-to-dir"; echo child >"$R/repl/file-to-dir/child"
chmod u+w "$R/ro"; echo b >"$R/ro/b"; echo a2 >"$R/ro/a"; chmod 0555 "$R/ro"
ln "$R/usr/share/hl/orig" "$R/usr/share/hl/link2"
printf 'print("python")\n' >"$R/usr/bin/python3-ish"
ln "$R/usr/bin/python3-ish" "$R/usr/bin/python-ish"
echo 7 >"$R/run/app.pid"
echo "layer2" >"$R/etc/layer"
repack "layer 2"

# ---------------------------------------------------------------------------------------------
# Layer 3: delete one name of a hardlink pair, directory -> file, directory -> symlink.
log "layer 3: dir->file, dir->symlink, unlink one name of a hardlink"
rm "$R/usr/bin/python3-ish"
rm -r "$R/repl/dir-to-file"; echo "now a file" >"$R/repl/dir-to-file"
rm -r "$R/repl/dir-to-symlink"; ln -s target "$R/repl/dir-to-symlink"
echo "layer3" >"$R/etc/layer"
repack "layer 3"

# ---------------------------------------------------------------------------------------------
# Layer 4: an opaque directory: opq/.wh..wh..opq then opq/new. (umoci 0.4.7's
# `insert --opaque` would write this, but its tar lacks the final padding and end-of-archive
# blocks, which GNU tar rejects as "Unexpected EOF"; so the layer is written by ocitool.py and
# added verbatim with `umoci raw add-layer`.)
log "layer 4: opaque whiteout (umoci raw add-layer)"
python3 "$tool" tarlayer opaque "$work/layer4.tar"
umoci raw add-layer --image "$src:latest" --history.created_by "gpurun fixture: layer 4" \
    "$work/layer4.tar"
rm -rf "$R/opq"; mkdir "$R/opq"; echo new >"$R/opq/new"

# Layer 5: a file written through the absolute parent symlink var/run -> /run.
log "layer 5: write through var/run -> /run (umoci raw add-layer)"
python3 "$tool" tarlayer varrun "$work/layer5.tar"
umoci raw add-layer --image "$src:latest" --history.created_by "gpurun fixture: layer 5" \
    "$work/layer5.tar"
printf '42\n' >"$R/run/gpurun-fixture.pid"

umoci config --image "$src:latest" --config.env PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    --config.env GPURUN_FIXTURE=busybox --config.env 'SPACES=a b  c' \
    --config.entrypoint /bin/sh --config.entrypoint -c \
    --config.cmd 'echo hello from $(cat /etc/hostname)' \
    --config.workingdir /home/app --config.user 1000:1000 \
    --config.label gpurun.test.rootfs=busybox \
    --config.label org.opencontainers.image.title=gpurun-fixture \
    --config.label 'gpurun.test.unicode=caf'$'\xc3\xa9' >/dev/null
python3 "$tool" listing "$R" >"$out/.listings/busybox.json"

# Cross-check the fixture with umoci's own unpacker: what it unpacks must equal the listing.
log "cross-check: umoci unpack of the final image equals the source listing"
umoci unpack --image "$src:latest" "$work/check" >/dev/null
python3 "$tool" listing "$work/check/rootfs" | cmp -s - "$out/.listings/busybox.json" || {
    python3 "$tool" listing "$work/check/rootfs" | diff - "$out/.listings/busybox.json" | head -40
    echo "build.sh: umoci unpack disagrees with the source listing" >&2
    exit 1
}
rm -rf "$work/check"

# The arm64 twin (same layers, config says arm64), for the multi-platform index.
umoci config --image "$src:latest" --tag latest-arm64 --architecture arm64 \
    --config.label gpurun.test.arch=arm64 >/dev/null

# ---------------------------------------------------------------------------------------------
# Every shape, from skopeo where skopeo can write it.
sk() { skopeo --insecure-policy copy -q "$@"; }
fresh() { rm -rf "$out/$1"; }
log "converting with skopeo"
fresh oci-layout; cp -a "$src" "$out/oci-layout"; umoci rm --image "$out/oci-layout:latest-arm64"
umoci gc --layout "$out/oci-layout"
fresh oci-layout-skopeo; sk "oci:$src:latest" "oci:$out/oci-layout-skopeo:latest"
fresh oci-archive.tar; sk "oci:$src:latest" "oci-archive:$out/oci-archive.tar:latest"
fresh oci-two.tar; tar -C "$out/oci-layout" -cf "$out/oci-two.tar" oci-layout index.json blobs
fresh oci-zstd; sk --dest-compress --dest-compress-format zstd "oci:$src:latest" "oci:$out/oci-zstd:latest"
fresh docker-archive.tar
sk "oci:$src:latest" "docker-archive:$out/docker-archive.tar:gpurun/busybox:latest"
fresh docker-archive-tags.tar
sk --additional-tag gpurun/busybox:v1 "oci:$src:latest" \
    "docker-archive:$out/docker-archive-tags.tar:gpurun/busybox:latest"
sk "oci:$src:base" "docker-archive:$work/base.tar:gpurun/busybox:base"
fresh docker-archive-two.tar
python3 "$tool" merge-docker "$out/docker-archive-two.tar" "$out/docker-archive.tar" "$work/base.tar"

log "assembling Docker 25+ docker save, multi-platform index, multi-member gzip"
# skopeo's docker-archive destination decompresses layers; copying that on to oci: with
# --dest-oci-accept-uncompressed-layers keeps them as plain tars (digest == DiffID).
unc() { sk --dest-oci-accept-uncompressed-layers "docker-archive:$1" "oci:$2"; }
fresh oci-uncompressed; unc "$out/docker-archive.tar" "$out/oci-uncompressed:latest"
python3 "$tool" fix-media-types "$out/oci-uncompressed"   # skopeo labels them +gzip
unc "$out/docker-archive.tar" "$work/plain:latest"
unc "$work/base.tar" "$work/plain:base"
python3 "$tool" docker25 "$work/plain" "$out/docker25.tar" gpurun/busybox:latest=latest
python3 "$tool" docker25 "$work/plain" "$out/docker25-two.tar" \
    gpurun/busybox:latest=latest gpurun/busybox:base=base
sk "oci:$src:latest" "oci:$work/multi:amd64"
sk "oci:$src:latest-arm64" "oci:$work/multi:arm64"
python3 "$tool" multiarch "$work/multi" "$out/oci-multiarch" amd64 arm64
python3 "$tool" multiarch "$work/multi" "$out/oci-multiarch-flat" amd64 arm64 --flat
python3 "$tool" multigzip "$src" latest "$out/oci-multigzip"

# ---------------------------------------------------------------------------------------------
# Buildah, as Podman builds: its WORKDIR is in the config only (Buildah commits no layer for it;
# `podman run` creates the directory at start).
log "buildah image whose WORKDIR is in no layer"
bh() { buildah --root "$work/buildah" --runroot "$work/buildah-run" --storage-driver vfs "$@"; }
ctr=$(bh from scratch)
mnt=$(bh mount "$ctr")
mkdir -p "$mnt/bin"
cp /bin/busybox "$mnt/bin/busybox"
for applet in sh pwd ls touch cat; do ln -s busybox "$mnt/bin/$applet"; done
bh config --workingdir /work/dir --cmd /bin/sh --env PATH=/bin "$ctr"
fresh buildah-workdir.tar
bh commit -q "$ctr" "docker-archive:$out/buildah-workdir.tar:gpurun/workdir:latest" >/dev/null
bh rm "$ctr" >/dev/null

# ---------------------------------------------------------------------------------------------
# A large image (busybox base + ~20k small files + 160 MB of data) so that an unpack takes long
# enough to be killed half-way.
if [[ ! -f $out/big/index.json ]]; then
    log "big image (for the SIGKILL test)"
    umoci unpack --image "$src:base" "$work/bigbundle" >/dev/null
    python3 - "$work/bigbundle/rootfs/data" <<'EOF'
import base64, os, random, sys
root = sys.argv[1]
rng = random.Random(1)
for d in range(200):
    os.makedirs(f"{root}/d{d:03}")
    for f in range(100):
        with open(f"{root}/d{d:03}/f{f:03}", "wb") as fh:
            fh.write(base64.b64encode(rng.randbytes(rng.randint(200, 3000))))
for i in range(2):
    with open(f"{root}/blob{i}", "wb") as fh:
        for _ in range(80):
            fh.write(base64.b64encode(rng.randbytes(768 * 1024)))
EOF
    umoci repack --image "$src:big" "$work/bigbundle"
    umoci config --image "$src:big" --config.label gpurun.test.rootfs=big >/dev/null
    python3 "$tool" listing "$work/bigbundle/rootfs" >"$out/.listings/big.json.keep"
    fresh big; sk "oci:$src:big" "oci:$out/big:latest"
    mv "$out/.listings/big.json.keep" "$out/big.listing.json"
fi
[[ -f $out/big.listing.json ]] && cp "$out/big.listing.json" "$out/.listings/big.json"

python3 "$tool" record "$out"
chmod -R a+rX "$out"
echo "$stamp_want" >"$out/.stamp"

log "built in $out:"
python3 - "$out/fixtures.json" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
for name, fx in sorted(doc["fixtures"].items()):
    imgs = ", ".join(f"{i['ref'] or '-'} {i['platform']} ({len(i['layers'])} layers)" for i in fx["images"])
    print(f"  {name:26} {fx['format']:15} {imgs}")
for name, entries in sorted(doc["rootfs"].items()):
    print(f"  rootfs {name}: {len(entries)} entries")
EOF
