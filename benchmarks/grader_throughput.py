"""Grader throughput on MATH500's 500 gold solutions (``train/math_lvl3to5_8k``, split ``eval``).

Four batches, each on a fresh ``MathGrader`` whose workers are started (and warmed) before timing, so every
batch starts with empty caches:

* ``shortcut``: the default path; every gold answer is string-identical to its reference, so this measures
  extraction + the shortcut (+ dispatch) only.
* ``math_verify``: the shortcut off, every answer verified by math_verify in the workers.
* ``wrong``: each solution against the next question's answer (what most RL rollouts look like: wrong),
  default path; plain-integer mismatches are settled by the shortcut, the rest verified.
* ``math_verify+pathological``: the ``math_verify`` batch with ``\\boxed{9^{9^{9}}}`` (vs 1) in the
  middle; it occupies one worker for ``--timeout`` seconds while the others go on.

then, on a warm grader, the pathological answer alone (wall time about ``--timeout``) and ``patho x20``: 20
distinct pathological pairs, which queue up for 10 timeouts on 2 workers without a batch budget and cost 1-2
timeouts with one (``reward.batch_timeout_s``; ``fast`` is not slowed down by this answer: it refuses to
simplify ``^{``); and the lenient answer-tag extraction of 100k characters of unclosed tags (in the caller).
Each batch is run ``--repeat`` times (fresh graders) and the fastest kept: the numbers are sensitive to
other load on the machine, which is printed.

Usage: ``python benchmarks/grader_throughput.py [--workers 2] [--timeout 5] [--repeat 1] [--verifier fast ...]
[--data-root DIR]`` (``--verifier``: one or more ``reward.verifier`` values, default all; ``math_verify`` in the
batch names is the shortcut-off path of whichever verifier is chosen).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from r1zero.reward import VERIFIERS, MathGrader, extract_answer

PATHOLOGICAL = "\\boxed{9^{9^{9}}}"
DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "datasets"


def timed(responses, refs, *, workers: int, timeout: float, shortcut: bool, verifier: str):
    with MathGrader(num_workers=workers, timeout_s=timeout, exact_match_shortcut=shortcut, verifier=verifier) as g:
        t0 = time.perf_counter()
        g.grade(["\\boxed{x}"] * workers, ["1"] * workers, "boxed")  # workers up and warm
        startup = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = g.grade(responses, refs, "boxed")
        return time.perf_counter() - t0, startup, res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2, help="grader worker processes (default 2)")
    ap.add_argument("--timeout", type=float, default=5.0, help="per-answer timeout in seconds (default 5)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per batch; the fastest is reported")
    ap.add_argument("--verifier", choices=VERIFIERS, nargs="+", default=list(VERIFIERS),
                    help="reward.verifier values to measure (default: all)")
    ap.add_argument(
        "--data-root",
        type=Path,
        default=Path(os.environ.get("R1ZERO_DATA_ROOT", DEFAULT_ROOT)),
        help="the released datasets dir (default $R1ZERO_DATA_ROOT or ../shared/data/datasets)",
    )
    args = ap.parse_args()

    from datasets import load_from_disk

    ds = load_from_disk(str(args.data_root / "train" / "math_lvl3to5_8k"))["eval"]
    outputs, answers = list(ds["output"]), list(ds["gt_answer"])
    shifted = answers[1:] + answers[:1]
    mid = len(outputs) // 2
    with_patho = (outputs[:mid] + [PATHOLOGICAL] + outputs[mid:], answers[:mid] + ["1"] + answers[mid:])

    opened = "</think> <answer>" * 6000 + "x"  # ~100k characters
    t0 = time.perf_counter()
    extract_answer(opened, "answer_tag_lenient")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; workers={args.workers}, "
          f"timeout={args.timeout:g}s; lenient extraction of {len(opened)} characters of unclosed tags: "
          f"{time.perf_counter() - t0:.3f} s")  # fmt: skip
    for verifier in args.verifier:
        measure(verifier, args, outputs, answers, shifted, with_patho)


def measure(verifier, args, outputs, answers, shifted, with_patho) -> None:
    print(f"verifier={verifier}")
    runs = [
        ("shortcut", outputs, answers, True),
        ("math_verify", outputs, answers, False),
        ("wrong", outputs, shifted, True),
        ("math_verify+pathological", *with_patho, False),
    ]
    for name, resp, refs, shortcut in runs:
        best = None
        for _ in range(max(1, args.repeat)):
            dt, startup, res = timed(
                resp, refs, workers=args.workers, timeout=args.timeout, shortcut=shortcut, verifier=verifier
            )
            best = min(best or (dt, startup, res), (dt, startup, res), key=lambda x: x[0])
        dt, startup, res = best
        acc = sum(r.reward for r in res) / len(res)
        timeouts = sum(r.timed_out for r in res)
        print(
            f"  {name:26s} {len(res):4d} answers  {dt:7.2f} s  {len(res) / dt:8.1f} answers/s  "
            f"reward mean {acc:.3f}  timeouts {timeouts}  (worker startup {startup:.1f} s)"
        )
    with MathGrader(num_workers=args.workers, timeout_s=args.timeout, verifier=verifier) as g:
        g.grade(["\\boxed{x}"] * args.workers, ["1"] * args.workers, "boxed")
        t0 = time.perf_counter()
        res = g.grade([PATHOLOGICAL], ["1"], "boxed")
        dt = time.perf_counter() - t0
        print(f"  pathological answer alone: {dt:.2f} s, timed_out={res[0].timed_out} (--timeout {args.timeout:g} s)")
        t0 = time.perf_counter()
        res = g.grade([PATHOLOGICAL] * 20, [str(k) for k in range(20)], "boxed")
        dt = time.perf_counter() - t0
        print(f"  patho x20 (distinct pairs): {dt:.2f} s = {dt / args.timeout:.1f} timeouts, "
              f"{sum(r.timed_out for r in res)} timed out")


if __name__ == "__main__":
    main()
