#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, for `make test-slurm`: munged, MariaDB,
# slurmdbd, slurmctld and slurmd, each started by this script (no systemd) as root, with
# every file (configs, keys, sockets, state, logs) under one private directory, so nothing
# in /etc is touched and a cluster already on the machine is left alone.
#
#   scripts/slurm_cluster.sh install        Debian's packages, when any is missing (apt-get)
#   scripts/slurm_cluster.sh up DIR         start the cluster; prints the SLURM_CONF to export
#   scripts/slurm_cluster.sh down DIR       cancel its jobs, stop every daemon it started
#   scripts/slurm_cluster.sh run DIR -- COMMAND...
#       install, up, run COMMAND with SLURM_CONF set, and down on exit, whatever happened.
#       Where the cluster cannot exist here (not root, no apt-get to install it), COMMAND
#       still runs, with KERASPORT_SLURM_UNAVAILABLE saying why, so its tests skip naming
#       the reason rather than pass.
#
# The cluster: partition `short` and account `mylab` (the names README's profile uses), the
# node's real CPUs and memory (`slurmd -C`), select/cons_tres with cores and memory as
# consumables, proctrack/linuxproc and task/none (no cgroups needed), and accounting in
# slurmdbd, since the Snakemake SLURM plugin asks `sacct` for its jobs' states.
set -euo pipefail

PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
CLUSTER=kerasport
PARTITION=short
ACCOUNT=mylab
# Ports on 127.0.0.1 only, away from SLURM's and MariaDB's defaults so that a system
# cluster or database on this machine cannot be reached by mistake.
PORT_BASE=${KERASPORT_SLURM_PORT_BASE:-16817}
CTLD_PORT=$PORT_BASE
SLURMD_PORT=$((PORT_BASE + 1))
DBD_PORT=$((PORT_BASE + 2))
MYSQL_PORT=$((PORT_BASE + 3))
START_TIMEOUT=60  # seconds for each daemon to answer
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)  # in start order; stopped in reverse

say() { echo "slurm_cluster: $*" >&2; }
die() { say "error: $*"; exit 1; }

# -- installing ----------------------------------------------------------------------------

missing_packages() {
    local package
    for package in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
            || echo "$package"
    done
}

# Why the cluster cannot run here, or nothing when it can. Only what no fix in this repo
# can change is a reason; anything else that goes wrong later is a failure.
why_unavailable() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "not root (uid $(id -u)): the daemons run as root and apt-get installs them"
    elif ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
        echo "no dpkg/apt-get: not a Debian system, so ${PACKAGES[*]} cannot be installed"
    fi
}

install_packages() {
    local missing
    missing=$(missing_packages)
    [ -z "$missing" ] && return 0
    say "installing ${missing//$'\n'/ }"
    # The package lists may be empty on a fresh machine; policy-rc.d (containers) or the
    # absence of systemd keeps the packages' own services from starting: this script starts
    # its own.
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing \
        > /tmp/kerasport-slurm-apt.log 2>&1 || { tail -30 /tmp/kerasport-slurm-apt.log; \
        die "apt-get install failed (log above)"; }
    missing=$(missing_packages)
    [ -z "$missing" ] || die "still not installed after apt-get: $missing"
}

# -- the configuration -------------------------------------------------------------------

