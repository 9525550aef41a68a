"""r1zero's own sampling loop for :class:`~r1zero.rollout.hf.HFRolloutEngine` (``rollout.decoder=loop``).

It samples from the same distribution as transformers ``generate`` (temperature, then top-k, then top-p, as
transformers' ``TemperatureLogitsWarper`` / ``TopKLogitsWarper`` / ``TopPLogitsWarper`` apply them) and spends
less on the quickstart's shape (36 responses of ~20 tokens to 6 prompts), where ``generate`` spent a fifth of its
time in ``torch.multinomial`` and most of its matmuls on work that is thrown away (docs/performance.md):

* each distinct prompt is prefilled once and its KV cache repeated for its ``n`` responses (``generate`` prefills
  all ``n`` copies);
* rows that finished (EOS or a stop string) leave the batch, so late steps run on the rows still going;
* a sample is one uniform draw against the cumulative distribution (inverse CDF), not ``multinomial``'s
  exponential race over the whole vocabulary. Same distribution, different random stream: sampled responses
  differ from ``generate``'s for a given seed, greedy ones do not (tests/test_decode.py).
"""

from __future__ import annotations

from typing import Sequence

import torch

from .base import SamplingConfig
from .static_cache import StaticKVDecoder, unsupported_reason


def warp_logits(logits: torch.Tensor, sampling: SamplingConfig) -> torch.Tensor:
    """Temperature, top-k and top-p applied to ``logits`` (B, V) float32, as transformers' warpers do.

    Returns:
        (B, V) float32 logits with the removed tokens at ``-inf`` (at least one token is kept per row).
    """
    scores = logits / sampling.temperature if sampling.temperature != 1.0 else logits
    k = sampling.top_k
    if k and 0 < k < scores.shape[-1]:
        kth = torch.topk(scores, k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if sampling.top_p < 1.0:
        # TopPLogitsWarper: sort ascending, drop the tokens whose cumulative mass is <= 1 - top_p, keep the last.
        sorted_scores, order = torch.sort(scores, descending=False, dim=-1)
        cum = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        drop = cum <= (1 - sampling.top_p)
        drop[..., -1:] = False
        scores = scores.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return scores


def sample_tokens(logits: torch.Tensor, sampling: SamplingConfig) -> torch.Tensor:
    """One token per row of ``logits`` (B, V): argmax when greedy, else a draw from the warped softmax by
    inverse CDF (one ``torch.rand`` per row from the global generator). Returns (B,) long."""
    if sampling.greedy:
        return logits.argmax(dim=-1)
    probs = warp_logits(logits, sampling).softmax(dim=-1)
    cdf = probs.cumsum(dim=-1)
    u = torch.rand(probs.shape[0], 1, dtype=cdf.dtype, device=cdf.device) * cdf[:, -1:]
    # searchsorted finds the first index whose cdf >= u; u > 0 a.s., so a zero-probability token has cdf equal to
    # its predecessor's and is never the first such index unless u hits it exactly.
    return torch.searchsorted(cdf, u).squeeze(-1).clamp_(max=probs.shape[-1] - 1)


def _cache_kwarg(model) -> str:
    """``cache`` (transformers >= 5.2x) or ``past_key_values`` (older, deprecated since): the KV-cache argument."""
    import inspect

    forward = getattr(model, "module", model).forward
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


class _ForwardStep:
    """Decoding steps through the model's own forward and its ``DynamicCache``: the architectures
    :mod:`~r1zero.rollout.static_cache` does not cover. Same interface as
    :class:`~r1zero.rollout.static_cache.StaticKVDecoder`."""

    def __init__(self, model, cache, cache_kw: str):
        self.model, self.cache, self.cache_kw = model, cache, cache_kw

    def select(self, idx: torch.Tensor) -> None:
        self.cache.batch_select_indices(idx)

    def step(self, tokens: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=tokens[:, None], attention_mask=mask, position_ids=positions[:, None],
                         use_cache=True, **{self.cache_kw: self.cache})
        return out.logits[:, -1]


def _ends_with_stop(tokenizer, ids: list[int], stop: Sequence[str], tail: int) -> bool:
    text = tokenizer.decode(ids[-tail:], skip_special_tokens=False)
    return any(s in text for s in stop)


@torch.no_grad()
def sample_responses(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, n: int, sampling: SamplingConfig,
                     eos_ids: set[int], tokenizer=None) -> list[list[int]]:
    """Sample ``n`` responses to each prompt.

    Args:
        model: a transformers causal LM taking ``past_key_values`` (a ``DynamicCache``) and ``logits_to_keep``.
        prompt_ids, prompt_mask: (P, L) long, the distinct prompts left-padded to one width L.
        n: responses per prompt; row ``i * n + j`` of the result is prompt ``i``'s ``j``-th response.
        sampling: temperature / top-k / top-p / ``max_new_tokens`` / ``stop``.
        eos_ids: tokens that end a response (kept in it).
        tokenizer: decodes a row's last tokens to spot a stop string (needed only when ``sampling.stop``).

    Returns:
        ``P * n`` token lists, each ending at its first EOS (included) or a stop string's completing token, or
        ``max_new_tokens`` long. :func:`~r1zero.rollout.hf.find_response_end` reads them like ``generate``'s.
    """
    from transformers import DynamicCache

    device = prompt_ids.device
    cache = DynamicCache()
    cache_kw = _cache_kwarg(model)
    position = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=position, use_cache=True,
                logits_to_keep=1, **{cache_kw: cache})
    logits = out.logits[:, -1].float().repeat_interleave(n, dim=0)
    cache.batch_repeat_interleave(n)
    mask = prompt_mask.repeat_interleave(n, dim=0)
    last_pos = position[:, -1].repeat_interleave(n, dim=0)

    if unsupported_reason(model) is None:
        decoder = StaticKVDecoder(model, cache, prompt_ids.shape[1] + sampling.max_new_tokens)
        del cache  # its tensors now live in the decoder's buffers
    else:
        decoder = _ForwardStep(model, cache, cache_kw)
    rows = prompt_ids.shape[0] * n
    responses: list[list[int]] = [[] for _ in range(rows)]
    live = torch.arange(rows, device=device)  # result row of each batch row
    eos = torch.tensor(sorted(eos_ids), dtype=torch.long, device=device)
    stop = tuple(sampling.stop or ())
    tail = max((len(s) for s in stop), default=0) + 2  # tokens whose text can hold a stop string just completed
    for step in range(sampling.max_new_tokens):
        tokens = sample_tokens(logits, sampling)
        done = torch.isin(tokens, eos)
        token_list, live_list = tokens.tolist(), live.tolist()
        done_list = done.tolist()
        for b, (r, t) in enumerate(zip(live_list, token_list)):
            responses[r].append(t)
            if stop and not done_list[b] and _ends_with_stop(tokenizer, responses[r], stop, tail):
                done_list[b] = True
        if step == sampling.max_new_tokens - 1:
            break
        keep = [b for b, d in enumerate(done_list) if not d]
        if not keep:
            break
        if len(keep) < len(live_list):  # compact: finished rows leave the batch (and the KV cache)
            idx = torch.tensor(keep, dtype=torch.long, device=device)
            decoder.select(idx)
            live, tokens, mask, last_pos = live[idx], tokens[idx], mask[idx], last_pos[idx]
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        last_pos = last_pos + 1
        logits = decoder.step(tokens, last_pos, mask).float()
    return responses
