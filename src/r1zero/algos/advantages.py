"""Advantages of outcome rewards, from two independent axes: a baseline and a scale.

``A_i = scale(r_i - baseline_i)``, one number per response, broadcast over its tokens by the loss.

* baseline (``algo.adv_baseline``, :data:`BASELINES`): ``group_mean`` (GRPO), ``leave_one_out`` (RLOO),
  ``batch_mean`` (REINFORCE++), ``none``;
* scale (``algo.adv_scale``, :data:`SCALES`): ``none`` (Dr. GRPO), ``group_std`` (GRPO), ``batch_std`` (Lite PPO),
  each dividing by ``std + adv_eps``.

A group whose G rewards are all equal is found by comparing them (``max == min``), never from a computed std:
float32 ``mean`` and ``std`` of equal non-dyadic rewards leave a residue (eight rewards of 0.35: ``r - mean`` =
2.98e-8, std = 3.19e-8), which a ``std > 0`` guard would divide into an O(1) advantage of one sign for the whole
group (the bug NeMo-RL PR 4161 fixed with a 1e-3 std floor, after a 4000x advantage). Such a group's centred
reward is exactly 0 under the group baselines, and no group std divides it. :func:`zero_std_rows` names its rows
for ``algo.zero_std=drop`` (out of the loss) and for dynamic sampling.
"""

from __future__ import annotations

import torch

from ..schema.registry import Registry

__all__ = ["BASELINES", "SCALES", "compute_advantages", "constant_groups", "group_advantages", "register_baseline",
           "register_scale", "zero_std_rows"]

BASELINES = Registry("advantage baseline")
SCALES = Registry("advantage scale")
register_baseline = BASELINES.register
register_scale = SCALES.register


