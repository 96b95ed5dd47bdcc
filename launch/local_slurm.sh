#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for trying distsnn's batch scripts and for tests.
#
#   launch/local_slurm.sh up     [DIR]   # start munged, slurmctld and slurmd; prints the export line
#   launch/local_slurm.sh status [DIR]   # exit 0 when the cluster in DIR is up
#   launch/local_slurm.sh down   [DIR]   # stop the daemons started by `up`
#
#   eval "$(launch/local_slurm.sh up)"   # then: sbatch launch/sbatch_cpu.sh doctor --json
#
# Needs root (Slurm runs as SlurmUser=root here) on Debian/Ubuntu; installs the packages
# slurmctld slurmd slurm-client munge with apt-get when they are missing. All state, spool,
# pid and log files live in DIR (default: ${TMPDIR:-/tmp}/distsnn-slurm), the configuration
# in DIR/slurm.conf; nothing under /etc is changed except a munge key created when missing.
# `up` is idempotent: when the cluster in DIR is already up it only prints the export line.
# Only the export line goes to stdout; progress and errors go to stderr.
# Exit status: 0 done, 1 failed, 2 usage, 3 not root, 4 packages missing and not installable.
# LOCAL_SLURM_PORTS="CTLD SLURMD" picks other ports than 6817 6818 (to run two clusters);
# LOCAL_SLURM_WAIT_S bounds the wait for the node to become idle (default 60).
#
# How it works (checked with Debian 12's Slurm 22.05.8 and munge 0.5.15, as root):
#  1. munge: a key /etc/munge/munge.key (1024 random bytes, owner munge, mode 400) when
#     missing; /run/munge, /var/lib/munge and /var/log/munge owned by munge; `munged --force`.
#  2. DIR/slurm.conf: state, spool, pid and log paths in DIR; ClusterName=local,
#     SlurmctldHost=<hostname -s>, SlurmUser=root, SlurmdUser=root, AuthType=auth/munge,
#     ProctrackType=proctrack/linuxproc, TaskPlugin=task/none, SelectType=select/cons_tres
#     (CR_Core), MpiDefault=none, ReturnToService=2, one NodeName=<hostname -s> with this
#     machine's CPUs, one default partition.
#  3. `slurmctld -f CONF` and `slurmd -f CONF`; the node is idle within seconds (slurmd logs
#     harmless errors about the PMIx plugin when no PMIx library is installed).
#  4. Jobs then run `srun --mpi=pmi2` (the mpich wheel's MPI) or `mpiexec` inside sbatch.
set -euo pipefail

ACTION=${1:-}
DIR=${2:-${TMPDIR:-/tmp}/distsnn-slurm}
WAIT_S=${LOCAL_SLURM_WAIT_S:-60}
read -r CTLD_PORT SLURMD_PORT <<< "${LOCAL_SLURM_PORTS:-6817 6818}"

# shellcheck source=launch/slurm_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/slurm_common.sh"

conf_paths() {  # conf_paths [create]
    if [ "${1:-}" = create ]; then mkdir -p "$DIR/state" "$DIR/spool" "$DIR/run" "$DIR/log"; fi
    [ -d "$DIR" ] && DIR=$(cd "$DIR" && pwd)
    CONF=$DIR/slurm.conf
    CTLD_PID=$DIR/run/slurmctld.pid
    SLURMD_PID=$DIR/run/slurmd.pid
    MUNGED_MARK=$DIR/run/munged.started-by-us
}

need_root() {
    [ "$(id -u)" = 0 ] || die_code 3 "must run as root (Slurm runs with SlurmUser=root here and
the packages may need installing); try: sudo $0 $ACTION ${2:-}"
}

