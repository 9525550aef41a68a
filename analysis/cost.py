"""``cost.{md,csv}``: the cost model's estimate (``r1zero.run.cost``) beside what each run measured.

Per run directory: the estimated seconds per training step against the median measured one (``time/step_s``
minus the ``time/eval_s`` of steps that evaluated, since the model's step excludes evaluation), and the
estimated wall hours and GPU-hours against the manifest's (``wall_s``, ``gpu_hours``: setup, evaluation and
checkpoints included), each with the ratio measured / estimated. The estimate is made for the steps the run
logged (an unfinished run is compared with the estimate of its part), on the GPU type and count its manifest
records. The throughput table has GPU rows only: a CPU run gets "no estimate for device cpu".
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from r1zero.run import cost as cost_model
from r1zero.run.manifest import read_manifest

from .errors import MissingMetricError
from .loading import RunSet, _config_file, read_config
from .style import Output
from .tables import run_name

STEP = "time/step_s"
EVAL = "time/eval_s"
COLUMNS = ["run_dir", "name", "device", "gpus", "steps", "est_step_s", "step_s", "step_ratio", "est_wall_h", "wall_h",
           "wall_ratio", "est_gpu_hours", "gpu_hours", "gpu_hours_ratio", "note"]


def measured_step_s(run: pd.DataFrame) -> float | None:
    """Median over steps of ``time/step_s - time/eval_s`` (seconds); None when no step logs ``time/step_s``."""
    if STEP not in run.columns or run[STEP].isna().all():
        return None
    rows = run[run[STEP].notna()]
    evals = rows[EVAL].fillna(0.0) if EVAL in rows.columns else 0.0
    return float((rows[STEP] - evals).median())


def _device(manifest: dict) -> tuple[str, int]:
    hw = manifest.get("hardware") or {}
    if not hw.get("gpu_count"):
        return "cpu", 0
    return str(hw.get("gpu_name") or "gpu"), int(manifest.get("world_size") or hw["gpu_count"])


def run_cost(path: Path, run: pd.DataFrame) -> dict:
    """One row of :data:`COLUMNS` for the run at ``path`` whose metrics rows are ``run`` (hours, seconds)."""
    row: dict = {c: None for c in COLUMNS}
    row["run_dir"] = str(path)
    row["name"] = run_name(run.iloc[0])
    steps = int(run.loc[run[STEP].notna(), "step"].max()) if STEP in run.columns and run[STEP].notna().any() else 0
    row["step_s"] = measured_step_s(run)
    cfg_file = _config_file(path)
    cfg = OmegaConf.create(read_config(cfg_file) if cfg_file else {})
    total = OmegaConf.select(cfg, "train.total_steps")
    row["steps"] = f"{steps}/{total}" if total is not None else str(steps)
    manifest = read_manifest(path)
    if manifest is None:
        row["note"] = "no manifest.json: no device to estimate for"
        return row
    device, gpus = _device(manifest)
    row.update(device=device, gpus=gpus, wall_h=float(manifest.get("wall_s") or 0) / 3600,
               gpu_hours=float(manifest.get("gpu_hours") or 0))
    if gpus == 0:
        row["note"] = f"no estimate for device cpu (the cost model has rows for {', '.join(cost_model.PEAK_TFLOPS)})"
        return row
    if steps == 0:
        row["note"] = f"no step logs {STEP}"
        return row
    try:
        cfg.train.total_steps = steps  # the part of the run that was measured
        est = cost_model.estimate(cfg, gpus=gpus, gpu=device)
    except (ValueError, TypeError, KeyError, AttributeError, OmegaConfBaseException) as e:
        row["note"] = f"no estimate: {str(e).splitlines()[0]}"
        return row
    row.update(est_step_s=est.step_s, est_wall_h=est.wall_s / 3600, est_gpu_hours=est.gpu_hours)
    for ratio, measured, estimated in (("step_ratio", "step_s", "est_step_s"), ("wall_ratio", "wall_h", "est_wall_h"),
                                       ("gpu_hours_ratio", "gpu_hours", "est_gpu_hours")):
        if row[measured] is not None and row[estimated]:
            row[ratio] = row[measured] / row[estimated]
    if not manifest.get("finished"):
        row["note"] = "unfinished: compared with the estimate of its logged steps"
    return row


def cost_frame(df: pd.DataFrame, runset: RunSet) -> pd.DataFrame:
    """One row per run directory of ``runset`` that ``df`` (the tidy metrics frame, filters applied) holds;
    :data:`COLUMNS`.

    Raises:
        MissingMetricError: no run logs ``time/step_s``.
    """
    if STEP not in df.columns or df[STEP].isna().all():
        raise MissingMetricError(f"cost: no run logs {STEP!r} (see docs/design.md for metric names)")
    rows = []
    for run in runset.runs:
        part = df[df["run_dir"] == str(run.path)]
        if not part.empty:
            rows.append(run_cost(run.path, part))
    return pd.DataFrame(rows, columns=COLUMNS)


def _off(ratio) -> str:
    return "–" if ratio is None or pd.isna(ratio) else f"{ratio:.2f}x ({(ratio - 1) * 100:+.0f}%)"


def _num(x, fmt: str) -> str:
    return "–" if x is None or pd.isna(x) else format(x, fmt)


def to_markdown(tab: pd.DataFrame) -> str:
    """The table of :func:`cost_frame`, ratios as ``measured / estimated`` with the percentage off."""
    header = ["run", "dir", "device", "steps", "step s est.", "step s measured", "off by", "wall h est.", "wall h measured",
              "off by", "GPU-h est.", "GPU-h measured", "off by", "note"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for _, r in tab.iterrows():
        gpus = 0 if pd.isna(r["gpus"]) else int(r["gpus"])
        device = f"{gpus}x {r['device']}" if gpus else (r["device"] or "–")
        cells = [r["name"], Path(r["run_dir"]).name, device, r["steps"], _num(r["est_step_s"], ".1f"),
                 _num(r["step_s"], ".1f"), _off(r["step_ratio"]), _num(r["est_wall_h"], ".3g"),
                 _num(r["wall_h"], ".3g"), _off(r["wall_ratio"]), _num(r["est_gpu_hours"], ".3g"),
                 _num(r["gpu_hours"], ".3g"), _off(r["gpu_hours_ratio"]), r["note"] or ""]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def cost(df: pd.DataFrame, runset: RunSet, out: Path) -> Output:
    """Write ``cost.md`` and ``cost.csv`` (seconds, hours, ratios measured / estimated) into ``out``."""
    tab = cost_frame(df, runset)
    out.mkdir(parents=True, exist_ok=True)
    caption = ("The cost model's estimate (r1zero.run.cost, as the dry run prints it) beside each run's measurement: "
               "median training step (evaluation excluded) and the manifest's wall time and GPU-hours; "
               "off by = measured / estimated.")
    paths = {"md": out / "cost.md", "csv": out / "cost.csv"}
    paths["md"].write_text(f"{caption}\n\n{to_markdown(tab)}")
    tab.to_csv(paths["csv"], index=False)
    return Output("cost", "Estimated vs measured cost", paths, caption)
