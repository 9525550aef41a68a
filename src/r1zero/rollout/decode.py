"""r1zero's own sampling loop for :class:`~r1zero.rollout.hf.HFRolloutEngine` (``rollout.decoder=loop``).

It samples from the same distribution as transformers ``generate`` (temperature, then top-k, then top-p, as
transformers' ``TemperatureLogitsWarper`` / ``TopKLogitsWarper`` / ``TopPLogitsWarper`` apply them) and spends
less on RL's shape (a few prompts, many short responses to each), where ``generate`` draws each token with
``torch.multinomial``'s race over the whole vocabulary and spends most of its matmuls on work that is thrown away
(the profile and the speed-ups: docs/performance.md, "Rollout"):

* each distinct prompt is prefilled once and its KV cache repeated for its ``n`` responses (``generate`` prefills
  all ``n`` copies);
* rows that finished (EOS or a stop string) leave the batch, so late steps run on the rows still going;
* a sample is one uniform draw against the cumulative distribution (inverse CDF), not ``multinomial``'s
  exponential race over the whole vocabulary. Same distribution, different random stream: sampled responses
  differ from ``generate``'s for a given seed, greedy ones do not (tests/test_decode.py);
* for Llama / Qwen2 / Mistral the decode steps run on a static KV cache with prepacked bf16 weights
  (:mod:`~r1zero.rollout.static_cache`), bitwise the model's own forward; other models step through their forward.
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


#: Shortest common prefix (tokens) of a rollout's prompts worth a forward of its own (see :func:`shared_prefix`).
MIN_SHARED_PREFIX = 16


def shared_prefix(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor):
    """The prompts' common prefix and their suffixes, when a prefill should compute the prefix once.

    Prompts built from one template share its opening (the quickstart's 6 share 64 of their ~76 tokens). When
    every prompt extends a common prefix of at least :data:`MIN_SHARED_PREFIX` tokens, the prefill runs the
    prefix as one row, repeats its KV cache for the P prompts, then runs only the P suffixes, left-padded after the
    prefix: positions continue from it and the padding between is masked. The same attention over the same
    tokens at the same positions, so the same distribution; not bitwise the one-pass prefill (sums run in
    another order).

    Args:
        prompt_ids, prompt_mask: (P, L) long, left-padded.

    Returns:
        None (no prefix worth sharing), or ``(prefix, suffix, mask, positions)``: (1, c) prefix ids, (P, S) suffix
        ids and the (P, c + S) mask over prefix and suffix columns, (P, S) suffix positions.
    """
    P, L = prompt_ids.shape
    lengths = prompt_mask.sum(-1).tolist()
    rows = [prompt_ids[i, L - n:].tolist() for i, n in enumerate(lengths)]
    common, shortest = 0, min(lengths, default=0)
    while common < shortest - 1 and all(r[common] == rows[0][common] for r in rows):
        common += 1  # one short of the shortest prompt at most: every prompt keeps a suffix token for its logits
    if P < 2 or common < MIN_SHARED_PREFIX:
        return None
    width = max(lengths) - common
    suffix = prompt_ids.new_full((P, width), int(prompt_ids[0, 0]))
    suffix_mask = prompt_mask.new_zeros((P, width))
    for i, r in enumerate(rows):
        n = len(r) - common
        suffix[i, width - n:] = prompt_ids.new_tensor(r[common:])
        suffix_mask[i, width - n:] = 1
    mask = torch.cat([prompt_mask.new_ones((P, common)), suffix_mask], dim=1)
    return (prompt_ids.new_tensor(rows[0][:common])[None], suffix, mask,
            common + (suffix_mask.cumsum(-1) - 1).clamp(min=0))


def _prefill_forward(model, prompt_ids, prompt_mask, cache_kw: str, shared):
    """Prefill through the model's own forward: ``(logits (P, V), DynamicCache, mask (P, W), last_pos (P,))``.
    ``shared``: what :func:`shared_prefix` returned for these prompts."""
    from transformers import DynamicCache

    cache = DynamicCache()
    if shared is None:
        position = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=position, use_cache=True,
                    logits_to_keep=1, **{cache_kw: cache})
        return out.logits[:, -1], cache, prompt_mask, position[:, -1]
    prefix, suffix, mask, position = shared
    model(input_ids=prefix, position_ids=torch.arange(prefix.shape[1], device=prefix.device)[None], use_cache=True,
          logits_to_keep=1, **{cache_kw: cache})
    cache.batch_repeat_interleave(suffix.shape[0])
    out = model(input_ids=suffix, attention_mask=mask, position_ids=position, use_cache=True, logits_to_keep=1,
                **{cache_kw: cache})
    return out.logits[:, -1], cache, mask, position[:, -1]


def _prefill_static(model, prompt_ids, prompt_mask, cache_kw: str, max_new_tokens: int):
    """Prefill into a :class:`StaticKVDecoder`: ``(logits (P, V), decoder, mask (P, W), last_pos (P,))``.

    A shared prefix and the suffixes run through the decoder itself (its packed weights); left-padded prompts
    with no prefix to share go through the model's forward (whose mask handling of rows that are all padding
    the decoder does not repeat) and their cache is copied in."""
    shared = shared_prefix(prompt_ids, prompt_mask)
    if shared is None:
        logits, cache, mask, last = _prefill_forward(model, prompt_ids, prompt_mask, cache_kw, None)
        return logits, StaticKVDecoder.from_cache(model, cache, mask.shape[1] + max_new_tokens), mask, last
    prefix, suffix, mask, position = shared
    device = prompt_ids.device
    decoder = StaticKVDecoder(model, 1, mask.shape[1] + max_new_tokens, device,
                              StaticKVDecoder.kv_dtype(model, device))
    c = prefix.shape[1]
    decoder.extend(prefix, torch.arange(c, device=device)[None], mask.new_ones((1, c)))
    decoder.repeat_rows(suffix.shape[0])
    logits = decoder.extend(suffix, position, mask)
    return logits, decoder, mask, position[:, -1]


def _ends_with_stop(tokenizer, ids: list[int], stop: Sequence[str], tail: int) -> bool:
    text = tokenizer.decode(ids[-tail:], skip_special_tokens=False)
    return any(s in text for s in stop)


@torch.no_grad()
def sample_responses(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, n: int, sampling: SamplingConfig,
                     eos_ids: set[int], tokenizer=None, logprobs: list | None = None) -> list[list[int]]:
    """Sample ``n`` responses to each prompt.

    Args:
        model: a transformers causal LM taking ``past_key_values`` (a ``DynamicCache``) and ``logits_to_keep``.
        prompt_ids, prompt_mask: (P, L) long, the distinct prompts left-padded to one width L.
        n: responses per prompt; row ``i * n + j`` of the result is prompt ``i``'s ``j``-th response.
        sampling: temperature / top-k / top-p / ``max_new_tokens`` / ``stop``.
        eos_ids: tokens that end a response (kept in it).
        tokenizer: decodes a row's last tokens to spot a stop string (needed only when ``sampling.stop``).
        logprobs: a list to extend with ``P * n`` float lists, each token's ``log_softmax(logits / temperature)``
            (the distribution before top-k / top-p: what the learner scores) as it was sampled; not when greedy.

    Returns:
        ``P * n`` token lists, each ending at its first EOS (included) or a stop string's completing token, or
        ``max_new_tokens`` long. :func:`~r1zero.rollout.hf.find_response_end` reads them like ``generate``'s.
    """
    device = prompt_ids.device
    cache_kw = _cache_kwarg(model)
    if unsupported_reason(model) is None:
        logits, decoder, mask, last_pos = _prefill_static(model, prompt_ids, prompt_mask, cache_kw,
                                                          sampling.max_new_tokens)
        decoder.repeat_rows(n)
    else:
        logits, cache, mask, last_pos = _prefill_forward(model, prompt_ids, prompt_mask, cache_kw,
                                                         shared_prefix(prompt_ids, prompt_mask))
        cache.batch_repeat_interleave(n)
        decoder = _ForwardStep(model, cache, cache_kw)
    logits = logits.float().repeat_interleave(n, dim=0)
    mask = mask.repeat_interleave(n, dim=0)
    last_pos = last_pos.repeat_interleave(n, dim=0)
    rows = prompt_ids.shape[0] * n
    responses: list[list[int]] = [[] for _ in range(rows)]
    behaviour = [[] for _ in range(rows)] if logprobs is not None and not sampling.greedy else None
    live = torch.arange(rows, device=device)  # result row of each batch row
    eos = torch.tensor(sorted(eos_ids), dtype=torch.long, device=device)
    stop = tuple(sampling.stop or ())
    tail = max((len(s) for s in stop), default=0) + 2  # tokens whose text can hold a stop string just completed
    for step in range(sampling.max_new_tokens):
        tokens = sample_tokens(logits, sampling)
        done = torch.isin(tokens, eos)
        token_list, live_list = tokens.tolist(), live.tolist()
        done_list = done.tolist()
        if behaviour is not None:  # one logsumexp over (B, V) a step, beside the sampling's softmax
            z = logits / sampling.temperature if sampling.temperature != 1.0 else logits
            lp = (z.gather(1, tokens.unsqueeze(1)).squeeze(1) - torch.logsumexp(z, dim=-1)).tolist()
            for r, x in zip(live_list, lp):
                behaviour[r].append(x)
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
    if behaviour is not None:
        logprobs.extend(behaviour)
    return responses
