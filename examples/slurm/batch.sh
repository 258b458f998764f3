#!/bin/bash
#SBATCH --job-name=gpurun-batch
#SBATCH --ntasks=4
#SBATCH --time=00:05:00
# Four tasks of one job start together on a cold cache: the first to take the image's lock
# unpacks it, the others wait for it and then run; every later start is warm. Each task shows
# what Slurm gave it inside the container (SLURM_* and PMI variables pass through).
#
#   IMAGE=/path/image.tar sbatch examples/slurm/batch.sh
#   (GPURUN=/path/to/gpurun if it is not on PATH; add --nv or --rocm for GPU nodes)
set -euo pipefail
: "${IMAGE:?set IMAGE to an image archive}"
GPURUN=${GPURUN:-gpurun}

srun -n 4 --mpi=pmi2 "$GPURUN" "$IMAGE" sh -c \
    'echo "task $SLURM_PROCID of $SLURM_NTASKS: job $SLURM_JOB_ID step $SLURM_STEP_ID node $SLURMD_NODENAME pmi_rank ${PMI_RANK:-unset} pmi_size ${PMI_SIZE:-unset}"'
