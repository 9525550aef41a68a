"""The length bias of GRPO's 1/|o_i| (Liu et al. 2025 §3.1, Fig. 5 and 8), on the real loop: ``experiment=length_bias``.

The random tiny model, a reward that ignores length (``r1zero.reward.parity``: the response's first byte is even),
8 questions x 8 responses of up to 256 tokens, lr 1e-3: the real rollout, grader workers, learner and optimizer.
Any drift of the incorrect responses' length is the loss aggregation's doing. The statistic is the claims
registry's ``growth`` (``r1zero_analysis.verdicts.growth``): the mean of ``rollout/response_length_incorrect`` over the
last quarter of the steps minus its mean over the first 3.

Measured on the 2-core CI machine at this setting on the tuning seeds 101-103 (never the committed seeds 1-3),
first 50 steps (the lr is constant, so a 50-step run is the first 50 steps of the 200-step one), growth in tokens:

* GRPO: +44.1, -2.1, +48.8; Dr. GRPO: -30.2, -59.4, -55.5.
* GRPO minus Dr. GRPO per seed: +74.3, +57.3, +104.3 (the committed 200-step runs are in docs/claims.md).

The test's runs are the first 50 steps of the committed seed-1 runs (``results/length_bias/ablation``: GRPO
+17.1, Dr. GRPO -65.3, difference +82.4 over those steps).

A GRPO whose length normaliser were lost (the 1/|o_i| turned into Dr. GRPO's constant) would behave like
``grpo_no_len_norm``, whose incorrect responses shrink like Dr. GRPO's, so the difference would be about 0.
``MARGIN`` is 20 tokens: below a third of the smallest tuning-seed difference (+57.3), and
above what a lost normaliser would leave (~0 give or take the run-to-run spread of one algorithm's growth, whose
SD over the 3 GRPO seeds is 28 tokens: a difference this large from noise alone is unlikely, not impossible).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import compose

import r1zero.train as train_mod
from r1zero_analysis.verdicts import growth

STEPS = 50
MARGIN = 20.0  # tokens; see the module docstring
INCORRECT = "rollout/response_length_incorrect"


def incorrect_length_growth(run_dir) -> tuple[float, pd.Series]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    series = pd.Series({r["step"]: r[INCORRECT] for r in rows if INCORRECT in r}, dtype=float).sort_index()
    return growth(series), series


@pytest.mark.slow
def test_incorrect_responses_grow_longer_under_grpo_than_under_drgrpo(tmp_path):
    grown = {}
    for algo in ("grpo", "drgrpo"):
        run_dir = tmp_path / algo
        train_mod.run(compose(["experiment=length_bias", f"algo={algo}", "seed=1", f"train.total_steps={STEPS}",
                               "train.save_every=0", "train.save_final=false"], run_dir=run_dir))
        grown[algo], series = incorrect_length_growth(run_dir)
        assert len(series) == STEPS, f"{algo}: {len(series)} steps logged"
    difference = grown["grpo"] - grown["drgrpo"]
    assert difference > MARGIN, (f"incorrect-response length grew {grown['grpo']:+.1f} tokens under GRPO and "
                                 f"{grown['drgrpo']:+.1f} under Dr. GRPO: difference {difference:+.1f} <= {MARGIN}")
