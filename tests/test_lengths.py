"""Length-stratified metrics (r1zero.evaluate.lengths): buckets by length / max_new_tokens, worked by hand."""

from __future__ import annotations

import pytest
import torch

from r1zero.evaluate.lengths import BUCKETS, length_bucket_metrics, length_buckets, zero_signal_frac


def test_bucket_names_are_budget_fractions():
    assert BUCKETS == ("0-0.125", "0.125-0.25", "0.25-0.5", "0.5-1", "truncated")


def test_buckets_accuracy_and_advantage_worked_by_hand():
    # Budget 16 tokens: the edges are 2, 4 and 8 tokens, each going to the bucket above it ([lo, hi)).
    # length      1  2  3  4  7  8  16  16(truncated)
    # bucket      0  1  1  2  2  3  3   4
    # reward      1  0  1  1  0  0  1   0
    # Dr. GRPO advantages r - mean(group of 4): [1,0,1,1] - 0.75 and [0,0,1,0] - 0.25.
    lengths = torch.tensor([1, 2, 3, 4, 7, 8, 16, 16])
    truncated = torch.tensor([False] * 7 + [True])
    rewards = torch.tensor([1.0, 0, 1, 1, 0, 0, 1, 0])
    adv = torch.tensor([0.25, -0.75, 0.25, 0.25, -0.25, -0.25, 0.75, -0.25])
    assert length_buckets(lengths, truncated, 16).tolist() == [0, 1, 1, 2, 2, 3, 3, 4]
    m = length_bucket_metrics(lengths, truncated, rewards, 16, adv)
    expected = {  # bucket: (frac, accuracy, advantage_mean)
        "0-0.125": (1 / 8, 1.0, 0.25),
        "0.125-0.25": (2 / 8, 0.5, (-0.75 + 0.25) / 2),
        "0.25-0.5": (2 / 8, 0.5, (0.25 - 0.25) / 2),
        "0.5-1": (2 / 8, 0.5, (-0.25 + 0.75) / 2),
        "truncated": (1 / 8, 0.0, -0.25),
    }
    got = {b: (m[f"length_bucket/{b}/frac"], m[f"length_bucket/{b}/accuracy"], m[f"length_bucket/{b}/advantage_mean"])
           for b in BUCKETS}
    for b in BUCKETS:  # approx compares flat sequences, not a dict of tuples (pytest >= 8)
        assert got[b] == pytest.approx(expected[b]), b
    assert len(m) == 15


def test_empty_buckets_log_a_zero_share_and_no_accuracy():
    # Budget 3000: 100 tokens (0.033) and 200 (0.067) are both short; nothing else is filled, and evaluation
    # (no advantages) logs no advantage_mean.
    m = length_bucket_metrics(torch.tensor([100, 200]), torch.tensor([False, False]), torch.tensor([1.0, 0.0]), 3000)
    assert m == {"length_bucket/0-0.125/frac": 1.0, "length_bucket/0-0.125/accuracy": 0.5,
                 "length_bucket/0.125-0.25/frac": 0.0, "length_bucket/0.25-0.5/frac": 0.0,
                 "length_bucket/0.5-1/frac": 0.0, "length_bucket/truncated/frac": 0.0}
    assert length_bucket_metrics(torch.tensor([]), torch.tensor([], dtype=torch.bool), torch.tensor([]), 8) == {}


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        length_buckets(torch.tensor([1]), torch.tensor([False]), 0)
    with pytest.raises(ValueError, match=r"rewards has shape \(3,\), expected \(2,\)"):
        length_bucket_metrics(torch.tensor([1, 2]), torch.tensor([False, False]), torch.zeros(3), 8)


def test_zero_signal_frac_counts_groups_of_equal_rewards():
    # Groups of 4: all correct, all wrong (both no signal), mixed -> 2 of 3 carry no gradient.
    assert zero_signal_frac(torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0, 1, 0, 1, 0]), 4) == pytest.approx(2 / 3)
    # Any reward scale, not only 0/1: [0.5, 0.5] is equal, [0.2, 0.3] is not.
    assert zero_signal_frac(torch.tensor([0.5, 0.5, 0.2, 0.3]), 2) == 0.5
    with pytest.raises(ValueError, match="do not form groups of 4"):
        zero_signal_frac(torch.ones(6), 4)
