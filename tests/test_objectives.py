"""Every axis of the objective (r1zero.algos) against hand-worked numbers, the peers' known bugs pinned, and every
preset of conf/algo composed and run.

The example of every axis: 2 questions x 3 responses (G = 3), response lengths 1, 2, 3 | 3, 2, 1 (T = 3, 12 tokens),
one importance ratio per response (the same on all its tokens, except in the GSPO example).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import CONF, compose
from test_train import TINY, AlternatingGrader, ScriptedEngine

import r1zero.train as train_mod
from r1zero.algos import (
    CLIPS,
    KL_ESTIMATORS,
    LOSS_AGGREGATIONS,
    OVERLONG,
    SCALES,
    compute_advantages,
    overlong_penalty,
    pick_groups,
    policy_loss,
    response_kl,
    signal_groups,
    zero_std_rows,
)

G = 3

# ------------------------------------------------------------------------------------------------------------------
# Advantages. Rewards [0, 1, 2 | 2, 2, 2]: group 1 mean 1, unbiased std 1; group 2 all equal; batch mean 9/6 = 1.5,
# batch unbiased std sqrt((1.5^2 + 0.5^2 + 4 * 0.5^2) / 5) = sqrt(0.7).
# ------------------------------------------------------------------------------------------------------------------
REWARDS = torch.tensor([0.0, 1.0, 2.0, 2.0, 2.0, 2.0])

BASELINE_CASES = {
    "group_mean": [-1.0, 0.0, 1.0, 0.0, 0.0, 0.0],
    # r_i - mean of the other two: 0 - 1.5, 1 - 1, 2 - 0.5; group 2: 2 - 2
    "leave_one_out": [-1.5, 0.0, 1.5, 0.0, 0.0, 0.0],
    "batch_mean": [-1.5, -0.5, 0.5, 0.5, 0.5, 0.5],
    "none": [0.0, 1.0, 2.0, 2.0, 2.0, 2.0],
}


@pytest.mark.parametrize("baseline", sorted(BASELINE_CASES))
def test_baselines_hand_worked(baseline):
    adv = compute_advantages(REWARDS, G, baseline=baseline, scale="none")
    assert adv.tolist() == pytest.approx(BASELINE_CASES[baseline], abs=1e-6)


@pytest.mark.parametrize("baseline,scale,expected", [
    # group 1's std is 1, group 2 has none: left undivided (0 under the group baselines)
    ("group_mean", "group_std", [-1.0, 0.0, 1.0, 0.0, 0.0, 0.0]),
    # no baseline: group 1 divided by its std 1, group 2 (std 0) left as it is, never divided by eps alone
    ("none", "group_std", [0.0, 1.0, 2.0, 2.0, 2.0, 2.0]),
    # Lite PPO: group mean, batch std sqrt(0.7)
    ("group_mean", "batch_std", [-1 / math.sqrt(0.7), 0.0, 1 / math.sqrt(0.7), 0.0, 0.0, 0.0]),
    # REINFORCE++: batch mean and batch std
    ("batch_mean", "batch_std", [x / math.sqrt(0.7) for x in (-1.5, -0.5, 0.5, 0.5, 0.5, 0.5)]),
])
def test_scales_hand_worked(baseline, scale, expected):
    adv = compute_advantages(REWARDS, G, baseline=baseline, scale=scale, eps=0.0)
    assert adv.tolist() == pytest.approx(expected, abs=1e-6)


def test_std_epsilon_is_added_to_the_std():
    # group 1: (r - 1) / (1 + 0.5)
    adv = compute_advantages(REWARDS, G, scale="group_std", eps=0.5)
    assert adv.tolist() == pytest.approx([-1 / 1.5, 0.0, 1 / 1.5, 0.0, 0.0, 0.0], abs=1e-6)


def test_zero_std_rows_and_signal_groups():
    assert zero_std_rows(REWARDS, G).tolist() == [False] * 3 + [True] * 3
    assert signal_groups(REWARDS, G).tolist() == [True, False]
    assert zero_std_rows(torch.tensor([0.3] * 3 + [0.3, 0.3, 0.30001]), G).tolist() == [True] * 3 + [False] * 3


def test_unknown_axis_values_list_the_choices():
    with pytest.raises(ValueError, match=r"unknown advantage baseline 'mean'; valid choices: .*leave_one_out"):
        compute_advantages(REWARDS, G, baseline="mean")
    with pytest.raises(ValueError, match=r"unknown advantage scale 'std'; valid choices: .*group_std"):
        compute_advantages(REWARDS, G, scale="std")
    with pytest.raises(ValueError, match=r"unknown clipping 'clip'; valid choices: .*cispo"):
        policy_loss(NEW, OLD, ADV, MASK, clip_eps=0.2, aggregation="token_mean", max_new_tokens=4, clip="clip")
    with pytest.raises(ValueError, match=r"unknown importance ratio 'seq'; valid choices: .*sequence"):
        policy_loss(NEW, OLD, ADV, MASK, clip_eps=0.2, aggregation="token_mean", max_new_tokens=4, ratio="seq")


# ------------------------------------------------------------------------------------------------------------------
# The per-token objective. Advantages [1, -0.5, -0.5 | 2, -1, -1], ratios [1.25, 1.3, 0.7 | 1.0, 1.5, 0.6].
# PPO, eps 0.2, token loss -min(r A, clip(r, 0.8, 1.2) A):
#   r0: A 1, r 1.25:    min(1.25, 1.2) = 1.2             -> -1.2  (clipped term active: no gradient)
#   r1: A -0.5, r 1.3:  min(-0.65, -0.6) = -0.65         ->  0.65
#   r2: A -0.5, r 0.7:  min(-0.35, -0.4) = -0.4          ->  0.4  (clipped)
#   r3: A 2, r 1:                                        -> -2.0
#   r4: A -1, r 1.5:    min(-1.5, -1.2) = -1.5           ->  1.5
#   r5: A -1, r 0.6:    min(-0.6, -0.8) = -0.8           ->  0.8  (clipped)
# Token sums (x lengths 1, 2, 3, 3, 2, 1): -1.2 + 1.3 + 1.2 - 6.0 + 3.0 + 0.8 = -0.9; clipped tokens 1 + 3 + 1 = 5.
# ------------------------------------------------------------------------------------------------------------------
MASK = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1], [1, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=torch.float64)
ADV = torch.tensor([1.0, -0.5, -0.5, 2.0, -1.0, -1.0], dtype=torch.float64)
RATIOS = torch.tensor([1.25, 1.3, 0.7, 1.0, 1.5, 0.6], dtype=torch.float64)
OLD = torch.full((6, 3), -2.0, dtype=torch.float64)
NEW = OLD + RATIOS.log().unsqueeze(-1)
TOKEN_LOSS = [-1.2, 0.65, 0.4, -2.0, 1.5, 0.8]

AGG_CASES = {
    "seq_mean_token_mean": sum(TOKEN_LOSS) / 6,  # 0.15 / 6
    "token_mean": -0.9 / 12,
    "seq_mean_token_sum_norm": -0.9 / 4 / 6,  # constant max_new_tokens = 4
    "seq_mean_token_sum": -0.9 / 6,
}


def _loss(new=NEW, old=OLD, adv=ADV, mask=MASK, **kw):
    kw.setdefault("clip_eps", 0.2)
    kw.setdefault("aggregation", "token_mean")
    kw.setdefault("max_new_tokens", 4)
    return policy_loss(new, old, adv, mask, **kw)


def test_every_aggregation_has_a_case():
    assert set(AGG_CASES) == set(LOSS_AGGREGATIONS)


@pytest.mark.parametrize("agg", sorted(AGG_CASES))
def test_aggregations_hand_worked(agg):
    loss, m = _loss(aggregation=agg)
    assert loss.item() == pytest.approx(AGG_CASES[agg], abs=1e-12)
    assert m["pg_clipfrac"] == pytest.approx(5 / 12)


def test_loss_agg_constant_replaces_max_new_tokens():
    loss, _ = _loss(aggregation="seq_mean_token_sum_norm", agg_constant=10)
    assert loss.item() == pytest.approx(-0.9 / 10 / 6, abs=1e-12)


def test_clip_higher_lets_a_positive_advantage_ratio_rise_to_1_plus_eps_high():
    # eps_high 0.28: r0's 1.25 is inside [0.8, 1.28], so its loss is -1.25 (and it has a gradient); nothing else moves
    new = NEW.clone().requires_grad_(True)
    loss, m = _loss(new, clip_eps_high=0.28)
    assert loss.item() == pytest.approx((-0.9 - 0.05) / 12, abs=1e-12)
    assert m["pg_clipfrac"] == pytest.approx(4 / 12)
    loss.backward()
    assert new.grad[0, 0].item() == pytest.approx(-1.25 / 12)  # d(-r A)/d log pi = -r A, over 12 tokens


def test_dual_clip_caps_negative_advantage_losses():
    # c = 1.4: a negative advantage's token loss is at most 1.4 |A|; only r4 (1.5 > 1.4) is capped
    loss, m = _loss(clip="dual_clip", dual_clip_c=1.4)
    assert loss.item() == pytest.approx((-0.9 - 2 * 0.1) / 12, abs=1e-12)
    assert m["pg_clipfrac"] == pytest.approx((5 + 2) / 12)


def test_cispo_clips_the_weight_and_keeps_every_tokens_gradient():
    # weights clip(r, 0, 1.2) = [1.2, 1.2, 0.7, 1.0, 1.2, 0.6]; value -w A per token; gradient -w A / 12 per token
    w = torch.tensor([1.2, 1.2, 0.7, 1.0, 1.2, 0.6], dtype=torch.float64)
    new = NEW.clone().requires_grad_(True)
    loss, m = _loss(new, clip="cispo", clip_eps=1.0, clip_eps_high=0.2)
    lengths = MASK.sum(-1)
    assert loss.item() == pytest.approx(float((-w * ADV * lengths).sum()) / 12, abs=1e-12)
    assert m["pg_clipfrac"] == pytest.approx(5 / 12)  # weights clipped: r0 (1 token), r1 (2), r4 (2)
    loss.backward()
    torch.testing.assert_close(new.grad, (-w * ADV).unsqueeze(-1) * MASK / 12)
    # PPO drops r0's gradient (its clipped term is active); CISPO keeps it
    ppo = NEW.clone().requires_grad_(True)
    _loss(ppo)[0].backward()
    assert ppo.grad[0, 0].item() == 0.0 and new.grad[0, 0].item() == pytest.approx(-1.2 / 12)


def test_gspo_sequence_ratio_value_and_gradient():
    # per-token ratios: r0 [1.25]; r1 [1.1, 1.3] -> s = sqrt(1.43); r2 [0.5, 1, 2] -> 1; r3 [1, 1, 1] -> 1;
    # r4 [1.2, 1.875] -> sqrt(2.25) = 1.5; r5 [0.6]. Per response -min(s A, clip(s, 0.8, 1.2) A):
    # -1.2 (clipped), 0.5 sqrt(1.43), 0.5, -2, 1.5, 0.8 (clipped); seq_mean_token_mean: their mean.
    per_token = torch.tensor([[1.25, 1, 1], [1.1, 1.3, 1], [0.5, 1, 2], [1, 1, 1], [1.2, 1.875, 1], [0.6, 1, 1]],
                             dtype=torch.float64)
    new = (OLD + per_token.log()).requires_grad_(True)
    s = torch.tensor([1.25, math.sqrt(1.43), 1.0, 1.0, 1.5, 0.6], dtype=torch.float64)
    loss, m = _loss(new, ratio="sequence", aggregation="seq_mean_token_mean")
    assert loss.item() == pytest.approx((-1.2 + 0.5 * math.sqrt(1.43) + 0.5 - 2 + 1.5 + 0.8) / 6, abs=1e-12)
    assert m["ratio_max"] == pytest.approx(1.5) and m["pg_clipfrac"] == pytest.approx(2 / 12)
    loss.backward()
    # GSPO's gradient: -A_i s_i mean_t grad log pi_t / 6 where unclipped, 0 where clipped (r0, r5)
    unclipped = torch.tensor([0, 1, 1, 1, 1, 0], dtype=torch.float64)
    expected = (-ADV * s * unclipped / MASK.sum(-1) / 6).unsqueeze(-1) * MASK
    torch.testing.assert_close(new.grad, expected)


# KL: log pi - log pi_ref = log 2 on every token.
KL_CASES = {"k1": math.log(2), "k2": 0.5 * math.log(2) ** 2, "k3": 0.5 + math.log(2) - 1}


def test_every_kl_estimator_has_a_case():
    assert set(KL_CASES) == set(KL_ESTIMATORS)


@pytest.mark.parametrize("estimator", sorted(KL_CASES))
def test_kl_estimators_in_the_loss_and_in_the_reward(estimator):
    ref = OLD - math.log(2)
    zero = torch.zeros(6, dtype=torch.float64)
    loss, m = _loss(OLD, OLD, zero, ref_logprobs=ref, kl_coef=0.1, kl_estimator=estimator)
    assert m["kl"] == pytest.approx(KL_CASES[estimator])
    assert loss.item() == pytest.approx(0.1 * KL_CASES[estimator])  # A = 0: the KL term alone
    # in the reward: each response's sum over its tokens (lengths 1, 2, 3, 3, 2, 1)
    per_response = response_kl(OLD, ref, MASK, estimator)
    assert per_response.tolist() == pytest.approx([KL_CASES[estimator] * n for n in (1, 2, 3, 3, 2, 1)])


def test_entropy_bonus_is_subtracted():
    entropy = torch.full((6, 3), 2.0, dtype=torch.float64)
    base, _ = _loss()
    loss, m = _loss(entropy=entropy, entropy_coef=0.01)
    assert m["entropy"] == pytest.approx(2.0)
    assert loss.item() == pytest.approx(base.item() - 0.01 * 2.0)  # token_mean of a constant 2


def test_truncated_importance_sampling_weights_each_tokens_loss():
    # engine log-probs below / above the learner's: weights exp(old - behaviour) = [1, 2, 0.5, 1, 0.25, 1], capped at
    # 1.5: the token losses [-1.2, 0.65, 0.4, -2, 1.5, 0.8] become [-1.2, 0.975, 0.2, -2, 0.375, 0.8]; summed over the
    # lengths 1, 2, 3, 3, 2, 1: -1.2 + 1.95 + 0.6 - 6 + 0.75 + 0.8 = -3.1, over 12 tokens
    weights = torch.tensor([1, 2, 0.5, 1, 0.25, 1.0], dtype=torch.float64)
    behaviour = OLD - weights.log().unsqueeze(-1)
    loss, m = _loss(behaviour_logprobs=behaviour, tis_cap=1.5)
    assert loss.item() == pytest.approx(-3.1 / 12, abs=1e-12)
    assert m["tis_weight_mean"] == pytest.approx((1 + 1.5 * 2 + 0.5 * 3 + 3 + 0.25 * 2 + 1) / 12)
    assert _loss(behaviour_logprobs=behaviour)[0].item() == pytest.approx(-0.9 / 12)  # off by default
    with pytest.raises(ValueError, match="tis_cap needs behaviour_logprobs"):
        _loss(tis_cap=2.0)


def test_on_policy_ratio_is_exactly_one_for_every_ratio_and_clip():
    for ratio in ("token", "sequence"):
        for clip in sorted(CLIPS):
            _, m = _loss(OLD, OLD, ratio=ratio, clip=clip, clip_eps=0.2, clip_eps_high=0.28)
            assert (m["ratio_mean"], m["ratio_max"], m["pg_clipfrac"]) == (1.0, 1.0, 0.0), (ratio, clip)


def _on_policy_grad(**kw):
    new = OLD.clone().requires_grad_(True)
    loss, _ = _loss(new, OLD, **kw)
    loss.backward()
    return loss.detach(), new.grad


def test_on_policy_the_ratio_and_clip_axes_give_the_same_gradient():
    # With one optimizer step per rollout, every ratio is exactly 1, so GSPO's gradient is GRPO's
    # (-A_i mean_t grad log pi_t / 6, GSPO paper eq. 10 vs 11 at s = 1) and CISPO's is PPO-clip's: on the laptop
    # testbed (train.mini_batch_size=null) algo=gspo's runs are algo=grpo's to the bit (docs/objectives.md).
    grpo = _on_policy_grad(aggregation="seq_mean_token_mean")
    gspo = _on_policy_grad(aggregation="seq_mean_token_mean", ratio="sequence", clip_eps=3e-4, clip_eps_high=4e-4)
    expected = (-ADV / MASK.sum(-1) / 6).unsqueeze(-1) * MASK
    torch.testing.assert_close(grpo[1], expected)
    torch.testing.assert_close(gspo[1], grpo[1], rtol=0, atol=0)
    assert gspo[0].item() == grpo[0].item()
    ppo = _on_policy_grad(aggregation="token_mean", clip_eps_high=0.28)
    cispo = _on_policy_grad(aggregation="token_mean", clip="cispo", clip_eps=1.0, clip_eps_high=4.0)
    torch.testing.assert_close(cispo[1], ppo[1], rtol=0, atol=0)
    torch.testing.assert_close(ppo[1], -ADV.unsqueeze(-1) * MASK / 12)


# ------------------------------------------------------------------------------------------------------------------
# Overlong handling and dynamic sampling. max_new_tokens 10, buffer 0.2 x 10 = 2 tokens (no penalty up to 8).
# ------------------------------------------------------------------------------------------------------------------
GRADED = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 1.0])
LENGTHS = torch.tensor([5, 9, 10, 8, 10, 3])
TRUNCATED = torch.tensor([False, False, True, False, True, False])
OVERLONG_CASES = {
    "zero": ([1.0, 1.0, 0.0, 0.0, 0.0, 1.0], [True] * 6),
    "mask": ([1.0, 1.0, 0.0, 0.0, 0.0, 1.0], [True, True, False, True, False, True]),
    # penalties 0, -(9 - 8) / 2, -1, 0, -1, 0 on the graded rewards (a truncated response is graded as any)
    "soft_penalty": ([1.0, 0.5, 0.0, 0.0, -1.0, 1.0], [True] * 6),
}


def test_every_overlong_handling_has_a_case():
    assert set(OVERLONG_CASES) == set(OVERLONG)


@pytest.mark.parametrize("mode", sorted(OVERLONG_CASES))
def test_overlong_handling_hand_worked(mode):
    rewards, in_loss = OVERLONG[mode](GRADED, LENGTHS, TRUNCATED, max_new_tokens=10, buffer_frac=0.2, penalty=1.0)
    assert rewards.tolist() == pytest.approx(OVERLONG_CASES[mode][0]) and in_loss.tolist() == OVERLONG_CASES[mode][1]


def test_overlong_penalty_is_dapos_linear_band():
    # DAPO: L_max 20480, L_cache 4096 (buffer 0.2): 0 up to 16384, -0.5 at 18432, -1 at 20480
    pen = overlong_penalty(torch.tensor([100, 16384, 18432, 20480]), max_new_tokens=20480, buffer_frac=0.2,
                           penalty=1.0)
    assert pen.tolist() == pytest.approx([0.0, 0.0, -0.5, -1.0])


def test_pick_groups_keeps_the_first_groups_with_signal_then_fills():
    signal = torch.tensor([False, True, False, True, True])
    assert [x.tolist() if isinstance(x, torch.Tensor) else x for x in pick_groups(signal, 2)] == [[1, 3], 0]
    assert [x.tolist() if isinstance(x, torch.Tensor) else x for x in pick_groups(signal, 4)] == [[0, 1, 3, 4], 1]
    with pytest.raises(ValueError, match="fewer than the 6 needed"):
        pick_groups(signal, 6)


# ------------------------------------------------------------------------------------------------------------------
# The peers' bugs, pinned
# ------------------------------------------------------------------------------------------------------------------


def test_pin_nemo_rl_4161_equal_rewards_never_become_an_advantage():
    """NeMo-RL PR 4161: a zero-variance set whose float32 std is a rounding residue (~1.6e-4 there) passed a
    ``std > 0`` guard and was divided into a 4000x advantage. Eight rewards of 0.35 leave r - mean = 2.98e-8 and std
    3.19e-8 in float32; divided (std + 1e-8) that was 0.71 for every response of the group: r1zero finds equal
    groups by comparing the rewards, so they get exactly 0 and count as zero-std."""
    rewards = torch.tensor([0.35] * 8 + [1.0, 0.0] * 4)
    grouped = rewards.view(2, 8)
    assert float(grouped[0].std()) > 0  # the residue the guard let through
    for baseline in ("group_mean", "leave_one_out"):
        adv = compute_advantages(rewards, 8, baseline=baseline, scale="group_std")
        assert adv[:8].tolist() == [0.0] * 8
    assert zero_std_rows(rewards, 8).tolist() == [True] * 8 + [False] * 8


def test_pin_nemo_rl_4161_a_singleton_against_seven_equal_rewards_stays_bounded():
    """The PR's case: 7 rewards of 0.35 and one of 0.95, leave-one-out and the std. The singleton's baseline is the
    other seven's 0.35: 0.6; divided by the group's std sqrt(0.315 / 7) = 0.212132: 2.828427 (2 sqrt 2), the others
    -0.6 / 7 / 0.212132 = -0.404061, where a leave-one-out std of the seven equal rewards gave 4000x."""
    rewards = torch.tensor([0.35] * 7 + [0.95])
    adv = compute_advantages(rewards, 8, baseline="leave_one_out", scale="group_std")
    assert adv[7].item() == pytest.approx(2 * math.sqrt(2), rel=1e-5)
    assert adv[:7].tolist() == pytest.approx([-0.6 / 7 / math.sqrt(0.045)] * 7, rel=1e-5)


def test_pin_trl_6369_a_masked_response_counts_in_no_normaliser():
    """trl issue 6369: truncated completions left the loss's numerator but not ``num_items_in_batch``, diluting the
    token-mean loss (sum / 30 instead of / 25). A response masked out (its row of the mask all 0) leaves the loss
    exactly as if it were not in the batch, for every aggregation."""
    keep = [0, 1, 3, 4, 5]
    masked = MASK.clone()
    masked[2] = 0  # r2 out of the loss
    for agg in sorted(LOSS_AGGREGATIONS):
        with_row, _ = _loss(aggregation=agg, mask=masked)
        without, _ = _loss(NEW[keep], OLD[keep], ADV[keep], MASK[keep], aggregation=agg)
        assert with_row.item() == pytest.approx(without.item(), abs=1e-12), agg


def test_pin_open_instruct_1794_a_masked_response_keeps_its_place_in_its_group():
    """open-instruct PR 1794: truncated completions were dropped before the advantages, so ``reshape(-1, G)`` crashed
    or grouped responses with the wrong prompts. Under ``overlong=mask`` a truncated response stays in the batch with
    reward 0 in its group's baseline: every advantage equals the one under ``overlong=zero``, groups aligned."""
    args = (GRADED, LENGTHS, TRUNCATED)
    kw = {"max_new_tokens": 10, "buffer_frac": 0.2, "penalty": 1.0}
    masked, in_loss = OVERLONG["mask"](*args, **kw)
    zeroed, _ = OVERLONG["zero"](*args, **kw)
    assert len(masked) == 6 and not in_loss.all()
    for scale in sorted(SCALES):
        torch.testing.assert_close(compute_advantages(masked, G, scale=scale), compute_advantages(zeroed, G, scale=scale))


