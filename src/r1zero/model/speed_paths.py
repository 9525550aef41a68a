"""The speed paths' capability table: which ``config.model_type`` values each fast path supports.

One table for the learner (``hidden_head``, ``packed``: :mod:`r1zero.learner.forward`, :mod:`r1zero.model.packing`)
and the HF engine's decoder (``static_cache``: :mod:`r1zero.rollout.static_cache`); a model type outside a row takes
the plain path there (same values, slower).
"""

#: Tests: tests/test_packing.py (the packed forward, every type listed),
#: tests/test_decode.py (the static-cache step against the model's forward).
#:
#: ``hidden_head``: the causal-LM logits are exactly ``lm_head(decoder(...).last_hidden_state)`` (no logit scaling or
#: soft-capping), so the learner applies the head itself to the real positions of padded rows
#: (:func:`r1zero.learner.forward.sequence_logprobs`).
#: ``packed``: those logits, and attention through transformers' attention interface with positions from
#: ``position_ids``, so the learner's micro-batches run padding-free (:mod:`r1zero.model.packing`).
#: ``static_cache``: decoder layers whose arithmetic :mod:`r1zero.rollout.static_cache` reproduces op for op
#: (pre-norm attention with rotary q/k and a gated SiLU MLP). Qwen3 is not in it: its layers also RMS-normalise q and
#: k per head (``q_norm`` / ``k_norm``), which that step does not do.
SPEED_PATHS: dict[str, tuple[str, ...]] = {
    "hidden_head": ("llama", "qwen2", "qwen3", "mistral"),
    "packed": ("llama", "qwen2", "qwen3", "mistral"),
    "static_cache": ("llama", "qwen2", "mistral"),
}
