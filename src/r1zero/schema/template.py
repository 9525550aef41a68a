"""``template`` group (``conf/template/*.yaml``): the prompt around a question and where its answer goes."""

from dataclasses import dataclass

from omegaconf import MISSING

from .errors import bad_value

QUESTION_SLOT = "{question}"


@dataclass
class TemplateConfig:
    name: str = MISSING                      # the option name
    prompt: str = MISSING                    # the text with exactly one {question} slot
    # no defaults below: a template is one YAML that says where its answer goes and what ends it
    answer_format: str = MISSING             # where the grader reads the answer (r1zero.reward.ANSWER_FORMATS)
    stop: list[str] = MISSING                # strings that end generation (kept in the response); EOS always does

    def __post_init__(self) -> None:
        if self.prompt.count(QUESTION_SLOT) != 1:
            raise bad_value("template.prompt", f"has {self.prompt.count(QUESTION_SLOT)} {QUESTION_SLOT} slots",
                            f"a string with exactly one {QUESTION_SLOT}")
        # answer_format names one of the grader's extractors: r1zero.reward.names.check_names
