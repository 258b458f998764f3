#!/usr/bin/env bash
# Builds the SquashFS and SIF fixtures for rootfs-tests/squash.rs with the real tools: a source
# tree (a busybox rootfs with Apptainer's /.singularity.d, plus hard links, a sparse file, user
# xattrs, a FIFO, a multi-block file, hundreds of fragment-sized files, a 255-byte name, deep
# nesting, read-only directories and symlinks pointing out of the root), made into one SquashFS
# per compressor by mksquashfs, one with nothing compressed (the base of the hostile images the
# tests craft), and SIF files around a partition by the SIF reference implementation
# (gensif.go). OUTDIR/listing.json describes the source tree (listing.py).
#
# Usage: rootfs-tests/squash/build.sh OUTDIR    (as root; idempotent, keyed on these scripts)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:?usage: build.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
stamp_want=$(cat "$here"/build.sh "$here"/build-gensif.sh "$here"/gensif.go "$here"/listing.py | sha256sum | cut -d' ' -f1)
if [[ -f $out/.stamp && $(cat "$out/.stamp") == "$stamp_want" ]]; then
    echo "squash fixtures: $out is up to date"
    exit 0
fi
need=()
command -v mksquashfs >/dev/null || need+=(squashfs-tools)
command -v unsquashfs >/dev/null || need+=(squashfs-tools)
command -v go >/dev/null || need+=(golang-go)
[[ -d /usr/share/gocode/src/github.com/sylabs/sif ]] || need+=(golang-github-sylabs-sif-dev)
[[ -x /bin/busybox ]] || need+=(busybox-static)
if ((${#need[@]})); then
    [[ $(id -u) -eq 0 ]] || { echo "build.sh: missing ${need[*]}; run as root" >&2; exit 1; }
    echo "squash fixtures: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${need[@]}" >/dev/null \
        || { apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null &&
             apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${need[@]}" >/dev/null; }
fi
umask 022
rm -rf "$out/.stamp" "$out"/*.sqsh "$out"/*.sif "$out/listing.json" "$out/.work"
work=$out/.work
trap 'rm -rf "$work"' EXIT
R=$work/src
mkdir -p "$R"/{bin,etc,tmp,proc,sys,dev,home,root,usr/bin}
chmod 1777 "$R/tmp"
cp /bin/busybox "$R/bin/busybox"
for applet in sh env echo cat ls id true false printf test; do ln -s busybox "$R/bin/$applet"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"
printf 'root:x:0:\n' >"$R/etc/group"

# Apptainer's conventions, as `apptainer build` writes them for a docker:// base plus a
# definition file's %environment, %runscript and %labels.
S=$R/.singularity.d
mkdir -p "$S/env" "$S/actions" "$S/libs"
cat >"$S/env/01-base.sh" <<'SH'
#!/bin/sh
# Apptainer's base script; sourced first.
SH
cat >"$S/env/10-docker2singularity.sh" <<'SH'
#!/bin/sh
export PATH="/opt/app/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
export APP_FROM_DOCKER="docker layer"
export APP_OVERRIDDEN="image value"
export APP_DEFAULTED="${APP_DEFAULTED:-"image default"}"
export NVIDIA_VISIBLE_DEVICES="all"
SH
cat >"$S/env/90-environment.sh" <<'SH'
#!/bin/sh
# %environment: shell, not just assignments.
if [ -n "$APPTAINER_NAME" ]; then
    export APP_SAW_NAME="$APPTAINER_NAME"
fi
export APP_COMPOSED="${APP_FROM_DOCKER}+environment"
. /opt/app/activate
SH
mkdir -p "$R/opt/app/bin"
printf 'export APP_ACTIVATED="yes, by a sourced file"\n' >"$R/opt/app/activate"
printf '#!/bin/sh\necho "tool on PATH"\n' >"$R/opt/app/bin/apptool"
chmod 0755 "$R/opt/app/bin/apptool"
cat >"$S/runscript" <<'SH'
#!/bin/sh
echo "runscript: $# args: $*"
echo "composed: $APP_COMPOSED"
SH
chmod 0755 "$S/runscript"
printf '{\n  "org.label-schema.schema-version": "1.0",\n  "org.example.team": "hpc"\n}\n' >"$S/labels.json"
printf 'Bootstrap: docker\nFrom: busybox\n\n%%runscript\n    echo hello\n' >"$S/Singularity"

# Everything a SquashFS reader must get right.
X=$R/special
mkdir -p "$X/links" "$X/many" "$X/readonly/inner"
printf 'shared by three names\n' >"$X/links/a"
ln "$X/links/a" "$X/links/b"
ln "$X/links/a" "$X/many/c"
truncate -s 8M "$X/sparse"
printf 'middle' | dd of="$X/sparse" bs=1 seek=4194304 conv=notrunc status=none
# Alone in their directories (one-entry listings), so that the tests find their directory
# entries and inodes in plain.sqsh to craft hostile images: a multi-block file, a fragment tail,
# names to rewrite, and a directory to point back at the root.
mkdir -p "$X/blockdir" "$X/fragdir" "$X/names" "$X/loopa/loopb"
head -c 3000000 /dev/urandom >"$X/blockdir/multiblock"
printf 'a tail in a fragment\n' >"$X/fragdir/tail"
printf 'one\n' >"$X/names/q1"
printf 'two\n' >"$X/names/q2"
# A layer's whiteout name, which in a file system is just a name.
printf 'not a whiteout\n' >"$X/.wh.not-a-whiteout"
: >"$X/empty"
for i in $(seq 1 400); do printf 'small file %d\n' "$i" >"$X/many/f$i"; done
mkfifo "$X/fifo"
python3 -c 'import os, sys; os.setxattr(sys.argv[1], "user.gpurun.test", b"xattr value"); os.setxattr(sys.argv[2], "user.dir", b"on a directory")' "$X/links/a" "$X/readonly"
long=$(printf 'n%.0s' $(seq 1 255))
printf 'long name\n' >"$X/$long"
deep=$X/deep
for i in $(seq 1 40); do deep=$deep/d$i; done
mkdir -p "$deep"
printf 'deep\n' >"$deep/leaf"
ln -s ../../../../../../etc/passwd "$X/escape"
ln -s /etc/shadow "$X/absolute"
printf 'read-only dir content\n' >"$X/readonly/inner/file"
chmod 0555 "$X/readonly/inner" "$X/readonly"
chmod 0444 "$X/many/f1"
chmod 0775 "$X/many"
chmod -R a+rX "$R"

python3 "$here/listing.py" "$R" >"$out/listing.json"
echo "squash fixtures: mksquashfs"
for comp in gzip xz zstd lz4 lzo; do
    extra=()
    [[ $comp == lz4 ]] && extra=(-no-exports)
    mksquashfs "$R" "$out/img-$comp.sqsh" -comp "$comp" -noappend -quiet -no-progress "${extra[@]}" >/dev/null
done
# Nothing compressed: tables and names are where the tests look for them to craft hostile images.
mksquashfs "$R" "$out/plain.sqsh" -noI -noD -noF -noX -noappend -quiet -no-progress >/dev/null

echo "squash fixtures: SIF files (SIF reference implementation)"
"$here/build-gensif.sh" "$work/gensif"
printf 'export SIF_ENV_OBJECT=1\n' >"$work/env.sh"
"$work/gensif" "$out/app.sif" "$out/img-zstd.sqsh" "$S/Singularity" "$S/labels.json" "$work/env.sh"
"$work/gensif" "$out/app-ext3.sif" "$out/img-zstd.sqsh" "$S/Singularity" "$S/labels.json" "$work/env.sh" ext3
"$work/gensif" "$out/app-encrypted.sif" "$out/img-zstd.sqsh" "$S/Singularity" "$S/labels.json" "$work/env.sh" encrypted
chmod -R a+rX "$out"
echo "$stamp_want" >"$out/.stamp"
echo "squash fixtures: done in $out"
