"""Rollout masks and the learner's micro-batch invariance on the tiny model."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import CONF, make_learner
from omegaconf import OmegaConf

from r1zero.algos import LOSS_AGGREGATIONS
from r1zero.learner.forward import prompt_groups, sequence_logprobs
from r1zero.learner.learner import Learner
from r1zero.model.load import build_byte_tokenizer, load_model_and_tokenizer
from r1zero.rollout import SamplingConfig
from r1zero.rollout.hf import HFRolloutEngine, find_response_end


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    cfg = OmegaConf.load(CONF / "model" / "tiny.yaml")
    return load_model_and_tokenizer(cfg, torch.device("cpu"), torch.float32)


def test_find_response_end_cases():
    tok = build_byte_tokenizer()
    eos, pad = tok.eos_token_id, tok.pad_token_id
    ids = tok.encode("<think> x </think> <answer> 7 </answer> trailing")
    # Stop string: the response ends at the token completing "</answer>"; the text keeps the tag.
    length, done, text = find_response_end(ids + [pad, pad], tok, {eos}, pad, ("</answer>",))
    assert done and text == "<think> x </think> <answer> 7 </answer>"
    assert length == len(tok.encode("<think> x </think> <answer> 7 </answer>"))
    # EOS: included in the response length, not in the text.
    ids = tok.encode("\\boxed{3}") + [eos, pad, pad]
    length, done, text = find_response_end(ids, tok, {eos}, pad, ())
    assert (length, done, text) == (len(tok.encode("\\boxed{3}")) + 1, True, "\\boxed{3}")
    # Neither: truncated at the budget.
    ids = tok.encode("no end in sight")
    assert find_response_end(ids, tok, {eos}, pad, ("</answer>",)) == (len(ids), False, "no end in sight")


def test_hf_rollout_batch_layout(tiny):
    model, tok = tiny
    engine = HFRolloutEngine(model, tok, batch_size=3)
    torch.manual_seed(1)
    prompts = ["What is 1+1?", "A much longer question about many things?"]
    batch = engine.generate(prompts, SamplingConfig(n=2, max_new_tokens=12, temperature=1.0))
    assert len(batch) == 4 and batch.prompt_index.tolist() == [0, 0, 1, 1]
    P = batch.prompt_len
    assert P == len(tok.encode(prompts[1]))
    # Short prompt is left-padded: its first positions are masked out.
    assert batch.attention_mask[0, 0] == 0 and batch.attention_mask[2, :P].all()
    lengths = batch.response_lengths
    assert (lengths <= 12).all()
    # A truncated response used the whole budget; a finished one ends with EOS inside the mask.
    assert (~batch.truncated | (lengths == 12)).all()
    for i in range(4):
        L = int(lengths[i])
        assert batch.response_mask[i, :L].all() and not batch.response_mask[i, L:].any()
        assert batch.attention_mask[i, P : P + L].all()
    # Greedy decoding is deterministic and matches a plain generate call.
    g1 = engine.generate(prompts[:1], SamplingConfig(n=1, max_new_tokens=8, temperature=0.0))
    enc = tok(prompts[:1], return_tensors="pt")
    ref = model.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    assert g1.response_ids[0, : g1.response_lengths[0]].tolist() == ref[0, enc.input_ids.shape[1]:][: int(g1.response_lengths[0])].tolist()


def _grad(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).clone()


# every aggregation with PPO's token ratio, and the other ratio / clip axes with one aggregation each
OBJECTIVES = [(agg, {}) for agg in sorted(LOSS_AGGREGATIONS)] + [
    ("seq_mean_token_mean", {"ratio": "sequence"}), ("token_mean", {"clip": "cispo", "clip_eps_high": 0.01}),
    ("token_mean", {"clip": "dual_clip", "dual_clip_c": 1.01})]


@pytest.mark.parametrize("agg,axes", OBJECTIVES, ids=[f"{a}-{'-'.join(map(str, x.values()))}" for a, x in OBJECTIVES])
def test_gradient_is_independent_of_micro_batch_size_and_row_order(tiny, agg, axes):
    """Dr. GRPO §3.2: the gradient an optimizer batch leaves is the same whatever ``micro_batch_size`` splits it
    (every micro-batch is normalised by the batch's totals, ``num_responses`` and ``num_tokens``) and whatever order
    its rows come in (a shuffled optimizer batch is re-ordered by prompt and length first): micro-batches of 1, 2
    (whole prompt groups), 3 (a group split) and the whole batch, in three row orders, against the batch in row
    order in one micro-batch. The other split, over ranks: tests/test_distributed.py (every aggregation, 2 ranks)."""
    model, tok = tiny
    torch.manual_seed(5)
    batch = HFRolloutEngine(model, tok).generate(["Q: 2+2?", "Q: what is seven times six?", "Q: 9-3?"],
                                                 SamplingConfig(n=2, max_new_tokens=12, temperature=1.0))
    adv = torch.tensor([1.0, -0.5, 0.25, -0.75, 0.5, -1.0])
    rows = [0, 1, 4, 5]  # an optimizer batch of prompts 0 and 2 (a shuffled mini-batch of the rollout)
    ref = make_learner(model, len(rows), agg, **axes)
    old = ref.compute_logprobs(model, batch) - 0.05  # ratio != 1 so clipping paths are exercised
    model.zero_grad(set_to_none=True)
    ref.accumulate_gradients(batch, torch.tensor(rows), old, adv)
    want = _grad(model)
    assert want.abs().sum() > 0
    got = {}
    for micro, order in ((1, (0, 1, 4, 5)), (2, (4, 1, 0, 5)), (3, (5, 0, 4, 1)), (4, (4, 1, 0, 5))):
        model.zero_grad(set_to_none=True)
        make_learner(model, micro, agg, **axes).accumulate_gradients(batch, torch.tensor(order), old, adv)
        got[micro, order] = _grad(model)
    for case, grad in got.items():
        torch.testing.assert_close(grad, want, atol=1e-6, rtol=0, msg=lambda m, case=case: f"{case}: {m}")
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("agg", sorted(LOSS_AGGREGATIONS))
def test_a_response_out_of_the_loss_is_as_if_absent(tiny, agg):
    """trl issue 6369 pinned (masked tokens diluting the normaliser): rows out of the loss (``in_loss``: overlong=mask,
    zero_std=drop) leave the gradient of the others exactly as if they were not in the optimizer batch, for any
    micro-batch size."""
    model, tok = tiny
    torch.manual_seed(6)
    batch = HFRolloutEngine(model, tok).generate(["Q: 2+2?", "Q: what is seven times six?", "Q: 9-3?"],
                                                 SamplingConfig(n=2, max_new_tokens=12, temperature=1.0))
    adv = torch.tensor([1.0, -0.5, 0.25, -0.75, 0.5, -1.0])
    in_loss = torch.tensor([True, False, True, True, False, True])
    kept = torch.nonzero(in_loss).flatten()
    ref = make_learner(model, len(kept), agg)
    old = ref.compute_logprobs(model, batch) - 0.05
    model.zero_grad(set_to_none=True)
    ref.accumulate_gradients(batch, kept, old, adv)
    want = _grad(model)
    for micro in (1, 4, len(batch)):
        model.zero_grad(set_to_none=True)
        make_learner(model, micro, agg).accumulate_gradients(batch, torch.arange(len(batch)), old, adv, in_loss=in_loss)
        torch.testing.assert_close(_grad(model), want, atol=1e-6, rtol=0)
    model.zero_grad(set_to_none=True)
    assert want.abs().sum() > 0


@pytest.mark.parametrize("agg", sorted(LOSS_AGGREGATIONS))
def test_an_optimizer_batchs_gradient_is_that_of_its_rows_alone(tiny, agg):
    """trl PR 6024 pinned (the loss divided by the token count of the whole generation batch while gradients were
    accumulated over part of it: 0.5x / 4x gradients): each optimizer batch of a rollout split in two is normalised by
    its own totals, so its gradient is the one of a rollout holding its rows only."""
    model, tok = tiny
    torch.manual_seed(7)
    batch = HFRolloutEngine(model, tok).generate(["Q: 2+2?", "Q: what is seven times six?"],
                                                 SamplingConfig(n=2, max_new_tokens=12, temperature=1.0))
    adv = torch.tensor([1.0, -0.5, 0.25, -0.75])
    learner = make_learner(model, 1, agg)
    old = learner.compute_logprobs(model, batch) - 0.05
    half = torch.tensor([0, 1])
    model.zero_grad(set_to_none=True)
    learner.accumulate_gradients(batch, half, old, adv)
    part = _grad(model)
    model.zero_grad(set_to_none=True)
    learner.accumulate_gradients(batch.select(half), torch.arange(2), old[half], adv[half])
    torch.testing.assert_close(part, _grad(model), atol=1e-6, rtol=0)
    model.zero_grad(set_to_none=True)
    assert part.abs().sum() > 0


def test_optimizer_is_the_papers_adamw_with_a_constant_lr_and_clip_1(tiny):
    """The paper's optimizer, built from the composed training config: oat's AdamW (FusedAdam in AdamW mode, eps
    1e-8), --learning_rate 0.000001, betas (0.9, 0.95) and weight decay 0 (oat's adam_beta_1/2 and l2 defaults),
    --lr_scheduler constant (transformers' get_scheduler ignores the warmup for it), gradient clipping at
    max_norm 1.0. Three steps on gradients of global norm 10: each is clipped to norm 1, the lr stays 1e-6. Under
    zero2/zero3 the same values go into the DeepSpeed config."""
    import copy
    import math

    from conftest import compose

    from r1zero.learner.strategy import build_strategy

    cfg = compose(["model=tiny"])
    model = copy.deepcopy(tiny[0])
    learner = Learner(model, cfg.train, cfg.algo, max_new_tokens=16, temperature=1.0)
    assert type(learner.optimizer) is torch.optim.AdamW
    group = learner.optimizer.param_groups[0]
    assert (group["lr"], tuple(group["betas"]), group["weight_decay"], group["eps"], group["amsgrad"]) == (
        1e-6, (0.9, 0.95), 0.0, 1e-8, False)
    params = [p for p in model.parameters() if p.requires_grad]
    count = sum(p.numel() for p in params)
    for _ in range(3):
        for p in params:
            p.grad = torch.full_like(p, 10.0 / math.sqrt(count))  # global norm 10
        norm, stepped = learner.strategy.clip_and_step(float(cfg.train.max_grad_norm))
        assert stepped and norm == pytest.approx(10.0, rel=1e-4)
        assert math.sqrt(sum(float(p.grad.pow(2).sum()) for p in params)) == pytest.approx(1.0, rel=1e-4)
        assert learner.strategy.last_lr() == 1e-6
    ds = build_strategy(compose(["strategy=zero2"]).strategy).build_config(cfg.train, torch.bfloat16)
    assert ds["optimizer"]["type"] == "AdamW" and ds["gradient_clipping"] == 1.0
    assert {k: ds["optimizer"]["params"][k] for k in ("lr", "betas", "eps", "weight_decay")} == {
        "lr": 1e-6, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.0}


def test_learner_logprobs_match_generation_positions(tiny):
    # Left padding must not shift positions: a padded row scores like the same row alone.
    model, tok = tiny
    torch.manual_seed(3)
    batch = HFRolloutEngine(model, tok).generate(["hi", "a longer prompt here"],
                                                 SamplingConfig(n=1, max_new_tokens=6, temperature=1.0))
    learner = make_learner(model, 2)
    together = learner.compute_logprobs(model, batch)
    alone = learner.compute_logprobs(model, batch.select(torch.tensor([0])))
    torch.testing.assert_close(together[:1], alone, atol=1e-5, rtol=0)
    # and equals a forward pass on the unpadded sequence
    ids = batch.input_ids[0][batch.attention_mask[0].bool()].unsqueeze(0)
    plen = int(batch.attention_mask[0, : batch.prompt_len].sum())
    L = int(batch.response_lengths[0])
    with torch.no_grad():
        direct = sequence_logprobs(model, ids, torch.ones_like(ids), plen)
    torch.testing.assert_close(together[0, :L], direct[0, :L], atol=1e-5, rtol=0)


def test_shared_prompt_forward_equals_the_plain_forward(tiny):
    """Running each distinct prompt once and sharing its KV cache (with its graph) across the G responses gives
    the plain forward's log-probabilities and the same gradient, including through the prompt's activations."""
    model, tok = tiny
    torch.manual_seed(5)
    batch = HFRolloutEngine(model, tok).generate(["hi", "a longer prompt here"],
                                                 SamplingConfig(n=3, max_new_tokens=12, temperature=1.0))
    groups = prompt_groups(batch.prompt_index)
    assert groups is not None and groups[0].tolist() == [0, 3] and groups[1] == 3
    assert prompt_groups(torch.tensor([0, 1, 2])) is None  # nothing shared: the plain path
    assert prompt_groups(torch.tensor([0, 0, 0, 1])) is None  # a partial group: the plain path
    assert prompt_groups(torch.tensor([0, 1, 0, 1])) is None  # not contiguous: the plain path
    same, other = torch.tensor([[5, 6], [5, 6]]), torch.tensor([[5, 6], [5, 7]])
    assert prompt_groups(torch.tensor([0, 0]), (same,)) is not None
    assert prompt_groups(torch.tensor([0, 0]), (other,)) is None  # one index, two different prompts: not shared
    grads, values = [], []
    for g in (None, groups):
        model.zero_grad(set_to_none=True)
        lp = sequence_logprobs(model, batch.input_ids, batch.attention_mask, batch.prompt_len, 0.7, groups=g)
        (lp * batch.response_mask * torch.linspace(-1, 1, len(batch)).unsqueeze(1)).sum().backward()
        values.append((lp * batch.response_mask).detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    model.zero_grad(set_to_none=True)
    torch.testing.assert_close(values[1], values[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(grads[1], grads[0], atol=1e-5, rtol=1e-4)
    assert grads[0].abs().sum() > 0


def test_update_old_logprobs_are_the_sampling_policys(tiny):
    """One optimizer step per rollout is exactly on-policy (ratio 1); with two optimizer steps the second
    half is scored against the *pre-update* policy, so its ratio moves away from 1."""
    import copy

    model, tok = tiny
    torch.manual_seed(4)
    batch = HFRolloutEngine(model, tok).generate(["Q: 2+2?", "Q: 3+5?"], SamplingConfig(n=2, max_new_tokens=10))
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5])
    on = copy.deepcopy(model)
    m = make_learner(on, 2).update(batch, adv)
    assert m["train/ratio_mean"] == 1.0 and m["train/pg_clipfrac"] == 0.0 and m["train/optimizer_steps"] == 1
    assert any(not torch.equal(a, b) for a, b in zip(on.parameters(), model.parameters()))
    two = copy.deepcopy(model)
    learner = make_learner(two, 2)
    learner.cfg.mini_batch_size = 2
    m = learner.update(batch, adv)
    assert m["train/optimizer_steps"] == 2 and m["train/ratio_mean"] != 1.0


def test_mini_batches_are_seeded_shuffles_grouped_by_prompt():
    """mini_batch_size < N: each epoch a seeded permutation of the rows, every optimizer batch sorted by prompt;
    the same (seed, step, epoch) gives the same split, another step another one; one batch keeps row order."""
    from types import SimpleNamespace

    learner = Learner.__new__(Learner)  # only the split logic: no model needed
    learner.seed, learner.strategy = 7, SimpleNamespace(world_size=1)
    learner.cfg = OmegaConf.create({"mini_batch_size": 4})
    # 16 rows, 4 prompts x 4 responses (a RolloutBatch's len() and prompt_index are all the split reads)
    rows = type("Rows", (), {"__len__": lambda self: 16, "prompt_index": torch.arange(4).repeat_interleave(4)})()
    a = learner.mini_batches(rows, step=3, epoch=0)
    assert len(a) == 4 and all(len(m) == 4 for m in a)
    assert sorted(torch.cat(a).tolist()) == list(range(16))  # a permutation: every row once
    for m in a:
        p = rows.prompt_index[m]
        assert torch.equal(p, p.sort().values)  # grouped by prompt inside each optimizer batch
    assert torch.cat(a).tolist() != list(range(16))  # shuffled
    assert all(torch.equal(x, y) for x, y in zip(a, learner.mini_batches(rows, step=3, epoch=0)))
    assert any(not torch.equal(x, y) for x, y in zip(a, learner.mini_batches(rows, step=4, epoch=0)))
    assert any(not torch.equal(x, y) for x, y in zip(a, learner.mini_batches(rows, step=3, epoch=1)))
    learner.cfg.mini_batch_size = 16
    assert [m.tolist() for m in learner.mini_batches(rows, step=3, epoch=0)] == [list(range(16))]


def _llama_style_tokenizer():
    """A byte-level tokenizer that prepends ``<|begin_of_text|>`` to every text, as Llama-3's does (no files)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|begin_of_text|>", "<|end_of_text|>"])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                       special_tokens=[("<|begin_of_text|>", bos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>",
                                   eos_token="<|end_of_text|>", pad_token="<|end_of_text|>")


def test_prompts_start_with_bos_for_tokenizers_that_have_one():
    """Llama-3.2 saw <|begin_of_text|> in the paper's runs (vLLM and oat tokenize with special tokens): the
    HF engine's prompt ids (which the learner and evaluation use) start with it; Qwen-style tokenizers get none."""
    from r1zero.model.load import build_tiny_model
    from r1zero.rollout.base import encode_prompts

    llama = _llama_style_tokenizer()
    bos = llama.bos_token_id
    assert encode_prompts(llama, ["ab"]) == [[bos, *llama("ab", add_special_tokens=False)["input_ids"]]]
    qwen_like = build_byte_tokenizer()
    assert encode_prompts(qwen_like, ["ab"]) == [qwen_like("ab", add_special_tokens=False)["input_ids"]]

    torch.manual_seed(0)
    model = build_tiny_model(OmegaConf.load(CONF / "model" / "tiny.yaml"), llama, torch.float32)
    prompts = ["Q: 1+1?", "Q: a longer question?"]
    batch = HFRolloutEngine(model, llama).generate(prompts, SamplingConfig(n=2, max_new_tokens=3))
    P = batch.prompt_len
    assert P == len(prompts[1]) + 1  # bytes + BOS
    for row in range(len(batch)):
        first = int((batch.attention_mask[row, :P] == 0).sum())  # left padding
        assert batch.input_ids[row, first] == bos and (batch.input_ids[row, first + 1 : P] != bos).all()
        text = llama.decode(batch.input_ids[row, first + 1 : P])
        assert text == prompts[row // 2]


def test_token_entropy_is_the_softmax_entropy_with_its_gradient():
    from r1zero.model.logprob import token_entropy

    torch.manual_seed(8)
    logits = torch.randn(5, 11, dtype=torch.float64, requires_grad=True)
    got = token_entropy(logits, 0.7)
    want = torch.distributions.Categorical(logits=logits / 0.7).entropy()
    torch.testing.assert_close(got, want)
    assert token_entropy(torch.zeros(2, 8)).tolist() == pytest.approx([math.log(8)] * 2)  # uniform: log V
    (g,) = torch.autograd.grad(got.sum(), logits)
    (w,) = torch.autograd.grad(want.sum(), logits)
    torch.testing.assert_close(g, w)


def test_entropy_is_the_same_on_every_forward_path(tiny):
    """``sequence_logprobs(..., entropy=True)``: the plain forward, the shared-prompt forward, and the LM head on the
    real positions give the same (B, T) entropies on response tokens."""
    model, tok = tiny
    torch.manual_seed(9)
    batch = HFRolloutEngine(model, tok).generate(["hi", "a longer prompt here"],
                                                 SamplingConfig(n=2, max_new_tokens=10, temperature=1.0))
    mask = batch.response_mask
    args = (model, batch.input_ids, batch.attention_mask, batch.prompt_len, 0.7)
    with torch.no_grad():
        _, plain = sequence_logprobs(*args, entropy=True)
        _, shared = sequence_logprobs(*args, groups=prompt_groups(batch.prompt_index), entropy=True)
        _, head = sequence_logprobs(*args, lengths=batch.response_lengths, entropy=True)
    assert (plain * mask).sum() > 0
    torch.testing.assert_close(shared * mask, plain * mask, atol=1e-5, rtol=0)
    torch.testing.assert_close(head * mask, plain * mask, atol=1e-5, rtol=0)


def test_entropy_bonus_reaches_the_gradient(tiny):
    """``algo.entropy_coef > 0`` subtracts coef x the aggregated entropy: with zero advantages the gradient is the
    entropy's alone, and the learner reports ``train/entropy``."""
    import copy

    model, tok = tiny
    torch.manual_seed(10)
    batch = HFRolloutEngine(model, tok).generate(["Q: 2+2?"], SamplingConfig(n=2, max_new_tokens=8))
    zero = torch.zeros(len(batch))
    off, on = copy.deepcopy(model), copy.deepcopy(model)
    m_off = make_learner(off, 2).update(batch, zero)
    m_on = make_learner(on, 2, entropy_coef=0.5).update(batch, zero)
    assert "train/entropy" not in m_off and m_on["train/entropy"] > 0
    assert m_off["train/grad_norm"] == 0.0 and m_on["train/grad_norm"] > 0


def test_hf_engine_log_probs_match_the_learner_in_fp32(tiny):
    """The HF engine reports the log-probability it sampled each token with; in fp32 the learner's own forward gives
    the same numbers (a mismatch of ~0), so the update's ``rollout/mismatch_*`` metrics are ~0 and truncated
    importance sampling weights are 1. A perturbed engine shows up in them: log 3 taken off row 0's tokens puts
    their ratio at 3, outside [0.5, 2]."""
    import copy

    model, tok = tiny
    torch.manual_seed(11)
    batch = HFRolloutEngine(model, tok).generate(["Q: 2+2?", "Q: what is seven times six?"],
                                                 SamplingConfig(n=2, max_new_tokens=12, temperature=0.7))
    mask = batch.response_mask
    assert batch.behaviour_logprobs is not None and batch.behaviour_logprobs.shape == mask.shape
    learner = make_learner(copy.deepcopy(model), 2)
    learner.temperature = 0.7
    learned = learner.compute_logprobs(learner.model, batch)
    assert ((learned - batch.behaviour_logprobs).abs() * mask).max() < 1e-4
    assert (batch.behaviour_logprobs * (1 - mask)).abs().sum() == 0  # 0 past each response
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5])
    m = learner.update(batch, adv)
    assert m["rollout/mismatch_abs_max"] < 1e-4 and m["rollout/mismatch_abs_mean"] < 1e-5
    assert abs(m["rollout/mismatch_k3"]) < 1e-8 and m["rollout/mismatch_ratio_out_frac"] == 0.0
    tis = make_learner(copy.deepcopy(model), 2, tis_cap=2.0)
    tis.temperature = 0.7
    assert tis.update(batch, adv)["train/tis_weight_mean"] == pytest.approx(1.0, abs=1e-4)

    off = copy.deepcopy(batch)
    off.behaviour_logprobs[0] -= math.log(3) * mask[0]
    learner = make_learner(copy.deepcopy(model), 2)
    learner.temperature = 0.7
    m = learner.update(off, adv)
    n0 = float(mask[0].sum())
    assert m["rollout/mismatch_ratio_out_frac"] == pytest.approx(n0 / float(mask.sum()))
    assert m["rollout/mismatch_abs_max"] == pytest.approx(math.log(3), abs=1e-4)
    assert m["rollout/mismatch_k3"] == pytest.approx(n0 * (3 - 1 - math.log(3)) / float(mask.sum()), rel=1e-3)


def test_greedy_and_generate_decoding_report_no_behaviour_log_probs(tiny):
    model, tok = tiny
    greedy = HFRolloutEngine(model, tok).generate(["hi"], SamplingConfig(n=1, max_new_tokens=4, temperature=0.0))
    assert greedy.behaviour_logprobs is None
    generated = HFRolloutEngine(model, tok, decoder="generate").generate(["hi"], SamplingConfig(n=1, max_new_tokens=4))
    assert generated.behaviour_logprobs is None
    with pytest.raises(ValueError, match="algo.tis_cap needs the rollout engine's log-probabilities"):
        make_learner(model, 1, tis_cap=2.0).update(generated, torch.zeros(1))
