"""``manifest.json``: what produced a run, written when it starts and updated when it ends.

Peers leave this to the user; the paper's own AIME numbers do not reproduce across vLLM versions, so a run
directory records the command, the code (git commit, dirty flag), every library version that changes results,
the hardware, the seeds, the SLURM and wandb ids, and the wall time and GPU-hours it used. ``analysis`` reads it
(:func:`read_manifest`) to show versions beside each figure's runs and to warn when compared runs differ.

Fields: ``command`` (list of str), ``cwd``, ``git`` {``commit``, ``dirty``} (None outside a checkout),
``versions`` {package: version or None}, ``hardware`` {``cpu_count``, ``gpu_name``, ``gpu_count``,
``gpu_memory_gib``}, ``world_size``, ``seed``, ``slurm`` {``job_id``, ``array_job_id``, ``array_task_id``}
(None outside SLURM), ``wandb_run_id``, ``total_steps`` (the steps the run is to take: ``train.total_steps``, or
what ``train.prompt_epochs`` passes over the question set come to; None where not given), ``started_at`` /
``ended_at`` (ISO 8601, UTC), ``wall_s`` (seconds, summed over the segments of a resumed run), ``gpu_hours``
(``wall_s`` x GPUs in use / 3600), ``segments`` (how many times the run started), ``finished`` (bool).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

MANIFEST = "manifest.json"

#: Packages whose version can change a run's numbers (sampling kernels, graders, configs).
PACKAGES = ("r1zero", "torch", "transformers", "vllm", "deepspeed", "math-verify", "hydra-core", "omegaconf",
            "accelerate", "numpy")
#: Versions that change results when compared runs differ in them (analysis warns).
RESULT_CHANGING = ("vllm", "math-verify", "torch", "transformers")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str | None]:
    """Installed versions of :data:`PACKAGES` plus python, CUDA and cuDNN (None when absent)."""
    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    import torch

    out["cuda"] = torch.version.cuda
    out["cudnn"] = str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else None
    return out


def git_state(where: Path) -> dict | None:
    """``{"commit", "dirty"}`` of the checkout holding ``where``; None when it is not in one (a wheel install)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return None


def hardware() -> dict:
    import torch

    info: dict = {"cpu_count": os.cpu_count(), "gpu_name": None, "gpu_count": 0, "gpu_memory_gib": None}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu_name=props.name, gpu_count=torch.cuda.device_count(),
                    gpu_memory_gib=round(props.total_memory / 2**30, 1))
    return info


def slurm_ids() -> dict | None:
    if "SLURM_JOB_ID" not in os.environ:
        return None
    return {"job_id": os.environ.get("SLURM_JOB_ID"), "array_job_id": os.environ.get("SLURM_ARRAY_JOB_ID"),
            "array_task_id": os.environ.get("SLURM_ARRAY_TASK_ID")}


def read_manifest(run_dir: Path) -> dict | None:
    """The run's manifest, or None when it has none (runs from before manifests) or it is unreadable."""
    try:
        return json.loads((Path(run_dir) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class Manifest:
    """Writes ``<run_dir>/manifest.json`` (atomically: a crash never leaves half a file).

    A resumed run keeps the first segment's ``started_at`` and adds its own wall time to ``wall_s``.

    Args:
        run_dir: the run directory.
        seed: the run's seed.
        world_size: processes training together; with GPUs, GPU-hours count one GPU per process.
        t0: ``time.perf_counter()`` when this segment started (default: now).
        total_steps: the steps the run is to take (train's resolved length; None: not given).
    """

    def __init__(self, run_dir: Path, *, seed: int, world_size: int = 1, t0: float | None = None,
                 total_steps: int | None = None):
        import time

        self.path = Path(run_dir) / MANIFEST
        self._t0 = time.perf_counter() if t0 is None else t0
        previous = read_manifest(run_dir) or {}
        self._wall_before = float(previous.get("wall_s") or 0.0)
        hw = hardware()
        self.data = {
            "command": [sys.executable, *sys.argv],
            "cwd": os.getcwd(),
            "git": git_state(Path(__file__).resolve().parent),
            "versions": package_versions(),
            "hardware": hw,
            "world_size": world_size,
            "seed": seed,
            "slurm": slurm_ids(),
            "wandb_run_id": previous.get("wandb_run_id"),
            "total_steps": total_steps,
            "started_at": previous.get("started_at") or _now(),
            "ended_at": None,
            "wall_s": self._wall_before,
            "gpu_hours": 0.0,
            "segments": int(previous.get("segments") or 0) + 1,
            "finished": False,
        }
        self._gpus = world_size if hw["gpu_count"] else 0
        self.write()

    def update(self, *, finished: bool = False, **fields) -> None:
        """Refresh the time used (and ``fields``, e.g. ``wandb_run_id``); ``finished`` stamps ``ended_at``."""
        import time

        self.data.update(fields)
        self.data["wall_s"] = round(self._wall_before + time.perf_counter() - self._t0, 1)
        self.data["gpu_hours"] = round(self.data["wall_s"] * self._gpus / 3600, 4)
        self.data["ended_at"] = _now()
        self.data["finished"] = finished
        self.write()

    def write(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)
