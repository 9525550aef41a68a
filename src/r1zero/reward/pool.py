"""The worker pool: ``MathGrader`` and the per-response grading flow (extract, shortcut, verify)."""

from __future__ import annotations

import json
import logging
import os
import re
import select
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from .extract import _shortcut, check_answer_format, extract_answer, reference_alternatives
from .verifiers import DEFAULT_VERIFIER, check_verifier

# A batch's default wall-time budget (``_default_batch_s``) allows one answer its whole hard deadline plus this
# much per answer sent to the workers: a batch checked at >= 50 answers/s (the workers do 200-1000) with one
# stuck answer never reaches it, while N answers that each run into their timeout cost one to two timeouts in
# all instead of N / num_workers timeouts.
BATCH_S_PER_ANSWER = 0.02


def _hard_limit(alarm_s: float) -> float:
    """Seconds after which a worker whose in-worker alarm is ``alarm_s`` is killed (stuck in C code)."""
    return alarm_s + max(1.0, 0.5 * alarm_s)


def _default_batch_s(timeout_s: float, n: int) -> float:
    """The batch budget when ``batch_timeout_s`` is None, for ``n`` answers sent to the workers."""
    return _hard_limit(timeout_s) + BATCH_S_PER_ANSWER * n


log = logging.getLogger(__name__)


_PLAIN_INT = re.compile(r"-?\d{1,15}")  # exact in a float, so the paper's float() comparisons agree too


def _paper_shortcut(pred: str, gold: str) -> bool | None:
    """A ``fast`` / ``math_verify`` verdict that needs no worker, else None: True for an answer identical to
    the reference (both of the paper's normalisations are deterministic), False for two plain integers of
    different value (of at most 15 digits, so float rounding cannot make them equal)."""
    p, g = pred.strip(), gold.strip()
    if "\\boxed" in g:
        return None  # the reference is unboxed before the comparison
    if p == g:
        return True
    if _PLAIN_INT.fullmatch(p) and _PLAIN_INT.fullmatch(g) and int(p) != int(g):
        return False
    return None


@dataclass(frozen=True)
class GradeResult:
    """Outcome of grading one response.

    Attributes:
        reward: 1.0 if the extracted answer is equivalent to the reference, else 0.0.
        extracted: the answer string taken from the response, or None when there is none.
        formatted: an answer could be extracted (``extracted is not None``).
        timed_out: the equivalence check ran past its timeout (reward 0).
        truncated: the response was cut off by the length limit and was not graded (reward 0).
    """

    reward: float
    extracted: str | None
    formatted: bool
    timed_out: bool = False
    truncated: bool = False


def _wait_readable(fds: list[int], timeout_s: float) -> None:
    if hasattr(select, "poll"):  # select.select fails on fd numbers >= 1024, common in a big trainer
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        poller.poll(timeout_s * 1000)
    else:
        select.select(fds, [], [], timeout_s)


