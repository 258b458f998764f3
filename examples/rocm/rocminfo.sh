#!/bin/bash
# Runs the host's rocminfo in IMAGE with the host's AMD GPUs (gpurun binds /dev/kfd, the chosen
# render nodes and the tool itself). Without a usable AMD GPU, gpurun stops with exit 125 and a
# hint; this script then runs `gpurun doctor --rocm`, which says what is missing and how to fix
# it, and exits with gpurun's status.
#
#   examples/rocm/rocminfo.sh IMAGE [--gpus LIST]
set -uo pipefail
IMAGE=${1:?usage: rocminfo.sh IMAGE [gpurun options]}
shift
GPURUN=${GPURUN:-gpurun}

"$GPURUN" --rocm "$@" "$IMAGE" rocminfo
status=$?
if [ $status -ne 0 ]; then
    echo "--- rocminfo did not run (gpurun exit $status); gpurun doctor --rocm says:" >&2
    "$GPURUN" doctor --rocm
fi
exit $status
