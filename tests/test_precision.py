"""bf16 runs on single/ddp keep fp32 master weights and compute under autocast (strategy.master_weights)."""

from __future__ import annotations

import pytest
import torch
from conftest import CONF, make_learner
from omegaconf import OmegaConf

from r1zero.learner.strategy import DistEnv, build_strategy
from r1zero.model.load import load_model_and_tokenizer
from r1zero.rollout import SamplingConfig
from r1zero.rollout.hf import HFRolloutEngine
from r1zero.schema.errors import ConfigError


def _strategy(name="single", **over):
    return build_strategy(OmegaConf.create({"name": name, **over}), env=DistEnv())


def test_param_dtype_per_strategy_and_setting():
    assert _strategy().param_dtype(torch.bfloat16) == torch.float32
    assert _strategy("ddp").param_dtype(torch.bfloat16) == torch.float32
    assert _strategy(master_weights=False).param_dtype(torch.bfloat16) == torch.bfloat16
    assert _strategy().param_dtype(torch.float32) == torch.float32
    # DeepSpeed keeps its own fp32 copy inside the optimizer: the module stays in the compute dtype.
    assert _strategy("zero2").param_dtype(torch.bfloat16) == torch.bfloat16
    with pytest.raises(ConfigError, match="float16.*loss scaling.*bfloat16"):
        _strategy().param_dtype(torch.float16)


def _tiny(dtype):
    torch.manual_seed(0)
    return load_model_and_tokenizer(OmegaConf.load(CONF / "model" / "tiny.yaml"), torch.device("cpu"), dtype)


def _update(master_weights: bool):
    """One lr=1e-6 AdamW step on the tiny model in a bf16 run; returns (model before, model after, dtypes seen)."""
    strategy = _strategy(master_weights=master_weights)
    model, tok = _tiny(strategy.param_dtype(torch.bfloat16))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    learner = make_learner(model, 4, max_new_tokens=8, strategy=strategy, train={"lr": 1e-6})
    seen = []
    hook = model.lm_head.register_forward_hook(lambda mod, args, out: seen.append(out.dtype))
    torch.manual_seed(1)
    engine = HFRolloutEngine(model, tok, autocast=strategy.autocast)
    batch = engine.generate(["Q: 2+2?", "Q: 3+5?"], SamplingConfig(n=2, max_new_tokens=8))
    learner.update(batch, torch.tensor([1.0, -1.0, 0.5, -0.5]))
    hook.remove()
    return before, dict(model.named_parameters()), set(seen)


def test_master_weights_keep_small_updates_that_bf16_parameters_lose():
    # AdamW's first step moves every weight by ~lr = 1e-6 (m/sqrt(v) = ±1). The tiny model's weights are
    # ~N(0, 0.02): bf16 spacing there is ~2^-7 * 0.02 ≈ 1.6e-4, so a 1e-6 step rounds away in bf16 storage.
    before, after, seen = _update(master_weights=True)
    assert next(iter(after.values())).dtype == torch.float32
    assert seen == {torch.bfloat16}  # rollout and learner forwards both ran under bf16 autocast
    moved = sum(int((before[n] != after[n].detach()).sum()) for n in before)
    total = sum(p.numel() for p in before.values())
    assert moved / total > 0.5
    delta = max(float((before[n] - after[n].detach()).abs().max()) for n in before)
    assert 0 < delta <= 1.1e-6  # one AdamW step: at most lr per element

    before, after, seen = _update(master_weights=False)
    assert next(iter(after.values())).dtype == torch.bfloat16 and seen == {torch.bfloat16}
    moved = sum(int((before[n] != after[n].detach()).sum()) for n in before)
    assert moved / total < 0.05  # pure bf16: almost every update is below the weight's resolution
