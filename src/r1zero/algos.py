"""Algorithm math for R1-Zero-like training: advantages and the clipped policy-gradient loss.

Pure tensor functions, no config objects. The four paper variants differ only in two switches
(Liu et al. 2025, "Understanding R1-Zero-Like Training", §3.1 and Eq. 2-3):

| algo               | advantage scaling (``scale_by_std``) | loss aggregation            |
|--------------------|--------------------------------------|-----------------------------|
| grpo               | True  (difficulty bias)              | seq_mean_token_mean (length bias) |
| drgrpo             | False                                | seq_mean_token_sum_norm     |
| grpo_no_len_norm   | True                                 | seq_mean_token_sum_norm     |
| grpo_no_std_norm   | False                                | seq_mean_token_mean         |

A new variant is one registered function here (``@register_adv_est`` / ``@register_loss_agg``) and one
YAML file in ``conf/algo/``.
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch

__all__ = [
    "ADV_ESTIMATORS",
    "LOSS_AGGREGATIONS",
    "register_adv_est",
    "register_loss_agg",
    "group_advantages",
    "compute_advantages",
    "aggregate_loss",
    "policy_loss",
    "masked_mean",
]


# --------------------------------------------------------------------------------------------------
# Registries
# --------------------------------------------------------------------------------------------------


class AdvantageEstimator(Protocol):
    def __call__(
        self, rewards: torch.Tensor, group_size: int, *, scale_by_std: bool, eps: float
    ) -> torch.Tensor: ...


class LossAggregation(Protocol):
    def __call__(
        self,
        token_losses: torch.Tensor,
        response_mask: torch.Tensor,
        *,
        max_new_tokens: int,
        num_responses: int | None,
        num_tokens: int | float | None,
    ) -> torch.Tensor: ...


ADV_ESTIMATORS: dict[str, AdvantageEstimator] = {}
LOSS_AGGREGATIONS: dict[str, LossAggregation] = {}


def _registrar(registry: dict, kind: str) -> Callable[[str], Callable]:
    def register(name: str) -> Callable:
        def deco(fn: Callable) -> Callable:
            if name in registry and registry[name] is not fn:
                raise ValueError(f"{kind} {name!r} is already registered")
            registry[name] = fn
            return fn

        return deco

    return register


register_adv_est = _registrar(ADV_ESTIMATORS, "advantage estimator")
register_loss_agg = _registrar(LOSS_AGGREGATIONS, "loss aggregation")


def _lookup(registry: dict, name: str, kind: str):
    try:
        return registry[name]
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r}; valid choices: {sorted(registry)}") from None


# --------------------------------------------------------------------------------------------------
# Advantages
# --------------------------------------------------------------------------------------------------


def _grouped(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D (N,), got shape {tuple(rewards.shape)}")
    if group_size < 1 or rewards.numel() % group_size:
        raise ValueError(
            f"rewards has {rewards.numel()} entries, not a multiple of group_size={group_size}"
        )
    return rewards.float().view(-1, group_size)


def group_advantages(
    rewards: torch.Tensor, group_size: int, scale_by_std: bool, eps: float = 1e-8
) -> torch.Tensor:
    """Group-relative Monte-Carlo advantage of every response (paper Eq. 2 / Dr. GRPO Eq. 3).

    Args:
        rewards: (N,) scalar reward per response; each question's ``group_size`` responses are contiguous.
        group_size: G, responses per question.
        scale_by_std: GRPO divides by the group's unbiased std (``torch.std``, Bessel-corrected, as in the
            paper's code); Dr. GRPO does not, removing the difficulty bias.
        eps: added to the std; 1e-8 as the paper's code (understand-r1-zero ``train_zero_math.py``
            ``ZeroMathLearner.compute_monte_carlo_advantages``: ``advantages / (std + 1e-8)``). Groups with
            identical rewards get advantage 0 regardless.

    Returns:
        (N,) float32 ``r_i - mean(r_group)``, divided by ``std(r_group) + eps`` when ``scale_by_std``.

    Raises:
        ValueError: ``rewards`` is not 1-D or its length is not a multiple of ``group_size``.
    """
    grouped = _grouped(rewards, group_size)
    adv = grouped - grouped.mean(dim=1, keepdim=True)
    if scale_by_std:
        # Unbiased std of a group of 1 is NaN; such a group carries no signal anyway.
        std = grouped.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(adv)
        # A group with identical rewards has adv == 0 already; keep it 0 even when eps == 0.
        adv = torch.where(std > 0, adv / (std + eps), torch.zeros_like(adv))
    return adv.reshape(-1)


@register_adv_est("grpo")
def _grpo_adv(rewards, group_size, *, scale_by_std, eps):
    return group_advantages(rewards, group_size, scale_by_std, eps)


@register_adv_est("rloo")
def _rloo_adv(rewards, group_size, *, scale_by_std, eps):
    """REINFORCE leave-one-out: baseline is the mean of the *other* G-1 rewards (Ahmadian et al. 2024).

    Equals ``G/(G-1) * (r_i - mean(r))``; with ``scale_by_std`` it is divided by the group std too.
    """
    if group_size < 2:
        raise ValueError("rloo needs group_size >= 2")
    return group_advantages(rewards, group_size, scale_by_std, eps) * (group_size / (group_size - 1))


def compute_advantages(
    name: str, rewards: torch.Tensor, group_size: int, *, scale_by_std: bool, eps: float = 1e-8
) -> torch.Tensor:
    """Dispatch to the advantage estimator registered as ``name``; returns (N,).

    Raises:
        ValueError: unknown ``name`` (message lists the registered ones).
    """
    return _lookup(ADV_ESTIMATORS, name, "advantage estimator")(
        rewards, group_size, scale_by_std=scale_by_std, eps=eps
    )


# --------------------------------------------------------------------------------------------------
# Loss aggregation
# --------------------------------------------------------------------------------------------------


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over positions where ``mask`` is 1 (an all-zero mask gives 0, not NaN)."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


@register_loss_agg("seq_mean_token_mean")
def _seq_mean_token_mean(token_losses, response_mask, *, max_new_tokens, num_responses, num_tokens):
    """GRPO: mean over each response's tokens (the 1/|o_i| length bias), then mean over responses."""
    per_seq = masked_mean(token_losses, response_mask, dim=-1)
    denom = num_responses if num_responses is not None else token_losses.shape[0]
    return per_seq.sum() / denom


