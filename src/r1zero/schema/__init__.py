"""The typed config boundary: one dataclass per config group, and the run configs that hold them.

Every field's default lives here, once; the YAML options in ``conf/`` only override. The schemas are
registered in Hydra's ConfigStore (:func:`register`) and named first in each option's defaults list
(``- base_model``), so composing rejects a wrong type or an unknown key, naming it. Cross-field checks are
``__post_init__`` methods and run when a config becomes objects (:func:`typed`), before any model loads; the
names only a component knows (an algo axis, a verifier, an answer format, a question-set generator) are checked by that component, with the
whole run config (:func:`r1zero.run.config.run_config`): the schema imports no component. Library code takes these objects, never the raw ``DictConfig``.

| group | schema (ConfigStore name) |
|---|---|
| model | :class:`ModelConfig` (``base_model``), :class:`TinyModelConfig` (``base_tiny_model``) |
| template | :class:`TemplateConfig` (``base_template``) |
| algo | :class:`AlgoConfig` (``base_algo``) |
| data | :class:`DataConfig` (``base_data``), :class:`ArithDataConfig` (``base_arith_data``) |
| eval | :class:`EvalConfig` (``base_eval``) |
| rollout | :class:`HFRolloutConfig` (``base_hf_rollout``), :class:`VLLMRolloutConfig` (``base_vllm_rollout``) |
| strategy | :class:`StrategyConfig` (``base_strategy``), :class:`DDPStrategyConfig`, :class:`DeepSpeedStrategyConfig` |
| logger | :class:`LoggerConfig` (``base_logger``) |
| paths | :class:`PathsConfig` (``base_paths``) |
| (train.yaml) | :class:`RunConfig` (``base_run``): seed, device, dtype, resume, sampling, train, reward |
| (evaluate.yaml) | :class:`EvaluateRunConfig` (``base_evaluate_run``) |
"""

from dataclasses import dataclass, field, is_dataclass
from typing import Any, Optional, TypeVar

from omegaconf import MISSING, DictConfig, OmegaConf

from ._check import one_of, registered
from .algo import AlgoConfig
from .data import ArithDataConfig, CountdownDataConfig, DataConfig, SourceConfig
from .errors import ConfigError, bad_value, config_error_from, unknown_key
from .eval import EvalConfig
from .logger import LoggerConfig, PathsConfig, WandbConfig
from .model import ModelConfig, TinyModelConfig
from .rollout import HFRolloutConfig, RolloutConfig, VLLMRolloutConfig
from .strategy import DDPStrategyConfig, DeepSpeedStrategyConfig, StrategyConfig
from .template import TemplateConfig
from .train import RewardConfig, SamplingParams, TrainConfig

__all__ = ["AlgoConfig", "ArithDataConfig", "DDPStrategyConfig", "DataConfig", "DeepSpeedStrategyConfig",
           "EvalConfig", "EvaluateRunConfig", "HFRolloutConfig", "LoggerConfig", "ModelConfig", "PathsConfig",
           "RewardConfig", "RolloutConfig", "RunConfig", "SamplingParams", "SourceConfig", "StrategyConfig",
           "TemplateConfig", "TinyModelConfig", "TrainConfig", "VLLMRolloutConfig", "WandbConfig", "one_of",
           "register", "registered", "typed"]

DTYPES = ("auto", "auto_bf16", "float32", "bfloat16", "float16", "fp32", "bf16", "fp16")
#: False while checking jobs that will run elsewhere (a SLURM multirun): skip this machine's GPUs.
ENV_CHECKS = True


def check_device(device: str) -> None:
    """``device`` names a device this machine has: auto | cpu | cuda | cuda:N | mps."""
    import re

    valid = "auto, cpu, cuda, cuda:N, mps"
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", device):
        raise bad_value("device", f"{device!r} is not a device name", valid)
    if device.startswith("cuda") and ENV_CHECKS:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= count:
            raise bad_value("device", f"{device!r} but this machine has {count} visible CUDA GPU(s)",
                            "auto, cpu" + (f", cuda:0..cuda:{count - 1}" if count else ""))


