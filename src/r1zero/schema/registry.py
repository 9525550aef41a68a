"""The one registry type every component uses: a name maps to one :class:`Entry`, the implementation and the
config schema that configures it, filled by a decorator where the implementation is defined.

Used by the objective's axes (``r1zero.algos``: ``BASELINES``, ``CLIPS``, ...), the rollout engines
(``r1zero.rollout.ENGINES``), the learner strategies (``r1zero.learner.strategy.STRATEGIES``) and the question-set
generators (``r1zero.data.questions.GENERATORS``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import bad_value

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """What one registered name stands for.

    Attributes:
        name: the name a config selects it by.
        impl: the function or class.
        schema: the dataclass its config node is typed with (None: the axis has no config node of its own).
    """

    name: str
    impl: Any
    schema: type | None = None


class Registry(Mapping):
    """``name -> implementation`` (a read-only mapping), each name one :class:`Entry` that also holds its schema.

    Args:
        kind: what the entries are, for messages ("rollout engine").
        key: the config key that selects an entry ("rollout.name"); with it an unknown name is a
            :class:`~r1zero.schema.errors.ConfigError` naming the key, without it a ValueError.
    """

    def __init__(self, kind: str, key: str | None = None):
        self.kind, self.key = kind, key
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, *, schema: type | None = None) -> Callable[[T], T]:
        """A decorator storing the function or class under ``name`` (with ``schema``); returns it unchanged.

        Raises:
            ValueError: ``name`` is already taken by another implementation.
        """

        def deco(impl: T) -> T:
            old = self._entries.get(name)
            if old is not None and (old.impl is not impl or old.schema is not schema):
                raise ValueError(f"{self.kind} {name!r} is already registered ({getattr(old.impl, '__name__', old.impl)})")
            self._entries[name] = Entry(name, impl, schema)
            return impl

        return deco

    def entry(self, name: str, key: str | None = None) -> Entry:
        """The entry registered as ``name``; ``key``: the config key an unknown name is reported under, when it is
        not the registry's own (``eval.sources.<name>.generator`` for a question-set generator).

        Raises:
            ConfigError: unknown ``name`` when the registry has a config ``key``, naming it and the valid choices.
            ValueError: unknown ``name`` otherwise; the one-line message lists the valid choices.
        """
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            key = key or self.key
            if key is not None:
                raise bad_value(key, f"{name!r} is not a registered {self.kind}", ", ".join(self._entries)) from None
            raise ValueError(f"unknown {self.kind} {name!r}; valid choices: {sorted(self._entries)}") from None

    def lookup(self, name: str) -> Any:
        """The implementation registered as ``name`` (raises as :meth:`entry`)."""
        return self.entry(name).impl

    def __getitem__(self, name: str) -> Any:
        return self._entries[name].impl

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._entries)})"
