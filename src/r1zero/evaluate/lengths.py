"""Length-stratified statistics of a batch of responses, for training rollouts and evaluation.

Responses are put in buckets by their length as a fraction of the budget ``max_new_tokens``, so the bucket
names are the same for any budget (a 3000-token and a 16-token run share them, and their seeds aggregate):

========================  =====================================================================
bucket                    responses
========================  =====================================================================
``0-0.125``               not truncated, length < max_new_tokens / 8
``0.125-0.25``            not truncated, max_new_tokens / 8 <= length < max_new_tokens / 4
``0.25-0.5``              not truncated, max_new_tokens / 4 <= length < max_new_tokens / 2
``0.5-1``                 not truncated, length >= max_new_tokens / 2 (an EOS on the last token counts)
``truncated``             hit ``max_new_tokens`` without EOS or stop string (training reward 0)
========================  =====================================================================

:func:`length_bucket_metrics` gives, per bucket, ``length_bucket/<bucket>/frac`` (share of the responses,
logged for every bucket, 0.0 when empty), ``.../accuracy`` (share with reward > 0.5) and, when advantages are
given, ``.../advantage_mean``; those two only for buckets that hold responses, so nothing is NaN. The caller
adds the namespace (``rollout/``, ``eval/<bench>/``). :func:`zero_signal_frac` is the share of groups whose G
rewards are all equal: their group-relative advantages are all 0, so they carry no gradient.
"""

from __future__ import annotations

from itertools import pairwise

import torch

#: Bucket edges as fractions of ``max_new_tokens``: [0, 1/8), [1/8, 1/4), [1/4, 1/2), [1/2, 1].
BUCKET_EDGES = (0.0, 0.125, 0.25, 0.5, 1.0)
TRUNCATED = "truncated"
#: Bucket names in order; index i of :func:`length_buckets` is ``BUCKETS[i]``.
BUCKETS = (*(f"{lo:g}-{hi:g}" for lo, hi in pairwise(BUCKET_EDGES)), TRUNCATED)


def length_buckets(lengths: torch.Tensor, truncated: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Bucket index of each response.

    Args:
        lengths: (N,) response lengths in tokens (int or float).
        truncated: (N,) bool, True where the response hit the budget without a stop.
        max_new_tokens: the response budget in tokens (>= 1).

    Returns:
        (N,) long (on the CPU) in ``0 .. len(BUCKETS) - 1``; the last index is ``truncated``. A length over the budget (not
        produced by the engines) falls in ``0.5-1``.

    Raises:
        ValueError: ``max_new_tokens`` < 1, or ``lengths`` and ``truncated`` differ in shape.
    """
    if int(max_new_tokens) < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if lengths.shape != truncated.shape:
        raise ValueError(f"lengths {tuple(lengths.shape)} and truncated {tuple(truncated.shape)} differ in shape")
    frac = lengths.detach().cpu().double() / float(max_new_tokens)
    inner = torch.tensor(BUCKET_EDGES[1:-1], dtype=torch.float64)
    idx = torch.bucketize(frac, inner, right=True)  # edge values go to the upper bucket: [lo, hi)
    return torch.where(truncated.detach().cpu().bool(), torch.full_like(idx, len(BUCKETS) - 1), idx)


def length_bucket_metrics(lengths: torch.Tensor, truncated: torch.Tensor, rewards: torch.Tensor,
                          max_new_tokens: int, advantages: torch.Tensor | None = None) -> dict[str, float]:
    """Per-bucket share, accuracy and mean advantage of N responses (see the module docstring for names).

    Args:
        lengths: (N,) response lengths in tokens.
        truncated: (N,) bool.
        rewards: (N,) float rewards; a response is correct when its reward is > 0.5.
        max_new_tokens: the response budget in tokens.
        advantages: (N,) float advantages of the same responses, or None (evaluation) to omit
            ``advantage_mean``.

    Returns:
        ``{"length_bucket/<bucket>/frac": ..., ".../accuracy": ..., ".../advantage_mean": ...}``; empty when N = 0.

    Raises:
        ValueError: as :func:`length_buckets`, or ``rewards``/``advantages`` not of shape (N,).
    """
    n = lengths.shape[0]
    for name, t in (("rewards", rewards), ("advantages", advantages)):
        if t is not None and tuple(t.shape) != (n,):
            raise ValueError(f"{name} has shape {tuple(t.shape)}, expected ({n},)")
    if n == 0:
        return {}
    idx = length_buckets(lengths, truncated, max_new_tokens)
    correct = (rewards.detach().cpu().double() > 0.5).double()
    adv = None if advantages is None else advantages.detach().cpu().double()
    out: dict[str, float] = {}
    for i, name in enumerate(BUCKETS):
        sel = idx == i
        count = int(sel.sum())
        out[f"length_bucket/{name}/frac"] = count / n
        if count:
            out[f"length_bucket/{name}/accuracy"] = float(correct[sel].mean())
            if adv is not None:
                out[f"length_bucket/{name}/advantage_mean"] = float(adv[sel].mean())
    return out


def zero_signal_frac(rewards: torch.Tensor, group_size: int) -> float:
    """Share of groups whose ``group_size`` rewards are all equal (zero advantage: no learning signal).

    Args:
        rewards: (N,) rewards, the G responses of a question contiguous (N = questions x G).
        group_size: G.

    Raises:
        ValueError: N is not a positive multiple of ``group_size``.
    """
    if group_size < 1 or rewards.numel() == 0 or rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not form groups of {group_size}")
    groups = rewards.view(-1, group_size)
    return float((groups.max(1).values == groups.min(1).values).double().mean())
