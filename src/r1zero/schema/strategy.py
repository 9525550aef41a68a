"""``strategy`` group (``conf/strategy/*.yaml``): learner placement (single | ddp | zero2 | zero3)."""

from dataclasses import dataclass, field
from typing import Any, Optional

from ._check import above, one_of
from .errors import bad_value


@dataclass
class StrategyConfig:
    """``single``, and the fields every strategy shares."""

    name: str = "single"                     # r1zero.learner.strategy.STRATEGIES: single | ddp | zero2 | zero3 (with their schemas)
    offload_reference: bool = False          # keep the frozen KL reference (algo.kl_coef > 0) on CPU between its forwards
    master_weights: bool = True              # bf16 dtype: fp32 parameters + AdamW states, bf16 autocast forwards (single, ddp)
    backend: str = "auto"                    # process group: auto (nccl on GPU, gloo on CPU) | nccl | gloo
    timeout_minutes: float = 30              # collective timeout (rank 0 may be slower: it writes checkpoints, eval files)

    def __post_init__(self) -> None:
        one_of("strategy.backend", self.backend, ("auto", "nccl", "gloo"))
        above("strategy.timeout_minutes", self.timeout_minutes, 0.0, what="minutes")


@dataclass
class DDPStrategyConfig(StrategyConfig):
    name: str = "ddp"                        # r1zero.learner.strategy.STRATEGIES
    find_unused_parameters: bool = False     # every parameter of a causal LM gets a gradient
    bucket_cap_mb: float = 25                # DDP gradient bucket size
    gradient_as_bucket_view: bool = True     # gradients alias the all-reduce buckets (one gradient copy less)


@dataclass
class DeepSpeedStrategyConfig(StrategyConfig):
    name: str = "zero2"                      # r1zero.learner.strategy.STRATEGIES: zero2 | zero3
    stage: Optional[int] = None              # ZeRO stage: 2 partitions gradients + optimizer states, 3 parameters too; null: the name's
    offload_optimizer: bool = False          # AdamW states + fp32 master weights in CPU RAM (DeepSpeedCPUAdam)
    offload_param: bool = False              # stage 3: partitioned parameters in CPU RAM between uses
    torch_adam: bool = True                  # torch.optim.AdamW (nothing to compile); false: DeepSpeed FusedAdam
    pin_memory: bool = True                  # pinned host buffers for offloading
    overlap_comm: bool = True                # overlap gradient reduction with the backward pass
    reduce_bucket_size: float = 5.0e8        # elements per gradient reduce bucket
    allgather_bucket_size: float = 5.0e8     # elements per parameter all-gather bucket
    stage3_prefetch_bucket_size: float = 5.0e7  # stage 3: elements prefetched ahead of the forward/backward
    stage3_param_persistence_threshold: float = 1.0e5  # stage 3: smaller parameters stay unpartitioned
    stage3_max_live_parameters: float = 1.0e9  # stage 3: gathered elements allowed at once
    ds_config: dict[str, Any] = field(default_factory=dict)  # raw DeepSpeed entries merged over the generated config

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.stage is None:
            self.stage = 3 if self.name == "zero3" else 2
        one_of("strategy.stage", self.stage, (2, 3))
        if self.offload_param and self.stage != 3:
            raise bad_value("strategy.offload_param", "needs ZeRO stage 3", "false, or strategy=zero3")

