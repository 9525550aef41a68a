"""Padding-free (packed) learner forwards: a micro-batch's real tokens run as one sequence.

Padded, a micro-batch of B rows runs ``B x (prompt + response)`` positions, its short responses padded to its
longest. Packed, the micro-batch's real tokens are laid out as one sequence of N tokens,
``[prompt_1, response_1a, response_1b, ..., prompt_2, ...]``: each distinct prompt once (consecutive rows that
answer the same prompt share it), each response's input tokens (all but its last token) once, no padding. Every
linear layer then runs one ``(N, D)`` matmul per micro-batch and each weight gets one gradient from it.

Attention is the one op that needs the rows' structure. :func:`packed_logits` runs the model with a
transformers attention function of its own (registered as :data:`ATTENTION` and set on the model's config only
for the length of the call) that attends per piece: a prompt causally to itself; a response to its prompt and
causally to its own earlier tokens (the model's sliding window applied when it passes one). Positions follow the
real tokens as in generation, so the values are the padded forward's (the tests compare them within 1e-5, and
gradients too).

The model's own forward runs, so DDP and DeepSpeed wrappers (ZeRO-3's parameter gathering included) see one forward
per backward as usual. Not under activation checkpointing: it re-runs layers in the backward, after the config has
its own attention back (the learner falls back to the padded forward there).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .load import unwrap

ATTENTION = "r1zero_packed"
"""The name the packed attention function is registered under (transformers' ``AttentionInterface``)."""

_PIECES = "r1zero_pieces"  # the forward kwarg that carries the layout's pieces down to the attention function

try:  # transformers >= 4.48
    from transformers import AttentionInterface
except ImportError:  # pragma: no cover - older transformers: the learner keeps the padded forward
    AttentionInterface = None


def supported() -> bool:
    """Whether this transformers can run a custom attention function (``AttentionInterface``)."""
    return AttentionInterface is not None


@dataclass(frozen=True)
class PackedLayout:
    """Where each token of a packed micro-batch comes from and which hidden states predict what.

    Attributes:
        tokens: (N,) long, host: flat indices into the micro-batch's (B, L) ``input_ids`` of the packed tokens.
        position_ids: (N,) long, host: each packed token's position in its own prompt + response.
        pieces: per shared prompt, ``(prompt tokens, (tokens of each response that follows it, ...))``, in
            packed order (a response piece holds its input tokens: all but the response's last token).
        predict: (M,) long, host: the packed positions whose hidden state predicts a response token, M the sum
            of the response lengths (a response's first token is predicted by its prompt's last token).
        targets: (M,) long, host: flat indices into the (B, T) response block of the tokens they predict.
    """

    tokens: torch.Tensor
    position_ids: torch.Tensor
    pieces: tuple[tuple[int, tuple[int, ...]], ...]
    predict: torch.Tensor
    targets: torch.Tensor

    @property
    def num_tokens(self) -> int:
        """N: the positions the packed forward computes (all real)."""
        return int(self.tokens.numel())


def pack(input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int, lengths: torch.Tensor,
         prompt_index: torch.Tensor) -> PackedLayout:
    """The packed layout of a micro-batch (all arguments on the host; nothing is read back from a device).

    Args:
        input_ids: (B, L) long, left-padded prompts in columns ``[0, prompt_len)``, responses after.
        attention_mask: (B, L), 1 on real tokens.
        prompt_len: P, the prompt columns.
        lengths: (B,) response lengths in tokens (``RolloutBatch.response_lengths``), at most ``L - P``.
        prompt_index: (B,) the prompt each row answers; consecutive rows with the same index and the same prompt
            tokens share one prompt piece.

    Raises:
        ValueError: a row has no real prompt token (nothing would predict its first response token).
    """
    B, L = input_ids.shape
    T = L - prompt_len
    att = attention_mask[:, :prompt_len].bool()
    lengths = lengths.long().clamp(max=T).tolist()
    tokens, positions, pieces, predict, targets = [], [], [], [], []
    n = 0  # packed tokens so far
    for i in range(B):
        shared = (i > 0 and int(prompt_index[i]) == int(prompt_index[i - 1])
                  and torch.equal(att[i], att[i - 1])
                  and torch.equal(input_ids[i, :prompt_len], input_ids[i - 1, :prompt_len]))
        if not shared:
            cols = att[i].nonzero().squeeze(1)
            if cols.numel() == 0:
                raise ValueError(f"row {i} of the micro-batch has an empty prompt; packing needs at least one "
                                 f"prompt token to predict the first response token")
            p = cols.numel()
            tokens.append(i * L + cols)
            positions.append(torch.arange(p))
            pieces.append([p, []])
            last = n + p - 1  # the prompt's last token predicts each response's first
            n += p
        length = lengths[i]
        if length == 0:
            continue
        predict.append(torch.tensor([last]))
        targets.append(torch.tensor([i * T]))
        if length > 1:
            tokens.append(i * L + prompt_len + torch.arange(length - 1))
            positions.append(p + torch.arange(length - 1))
            pieces[-1][1].append(length - 1)
            predict.append(torch.arange(n, n + length - 1))
            targets.append(i * T + 1 + torch.arange(length - 1))
            n += length - 1
    empty = torch.zeros(0, dtype=torch.long)
    return PackedLayout(tokens=torch.cat(tokens) if tokens else empty,
                        position_ids=torch.cat(positions) if positions else empty,
                        pieces=tuple((p, tuple(r)) for p, r in pieces),
                        predict=torch.cat(predict) if predict else empty,
                        targets=torch.cat(targets) if targets else empty)


@contextmanager
def _packed_attention_on(config):
    """The model runs :data:`ATTENTION` inside the block and its own attention again after it, whatever happens."""
    own = config._attn_implementation
    config._attn_implementation = ATTENTION
    try:
        yield
    finally:
        config._attn_implementation = own


def packed_logits(model, input_ids: torch.Tensor, layout: PackedLayout) -> torch.Tensor:
    """(M, V) the model's logits at ``layout.predict``, from one packed forward of the model's own ``forward``.

    The model's own forward runs (embedding, decoder and LM head; a DDP / DeepSpeed wrapper's hooks with it), over
    the packed tokens as one row, the LM head on the ``M`` predicting positions only (``logits_to_keep``).

    Args:
        model: a causal LM, or a DDP / DeepSpeed wrapper of one (``.module``); its config's
            ``_attn_implementation`` is switched to :data:`ATTENTION` for this call only.
        input_ids: (B, L) the micro-batch's tokens (on the model's device).
        layout: :func:`pack` of the micro-batch.
    """
    device = input_ids.device
    ids = input_ids.flatten()[layout.tokens.to(device)].unsqueeze(0)  # (1, N)
    with _packed_attention_on(unwrap(model).config):
        logits = model(input_ids=ids, position_ids=layout.position_ids.to(device).unsqueeze(0), use_cache=False,
                       logits_to_keep=layout.predict.to(device), **{_PIECES: layout.pieces}).logits
    return logits.squeeze(0)  # a view: its backward is a reshape, not a zero-filled (1, M, V) gradient


_MASKS: dict = {}


def _window_mask(q: int, k: int, window: int | None, device) -> torch.Tensor:
    """(q, k) bool: query i (at position k - q + i) sees key j at or before it and, with a window, less than
    ``window`` positions back (transformers' ``sliding_window_overlay``: ``kv_idx > q_idx - window``)."""
    key = (q, k, window, str(device))
    mask = _MASKS.get(key)
    if mask is None:
        q_pos = torch.arange(q, device=device).unsqueeze(1) + (k - q)
        k_pos = torch.arange(k, device=device).unsqueeze(0)
        mask = k_pos <= q_pos
        if window is not None:
            mask &= q_pos - k_pos < window
        if len(_MASKS) > 4096:  # shapes repeat within a run; bound the cache anyway
            _MASKS.clear()
        _MASKS[key] = mask
    return mask


def _attend(query, key, value, mask, is_causal: bool, scaling, dropout: float, groups: int):
    if groups > 1 and mask is not None and query.device.type != "cpu":
        # CUDA's masked kernels take no grouped-query layout (transformers repeats the KV heads there too)
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
        groups = 1
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout, is_causal=is_causal,
                                          scale=scaling, enable_gqa=groups > 1)


