"""DeepSpeed ZeRO-2 / ZeRO-3: DeepSpeed owns the optimizer and (stage 3) partitions the parameters."""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator
from typing import Any

import torch

from ...schema import DeepSpeedStrategyConfig, TrainConfig, typed
from ...schema.errors import NonFiniteTrainingError
from .base import Strategy, _lr_lambda, register_strategy
from .env import DistEnv

log = logging.getLogger(__name__)


@register_strategy("zero3", schema=DeepSpeedStrategyConfig)
@register_strategy("zero2", schema=DeepSpeedStrategyConfig)
class DeepSpeedStrategy(Strategy):
    """DeepSpeed ZeRO stage 2 or 3; DeepSpeed owns the optimizer (AdamW, fp32 master weights in bf16 runs).

    ``offload_optimizer`` moves AdamW states + fp32 master weights to CPU (DeepSpeedCPUAdam, a C++ op built
    on first use); ``offload_param`` (stage 3) keeps the partitioned parameters on CPU between uses.
    ``ds_config`` entries override the generated DeepSpeed config key by key.
    """

    name = "zero2"

    def __init__(self, cfg: Any = None, env: DistEnv | None = None):
        super().__init__(cfg, env)
        self.stage = self.cfg.stage  # DeepSpeedStrategyConfig: 2 or 3, from the name when null
        self.name = f"zero{self.stage}"
        self.shards_parameters = self.stage == 3
        self.offload_optimizer = self.cfg.offload_optimizer
        self.offload_param = self.cfg.offload_param  # stage 3 only (checked by the schema)
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
        train = typed(TrainConfig, train_cfg)
        micro = train.micro_batch_size
        zero: dict[str, Any] = {
            "stage": self.stage,
            "overlap_comm": self.cfg.overlap_comm,
            "contiguous_gradients": True,
            "reduce_bucket_size": int(float(self.cfg.reduce_bucket_size)),
            "allgather_bucket_size": int(float(self.cfg.allgather_bucket_size)),
        }
        if self.stage == 3:
            zero.update({
                "stage3_prefetch_bucket_size": int(float(self.cfg.stage3_prefetch_bucket_size)),
                "stage3_param_persistence_threshold": int(float(self.cfg.stage3_param_persistence_threshold)),
                "stage3_max_live_parameters": int(float(self.cfg.stage3_max_live_parameters)),
                "stage3_gather_16bit_weights_on_model_save": True,
            })
        pin = self.cfg.pin_memory
        if self.offload_optimizer:
            zero["offload_optimizer"] = {"device": "cpu", "pin_memory": pin}
        if self.offload_param:
            zero["offload_param"] = {"device": "cpu", "pin_memory": pin}
        cfg: dict[str, Any] = {
            "train_micro_batch_size_per_gpu": micro,
            "gradient_accumulation_steps": 1,  # the Learner marks the accumulation boundary itself
            "train_batch_size": micro * self.world_size,
            "gradient_clipping": float(train.max_grad_norm),
            "zero_optimization": zero,
            "bf16": {"enabled": dtype == torch.bfloat16},
            "fp16": {"enabled": dtype == torch.float16},
            "optimizer": {"type": "AdamW", "params": {
                "lr": float(train.lr), "betas": list(train.betas),
                "eps": 1e-8, "weight_decay": float(train.weight_decay),
                # torch.optim.AdamW: no op to build. With offload, DeepSpeedCPUAdam is required instead.
                **({} if self.offload_optimizer else {"torch_adam": self.cfg.torch_adam}),
            }},
            "zero_allow_untested_optimizer": True,
            "steps_per_print": 10**9,
            "wall_clock_breakdown": False,
        }
        return _deep_merge(cfg, _to_dict(self.cfg.ds_config))

    def param_dtype(self, dtype: torch.dtype) -> torch.dtype:
        """Load in the compute dtype (recorded, as in the base class): DeepSpeed keeps the fp32 master copy
        inside its optimizer, so :meth:`autocast` is a no-op."""
        self.compute_dtype = dtype
        return dtype

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
        warmup = typed(TrainConfig, train_cfg).warmup_steps
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

    def clip_and_step(self, max_grad_norm: float, loss_finite: torch.Tensor | bool = True) -> tuple[float, bool]:
        """As :meth:`Strategy.clip_and_step`, with DeepSpeed's own verdict: its overflow check skips a step whose
        gradient norm is not finite (what a non-finite loss leaves), on every rank together, and leaves the
        weights, optimizer and lr schedule as they were (``optimizer.overflow``); ``loss_finite`` is not needed.

        Raises:
            NonFiniteTrainingError: this DeepSpeed applied a step whose gradient norm is not finite (the weights may
                be ruined; nothing is saved from them).
        """
        # gradient_clipping in the DeepSpeed config clips by the global norm (max_grad_norm); the engine steps
        # the optimizer and the lr schedule at the boundary.
        self.engine.set_gradient_accumulation_boundary(True)
        self.engine.step()
        raw = self.engine.get_global_grad_norm()  # None: zero_optimization.compute_grad_norm=false
        norm = float(raw) if raw is not None else float("nan")
        stepped = not bool(getattr(self.optimizer, "overflow", False))
        if stepped and raw is not None and not math.isfinite(norm):
            raise NonFiniteTrainingError(f"DeepSpeed {self.import_deepspeed().__version__} applied an optimizer step "
                                         f"whose gradient norm is {norm}; valid: a DeepSpeed that skips such steps "
                                         f"(0.19.8 does), then resume=auto from the newest checkpoint")
        return norm, stepped

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
