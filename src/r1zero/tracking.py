"""Run-directory logging: ``metrics.jsonl`` (one row per step, flushed at step end), ``samples.jsonl``,
and optionally Weights & Biases (``logger.wandb.mode``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    # NaN/inf are not JSON; a metric that has no value this step is left out instead.
    out = {}
    for k, v in row.items():
        if hasattr(v, "item"):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            continue
        out[k] = v
    return out


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSONL file; a half-written last line (crashed run) is skipped."""
    rows = []
    if not path.exists():
        return rows
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


class MetricsLogger:
    """Appends metric rows and samples to the run directory; mirrors metrics to wandb when enabled.

    Args:
        run_dir: the run directory.
        wandb_cfg: the ``logger.wandb`` node (``mode``: disabled | offline | online).
        config: the resolved config dict (stored with the wandb run).
        resume_step: when resuming, rows with ``step`` > this are dropped first, so a resumed run has no
            duplicated steps.
    """

    def __init__(self, run_dir: Path, wandb_cfg=None, config: dict | None = None, resume_step: int | None = None):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.samples_path = self.run_dir / "samples.jsonl"
        if resume_step is not None:
            for path in (self.metrics_path, self.samples_path):
                self._truncate_after(path, resume_step)
        elif self.metrics_path.exists():
            # A fresh run in a directory that has metrics would silently mix two runs.
            raise FileExistsError(
                f"{self.metrics_path} exists; use resume=auto to continue that run or choose another run dir"
            )
        self._metrics = open(self.metrics_path, "a", encoding="utf-8")
        self._samples = open(self.samples_path, "a", encoding="utf-8")
        self.wandb = None
        mode = str(getattr(wandb_cfg, "mode", "disabled") or "disabled") if wandb_cfg is not None else "disabled"
        if mode not in ("disabled", "offline", "online"):
            raise ValueError(f"logger.wandb.mode={mode!r}; valid choices: disabled, offline, online")
        if mode != "disabled":
            import wandb

            self.wandb = wandb.init(
                project=wandb_cfg.project, entity=wandb_cfg.entity, group=wandb_cfg.group,
                name=wandb_cfg.name, tags=list(wandb_cfg.tags or []), mode=mode, config=config,
                dir=str(self.run_dir), resume="allow", id=_wandb_id(self.run_dir),
            )

    @staticmethod
    def _truncate_after(path: Path, step: int) -> None:
        if not path.exists():
            return
        keep = [r for r in read_jsonl(path) if int(r.get("step", 0)) <= step]
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for r in keep:
                f.write(json.dumps(r) + "\n")
        os.replace(tmp, path)

    def log(self, step: int, metrics: dict[str, Any]) -> dict[str, Any]:
        row = _clean({"step": int(step), **metrics})
        self._metrics.write(json.dumps(row) + "\n")
        self._metrics.flush()
        if self.wandb is not None:
            self.wandb.log(row, step=int(step))
        return row

    def log_samples(self, step: int, rows: Iterable[dict[str, Any]]) -> None:
        for r in rows:
            self._samples.write(json.dumps(_clean({"step": int(step), **r})) + "\n")
        self._samples.flush()

    def close(self) -> None:
        self._metrics.close()
        self._samples.close()
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None


class NullLogger:
    """The :class:`MetricsLogger` interface doing nothing: what ranks other than 0 log to."""

    def log(self, step: int, metrics: dict[str, Any]) -> dict[str, Any]:
        return _clean({"step": int(step), **metrics})

    def log_samples(self, step: int, rows: Iterable[dict[str, Any]]) -> None:
        pass

    def close(self) -> None:
        pass


def _wandb_id(run_dir: Path) -> str:
    import hashlib

    return hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:16]
