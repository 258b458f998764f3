#!/bin/bash
#SBATCH --job-name=gpurun-mpi
#SBATCH --ntasks=4
#SBATCH --time=00:05:00
# Slurm starts the MPI ranks itself, without mpirun: srun's PMIx plugin is the ranks' PMIx
# server, each task is `gpurun IMAGE /mpi_ring`, and the image carries the host's Open MPI
# (examples/mpi/build-image.sh), built against the same PMIx as Slurm's plugin. PMIX_RANK makes
# gpurun keep the host PID namespace (--pid-ns auto), so ranks on one node use shared memory;
# gpurun binds PMIX_SERVER_TMPDIR, where the server keeps its shared-memory datastore.
# `srun --mpi=list` shows the plugins; Debian 12's Open MPI cannot use pmi2 (no PMI-2 support).
#
#   IMAGE=/path/mpi-image.tar sbatch examples/mpi/sbatch-pmix.sh
#   (GPURUN=/path/to/gpurun if it is not on PATH)
set -euo pipefail
: "${IMAGE:?set IMAGE to the MPI image (examples/mpi/build-image.sh)}"
GPURUN=${GPURUN:-gpurun}

# As in run.sh, single-copy transfers (CMA) work between the ranks: the tasks of one step on
# one node share one container (gpurun joins them by itself, keyed on the job step and node).
srun --mpi=pmix "$GPURUN" "$IMAGE" /mpi_ring
