"""Run-directory logging: ``metrics.jsonl`` (one row per step, flushed at step end), ``samples.jsonl`` (a few
responses per step, :func:`sample_rows`), and optionally Weights & Biases (``logger.wandb.mode``: disabled |
offline | online).

wandb runs (:func:`wandb_settings`): the jobs of one multirun share a group, ``<sweep>:<sweep dir>``
(``multirun:<sweep dir>`` without ``sweep=``; a single run has none unless ``logger.wandb.group`` is set), and
carry the tags ``algo:<name>``, ``template:<name>``, ``data:<name>``, ``model:<name>``, ``seed:<n>`` (plus
``sweep:<name>``, ``experiment:<name>`` when chosen, and ``logger.wandb.tags``). The config is the resolved run
config with the run's manifest under ``manifest`` (refreshed when the run ends). The run id is drawn once and
stored in ``<run_dir>/wandb_run_id``; every later segment of the run (a requeued or resumed job) reads it and
calls ``wandb.init(id=..., resume="allow")``, so it continues the same wandb run. ``mode=offline`` writes
``<run_dir>/wandb/offline-run-*`` (one per segment, same id), uploaded later, segments in order, by
``wandb sync <run_dir>/wandb/offline-run-*``. ``mode=online`` needs an API key (:func:`check_wandb_login`, before
the model loads) and a reachable server (a failing ``wandb.init`` is one line, :class:`TrackingUnavailableError`).
"""

from __future__ import annotations

import json
import math
import os
import secrets
from pathlib import Path
from typing import Any, Iterable

from ..schema.errors import ConfigError, TrackingUnavailableError

WANDB_MODES = ("disabled", "offline", "online")
#: ``<run_dir>/wandb_run_id``: one line, the wandb run id of every segment of the run.
RUN_ID_FILE = "wandb_run_id"
_MAX_GROUP, _MAX_TAG = 128, 64  # wandb's limits (characters)


def check_wandb_mode(mode) -> str:
    """``mode`` as a string (None: disabled).

    Raises:
        ConfigError: not one of :data:`WANDB_MODES` (one line listing them).
    """
    mode = "disabled" if mode is None else str(mode)
    if mode not in WANDB_MODES:
        raise ConfigError(f"logger.wandb.mode={mode!r} is not one of {', '.join(WANDB_MODES)}")
    return mode


def wandb_credentials(environ: dict[str, str] | None = None) -> str | None:
    """Where ``wandb.init`` would find an API key without asking or going online, or None.

    Looks where wandb looks: ``WANDB_API_KEY`` / ``WANDB_IDENTITY_TOKEN_FILE``, the netrc file (``NETRC``, else
    ``~/.netrc``) entry for the host of ``WANDB_BASE_URL`` (default ``api.wandb.ai``; ``wandb login`` writes it),
    and an ``api_key`` in wandb's settings file (``WANDB_CONFIG_DIR``, else ``~/.config/wandb``).
    """
    import configparser
    import netrc
    from urllib.parse import urlsplit

    env = os.environ if environ is None else environ
    for var in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE"):
        if env.get(var):
            return var
    home = Path(env.get("HOME") or Path.home())
    host = urlsplit(env.get("WANDB_BASE_URL") or "https://api.wandb.ai").netloc
    for path in ([Path(env["NETRC"])] if env.get("NETRC") else [home / ".netrc", home / "_netrc"]):
        try:
            if netrc.netrc(str(path)).authenticators(host):
                return str(path)
        except (OSError, netrc.NetrcParseError):
            continue
    settings = Path(env.get("WANDB_CONFIG_DIR") or home / ".config" / "wandb") / "settings"
    parser = configparser.ConfigParser()
    try:
        parser.read(settings)
    except configparser.Error:
        return None
    return str(settings) if parser.get("default", "api_key", fallback=None) else None


def check_wandb_login(mode) -> None:
    """Refuse ``logger.wandb.mode=online`` without an API key, before anything loads (wandb would prompt, or
    fail after the model loaded).

    Raises:
        TrackingUnavailableError: one line pointing at ``wandb login`` and ``logger.wandb.mode=offline``.
    """
    if check_wandb_mode(mode) == "online" and wandb_credentials() is None:
        raise TrackingUnavailableError(
            "logger.wandb.mode: online needs a wandb API key and none is set (no WANDB_API_KEY, no api.wandb.ai "
            "entry in ~/.netrc); valid: wandb login (or WANDB_API_KEY=<key>), or logger.wandb.mode=offline "
            "(upload later: wandb sync <run_dir>/wandb/offline-run-*) or disabled")


