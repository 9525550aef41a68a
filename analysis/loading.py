"""Find logged runs on disk and turn them into tidy pandas frames.

Only the run-directory contract of ``docs/design.md`` is read (``metrics.jsonl``, ``samples.jsonl``,
``eval_samples.jsonl`` and the Hydra config), never training internals, so this package works on runs
copied off a cluster without the training dependencies installed.

A *run* is a directory holding ``metrics.jsonl`` (or, for the reflection analysis, ``samples.jsonl`` /
``eval_samples.jsonl``) next to ``config.yaml`` or ``.hydra/config.yaml``. Directories are searched
recursively, so a Hydra multirun root (``multirun/<date>/<time>/<job>/``) works as well as a single run.

A *wandb export* is a ``wandb_export.csv`` / ``.json`` / ``.jsonl`` file (or such a file named directly)
in long format: one row per run x step with columns ``run``, ``step`` (or ``_step``), the config columns
``algo``, ``template``, ``data``, ``model``, ``seed`` (``algo.name`` style names are accepted too) and
metric columns named as in ``metrics.jsonl``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from .errors import AnalysisError, NoRunsError, warn

#: Frame column -> dotted config key it is read from.
CONFIG_KEYS: dict[str, str] = {
    "algo": "algo.name",
    "template": "template.name",
    "data": "data.name",
    "model": "model.name",
    "seed": "seed",
}
#: Columns that identify a run group; seeds of the same group are aggregated together.
GROUP_COLS: list[str] = ["algo", "template", "data", "model"]
#: Leading columns of the tidy metrics frame.
ID_COLS: list[str] = ["run_dir", *GROUP_COLS, "seed", "step"]
#: Placeholder for a config key the run does not have (keeps groupby from dropping the run).
MISSING = "unset"

METRICS_FILE = "metrics.jsonl"
SAMPLES_FILE = "samples.jsonl"
EVAL_SAMPLES_FILE = "eval_samples.jsonl"
CONFIG_FILES = ("config.yaml", os.path.join(".hydra", "config.yaml"))
WANDB_EXPORT_FILES = ("wandb_export.csv", "wandb_export.json", "wandb_export.jsonl")
# Never hold runs. A run's own checkpoints/, final/ and wandb/ are not walked anyway: the search
# stops descending at a run directory.
_PRUNE_DIRS = {"__pycache__", "node_modules"}


@dataclass(frozen=True)
class Run:
    """One run directory found on disk, with the config values the analysis groups by."""

    path: Path
    labels: Mapping[str, Any] = field(hash=False)

    @property
    def has_metrics(self) -> bool:
        """Whether the run logged training metrics (``metrics.jsonl``)."""
        return (self.path / METRICS_FILE).is_file()


@dataclass
class RunSet:
    """Everything found under the ``--runs`` paths: run directories and wandb export files."""

    roots: list[Path]
    runs: list[Run]
    exports: list[Path]

    def describe(self) -> str:
        """A short phrase naming where the runs came from, for error messages."""
        return ", ".join(str(r) for r in self.roots)


# ----------------------------------------------------------------------------------------- discovery


def _config_file(d: Path) -> Path | None:
    for name in CONFIG_FILES:
        if (d / name).is_file():
            return d / name
    return None


def _lookup(cfg: Mapping[str, Any], dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def read_config(path: Path) -> dict[str, Any]:
    """Read a Hydra config file; an unreadable one gives ``{}`` and a warning, not a failure."""
    try:
        # Plain YAML on purpose: OmegaConf would try to resolve Hydra-only interpolations such as
        # ${now:...} and fail, while the names we need are always literal strings.
        cfg = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        warn(f"{path}: cannot read config ({type(e).__name__}); its run is labelled '{MISSING}'")
        return {}
    return cfg if isinstance(cfg, dict) else {}


def config_labels(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The grouping labels (algo, template, data, model, seed) of a config mapping."""
    labels: dict[str, Any] = {}
    for col, key in CONFIG_KEYS.items():
        value = _lookup(cfg, key)
        if col == "seed":
            labels[col] = (
                int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
            )
        elif isinstance(value, bool):
            # An unquoted `name: no` (the no-template option) loads as YAML 1.1's false.
            labels[col] = "no" if value is False else "yes"
        else:
            labels[col] = MISSING if value is None else str(value)
    return labels


