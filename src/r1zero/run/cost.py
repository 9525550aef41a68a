"""Cost before launch: the wall time and GPU-hours of a run, from a documented throughput model.

``python -m r1zero.run.dryrun sweep=<name> hydra/launcher=slurm_a100`` prints :func:`estimate` for each job and the
sweep. The model, per training step (paper Table 6 sizes: P prompts x G samples):

* generation: ``P * G * L`` response tokens at :data:`GEN_TOKENS_PER_S` per GPU, where L is the expected mean
  response length, ``EXPECTED_LENGTH_FRAC * max_new_tokens`` (Qwen2.5-Math answers under the 3000-token budget
  average 600-1000 tokens in the paper's Fig. 5);
* learner: ``P * G * (PROMPT_TOKENS + L)`` tokens, ``6 N`` FLOPs each for forward + backward and ``2 N`` more for
  the no-grad ``old_logprobs`` pass (and the reference pass when ``kl_coef > 0``), at :data:`MFU` of the GPU's
  bf16 peak (:data:`PEAK_TFLOPS`);
* evaluation every ``eval.every`` steps: ``EVAL_QUESTIONS * L_eval`` greedy tokens at the generation rate.

The run's steps are ``train.total_steps``, or for a run in passes (``train.prompt_epochs``, the paper's sweeps)
``TrainConfig.run_steps`` of the question count the caller gives (``python -m r1zero.run.dryrun`` counts the set).

Generation is the calibrated term: an *effective* 255 generated tokens/s per A100 at 7.6B parameters makes 200
steps of Oat-Zero-7B (128 x 8 responses, eval every 16 steps) take the paper's 27 hours on 8 A100s (Liu et al.
2025, §1 and Table 4). 200 steps was r1zero's earlier reading of that run, with no source; the paper's script
(understand-r1-zero ``examples/qwen2.5-math-7b.sh``, ``--num_prompt_epoch 20``) runs 20 passes over
``math_lvl3to5_8k``, 20 x floor(8,523 / 128) = 1,320 steps. If that run took the 27 hours, no generation rate
fits this model: its learner term alone (750-token responses at MFU 0.30) comes to 27.5 h over 1,320 steps, so
for the paper's runs the model over-estimates, by up to ~6.6x (1,320 / 200), until it is recalibrated on a
measured run. Other sizes scale as ``(7.62 / params_b) ** 0.6`` (decode is memory-bound: fewer weights to read,
larger batches). After a run, ``python -m r1zero_analysis cost`` compares this estimate with the measured
``time/step_s`` and the manifest's GPU-hours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..schema import TrainConfig, typed

#: bf16 dense peak per GPU (vendor datasheets: A100 SXM 312, H100 SXM 989 TFLOP/s).
PEAK_TFLOPS = {"a100": 312.0, "h100": 989.0, "h200": 989.0}
#: Effective generated tokens/s per GPU at 7.62B parameters (calibrated: 27 h for Oat-Zero-7B on 8 A100s);
#: H100/H200 from their HBM bandwidth ratio to A100 (3.35 and 4.8 vs 2.0 TB/s).
GEN_TOKENS_PER_S = {"a100": 255.0, "h100": 255.0 * 3.35 / 2.0, "h200": 255.0 * 4.8 / 2.0}
MFU = 0.30                # learner: a typical ZeRO-2 bf16 fine-tuning utilisation
EXPECTED_LENGTH_FRAC = 0.25  # mean response length / max_new_tokens (750 of 3000)
PROMPT_TOKENS = 150       # template + a MATH question
EVAL_QUESTIONS = 1560     # the paper's five benchmarks (30 + 83 + 500 + 272 + 675)


@dataclass(frozen=True)
class Estimate:
    """One job's estimate. Times in seconds; ``gpu_hours`` = wall x GPUs / 3600; ``segments``: SLURM jobs
    needed when one job may run ``limit_s`` (``resume=auto`` continues in the next); None without a limit."""

    step_s: float
    gen_s: float
    learner_s: float
    eval_s: float
    wall_s: float
    gpus: int
    gpu_hours: float
    limit_s: float | None
    segments: int | None


def _gpu_kind(name: str) -> str:
    for kind in PEAK_TFLOPS:
        if kind in name.lower():
            return kind
    raise ValueError(f"unknown GPU type {name!r}; the cost model knows {sorted(PEAK_TFLOPS)}")


def estimate(cfg, *, gpus: int, gpu: str = "a100", limit_s: float | None = None,
             questions: int | None = None) -> Estimate:
    """Estimated cost of the training run ``cfg`` (a composed train config) on ``gpus`` GPUs of type ``gpu``.

    ``questions``: the size of the run's question set, which a run in passes (``train.prompt_epochs``) needs for
    its step count (``TrainConfig.run_steps``); without it the run is ``train.total_steps`` steps (for a run in
    passes, its cap).

    Raises:
        ValueError: unknown GPU type, a model without ``params_b``, or a run in passes with neither ``questions``
            nor a ``train.total_steps`` cap.
    """
    kind = _gpu_kind(gpu)
    if cfg.model.params_b is None:
        raise ValueError(f"model {cfg.model.name!r} has no params_b (parameters in billions) for the cost model")
    n = float(cfg.model.params_b) * 1e9
    responses = int(cfg.train.prompts_per_rollout) * int(cfg.sampling.group_size)
    length = EXPECTED_LENGTH_FRAC * int(cfg.sampling.max_new_tokens)
    gen_tps = GEN_TOKENS_PER_S[kind] * (7.62e9 / n) ** 0.6 * gpus
    gen_s = responses * length / gen_tps
    passes = 6 + 2 + (2 if float(cfg.algo.kl_coef) > 0 else 0)  # fwd+bwd, old_logprobs, reference
    learner_s = responses * (PROMPT_TOKENS + length) * passes * n / (MFU * PEAK_TFLOPS[kind] * 1e12 * gpus)
    if questions is not None:
        steps = typed(TrainConfig, cfg.train).run_steps(questions)
    elif cfg.train.total_steps is not None:
        steps = int(cfg.train.total_steps)
    else:
        raise ValueError("train.prompt_epochs: the run's steps need the size of its question set "
                         "(train.total_steps is null)")
    every = int(cfg.eval.every)
    n_evals = (steps // every + (steps % every > 0) + bool(cfg.eval.at_start)) if every else 0
    eval_s = n_evals * EVAL_QUESTIONS * EXPECTED_LENGTH_FRAC * int(cfg.eval.max_new_tokens) / gen_tps
    step_s = gen_s + learner_s
    wall_s = steps * step_s + eval_s
    segments = math.ceil(wall_s / limit_s) if limit_s else None
    return Estimate(step_s, gen_s, learner_s, eval_s, wall_s, gpus, wall_s * gpus / 3600, limit_s, segments)


def launcher_resources(cfg) -> tuple[int, float | None]:
    """``(GPUs per job, usable seconds per job)`` of a submitit SLURM launcher; ``(1, None)`` otherwise.

    Usable seconds are the time limit minus the warning window (``signal_delay_s``), in which the job checkpoints.
    """
    launcher = cfg.hydra.get("launcher") or {}
    if "timeout_min" not in launcher or "gpus_per_node" not in launcher:
        return 1, None
    gpus = int(launcher.get("gpus_per_node") or launcher.get("tasks_per_node") or 1) * int(launcher.get("nodes") or 1)
    return gpus, float(launcher.timeout_min) * 60 - float(launcher.get("signal_delay_s") or 0)


def format_estimate(e: Estimate) -> str:
    fit = ""
    if e.limit_s is not None:
        fit = (f"; fits the {e.limit_s / 3600:.1f} h usable time limit" if e.segments == 1 else
               f"; needs {e.segments} segments of {e.limit_s / 3600:.1f} h (resume=auto continues each)")
    return (f"~{e.wall_s / 3600:.1f} h on {e.gpus} GPU(s), {e.gpu_hours:.0f} GPU-hours "
            f"(step {e.step_s:.0f} s: generation {e.gen_s:.0f} s + learner {e.learner_s:.0f} s; "
            f"evaluation {e.eval_s / 3600:.1f} h){fit}")
