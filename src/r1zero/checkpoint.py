"""Checkpoints for ``resume=auto``: model + tokenizer (HF format) and the trainer state.

Layout: ``<run_dir>/checkpoints/step_000050/`` holding the HF files and ``trainer_state.pt`` (optimizer,
scheduler, data position, RNG states, step). A checkpoint is written under a temporary name and renamed,
so a run killed mid-save never leaves a half checkpoint that ``resume=auto`` would pick.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

_STEP_DIR = re.compile(r"^step_(\d+)$")


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, step: int, model, tokenizer, trainer_state: dict, keep: int | None = None,
                    state_dict: dict | None = None, move_in: dict[str, Path] | None = None) -> Path:
    """Write checkpoint ``step`` and prune all but the newest ``keep``; returns its directory.

    ``state_dict``: full weights to save instead of ``model.state_dict()`` (gathered ZeRO-3 parameters).
    ``move_in``: ``{name: dir}`` directories moved into the checkpoint as ``name/`` before it is published
    (per-rank DeepSpeed optimizer shards written by every rank).
    """
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:06d}"
    tmp = root / f".tmp_step_{step:06d}"
    if tmp.exists():
        shutil.rmtree(tmp)
    if state_dict is not None:
        model.save_pretrained(tmp, state_dict=state_dict)
    else:
        model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    for name, src in (move_in or {}).items():
        os.replace(src, tmp / name)
    torch.save({**trainer_state, "step": step, "rng": rng_state()}, tmp / "trainer_state.pt")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    if keep:
        for old in list_checkpoints(run_dir)[:-int(keep)]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name))
             and (p / "trainer_state.pt").exists()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: Path) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def load_trainer_state(ckpt: Path) -> dict:
    # Our own file (optimizer tensors, RNG tuples), so full unpickling is needed and trusted.
    return torch.load(Path(ckpt) / "trainer_state.pt", map_location="cpu", weights_only=False)
