"""The objectives seed table (``python -m r1zero_analysis objectives``) on synthetic runs with hand-worked numbers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from test_analysis import EVAL, LEN, LEN_BAD, LEN_OK, REWARD, write_run

from r1zero_analysis import MissingMetricError, NotApplicableError, load_runs
from r1zero_analysis.cli import main
from r1zero_analysis.objectives import COLUMNS, objectives, objectives_frame

GEN_REWARD = "rollout/generated_reward_mean"
PER_KEPT = "rollout/generated_groups_per_kept"
STEPS = range(1, 9)  # 8 logged steps: the last quarter is steps 7 and 8


def rows(per_step, evals=None):
    """metrics.jsonl rows for steps 1..8: ``per_step(step)`` gives the step's metrics; ``evals`` step -> accuracy."""
    out = [{"step": 0, EVAL: 0.1}] if evals else []  # eval.at_start: step 0 logs the eval only
    for s in STEPS:
        row = {"step": s, "train/loss": 0.0, **per_step(s)}
        if evals and s in evals:
            row[EVAL] = evals[s]
        out.append(row)
    return out


@pytest.fixture
def sweeps(tmp_path: Path) -> tuple[Path, Path]:
    """Two sweep dirs of one testbed: Dr. GRPO (the ablation's reference arm) and DAPO, seeds 1 and 2 each."""
    ablation, objectives_dir = tmp_path / "ablation", tmp_path / "objectives"
    # Dr. GRPO seed 1: reward 0.1 .. 0.8 (last quarter 0.75), length 10, correct 30, 40 at steps 7, 8 (35),
    # incorrect 100; final eval 0.60.
    write_run(ablation / "3_drgrpo_s1", "drgrpo", seed=1, metrics=rows(
        lambda s: {REWARD: s / 10, LEN: 10.0, LEN_OK: {7: 30.0, 8: 40.0}.get(s, 1.0), LEN_BAD: 100.0}, {8: 0.60}))
    # seed 2: reward 0.3 .. 1.0 (0.95), length 20, correct logged at steps 1..7 only (no correct answer at step 8:
    # the last quarter of its 7 logged steps is step 7's 50), incorrect 120, 140 at steps 7, 8 (130); eval 0.70.
    write_run(ablation / "4_drgrpo_s2", "drgrpo", seed=2, metrics=rows(
        lambda s: {REWARD: (s + 2) / 10, LEN: 20.0, LEN_BAD: {7: 120.0, 8: 140.0}.get(s, 1.0),
                   **({LEN_OK: 50.0} if s <= 7 else {})}, {8: 0.70}))
    # DAPO seed 1: the kept batch's reward 0.5, every generated response's 0.8 (the table's); length 10 with 2
    # groups generated per kept one at every step: 20 tokens per kept response; eval 0.40.
    write_run(objectives_dir / "2_dapo_s1", "dapo", seed=1, metrics=rows(
        lambda s: {REWARD: 0.5, GEN_REWARD: 0.8, LEN: 10.0, PER_KEPT: 2.0, LEN_OK: 12.0, LEN_BAD: 14.0}, {8: 0.40}))
    # seed 2: generated reward 0.6; length 30, 3 groups per kept one at steps 1..4 and not logged at 5..8 (nothing
    # dropped: 1): (4 x 90 + 4 x 30) / 8 = 60 tokens per kept response; never evaluated.
    write_run(objectives_dir / "3_dapo_s2", "dapo", seed=2, metrics=rows(
        lambda s: {REWARD: 0.5, GEN_REWARD: 0.6, LEN: 30.0, **({PER_KEPT: 3.0} if s <= 4 else {}), LEN_OK: 12.0,
                   LEN_BAD: 14.0}))
    return ablation, objectives_dir


