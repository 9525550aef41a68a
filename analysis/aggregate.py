"""Aggregations shared by the figures and the table: seed statistics, step picks, metric checks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .errors import MissingMetricError, NotApplicableError, warn
from .loading import GROUP_COLS

#: Metric names from docs/design.md.
REWARD = "rollout/reward_mean"
LENGTH = "rollout/response_length_mean"
LENGTH_CORRECT = "rollout/response_length_correct"
LENGTH_INCORRECT = "rollout/response_length_incorrect"
EVAL_AVG = "eval/average/accuracy"
#: Fig. 5's length panels: mean tokens of correct / incorrect evaluation answers, averaged over benchmarks.
EVAL_LENGTH_CORRECT = "eval/average/response_length_correct"
EVAL_LENGTH_INCORRECT = "eval/average/response_length_incorrect"
#: Training-time metrics that ``--smooth`` may smooth; eval points are never smoothed because
#: they are sparse and each one is already an average over a benchmark.
SMOOTHABLE = (REWARD, LENGTH, LENGTH_CORRECT, LENGTH_INCORRECT, "rollout/response_length_incorrect_finished")
#: Columns of every aggregated (figure CSV) frame after the grouping columns.
STAT_COLS = ["metric", "step", "mean", "min", "max", "n_seeds"]


def require_metrics(df: pd.DataFrame, metrics: Sequence[str], what: str) -> None:
    """Raise :class:`MissingMetricError` naming every metric in ``metrics`` that no run logs.

    A metric logged by some runs only is tolerated (with a warning naming the runs), because e.g.
    ``rollout/response_length_correct`` is legitimately absent while a run never answers correctly.
    """
    runs = df["run_dir"].unique()
    absent = [m for m in metrics if m not in df.columns or df[m].isna().all()]
    if absent:
        raise MissingMetricError(
            f"{what}: no run logs {', '.join(repr(m) for m in absent)} "
            f"(checked {len(runs)} run{'s' if len(runs) != 1 else ''}; see docs/design.md for metric names)"
        )
    for m in metrics:
        logged = df.loc[df[m].notna(), "run_dir"].unique()
        missing = sorted(set(runs) - set(logged))
        if missing:
            warn(f"{what}: {len(missing)} run(s) never log {m!r}, e.g. {missing[0]}")


def allow_absent(df: pd.DataFrame, metrics: Sequence[str], what: str) -> pd.DataFrame:
    """Add all-NaN columns for ``metrics`` that no run logs (drawn as "no data" panels), with a warning.

    For metrics whose absence is a finding, not a logging bug: ``rollout/response_length_correct`` is
    never logged by a run that never answers correctly (e.g. a toy run of a random model).
    """
    absent = [m for m in metrics if m not in df.columns or df[m].isna().all()]
    if absent:
        warn(f"{what}: no run logs {', '.join(repr(m) for m in absent)}; those panels show 'no data'")
        df = df.copy()
        for m in absent:
            df[m] = float("nan")
    return df


def smooth(df: pd.DataFrame, window: int, metrics: Sequence[str] = SMOOTHABLE) -> pd.DataFrame:
    """Trailing rolling mean of the training metrics over ``window`` logged steps, per run."""
    if window <= 1:
        return df
    df = df.sort_values(["run_dir", "step"]).copy()
    for m in metrics:
        if m in df.columns:
            df[m] = df.groupby("run_dir")[m].transform(lambda s: s.rolling(window, min_periods=1).mean())
    return df


def seed_stats(df: pd.DataFrame, by: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Mean, min and max over runs (seeds) of each metric at each step, for each ``by`` group.

    Only steps where a run logged the metric count (so eval metrics give eval-step points only), and
    ``n_seeds`` says how many runs contributed: a crashed seed shortens it instead of hiding the step.
    """
    frames = []
    for m in metrics:
        part = df.loc[df[m].notna(), [*by, "run_dir", "step", m]]
        g = part.groupby([*by, "step"], sort=True, dropna=False)[m]
        stats = g.agg(["mean", "min", "max", "count"]).reset_index()
        stats = stats.rename(columns={"count": "n_seeds"})
        stats.insert(len(by), "metric", m)
        frames.append(stats)
    out = pd.concat(frames, ignore_index=True)
    return out[[*by, *STAT_COLS]]


def pick_step(run: pd.DataFrame, metric: str, pick: str) -> pd.Series | None:
    """The row of one run's frame chosen by ``pick``: ``final`` = last step logging ``metric``,
    ``best`` = step with the highest ``metric`` (earliest on ties). ``None`` if never logged."""
    logged = run[run[metric].notna()].sort_values("step")
    if logged.empty:
        return None
    if pick == "final":
        return logged.iloc[-1]
    if pick == "best":
        # idxmax returns the first maximum, i.e. the earliest step among ties.
        return logged.loc[logged[metric].idxmax()]
    raise ValueError(f"pick must be 'final' or 'best', not {pick!r}")


def settings(df: pd.DataFrame, cols: Sequence[str]) -> list[tuple]:
    """Distinct value tuples of ``cols`` in ``df``, sorted, as the rows of a faceted figure."""
    if not cols:
        return [()]
    return sorted(df[list(cols)].drop_duplicates().itertuples(index=False, name=None), key=str)


def varying(df: pd.DataFrame, cols: Sequence[str] = GROUP_COLS) -> list[str]:
    """The columns among ``cols`` that take more than one value in ``df``."""
    return [c for c in cols if df[c].nunique(dropna=False) > 1]


def need_values(
    df: pd.DataFrame, col: str, wanted: Sequence[str], at_least: int, what: str, within: Sequence[str] = ()
) -> pd.DataFrame:
    """Rows whose ``col`` is in ``wanted``, restricted to the ``within`` settings (e.g. model /
    template / data) that hold at least ``at_least`` of the wanted values, so that a figure only
    compares like with like. :class:`NotApplicableError` if no setting qualifies."""
    rows = df[df[col].isin(wanted)]
    need = "all" if at_least == len(wanted) else f"at least {at_least}"
    found = ", ".join(sorted(map(str, df[col].unique()))) or "none"
    if rows[col].nunique() < at_least:
        raise NotApplicableError(
            f"{what} needs runs with {col} in {{{', '.join(wanted)}}} ({need} of them); found {col}: {found}"
        )
    if within:
        counts = rows.groupby(list(within), dropna=False)[col].nunique()
        keep = counts[counts >= at_least].index
        rows = rows[rows.set_index(list(within)).index.isin(keep)]
        if rows.empty:
            raise NotApplicableError(
                f"{what} needs runs with {col} in {{{', '.join(wanted)}}} ({need} of them) that share one "
                f"{'/'.join(within)} setting; no setting has them"
            )
    return rows


def percent(x: float | np.floating) -> float:
    """A [0, 1] fraction as a percentage rounded to 4 decimals (avoids float noise in CSVs)."""
    return float(np.round(float(x) * 100.0, 4))
