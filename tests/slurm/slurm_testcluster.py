"""The loopback SLURM cluster for tests/slurm/test_slurm.py (marker ``slurm``).

Not a conftest.py on purpose: the other test modules do ``from conftest import ...`` and a second
conftest module would shadow tests/conftest.py. test_slurm.py's session fixture ``slurm_cluster`` is
``yield from cluster_session()``.

``cluster_session()`` brings up the one-node loopback cluster with scripts/slurm/up.sh and
tears it down with scripts/slurm/down.sh at the end of the session. It skips only when the cluster cannot
be built here (up.sh exits 77: not root, or the Debian packages cannot be installed); any other failure
is an error.

Environment:
  R1ZERO_SLURM_DIR   state dir passed to the scripts (default /tmp/r1zero-slurm)
  R1ZERO_SLURM_KEEP  1: leave the cluster running after the session (faster reruns while developing)
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts" / "slurm"
UP_TIMEOUT_S = 900  # a first run installs slurm-wlm, slurmdbd, munge, mariadb-server (~30 s here)
DOWN_TIMEOUT_S = 120


@dataclass
class SlurmCluster:
    env: dict[str, str]  # what up.sh printed: SLURM_CONF, R1ZERO_SLURM_DIR, R1ZERO_SLURM_PARTITION
    partition: str
    cpus: int  # CPUs of the one node
    up_seconds: float

    def run(self, *cmd: str, timeout: float = 20, check: bool = True) -> subprocess.CompletedProcess:
        """Run a SLURM client command (squeue, sacct, scancel, ...) against the test cluster."""
        return subprocess.run(
            list(cmd),
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )


def _parse_exports(text: str) -> dict[str, str]:
    env = {}
    for line in text.splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line[len("export ") :].partition("=")
            env[key.strip()] = shlex.split(value)[0] if value.strip() else ""
    return env


def cluster_session() -> Iterator[SlurmCluster]:
    """Generator for a session fixture: up.sh, yield the cluster, down.sh."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the loopback SLURM cluster needs Linux (Debian packages)")
    t0 = time.monotonic()
    try:
        up = subprocess.run(
            ["bash", str(SCRIPTS / "up.sh")],
            check=False,
            capture_output=True,
            text=True,
            timeout=UP_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as e:
        subprocess.run(
            ["bash", str(SCRIPTS / "down.sh")], check=False, capture_output=True, timeout=DOWN_TIMEOUT_S
        )
        pytest.fail(f"scripts/slurm/up.sh took longer than {UP_TIMEOUT_S}s:\n{e.stderr}")
    up_seconds = time.monotonic() - t0
    sys.stderr.write(up.stderr)
    if up.returncode == 77:
        reason = (up.stderr.strip().splitlines() or ["up.sh exited 77"])[-1]
        pytest.skip(f"cannot build the SLURM test cluster here: {reason}")
    if up.returncode != 0:
        subprocess.run(
            ["bash", str(SCRIPTS / "down.sh")], check=False, capture_output=True, timeout=DOWN_TIMEOUT_S
        )
        pytest.fail(f"scripts/slurm/up.sh failed (exit {up.returncode}):\n{up.stderr}\n{up.stdout}")
    env = _parse_exports(up.stdout)
    assert "SLURM_CONF" in env, f"up.sh printed no SLURM_CONF export:\n{up.stdout}"

    mp = pytest.MonkeyPatch()
    for key, value in env.items():  # submitit calls sbatch/sacct/scancel with os.environ
        mp.setenv(key, value)
    cpus = subprocess.run(
        ["sinfo", "-h", "-N", "-o", "%c"], capture_output=True, text=True, timeout=20, check=True
    ).stdout.split()
    cluster = SlurmCluster(
        env=env,
        partition=env.get("R1ZERO_SLURM_PARTITION", "r1zero"),
        cpus=int(cpus[0]),
        up_seconds=up_seconds,
    )
    print(f"\n[slurm_cluster] up in {up_seconds:.1f}s, SLURM_CONF={env['SLURM_CONF']}, {cluster.cpus} CPUs")
    try:
        yield cluster
    finally:
        mp.undo()
        if os.environ.get("R1ZERO_SLURM_KEEP") != "1":
            down = subprocess.run(
                ["bash", str(SCRIPTS / "down.sh")],
                check=False,
                capture_output=True,
                text=True,
                timeout=DOWN_TIMEOUT_S,
                stdin=subprocess.DEVNULL,
            )
            sys.stderr.write(down.stderr)
            assert down.returncode == 0, f"scripts/slurm/down.sh failed:\n{down.stderr}"
