"""``python -m r1zero_analysis collect --runs SWEEP_DIR... --out results/<experiment>/<sweep>``: a finished run's evidence,
small enough to commit.

Per run directory (or evaluation directory) found under ``--runs`` (the same search as every command), copied to ``<out>/<run dir name>/``:
``metrics.jsonl``, the run's config (``config.yaml``, the resolved one, or else Hydra's ``.hydra/config.yaml``: the
first that :mod:`.loading` reads), ``.hydra/hydra.yaml`` (its choices select runs in the claims registry),
``manifest.json``, ``eval.json`` and ``eval_samples.jsonl`` with each response cut to :data:`MAX_RESPONSE_CHARS`
characters (every row is kept: the seed table bootstraps over its questions). Nothing else: no training
``samples.jsonl``, no weights, checkpoints or logs. A run that has not finished (no ``final/`` and its manifest not
``finished``) is skipped with a warning, so a sweep still running can be collected again later: finished runs are
copied over, others wait.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .errors import NoRunsError, warn
from .loading import EVAL_SAMPLES_FILE, METRICS_FILE, RunSet, _config_file, iter_jsonl

MAX_RESPONSE_CHARS = 400
COPIED = (METRICS_FILE, ".hydra/hydra.yaml", "manifest.json", "eval.json")


def finished(run_dir: Path) -> bool:
    """Whether the run completed: its manifest says so (``finished``), or it wrote ``final/``; an evaluation
    (``python -m r1zero.evaluate``, no ``metrics.jsonl``) when it wrote ``eval.json``."""
    if not (run_dir / METRICS_FILE).is_file():
        return (run_dir / "eval.json").is_file()
    try:
        if json.loads((run_dir / "manifest.json").read_text()).get("finished"):
            return True
    except (OSError, ValueError):
        pass
    return (run_dir / "final").is_dir()


def _write_jsonl(path: Path, rows) -> None:
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def _eval_samples(src: Path) -> list[dict]:
    out = []
    for r in iter_jsonl(src):
        if isinstance(r.get("response"), str) and len(r["response"]) > MAX_RESPONSE_CHARS:
            r = {**r, "response": r["response"][:MAX_RESPONSE_CHARS] + " [...]"}
        out.append(r)
    return out


def collect(runset: RunSet, out: Path) -> list[Path]:
    """Copy each finished run of ``runset`` into ``out/<run dir name>/``; returns the directories written.

    Raises:
        NoRunsError: no run under the paths has finished.
    """
    written = []
    for run in runset.runs:
        if not finished(run.path):
            warn(f"{run.path}: not finished; not collected (collect again when it is)")
            continue
        dest = out / run.path.name
        if dest.exists():
            shutil.rmtree(dest)
        config = _config_file(run.path)
        for src in [run.path / name for name in COPIED] + ([config] if config else []):
            if src.is_file():
                target = dest / src.relative_to(run.path)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target)
        if (run.path / EVAL_SAMPLES_FILE).is_file():
            _write_jsonl(dest / EVAL_SAMPLES_FILE, _eval_samples(run.path / EVAL_SAMPLES_FILE))
        written.append(dest)
    if not written:
        raise NoRunsError(f"collect: no finished run under {runset.describe()}")
    return written
