"""The paper's training-curve figures: dynamics (Fig. 5), ablation (Fig. 8) and duet (Fig. 6).

Each figure aggregates seeds (mean line, min-max band) and writes PNG + PDF + the aggregated data
as CSV. CSV values keep the units of ``metrics.jsonl`` (accuracies as fractions in [0, 1]); the
figures show accuracies in percent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import style
from .aggregate import (
    EVAL_AVG,
    EVAL_LENGTH_CORRECT,
    EVAL_LENGTH_INCORRECT,
    LENGTH,
    LENGTH_CORRECT,
    LENGTH_INCORRECT,
    REWARD,
    allow_absent,
    need_values,
    require_metrics,
    seed_stats,
    settings,
    smooth,
    varying,
)
from .errors import NotApplicableError, warn

DYNAMICS_ALGOS = ["grpo", "drgrpo"]
ABLATION_ALGOS = ["grpo", "drgrpo", "grpo_no_len_norm", "grpo_no_std_norm"]
TEMPLATE_ORDER = ["r1", "qwen_math", "no"]
DATA_ORDER = ["orz57k", "math12k", "gsm8k", "asdiv"]
SETTING_COLS = ["model", "template", "data"]


@dataclass(frozen=True)
class Panel:
    """One subplot: which metric, its title and y label, and how to scale it for display."""

    metric: str
    title: str
    ylabel: str
    scale: float = 1.0
    eval_points: bool = False  # sparse eval metrics get markers so single points stay visible


REWARD_PANEL = Panel(REWARD, "Training reward", "reward")
LENGTH_PANEL = Panel(LENGTH, "Response length", "length (tokens)")
CORRECT_PANEL = Panel(LENGTH_CORRECT, "Length of correct responses", "length (tokens)")
INCORRECT_PANEL = Panel(LENGTH_INCORRECT, "Length of incorrect responses", "length (tokens)")
INCORRECT_FINISHED_PANEL = Panel("rollout/response_length_incorrect_finished", "Incorrect, not truncated",
                                 "length (tokens)")
EVAL_PANEL = Panel(EVAL_AVG, "Eval accuracy (avg.)", "accuracy (%)", 100.0, True)
EVAL_CORRECT_PANEL = Panel(EVAL_LENGTH_CORRECT, "Eval length, correct", "length (tokens)", 1.0, True)
EVAL_INCORRECT_PANEL = Panel(EVAL_LENGTH_INCORRECT, "Eval length, incorrect", "length (tokens)", 1.0, True)


def _curves(
    stats: pd.DataFrame,
    row_cols: Sequence[str],
    col_key: str | None,
    col_values: Sequence[str],
    panels: Sequence[Panel],
    line_col: str,
    lines: Sequence[str],
    color: Callable[[str], str],
    label: Callable[[str], str],
    col_title: Callable[[str], str] = str,
    sharey: bool = False,
):
    """Grid of panels: one row per setting of ``row_cols`` (titled with it when there are several);
    columns are the ``panels``, or with ``col_key`` one column per value of it showing ``panels[0]``."""
    rows = settings(stats, row_cols)
    ncols = len(col_values) if col_key else len(panels)
    titled = bool(row_cols) and len(rows) > 1
    fig = style.new_canvas(len(rows), ncols, extra_h=0.2 * len(rows) if titled else 0.0)
    subfigs = fig.subfigures(len(rows), 1, squeeze=False)[:, 0]
    all_axes = []
    for subfig, row_vals in zip(subfigs, rows):
        axes = subfig.subplots(1, ncols, squeeze=False, sharey=sharey)[0]
        all_axes.extend(axes)
        if titled:
            subfig.suptitle(style.setting_title(row_cols, row_vals), fontsize=8, fontweight="bold")
        in_row = stats
        for c, v in zip(row_cols, row_vals):
            in_row = in_row[in_row[c] == v]
        for j, ax in enumerate(axes):
            panel = panels[0] if col_key else panels[j]
            part = in_row[in_row["metric"] == panel.metric]
            if col_key:
                part = part[part[col_key] == col_values[j]]
            for line in lines:
                sub = part[part[line_col] == line].sort_values("step")
                if sub.empty:
                    continue
                style.band(
                    ax,
                    sub["step"],
                    sub["mean"] * panel.scale,
                    sub["min"] * panel.scale,
                    sub["max"] * panel.scale,
                    color(line),
                    label(line),
                    marker="o" if panel.eval_points else None,
                )
            ax.set_title(col_title(col_values[j]) if col_key else panel.title)
            ax.set_xlabel("training step")
            ax.set_ylabel(panel.ylabel)
            if not ax.lines:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="0.5")
    style.legend(fig, all_axes, [label(line) for line in lines])
    return fig


def _logged(df: pd.DataFrame, panels: Sequence[Panel], droppable: Sequence[Panel], what: str,
            notes: list[str]) -> list[Panel]:
    """``panels`` less the ``droppable`` ones that no run logs (a run without evaluation, e.g.
    ``experiment=length_bias``; runs from before ``rollout/response_length_incorrect_finished``), noted."""
    absent = [p for p in droppable if p.metric not in df.columns or df[p.metric].isna().all()]
    if absent:
        notes.append(f"no run logs {', '.join(p.metric for p in absent)}: panel(s) left out")
        warn(f"{what}: no run logs {', '.join(repr(p.metric) for p in absent)}; those panels are left out")
    return [p for p in panels if p not in absent]


def _caption(df: pd.DataFrame, cols: Sequence[str]) -> str:
    fixed = [c for c in cols if df[c].nunique(dropna=False) == 1]
    return style.setting_title(fixed, [df[c].iloc[0] for c in fixed])


def dynamics(df: pd.DataFrame, out: Path, smooth_window: int = 1) -> style.Output:
    """Fig. 5: GRPO vs Dr. GRPO over training steps.

    The paper's panels first: training reward, the lengths of correct and incorrect *evaluation* answers
    (``eval/average/response_length_correct`` / ``_incorrect``), eval accuracy; then the rollout lengths
    (overall, correct, incorrect) as extra panels. A length never logged (no correct answer yet, or a run
    from before these metrics existed) is a "no data" panel; runs that never evaluate (``eval.every=0``) have no
    eval panels."""
    df = need_values(df, "algo", DYNAMICS_ALGOS, len(DYNAMICS_ALGOS), "dynamics", SETTING_COLS)
    notes: list[str] = []
    panels = _logged(df, [REWARD_PANEL, EVAL_CORRECT_PANEL, EVAL_INCORRECT_PANEL, EVAL_PANEL, LENGTH_PANEL,
                          CORRECT_PANEL, INCORRECT_PANEL], [EVAL_PANEL], "dynamics", notes)
    if EVAL_PANEL not in panels:
        panels = [p for p in panels if p not in (EVAL_CORRECT_PANEL, EVAL_INCORRECT_PANEL)]
    optional = [p for p in (EVAL_CORRECT_PANEL, EVAL_INCORRECT_PANEL, CORRECT_PANEL, INCORRECT_PANEL) if p in panels]
    df = allow_absent(df, [p.metric for p in optional], "dynamics")
    require_metrics(df, [p.metric for p in panels if p not in optional], "dynamics")
    df = smooth(df, smooth_window)
    row_cols = varying(df, SETTING_COLS)
    stats = seed_stats(df, [*SETTING_COLS, "algo"], [p.metric for p in panels])
    algos = style.ordered(df["algo"].unique(), DYNAMICS_ALGOS)
    with style.paper_style():
        fig = _curves(stats, row_cols, None, [], panels, "algo", algos, style.algo_color, style.algo_label)
        paths = style.save(fig, stats, out, "dynamics")
    return style.Output(
        "dynamics", "Training dynamics: GRPO vs Dr. GRPO (Fig. 5)", paths, _caption(df, SETTING_COLS), notes
    )


def ablation(df: pd.DataFrame, out: Path, smooth_window: int = 1) -> style.Output:
    """Fig. 8: the four algo variants, mean over seeds with a min-max band."""
    df = need_values(df, "algo", ABLATION_ALGOS, 2, "ablation", SETTING_COLS)
    notes = []
    absent = [a for a in ABLATION_ALGOS if a not in set(df["algo"])]
    if absent:
        notes.append(f"no runs for {', '.join(absent)}")
        warn(f"ablation: no runs for {', '.join(absent)}; plotting the others")
    panels = _logged(df, [REWARD_PANEL, CORRECT_PANEL, INCORRECT_PANEL, INCORRECT_FINISHED_PANEL, EVAL_PANEL],
                     [INCORRECT_FINISHED_PANEL, EVAL_PANEL], "ablation", notes)
    df = allow_absent(df, [CORRECT_PANEL.metric, INCORRECT_PANEL.metric], "ablation")
    require_metrics(df, [p.metric for p in panels if p not in (CORRECT_PANEL, INCORRECT_PANEL)], "ablation")
    df = smooth(df, smooth_window)
    row_cols = varying(df, SETTING_COLS)
    stats = seed_stats(df, [*SETTING_COLS, "algo"], [p.metric for p in panels])
    algos = style.ordered(df["algo"].unique(), ABLATION_ALGOS)
    with style.paper_style():
        fig = _curves(stats, row_cols, None, [], panels, "algo", algos, style.algo_color, style.algo_label)
        paths = style.save(fig, stats, out, "ablation")
    return style.Output(
        "ablation",
        "Ablation of GRPO's normalisation terms (Fig. 8)",
        paths,
        _caption(df, SETTING_COLS),
        notes,
    )


def duet(df: pd.DataFrame, out: Path) -> style.Output:
    """Fig. 6: templates x question sets, average benchmark accuracy over steps.

    One column per template, one line per question set; further rows if models or algos differ.
    """
    # Only (model, algo) settings trained with several templates form a duet; the rest (e.g. the
    # ablation runs of a shared sweep) would be rows of single, uninformative panels.
    n_templates = df.groupby(["model", "algo"])["template"].transform("nunique")
    if (n_templates < 2).all():
        found = ", ".join(style.ordered(df["template"].unique(), TEMPLATE_ORDER))
        if df["template"].nunique() < 2:
            raise NotApplicableError(
                f"duet needs runs with at least 2 templates (template.name); found only: {found}"
            )
        raise NotApplicableError(
            f"duet needs runs of one model and algo with at least 2 templates (template.name); "
            f"templates found ({found}) are each from a different model/algo"
        )
    df = df[n_templates >= 2]
    templates = style.ordered(df["template"].unique(), TEMPLATE_ORDER)
    require_metrics(df, [EVAL_AVG], "duet")
    by = ["model", "algo", "template", "data"]
    stats = seed_stats(df, by, [EVAL_AVG])
    row_cols = varying(df, ["model", "algo"])
    datas = style.ordered(df["data"].unique(), DATA_ORDER)
    with style.paper_style():
        fig = _curves(
            stats,
            row_cols,
            "template",
            templates,
            [EVAL_PANEL],
            "data",
            datas,
            style.data_color,
            style.data_label,
            style.template_label,
            sharey=True,
        )
        paths = style.save(fig, stats, out, "duet")
    return style.Output(
        "duet", "Template x question-set duet (Fig. 6)", paths, _caption(df, ["model", "algo"])
    )
