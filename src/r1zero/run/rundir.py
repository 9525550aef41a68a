"""What a run directory already holds, checked before a run continues in it (``resume=auto``).

A run directory belongs to one experiment: continuing it with another config would mix two experiments in one
``metrics.jsonl``, so :func:`check_same_config` refuses, naming the changed keys (``allow_config_change=true``
overrides). Rerunning a finished run is a no-op (:func:`finished_run`), not a second training over its results.
:func:`check_writable` refuses, before anything starts, a run directory that cannot be created or written, and
:func:`unwritable_as_one_line` turns a write refused later (a full disk) into one line.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ..schema.errors import OutputUnwritableError, bad_value
from .checkpoint import DISK_ERRNOS

#: Keys a continued run may change: where it writes and logs, how long it runs (and how many non-finite steps in a row
#: it stands), when it saves and evaluates.
MAY_CHANGE_ON_RESUME = ("resume", "allow_config_change", "paths.", "logger.", "device", "reward.num_workers",
                        "train.total_steps", "train.prompt_epochs", "train.save_every", "train.keep_checkpoints",
                        "train.save_final", "train.max_nonfinite_steps",
                        "eval.every", "eval.at_start", "eval.at_end")


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: node}


def check_writable(path: str | Path, key: str) -> None:
    """Refuse an output directory ``path`` (the value of config key ``key``) that cannot be created or written.

    Probes the nearest existing directory on the way to ``path`` by creating and removing a directory in it:
    permission bits alone do not stop root, and ``os.access`` passes a read-only ``/proc`` or ``/sys``.

    Raises:
        OutputUnwritableError: one line naming ``key``, the path, and the directory that refused (the current
            directory for a relative path under a read-only cwd).
    """
    given = Path(path).expanduser()
    target = given if given.is_absolute() else Path.cwd() / given
    existing = target
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    where = f"{existing} (the current directory)" if existing == Path.cwd() and not given.is_absolute() else existing
    valid = f"a directory this user can write (run from one, or set {key}=<writable dir>)"
    if not existing.is_dir():
        raise OutputUnwritableError(f"{key}={given}: {where} is a file, not a directory; valid: {valid}")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".r1zero_probe_", dir=existing))
    except OSError as err:
        raise OutputUnwritableError(f"{key}={given}: cannot write in {where} ({err.strerror or err}); "
                                    f"valid: {valid}") from None


def saved_config(run_dir: Path) -> dict | None:
    """The ``config.yaml`` an earlier run left in ``run_dir`` (resolved), or None."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return None
    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception:  # an unreadable leftover is not this run's business: it is overwritten
        return None


def config_changes(previous: dict, current: dict) -> list[str]:
    """``key: old -> new`` for every key both configs have that differs (outside :data:`MAY_CHANGE_ON_RESUME`)."""
    old, new = _flat(previous), _flat(current)
    return [f"{k}: {old[k]!r} -> {new[k]!r}" for k in sorted(old.keys() & new.keys())
            if old[k] != new[k] and not any(k == p or (p.endswith(".") and k.startswith(p))
                                            for p in MAY_CHANGE_ON_RESUME)]


def check_same_config(run_dir: Path, previous: dict | None, current: dict, allow: bool) -> None:
    """Refuse to continue ``run_dir`` with a config other than the one it was made with.

    Raises:
        ConfigError: one line naming the changed keys (the first 6) and how to go on.
    """
    if previous is None or allow:
        return
    changes = config_changes(previous, current)
    if changes:
        more = f" and {len(changes) - 6} more" if len(changes) > 6 else ""
        raise bad_value("resume", f"{run_dir} holds a run made with another config ({'; '.join(changes[:6])}{more})",
                        "the run's own config (its config.yaml), a new hydra.run.dir, or allow_config_change=true")


def finished_run(run_dir: Path, previous: dict | None, total_steps: int | None,
                 prompt_epochs: int | None = None) -> int | None:
    """The step count of a finished run in ``run_dir`` that the requested length does not extend, else None.

    Told without the question set (this runs before it loads): a run of ``total_steps`` steps is done when the
    finished run had as many or more; a run of ``prompt_epochs`` passes when the finished one had the same
    ``prompt_epochs`` and ``total_steps`` cap (the rest of the config is the same, ``check_same_config``), its
    length then read from the manifest (``total_steps``). Any other change is not called finished: the run loads
    and finds out.
    """
    try:
        manifest = json.loads((Path(run_dir) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if not manifest.get("finished"):
        return None
    train = (previous or {}).get("train", {})
    steps = train.get("total_steps")
    if prompt_epochs is None:
        if train.get("prompt_epochs") is None and isinstance(steps, int) and steps >= total_steps:
            return steps
        return None
    done = manifest.get("total_steps")
    if train.get("prompt_epochs") == prompt_epochs and steps == total_steps and isinstance(done, int):
        return done
    return None


def truncate_after(path: Path, step: int) -> int:
    """Drop the rows of a JSONL file whose ``step`` is above ``step`` (what a resumed run writes again);
    returns how many were dropped. A half-written last line (a crash mid-write) goes too."""
    path = Path(path)
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row_step = json.loads(line).get("step")
        except (ValueError, AttributeError):
            dropped += 1
            continue
        if isinstance(row_step, int) and row_step > step:
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
        tmp.replace(path)
    return dropped


@contextlib.contextmanager
def unwritable_as_one_line(run_dir: Path):
    """A write refused for room or permission (metrics, samples, the final model) as :class:`OutputUnwritableError`."""
    try:
        yield
    except OSError as err:
        if err.errno not in DISK_ERRNOS:
            raise
        raise OutputUnwritableError(f"{err.filename or run_dir}: cannot be written ({err.strerror}); what the run "
                                    f"wrote before stays; valid: free space or a writable {run_dir}, then rerun "
                                    f"the same command (resume=auto)") from None
