"""The loss math against hand-worked numbers (Liu et al. 2025 Eq. 1-3)."""

from __future__ import annotations

import math

import pytest
import torch

from r1zero.algos import (
    BASELINES,
    LOSS_AGGREGATIONS,
    compute_advantages,
    group_advantages,
    policy_loss,
    register_loss_agg,
)

# One question, G = 4 responses, reward 1 for the first only.
#   mean = 0.25                        -> r - mean = [0.75, -0.25, -0.25, -0.25]
#   unbiased std = sqrt((0.75^2 + 3 * 0.25^2) / 3) = sqrt(0.75 / 3) = 0.5
#   GRPO advantage = (r - mean) / std = [1.5, -0.5, -0.5, -0.5]
REWARDS = torch.tensor([1.0, 0.0, 0.0, 0.0])
ADV_DR = torch.tensor([0.75, -0.25, -0.25, -0.25], dtype=torch.float64)
ADV_GRPO = torch.tensor([1.5, -0.5, -0.5, -0.5], dtype=torch.float64)

# Response lengths 1, 2, 3, 4 (T = 4, 10 tokens) and one ratio per response, the same on all its tokens.
MASK = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.float64)
RATIOS = torch.tensor([1.1, 1.3, 0.7, 1.0], dtype=torch.float64)
OLD = torch.full((4, 4), -2.0, dtype=torch.float64)
NEW = OLD + RATIOS.log().unsqueeze(-1)
MAX_NEW_TOKENS = 8

# Per-token loss -min(ratio*A, clip(ratio, 0.8, 1.2)*A):
#   GRPO advantages:  r0: A=1.5,  ratio 1.1 (inside the clip range)     -> -1.65
#                     r1: A=-0.5, ratio 1.3: max(0.65, 0.6)             ->  0.65 (unclipped term active)
#                     r2: A=-0.5, ratio 0.7: max(0.35, 0.4)             ->  0.40 (clipped term active)
#                     r3: A=-0.5, ratio 1.0                             ->  0.50
#   Dr. GRPO advantages: -0.825, 0.325, 0.2, 0.25 (same cases scaled by 0.5)
CASES = {
    # (advantages, aggregation): expected loss
    # grpo: mean of per-response token means = (-1.65 + 0.65 + 0.4 + 0.5) / 4 = -0.1 / 4
    "grpo": (ADV_GRPO, "seq_mean_token_mean", -0.025),
    # drgrpo: token sums -0.825*1 + 0.325*2 + 0.2*3 + 0.25*4 = 1.425; / 8 (max_new_tokens) / 4 responses
    "drgrpo": (ADV_DR, "seq_mean_token_sum_norm", 1.425 / 32),
    # grpo_no_len_norm: -1.65*1 + 0.65*2 + 0.4*3 + 0.5*4 = 2.85; / 8 / 4
    "grpo_no_len_norm": (ADV_GRPO, "seq_mean_token_sum_norm", 2.85 / 32),
    # grpo_no_std_norm: (-0.825 + 0.325 + 0.2 + 0.25) / 4 = -0.05 / 4
    "grpo_no_std_norm": (ADV_DR, "seq_mean_token_mean", -0.0125),
    # token_mean: 1.425 / 10 tokens
    "token_mean": (ADV_DR, "token_mean", 0.1425),
}


def test_group_advantages_dr_grpo():
    adv = group_advantages(REWARDS, 4, scale_by_std=False)
    torch.testing.assert_close(adv, ADV_DR.float())


def test_group_advantages_grpo_divides_by_unbiased_std():
    adv = group_advantages(REWARDS, 4, scale_by_std=True, eps=1e-6)
    # 0.75 / (0.5 + 1e-6) = 1.499997
    torch.testing.assert_close(adv, ADV_GRPO.float() * 0.5 / (0.5 + 1e-6))
    # The default is the paper's std + 1e-8 (train_zero_math.py compute_monte_carlo_advantages): in float32, as
    # the paper's rewards are, 0.5 + 1e-8 rounds to 0.5, so the advantages are exactly 1.5 and -0.5 (with the
    # earlier 1e-6 the first was 1.499997).
    assert group_advantages(REWARDS, 4, scale_by_std=True).tolist() == [1.5, -0.5, -0.5, -0.5]
    assert compute_advantages(REWARDS, 4, scale="group_std").tolist() == [1.5, -0.5, -0.5, -0.5]
    from r1zero.schema import AlgoConfig

    assert AlgoConfig().adv_eps == 1e-8


