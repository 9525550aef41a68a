"""Length-grouped micro-batches (``train.group_by_length``): same loss and gradient, less padding computed."""

from __future__ import annotations

import pytest
import torch
from conftest import CONF
from omegaconf import OmegaConf

from r1zero.learner import (
    HIDDEN_HEAD_TYPES,
    Learner,
    length_bands,
    length_order,
    prompt_groups,
    sequence_logprobs,
)
from r1zero.models import load_model_and_tokenizer
from r1zero.rollout.base import RolloutBatch


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return load_model_and_tokenizer(OmegaConf.load(CONF / "model" / "tiny.yaml"), torch.device("cpu"), torch.float32)


def hand_batch(prompt_lens, resp_lens, G, P, T, pad=0, vocab=200, seed=0) -> RolloutBatch:
    """Rows i = prompt i // G (real length prompt_lens[i // G], left-padded to P) + a response of resp_lens[i]."""
    g = torch.Generator().manual_seed(seed)
    n = len(resp_lens)
    ids, att, mask = torch.full((n, P + T), pad), torch.zeros((n, P + T), dtype=torch.long), torch.zeros((n, T))
    prompts = [torch.randint(1, vocab, (pl,), generator=g) for pl in prompt_lens]
    for i, rl in enumerate(resp_lens):
        pl = prompt_lens[i // G]
        ids[i, P - pl : P] = prompts[i // G]
        ids[i, P : P + rl] = torch.randint(1, vocab, (rl,), generator=g)
        att[i, P - pl : P + rl] = 1
        mask[i, :rl] = 1.0
    return RolloutBatch(input_ids=ids, attention_mask=att, response_mask=mask, prompt_len=P, responses=[""] * n,
                        truncated=torch.zeros(n, dtype=torch.bool), prompt_index=torch.arange(n) // G)


def _learner(model, micro, group_by_length=True, max_new_tokens=16):
    train = {"lr": 1e-3, "betas": [0.9, 0.95], "weight_decay": 0.0, "max_grad_norm": 1.0, "warmup_steps": 0,
             "mini_batch_size": None, "micro_batch_size": micro, "ppo_epochs": 1, "group_by_length": group_by_length}
    algo = {"loss_agg": "seq_mean_token_sum_norm", "clip_eps": 0.2, "kl_coef": 0.0}
    return Learner(model, train, algo, max_new_tokens=max_new_tokens, temperature=1.0)


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
    batch = hand_batch([5, 9], [1, 14, 2, 13, 12, 1, 3, 14], G=4, P=9, T=14)
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
    assert fed1[1] < fed0[1], (fed0, fed1)  # less padding computed (micro=8: the length bands)


def test_padding_frac_counts_the_positions_fed(tiny):
    """perf/padding_frac on a hand-built batch. Prompts of 3 and 4 real tokens left-padded to P=4; responses 5, 2
    (prompt 0) and 1, 3 (prompt 1); one optimizer step, so the training forward is the only one."""
    model, _ = tiny
    batch = hand_batch([3, 4], [5, 2, 1, 3], G=2, P=4, T=6)
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5])

    def padding_frac(micro, grouped):
        return _learner(model, micro, grouped, max_new_tokens=6).update(batch, adv)["perf/padding_frac"]

    # micro=2, not grouped: rows [0, 1] then [2, 3], each one prompt, run once. Prompt 0: 3 columns (its pad trimmed),
    # all real; response inputs 5 - 1 = 4 columns x 2 rows, row 1 real on 2 -> 11 positions, 2 padding. Prompt 1:
    # 4 real; 3 - 1 = 2 columns x 2 rows, row 2 real on 1 -> 8 positions, 1 padding. 3 of 19.
    assert padding_frac(2, False) == pytest.approx(3 / 19)
    # grouped: each response of a shared prompt runs in its own length band (5 and 2 are too far apart to share
    # one within 25% padding; so are 3 and 1): 3 + 4 + 1 and 4 + 2 + 0 positions, none padding.
    assert padding_frac(2, True) == 0.0
    # micro=3, not grouped: rows [0, 1, 2] mix two prompts (plain forward, prompt columns 4, responses trimmed to 5):
    # 27 positions, real 3+5, 3+2, 4+1 = 18; then row 3 alone, 4 + 3 all real. 9 of 34.
    assert padding_frac(3, False) == pytest.approx(9 / 34)
    # grouped: prompt 0 (longest 5) then prompt 1 longest first, rows [0, 1, 3] (real 3+5, 3+2, 4+3 = 20 of 27)
    # then row 2 alone (4 + 1, all real). 7 of 32.
    assert padding_frac(3, True) == pytest.approx(7 / 32)


def test_length_bands_and_the_banded_forward(tiny):
    """Bands cut where a row would push the band past 25% padding; the banded shared-prompt forward gives the plain
    forward's log-probabilities on every response token and the same gradient."""
    bands = length_bands(torch.tensor([2, 10, 9, 1, 8]))
    assert [(r.tolist(), t) for r, t in bands] == [([1, 2, 4], 10), ([0, 3], 2)]
    assert [(r.tolist(), t) for r, t in length_bands(torch.tensor([0, 0]))] == [([0, 1], 1)]
    model, _ = tiny
    batch = hand_batch([5, 9], [1, 14, 2, 13, 12, 1, 3, 14], G=4, P=9, T=14)
    groups = prompt_groups(batch.prompt_index)
    grads, values = [], []
    for kwargs in ({}, {"groups": groups}, {"groups": groups, "bands": length_bands(batch.response_lengths)}):
        model.zero_grad(set_to_none=True)
        lp = sequence_logprobs(model, batch.input_ids, batch.attention_mask, batch.prompt_len, 0.7, **kwargs)
        (lp * batch.response_mask * torch.linspace(-1, 1, len(batch)).unsqueeze(1)).sum().backward()
        values.append((lp * batch.response_mask).detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    model.zero_grad(set_to_none=True)
    assert len(length_bands(batch.response_lengths)) > 1
    for v, g in zip(values[1:], grads[1:]):
        torch.testing.assert_close(v, values[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(g, grads[0], atol=1e-5, rtol=1e-4)


def test_the_banded_forward_embeds_once_and_runs_the_head_on_real_positions_only(tiny):
    """Banded, a micro-batch is embedded in one call (one embedding gradient, not one per band) and the LM head
    sees exactly the real response positions (sum of the lengths: none of a band's padding, no prompt position),
    as it does for unshared rows given their lengths; a model outside HIDDEN_HEAD_TYPES ignores the bands and
    gives the same values."""
    model, _ = tiny
    resp = [1, 14, 2, 13, 12, 1, 3, 14]
    batch = hand_batch([5, 9], resp, G=4, P=9, T=14)
    groups, bands = prompt_groups(batch.prompt_index), length_bands(batch.response_lengths)
    assert len(bands) > 1 and model.config.model_type in HIDDEN_HEAD_TYPES
    calls = {"embed": 0, "head_rows": []}
    hooks = [model.model.embed_tokens.register_forward_hook(lambda m, a, o: calls.__setitem__("embed", calls["embed"] + 1)),
             model.lm_head.register_forward_hook(lambda m, a, o: calls["head_rows"].append(a[0].shape[:-1]))]
    try:
        lp = sequence_logprobs(model, batch.input_ids, batch.attention_mask, batch.prompt_len, groups=groups,
                               bands=bands, lengths=batch.response_lengths)
    finally:
        for h in hooks:
            h.remove()
    assert calls["embed"] == 1
    assert calls["head_rows"] == [torch.Size([sum(resp)])]
    assert torch.equal(lp != 0, batch.response_mask.bool())  # zero exactly past each row's length
    plain = sequence_logprobs(model, batch.input_ids, batch.attention_mask, batch.prompt_len)
    torch.testing.assert_close(lp, plain * batch.response_mask, atol=1e-5, rtol=0)
    calls["head_rows"].clear()
    hook = model.lm_head.register_forward_hook(lambda m, a, o: calls["head_rows"].append(a[0].shape[:-1]))
    try:  # unshared rows with their lengths: one forward, the head on the real positions only
        unshared = sequence_logprobs(model, batch.input_ids, batch.attention_mask, batch.prompt_len,
                                     lengths=batch.response_lengths)
    finally:
        hook.remove()
    assert calls["head_rows"] == [torch.Size([sum(resp)])]
    assert torch.equal(unshared != 0, batch.response_mask.bool())
    torch.testing.assert_close(unshared, plain * batch.response_mask, atol=1e-5, rtol=0)
    default = sequence_logprobs(model, batch.input_ids, batch.attention_mask, batch.prompt_len, groups=groups,
                                bands=bands)  # lengths read from the attention mask
    assert torch.equal(default, lp)
    model.config.model_type = "unlisted"
    try:
        other = sequence_logprobs(model, batch.input_ids, batch.attention_mask, batch.prompt_len, groups=groups,
                                  bands=bands, lengths=batch.response_lengths)
    finally:
        model.config.model_type = "qwen2"
    torch.testing.assert_close(other * batch.response_mask, lp, atol=1e-5, rtol=0)
