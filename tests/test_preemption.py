"""Preemption without SLURM: SIGUSR2/SIGTERM checkpoint at the step boundary, then hand over or exit cleanly.

The SLURM version (submitit requeue on a real cluster) is tests/slurm/test_slurm.py::test_preempted_job_*.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest
from conftest import logged_steps, resume_from_checkpoint, run_and_signal

from r1zero.run.preemption import PreemptionHandler


@pytest.fixture
def restore_signals():
    saved = {s: signal.getsignal(s) for s in (signal.SIGUSR2, signal.SIGTERM, signal.SIGINT)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


class Requeued(Exception):
    pass


def _deliver(sig: int) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0.05)  # the handler runs in the main thread at the next bytecode boundary


def test_signal_only_sets_a_flag_then_hands_over_to_the_previous_handler(restore_signals):
    calls = []

    def submitit_like(signum, frame):  # submitit's USR2 handler: requeue, then sys.exit
        calls.append(signum)
        raise Requeued

    signal.signal(signal.SIGUSR2, submitit_like)
    handler = PreemptionHandler().install()
    _deliver(signal.SIGUSR2)
    assert handler.requested and calls == []  # nothing happens mid-step
    with pytest.raises(Requeued):
        handler.hand_over(None, step=3)
    assert calls == [signal.SIGUSR2]
    assert signal.getsignal(signal.SIGUSR2) is submitit_like  # put back


def test_a_previous_handler_that_returns_lets_training_go_on(restore_signals):
    calls = []
    signal.signal(signal.SIGTERM, lambda s, f: calls.append(s))  # submitit only logs SIGTERM ("bypass")
    handler = PreemptionHandler().install()
    _deliver(signal.SIGTERM)
    handler.hand_over(None, step=1)  # returns
    assert calls == [signal.SIGTERM] and not handler.requested
    _deliver(signal.SIGTERM)  # taken over again
    assert handler.requested and calls == [signal.SIGTERM]
    handler.close()


@pytest.mark.parametrize("sig", [signal.SIGUSR2, signal.SIGTERM])
def test_plain_run_exits_cleanly(restore_signals, capsys, tmp_path, sig):
    signal.signal(sig, signal.SIG_DFL)
    handler = PreemptionHandler().install()
    _deliver(sig)
    with pytest.raises(SystemExit) as exit_info:
        handler.hand_over(tmp_path / "checkpoints" / "step_000004", step=4)
    assert exit_info.value.code == 0
    err = capsys.readouterr().err
    assert f"stopped by {signal.Signals(sig).name} after step 4" in err and f"hydra.run.dir={tmp_path}" in err
    assert signal.getsignal(sig) == signal.SIG_DFL


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_in_a_plain_run_stops_mid_step(restore_signals, sig):
    """The first asks for a checkpoint at the step's end (Ctrl-C too: no KeyboardInterrupt); the second raises
    Interrupted at once, and the previous handlers are back, so a third gets the default action."""
    from r1zero.run.preemption import Interrupted

    signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
    previous = signal.getsignal(sig)
    handler = PreemptionHandler().install()
    _deliver(sig)
    assert handler.requested
    with pytest.raises(Interrupted) as info:
        _deliver(sig)
        time.sleep(5)  # the rest of the step: not waited for
    assert info.value.signum == sig and str(info.value) == signal.Signals(sig).name
    assert signal.getsignal(sig) is previous


def test_a_second_signal_under_submitit_still_waits_for_the_step_end(restore_signals):
    calls = []
    signal.signal(signal.SIGTERM, lambda s, f: calls.append(s))  # submitit's SIGTERM handler only logs
    handler = PreemptionHandler().install()
    _deliver(signal.SIGTERM)
    _deliver(signal.SIGTERM)  # no Interrupted: SLURM sends USR2 next, and the requeue needs the checkpoint
    assert handler.received == [signal.SIGTERM] and calls == []
    handler.hand_over(None, step=1)
    assert calls == [signal.SIGTERM]
    handler.close()


def test_ignored_signals_stay_ignored(restore_signals):
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    PreemptionHandler().install()
    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_IGN


def test_a_step_longer_than_the_grace_is_handed_over_mid_step(restore_signals):
    """grace_s=1 -> the previous handler runs 0.5 s after the signal even though the step has not ended."""
    calls = []

    def submitit_like(signum, frame):
        calls.append(time.monotonic())
        raise Requeued

    signal.signal(signal.SIGUSR2, submitit_like)
    handler = PreemptionHandler(grace_s=1.0).install()
    t0 = time.monotonic()
    with pytest.raises(Requeued):
        _deliver(signal.SIGUSR2)
        time.sleep(10)  # a step that would outlive the grace time
    assert 0.4 < calls[0] - t0 < 5
    assert handler.received == [signal.SIGUSR2]  # handed over by the deadline, not at a step boundary
    assert signal.getsignal(signal.SIGUSR2) is submitit_like


def test_grader_workers_survive_the_slurm_warning_signal():
    """SLURM signals every process of the job step, Ctrl-C the terminal's process group; a grader worker must not
    die of USR2 or SIGINT mid-answer."""
    from r1zero.reward import MathGrader

    grader = MathGrader(num_workers=1, verifier="r1zero")
    try:
        assert grader.grade(["\\boxed{1/2}"], ["0.5"], "boxed")[0].reward == 1.0  # starts the worker
        worker = grader._workers[0].proc
        os.kill(worker.pid, signal.SIGUSR2)
        time.sleep(0.5)
        assert worker.poll() is None
        os.kill(worker.pid, signal.SIGINT)  # Ctrl-C reaches the terminal's whole process group
        time.sleep(0.5)
        assert worker.poll() is None
        assert grader.grade(["\\boxed{2/4}"], ["0.5"], "boxed")[0].reward == 1.0
        assert grader._workers[0].proc is worker  # the same process answered
    finally:
        grader.close()


# ------------------------------------------------------------------------------------------------------------
TRAIN = [
    sys.executable, "-m", "r1zero.train", "model=tiny", "data=arith", "data.max_questions=16",
    "train.total_steps=8", "train.prompts_per_rollout=2", "sampling.group_size=2", "sampling.max_new_tokens=16",
    "train.micro_batch_size=4", "train.save_every=0", "logger.progress_bar=false", "reward.num_workers=1",
]


@pytest.mark.slow
def test_sigusr2_checkpoints_exits_and_resume_auto_finishes(tmp_path):
    """SIGUSR2 to a plain run: checkpoint of the step in flight, exit 0; the same command (resume=auto) then
    finishes the run with every step logged exactly once."""
    run_dir = tmp_path / "run"
    cmd = [*TRAIN, f"hydra.run.dir={run_dir}"]
    returncode, err = run_and_signal(cmd, tmp_path, run_dir, [signal.SIGUSR2], after_steps=2, wait_s=240,
                                     poll_s=0.1, timeout_s=240)
    assert returncode == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    stopped = logged_steps(run_dir)
    k = stopped[-1]
    assert stopped == list(range(1, k + 1)) and 2 <= k < 8, stopped
    assert (run_dir / "checkpoints" / f"step_{k:06d}" / "trainer_state.pt").is_file()
    assert f"stopped by SIGUSR2 after step {k}" in err
    assert not (run_dir / "final").exists()

    resume_from_checkpoint(cmd, tmp_path, run_dir, k, timeout_s=300)
    assert logged_steps(run_dir) == list(range(1, 9))
    assert (run_dir / "final" / "config.json").is_file()
