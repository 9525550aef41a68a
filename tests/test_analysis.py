"""Tests of the ``analysis`` package on synthetic run directories with hand-computed numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from r1zero_analysis import (
    AnalysisWarning,
    MissingMetricError,
    NoRunsError,
    NotApplicableError,
    load_runs,
    plots,
    reflection,
    tables,
)
from r1zero_analysis.cli import main
from r1zero_analysis.loading import ID_COLS, discover
from r1zero_analysis.samples import samples_frame

REWARD = "rollout/reward_mean"
LEN = "rollout/response_length_mean"
LEN_OK = "rollout/response_length_correct"
LEN_BAD = "rollout/response_length_incorrect"
EVAL = "eval/average/accuracy"
EVAL_LEN_OK = "eval/average/response_length_correct"
EVAL_LEN_BAD = "eval/average/response_length_incorrect"


# ------------------------------------------------------------------------------------------ helpers


def write_run(
    d: Path,
    algo="grpo",
    template="r1",
    data="math12k",
    model="tiny",
    seed=0,
    metrics=(),
    samples=None,
    eval_samples=None,
    resolved_config=False,
) -> Path:
    """A run directory as Hydra + MetricsLogger write it (docs/design.md)."""
    cfg = {
        "algo": {"name": algo},
        "template": {"name": template},
        "data": {"name": data},
        "model": {"name": model},
        "seed": seed,
        "train": {"total_steps": 3},
    }
    cfg_path = d / ("config.yaml" if resolved_config else ".hydra/config.yaml")
    cfg_path.parent.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(yaml.safe_dump(cfg))
    (d / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    if samples is not None:
        (d / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    if eval_samples is not None:
        (d / "eval_samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in eval_samples))
    return d


def curve(reward, length, ok, bad, evals=None):
    """metrics.jsonl rows for steps 1..n; ``evals`` maps step -> eval metrics for that step."""
    rows = []
    for i, (r, n, c, b) in enumerate(zip(reward, length, ok, bad), start=1):
        row = {"step": i, REWARD: r, LEN: n, LEN_OK: c, LEN_BAD: b, "train/loss": 0.0}
        row.update((evals or {}).get(i, {}))
        rows.append(row)
    return rows


def stat(csv: pd.DataFrame, metric: str, step: int, **where) -> pd.Series:
    sel = (csv["metric"] == metric) & (csv["step"] == step)
    for k, v in where.items():
        sel &= csv[k] == v
    rows = csv[sel]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def assert_figure(out: Path, name: str) -> pd.DataFrame:
    for ext in ("png", "pdf", "csv"):
        assert (out / f"{name}.{ext}").stat().st_size > 0
    return pd.read_csv(out / f"{name}.csv")


@pytest.fixture
def dyn_runs(tmp_path: Path) -> Path:
    """GRPO and Dr. GRPO, two seeds each, three steps, eval at step 2 and 3."""
    root = tmp_path / "runs"
    write_run(
        root / "grpo_s0",
        "grpo",
        seed=0,
        metrics=curve(
            [0.1, 0.2, 0.3],
            [100, 110, 120],
            [80, 90, 100],
            [120, 130, 150],
            {2: {EVAL: 0.30, EVAL_LEN_OK: 300.0, EVAL_LEN_BAD: 900.0}, 3: {EVAL: 0.36}},
        ),
    )
    write_run(
        root / "grpo_s1",
        "grpo",
        seed=1,
        metrics=curve(
            [0.3, 0.4, 0.5],
            [140, 150, 160],
            [90, 100, 110],
            [160, 170, 190],
            {2: {EVAL: 0.40, EVAL_LEN_OK: 500.0, EVAL_LEN_BAD: 700.0}, 3: {EVAL: 0.42}},
        ),
    )
    write_run(
        root / "drgrpo_s0",
        "drgrpo",
        seed=0,
        metrics=curve(
            [0.2, 0.3, 0.4], [90, 80, 70], [70, 60, 50], [100, 90, 80], {2: {EVAL: 0.35}, 3: {EVAL: 0.40}}
        ),
    )
    write_run(
        root / "drgrpo_s1",
        "drgrpo",
        seed=1,
        metrics=curve(
            [0.4, 0.5, 0.6], [110, 100, 90], [90, 80, 70], [120, 110, 100], {2: {EVAL: 0.45}, 3: {EVAL: 0.50}}
        ),
    )
    return root


# ------------------------------------------------------------------------------------------ loading


def test_tidy_frame_from_multirun_layout(tmp_path: Path):
    sweep = tmp_path / "multirun" / "2026-01-01" / "12-00-00"
    (sweep).mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")  # Hydra's sweep-level file: not a run
    write_run(sweep / "0", "grpo", seed=0, metrics=curve([0.1, 0.2], [10, 20], [5, 6], [7, 8]))
    write_run(sweep / "1", "drgrpo", seed=1, metrics=curve([0.3], [30], [9], [11]), resolved_config=True)
    # A checkpoint folder holding its own copy of a metrics file must not count as a run.
    (sweep / "0" / "checkpoints" / "step_000002").mkdir(parents=True)
    (sweep / "0" / "checkpoints" / "step_000002" / "metrics.jsonl").write_text('{"step": 1}\n')

    df = load_runs([tmp_path / "multirun"])

    assert list(df.columns[: len(ID_COLS)]) == ID_COLS
    assert df["run_dir"].nunique() == 2  # one row per run x step: 2 + 1 rows
    assert len(df) == 3
    one = df[df["run_dir"].str.endswith("/1")].iloc[0]
    assert (one["algo"], one["template"], one["data"], one["model"], one["seed"], one["step"]) == (
        "drgrpo",
        "r1",
        "math12k",
        "tiny",
        1,
        1,
    )
    assert df.loc[df["algo"] == "grpo", REWARD].tolist() == [0.1, 0.2]


def test_half_written_last_line_is_skipped_with_warning(tmp_path: Path):
    run = write_run(tmp_path / "crashed", metrics=curve([0.1, 0.2], [10, 20], [5, 6], [7, 8]))
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 3, "rollout/rew')  # the process died mid-write
    with pytest.warns(AnalysisWarning, match="half-written last line 3"):
        df = load_runs([tmp_path])
    assert df["step"].tolist() == [1, 2]


def test_resumed_run_and_separate_eval_line_are_merged_per_step(tmp_path: Path):
    rows = curve([0.1, 0.2], [10, 20], [5, 6], [7, 8])
    # Resume from a step-1 checkpoint re-logs step 2; eval comes on its own line for step 2.
    rows += [{"step": 2, REWARD: 0.25, LEN: 21}, {"step": 2, EVAL: 0.5}]
    write_run(tmp_path / "r", metrics=rows)
    df = load_runs([tmp_path])
    s2 = df[df["step"] == 2].iloc[0]
    # last non-null value per metric wins: reward 0.25 (re-logged), length_correct 6 (only once), eval 0.5
    assert (len(df), s2[REWARD], s2[LEN], s2[LEN_OK], s2[EVAL]) == (2, 0.25, 21, 6, 0.5)


def test_wandb_export_loads_into_the_same_shape(tmp_path: Path):
    export = tmp_path / "export" / "wandb_export.csv"
    export.parent.mkdir()
    pd.DataFrame(
        {
            "run": ["a", "a", "b"],
            "algo.name": ["grpo", "grpo", "drgrpo"],
            "template": "r1",
            "data": "math12k",
            "model": "tiny",
            "seed": [0, 0, 1],
            "_step": [1, 2, 1],
            REWARD: [0.1, 0.2, 0.4],
            "_runtime": [1.0, 2.0, 3.0],
        }
    ).to_csv(export, index=False)
    df = load_runs([tmp_path / "export"])
    assert list(df.columns[: len(ID_COLS)]) == ID_COLS
    assert "_runtime" not in df.columns
    b = df[df["algo"] == "drgrpo"].iloc[0]
    assert (b["run_dir"].endswith("wandb_export.csv#b"), b["seed"], b["step"], b[REWARD]) == (True, 1, 1, 0.4)


def test_wandb_json_export_named_directly(tmp_path: Path):
    export = tmp_path / "wandb_export.jsonl"
    rows = [{"run": "x", "config.algo.name": "drgrpo", "step": s, REWARD: 0.1 * s} for s in (1, 2)]
    export.write_text("".join(json.dumps(r) + "\n" for r in rows))
    df = load_runs([export])
    assert df["algo"].tolist() == ["drgrpo", "drgrpo"] and df["template"].tolist() == ["unset", "unset"]
    assert df[REWARD].tolist() == pytest.approx([0.1, 0.2])


def test_filters(dyn_runs: Path):
    df = load_runs([dyn_runs], filters={"algo": ["drgrpo"], "seed": ["1"]})
    assert df["run_dir"].unique().tolist() == [str(dyn_runs / "drgrpo_s1")]
    with pytest.raises(NoRunsError, match="after the filters"):
        load_runs([dyn_runs], filters={"algo": ["ppo"]})


# ------------------------------------------------------------------------------------------ figures


def test_dynamics_seed_mean_and_band(dyn_runs: Path, tmp_path: Path):
    out = tmp_path / "out"
    plots.dynamics(load_runs([dyn_runs]), out)
    csv = assert_figure(out, "dynamics")
    # GRPO reward at step 1: seeds 0.1 and 0.3 -> mean 0.2, band [0.1, 0.3]
    r = stat(csv, REWARD, 1, algo="grpo")
    assert (r["mean"], r["min"], r["max"], r["n_seeds"]) == pytest.approx((0.2, 0.1, 0.3, 2))
    # Dr. GRPO length of incorrect responses at step 3: (80 + 100) / 2 = 90
    assert stat(csv, LEN_BAD, 3, algo="drgrpo")["mean"] == pytest.approx(90)
    # GRPO overall length at step 2: (110 + 150) / 2 = 130
    assert stat(csv, LEN, 2, algo="grpo")["mean"] == pytest.approx(130)
    # Eval accuracy only at eval steps: Dr. GRPO step 3 -> (0.40 + 0.50) / 2 = 0.45; no step-1 point
    assert stat(csv, EVAL, 3, algo="drgrpo")["mean"] == pytest.approx(0.45)
    assert sorted(csv.loc[csv["metric"] == EVAL, "step"].unique()) == [2, 3]
    # Fig. 5's length panels come from evaluation: GRPO step 2, correct (300 + 500) / 2, incorrect (900 + 700) / 2;
    # Dr. GRPO's runs never logged them (a "no data" panel, absent from the CSV).
    assert stat(csv, EVAL_LEN_OK, 2, algo="grpo")["mean"] == pytest.approx(400)
    assert stat(csv, EVAL_LEN_BAD, 2, algo="grpo")["mean"] == pytest.approx(800)
    assert csv.loc[(csv["metric"] == EVAL_LEN_OK) & (csv["algo"] == "drgrpo")].empty


def test_dynamics_smoothing_is_trailing_mean(dyn_runs: Path, tmp_path: Path):
    plots.dynamics(load_runs([dyn_runs]), tmp_path / "out", smooth_window=2)
    csv = pd.read_csv(tmp_path / "out" / "dynamics.csv")
    # GRPO seed 0 smoothed reward at step 2 = (0.1 + 0.2) / 2 = 0.15; seed 1 = (0.3 + 0.4) / 2 = 0.35
    # -> mean 0.25. Eval is never smoothed: step 3 stays (0.36 + 0.42) / 2 = 0.39.
    assert stat(csv, REWARD, 2, algo="grpo")["mean"] == pytest.approx(0.25)
    assert stat(csv, EVAL, 3, algo="grpo")["mean"] == pytest.approx(0.39)


def test_ablation_four_variants_mean_and_min_max(tmp_path: Path):
    root = tmp_path / "runs"
    # reward at the single step = base + 0.1 * seed, for seeds 0, 1, 2
    base = {"grpo": 0.2, "drgrpo": 0.3, "grpo_no_len_norm": 0.4, "grpo_no_std_norm": 0.5}
    for algo, b in base.items():
        for seed in range(3):
            write_run(
                root / f"{algo}_{seed}",
                algo,
                seed=seed,
                metrics=curve(
                    [b + 0.1 * seed],
                    [100],
                    [50 + 10 * seed],
                    [200 - 30 * seed],
                    {1: {EVAL: b / 2 + 0.01 * seed}},
                ),
            )
    out = tmp_path / "out"
    plots.ablation(load_runs([root]), out)
    csv = assert_figure(out, "ablation")
    assert set(csv["algo"]) == set(base)
    # grpo_no_std_norm reward: 0.5, 0.6, 0.7 -> mean 0.6, band [0.5, 0.7]
    r = stat(csv, REWARD, 1, algo="grpo_no_std_norm")
    assert (r["mean"], r["min"], r["max"], r["n_seeds"]) == pytest.approx((0.6, 0.5, 0.7, 3))
    # length of correct: 50, 60, 70 -> mean 60; incorrect: 200, 170, 140 -> mean 170, band [140, 200]
    assert stat(csv, LEN_OK, 1, algo="grpo")["mean"] == pytest.approx(60)
    r = stat(csv, LEN_BAD, 1, algo="drgrpo")
    assert (r["mean"], r["min"], r["max"]) == pytest.approx((170, 140, 200))
    # drgrpo eval: 0.15, 0.16, 0.17 -> mean 0.16
    assert stat(csv, EVAL, 1, algo="drgrpo")["mean"] == pytest.approx(0.16)


def test_duet_grid(tmp_path: Path):
    root = tmp_path / "runs"
    # eval accuracy at steps 0 and 10; value = template offset + data offset (+0.1 after training)
    t_off = {"r1": 0.1, "qwen_math": 0.3}
    d_off = {"math12k": 0.02, "gsm8k": 0.04}
    for t, a in t_off.items():
        for d, b in d_off.items():
            write_run(
                root / f"{t}_{d}",
                "drgrpo",
                template=t,
                data=d,
                metrics=[
                    {"step": 0, EVAL: a + b},
                    *curve([0.5] * 10, [1] * 10, [1] * 10, [1] * 10, {10: {EVAL: a + b + 0.1}}),
                ],
            )
    out = tmp_path / "out"
    plots.duet(load_runs([root]), out)
    csv = assert_figure(out, "duet")
    assert len(csv) == 2 * 2 * 2  # templates x question sets x eval steps
    # qwen_math + gsm8k at step 10: 0.3 + 0.04 + 0.1 = 0.44
    assert stat(csv, EVAL, 10, template="qwen_math", data="gsm8k")["mean"] == pytest.approx(0.44)
    assert stat(csv, EVAL, 0, template="r1", data="math12k")["mean"] == pytest.approx(0.12)


def test_duet_with_one_template_is_not_applicable(dyn_runs: Path, tmp_path: Path, capsys):
    with pytest.raises(NotApplicableError, match="at least 2 templates"):
        plots.duet(load_runs([dyn_runs]), tmp_path)
    assert main(["duet", "--runs", str(dyn_runs), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: duet needs runs with at least 2 templates (template.name); found only: r1"]


# ------------------------------------------------------------------------------------------ table


@pytest.fixture
def table_runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"

    def ev(aime, amc, math, minerva, olym, avg):
        return {
            "eval/aime/accuracy": aime,
            "eval/amc/accuracy": amc,
            "eval/math500/accuracy": math,
            "eval/minerva_math/accuracy": minerva,
            "eval/olympiad_bench/accuracy": olym,
            EVAL: avg,
        }

    flat = [0.5] * 30
    # Run A: eval at 10 (avg .40), 20 (avg .50, the best), 30 (avg .45, the final).
    write_run(
        root / "a",
        "drgrpo",
        seed=0,
        metrics=curve(
            flat,
            flat,
            flat,
            flat,
            {
                10: ev(0.1, 0.2, 0.3, 0.4, 0.5, 0.40),
                20: ev(0.2, 0.3, 0.7, 0.25, 0.4, 0.50),
                30: ev(0.1, 0.5, 0.6, 0.3, 0.333333, 0.45),
            },
        ),
    )
    # Run B: a tie for best at steps 10 and 20 (avg .30) -> best picks the earlier step 10.
    write_run(
        root / "b",
        "grpo",
        seed=0,
        metrics=curve(
            flat[:20],
            flat[:20],
            flat[:20],
            flat[:20],
            {10: ev(0.0, 0.1, 0.2, 0.3, 0.4, 0.30), 20: ev(0.1, 0.1, 0.2, 0.3, 0.3, 0.30)},
        ),
    )
    return root


def test_table_final_step(table_runs: Path, tmp_path: Path):
    tables.table(load_runs([table_runs]), tmp_path, pick="final")
    csv = pd.read_csv(tmp_path / "table.csv")
    a = csv[csv["run_dir"].str.endswith("/a")].iloc[0]
    # final eval step of A is 30: fractions -> percent (x100)
    assert a["step"] == 30
    assert [a[c] for c in ["AIME24", "AMC", "MATH500", "Minerva", "OlympiadBench", "Avg."]] == pytest.approx(
        [10.0, 50.0, 60.0, 30.0, 33.3333, 45.0]
    )
    md = (tmp_path / "table.md").read_text()
    # one decimal like the paper: 0.333333 -> 33.3
    assert (
        "| run | Dr. GRPO / r1 / math12k / tiny / seed 0 | 30 | 10.0 | 50.0 | 60.0 | 30.0 | 33.3 | 45.0 |"
        in md
    )


def test_table_best_step_and_paper_rows(table_runs: Path, tmp_path: Path):
    tables.table(load_runs([table_runs]), tmp_path, pick="best")
    csv = pd.read_csv(tmp_path / "table.csv")
    runs = csv[csv["source"] == "run"].set_index("algo")
    assert runs.loc["drgrpo", "step"] == 20 and runs.loc["drgrpo", "Avg."] == pytest.approx(50.0)
    assert runs.loc["drgrpo", "MATH500"] == pytest.approx(70.0)
    assert runs.loc["grpo", "step"] == 10  # tie at .30 -> earliest step
    paper = csv[csv["source"] != "run"].set_index("name")
    cols = ["AIME24", "AMC", "MATH500", "Minerva", "OlympiadBench", "Avg."]
    assert paper.loc["Oat-Zero-1.5B", cols].tolist() == [20.0, 53.0, 74.2, 25.7, 37.6, 42.1]
    assert paper.loc["Oat-Zero-7B", cols].tolist() == [43.3, 62.7, 80.0, 30.1, 41.0, 51.4]
    md = (tmp_path / "table.md").read_text()
    assert "| paper | Oat-Zero-7B | – | 43.3 | 62.7 | 80.0 | 30.1 | 41.0 | 51.4 |" in md
    assert "Qwen2.5-Math-7B\\*" in md  # '*' escaped so Markdown does not start emphasis


def test_table_without_eval_metrics_errors(dyn_runs: Path, tmp_path: Path):
    df = load_runs([dyn_runs]).drop(columns=[EVAL])
    with pytest.raises(MissingMetricError, match="eval/average/accuracy"):
        tables.table(df, tmp_path)


# ------------------------------------------------------------------------------------------ reflection


def test_keyword_pattern_matches_as_the_paper_does():
    # keyword_count.py: ``keyword in response.lower()`` over its 15 keywords; a substring, spaces literal.
    texts = pd.Series(["Let me recheck", "rechecking", "RECHECK", "double-checking it", "Wait, that is wrong.",
                       "check  again", "Alternatively, x = 2", "go over the steps", "awaiting input"])
    assert len(reflection.PAPER_KEYWORDS) == 15 and reflection.DEFAULT_KEYWORDS == reflection.PAPER_KEYWORDS
    paper = reflection.has_reflection(texts, reflection.keyword_pattern())
    assert paper.tolist() == [True, True, True, True, False, False, False, True, False]
    extra = reflection.has_reflection(
        texts, reflection.keyword_pattern(reflection.PAPER_KEYWORDS + reflection.EXTRA_KEYWORDS))
    assert extra.tolist() == [True, True, True, True, True, False, True, True, True]  # "awaiting" has "wait"


def test_reflection_fractions(tmp_path: Path):
    root = tmp_path / "runs"

    # Training samples of one group (two seeds, pooled) at step 1:
    #   seed 0: "Wait, ..." reward 1 (plain: not in the paper's pool); "The answer is 4" reward 0 (plain, wrong)
    #   seed 1: "Let me recheck" reward 0 (reflect, wrong); "waiting" reward 1 (plain)
    #           "Alternatively" reward 1 (plain: not in the paper's pool)
    # -> 5 responses, 1 reflective: frac 1/5 = 0.2; acc with = 0/1; acc without = 3/4; overall 3/5.
    # Step 2 (seed 0 only): one plain correct response -> frac 0, acc with = NaN, acc without = 1.
    def s(step, text, reward):
        return {
            "step": step,
            "question": "q",
            "prompt": "p",
            "response": text,
            "reference": "4",
            "reward": reward,
            "response_length": 3,
            "truncated": False,
        }

    write_run(
        root / "s0",
        seed=0,
        metrics=curve([0.5], [1], [1], [1]),
        samples=[s(1, "Wait, 2+2=4.", 1.0), s(1, "The answer is 4", 0.0), s(2, "4", 1.0)],
        eval_samples=[
            {
                "step": 1,
                "benchmark": "math500",
                "question": "q",
                "response": "Re-evaluate: 4",
                "extracted": "4",
                "reference": "4",
                "correct": True,
                "response_length": 3,
                "truncated": False,
            },
            {
                "step": 1,
                "benchmark": "aime",
                "question": "q",
                "response": "5",
                "extracted": "5",
                "reference": "4",
                "correct": False,
                "response_length": 1,
                "truncated": False,
            },
        ],
    )
    write_run(
        root / "s1",
        seed=1,
        metrics=curve([0.5], [1], [1], [1]),
        samples=[s(1, "Let me recheck: 5", 0.0), s(1, "waiting... 4", 1.0), s(1, "Alternatively, 4", 1.0)],
    )
    out = tmp_path / "out"
    made = reflection.reflection(samples_frame(discover([root])), out)
    assert "LLM cross-check of each response is not reproduced" in made.caption
    csv = assert_figure(out, "reflection")
    train = csv[csv["source"] == "train"].set_index("step")
    assert train.loc[1, ["n_runs", "n_responses", "n_reflect"]].tolist() == [2, 5, 1]
    assert train.loc[
        1, ["reflect_frac", "accuracy", "acc_reflect", "acc_no_reflect"]
    ].tolist() == pytest.approx([0.2, 0.6, 0.0, 0.75])
    assert train.loc[2, "reflect_frac"] == 0 and pd.isna(train.loc[2, "acc_reflect"])
    assert train.loc[2, "acc_no_reflect"] == 1
    # Eval at step 1, pooled over benchmarks: 1 of 2 reflective ("Re-evaluate"), and it is the correct one.
    ev = csv[csv["source"] == "eval"].iloc[0]
    assert [ev["reflect_frac"], ev["acc_reflect"], ev["acc_no_reflect"]] == [0.5, 1.0, 0.0]

    # The CLI path detects keywords while reading (no texts kept) and must give the same CSV; with a
    # custom keyword list ("retry") none of the 5 responses is reflective.
    assert main(["reflection", "--runs", str(root), "--out", str(tmp_path / "cli")]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cli" / "reflection.csv"), csv)
    assert (
        main(["reflection", "--runs", str(root), "--out", str(tmp_path / "kw"), "--keywords", "retry"]) == 0
    )
    kw = pd.read_csv(tmp_path / "kw" / "reflection.csv")
    assert kw.loc[(kw["source"] == "train") & (kw["step"] == 1), "n_reflect"].item() == 0
    # --extra-keywords adds wait/retry/let me check/alternatively: "Wait,", "waiting" (a substring, as the
    # paper matches), "recheck" and "Alternatively" -> 4 of 5.
    assert main(["reflection", "--runs", str(root), "--out", str(tmp_path / "ex"), "--extra-keywords"]) == 0
    ex = pd.read_csv(tmp_path / "ex" / "reflection.csv")
    assert ex.loc[(ex["source"] == "train") & (ex["step"] == 1), "n_reflect"].item() == 4


def test_standalone_eval_without_step_gives_bar_chart(tmp_path: Path):
    # An evaluate-only directory: config + eval_samples.jsonl with step null, no metrics.jsonl.
    d = tmp_path / "eval_base"
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "config.yaml").write_text(
        yaml.safe_dump({"model": {"name": "base"}, "template": {"name": "no"}})
    )
    rows = [
        {"step": None, "benchmark": "math500", "response": t, "correct": c}
        for t, c in [("Let me double-check: 3", True), ("3", False), ("4", True), ("5", False)]
    ]
    (d / "eval_samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    assert main(["reflection", "--runs", str(tmp_path), "--out", str(out)]) == 0
    csv = assert_figure(out, "reflection")
    # 1 of 4 reflective (correct); plain: 1 of 3 correct. Missing config keys are labelled "unset".
    r = csv.iloc[0]
    assert (r["algo"], pd.isna(r["step"]), r["reflect_frac"], r["acc_reflect"]) == ("unset", True, 0.25, 1.0)
    assert r["acc_no_reflect"] == pytest.approx(1 / 3)
    # ... and it is not a training run: metric figures say so.
    assert main(["dynamics", "--runs", str(tmp_path), "--out", str(out)]) == 2


# ------------------------------------------------------------------------------------------ CLI


def test_cli_no_runs(tmp_path: Path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["dynamics", "--runs", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: no runs found under {tmp_path / 'empty'}")
    assert "Traceback" not in err


def write_pair_without(root: Path, metric: str, value: float) -> None:
    """A GRPO and a Dr. GRPO run of one step (reward/eval ``value``) that never log ``metric``."""
    evals = {1: {EVAL: value, EVAL_LEN_OK: 1.0, EVAL_LEN_BAD: 1.0}}
    rows = [{k: v for k, v in r.items() if k != metric} for r in curve([value], [1], [1], [1], evals)]
    write_run(root / "g", "grpo", metrics=rows)
    write_run(root / "d", "drgrpo", metrics=rows)


def test_cli_missing_metric(tmp_path: Path, capsys):
    write_pair_without(tmp_path / "runs", REWARD, 0.1)
    assert main(["dynamics", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err == (
        "error: dynamics: no run logs 'rollout/reward_mean' (checked 2 runs; "
        "see docs/design.md for metric names)\n"
    )


def test_never_correct_runs_draw_no_data_panels(tmp_path: Path, capsys):
    # A run that never answers correctly never logs the correct-length metric: a finding, not an error.
    write_pair_without(tmp_path / "runs", LEN_OK, 0.0)
    assert main(["dynamics", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "o")]) == 0
    assert "no run logs 'rollout/response_length_correct'; those panels show 'no data'" in capsys.readouterr().err
    assert_figure(tmp_path / "o", "dynamics")


def test_cli_all_writes_index_and_skips_what_cannot_be_made(dyn_runs: Path, tmp_path: Path, capsys):
    out = tmp_path / "report"
    assert main(["all", "--runs", str(dyn_runs), "--out", str(out)]) == 0
    for name in ("dynamics", "ablation"):
        assert_figure(out, name)
    assert (out / "table.md").exists() and (out / "table.csv").exists()
    index = (out / "index.md").read_text()
    assert "![dynamics](dynamics.png)" in index and "[PDF](ablation.pdf)" in index
    assert "| paper | Oat-Zero-7B |" in index  # the table is embedded
    assert "- **duet**: duet needs runs with at least 2 templates" in index
    assert "- **reflection**: no responses logged" in index  # these runs have no samples.jsonl
    assert "- **lengths**: lengths: no run logs 'rollout/length_bucket/<bucket>/frac'" in index
    assert "- **cost**: cost: no run logs 'time/step_s'" in index
    assert not (out / "duet.png").exists()
    assert "note: skipped duet" in capsys.readouterr().err


def test_config_labels_handle_unquoted_no_template_and_missing_keys():
    from r1zero_analysis.loading import config_labels

    cfg = yaml.safe_load("template: {name: no}\nalgo: {name: grpo}\nseed: 3\n")  # `no` loads as False
    assert config_labels(cfg) == {
        "algo": "grpo", "template": "no", "data": "unset", "model": "unset", "seed": 3,
    }  # fmt: skip


def _with_manifest(d: Path, **versions) -> Path:
    base = {"python": "3.11.7", "torch": "2.13.0", "transformers": "5.24.0", "vllm": None, "math-verify": "0.8.0",
            "deepspeed": None, "r1zero": "0.1.0", "cuda": None}
    (d / "manifest.json").write_text(json.dumps({
        "versions": {**base, **versions}, "hardware": {"cpu_count": 2, "gpu_count": 0},
        "git": {"commit": "a" * 40, "dirty": False}}))
    return d


def test_index_lists_versions_and_warns_when_compared_runs_differ(tmp_path):
    from r1zero_analysis.report import versions_summary

    rows = curve([0.1, 0.2], [10, 11], [9, 9], [12, 13])
    a = _with_manifest(write_run(tmp_path / "a", algo="grpo", metrics=rows))
    b = _with_manifest(write_run(tmp_path / "b", algo="drgrpo", metrics=rows))
    write_run(tmp_path / "c", algo="drgrpo", seed=1, metrics=rows)  # from before manifests
    text = versions_summary(discover([tmp_path]))
    assert "| 0.8.0 | 2.13.0 | 5.24.0 |" in text and "| 2 |" in text and "1 run(s) without a manifest.json" in text
    _with_manifest(b, **{"math-verify": "0.9.0"})
    with pytest.warns(AnalysisWarning, match=r"differ in math-verify \(0.8.0, 0.9.0\)"):
        text = versions_summary(discover([a, b]))
    assert text.count("| 1 |") == 2


def _eval_rows(step, bench, correct_by_question):
    return [{"step": step, "benchmark": bench, "question": f"q{i}", "response": "r", "correct": bool(c)}
            for i, cs in enumerate(correct_by_question) for c in (cs if isinstance(cs, list) else [cs])]


def test_seed_table_means_intervals_and_protocol(tmp_path):
    from r1zero_analysis import seeds

    rows = curve([0.1], [10], [9], [12])
    # benchmark b, per question: seed 1 = (1 [2 samples: 1, 1], 1, 0, 0) -> 0.5; seed 2 = (1, 0.5 [samples 1, 0],
    # 0, 0) -> 0.375; mean over seeds 0.4375. Benchmark c is always right. Step 0 is ignored: each run's last
    # evaluated step counts.
    for seed, b in ((1, [[1, 1], 1, 0, 0]), (2, [1, [1, 0], 0, 0])):
        write_run(tmp_path / f"s{seed}", algo="drgrpo", seed=seed, metrics=rows,
                  eval_samples=_eval_rows(0, "b", [0, 0, 0, 0]) + _eval_rows(8, "b", b) + _eval_rows(8, "c", [1, 1]))
    tab = seeds.seed_table(discover([tmp_path]), n_boot=500)
    r = tab.iloc[0]
    assert r["n_seeds"] == 2 and r["seeds"] == "1,2" and r["steps"] == "8"
    assert r["b"] == pytest.approx(100 * (0.5 + 0.375) / 2)  # seed 2's q1 averages its two samples
    assert r["c"] == 100 and r["c_lo"] == 100 and r["c_hi"] == 100  # no variation, no width
    assert r["average"] == pytest.approx((r["b"] + 100) / 2)
    assert 0 <= r["b_lo"] < r["b"] < r["b_hi"] <= 100 and r["average_lo"] < r["average"] < r["average_hi"]
    assert (r["decoding"], r["verifier"], r["truncated"]) == ("greedy", "r1zero", "scored 0")  # runs from before reward.verifier: its only checker
    out = seeds.write(tab, tmp_path / "out")
    assert "43.8 [" in out["seeds_md"].read_text() and r"\begin{tabular}" in out["seeds_tex"].read_text()


# ------------------------------------------------------------------------------ lengths and cost


def _bucket_rows(per_step):
    """metrics.jsonl rows; ``per_step`` lists (short frac, short accuracy, short advantage, zero-signal frac)."""
    rows = []
    for i, (frac, acc, adv, zero) in enumerate(per_step, start=1):
        rows.append({"step": i, REWARD: acc, LEN_OK: 10.0 * i, LEN_BAD: 20.0 * i,
                     "rollout/length_bucket/0-0.125/frac": frac, "rollout/length_bucket/0-0.125/accuracy": acc,
                     "rollout/length_bucket/0-0.125/advantage_mean": adv,
                     "rollout/length_bucket/truncated/frac": 1 - frac,
                     "rollout/zero_signal_group_frac": zero})
    return rows


def test_lengths_figure_aggregates_seeds_per_bucket(tmp_path: Path):
    root = tmp_path / "runs"
    write_run(root / "s0", "drgrpo", seed=0, metrics=_bucket_rows([(0.5, 0.2, 0.1, 0.75), (0.75, 0.4, 0.3, 0.5)]))
    write_run(root / "s1", "drgrpo", seed=1, metrics=_bucket_rows([(0.25, 0.6, -0.1, 0.25), (0.25, 0.8, 0.1, 0.5)]))
    out = tmp_path / "o"
    assert main(["lengths", "--runs", str(root), "--out", str(out)]) == 0
    csv = assert_figure(out, "lengths")
    # step 1, short bucket share: seeds 0.5 and 0.25 -> mean 0.375, band [0.25, 0.5]; truncated share 0.5 and 0.75
    s = stat(csv, "rollout/length_bucket/0-0.125/frac", 1)
    assert (s["mean"], s["min"], s["max"], s["n_seeds"]) == (0.375, 0.25, 0.5, 2)
    assert stat(csv, "rollout/length_bucket/truncated/frac", 1)["mean"] == 0.625
    assert stat(csv, "rollout/length_bucket/0-0.125/advantage_mean", 2)["mean"] == pytest.approx(0.2)
    assert stat(csv, "rollout/zero_signal_group_frac", 1)["mean"] == 0.5  # (0.75 + 0.25) / 2
    assert stat(csv, LEN_BAD, 2)["mean"] == 40.0
    assert {"0-0.125", "truncated"} == {m.split("/")[2] for m in csv["metric"] if "/length_bucket/" in m}


def test_lengths_without_buckets_is_a_missing_metric(dyn_runs: Path, tmp_path: Path, capsys):
    assert main(["lengths", "--runs", str(dyn_runs), "--out", str(tmp_path / "o")]) == 2
    assert "error: lengths: no run logs 'rollout/length_bucket/<bucket>/frac'" in capsys.readouterr().err


def _cost_run(d: Path, *, total_steps, gpu_name, gpu_count, world_size, wall_s, gpu_hours, finished, step_s,
              eval_s=None, manifest=True) -> Path:
    # Oat-Zero-7B's model at 1/128 scale: 1 prompt x 2 samples, budget 1020 tokens, no KL, no evaluation.
    cfg = {"algo": {"name": "drgrpo", "kl_coef": 0.0}, "template": {"name": "r1"}, "data": {"name": "math12k"},
           "model": {"name": "qwen_math7", "params_b": 7.62}, "seed": 1,
           "train": {"total_steps": total_steps, "prompts_per_rollout": 1},
           "sampling": {"group_size": 2, "max_new_tokens": 1020}, "eval": {"every": 0, "max_new_tokens": 1020}}
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    rows = [{"step": i, "time/step_s": s, **({"time/eval_s": eval_s[i]} if eval_s and i in eval_s else {})}
            for i, s in enumerate(step_s, start=1)]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if manifest:
        (d / "manifest.json").write_text(json.dumps({
            "hardware": {"cpu_count": 16, "gpu_name": gpu_name, "gpu_count": gpu_count}, "world_size": world_size,
            "wall_s": wall_s, "gpu_hours": gpu_hours, "finished": finished}))
    return d


def test_cost_compares_the_estimate_with_the_measured_run(tmp_path: Path, capsys):
    """The estimate, worked by hand (r1zero/run/cost.py) for 1 A100, 7.62B parameters, 1 x 2 responses of expected
    length 0.25 x 1020 = 255 tokens:
      generation 2 x 255 = 510 tokens at 255 tokens/s x (7.62 / 7.62)^0.6 = 2.0 s;
      learner 2 x (150 + 255) = 810 tokens x (6 + 2) x 7.62e9 FLOPs = 4.93776e13 FLOPs at 0.3 x 312e12 FLOP/s
      = 0.527538 s; a step 2.527538 s. The run logged 4 of its 8 steps, so the estimate is for 4: 10.110 s,
      10.110 / 3600 = 0.0028084 GPU-hours. Measured: steps of 3, 5, 4 and 10 s, the last with a 6 s evaluation
      -> 3, 5, 4, 4 s of training, median 4.0 s (1.583x the estimate); the manifest's 36 s is 3.561x.
    """
    root = tmp_path / "runs"
    _cost_run(root / "gpu", total_steps=8, gpu_name="NVIDIA A100-SXM4-80GB", gpu_count=1, world_size=1, wall_s=36.0,
              gpu_hours=0.01, finished=False, step_s=[3.0, 5.0, 4.0, 10.0], eval_s={4: 6.0})
    _cost_run(root / "laptop", total_steps=2, gpu_name=None, gpu_count=0, world_size=1, wall_s=30.0, gpu_hours=0.0,
              finished=True, step_s=[12.0, 14.0])
    _cost_run(root / "old", total_steps=2, gpu_name=None, gpu_count=0, world_size=1, wall_s=0, gpu_hours=0,
              finished=True, step_s=[7.0, 9.0], manifest=False)
    out = tmp_path / "o"
    assert main(["cost", "--runs", str(root), "--out", str(out)]) == 0
    tab = pd.read_csv(out / "cost.csv").set_index(pd.read_csv(out / "cost.csv")["run_dir"].map(lambda p: Path(p).name))
    g = tab.loc["gpu"]
    assert g["est_step_s"] == pytest.approx(2.527538, rel=1e-6) and g["step_s"] == 4.0
    assert g["step_ratio"] == pytest.approx(4.0 / 2.527538, rel=1e-6)
    assert g["est_wall_h"] == pytest.approx(4 * 2.527538 / 3600, rel=1e-6) and g["wall_h"] == pytest.approx(0.01)
    assert g["wall_ratio"] == pytest.approx(36.0 / 10.110152, rel=1e-6)
    assert g["gpu_hours_ratio"] == pytest.approx(0.01 / 0.00280838, rel=1e-5)
    assert (g["steps"], g["gpus"], g["note"]) == ("4/8", 1, "unfinished: compared with the estimate of its logged steps")
    cpu = tab.loc["laptop"]
    assert cpu["step_s"] == 13.0 and pd.isna(cpu["est_step_s"]) and cpu["note"].startswith("no estimate for device cpu")
    assert tab.loc["old"]["step_s"] == 8.0 and tab.loc["old"]["note"] == "no manifest.json: no device to estimate for"
    printed = capsys.readouterr().out
    assert "| Dr. GRPO / r1 / math12k / qwen_math7 / seed 1 | gpu | 1x NVIDIA A100-SXM4-80GB | 4/8 | 2.5 | 4.0 | 1.58x (+58%) | 0.00281 | 0.01 | 3.56x (+256%) | 0.00281 | 0.01 | 3.56x (+256%) |" in printed
    assert str(out / "cost.md") in printed
