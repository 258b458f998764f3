#!/bin/bash
# A single-node Slurm cluster on this machine for rootfs-tests/hpc.rs and examples/slurm: installs
# Debian's slurm-wlm, slurmdbd, munge, MariaDB and Open MPI (as root, when missing), writes
# slurm.conf for the real hostname and what `slurmd -C` reports, and starts MariaDB, munged,
# slurmdbd, slurmctld and slurmd as plain background daemons (no systemd here). Idempotent:
# when the node is already idle with this configuration it only says so. Prints the node state.
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
set -euo pipefail

log() { echo "hpc/setup: $*" >&2; }
[ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }

HOST=$(hostname -s)
need=()
for pkg in slurm-wlm slurmdbd munge mariadb-server openmpi-bin libopenmpi-dev umoci busybox-static; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Keep Debian's maintainer scripts from starting daemons; this script starts them itself.
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null || {
        apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
    }
    rm -f /usr/sbin/policy-rc.d
fi
id gpurun-test >/dev/null 2>&1 || useradd -m -s /bin/bash gpurun-test

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
SlurmctldHost=$HOST
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
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
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
running() { pgrep -x "$1" >/dev/null; }
wait_for() { # what, command...
    local what=$1; shift
    for _ in $(seq 60); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
    log "$what did not come up"; return 1
}
if ! running mariadbd && ! running mysqld; then
    log "starting MariaDB"
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >/dev/null
    (setsid mariadbd-safe --user=mysql </dev/null >/var/log/slurm/mariadb.out 2>&1 &)
    wait_for MariaDB mariadb -e 'select 1'
fi
mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'gpurun-test-only';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"

if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
if ! running munged; then
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged
    wait_for munged bash -c 'munge -n | unmunge'
fi

restart() { # daemon
    if running "$1"; then pkill -x "$1" || true; for _ in $(seq 20); do running "$1" || break; sleep 0.5; done; fi
}
if [ $changed = 1 ]; then restart slurmd; restart slurmctld; restart slurmdbd; fi
if ! running slurmdbd; then
    log "starting slurmdbd"
    /usr/sbin/slurmdbd
    wait_for slurmdbd bash -c 'sacctmgr -n show cluster'
fi
sacctmgr -i -n show cluster gpurun | grep -q gpurun || sacctmgr -i -n add cluster gpurun >/dev/null
if ! running slurmctld; then
    log "starting slurmctld"
    /usr/sbin/slurmctld
    wait_for slurmctld scontrol ping
fi
if ! running slurmd; then
    log "starting slurmd"
    /usr/sbin/slurmd
fi
for _ in $(seq 60); do
    idle && break
    # A node left down by an earlier run comes back here.
    scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
    sleep 1
done
idle || { log "node not idle: $(sinfo -h -N -o '%N %T %E')"; tail -5 /var/log/slurm/slurmd.log >&2; exit 1; }
wait_for sacct sacct -n -X -S now
log "cluster up: $(sinfo -h -N -o '%N %T %c') ; srun --mpi=list: $(srun --mpi=list 2>&1 | tr '\n' ' ')"