# ------------------------------------------------------------------------------------------------------------------
# Presets: composed from the axes only, each runs two toy steps
# ------------------------------------------------------------------------------------------------------------------

PRESETS = sorted(p.stem for p in (CONF / "algo").glob("*.yaml"))


def test_the_issues_presets_exist():
    assert {"grpo", "drgrpo", "grpo_no_len_norm", "grpo_no_std_norm", "token_mean", "rloo", "dapo", "gspo", "cispo",
            "reinforce_pp", "lite_ppo"} <= set(PRESETS)


def test_presets_set_only_axis_keys_and_name_their_paper():
    import dataclasses

    from omegaconf import OmegaConf

    from r1zero.schema import AlgoConfig

    fields = {f.name for f in dataclasses.fields(AlgoConfig)}
    for name in PRESETS:
        text = (CONF / "algo" / f"{name}.yaml").read_text()
        assert text.startswith("# ") and "(" in text.splitlines()[0], f"{name}: the first comment names its paper"
        keys = set(OmegaConf.load(CONF / "algo" / f"{name}.yaml")) - {"defaults"}
        assert keys <= fields, f"{name}: {keys - fields}"


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_runs_two_toy_steps(tmp_path, preset):
    """``python -m r1zero.train experiment=toy algo=<preset> train.total_steps=2``, in process with finished
    responses (the random tiny model truncates every one, which would leave no reward), one of four truncated, and a
    grader that gives every group mixed rewards: both steps log finite losses, the update moves the weights, and the
    first optimizer step of each rollout is on-policy (ratio exactly 1, nothing clipped)."""
    cfg = compose(["experiment=toy", f"algo={preset}", "train.total_steps=2", "eval.every=0", "eval.at_end=false",
                   "train.save_final=false"], run_dir=tmp_path)
    engine = ScriptedEngine(["ab", "abcdef", "abc"], truncated={"abcdef"})
    recipe = train_mod.R1ZeroRecipe(cfg, grader=AlternatingGrader(), engine=engine)
    try:
        recipe.setup()
        before = [p.detach().clone() for p in recipe.model.parameters()]
        recipe.train()
    finally:
        recipe.cleanup()
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, recipe.model.parameters()))
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        assert math.isfinite(row["train/loss"]) and row["train/grad_norm"] > 0
        assert (row["train/ratio_mean"], row["train/ratio_max"], row["train/pg_clipfrac"]) == (1.0, 1.0, 0.0)
        assert row["train/advantage_abs_mean"] > 0


