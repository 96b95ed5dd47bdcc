#!/bin/bash
# Run distsnn on N ranks of this machine (or of hosts your MPI knows) without Slurm:
#
#   launch/mpirun.sh 4 evaluate net.h5 --data test.npz --timesteps 100
#   launch/mpirun.sh 2 doctor --json
#
# Runs `mpiexec -n N distsnn ARGS...`. The mpiexec and distsnn are taken, in this order, from
# $DISTSNN_VENV/bin, the active virtual environment ($VIRTUAL_ENV), the repository's .venv,
# else PATH -- so the mpiexec belongs to the MPI that mpi4py was built against (the pip mpich
# wheel puts one in the venv). GPU binding is left to distsnn: each rank takes
# GPU (node-local rank % number of GPUs) unless CUDA_VISIBLE_DEVICES names one device.
# DISTSNN_CMD replaces `distsnn` (e.g. "python -m distsnn", or "python" to run a script);
# MPIEXEC_ARGS adds options for mpiexec (e.g. "-hosts a,b" or "--oversubscribe").
set -euo pipefail

if [ $# -lt 1 ] || ! [[ $1 =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 N distsnn-args...   (N: number of ranks, a positive integer)" >&2
    exit 2
fi
N=$1
shift

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
for venv in "${DISTSNN_VENV:-}" "${VIRTUAL_ENV:-}" "$HERE/../.venv"; do
    if [ -n "$venv" ] && [ -x "$venv/bin/mpiexec" ]; then
        export PATH=$(cd "$venv/bin" && pwd):$PATH
        break
    fi
done
command -v mpiexec >/dev/null || {
    echo "mpirun.sh: no mpiexec found; pip install mpich (into the venv) or load your MPI module" >&2
    exit 2
}

read -r -a DISTSNN_CMD_WORDS <<< "${DISTSNN_CMD:-distsnn}"
read -r -a EXTRA <<< "${MPIEXEC_ARGS:-}"
exec mpiexec "${EXTRA[@]}" -n "$N" "${DISTSNN_CMD_WORDS[@]}" "$@"
