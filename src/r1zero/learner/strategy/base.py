"""The single-device strategy, and the base class every distributed strategy overrides."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import torch

from ...model.load import unwrap
from ...schema import StrategyConfig, TrainConfig, typed
from ...schema.errors import ConfigError
from ...schema.registry import Registry
from .env import DistEnv, _free_port, detect_dist_env

log = logging.getLogger(__name__)

#: ``strategy.name`` -> the strategy class and its config schema; a strategy module registers its class with
#: :func:`register_strategy` (``r1zero.learner.strategy`` imports every strategy module).
STRATEGIES = Registry("strategy", key="strategy.name")
register_strategy = STRATEGIES.register


def _lr_lambda(warmup: int) -> Callable[[int], float]:
    return lambda s: min(1.0, (s + 1) / warmup) if warmup > 0 else 1.0


@register_strategy("single", schema=StrategyConfig)
class Strategy:
    """One device, one process: the default, and the base class of the distributed strategies.

    Args:
        cfg: the ``strategy`` config (:class:`~r1zero.schema.StrategyConfig`, or a node it types); None: ``single``.
        env: the launch environment (default: :func:`detect_dist_env`).
    """

    name = "single"
    #: True when parameters are partitioned across ranks (ZeRO-3): a full weight needs gathering.
    shards_parameters = False

    def __init__(self, cfg: Any = None, env: DistEnv | None = None):
        self.cfg = cfg = typed(StrategyConfig, cfg)
        self.env = env or detect_dist_env()
        self.device: torch.device | None = None
        self.module: torch.nn.Module | None = None
        self.train_model: torch.nn.Module | None = None
        self.optimizer = None
        self.scheduler = None
        self.offload_reference = cfg.offload_reference
        self.master_weights = cfg.master_weights
        self.compute_dtype: torch.dtype | None = None  # set by param_dtype(); autocast target when != parameters

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
        backend = self.cfg.backend
        if backend == "auto":
            backend = "nccl" if self.device is not None and self.device.type == "cuda" else "gloo"
        timeout = timedelta(minutes=float(self.cfg.timeout_minutes))
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

    # -- precision ----------------------------------------------------------------------------------
    def param_dtype(self, dtype: torch.dtype) -> torch.dtype:
        """The dtype to load the trainable policy in, for a run whose compute ``dtype`` is given.

        With ``master_weights`` (the default) a bf16 run keeps parameters, gradients and AdamW states in
        fp32 and runs every forward under ``torch.autocast(bf16)`` (:meth:`autocast`): with the paper's
        lr 1e-6 an AdamW step is ~1e-6 in absolute size, far below bf16's resolution (8 bits of mantissa,
        ~4e-3 relative) for weights of magnitude ~1e-2, so pure-bf16 parameters would mostly not move.
        ``master_weights=false`` keeps pure low-precision parameters (half the memory, lossy updates).
        Also records ``dtype`` as the compute dtype that :meth:`autocast` casts to, so call it once in setup.

        Raises:
            ConfigError: fp16 with master weights (autocast fp16 needs loss scaling, which is not implemented).
        """
        self.compute_dtype = dtype
        if not self.master_weights or dtype == torch.float32:
            return dtype
        if dtype == torch.float16:
            raise ConfigError(f"dtype=float16 with strategy={self.name} needs loss scaling, which r1zero does not "
                              f"implement; use dtype=bfloat16 or float32, strategy=zero2, or "
                              f"strategy.master_weights=false (pure fp16 parameters)")
        return torch.float32

    def autocast(self):
        """Context for forward passes: ``torch.autocast`` to the compute dtype when the parameters are fp32
        master weights (:meth:`param_dtype`), else a no-op."""
        dtype = self.compute_dtype
        if self.module is not None and dtype is not None:
            param = next(self.module.parameters(), None)
            if param is not None and param.dtype != dtype:
                return torch.autocast(param.device.type, dtype=dtype)
        return contextlib.nullcontext()

    # -- model and optimizer ------------------------------------------------------------------------
    def model_init_context(self, dtype: torch.dtype | None = None, train_cfg: Any = None):
        """Context to build/load the policy in (ZeRO-3: partitioned at load time)."""
        return contextlib.nullcontext()

    def prepare(self, model: torch.nn.Module, train_cfg: Any) -> None:
        """Build AdamW + the warmup schedule for ``model`` and wrap it for training."""
        train_cfg = typed(TrainConfig, train_cfg)
        self.module = model
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            params, lr=float(train_cfg.lr), betas=tuple(train_cfg.betas),
            weight_decay=float(train_cfg.weight_decay), eps=1e-8,
        )
        warmup = train_cfg.warmup_steps
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

    def clip_and_step(self, max_grad_norm: float, loss_finite: torch.Tensor | bool = True) -> tuple[float, bool]:
        """Clip the global gradient norm, then step the optimizer and the lr schedule, unless the norm or the loss
        is not finite on some rank: then the gradients are dropped and the weights, the AdamW states and the lr
        schedule stay as they were, on every rank alike (an update from a NaN or inf would ruin the policy).

        Args:
            max_grad_norm: the global L2 norm the gradients are clipped to.
            loss_finite: whether this rank's loss of the optimizer batch is finite (a 0-d bool tensor on the device
                is read back together with the norm: one device sync per optimizer step, as before).

        Returns:
            ``(norm, stepped)``: the pre-clip gradient norm (may be NaN or inf) and whether the optimizer stepped.
        """
        grad_norm = torch.nn.utils.clip_grad_norm_(
            [p for p in self.module.parameters() if p.requires_grad], float(max_grad_norm))
        ok = torch.isfinite(grad_norm) & torch.as_tensor(loss_finite, device=grad_norm.device)
        norm, ok = torch.stack([grad_norm.double(), ok.double()]).tolist()
        stepped = not self.any(not ok)  # DDP: a rank's NaN loss may leave the others' gradients finite
        if not stepped:
            self.zero_grad()
            return norm, False
        self.optimizer.step()
        self.scheduler.step()
        return norm, True

    def weights_finite(self) -> bool:
        """Whether every parameter of the policy is finite on every rank (collective; ZeRO-3: each rank's
        partitions). Checked before anything is saved, so no checkpoint holds a NaN or inf weight."""
        local = [torch.isfinite(getattr(p, "ds_tensor", p)).all() for p in self.module.parameters()]
        ok = bool(torch.stack(local).all()) if local else True
        return not self.any(not ok)

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
        """``(hf_name, full_tensor)`` pairs of the policy, for a weight push into a rollout engine.

        A tensor is only valid until the iterator advances (ZeRO-3 gathers one module at a time and frees it
        again), so consume it lazily: copy each tensor before asking for the next. Nothing is gathered before the
        first pair is asked for; once started, every rank must iterate to the end (ZeRO-3's gather is a collective).
        """
        yield from ((n, p.detach()) for n, p in unwrap(self.module).named_parameters())

    def sync_weights(self, engine) -> None:
        """Push the current policy into ``engine``: the engine's ``update_weights`` takes
        :meth:`named_parameters_for_sync` and reads as much of it as it needs (an engine generating with the policy
        module itself reads none, so nothing is gathered). Call on every rank."""
        engine.update_weights(self.named_parameters_for_sync())

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
