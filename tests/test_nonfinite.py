"""Non-finite steps: an optimizer step whose loss or gradient norm is NaN or inf is skipped (weights, AdamW states
and lr schedule as they were), logged as ``train/nonfinite_skipped`` with its micro-batch, and
``train.max_nonfinite_steps`` of them in a row stop the run in one line with its last finite checkpoint the newest;
nothing non-finite is ever saved. Under DDP (gloo) every rank skips together.

The NaN comes from a hook in the loss: :func:`nan_loss` wraps the learner's ``policy_loss`` so that the loss of one
micro-batch, at the training steps named, is multiplied by NaN (as a bf16 overflow or a bad batch would leave it).
"""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path

import pytest
import torch
from conftest import compose, logged_steps, run_ranks
from test_train import AlternatingGrader, ScriptedEngine

from r1zero.schema.errors import USER_ERRORS, NonFiniteTrainingError

# 2 questions x 2 answers in micro-batches of 2: two micro-batches per optimizer step. A random tiny model's answers
# are all wrong (and truncated), which leaves no gradient: the scripted answers and the alternating grader of
# test_train give every group unequal rewards, so every step that is taken moves the weights (lr 1e-3).
TOY = ["model=tiny", "data=arith", "data.max_questions=8", "train.prompts_per_rollout=2", "sampling.group_size=2",
       "sampling.max_new_tokens=8", "train.mini_batch_size=null", "train.micro_batch_size=2", "train.lr=1e-3",
       "train.save_every=1", "train.keep_checkpoints=null", "logger.progress_bar=false", "reward.num_workers=1"]


def _run(cfg: list[str], run_dir) -> None:
    import r1zero.train as train_mod

    train_mod.run(compose(cfg, run_dir=run_dir), grader=AlternatingGrader(),
                  engine=ScriptedEngine(["ab", "abcdef", "abc"]))

def nan_loss(steps: set[int], micro_batch: int = 0, ranks: set[int] | None = None):
    """From now on in this process, the loss of micro-batch ``micro_batch`` of the updates of training steps
    ``steps`` (on ``ranks``, default all) is NaN; returns the function that takes the hook out again."""
    import r1zero.learner.learner as learner_mod

    real_update, real_loss = learner_mod.Learner.update, learner_mod.policy_loss
    state = {"step": 0, "micro": -1}

    def update(self, batch, advantages, step=0, **kwargs):
        state["step"], state["micro"] = step, -1
        return real_update(self, batch, advantages, step=step, **kwargs)

    def policy_loss(*args, **kwargs):
        loss, metrics = real_loss(*args, **kwargs)
        state["micro"] += 1
        rank = int(os.environ.get("RANK", "0"))
        if state["step"] in steps and state["micro"] == micro_batch and (ranks is None or rank in ranks):
            loss = loss * float("nan")
        return loss, metrics

    def undo() -> None:
        learner_mod.Learner.update, learner_mod.policy_loss = real_update, real_loss

    learner_mod.Learner.update, learner_mod.policy_loss = update, policy_loss
    return undo


@pytest.fixture
def restore_learner():
    import r1zero.learner.learner as learner_mod

    saved = learner_mod.Learner.update, learner_mod.policy_loss
    yield
    learner_mod.Learner.update, learner_mod.policy_loss = saved


def _rows(run_dir: Path) -> dict[int, dict]:
    return {r["step"]: r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())}


def _weights(run_dir: Path, step: int) -> torch.Tensor:
    from safetensors.torch import load_file

    state = load_file(str(run_dir / "checkpoints" / f"step_{step:06d}" / "model.safetensors"))
    return torch.cat([state[k].float().flatten() for k in sorted(state)])


def _adam_steps(run_dir: Path, step: int) -> tuple[float, int]:
    """(AdamW's step count of the first parameter, the lr schedule's step count) in a checkpoint."""
    state = torch.load(run_dir / "checkpoints" / f"step_{step:06d}" / "trainer_state.pt", weights_only=False)
    opt = state["learner"]["optimizer"]
    return float(opt["state"][0]["step"]), int(state["learner"]["scheduler"]["last_epoch"])


def test_clip_and_step_skips_a_nan_gradient_or_loss_and_changes_nothing():
    from r1zero.learner.strategy import Strategy

    model = torch.nn.Linear(3, 2)
    s = Strategy()
    s.setup("cpu")
    s.prepare(model, {"lr": 0.1})
    before = [p.detach().clone() for p in model.parameters()]

    def backward(scale: float) -> None:
        s.zero_grad()
        (model(torch.ones(1, 3)).sum() * scale).backward()

    backward(float("nan"))
    norm, stepped = s.clip_and_step(1.0)
    assert math.isnan(norm) and not stepped
    backward(1.0)
    norm, stepped = s.clip_and_step(1.0, loss_finite=torch.tensor(False))  # another rank's loss, say
    assert math.isfinite(norm) and not stepped
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())  # the gradients of the skipped step are dropped
    assert s.optimizer.state == {} and s.scheduler.last_epoch == 0
    backward(1.0)
    assert s.clip_and_step(1.0)[1] and s.scheduler.last_epoch == 1
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert s.weights_finite()
    with torch.no_grad():
        model.bias[0] = float("inf")
    assert not s.weights_finite()


