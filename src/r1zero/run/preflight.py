"""Before anything runs: compose what a command line asks for and check it (library code of the entry points).

:func:`preflight` composes ``conf/<name>.yaml`` with the command line's overrides (every job of a multirun)
and checks it against :mod:`r1zero.schema`, so a bad value fails as one ``r1zero: error:`` line before Hydra
starts a job or any model loads. :func:`plan` is the job list of a multirun (also ``python -m r1zero.run.dryrun``).
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from .. import schema as _schema
from ..learner.strategy.env import detect_dist_env
from ..schema import EvaluateRunConfig, RunConfig
from ..schema.errors import ConfigError, bad_value, config_error_from
from .config import config_dir, run_config
from .rundir import check_writable

#: Hydra flags that take a value (``--cfg job``): skipped with their value when collecting overrides.
_VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "--experimental-rerun", "--config-path", "-cp",
                "--config-name", "-cn", "--config-dir", "-cd", "--info", "-i", "--shell-completion", "-sc"}
#: Flags after which nothing is run (help, completion) or a config other than ours is used: no preflight.
_NO_PREFLIGHT = {"--help", "-h", "--hydra-help", "--version", "--info", "-i", "--shell-completion", "-sc",
                 "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun"}


def _compose(config_name: str, overrides: list[str], hydra: bool = False) -> DictConfig:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides), return_hydra_config=hydra)


def plan(overrides: list[str], config_name: str = "train") -> tuple[DictConfig, list[list[str]]]:
    """The composed config (with its ``hydra`` node) and each job's overrides, in launch order.

    The jobs are Hydra's basic sweeper's: ``hydra.sweeper.params`` of the composed config (a sweep file) x the
    command line's sweeps, the command line last.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # pinned: tests/test_sweeps.py
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    parsed = parser.parse_overrides(list(overrides))
    fixed = [p.input_line for p in parsed if not p.is_sweep_override()]  # compose() takes no sweeps
    cfg = _compose(config_name, fixed, hydra=True)
    params = [f"{k}={v}" for k, v in (OmegaConf.select(cfg, "hydra.sweeper.params") or {}).items()]
    batches = BasicSweeper.split_arguments(parser.parse_overrides(params + list(overrides)), None)
    return cfg, [list(job) for job in batches[0]]


def compose_job(job: list[str], config_name: str = "train") -> DictConfig:
    """The job config of one job of :func:`plan` (its overrides, no sweeps left)."""
    return _compose(config_name, job)


def check_launch(cfg: DictConfig, overrides: list[str] | None = None) -> None:
    """Refuse, before anything is submitted, a multirun whose launcher starts several processes per job while
    the strategy is ``single`` (each job would fail on the cluster after queueing). A sweep over
    ``strategy`` (in ``overrides`` or the sweeper's params) is left to the jobs.

    Raises:
        ConfigError: names the launcher's process count and the strategies that use it.
    """
    launcher = OmegaConf.select(cfg, "hydra.launcher") or {}
    ranks = int(OmegaConf.select(launcher, "tasks_per_node") or 1) * int(OmegaConf.select(launcher, "nodes") or 1)
    swept = "strategy" in (OmegaConf.select(cfg, "hydra.sweeper.params") or {}) or any(
        o.startswith("strategy=") and "," in o for o in [*cfg.hydra.overrides.task, *(overrides or [])])
    if ranks > 1 and str(cfg.strategy.name) == "single" and not swept:
        raise ConfigError(f"hydra.launcher starts {ranks} processes per job (tasks_per_node x nodes) but "
                          f"strategy=single uses one; add strategy=ddp, zero2 or zero3, or set "
                          f"hydra.launcher.tasks_per_node=1")


