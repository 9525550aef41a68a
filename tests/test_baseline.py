"""The behaviour baseline of the architecture redesign (issue 23): the toy experiment's first 3 steps.

``experiment=toy seed=1`` (the random tiny model, 2 questions x 4 answers, 16 new tokens, the embedded eval suite
every 2 steps) ran at commit bbea57f, before any redesign step; its loss, grad norm, reward and response lengths
are recorded here and must stay equal (1e-6) through every step of the redesign. A change of float order that moves
them is allowed only where its commit says why, together with the new numbers.

The toy's real grader never finds a correct answer, so its loss and grad norm are 0; the second run grades with
test_train's ``AlternatingGrader`` (every other response correct before truncated ones are zeroed), so the update,
and through it the later steps, are pinned too. ``logger.samples_per_step=8`` logs every response's length (it
picks rows without randomness, so it changes nothing else).
"""

from __future__ import annotations

import json

import pytest
from conftest import compose
from test_train import AlternatingGrader

import r1zero.train as train_mod

TOY = ["experiment=toy", "seed=1", "logger.samples_per_step=8"]
METRICS = ("train/loss", "train/grad_norm", "rollout/reward_mean", "rollout/response_length_mean",
           "rollout/response_length_max")

#: grader -> per step: the METRICS, then every response's (length, reward), recorded at bbea57f
RECORDED = {
    "real": [
        ((0.0, 0.0, 0.0, 15.625, 16.0), [13, 16, 16, 16, 16, 16, 16, 16], [0.0] * 8),
        ((0.0, 0.0, 0.0, 16.0, 16.0), [16, 16, 16, 16, 16, 16, 16, 16], [0.0] * 8),
        ((0.0, 0.0, 0.0, 15.75, 16.0), [16, 16, 16, 16, 16, 16, 14, 16], [0.0] * 8),
    ],
    "alternating": [
        ((0.017578125, 0.3183285593986511, 0.125, 15.625, 16.0), [13, 16, 16, 16, 16, 16, 16, 16],
         [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
        ((0.0, 0.0, 0.0, 16.0, 16.0), [16, 16, 16, 16, 16, 16, 16, 16], [0.0] * 8),
        ((0.01171875, 0.35390836000442505, 0.125, 15.75, 16.0), [16, 16, 16, 16, 16, 16, 14, 16],
         [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
    ],
}


@pytest.mark.parametrize("grader", sorted(RECORDED))
def test_the_toy_experiments_first_three_steps_are_as_recorded(tmp_path, grader):
    train_mod.run(compose(TOY, run_dir=tmp_path), grader=AlternatingGrader() if grader == "alternating" else None)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    for step, (row, (metrics, lengths, rewards)) in enumerate(zip(rows, RECORDED[grader]), start=1):
        got = tuple(row[k] for k in METRICS)
        assert got == pytest.approx(metrics, rel=0, abs=1e-6), (step, dict(zip(METRICS, got)))
        mine = [s for s in samples if s["step"] == step]
        assert [s["response_length"] for s in mine] == lengths, step
        assert [s["reward"] for s in mine] == pytest.approx(rewards, rel=0, abs=1e-6), step
