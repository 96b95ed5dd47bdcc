#!/usr/bin/env bash
# A two-node Slurm cluster on this one machine, for trying and testing cross-node runs.
#
#   launch/local_cluster.sh up     [DIR]   # network namespaces node1 and node2, daemons; prints the export line
#   launch/local_cluster.sh status [DIR]   # exit 0 when the cluster in DIR is up
#   launch/local_cluster.sh down   [DIR]   # stop the daemons, delete the namespaces and links
#
#   eval "$(launch/local_cluster.sh up)"   # then: srun -N2 -n4 --mpi=pmi2 .venv/bin/distsnn doctor
#
# Each compute node is a network namespace (dsnn-node1, dsnn-node2) joined to the host by a
# veth pair on a bridge (dsnnbr0): host 10.77.0.1, node1 10.77.0.2, node2 10.77.0.3. In it a
# slurmd -N nodeN runs with its own hostname (UTS namespace), its own /etc/hosts (naming the
# host and both nodes) and its own /tmp (a mount namespace: DIR/nodeN/tmp bind-mounted on /tmp,
# so files a job writes to /tmp on a node can be read from the host there). Everything else,
# the working tree included, is the host's filesystem at the same paths; DIR/shared is a folder
# meant for files that all nodes read (DIR stays visible at its path on the nodes even when it
# lies under /tmp). slurmctld and munged run on the host.
#
# Needs root on Debian/Ubuntu with iproute2 and util-linux (ip, unshare, nsenter); installs the packages
# slurmctld slurmd slurm-client munge with apt-get when missing. State, spool, pid, log files
# and the configuration (DIR/slurm.conf) live in DIR (default: ${TMPDIR:-/tmp}/distsnn-cluster);
# nothing under /etc is changed except a munge key created when missing. `up` is idempotent and
# prints on stderr how long it took. Only the export line goes to stdout.
# Exit status: 0 done, 1 failed, 2 usage, 3 not root, 4 packages missing and not installable.
# One two-node cluster at a time (the namespace, link and address names are fixed); it can run
# next to launch/local_slurm.sh's one-node cluster, which uses other ports.
# Environment:
#   LOCAL_CLUSTER_PORTS="CTLD SLURMD"  ports (default "6917 6918"; the one-node cluster: 6817 6818)
#   LOCAL_CLUSTER_NET=10.77.0          the /24 network of the host (.1) and the nodes (.2, .3)
#   LOCAL_CLUSTER_CPUS                 CPUs per node told to Slurm (default: nproc; the nodes
#                                      share the machine's cores)
#   LOCAL_CLUSTER_WAIT_S               bound on the wait for both nodes to be idle (default 60)
# MPI between the nodes: the MPICH wheel's ch4 (ucx by default, ofi with MPICH_CH4_NETMOD=ofi)
# connects over the veth addresses as it is; to keep it off the loopback, a TaskProlog
# (DIR/task_prolog.sh) exports to every task, unless the task's environment sets them:
# UCX_NET_DEVICES=eth0, FI_PROVIDER=tcp, FI_TCP_IFACE=eth0, MPICH_INTERFACE_HOSTNAME=<node address>.
set -euo pipefail

ACTION=${1:-}
DIR=${2:-${TMPDIR:-/tmp}/distsnn-cluster}
WAIT_S=${LOCAL_CLUSTER_WAIT_S:-60}
read -r CTLD_PORT SLURMD_PORT <<< "${LOCAL_CLUSTER_PORTS:-6917 6918}"
NET=${LOCAL_CLUSTER_NET:-10.77.0}
CPUS=${LOCAL_CLUSTER_CPUS:-$(nproc)}
NODES=(node1 node2)
BRIDGE=dsnnbr0
HOST_ADDR=$NET.1

# shellcheck source=launch/slurm_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/slurm_common.sh"

node_index() { echo "${1#node}"; }                 # node2 -> 2
node_addr() { echo "$NET.$(( $(node_index "$1") + 1 ))"; }  # node1 -> NET.2
netns_of() { echo "dsnn-$1"; }                     # node1 -> dsnn-node1
veth_of() { echo "dsnnv$(node_index "$1")"; }      # node1 -> dsnnv1 (host end)