def test_group_advantages_per_group_and_uniform_groups():
    # Two groups of 2: [1, 0] -> [0.5, -0.5]; [1, 1] -> all equal -> 0 (no NaN with std 0)
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0])
    torch.testing.assert_close(group_advantages(rewards, 2, scale_by_std=False), torch.tensor([0.5, -0.5, 0.0, 0.0]))
    # std of [1, 0] = sqrt(0.5) -> 0.5 / 0.70711 = 0.70711
    adv = group_advantages(rewards, 2, scale_by_std=True, eps=0.0).tolist()
    assert adv[:2] == pytest.approx([math.sqrt(0.5), -math.sqrt(0.5)], abs=1e-6)
    assert adv[2:] == [0.0, 0.0]


def test_group_advantages_rejects_bad_shapes():
    with pytest.raises(ValueError, match="multiple of group_size"):
        group_advantages(torch.zeros(5), 4, scale_by_std=False)
    with pytest.raises(ValueError, match="1-D"):
        group_advantages(torch.zeros(2, 4), 4, scale_by_std=False)


def test_rloo_is_leave_one_out_baseline():
    # r0 = 1, others 0: baseline of r0 = mean(0, 0, 0) = 0 -> 1; baseline of r1 = mean(1, 0, 0) = 1/3 -> -1/3
    adv = compute_advantages(REWARDS, 4, baseline="leave_one_out")
    torch.testing.assert_close(adv, torch.tensor([1.0, -1 / 3, -1 / 3, -1 / 3]))


@pytest.mark.parametrize("variant", sorted(CASES))
def test_policy_loss_hand_worked(variant):
    adv, agg, expected = CASES[variant]
    loss, m = policy_loss(NEW, OLD, adv, MASK, clip_eps=0.2, aggregation=agg, max_new_tokens=MAX_NEW_TOKENS)
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    # clipped term active only on r2's 3 tokens out of 10
    assert m["pg_clipfrac"] == pytest.approx(0.3)
    # token-weighted ratio mean: (1.1*1 + 1.3*2 + 0.7*3 + 1.0*4) / 10 = 9.8 / 10
    assert m["ratio_mean"] == pytest.approx(0.98)
    assert m["ratio_max"] == pytest.approx(1.3)


def test_policy_loss_gradient_direction_at_ratio_one():
    # d loss / d logprob_it = -A_i * w_it at ratio 1 (w = aggregation weight). Dr. GRPO: w = 1/(8*4).
    new = OLD.clone().requires_grad_(True)
    loss, _ = policy_loss(new, OLD, ADV_DR, MASK, clip_eps=0.2, aggregation="seq_mean_token_sum_norm",
                          max_new_tokens=MAX_NEW_TOKENS)
    loss.backward()
    expected = -ADV_DR.unsqueeze(-1) * MASK / 32
    torch.testing.assert_close(new.grad, expected)


@pytest.mark.parametrize("agg", sorted(LOSS_AGGREGATIONS))
def test_micro_batch_losses_sum_to_full_batch(agg):
    full, _ = policy_loss(NEW, OLD, ADV_GRPO, MASK, clip_eps=0.2, aggregation=agg, max_new_tokens=8)
    parts = 0.0
    for rows in ([0], [1, 2], [3]):
        loss, _ = policy_loss(NEW[rows], OLD[rows], ADV_GRPO[rows], MASK[rows], clip_eps=0.2, aggregation=agg,
                              max_new_tokens=8, num_responses=4, num_tokens=MASK.sum().item())
        parts += loss.item()
    assert parts == pytest.approx(full.item(), abs=1e-12)


def test_kl_penalty_k3():
    # ref - logp = log(0.5) on every token: k3 = 0.5 - log(0.5) - 1 = 0.193147; ratio 1 and A = 0 elsewhere
    ref = OLD + math.log(0.5)
    loss, m = policy_loss(OLD, OLD, torch.zeros(4, dtype=torch.float64), MASK, clip_eps=0.2,
                          aggregation="token_mean", max_new_tokens=8, ref_logprobs=ref, kl_coef=0.1)
    k3 = 0.5 - math.log(0.5) - 1
    assert m["kl"] == pytest.approx(k3)
    assert loss.item() == pytest.approx(0.1 * k3)
    with pytest.raises(ValueError, match="ref_logprobs"):
        policy_loss(OLD, OLD, torch.zeros(4), MASK, clip_eps=0.2, aggregation="token_mean", max_new_tokens=8,
                    kl_coef=0.1)


def test_unknown_aggregation_lists_choices():
    with pytest.raises(ValueError, match="valid choices: .*seq_mean_token_sum_norm"):
        policy_loss(NEW, OLD, ADV_DR, MASK, clip_eps=0.2, aggregation="nope", max_new_tokens=8)


def test_registries_hold_the_paper_variants_and_reject_duplicates():
    assert {"seq_mean_token_mean", "seq_mean_token_sum_norm", "token_mean"} <= set(LOSS_AGGREGATIONS)
    assert {"group_mean", "leave_one_out", "batch_mean", "none"} <= set(BASELINES)
    with pytest.raises(ValueError, match="already registered"):
        register_loss_agg("token_mean")(lambda *a, **k: None)
