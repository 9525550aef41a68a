"""Exceptions and warnings of the analysis package.

Every user-facing failure is an :class:`AnalysisError` whose message is one self-contained line;
the CLI prints it and exits with status 2, so a sweep script sees a clear reason instead of a
traceback.
"""

from __future__ import annotations

import warnings


class AnalysisError(Exception):
    """Base class: a problem with the runs given, explained in one line."""


class NoRunsError(AnalysisError):
    """No run directory (or wandb export) was found where the user pointed."""


class MissingMetricError(AnalysisError):
    """The runs exist but none of them logs a metric a figure or table needs."""


class NotApplicableError(AnalysisError):
    """The runs cannot make this figure (e.g. the duet with a single template)."""


class AnalysisWarning(UserWarning):
    """Something was skipped but the analysis could go on (e.g. a half-written last line)."""


def warn(message: str) -> None:
    """Emit an :class:`AnalysisWarning` attributed to the caller's caller."""
    warnings.warn(message, AnalysisWarning, stacklevel=3)
