"""Preemption and time limits: checkpoint at the next step boundary, then requeue (SLURM) or exit.

SLURM signals a job before it kills it: ``--signal=USR2@<grace>`` (the launcher field ``signal_delay_s``)
before the time limit, and on preemption where the cluster sends the user signal (``scancel --signal=USR2
<job>`` simulates it). In a job launched by hydra-submitit-launcher, submitit has installed a USR2 handler
that pickles the job again (``BaseSubmititLauncher.checkpoint``: same overrides, same run dir), runs
``scontrol requeue`` and exits; the requeued job starts over in the same run dir, where ``resume=auto``
(the default) picks up the newest checkpoint.

Run mid-step, that handler would lose every step since the last periodic checkpoint. So
:class:`PreemptionHandler` only records the signal; the training loop checks :attr:`~PreemptionHandler.requested`
at the end of each step, saves a checkpoint and calls :meth:`~PreemptionHandler.hand_over`, which runs the
handler that was installed before ours:

* submitit's USR2 handler: requeue, then exit (``SystemExit``; submitit's exit status is 255);
* submitit's SIGTERM handler only logs (SLURM sends SIGTERM before USR2 on preemption): training goes on;
* no Python handler (a plain ``python -m r1zero.train``; Ctrl-C counts as SIGINT): print where the checkpoint is
  and exit with status 0. Running the same command with ``hydra.run.dir=<run dir>`` (``resume=auto``) continues
  the run. A second signal before the step ends raises :class:`Interrupted` in the main thread, mid-step: the
  trainer saves what is consistent (the last completed step) and exits with status 128 + the signal number; a
  third gets the signal's default action.

Grace time: the step in flight, the evaluation when one is due, and the checkpoint save must finish within the
launcher's ``signal_delay_s``. If the step is still running ``signal_delay_s - min(30, signal_delay_s / 2)``
seconds after the signal, the previous handler is run anyway, mid-step: the job is requeued without a new
checkpoint and resumes from the last periodic one (``train.save_every``) instead of being killed unrequeued.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger("r1zero.run.preemption")

SIGNALS = (signal.SIGUSR2, signal.SIGTERM, signal.SIGINT)


class Interrupted(BaseException):
    """A second signal where there is no handler to hand over to: stop now, mid-step.

    A BaseException (like KeyboardInterrupt), so no ``except Exception`` on the way swallows it.
    """

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _hands_over(handler) -> bool:
    # Python's own SIGINT handler (KeyboardInterrupt) is no handler to hand over to: a plain run.
    return callable(handler) and handler is not signal.default_int_handler


def launcher_grace_s() -> float | None:
    """``hydra.launcher.signal_delay_s`` of the running Hydra job (the submitit launchers), else None."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return None
        value = HydraConfig.get().launcher.get("signal_delay_s")
    except Exception:  # noqa: BLE001 - no Hydra job, or a launcher config without the field
        return None
    return float(value) if value else None


class PreemptionHandler:
    """Records SIGUSR2 / SIGTERM / SIGINT so the trainer can checkpoint at a step boundary, then hands them over.

    Args:
        signals: signals to take over (those currently ignored, SIG_IGN, are left alone).
        grace_s: seconds between the signal and the kill (the launcher's ``signal_delay_s``); with a previous
            Python handler to hand over to, it is run mid-step once ``grace_s - min(30, grace_s / 2)`` has
            passed. None: wait for the step boundary however long it takes.
    """

    def __init__(self, signals: Iterable[int] = SIGNALS, grace_s: float | None = None):
        self.signals = tuple(signals)
        self.max_wait_s = None if not grace_s else float(grace_s) - min(30.0, float(grace_s) / 2)
        self.received: list[int] = []
        self._previous: dict[int, object] = {}
        self._timer: threading.Timer | None = None
        self._overdue = False

    # ----------------------------------------------------------------------------------------------
    def install(self) -> PreemptionHandler:
        """Take over the signals (main thread only; elsewhere Python cannot set handlers and this is a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            return self
        self._overdue = False
        for sig in self.signals:
            previous = signal.getsignal(sig)
            if previous in (signal.SIG_IGN, None) or previous == self._on_signal:
                continue
            self._previous[sig] = previous
            signal.signal(sig, self._on_signal)
        return self

    def close(self) -> None:
        """Put the previous handlers back (idempotent)."""
        self._cancel_timer()
        for sig, previous in self._previous.items():
            if signal.getsignal(sig) == self._on_signal:
                signal.signal(sig, previous)
        self._previous = {}

    @property
    def requested(self) -> bool:
        """A signal arrived since the last hand-over: checkpoint now, then call :meth:`hand_over`."""
        return bool(self.received)

    # ----------------------------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame) -> None:
        if self._overdue:  # the step did not end in time: hand over now, mid-step
            previous = self._previous.get(signum)
            self.close()
            if _hands_over(previous):
                previous(signum, frame)
            return
        name = signal.Signals(signum).name
        previous = self._previous.get(signum)
        if self.received and not _hands_over(previous):  # asked twice in a plain run: stop now
            self.close()  # a third signal: its default action
            raise Interrupted(signum)
        if signum not in self.received:
            self.received.append(signum)
            log.warning("%s received: saving a checkpoint when the current step ends%s", name,
                        "" if _hands_over(previous) else " (signal again to stop now)")
        if self.max_wait_s is not None and self._timer is None and _hands_over(previous):
            self._timer = threading.Timer(self.max_wait_s, self._deadline, args=(signum,))
            self._timer.daemon = True
            self._timer.start()

    def _deadline(self, signum: int) -> None:
        # Timer thread: only the main thread can run the handover, so re-deliver the signal to it.
        if self._timer is None:  # hand_over() got there first
            return
        self._overdue = True
        log.warning("step still running %.0fs after %s: handing over without a new checkpoint",
                    self.max_wait_s, signal.Signals(signum).name)
        os.kill(os.getpid(), signum)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # ----------------------------------------------------------------------------------------------
    def hand_over(self, checkpoint: Path | None, step: int) -> None:
        """After the checkpoint of ``step`` is saved: run each received signal's previous handler.

        submitit's USR2 handler requeues and exits (raises ``SystemExit``). Without a Python handler to hand
        over to, this prints how to continue and raises ``SystemExit(0)``. If every previous handler returns
        (submitit's SIGTERM logger), the signals are taken over again and training continues.
        """
        self._cancel_timer()
        pending, self.received = self.received, []
        previous = dict(self._previous)
        self.close()
        names = ", ".join(signal.Signals(s).name for s in pending)
        log.warning("%s: checkpoint of step %d saved to %s", names, step, checkpoint)
        stop = False
        for sig in pending:
            handler = previous.get(sig)
            if _hands_over(handler):
                log.info("handing %s over to %s", signal.Signals(sig).name, getattr(handler, "__qualname__", handler))
                handler(sig, None)  # submitit's USR2 handler: scontrol requeue + sys.exit
            else:
                stop = True
        if stop:
            print(f"r1zero: stopped by {names} after step {step}; checkpoint {checkpoint}. The same command with "
                  f"hydra.run.dir={checkpoint.parent.parent if checkpoint else '<run dir>'} (resume=auto) "
                  f"continues the run.", file=sys.stderr, flush=True)
            raise SystemExit(0)
        self.install()
