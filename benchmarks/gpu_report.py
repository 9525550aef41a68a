"""Throughput and MFU of a short GPU run, from its ``metrics.jsonl`` (``scripts/gpu_check.sh`` writes the run).

Per step the trainer logs ``time/rollout_s``, ``time/update_s``, ``perf/rollout_tokens_per_s`` (response tokens per
second of generation) and ``perf/learner_tokens_per_s`` (prompt + response tokens per second of update). This prints
their medians over the steps after the first (the first pays CUDA start-up and allocator warm-up) and the model
FLOPs utilisation:

* learner MFU = 6 * N * learner tokens/s / peak (forward + backward, Kaplan et al. 2020's 6N per token;
  attention FLOPs left out, so it is a slight underestimate at long sequences);
* rollout MFU = 2 * N * rollout tokens/s / peak (forward only; decoding is memory-bound, so expect a few %).

N is ``model.params_b`` from the run's ``config.yaml``; peak is the GPU's dense bf16 tensor throughput from
``PEAK_BF16_TFLOPS`` (vendor data sheets), matched on the device name the manifest recorded.

    python benchmarks/gpu_report.py RUN_DIR [--peak-tflops 989]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

# Dense (no sparsity) bf16 tensor-core TFLOPS from NVIDIA's data sheets.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "L4": 121.0}


def peak_for(device_name: str) -> float | None:
    """Dense bf16 TFLOPS of a GPU named like ``NVIDIA H100 80GB HBM3``; None when it is not in the table."""
    for key, tflops in PEAK_BF16_TFLOPS.items():
        if key.lower() in device_name.lower():
            return tflops
    return None


def report(run_dir: Path, peak_tflops: float | None = None) -> str:
    """A Markdown table for one run. Raises ``FileNotFoundError`` when ``metrics.jsonl`` is missing."""
    import yaml

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "time/update_s" in r]
    timed = rows[1:] or rows
    if not timed:
        raise ValueError(f"{run_dir / 'metrics.jsonl'}: no training steps logged")
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    params = float(cfg["model"]["params_b"]) * 1e9
    manifest = json.loads((run_dir / "manifest.json").read_text()) if (run_dir / "manifest.json").exists() else {}
    name = (manifest.get("hardware") or {}).get("gpu_name") or ""
    peak = peak_tflops or peak_for(name)
    med = {k: statistics.median(r[k] for r in timed) for k in
           ("time/rollout_s", "time/update_s", "time/step_s", "perf/rollout_tokens_per_s", "perf/learner_tokens_per_s")}
    mfu_l = 6 * params * med["perf/learner_tokens_per_s"] / (peak * 1e12) if peak else float("nan")
    mfu_r = 2 * params * med["perf/rollout_tokens_per_s"] / (peak * 1e12) if peak else float("nan")
    lines = [
        f"run: {run_dir}  model: {cfg['model']['name']} ({params / 1e9:.2f} B)  gpu: {name or '?'}  "
        f"peak bf16: {peak or '?'} TFLOPS  steps timed: {len(timed)} (first step left out)",
        "",
        "| phase | median s/step | tokens/s | MFU |",
        "|---|---|---|---|",
        f"| rollout (generate) | {med['time/rollout_s']:.2f} | {med['perf/rollout_tokens_per_s']:.0f} | {mfu_r:.1%} |",
        f"| learner (fwd+bwd+step) | {med['time/update_s']:.2f} | {med['perf/learner_tokens_per_s']:.0f} | {mfu_l:.1%} |",
        f"| whole step | {med['time/step_s']:.2f} | | |",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--peak-tflops", type=float, default=None, help="override the GPU's dense bf16 peak")
    args = ap.parse_args(argv)
    print(report(args.run_dir, args.peak_tflops))
    return 0


if __name__ == "__main__":
    sys.exit(main())
