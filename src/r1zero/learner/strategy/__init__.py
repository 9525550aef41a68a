"""Learner strategies: where the policy lives, how its gradients are reduced and who owns the optimizer.

``strategy=`` selects one (``conf/strategy/``):

| strategy | processes | model / gradients / optimizer states | optimizer owned by |
|---|---|---|---|
| ``single`` (default) | 1 | one device | torch (``AdamW``) |
| ``ddp`` | N | replicated; gradients all-reduced (``DistributedDataParallel``) | torch, one copy per rank |
| ``zero2`` | N | params replicated; gradients + AdamW states partitioned (DeepSpeed ZeRO-2) | DeepSpeed |
| ``zero3`` | N | params, gradients, AdamW states partitioned (DeepSpeed ZeRO-3) | DeepSpeed |

The :class:`~r1zero.learner.learner.Learner` never touches the optimizer directly; per optimizer step it calls::

    strategy.zero_grad()
    for i, micro_batch in enumerate(micro_batches):
        with strategy.accumulate(is_last=i == last):   # DDP: no_sync() except the last; DeepSpeed: boundary flag
            loss = ... forward through strategy.train_model ...
            strategy.backward(loss * strategy.loss_multiplier)
    grad_norm, stepped = strategy.clip_and_step(max_grad_norm, loss_finite)   # clip, optimizer + lr-schedule step

so the single-device path is the plain ``loss.backward()`` / ``clip_grad_norm_`` / ``optimizer.step()`` it was,
except that a step whose loss (on any rank) or gradient norm is not finite is skipped on every rank alike.

**Exact normalisation across ranks.** Every rank rolls out its own whole groups (advantages stay local) and
normalises its micro-batch losses by the *global* totals of the optimizer batch (``num_responses`` /
``num_tokens`` summed over ranks, :meth:`Strategy.all_reduce`). The sum over ranks of the per-rank losses is
then the single-process loss of the whole batch. DDP and DeepSpeed *average* gradients over the
data-parallel ranks, so the per-rank loss is multiplied by ``world_size`` (:attr:`Strategy.loss_multiplier`)
and the reduced gradient equals the single-process gradient (tested to 1e-6 in ``tests/test_distributed.py``).

**Precision.** With a bf16 compute ``dtype`` (``dtype=auto`` on GPU), ``single`` and ``ddp`` keep fp32
parameters and AdamW states and run forwards under ``torch.autocast`` (:meth:`Strategy.param_dtype`,
:meth:`Strategy.autocast`; ``strategy.master_weights=false`` opts out); DeepSpeed keeps its own fp32 copy.

**Processes.** One process per device. :func:`detect_dist_env` reads ``torchrun`` / ``deepspeed``-launcher
variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) or, inside an
``srun`` step, SLURM's (``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS``/``SLURM_NTASKS``, ``SLURM_LOCALID``; the
master is 127.0.0.1 in a one-node step, else the first host of the step's node list, unless ``MASTER_ADDR`` is set, the port is derived from the
job id unless ``MASTER_PORT`` is set). The process group uses NCCL on GPUs and gloo on CPU.
"""

from __future__ import annotations

from dataclasses import is_dataclass
from typing import Any

from ...schema import typed
from .base import STRATEGIES, SingleDeviceStrategy, Strategy, register_strategy
from .ddp import DDPStrategy
from .deepspeed import DeepSpeedStrategy
from .env import DistEnv, detect_dist_env, first_slurm_host

__all__ = ["STRATEGIES", "DDPStrategy", "DeepSpeedStrategy", "DistEnv", "SingleDeviceStrategy", "Strategy",
           "build_strategy", "detect_dist_env", "first_slurm_host", "register_strategy"]


def build_strategy(cfg: Any = None, env: DistEnv | None = None) -> Strategy:
    """The strategy named by a ``strategy`` config (None: ``single``), looked up in :data:`STRATEGIES` and its
    config typed by the schema registered with it.

    Raises:
        ConfigError: unknown ``cfg.name`` (lists the registered ones), or a field its schema rejects.
    """
    name = cfg.name if is_dataclass(cfg) else (cfg or {}).get("name", "single")
    entry = STRATEGIES.entry(name)
    return entry.impl(typed(entry.schema, cfg), env)
