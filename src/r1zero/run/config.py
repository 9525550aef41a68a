"""Where the Hydra config tree lives, and the OmegaConf resolvers it uses."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

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
    from ..schema import register

    register()


register_schemas()
