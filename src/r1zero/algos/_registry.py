"""One registry per axis of the objective: a name -> pure function mapping, filled by decorators."""

from __future__ import annotations

from collections.abc import Callable


def registrar(registry: dict, kind: str) -> Callable[[str], Callable]:
    """A decorator factory that stores functions in ``registry`` under a name.

    Raises:
        ValueError: the name is already taken by another function.
    """

    def register(name: str) -> Callable:
        def deco(fn: Callable) -> Callable:
            if name in registry and registry[name] is not fn:
                raise ValueError(f"{kind} {name!r} is already registered")
            registry[name] = fn
            return fn

        return deco

    return register


def lookup(registry: dict, name: str, kind: str):
    """``registry[name]``.

    Raises:
        ValueError: unknown ``name``; the one-line message lists the valid choices.
    """
    try:
        return registry[name]
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r}; valid choices: {sorted(registry)}") from None
