"""r1zero's sampling loop (``rollout.decoder=loop``) against transformers ``generate`` (``rollout.decoder=generate``).

* The logit warpers equal transformers' (temperature, top-k, top-p), and a draw by inverse CDF has the warped
  softmax's frequencies (a zero-probability token is never drawn).
* Greedy responses are token for token those of ``generate``, with EOS, stop strings, a batch smaller than the
  rollout and prompts of different lengths (rows leave the batch as they finish: compaction must not mix rows).
* Sampled responses have ``generate``'s length and truncation statistics within noise.
"""

from __future__ import annotations

import pytest
import torch
from conftest import CONF
from omegaconf import OmegaConf

from r1zero.errors import ConfigError
from r1zero.models import load_model_and_tokenizer
from r1zero.rollout.base import SamplingConfig
from r1zero.rollout.decode import sample_tokens, warp_logits
from r1zero.rollout.hf import HFRolloutEngine


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    cfg = OmegaConf.load(CONF / "model" / "tiny.yaml")
    return load_model_and_tokenizer(cfg, torch.device("cpu"), torch.float32)


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (0.7, 0, 1.0), (1.0, 5, 1.0), (1.0, 0, 0.8),
                                                     (0.6, 8, 0.9), (1.3, 3, 0.5)])
def test_warpers_equal_transformers(temperature, top_k, top_p):
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    torch.manual_seed(0)
    logits = torch.randn(6, 40) * 3
    want = logits.clone()
    if temperature != 1.0:
        want = TemperatureLogitsWarper(temperature)(None, want)
    if top_k:
        want = TopKLogitsWarper(top_k)(None, want)
    if top_p < 1.0:
        want = TopPLogitsWarper(top_p)(None, want)
    got = warp_logits(logits, SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p))
    assert torch.equal(torch.isinf(got), torch.isinf(want))
    assert torch.allclose(got[~torch.isinf(got)], want[~torch.isinf(want)])


def test_inverse_cdf_draws_have_the_softmax_frequencies():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, float("-inf"), 0.5]]).repeat(40_000, 1)
    torch.manual_seed(0)
    tokens = sample_tokens(logits, SamplingConfig(temperature=1.0))
    freq = torch.bincount(tokens, minlength=6).float() / tokens.numel()
    want = logits[0].softmax(-1)
    assert freq[4] == 0  # a zero-probability token is never drawn
    assert (freq - want).abs().max() < 0.01, (freq, want)  # binomial sd <= 0.0025 at 40k draws
    # top-k 2 keeps the two most likely only, in their renormalised ratio e : 1
    tokens = sample_tokens(logits, SamplingConfig(temperature=1.0, top_k=2))
    assert set(tokens.unique().tolist()) == {0, 1}
    assert abs((tokens == 0).float().mean().item() - torch.e / (torch.e + 1)) < 0.01
    assert torch.equal(sample_tokens(logits[:3], SamplingConfig(temperature=0.0)), torch.zeros(3, dtype=torch.long))


PROMPTS = ["What is 1+1?", "A much longer question about many things?", "Q: 7*6", "hello there"]


@pytest.mark.parametrize("n,batch_size,stop", [(1, 64, ()), (3, 64, ()), (3, 5, ()), (2, 64, (" ", "e"))])
def test_greedy_loop_equals_generate(tiny, n, batch_size, stop):
    model, tok = tiny
    sampling = SamplingConfig(n=n, max_new_tokens=12, temperature=0.0, stop=stop)
    a = HFRolloutEngine(model, tok, batch_size=batch_size, decoder="generate").generate(PROMPTS, sampling)
    b = HFRolloutEngine(model, tok, batch_size=batch_size, decoder="loop").generate(PROMPTS, sampling)
    assert b.responses == a.responses
    assert torch.equal(b.input_ids, a.input_ids) and torch.equal(b.response_mask, a.response_mask)
    assert torch.equal(b.truncated, a.truncated) and torch.equal(b.prompt_index, a.prompt_index)
    if stop:  # the stop strings really ended some responses early
        assert (~b.truncated).any()


def test_greedy_loop_equals_generate_when_rows_finish_at_different_steps(tiny):
    """A token of one greedy response made an extra EOS: rows end at different steps (or never) and leave the
    batch one by one; the rows still going must decode exactly as before."""
    model, tok = tiny
    sampling = SamplingConfig(n=2, max_new_tokens=16, temperature=0.0)
    engines = [HFRolloutEngine(model, tok, decoder=d) for d in ("generate", "loop")]
    first = engines[0].generate(PROMPTS, sampling)
    extra = int(first.response_ids[2, 4])  # the 5th token of prompt 1's response
    for e in engines:
        e.eos_ids = e.eos_ids | {extra}
    a, b = (e.generate(PROMPTS, sampling) for e in engines)
    lengths = a.response_lengths
    assert len(set(lengths.tolist())) > 1 and (~a.truncated).any(), lengths
    assert b.responses == a.responses and torch.equal(b.response_mask, a.response_mask)
    assert torch.equal(b.input_ids, a.input_ids) and torch.equal(b.truncated, a.truncated)


def test_sampled_lengths_match_generate_within_noise(tiny):
    model, tok = tiny
    sampling = SamplingConfig(n=16, max_new_tokens=24, temperature=1.0, top_p=0.95)
    stats = {}
    for decoder in ("generate", "loop"):
        torch.manual_seed(3)
        batch = HFRolloutEngine(model, tok, decoder=decoder).generate(PROMPTS, sampling)
        stats[decoder] = (batch.response_lengths.float(), batch.truncated.float())
    (la, ta), (lb, tb) = stats["generate"], stats["loop"]
    se = ((la.var() + lb.var()) / la.numel()).sqrt()
    assert abs(la.mean() - lb.mean()) < 4 * se + 0.5, (la.mean(), lb.mean(), se)
    assert abs(ta.mean() - tb.mean()) < 0.2, (ta.mean(), tb.mean())


def test_unknown_decoder_is_one_line():
    from r1zero.schema import typed
    from r1zero.schema.rollout import HFRolloutConfig

    with pytest.raises(ConfigError, match=r"^rollout.decoder: 'beam' is not a valid choice; valid: loop, generate"):
        typed(HFRolloutConfig, {"decoder": "beam"})
