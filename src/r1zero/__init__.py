"""r1zero: R1-Zero-like RL training (GRPO, Dr. GRPO and ablations) configured with Hydra.

Reproduces Liu et al. 2025, "Understanding R1-Zero-Like Training: A Critical Perspective" (arXiv 2503.20783).
Entry points: ``python -m r1zero.train`` and ``python -m r1zero.evaluate``.
"""

__version__ = "0.1.0"
