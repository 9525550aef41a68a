"""Where this process sits in a distributed job: rank, world size and master, from torchrun or SLURM."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job (all defaults: a single process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    master_addr: str | None = None
    master_port: int | None = None
    source: str = "single"  # single | torchrun | slurm


def first_slurm_host(nodelist: str) -> str:
    """The first host of a SLURM node list: ``gpu[07-09,12],cpu1`` → ``gpu07``; ``a,b`` → ``a``."""
    nodelist = nodelist.strip()
    m = re.match(r"^([^,\[]+)(\[([^\]]+)\])?", nodelist)
    if not m:
        raise ValueError(f"cannot parse SLURM node list {nodelist!r}")
    prefix, _, ranges = m.groups()
    if not ranges:
        return prefix
    first = ranges.split(",")[0].split("-")[0]
    return prefix + first


def _tasks_on_this_node(env: dict) -> int:
    # SLURM_TASKS_PER_NODE looks like "8(x2)" or "8,7"; SLURM_NTASKS_PER_NODE is set with --ntasks-per-node.
    raw = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE") or env.get("SLURM_NTASKS_PER_NODE")
    if not raw:
        return 1
    m = re.match(r"^(\d+)", raw)
    return int(m.group(1)) if m else 1


def detect_dist_env(environ: dict | None = None) -> DistEnv:
    """Rank and world size from ``torchrun`` / ``deepspeed`` variables, else from an ``srun`` step, else single.

    SLURM variables count only inside a job *step* (``SLURM_STEP_ID`` set, i.e. under ``srun`` or a submitit
    task): the batch script of an ``--ntasks=8`` job also has ``SLURM_NTASKS=8`` but is one process. The
    master is ``MASTER_ADDR`` if set, else 127.0.0.1 for a one-node step, else the first host of the node list.
    """
    env = dict(os.environ if environ is None else environ)
    if "RANK" in env and "WORLD_SIZE" in env:
        world = int(env["WORLD_SIZE"])
        return DistEnv(
            rank=int(env["RANK"]), world_size=world, local_rank=int(env.get("LOCAL_RANK", 0)),
            local_world_size=int(env.get("LOCAL_WORLD_SIZE", world)),
            master_addr=env.get("MASTER_ADDR"), master_port=int(env["MASTER_PORT"]) if env.get("MASTER_PORT") else None,
            source="torchrun",
        )
    ntasks = env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS")
    in_step = "SLURM_STEP_ID" in env or "SLURM_STEPID" in env
    if in_step and "SLURM_PROCID" in env and ntasks and int(ntasks) > 1:
        nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or ""
        nodes = env.get("SLURM_STEP_NUM_NODES") or env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES") or "0"
        # One node: loopback, which needs no name resolution (a NodeName need not be a resolvable host).
        addr = env.get("MASTER_ADDR") or (first_slurm_host(nodelist) if nodelist and int(nodes) != 1 else "127.0.0.1")
        job = int(re.sub(r"\D", "", env.get("SLURM_JOB_ID", "0")) or 0)
        port = int(env["MASTER_PORT"]) if env.get("MASTER_PORT") else 15000 + job % 20000
        return DistEnv(
            rank=int(env["SLURM_PROCID"]), world_size=int(ntasks), local_rank=int(env.get("SLURM_LOCALID", 0)),
            local_world_size=_tasks_on_this_node(env), master_addr=addr, master_port=port, source="slurm",
        )
    return DistEnv()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
