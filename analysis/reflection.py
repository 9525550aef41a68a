"""Self-reflection analysis (the paper's Fig. 3 and Fig. 15): how often responses contain
self-reflection keywords, and how accurate responses with and without them are.

Keyword detection is the paper's (analysis/keyword_count.py): its 15 keywords by default, each a
case-insensitive substring ("recheck" counts in "Rechecking"). The paper then keeps only responses that an LLM
judge also flags; that cross-check is not reproduced, so these are keyword-only counts.
Counts are pooled over the seeds of a run group (and over benchmarks for eval samples), so each
fraction is a ratio of pooled counts rather than a mean of per-seed ratios.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from . import style
from .aggregate import varying
from .loading import GROUP_COLS

#: The paper's 15-keyword pool (sail-sg/understand-r1-zero, analysis/keyword_count.py ``keyword_pool``).
PAPER_KEYWORDS: tuple[str, ...] = (
    "recheck",
    "rethink",
    "reassess",
    "reevaluate",
    "re-evaluate",
    "reevaluation",
    "re-examine",
    "reexamine",
    "reconsider",
    "reanalyze",
    "double-check",
    "check again",
    "think again",
    "verify again",
    "go over the steps",
)
#: Common R1-style markers outside the paper's pool; opt-in (``--extra-keywords``).
EXTRA_KEYWORDS: tuple[str, ...] = ("wait", "retry", "let me check", "alternatively")
#: The default pool: the paper's.
DEFAULT_KEYWORDS: tuple[str, ...] = PAPER_KEYWORDS
STAT_COLUMNS = [
    "n_runs",
    "n_responses",
    "n_reflect",
    "reflect_frac",
    "accuracy",
    "acc_reflect",
    "acc_no_reflect",
]


def keyword_pattern(keywords: Iterable[str] = DEFAULT_KEYWORDS) -> re.Pattern[str]:
    """One regex matching any keyword as the paper matches it: a case-insensitive substring, spaces literal.

    keyword_count.py tests ``response.lower().count(keyword) > 0``, so ``recheck`` also counts in
    ``rechecking`` (and ``wait``, when opted in, in ``awaiting``).

    Raises:
        ValueError: no non-blank keyword.
    """
    parts = [re.escape(kw.lower()) for kw in keywords if kw.strip()]
    if not parts:
        raise ValueError("no reflection keywords given")
    return re.compile("|".join(parts), re.IGNORECASE)


def has_reflection(responses: pd.Series, pattern: re.Pattern[str]) -> pd.Series:
    """Boolean series: does each response contain a self-reflection keyword?"""
    return responses.map(lambda text: pattern.search(text) is not None).astype(bool)


def reflection_stats(samples: pd.DataFrame, keywords: Iterable[str] = DEFAULT_KEYWORDS) -> pd.DataFrame:
    """Per run group x source x step: reflection fraction and accuracy with / without reflection.

    ``samples`` is :func:`r1zero_analysis.samples.samples_frame`, with a ``response`` column or an already
    computed ``reflect`` column. Accuracies are NaN where no response falls in the subset (e.g.
    ``acc_reflect`` at a step without any reflective response).
    """
    s = samples.copy()
    if "reflect" not in s.columns:
        s["reflect"] = has_reflection(s["response"], keyword_pattern(keywords))
    s["reflect"] = s["reflect"].astype(bool)
    s["correct"] = s["correct"].astype(bool)
    s["correct_reflect"] = s["correct"] & s["reflect"]
    s["correct_no_reflect"] = s["correct"] & ~s["reflect"]
    by = [*GROUP_COLS, "source", "step"]
    g = s.groupby(by, dropna=False, sort=True)
    out = g.agg(
        n_runs=("run_dir", "nunique"),
        n_responses=("reflect", "size"),
        n_reflect=("reflect", "sum"),
        n_correct=("correct", "sum"),
        n_correct_reflect=("correct_reflect", "sum"),
        n_correct_no_reflect=("correct_no_reflect", "sum"),
    ).reset_index()
    n_no = out["n_responses"] - out["n_reflect"]
    out["reflect_frac"] = out["n_reflect"] / out["n_responses"]
    out["accuracy"] = out["n_correct"] / out["n_responses"]
    out["acc_reflect"] = out["n_correct_reflect"] / out["n_reflect"].replace(0, np.nan)
    out["acc_no_reflect"] = out["n_correct_no_reflect"] / n_no.replace(0, np.nan)
    return out[[*by, *STAT_COLUMNS, "n_correct", "n_correct_reflect", "n_correct_no_reflect"]]


def _groups(stats: pd.DataFrame) -> pd.DataFrame:
    """Distinct run groups, GRPO-family algos in the paper's order first."""
    groups = stats[GROUP_COLS].drop_duplicates()
    rank = {a: i for i, a in enumerate(style.ALGO_LABELS)}
    key = groups["algo"].map(lambda a: rank.get(a, len(rank)))
    return groups.assign(_rank=key).sort_values(["_rank", *GROUP_COLS]).drop(columns="_rank")