conf_paths() {  # conf_paths [create]
    if [ "${1:-}" = create ]; then
        mkdir -p "$DIR/state" "$DIR/run" "$DIR/log" "$DIR/shared"
        local n
        for n in "${NODES[@]}"; do mkdir -p "$DIR/$n/spool" "$DIR/$n/tmp"; chmod 1777 "$DIR/$n/tmp"; done
        chmod 1777 "$DIR/shared"
    fi
    [ -d "$DIR" ] && DIR=$(cd "$DIR" && pwd)
    CONF=$DIR/slurm.conf
    CTLD_PID=$DIR/run/slurmctld.pid
    MUNGED_MARK=$DIR/run/munged.started-by-us
    NET_MARK=$DIR/run/network.created-by-us
    HOST=$(hostname -s)
}

slurmd_pid() { echo "$DIR/run/slurmd-$1.pid"; }

need_namespace_tools() {
    command -v ip >/dev/null && command -v unshare >/dev/null && command -v nsenter >/dev/null \
        || die_code 4 "needs ip (iproute2), unshare and nsenter (util-linux)"
}

need_root() {
    [ "$(id -u)" = 0 ] || die_code 3 "must run as root (network namespaces, and Slurm runs with
SlurmUser=root here); try: sudo $0 $ACTION ${2:-}"
}

netns_exists() { ip netns list 2>/dev/null | grep -qw "^$1"; }

network_ok() {  # both namespaces, the bridge and the node addresses are there
    ip link show "$BRIDGE" >/dev/null 2>&1 || return 1
    local n
    for n in "${NODES[@]}"; do
        netns_exists "$(netns_of "$n")" || return 1
        ip -n "$(netns_of "$n")" -br addr show dev eth0 2>/dev/null | grep -q "$(node_addr "$n")/" \
            || return 1
    done
}

delete_network() {
    local n ns pids
    for n in "${NODES[@]}"; do
        ns=$(netns_of "$n")
        if netns_exists "$ns"; then
            # processes left in the namespace (job steps of a killed slurmd)
            pids=$(ip netns pids "$ns" 2>/dev/null || true)
            if [ -n "$pids" ]; then
                say "stopping processes left in $ns: $(echo $pids)"
                kill $pids 2>/dev/null || true
                sleep 0.5
                kill -9 $(ip netns pids "$ns" 2>/dev/null || true) 2>/dev/null || true
            fi
        fi
        ip link del "$(veth_of "$n")" 2>/dev/null || true
        if netns_exists "$ns"; then ip netns del "$ns" || say "could not delete namespace $ns"; fi
    done
    ip link del "$BRIDGE" 2>/dev/null || true
    rm -f "$NET_MARK"
}

create_network() {
    local n ns veth
    if [ ! -f "$NET_MARK" ]; then
        # Names and addresses that are ours but not from this DIR: another cluster, or the
        # remains of one whose DIR is gone.
        if ip link show "$BRIDGE" >/dev/null 2>&1 || netns_exists "$(netns_of node1)" \
                || netns_exists "$(netns_of node2)"; then
            die "the namespaces or the bridge $BRIDGE exist but were not created for $DIR:
another two-node cluster is up (bring it down with its DIR), or remove them with
  ip link del $BRIDGE; ip netns del dsnn-node1; ip netns del dsnn-node2"
        fi
        if ip -br addr | grep -q " $NET\.[0-9]*/"; then
            die "the host already has an address in $NET.0/24; choose another LOCAL_CLUSTER_NET"
        fi
    fi
    network_ok && return 0
    delete_network
    say "creating bridge $BRIDGE ($HOST_ADDR/24) and namespaces ${NODES[*]/#/dsnn-}"
    touch "$NET_MARK"
    ip link add "$BRIDGE" type bridge || die "could not create the bridge $BRIDGE"
    ip addr add "$HOST_ADDR/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    for n in "${NODES[@]}"; do
        ns=$(netns_of "$n")
        veth=$(veth_of "$n")
        ip netns add "$ns" || die "could not create the network namespace $ns"
        ip link add "$veth" type veth peer name eth0 netns "$ns" || die "could not create $veth"
        ip link set "$veth" master "$BRIDGE"
        ip link set "$veth" up
        ip -n "$ns" link set lo up
        ip -n "$ns" addr add "$(node_addr "$n")/24" dev eth0
        ip -n "$ns" link set eth0 up
    done
    network_ok || die "the network is not as expected after creating it"
}

