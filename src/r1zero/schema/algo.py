"""``algo`` group (``conf/algo/*.yaml``): the advantage estimator and loss aggregation of one algorithm."""

from dataclasses import dataclass
from typing import Optional

from ._check import at_least, registered


@dataclass
class AlgoConfig:
    name: Optional[str] = None               # the option name (null: a node built in code)
    adv_estimator: str = "grpo"              # r1zero.algos.ADV_ESTIMATORS: r_i - mean(r) of the question's group
    scale_by_std: bool = False               # divide the advantage by the group's std (difficulty bias, paper §3.1)
    loss_agg: str = "seq_mean_token_sum_norm"  # r1zero.algos.LOSS_AGGREGATIONS (Dr. GRPO's constant normaliser)
    clip_eps: float = 0.2                    # PPO ratio clipping epsilon
    kl_coef: float = 0.0                     # KL penalty to the initial policy (k3); >0 loads a frozen reference copy
    adv_eps: float = 1.0e-8                  # added to the group std when scale_by_std (the paper's code: std + 1e-8)

    def __post_init__(self) -> None:
        from ..algos import ADV_ESTIMATORS, LOSS_AGGREGATIONS

        registered("algo.adv_estimator", self.adv_estimator, ADV_ESTIMATORS, "advantage estimators")
        registered("algo.loss_agg", self.loss_agg, LOSS_AGGREGATIONS, "loss aggregations")
        at_least("algo.clip_eps", self.clip_eps, 0.0, what="a number")
        at_least("algo.kl_coef", self.kl_coef, 0.0, what="a number")
        at_least("algo.adv_eps", self.adv_eps, 0.0, what="a number")