# ------------------------------------------------------------------------------------------------------------------
# Dynamic sampling and overlong handling in the training loop (the scripted engine and graders of test_train)
# ------------------------------------------------------------------------------------------------------------------

ONE_STEP = [o for o in TINY if not o.startswith("train.total_steps=")] + [
    "train.total_steps=1", "logger.samples_per_step=8", "train.save_final=false"]


class ScriptedRewards(AlternatingGrader):
    """Grades the k-th call with ``rewards[k]`` (one list per rollout round)."""

    def __init__(self, rewards):
        super().__init__()
        self.rewards, self.calls = list(rewards), 0

    def grade(self, responses, references, template, truncated=None, **kwargs):
        from r1zero.reward import GradeResult

        out = self.rewards[min(self.calls, len(self.rewards) - 1)]
        self.calls += 1
        return [GradeResult(reward=r, extracted=None, formatted=False, timed_out=False, truncated=False) for r in out]


def _one_step(tmp_path, overrides, grader, engine):
    train_mod.run(compose(ONE_STEP + overrides, run_dir=tmp_path), grader=grader, engine=engine)
    row = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    return row, samples


def test_dynamic_sampling_refills_the_batch_with_groups_that_have_signal(tmp_path):
    """2 questions x 4 responses a rollout. Round 1: question 1's rewards all 0 (dropped), question 2's mixed;
    round 2: its first question mixed. The batch: round 1's question 2, then round 2's question 1 (generation
    order); 2 rounds, 4 groups generated for 2 kept."""
    engine = ScriptedEngine(["ab", "abcdef", "abc"])
    grader = ScriptedRewards([[0, 0, 0, 0, 1, 0, 1, 0], [1, 0, 0, 0, 0, 0, 0, 0]])
    row, samples = _one_step(tmp_path, ["algo.dynamic_sampling=true"], grader, engine)
    assert len(engine.calls) == 2 and grader.calls == 2
    assert (row["rollout/sampling_rounds"], row["rollout/generated_groups_per_kept"], row["rollout/filled_groups"]) == (
        2.0, 2.0, 0.0)
    assert row["rollout/generated_reward_mean"] == 3 / 16 and row["rollout/reward_mean"] == 3 / 8
    assert row["rollout/zero_signal_group_frac"] == 0.0
    assert [s["prompt"] for s in samples] == [engine.calls[0][1]] * 4 + [engine.calls[1][0]] * 4
    assert [s["reward"] for s in samples] == [1, 0, 1, 0, 1, 0, 0, 0]


