#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine (slurmctld + slurmd on localhost, munge auth), for
# CI and for developers who want to try `vitstudy run-grid M --backend slurm` without a real cluster.
# Needs root and Debian's packages:  apt-get install -y slurm-wlm munge
# Idempotent: running it again with the cluster up only checks that `srun hostname` works.
# Short scheduling intervals (SchedulerParameters, KillWait) keep the test suite fast.
# Stop it with:  .ci/start-slurm.sh stop
set -euo pipefail

CONF_DIR=/etc/slurm
STATE=/var/spool/slurm
HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))

if [[ "${1:-}" == "stop" ]]; then
    for d in slurmd slurmctld munged; do
        if [[ -f "/run/vitstudy-$d.pid" ]]; then kill "$(cat "/run/vitstudy-$d.pid")" 2>/dev/null || true; fi
        rm -f "/run/vitstudy-$d.pid"
    done
    exit 0
fi

command -v slurmctld >/dev/null || { echo "slurmctld not found: apt-get install -y slurm-wlm munge" >&2; exit 1; }

# munge: one key, owned by the munge user
mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
chmod 0700 /etc/munge /var/lib/munge /var/log/munge
chmod 0755 /run/munge
chmod 0400 /etc/munge/munge.key
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
    cp /run/munge/munged.pid /run/vitstudy-munged.pid 2>/dev/null || true
fi

mkdir -p "$CONF_DIR" "$STATE/ctld" "$STATE/d" /var/log/slurm
cat >"$CONF_DIR/slurm.conf.new" <<EOF
# written by vitstudy/.ci/start-slurm.sh: a one-node cluster on localhost
ClusterName=vitstudy
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# a requeued job waits cred_expire seconds before it starts again (default 120)
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1,defer_batch=0
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
KillWait=2
MinJobAge=300
MessageTimeout=20
InactiveLimit=0
SlurmdTimeout=300
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF

changed=0
if ! cmp -s "$CONF_DIR/slurm.conf.new" "$CONF_DIR/slurm.conf"; then
    mv "$CONF_DIR/slurm.conf.new" "$CONF_DIR/slurm.conf"
    changed=1
else
    rm "$CONF_DIR/slurm.conf.new"
fi

running() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
if [[ $changed == 1 ]]; then  # restart (some settings, e.g. cred_expire, are read only at startup)
    for pidfile in /run/slurmd.pid /run/slurmctld.pid; do
        if running "$pidfile"; then
            pid=$(cat "$pidfile"); kill "$pid"
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
    done
fi
if ! running /run/slurmctld.pid; then
    /usr/sbin/slurmctld -i
    cp /run/slurmctld.pid /run/vitstudy-slurmctld.pid 2>/dev/null || true
fi
if ! running /run/slurmd.pid; then
    /usr/sbin/slurmd
    cp /run/slurmd.pid /run/vitstudy-slurmd.pid 2>/dev/null || true
fi

for _ in $(seq 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then break; fi
    sleep 0.5
done
scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true
timeout 60 srun -N1 -n1 hostname
sinfo
