"""``index.md``: one page embedding every figure and the table made by ``all``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from r1zero.run.manifest import RESULT_CHANGING, read_manifest

from .errors import warn
from .loading import GROUP_COLS, RunSet
from .style import Output

#: Manifest versions shown beside the runs (the ones that change results first).
SHOWN_VERSIONS = (*RESULT_CHANGING, "deepspeed", "r1zero", "python", "cuda")


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


def versions_summary(runset: RunSet) -> str:
    """Markdown table of the software and hardware behind the runs (from each run's ``manifest.json``).

    One row per distinct combination, with how many runs share it and their commit. Warns when compared runs
    differ in a version that changes results (:data:`r1zero.run.manifest.RESULT_CHANGING`, e.g. vLLM, math-verify).
    """
    combos: dict[tuple, list[str]] = {}
    missing = 0
    for run in runset.runs:
        m = read_manifest(run.path)
        if m is None:
            missing += 1
            continue
        versions = m.get("versions") or {}
        hw = m.get("hardware") or {}
        gpu = f"{hw.get('gpu_count')}x {hw.get('gpu_name')}" if hw.get("gpu_count") else f"CPU x{hw.get('cpu_count')}"
        commit = ((m.get("git") or {}).get("commit") or "–")[:10] + ("+dirty" if (m.get("git") or {}).get("dirty") else "")
        key = (*(str(versions.get(v) or "–") for v in SHOWN_VERSIONS), gpu, commit)
        combos.setdefault(key, []).append(run.path.name)
    if not combos:
        return "_No run has a manifest.json (runs from before manifests)._\n"
    for i, name in enumerate(RESULT_CHANGING):
        values = {key[i] for key in combos}
        if len(values) > 1:
            warn(f"the runs compared differ in {name} ({', '.join(sorted(values))}): results may not be comparable")
    header = [*SHOWN_VERSIONS, "hardware", "commit", "runs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join([*key, str(len(names))]) + " |" for key, names in sorted(combos.items())]
    if missing:
        lines.append(f"\n{missing} run(s) without a manifest.json are not listed.")
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
        if "seeds_md" in o.paths:  # the same runs per configuration: mean over seeds, 95% interval
            parts.append(o.paths["seeds_md"].read_text())
            links = " · ".join(f"[{k[6:].upper()}]({o.paths[k].relative_to(out).as_posix()})" for k in ("seeds_csv", "seeds_tex"))
            parts.append(f"{links}\n")
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
        "## Software and hardware\n",
        versions_summary(runset),
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
