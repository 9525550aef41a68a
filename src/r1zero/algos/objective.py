"""The per-token policy-gradient objective, from independent axes, each a registry of pure tensor functions.

``loss = aggregate(clip(ratio(logprobs, old_logprobs), A)) + kl_coef * aggregate(kl(logprobs, ref))
- entropy_coef * aggregate(entropy)``:

* importance ratio (``algo.ratio``, :data:`RATIOS`): ``token`` (PPO) | ``sequence`` (GSPO);
* clipping (``algo.clip``, :data:`CLIPS`): ``ppo`` (symmetric ``clip_eps``, or asymmetric with ``clip_eps_high``:
  DAPO's clip-higher) | ``dual_clip`` (a cap ``dual_clip_c`` on negative advantages) | ``cispo``;
* loss aggregation (``algo.loss_agg``, :data:`LOSS_AGGREGATIONS`): ``seq_mean_token_mean`` (GRPO) | ``token_mean``
  (DAPO) | ``seq_mean_token_sum_norm`` (Dr. GRPO) | ``seq_mean_token_sum``;
* KL estimator (``algo.kl_estimator``, :data:`KL_ESTIMATORS`): ``k1`` | ``k2`` | ``k3`` (Schulman 2020).

Every aggregation takes the totals of the whole optimizer batch (``num_responses``, ``num_tokens``): the
micro-batch losses of any split of that batch, over any number of data-parallel ranks, then sum to the loss of the
whole batch (the wrong-scope divisor of trl PR 6024 cannot happen). A response masked out of the loss (a row of
``response_mask`` all 0) counts in neither total (trl issue 6369).
"""

from __future__ import annotations

import torch

from ..schema.registry import Registry

__all__ = [
    "CLIPS",
    "KL_ESTIMATORS",
    "LOSS_AGGREGATIONS",
    "RATIOS",
    "aggregate_loss",
    "masked_mean",
    "policy_loss",
    "register_clip",
    "register_kl_estimator",
    "register_loss_agg",
    "register_ratio",
    "response_kl",
]

LOSS_AGGREGATIONS = Registry("loss aggregation")
RATIOS = Registry("importance ratio")
CLIPS = Registry("clipping")
KL_ESTIMATORS = Registry("KL estimator")
register_loss_agg = LOSS_AGGREGATIONS.register
register_ratio = RATIOS.register
register_clip = CLIPS.register
register_kl_estimator = KL_ESTIMATORS.register


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over positions where ``mask`` is 1 (an all-zero mask gives 0, not NaN)."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


# --------------------------------------------------------------------------------------------------
# Loss aggregation: (B, T) token losses, (B, T) mask -> scalar
# --------------------------------------------------------------------------------------------------


def _responses(response_mask: torch.Tensor, num_responses: int | None):
    # rows without a token in the loss (masked out: overlong=mask, zero_std=drop) are no responses of the batch
    return num_responses if num_responses is not None else (response_mask.sum(-1) > 0).sum()


@register_loss_agg("seq_mean_token_mean")
def seq_mean_token_mean(token_losses, response_mask, *, constant, num_responses, num_tokens):
    """GRPO (DeepSeekMath Eq. 3; paper §3.1): each response's token mean (the 1/|o_i| length bias), then the mean
    over responses. (B, T), (B, T) -> 0-d."""
    per_seq = masked_mean(token_losses, response_mask, dim=-1)
    return per_seq.sum() / _responses(response_mask, num_responses)


@register_loss_agg("seq_mean_token_sum_norm")
def seq_mean_token_sum_norm(token_losses, response_mask, *, constant, num_responses, num_tokens):
    """Dr. GRPO (paper Eq. 3 and its code, ``train_zero_math.py`` / oat ``ppo.py``): each response's token *sum*
    divided by ``constant`` (the generation budget ``max_new_tokens`` unless ``algo.loss_agg_constant``), then the
    mean over responses. (B, T), (B, T) -> 0-d."""
    per_seq = (token_losses * response_mask).sum(-1) / float(constant)
    return per_seq.sum() / _responses(response_mask, num_responses)


