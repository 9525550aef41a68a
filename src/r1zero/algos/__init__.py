"""Algorithm math for R1-Zero-like training: every GRPO-family objective as independent axes.

Pure tensor functions, no config objects. Each axis is one key of the ``algo`` config group and one registry
here; a preset in ``conf/algo/`` only chooses a value per axis (``docs/objectives.md`` maps each to TRL, verl,
OpenRLHF and oat):

| axis (``algo.<key>``) | registry | values |
|---|---|---|
| ``adv_baseline`` | :data:`BASELINES` | group_mean (GRPO), leave_one_out (RLOO), batch_mean (REINFORCE++), none |
| ``adv_scale`` (+ ``adv_eps``, ``zero_std``) | :data:`SCALES` | none (Dr. GRPO), group_std (GRPO), batch_std (Lite PPO) |
| ``loss_agg`` (+ ``loss_agg_constant``) | :data:`LOSS_AGGREGATIONS` | seq_mean_token_mean (GRPO), token_mean (DAPO), seq_mean_token_sum_norm (Dr. GRPO), seq_mean_token_sum |
| ``ratio`` | :data:`RATIOS` | token (PPO), sequence (GSPO) |
| ``clip`` (+ ``clip_eps``, ``clip_eps_high``, ``dual_clip_c``) | :data:`CLIPS` | ppo, dual_clip, cispo |
| ``kl_estimator`` (+ ``kl_coef``, ``kl_in``) | :data:`KL_ESTIMATORS` | k1, k2, k3 |
| ``entropy_coef`` | (a number) | 0: no bonus |
| ``overlong`` (+ ``overlong_buffer_frac``, ``overlong_penalty``) | :data:`OVERLONG` | zero (the paper), mask, soft_penalty (DAPO) |
| ``dynamic_sampling`` (+ ``dynamic_sampling_max_rounds``) | (true/false) | DAPO's |
| ``tis_cap`` | (a number) | null: off; C: truncated importance sampling against the engine's log-probabilities |

The paper's four variants (Liu et al. 2025 §3.1, Eq. 2-3) differ in two axes only:

| algo               | ``adv_scale`` (difficulty bias) | ``loss_agg`` (length bias)  |
|--------------------|---------------------------------|-----------------------------|
| grpo               | group_std                       | seq_mean_token_mean         |
| drgrpo             | none                            | seq_mean_token_sum_norm     |
| grpo_no_len_norm   | group_std                       | seq_mean_token_sum_norm     |
| grpo_no_std_norm   | none                            | seq_mean_token_mean         |

A new value of an axis is one registered function (``@register_baseline``, ``@register_scale``,
``@register_loss_agg``, ``@register_ratio``, ``@register_clip``, ``@register_kl_estimator``,
``@register_overlong``); a new preset is one YAML file in ``conf/algo/``.
"""

from ..schema import registered
from .advantages import (
    BASELINES,
    SCALES,
    compute_advantages,
    constant_groups,
    group_advantages,
    register_baseline,
    register_scale,
    zero_std_rows,
)
from .objective import (
    CLIPS,
    KL_ESTIMATORS,
    LOSS_AGGREGATIONS,
    RATIOS,
    aggregate_loss,
    masked_mean,
    policy_loss,
    register_clip,
    register_kl_estimator,
    register_loss_agg,
    register_ratio,
    response_kl,
)
from .shaping import OVERLONG, overlong_penalty, pick_groups, register_overlong, signal_groups

__all__ = [
    "BASELINES",
    "CLIPS",
    "KL_ESTIMATORS",
    "LOSS_AGGREGATIONS",
    "OVERLONG",
    "RATIOS",
    "SCALES",
    "aggregate_loss",
    "check_names",
    "compute_advantages",
    "constant_groups",
    "group_advantages",
    "masked_mean",
    "overlong_penalty",
    "pick_groups",
    "policy_loss",
    "register_baseline",
    "register_clip",
    "register_kl_estimator",
    "register_loss_agg",
    "register_overlong",
    "register_ratio",
    "register_scale",
    "response_kl",
    "signal_groups",
    "zero_std_rows",
]


#: ``algo.<key>`` -> (its registry, what the registry holds), in the order :func:`check_names` checks them.
AXES = {
    "adv_baseline": (BASELINES, "advantage baselines"),
    "adv_scale": (SCALES, "advantage scales"),
    "loss_agg": (LOSS_AGGREGATIONS, "loss aggregations"),
    "ratio": (RATIOS, "importance ratios"),
    "clip": (CLIPS, "clippings"),
    "kl_estimator": (KL_ESTIMATORS, "KL estimators"),
    "overlong": (OVERLONG, "overlong handlings"),
}


def check_names(algo) -> None:
    """Every axis of an ``algo`` config (:class:`~r1zero.schema.AlgoConfig`) names a registered function.

    Raises:
        ConfigError: one line naming the first unknown axis value and the registered ones.
    """
    for key, (registry, what) in AXES.items():
        registered(f"algo.{key}", getattr(algo, key), registry, what)
