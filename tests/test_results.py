"""The committed runs under ``results/`` are the evidence behind every figure, table and claim in ``docs/``.

``make figures`` rebuilds them from ``results/`` alone; rebuilt into a scratch directory, every table (Markdown and
CSV, the data behind each figure) must equal the committed one, and every figure must be drawn. The runs
themselves stay small and hold no weights.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"
DOCS = REPO / "docs"
MAX_BYTES = 20 * 2**20
BLOCK = 4096  # a file or directory takes whole blocks: the size `du` reports on a 4 KiB-block filesystem


def _committed_outputs() -> list[Path]:
    """The files ``make figures`` writes, as committed (relative to docs/)."""
    out = [Path("claims.md")]
    # laptop_duet and laptop_objectives (the objectives seed table) once their runs are committed
    for sub in ("length_bias", "laptop", "laptop_duet", "laptop_objectives", "baserates"):
        folder = DOCS / "figures" / sub
        out += [p.relative_to(DOCS) for p in sorted(folder.glob("*")) if p.suffix in (".md", ".csv", ".png", ".pdf")]
    return out


def test_results_are_small_and_hold_no_weights():
    files = [p for p in RESULTS.rglob("*") if p.is_file()]
    assert files, "no committed runs under results/"
    folders = [RESULTS, *(p for p in RESULTS.rglob("*") if p.is_dir())]
    on_disk = sum(-(-p.stat().st_size // BLOCK) * BLOCK for p in files) + BLOCK * len(folders)
    assert on_disk < MAX_BYTES, f"results/ takes {on_disk / 2**20:.1f} MiB on disk"
    heavy = [p for p in files if p.suffix in (".safetensors", ".pt", ".bin", ".gguf", ".ckpt")
             or "checkpoints" in p.parts or "final" in p.parts]
    assert not heavy, heavy


@pytest.mark.slow
def test_make_figures_rebuilds_every_committed_table_figure_and_claim(tmp_path):
    proc = subprocess.run(["make", "-s", "figures", f"DOCS={tmp_path}", f"PYTHON={sys.executable}"], cwd=REPO, check=False,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    committed = _committed_outputs()
    assert len(committed) > 10
    for rel in committed:
        rebuilt = tmp_path / rel
        assert rebuilt.is_file(), f"make figures no longer writes docs/{rel}"
        if rel.suffix in (".md", ".csv"):
            assert rebuilt.read_text() == (DOCS / rel).read_text(), f"docs/{rel} is not what results/ gives"
        else:  # images carry timestamps: drawn, not compared byte for byte
            assert rebuilt.stat().st_size > 0