@register_loss_agg("seq_mean_token_sum")
def seq_mean_token_sum(token_losses, response_mask, *, constant, num_responses, num_tokens):
    """Each response's token sum, then the mean over responses (verl ``loss_agg_mode="seq-mean-token-sum"``):
    Dr. GRPO without its constant, so the gradient grows with response length. (B, T), (B, T) -> 0-d."""
    per_seq = (token_losses * response_mask).sum(-1)
    return per_seq.sum() / _responses(response_mask, num_responses)


@register_loss_agg("token_mean")
def token_mean(token_losses, response_mask, *, constant, num_responses, num_tokens):
    """DAPO (Yu et al. 2025, arXiv 2503.14476 §3.3, token-level policy gradient loss): the sum over every token of the optimizer
    batch divided by its token count. (B, T), (B, T) -> 0-d."""
    denom = num_tokens if num_tokens is not None else response_mask.sum().clamp(min=1.0)
    return (token_losses * response_mask).sum() / denom


def aggregate_loss(
    token_losses: torch.Tensor,
    response_mask: torch.Tensor,
    aggregation: str,
    *,
    max_new_tokens: int,
    constant: float | None = None,
    num_responses: int | None = None,
    num_tokens: float | None = None,
) -> torch.Tensor:
    """Reduce (B, T) per-token losses to a scalar with the registered ``aggregation``.

    ``num_responses`` / ``num_tokens`` are the totals of the whole optimizer batch (responses and tokens in the
    loss); without them, those of this micro-batch. With them, the losses of any split of the batch sum exactly to
    the loss of the whole batch, so the accumulated gradient does not depend on the micro-batch size.
    ``constant`` is Dr. GRPO's normaliser; None: ``max_new_tokens``.

    Raises:
        ValueError: unknown ``aggregation`` (message lists the registered ones).
    """
    fn = LOSS_AGGREGATIONS.lookup(aggregation)
    return fn(
        token_losses,
        response_mask.to(token_losses.dtype),
        constant=max_new_tokens if constant is None else constant,
        num_responses=num_responses,
        num_tokens=num_tokens,
    )


# --------------------------------------------------------------------------------------------------
# Importance ratio: (B, T) logprobs, old_logprobs, mask -> (B, T) log-ratio
# --------------------------------------------------------------------------------------------------