@register_loss_agg("seq_mean_token_sum_norm")
def _seq_mean_token_sum_norm(token_losses, response_mask, *, max_new_tokens, num_responses, num_tokens):
    """Dr. GRPO: each response's token *sum* divided by the constant ``max_new_tokens``, mean over responses."""
    per_seq = (token_losses * response_mask).sum(-1) / float(max_new_tokens)
    denom = num_responses if num_responses is not None else token_losses.shape[0]
    return per_seq.sum() / denom


@register_loss_agg("token_mean")
def _token_mean(token_losses, response_mask, *, max_new_tokens, num_responses, num_tokens):
    """DAPO-style: sum over every token of the batch divided by the batch's token count."""
    denom = num_tokens if num_tokens is not None else response_mask.sum().clamp(min=1.0)
    return (token_losses * response_mask).sum() / denom


def aggregate_loss(
    token_losses: torch.Tensor,
    response_mask: torch.Tensor,
    aggregation: str,
    *,
    max_new_tokens: int,
    num_responses: int | None = None,
    num_tokens: int | float | None = None,
) -> torch.Tensor:
    """Reduce (B, T) per-token losses to a scalar with the registered ``aggregation``.

    ``num_responses`` / ``num_tokens`` are the totals of the whole optimizer batch: with them, the
    micro-batch losses of any split of that batch sum exactly to the loss of the whole batch, so the
    accumulated gradient does not depend on the micro-batch size.

    Raises:
        ValueError: unknown ``aggregation`` (message lists the registered ones).
    """
    fn = _lookup(LOSS_AGGREGATIONS, aggregation, "loss aggregation")
    return fn(
        token_losses,
        response_mask.to(token_losses.dtype),
        max_new_tokens=max_new_tokens,
        num_responses=num_responses,
        num_tokens=num_tokens,
    )


