#!/bin/bash
#SBATCH --job-name=gpurun-pull-once
#SBATCH --nodes=1
#SBATCH --time=00:30:00
# Pull a registry image once, onto a filesystem every node sees, then run the archive on all of
# them. Why not `srun -N 64 gpurun docker://...` directly: every node's first start would ask the
# registry at the same moment, and 64 clients pulling at once meet registries' rate limits (Docker
# Hub's per-IP and per-account pull limits; 429s) and saturate the site's uplink. One pull writes
# an OCI archive; each node then unpacks it from the shared filesystem into its own cache, with
# no network, and starts warm from then on.
#
#   REF=docker.io/library/ubuntu:24.04 SHARED=/shared/$USER/images sbatch examples/slurm/pull-once.sh
#   (then e.g. `srun -N 64 gpurun $SHARED/ubuntu_24.04.tar CMD`; GPURUN=... if not on PATH)
set -euo pipefail
: "${REF:?set REF to an image reference, e.g. docker.io/library/ubuntu:24.04}"
: "${SHARED:?set SHARED to a directory every node can read}"
GPURUN=${GPURUN:-gpurun}
mkdir -p "$SHARED"
name=$(basename "${REF%%@*}" | tr ':' '_')
archive=$SHARED/$name.tar
"$GPURUN" pull -o "$archive" "$REF"
echo "wrote $archive; run it on every node with: srun ... $GPURUN $archive CMD"