write_configs() {
    local dir=$1 node
    # The node as slurmd sees it (CPUs, sockets, cores, memory), less its uptime: a node
    # configured with more than it has would be drained.
    node=$(slurmd -C | head -1)
    [[ $node == NodeName=* ]] || die "slurmd -C printed no node line: $node"
    cat > "$dir/etc/slurm.conf" <<EOF
# Written by scripts/slurm_cluster.sh for a private one-node cluster; do not edit.
ClusterName=$CLUSTER
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
PlugStackConfig=$dir/etc/plugstack.conf
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=10
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# With auth/munge, the munged socket for talking to slurmdbd (AuthInfo's is not used there).
AccountingStoragePass=$dir/munge/munge.socket
# The job's comment (the plugin's rule_NAME_wildcards_...) is kept for sacct to show.
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
# A cancelled job's processes get SIGKILL 5 s after SIGTERM (default 30).
KillWait=5
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    : > "$dir/etc/plugstack.conf"
    # slurmdbd reads slurmdbd.conf beside slurm.conf (SLURM_CONF's directory); it holds the
    # database password, so it must be private to SlurmUser.
    (umask 077; cat > "$dir/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=$dir/munge/munge.socket
DbdHost=$(hostname -s)
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$dir/log/slurmdbd.log
PidFile=$dir/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$MYSQL_PORT
StorageUser=slurm
StoragePass=$(cat "$dir/etc/db.password")
StorageLoc=slurm_acct_db
EOF
    )
}

# -- daemons -----------------------------------------------------------------------------

# Each daemon runs in the foreground as a child of this script, its pid kept in
# DIR/pids/NAME, so that `down` stops exactly the processes `up` started.
start() {
    local dir=$1 name=$2
    shift 2
    "$@" > "$dir/log/$name.out" 2>&1 &
    echo $! > "$dir/pids/$name"
}

# The pid of a daemon this script started and that still runs, or nothing. The pid file
# alone could name an unrelated process that reused the number: each daemon was started
# with this cluster's SLURM_CONF in its environment.
running_pid() {
    local file="$1/pids/$2" pid
    [ -f "$file" ] || return 0
    pid=$(cat "$file")
    if [ -r "/proc/$pid/environ" ] && tr '\0' '\n' < "/proc/$pid/environ" \
        | grep -qxF "SLURM_CONF=$1/etc/slurm.conf"; then
        echo "$pid"
    fi
}

show_log() {
    local dir=$1 name=$2 file
    for file in "$dir/log/$name.out" "$dir/log/$name.log"; do
        [ -s "$file" ] && { say "--- last lines of $file"; tail -20 "$file" >&2; }
    done
    return 0
}

# Wait until COMMAND succeeds, failing (with the daemon's log) when the daemon died or the
# timeout passed.
wait_for() {
    local dir=$1 name=$2 what=$3 deadline=$((SECONDS + START_TIMEOUT))
    shift 3
    until "$@" > /dev/null 2>&1; do
        if [ -z "$(running_pid "$dir" "$name")" ]; then
            show_log "$dir" "$name"
            die "$name exited before $what"
        fi
        if [ $SECONDS -ge $deadline ]; then
            show_log "$dir" "$name"
            die "$name: no $what after ${START_TIMEOUT}s"
        fi
        sleep 0.5
    done
}