def test_dynamic_sampling_stops_at_its_round_cap_and_fills_with_zero_signal_groups(tmp_path):
    engine = ScriptedEngine(["ab", "abcdef", "abc"])
    grader = ScriptedRewards([[0.0] * 8])
    row, _ = _one_step(tmp_path, ["algo.dynamic_sampling=true", "algo.dynamic_sampling_max_rounds=3"], grader,
                       engine)
    assert len(engine.calls) == 3
    assert (row["rollout/sampling_rounds"], row["rollout/filled_groups"]) == (3.0, 2.0)
    assert row["rollout/generated_groups_per_kept"] == 6.0  # 6 generated, none kept with signal (counted as 1)
    assert row["train/advantage_abs_mean"] == 0.0


def test_dynamic_sampling_costs_nothing_when_every_group_has_signal(tmp_path):
    engine = ScriptedEngine(["ab", "abcdef", "abc"])
    row, _ = _one_step(tmp_path, ["algo.dynamic_sampling=true"], AlternatingGrader(), engine)
    assert len(engine.calls) == 1
    assert (row["rollout/sampling_rounds"], row["rollout/generated_groups_per_kept"]) == (1.0, 1.0)


def test_overlong_mask_leaves_truncated_responses_out_of_the_loss(tmp_path):
    # each question's 4 responses: ab, abcdef (truncated), abc, ab
    engine = ScriptedEngine(["ab", "abcdef", "abc"], truncated={"abcdef"})
    row, samples = _one_step(tmp_path, ["algo.overlong=mask"], AlternatingGrader(), engine)
    assert row["rollout/out_of_loss_frac"] == 0.25
    assert all(s["reward"] == 0.0 for s in samples if s["truncated"])  # 0 in its group's baseline, as under zero


