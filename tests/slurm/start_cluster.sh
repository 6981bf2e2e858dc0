#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine, for testing the `slurm/` profile.
#
# The node is this host (`hostname -s`), is also the controller, advertises
# OKAPI_SLURM_CPUS CPUs, OKAPI_SLURM_MEMORY_MB of memory and OKAPI_SLURM_GPUS fake
# GPUs whatever the machine really has, and has two partitions: `cpu` (the default)
# and `gpu`. No systemd, no accounting database; the daemons run as root and keep
# their state and logs in OKAPI_SLURM_STATE (default /tmp/okapi-slurm).
#
# Needs root and the Debian packages: slurmctld slurmd slurm-client munge.
# The configuration goes to /etc/slurm/ because SLURM jobs do not see SLURM_CONF.
# Stop with tests/slurm/stop_cluster.sh.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
state="${OKAPI_SLURM_STATE:-/tmp/okapi-slurm}"
# By default a small GPU node: 8 CPUs, 16 GB and one GPU, which the demo must fit.
cpus="${OKAPI_SLURM_CPUS:-8}"
memory_mb="${OKAPI_SLURM_MEMORY_MB:-16000}"
gpus="${OKAPI_SLURM_GPUS:-1}"
host="$(hostname -s)"
marker="# okapi-pipeline test cluster"

if [[ $EUID -ne 0 ]]; then
    echo "start_cluster.sh: must run as root (it writes /etc/slurm and starts daemons)" >&2
    exit 1
fi
for program in munged slurmctld slurmd sbatch squeue scontrol; do
    if ! command -v "$program" >/dev/null; then
        echo "start_cluster.sh: $program not found; apt-get install -y slurmctld slurmd slurm-client munge" >&2
        exit 1
    fi
done
for file in /etc/slurm/slurm.conf /etc/slurm/gres.conf; do
    if [[ -e $file ]] && ! head -n 1 "$file" | grep -q "^$marker"; then
        echo "start_cluster.sh: $file exists and is not ours; refusing to overwrite it" >&2
        exit 1
    fi
done

# A cluster left over from an interrupted run is stopped first.
if [[ -e /etc/slurm/slurm.conf ]]; then
    "$here/stop_cluster.sh" >/dev/null 2>&1 || true
fi

mkdir -p "$state/slurmctld" "$state/slurmd" "$state/dev"
for ((i = 0; i < gpus; i++)); do
    ln -sf /dev/null "$state/dev/gpu$i"
done

# munge: authentication between the SLURM commands and daemons.
if ! pgrep -x munged >/dev/null; then
    if [[ ! -s /etc/munge/munge.key ]]; then
        mungekey --create --keyfile=/etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key
        chmod 600 /etc/munge/munge.key
    fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    runuser -u munge -- munged
    touch "$state/started-munged"
fi

render() {
    sed -e "s|@HOST@|$host|g" -e "s|@STATE@|$state|g" -e "s|@CPUS@|$cpus|g" \
        -e "s|@MEMORY_MB@|$memory_mb|g" -e "s|@GPUS@|$gpus|g" -e "s|@LAST_GPU@|$((gpus - 1))|g" "$1"
}
mkdir -p /etc/slurm
render "$here/slurm.conf.in" >/etc/slurm/slurm.conf
render "$here/gres.conf.in" >/etc/slurm/gres.conf

# -c: start from a clean controller state (no jobs from an earlier cluster).
slurmctld -c
slurmd

for _ in $(seq 60); do
    node_state="$(sinfo -h -n "$host" -o %T 2>/dev/null | head -n 1 || true)"
    case "$node_state" in
        idle*|mixed*|allocated*)
            echo "SLURM test cluster up: node $host ($cpus CPUs, $memory_mb MB, $gpus GPUs), state in $state"
            exit 0
            ;;
        down*|drain*)
            scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
            ;;
    esac
    sleep 1
done
echo "start_cluster.sh: node $host did not become idle; see $state/slurmctld.log and $state/slurmd.log" >&2
sinfo -N -l >&2 || true
exit 1
