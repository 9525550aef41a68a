"""The learner's forward passes: the per-token log-probabilities of a micro-batch's responses under a model (the
policy, with or without its graph, or the frozen reference), :func:`sequence_logprobs`.

One function, four paths with the same values: the model's plain forward over the padded rows; each distinct prompt
run once and its KV cache shared by its G responses (:func:`prompt_groups`); the LM head applied to the real
response positions only (:data:`HIDDEN_HEAD_TYPES`); and the padding-free packed forward (:data:`PACKED_TYPES`,
:mod:`r1zero.model.packing`). Which path a micro-batch takes is the learner's choice
(:meth:`r1zero.learner.learner.Learner._micro_inputs`).
"""

from __future__ import annotations

import inspect

import torch

from ..model.load import unwrap
from ..model.logprob import token_entropy, token_logprobs
from ..model.packing import PackedLayout, packed_logits
from ..model.speed_paths import SPEED_PATHS

__all__ = ["HIDDEN_HEAD_TYPES", "PACKED_TYPES", "model_type", "prompt_groups", "recomputes_activations",
           "sequence_logprobs"]


HIDDEN_HEAD_TYPES = SPEED_PATHS["hidden_head"]
"""The ``config.model_type`` values whose LM head the learner applies itself (``r1zero.model.speed_paths.SPEED_PATHS``)."""
PACKED_TYPES = SPEED_PATHS["packed"]
"""The ``config.model_type`` values whose micro-batches run packed (``r1zero.model.speed_paths.SPEED_PATHS``)."""


def _logprobs_by_row(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0, entropy: bool = False):
    """(B, T) log p(target) from (B, T, V) logits at ``temperature`` and (B, T) targets, one row at a time
    (:func:`r1zero.model.logprob.token_logprobs`; the rows are views, so a sliced ``logits`` is never copied whole); with
    ``entropy``, ``(logprobs, entropies)``, both (B, T) (:func:`r1zero.model.logprob.token_entropy`)."""
    lp = torch.stack([token_logprobs(row, tgt, temperature) for row, tgt in zip(logits, targets)])
    return (lp, torch.stack([token_entropy(row, temperature) for row in logits])) if entropy else lp


