"""Every user-error class of r1zero, in one place.

A user error is bad input (a config value, a missing model or data set, a run directory in use), an
environment the run cannot write to or log from (a read-only or full output directory, wandb unreachable), or a run
whose updates stay non-finite (it stops, keeping its last finite checkpoint): the entry points print it as one line,
``r1zero: error: <message>``, and exit with status 2. Anything else is a bug and keeps its traceback. This module imports nothing of r1zero, so every module can raise these.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value is invalid; the message names the key, what is wrong and the valid choices."""


class DataUnavailableError(RuntimeError):
    """A question set could not be read (missing locally, hub unreachable, bad split or fields)."""


class ModelUnavailableError(RuntimeError):
    """A model or tokenizer could not be found locally and the hub could not provide it."""


class OutputUnwritableError(RuntimeError):
    """Where the run writes cannot be written: a read-only directory or file system, a file where a directory
    should be, a full disk; the message names the path."""


class TrackingUnavailableError(RuntimeError):
    """``logger.wandb.mode=online`` cannot reach wandb: no API key, or ``wandb.init`` failed (network)."""


class RunDirInUseError(RuntimeError):
    """Another live process holds the run directory's lock (:mod:`r1zero.run.runlock`), or its filesystem cannot
    lock it; the message names the directory, the holder and what to do."""


class NonFiniteTrainingError(RuntimeError):
    """``train.max_nonfinite_steps`` optimizer steps in a row had a non-finite loss or gradient norm (each
    skipped), or the weights are not finite where a checkpoint would be written; nothing non-finite was saved."""


#: Bad input, reported as one line without a traceback.
USER_ERRORS = (ModelUnavailableError, DataUnavailableError, ConfigError, FileExistsError, OutputUnwritableError,
               TrackingUnavailableError, RunDirInUseError, NonFiniteTrainingError)


def bad_value(key: str, what: str, valid: str) -> ConfigError:
    """The one-line :class:`ConfigError` every check raises: ``<key>: <what is wrong>; valid: <valid>``."""
    return ConfigError(f"{key}: {what}; valid: {valid}")


def unknown_key(key: str, schema: type) -> ConfigError:
    """``<key>: unknown key (<Schema> has no field ...); valid: <its fields>``; a key the schema lists in its
    ``RENAMED`` (a key of an earlier version): ``<key>: was replaced; valid: <the key that replaces it>``."""
    import dataclasses

    renamed = getattr(schema, "RENAMED", {}).get(key.rsplit(".", 1)[-1])
    if renamed:
        return bad_value(key, "was replaced", renamed)
    fields = [f.name for f in dataclasses.fields(schema)] if dataclasses.is_dataclass(schema) else []
    return bad_value(key, f"unknown key ({getattr(schema, '__name__', schema)} has no field {key.rsplit('.', 1)[-1]!r})",
                     ", ".join(fields) or "(no keys)")


def _describe(tp) -> str:
    """``int`` -> ``an integer``, ``Optional[float]`` -> ``a number or null``, ... (for the ``valid:`` part)."""
    import typing

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:
        inner = [a for a in args if a is not type(None)]
        return " or ".join(_describe(a) for a in inner) + (" or null" if len(inner) < len(args) else "")
    if origin in (list, tuple):
        return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s" if args else "a list"
    if origin is dict or tp is dict:
        return "a mapping"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return names.get(tp, f"a {getattr(tp, '__name__', tp)} node")


def _field(obj_type, key):
    """``(type, default)`` of field ``key`` of the dataclass ``obj_type``, or None."""
    import dataclasses
    import typing

    if not (isinstance(obj_type, type) and dataclasses.is_dataclass(obj_type)):
        return None
    for f in dataclasses.fields(obj_type):
        if f.name == str(key):
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            return typing.get_type_hints(obj_type)[f.name], default
    return None


def config_error_from(err: BaseException) -> ConfigError:
    """One line for a Hydra / OmegaConf composition error: ``<key>: <what is wrong>; valid: <valid>``.

    Unknown key: lists the schema's keys. Wrong type: the field's type and default. Unknown group option
    (``experiment=toyy``): Hydra's "Could not find" and the available options. Anything else: its first line.
    """
    from omegaconf.errors import (
        ConfigAttributeError,
        ConfigKeyError,
        MissingMandatoryValue,
        OmegaConfBaseException,
        ValidationError,
    )

    options = getattr(err, "options", None)
    missing = getattr(err, "missing_cfg_file", None)
    if missing and options is not None:  # hydra.errors.MissingConfigException: an unknown group option
        group = missing.rsplit("/", 1)[0] if "/" in missing else missing
        shown = [o for o in options if not o.startswith("base_")]  # the schemas are no options
        return bad_value(group, f"Could not find '{missing}'", ", ".join(shown) or "(none)")
    cause = err if isinstance(err, OmegaConfBaseException) else err.__cause__
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if not isinstance(cause, OmegaConfBaseException):
        return ConfigError(first)
    key = cause.full_key or str(cause.key or "")
    obj_type = getattr(cause, "object_type", None)
    msg = (cause.msg or "").splitlines()[0]
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and " not in " in msg:
        return unknown_key(key, obj_type)
    field = _field(obj_type, cause.key)
    if isinstance(cause, ValidationError) and field is not None:
        tp, default = field
        return bad_value(key, f"{cause.value!r} is not {_describe(tp)}", f"{_describe(tp)} (default {default!r})")
    if isinstance(cause, MissingMandatoryValue):
        return bad_value(key, "has no value", "set it on the command line or in the option's YAML")
    return bad_value(key or "config", msg or first, "see the schema in r1zero.schema")
