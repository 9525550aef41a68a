"""Shared fixtures: the repo's config tree, composed configs, and the paper's released data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
# The paper's released data, only where R1ZERO_DATA_ROOT points at it (.ci/run sets it); a user's clone has none,
# so the tests that need it skip, saying why.
DATA_ROOT = Path(os.environ["R1ZERO_DATA_ROOT"]) if os.environ.get("R1ZERO_DATA_ROOT") else None


def compose(overrides: list[str] | None = None, config_name: str = "train", run_dir: str | Path | None = None):
    """Compose a config the way ``python -m r1zero.train`` does, without running Hydra's job machinery.

    ``paths.run_dir`` normally comes from ``${hydra:runtime.output_dir}``, which only exists inside a Hydra
    job, so tests pass a directory.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import open_dict

    import r1zero.run.config  # noqa: F401  (registers resolvers)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides or []))
    with open_dict(cfg):
        cfg.paths.run_dir = str(run_dir) if run_dir is not None else "/tmp/r1zero-unused"
    return cfg


@pytest.fixture
def data_root() -> Path:
    if DATA_ROOT is None or not DATA_ROOT.exists():
        pytest.skip(f"the paper's released data is not here (R1ZERO_DATA_ROOT={DATA_ROOT}); set R1ZERO_DATA_ROOT "
                    f"to a copy of the datasets/ folder of sail-sg/understand-r1-zero")
    return DATA_ROOT


def logged_steps(run_dir: Path) -> list[int]:
    """The ``step`` of every row of ``run_dir/metrics.jsonl`` (none while it does not exist)."""
    import json

    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line)["step"] for line in path.read_text().splitlines()] if path.exists() else []


def run_and_signal(cmd: list[str], cwd: Path, run_dir: Path, signals: list[int], *, after_steps: int = 1,
                   wait_s: float = 300, poll_s: float = 0.05, gap_s: float = 0.2, timeout_s: float = 240):
    """Start ``cmd`` (wandb off), wait until its run has logged ``after_steps`` steps, send ``signals`` ``gap_s``
    apart, and wait for it to exit. Returns ``(returncode, stderr)``; the process is killed if it outlives this."""
    import subprocess
    import time

    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + wait_s
        while len(logged_steps(run_dir)) < after_steps:
            assert proc.poll() is None, f"the run ended before it was signalled:\n{proc.communicate()[1][-3000:]}"
            assert time.monotonic() < deadline, f"fewer than {after_steps} steps logged within {wait_s} s"
            time.sleep(poll_s)
        for i, sig in enumerate(signals):
            if i:
                time.sleep(gap_s)
            proc.send_signal(sig)
        _, err = proc.communicate(timeout=timeout_s)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    return proc.returncode, err


def resume_from_checkpoint(cmd: list[str], cwd: Path, run_dir: Path, step: int, *, timeout_s: float = 300) -> None:
    """Run ``cmd`` again (wandb off) to its end and check it resumed from ``run_dir``'s checkpoint of ``step``."""
    import subprocess

    env = {**os.environ, "WANDB_MODE": "disabled"}
    resumed = subprocess.run(cmd, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s,
                             stdin=subprocess.DEVNULL)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ckpt = run_dir / "checkpoints" / f"step_{step:06d}"
    assert f"resumed from {ckpt} at step {step}" in resumed.stdout + resumed.stderr


def _rank_main(rank: int, fn, *args) -> None:
    """What each process of :func:`run_ranks` runs: ``fn(rank, *args)``, with a fatal signal (SIGABRT from a
    timed-out :func:`run_ranks`) printing every thread's Python stack to stderr first."""
    import faulthandler

    faulthandler.enable()
    fn(rank, *args)


