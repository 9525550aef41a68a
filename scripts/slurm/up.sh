#!/usr/bin/env bash
# Bring up a one-node SLURM cluster on loopback, for testing the submitit launchers
# (conf/hydra/launcher/slurm_local.yaml) and for CI (tests/test_slurm.py, marker `slurm`).
#
#   sudo scripts/slurm/up.sh                  # progress on stderr; `export ...` lines on stdout
#   eval "$(sudo scripts/slurm/up.sh)"        # ... so this sets SLURM_CONF in your shell
#   python -m r1zero.train -m hydra/launcher=slurm_local model=tiny seed=1,2
#   sudo scripts/slurm/down.sh [--purge]      # stop every daemon by PID (--purge: also delete the state dir)
#
# What it does (idempotent: if the cluster is already up and healthy it only prints the env):
#   1. installs, only if missing, Debian's slurm-wlm, slurmdbd, munge, mariadb-server (apt-get; needs root);
#   2. renders slurm.conf / slurmdbd.conf from the templates next to this script into a private state dir,
#      $R1ZERO_SLURM_DIR (default /tmp/r1zero-slurm): etc/ configs, munge/ key+socket, mysql/ MariaDB
#      datadir+socket, state/ slurm spool, pids/ our pid files, log/ every daemon's log;
#   3. starts munged, mariadbd (127.0.0.1, non-default port), slurmdbd, slurmctld, slurmd, each in
#      foreground mode (-F/-D) in the background, recording its PID in pids/<name>.pid;
#   4. registers cluster, account and root with sacctmgr;
#   5. waits until sinfo shows the node idle; writes the env to $R1ZERO_SLURM_DIR/env.sh and prints it.
# Every wait has a time limit (R1ZERO_SLURM_TIMEOUT, default 60 s); on failure it prints the log tail.
# Node size comes from the machine (CPUs = nproc, memory = MemTotal - 5%); jobs default to 2000 MB/CPU.
# See common.sh for the ports and the other overrides.
#
# Exit status: 0 up; 77 cannot run here (not root, or the packages cannot be installed); 1 any other failure.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$HERE/common.sh"

require_root

# ---------------------------------------------------------------------------------------------------------
# 1. packages
BINARIES=(munged mungekey mariadbd mariadb mariadb-install-db slurmdbd slurmctld slurmd slurmstepd
          sbatch srun sacct sacctmgr sinfo squeue scancel scontrol)
missing_bins() {
  local b out=()
  for b in "${BINARIES[@]}"; do command -v "$b" >/dev/null 2>&1 || out+=("$b"); done
  echo "${out[*]:-}"
}
install_packages() {
  if ! command -v apt-get >/dev/null 2>&1; then
    msg "ERROR: apt-get not found; install slurm-wlm slurmdbd munge mariadb-server yourself"
    exit 77
  fi
  local pkgs=(slurm-wlm slurmdbd munge mariadb-server mariadb-client)
  msg "installing ${pkgs[*]} (missing: $(missing_bins))"
  # Keep the packages' maintainer scripts from starting system-wide services (Docker images ship this file;
  # bare hosts may not): we run private daemons instead.
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; made_policy=1
  fi
  local rc=0 t0=$SECONDS
  export DEBIAN_FRONTEND=noninteractive
  if ! timeout 600 apt-get install -y --no-install-recommends "${pkgs[@]}" >"$SD/apt.log" 2>&1; then
    msg "apt-get install failed; running apt-get update and retrying"
    { timeout 300 apt-get update && timeout 600 apt-get install -y --no-install-recommends "${pkgs[@]}"; } \
      >>"$SD/apt.log" 2>&1 || rc=$?
  fi
  [[ $made_policy == 1 ]] && rm -f "$policy"
  if [[ $rc -ne 0 || -n "$(missing_bins)" ]]; then
    tail -n 20 "$SD/apt.log" >&2 || true
    msg "ERROR: cannot install the SLURM packages (rc=$rc, still missing: $(missing_bins)); see $SD/apt.log"
    exit 77
  fi
  msg "packages installed in $((SECONDS - t0)) s"
}

mkdir -p "$SD"
chmod 755 "$SD"
if [[ -n "$(missing_bins)" ]]; then install_packages; fi

# ---------------------------------------------------------------------------------------------------------
# Already up? Then only print the env.
print_env() {
  {
    echo "export SLURM_CONF=$SLURM_CONF"
    echo "export R1ZERO_SLURM_DIR=$SD"
    echo "export R1ZERO_SLURM_PARTITION=$PARTITION"
  } >"$SD/env.sh"
  cat "$SD/env.sh"
}
node_state() { sl sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -n1 || true; }

all_alive=1
any_alive=0
for d in "${DAEMONS[@]}"; do
  if daemon_alive "$d"; then any_alive=1; else all_alive=0; fi
done
if [[ $all_alive == 1 && -f "$SLURM_CONF" ]]; then
  case "$(node_state)" in
    idle|mixed|allocated|completing)
      msg "cluster already up in $SD"
      print_env
      exit 0;;
  esac
