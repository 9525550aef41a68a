"""Rollout engines behind one interface (:class:`~r1zero.rollout.base.RolloutEngine`), chosen by name."""

from __future__ import annotations

import importlib

from ..schema import RolloutConfig, typed
from ..schema.errors import bad_value
from .base import RolloutBatch, RolloutEngine, SamplingConfig

__all__ = ["ENGINES", "RolloutBatch", "RolloutEngine", "SamplingConfig", "build_engine", "engine_class",
           "register_engine"]

#: ``rollout.name`` -> ``"module:Class"`` of its engine, imported on first use (vLLM is an optional, heavy import).
#: Every engine class has ``from_config(cfg, model, tokenizer, *, model_dir, seed, scratch_dir, autocast)``.
ENGINES: dict[str, str] = {"hf": "r1zero.rollout.hf:HFRolloutEngine", "vllm": "r1zero.rollout.vllm:VLLMRolloutEngine"}


def register_engine(name: str, target: str) -> None:
    """Add an engine ``"module:Class"`` under ``name`` (as ``r1zero.algos``'s registries do)."""
    if name in ENGINES:
        raise ValueError(f"rollout engine {name!r} is already registered ({ENGINES[name]})")
    ENGINES[name] = target


def engine_class(name: str) -> type:
    """The engine class registered as ``name``.

    Raises:
        ConfigError: unknown name (lists the registered ones).
    """
    if name not in ENGINES:
        raise bad_value("rollout.name", f"{name!r} is not a registered rollout engine", ", ".join(ENGINES))
    module, cls = ENGINES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_engine(cfg, model, tokenizer, model_dir: str | None = None, *, seed: int = 0,
                 scratch_dir: str | None = None, autocast=None) -> RolloutEngine:
    """The engine named by a ``rollout`` config (:class:`~r1zero.schema.RolloutConfig` or a node it types).

    ``model_dir`` is where vLLM reads the initial weights; without one (a model built in code) the policy
    is saved to ``scratch_dir`` first. ``autocast``: the context ``hf`` generates in (vLLM runs in its own
    ``rollout.dtype``).

    Raises:
        ConfigError: unknown ``cfg.name`` (lists the registered ones).
    """
    cfg = typed(RolloutConfig, cfg)
    return engine_class(cfg.name).from_config(cfg, model, tokenizer, model_dir=model_dir, seed=seed,
                                              scratch_dir=scratch_dir, autocast=autocast)
