"""Hydra entry points shared by ``r1zero.train`` and ``r1zero.evaluate``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from . import config as _config
from .config import ConfigError
from .data import DataUnavailableError
from .models import ModelUnavailableError

# Bad input, reported as one line without a traceback. Anything else is a bug and keeps its traceback.
USER_ERRORS = (ModelUnavailableError, DataUnavailableError, ConfigError, FileExistsError)


def report_error(err: Exception) -> None:
    """Bad input as one line on stderr, ``r1zero: error: <message>`` (callers exit with status 2)."""
    print(f"r1zero: error: {err}", file=sys.stderr, flush=True)


def hydra_entry(config_name: str, run: Callable[[DictConfig], object]) -> Callable[[], None]:
    """A ``main()`` that composes ``conf/<config_name>.yaml`` with Hydra and calls ``run(cfg)``.

    A :data:`USER_ERRORS` exception prints ``r1zero: error: <message>`` and exits with status 2; whatever
    the run already wrote (metrics, checkpoints) stays in its run directory.
    """

    def task(cfg: DictConfig) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        try:
            run(cfg)
        except USER_ERRORS as err:
            report_error(err)
            sys.exit(2)

    def main() -> None:
        import hydra

        hydra.main(version_base="1.3", config_path=str(_config.config_dir()), config_name=config_name)(task)()

    return main


def check_launch(cfg: DictConfig, overrides: list[str] | None = None) -> None:
    """Refuse, before anything is submitted, a multirun whose launcher starts several processes per job while
    the strategy is ``single`` (each job would fail on the cluster after queueing). A sweep over
    ``strategy`` (in ``overrides`` or the sweeper's params) is left to the jobs.

    Raises:
        ConfigError: names the launcher's process count and the strategies that use it.
    """
    launcher = cfg.hydra.get("launcher") or {}
    ranks = int(launcher.get("tasks_per_node") or 1) * int(launcher.get("nodes") or 1)
    swept = "strategy" in (cfg.hydra.sweeper.get("params") or {}) or any(
        o.startswith("strategy=") and "," in o for o in [*cfg.hydra.overrides.task, *(overrides or [])])
    if ranks > 1 and str(cfg.strategy.name) == "single" and not swept:
        raise ConfigError(f"hydra.launcher starts {ranks} processes per job (tasks_per_node x nodes) but "
                          f"strategy=single uses one; add strategy=ddp, zero2 or zero3, or set "
                          f"hydra.launcher.tasks_per_node=1")


class LaunchCheck(Callback):
    """Hydra callback (``hydra.callbacks`` in ``train.yaml``): :func:`check_launch` at multirun start."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        try:
            check_launch(config)
        except ConfigError as err:
            report_error(err)
            sys.exit(2)
