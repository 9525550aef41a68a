"""A reward that does not depend on response length, for the length-bias mechanism (``experiment=length_bias``).

Under GRPO's per-response normaliser (1/|o_i|, paper §3.1, Eq. 2) a long response's tokens are each pushed less
than a short one's; with a negative advantage that protects long wrong answers, so incorrect responses grow
longer (Fig. 5, Fig. 8). To see that effect caused by the loss aggregation alone, the reward must not reward or
punish length: :func:`first_byte_even` looks at one byte only. (Truncated responses still score 0 after the
call, as with the math grader; ``rollout/response_length_incorrect_finished`` leaves them out.)
"""

from __future__ import annotations


def first_byte_even(responses: list[str], references: list, rows: list[dict]) -> list[float]:
    """1.0 when the response's first UTF-8 byte is even, else 0.0 (an empty response scores 0).

    A ``reward=fn`` function (:mod:`r1zero.reward.custom`): ``responses`` (N,) texts; ``references`` and ``rows``
    are ignored. With the random byte-level ``model=tiny`` about a third of the responses score 1 at the start,
    whatever their length; invalid UTF-8 decodes to U+FFFD, whose first byte (0xEF) is odd.
    """
    return [float(bool(r) and r.encode("utf-8")[0] % 2 == 0) for r in responses]
