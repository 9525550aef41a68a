"""The GPU check's pieces that run without a GPU: the Qwen2.5-shaped random models and the MFU arithmetic."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import gpu_report  # noqa: E402
from conftest import compose  # noqa: E402

from r1zero.model.load import build_byte_tokenizer, build_tiny_model  # noqa: E402


@pytest.mark.parametrize("name, billions", [("qwen05_random", 0.494), ("qwen15_random", 1.544)])
def test_random_models_have_the_qwen25_parameter_count(name, billions):
    cfg = compose([f"model={name}"])
    with torch.device("meta"):  # shapes only: no memory, no init time
        model = build_tiny_model(cfg.model, build_byte_tokenizer(), torch.float32)
    n = sum(p.numel() for p in model.parameters())  # tied embeddings are counted once
    assert n / 1e9 == pytest.approx(billions, abs=0.002)
    assert float(cfg.model.params_b) == pytest.approx(n / 1e9, abs=0.01)  # the cost model's N matches


def test_report_medians_and_mfu_by_hand(tmp_path: Path):
    steps = [  # the first step is left out (warm-up)
        {"step": 1, "time/rollout_s": 9.0, "time/update_s": 9.0, "time/step_s": 20.0,
         "perf/rollout_tokens_per_s": 1.0, "perf/learner_tokens_per_s": 1.0},
        {"step": 2, "time/rollout_s": 2.0, "time/update_s": 1.0, "time/step_s": 3.5,
         "perf/rollout_tokens_per_s": 10_000.0, "perf/learner_tokens_per_s": 100_000.0},
        {"step": 3, "time/rollout_s": 4.0, "time/update_s": 3.0, "time/step_s": 7.5,
         "perf/rollout_tokens_per_s": 30_000.0, "perf/learner_tokens_per_s": 300_000.0},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in steps))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"model": {"name": "m", "params_b": 0.5}}))
    (tmp_path / "manifest.json").write_text(json.dumps({"hardware": {"gpu_name": "NVIDIA H100 80GB HBM3"}}))
    out = gpu_report.report(tmp_path)
    # medians of steps 2-3: rollout 20,000 tok/s, learner 200,000 tok/s; peak 989 TFLOPS (H100)
    # learner MFU = 6 * 0.5e9 * 2e5 / 989e12 = 60.7%; rollout MFU = 2 * 0.5e9 * 2e4 / 989e12 = 2.0%
    assert "| rollout (generate) | 3.00 | 20000 | 2.0% |" in out
    assert "| learner (fwd+bwd+step) | 2.00 | 200000 | 60.7% |" in out
    assert "peak bf16: 989.0 TFLOPS" in out


def test_unknown_gpu_has_no_peak():
    assert gpu_report.peak_for("Some Future GPU") is None
    assert gpu_report.peak_for("NVIDIA A100-SXM4-80GB") == 312.0
