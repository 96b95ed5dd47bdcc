# Shared by launch/local_slurm.sh and launch/local_cluster.sh (sourced, not run): messages
# prefixed with the script's name, its usage, the Slurm and munge packages, munged, and
# daemons tracked by pid files. The sourcing script defines DIR and MUNGED_MARK before
# calling these. Checked with Debian 12's Slurm 22.05.8 and munge 0.5.15, as root.

SCRIPT_NAME=$(basename "$0" .sh)  # the message prefix: local_slurm or local_cluster

say() { echo "$SCRIPT_NAME: $*" >&2; }
die() { die_code 1 "$@"; }
die_code() { local code=$1; shift; echo "$SCRIPT_NAME: error: $*" >&2; exit "$code"; }

usage() {  # usage FIRST,LAST: print the script's header lines FIRST to LAST, exit 2
    sed -n "$1p" "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

pid_alive() {  # pid_alive FILE: true when FILE holds the pid of a live process (not a zombie)
    [ -s "$1" ] && pid_running "$(cat "$1")"
}

pid_running() {  # a killed daemon stays a zombie while no init reaps it
    kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

install_packages() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sbatch >/dev/null || missing+=(slurm-client)
    command -v munged >/dev/null || missing+=(munge)
    # srun --mpi=pmix (Open MPI 5 speaks PMIx only): Debian's Slurm plugin dlopens the
    # unversioned pmix2/lib/libpmix.so, which only libpmix-dev installs
    if command -v dpkg >/dev/null && ! dpkg -s libpmix-dev >/dev/null 2>&1; then
        missing+=(libpmix-dev)
    fi
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || die_code 4 "missing ${missing[*]} and no apt-get to install them;
install Slurm and munge with your package manager"
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get update >&2 && timeout 600 apt-get install -y "${missing[@]}" >&2 \
        || die_code 4 "apt-get could not install ${missing[*]}"
}

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    local key=/etc/munge/munge.key
    if [ ! -s "$key" ]; then
        say "creating munge key $key"
        mkdir -p /etc/munge
        dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
        chown munge:munge "$key" 2>/dev/null || chown munge "$key"
        chmod 400 "$key"
    fi
    local d
    for d in /run/munge /var/lib/munge /var/log/munge; do
        mkdir -p "$d"
        chown munge:munge "$d" 2>/dev/null || chown munge "$d"
    done
    if munge_works; then
        return 0
    fi
    say "starting munged"
    if ! munged --force 2>"$DIR/log/munged-start.log"; then
        cat "$DIR/log/munged-start.log" >&2
        die "munged did not start; see /var/log/munge/munged.log"
    fi
    touch "$MUNGED_MARK"
    local i
    for i in $(seq 50); do
        munge_works && return 0
        sleep 0.1
    done
    die "munged started but munge -n | unmunge fails; see /var/log/munge/munged.log"
}

stop_pidfile() {  # stop_pidfile FILE NAME
    local file=$1 name=$2 pid i
    if pid_alive "$file"; then
        pid=$(cat "$file")
        say "stopping $name (pid $pid)"
        kill "$pid" 2>/dev/null || true
        for i in $(seq 100); do
            pid_running "$pid" || break
            sleep 0.1
        done
        if pid_running "$pid"; then
            say "$name (pid $pid) did not stop in 10 s; sending SIGKILL"
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$file"
}
