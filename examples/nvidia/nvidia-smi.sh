#!/bin/bash
# Runs the host's nvidia-smi in IMAGE with the host's NVIDIA GPUs (gpurun binds the control
# nodes, the chosen /dev/nvidiaN, the driver libraries and the tool). Without a usable NVIDIA
# GPU, gpurun stops with exit 125 and a hint; this script then runs `gpurun doctor --nv`, which
# says what is missing and how to fix it, and exits with gpurun's status.
#
#   examples/nvidia/nvidia-smi.sh IMAGE [--gpus LIST]
set -uo pipefail
IMAGE=${1:?usage: nvidia-smi.sh IMAGE [gpurun options]}
shift
GPURUN=${GPURUN:-gpurun}

"$GPURUN" --nv "$@" "$IMAGE" nvidia-smi
status=$?
if [ $status -ne 0 ]; then
    echo "--- nvidia-smi did not run (gpurun exit $status); gpurun doctor --nv says:" >&2
    "$GPURUN" doctor --nv
fi
exit $status