def wandb_run_id(run_dir: Path, previous: str | None = None) -> str:
    """The run's wandb id: read from ``<run_dir>/wandb_run_id``, else ``previous`` (the id a manifest recorded
    before the file existed) or a new one (16 hex digits), stored there."""
    path = Path(run_dir) / RUN_ID_FILE
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    run_id = previous or secrets.token_hex(8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(run_id + "\n")
    os.replace(tmp, path)
    return run_id


def wandb_settings(config: dict, run_dir: Path, *, sweep: str | None = None, sweep_dir: str | None = None,
                   experiment: str | None = None, manifest: dict | None = None) -> dict[str, Any]:
    """Keyword arguments of ``wandb.init`` for one run (see the module docstring for the scheme).

    Args:
        config: the resolved run config (``OmegaConf.to_container(cfg, resolve=True)``); reads ``logger.wandb``
            (``mode``, ``project``, ``entity``, ``group``, ``name``, ``tags``), the ``name`` of ``algo``,
            ``template``, ``data``, ``model``, and ``seed``.
        run_dir: the run directory (wandb writes ``<run_dir>/wandb/``; the id file lives there).
        sweep: the ``sweep=`` option of a multirun, if any.
        sweep_dir: ``hydra.sweep.dir`` of a multirun; None for a single run (no default group).
        experiment: the ``experiment=`` option, if any.
        manifest: the run's manifest (stored in the config under ``manifest``; its ``wandb_run_id``, if any, is
            the id of a run dir that has no ``wandb_run_id`` file yet).

    Raises:
        ConfigError: a bad ``logger.wandb.mode``.
    """
    wb = (config.get("logger") or {}).get("wandb") or {}
    mode = check_wandb_mode(wb.get("mode"))
    names = {k: str((config.get(k) or {}).get("name")) for k in ("algo", "template", "data", "model")}
    seed = config.get("seed")
    group = wb.get("group")
    if group is None and sweep_dir is not None:
        group = f"{sweep or 'multirun'}:{sweep_dir}"[-_MAX_GROUP:]
    tags = [f"{k}:{v}" for k, v in names.items()] + [f"seed:{seed}"]
    tags += [f"{k}:{v}" for k, v in (("sweep", sweep), ("experiment", experiment)) if v]
    tags += [str(t) for t in wb.get("tags") or [] if str(t) not in tags]
    run_id = wandb_run_id(run_dir, (manifest or {}).get("wandb_run_id"))
    return {
        "mode": mode, "project": wb.get("project"), "entity": wb.get("entity"),
        "group": group,
        "name": wb.get("name") or "-".join([*(names[k] for k in ("model", "template", "algo", "data")), f"s{seed}"]),
        "tags": [t[:_MAX_TAG] for t in tags], "config": {**config, "manifest": {**(manifest or {}), "wandb_run_id": run_id}},
        "dir": str(run_dir), "id": run_id, "resume": "allow",
    }


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    # NaN/inf are not JSON; a metric that has no value this step is left out instead.
    out = {}
    for k, v in row.items():
        if hasattr(v, "item"):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            continue
        out[k] = v
    return out


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSONL file; a half-written last line (crashed run) is skipped."""
    rows = []
    if not path.exists():
        return rows
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def sample_rows(rollout, k: int) -> list[dict[str, Any]]:
    """``samples.jsonl`` rows of ``k`` responses of a graded rollout (a :class:`~r1zero.rollout.base.ScoredRollout`),
    spread over the batch so they come from different questions: question, prompt, response, reference, reward,
    response length, truncated."""
    batch = rollout.batch
    k = min(k, len(batch))
    picks = sorted({(j * len(batch)) // k for j in range(k)}) if k else []
    rows = []
    for i in picks:
        p = int(batch.prompt_index[i])
        rows.append({
            "question": rollout.questions[p].question, "prompt": rollout.prompts[p], "response": batch.responses[i],
            "reference": rollout.references[i], "reward": float(rollout.rewards[i]),
            "response_length": int(batch.response_lengths[i]), "truncated": bool(batch.truncated[i]),
        })
    return rows


class MetricsLogger:
    """Appends metric rows and samples to the run directory; mirrors metrics to wandb once :meth:`start_wandb`.

    Args:
        run_dir: the run directory.
        resume_step: when resuming, rows with ``step`` > this are dropped first, so a resumed run has no
            duplicated steps (wandb keeps what it already received for a step: it accepts steps in order only).

    Raises:
        FileExistsError: a fresh run (``resume_step`` None) in a directory that has ``metrics.jsonl``.
    """

    def __init__(self, run_dir: Path, resume_step: int | None = None):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.samples_path = self.run_dir / "samples.jsonl"
        if resume_step is not None:
            for path in (self.metrics_path, self.samples_path):
                self._truncate_after(path, resume_step)
        elif self.metrics_path.exists():
            # A fresh run in a directory that has metrics would silently mix two runs.
            raise FileExistsError(
                f"{self.metrics_path} exists; use resume=auto to continue that run or choose another run dir"
            )
        self._metrics = open(self.metrics_path, "a", encoding="utf-8")
        self._samples = open(self.samples_path, "a", encoding="utf-8")
        self.wandb = None

    def start_wandb(self, settings: dict[str, Any]) -> str | None:
        """Start (or resume) the wandb run of :func:`wandb_settings`; returns its id, None when disabled.

        Raises:
            ConfigError: a bad mode, or wandb is not installed.
            TrackingUnavailableError: ``wandb.init`` failed (no network, a rejected key).
        """
        if check_wandb_mode(settings.get("mode")) == "disabled":
            return None
        try:
            import wandb
        except ImportError:
            raise ConfigError(f"logger.wandb.mode={settings['mode']} needs wandb: pip install wandb") from None
        try:
            self.wandb = wandb.init(**settings)
        except Exception as err:  # noqa: BLE001 - wandb's own errors (CommError, UsageError, timeouts) vary by version
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise TrackingUnavailableError(
                f"logger.wandb.mode: {settings['mode']}: wandb.init failed ({first}); valid: a reachable wandb "
                f"server and a valid key, or logger.wandb.mode=offline (sync later) or disabled") from None
        return self.wandb.id

    def update_config(self, fields: dict[str, Any]) -> None:
        """Overwrite top-level keys of the wandb run's config (e.g. the final ``manifest``); no-op without wandb."""
        if self.wandb is not None:
            self.wandb.config.update(fields, allow_val_change=True)

    @staticmethod
    def _truncate_after(path: Path, step: int) -> None:
        if not path.exists():
            return
        keep = [r for r in read_jsonl(path) if int(r.get("step", 0)) <= step]
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for r in keep:
                f.write(json.dumps(r) + "\n")
        os.replace(tmp, path)

    def log(self, step: int, metrics: dict[str, Any]) -> dict[str, Any]:
        row = _clean({"step": int(step), **metrics})
        self._metrics.write(json.dumps(row) + "\n")
        self._metrics.flush()
        if self.wandb is not None:
            self.wandb.log(row, step=int(step))
        return row

    def log_samples(self, step: int, rows: Iterable[dict[str, Any]]) -> None:
        for r in rows:
            self._samples.write(json.dumps(_clean({"step": int(step), **r})) + "\n")
        self._samples.flush()

    def close(self) -> None:
        self._metrics.close()
        self._samples.close()
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None


class ProgressBar:
    """The training loop's progress bar (tqdm, on stderr): one tick per step, with the step's reward, response length
    and loss; does nothing when not ``enabled`` (``logger.progress_bar=false``, ranks other than 0)."""

    def __init__(self, total: int, initial: int, enabled: bool):
        self._bar = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, desc="r1zero", unit="step", dynamic_ncols=True)

    def step(self, metrics: dict[str, float]) -> None:
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(reward=f"{metrics['rollout/reward_mean']:.3f}",
                                  len=f"{metrics['rollout/response_length_mean']:.0f}",
                                  loss=f"{metrics['train/loss']:.4f}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class NullLogger:
    """The :class:`MetricsLogger` interface doing nothing: what ranks other than 0 log to."""

    def log(self, step: int, metrics: dict[str, Any]) -> dict[str, Any]:
        return _clean({"step": int(step), **metrics})

    def log_samples(self, step: int, rows: Iterable[dict[str, Any]]) -> None:
        pass

    def update_config(self, fields: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass
