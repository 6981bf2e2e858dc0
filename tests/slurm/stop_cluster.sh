#!/usr/bin/env bash
# Stop the cluster started by tests/slurm/start_cluster.sh: cancel its jobs, stop
# slurmd and slurmctld (and munged if start_cluster.sh started it), remove its
# configuration from /etc/slurm. Safe to run when nothing is running. Where the
# daemons' PID files are is read from the cluster's own /etc/slurm/slurm.conf.
set -uo pipefail

conf=/etc/slurm/slurm.conf
marker="# okapi-pipeline test cluster"

if [[ ! -e $conf ]]; then
    echo "no SLURM test cluster configured"
    exit 0
fi
if ! head -n 1 "$conf" | grep -q "^$marker"; then
    echo "stop_cluster.sh: $conf is not ours; leaving it alone" >&2
    exit 1
fi

setting() {  # the value of KEY= in slurm.conf
    sed -n "s/^$1=//p" "$conf" | head -n 1
}

stop_daemon() {  # PID file, name
    local pid
    [[ -s $1 ]] || return 0
    pid="$(cat "$1")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 30); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    rm -f "$1"
    echo "stopped $2"
}

state="$(dirname "$(setting StateSaveLocation)")"
scancel --full --quiet --state=PENDING,RUNNING --user="$(id -un)" 2>/dev/null || true
stop_daemon "$(setting SlurmdPidFile)" slurmd
stop_daemon "$(setting SlurmctldPidFile)" slurmctld
if [[ -e $state/started-munged ]]; then
    stop_daemon /run/munge/munged.pid munged
    rm -f "$state/started-munged"
fi
rm -f /etc/slurm/slurm.conf /etc/slurm/gres.conf
echo "SLURM test cluster stopped"