write_conf() {
    local FIRST_JOB_ID=$(( (RANDOM << 15 | RANDOM) % 1000000 + 1000 ))
    local host cpus
    host=$(hostname -s)
    cpus=$(nproc)
    cat > "$CONF.tmp" <<EOF
# Written by distsnn launch/local_slurm.sh: a one-node cluster with everything in $DIR
ClusterName=local
SlurmctldHost=$host
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
# job ids start at random: MPICH names its shared memory after the PMI job and step, and a
# killed job leaves that file behind; a fresh cluster's job 1 would collide with it
FirstJobId=$FIRST_JOB_ID
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.tmp" "$CONF"
}

node_state() {  # the node's state as sinfo prints it (idle, mix, alloc, down*, ...), or nothing
    SLURM_CONF=$CONF sinfo -h -N -o '%T' 2>/dev/null | head -n 1
}

is_up() {
    [ -f "$CONF" ] && pid_alive "$CTLD_PID" && pid_alive "$SLURMD_PID" &&
        case "$(node_state)" in idle*|mix*|alloc*|completing*) true ;; *) false ;; esac
}

wait_idle() {
    local deadline=$((SECONDS + WAIT_S)) state="" resumed=0
    while [ $SECONDS -lt $deadline ]; do
        state=$(node_state)
        case "$state" in
            idle*|mix*|alloc*) return 0 ;;
            drain*|down*)
                if [ $resumed = 0 ] && [ $((deadline - SECONDS)) -lt $((WAIT_S - 10)) ]; then
                    SLURM_CONF=$CONF scontrol update nodename="$(hostname -s)" state=resume \
                        >/dev/null 2>&1 || true
                    resumed=1
                fi ;;
        esac
        pid_alive "$CTLD_PID" || die "slurmctld exited; see $DIR/log/slurmctld.log"
        pid_alive "$SLURMD_PID" || die "slurmd exited; see $DIR/log/slurmd.log"
        sleep 0.5
    done
    die "the node is not idle after ${WAIT_S}s (sinfo says '${state:-nothing}'); see $DIR/log/"
}

cmd_up() {
    need_root "$@"
    conf_paths create
    if is_up; then
        say "already up in $DIR"
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    install_packages
    start_munge
    # Stale daemons from an earlier, half-finished `up` in this DIR.
    stop_pidfile "$SLURMD_PID" slurmd
    stop_pidfile "$CTLD_PID" slurmctld
    write_conf
    say "starting slurmctld and slurmd (config $CONF)"
    slurmctld -f "$CONF" || die "slurmctld did not start; see $DIR/log/slurmctld.log"
    slurmd -f "$CONF" || die "slurmd did not start; see $DIR/log/slurmd.log"
    local i
    for i in $(seq 100); do
        pid_alive "$CTLD_PID" && pid_alive "$SLURMD_PID" && break
        sleep 0.1
    done
    wait_idle
    say "up: node $(hostname -s) idle in partition debug ($(nproc) CPUs)"
    echo "export SLURM_CONF=$CONF"
}

cmd_down() {
    conf_paths
    stop_pidfile "$SLURMD_PID" slurmd
    stop_pidfile "$CTLD_PID" slurmctld
    if [ -f "$MUNGED_MARK" ]; then
        stop_pidfile /run/munge/munged.pid munged
        rm -f "$MUNGED_MARK"
    fi
    say "down ($DIR)"
}

cmd_status() {
    conf_paths
    local rc=0
    if pid_alive "$CTLD_PID"; then say "slurmctld running (pid $(cat "$CTLD_PID"))"
    else say "slurmctld not running"; rc=1; fi
    if pid_alive "$SLURMD_PID"; then say "slurmd running (pid $(cat "$SLURMD_PID"))"
    else say "slurmd not running"; rc=1; fi
    if munge_works; then say "munge works"; else say "munge does not work"; rc=1; fi
    if [ $rc = 0 ]; then
        SLURM_CONF=$CONF sinfo >&2 || rc=1
        echo "export SLURM_CONF=$CONF"
    fi
    return $rc
}

case "$ACTION" in
    up) cmd_up "$@" ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *) usage 3,6 ;;
esac
