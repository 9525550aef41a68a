"""``logger`` group (``conf/logger/*.yaml``) and ``paths``: where metrics and outputs go."""

from dataclasses import dataclass, field
from typing import Optional

from ._check import at_least, one_of


@dataclass
class WandbConfig:
    mode: str = "disabled"                   # disabled | offline (sync later: wandb sync <run_dir>/wandb/offline-run-*) | online
    project: str = "r1zero"                  # wandb project
    entity: Optional[str] = None             # wandb team/user; null: your default
    group: Optional[str] = None              # wandb group; null: <sweep>:<sweep dir> for the jobs of a multirun, none for a single run
    name: Optional[str] = None               # run name; null: <model>-<template>-<algo>-<data>-s<seed>
    tags: list[str] = field(default_factory=list)  # extra tags, after algo:/template:/data:/model:/seed: (and sweep:, experiment:)

    def __post_init__(self) -> None:
        one_of("logger.wandb.mode", self.mode, ("disabled", "offline", "online"))


@dataclass
class LoggerConfig:
    wandb: WandbConfig = field(default_factory=WandbConfig)  # besides metrics.jsonl (always written)
    samples_per_step: int = 4                # rollouts written to samples.jsonl per step
    progress_bar: bool = True                # tqdm bar over training steps

    def __post_init__(self) -> None:
        at_least("logger.samples_per_step", self.samples_per_step, 0)


@dataclass
class PathsConfig:
    data_root: str = "${oc.env:R1ZERO_DATA_ROOT,'~/.cache/r1zero/datasets'}"  # the paper's released data (datasets/)
    run_dir: str = "${hydra:runtime.output_dir}"  # everything a run writes goes here
    # One live run per run dir: an exclusive lock on <run_dir>/.lock (r1zero.run.runlock) refuses a second run into it.
    # false only on a filesystem that cannot lock (the error says so); then never start two runs into one directory
    lock_run_dir: bool = True
