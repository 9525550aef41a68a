"""r1zero's sampling loop (``rollout.decoder=loop``) against transformers ``generate`` (``rollout.decoder=generate``).

* The logit warpers equal transformers' (temperature, top-k, top-p), and a draw by inverse CDF has the warped
  softmax's frequencies (a zero-probability token is never drawn).
* Greedy responses are token for token those of ``generate``, with EOS, stop strings, a batch smaller than the
  rollout and prompts of different lengths (rows leave the batch as they finish: compaction must not mix rows).
* Sampled responses have ``generate``'s length and truncation statistics within noise.
* The static-KV-cache step (r1zero.rollout.static_cache) gives bitwise the logits of the model's own forward
  (Qwen2 with biases and Llama, fp32 and bf16 autocast with prepacked weights): greedy and seeded sampled
  tokens are identical, and the packed weights follow an optimizer step.
"""

from __future__ import annotations

import pytest
import torch
from conftest import CONF
from omegaconf import OmegaConf

from r1zero.model.load import cpu_bf16_matmuls, load_model_and_tokenizer
from r1zero.rollout import decode, static_cache
from r1zero.rollout.base import SamplingConfig
from r1zero.rollout.decode import sample_tokens, warp_logits
from r1zero.rollout.hf import HFRolloutEngine
from r1zero.schema.errors import ConfigError


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
# one template's prompts: a common prefix of 30 byte tokens (>= MIN_SHARED_PREFIX), then questions of 3-19 tokens
TEMPLATE = "<|im_start|>system\nBe brief.\nQ: "
SHARED = [TEMPLATE + q for q in ("1+1?", "What is seven times six?", "hi", "Name a prime.")]


@pytest.mark.parametrize("prompts", [PROMPTS, SHARED], ids=["distinct", "shared-prefix"])
@pytest.mark.parametrize("n,batch_size,stop", [(1, 64, ()), (3, 64, ()), (3, 5, ()), (2, 64, (" ", "e"))])
def test_greedy_loop_equals_generate(tiny, n, batch_size, stop, prompts):
    model, tok = tiny
    sampling = SamplingConfig(n=n, max_new_tokens=12, temperature=0.0, stop=stop)
    a = HFRolloutEngine(model, tok, batch_size=batch_size, decoder="generate").generate(prompts, sampling)
    b = HFRolloutEngine(model, tok, batch_size=batch_size, decoder="loop").generate(prompts, sampling)
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


@pytest.mark.parametrize("prompts", [PROMPTS, SHARED], ids=["distinct", "shared-prefix"])
def test_sampled_lengths_match_generate_within_noise(tiny, prompts):
    model, tok = tiny
    sampling = SamplingConfig(n=16, max_new_tokens=24, temperature=1.0, top_p=0.95)
    stats = {}
    for decoder in ("generate", "loop"):
        torch.manual_seed(3)
        batch = HFRolloutEngine(model, tok, decoder=decoder).generate(prompts, sampling)
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


def _tiny_arch(arch: str):
    """A 2-layer random model of ``arch`` with GQA (4 query heads, 2 KV heads) on the tiny byte tokenizer; the
    Qwen2 one gets random q/k/v biases (zero-initialised ones would not test the packed bias)."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from r1zero.model.load import build_byte_tokenizer

    tok = build_byte_tokenizer()
    kw = {"vocab_size": len(tok), "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256,
          "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id, "bos_token_id": None}
    torch.manual_seed(0)
    if arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(tie_word_embeddings=False, **kw))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(tie_word_embeddings=True, **kw))
        with torch.no_grad():
            for layer in model.model.layers:
                for lin in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    lin.bias.normal_(0, 0.5)
        model.config.use_sliding_window = False
    with torch.no_grad():  # weights large enough that the logits are not near-uniform
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(5)
    return model.eval(), tok


def _responses(engine, sampling, seed, monkeypatch, forward_only: bool, prompts=PROMPTS):
    """Token ids of one rollout; ``forward_only`` decodes through the model's forward instead of the static step."""
    with monkeypatch.context() as m:
        if forward_only:
            m.setattr(decode, "unsupported_reason", lambda model: "forced")
        torch.manual_seed(seed)
        batch = engine.generate(prompts, sampling)
    return batch.input_ids, batch.responses


