"""What happens to a rollout between the grader and the advantage: overlong handling and dynamic sampling.

* overlong (``algo.overlong``, :data:`OVERLONG`): what a response cut by ``max_new_tokens`` gets: ``zero`` (reward 0:
  the paper's code, ``train_zero_math.py`` ``ZeroMathActor.step``), ``mask`` (reward 0 for its group's baseline and
  out of the loss: DAPO's overlong filtering) or ``soft_penalty`` (DAPO's overlong reward shaping, §3.4);
* dynamic sampling (``algo.dynamic_sampling``: DAPO, arXiv 2503.14476 §3.2): drop the groups whose rewards are all equal (the
  graded rewards, before ``soft_penalty`` adds its length term: DAPO filters on accuracy, as verl's recipe with
  ``filter_groups.metric=acc``) and fill the batch with groups from further rollouts (:func:`pick_groups`).

Responses stay in the batch whatever happens to them: a masked one still counts in its group's mean and std, so the
other responses' advantages do not move and group boundaries never shift (the desync open-instruct PR 1794 fixed,
where advantages were computed after truncated responses had been dropped).
"""

from __future__ import annotations

import torch

from ..schema.registry import Registry

__all__ = ["OVERLONG", "overlong_penalty", "pick_groups", "register_overlong", "signal_groups"]

OVERLONG = Registry("overlong handling")
register_overlong = OVERLONG.register


def overlong_penalty(lengths: torch.Tensor, *, max_new_tokens: int, buffer_frac: float, penalty: float) -> torch.Tensor:
    """DAPO's soft overlong punishment (Yu et al. 2025 §3.4): 0 up to ``L_max - L_cache`` tokens, then falling
    linearly to ``-penalty`` at ``L_max``, with ``L_max = max_new_tokens`` and ``L_cache = buffer_frac * L_max``
    (DAPO: 4,096 of 20,480 tokens, 0.2; verl ``overlong_buffer``, OpenRLHF ``--reward.overlong_buffer_len``).

    Args:
        lengths: (N,) response lengths in tokens.

    Returns:
        (N,) float32 penalties in ``[-penalty, 0]``.
    """
    buffer = buffer_frac * max_new_tokens
    # in float64, so that a response of exactly max_new_tokens gets exactly -penalty
    exceed = (lengths.double() - (max_new_tokens - buffer)).clamp(min=0.0)
    return (-penalty * (exceed / buffer).clamp(max=1.0)).float()


@register_overlong("zero")
def overlong_zero(rewards, lengths, truncated, *, max_new_tokens, buffer_frac, penalty):
    """Reward 0 for a truncated response, which stays in the loss (the paper; r1zero's behaviour before the axes).

    Args:
        rewards: (N,) graded rewards; lengths: (N,) tokens; truncated: (N,) bool.

    Returns:
        ``(rewards, in_loss)``: (N,) float32 and (N,) bool, all True.
    """
    return rewards * (~truncated).float(), torch.ones_like(truncated, dtype=torch.bool)


@register_overlong("mask")
def overlong_mask(rewards, lengths, truncated, *, max_new_tokens, buffer_frac, penalty):
    """DAPO's overlong filtering (§3.4, Table 1 "Overlong Filtering"; TRL ``mask_truncated_completions``): a
    truncated response is out of the loss (its tokens count in no normaliser), and scores 0 in its group's
    baseline, as under ``zero``, so the others' advantages are those of ``zero``. Shapes as :func:`overlong_zero`."""
    return rewards * (~truncated).float(), ~truncated


@register_overlong("soft_penalty")
def overlong_soft_penalty(rewards, lengths, truncated, *, max_new_tokens, buffer_frac, penalty):
    """DAPO's overlong reward shaping (§3.4): the graded reward (truncated responses not zeroed) plus
    :func:`overlong_penalty` of the length. Shapes as :func:`overlong_zero`; every response stays in the loss."""
    shaped = rewards + overlong_penalty(lengths, max_new_tokens=max_new_tokens, buffer_frac=buffer_frac,
                                        penalty=penalty)
    return shaped, torch.ones_like(truncated, dtype=torch.bool)


def signal_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """(U,) bool: the groups of the (N,) rewards whose ``group_size`` rewards are not all equal (DAPO §3.2's
    ``0 < |{o_i : is_equivalent(a, o_i)}| < G``, for any reward scale).

    Raises:
        RuntimeError: N is not a multiple of ``group_size`` (the view fails).
    """
    grouped = rewards.view(-1, group_size)
    return grouped.amax(dim=1) != grouped.amin(dim=1)


def pick_groups(has_signal: torch.Tensor, target: int) -> tuple[torch.Tensor, int]:
    """The ``target`` groups an optimizer batch keeps under dynamic sampling: the first ``target`` groups with a
    signal, in the order they were generated (DAPO Algorithm 1 and verl's recipe keep the first ones); when fewer
    have one (the cap on generation rounds was reached), the first groups without one fill the rest, so the batch
    keeps its size (their advantages are 0; ``zero_std=drop`` takes them out of the loss).

    Args:
        has_signal: (U,) bool, one per generated group, in generation order (:func:`signal_groups`).
        target: groups the batch holds.

    Returns:
        ``(index, filled)``: (target,) long group indices in generation order, and how many carry no signal.

    Raises:
        ValueError: fewer than ``target`` groups were generated.
    """
    if has_signal.numel() < target:
        raise ValueError(f"dynamic sampling: {has_signal.numel()} groups generated, fewer than the {target} needed")
    kept = has_signal.nonzero().flatten()[:target]
    filled = target - kept.numel()
    if filled:
        kept = torch.cat([kept, (~has_signal).nonzero().flatten()[:filled]])
    return kept.sort().values, filled
