#!/bin/bash
# distsnn on CPU nodes under Slurm: one MPI rank per core, started by srun (PMI-2 by default).
#
#   sbatch launch/sbatch_cpu.sh evaluate net.h5 --data test.npz --timesteps 100
#   sbatch --ntasks=64 --time=02:00:00 launch/sbatch_cpu.sh evaluate ...
#   DISTSNN_VENV=$PWD/.venv sbatch launch/sbatch_cpu.sh doctor --json
#
# Everything after the script name is passed to `distsnn` unchanged ("$@").
# How to adapt (options given to sbatch on the command line override the #SBATCH lines):
#   --ntasks / --nodes / --ntasks-per-node   how many ranks, and where; one rank per core
#   --cpus-per-task                          cores per rank (threads; exported as OMP_NUM_THREADS)
#   --partition, --account, --time, --mem-per-cpu   your site's queue, project and limits
# Environment variables read here (sbatch passes the submitting environment to the job):
#   DISTSNN_VENV      a virtual environment to use: its bin/ goes first on PATH
#   DISTSNN_CMD       the command run on every rank (default: distsnn; e.g. "python -m distsnn"
#                     or "python" to run a script); split on spaces
#   DISTSNN_SRUN_MPI  srun's --mpi plugin (default pmi2, which MPICH, Intel MPI and the pip
#                     mpich wheel all speak; pmix for Open MPI 5; `srun --mpi=list` shows them)
# Other modes: `mpiexec -n $SLURM_NTASKS distsnn ...` inside the allocation also works with
# MPICH (Hydra reads the allocation); srun is Slurm's preferred launcher.
#SBATCH --job-name=distsnn
#SBATCH --ntasks=2
#SBATCH --cpus-per-task=1
#SBATCH --output=distsnn-%j.out
set -euo pipefail

if [ -n "${DISTSNN_VENV:-}" ]; then
    [ -x "$DISTSNN_VENV/bin/python" ] || { echo "sbatch_cpu.sh: DISTSNN_VENV=$DISTSNN_VENV has no bin/python" >&2; exit 2; }
    export VIRTUAL_ENV=$DISTSNN_VENV
    export PATH=$DISTSNN_VENV/bin:$PATH
fi
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}

read -r -a DISTSNN_CMD_WORDS <<< "${DISTSNN_CMD:-distsnn}"
echo "sbatch_cpu.sh: job ${SLURM_JOB_ID:-?}: ${SLURM_NTASKS:-?} task(s) on ${SLURM_JOB_NODELIST:-?}: srun --mpi=${DISTSNN_SRUN_MPI:-pmi2} ${DISTSNN_CMD_WORDS[*]} $*" >&2
srun --mpi="${DISTSNN_SRUN_MPI:-pmi2}" "${DISTSNN_CMD_WORDS[@]}" "$@"
