"""``index.md``: one page embedding every figure and the table made by ``all``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .loading import GROUP_COLS, RunSet
from .style import Output


def runs_summary(df: pd.DataFrame | None) -> str:
    """Markdown table of run groups: seeds and the last logged step."""
    if df is None or df.empty:
        return "_No run with logged metrics._\n"
    rows = []
    for keys, g in df.groupby(GROUP_COLS, dropna=False, sort=True):
        seeds = [str(s) for s in sorted(g["seed"].dropna().unique())] or ["–"]
        rows.append(
            [*map(str, keys), ", ".join(seeds), str(g["run_dir"].nunique()), str(int(g["step"].max()))]
        )
    header = [*GROUP_COLS, "seeds", "runs", "last step"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _section(o: Output, out: Path) -> str:
    parts = [f"## {o.title}\n"]
    if o.caption:
        parts.append(f"{o.caption}\n")
    for note in o.notes:
        parts.append(f"_Note: {note}._\n")
    if "png" in o.paths:
        rel = {k: p.relative_to(out).as_posix() for k, p in o.paths.items()}
        parts.append(f"![{o.name}]({rel['png']})\n")
        parts.append(f"[PDF]({rel['pdf']}) · [data (CSV)]({rel['csv']})\n")
    else:
        parts.append(o.paths["md"].read_text().split("\n\n", 1)[-1])
        parts.append(f"[CSV]({o.paths['csv'].relative_to(out).as_posix()})\n")
    return "\n".join(parts)


def write_index(
    out: Path,
    runset: RunSet,
    df: pd.DataFrame | None,
    outputs: Sequence[Output],
    skipped: Sequence[tuple[str, str]],
) -> Path:
    """Write ``<out>/index.md`` with relative links, so the folder can be moved or published as is."""
    n_runs, n_exports = len(runset.runs), len(runset.exports)
    found = f"{n_runs} run director{'y' if n_runs == 1 else 'ies'}"
    if n_exports:
        found += f" and {n_exports} wandb export{'s' if n_exports != 1 else ''}"
    text = [
        "# r1zero analysis\n",
        f"{found} under {', '.join(f'`{r}`' for r in runset.roots)}.\n",
        "## Runs\n",
        runs_summary(df),
    ]
    text += [_section(o, out) for o in outputs]
    if skipped:
        text.append("## Skipped\n")
        text += [f"- **{name}**: {reason}" for name, reason in skipped]
        text.append("")
    path = out / "index.md"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(text))
    return path
