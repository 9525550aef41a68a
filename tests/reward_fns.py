"""Reward functions for tests/test_reward_fn.py, imported by path (``reward.fn=reward_fns:<name>``) in the
trainer and in the grader's workers (pytest puts tests/ on sys.path; the workers get the trainer's sys.path)."""

from __future__ import annotations

import os
import time

NOT_CALLABLE = 3


def short(responses, references, rows):
    """1.0 for a response of at most 4 characters, else 0.0: varies within a group of the tiny model's answers."""
    return [float(len(r) <= 4) for r in responses]


def behave(responses, references, rows):
    """Per response text: ``raise`` raises, ``sleep`` sleeps 30 s, ``exit`` kills its worker, ``wrong-count``
    returns one value too many, ``nan`` returns NaN, ``row`` returns its row's ``x``; else its length."""
    out = []
    for r, row in zip(responses, rows):
        if r == "raise":
            raise ValueError("bad answer\nsecond line")
        if r == "sleep":
            time.sleep(30)
        if r == "exit":
            os._exit(3)
        if r == "wrong-count":
            return [0.0] * (len(responses) + 1)
        out.append(float("nan") if r == "nan" else float(row["x"]) if r == "row" else float(len(r)))
    return out
