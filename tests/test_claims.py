"""The claims registry (``analysis/claims.py``) and its evaluation (``analysis/verdicts.py``), on synthetic runs with
hand-worked numbers, and ``python -m r1zero_analysis collect``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from r1zero_analysis.claims import CLAIMS, Claim
from r1zero_analysis.cli import main
from r1zero_analysis.collect import MAX_RESPONSE_CHARS
from r1zero_analysis.loading import discover
from r1zero_analysis.verdicts import (
    FAIL,
    INCONCLUSIVE,
    NOT_RUN,
    PASS,
    RegistryError,
    evaluate,
    growth,
    interval,
)

BAD = "rollout/response_length_incorrect"


def write_run(d: Path, *, algo: str, seed: int, values: list[float], experiment="length_bias", metric=BAD,
              template="t", data="arith", sweep="ablation", evals: dict[int, float] | None = None) -> Path:
    """A run directory with its resolved config, Hydra choices and one metric over steps 1..n."""
    d.mkdir(parents=True)
    cfg = {"algo": {"name": algo}, "template": {"name": template}, "data": {"name": data}, "model": {"name": "m"},
           "seed": seed}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    (d / ".hydra").mkdir()
    (d / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(
        {"hydra": {"runtime": {"choices": {"experiment": experiment, "sweep": sweep, "algo": algo}}}}))
    rows = [{"step": i, metric: v} for i, v in enumerate(values, start=1)]
    for step, acc in (evals or {}).items():
        rows.append({"step": step, "eval/average/accuracy": acc})
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def test_growth_is_last_quarter_mean_minus_first_three_steps():
    # 8 steps: first three 10, 12, 14 (mean 12); last quarter = last 2 steps 30, 34 (mean 32): growth 20
    assert growth(pd.Series([10, 12, 14, 0, 0, 0, 30, 34], dtype=float)) == 20.0
    assert np.isnan(growth(pd.Series([1.0, 2.0, 3.0])))  # too short to have a start and an end apart


def test_paired_interval_of_three_seeds_spans_the_smallest_to_the_largest_difference():
    a, b = {1: 30.0, 2: 20.0, 3: 25.0}, {1: 10.0, 2: 15.0, 3: 5.0}  # differences 20, 5, 20
    effect, low, high, paired = interval(a, b)
    assert paired and effect == pytest.approx(15.0)
    # percentile bootstrap of the mean of 3 values: each extreme resample has probability 1/27 > 2.5%
    assert low == pytest.approx(5.0) and high == pytest.approx(20.0)


def test_unpaired_interval_when_the_arms_ran_different_seeds():
    effect, low, high, paired = interval({1: 4.0, 2: 6.0}, {7: 1.0, 8: 1.0})
    assert not paired and effect == pytest.approx(4.0) and 3.0 <= low <= high <= 5.0


def _claim(**kw) -> Claim:
    base = {"id": "x@length_bias", "source": "Fig. 5", "statement": "s", "select": {"choices.experiment": "length_bias"},
            "metric": BAD, "statistic": "growth", "arm_a": {"algo.name": "grpo"}, "arm_b": {"algo.name": "drgrpo"}}
    return Claim(**{**base, **kw})


def _start_then(end: float) -> list[float]:
    return [100.0, 100.0, 100.0, 100.0, 100.0, 100.0, end, end]  # growth = end - 100


def test_verdicts_pass_fail_inconclusive_and_not_run(tmp_path):
    for s, (g, d) in enumerate([(130, 90), (120, 95), (125, 80)], start=1):  # GRPO grows, Dr. GRPO shrinks
        write_run(tmp_path / f"grpo_s{s}", algo="grpo", seed=s, values=_start_then(g))
        write_run(tmp_path / f"drgrpo_s{s}", algo="drgrpo", seed=s, values=_start_then(d))
    runs = discover([tmp_path])
    holds, reverse, strict, missing, few = evaluate(runs, [
        _claim(id="a"), _claim(id="b", arm_a={"algo.name": "drgrpo"}, arm_b={"algo.name": "grpo"}),
        _claim(id="c", threshold=30.0), _claim(id="d", arm_b={"algo.name": "rloo"}), _claim(id="e", min_seeds=4)])
    # differences per seed 40, 25, 45: effect 36.67, interval [25, 45]
    assert holds.verdict == PASS and holds.effect == pytest.approx(110 / 3) and (holds.low, holds.high) == (
        pytest.approx(25.0), pytest.approx(45.0)) and (holds.n_a, holds.n_b) == (3, 3)
    assert reverse.verdict == FAIL
    assert strict.verdict == INCONCLUSIVE  # the interval [25, 45] straddles 30
    assert missing.verdict == NOT_RUN and "arm B" in missing.note
    assert few.verdict == INCONCLUSIVE and "fewer than 4" in few.note


def test_duet_picks_the_pair_whose_far_template_starts_lower_and_recovers(tmp_path):
    for s in (1, 2, 3):  # far starts at 0.1-0.2 and ends at 0.6; near starts at 0.5 and ends at 0.7
        write_run(tmp_path / f"far_s{s}", algo="drgrpo", seed=s, template="far", values=[0.0] * 3, sweep="duet",
                  experiment="laptop_duet", evals={0: 0.1 + 0.05 * s, 3: 0.6})
        write_run(tmp_path / f"near_s{s}", algo="drgrpo", seed=s, template="near", values=[0.0] * 3, sweep="duet",
                  experiment="laptop_duet", evals={0: 0.5, 3: 0.7})
    claim = Claim("duet@t", "Fig. 6", "s", {"choices.experiment": "laptop_duet"}, "eval/average/accuracy", "final",
                  kind="duet")
    (v,) = evaluate(discover([tmp_path]), [claim])
    assert v.verdict == PASS and v.effect == pytest.approx(0.1) and "far (far) vs near (near) on arith" in v.note


def test_expectation_is_not_run_without_runs_and_measured_minus_expected_with_them(tmp_path):
    claim = Claim("avg@p", "Table 4", "s", {"choices.sweep": "oat"}, "eval/average/accuracy", "final",
                  kind="expectation", expected=0.40, threshold=-0.02, min_seeds=1)
    write_run(tmp_path / "other", algo="drgrpo", seed=1, values=[0.0] * 3, sweep="ablation", evals={3: 0.9})
    (v,) = evaluate(discover([tmp_path]), [claim])
    assert v.verdict == NOT_RUN and "reference 0.400" in v.note
    write_run(tmp_path / "oat", algo="drgrpo", seed=1, values=[0.0] * 3, sweep="oat", evals={3: 0.39})
    (v,) = evaluate(discover([tmp_path]), [claim])
    assert v.verdict == PASS and v.effect == pytest.approx(-0.01)  # within the 2-point tolerance


@pytest.mark.parametrize("bad, message", [
    ({"statistic": "median"}, "statistic 'median'"), ({"kind": "vote"}, "kind 'vote'"),
    ({"arm_b": {}}, "needs arm_a and arm_b"), ({"kind": "expectation"}, "needs expected")])
def test_malformed_registry_is_one_error(bad, message):
    with pytest.raises(RegistryError, match=message):
        evaluate(discover_nothing(), [_claim(**bad)])


def discover_nothing():
    from r1zero_analysis.loading import RunSet
    return RunSet([], [], [])


def test_registry_ids_are_unique_and_name_the_issue_claims():
    ids = [c.id for c in CLAIMS]
    assert len(ids) == len(set(ids))
    for needed in ("length_bias@length_bias", "grpo_incorrect_grows@length_bias", "length_bias_cause@length_bias", "length_bias@laptop",
                   "length_bias_cause@laptop", "drgrpo_accuracy@laptop", "drgrpo_token_efficiency@laptop",
                   "duet@laptop_duet", "table4_average@oat_zero_1.5b", "table4_average@oat_zero_7b"):
        assert needed in ids


def test_claims_command_prints_a_row_per_claim_and_writes_claims_md(tmp_path, capsys):
    write_run(tmp_path / "runs" / "grpo_s1", algo="grpo", seed=1, values=_start_then(120))
    assert main(["claims", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "docs")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:len(CLAIMS)]] == [c.id for c in CLAIMS]
    assert "NOT RUN" in lines[0]  # no Dr. GRPO run
    md = (tmp_path / "docs" / "claims.md").read_text()
    assert all(f"| {c.id} |" in md for c in CLAIMS)
    assert main(["claims", "--runs", str(tmp_path / "nowhere")]) == 2  # missing runs: exit 2, one error line
    assert capsys.readouterr().err.startswith("error: --runs path does not exist")


def test_collect_copies_finished_runs_without_weights_or_training_samples(tmp_path, capsys):
    done = write_run(tmp_path / "sweep" / "0_grpo_s1", algo="grpo", seed=1, values=[1.0] * 3)
    (done / "final").mkdir()
    (done / "final" / "model.safetensors").write_bytes(b"w")
    (done / "checkpoints").mkdir()
    (done / "samples.jsonl").write_text("".join(json.dumps({"step": s, "response": "r"}) + "\n"
                                                for s in (1, 2, 3) for _ in range(10)))
    (done / "eval_samples.jsonl").write_text(json.dumps({"step": 0, "response": "x" * 1000}) + "\n")
    (done / ".hydra" / "config.yaml").write_text("seed: 1\n")  # Hydra's composed copy of config.yaml
    (done / ".hydra" / "overrides.yaml").write_text("[]\n")
    hydra_only = write_run(tmp_path / "sweep" / "2_grpo_s3", algo="grpo", seed=3, values=[1.0] * 3)
    (hydra_only / "final").mkdir()
    (hydra_only / "config.yaml").rename(hydra_only / ".hydra" / "config.yaml")
    running = write_run(tmp_path / "sweep" / "1_grpo_s2", algo="grpo", seed=2, values=[1.0] * 3)
    assert main(["collect", "--runs", str(tmp_path / "sweep"), "--out", str(tmp_path / "results")]) == 0
    assert f"warning: {running}: not finished" in capsys.readouterr().err
    out = tmp_path / "results" / done.name
    assert not (tmp_path / "results" / running.name).exists()
    # one config, the first the loaders read, and Hydra's choices; no training samples, weights or checkpoints
    assert sorted(p.name for p in out.iterdir()) == [".hydra", "config.yaml", "eval_samples.jsonl", "metrics.jsonl"]
    assert sorted(p.name for p in (out / ".hydra").iterdir()) == ["hydra.yaml"]
    assert sorted(p.name for p in (tmp_path / "results" / hydra_only.name / ".hydra").iterdir()) == [
        "config.yaml", "hydra.yaml"]
    row = json.loads((out / "eval_samples.jsonl").read_text())
    assert len(row["response"]) == MAX_RESPONSE_CHARS + len(" [...]")
