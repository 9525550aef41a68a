"""Prompt templates of the paper (§2.1, Table 1 / Appendix), built from a ``template`` config node.

The exact strings live in ``conf/template/*.yaml`` (copied from the paper's code) so a new template is one
YAML file; this module only fills in the question and carries the stop strings, and keeps the questions whose
templated prompt fits a token budget (:func:`drop_long_prompts`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..reward.extract import check_answer_format
from ..schema import TemplateConfig, typed
from ..schema.errors import DataUnavailableError

QUESTION_SLOT = "{question}"


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt format.

    Attributes:
        name: the config option (``r1``, ``qwen_math``, ``no``, ``chatml_fewshot``, or a new YAML's).
        prompt: the text with one ``{question}`` slot.
        answer_format: where the grader looks for the final answer (:data:`r1zero.reward.ANSWER_FORMATS`:
            ``boxed``, ``boxed_lenient``, ``answer_tag`` or ``answer_tag_lenient``), so a new template needs no code.
        stop: strings that end generation (kept in the response); EOS always ends it too.

    Raises:
        ValueError: the prompt does not have exactly one ``{question}`` slot, or ``answer_format`` is unknown.
    """

    name: str
    prompt: str
    answer_format: str = "boxed"
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.prompt.count(QUESTION_SLOT) != 1:
            raise ValueError(
                f"template {self.name!r}: prompt must contain exactly one {QUESTION_SLOT} slot"
            )
        check_answer_format(self.answer_format)

    def apply(self, question: str) -> str:
        # str.replace, not str.format: questions are full of LaTeX braces.
        return self.prompt.replace(QUESTION_SLOT, question)

    def strip(self, prompt: str) -> str:
        """Recover the question from a prompt this template produced (for pre-templated datasets).

        Raises:
            ValueError: ``prompt`` does not have this template's prefix and suffix.
        """
        head, tail = self.prompt.split(QUESTION_SLOT)
        # The paper's pre-templated sets (math_lvl3to5_8k) end in "<|im_start|>assistant" without the template's
        # final newline: trailing whitespace is not part of the format.
        prompt, tail = prompt.rstrip(), tail.rstrip()
        if not (prompt.startswith(head) and prompt.endswith(tail)):
            raise ValueError(f"text is not in the {self.name!r} template format: {prompt[:80]!r}...")
        return prompt[len(head) : len(prompt) - len(tail)]

    @classmethod
    def from_config(cls, cfg) -> "PromptTemplate":
        """From a ``template`` config (:class:`~r1zero.schema.TemplateConfig`, or a node / dict it types)."""
        cfg = typed(TemplateConfig, cfg)
        return cls(name=cfg.name, prompt=cfg.prompt, answer_format=cfg.answer_format, stop=tuple(cfg.stop))


def drop_long_prompts(questions: list, template: PromptTemplate, tokenizer, max_tokens: int | None):
    """``(kept, n_dropped)``: the questions whose templated prompt has at most ``max_tokens`` tokens.

    oat's ``PromptDataset`` (``--prompt_max_length 1024`` in every paper script) keeps a prompt when
    ``len(tokenizer(prompt)["input_ids"]) <= prompt_max_length``, special tokens (a BOS) included. None keeps all.

    Raises:
        DataUnavailableError: no question is left.
    """
    if max_tokens is None:
        return questions, 0
    lengths = [len(ids) for ids in tokenizer([template.apply(q.question) for q in questions])["input_ids"]]
    kept = [q for q, n in zip(questions, lengths, strict=True) if n <= int(max_tokens)]
    if not kept:
        raise DataUnavailableError(f"every question's prompt is longer than train.prompt_max_length={max_tokens}")
    return kept, len(questions) - len(kept)