write_conf() {
    local FIRST_JOB_ID=$(( (RANDOM << 15 | RANDOM) % 1000000 + 1000 ))
    local n
    {
        echo "127.0.0.1 localhost"
        echo "$HOST_ADDR $HOST"
        for n in "${NODES[@]}"; do echo "$(node_addr "$n") $n"; done
    } > "$DIR/hosts"
    cat > "$DIR/task_prolog.sh" <<'EOF'
#!/bin/sh
# Written by distsnn launch/local_cluster.sh: MPI between the nodes over the veth (eth0), for
# both netmods of the MPICH wheel (ucx, the default, and ofi); a task's own settings win.
# The ofi netmod over TCP: the nodes share this machine's kernel, and UCX's shared-memory
# transports take processes on different "nodes" for neighbours (MPI_Init then hangs).
addr=$(getent hosts "$(hostname)" | awk '{print $1; exit}')
[ -n "${MPICH_CH4_NETMOD:-}" ] || echo "export MPICH_CH4_NETMOD=ofi"
[ -n "${UCX_NET_DEVICES:-}" ] || echo "export UCX_NET_DEVICES=eth0"
[ -n "${FI_PROVIDER:-}" ] || echo "export FI_PROVIDER=tcp"
[ -n "${FI_TCP_IFACE:-}" ] || echo "export FI_TCP_IFACE=eth0"
[ -n "${MPICH_INTERFACE_HOSTNAME:-}" ] || [ -z "$addr" ] || echo "export MPICH_INTERFACE_HOSTNAME=$addr"
exit 0
EOF
    chmod 755 "$DIR/task_prolog.sh"
    cat > "$CONF.tmp" <<EOF
# Written by distsnn launch/local_cluster.sh: two nodes in network namespaces, state in $DIR
ClusterName=localpair
SlurmctldHost=$HOST($HOST_ADDR)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
TaskProlog=$DIR/task_prolog.sh
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
# job ids start at random: MPICH names its shared memory after the PMI job and step, and a
# killed job leaves that file behind; a fresh cluster's job 1 would collide with it
FirstJobId=$FIRST_JOB_ID
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/%n/spool
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
EOF
    for n in "${NODES[@]}"; do
        echo "NodeName=$n NodeAddr=$(node_addr "$n") NodeHostname=$n CPUs=$CPUS RealMemory=4000 State=UNKNOWN" >> "$CONF.tmp"
    done
    echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP" >> "$CONF.tmp"
    mv "$CONF.tmp" "$CONF"
}