fi
if [[ $any_alive == 1 ]]; then
  msg "cluster partly up or unhealthy; restarting it"
  "$HERE/down.sh" >&2
fi

# From here on a failure stops whatever this run started (by PID, via down.sh): nothing is left half up.
cleanup_on_failure() {
  local rc=$?
  if (( rc != 0 )); then
    msg "bring-up failed (exit $rc); stopping what was started (logs stay in $LOGS)"
    "$HERE/down.sh" >&2 || true
  fi
  exit $rc
}
trap cleanup_on_failure EXIT

t_start=$SECONDS
mkdir -p "$ETC" "$PIDS" "$LOGS" "$MUNGE_DIR" "$MYSQL_DIR" "$STATE/slurmctld" "$STATE/slurmd"
chmod 755 "$ETC" "$PIDS" "$LOGS" "$MUNGE_DIR" "$MYSQL_DIR" "$STATE"

for s in "$MUNGE_SOCK" "$MYSQL_SOCK"; do
  (( ${#s} < 100 )) || die "unix socket path too long (${#s} chars): $s; use a shorter R1ZERO_SLURM_DIR"
done

# start_daemon NAME LOG CMD...: run CMD in the background (own session, stdin closed), record its PID.
start_daemon() {
  local name="$1" logf="$2"; shift 2
  # setsid: the daemon does not get the caller's signals (Ctrl-C in a test run); setsid execs (it is not a
  # process group leader here), so $! is the daemon itself.
  setsid "$@" </dev/null >>"$logf" 2>&1 &
  echo $! >"$PIDS/$name.pid"
  msg "started $name (pid $!)"
}

# wait_until NAME DESCRIPTION LOG CMD...: poll CMD every 0.2 s for $WAIT_S s; fail early if NAME died.
wait_until() {
  local name="$1" what="$2" log="$3"; shift 3
  local deadline=$((SECONDS + WAIT_S))
  until "$@" >/dev/null 2>&1; do
    daemon_alive "$name" || die "$name exited while waiting for: $what" "$log" "$LOGS/$name.out"
    (( SECONDS < deadline )) || die "timed out after ${WAIT_S}s waiting for: $what" "$log" "$LOGS/$name.out"
    sleep 0.2
  done
}

# ---------------------------------------------------------------------------------------------------------
# 2. configs
HOST="$(hostname -s)"
CPUS="${R1ZERO_SLURM_CPUS:-$(nproc)}"
MEM_MB="${R1ZERO_SLURM_MEM_MB:-$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.95}' /proc/meminfo)}"
DB_PASS_FILE="$ETC/db.pass"
if [[ ! -s "$DB_PASS_FILE" ]]; then
  (umask 077; head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DB_PASS_FILE")
fi
DB_PASS="$(cat "$DB_PASS_FILE")"

render() {  # render TEMPLATE OUT
  sed -e "s|@CLUSTER@|$CLUSTER|g" -e "s|@PARTITION@|$PARTITION|g" -e "s|@NODE@|$NODE|g" \
      -e "s|@HOST@|$HOST|g" -e "s|@CPUS@|$CPUS|g" -e "s|@MEM_MB@|$MEM_MB|g" \
      -e "s|@CTLD_PORT@|$CTLD_PORT|g" -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" -e "s|@DBD_PORT@|$DBD_PORT|g" \
      -e "s|@MYSQL_PORT@|$MYSQL_PORT|g" -e "s|@MUNGE_SOCK@|$MUNGE_SOCK|g" -e "s|@STATE@|$STATE|g" \
      -e "s|@LOGS@|$LOGS|g" -e "s|@DB_PASS@|$DB_PASS|g" "$1" >"$2"
  ! grep -n '@[A-Z_]*@' "$2" >&2 || die "unrendered placeholder in $2"
}
render "$HERE/slurm.conf.in" "$SLURM_CONF"
chmod 644 "$SLURM_CONF"
(umask 077; render "$HERE/slurmdbd.conf.in" "$ETC/slurmdbd.conf")
chmod 600 "$ETC/slurmdbd.conf"
msg "node $NODE: CPUs=$CPUS RealMemory=${MEM_MB}MB; state dir $SD"

# ---------------------------------------------------------------------------------------------------------
# 3. daemons
# munged: private key and socket.
if [[ ! -s "$MUNGE_DIR/munge.key" ]]; then
  mungekey --create --keyfile="$MUNGE_DIR/munge.key" >/dev/null 2>&1 \
    || dd if=/dev/urandom of="$MUNGE_DIR/munge.key" bs=1024 count=1 status=none
fi
chmod 400 "$MUNGE_DIR/munge.key"
rm -f "$MUNGE_SOCK" "$MUNGE_SOCK.lock"
start_daemon munged "$LOGS/munged.out" munged --foreground --force --socket="$MUNGE_SOCK" \
  --key-file="$MUNGE_DIR/munge.key" --pid-file="$MUNGE_DIR/munged.pid" \
  --log-file="$LOGS/munged.log" --seed-file="$MUNGE_DIR/munged.seed"
wait_until munged "munge socket $MUNGE_SOCK" "$LOGS/munged.log" \
  bash -c "munge -n -S '$MUNGE_SOCK' | unmunge -S '$MUNGE_SOCK'"

# MariaDB: private datadir, unix socket in the state dir, TCP on 127.0.0.1:$MYSQL_PORT.
if [[ ! -d "$MYSQL_DIR/data/mysql" ]]; then
  msg "initialising MariaDB datadir"
  rm -rf "$MYSQL_DIR/data" "$STATE/slurmctld"/*   # new accounting DB: start slurm job ids afresh too
  timeout "$WAIT_S" mariadb-install-db --no-defaults --datadir="$MYSQL_DIR/data" --user=root \
    --auth-root-authentication-method=socket --skip-test-db >"$LOGS/mariadb-install-db.log" 2>&1 \
    || die "mariadb-install-db failed" "$LOGS/mariadb-install-db.log"
fi
rm -f "$MYSQL_SOCK"
start_daemon mariadbd "$LOGS/mariadbd.out" mariadbd --no-defaults --user=root --datadir="$MYSQL_DIR/data" \
  --socket="$MYSQL_SOCK" --port="$MYSQL_PORT" --bind-address=127.0.0.1 --skip-name-resolve \
  --pid-file="$MYSQL_DIR/mariadbd.pid" --log-error="$LOGS/mariadbd.log" \
  --innodb-buffer-pool-size=64M --innodb-lock-wait-timeout=900 --innodb-use-native-aio=0 --skip-log-bin
# shellcheck disable=SC2120  # called with -e ... through wait_until
mysql_root() { timeout 15 mariadb --no-defaults --socket="$MYSQL_SOCK" -uroot "$@"; }
wait_until mariadbd "MariaDB on $MYSQL_SOCK" "$LOGS/mariadbd.log" mysql_root -e 'SELECT 1'
mysql_root <<SQL || die "creating the slurm MariaDB user failed" "$LOGS/mariadbd.log"
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON r1zero_slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON r1zero_slurm_acct_db.* TO 'slurm'@'localhost';
SQL

# slurmdbd (finds slurmdbd.conf next to $SLURM_CONF), must be reachable before slurmctld starts.
start_daemon slurmdbd "$LOGS/slurmdbd.out" slurmdbd -D
wait_until slurmdbd "slurmdbd on 127.0.0.1:$DBD_PORT" "$LOGS/slurmdbd.log" sl sacctmgr -n -P list cluster

# 4. accounting: cluster, account, root (each only if missing, so reruns are quiet).
sacctmgr_add() {  # sacctmgr_add LISTCMD... -- ADDCMD...
  local list=() add=()
  while [[ $1 != -- ]]; do list+=("$1"); shift; done; shift; add=("$@")
  if [[ -z "$(sl sacctmgr -n -P "${list[@]}" 2>/dev/null)" ]]; then
    sl sacctmgr -i "${add[@]}" >>"$LOGS/sacctmgr.log" 2>&1 \
      || die "sacctmgr ${add[*]} failed" "$LOGS/sacctmgr.log"
  fi
}
sacctmgr_add list cluster "$CLUSTER" format=cluster -- add cluster "$CLUSTER"
sacctmgr_add list account "$ACCOUNT" format=account -- add account "$ACCOUNT" cluster="$CLUSTER" \
  description=r1zero-tests organization=r1zero
sacctmgr_add list user root account="$ACCOUNT" cluster="$CLUSTER" withassoc format=user -- \
  add user root account="$ACCOUNT" cluster="$CLUSTER"

start_daemon slurmctld "$LOGS/slurmctld.out" slurmctld -D
wait_until slurmctld "slurmctld on 127.0.0.1:$CTLD_PORT" "$LOGS/slurmctld.log" sl scontrol ping
start_daemon slurmd "$LOGS/slurmd.out" slurmd -D -N "$NODE"

# 5. the node must be idle (it starts as unknown/down until slurmd registers).
deadline=$((SECONDS + WAIT_S))
until [[ "$(node_state)" == idle ]]; do
  daemon_alive slurmd || die "slurmd exited" "$LOGS/slurmd.log" "$LOGS/slurmd.out"
  daemon_alive slurmctld || die "slurmctld exited" "$LOGS/slurmctld.log" "$LOGS/slurmctld.out"
  (( SECONDS < deadline )) \
    || die "timed out after ${WAIT_S}s waiting for node $NODE to be idle (state: $(node_state))" \
    "$LOGS/slurmctld.log" "$LOGS/slurmd.log"
  sleep 0.3
done
msg "cluster up in $((SECONDS - t_start)) s: $(sl sinfo -h -o '%P %a %D %T %c' | tr '\n' ' ')"
print_env
trap - EXIT
