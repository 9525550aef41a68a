"""Hydra entry points shared by ``r1zero.train`` and ``r1zero.evaluate``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from omegaconf import DictConfig

from . import config as _config
from .config import ConfigError
from .data import DataUnavailableError
from .models import ModelUnavailableError

# Bad input, reported as one line without a traceback. Anything else is a bug and keeps its traceback.
USER_ERRORS = (ModelUnavailableError, DataUnavailableError, ConfigError, FileExistsError)


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
            print(f"r1zero: error: {err}", file=sys.stderr, flush=True)
            sys.exit(2)

    def main() -> None:
        import hydra

        hydra.main(version_base="1.3", config_path=str(_config.config_dir()), config_name=config_name)(task)()

    return main