def test_table_columns_are_the_hand_worked_means_over_seeds(sweeps):
    tab = objectives_frame(load_runs(list(sweeps)))
    assert list(tab.columns) == COLUMNS
    assert list(tab["algo"]) == ["drgrpo", "dapo"]  # the paper's algos first, then the presets beyond it
    dr, dapo = tab.iloc[0], tab.iloc[1]
    assert (dr["n_seeds"], dr["seeds"], dr["n_eval"]) == (2, "1,2", 2)
    assert dr["reward"] == pytest.approx((0.75 + 0.95) / 2)
    assert dr["accuracy"] == pytest.approx(65.0)
    # 2 seeds: a resampled mean is 60, 65 or 70, so the percentile interval is [60, 70]
    assert (dr["accuracy_lo"], dr["accuracy_hi"]) == (pytest.approx(60.0), pytest.approx(70.0))
    assert dr["length_correct"] == pytest.approx((35 + 50) / 2)
    assert dr["length_incorrect"] == pytest.approx((100 + 130) / 2)
    assert dr["tokens_per_kept"] == pytest.approx((10 + 20) / 2)  # nothing dropped: the response length
    assert (dapo["n_seeds"], dapo["seeds"], dapo["n_eval"]) == (2, "1,2", 1)
    assert dapo["reward"] == pytest.approx((0.8 + 0.6) / 2)  # every generated response's, not the kept batch's 0.5
    assert (dapo["accuracy"], dapo["accuracy_lo"], dapo["accuracy_hi"]) == (pytest.approx(40.0),) * 3  # one seed
    assert (dapo["length_correct"], dapo["length_incorrect"]) == (pytest.approx(12.0), pytest.approx(14.0))
    assert dapo["tokens_per_kept"] == pytest.approx((20 + 60) / 2)  # 2 groups per kept one double the length


def test_cli_takes_several_sweep_dirs_and_writes_md_and_csv(sweeps, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["objectives", "--runs", *map(str, sweeps), "--out", str(out)]) == 0
    md = (out / "table_objectives.md").read_text()
    assert "| drgrpo | 2 (1,2) | 0.850 | 65.0 [60.0, 70.0] | 42.5 | 115.0 | 15.0 |" in md
    assert "| dapo | 2 (1,2) | 0.700 | 40.0 [40.0, 40.0] (1 of 2 seeds) | 12.0 | 14.0 | 40.0 |" in md
    assert "template=r1 · data=math12k · model=tiny" in md  # the fixed setting in the caption, not in columns
    csv = pd.read_csv(out / "table_objectives.csv")
    assert list(csv["algo"]) == ["drgrpo", "dapo"] and csv.loc[1, "tokens_per_kept"] == pytest.approx(40.0)
    assert str(out / "table_objectives.md") in capsys.readouterr().out


def test_all_makes_it_only_once_a_preset_beyond_the_paper_ran(sweeps, tmp_path):
    ablation, _ = sweeps
    with pytest.raises(NotApplicableError, match="needs a run of a preset beyond the paper .*found algo: drgrpo"):
        objectives(load_runs([ablation]), tmp_path / "a", need_preset=True)
    assert not (tmp_path / "a").exists()
    objectives(load_runs([ablation]), tmp_path / "b")  # the command itself makes it from any runs
    assert "| drgrpo |" in (tmp_path / "b" / "table_objectives.md").read_text()
    out = tmp_path / "all"
    assert main(["all", "--runs", *map(str, sweeps), "--out", str(out), "--paper-rows", "none"]) == 0
    index = (out / "index.md").read_text()
    assert "## Objectives: seed table per algo" in index and "| dapo | 2 (1,2) | 0.700 |" in index
    assert "**objectives**" not in index  # not among the skipped


def test_without_rollout_metrics_it_is_a_missing_metric(tmp_path, capsys):
    write_run(tmp_path / "r", "dapo", seed=1, metrics=rows(lambda s: {LEN: 10.0}))
    with pytest.raises(MissingMetricError, match="objectives: no run logs 'rollout/reward_mean'"):
        objectives_frame(load_runs([tmp_path]))
    assert main(["objectives", "--runs", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "error: objectives: no run logs" in capsys.readouterr().err
