#!/usr/bin/env bash
# A single-node SLURM on this machine, for the `slurm` tests and for trying `features --scheduler slurm`.
#
#   scripts/slurm-local.sh [start]   install (Debian: slurm-wlm, munge) if missing, configure, start, check
#   scripts/slurm-local.sh status    are munged, slurmctld and slurmd up? (exit 1 if not)
#   scripts/slurm-local.sh stop      stop slurmctld, slurmd and munged (by their pid files)
#
# Needs root (it installs packages, writes /etc/slurm/slurm.conf and starts daemons). Idempotent: running `start`
# again keeps what runs and only rewrites the config (and restarts SLURM) when the machine's CPUs or memory changed.
# It never overwrites a slurm.conf it did not write: on a machine with a real SLURM, use that one.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARK="# written by mimamo scripts/slurm-local.sh"
STATE=/var/lib/slurm-local
LOGS=/var/log/slurm
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGE_PID=/run/munge/munged.pid

die() { echo "slurm-local: $*" >&2; exit 1; }
say() { echo "slurm-local: $*"; }
alive() { [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
            && command -v sbatch >/dev/null; then
        return
    fi
    command -v apt-get >/dev/null || die "slurm-wlm and munge are missing and this is not a Debian/Ubuntu machine"
    say "installing slurm-wlm and munge (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
}

start_munge() {
    if [[ ! -s /etc/munge/munge.key ]]; then
        say "creating the munge key"
        mungekey --create --keyfile /etc/munge/munge.key
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
    if ! alive "$MUNGE_PID"; then
        say "starting munged"
        runuser -u munge -- /usr/sbin/munged
    fi
    munge -n | unmunge >/dev/null || die "munge does not work (see /var/log/munge/munged.log)"
}

# The config for this machine: its own CPUs and memory (as slurmd measures them), one partition, jobs share the node
# by cores and memory, no accounting database (job states come from squeue while slurmctld remembers them).
write_conf() {
    local node hw
    node=$(hostname -s)
    hw=$(slurmd -C | head -n 1 | sed -e 's/^NodeName=[^ ]* //')
    cat <<EOF
$MARK: a single-node SLURM for tests.
ClusterName=mimamo-local
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
# a job past its walltime is killed 5 s after SIGTERM; ended jobs stay visible to squeue for 10 minutes
KillWait=5
MinJobAge=600
InactiveLimit=0
SlurmdTimeout=60
NodeName=$node NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
# never starts a job: what a run does when its jobs stay PENDING (tests/test_slurm.py)
PartitionName=down Nodes=$node Default=NO MaxTime=INFINITE State=DOWN
EOF
}

stop_slurm() {
    local f
    for f in "$CTLD_PID" "$SLURMD_PID"; do
        if alive "$f"; then
            kill "$(cat "$f")"
            for _ in $(seq 50); do alive "$f" || break; sleep 0.2; done
        fi
    done
}

start() {
    [[ $(id -u) == 0 ]] || die "run as root (it installs packages, writes $CONF and starts daemons)"
    install_packages
    start_munge
    if [[ -e "$CONF" ]] && ! grep -qF "$MARK" "$CONF"; then
        die "$CONF was not written by this script: this machine has its own SLURM; use it (or move that file away)"
    fi
    local new
    new=$(write_conf)
    if [[ ! -e "$CONF" ]] || [[ "$new" != "$(cat "$CONF")" ]]; then
        say "writing $CONF"
        stop_slurm
        mkdir -p /etc/slurm
        printf '%s\n' "$new" > "$CONF"
    fi
    mkdir -p "$STATE/ctld" "$STATE/slurmd" "$LOGS"
    alive "$CTLD_PID" || { say "starting slurmctld"; slurmctld; }
    alive "$SLURMD_PID" || { say "starting slurmd"; slurmd; }
    local node state=""
    node=$(hostname -s)
    for _ in $(seq 60); do
        state=$(sinfo -h -n "$node" -o %T 2>/dev/null || true)
        [[ "$state" == idle* || "$state" == mix* || "$state" == alloc* ]] && break
        if [[ "$state" == down* || "$state" == drain* ]]; then
            scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 || true
        fi
        sleep 1
    done
    [[ "$state" == idle* || "$state" == mix* || "$state" == alloc* ]] \
        || die "node $node is '${state:-unknown}' (see $LOGS/slurmctld.log and $LOGS/slurmd.log)"
    local out log
    log=$(mktemp /tmp/slurm-local-check.XXXXXX)
    out=$(cd /tmp && timeout 120 sbatch --wait --quiet --output="$log" --wrap hostname 2>&1) \
        || die "the check job failed: $out $(cat "$log")"
    out=$(cat "$log"); rm -f "$log"
    say "up: node $node ($(sinfo -h -n "$node" -o '%c CPUs, %m MB')), partition debug; check job ran on '$out'"
}

status() {
    local ok=0 f
    for f in "$MUNGE_PID:munged" "$CTLD_PID:slurmctld" "$SLURMD_PID:slurmd"; do
        if alive "${f%%:*}"; then echo "${f##*:}: running (pid $(cat "${f%%:*}"))"; else echo "${f##*:}: stopped"; ok=1; fi
    done
    [[ $ok == 0 ]] && sinfo
    return $ok
}

stop() {
    stop_slurm
    if alive "$MUNGE_PID"; then kill "$(cat "$MUNGE_PID")"; fi
    say "stopped"
}

case "${1:-start}" in
    start) start ;;
    status) status ;;
    stop) stop ;;
    *) die "usage: $0 [start|status|stop]" ;;
esac
