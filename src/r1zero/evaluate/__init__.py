"""Measuring a policy: the benchmark suite (:mod:`.suite`, also run during training), response-length metrics
(:mod:`.lengths`), a training step's ``rollout/...`` metrics (:mod:`.rollout_metrics`) and the
``python -m r1zero.evaluate`` command (``__main__``).

May import: ``schema``, ``reward``, ``data``, ``model``, ``rollout``, ``run``."""
