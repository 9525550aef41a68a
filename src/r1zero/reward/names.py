"""The grader's names a run config may use, checked with the whole config before anything loads
(:func:`r1zero.run.config.run_config`); the schema cannot check them, as it imports no component.

Apart from the package's face (``r1zero.reward``), so the grader's worker processes never import the schema.
The verifiers stay a tuple of names (:data:`VERIFIERS`, the one list of them) rather than a
:class:`~r1zero.schema.registry.Registry`, because importing the registry imports the whole schema package
(omegaconf) into every grader worker, which would almost double the worker's import time (docs/performance.md,
"Grader").
"""

from __future__ import annotations

from ..schema import registered
from ..schema.errors import bad_value
from .extract import ANSWER_FORMATS
from .verifiers import VERIFIERS


def check_names(reward, template) -> None:
    """The grader's names a run config uses: ``reward.verifier`` (:data:`VERIFIERS`) and the template's
    ``answer_format`` (:data:`ANSWER_FORMATS`); ``reward`` and ``template`` are the typed config sections.

    Raises:
        ConfigError: one line naming the key and the valid names.
    """
    if template.answer_format not in ANSWER_FORMATS:
        raise bad_value("template.answer_format", f"unknown answer format {template.answer_format!r}",
                        ", ".join(ANSWER_FORMATS))
    registered("reward.verifier", reward.verifier, VERIFIERS, "verifiers")
