"""The objectives seed table (``sweep=objectives``, issue 24): one row per algo preset, seeds aggregated.

Per configuration (``algo``, ``template``, ``data``, ``model``; on one testbed that is one row per algo), from each
run's ``metrics.jsonl`` through the same per-run statistics as the claims registry
(:data:`r1zero_analysis.verdicts.STATISTICS`), then the mean over the configuration's seeds:

* ``reward``: training reward, mean over the last quarter of the logged steps of ``rollout/generated_reward_mean``
  where the run logs it (DAPO's dynamic sampling: every generated response, dropped groups included; the kept
  batch's ``rollout/reward_mean`` leaves out the all-correct and all-wrong groups) and ``rollout/reward_mean``
  at the other steps (nothing dropped: the same number);
* ``accuracy`` (%): the held-out accuracy of the final evaluation (``eval/average/accuracy``) with a 95% bootstrap
  interval over seeds (:func:`r1zero_analysis.verdicts.interval`: percentile method; one seed gives a zero-width
  interval at the point);
* ``length_correct`` / ``length_incorrect`` (tokens): ``rollout/response_length_correct`` / ``_incorrect``, mean
  over the last quarter of the steps that logged them (a step without a correct answer logs no correct length);
* ``tokens_per_kept``: generated tokens per kept response, mean over the logged steps of
  ``rollout/response_length_mean`` x ``rollout/generated_groups_per_kept`` (the latter logged only under
  ``algo.dynamic_sampling``; 1 where absent: no group was dropped). Approximate under dynamic sampling: it takes
  the dropped groups' responses to be as long as the kept ones (all-correct or all-wrong groups are often shorter or
  longer), and when the round cap was reached the ratio counts generated groups per kept group *with signal* while
  the mean length is over the whole batch, zero-signal fill included.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import style
from .aggregate import EVAL_AVG, LENGTH, LENGTH_CORRECT, LENGTH_INCORRECT, REWARD, require_metrics, varying
from .claims import OBJECTIVES
from .errors import NotApplicableError
from .loading import GROUP_COLS
from .verdicts import STATISTICS, _series, interval

#: Reward over every generated response (dynamic sampling only); ``REWARD`` is the kept batch's.
GENERATED_REWARD = "rollout/generated_reward_mean"
#: Generated groups per kept group with signal (dynamic sampling only).
GENERATED_PER_KEPT = "rollout/generated_groups_per_kept"
#: Row order: the paper's algos, then the presets beyond it (sweep=objectives), then the rest alphabetically.
ORDER = [*style.ALGO_LABELS, *OBJECTIVES]
COLUMNS = [*GROUP_COLS, "n_seeds", "seeds", "reward", "accuracy", "accuracy_lo", "accuracy_hi", "n_eval",
           "length_correct", "length_incorrect", "tokens_per_kept"]


def tokens_per_kept(run: pd.DataFrame) -> float:
    """Mean over one run's logged steps of response length x generated groups per kept one (1 when not logged)."""
    length = _series(run, LENGTH)
    if not len(length):
        return float("nan")
    ratio = _series(run, GENERATED_PER_KEPT).reindex(length.index).fillna(1.0)
    return float((length * ratio).sum() / len(length))


def run_stats(run: pd.DataFrame) -> dict[str, float]:
    """The table's per-run statistics of one run's metrics frame (one row per step)."""
    reward = _series(run, GENERATED_REWARD).combine_first(_series(run, REWARD))  # per step, where logged
    last_quarter, final = STATISTICS["last_quarter"], STATISTICS["final"]
    return {
        "reward": last_quarter(reward),
        "accuracy": final(_series(run, EVAL_AVG)),
        "length_correct": last_quarter(_series(run, LENGTH_CORRECT)),
        "length_incorrect": last_quarter(_series(run, LENGTH_INCORRECT)),
        "tokens_per_kept": tokens_per_kept(run),
    }


