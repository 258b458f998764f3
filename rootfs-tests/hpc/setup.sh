#!/bin/bash
# A single-node Slurm cluster on this machine for rootfs-tests/hpc.rs and examples/slurm: installs
# Debian's slurm-wlm, slurmdbd, munge, MariaDB and Open MPI (as root, when missing), writes
# slurm.conf for the real hostname and what `slurmd -C` reports, and starts MariaDB, munged,
# slurmdbd, slurmctld and slurmd as plain background daemons (no systemd here). Idempotent:
# when the node is already idle with this configuration it only says so. Prints the node state.
#
#   rootfs-tests/hpc/setup.sh          # install, configure, start (or say it is up)
#   rootfs-tests/hpc/setup.sh --stop   # stop the daemons it started (rootfs-tests/run.sh does)
#
# Its own daemons are known by their pid files and sockets, never by process name: another
# MariaDB or slurmd on the machine (or in a parent PID namespace) is not ours. --stop stops only
# the daemons this script started (listed in $STARTED), never a service it found running. Every wait is
# bounded (WAIT seconds, default 60) and a daemon that does not come up has its log tail printed.
#
# Choices (tested in a container without systemd):
# * ProctrackType=proctrack/linuxproc: it follows the process tree through /proc, which sees
#   into gpurun's PID namespace, so scancel reaches the workload. proctrack/cgroup needs a
#   cgroup hierarchy slurmd may manage, which a container does not reliably give.
# * Accounting through slurmdbd + MariaDB: sacct reads only slurmdbd (accounting_storage/none
#   disables sacct, jobcomp/filetxt is not read by sacct), and the tests check that a failing
#   task's exit code reaches sacct.
# * CPUs: at least 8 with SlurmdParameters=config_overrides, so `srun -n 4` runs on 2 cores.
# * KillWait=5: scancel's SIGTERM is followed by SIGKILL 5 s later (tests wait less long).
# * The node and the controller are addressed as 127.0.0.1 (SlurmctldHost=HOST(ADDR), NodeAddr),
#   and munged's origin too: the hostname need not resolve (many machines' /etc/hosts lack it).
set -euo pipefail

log() { echo "hpc/setup: $*" >&2; }
[ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }
WAIT=${WAIT:-60}
STARTED=/run/gpurun-hpc/started
mkdir -p /run/gpurun-hpc
# started PIDFILE: remember that this script started that daemon.
started() { grep -qxF "$1" "$STARTED" 2>/dev/null || echo "$1" >>"$STARTED"; }
HOST=$(hostname -s)

# --- our daemons: pid files, not process names ----------------------------------------------------
PIDS=(/run/slurm/slurmd.pid /run/slurm/slurmctld.pid /run/slurm/slurmdbd.pid /run/munge/munged.pid
    /run/mysqld/mysqld.pid)
# alive PIDFILE NAME: the pid file names a live process whose executable is NAME.
alive() {
    local pid
    pid=$(cat "$1" 2>/dev/null) && [ -n "$pid" ] && [ -d "/proc/$pid" ] \
        && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}
comm_of() { case $1 in */mysqld.pid) echo mariadbd ;; *) basename "$1" .pid ;; esac; }
# stop PIDFILE: TERM, then up to WAIT seconds for it to go, then KILL.
stop() {
    local name pid
    name=$(comm_of "$1")
    alive "$1" "$name" || { rm -f "$1"; return 0; }
    pid=$(cat "$1")
    log "stopping $name ($pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq $((WAIT * 2))); do alive "$1" "$name" || break; sleep 0.5; done
    alive "$1" "$name" && kill -9 "$pid" 2>/dev/null
    rm -f "$1"
}
if [ "${1:-}" = --stop ]; then
    for f in "${PIDS[@]}"; do grep -qxF "$f" "$STARTED" 2>/dev/null && stop "$f"; done
    rm -f "$STARTED"
    exit 0
fi
# wait_for WHAT LOGFILE COMMAND...: up to WAIT seconds for COMMAND to succeed; else the log's tail.
wait_for() {
    local what=$1 logfile=$2
    shift 2
    for _ in $(seq $((WAIT * 2))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
    log "$what did not come up within ${WAIT}s ($*); last lines of $logfile:"
    tail -n 20 "$logfile" >&2 2>/dev/null || log "($logfile is missing)"
    return 1
}
need=()
for pkg in slurm-wlm slurmdbd munge mariadb-server openmpi-bin libopenmpi-dev umoci busybox-static; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Keep Debian's maintainer scripts from starting daemons; this script starts them itself.
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt_log=/var/log/gpurun-hpc-apt.log
    apt-get install -y -q --no-install-recommends "${need[@]}" >"$apt_log" 2>&1 || {
        apt-get update -q >>"$apt_log" 2>&1 \
            && apt-get install -y -q --no-install-recommends "${need[@]}" >>"$apt_log" 2>&1
    } || { log "apt-get install ${need[*]} failed; last lines of $apt_log:"; tail -n 30 "$apt_log" >&2; exit 1; }
    rm -f /usr/sbin/policy-rc.d
fi
id gpurun-test >/dev/null 2>&1 || useradd -m -s /bin/bash gpurun-test || id gpurun-test >/dev/null

# --- configuration ------------------------------------------------------------------------------
read -r CPUS MEM < <(slurmd -C | awk '/^NodeName/ {for (i = 1; i <= NF; i++) { split($i, kv, "=");
    if (kv[1] == "CPUs") c = kv[2]; if (kv[1] == "RealMemory") m = kv[2] } } END { print c, m }')
