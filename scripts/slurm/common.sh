# shellcheck shell=bash disable=SC2034  # the variables are used by the scripts that source this file
# Shared settings and helpers for scripts/slurm/up.sh and scripts/slurm/down.sh (sourced, not run).
#
# Every path, port and name of the loopback test cluster is defined here, so up.sh and down.sh agree.
# Environment overrides (all optional):
#   R1ZERO_SLURM_DIR          private state dir (configs, MariaDB data, pid files, logs) [/tmp/r1zero-slurm]
#   R1ZERO_SLURM_PORT_BASE    slurmctld listens on BASE, slurmd on BASE+1, slurmdbd on BASE+2,
#                             MariaDB on BASE+3 (all on 127.0.0.1; non-default ports) [16817]
#   R1ZERO_SLURM_CPUS         CPUs of the one node [nproc]
#   R1ZERO_SLURM_MEM_MB       RealMemory of the node in MB [MemTotal minus 5%]
#   R1ZERO_SLURM_TIMEOUT      seconds each wait may take before it is an error [60]

R1ZERO_SLURM_DIR="${R1ZERO_SLURM_DIR:-/tmp/r1zero-slurm}"
SD="$R1ZERO_SLURM_DIR"
PORT_BASE="${R1ZERO_SLURM_PORT_BASE:-16817}"
CTLD_PORT=$((PORT_BASE))
SLURMD_PORT=$((PORT_BASE + 1))
DBD_PORT=$((PORT_BASE + 2))
MYSQL_PORT=$((PORT_BASE + 3))
WAIT_S="${R1ZERO_SLURM_TIMEOUT:-60}"

CLUSTER=r1zero          # ClusterName, also the sacctmgr cluster
ACCOUNT=r1zero          # sacctmgr account root is added to
PARTITION=r1zero        # the only partition (conf/hydra/launcher/slurm_local.yaml uses it)
NODE=r1zero-node        # the only node; slurmd is started with -N $NODE

ETC="$SD/etc"
PIDS="$SD/pids"          # our pid files: the PID of each daemon as started by up.sh
LOGS="$SD/log"
MUNGE_DIR="$SD/munge"    # must be mode 755 (munged refuses a group/world-writable socket dir)
MUNGE_SOCK="$MUNGE_DIR/munge.socket.2"
MYSQL_DIR="$SD/mysql"
MYSQL_SOCK="$MYSQL_DIR/mysqld.sock"
STATE="$SD/state"

export SLURM_CONF="$ETC/slurm.conf"

# Start order; down.sh stops in reverse.
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

msg() { echo "[r1zero-slurm] $*" >&2; }

# die MESSAGE [LOGFILE...]: print the message and the tail of each log, exit 1.
die() {
  local m="$1"; shift
  echo "[r1zero-slurm] ERROR: $m" >&2
  local f
  for f in "$@"; do
    if [[ -f "$f" ]]; then
      echo "----- last 40 lines of $f -----" >&2
      tail -n 40 "$f" >&2 || true
    fi
  done
  exit 1
}

require_root() {
  if [[ "$(id -u)" -ne 0 ]]; then
    echo "[r1zero-slurm] ERROR: $(basename "$0") must run as root" \
      "(the test cluster's packages and daemons need root)" >&2
    exit 77
  fi
}

pid_of() {  # pid_of NAME -> recorded pid, or empty
  local f="$PIDS/$1.pid"
  if [[ -f "$f" ]]; then cat "$f" 2>/dev/null || true; fi
}

alive() {  # alive PID: the process exists and is not a zombie
  local pid="$1"
  [[ -n "$pid" && -d "/proc/$pid" ]] || return 1
  local state
  state="$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)"
  [[ -n "$state" && "$state" != Z ]]
}

daemon_alive() { alive "$(pid_of "$1")"; }

# Slurm client command with a hard time limit (a client may block on a dead controller).
sl() { timeout 15 "$@"; }
