#!/bin/bash
# The host's mpirun launches four ranks, each `gpurun IMAGE /mpi_ring` (host-launched,
# container ranks). The image carries the host's own Open MPI (built by build-image.sh), so the
# ranks and mpirun's daemon speak one PMIx version; the ranks reach the daemon through the host
# /tmp, which gpurun binds.
#
#   examples/mpi/run.sh [IMAGE]        (default: build ./mpi-image.tar first)
#
# Transport: Open MPI picks it; between ranks on one node that is shared memory (vader in Open
# MPI 4, sm in 5) through the host's /dev/shm. It works because gpurun, started by mpirun as a
# rank, stays in the host PID namespace (--pid-ns auto): with a PID namespace per rank every
# rank was PID 2, and vader skipped attaching a peer's segment whose creator PID equalled its
# own, then crashed. Set OMPI_MCA_btl (e.g. self,vader) to force a transport.
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

# Single-copy transfers of large messages (CMA, process_vm_readv) need ptrace rights over the
# peer, which the kernel grants without CAP_SYS_PTRACE only within one user namespace. The ranks
# of one mpirun on one node share one container (gpurun joins them by itself, keyed on mpirun's
# job: see --join), so CMA works for unprivileged callers too, and nothing here turns it off.
# Started with --no-join, each rank has a user namespace of its own and Open MPI 4 warns "CMA
# support is not available due to different user namespaces" for each: set
# OMPI_MCA_btl_vader_single_copy_mechanism=none (Open MPI 5: OMPI_MCA_btl_sm_...) for such runs.
mpirun "${root_flag[@]}" --oversubscribe -np "$NP" "$GPURUN" "$IMAGE" /mpi_ring
