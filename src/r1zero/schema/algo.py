"""``algo`` group (``conf/algo/*.yaml``): one key per axis of the objective (:mod:`r1zero.algos`); a preset picks
a value for some of them and leaves the rest at these defaults, which are Dr. GRPO's (the paper's Fig. 5 recipe)."""

from dataclasses import dataclass
from typing import ClassVar, Optional

from ._check import above, at_least, between, one_of


@dataclass
class AlgoConfig:
    name: Optional[str] = None               # the option name (null: a node built in code)
    # advantage: scale(r - baseline), one number per response (r1zero.algos.advantages)
    adv_baseline: str = "group_mean"         # r1zero.algos.BASELINES: group_mean (GRPO) | leave_one_out (RLOO) | batch_mean (REINFORCE++) | none
    adv_scale: str = "none"                  # r1zero.algos.SCALES: none (Dr. GRPO) | group_std (GRPO) | batch_std (Lite PPO)
    adv_eps: float = 1.0e-8                  # added to the std of a *_std scale (the paper's code: std + 1e-8)
    zero_std: str = "zero"                   # a group whose rewards are all equal: zero (advantage 0, in the loss) | drop (out of the loss)
    # the per-token objective (r1zero.algos.objective)
    loss_agg: str = "seq_mean_token_sum_norm"  # r1zero.algos.LOSS_AGGREGATIONS: seq_mean_token_mean (GRPO) | token_mean (DAPO) | seq_mean_token_sum_norm (Dr. GRPO) | seq_mean_token_sum
    loss_agg_constant: Optional[int] = None  # seq_mean_token_sum_norm's divisor in tokens; null: sampling.max_new_tokens (the paper)
    ratio: str = "token"                     # r1zero.algos.RATIOS: token (PPO) | sequence (GSPO, length-normalised)
    clip: str = "ppo"                        # r1zero.algos.CLIPS: ppo | dual_clip | cispo (clip the importance weight, keep every gradient)
    clip_eps: float = 0.2                    # PPO ratio clipping epsilon (the lower side, and the upper unless clip_eps_high)
    clip_eps_high: Optional[float] = None    # the upper clipping epsilon (DAPO's clip-higher: 0.28); null: clip_eps
    dual_clip_c: float = 3.0                 # clip=dual_clip: a negative advantage's token loss is capped at -c * A (Ye et al. 2020: 3)
    kl_coef: float = 0.0                     # KL penalty to the initial policy; >0 loads a frozen reference copy
    kl_estimator: str = "k3"                 # r1zero.algos.KL_ESTIMATORS: k1 | k2 | k3 (Schulman 2020)
    kl_in: str = "loss"                      # loss (GRPO: kl_coef x aggregated KL in the loss) | reward (r - kl_coef x the response's summed KL)
    entropy_coef: float = 0.0                # entropy bonus: minus entropy_coef x the aggregated token entropy in the loss
    tis_cap: Optional[float] = None          # truncated importance sampling: token losses x min(pi_learner / pi_engine, tis_cap); null: off (verl, TRL: TIS)
    # the rollout (r1zero.algos.shaping)
    overlong: str = "zero"                   # r1zero.algos.OVERLONG, a response cut by max_new_tokens: zero (reward 0: the paper) | mask (out of the loss) | soft_penalty (DAPO)
    overlong_buffer_frac: float = 0.2        # soft_penalty: the penalty grows over the last buffer_frac x max_new_tokens tokens (DAPO: 4096 of 20480)
    overlong_penalty: float = 1.0            # soft_penalty: the penalty at max_new_tokens (DAPO: 1)
    dynamic_sampling: bool = False           # DAPO: drop groups whose graded rewards are all equal, roll out more until the batch is full
    dynamic_sampling_max_rounds: int = 10    # rollouts per step at most, the first included; then zero-signal groups fill the batch (verl DAPO: 10)

    #: keys of earlier versions -> what replaces them (one-line error, r1zero.schema.errors.unknown_key)
    RENAMED: ClassVar[dict] = {
        "scale_by_std": "algo.adv_scale (true: group_std, false: none)",
        "adv_estimator": "algo.adv_baseline (grpo: group_mean, rloo: leave_one_out)",
    }

    def __post_init__(self) -> None:
        # the axes' names (adv_baseline, ..., overlong) are r1zero.algos' registries: r1zero.algos.check_names
        one_of("algo.zero_std", self.zero_std, ("zero", "drop"))
        one_of("algo.kl_in", self.kl_in, ("loss", "reward"))
        at_least("algo.adv_eps", self.adv_eps, 0.0, what="a number")
        at_least("algo.loss_agg_constant", self.loss_agg_constant, 1, none_ok=True)
        at_least("algo.clip_eps", self.clip_eps, 0.0, what="a number")
        at_least("algo.clip_eps_high", self.clip_eps_high, 0.0, none_ok=True, what="a number")
        above("algo.dual_clip_c", self.dual_clip_c, 1.0)
        at_least("algo.kl_coef", self.kl_coef, 0.0, what="a number")
        at_least("algo.entropy_coef", self.entropy_coef, 0.0, what="a number")
        if self.tis_cap is not None:
            above("algo.tis_cap", self.tis_cap, 0.0)
        between("algo.overlong_buffer_frac", self.overlong_buffer_frac, 0.0, 1.0)
        at_least("algo.overlong_penalty", self.overlong_penalty, 0.0, what="a number")
        at_least("algo.dynamic_sampling_max_rounds", self.dynamic_sampling_max_rounds, 1)
