"""Rollout engines behind one interface (:class:`~r1zero.rollout.base.RolloutEngine`)."""

from .base import RolloutBatch, RolloutEngine, SamplingConfig

__all__ = ["RolloutBatch", "RolloutEngine", "SamplingConfig", "build_engine"]


def build_engine(cfg, model, tokenizer, model_dir: str | None = None, *, seed: int = 0,
                 scratch_dir: str | None = None, autocast=None) -> RolloutEngine:
    """The engine named by a ``rollout`` config node (``hf`` or ``vllm``).

    ``model_dir`` is where vLLM reads the initial weights; without one (a model built in code) the policy
    is saved to ``scratch_dir`` first. ``autocast``: the context ``hf`` generates in (vLLM runs in its own
    ``rollout.dtype``).

    Raises:
        ValueError: unknown ``cfg.name`` (lists the valid choices).
    """
    if cfg.name == "hf":
        from .hf import HFRolloutEngine

        return HFRolloutEngine(model, tokenizer, batch_size=int(cfg.batch_size), autocast=autocast)
    if cfg.name == "vllm":
        from .vllm import VLLMRolloutEngine

        if model_dir is None:
            if scratch_dir is None:
                raise ValueError("rollout=vllm needs model_dir or scratch_dir")
            return VLLMRolloutEngine.from_model(model, tokenizer, cfg, save_dir=scratch_dir, seed=seed)
        return VLLMRolloutEngine(model_dir, tokenizer, cfg, seed=seed)
    raise ValueError(f"unknown rollout engine {cfg.name!r}; valid choices: ['hf', 'vllm']")
