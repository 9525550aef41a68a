"""The checks the schemas' ``__post_init__`` methods share; each raises one :func:`~r1zero.schema.errors.bad_value`."""

from collections.abc import Iterable
from typing import Any

from .errors import bad_value


def at_least(key: str, value: Any, low: float, *, none_ok: bool = False, what: str = "an integer") -> None:
    if value is None and none_ok:
        return
    if value is None or value < low:
        raise bad_value(key, f"{value!r} is below {low}", f"{what} >= {low}" + (" or null" if none_ok else ""))


def above(key: str, value: Any, low: float, *, what: str = "a number") -> None:
    if value is None or not value > low:
        raise bad_value(key, f"{value!r} is not above {low}", f"{what} > {low}")


def between(key: str, value: Any, low: float, high: float, *, low_open: bool = True) -> None:
    ok = value is not None and (low < value if low_open else low <= value) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise bad_value(key, f"{value!r} is outside {bracket}{low}, {high}]", f"a number in {bracket}{low}, {high}]")


def one_of(key: str, value: Any, valid: Iterable[Any], *, none_ok: bool = False) -> None:
    valid = list(valid)
    if value is None and none_ok:
        return
    if value not in valid:
        shown = ", ".join(str(v) for v in valid) + (", null" if none_ok else "")
        raise bad_value(key, f"{value!r} is not a valid choice", shown)


def registered(key: str, value: Any, registry: Iterable[str], what: str) -> None:
    """``value`` must name a registered component; the message keeps the historic ``key=value is not one of``."""
    names = sorted(registry)
    if value not in names:
        raise bad_value(key, f"{key}={value!r} is not one of the registered {what}", ", ".join(names))