MEM=$((MEM * 9 / 10))
# `srun -n 4` must fit on a 2-core CI machine: advertise at least 8 CPUs (config_overrides lets
# slurmd accept more than it finds). The tests' tasks mostly wait, so oversubscription is fine.
[ "$CPUS" -ge 8 ] || CPUS=8
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/slurm /run/munge
chown slurm:slurm /var/spool/slurmctld /var/log/slurm /run/slurm
conf=$(cat <<EOF
# Written by rootfs-tests/hpc/setup.sh: a single-node test cluster.
ClusterName=gpurun
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
KillWait=5
SlurmdParameters=config_overrides
InactiveLimit=0
MinJobAge=300
MaxArraySize=1001
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
NodeName=$HOST NodeAddr=127.0.0.1 NodeHostname=$HOST CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8
EOF
)
dbdconf=$(cat <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
PidFile=/run/slurm/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=gpurun-test-only
StorageLoc=slurm_acct_db
EOF
)
changed=0
if [ "$(cat /etc/slurm/slurm.conf 2>/dev/null)" != "$conf" ]; then
    printf '%s\n' "$conf" >/etc/slurm/slurm.conf
    changed=1
fi
if [ "$(cat /etc/slurm/slurmdbd.conf 2>/dev/null)" != "$dbdconf" ]; then
    printf '%s\n' "$dbdconf" >/etc/slurm/slurmdbd.conf
    changed=1
fi
chown slurm:slurm /etc/slurm/slurmdbd.conf
chmod 600 /etc/slurm/slurmdbd.conf
chmod 644 /etc/slurm/slurm.conf

idle() { sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; }
if [ $changed = 0 ] && idle && sacct -n -X -S now >/dev/null 2>&1; then
    log "cluster already up: $(sinfo -h -N -o '%N %T %c')"
    exit 0
fi

# --- daemons --------------------------------------------------------------------------------------
sql() { mariadb --socket=/run/mysqld/mysqld.sock "$@"; }
if ! alive /run/mysqld/mysqld.pid mariadbd || ! sql -e 'select 1' >/dev/null 2>&1; then
    log "starting MariaDB"
    mkdir -p /run/mysqld /var/log/mysql && chown mysql:mysql /run/mysqld /var/log/mysql
    [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >/dev/null
    # The server's own log goes to a file (Debian's default is syslog, which is not running here).
    # No TCP port: slurmdbd reaches it through the socket ("localhost"), and a port could clash
    # with another server of the machine's network.
    (setsid mariadbd-safe --user=mysql --skip-networking --skip-syslog \
        --log-error=/var/log/mysql/gpurun-mariadb.err --pid-file=/run/mysqld/mysqld.pid --socket=/run/mysqld/mysqld.sock \
        </dev/null >/var/log/slurm/mariadb.out 2>&1 &)
    started /run/mysqld/mysqld.pid
    wait_for MariaDB /var/log/mysql/gpurun-mariadb.err sql -e 'select 1'
fi
sql -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'gpurun-test-only';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"

if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
mkdir -p /var/log/munge /var/lib/munge
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
if ! alive /run/munge/munged.pid munged; then
    log "starting munged"
    rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    runuser -u munge -- /usr/sbin/munged --origin=127.0.0.1
    started /run/munge/munged.pid
    wait_for munged /var/log/munge/munged.log bash -c 'munge -n | unmunge'
fi

if [ $changed = 1 ]; then stop /run/slurm/slurmd.pid; stop /run/slurm/slurmctld.pid; stop /run/slurm/slurmdbd.pid; fi
if ! alive /run/slurm/slurmdbd.pid slurmdbd; then
    log "starting slurmdbd"
    /usr/sbin/slurmdbd
    started /run/slurm/slurmdbd.pid
    wait_for slurmdbd /var/log/slurm/slurmdbd.log sacctmgr -n show cluster
fi
sacctmgr -i -n show cluster gpurun | grep -q gpurun || sacctmgr -i -n add cluster gpurun >/dev/null
if ! alive /run/slurm/slurmctld.pid slurmctld; then
    log "starting slurmctld"
    /usr/sbin/slurmctld
    started /run/slurm/slurmctld.pid
    wait_for slurmctld /var/log/slurm/slurmctld.log scontrol ping
fi
if ! alive /run/slurm/slurmd.pid slurmd; then
    log "starting slurmd"
    /usr/sbin/slurmd
    started /run/slurm/slurmd.pid
fi
for _ in $(seq "$WAIT"); do
    idle && break
    # A node left down by an earlier run comes back here.
    scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
    sleep 1
done
if ! idle; then
    log "node not idle within ${WAIT}s: $(sinfo -h -N -o '%N %T %E' 2>&1); last lines of slurmd.log and slurmctld.log:"
    tail -n 10 /var/log/slurm/slurmd.log /var/log/slurm/slurmctld.log >&2
    exit 1
fi
wait_for sacct /var/log/slurm/slurmdbd.log sacct -n -X -S now
log "cluster up: $(sinfo -h -N -o '%N %T %c') ; srun --mpi=list: $(srun --mpi=list 2>&1 | tr '\n' ' ')"
