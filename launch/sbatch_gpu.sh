#!/bin/bash
# distsnn on GPU nodes under Slurm: one MPI rank per GPU, started by srun (PMIx by default).
#
#   sbatch launch/sbatch_gpu.sh evaluate net.h5 --data test.npz --timesteps 100
#   sbatch --nodes=4 --ntasks-per-node=4 launch/sbatch_gpu.sh evaluate ...
#   DISTSNN_SRUN_MPI=pmi2 sbatch launch/sbatch_gpu.sh doctor --json
#
# Everything after the script name is passed to `distsnn` unchanged ("$@").
# How to adapt (options given to sbatch on the command line override the #SBATCH lines):
#   --nodes, --ntasks-per-node     ranks per node = GPUs per node (4 on most GPU nodes)
#   --gpus-per-task=1              one GPU per rank; Slurm then usually narrows
#                                  CUDA_VISIBLE_DEVICES per task and each rank uses device 0.
#                                  Where a site binds GPUs differently (--gpus-per-node=4,
#                                  --gpu-bind=none), every rank sees all GPUs and distsnn picks
#                                  SLURM_LOCALID % (number of GPUs) itself.
#   --cpus-per-task                host cores per rank (GeNN's host code, data loading)
#   --partition, --account, --time, --constraint   your site's GPU queue, project and limits
# More ranks than GPUs works (ranks share a GPU; distsnn warns); start MPS for concurrency.
# Environment variables read here (sbatch passes the submitting environment to the job):
#   DISTSNN_VENV      a virtual environment to use: its bin/ goes first on PATH
#   DISTSNN_CMD       the command run on every rank (default: distsnn; split on spaces)
#   DISTSNN_SRUN_MPI  srun's --mpi plugin: pmix (default; Open MPI 5, most GPU clusters) or
#                     pmi2 (MPICH, Intel MPI, the pip mpich wheel, or no PMIx in Slurm);
#                     `srun --mpi=list` shows what your Slurm has
#SBATCH --job-name=distsnn-gpu
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-task=1
#SBATCH --cpus-per-task=8
#SBATCH --output=distsnn-%j.out
#SBATCH --open-mode=append
# Long evaluations resume themselves: 120 s before the time limit every task gets SIGUSR1,
# distsnn finishes its batch, saves its journal (OUTPUT.journal) and exits 138; pre-emption
# sends SIGTERM (exit 143). Either way this script requeues the job, and the rerun of the same
# command continues from the journal. DISTSNN_REQUEUE=0 turns the requeue off.
#SBATCH --requeue
#SBATCH --signal=USR1@120
set -euo pipefail

if [ -n "${DISTSNN_VENV:-}" ]; then
    [ -x "$DISTSNN_VENV/bin/python" ] || { echo "sbatch_gpu.sh: DISTSNN_VENV=$DISTSNN_VENV has no bin/python" >&2; exit 2; }
    export VIRTUAL_ENV=$DISTSNN_VENV
    export PATH=$DISTSNN_VENV/bin:$PATH
fi
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}

read -r -a DISTSNN_CMD_WORDS <<< "${DISTSNN_CMD:-distsnn}"
echo "sbatch_gpu.sh: job ${SLURM_JOB_ID:-?}: ${SLURM_NTASKS:-?} task(s) on ${SLURM_JOB_NODELIST:-?}: srun --mpi=${DISTSNN_SRUN_MPI:-pmix} ${DISTSNN_CMD_WORDS[*]} $*" >&2
rc=0
srun --mpi="${DISTSNN_SRUN_MPI:-pmix}" "${DISTSNN_CMD_WORDS[@]}" "$@" || rc=$?
if { [ "$rc" -eq 138 ] || [ "$rc" -eq 143 ]; } && [ "${DISTSNN_REQUEUE:-1}" != 0 ] \
        && [ -n "${SLURM_JOB_ID:-}" ]; then
    echo "sbatch_gpu.sh: stopped by a signal (exit $rc); requeueing job $SLURM_JOB_ID to resume" >&2
    scontrol requeue "$SLURM_JOB_ID"
fi
exit "$rc"