def objectives_frame(df: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (:data:`COLUMNS`): seeds, the per-run statistics' means over seeds, and the
    accuracy's 95% interval over the seeds that evaluated (``n_eval``); accuracy in %, lengths in tokens."""
    require_metrics(df, [REWARD, LENGTH], "objectives")
    records = []
    for keys, g in df.groupby(GROUP_COLS, dropna=False, sort=True):
        per_run = {run_dir: run_stats(run) for run_dir, run in g.groupby("run_dir", sort=True)}
        stats = pd.DataFrame.from_dict(per_run, orient="index")
        seeds = sorted(int(s) for s in g["seed"].dropna().unique())
        rec = {**dict(zip(GROUP_COLS, keys)), "n_seeds": len(per_run), "seeds": ",".join(map(str, seeds))}
        for col in ("reward", "length_correct", "length_incorrect", "tokens_per_kept"):
            values = stats[col].dropna()
            rec[col] = float(values.mean()) if len(values) else float("nan")
        acc = stats["accuracy"].dropna()
        rec["n_eval"] = len(acc)
        if len(acc):
            mean, lo, hi, _ = interval({k: 100 * v for k, v in acc.items()}, None)
            rec.update(accuracy=mean, accuracy_lo=lo, accuracy_hi=hi)
        records.append(rec)
    rank = {a: i for i, a in enumerate(ORDER)}
    records.sort(key=lambda r: (rank.get(r["algo"], len(rank)), str(r["algo"]), *(str(r[c]) for c in GROUP_COLS[1:])))
    return pd.DataFrame.from_records(records).reindex(columns=COLUMNS)


def _num(x: float, fmt: str) -> str:
    return "–" if pd.isna(x) else format(x, fmt)


def to_markdown(tab: pd.DataFrame) -> str:
    """Markdown with the configuration columns that vary (the others are in the caption)."""
    ids = ["algo", *varying(tab, GROUP_COLS[1:])]
    header = [*ids, "seeds", "reward", "held-out accuracy (%) [95% CI]", "length correct", "length incorrect",
              "generated tokens / kept response"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * (len(ids) + 1) + ["---:"] * 5) + "|"]
    for _, r in tab.iterrows():
        acc = "–"
        if pd.notna(r["accuracy"]):
            acc = f"{r['accuracy']:.1f} [{r['accuracy_lo']:.1f}, {r['accuracy_hi']:.1f}]"
            if r["n_eval"] < r["n_seeds"]:
                acc += f" ({r['n_eval']} of {r['n_seeds']} seeds)"
        cells = [str(r[c]) for c in ids] + [f"{r['n_seeds']} ({r['seeds'] or '–'})", _num(r["reward"], ".3f"), acc,
                                            _num(r["length_correct"], ".1f"), _num(r["length_incorrect"], ".1f"),
                                            _num(r["tokens_per_kept"], ".1f")]
        lines.append("| " + " | ".join(c.replace("|", "\\|").replace("_", "\\_") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def caption(tab: pd.DataFrame) -> str:
    fixed = [c for c in GROUP_COLS[1:] if c not in varying(tab, GROUP_COLS[1:])]
    setting = " · ".join(f"{c}={tab[c].iloc[0]}" for c in fixed)
    return (f"Per algo{f' ({setting})' if setting else ''}, the mean over seeds of: the training reward (mean over "
            "the last quarter of the logged steps; under dynamic sampling every generated response's), the final "
            "held-out accuracy (`eval/average/accuracy`, 95% bootstrap interval over seeds), the mean length in "
            "tokens of correct and incorrect training responses (last quarter), and the generated tokens per kept "
            "response (response length x generated groups per kept group, mean over the steps; approximate when "
            "dynamic sampling dropped groups of another length). analysis/objectives.py.")


def objectives(df: pd.DataFrame, out: Path, *, need_preset: bool = False) -> style.Output:
    """Write ``table_objectives.md`` and ``table_objectives.csv`` into ``out``.

    ``need_preset``: raise :class:`~r1zero_analysis.errors.NotApplicableError` unless a run is of a preset beyond
    the paper (:data:`r1zero_analysis.claims.OBJECTIVES`); ``all`` asks for it, so sweeps without one are skipped.
    """
    if need_preset and not set(df["algo"].astype(str)) & set(OBJECTIVES):
        found = ", ".join(sorted(map(str, df["algo"].unique())))
        raise NotApplicableError(f"objectives needs a run of a preset beyond the paper ({', '.join(OBJECTIVES)}); "
                                 f"found algo: {found} (the command 'objectives' makes the table from any runs)")
    tab = objectives_frame(df)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "table_objectives.md", "csv": out / "table_objectives.csv"}
    text = caption(tab)
    paths["md"].write_text(f"{text}\n\n{to_markdown(tab)}")
    tab.to_csv(paths["csv"], index=False)
    return style.Output("objectives", "Objectives: seed table per algo", paths, text)