start_slurmd() {  # start_slurmd NODE: slurmd in the node's network, UTS and mount namespaces
    local n=$1 rel=""
    case "$DIR/" in /tmp/*) rel=${DIR#/tmp/} ;; esac
    # In a private mount namespace: keep DIR at its path (when under /tmp) by binding it into
    # the node's /tmp directory, then put that directory on /tmp, and the cluster's hosts file
    # on /etc/hosts; then the node's hostname. slurmd daemonizes and writes its pid file.
    # nsenter, not `ip netns exec`: that remounts /sys, hiding /sys/fs/cgroup from slurmd.
    nsenter --net="/run/netns/$(netns_of "$n")" unshare --uts --mount --propagation private -- \
        /bin/sh -ec '
            n=$1 dir=$2 rel=$3 conf=$4
            if [ -n "$rel" ]; then
                mkdir -p "$dir/$n/tmp/$rel"
                mount --bind "$dir" "$dir/$n/tmp/$rel"
            fi
            mount --rbind "$dir/$n/tmp" /tmp
            mount --bind "$dir/hosts" /etc/hosts
            hostname "$n"
            exec slurmd -f "$conf" -N "$n"
        ' sh "$n" "$DIR" "$rel" "$CONF" 2>"$DIR/log/slurmd-$n-start.log" \
        || { cat "$DIR/log/slurmd-$n-start.log" >&2; die "slurmd on $n did not start; see $DIR/log/slurmd-$n.log"; }
}

node_states() {  # "node1 idle node2 idle" as sinfo prints them, or nothing
    SLURM_CONF=$CONF timeout 10 sinfo -h -N -o '%N %T' 2>/dev/null | sort | tr '\n' ' '
}

all_ready() {  # all_ready "STATES"
    local states=$1 n
    for n in "${NODES[@]}"; do
        [[ "$states" =~ (^| )$n\ (idle|mixed|allocated|completing)[^\ ]*\  ]] || return 1
    done
}

daemons_alive() {
    pid_alive "$CTLD_PID" || return 1
    local n
    for n in "${NODES[@]}"; do pid_alive "$(slurmd_pid "$n")" || return 1; done
}

is_up() {
    [ -f "$CONF" ] && network_ok && daemons_alive && all_ready "$(node_states)"
}

wait_idle() {
    local deadline=$((SECONDS + WAIT_S)) states="" resumed=0 n
    while [ $SECONDS -lt $deadline ]; do
        states=$(node_states)
        all_ready "$states" && return 0
        if [ $resumed = 0 ] && [ $((deadline - SECONDS)) -lt $((WAIT_S - 10)) ] \
                && [[ "$states" =~ (drain|down) ]]; then
            for n in "${NODES[@]}"; do
                SLURM_CONF=$CONF timeout 10 scontrol update nodename="$n" state=resume >/dev/null 2>&1 || true
            done
            resumed=1
        fi
        pid_alive "$CTLD_PID" || die "slurmctld exited; see $DIR/log/slurmctld.log"
        for n in "${NODES[@]}"; do
            pid_alive "$(slurmd_pid "$n")" || die "slurmd on $n exited; see $DIR/log/slurmd-$n.log"
        done
        sleep 0.5
    done
    die "the nodes are not idle after ${WAIT_S}s (sinfo says '${states:-nothing}'); see $DIR/log/"
}

cmd_up() {
    local started n i addrs=""
    started=$(date +%s%N)
    need_root "$@"
    conf_paths create
    if is_up; then
        say "already up in $DIR ($(( ($(date +%s%N) - started) / 1000000 )) ms)"
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    install_packages
    need_namespace_tools
    start_munge
    # Stale daemons from an earlier, half-finished `up` in this DIR.
    for n in "${NODES[@]}"; do stop_pidfile "$(slurmd_pid "$n")" "slurmd on $n"; done
    stop_pidfile "$CTLD_PID" slurmctld
    create_network
    write_conf
    say "starting slurmctld on $HOST ($HOST_ADDR:$CTLD_PORT) and slurmd on ${NODES[*]} (config $CONF)"
    slurmctld -f "$CONF" || die "slurmctld did not start; see $DIR/log/slurmctld.log"
    for n in "${NODES[@]}"; do start_slurmd "$n"; done
    for i in $(seq 100); do
        daemons_alive && break
        sleep 0.1
    done
    wait_idle
    for n in "${NODES[@]}"; do addrs+="${addrs:+, }$n $(node_addr "$n")"; done
    say "up in $(( ($(date +%s%N) - started) / 1000000 )) ms: $addrs idle in partition debug ($CPUS CPUs each); host $HOST $HOST_ADDR; shared folder $DIR/shared"
    echo "export SLURM_CONF=$CONF"
}

cmd_down() {
    local n
    need_root "$@"
    conf_paths
    for n in "${NODES[@]}"; do stop_pidfile "$(slurmd_pid "$n")" "slurmd on $n"; done
    stop_pidfile "$CTLD_PID" slurmctld
    if [ -f "$NET_MARK" ]; then
        delete_network
    fi
    if [ -f "$MUNGED_MARK" ]; then
        if ps -C slurmctld,slurmd -o stat= 2>/dev/null | grep -qv '^Z'; then
            # another cluster (e.g. launch/local_slurm.sh's) still authenticates with it
            say "leaving munged running: other Slurm daemons use it"
        else
            stop_pidfile /run/munge/munged.pid munged
        fi
        rm -f "$MUNGED_MARK"
    fi
    say "down ($DIR)"
}

cmd_status() {
    conf_paths
    local rc=0 n
    if pid_alive "$CTLD_PID"; then say "slurmctld running (pid $(cat "$CTLD_PID"))"
    else say "slurmctld not running"; rc=1; fi
    for n in "${NODES[@]}"; do
        if pid_alive "$(slurmd_pid "$n")"; then say "slurmd on $n running (pid $(cat "$(slurmd_pid "$n")"))"
        else say "slurmd on $n not running"; rc=1; fi
    done
    if network_ok; then say "namespaces and bridge $BRIDGE present"
    else say "namespaces or bridge $BRIDGE missing"; rc=1; fi
    if munge_works; then say "munge works"; else say "munge does not work"; rc=1; fi
    if [ $rc = 0 ]; then
        SLURM_CONF=$CONF timeout 10 sinfo -N >&2 || rc=1
        all_ready "$(node_states)" || { say "not all nodes are idle"; rc=1; }
    fi
    [ $rc = 0 ] && echo "export SLURM_CONF=$CONF"
    return $rc
}

case "$ACTION" in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status ;;
    *) usage 4,6 ;;
esac
