#!/usr/bin/env bash
# Tear down the loopback SLURM cluster started by scripts/slurm/up.sh.
#
#   sudo scripts/slurm/down.sh            # stop everything, keep $R1ZERO_SLURM_DIR (logs, accounting DB)
#   sudo scripts/slurm/down.sh --purge    # ... and delete $R1ZERO_SLURM_DIR
#
# 1. cancels all jobs still in the queue and waits (time-limited) until slurmd has cleaned them up;
# 2. stops slurmd, slurmctld, slurmdbd, mariadbd, munged - in that order, only the PIDs up.sh recorded in
#    $R1ZERO_SLURM_DIR/pids/ - with SIGTERM, then SIGKILL after a grace period;
# 3. kills any slurmstepd left over from this cluster (found by SLURM_CONF=$SLURM_CONF in its environment).
# Safe to run when nothing is up. Exit status: 0 nothing of the cluster is left running; 1 otherwise.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$HERE/common.sh"

require_root
purge=0
[[ "${1:-}" == --purge ]] && purge=1
GRACE_S="${R1ZERO_SLURM_STOP_TIMEOUT:-15}"

# 1. jobs
if daemon_alive slurmctld && [[ -f "$SLURM_CONF" ]]; then
  if [[ -n "$(sl squeue -h -o %i 2>/dev/null)" ]]; then
    msg "cancelling queued/running jobs"
    sl scancel --full --signal=TERM --user=root >/dev/null 2>&1 || true
    sl scancel --user=root >/dev/null 2>&1 || true
    deadline=$((SECONDS + GRACE_S))
    while [[ -n "$(sl squeue -h -o %i 2>/dev/null)" ]] && (( SECONDS < deadline )); do
      sleep 0.3
    done
  fi
fi

# stop_pid NAME PID: SIGTERM, wait up to GRACE_S, SIGKILL, wait up to 5 s.
stop_pid() {
  local name="$1" pid="$2" deadline
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + GRACE_S))
  while alive "$pid" && (( SECONDS < deadline )); do sleep 0.1; done
  if alive "$pid"; then
    msg "$name (pid $pid) ignored SIGTERM for ${GRACE_S}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 5))
    while alive "$pid" && (( SECONDS < deadline )); do sleep 0.1; done
  fi
  if alive "$pid"; then msg "ERROR: $name (pid $pid) is still running"; return 1; fi
  msg "stopped $name (pid $pid)"
}

rc=0
# 2. daemons, in reverse start order
for (( i=${#DAEMONS[@]}-1; i>=0; i-- )); do
  d="${DAEMONS[$i]}"
  pid="$(pid_of "$d")"
  if [[ -n "$pid" ]]; then
    # Only a process whose command is still this daemon (a recycled PID belongs to someone else).
    if alive "$pid" && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$d"* ]]; then
      stop_pid "$d" "$pid" || rc=1
    fi
    rm -f "$PIDS/$d.pid"
  fi
done

# 3. slurmstepd processes of this cluster that outlived slurmd (normally none)
for p in /proc/[0-9]*; do
  pid="${p#/proc/}"
  [[ "$(cat "$p/comm" 2>/dev/null)" == slurmstepd ]] || continue
  if tr '\0' '\n' <"$p/environ" 2>/dev/null | grep -qx "SLURM_CONF=$SLURM_CONF"; then
    stop_pid "slurmstepd" "$pid" || rc=1
  fi
done

if (( purge )); then
  if (( rc == 0 )); then
    rm -rf "$SD" && msg "removed $SD"
  else
    msg "not removing $SD: something is still running"
  fi
fi
(( rc == 0 )) && msg "cluster down"
exit $rc