def _walk(root: Path) -> Iterator[tuple[Path, list[str], list[str]]]:
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symlink loop or a run linked twice
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _PRUNE_DIRS)
        yield Path(dirpath), dirnames, filenames


def discover(paths: Sequence[str | os.PathLike[str]]) -> RunSet:
    """Find runs and wandb exports under ``paths`` (searched recursively).

    Raises :class:`NoRunsError` when a path does not exist or nothing is found at all.
    """
    roots = [Path(p) for p in paths]
    if not roots:
        raise NoRunsError("no --runs path given")
    runs: dict[str, Run] = {}
    exports: dict[str, Path] = {}
    for root in roots:
        if not root.exists():
            raise NoRunsError(f"--runs path does not exist: {root}")
        if root.is_file():
            if root.suffix in (".csv", ".json", ".jsonl"):
                exports[os.path.realpath(root)] = root
                continue
            raise NoRunsError(f"--runs file is not a wandb export (.csv/.json/.jsonl): {root}")
        for d, dirnames, filenames in _walk(root):
            names = set(filenames)
            cfg = _config_file(d)
            if cfg is not None and names & {METRICS_FILE, SAMPLES_FILE, EVAL_SAMPLES_FILE}:
                runs.setdefault(os.path.realpath(d), Run(d, config_labels(read_config(cfg))))
                dirnames[:] = []  # runs do not nest; skip their checkpoints and wandb dirs
                continue
            for name in WANDB_EXPORT_FILES:
                if name in names:
                    exports.setdefault(os.path.realpath(d / name), d / name)
    if not runs and not exports:
        raise NoRunsError(
            f"no runs found under {', '.join(map(str, roots))} (looked for a directory holding "
            f"{METRICS_FILE} and config.yaml or .hydra/config.yaml, or a {WANDB_EXPORT_FILES[0]})"
        )
    return RunSet(roots, sorted(runs.values(), key=lambda r: str(r.path)), sorted(exports.values()))


# -------------------------------------------------------------------------------------------- JSONL


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a JSONL file, skipping (with a warning) lines that are not.

    A crashed run leaves a half-written last line; a resumed run may then append to that same line,
    which corrupts a middle line. Both are skipped so that one bad line never loses a whole run.
    Streaming keeps memory flat on large ``eval_samples.jsonl`` files.
    """
    bad: list[int] = []
    n_lines = 0
    with path.open("r", encoding="utf-8", errors="replace") as f:
        for n_lines, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                bad.append(n_lines)
                continue
            if isinstance(obj, dict):
                yield obj
            else:
                bad.append(n_lines)
    for lineno in bad:
        kind = "half-written last line" if lineno == n_lines else "unreadable line"
        warn(f"{path}: skipping {kind} {lineno}")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All JSON objects of a JSONL file (see :func:`iter_jsonl` for what is skipped)."""
    return list(iter_jsonl(path))


def _metrics_frame(rows: list[dict[str, Any]], source: str) -> pd.DataFrame | None:
    df = pd.DataFrame(rows)
    if df.empty or "step" not in df.columns:
        warn(f"{source}: no step logged yet; run skipped")
        return None
    df["step"] = pd.to_numeric(df["step"], errors="coerce")
    df = df.dropna(subset=["step"])
    if df.empty:
        warn(f"{source}: no step logged yet; run skipped")
        return None
    df["step"] = df["step"].astype(int)
    for col in df.columns:
        if col != "step":
            try:
                df[col] = pd.to_numeric(df[col], errors="coerce")
            except (TypeError, ValueError):  # nested values (lists, dicts) are not plottable metrics
                df[col] = float("nan")
    df = df.dropna(axis=1, how="all")
    # Eval metrics may come on their own line for a step, and a resumed run re-logs steps after its
    # last checkpoint: the last non-null value per step and metric is the one to keep.
    return df.groupby("step", sort=True).last().reset_index()


def _with_labels(df: pd.DataFrame, run_dir: str, labels: Mapping[str, Any]) -> pd.DataFrame:
    df = df.copy()
    df.insert(0, "run_dir", run_dir)
    for i, col in enumerate(CONFIG_KEYS, start=1):
        df.insert(i, col, labels.get(col))
    return df


