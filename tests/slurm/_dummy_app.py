"""Throwaway Hydra app standing in for ``python -m r1zero.train`` in the SLURM tests.

    python -m _dummy_app -m hydra/launcher=slurm_local model=tiny seed=1,2 train.total_steps=2 \
        hydra.searchpath=[file://<repo>/conf] hydra.sweep.dir=<dir>

It writes one ``metrics.jsonl`` line per step into its Hydra output dir (like the trainer, see
docs/design.md), after sleeping ``sleep_s`` seconds (the cancellation test makes it long).
The launcher presets come from the repo's ``conf/hydra/launcher/`` via ``hydra.searchpath``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path="_dummy_conf", config_name="dummy")
def main(cfg: DictConfig) -> None:
    out = Path(HydraConfig.get().runtime.output_dir)
    time.sleep(float(cfg.sleep_s))
    with open(out / "metrics.jsonl", "w") as f:
        for step in range(1, int(cfg.train.total_steps) + 1):
            row = {
                "step": step,
                "seed": int(cfg.seed),
                "model": str(cfg.model.name),
                "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
                "train/loss": 0.0,
            }
            f.write(json.dumps(row) + "\n")
            f.flush()


if __name__ == "__main__":
    main()
