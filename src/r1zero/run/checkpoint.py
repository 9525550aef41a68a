"""Checkpoints for ``resume=auto``: model + tokenizer (HF format) and the trainer state.

Layout: ``<run_dir>/checkpoints/step_000050/`` holding the HF files and ``trainer_state.pt`` (optimizer,
scheduler, data position, RNG states, step). ``trainer_state.pt`` holds only tensors and plain Python values (the
RNG states as lists and tensors), so it is read with ``torch.load(weights_only=True)``: resuming from a checkpoint
someone else wrote (a shared folder, a download) cannot run code it pickles; such a file is refused in one line. A checkpoint is written under a temporary name
(``.tmp_step_000050``) and renamed, so a run killed mid-save never leaves a half checkpoint that ``resume=auto``
would pick; a save that fails (a full disk) removes its temporary directory, and the leftovers of a killed run
are removed when the next run in the directory starts (:func:`remove_partial`).
"""

from __future__ import annotations

import errno
import os
import pickle
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from ..schema.errors import ConfigError, OutputUnwritableError

_STEP_DIR = re.compile(r"^step_(\d+)$")
#: Directories of unfinished saves: the checkpoint itself, and each rank's DeepSpeed shards before they move in.
_PARTIAL = (".tmp_step_*", ".strategy_step_*")
#: errno of a write refused for room or permission: the disk's or the user's problem, not a bug.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})
_LOW_SPACE = 64 << 20  # bytes: a write that failed with less free than this failed for room (torch.save says
#                        "unexpected pos ...", safetensors "I/O error", neither with an errno)


def rng_state() -> dict:
    """The Python, NumPy, torch (and CUDA) RNG states, as tensors and plain lists (``weights_only`` loads them)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {"python": [version, list(internal), gauss],
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_checkpoint(run_dir: Path, step: int, model, tokenizer, trainer_state: dict, keep: int | None = None,
                     state_dict: dict | None = None, move_in: dict[str, Path] | None = None) -> Path:
    """Write checkpoint ``step`` and prune all but the newest ``keep``; returns its directory.

    ``state_dict``: full weights to save instead of ``model.state_dict()`` (gathered ZeRO-3 parameters).
    ``move_in``: ``{name: dir}`` directories moved into the checkpoint as ``name/`` before it is published
    (per-rank DeepSpeed optimizer shards written by every rank).
    """
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:06d}"
    tmp = root / f".tmp_step_{step:06d}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        if state_dict is not None:
            model.save_pretrained(tmp, state_dict=state_dict)
        else:
            model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for name, src in (move_in or {}).items():
            os.replace(src, tmp / name)
        torch.save({**trainer_state, "step": step, "rng": rng_state()}, tmp / "trainer_state.pt")
    except BaseException as err:  # a second signal mid-save too: no half checkpoint stays behind
        low = _free_bytes(root) < _LOW_SPACE  # measured before the partial files are freed
        for partial in (tmp, *(move_in or {}).values()):
            shutil.rmtree(partial, ignore_errors=True)
        if isinstance(err, Exception) and (low or getattr(err, "errno", None) in DISK_ERRNOS):
            raise save_failed(final, err, latest_checkpoint(run_dir)) from None
        raise
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    if keep:
        for old in list_checkpoints(run_dir)[:-int(keep)]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def _free_bytes(path: Path) -> int:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 0


def save_failed(final: Path, err: BaseException, latest: Path | None) -> OutputUnwritableError:
    """The one line for a checkpoint that could not be written: why, and what ``resume=auto`` will use."""
    why = getattr(err, "strerror", None) or (str(err).strip().splitlines() or [type(err).__name__])[0]
    if _free_bytes(final.parent) < _LOW_SPACE and "space" not in why.lower():
        why = f"{why}; the disk is full"
    resume = f"continues from {latest.name}" if latest else "starts over (no complete checkpoint)"
    return OutputUnwritableError(
        f"{final}: checkpoint not written ({why}), none half-written kept; resume=auto {resume}; valid: free space "
        f"under {final.parent.parent} (fewer checkpoints: train.keep_checkpoints=1), then rerun the same command")


def remove_partial(run_dir: Path) -> list[Path]:
    """Remove what unfinished saves left in ``<run_dir>/checkpoints`` (a run killed mid-save); returns them."""
    root = Path(run_dir) / "checkpoints"
    found = [p for pattern in _PARTIAL for p in sorted(root.glob(pattern))] if root.is_dir() else []
    for p in found:
        shutil.rmtree(p, ignore_errors=True)
    return found


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name))
             and (p / "trainer_state.pt").exists()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: Path) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def checkpoint_to_resume(resume, run_dir: Path) -> Path | None:
    """The checkpoint the ``resume`` option names: None (``null``, ``none``, false), the newest in ``run_dir``
    (``auto``; None without one), or the ``checkpoints/step_*`` directory given.

    Raises:
        ConfigError: a path that is not a checkpoint directory (no ``trainer_state.pt``).
    """
    if resume in (None, False, "null", "none"):
        return None
    if resume == "auto":
        return latest_checkpoint(run_dir)
    path = Path(str(resume))
    if not (path / "trainer_state.pt").exists():
        raise ConfigError(f"resume={resume}: not a checkpoint directory (no trainer_state.pt); "
                          f"valid values: null, auto, or a checkpoints/step_* directory")
    return path


def load_trainer_state(ckpt: Path) -> dict:
    """``<ckpt>/trainer_state.pt``, read with ``weights_only=True`` (tensors and plain values only).

    Raises:
        ConfigError: one line naming the file, when it holds anything else (a pickled object or function: a tampered
            file, one another program wrote, or one from before r1zero stored its RNG states as lists; nothing in
            it ran) or is not a trainer state at all.
    """
    path = Path(ckpt) / "trainer_state.pt"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # what weights_only refuses: a global the file would import or call
        text = str(err)
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if found:
            raise _foreign(path, f"it pickles {found.group(1)}; loading it could run code, so it was not loaded") \
                from None
        detail = re.search(r"WeightsUnpickler error:\s*(\S.*)", text)
        raise _foreign(path, f"not a torch.save file: {(detail.group(1) if detail else text.splitlines()[0]).strip()}") \
            from None
    except EOFError:
        raise _foreign(path, "empty or cut short") from None
    except (RuntimeError, ValueError) as err:  # not a torch.save file (a damaged zip, another format)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise _foreign(path, f"not a torch.save file: {first.split('. ')[0]}") from None
    if not (isinstance(state, dict) and {"step", "learner", "sampler"} <= state.keys()):
        raise _foreign(path, "no step, learner and sampler state in it")
    return state


def _foreign(path: Path, why: str) -> ConfigError:
    return ConfigError(f"{path}: refused, not a trainer state r1zero wrote ({why}); valid: resume=null, auto, or a "
                       f"checkpoints/step_* directory written by this version of r1zero")
