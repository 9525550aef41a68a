"""What the policy is asked: question sets (:mod:`.questions`: load, normalise, sample), the generated sets
(:mod:`.arith`, :mod:`.countdown`) and the prompt templates around a question (:mod:`.templates`).

May import: ``schema``, ``reward`` (answer extraction), ``model`` (hub and package paths)."""