def test_a_nan_step_is_skipped_logged_and_training_goes_on(tmp_path, restore_learner):
    nan_loss({2}, micro_batch=1)
    _run([*TOY, "train.total_steps=4"], tmp_path)
    rows = _rows(tmp_path)
    assert sorted(rows) == [1, 2, 3, 4]
    assert [rows[s]["train/nonfinite_skipped"] for s in (1, 2, 3)] == [0.0, 1.0, 0.0]
    assert rows[2]["train/nonfinite_micro_batch"] == 1.0 and "train/loss" not in rows[2]
    assert "train/nonfinite_micro_batch" not in rows[1] and math.isfinite(rows[3]["train/loss"])
    # the skipped step changed no weight, no AdamW state and no lr-schedule step; the next one moved on
    assert torch.equal(_weights(tmp_path, 1), _weights(tmp_path, 2))
    assert not torch.equal(_weights(tmp_path, 2), _weights(tmp_path, 3))
    assert _adam_steps(tmp_path, 1) == _adam_steps(tmp_path, 2) == (1.0, 1)
    assert _adam_steps(tmp_path, 3) == (2.0, 2)
    assert (tmp_path / "final" / "config.json").is_file() and rows[4]["train/nonfinite_skipped"] == 0.0


def test_nan_steps_in_a_row_stop_the_run_keeping_the_last_finite_checkpoint(tmp_path, restore_learner):
    cfg = [*TOY, "train.total_steps=6", "train.max_nonfinite_steps=2"]
    undo = nan_loss({3, 4, 5, 6})
    with pytest.raises(NonFiniteTrainingError) as info:
        _run(cfg, tmp_path)
    msg = str(info.value)
    assert isinstance(info.value, USER_ERRORS) and "\n" not in msg
    assert msg.startswith("train.max_nonfinite_steps=2: 2 optimizer steps in a row up to step 4 had a non-finite "
                          "loss or gradient norm and were skipped")
    assert f"the newest checkpoint is {tmp_path}/checkpoints/step_000003" in msg
    assert logged_steps(tmp_path) == [1, 2, 3, 4]
    assert [_rows(tmp_path)[s]["train/nonfinite_skipped"] for s in (2, 3, 4)] == [0.0, 1.0, 1.0]
    # on disk: the steps up to 3 and no more (step 3 was skipped: its weights are step 2's), nothing non-finite
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [f"step_00000{i}" for i in (1, 2, 3)]
    assert torch.equal(_weights(tmp_path, 3), _weights(tmp_path, 2))
    assert not torch.equal(_weights(tmp_path, 1), _weights(tmp_path, 2))  # a step taken moves them
    assert all(torch.isfinite(_weights(tmp_path, s)).all() for s in (1, 2, 3))
    assert not (tmp_path / "final").exists()
    assert json.loads((tmp_path / "manifest.json").read_text())["finished"] is False
    # whatever caused it gone, the same command resumes from that checkpoint and finishes, every step once
    undo()
    _run(cfg, tmp_path)
    assert logged_steps(tmp_path) == [1, 2, 3, 4, 5, 6]
    assert (tmp_path / "final" / "config.json").is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, port: int, run_dir: str, out_dir: str) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": "2",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WANDB_MODE": "disabled"})
    torch.set_num_threads(1)
    nan_loss({3, 4, 5, 6}, ranks={1})  # rank 1's loss only
    result: dict = {"rank": rank}
    try:
        _run([*TOY, "strategy=ddp", "device=cpu", "train.total_steps=6", "train.max_nonfinite_steps=2"], run_dir)
    except NonFiniteTrainingError as err:
        result["error"] = str(err)
    except SystemExit as exit_:
        result["exit"] = exit_.code
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)


@pytest.mark.slow
def test_under_ddp_every_rank_skips_together_and_stops_together(tmp_path):
    run_dir = tmp_path / "run"
    run_ranks(_ddp_worker, (_free_port(), str(run_dir), str(tmp_path)))
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0.get("error", "").startswith("train.max_nonfinite_steps=2: 2 optimizer steps in a row up to step 4")
    assert r1 == {"rank": 1, "exit": 2}  # rank 0 alone says why
    rows = _rows(run_dir)
    assert sorted(rows) == [1, 2, 3, 4]
    assert [rows[s]["train/nonfinite_skipped"] for s in (1, 2, 3, 4)] == [0.0, 0.0, 1.0, 1.0]
    assert rows[3]["train/nonfinite_micro_batch"] == 0.0
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [f"step_00000{i}" for i in (1, 2, 3)]
    assert torch.equal(_weights(run_dir, 3), _weights(run_dir, 2))  # rank 0 saved; its step was skipped too
    assert not torch.equal(_weights(run_dir, 1), _weights(run_dir, 2))
    assert all(torch.isfinite(_weights(run_dir, s)).all() for s in (1, 2, 3))