def test_concat_rollouts_repads_prompts_left_and_responses_right():
    from r1zero.rollout.base import RolloutBatch, concat_rollouts

    a = RolloutBatch(input_ids=torch.tensor([[5, 6, 7]]), attention_mask=torch.tensor([[1, 1, 1]]),
                     response_mask=torch.tensor([[1.0]]), prompt_len=2, responses=["x"],
                     truncated=torch.tensor([False]), prompt_index=torch.tensor([0]), group_size=1, finish_reasons=["stop"],
                     behaviour_logprobs=torch.tensor([[-0.5]]))
    b = RolloutBatch(input_ids=torch.tensor([[8, 9, 10, 11]]), attention_mask=torch.tensor([[1, 1, 1, 0]]),
                     response_mask=torch.tensor([[1.0, 1.0, 0.0]]), prompt_len=1, responses=["yz"],
                     truncated=torch.tensor([True]), prompt_index=torch.tensor([0]), group_size=1, finish_reasons=["length"],
                     behaviour_logprobs=torch.tensor([[-1.0, -2.0, 0.0]]))
    c = concat_rollouts([a, b], [1, 1])
    assert c.prompt_len == 2 and c.input_ids.tolist() == [[5, 6, 7, 0, 0], [0, 8, 9, 10, 11]]
    assert c.attention_mask.tolist() == [[1, 1, 1, 0, 0], [0, 1, 1, 1, 0]]
    assert c.response_mask.tolist() == [[1, 0, 0], [1, 1, 0]] and c.response_lengths.tolist() == [1, 2]
    assert c.prompt_index.tolist() == [0, 1] and c.finish_reasons == ["stop", "length"]
    assert c.behaviour_logprobs.tolist() == [[-0.5, 0, 0], [-1, -2, 0]]
    s = c.select(torch.tensor([1]))
    assert s.responses == ["yz"] and s.truncated.tolist() == [True] and s.finish_reasons == ["length"]
    assert s.behaviour_logprobs.tolist() == [[-1, -2, 0]]
    b.behaviour_logprobs = None  # one batch without them: the joined batch has none
    assert concat_rollouts([a, b], [1, 1]).behaviour_logprobs is None


