#!/bin/bash
#SBATCH --job-name=gpurun-array
#SBATCH --array=0-3
#SBATCH --ntasks=1
#SBATCH --time=00:05:00
# An array job whose tasks share one cached rootfs: whichever task starts first unpacks the
# image (under the cache's lock), the rest find it published. Put the cache where every task
# sees it (the default ~/.cache/gpurun, or GPURUN_CACHE_DIR / the config file's cache.dir).
#
#   IMAGE=/path/image.tar sbatch examples/slurm/array.sh
set -euo pipefail
: "${IMAGE:?set IMAGE to an image archive}"
GPURUN=${GPURUN:-gpurun}

"$GPURUN" "$IMAGE" sh -c 'echo "array task $SLURM_ARRAY_TASK_ID of job $SLURM_ARRAY_JOB_ID"'
# Which cached image served this task (the same id in every task's output):
"$GPURUN" images | tail -n +2
