"""Learner strategies: where the policy lives, how its gradients are reduced and who owns the optimizer.

``strategy=`` selects one (``conf/strategy/``):

| strategy | processes | model / gradients / optimizer states | optimizer owned by |
|---|---|---|---|
| ``single`` (default) | 1 | one device | torch (``AdamW``) |
| ``ddp`` | N | replicated; gradients all-reduced (``DistributedDataParallel``) | torch, one copy per rank |
| ``zero2`` | N | params replicated; gradients + AdamW states partitioned (DeepSpeed ZeRO-2) | DeepSpeed |
| ``zero3`` | N | params, gradients, AdamW states partitioned (DeepSpeed ZeRO-3) | DeepSpeed |

The :class:`~r1zero.learner.Learner` never touches the optimizer directly; per optimizer step it calls::

    strategy.zero_grad()
    for i, micro_batch in enumerate(micro_batches):
        with strategy.accumulate(is_last=i == last):   # DDP: no_sync() except the last; DeepSpeed: boundary flag
            loss = ... forward through strategy.train_model ...
            strategy.backward(loss * strategy.loss_multiplier)
    grad_norm = strategy.clip_and_step(max_grad_norm)   # clip, optimizer step, lr-scheduler step

so the single-device path is the plain ``loss.backward()`` / ``clip_grad_norm_`` / ``optimizer.step()`` it was.

**Exact normalisation across ranks.** Every rank rolls out its own whole groups (advantages stay local) and
normalises its micro-batch losses by the *global* totals of the optimizer batch (``num_responses`` /
``num_tokens`` summed over ranks, :meth:`Strategy.all_reduce`). The sum over ranks of the per-rank losses is
then the single-process loss of the whole batch. DDP and DeepSpeed *average* gradients over the
data-parallel ranks, so the per-rank loss is multiplied by ``world_size`` (:attr:`Strategy.loss_multiplier`)
and the reduced gradient equals the single-process gradient (tested to 1e-6 in ``tests/test_distributed.py``).

**Processes.** One process per device. :func:`detect_dist_env` reads ``torchrun`` / ``deepspeed``-launcher
variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) or, inside an
``srun`` step, SLURM's (``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS``/``SLURM_NTASKS``, ``SLURM_LOCALID``; the
master is the first host of the step's node list unless ``MASTER_ADDR`` is set, the port is derived from the
job id unless ``MASTER_PORT`` is set). The process group uses NCCL on GPUs and gloo on CPU.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch

from .config import ConfigError

log = logging.getLogger(__name__)

STRATEGIES = ("single", "ddp", "zero2", "zero3")


# --------------------------------------------------------------------------------------------------
# Launch environment
# --------------------------------------------------------------------------------------------------


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
    task): the batch script of an ``--ntasks=8`` job also has ``SLURM_NTASKS=8`` but is one process.
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
        addr = env.get("MASTER_ADDR") or (first_slurm_host(nodelist) if nodelist else "127.0.0.1")
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


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    if cfg is None:
        return default
    value = cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
    return default if value is None else value


# --------------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------------


def _lr_lambda(warmup: int) -> Callable[[int], float]:
    return lambda s: min(1.0, (s + 1) / warmup) if warmup > 0 else 1.0


class Strategy:
    """One device, one process: the default, and the base class of the distributed strategies.

    Args:
        cfg: the ``strategy`` config node (``conf/strategy/*.yaml``); None means ``single``.
        env: the launch environment (default: :func:`detect_dist_env`).
    """

    name = "single"
    #: True when parameters are partitioned across ranks (ZeRO-3): a full weight needs gathering.
    shards_parameters = False

    def __init__(self, cfg: Any = None, env: DistEnv | None = None):
        self.cfg = cfg
        self.env = env or detect_dist_env()
        self.device: torch.device | None = None
        self.module: torch.nn.Module | None = None
        self.train_model: torch.nn.Module | None = None
        self.optimizer = None
        self.scheduler = None
        self.offload_reference = bool(_get(cfg, "offload_reference", False))

    # -- process -----------------------------------------------------------------------------------
    @property
    def rank(self) -> int:
        return self.env.rank

    @property
    def world_size(self) -> int:
        return self.env.world_size

    @property
    def local_rank(self) -> int:
        return self.env.local_rank

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes metrics, samples and checkpoints."""
        return self.env.rank == 0

    @property
    def distributed(self) -> bool:
        return self.env.world_size > 1

    @property
    def loss_multiplier(self) -> float:
        """Factor on every rank's loss so the (averaging) gradient reduction yields the global-sum gradient."""
        return float(self.world_size) if self.distributed else 1.0

    def resolve_device(self, requested: str = "auto") -> torch.device:
        """``auto``/``cuda`` → ``cuda:<local_rank>`` when CUDA is available (else ``cpu`` for auto)."""
        requested = str(requested)
        if requested == "auto":
            return torch.device(f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu")
        if requested == "cuda":
            return torch.device(f"cuda:{self.local_rank}")
        return torch.device(requested)

    def setup(self, device: str = "auto") -> torch.device:
        """Pick this rank's device and, when there are several processes, join the process group."""
        if self.distributed and self.name == "single":
            raise ConfigError(f"{self.world_size} processes were launched (from {self.env.source}) but strategy=single; "
                             f"use strategy=ddp, zero2 or zero3")
        self.device = self.resolve_device(device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if self.distributed:
            self._init_process_group()
        return self.device

    def _init_process_group(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            return
        e = self.env
        if e.world_size == 1 and not os.environ.get("MASTER_PORT"):
            os.environ["MASTER_PORT"] = str(_free_port())  # a 1-process group (DeepSpeed on one GPU)
        # Export what torch (env://), DeepSpeed and vLLM read, whichever launcher started us.
        os.environ.setdefault("RANK", str(e.rank))
        os.environ.setdefault("WORLD_SIZE", str(e.world_size))
        os.environ.setdefault("LOCAL_RANK", str(e.local_rank))
        os.environ.setdefault("LOCAL_WORLD_SIZE", str(e.local_world_size))
        os.environ.setdefault("MASTER_ADDR", e.master_addr or "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(e.master_port or 29500))
        backend = str(_get(self.cfg, "backend", "auto"))
        if backend == "auto":
            backend = "nccl" if self.device is not None and self.device.type == "cuda" else "gloo"
        timeout = timedelta(minutes=float(_get(self.cfg, "timeout_minutes", 30)))
        dist.init_process_group(backend=backend, init_method="env://", rank=e.rank, world_size=e.world_size,
                                timeout=timeout)
        self._owns_group = True
        log.info("rank %d/%d (local %d) joined the %s process group at %s:%s (%s)", e.rank, e.world_size,
                 e.local_rank, backend, os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"], e.source)

    def cleanup(self) -> None:
        """Leave the process group this strategy joined (idempotent)."""
        if getattr(self, "_owns_group", False):
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self._owns_group = False

    # -- model and optimizer ------------------------------------------------------------------------
    def model_init_context(self, dtype: torch.dtype | None = None, train_cfg: Any = None):
        """Context to build/load the policy in (ZeRO-3: partitioned at load time)."""
        return contextlib.nullcontext()

    def prepare(self, model: torch.nn.Module, train_cfg: Any) -> None:
        """Build AdamW + the warmup schedule for ``model`` and wrap it for training."""
        self.module = model
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            params, lr=float(train_cfg.lr), betas=tuple(train_cfg.betas),
            weight_decay=float(train_cfg.weight_decay), eps=1e-8,
        )
        warmup = int(_get(train_cfg, "warmup_steps", 0) or 0)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(warmup))
        self.train_model = self._wrap(model)

    def _wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def accumulate(self, is_last: bool):
        """Context around one micro-batch's forward + backward (``is_last``: the optimizer step's last one)."""
        return contextlib.nullcontext()

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def clip_and_step(self, max_grad_norm: float) -> float:
        """Clip the global gradient norm, step the optimizer and the lr schedule; returns the pre-clip norm."""
        grad_norm = torch.nn.utils.clip_grad_norm_(
            [p for p in self.module.parameters() if p.requires_grad], float(max_grad_norm))
        self.optimizer.step()
        self.scheduler.step()
        return float(grad_norm)

    def last_lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def gradient_vector(self) -> torch.Tensor:
        """All parameter gradients flattened into one fp32 CPU vector (tests and debugging; collective in ZeRO)."""
        return torch.cat([p.grad.detach().float().flatten().cpu() for p in self.module.parameters()
                          if p.requires_grad and p.grad is not None])

    def state_dict(self) -> dict:
        """Optimizer + scheduler state for ``trainer_state.pt`` (identical on every rank for single/DDP)."""
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("optimizer") is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])

    def save_sharded_state(self, directory) -> str | None:
        """Write per-rank state that cannot go through rank 0 (DeepSpeed optimizer partitions); collective.

        Returns the directory written, or None when there is none (single, DDP).
        """
        return None

    def load_sharded_state(self, directory) -> None:
        """Counterpart of :meth:`save_sharded_state` (no-op when the checkpoint has none)."""

    # -- reference model (KL) -----------------------------------------------------------------------
    def prepare_reference(self, ref_model: torch.nn.Module | None) -> torch.nn.Module | None:
        """Place the frozen reference policy: on this rank's device, or on CPU with ``offload_reference``."""
        if ref_model is None:
            return None
        ref_model.eval().requires_grad_(False)
        if self.offload_reference:
            ref_model.to("cpu")
        elif self.device is not None:
            ref_model.to(self.device)
        return ref_model

    @contextlib.contextmanager
    def reference_on_device(self, ref_model: torch.nn.Module):
        """With ``offload_reference``: move the reference to the device for its forward, then back to CPU."""
        if not self.offload_reference or self.device is None or self.device.type == "cpu":
            yield ref_model
            return
        ref_model.to(self.device)
        try:
            yield ref_model
        finally:
            ref_model.to("cpu")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    # -- collectives (identity in one process) ------------------------------------------------------
    def _comm_device(self) -> torch.device:
        import torch.distributed as dist

        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def all_reduce(self, values, op: str = "sum"):
        """Reduce a float, a list of floats or a tensor over ranks (``op``: sum | max | min | mean)."""
        if not self.distributed:
            return values
        import torch.distributed as dist

        is_tensor = isinstance(values, torch.Tensor)
        is_scalar = not is_tensor and not isinstance(values, (list, tuple))
        t = values if is_tensor else torch.tensor([values] if is_scalar else list(values), dtype=torch.float64)
        buf = t.detach().to(self._comm_device(), dtype=torch.float64 if not is_tensor else t.dtype).clone()
        reduce_op = {"sum": dist.ReduceOp.SUM, "mean": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX,
                     "min": dist.ReduceOp.MIN}[op]
        dist.all_reduce(buf, op=reduce_op)
        if op == "mean":
            buf = buf / self.world_size
        if is_tensor:
            return buf.to(t.device)
        out = [float(v) for v in buf.cpu().tolist()]
        return out[0] if is_scalar else out

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any rank (so all ranks take the same branch)."""
        return bool(flag) if not self.distributed else self.all_reduce(float(bool(flag)), op="max") > 0

    def all_gather_object(self, obj) -> list:
        """Every rank's ``obj``, in rank order (``[obj]`` in one process)."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj, src: int = 0):
        if not self.distributed:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def shard(self, items: list) -> list:
        """This rank's contiguous block of ``items`` (whole questions, so their G responses stay together)."""
        if not self.distributed:
            return items
        if len(items) % self.world_size:
            raise ValueError(f"{len(items)} items cannot be split evenly over {self.world_size} ranks")
        k = len(items) // self.world_size
        return items[self.rank * k : (self.rank + 1) * k]

    # -- weights out: rollout-engine sync and saving -------------------------------------------------
    @contextlib.contextmanager
    def gathered_parameters(self):
        """Inside the context every parameter of the policy holds its full value (ZeRO-3 gathers; else no-op)."""
        yield self.module

    def named_parameters_for_sync(self) -> Iterator[tuple[str, torch.Tensor]]:
        """``(hf_name, full_tensor)`` pairs for a weight push into a rollout engine.

        A tensor is only valid until the iterator advances (ZeRO-3 gathers one module at a time and frees it
        again), so consume it lazily: copy each tensor before asking for the next. Every rank must iterate
        (ZeRO-3's gather is a collective).
        """
        yield from ((n, p.detach()) for n, p in self.module.named_parameters())

    def sync_weights(self, engine) -> None:
        """Push the current policy into ``engine`` (:meth:`RolloutEngine.sync_weights`).

        An engine whose ``sync_weights`` accepts ``weights=`` gets :meth:`named_parameters_for_sync` (bounded
        memory under ZeRO-3); otherwise, under ZeRO-3, the whole model is gathered for the call.
        """
        import inspect

        from .rollout.hf import HFRolloutEngine

        if isinstance(engine, HFRolloutEngine):  # generates with the policy module itself: nothing to push
            return
        if not self.shards_parameters:
            engine.sync_weights(self.module)
            return
        try:
            takes_iter = "weights" in inspect.signature(engine.sync_weights).parameters
        except (TypeError, ValueError):
            takes_iter = False
        if takes_iter:
            engine.sync_weights(self.module, weights=self.named_parameters_for_sync())
        else:
            with self.gathered_parameters():
                engine.sync_weights(self.module)

    def full_state_dict(self) -> dict | None:
        """A full (gathered) state dict to save on rank 0; None when ``module.state_dict()`` already is one."""
        return None

    def save_pretrained(self, model, tokenizer, directory) -> None:
        """Rank 0 writes ``model`` (HF format) + ``tokenizer``; collective under ZeRO-3 (call on every rank)."""
        state = self.full_state_dict()
        if self.is_main:
            if state is not None:
                model.save_pretrained(directory, state_dict=state)
            else:
                model.save_pretrained(directory)
            tokenizer.save_pretrained(directory)
        self.barrier()


SingleDeviceStrategy = Strategy


class DDPStrategy(Strategy):
    """torch ``DistributedDataParallel``: a full replica per rank, one gradient all-reduce per optimizer step.

    Every micro-batch but the last runs under ``no_sync()``, so the all-reduce happens once, on the
    accumulated gradient (and the number of micro-batches may differ between ranks).
    """

    name = "ddp"

    def _wrap(self, model):
        from torch.nn.parallel import DistributedDataParallel as DDP

        if not self.distributed:
            return model  # one process: DDP would only add overhead
        ids = [self.device.index] if self.device is not None and self.device.type == "cuda" else None
        return DDP(
            model, device_ids=ids, output_device=ids[0] if ids else None,
            find_unused_parameters=bool(_get(self.cfg, "find_unused_parameters", False)),
            bucket_cap_mb=float(_get(self.cfg, "bucket_cap_mb", 25)),
            gradient_as_bucket_view=bool(_get(self.cfg, "gradient_as_bucket_view", True)),
        )

    def accumulate(self, is_last: bool):
        if self.distributed and not is_last:
            return self.train_model.no_sync()
        return contextlib.nullcontext()


class DeepSpeedStrategy(Strategy):
    """DeepSpeed ZeRO stage 2 or 3; DeepSpeed owns the optimizer (AdamW, fp32 master weights in bf16 runs).

    ``offload_optimizer`` moves AdamW states + fp32 master weights to CPU (DeepSpeedCPUAdam, a C++ op built
    on first use); ``offload_param`` (stage 3) keeps the partitioned parameters on CPU between uses.
    ``ds_config`` entries override the generated DeepSpeed config key by key.
    """

    name = "zero2"

    def __init__(self, cfg: Any = None, env: DistEnv | None = None):
        super().__init__(cfg, env)
        self.stage = int(_get(cfg, "stage", 3 if _get(cfg, "name") == "zero3" else 2))
        if self.stage not in (2, 3):
            raise ConfigError(f"strategy.stage must be 2 or 3, got {self.stage}")
        self.name = f"zero{self.stage}"
        self.shards_parameters = self.stage == 3
        self.offload_optimizer = bool(_get(cfg, "offload_optimizer", False))
        self.offload_param = bool(_get(cfg, "offload_param", False))
        if self.offload_param and self.stage != 3:
            raise ConfigError("strategy.offload_param needs ZeRO stage 3 (strategy=zero3)")
        self.engine = None
        self.ds_config: dict | None = None
        self._hf_ds_config = None  # keeps transformers' zero3 switch alive (zero.Init at load, synced generate)

    @staticmethod
    def import_deepspeed():
        try:
            import deepspeed
        except Exception as err:  # noqa: BLE001  (ImportError, or a broken CUDA-extension build raising on import)
            raise ImportError(
                f"strategy=zero2/zero3 needs DeepSpeed, which is not importable here ({type(err).__name__}: {err}); "
                f"`pip install -e .[deepspeed]` (on a GPU machine, with your CUDA build of torch installed first)"
            ) from None
        return deepspeed

    def setup(self, device: str = "auto") -> torch.device:
        self.import_deepspeed()
        dev = super().setup(device)
        self._init_process_group()  # DeepSpeed needs a process group even with one process (e.g. ZeRO-Offload on 1 GPU)
        return dev

    def build_config(self, train_cfg: Any, dtype: torch.dtype | None) -> dict:
        """The DeepSpeed config dict for this strategy and the ``train`` node."""
        micro = int(_get(train_cfg, "micro_batch_size", 1))
        zero: dict[str, Any] = {
            "stage": self.stage,
            "overlap_comm": bool(_get(self.cfg, "overlap_comm", True)),
            "contiguous_gradients": True,
            "reduce_bucket_size": int(float(_get(self.cfg, "reduce_bucket_size", 5e8))),
            "allgather_bucket_size": int(float(_get(self.cfg, "allgather_bucket_size", 5e8))),
        }
        if self.stage == 3:
            zero.update({
                "stage3_prefetch_bucket_size": int(float(_get(self.cfg, "stage3_prefetch_bucket_size", 5e7))),
                "stage3_param_persistence_threshold": int(float(_get(self.cfg, "stage3_param_persistence_threshold", 1e5))),
                "stage3_max_live_parameters": int(float(_get(self.cfg, "stage3_max_live_parameters", 1e9))),
                "stage3_gather_16bit_weights_on_model_save": True,
            })
        pin = bool(_get(self.cfg, "pin_memory", True))
        if self.offload_optimizer:
            zero["offload_optimizer"] = {"device": "cpu", "pin_memory": pin}
        if self.offload_param:
            zero["offload_param"] = {"device": "cpu", "pin_memory": pin}
        cfg: dict[str, Any] = {
            "train_micro_batch_size_per_gpu": micro,
            "gradient_accumulation_steps": 1,  # the Learner marks the accumulation boundary itself
            "train_batch_size": micro * self.world_size,
            "gradient_clipping": float(_get(train_cfg, "max_grad_norm", 1.0)),
            "zero_optimization": zero,
            "bf16": {"enabled": dtype == torch.bfloat16},
            "fp16": {"enabled": dtype == torch.float16},
            "optimizer": {"type": "AdamW", "params": {
                "lr": float(_get(train_cfg, "lr", 1e-6)), "betas": list(_get(train_cfg, "betas", [0.9, 0.95])),
                "eps": 1e-8, "weight_decay": float(_get(train_cfg, "weight_decay", 0.0)),
                # torch.optim.AdamW: no op to build. With offload, DeepSpeedCPUAdam is required instead.
                **({} if self.offload_optimizer else {"torch_adam": bool(_get(self.cfg, "torch_adam", True))}),
            }},
            "zero_allow_untested_optimizer": True,
            "steps_per_print": 10**9,
            "wall_clock_breakdown": False,
        }
        return _deep_merge(cfg, _to_dict(_get(self.cfg, "ds_config", {})))

    def model_init_context(self, dtype=None, train_cfg=None):
        """ZeRO-3: tell transformers (``HfDeepSpeedConfig``) so ``from_pretrained`` loads partitioned
        (``zero.Init``) and ``generate`` runs with ``synced_gpus`` across ranks."""
        if self.stage == 3 and train_cfg is not None:
            from transformers.integrations import HfDeepSpeedConfig

            self.ds_config = self.build_config(train_cfg, dtype)
            self._hf_ds_config = HfDeepSpeedConfig(self.ds_config)
        return contextlib.nullcontext()

    def prepare(self, model, train_cfg) -> None:
        deepspeed = self.import_deepspeed()
        dtype = next(model.parameters()).dtype
        self.ds_config = self.ds_config or self.build_config(train_cfg, dtype)
        if self.stage == 3 and self._hf_ds_config is None:
            from transformers.integrations import HfDeepSpeedConfig

            self._hf_ds_config = HfDeepSpeedConfig(self.ds_config)
        warmup = int(_get(train_cfg, "warmup_steps", 0) or 0)
        params = [p for p in model.parameters() if p.requires_grad]
        engine, optimizer, _, scheduler = deepspeed.initialize(
            model=model, model_parameters=params, config=self.ds_config, dist_init_required=False,
            lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(warmup)),
        )
        self.engine, self.optimizer, self.scheduler = engine, optimizer, scheduler
        self.module, self.train_model = engine.module, engine

    def accumulate(self, is_last: bool):
        # Reduce (and, at the step, update) only at the optimizer batch's last micro-batch.
        self.engine.set_gradient_accumulation_boundary(bool(is_last))
        return contextlib.nullcontext()

    def zero_grad(self) -> None:
        self.engine.zero_grad()

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss, scale_wrt_gas=False)

    def clip_and_step(self, max_grad_norm: float) -> float:
        # gradient_clipping in the DeepSpeed config clips by the global norm (max_grad_norm); the engine steps
        # the optimizer and the lr schedule at the boundary.
        self.engine.set_gradient_accumulation_boundary(True)
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    def gradient_vector(self) -> torch.Tensor:
        from deepspeed.utils import safe_get_full_grad

        out = []
        for p in self.module.parameters():
            if p.requires_grad:
                g = safe_get_full_grad(p)
                if g is not None:
                    out.append(g.detach().float().flatten().cpu())
        return torch.cat(out)

    def state_dict(self) -> dict:
        # Optimizer partitions live in the sharded DeepSpeed checkpoint (save_sharded_state).
        return {"deepspeed": True}

    def load_state_dict(self, state: dict) -> None:
        pass

    def save_sharded_state(self, directory) -> str:
        directory = str(directory)
        self.engine.save_checkpoint(directory, tag="state", save_latest=False)
        return directory

    def load_sharded_state(self, directory) -> None:
        if not os.path.isdir(os.path.join(str(directory), "state")):
            log.warning("no DeepSpeed state under %s: optimizer states start fresh", directory)
            return
        self.engine.load_checkpoint(str(directory), tag="state", load_optimizer_states=True,
                                    load_lr_scheduler_states=True, load_module_strict=True)

    def prepare_reference(self, ref_model):
        if ref_model is None or self.stage != 3:
            return super().prepare_reference(ref_model)
        # ZeRO-3: partition the frozen reference too (inference-only engine), optionally offloaded to CPU.
        deepspeed = self.import_deepspeed()
        ref_model.eval().requires_grad_(False)
        cfg = {"train_micro_batch_size_per_gpu": self.ds_config["train_micro_batch_size_per_gpu"],
               "train_batch_size": self.ds_config["train_batch_size"],
               "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 1e4,
                                     **({"offload_param": {"device": "cpu", "pin_memory": True}}
                                        if self.offload_reference else {})},
               "bf16": self.ds_config["bf16"], "fp16": self.ds_config["fp16"]}
        engine, *_ = deepspeed.initialize(model=ref_model, config=cfg, dist_init_required=False)
        self._ref_engine = engine
        return engine.module

    @contextlib.contextmanager
    def reference_on_device(self, ref_model):
        if self.stage == 3:  # DeepSpeed moves (offloaded) partitions itself
            yield ref_model
            return
        with super().reference_on_device(ref_model) as m:
            yield m

    @contextlib.contextmanager
    def gathered_parameters(self):
        if self.stage != 3:
            yield self.module
            return
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(self.module.parameters()), modifier_rank=None):
            yield self.module

    def named_parameters_for_sync(self) -> Iterator[tuple[str, torch.Tensor]]:
        if self.stage != 3:
            yield from super().named_parameters_for_sync()
            return
        import deepspeed

        # One module's own parameters at a time: peak extra memory is the largest layer (the embedding).
        seen: set[int] = set()
        for mod_name, mod in self.module.named_modules():
            params = [(n, p) for n, p in mod.named_parameters(recurse=False) if id(p) not in seen]
            if not params:
                continue
            seen.update(id(p) for _, p in params)
            with deepspeed.zero.GatheredParameters([p for _, p in params], modifier_rank=None):
                for n, p in params:
                    yield (f"{mod_name}.{n}" if mod_name else n), p.detach()

    def full_state_dict(self) -> dict | None:
        if self.stage != 3:
            return None
        # Collective: every rank gathers, rank 0 keeps a CPU copy (16-bit weights as trained).
        state = {}
        for name, tensor in self.named_parameters_for_sync():
            if self.is_main:
                state[name] = tensor.detach().cpu().clone()
        if self.is_main:
            persistent = set(self.module.state_dict().keys())  # names only: non-persistent buffers are not saved
            for name, buf in self.module.named_buffers():
                if name in persistent:
                    state.setdefault(name, buf.detach().cpu().clone())
        return state if self.is_main else {}


def _to_dict(node) -> dict:
    if node is None:
        return {}
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(node):
            return OmegaConf.to_container(node, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return dict(node)


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def build_strategy(cfg: Any = None, env: DistEnv | None = None) -> Strategy:
    """The strategy named by a ``strategy`` config node (None or missing: ``single``).

    Raises:
        ConfigError: unknown ``cfg.name`` (lists the valid choices).
    """
    name = str(_get(cfg, "name", "single"))
    if name == "single":
        return Strategy(cfg, env)
    if name == "ddp":
        return DDPStrategy(cfg, env)
    if name in ("zero2", "zero3", "deepspeed"):
        return DeepSpeedStrategy(cfg, env)
    raise ConfigError(f"unknown strategy {name!r}; valid choices: {list(STRATEGIES)}")
