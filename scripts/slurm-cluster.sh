#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the test suite (no systemd):
#   scripts/slurm-cluster.sh start DIR   starts munged, slurmctld and slurmd with their
#                                        state, logs and slurm.conf under DIR, waits until
#                                        the node is idle, prints `export SLURM_CONF=...`
#   scripts/slurm-cluster.sh stop DIR    stops the three daemons by their PIDs (never by name)
# Needs root (slurmd runs the jobs as the submitting user) and Debian's slurm-wlm.
set -euo pipefail

cmd="${1:?usage: slurm-cluster.sh start|stop DIR}"
DIR="$(mkdir -p "${2:?usage: slurm-cluster.sh start|stop DIR}" && cd "$2" && pwd)"

stop() {
    for name in slurmd slurmctld munged; do
        f="$DIR/$name.pid"
        [ -f "$f" ] || continue
        pid="$(cat "$f")"
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$f"
    done
}

if [ "$cmd" = stop ]; then
    stop
    exit 0
fi
[ "$cmd" = start ] || { echo "usage: slurm-cluster.sh start|stop DIR" >&2; exit 2; }

stop
HOST="$(hostname -s)"
CPUS="$(nproc)"
mkdir -p "$DIR/munge" "$DIR/state" "$DIR/spool"
chmod 755 "$DIR" "$DIR/munge"
chown munge:munge "$DIR/munge"
if [ ! -f "$DIR/munge/munge.key" ]; then
    dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    chown munge:munge "$DIR/munge/munge.key"
    chmod 400 "$DIR/munge/munge.key"
fi
cat > "$DIR/slurm.conf" <<EOF
ClusterName=autopipe-test
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
CredType=cred/munge
SlurmctldPort=16817
SlurmdPort=16818
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.txt
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/linux
MinJobAge=300
MaxArraySize=10001
MaxJobCount=100000
SchedulerParameters=sched_interval=1,bf_interval=1
KillWait=2
DefMemPerCPU=100
NodeName=$HOST CPUs=$CPUS RealMemory=20000 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F \
    --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
    --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" \
    --seed-file="$DIR/munge/munged.seed" > "$DIR/munged.out" 2>&1 &
echo $! > "$DIR/munged.pid"
for _ in $(seq 100); do [ -S "$DIR/munge/munge.socket" ] && break; sleep 0.1; done
export SLURM_CONF="$DIR/slurm.conf"
/usr/sbin/slurmctld -D -c -i -f "$SLURM_CONF" > "$DIR/slurmctld.out" 2>&1 &
echo $! > "$DIR/slurmctld.pid"
sleep 0.5
/usr/sbin/slurmd -D -f "$SLURM_CONF" > "$DIR/slurmd.out" 2>&1 &
echo $! > "$DIR/slurmd.pid"
for _ in $(seq 300); do
    state="$(sinfo -h -o %t 2>/dev/null || true)"
    case "$state" in idle*|mix*|alloc*) echo "export SLURM_CONF=$SLURM_CONF"; exit 0 ;; esac
    sleep 0.1
done
echo "slurm-cluster: the node did not become idle; logs in $DIR" >&2
tail -5 "$DIR/slurmctld.log" "$DIR/slurmd.log" >&2 || true
stop
exit 1
