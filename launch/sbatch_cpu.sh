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
#SBATCH --open-mode=append
# Long evaluations resume themselves: 120 s before the time limit every task gets SIGUSR1,
# distsnn finishes its batch, saves its journal (OUTPUT.journal) and exits 138; pre-emption
# sends SIGTERM (exit 143). Either way this script requeues the job, and the rerun of the same
# command continues from the journal. DISTSNN_REQUEUE=0 turns the requeue off.
#SBATCH --requeue
#SBATCH --signal=USR1@120
set -euo pipefail

if [ -n "${DISTSNN_VENV:-}" ]; then
    [ -x "$DISTSNN_VENV/bin/python" ] || { echo "sbatch_cpu.sh: DISTSNN_VENV=$DISTSNN_VENV has no bin/python" >&2; exit 2; }
    export VIRTUAL_ENV=$DISTSNN_VENV
    export PATH=$DISTSNN_VENV/bin:$PATH
fi
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}

read -r -a DISTSNN_CMD_WORDS <<< "${DISTSNN_CMD:-distsnn}"
echo "sbatch_cpu.sh: job ${SLURM_JOB_ID:-?}: ${SLURM_NTASKS:-?} task(s) on ${SLURM_JOB_NODELIST:-?}: srun --mpi=${DISTSNN_SRUN_MPI:-pmi2} ${DISTSNN_CMD_WORDS[*]} $*" >&2
rc=0
srun --mpi="${DISTSNN_SRUN_MPI:-pmi2}" "${DISTSNN_CMD_WORDS[@]}" "$@" || rc=$?
if { [ "$rc" -eq 138 ] || [ "$rc" -eq 143 ]; } && [ "${DISTSNN_REQUEUE:-1}" != 0 ] \
        && [ -n "${SLURM_JOB_ID:-}" ]; then
    echo "sbatch_cpu.sh: stopped by a signal (exit $rc); requeueing job $SLURM_JOB_ID to resume" >&2
    scontrol requeue "$SLURM_JOB_ID"
fi
exit "$rc"
