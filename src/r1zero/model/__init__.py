"""The policy model: loading it and its tokenizer (:mod:`.load`), which model types each speed path supports
(:mod:`.speed_paths`, the one capability table), and the learner's fast forwards: padding-free packing
(:mod:`.packing`) and chunked token log-probabilities (:mod:`.logprob`).

May import: ``schema``."""
