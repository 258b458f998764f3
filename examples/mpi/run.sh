#!/bin/bash
# The host's mpirun launches four ranks, each `gpurun IMAGE /mpi_ring` (host-launched,
# container ranks). The image carries the host's own Open MPI (built by build-image.sh), so the
# ranks and mpirun's daemon speak one PMIx version; the ranks reach the daemon through the host
# /tmp, which gpurun binds.
#
#   examples/mpi/run.sh [IMAGE]        (default: build ./mpi-image.tar first)
#
# Transport: TCP over the host's loopback (gpurun keeps the network namespace). Open MPI's
# shared-memory BTL (vader) does not work across gpurun containers yet: each rank has its own
# PID namespace, where every rank is PID 2, and Open MPI's shmem attach skips a segment whose
# creator PID equals its own (it believes it made it), then faults. See README, "MPI".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
IMAGE=${1:-}
if [ -z "$IMAGE" ]; then
    IMAGE=$PWD/mpi-image.tar
    [ -f "$IMAGE" ] || "$here/build-image.sh" "$IMAGE" >/dev/null
fi
GPURUN=${GPURUN:-gpurun}
NP=${NP:-4}
root_flag=()
[ "$(id -u)" = 0 ] && root_flag=(--allow-run-as-root)

export OMPI_MCA_btl=${OMPI_MCA_btl:-self,tcp}
mpirun "${root_flag[@]}" --oversubscribe -np "$NP" "$GPURUN" "$IMAGE" /mpi_ring
