"""Table 4 of the paper: per-benchmark accuracy of each run at its final (or best) eval step,
next to the published numbers, as Markdown and CSV."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from . import style
from .aggregate import EVAL_AVG, percent, pick_step
from .errors import MissingMetricError, warn
from .reference import AVG_COLUMN, BENCH_ALIASES, BENCH_COLUMNS, SOURCE, paper_rows

_BENCH_RE = re.compile(r"^eval/(?P<bench>[^/]+)/accuracy$")
_PICK_COL = "__avg__"
ID_COLUMNS = ["source", "name", "algo", "template", "data", "model", "seed", "run_dir", "step", "pick"]


def bench_columns(df: pd.DataFrame) -> dict[str, str]:
    """Logged per-benchmark accuracy columns -> display column (paper names where known)."""
    out = {}
    for col in df.columns:
        m = _BENCH_RE.match(col)
        if m and m["bench"] != "average" and df[col].notna().any():
            out[col] = BENCH_ALIASES.get(m["bench"].lower(), m["bench"])
    return out


def run_name(row: pd.Series) -> str:
    """Compact label of a run: algo / template / data / model / seed."""
    seed = "" if pd.isna(row["seed"]) else f" / seed {row['seed']}"
    return f"{style.algo_label(row['algo'])} / {row['template']} / {row['data']} / {row['model']}{seed}"


def table_frame(df: pd.DataFrame, pick: str = "final", paper: str = "all") -> pd.DataFrame:
    """The table as a frame: one row per run (percentages) followed by the paper's rows.

    ``pick="final"`` takes each run's last eval step, ``pick="best"`` the step with the highest
    average accuracy (earliest on ties). Avg. is the run's logged ``eval/average/accuracy``, or the
    mean of its logged benchmarks at steps where the average itself is missing.
    """
    benches = bench_columns(df)
    has_avg = EVAL_AVG in df.columns and df[EVAL_AVG].notna().any()
    if not has_avg and not benches:
        raise MissingMetricError(
            f"table: no run logs {EVAL_AVG!r} or any 'eval/<benchmark>/accuracy' "
            f"(checked {df['run_dir'].nunique()} runs; enable eval.every in training)"
        )
    df = df.copy()
    fallback = df[list(benches)].mean(axis=1) if benches else pd.Series(np.nan, index=df.index)
    df[_PICK_COL] = df[EVAL_AVG].fillna(fallback) if has_avg else fallback
    display = BENCH_COLUMNS + sorted({d for d in benches.values() if d not in BENCH_COLUMNS})
    records = []
    for run_dir, run in df.groupby("run_dir", sort=True):
        row = pick_step(run, _PICK_COL, pick)
        if row is None:
            warn(f"table: {run_dir} has no eval step; left out of the table")
            continue
        rec = {
            "source": "run",
            "name": run_name(row),
            **{c: row[c] for c in ID_COLUMNS[2:8]},
            "step": int(row["step"]),
            "pick": pick,
        }
        for col, disp in benches.items():
            if pd.notna(row[col]) and pd.isna(rec.get(disp, np.nan)):
                rec[disp] = percent(row[col])
        rec[AVG_COLUMN] = percent(row[_PICK_COL])
        records.append(rec)
    if not records:
        raise MissingMetricError(f"table: none of the {df['run_dir'].nunique()} runs logged an eval step")
    # Runs of one setting next to each other, algos in the paper's order, seeds ascending.
    rank = {a: i for i, a in enumerate(style.ALGO_LABELS)}
    records.sort(
        key=lambda r: (
            str(r["model"]),
            str(r["template"]),
            str(r["data"]),
            rank.get(r["algo"], len(rank)),
            str(r["algo"]),
            -1 if pd.isna(r["seed"]) else int(r["seed"]),
            str(r["run_dir"]),
        )
    )
    for prow in paper_rows(paper):
        records.append({"source": SOURCE, **prow})
    out = pd.DataFrame.from_records(records)
    for col in [*ID_COLUMNS, *display, AVG_COLUMN]:
        if col not in out.columns:
            out[col] = np.nan
    out["seed"] = out["seed"].astype("Int64")
    out["step"] = out["step"].astype("Int64")
    return out[[*ID_COLUMNS, *display, AVG_COLUMN]]


def _md_escape(text: str) -> str:
    return re.sub(r"([\\*_|])", r"\\\1", text)


def to_markdown(tab: pd.DataFrame) -> str:
    """Markdown rendering with one decimal per percentage, like the paper; '–' where not logged."""
    values = [c for c in tab.columns if c not in ID_COLUMNS]
    header = ["Source", "Model / run", "Step", *values]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * len(values)) + "|"]
    for _, r in tab.iterrows():
        cells = [
            "run" if r["source"] == "run" else "paper",
            _md_escape(str(r["name"])),
            "–" if pd.isna(r["step"]) else str(r["step"]),
        ]
        cells += ["–" if pd.isna(r[c]) else f"{float(r[c]):.1f}" for c in values]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def table(df: pd.DataFrame, out: Path, pick: str = "final", paper: str = "all") -> style.Output:
    """Write ``table.md`` and ``table.csv`` (accuracies in percent) into ``out``."""
    tab = table_frame(df, pick, paper)
    out.mkdir(parents=True, exist_ok=True)
    what = "last eval step" if pick == "final" else "eval step with the best average accuracy"
    caption = (
        f"Accuracy (%) of each run at its {what}. Paper rows: {SOURCE} "
        f"(greedy decoding, 3k-token budget unless @ 8k; \\* = no template)."
    )
    paths = {"md": out / "table.md", "csv": out / "table.csv"}
    paths["md"].write_text(f"{caption}\n\n{to_markdown(tab)}")
    tab.to_csv(paths["csv"], index=False)
    return style.Output("table", "Benchmark accuracy (Table 4)", paths, caption)
