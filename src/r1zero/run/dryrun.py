"""What a multirun would launch, without launching it: ``python -m r1zero.run.dryrun [overrides]``.

    python -m r1zero.run.dryrun sweep=ablation hydra/launcher=slurm_a100 hydra.launcher.partition=gpu

takes the arguments of ``python -m r1zero.train -m ...`` and prints the jobs Hydra's basic sweeper would make
(``hydra.sweeper.params`` of the sweep file x the command-line sweeps, command line last) and, for the submitit
launchers, the ``#SBATCH`` header every job of the job array gets. Hydra itself cannot print this:
``-m`` and ``--cfg`` do not combine, and ``--cfg hydra`` shows the grid only as ``hydra.sweeper.params``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..data.questions import load_questions
from ..schema.errors import ConfigError, DataUnavailableError
from . import config as _config  # noqa: F401  (the ${r1zero_root:} resolver of hydra.searchpath)
from .cli import report_error
from .cost import estimate, format_estimate, launcher_resources
from .preflight import check_launch, compose_job, plan


def sbatch_header(cfg: DictConfig, n_jobs: int) -> list[str]:
    """``#SBATCH`` lines of a submitit SLURM launcher (``hydra.launcher``), as submitit writes them."""
    import submitit
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    HydraConfig.instance().set_config(cfg)  # the launcher fields interpolate hydra.sweep.dir / hydra.job.name
    try:
        params = dict(instantiate(cfg.hydra.launcher).params)
    finally:
        HydraConfig.instance().cfg = None
    folder = Path(str(params.pop("submitit_folder")))
    # The same executor the hydra-submitit launcher builds (hydra_plugins/.../submitit_launcher.py): AutoExecutor,
    # base fields as they are, the rest prefixed ``slurm_``.
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm",
                                     slurm_max_num_timeout=params.pop("max_num_timeout", 0))
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    text = _submission_text(executor, n_jobs)
    return [line for line in text.splitlines() if line.startswith("#SBATCH")]


def _submission_text(executor, n_jobs: int) -> str:
    """The sbatch script submitit would write for ``n_jobs`` jobs of one launch.

    submitit has no public call that renders the script without submitting it, so this uses two private members
    of ``submitit.slurm.slurm.SlurmExecutor`` (the pinned range in pyproject.toml; tests/test_sweeps.py checks
    the header): ``parameters["map_count"]`` (how ``_internal_process_submissions`` turns a launch into one job
    array) and ``_make_submission_file_text(command, uid)``.

    Raises:
        ConfigError: the installed submitit no longer has them (one line naming the version).
    """
    inner = getattr(executor, "_executor", None)
    render = getattr(inner, "_make_submission_file_text", None)
    if render is None or not isinstance(getattr(inner, "parameters", None), dict):
        import submitit

        raise ConfigError(f"r1zero.run.dryrun: submitit {submitit.__version__} has no SlurmExecutor."
                          f"_make_submission_file_text; valid: submitit>=1.5,<1.6 (pyproject.toml)")
    if n_jobs > 1:
        inner.parameters["map_count"] = n_jobs
    return render("python -u -m submitit.core._submit <folder>", "<uid>")


def _question_count(cfg: DictConfig, sizes: dict) -> int | str:
    """The number of questions of ``cfg.data`` (before prompts over ``train.prompt_max_length`` are dropped:
    that takes the tokenizer), or one line saying why the set cannot be read here; memoised in ``sizes``."""
    key = OmegaConf.to_yaml(cfg.data, resolve=True) + str(cfg.paths.data_root)
    if key not in sizes:
        try:
            sizes[key] = len(load_questions(cfg.data, cfg.paths.data_root))
        except DataUnavailableError as err:
            sizes[key] = f"train.prompt_epochs needs the question set's size: {str(err).splitlines()[0]}"
    return sizes[key]


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(__doc__.strip())
        return 0
    cfg, jobs = plan(args)
    launcher = str(OmegaConf.select(cfg, "hydra.launcher._target_") or "").rsplit(".", 1)[-1]
    grid = ", ".join(f"{k}: {len(str(v).split(','))}" for k, v in (OmegaConf.select(cfg, "hydra.sweeper.params") or {}).items())
    print(f"{len(jobs)} jobs (hydra.sweeper.params {{{grid}}}), launcher {launcher}, "
          f"sweep dir {cfg.hydra.sweep.dir}")
    gpus, limit_s = launcher_resources(cfg)
    total_h = total_gpu_h = 0.0
    sizes: dict[str, int | str] = {}  # question set -> its size, or why it could not be read
    unestimated = 0
    for i, job in enumerate(jobs):
        print(f"  #{i}: {' '.join(job)}")
        if launcher == "SlurmLauncher":
            job_cfg = compose_job(job)
            questions = None
            if job_cfg.train.prompt_epochs is not None:  # a run in passes: its steps need the set's size
                questions = _question_count(job_cfg, sizes)
                if isinstance(questions, str):
                    print(f"      estimate: none ({questions})")
                    unestimated += 1
                    continue
            est = estimate(job_cfg, gpus=gpus, gpu="a100", limit_s=limit_s, questions=questions)
            total_h, total_gpu_h = total_h + est.wall_s / 3600, total_gpu_h + est.gpu_hours
            print(f"      estimate: {format_estimate(est)}")
    if launcher == "SlurmLauncher":
        missing = f"; {unestimated} job(s) without an estimate, not counted" if unestimated else ""
        print(f"sweep estimate: {total_gpu_h:.0f} GPU-hours in all ({total_h:.1f} h of {gpus}-GPU jobs; "
              f"cost model and its sources: r1zero/run/cost.py{missing})")
    if launcher == "SlurmLauncher":
        print("sbatch header of every job:")
        for line in sbatch_header(cfg, len(jobs)):
            print(f"  {line}")
    try:
        check_launch(cfg, args)  # what `-m` would refuse before submitting
    except ConfigError as err:
        report_error(err)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