@register_ratio("token")
def token_ratio(logprobs: torch.Tensor, old_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """PPO's per-token ``log pi(o_t) - log pi_old(o_t)`` (Schulman et al. 2017, arXiv 1707.06347). (B, T) x 3 -> (B, T)."""
    return logprobs - old_logprobs


@register_ratio("sequence")
def sequence_ratio(logprobs: torch.Tensor, old_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """GSPO's length-normalised sequence ratio (Zheng et al. 2025, arXiv 2507.18071: ``s_i = (pi(o_i) /
    pi_old(o_i))^(1/|o_i|)``), in its GSPO-token form (``s_i,t = sg[s_i] * pi(o_t) / sg[pi(o_t)]``, as verl
    ``compute_policy_loss_gspo``).

    Every token of response i carries the value ``log s_i``; its gradient is that token's own ``grad log pi``,
    so with ``loss_agg=seq_mean_token_mean`` the gradient is exactly GSPO's ``s_i * A_i * mean_t grad log pi``.

    Args:
        logprobs: (B, T) current policy (grad); old_logprobs: (B, T) sampling policy; mask: (B, T) response tokens.

    Returns:
        (B, T) log-ratios, ``log s_i`` on every position of row i.
    """
    seq = ((logprobs - old_logprobs) * mask).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp(min=1.0)
    return seq.detach() + logprobs - logprobs.detach()


# --------------------------------------------------------------------------------------------------
# Clipping: (B, T) log-ratio and ratio, (B, 1) advantages -> (B, T) token losses, (B, T) bool "clipped"
# --------------------------------------------------------------------------------------------------


@register_clip("ppo")
def ppo_clip(log_ratio, ratio, adv, *, eps_low: float, eps_high: float, dual_clip_c: float):
    """``-min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A)`` (PPO: Schulman et al. 2017, the
    clipped surrogate; the asymmetric ``eps_high > eps_low`` is DAPO's clip-higher, Yu et al. 2025 §3.1).

    Args:
        log_ratio, ratio: (B, T) from the ratio axis (``ratio = exp(log_ratio)``).
        adv: (B, 1) advantages (detached).
        eps_low, eps_high: the clip range; dual_clip_c: unused here.

    Returns:
        ``(token_losses, clipped)``: (B, T) losses, and where the clipped term is the active one.
    """
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    return torch.maximum(unclipped, clipped), clipped > unclipped


@register_clip("dual_clip")
def dual_clip(log_ratio, ratio, adv, *, eps_low: float, eps_high: float, dual_clip_c: float):
    """PPO clip, then for ``A < 0`` the loss capped at ``-c * A`` (dual-clip PPO: Ye et al. 2020, "Mastering Complex
    Control in MOBA Games", arXiv 1912.09729; verl ``clip_ratio_c``, OpenRLHF ``--actor.dual_clip``): a token whose ratio has
    grown past ``c`` stops pushing its negative-advantage gradient. Shapes as :func:`ppo_clip`; ``clipped`` also marks
    the tokens the cap binds."""
    loss, clipped = ppo_clip(log_ratio, ratio, adv, eps_low=eps_low, eps_high=eps_high, dual_clip_c=dual_clip_c)
    cap = -adv * dual_clip_c
    negative = (adv < 0).expand_as(loss)
    capped = negative & (loss > cap)
    return torch.where(negative, torch.minimum(loss, cap), loss), clipped | capped


@register_clip("cispo")
def cispo_clip(log_ratio, ratio, adv, *, eps_low: float, eps_high: float, dual_clip_c: float):
    """CISPO (MiniMax-M1: MiniMax 2025, arXiv 2506.13585): clip the importance weight, stop its gradient, and keep every
    token's gradient: ``-sg(clip(ratio, 1 - eps_low, 1 + eps_high)) * A * log pi``.

    Written as ``-sg(w) * A * exp(log_ratio - sg(log_ratio))``: the same gradient ``-w * A * grad log pi`` and a
    value of ``-w * A`` (the clipped surrogate's), where the paper's form carries ``log pi`` in its value. Shapes as
    :func:`ppo_clip`; ``clipped`` marks the tokens whose weight was clipped.
    """
    weight = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high).detach()
    return -adv * weight * torch.exp(log_ratio - log_ratio.detach()), weight != ratio.detach()


# --------------------------------------------------------------------------------------------------
# KL estimators: (B, T) logprobs, ref_logprobs -> (B, T) per-token estimate of KL(pi || pi_ref)
# --------------------------------------------------------------------------------------------------


@register_kl_estimator("k1")
def kl_k1(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """``log pi - log pi_ref`` (Schulman 2020, "Approximating KL divergence": k1, unbiased, high variance)."""
    return logprobs - ref_logprobs


@register_kl_estimator("k2")
def kl_k2(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """``0.5 * (log pi - log pi_ref)^2`` (Schulman 2020: k2; as a loss its gradient is that of the true KL's
    expectation, the choice of REINFORCE++ and ProRL)."""
    return 0.5 * (logprobs - ref_logprobs).pow(2)


@register_kl_estimator("k3")
def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """``exp(ref - log pi) - (ref - log pi) - 1`` (Schulman 2020: k3, unbiased, low variance; GRPO's KL in
    DeepSeekMath)."""
    delta = ref_logprobs - logprobs
    return torch.exp(delta) - delta - 1.0


def response_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, response_mask: torch.Tensor,
                estimator: str) -> torch.Tensor:
    """(N,) each response's summed per-token KL estimate, for a KL penalty in the reward (``algo.kl_in=reward``:
    ``r_i - kl_coef * sum_t kl_t``, as verl ``apply_kl_penalty`` then an outcome advantage).

    Args:
        logprobs: (N, T) the sampling policy's; ref_logprobs: (N, T) the reference's; response_mask: (N, T).
        estimator: a key of :data:`KL_ESTIMATORS`.
    """
    kl = KL_ESTIMATORS.lookup(estimator)(logprobs.float(), ref_logprobs.float())
    return (kl * response_mask.to(kl.dtype)).sum(-1)


# --------------------------------------------------------------------------------------------------
# The objective
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
    num_tokens: float | None = None,
    ref_logprobs: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    kl_estimator: str = "k3",
    ratio: str = "token",
    clip: str = "ppo",
    clip_eps_high: float | None = None,
    dual_clip_c: float = 3.0,
    agg_constant: float | None = None,
    entropy: torch.Tensor | None = None,
    entropy_coef: float = 0.0,
    behaviour_logprobs: torch.Tensor | None = None,
    tis_cap: float | None = None,
    tensor_metrics: bool = False,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The clipped policy-gradient surrogate per token, aggregated per ``aggregation`` (paper Eq. 1-3).

    Per token ``t`` of response ``i``: the log-ratio of ``ratio`` (``token``: ``logprobs - old_logprobs``), its
    exponential, and the token loss of ``clip`` (``ppo``: ``-min(ratio * A_i, clip(ratio, 1 - clip_eps,
    1 + clip_eps_high) * A_i)``). With ``kl_coef > 0`` and ``ref_logprobs``, ``kl_coef`` times the aggregated
    ``kl_estimator`` is added; with ``entropy_coef > 0`` and ``entropy``, ``entropy_coef`` times its aggregate is
    subtracted (an entropy bonus). With ``tis_cap``, each token's policy-gradient loss is multiplied by the truncated
    importance weight ``min(exp(old_logprobs - behaviour_logprobs), tis_cap)`` (no gradient), correcting for the
    rollout engine sampling from slightly other probabilities than the learner's (TIS: Yao et al. 2025, "Your
    Efficient RL Framework Secretly Brings You Off-Policy RL Training"; verl ``rollout_is``, TRL
    ``vllm_importance_sampling_correction``, oat ``tis_c``).

    Args:
        logprobs: (B, T) log-probabilities of the sampled response tokens under the current policy (grad).
        old_logprobs: (B, T) the same under the policy that sampled them (no grad).
        advantages: (B,) one advantage per response, broadcast over its tokens.
        response_mask: (B, T) 1 on response tokens in the loss, 0 on padding and on responses masked out.
        clip_eps: PPO clipping epsilon (paper: 0.2), the lower side; also the upper one unless ``clip_eps_high``.
        aggregation: a key of ``LOSS_AGGREGATIONS``.
        max_new_tokens: the generation budget, Dr. GRPO's constant unless ``agg_constant``.
        num_responses: responses in the loss in the whole optimizer batch (defaults to this call's).
        num_tokens: response tokens in the loss in the whole optimizer batch (defaults to this call's).
        ref_logprobs: (B, T) reference-policy log-probabilities, needed when ``kl_coef > 0``.
        kl_coef: weight of the KL term in the loss (paper default 0).
        kl_estimator: a key of ``KL_ESTIMATORS``.
        ratio: a key of ``RATIOS``; clip: a key of ``CLIPS``.
        clip_eps_high: the upper clip epsilon (DAPO: 0.28); None: ``clip_eps``.
        dual_clip_c: the cap of ``clip=dual_clip`` (> 1).
        agg_constant: Dr. GRPO's normaliser; None: ``max_new_tokens``.
        entropy: (B, T) per-token entropy of the current policy (grad), used when ``entropy_coef > 0``.
        entropy_coef: weight of the entropy bonus.
        behaviour_logprobs: (B, T) the engine's log-probabilities of the tokens it sampled, needed with ``tis_cap``.
        tis_cap: the truncation C of the importance weight; None: no correction.
        tensor_metrics: return the metrics as detached 0-d tensors on the loss's device instead of floats, so
            a caller looping over micro-batches can sum them there and read them back once (each float is a
            host-device sync on a GPU).

    Returns:
        ``(loss, metrics)``: the scalar loss to backpropagate, and ``pg_loss``, ``pg_clipfrac`` (share of tokens
        whose clipped term is the active one, or whose weight was clipped), ``approx_kl`` (mean of
        ``0.5 * (logprobs - old_logprobs)^2``), ``ratio_mean``, ``ratio_max`` (1 without tokens) of the ratio
        axis's ratio, ``kl`` (when used), ``entropy`` (when given) and ``tis_weight_mean`` (with ``tis_cap``).

    Raises:
        ValueError: shape mismatch, an unknown axis name, ``kl_coef > 0`` without ``ref_logprobs``, or ``tis_cap``
            without ``behaviour_logprobs``.
    """
    if logprobs.shape != old_logprobs.shape or logprobs.shape != response_mask.shape:
        raise ValueError(
            "logprobs, old_logprobs and response_mask must share shape (B, T); got "
            f"{tuple(logprobs.shape)}, {tuple(old_logprobs.shape)}, {tuple(response_mask.shape)}"
        )
    if advantages.shape != logprobs.shape[:1]:
        raise ValueError(f"advantages must be (B,)={tuple(logprobs.shape[:1])}, got {tuple(advantages.shape)}")
    mask = response_mask.to(logprobs.dtype)
    log_ratio = RATIOS.lookup(ratio)(logprobs, old_logprobs.detach(), mask)
    ratios = torch.exp(log_ratio)
    adv = advantages.detach().to(logprobs.dtype).unsqueeze(-1)
    token_losses, clipped = CLIPS.lookup(clip)(
        log_ratio, ratios, adv, eps_low=clip_eps, eps_high=clip_eps if clip_eps_high is None else clip_eps_high,
        dual_clip_c=dual_clip_c)
    tis = None
    if tis_cap is not None:
        if behaviour_logprobs is None:
            raise ValueError("tis_cap needs behaviour_logprobs (the engine's log-probabilities of its samples)")
        tis = torch.exp(old_logprobs.detach() - behaviour_logprobs.detach()).clamp(max=tis_cap)
        token_losses = token_losses * tis
    agg = {"max_new_tokens": max_new_tokens, "constant": agg_constant, "num_responses": num_responses,
           "num_tokens": num_tokens}
    pg_loss = aggregate_loss(token_losses, mask, aggregation, **agg)
    loss = pg_loss

    with torch.no_grad():
        n_tok = mask.sum().clamp(min=1.0)
        token_log_ratio = log_ratio if ratio == "token" else logprobs - old_logprobs
        ratio_max = ratios.masked_fill(mask == 0, float("-inf")).amax() if ratios.numel() else ratios.new_ones(())
        metrics = {
            "pg_loss": pg_loss.detach(),
            "pg_clipfrac": (clipped.to(mask.dtype) * mask).sum() / n_tok,
            "approx_kl": (0.5 * token_log_ratio.pow(2) * mask).sum() / n_tok,
            "ratio_mean": (ratios * mask).sum() / n_tok,
            "ratio_max": torch.where(mask.any(), ratio_max, ratio_max.new_ones(())),  # no tokens: 1, not -inf
        }
        if tis is not None:
            metrics["tis_weight_mean"] = (tis * mask).sum() / n_tok

    if kl_coef > 0:
        if ref_logprobs is None:
            raise ValueError("kl_coef > 0 needs ref_logprobs")
        kl = KL_ESTIMATORS.lookup(kl_estimator)(logprobs, ref_logprobs.detach())
        loss = loss + kl_coef * aggregate_loss(kl, mask, aggregation, **agg)
        metrics["kl"] = (kl.detach() * mask).sum() / n_tok
    if entropy is not None:
        if entropy_coef > 0:
            loss = loss - entropy_coef * aggregate_loss(entropy, mask, aggregation, **agg)
        metrics["entropy"] = (entropy.detach() * mask).sum() / n_tok
    if not tensor_metrics:
        metrics = {k: float(v) for k, v in metrics.items()}
    return loss, metrics
