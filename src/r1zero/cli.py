"""Hydra entry points shared by ``r1zero.train`` and ``r1zero.evaluate``."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from . import config as _config
from .errors import USER_ERRORS, ConfigError
from .launch import check_launch, preflight

__all__ = ["USER_ERRORS", "LaunchCheck", "check_launch", "hydra_entry", "report_error"]


def report_error(err: Exception) -> None:
    """Bad input as one line on stderr, ``r1zero: error: <message>`` (callers exit with status 2)."""
    line = " ".join(str(err).split("\n")).strip()
    print(f"r1zero: error: {line}", file=sys.stderr, flush=True)


def hydra_entry(config_name: str, run: Callable[[DictConfig], object]) -> Callable[[], None]:
    """A ``main()`` that composes ``conf/<config_name>.yaml`` with Hydra and calls ``run(cfg)``.

    Before Hydra starts, :func:`r1zero.launch.preflight` composes and checks the command line (every job of a
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
