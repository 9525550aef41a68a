"""``data`` group (``conf/data/*.yaml``): a question set, read from files or made in code.

Evaluation benchmarks are data nodes too (``eval.sources``), so the same schema types them. The names ``generator``
and ``answer_from`` take are the data room's (``r1zero.data.questions``: ``GENERATORS``, ``ANSWER_FROM``), checked there
with the whole run config (``check_names``, called by ``r1zero.run.config.run_config``): the schema imports no component.
"""

from dataclasses import dataclass, field
from typing import Optional

from ._check import at_least, between
from .template import TemplateConfig


@dataclass
class SourceConfig:
    path: str                                # hub id, save_to_disk dir, .jsonl/.json/.parquet, or pkg://<package>/<file>
    split: Optional[str] = None              # split of a hub / save_to_disk source; null: the data node's split
    exclude: Optional[str] = None            # a file whose questions are dropped from this source (held-out sets)


@dataclass
class DataConfig:
    name: Optional[str] = None               # the option name (benchmarks: their key in eval.sources)
    sources: list[SourceConfig] = field(default_factory=list)  # read in order and concatenated
    path: Optional[str] = None               # one source, as a shorthand for sources: [{path: ...}]
    split: str = "train"                     # split of a hub / save_to_disk source
    question_key: str = "problem"            # field holding the question text
    question_format: Optional[str] = None    # instead of question_key: a str.format pattern over the row's fields
    answer_key: str = "answer"               # field holding the reference
    answer_from: Optional[str] = None        # r1zero.data.questions.ANSWER_FROM: how the final answer is read from answer_key; null: as is
    strip_template: Optional[TemplateConfig] = None  # a template whose wrapper is removed from pre-templated questions
    prefer_keys: Optional[dict[str, str]] = None  # {question: F1, answer: F2}: rows with both fields are read from them
    generator: Optional[str] = None          # r1zero.data.questions.GENERATORS: questions made in code (no files)
    max_questions: Optional[int] = None      # keep only the first N (quick runs)
    shuffle: bool = True                     # shuffle the questions every epoch

    @staticmethod
    def schema_for(node) -> type:
        """The subclass whose ``generator`` default is the node's ``generator`` (each generator's fields), else
        ``DataConfig`` (files; an unknown generator is refused by the data room's ``check_names``)."""
        generator = node.get("generator")
        return next((sub for sub in DataConfig.__subclasses__() if generator is not None and sub.generator == generator),
                    DataConfig)

    def __post_init__(self) -> None:
        at_least("data.max_questions", self.max_questions, 1, none_ok=True)


@dataclass
class ArithDataConfig(DataConfig):
    """``generator: arith``: arithmetic questions made by :mod:`r1zero.data.arith` from these fields."""

    generator: Optional[str] = "arith"       # r1zero.data.questions.GENERATORS
    size: int = 240                          # distinct questions in the set
    seed: int = 0                            # draws the operands
    operators: list[str] = field(default_factory=lambda: ["+", "-", "*"])  # question i uses operators[i % len]
    min_value: int = 1                       # operands of + and - are drawn from min_value..max_value
    max_value: int = 30                      # (inclusive)
    max_factor: int = 15                     # * multiplies two numbers in 2..max_factor
    heldout_percent: int = 20                # share of all possible questions (by hash) reserved for the test split
    shuffle: bool = False                    # keep the operator cycle
    num_operations: int = 1                  # operations per question (2: "What is 14 + 27 - 9?")

    def __post_init__(self) -> None:
        super().__post_init__()
        at_least("data.size", self.size, 1)
        at_least("data.min_value", self.min_value, 1)
        at_least("data.max_value", self.max_value, self.min_value)
        at_least("data.max_factor", self.max_factor, 2)
        between("data.heldout_percent", self.heldout_percent, 0, 99)  # r1zero.data.arith: 0 < percent < 100
        at_least("data.num_operations", self.num_operations, 1)


@dataclass
class CountdownDataConfig(DataConfig):
    """``generator: countdown``: Countdown equations made by :mod:`r1zero.data.countdown` from these fields."""

    generator: Optional[str] = "countdown"   # r1zero.data.questions.GENERATORS
    size: int = 2000                         # distinct questions in the set
    seed: int = 0                            # draws the numbers and the solution
    count: int = 3                           # numbers per question, each used exactly once
    min_number: int = 1                      # numbers are drawn from min_number..max_number (inclusive)
    max_number: int = 50                     # (inclusive)
    max_target: int = 100                    # targets lie in 1..max_target
    heldout_percent: int = 10                # share of all possible questions (by hash) reserved for the test split

    def __post_init__(self) -> None:
        super().__post_init__()
        at_least("data.size", self.size, 1)
        at_least("data.count", self.count, 2)
        at_least("data.min_number", self.min_number, 1)
        at_least("data.max_number", self.max_number, self.min_number)
        at_least("data.max_target", self.max_target, 1)
        between("data.heldout_percent", self.heldout_percent, 0, 99)  # r1zero.data.countdown: 0 < percent < 100