@dataclass
class _Common:
    model: ModelConfig = MISSING             # conf/model/
    template: TemplateConfig = MISSING       # conf/template/
    rollout: RolloutConfig = MISSING         # conf/rollout/
    paths: PathsConfig = MISSING             # conf/paths/
    eval: EvalConfig = MISSING               # conf/eval/
    reward: RewardConfig = field(default_factory=RewardConfig)  # the grader
    seed: int = 42                           # seeds python, numpy, torch, data order and sampling
    device: str = "auto"                     # auto (cuda if available) | cpu | cuda | cuda:N
    dtype: str = "auto"                      # auto (bf16 on GPU, fp32 on CPU) | auto_bf16 (bf16 also on CPUs with bf16 matmul kernels) | float32 | bfloat16 | float16

    def __post_init__(self) -> None:
        check_device(self.device)
        if self.dtype not in DTYPES:
            raise bad_value("dtype", f"{self.dtype!r} is not a dtype name", ", ".join(DTYPES))
        self.eval.check_benchmarks()


@dataclass
class RunConfig(_Common):
    """``python -m r1zero.train``: ``conf/train.yaml`` with its groups."""

    algo: AlgoConfig = MISSING               # conf/algo/
    data: DataConfig = MISSING               # conf/data/
    logger: LoggerConfig = MISSING           # conf/logger/
    strategy: StrategyConfig = MISSING       # conf/strategy/
    sampling: SamplingParams = field(default_factory=SamplingParams)  # rollout sampling
    train: TrainConfig = field(default_factory=TrainConfig)  # the update loop
    resume: Optional[str] = "auto"           # auto: the newest checkpoint in the run dir, if any | null: refuse a dir with metrics | a checkpoint dir
    allow_config_change: bool = False        # true: continue a run dir whose config.yaml differs (r1zero.run.rundir)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.algo.tis_cap is not None and isinstance(self.rollout, VLLMRolloutConfig) and not self.rollout.behaviour_logprobs:
            raise bad_value("algo.tis_cap", "algo.tis_cap weighs tokens by the engine's log-probs, which "
                            "rollout.behaviour_logprobs=false turns off", "rollout.behaviour_logprobs=true, or algo.tis_cap=null")
        self.check_batches(1)  # the process count is checked where it is known (r1zero.run.preflight, the recipe's setup)

    def check_batches(self, world_size: int = 1) -> None:
        """The rollout splits into optimizer batches, and every batch into ``world_size`` equal shares."""
        mini = self.train.mini_batch_size
        rollout_size = self.train.prompts_per_rollout * self.sampling.group_size
        # A mini_batch_size at least the rollout size takes one optimizer step per rollout (as null does).
        if mini is not None and mini < rollout_size and rollout_size % mini:
            raise bad_value("train.mini_batch_size", f"train.mini_batch_size={mini} must divide the rollout size "
                            f"prompts_per_rollout x group_size = {rollout_size}",
                            "a divisor of the rollout size, or null (the whole rollout)")
        # Data parallel: each rank rolls out whole questions and trains on its share of every optimizer batch.
        for key, value in (("prompts_per_rollout", self.train.prompts_per_rollout), ("mini_batch_size", mini)):
            if key == "mini_batch_size" and (value is None or value >= rollout_size):
                continue  # one optimizer batch: the whole rollout, already split by prompts_per_rollout
            if world_size > 1 and value % world_size:
                raise bad_value(f"train.{key}", f"train.{key}={value} must be divisible by the number of "
                                f"processes ({world_size})", f"a multiple of {world_size}")


#: Seconds one answer's check may take in ``python -m r1zero.evaluate`` (``reward.timeout_s`` there). The paper's
#: ``evaluate_model.py`` sets no limit on the whole check (its ``fast`` step runs unbounded; only its math-verify
#: calls stop at 1 s, as here: ``verifiers.PAPER_MATH_VERIFY_CALL_S``); r1zero bounds it so that one answer on
#: which sympy never finishes (``9^{9^{9}}``) cannot hang an evaluation. Training and its in-training evaluation
#: keep the paper's 1 s (``MATHOracle.get_reward``: ``res.get(timeout=1)``, which oat's evaluation calls too).
EVALUATE_TIMEOUT_S = 30.0


