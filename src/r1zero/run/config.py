"""Where the Hydra config tree lives, the OmegaConf resolvers it uses, and the composed config as checked objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from omegaconf import OmegaConf

from .. import algos
from ..data import questions
from ..reward import names as reward_names
from ..schema import RunConfig, register, typed

T = TypeVar("T")

_PKG = Path(__file__).resolve().parents[1]  # the r1zero package: run/ is one level below it


def config_dir() -> Path:
    """The ``conf/`` tree: inside the package for a wheel install, else the repository's ``conf/``."""
    packaged = _PKG / "conf"
    if packaged.is_dir():
        return packaged
    repo = _PKG.parents[1] / "conf"
    if repo.is_dir():
        return repo
    raise FileNotFoundError(f"r1zero config tree not found (looked in {packaged} and {repo})")


def project_root() -> Path:
    """The directory holding ``conf/`` (the repository root in a source checkout)."""
    return config_dir().parent


def register_resolvers() -> None:
    """``${r1zero_root:}`` → :func:`project_root`, so data paths can be relative to the checkout."""
    if not OmegaConf.has_resolver("r1zero_root"):
        OmegaConf.register_new_resolver("r1zero_root", lambda: str(project_root()))


register_resolvers()


def register_schemas() -> None:
    """The groups' schemas (:mod:`r1zero.schema`) in Hydra's ConfigStore, where the defaults lists name them."""
    register()


register_schemas()


def run_config(cfg: Any, schema: type[T] = RunConfig) -> T:
    """The composed run config as objects (``schema``: :class:`~r1zero.schema.RunConfig` or
    :class:`~r1zero.schema.EvaluateRunConfig`), checked: the schema's checks, then the names that only the
    components know (the grader's verifier and answer format; the data nodes' generator and answer_from, the
    training set's and every ``eval.sources`` benchmark's; a training run's algo axes).

    Raises:
        ConfigError: a wrong type, an unknown key, a bad value or an unregistered name (one line naming the key).
    """
    typed_cfg = typed(schema, cfg)
    training = isinstance(typed_cfg, RunConfig)
    reward_names.check_names(typed_cfg.reward, typed_cfg.template)
    questions.check_names(typed_cfg.data if training else None, typed_cfg.eval.sources)
    if training:
        algos.check_names(typed_cfg.algo)
    return typed_cfg