def test_a_rollout_batch_is_built_from_token_lists_in_one_place():
    """Both engines build their batch here: prompts left-padded, responses right-padded, row i answering prompt
    i // G, log-probabilities on the response tokens only."""
    from r1zero.rollout.base import RolloutBatch

    b = RolloutBatch.from_token_lists([[5, 6], [7]], [[1], [2, 3], [], [4]], ["a", "bc", "", "d"],
                                      [False, True, False, False], group_size=2, pad_id=0,
                                      behaviour_logprobs=[[-0.1], [-0.2, -0.3], [], [-0.4]], finish_reasons=None)
    assert b.prompt_len == 2 and b.group_size == 2 and b.prompt_index.tolist() == [0, 0, 1, 1]
    assert b.input_ids.tolist() == [[5, 6, 1, 0], [5, 6, 2, 3], [0, 7, 0, 0], [0, 7, 4, 0]]
    assert b.attention_mask.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1], [0, 1, 0, 0], [0, 1, 1, 0]]
    assert b.response_lengths.tolist() == [1, 2, 0, 1] and b.truncated.tolist() == [False, True, False, False]
    assert torch.allclose(b.behaviour_logprobs, torch.tensor([[-0.1, 0], [-0.2, -0.3], [0, 0], [-0.4, 0]]))
    assert b.select(torch.tensor([1, 3])).group_size == 2
    with pytest.raises(ValueError, match="3 responses for 2 prompts x group_size 2"):
        RolloutBatch.from_token_lists([[5], [6]], [[1], [2], [3]], ["", "", ""], [False] * 3, group_size=2, pad_id=0)