@dataclass
class EvaluateRunConfig(_Common):
    """``python -m r1zero.evaluate``: ``conf/evaluate.yaml`` with its groups."""

    seed: int = 0                            # only matters when eval.temperature > 0
    # The grader as the paper's evaluate_model.py: fast, else math-verify (its fast=False), each answer's check
    # bounded at EVALUATE_TIMEOUT_S instead of training's 1 s
    reward: RewardConfig = field(default_factory=lambda: RewardConfig(verifier="math_verify",
                                                                       timeout_s=EVALUATE_TIMEOUT_S))


T = TypeVar("T")

#: ConfigStore (group, name) -> schema; a group option names its schema first in its defaults list.
SCHEMAS: dict[tuple[Optional[str], str], type] = {
    (None, "base_run"): RunConfig, (None, "base_evaluate_run"): EvaluateRunConfig,
    ("model", "base_model"): ModelConfig, ("model", "base_tiny_model"): TinyModelConfig,
    ("template", "base_template"): TemplateConfig, ("algo", "base_algo"): AlgoConfig,
    ("data", "base_data"): DataConfig, ("data", "base_arith_data"): ArithDataConfig,
    ("eval", "base_eval"): EvalConfig, ("rollout", "base_hf_rollout"): HFRolloutConfig,
    ("rollout", "base_vllm_rollout"): VLLMRolloutConfig, ("strategy", "base_strategy"): StrategyConfig,
    ("strategy", "base_ddp_strategy"): DDPStrategyConfig, ("strategy", "base_deepspeed_strategy"): DeepSpeedStrategyConfig,
    ("logger", "base_logger"): LoggerConfig, ("reward", "base_reward"): RewardConfig,
    ("data", "base_countdown_data"): CountdownDataConfig, ("paths", "base_paths"): PathsConfig,
}


def register() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent; :mod:`r1zero.run.config` calls it on import)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for (group, name), schema in SCHEMAS.items():
        cs.store(group=group, name=name, node=schema)


def _schema_of(cls: type, node: DictConfig) -> type:
    """The schema a standalone node asks for: its defaults list's ``base_*`` entry, else ``cls.schema_for``."""
    by_name = {name: schema for (_, name), schema in SCHEMAS.items()}
    for entry in node.get("defaults") or []:
        if isinstance(entry, str) and entry in by_name:
            return by_name[entry]
    pick = getattr(cls, "schema_for", None)
    chosen = pick(node) if pick else cls
    # A subclass asked for by name (``typed(VLLMRolloutConfig, {...})`` without ``name``) is never widened back
    # to its base: the base's ``schema_for`` only picks among ``cls``'s own subclasses.
    return chosen if issubclass(chosen, cls) else cls


def _no_extra_keys(node: DictConfig, prefix: str = "") -> None:
    """A key added with ``+key=value`` is no field of its schema: refuse it (``to_object`` would drop it silently)."""
    import dataclasses

    schema = OmegaConf.get_type(node)
    names = {f.name for f in dataclasses.fields(schema)} if dataclasses.is_dataclass(schema) else None
    for key in node:
        full = f"{prefix}{key}"
        if names is not None and key not in names:
            raise unknown_key(full, schema)
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            _no_extra_keys(child, f"{full}.")


def typed(cls: type[T], node: Any) -> T:
    """``node`` (a dataclass of ``cls``, a DictConfig typed by Hydra, a plain dict or a standalone option YAML)
    as a ``cls`` object, its missing fields at their schema defaults and its ``__post_init__`` checks run.

    Raises:
        ConfigError: a wrong type, an unknown key or a bad value (one line naming the key).
    """
    if isinstance(node, cls):
        return node
    if is_dataclass(node):
        node = OmegaConf.structured(node)
    if not isinstance(node, DictConfig):
        node = OmegaConf.create(node if node is not None else {})
    try:
        if not (OmegaConf.get_type(node) is not dict and issubclass(OmegaConf.get_type(node), cls)):
            schema = _schema_of(cls, node)
            if "defaults" in node:  # a group option loaded on its own: its Hydra defaults list is no field
                node = OmegaConf.masked_copy(node, [k for k in node if k != "defaults"])
            node = OmegaConf.merge(OmegaConf.structured(schema), node)
        _no_extra_keys(node)
        return OmegaConf.to_object(node)
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001  (OmegaConf's ValidationError, ConfigKeyError, MissingMandatoryValue...)
        raise config_error_from(err) from None
