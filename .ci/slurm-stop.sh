#!/usr/bin/env bash
# Stop the cluster .ci/slurm-setup.sh started: cancel its jobs, stop every daemon by its pid
# file, kill what is left in the nodes' network namespaces (job steps outlive slurmd), remove
# the namespaces and the bridge. Leaves nothing running. Keeps $ROOT (state, accounting
# database, keys) so the next setup is quick; `--purge` removes it too.
#
#   bash .ci/slurm-stop.sh [--purge]
set -uo pipefail

ROOT="${NEURO_SLURM_ROOT:-/var/lib/neuro-slurm}"
export SLURM_CONF="$ROOT/etc/slurm.conf"

say() { echo "slurm-stop: $*" >&2; }
stop_pidfile() {  # stop_pidfile NAME FILE: TERM, wait up to 10 s, then KILL
    local f=$2 pid
    [ -f "$f" ] || return 0
    pid=$(cat "$f" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        say "stopping $1 (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            say "$1 did not stop in 10 s: killing it"; kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$f"
}

nodes=()
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^nsl-'); do nodes+=("${ns#nsl-}"); done

# the jobs first, while slurmctld and the slurmds can still end them cleanly
if [ -f "$ROOT/run/slurmctld.pid" ] && timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP'; then
    if [ -n "$(squeue -h -o %i 2>/dev/null)" ]; then
        say "cancelling the cluster's jobs"
        # every job of every user: -u takes a list, so name the users that have jobs
        scancel -u "$(squeue -h -o %u | sort -u | paste -sd,)" 2>/dev/null || true
        for _ in $(seq 100); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.1; done
    fi
fi

stop_pidfile slurmrestd "$ROOT/run/slurmrestd.pid"
# slurmctld before the slurmds: the other way round its shutdown waits 5 s on messages to them
stop_pidfile slurmctld "$ROOT/run/slurmctld.pid"
for n in "${nodes[@]}"; do stop_pidfile "slurmd $n" "$ROOT/run/slurmd-$n.pid"; done
for f in "$ROOT"/run/slurmd-*.pid; do [ -e "$f" ] && stop_pidfile "slurmd $(basename "$f" .pid)" "$f"; done
stop_pidfile slurmdbd "$ROOT/run/slurmdbd.pid"
stop_pidfile mariadbd "$ROOT/mysql/mysqld.pid"
stop_pidfile munged "$ROOT/munge/munged.pid"

# whatever still runs on a node (slurmstepd and job processes outlive slurmd), then its network
for n in "${nodes[@]}"; do
    pids=$(ip netns pids "nsl-$n" 2>/dev/null | tr '\n' ' ')
    if [ -n "${pids// /}" ]; then
        say "killing what is left on $n: $pids"
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
        for _ in $(seq 50); do [ -z "$(ip netns pids "nsl-$n" 2>/dev/null)" ] && break; sleep 0.1; done
    fi
    ip link del "nsl-$n-h" 2>/dev/null || true
    ip netns del "nsl-$n" 2>/dev/null || true
done
ip link del nslbr0 2>/dev/null || true
# empty job cgroups left by killed steps (rmdir only removes empty directories)
for d in /sys/fs/cgroup/*/slurm; do
    [ -d "$d" ] && find "$d" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null
done
if [ "${1:-}" = --purge ]; then
    say "removing $ROOT"; rm -rf "$ROOT"
fi
exit 0
