"""``python -m r1zero.evaluate model=<m> template=<t> [eval.benchmarks=[aime,math]]``: the benchmark suite.

A thin entry point: the suite itself (:func:`evaluate_suite`, :func:`load_benchmarks`, pass@k) lives in
:mod:`r1zero.evaluate.suite`, which training uses too.
"""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..data.templates import PromptTemplate
from ..model.load import load_model_and_tokenizer, resolve_device, resolve_dtype, resolve_model_dir
from ..reward import MathGrader
from ..rollout import build_engine
from ..run.cli import hydra_entry
from ..run.config import run_config
from ..run.hostmem import keep_freed_memory
from ..run.rundir import saved_config
from ..run.runlock import hold_run_dir
from ..run.seeding import set_seed
from ..schema import EvaluateRunConfig
from .suite import _sampling, evaluate_suite, format_table, load_benchmarks, pass_at_k, pass_k_values

__all__ = ["_sampling", "evaluate_suite", "format_table", "load_benchmarks", "main", "pass_at_k", "pass_k_values",
           "run"]


def run(cfg: DictConfig | EvaluateRunConfig) -> dict[str, float]:
    """Evaluate ``cfg.model`` on ``cfg.eval``; prints the table and writes eval.json in the run dir.

    The run dir is locked for the evaluation (:mod:`r1zero.run.runlock`), so a training run still writing it (an
    evaluation into ``hydra.run.dir=<run dir>``) refuses it before the model loads. There its own ``config.yaml``
    stays (``resume=auto`` compares against it): the evaluation's config goes to ``eval_config.yaml``.

    Raises:
        RunDirInUseError: another live run holds the run dir.
    """
    cfg = run_config(cfg, EvaluateRunConfig)  # typed and checked before anything loads
    run_dir = Path(cfg.paths.run_dir)
    with hold_run_dir(run_dir, "paths.run_dir", enabled=cfg.paths.lock_run_dir):
        return _evaluate(cfg, run_dir)


def _evaluate(cfg: EvaluateRunConfig, run_dir: Path) -> dict[str, float]:
    run_dir.mkdir(parents=True, exist_ok=True)
    training = "train" in (saved_config(run_dir) or {})  # a training run's directory
    OmegaConf.save(OmegaConf.structured(cfg), run_dir / ("eval_config.yaml" if training else "config.yaml"))
    set_seed(cfg.seed)
    device = resolve_device(cfg.device)
    if device.type == "cpu":
        keep_freed_memory()
    template = PromptTemplate.from_config(cfg.template)
    suite = load_benchmarks(cfg.eval, cfg.paths.data_root)  # before the model loads: fail fast
    model, tokenizer = load_model_and_tokenizer(cfg.model, device, resolve_dtype(cfg.dtype, device))
    model_dir = None if cfg.model.path == "tiny" else resolve_model_dir(cfg.model)
    engine = build_engine(cfg.rollout, model, tokenizer, model_dir=model_dir)
    print(f"r1zero: run directory {run_dir.resolve()}", flush=True)
    t0 = time.perf_counter()
    with MathGrader(num_workers=cfg.reward.num_workers, timeout_s=cfg.reward.timeout_s,
                    verifier=cfg.reward.verifier, batch_timeout_s=cfg.reward.batch_timeout_s,
                    max_answer_chars=cfg.reward.max_answer_chars) as grader:
        metrics = evaluate_suite(model, tokenizer, template, cfg.eval, engine=engine, grader=grader, run_dir=run_dir,
                                 suite=suite)
    print(format_table(metrics))
    print(f"r1zero: evaluated in {time.perf_counter() - t0:.1f} s; eval.json and eval_samples.jsonl in {run_dir.resolve()}")
    return metrics


main = hydra_entry("evaluate", run)


if __name__ == "__main__":
    main()
