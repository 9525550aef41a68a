"""Length-stratified training dynamics: ``lengths.{png,pdf,csv}``.

Panels over training steps, one row per run group (``algo``/``template``/``data``/``model`` where they vary),
seeds aggregated (mean line, min-max band):

1. share of the rollout's responses per length bucket (``rollout/length_bucket/<bucket>/frac``, %),
2. accuracy per bucket (``.../accuracy``, %),
3. mean advantage per bucket (``.../advantage_mean``),
4. length of correct vs incorrect responses (``rollout/response_length_correct`` / ``_incorrect``, tokens),
5. share of groups with all-equal rewards, i.e. no learning signal (``rollout/zero_signal_group_frac``, %),
6. when evaluated: accuracy per bucket averaged over benchmarks (``eval/average/length_bucket/<bucket>/accuracy``).

Buckets are fractions of ``max_new_tokens`` (``r1zero.evaluate.lengths``: ``0-0.125``, ``0.125-0.25``, ``0.25-0.5``,
``0.5-1``, ``truncated``); they are read from the column names, so this module needs no training code.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from . import style
from .aggregate import LENGTH_CORRECT, LENGTH_INCORRECT, seed_stats, smooth, varying
from .errors import MissingMetricError
from .loading import GROUP_COLS
from .plots import Panel, _caption, _curves

ZERO_SIGNAL = "rollout/zero_signal_group_frac"
_BUCKET_RE = re.compile(r"^(?P<ns>rollout|eval/average)/length_bucket/(?P<bucket>[^/]+)/(?P<stat>[a-z_]+)$")
TRUNCATED = "truncated"
#: Short to long responses from light to dark blue; truncated ones red.
_BUCKET_SHADES = ["#a6cee3", "#4a90c8", "#1f4e9c", "#081d58"]
_OTHER_LINES = {"correct": ("#2ca02c", "correct"), "incorrect": ("#ff7f0e", "incorrect"),
                "no signal": ("#7f7f7f", "groups without signal")}

PANELS = [
    Panel("rollout/length_bucket/*/frac", "Responses by length", "share (%)", 100.0),
    Panel("rollout/length_bucket/*/accuracy", "Accuracy by length", "accuracy (%)", 100.0),
    Panel("rollout/length_bucket/*/advantage_mean", "Mean advantage by length", "advantage"),
    Panel("rollout/response_length_*", "Length, correct vs incorrect", "length (tokens)"),
    Panel(ZERO_SIGNAL, "Groups without signal", "share (%)", 100.0),
]
EVAL_PANEL = Panel("eval/average/length_bucket/*/accuracy", "Eval accuracy by length", "accuracy (%)", 100.0, True)


def _bucket_key(name: str) -> tuple[float, str]:
    if name == TRUNCATED:
        return (float("inf"), name)
    try:
        return (float(name.split("-")[0]), name)
    except ValueError:
        return (float("inf"), name)


def bucket_label(name: str) -> str:
    """``0.125-0.25`` -> ``1/8-1/4 budget``; ``truncated`` stays."""
    fractions = {"0": "0", "0.125": "1/8", "0.25": "1/4", "0.5": "1/2", "1": "1"}
    lo, sep, hi = name.partition("-")
    if not sep or lo not in fractions or hi not in fractions:
        return name
    return f"{fractions[lo]}-{fractions[hi]} budget"


def _series(metric: str) -> tuple[str, str] | None:
    """(panel metric, line) of a logged metric this figure draws, else None."""
    m = _BUCKET_RE.match(metric)
    if m:
        return f"{m['ns']}/length_bucket/*/{m['stat']}", m["bucket"]
    if metric in (LENGTH_CORRECT, LENGTH_INCORRECT):
        return "rollout/response_length_*", metric.rsplit("_", 1)[1]
    if metric == ZERO_SIGNAL:
        return ZERO_SIGNAL, "no signal"
    return None


def lengths(df: pd.DataFrame, out: Path, smooth_window: int = 1) -> style.Output:
    """Write the length-stratified figure (see the module docstring) and its data.

    Raises:
        MissingMetricError: no run logs ``rollout/length_bucket/<bucket>/frac`` (runs from before the buckets).
    """
    metrics = [c for c in df.columns if _series(c) is not None and df[c].notna().any()]
    buckets = sorted({_BUCKET_RE.match(c)["bucket"] for c in metrics if _BUCKET_RE.match(c)}, key=_bucket_key)
    if not any(c.startswith("rollout/length_bucket/") and c.endswith("/frac") for c in metrics):
        raise MissingMetricError("lengths: no run logs 'rollout/length_bucket/<bucket>/frac' "
                                 "(runs from before the length buckets; see docs/design.md for metric names)")
    df = smooth(df, smooth_window, [c for c in metrics if c.startswith("rollout/")])
    row_cols = varying(df, GROUP_COLS)
    stats = seed_stats(df, GROUP_COLS, metrics)
    mapped = stats["metric"].map(_series)
    plot_stats = stats.assign(metric=[p for p, _ in mapped], line=[line for _, line in mapped])
    panels = PANELS + ([EVAL_PANEL] if any(c.startswith("eval/") for c in metrics) else [])
    shades = {b: _BUCKET_SHADES[i] if i < len(_BUCKET_SHADES) else style.palette_color(i)
              for i, b in enumerate(b for b in buckets if b != TRUNCATED)}
    shades[TRUNCATED] = "#d62728"
    lines = [*buckets, *_OTHER_LINES]

    def color(line: str) -> str:
        return _OTHER_LINES[line][0] if line in _OTHER_LINES else shades[line]

    def label(line: str) -> str:
        return _OTHER_LINES[line][1] if line in _OTHER_LINES else bucket_label(line)

    with style.paper_style():
        fig = _curves(plot_stats, row_cols, None, [], panels, "line", lines, color, label)
        paths = style.save(fig, stats, out, "lengths")
    caption = ("Responses bucketed by length / max_new_tokens; accuracy and advantage per bucket, correct vs "
               "incorrect lengths and the share of groups whose rewards are all equal (no gradient). "
               + _caption(df, GROUP_COLS))
    return style.Output("lengths", "Length-stratified training dynamics", paths, caption.strip())
