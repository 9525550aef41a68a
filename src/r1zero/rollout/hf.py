"""Rollouts with transformers ``generate`` on the policy module itself.

The engine shares the learner's module, so ``sync_weights`` has nothing to do. Prompts are left-padded to
one width for the whole rollout and responses right-padded, giving the :class:`RolloutBatch` layout.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Sequence

import torch

from ..schema.rollout import DECODERS, HFRolloutConfig
from .base import RolloutBatch, SamplingConfig, encode_prompts, register_engine
from .decode import sample_responses


def find_response_end(
    ids: list[int], tokenizer, eos_ids: set[int], pad_id: int | None, stop: Sequence[str]
) -> tuple[int, bool, str]:
    """Where one generated response ends.

    Args:
        ids: the generated token ids (right side of the sequence, possibly padded).
        eos_ids: token ids that end generation; the first one is part of the response.
        pad_id: padding written by ``generate`` after a sequence finished (may equal an EOS id).
        stop: stop strings; the token completing the first occurrence ends the response.

    Returns:
        ``(length, finished, text)``: tokens in the response (incl. EOS / the stop-completing token),
        whether it ended by EOS or stop (not by running out of budget), and its decoded text with special
        tokens skipped and anything after the stop string removed.
    """
    upto = len(ids)
    for i, t in enumerate(ids):
        if t in eos_ids or t == pad_id:
            upto = i
            break
    if stop:
        text = tokenizer.decode(ids[:upto], skip_special_tokens=False)
        hits = [text.find(s) for s in stop if s in text]
        if hits:
            # Shortest prefix whose text contains a stop string: containment is monotone in the length.
            lo, hi = 1, upto
            while lo < hi:
                mid = (lo + hi) // 2
                if any(s in tokenizer.decode(ids[:mid], skip_special_tokens=False) for s in stop):
                    hi = mid
                else:
                    lo = mid + 1
            full = tokenizer.decode(ids[:lo], skip_special_tokens=True)
            cut = min((full.find(s) + len(s) for s in stop if s in full), default=len(full))
            return lo, True, full[:cut]
    text = tokenizer.decode(ids[:upto], skip_special_tokens=True)
    if upto < len(ids):
        if ids[upto] in eos_ids:
            return upto + 1, True, text
        return upto, True, text  # padding after a finished sequence
    return upto, False, text


@register_engine("hf", schema=HFRolloutConfig)
class HFRolloutEngine:
    """:class:`~r1zero.rollout.base.RolloutEngine` over ``model.generate``.

    Args:
        model: the policy (a transformers causal LM); generation runs in eval mode under ``no_grad``.
        tokenizer: its tokenizer, with a pad token.
        batch_size: sequences generated together (bounds the KV cache).
        decoder: ``loop`` (:func:`r1zero.rollout.decode.sample_responses`: one prefill per distinct prompt,
            finished rows leave the batch) or ``generate`` (transformers ``generate`` on ``n`` copies of each
            prompt); the same sampling distribution.
        autocast: zero-argument callable returning the context generation runs in; training passes
            :meth:`Strategy.autocast <r1zero.learner.strategy.Strategy.autocast>` so fp32 master weights generate in bf16.
    """

    @classmethod
    def from_config(cls, cfg, model, tokenizer, *, model_dir=None, seed=0, scratch_dir=None, autocast=None):
        """The engine of a ``rollout=hf`` config (:class:`~r1zero.schema.HFRolloutConfig`)."""
        return cls(model, tokenizer, batch_size=cfg.batch_size, autocast=autocast, decoder=cfg.decoder)

    def __init__(self, model, tokenizer, batch_size: int = 64, autocast=None, decoder: str = "loop"):
        if decoder not in DECODERS:
            raise ValueError(f"rollout.decoder={decoder!r}; valid: {', '.join(DECODERS)}")
        self.model, self.tokenizer, self.batch_size = model, tokenizer, max(1, int(batch_size))
        self.decoder = decoder
        self.autocast = autocast or contextlib.nullcontext
        gc = getattr(model, "generation_config", None)
        eos = getattr(gc, "eos_token_id", None) if gc is not None else None
        eos = eos if isinstance(eos, list) else [eos]
        self.eos_ids = {e for e in eos + [tokenizer.eos_token_id] if e is not None}

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], sampling: SamplingConfig) -> RolloutBatch:
        tok, model = self.tokenizer, self.model
        device = next(model.parameters()).device
        # BOS for tokenizers that add one (Llama-3), as vLLM and oat tokenize; left-padded to one width.
        encoded = encode_prompts(tok, prompts)
        prompt_len = max((len(x) for x in encoded), default=0)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        enc_ids = torch.full((len(encoded), prompt_len), pad, dtype=torch.long)
        enc_mask = torch.zeros((len(encoded), prompt_len), dtype=torch.long)
        for i, x in enumerate(encoded):
            if x:
                enc_ids[i, prompt_len - len(x):] = torch.tensor(x, dtype=torch.long)
                enc_mask[i, prompt_len - len(x):] = 1
        n = sampling.n
        prompt_ids = enc_ids.repeat_interleave(n, dim=0)
        prompt_mask = enc_mask.repeat_interleave(n, dim=0)
        was_training = model.training
        model.eval()
        behaviour: list[list[float]] | None = [] if self.decoder == "loop" and not sampling.greedy else None
        try:
            if self.decoder == "loop":
                responses = self._sample_loop(enc_ids, enc_mask, sampling, device, behaviour)
            else:
                responses = self._generate(prompt_ids, prompt_mask, sampling, device)
        finally:
            model.train(was_training)

        lengths, finished, texts = [], [], []
        for ids in responses:
            length, done, text = find_response_end(ids, tok, self.eos_ids, tok.pad_token_id, sampling.stop)
            lengths.append(length)
            finished.append(done)
            texts.append(text)
        return RolloutBatch.from_token_lists(
            encoded, [ids[:length] for ids, length in zip(responses, lengths)], texts, [not f for f in finished],
            group_size=n, pad_id=pad, behaviour_logprobs=behaviour)

    def _sample_loop(self, enc_ids, enc_mask, sampling: SamplingConfig, device,
                     logprobs: list | None = None) -> list[list[int]]:
        """Response ids per row from :func:`sample_responses`, ``batch_size // n`` distinct prompts at a time (and
        their sampled tokens' log-probabilities into ``logprobs``, when given)."""
        per_chunk = max(1, self.batch_size // sampling.n)  # prompts whose n responses fit in one batch
        responses: list[list[int]] = []
        for s in range(0, enc_ids.shape[0], per_chunk):
            with self.autocast():
                responses.extend(sample_responses(
                    self.model, enc_ids[s : s + per_chunk].to(device), enc_mask[s : s + per_chunk].to(device),
                    sampling.n, sampling, self.eos_ids, self.tokenizer, logprobs=logprobs))
        return responses

    def _generate(self, prompt_ids, prompt_mask, sampling: SamplingConfig, device) -> list[list[int]]:
        """Response ids per row (padded after a finished one) from transformers ``generate`` on ``n`` copies of
        each prompt."""
        tok = self.tokenizer
        gen_kwargs = dict(
            max_new_tokens=sampling.max_new_tokens,
            do_sample=not sampling.greedy,
            pad_token_id=tok.pad_token_id,
            eos_token_id=sorted(self.eos_ids),
            use_cache=True,
        )
        if not sampling.greedy:
            gen_kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p,
                              top_k=sampling.top_k if sampling.top_k and sampling.top_k > 0 else None)
        else:
            gen_kwargs.update(temperature=None, top_p=None, top_k=None)
        if sampling.stop:
            gen_kwargs.update(stop_strings=list(sampling.stop), tokenizer=tok)
        rows: list[list[int]] = []
        for s in range(0, prompt_ids.shape[0], self.batch_size):
            ids = prompt_ids[s : s + self.batch_size].to(device)
            mask = prompt_mask[s : s + self.batch_size].to(device)
            with self.autocast():
                out = self.model.generate(input_ids=ids, attention_mask=mask, **gen_kwargs)
            rows.extend(out[:, ids.shape[1]:].cpu().tolist())
        return rows

    def update_weights(self, named_tensors: Iterator[tuple[str, torch.Tensor]]) -> None:
        """Nothing to copy: generation runs on the learner's own module. ``named_tensors`` is not read, so a
        sharded policy gathers nothing for it."""

    def sleep(self) -> None:
        """No separate engine memory to free."""

    def wake_up(self) -> None:
        """No separate engine memory to restore."""