class _Worker:
    """One grading subprocess; at most one answer in flight."""

    def __init__(self, memory_limit_mb: int | None, setup: str = ""):
        src = str(Path(__file__).resolve().parents[2])  # importable even when r1zero is not installed
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from r1zero.reward.worker import main; main()",
             str(memory_limit_mb or ""), setup],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True,
        )  # fmt: skip
        self.fd = self.proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.buf = b""
        self.ready = False
        self.born = time.monotonic()
        self.task: int | None = None
        self.started = 0.0
        self.limit = 0.0  # the in-worker alarm of the task in flight, seconds

    def send(self, task: int, payload: dict, timeout_s: float) -> bool:
        msg = json.dumps({**payload, "id": task, "timeout": timeout_s}) + "\n"
        try:
            self.proc.stdin.write(msg.encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return False
        self.task, self.started, self.limit = task, time.monotonic(), timeout_s
        return True

    def read(self) -> list[dict] | None:
        """Complete messages available now; None once the worker has exited."""
        try:
            chunk = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return []
        if not chunk:
            return None
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        return [json.loads(x) for x in lines if x.strip()]

    def kill(self) -> None:
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class MathGrader:
    """Grades batches of responses in a pool of worker processes, with per-answer timeouts.

    Each worker is a fresh ``python`` subprocess (not a fork of the caller, which may hold CUDA state and
    threads) that imports only ``math_verify`` and sympy. Workers start on the first ``grade`` call (again in a forked
    child, which cannot share its parent's pipes). A worker killed by the hard timeout or by the OS is
    replaced; its answer scores 0. Calls from several threads are serialised.

    Args:
        num_workers: worker processes (>= 1).
        timeout_s: per-answer time budget in seconds (> 0); past it the answer scores 0, ``timed_out``.
        memory_limit_mb: address space each worker may add before allocations fail (None: no limit), so a
            giant integer raises MemoryError in the worker instead of exhausting the machine.
        exact_match_shortcut: settle the sure cases in the caller without a worker round trip. ``r1zero``:
            string-identical answers (after cosmetic normalisation) and plain numbers (``extract._shortcut``);
            ``fast`` / ``math_verify``: only verdicts the paper's grader cannot differ on (``_paper_shortcut``:
            an answer identical to the reference; two different plain integers). Off only to measure the
            checker itself.
        max_answer_chars: extracted answers longer than this score 0 without a check (``reward.max_answer_chars``).
            None (the default): every answer is checked, as the paper's grader does; 1000 was r1zero's earlier
            cut (the longest reference of the paper's benchmarks has 204 characters, OlympiadBench's; checking a
            long answer can take the whole ``timeout_s``).
        verifier: the equivalence check, one of ``VERIFIERS`` (``r1zero.reward.verifiers``): ``fast`` and
            ``math_verify`` are the paper's two modes, ``r1zero`` r1zero's earlier checker. The default,
            ``DEFAULT_VERIFIER`` (``fast``), is the config's (``reward.verifier``).
        worker_setup: what every worker sets up at start besides math_verify, from
            :func:`r1zero.reward.custom.worker_setup_arg` (the ``reward.fn`` it imports); "" for none.
        batch_timeout_s: wall-time budget in seconds of one ``grade`` call's worker checks, counted from the first
            answer handed to a worker (so worker startup is not charged); an answer's alarm is cut to what is left
            of it, and once it is spent the answers not yet checked score 0 and count as timed out, so a batch of
            answers that all run into their timeout costs about one timeout, not N / ``num_workers`` of them.
            None: one answer's hard deadline (``timeout_s`` + max(1 s, ``timeout_s`` / 2)) + ``BATCH_S_PER_ANSWER``
            (0.02 s) per answer sent to the workers.

    Attributes:
        timeouts: running count of responses that scored 0 because their check timed out (or was never run for
            want of batch budget).

    Raises:
        ValueError: ``num_workers`` < 1, ``timeout_s`` <= 0, ``batch_timeout_s`` <= 0, ``max_answer_chars`` < 1, or
            an unknown ``verifier`` (the message lists the valid ones).
    """

    STARTUP_TIMEOUT_S = 120.0

    def __init__(
        self,
        num_workers: int = 2,
        timeout_s: float = 5.0,
        *,
        memory_limit_mb: int | None = 4096,
        exact_match_shortcut: bool = True,
        max_answer_chars: int | None = None,
        verifier: str = DEFAULT_VERIFIER,
        worker_setup: str = "",
        batch_timeout_s: float | None = None,
    ):
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if batch_timeout_s is not None and not batch_timeout_s > 0:
            raise ValueError(f"batch_timeout_s must be > 0 (or None), got {batch_timeout_s}")
        if max_answer_chars is not None and max_answer_chars < 1:
            raise ValueError(f"max_answer_chars must be >= 1 (or None), got {max_answer_chars}")
        self.max_answer_chars = max_answer_chars
        self.batch_timeout_s = None if batch_timeout_s is None else float(batch_timeout_s)
        check_verifier(verifier)
        self.verifier = verifier
        self.num_workers = int(num_workers)
        self.timeout_s = float(timeout_s)
        self.memory_limit_mb = memory_limit_mb
        self.exact_match_shortcut = exact_match_shortcut
        self.worker_setup = worker_setup  # r1zero.reward.custom: the reward.fn every worker imports at start
        self.timeouts = 0
        self._workers: list[_Worker] = []
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def start(self) -> None:
        """Launch the workers now without waiting for them (they take a few seconds to import sympy), e.g.
        while the model loads; ``grade`` would otherwise start them on its first call."""
        with self._lock:
            self._spawn()

    def _spawn(self) -> None:
        if self._pid != os.getpid():  # forked child: the pipes belong to the parent
            self._workers, self._pid = [], os.getpid()
        while len(self._workers) < self.num_workers:
            self._workers.append(self._new_worker())

    def _new_worker(self) -> _Worker:
        return _Worker(self.memory_limit_mb, self.worker_setup)

    def grade(
        self,
        responses: list[str],
        references: list,
        answer_format: str,
        truncated: list[bool] | None = None,
        *,
        timeout_s: float | None = None,
        verifier: str | None = None,
    ) -> list[GradeResult]:
        """Grade ``responses[i]`` against ``references[i]``.

        Args:
            responses: generated texts (without the prompt).
            references: reference answers in any shape ``normalize_reference`` accepts; a list means
                alternatives, any of which is correct.
            answer_format: where the answer is, a template's ``answer_format`` (one of ``ANSWER_FORMATS``).
            truncated: per response, True if generation hit the length limit (scores 0 ungraded).
            timeout_s: per-answer timeout for this call (default: the grader's).
            verifier: the equivalence check for this call (default: the grader's), one of ``VERIFIERS``.

        Returns:
            One ``GradeResult`` per response, in order.

        Raises:
            ValueError: unknown answer format or verifier, or the list lengths differ.
            TypeError: a reference of an unsupported type.
            RuntimeError: the worker processes cannot start (e.g. ``math_verify`` is not importable).
        """
        check_answer_format(answer_format)
        verifier = self.verifier if verifier is None else verifier
        check_verifier(verifier)
        shortcut = _shortcut if verifier == "r1zero" else _paper_shortcut
        n = len(responses)
        truncated = [False] * n if truncated is None else list(truncated)
        if len(references) != n or len(truncated) != n:
            raise ValueError(
                f"responses ({n}), references ({len(references)}) and truncated ({len(truncated)}) "
                "must have the same length"
            )
        budget = self.timeout_s if timeout_s is None else float(timeout_s)
        results: list[GradeResult | None] = [None] * n
        pending: dict[tuple[str, str], list[int]] = {}  # identical answers in a group are verified once
        extracted = [extract_answer(r, answer_format) for r in responses]
        for i, pred in enumerate(extracted):
            if truncated[i] or not pred:  # "" : formatted but empty (strict answer_tag), scores 0
                results[i] = GradeResult(0.0, pred, pred is not None, truncated=bool(truncated[i]))
                continue
            golds = reference_alternatives(references[i])
            verdicts = [shortcut(pred, g) if self.exact_match_shortcut else None for g in golds]
            too_long = self.max_answer_chars is not None and len(pred) > self.max_answer_chars
            if True in verdicts or None not in verdicts or too_long:
                results[i] = GradeResult(float(True in verdicts), pred, True)
                continue
            for g, v in zip(golds, verdicts, strict=True):
                if v is None:
                    pending.setdefault((pred, g), []).append(i)

        if pending:
            batch = self.batch_timeout_s
            if batch is None:
                batch = _default_batch_s(budget, len(pending))
            with self._lock:
                replies = self._run([{"pred": p, "gold": g, "verifier": verifier} for p, g in pending], budget,
                                    batch_s=batch)
            unchecked = sum(bool(m.get("unchecked")) for m in replies)
            if unchecked:
                log.warning("grader: the batch's %.3g s budget (reward.batch_timeout_s) ran out; %d of %d answers "
                            "were not checked and score 0 as timed out", batch, unchecked, len(replies))
            verdicts_run = [(bool(m["ok"]), bool(m["to"])) for m in replies]
            ok: dict[int, bool] = {}
            late: dict[int, bool] = {}
            for key, (k_ok, k_late) in zip(pending, verdicts_run, strict=True):
                for i in pending[key]:
                    ok[i], late[i] = ok.get(i, False) or k_ok, late.get(i, False) or k_late
            for i, correct in ok.items():
                # A timeout only matters if no other accepted form of the reference matched.
                results[i] = GradeResult(
                    float(correct), extracted[i], True, timed_out=late[i] and not correct
                )
        n_timeouts = sum(r.timed_out for r in results)
        with self._lock:
            self.timeouts += n_timeouts
        return results  # type: ignore[return-value]

    def _run(self, payloads: list[dict], budget: float, batch_s: float | None = None) -> list[dict]:
        """Each payload's reply from a worker (``{"ok", "to", ...}``), in order; a worker killed or dead on a
        payload gives ``{"ok": False, "to": <killed for time>, "died": True}``. With ``batch_s`` (seconds from the
        first payload sent), each alarm is at most what is left of it, and the payloads not sent when it is spent
        get ``{"ok": False, "to": True, "unchecked": True}``."""
        self._spawn()
        deadline: float | None = None
        todo = deque(range(len(payloads)))
        out: list[dict | None] = [None] * len(payloads)
        failed_starts = 0
        try:
            while todo or any(w.task is not None for w in self._workers):
                now = time.monotonic()
                for k, w in enumerate(self._workers):
                    if w.ready and w.task is None and todo:
                        if batch_s is not None and deadline is None:
                            deadline = now + batch_s
                        left = budget if deadline is None else min(budget, deadline - now)
                        if left <= 0.0:  # the batch's budget is spent: what is left is not checked
                            for i in todo:
                                out[i] = {"ok": False, "to": True, "unchecked": True}
                            todo.clear()
                        else:
                            i = todo.popleft()
                            if not w.send(i, payloads[i], left):
                                todo.appendleft(i)  # dead; noticed below via EOF
                    msgs = w.read()
                    # The in-worker alarm fires at ``w.limit``; the kill is for a worker stuck in C code.
                    late = w.task is not None and now - w.started > _hard_limit(w.limit)
                    if msgs is None or late or (not w.ready and now - w.born > self.STARTUP_TIMEOUT_S):
                        if w.task is not None:
                            # Only a kill for time is a timeout; a crash (e.g. OOM-killed) is just a 0.
                            out[w.task] = {"ok": False, "to": late, "died": True}
                        if not w.ready:
                            failed_starts += 1
                            if failed_starts > 3 * self.num_workers:
                                raise RuntimeError(
                                    "grader workers exit at startup; is math_verify importable by "
                                    f"{sys.executable}?"
                                )
                        w.kill()
                        self._workers[k] = self._new_worker()
                        continue
                    for m in msgs:
                        if m.get("ready"):
                            w.ready = True
                        elif m.get("id") == w.task:
                            out[w.task], w.task = m, None
                if todo and any(w.ready and w.task is None for w in self._workers):
                    continue  # a worker just came free: hand it the next answer before waiting
                busy = [w.fd for w in self._workers if w.task is not None or not w.ready]
                if busy:
                    _wait_readable(busy, 0.05)
        finally:
            # Interrupted (Ctrl-C, startup failure): a worker still busy with this batch would later answer
            # with a stale task id, so it is replaced.
            for k, w in enumerate(self._workers):
                if w.task is not None:
                    w.kill()
                    self._workers[k] = self._new_worker()
        return out  # type: ignore[return-value]

    def close(self) -> None:
        """Stop the workers (idempotent; a later ``grade`` starts new ones)."""
        with self._lock:
            workers, self._workers = self._workers, []
            if self._pid != os.getpid():
                return  # a forked child must not kill its parent's workers
            for w in workers:
                w.kill()

    def __enter__(self) -> MathGrader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
