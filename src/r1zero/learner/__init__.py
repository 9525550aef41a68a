"""The update and where it runs: :class:`~.learner.Learner` (log-probs, micro-batches, the clipped
policy-gradient step) and the strategies (:mod:`.strategy`: one device, DDP, DeepSpeed: where the policy lives,
how gradients are reduced, who owns the optimizer).

May import: ``schema``, ``algos``, ``model``, ``rollout``."""
