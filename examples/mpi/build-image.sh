#!/bin/bash
# Builds an OCI archive holding busybox, examples/mpi/mpi_ring and mpi_pingpong (compiled here
# with the host's mpicc) and the host's Open MPI: the programs' shared-library closure, Open
# MPI's and PMIx's plugin directories with their closures, help texts and /etc/openmpi. The ranks
# inside then speak the same Open MPI/PMIx version as the host's `mpirun` (the "hybrid" model:
# host launcher, container ranks). Made with real tools: umoci builds the layer, skopeo writes the
# archive.
#
#   examples/mpi/build-image.sh OUT.tar            the MPI image (/mpi_ring and /mpi_pingpong,
#                                                  ./mpi_ring and ./mpi_pingpong in /)
#   examples/mpi/build-image.sh --busybox OUT.tar  busybox alone (the Slurm tests' image)
#
# Needs: busybox-static, umoci, skopeo; for the MPI image also openmpi-bin, libopenmpi-dev.
set -euo pipefail

busybox_only=0
if [ "${1:-}" = --busybox ]; then busybox_only=1; shift; fi
out=${1:?usage: build-image.sh [--busybox] OUT.tar}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/gpurun-mpi-image.XXXXXX")
trap 'chmod -R u+rwX "$work" 2>/dev/null; rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"/{bin,etc,tmp,dev,proc,sys,usr/bin}
chmod 1777 "$root/tmp"

busybox=$(command -v busybox)
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"

# Copies host files (following symlinks, keeping the link names the loader looks up) to the same
# absolute paths in the rootfs.
copy_host() {
    for f in "$@"; do
        [ -e "$f" ] || continue
        mkdir -p "$root$(dirname "$f")"
        cp -L "$f" "$root$f" 2>/dev/null || true
    done
}
# The shared-library closure of ELF files, from ldd (run on the host, where they came from).
closure() {
    ldd "$@" 2>/dev/null | awk '/=> \// {print $3} /^\t\/[^ ]*ld-linux/ {print $1}' | sort -u
}

if [ $busybox_only = 0 ]; then
    programs=()
    for prog in mpi_ring mpi_pingpong; do
        mpicc -O2 -o "$work/$prog" "$here/$prog.c"
        cp "$work/$prog" "$root/$prog"
        programs+=("$work/$prog")
    done
    multiarch=$(gcc -print-multiarch)
    libdir=/usr/lib/$multiarch
    for dir in "$libdir/openmpi" "$libdir/pmix2" /usr/share/openmpi /usr/share/pmix /etc/openmpi; do
        [ -d "$dir" ] || continue
        mkdir -p "$root$(dirname "$dir")"
        cp -a "$dir" "$root$(dirname "$dir")/"
    done
    # Plugins are dlopen()ed: their dependencies count as much as the program's.
    mapfile -t plugins < <(find "$libdir/openmpi" "$libdir/pmix2" -name '*.so' -type f)
    mapfile -t libs < <(closure "${programs[@]}" "${plugins[@]}")
    copy_host "${libs[@]}"
    # The libraries' own links (libmpi.so.40 -> ...), as ldd printed them, exist now; the loader
    # in the image also needs its canonical path.
    copy_host /lib64/ld-linux-x86-64.so.2
fi

# One layer, made by umoci from the rootfs directory; skopeo turns the layout into an archive.
umoci init --layout "$work/oci" >/dev/null
umoci new --image "$work/oci:latest" >/dev/null
umoci unpack --rootless --image "$work/oci:latest" "$work/bundle" >/dev/null
cp -a "$root/." "$work/bundle/rootfs/"
umoci config --image "$work/oci:latest" --config.workingdir / --config.cmd /bin/sh \
    --config.env PATH=/usr/bin:/bin >/dev/null
umoci repack --image "$work/oci:latest" "$work/bundle" >/dev/null
rm -f "$out"
skopeo copy --quiet "oci:$work/oci:latest" "oci-archive:$out:latest"
chmod 644 "$out"
echo "$out"