# --------------------------------------------------------------------------------------------------
# Clipped policy-gradient objective
# --------------------------------------------------------------------------------------------------


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    clip_eps: float,
    aggregation: str,
    max_new_tokens: int,
    num_responses: int | None = None,
    num_tokens: int | float | None = None,
    ref_logprobs: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    tensor_metrics: bool = False,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO-clip surrogate, per token, aggregated per ``aggregation`` (paper Eq. 1-3).

    Per token ``t`` of response ``i``: ``ratio = exp(logprobs - old_logprobs)`` and
    ``loss_it = -min(ratio * A_i, clip(ratio, 1 - clip_eps, 1 + clip_eps) * A_i)``; when ``kl_coef > 0`` the
    low-variance KL estimate ``k3 = exp(ref - logp) - (ref - logp) - 1`` (Schulman 2020) times ``kl_coef`` is
    added per token before aggregation.

    Args:
        logprobs: (B, T) log-probabilities of the sampled response tokens under the current policy (grad).
        old_logprobs: (B, T) the same under the policy that sampled them (no grad).
        advantages: (B,) one advantage per response, broadcast over its tokens.
        response_mask: (B, T) 1 on response tokens, 0 on padding.
        clip_eps: PPO clipping epsilon (paper: 0.2).
        aggregation: a key of ``LOSS_AGGREGATIONS`` (``seq_mean_token_mean``, ``seq_mean_token_sum_norm``,
            ``token_mean``).
        max_new_tokens: the constant normaliser of ``seq_mean_token_sum_norm`` (the generation budget).
        num_responses: responses in the whole optimizer batch (defaults to B).
        num_tokens: response tokens in the whole optimizer batch (defaults to this micro-batch's).
        ref_logprobs: (B, T) reference-policy log-probabilities, needed when ``kl_coef > 0``.
        kl_coef: weight of the KL penalty (paper default 0).
        tensor_metrics: return the metrics as detached 0-d tensors on the loss's device instead of floats, so
            a caller looping over micro-batches can sum them there and read them back once (each float is a
            host-device sync on a GPU).

    Returns:
        ``(loss, metrics)``: the scalar loss to backpropagate, and floats ``pg_loss``, ``pg_clipfrac``
        (fraction of tokens where the clipped term is the active one), ``approx_kl`` (mean of
        ``0.5 * (logprobs - old_logprobs)^2``), ``ratio_mean``, ``ratio_max`` (1 without tokens), ``kl`` (when
        used).

    Raises:
        ValueError: shape mismatch, unknown ``aggregation``, or ``kl_coef > 0`` without ``ref_logprobs``.
    """
    if logprobs.shape != old_logprobs.shape or logprobs.shape != response_mask.shape:
        raise ValueError(
            "logprobs, old_logprobs and response_mask must share shape (B, T); got "
            f"{tuple(logprobs.shape)}, {tuple(old_logprobs.shape)}, {tuple(response_mask.shape)}"
        )
    if advantages.shape != logprobs.shape[:1]:
        raise ValueError(f"advantages must be (B,)={tuple(logprobs.shape[:1])}, got {tuple(advantages.shape)}")
    mask = response_mask.to(logprobs.dtype)
    log_ratio = logprobs - old_logprobs.detach()
    ratio = torch.exp(log_ratio)
    adv = advantages.detach().to(logprobs.dtype).unsqueeze(-1)
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    token_losses = torch.maximum(unclipped, clipped)
    agg = dict(max_new_tokens=max_new_tokens, num_responses=num_responses, num_tokens=num_tokens)
    pg_loss = aggregate_loss(token_losses, mask, aggregation, **agg)
    loss = pg_loss

    with torch.no_grad():
        n_tok = mask.sum().clamp(min=1.0)
        ratio_max = ratio.masked_fill(mask == 0, float("-inf")).amax() if ratio.numel() else ratio.new_ones(())
        metrics = {
            "pg_loss": pg_loss.detach(),
            "pg_clipfrac": ((clipped > unclipped).to(mask.dtype) * mask).sum() / n_tok,
            "approx_kl": (0.5 * log_ratio.pow(2) * mask).sum() / n_tok,
            "ratio_mean": (ratio * mask).sum() / n_tok,
            "ratio_max": torch.where(mask.any(), ratio_max, ratio_max.new_ones(())),  # no tokens: 1, not -inf
        }

    if kl_coef > 0:
        if ref_logprobs is None:
            raise ValueError("kl_coef > 0 needs ref_logprobs")
        delta = ref_logprobs.detach() - logprobs
        k3 = torch.exp(delta) - delta - 1.0
        kl_loss = aggregate_loss(k3, mask, aggregation, **agg)
        loss = loss + kl_coef * kl_loss
        metrics["kl"] = (k3.detach() * mask).sum() / n_tok
    if not tensor_metrics:
        metrics = {k: float(v) for k, v in metrics.items()}
    return loss, metrics
