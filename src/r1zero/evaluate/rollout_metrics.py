"""The ``rollout/...`` metrics of one training step: response lengths, rewards, truncation, grader verdicts and
advantages of every response, over every rank (:func:`gather_rollout`, then :func:`rollout_metrics`)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..rollout.base import RolloutBatch
from .lengths import length_bucket_metrics, zero_signal_frac


def _mean(xs) -> float:
    xs = list(xs)
    return float(sum(xs) / len(xs)) if xs else float("nan")


def rollout_metrics(lengths: torch.Tensor, truncated: torch.Tensor, rewards: torch.Tensor, results,
                    advantages: torch.Tensor, *, group_size: int, max_new_tokens: int) -> dict[str, float]:
    """``rollout/...`` statistics of one rollout (lengths in tokens), groups of ``group_size`` contiguous rows.

    ``lengths`` (N,) are the response lengths, ``truncated`` (N,) bool; ``rewards`` (N,) the training rewards
    (truncated responses 0); ``results`` the grader's verdicts of the same N responses graded without regard to
    truncation; ``advantages`` (N,) their advantages. The ``rollout/length_bucket/<bucket>/...`` metrics bucket
    responses by length / ``max_new_tokens`` (:mod:`r1zero.evaluate.lengths`)."""
    lengths = lengths.float()
    correct = rewards > 0.5
    G = group_size
    buckets = length_bucket_metrics(lengths, truncated, rewards, max_new_tokens, advantages)
    formatted = [r.formatted for r in results if r.formatted is not None]  # None: reward=fn, no answer format
    return {
        "rollout/reward_mean": float(rewards.mean()),
        # the graded reward before truncated responses are zeroed (results were graded without truncation)
        "rollout/reward_mean_pre_truncation": _mean(float(r.reward) for r in results),
        "rollout/response_length_mean": float(lengths.mean()),
        "rollout/response_length_max": float(lengths.max()),
        "rollout/response_length_correct": _mean(lengths[correct].tolist()),
        "rollout/response_length_incorrect": _mean(lengths[~correct].tolist()),
        # wrong answers that ended on their own: truncated ones score 0 because of their length, these do not
        "rollout/response_length_incorrect_finished": _mean(lengths[~correct & ~truncated].tolist()),
        "rollout/truncated_frac": float(truncated.float().mean()),
        "rollout/grader_timeouts": float(sum(r.timed_out for r in results)),
        # reward=fn: responses whose call raised or returned bad values (scored 0); 0 under the math grader
        "rollout/reward_errors": float(sum(bool(getattr(r, "error", None)) for r in results)),
        # Questions whose G rewards are all equal get zero advantage: no learning signal.
        "rollout/solve_none_frac": float((rewards.view(-1, G).max(1).values < 0.5).float().mean()),
        "rollout/solve_all_frac": float((rewards.view(-1, G).min(1).values > 0.5).float().mean()),
        "rollout/zero_signal_group_frac": zero_signal_frac(rewards, G),  # any reward scale: all G equal
        **{f"rollout/{k}": v for k, v in buckets.items()},
        # only where the grader reads an answer format (reward=math); a reward.fn returns numbers only
        **({"rollout/formatted_frac": _mean(float(f) for f in formatted)} if formatted else {}),
    }


def gather_rollout(batch: RolloutBatch, rewards: torch.Tensor, results, advantages: torch.Tensor,
                   all_gather_object: Callable[[object], list] | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list, torch.Tensor]:
    """``(lengths, truncated, rewards, results, advantages)`` of every rank's rollout, in rank order, for
    :func:`rollout_metrics`: (N,) response lengths, (N,) bool, (N,) float, N grade results (as the grader made
    them), (N,) float.

    ``all_gather_object``: every rank's copy of an object, in rank order (``Strategy.all_gather_object`` of a
    distributed run); None, one process: this rank's own."""
    mine = (batch.response_lengths, batch.truncated, rewards, list(results), advantages)
    if all_gather_object is None:
        return mine
    # the per-row metric inputs only (not the token ids): one small object per rank
    parts = all_gather_object(tuple(x.tolist() if torch.is_tensor(x) else x for x in mine))
    lengths, truncated, rewards, results, advantages = ([x for p in parts for x in p[k]] for k in range(5))
    return (torch.tensor(lengths), torch.tensor(truncated, dtype=torch.bool), torch.tensor(rewards), results,
            torch.tensor(advantages))