def check_job(cfg: DictConfig, schema: Any, env_checks: bool = True) -> None:
    """One composed job config through its schema's checks (``paths.run_dir`` does not exist yet)."""
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.paths.run_dir = "."  # ${hydra:runtime.output_dir} is set only inside a job
    previous, _schema.ENV_CHECKS = _schema.ENV_CHECKS, env_checks
    try:
        typed_cfg = run_config(cfg, schema)
        if env_checks and isinstance(typed_cfg, RunConfig):
            typed_cfg.check_batches(detect_dist_env().world_size)  # under torchrun / srun: this job's ranks
    finally:
        _schema.ENV_CHECKS = previous


def split_argv(argv: list[str]) -> tuple[list[str], set[str]]:
    """``(overrides, flags)`` of a Hydra command line."""
    overrides, flags, skip = [], set(), False
    for arg in argv:
        if skip:
            skip = False
        elif arg.startswith("-"):
            flag = arg.split("=", 1)[0]
            flags.add(flag)
            skip = flag in _VALUE_FLAGS and "=" not in arg
        else:
            overrides.append(arg)
    return overrides, flags


def preflight(config_name: str, argv: list[str]) -> None:
    """Compose and check what ``python -m r1zero.<config_name> <argv>`` would run; nothing runs or loads.

    A multirun checks every job; jobs for a SLURM launcher skip the checks of this machine (its GPUs, the
    process count), which their own start-up repeats where they run.

    Raises:
        ConfigError: the first bad value, unknown key or unknown option, as one line naming it.
        OutputUnwritableError: the run (or sweep) directory cannot be written (:func:`check_outputs`).
    """
    overrides, flags = split_argv(argv)
    if flags & _NO_PREFLIGHT:
        return
    schema = RunConfig if config_name == "train" else EvaluateRunConfig
    multirun = bool(flags & {"-m", "--multirun"})
    try:
        if multirun:
            cfg, jobs = plan(overrides, config_name)
            remote = "slurm" in str(OmegaConf.select(cfg, "hydra.launcher._target_") or "").lower()
            for job in jobs:
                check_job(compose_job(job, config_name), schema, env_checks=not remote)
        else:
            check_job(_compose(config_name, overrides), schema)
            cfg = _compose(config_name, overrides, hydra=True)  # hydra.run.dir (check_job takes no hydra node)
    except ConfigError:
        raise
    except Exception as err:  # Hydra's composition / override-parser errors
        from hydra.errors import HydraException, OverrideParseException
        from omegaconf.errors import OmegaConfBaseException


        if isinstance(err, OverrideParseException):
            raise _parse_error(overrides) from None
        if isinstance(err, (HydraException, OmegaConfBaseException)):
            raise config_error_from(err) from None
        raise
    check_outputs(cfg, multirun)


def check_outputs(cfg: DictConfig, multirun: bool) -> None:
    """Refuse a launch whose output directory cannot be written (Hydra would fail creating it, in a traceback):
    ``hydra.sweep.dir`` (multirun) or ``hydra.run.dir`` of ``cfg`` (composed with its ``hydra`` node), and
    ``paths.run_dir`` when set to a path of its own.

    Raises:
        OutputUnwritableError: one line naming the key and the directory that refused.
    """
    from omegaconf.errors import OmegaConfBaseException

    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        target = OmegaConf.select(cfg, key)
    except OmegaConfBaseException:  # an interpolation only a running job resolves: Hydra's own mkdir checks it
        target = None
    if target is not None:
        check_writable(str(target), key)
    run_dir = OmegaConf.to_container(cfg.paths, resolve=False).get("run_dir")
    if isinstance(run_dir, str) and "${" not in run_dir:
        check_writable(run_dir, "paths.run_dir")


def _parse_error(overrides: list[str]) -> ConfigError:
    """The first override Hydra's grammar cannot read, as one line."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for arg in overrides:
        try:
            parser.parse_overrides([arg])
        except OverrideParseException as err:
            reason = str(err).strip().splitlines()[0]
            return bad_value(arg, f"not an override Hydra can read ({reason})",
                             "key=value, group=option, +key=value, ~key; quote values with brackets or spaces")
    return ConfigError("the command line cannot be parsed as Hydra overrides")