def run_ranks(fn, args: tuple, nprocs: int = 2, timeout_s: float = 600) -> None:
    """Run ``fn(rank, *args)`` in ``nprocs`` spawned processes (a DDP / ZeRO job of ``nprocs`` ranks) and wait
    for all of them.

    A rank that fails fails the test (torch stops the others). A rank still running after ``timeout_s`` seconds
    (a hang: a rank waiting in a collective that another rank left) has its Python stacks printed (SIGABRT, see
    :func:`_rank_main`), is killed with the others, and fails the test, so a hang never blocks the suite. The
    limit is a guard against a hang, far above what the jobs take (seconds; minutes when DeepSpeed first builds
    its CPU op), not a timing check.
    """
    import signal
    import time

    import torch.multiprocessing as mp

    ctx = mp.start_processes(_rank_main, args=(fn, *args), nprocs=nprocs, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout_s
    try:
        while not ctx.join(timeout=max(0.0, deadline - time.monotonic())):
            if time.monotonic() >= deadline:
                alive = [rank for rank, p in enumerate(ctx.processes) if p.is_alive()]
                for rank in alive:
                    os.kill(ctx.processes[rank].pid, signal.SIGABRT)  # stacks to stderr (captured by pytest)
                pytest.fail(f"rank(s) {alive} of {nprocs} still running after {timeout_s:.0f} s (a hang); their "
                            f"stacks are in the captured stderr")
    finally:
        for p in ctx.processes:  # whatever ended the wait (a failure, the timeout, pytest-timeout), no rank outlives it
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(10)


def make_batch(prompt_lens: list[int], resp_lens: list[int], group_size: int, *, seed: int = 0, vocab: int = 200,
               pad_id: int = 0, texts: list[str] | None = None, truncated: list[bool] | None = None):
    """A hand-made rollout batch of ``len(resp_lens)`` responses: row i answers prompt ``i // group_size``, whose
    ``prompt_lens[i // group_size]`` token ids (drawn from 1..vocab-1 with ``seed``, prompts first, then each row's
    response) are left-padded to P = max(prompt_lens); row i's response has ``resp_lens[i]`` ids, right-padded to
    T = max(resp_lens). Built by :meth:`RolloutBatch.from_token_lists`, as every engine builds its batches.

    Returns:
        a ``RolloutBatch``: input_ids / attention_mask (N, P + T), response_mask (N, T), prompt_index (N,).
    """
    import torch

    from r1zero.rollout.base import RolloutBatch

    g = torch.Generator().manual_seed(seed)
    n = len(resp_lens)
    prompts = [torch.randint(1, vocab, (pl,), generator=g).tolist() for pl in prompt_lens]
    responses = [torch.randint(1, vocab, (rl,), generator=g).tolist() for rl in resp_lens]
    return RolloutBatch.from_token_lists(prompts, responses, texts if texts is not None else [""] * n,
                                         truncated if truncated is not None else [False] * n,
                                         group_size=group_size, pad_id=pad_id)


def learner_configs(micro_batch_size: int, loss_agg: str = "seq_mean_token_sum_norm", *, train: dict | None = None,
                    **algo) -> tuple[dict, dict]:
    """The ``train`` and ``algo`` nodes of the learner tests: AdamW at lr 1e-3, one optimizer step and one epoch per
    update, clip 0.2, no KL; ``train`` overrides train fields, ``algo`` sets the objective's other axes."""
    train_cfg = {"lr": 1e-3, "betas": [0.9, 0.95], "weight_decay": 0.0, "max_grad_norm": 1.0, "warmup_steps": 0,
                 "mini_batch_size": None, "micro_batch_size": micro_batch_size, "ppo_epochs": 1, **(train or {})}
    return train_cfg, {"loss_agg": loss_agg, "clip_eps": 0.2, "kl_coef": 0.0, **algo}


def make_learner(model, micro_batch_size: int, loss_agg: str = "seq_mean_token_sum_norm", *, max_new_tokens: int = 16,
                 strategy=None, train: dict | None = None, **algo):
    """A ``Learner`` of ``model`` with :func:`learner_configs`, sampling temperature 1 (``strategy``: None, one
    process)."""
    from r1zero.learner.learner import Learner

    train_cfg, algo_cfg = learner_configs(micro_batch_size, loss_agg, train=train, **algo)
    return Learner(model, train_cfg, algo_cfg, max_new_tokens=max_new_tokens, temperature=1.0, strategy=strategy)