def _cache_kwarg(model) -> str:
    """The forward argument that takes a KV cache: ``cache`` in transformers >= 5, ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(type(model).forward).parameters else "past_key_values"


def prompt_groups(prompt_index: torch.Tensor, prompts: tuple[torch.Tensor, ...] = ()
                  ) -> tuple[torch.Tensor, int] | None:
    """Rows that share a prompt, for :func:`sequence_logprobs`: ``(first, G)`` or None.

    Args:
        prompt_index: (B,) long, the prompt each row answers (``RolloutBatch.prompt_index`` of a micro-batch).
        prompts: (B, P) tensors that must be equal within a group for it to be shared (the prompt columns of
            ``input_ids`` and ``attention_mask``); rows claiming one prompt with different tokens are not shared.

    Returns:
        ``first`` (U,): the first row of each prompt, and G = B / U, when the rows are U whole runs of G rows
        each (a micro-batch of whole groups: ``micro_batch_size`` a multiple of ``group_size``); None when
        G would be 1 or the rows are not laid out that way (then every row runs its own prompt).
    """
    B = len(prompt_index)
    starts = torch.ones(B, dtype=torch.bool)
    starts[1:] = prompt_index[1:] != prompt_index[:-1]
    first = starts.nonzero().flatten()
    U = len(first)
    if U == B or B % U or len(torch.unique(prompt_index)) != U:
        return None
    G = B // U
    if not torch.equal(first, torch.arange(0, B, G)):
        return None
    if any(not torch.equal(t[first].repeat_interleave(G, dim=0), t) for t in prompts):
        return None
    return first, G


def sequence_logprobs(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int, temperature: float = 1.0,
    groups: tuple[torch.Tensor, int] | None = None, lengths: torch.Tensor | None = None,
    layout: PackedLayout | None = None, entropy: bool = False,
):
    """(B, T) log-probabilities of the response tokens ``input_ids[:, prompt_len:]`` under ``model``.

    Position ids follow the attention mask, so left-padded prompts see the same positions as in
    generation. Logits are divided by the sampling ``temperature`` so the ratio compares the
    distributions the tokens were actually drawn from. Only the T positions that predict response tokens go
    through the LM head (the prompt's logits are never needed).

    Args:
        groups: :func:`prompt_groups` of the rows. Given, each distinct prompt is run once and its KV cache
            (with its autograd graph) is repeated for the G responses to it; the response tokens then attend to
            that cache. Same values as the plain forward, G times fewer prompt tokens computed; gradients flow
            into the prompt's activations through the shared cache (the repeat's backward is a fixed-order sum,
            so results stay bitwise reproducible, e.g. across a resume). Only for a plain module (a DDP or
            DeepSpeed wrapper expects one forward per backward) without gradient checkpointing.
        lengths: (B,) the rows' response lengths in tokens (``RolloutBatch.response_lengths``). Given, for a plain
            module (not a DDP / DeepSpeed wrapper, whose own forward must run) whose logits are its LM head over its
            decoder's hidden states, the LM head and the log-softmax run over the real response positions only,
            not the (B, T, V) logits of every padded position, and the result is 0 past each row's length.
        layout: :func:`r1zero.model.packing.pack` of the rows, for a :data:`PACKED_TYPES` LM (or a DDP / DeepSpeed
            wrapper of one) without activation checkpointing: the micro-batch then runs padding-free, as one packed
            sequence through the model's own forward (:func:`r1zero.model.packing.packed_logits`; each shared prompt once,
            the LM head on the real response positions only); ``attention_mask``, ``groups`` and ``lengths`` are not
            used. The result is 0 past each row's length.
        entropy: also return the (B, T) entropy of the policy at each response position (for ``algo.entropy_coef``):
            ``(logprobs, entropies)``.

    Raises:
        ValueError: ``layout`` for a model outside :data:`PACKED_TYPES`.
    """
    T = input_ids.shape[1] - prompt_len
    if layout is not None:
        if model_type(model) not in PACKED_TYPES:
            raise ValueError(f"a packed layout needs a causal LM of one of {PACKED_TYPES}, got "
                             f"{model_type(model)!r}")
        return _place_logprobs(packed_logits(model, input_ids, layout), layout.targets, input_ids[:, prompt_len:],
                               temperature, entropy)
    parts = _decoder_and_head(model)
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    if lengths is not None:
        lengths = lengths.long().cpu()
    if groups is None and parts is not None and lengths is not None:  # the head on real response positions only
        decoder, head = parts
        hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         use_cache=False).last_hidden_state[:, prompt_len - 1 : -1]  # (B, T, D)
        keep = (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).flatten()  # (B * T,) on the host
        where = keep.nonzero().squeeze(1)
        return _head_logprobs(head, [hidden.flatten(0, 1)[where.to(hidden.device)]], [where],
                              input_ids[:, prompt_len:], temperature, entropy)
    if groups is None:
        logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                       use_cache=False, logits_to_keep=T + 1).logits[:, :-1]
    else:
        first, G = groups
        first = first.to(input_ids.device)
        P = prompt_len
        head = model(input_ids=input_ids[first, :P], attention_mask=attention_mask[first, :P],
                     position_ids=position_ids[first, :P], use_cache=True, logits_to_keep=1)
        cache = getattr(head, "cache", None) or head.past_key_values
        logits = head.logits.repeat_interleave(G, dim=0)  # (B, 1, V): predicts the first response token
        if T > 1:
            cache.batch_repeat_interleave(G)
            tail = model(input_ids=input_ids[:, P:-1], attention_mask=attention_mask[:, :-1],
                         position_ids=position_ids[:, P:-1], use_cache=True, **{_cache_kwarg(model): cache})
            logits = torch.cat([logits, tail.logits], dim=1)
    return _logprobs_by_row(logits, input_ids[:, prompt_len:], temperature, entropy)


def model_type(model) -> str | None:
    """``config.model_type`` of ``model``, or of the module a DDP / DeepSpeed wrapper holds; None without one."""
    return getattr(getattr(unwrap(model), "config", None), "model_type", None)


def _decoder_and_head(model):
    """``(decoder, lm_head)`` of a causal LM whose logits are ``lm_head(decoder hidden states)``, else None (a
    wrapper too: its own forward must run)."""
    if getattr(getattr(model, "config", None), "model_type", None) not in HIDDEN_HEAD_TYPES:
        return None
    decoder, head = getattr(model, "model", None), getattr(model, "lm_head", None)
    if decoder is None or head is None or not hasattr(decoder, "embed_tokens"):
        return None
    if hasattr(next(model.parameters()), "ds_id"):
        return None  # ZeRO-3 partitions the parameters; its hooks gather them for the model's own forward
    return decoder, head


def _head_logprobs(head, hidden: list[torch.Tensor], where: list[torch.Tensor], targets: torch.Tensor,
                   temperature: float, entropy: bool = False):
    """(B, T) log-probabilities of ``targets`` (B, T) from the LM ``head`` over the hidden states ``hidden`` (pieces
    of (n, D)) of the positions ``where`` (host pieces of (n,) flat indices into (B, T)); 0 elsewhere. With
    ``entropy``: ``(logprobs, entropies)``."""
    if not hidden:
        zeros = torch.zeros(targets.shape, device=targets.device, dtype=torch.float32)
        return (zeros, zeros.clone()) if entropy else zeros
    return _place_logprobs(head(torch.cat(hidden)), torch.cat(where), targets, temperature, entropy)


def _place_logprobs(logits: torch.Tensor, where: torch.Tensor, targets: torch.Tensor, temperature: float,
                    entropy: bool = False):
    """(B, T) log-probabilities of ``targets`` (B, T) from ``logits`` (M, V) of the positions ``where`` ((M,) flat
    indices into (B, T), on the host); 0 elsewhere. With ``entropy``: ``(logprobs, entropies)``, both (B, T)."""
    B, T = targets.shape
    where = where.to(targets.device)
    lp = token_logprobs(logits, targets.flatten()[where], temperature)
    out = torch.zeros(B * T, device=targets.device, dtype=torch.float32).index_put((where,), lp).view(B, T)
    if not entropy:
        return out
    ent = token_entropy(logits, temperature)
    return out, torch.zeros(B * T, device=targets.device, dtype=ent.dtype).index_put((where,), ent).view(B, T)


def recomputes_activations(model) -> bool:
    """Whether ``model`` recomputes activations in the backward (transformers >= 5 renamed the flag)."""
    name = "is_activation_checkpointing" if hasattr(type(model), "is_activation_checkpointing") \
        else "is_gradient_checkpointing"
    return bool(getattr(model, name, False))
