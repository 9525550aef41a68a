"""Hydra entry points shared by ``r1zero.train`` and ``r1zero.evaluate``, and what a run reads of its Hydra job
(:func:`hydra_job_info`)."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from ..learner.strategy.env import detect_dist_env
from ..schema.errors import USER_ERRORS, ConfigError
from . import config as _config
from .preflight import check_launch, preflight
from .runlock import RunDirLock, hold_run_dir

__all__ = ["USER_ERRORS", "LaunchCheck", "RunDirLockCallback", "check_launch", "hydra_entry", "hydra_job_info",
           "report_error"]


def report_error(err: Exception) -> None:
    """Bad input as one line on stderr, ``r1zero: error: <message>`` (callers exit with status 2)."""
    line = " ".join(str(err).split("\n")).strip()
    print(f"r1zero: error: {line}", file=sys.stderr, flush=True)


def hydra_job_info() -> dict[str, str | None]:
    """``sweep``, ``experiment`` (the options chosen, or None) and ``sweep_dir`` (``hydra.sweep.dir`` in a
    multirun, else None) of the Hydra job running this process, for :func:`r1zero.run.tracking.wandb_settings`;
    ``{}`` outside Hydra (tests composing a config)."""
    if not HydraConfig.initialized():
        return {}
    hc = HydraConfig.get()
    choices = hc.runtime.choices
    return {"sweep": choices.get("sweep"), "experiment": choices.get("experiment"),
            "sweep_dir": str(hc.sweep.dir) if hc.mode == RunMode.MULTIRUN else None}


def hydra_entry(config_name: str, run: Callable[[DictConfig], object]) -> Callable[[], None]:
    """A ``main()`` that composes ``conf/<config_name>.yaml`` with Hydra and calls ``run(cfg)``.

    Before Hydra starts, :func:`r1zero.run.preflight.preflight` composes and checks the command line (every job of a
    multirun): a bad value, an unknown key or option, or an output directory that cannot be written prints one
    ``r1zero: error:`` line and exits with status 2 before any job starts or model loads. A :data:`USER_ERRORS` exception during the run does the same;
    whatever the run already wrote (metrics, checkpoints) stays in its run directory.
    """

    run = _importable(run)

    def task(cfg: DictConfig) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        try:
            run(cfg)
        except USER_ERRORS as err:
            report_error(err)
            sys.exit(2)

    def main() -> None:
        import hydra

        try:
            preflight(config_name, sys.argv[1:])
        except USER_ERRORS as err:
            report_error(err)
            sys.exit(2)
        hydra.main(version_base="1.3", config_path=str(_config.config_dir()), config_name=config_name)(task)()

    return main


def _importable(run: Callable[[DictConfig], object]) -> Callable[[DictConfig], object]:
    """``run``, or when ``python -m r1zero.train`` defined it in ``__main__``, the same function imported from its module.

    A SLURM job gets its task function through submitit's cloudpickle, which sends a ``__main__`` function and every
    class it reaches by value, code included; a function of an importable module travels as a reference, so the job
    runs the installed code and no class of the recipe has to survive being rebuilt from its parts.
    """
    if run.__module__ != "__main__":
        return run
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    if spec is None:  # a script run by its path: no name to import it by
        return run
    return getattr(importlib.import_module(spec.name), run.__qualname__)


class LaunchCheck(Callback):
    """Hydra callback (``hydra.callbacks`` in ``train.yaml``): :func:`check_launch` at multirun start."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        try:
            check_launch(config)
        except ConfigError as err:
            report_error(err)
            sys.exit(2)


class RunDirLockCallback(Callback):
    """Hydra callback (``hydra.callbacks`` in ``train.yaml`` and ``evaluate.yaml``): locks ``hydra.run.dir``
    (:func:`r1zero.run.runlock.hold_run_dir`) before Hydra writes ``.hydra/`` and the job's log there, so a refused
    run leaves the directory as it was; a held directory prints one ``r1zero: error:`` line and exits with status 2.

    Single runs of one process only: a multirun's job directories are written by Hydra before any callback of the
    job runs, and under torchrun / srun one rank holds the lock for all (the recipe takes it once the process group
    is up and tells every rank). Both lock ``paths.run_dir`` in the run itself.
    """

    def __init__(self) -> None:
        self._lock: RunDirLock | None = None

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        import os

        from omegaconf import OmegaConf

        if detect_dist_env().world_size > 1:
            return
        run_dir = OmegaConf.select(config, "hydra.run.dir")  # ${now:} is resolved once per config: Hydra's value
        try:
            self._lock = hold_run_dir(os.path.abspath(str(run_dir)), "hydra.run.dir",
                                      enabled=bool(OmegaConf.select(config, "paths.lock_run_dir", default=True)))
        except USER_ERRORS as err:
            report_error(err)
            sys.exit(2)

    def on_run_end(self, config: DictConfig, **kwargs) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