@pytest.mark.parametrize("prompts", [PROMPTS, SHARED], ids=["distinct", "shared-prefix"])
@pytest.mark.parametrize("arch", ["qwen2", "llama"])
@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_static_cache_step_is_bitwise_the_models_forward(arch, autocast, prompts, monkeypatch):
    """Prefill (one pass, or prefix and suffixes) and decode steps of the static decoder against the model's
    forward on the same layout: the same tokens, greedy and seeded sampled."""
    model, tok = _tiny_arch(arch)
    assert static_cache.unsupported_reason(model) is None
    ac = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if autocast else None
    engine = HFRolloutEngine(model, tok, decoder="loop", autocast=ac)
    static_cache._PACKED.pop(model, None)
    # greedy; sampled with top-p and a stop string (rows finish at different steps, prompts are left-padded)
    for sampling in (SamplingConfig(n=2, max_new_tokens=20, temperature=0.0),
                     SamplingConfig(n=4, max_new_tokens=20, temperature=1.0, top_p=0.9, stop=("e",))):
        want = _responses(engine, sampling, 5, monkeypatch, forward_only=True, prompts=prompts)
        got = _responses(engine, sampling, 5, monkeypatch, forward_only=False, prompts=prompts)
        assert got[1] == want[1]
        assert torch.equal(got[0], want[0])
    lengths = {len(r) for r in got[1]}
    assert len(lengths) > 1, lengths  # compaction ran: rows left the batch at different steps
    # bf16 on a CPU with oneDNN's bf16 kernels runs the prepacked weights; fp32, or a CPU without them, the modules
    assert (model in static_cache._PACKED) == (autocast and cpu_bf16_matmuls())


