#!/usr/bin/env bash
# Stop the single-node SLURM cluster started by scripts/slurm-up.sh, by the PIDs it recorded,
# and remove its private configuration ($STATE/etc). The system's /etc/slurm is never touched.
#   --keep-munge   leave munged and the configuration (used by slurm-up.sh when the configuration changed)
set -uo pipefail
STATE=${SLURM_TEST_STATE:-/var/lib/lnstab-slurm}
daemons="slurmd slurmctld"
[ "${1:-}" = "--keep-munge" ] || daemons="$daemons munged"
for d in $daemons; do
    pidfile="$STATE/run/$d.pid"
    [ -s "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$pidfile"
done
if [ "${1:-}" != "--keep-munge" ]; then
    rm -rf "$STATE/etc"
fi
exit 0
