"""Rollout engines behind one interface (:class:`~r1zero.rollout.base.RolloutEngine`)."""

from .base import RolloutBatch, RolloutEngine, SamplingConfig

__all__ = ["RolloutBatch", "RolloutEngine", "SamplingConfig", "build_engine"]


def build_engine(cfg, model, tokenizer, model_dir: str | None = None) -> RolloutEngine:
    """The engine named by a ``rollout`` config node (``hf`` or ``vllm``).

    Raises:
        ValueError: unknown ``cfg.name`` (lists the valid choices).
    """
    if cfg.name == "hf":
        from .hf import HFRolloutEngine

        return HFRolloutEngine(model, tokenizer, batch_size=int(cfg.batch_size))
    if cfg.name == "vllm":
        from .vllm import VLLMRolloutEngine

        return VLLMRolloutEngine(model_dir, tokenizer, cfg)
    raise ValueError(f"unknown rollout engine {cfg.name!r}; valid choices: ['hf', 'vllm']")
