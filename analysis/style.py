"""Fixed colours, labels and the paper-size figure style, plus writing a figure with its data.

Colours are a fixed mapping (not a colour cycle) so that GRPO is red and Dr. GRPO blue in every
figure, as in the paper, whichever subset of runs a figure shows.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

ALGO_LABELS = {
    "grpo": "GRPO",
    "drgrpo": "Dr. GRPO",
    "grpo_no_len_norm": "GRPO w/o length norm.",
    "grpo_no_std_norm": "GRPO w/o std norm.",
    "token_mean": "Token-mean loss (DAPO)",
}
ALGO_COLORS = {
    "grpo": "#d62728",  # red, as in the paper
    "drgrpo": "#1f77b4",  # blue, as in the paper
    "grpo_no_len_norm": "#ff7f0e",
    "grpo_no_std_norm": "#2ca02c",
    "token_mean": "#9467bd",
}
TEMPLATE_LABELS = {"r1": "R1 template", "qwen_math": "Qwen-Math template", "no": "No template"}
DATA_LABELS = {
    "orz57k": "ORZ-57K",
    "math12k": "MATH-12K",
    "gsm8k": "GSM-8K",
    "asdiv": "ASDiv",
    "math_lvl3to5": "MATH L3-5",
}
DATA_COLORS = {
    "orz57k": "#9467bd",
    "math12k": "#1f77b4",
    "gsm8k": "#2ca02c",
    "asdiv": "#ff7f0e",
    "math_lvl3to5": "#8c564b",
}
#: For names outside the fixed maps; picked by a stable hash so a name keeps its colour across runs.
_EXTRA_COLORS = ["#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#843c39"]

_PALETTE = [
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]

# Two-column paper width is ~7 in; 8-pt text stays legible when the PDF is scaled to that width.
PANEL_W, PANEL_H = 1.75, 1.55
RC = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "lines.linewidth": 1.3,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "pdf.fonttype": 42,  # TrueType in PDFs so text stays editable/searchable
}
PNG_DPI = 200


@dataclass
class Output:
    """What one analysis wrote: a figure (png/pdf/csv) or a table (md/csv), for ``index.md``."""

    name: str
    title: str
    paths: dict[str, Path]
    caption: str = ""
    notes: list[str] = field(default_factory=list)


def paper_style():
    """Context manager applying the paper-size rc settings without touching global rcParams."""
    return matplotlib.rc_context(RC)


def _hashed(name: str) -> str:
    return _EXTRA_COLORS[zlib.crc32(name.encode()) % len(_EXTRA_COLORS)]


def palette_color(index: int) -> str:
    """The ``index``-th colour of a qualitative palette, for lines with no fixed colour."""
    return _PALETTE[index % len(_PALETTE)]


def algo_color(algo: str) -> str:
    """Fixed colour of an algo (GRPO red, Dr. GRPO blue, ...)."""
    return ALGO_COLORS.get(algo) or _hashed(algo)


def algo_label(algo: str) -> str:
    """Display name of an algo."""
    return ALGO_LABELS.get(algo, algo)


def data_color(data: str) -> str:
    """Fixed colour of a question set."""
    return DATA_COLORS.get(data) or _hashed(data)


def data_label(data: str) -> str:
    """Display name of a question set."""
    return DATA_LABELS.get(data, data)


def template_label(template: str) -> str:
    """Display name of a prompt template."""
    return TEMPLATE_LABELS.get(template, template)


def ordered(values: Sequence[str], preferred: Sequence[str]) -> list[str]:
    """``values`` with the paper's order first (``preferred``), then the rest alphabetically."""
    vals = set(values)
    return [v for v in preferred if v in vals] + sorted(v for v in vals if v not in preferred)


def setting_title(cols: Sequence[str], values: Sequence[object]) -> str:
    """A panel-row title such as ``model=qwen · template=r1`` for a faceted figure."""
    return " · ".join(f"{c}={v}" for c, v in zip(cols, values))


def new_figure(nrows: int, ncols: int, extra_h: float = 0.0) -> tuple[Figure, list[list[Axes]]]:
    """An Agg-backed figure (no pyplot global state) with a grid of panels sized for a paper."""
    fig = new_canvas(nrows, ncols, extra_h)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [list(row) for row in axes]


def new_canvas(nrows: int, ncols: int, extra_h: float = 0.0) -> Figure:
    """An empty Agg-backed figure sized for ``nrows`` x ``ncols`` panels (plus ``extra_h`` inches)."""
    fig = Figure(figsize=(PANEL_W * ncols + 0.3, PANEL_H * nrows + 0.45 + extra_h), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def legend(
    fig: Figure,
    axes: Sequence[Axes],
    order: Sequence[str] | None = None,
    extra: dict[str, object] | None = None,
) -> None:
    """One legend above all panels, entries in ``order`` (labels) where given, then ``extra``
    proxy handles (e.g. line styles)."""
    handles: dict[str, object] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    for lab, h in (extra or {}).items():
        handles.setdefault(lab, h)
    order = [*(order or []), *(extra or {})]
    labels = [lab for lab in order if lab in handles] + [lab for lab in handles if lab not in order]
    if not labels:
        return
    # As many entries per legend row as fit the figure width (~0.06 in per 7-pt character + the
    # line sample), so long labels wrap into rows instead of running off the page.
    width = fig.get_figwidth()
    ncols = len(labels)
    while ncols > 1 and sum(0.06 * len(lab) + 0.55 for lab in labels[:ncols]) > width:
        ncols -= 1
    fig.legend(
        [handles[lab] for lab in labels], labels, loc="outside upper center", ncols=ncols, frameon=False
    )


def band(ax: Axes, x, mean, lo, hi, color: str, label: str | None, marker: str | None = None) -> None:
    """Mean line with a shaded min-max band across seeds (the band vanishes for one seed)."""
    ax.plot(x, mean, color=color, label=label, marker=marker, markersize=3)
    ax.fill_between(x, lo, hi, color=color, alpha=0.18, linewidth=0)


def save(fig: Figure, data: pd.DataFrame, out: Path, name: str) -> dict[str, Path]:
    """Write ``<name>.png``, ``<name>.pdf`` and the data behind it as ``<name>.csv`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {ext: out / f"{name}.{ext}" for ext in ("png", "pdf", "csv")}
    fig.savefig(paths["png"], dpi=PNG_DPI)
    # no creation date: rebuilding unchanged runs gives byte-identical PDFs (no churn in git)
    fig.savefig(paths["pdf"], metadata={"CreationDate": None})
    data.to_csv(paths["csv"], index=False)
    return paths