def packed_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                     sliding_window: int | None = None, **kwargs):
    """transformers attention function over a packed sequence (registered as :data:`ATTENTION`).

    Args:
        query: (1, H, N, d); key, value: (1, H_kv, N, d), rotary positions already applied.
        attention_mask: ignored (the structure comes from the layout's pieces, kwarg ``r1zero_pieces``).
        sliding_window: the layer's window in positions, when it has one.

    Returns:
        ``((1, N, H, d) output, None)``, as transformers' own attention functions.

    Raises:
        RuntimeError: called without the layout's pieces (outside :func:`packed_logits`).
    """
    pieces = kwargs.get(_PIECES)
    if pieces is None:
        raise RuntimeError(f"the {ATTENTION!r} attention runs only inside r1zero.model.packing.packed_logits")
    groups = query.shape[1] // key.shape[1]
    sizes = [s for p, responses in pieces for s in (p, *responses)]
    # one split per tensor: its backward is one concatenation, not a zero-filled full-size gradient per piece
    qs, ks, vs = query.split(sizes, 2), key.split(sizes, 2), value.split(sizes, 2)
    outs, j = [], 0
    for p, responses in pieces:
        k_p, v_p = ks[j], vs[j]
        window = sliding_window if sliding_window is not None and sliding_window < p else None
        mask = None if window is None else _window_mask(p, p, window, query.device)
        outs.append(_attend(qs[j], k_p, v_p, mask, mask is None, scaling, dropout, groups))
        j += 1
        for t in responses:
            mask = _window_mask(t, p + t, sliding_window, query.device)
            outs.append(_attend(qs[j], torch.cat([k_p, ks[j]], 2), torch.cat([v_p, vs[j]], 2), mask, False, scaling,
                                dropout, groups))
            j += 1
    return torch.cat(outs, 2).transpose(1, 2).contiguous(), None


if AttentionInterface is not None:
    AttentionInterface.register(ATTENTION, packed_attention)
