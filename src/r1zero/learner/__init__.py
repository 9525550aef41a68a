"""The update and where it runs: :class:`~.learner.Learner` (micro-batches, the clipped policy-gradient step),
its forwards (:mod:`.forward`: the responses' log-probabilities under the policy or the reference) and the
strategies (:mod:`.strategy`: one device, DDP, DeepSpeed: where the policy lives, how gradients are reduced, who
owns the optimizer).

May import: ``schema``, ``algos``, ``model``, ``rollout``."""