def _export_labels(df: pd.DataFrame) -> pd.DataFrame:
    for col, key in CONFIG_KEYS.items():
        candidates = [col, key, key.replace(".", "/"), f"config.{key}", f"config/{key.replace('.', '/')}"]
        found = next((c for c in candidates if c in df.columns), None)
        if found is None:
            df[col] = None if col == "seed" else MISSING
        elif found != col:
            df[col] = df.pop(found)
    return df


def read_wandb_export(path: Path) -> pd.DataFrame:
    """Read a long-format wandb export (see module docstring) into the tidy metrics shape."""
    try:
        if path.suffix == ".csv":
            raw = pd.read_csv(path)
        elif path.suffix == ".jsonl":
            raw = pd.DataFrame(read_jsonl(path))
        else:
            data = json.loads(path.read_text())
            raw = pd.DataFrame(data if isinstance(data, list) else data.get("rows", []))
    except (OSError, ValueError) as e:
        raise AnalysisError(f"cannot read wandb export {path}: {e}") from None
    if "run" not in raw.columns:
        raise AnalysisError(f"wandb export {path} has no 'run' column (one row per run x step expected)")
    if "step" not in raw.columns:
        if "_step" not in raw.columns:
            raise AnalysisError(f"wandb export {path} has neither a 'step' nor a '_step' column")
        raw = raw.rename(columns={"_step": "step"})
    raw = _export_labels(raw)
    frames = []
    for run, part in raw.groupby("run", sort=True):
        labels = part[list(CONFIG_KEYS)].iloc[0].to_dict()
        seed = pd.to_numeric(pd.Series([labels["seed"]]), errors="coerce").iloc[0]
        labels["seed"] = None if pd.isna(seed) else int(seed)
        for col in GROUP_COLS:
            labels[col] = MISSING if pd.isna(labels[col]) else str(labels[col])
        metric_rows = part.drop(columns=["run", *CONFIG_KEYS]).drop(
            columns=[c for c in part.columns if c.startswith("_")], errors="ignore"
        )
        df = _metrics_frame(metric_rows.to_dict("records"), f"{path}#{run}")
        if df is not None:
            frames.append(_with_labels(df, f"{path}#{run}", labels))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=ID_COLS)


# ----------------------------------------------------------------------------------------- frames


def _finish(frames: list[pd.DataFrame]) -> pd.DataFrame:
    df = pd.concat(frames, ignore_index=True)
    df["seed"] = df["seed"].astype("Int64")
    metrics = sorted(c for c in df.columns if c not in ID_COLS)
    return df[ID_COLS + metrics].sort_values(["run_dir", "step"], kind="stable").reset_index(drop=True)


def apply_filters(df: pd.DataFrame, filters: Mapping[str, Iterable[str]] | None) -> pd.DataFrame:
    """Keep rows whose config column values (compared as strings) are in ``filters[column]``."""
    for col, values in (filters or {}).items():
        if col not in CONFIG_KEYS:
            raise AnalysisError(f"cannot filter on '{col}'; use one of {', '.join(CONFIG_KEYS)}")
        wanted = {str(v) for v in values}
        df = df[df[col].astype(str).isin(wanted)]
    return df


def metrics_frame(runset: RunSet, filters: Mapping[str, Iterable[str]] | None = None) -> pd.DataFrame:
    """The tidy metrics frame: one row per run x step; columns :data:`ID_COLS` then the metrics."""
    frames = []
    for run in runset.runs:
        if not run.has_metrics:
            continue
        df = _metrics_frame(read_jsonl(run.path / METRICS_FILE), str(run.path / METRICS_FILE))
        if df is not None:
            frames.append(_with_labels(df, str(run.path), run.labels))
    for export in runset.exports:
        df = read_wandb_export(export)
        if not df.empty:
            frames.append(df)
    if not frames:
        raise NoRunsError(f"no run with logged steps ({METRICS_FILE}) under {runset.describe()}")
    df = apply_filters(_finish(frames), filters)
    if df.empty:
        raise NoRunsError(f"no runs left under {runset.describe()} after the filters {dict(filters or {})}")
    return df


def load_runs(
    paths: Sequence[str | os.PathLike[str]], filters: Mapping[str, Iterable[str]] | None = None
) -> pd.DataFrame:
    """Find runs under ``paths`` and return their tidy metrics frame (see :func:`metrics_frame`)."""
    return metrics_frame(discover(paths), filters)