def _grouped(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D (N,), got shape {tuple(rewards.shape)}")
    if group_size < 1 or rewards.numel() % group_size:
        raise ValueError(
            f"rewards has {rewards.numel()} entries, not a multiple of group_size={group_size}"
        )
    return rewards.float().view(-1, group_size)


def constant_groups(grouped: torch.Tensor) -> torch.Tensor:
    """(U, 1) bool: the groups of ``grouped`` (U, G) whose rewards are all equal (a group of 1 included)."""
    return grouped.amax(dim=1, keepdim=True) == grouped.amin(dim=1, keepdim=True)


# --------------------------------------------------------------------------------------------------
# Baselines: (U, G) rewards -> (U, G) rewards minus their baseline
# --------------------------------------------------------------------------------------------------


@register_baseline("group_mean")
def group_mean(rewards: torch.Tensor) -> torch.Tensor:
    """``r_i - mean(r_group)`` (GRPO: Shao et al. 2024, DeepSeekMath; the paper's Eq. 2-3).

    Args:
        rewards: (U, G) float, one row per question.

    Returns:
        (U, G); exactly 0 in groups whose rewards are all equal.
    """
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    return torch.where(constant_groups(rewards), torch.zeros_like(centred), centred)


@register_baseline("leave_one_out")
def leave_one_out(rewards: torch.Tensor) -> torch.Tensor:
    """``r_i - mean of the other G-1 rewards`` (RLOO: Ahmadian et al. 2024, arXiv 2402.14740; Kool et al. 2019).

    Computed as ``G / (G - 1) * (r_i - mean(r_group))``, the same number (r1zero's ``rloo`` before the axes).

    Args:
        rewards: (U, G) float.

    Returns:
        (U, G); exactly 0 in groups whose rewards are all equal.

    Raises:
        ValueError: G < 2 (no other response to average).
    """
    G = rewards.shape[1]
    if G < 2:
        raise ValueError("adv_baseline=leave_one_out needs group_size >= 2")
    return group_mean(rewards) * (G / (G - 1))


@register_baseline("batch_mean")
def batch_mean(rewards: torch.Tensor) -> torch.Tensor:
    """``r_i - mean of every reward in the batch`` (REINFORCE++: Hu et al. 2025, arXiv 2501.03262, global advantage normalisation).

    Each response counts once (OpenRLHF and verl whiten over tokens instead, weighting a response by its length:
    docs/objectives.md). Under data parallelism the caller passes the rewards of every rank.

    Args:
        rewards: (U, G) float.

    Returns:
        (U, G).
    """
    return rewards - rewards.mean()


@register_baseline("none")
def no_baseline(rewards: torch.Tensor) -> torch.Tensor:
    """``r_i`` itself (plain REINFORCE, Williams 1992). (U, G) -> (U, G), a copy."""
    return rewards.clone()


# --------------------------------------------------------------------------------------------------
# Scales: (U, G) centred rewards, (U, G) rewards -> (U, G) advantages
# --------------------------------------------------------------------------------------------------


@register_scale("none")
def no_scale(centred: torch.Tensor, rewards: torch.Tensor, *, eps: float) -> torch.Tensor:
    """No division (Dr. GRPO: Liu et al. 2025 Eq. 3, which removes GRPO's difficulty bias). Returns ``centred``."""
    return centred


@register_scale("group_std")
def group_std(centred: torch.Tensor, rewards: torch.Tensor, *, eps: float) -> torch.Tensor:
    """Divide by the group's unbiased std plus ``eps`` (GRPO: DeepSeekMath, arXiv 2402.03300; the paper's code
    ``train_zero_math.py`` ``compute_monte_carlo_advantages``: ``advantages / (std + 1e-8)``).

    Args:
        centred: (U, G) rewards minus their baseline.
        rewards: (U, G) the rewards (their std per row: ``torch.std``, Bessel-corrected, as the paper's code).
        eps: added to the std.

    Returns:
        (U, G); groups whose rewards are all equal are left undivided (their std is 0).
    """
    G = rewards.shape[1]
    std = rewards.std(dim=1, keepdim=True) if G > 1 else torch.zeros_like(rewards[:, :1])
    return torch.where(constant_groups(rewards), centred, centred / (std + eps))


@register_scale("batch_std")
def batch_std(centred: torch.Tensor, rewards: torch.Tensor, *, eps: float) -> torch.Tensor:
    """Divide by the unbiased std of every reward in the batch plus ``eps`` (Lite PPO: Liu et al. 2025b, "Part I:
    Tricks or Traps?", arXiv 2508.08221: group-level mean, batch-level std; TRL ``scale_rewards="batch"``).

    Args:
        centred: (U, G) rewards minus their baseline.
        rewards: (U, G) the batch's rewards (every rank's under data parallelism).
        eps: added to the std.

    Returns:
        (U, G); left undivided when all the batch's rewards are equal.
    """
    flat = rewards.flatten()
    if flat.numel() < 2 or bool(flat.amax() == flat.amin()):
        return centred
    return centred / (flat.std() + eps)


# --------------------------------------------------------------------------------------------------
# Composition
# --------------------------------------------------------------------------------------------------


def compute_advantages(
    rewards: torch.Tensor, group_size: int, *, baseline: str = "group_mean", scale: str = "none", eps: float = 1e-8
) -> torch.Tensor:
    """``scale(rewards - baseline)`` per response.

    Args:
        rewards: (N,) scalar reward per response; each question's ``group_size`` responses are contiguous.
        group_size: G, responses per question.
        baseline: a key of :data:`BASELINES`.
        scale: a key of :data:`SCALES`.
        eps: added to the std of the ``*_std`` scales (``algo.adv_eps``).

    Returns:
        (N,) float32 advantages.

    Raises:
        ValueError: ``rewards`` is not 1-D, its length is not a multiple of ``group_size``, or an unknown
            ``baseline`` / ``scale`` (the message lists the registered ones).
    """
    grouped = _grouped(rewards, group_size)
    centred = BASELINES.lookup(baseline)(grouped)
    return SCALES.lookup(scale)(centred, grouped, eps=eps).reshape(-1)


def group_advantages(
    rewards: torch.Tensor, group_size: int, scale_by_std: bool, eps: float = 1e-8
) -> torch.Tensor:
    """The paper's group-relative advantage (Eq. 2 / Dr. GRPO Eq. 3): ``group_mean``, then ``group_std`` when
    ``scale_by_std`` (GRPO) or ``none`` (Dr. GRPO). (N,) rewards -> (N,) float32; see :func:`compute_advantages`."""
    return compute_advantages(rewards, group_size, baseline="group_mean", scale="group_std" if scale_by_std else "none",
                              eps=eps)


def zero_std_rows(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """(N,) bool: the responses of groups whose ``group_size`` rewards (N,) are all equal (no learning signal)."""
    return constant_groups(_grouped(rewards, group_size)).expand(-1, group_size).reshape(-1)