def _group_label(row: pd.Series, cols: Sequence[str]) -> str:
    if not cols:
        return style.algo_label(row["algo"])
    return " / ".join(style.algo_label(row[c]) if c == "algo" else str(row[c]) for c in cols)


def _group_color(row: pd.Series, cols: Sequence[str], index: int) -> str:
    # Algo colours are only meaningful when algo is what tells the lines apart.
    if list(cols) in ([], ["algo"]):
        return style.algo_color(row["algo"])
    return style.palette_color(index)


def _plot_source(axes, stats: pd.DataFrame, cols: Sequence[str], source: str) -> None:
    ax_frac, ax_acc = axes
    groups = _groups(stats)
    per_step = stats["step"].notna().any()
    for i, (_, g) in enumerate(groups.iterrows()):
        part = stats.loc[(stats[GROUP_COLS] == g.values).all(axis=1)]
        label = _group_label(g, cols)
        color = _group_color(g, cols, i)
        if per_step:
            part = part[part["step"].notna()].sort_values("step")
            x = part["step"].astype(float)
            ax_frac.plot(x, part["reflect_frac"] * 100, color=color, label=label, marker="o", markersize=2.5)
            ax_acc.plot(x, part["acc_reflect"] * 100, color=color, marker="o", markersize=2.5)
            ax_acc.plot(
                x, part["acc_no_reflect"] * 100, color=color, linestyle="--", marker="x", markersize=2.5
            )
        else:
            # Standalone evaluations carry no training step: one bar per group instead of a curve.
            total = part[["n_responses", "n_reflect", "n_correct_reflect", "n_correct_no_reflect"]].sum()
            n_no = total["n_responses"] - total["n_reflect"]
            ax_frac.bar(i, 100 * total["n_reflect"] / total["n_responses"], color=color, label=label)
            ax_acc.bar(
                i - 0.2, 100 * total["n_correct_reflect"] / max(total["n_reflect"], 1), 0.4, color=color
            )
            ax_acc.bar(
                i + 0.2,
                100 * total["n_correct_no_reflect"] / max(n_no, 1),
                0.4,
                color=color,
                alpha=0.45,
                hatch="//",
            )
    for ax in axes:
        ax.set_xlabel("training step" if per_step else "run group")
        if not per_step:
            ax.set_xticks(range(len(groups)))
    ax_frac.set_title(f"Reflective responses ({source})")
    ax_frac.set_ylabel("share of responses (%)")
    ax_acc.set_title(f"Accuracy ({source})")
    ax_acc.set_ylabel("accuracy (%)")


def detector(keywords: Iterable[str] = DEFAULT_KEYWORDS) -> Callable[[str], bool]:
    """A ``detect`` function for :func:`r1zero_analysis.samples.samples_frame`."""
    pattern = keyword_pattern(keywords)
    return lambda text: pattern.search(text) is not None


def reflection(samples: pd.DataFrame, out: Path, keywords: Iterable[str] = DEFAULT_KEYWORDS) -> style.Output:
    """Write ``reflection.png/.pdf`` and ``reflection.csv``: one panel row per sample source.

    ``samples`` is :func:`r1zero_analysis.samples.samples_frame` (with ``detect=detector(keywords)`` for
    large logs, so response texts are not held in memory)."""
    keywords = tuple(keywords)
    stats = reflection_stats(samples, keywords)
    sources = [s for s in ("train", "eval") if s in set(stats["source"])]
    cols = varying(stats, GROUP_COLS)
    with style.paper_style():
        fig, axes = style.new_figure(len(sources), 2, extra_h=0.3)
        for row, source in zip(axes, sources):
            _plot_source(row, stats[stats["source"] == source], cols, source)
        order = [_group_label(g, cols) for _, g in _groups(stats).iterrows()]
        styles = {
            "with reflection": Line2D([], [], color="0.3"),
            "without reflection": Line2D([], [], color="0.3", linestyle="--"),
        }
        if not stats["step"].notna().any():
            styles = {
                "with reflection": Patch(color="0.3"),
                "without reflection": Patch(color="0.3", alpha=0.45, hatch="//"),
            }
        style.legend(fig, [row[0] for row in axes], order, styles)
        paths = style.save(fig, stats, out, "reflection")
    caption = (f"Keywords (case-insensitive substrings, as the paper's keyword_count.py): {', '.join(keywords)}. "
               "Keyword detection only: the paper's LLM cross-check of each response is not reproduced.")
    return style.Output("reflection", "Self-reflection keywords and accuracy (Fig. 3 / 15)", paths, caption)
