"""Length-grouped, packed micro-batches (``train.group_by_length``): same loss and gradient, no padding computed."""

from __future__ import annotations

import pytest
import torch
from conftest import CONF, make_batch, make_learner
from omegaconf import OmegaConf

from r1zero.learner.learner import length_order
from r1zero.model.load import load_model_and_tokenizer


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return load_model_and_tokenizer(OmegaConf.load(CONF / "model" / "tiny.yaml"), torch.device("cpu"), torch.float32)


def _learner(model, micro, group_by_length=True, max_new_tokens=16):
    return make_learner(model, micro, train={"group_by_length": group_by_length}, max_new_tokens=max_new_tokens)


def test_length_order_keeps_prompts_whole_longest_first():
    # prompt 0 (rows 0-1) and prompt 2 (rows 4-5) both reach 10 tokens: first appearance breaks the tie
    order = length_order(torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([3, 10, 5, 4, 10, 1]))
    assert order.tolist() == [1, 0, 4, 5, 2, 3]
    assert length_order(torch.tensor([7]), torch.tensor([2])).tolist() == [0]
    assert length_order(torch.zeros(0, dtype=torch.long), torch.zeros(0)).tolist() == []


@pytest.mark.parametrize("micro", [2, 3, 4, 8])
def test_grouped_micro_batches_give_the_same_loss_and_gradient(tiny, micro):
    """Very different lengths inside each prompt's group: grouping changes which rows share a micro-batch (and
    so how much padding is computed), never the loss, the gradient or the metrics."""
    model, _ = tiny
    batch = make_batch([5, 9], [1, 14, 2, 13, 12, 1, 3, 14], 4)
    adv = torch.tensor([1.0, -0.5, 0.25, -0.75, 0.5, -1.0, 0.75, -0.25])
    out = {}
    for grouped in (False, True):
        learner = _learner(model, micro, grouped)
        old = learner.compute_logprobs(model, batch) - 0.05  # ratio != 1: the clipped branch is exercised
        model.zero_grad(set_to_none=True)
        learner.fed_tokens = [0, 0]
        sums, weights = {}, {}
        loss = learner.accumulate_gradients(batch, torch.arange(len(batch)), old, adv, sums=sums, weights=weights)
        grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).clone()
        metrics = {k: float(sums[k] / weights[k]) for k in sums}
        out[grouped] = (float(loss), grad, metrics, old, list(learner.fed_tokens))
    model.zero_grad(set_to_none=True)
    (loss0, grad0, m0, old0, fed0), (loss1, grad1, m1, old1, fed1) = out[False], out[True]
    assert grad0.abs().sum() > 0
    torch.testing.assert_close(grad1, grad0, atol=1e-6, rtol=1e-5)
    assert loss1 == pytest.approx(loss0, abs=1e-7)
    torch.testing.assert_close(old1, old0, atol=1e-5, rtol=0)  # the no-grad pass is grouped too
    assert m1.keys() == m0.keys() and all(m1[k] == pytest.approx(m0[k], abs=1e-6) for k in m0)
    assert fed0[1] > 0 and fed1[1] == 0, (fed0, fed1)  # packed: no padding computed
    assert fed1[0] < fed0[0] - fed0[1], (fed0, fed1)  # and each shared prompt once (the padded path also shares
    # prompts only for micro-batches of whole groups)


def test_padding_frac_counts_the_positions_fed(tiny):
    """perf/padding_frac and the positions fed, on a hand-built batch. Prompts of 3 and 4 real tokens left-padded
    to P=4; responses 5, 2 (prompt 0) and 1, 3 (prompt 1); one optimizer step, so the training forward is the only
    one."""
    model, _ = tiny
    batch = make_batch([3, 4], [5, 2, 1, 3], 2)
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5])

    def fed(micro, grouped):
        learner = _learner(model, micro, grouped, max_new_tokens=6)
        frac = learner.update(batch, adv)["perf/padding_frac"]
        return frac, learner.fed_tokens[0]

    # micro=2, not grouped: rows [0, 1] then [2, 3], each one prompt, run once. Prompt 0: 3 columns (its pad trimmed),
    # all real; response inputs 5 - 1 = 4 columns x 2 rows, row 1 real on 2 -> 11 positions, 2 padding. Prompt 1:
    # 4 real; 3 - 1 = 2 columns x 2 rows, row 2 real on 1 -> 8 positions, 1 padding. 3 of 19.
    assert fed(2, False) == (pytest.approx(3 / 19), 19)
    # grouped (packed): prompt 0 (3) + response inputs 4 + 1; prompt 1 (4) + 0 + 2: 14 positions, all real
    assert fed(2, True) == (0.0, 14)
    # micro=3, not grouped: rows [0, 1, 2] mix two prompts (plain forward, prompt columns 4, responses trimmed to 5):
    # 27 positions, real 3+5, 3+2, 4+1 = 18; then row 3 alone, 4 + 3 all real. 9 of 34.
    assert fed(3, False) == (pytest.approx(9 / 34), 34)
    # grouped: prompt 0 (longest 5) then prompt 1 longest first, rows [0, 1, 3] then [2]. Packed, a micro-batch
    # shares a prompt between its consecutive rows even when it is not whole groups: 3 + 4 + 1 + 4 + 2 = 14, then
    # prompt 1 again for row 2 (4 + 0): 18 positions, all real.
    assert fed(3, True) == (0.0, 18)


def test_the_learner_packs_only_the_plain_module_without_checkpointing(tiny):
    """Packing needs the decoder and head of a plain module whose layers run once: with activation checkpointing
    (layers re-run in the backward) or group_by_length off the learner keeps the padded forward."""
    model, _ = tiny
    learner = _learner(model, 4)
    assert learner._packs(model)
    assert not _learner(model, 4, group_by_length=False)._packs(model)
    on = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    off = getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable
    on()
    try:
        assert not learner._packs(model)
    finally:
        off()
    assert learner._packs(model)