def test_bf16_on_a_cpu_without_bf16_kernels_decodes_through_the_modules(monkeypatch):
    """An AVX2-only CPU has no oneDNN bf16 path (its weight prepacking raises there): the static step multiplies
    with the modules under autocast instead, the same tokens as the model's forward."""
    monkeypatch.setattr(static_cache, "cpu_bf16_matmuls", lambda: False)
    model, tok = _tiny_arch("qwen2")
    engine = HFRolloutEngine(model, tok, decoder="loop", autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    static_cache._PACKED.pop(model, None)
    sampling = SamplingConfig(n=2, max_new_tokens=12, temperature=0.0)
    got = _responses(engine, sampling, 0, monkeypatch, forward_only=False)
    want = _responses(engine, sampling, 0, monkeypatch, forward_only=True)
    assert got[1] == want[1] and torch.equal(got[0], want[0])
    assert model not in static_cache._PACKED


@pytest.mark.skipif(not cpu_bf16_matmuls(), reason="this CPU has no oneDNN bf16 kernels (nothing is prepacked)")
def test_packed_weights_follow_an_optimizer_step(monkeypatch):
    model, tok = _tiny_arch("qwen2")
    engine = HFRolloutEngine(model, tok, decoder="loop", autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    sampling = SamplingConfig(n=1, max_new_tokens=12, temperature=0.0)
    before = _responses(engine, sampling, 0, monkeypatch, forward_only=False)[1]
    packed = static_cache._PACKED[model][1]
    assert _responses(engine, sampling, 0, monkeypatch, forward_only=False)[1] == before
    assert static_cache._PACKED[model][1] is packed  # unchanged weights: packed once
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 0.5
    opt.step()  # in-place update, as AdamW's
    after = _responses(engine, sampling, 0, monkeypatch, forward_only=False)[1]
    assert static_cache._PACKED[model][1] is not packed
    assert after == _responses(engine, sampling, 0, monkeypatch, forward_only=True)[1]
    assert after != before


def test_architectures_the_step_does_not_cover_decode_through_their_forward(tiny):
    from transformers import GPT2Config, GPT2LMHeadModel, MistralConfig, MistralForCausalLM

    _, tok = tiny
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, n_positions=128,
                                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)).eval()
    assert "model_type 'gpt2'" in static_cache.unsupported_reason(gpt2)
    mistral = MistralForCausalLM(MistralConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                               num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                               sliding_window=16))
    assert static_cache.unsupported_reason(mistral) == "sliding-window attention"
    from transformers import Qwen3Config, Qwen3ForCausalLM

    qwen3 = Qwen3ForCausalLM(Qwen3Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, head_dim=16,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
    assert "model_type 'qwen3'" in static_cache.unsupported_reason(qwen3)  # q_norm / k_norm: r1zero.model.speed_paths.SPEED_PATHS
    sampling = SamplingConfig(n=2, max_new_tokens=10, temperature=0.0)
    a = HFRolloutEngine(gpt2, tok, decoder="generate").generate(PROMPTS, sampling)
    b = HFRolloutEngine(gpt2, tok, decoder="loop").generate(PROMPTS, sampling)
    assert b.responses == a.responses and torch.equal(b.input_ids, a.input_ids)


def test_rms_norm_is_bitwise_the_modules():
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    torch.manual_seed(0)
    norm = LlamaRMSNorm(96, eps=1e-5)
    with torch.no_grad():
        norm.weight.normal_(1, 0.2)
    for scale in (1e-2, 1.0, 1e2):
        h = torch.randn(7, 1, 96) * scale
        assert torch.equal(static_cache._rms_norm(norm, h), norm(h))


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_static_step_logits_equal_the_forward(arch, autocast):
    """Three steps on left-padded prompts after a prefill: the logits are equal bit for bit."""
    import contextlib
    import copy

    from transformers import DynamicCache

    model, _ = _tiny_arch(arch)
    ids = torch.tensor([[0, 0, 5, 6, 7], [1, 2, 3, 4, 5]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if autocast else contextlib.nullcontext
    with torch.no_grad(), ctx():
        cache = DynamicCache()
        model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
              **{decode._cache_kwarg(model): cache})
        static = static_cache.StaticKVDecoder.from_cache(model, copy.deepcopy(cache), max_len=8)
        forward = decode._ForwardStep(model, cache, decode._cache_kwarg(model))
        tokens, last = torch.tensor([9, 10]), pos[:, -1]
        for _ in range(3):
            mask = torch.cat([mask, mask.new_ones(2, 1)], dim=1)
            last = last + 1
            a, b = forward.step(tokens, last, mask), static.step(tokens, last, mask)
            assert torch.equal(a, b)
            tokens = a.argmax(-1)


def test_shared_prefix_layout_by_hand():
    """Prompts [7 7 7 7 1] and [7 7 7 7 2 3] (left-padded to 6) with MIN_SHARED_PREFIX lowered to 3: prefix
    [7 7 7 7], suffixes left-padded to 2 after it, positions continuing at 4."""
    ids = torch.tensor([[0, 7, 7, 7, 7, 1], [7, 7, 7, 7, 2, 3]])
    mask = torch.tensor([[0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    old, decode.MIN_SHARED_PREFIX = decode.MIN_SHARED_PREFIX, 3
    try:
        prefix, suffix, full, pos = decode.shared_prefix(ids, mask)
        assert prefix.tolist() == [[7, 7, 7, 7]]
        assert suffix[:, 1:].tolist() == [[1], [3]] and suffix[1].tolist() == [2, 3]
        assert full.tolist() == [[1, 1, 1, 1, 0, 1], [1, 1, 1, 1, 1, 1]]
        assert pos.tolist() == [[4, 4], [4, 5]]
        # the shortest prompt keeps a suffix token: a prompt that is all prefix shortens the prefix
        decode.MIN_SHARED_PREFIX = 2
        short = decode.shared_prefix(torch.tensor([[0, 7, 7, 7], [7, 7, 7, 7]]), torch.tensor([[0, 1, 1, 1], [1] * 4]))
        assert short[0].tolist() == [[7, 7]] and short[1].tolist() == [[0, 7], [7, 7]]
        assert decode.shared_prefix(ids[:1], mask[:1]) is None  # one prompt: nothing to share
        decode.MIN_SHARED_PREFIX = 5
        assert decode.shared_prefix(ids, mask) is None  # 4 common tokens: not worth a pass
    finally:
        decode.MIN_SHARED_PREFIX = old
