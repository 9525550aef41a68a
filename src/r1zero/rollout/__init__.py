"""Rollout engines behind one interface (:class:`~r1zero.rollout.base.RolloutEngine`), chosen by name."""

from __future__ import annotations

from dataclasses import is_dataclass

from ..schema import RolloutConfig, typed
from . import hf, vllm  # noqa: F401  (each registers its engine in ENGINES; vllm itself is imported on first use)
from .base import ENGINES, RolloutBatch, RolloutEngine, SamplingConfig, register_engine

__all__ = ["ENGINES", "RolloutBatch", "RolloutEngine", "SamplingConfig", "build_engine", "engine_class",
           "engine_config", "register_engine"]


def engine_class(name: str) -> type:
    """The engine class registered as ``name``.

    Raises:
        ConfigError: unknown name (lists the registered ones).
    """
    return ENGINES.lookup(name)


def engine_config(cfg) -> RolloutConfig:
    """``cfg`` (a ``rollout`` node, dict or dataclass) typed by the schema its engine registered with.

    Raises:
        ConfigError: no ``name``, an unregistered one, or a field that schema rejects.
    """
    name = cfg.name if is_dataclass(cfg) else (cfg or {}).get("name")
    return typed(RolloutConfig if name is None else ENGINES.entry(name).schema, cfg)


def build_engine(cfg, model, tokenizer, model_dir: str | None = None, *, seed: int = 0,
                 scratch_dir: str | None = None, autocast=None) -> RolloutEngine:
    """The engine named by a ``rollout`` config (:class:`~r1zero.schema.RolloutConfig` or a node it types).

    Every engine class has ``from_config(cfg, model, tokenizer, *, model_dir, seed, scratch_dir, autocast)``.
    ``model_dir`` is where vLLM reads the initial weights; without one (a model built in code) the policy
    is saved to ``scratch_dir`` first. ``autocast``: the context ``hf`` generates in (vLLM runs in its own
    ``rollout.dtype``).

    Raises:
        ConfigError: unknown ``cfg.name`` (lists the registered ones), or a field its schema rejects.
    """
    cfg = engine_config(cfg)
    return engine_class(cfg.name).from_config(cfg, model, tokenizer, model_dir=model_dir, seed=seed,
                                              scratch_dir=scratch_dir, autocast=autocast)
