"""Seeding every RNG a run draws from (python, numpy, torch, CUDA); the RNG snapshots of a checkpoint are in
:mod:`r1zero.run.checkpoint` (``rng_state`` / ``set_rng_state``)."""

from __future__ import annotations

import random

import numpy as np
import torch


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