port_free() {
    ! (exec 3<> "/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

sql() {
    mariadb --no-defaults --socket="$1/mysql/mysql.sock" -uroot -e "$2"
}

node_idle() {
    [ "$(sinfo -h -N -o %T)" = idle ]
}

start_munge() {
    local dir=$1
    # munged refuses a socket whose directories others cannot traverse.
    mkdir -m 755 "$dir/munge"
    mungekey --create --keyfile="$dir/munge/munge.key" > /dev/null
    start "$dir" munged munged --foreground --key-file="$dir/munge/munge.key" \
        --socket="$dir/munge/munge.socket" --pid-file="$dir/munge/munged.pid" \
        --seed-file="$dir/munge/munged.seed" --log-file="$dir/log/munged.log"
    wait_for "$dir" munged "a credential" \
        sh -c "munge -n -S '$dir/munge/munge.socket' | unmunge -S '$dir/munge/munge.socket'"
}

start_mariadb() {
    local dir=$1
    mkdir -m 700 "$dir/mysql"
    mariadb-install-db --no-defaults --user=root --datadir="$dir/mysql/data" \
        --auth-root-authentication-method=socket --skip-test-db > "$dir/log/mariadb-install.out" \
        2>&1 || { show_log "$dir" mariadb-install; die "mariadb-install-db failed"; }
    # slurmdbd's recommended InnoDB settings (it warns below them).
    start "$dir" mariadbd mariadbd --no-defaults --user=root --datadir="$dir/mysql/data" \
        --socket="$dir/mysql/mysql.sock" --port="$MYSQL_PORT" --bind-address=127.0.0.1 \
        --skip-name-resolve --pid-file="$dir/mysql/mariadbd.pid" \
        --log-error="$dir/log/mariadbd.log" --innodb-buffer-pool-size=256M \
        --innodb-log-file-size=64M --innodb-lock-wait-timeout=900
    wait_for "$dir" mariadbd "answer on its socket" sql "$dir" "SELECT 1"
    sql "$dir" "CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$(cat "$dir/etc/db.password")';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
}

start_slurmdbd() {
    local dir=$1
    start "$dir" slurmdbd slurmdbd -D
    wait_for "$dir" slurmdbd "answer to sacctmgr" sacctmgr -n list cluster
    # The cluster, the account and root's association in it, before slurmctld registers:
    # the plugin checks the profile's account against `sacctmgr list user`.
    sacctmgr -i -Q add cluster "$CLUSTER" > /dev/null
    sacctmgr -i -Q add account "$ACCOUNT" cluster="$CLUSTER" \
        description="make test-slurm" organization=kerasport > /dev/null
    sacctmgr -i -Q add user root account="$ACCOUNT" cluster="$CLUSTER" > /dev/null
}

start_slurm() {
    local dir=$1
    start "$dir" slurmctld slurmctld -D -f "$dir/etc/slurm.conf"
    wait_for "$dir" slurmctld "answer to sinfo" sinfo -h
    start "$dir" slurmd slurmd -D -f "$dir/etc/slurm.conf"
    wait_for "$dir" slurmd "idle node in sinfo" node_idle
    wait_for "$dir" slurmdbd "answer to sacct" sacct -X -n -a
}

up() {
    local dir=$1 port
    down "$dir" 2> /dev/null  # daemons a killed run left behind, and its files
    rm -rf "$dir"
    mkdir -p "$dir"/{etc,log,pids,run,state,spool}
    for port in "$CTLD_PORT" "$SLURMD_PORT" "$DBD_PORT" "$MYSQL_PORT"; do
        port_free "$port" || die "port $port on 127.0.0.1 is in use (another cluster?); " \
            "set KERASPORT_SLURM_PORT_BASE to another base port"
    done
    (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$dir/etc/db.password")
    write_configs "$dir"
    export SLURM_CONF="$dir/etc/slurm.conf"
    start_munge "$dir"
    start_mariadb "$dir"
    start_slurmdbd "$dir"
    start_slurm "$dir"
    say "up: $(sinfo -h -o '%P %D node(s) %c CPUs %m MB %T'); export SLURM_CONF=$SLURM_CONF"
}

# Cancel the cluster's jobs (their slurmstepd processes would outlive slurmd), then stop the
# daemons this script started, newest first: SIGTERM, then SIGKILL after 15 s.
down() {
    local dir=$1 name pid jobs index deadline
    [ -d "$dir/pids" ] || return 0
    export SLURM_CONF="$dir/etc/slurm.conf"
    if [ -n "$(running_pid "$dir" slurmdbd)" ]; then
        say "the jobs this cluster ran, as sacct lists them:"
        sacct -X -a --starttime now-1days \
            --format=JobID,JobName%36,State,ExitCode,Elapsed,Comment%40 >&2 || true
    fi
    if [ -n "$(running_pid "$dir" slurmctld)" ]; then
        jobs=$(squeue -h -o %A 2>/dev/null || true)
        if [ -n "$jobs" ]; then
            say "cancelling jobs left on the cluster: ${jobs//$'\n'/ }"
            # shellcheck disable=SC2086
            scancel $jobs || true
            deadline=$((SECONDS + 30))
            while [ -n "$(squeue -h -o %A 2>/dev/null)" ] && [ $SECONDS -lt $deadline ]; do
                sleep 0.5
            done
        fi
    fi
    for ((index = ${#DAEMONS[@]} - 1; index >= 0; index--)); do
        name=${DAEMONS[index]}
        pid=$(running_pid "$dir" "$name")
        [ -n "$pid" ] || continue
        kill -TERM "$pid" 2>/dev/null || true
        deadline=$((SECONDS + 15))
        while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then
            say "$name ($pid) did not stop on SIGTERM; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        # A child of this shell: reap it, so that it is gone before the next starts.
        wait "$pid" 2>/dev/null || true
    done
    rm -f "$dir"/pids/*
    say "down: every daemon started in $dir is stopped"
}

# The processes COMMAND left running (a test killed mid-run leaves its workflow behind):
# each carries the run's marker in its environment, inherited from COMMAND, jobs included.
leftovers() {
    local marker=$1 environ pid
    for environ in /proc/[0-9]*/environ; do
        pid=${environ#/proc/}
        pid=${pid%/environ}
        # (Kernel threads and processes that ended meanwhile have no environment to read.)
        [ "$pid" != $$ ] && { tr '\0' '\n' < "$environ"; } 2>/dev/null \
            | grep -qxF "KERASPORT_SLURM_RUN=$marker" && echo "$pid"
    done
    return 0
}

stop_leftovers() {
    local marker=$1 pids deadline
    pids=$(leftovers "$marker")
    [ -n "$pids" ] || return 0
    say "stopping what the command left running: ${pids//$'\n'/ }"
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    deadline=$((SECONDS + 15))
    while [ -n "$(leftovers "$marker")" ] && [ $SECONDS -lt $deadline ]; do sleep 0.5; done
    pids=$(leftovers "$marker")
    # shellcheck disable=SC2086
    [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
}

banner() {
    say "################################################################################"
    say "SKIPPED: no SLURM cluster here: $1"
    say "################################################################################"
}

run() {
    local dir=$1 reason status marker
    shift
    [ "${1:-}" = "--" ] && shift
    [ $# -gt 0 ] || die "run DIR -- COMMAND...: no command"
    reason=$(why_unavailable)
    if [ -n "$reason" ]; then
        banner "$reason"
        KERASPORT_SLURM_UNAVAILABLE=$reason "$@"
        return
    fi
    install_packages
    marker="$dir:$$"
    # Stop everything on any exit from here on, the command's failure or a signal included:
    # first what the command left (its workflow may still cancel its jobs), then the cluster.
    # (Expanded now: the trap runs after this function's locals are gone.)
    # shellcheck disable=SC2064
    trap "stop_leftovers $(printf %q "$marker"); down $(printf %q "$dir")" EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    up "$dir"
    status=0
    SLURM_CONF="$dir/etc/slurm.conf" KERASPORT_SLURM_RUN=$marker "$@" || status=$?
    return $status
}

main() {
    local action=${1:-}
    shift || true
    case $action in
        install)
            reason=$(why_unavailable)
            [ -z "$reason" ] || die "$reason"
            install_packages ;;
        up)
            [ $# -eq 1 ] || die "up DIR"
            dir=$(realpath -m "$1")
            # shellcheck disable=SC2064
            trap "down $(printf %q "$dir")" EXIT  # a cluster half started is stopped
            up "$dir"
            trap - EXIT ;;
        down)
            [ $# -eq 1 ] || die "down DIR"
            down "$(realpath -m "$1")" ;;
        run)
            [ $# -ge 2 ] || die "run DIR -- COMMAND..."
            dir=$(realpath -m "$1")
            shift
            run "$dir" "$@" ;;
        *)
            sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2
            exit 2 ;;
    esac
}

main "$@"