def test_dynamic_sampling_keeps_a_group_by_its_answers_not_by_its_length_penalty(tmp_path):
    """DAPO filters on accuracy (§3.2): with the soft overlong penalty, a group of wrong answers whose lengths differ
    (6 tokens: -1 at max_new_tokens 6; 2 and 3 tokens: 0) has unequal rewards but no signal, and is dropped."""
    engine = ScriptedEngine(["ab", "abcdef", "abc"])
    grader = ScriptedRewards([[0, 0, 0, 0, 1, 0, 1, 0], [1, 0, 0, 0, 0, 0, 0, 0]])
    row, samples = _one_step(tmp_path, ["algo.dynamic_sampling=true", "algo.overlong=soft_penalty",
                                        "sampling.max_new_tokens=6"], grader, engine)
    assert row["rollout/sampling_rounds"] == 2.0
    assert [s["reward"] for s in samples] == [1, -1, 1, 0, 1, -1, 0, 0]  # graded + the penalty of abcdef (-1)


def test_the_dapo_command_runs_on_the_toy_experiment(tmp_path):
    """The command line itself, for the preset with the most moving parts: the random tiny model's answers are all
    wrong, so dynamic sampling rolls out its 10 rounds a step and fills the batch with zero-signal groups."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    out = subprocess.run([sys.executable, "-m", "r1zero.train", "experiment=toy", "algo=dapo", "train.total_steps=2",
                          "eval.every=0", f"hydra.run.dir={tmp_path}"], capture_output=True, text=True, cwd=REPO,
                         timeout=600, check=False, env={**os.environ, "WANDB_MODE": "disabled"})
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["rollout/sampling_rounds"] == 10.0 and r["rollout/filled_groups"] == 2.0 for r in rows)


# train/loss and train/grad_norm of the two steps of test_train's TINY run (scripted responses "ab", "abcdef", "abc";
# every other one right) at bbea57f, the commit before the axes: the paper's presets, and the two others that
# existed, must give them still (the issue: "today's numbers to 1e-6").
BEFORE_THE_AXES = {
    "grpo": [(0.0, 1.4167379140853882), (0.0, 1.0704288482666016)],
    "drgrpo": [(0.046875, 0.3612897992134094), (0.046875, 0.2938324511051178)],
    "grpo_no_len_norm": [(0.08118988573551178, 0.6257724165916443), (0.08118988573551178, 0.5089331865310669)],
    "grpo_no_std_norm": [(0.0, 0.8179540038108826), (0.0, 0.6180124878883362)],
    "token_mean": [(0.11538461595773697, 0.8893289566040039), (0.11538461595773697, 0.7232810258865356)],
    "rloo": [(0.0625, 0.48171982169151306), (0.0625, 0.39177680015563965)],
}


@pytest.mark.parametrize("preset", sorted(BEFORE_THE_AXES))
def test_the_presets_that_existed_keep_their_numbers(tmp_path, preset):
    cfg = compose(TINY + [f"algo={preset}", "train.save_final=false"], run_dir=tmp_path)
    train_mod.run(cfg, grader=AlternatingGrader(), engine=ScriptedEngine(["ab", "abcdef", "abc"]))
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    got = [(r["train/loss"], r["train/grad_norm"]) for r in rows]
    assert got == [pytest.approx(step, abs=1e-6) for step in BEFORE_THE_AXES[preset]]
