"""``eval`` group (``conf/eval/*.yaml``): the benchmark suite, standalone and during training."""

from dataclasses import dataclass, field
from typing import Optional

from ._check import at_least, between
from .data import DataConfig
from .errors import bad_value


@dataclass
class EvalConfig:
    path: Optional[str] = None               # save_to_disk DatasetDict / hub id / local dir whose splits are benchmarks
    benchmarks: list[str] = field(default_factory=lambda: ["aime", "amc", "math", "minerva", "olympiad_bench"])  # splits of path, or names in sources
    sources: dict[str, DataConfig] = field(default_factory=dict)  # benchmark name -> its own data node
    every: int = 0                           # during training: evaluate every N steps and after the last one (0: off)
    at_start: bool = False                   # during training: evaluate the initial policy first, logged as step 0
    at_end: bool = False                     # during training: evaluate after the last step even when every is 0
    max_samples: Optional[int] = None        # cap questions per benchmark (quick runs); null: all
    max_new_tokens: int = 3000               # generation budget per answer, tokens
    temperature: float = 0.0                 # 0: greedy, as in the paper
    top_p: float = 1.0                       # nucleus sampling mass when temperature > 0
    zero_truncated: bool = False             # score answers cut by max_new_tokens 0 (training does); the paper grades them
    samples_per_question: int = 1            # k > 1 with temperature > 0 gives pass@k (paper Fig. 3)
    batch_size: int = 64                     # responses generated together
    question_key: str = "problem"            # field holding the question (splits of path)
    answer_key: str = "answer"               # field holding the reference answer (splits of path)

    def __post_init__(self) -> None:
        at_least("eval.every", self.every, 0)
        at_least("eval.max_samples", self.max_samples, 1, none_ok=True)
        at_least("eval.max_new_tokens", self.max_new_tokens, 1)
        at_least("eval.temperature", self.temperature, 0.0, what="a number")
        between("eval.top_p", self.top_p, 0.0, 1.0)
        at_least("eval.samples_per_question", self.samples_per_question, 1)
        at_least("eval.batch_size", self.batch_size, 1)
        k = self.samples_per_question
        if k > 1 and self.temperature <= 0:
            raise bad_value("eval.samples_per_question",
                            f"eval.samples_per_question={k} needs eval.temperature > 0 (greedy samples are identical)",
                            "1, or a temperature > 0")

    def check_benchmarks(self) -> None:
        """Every selected benchmark is a name in ``sources`` or a split of ``path`` (checked at start-up)."""
        if not self.benchmarks:
            raise bad_value("eval.benchmarks", "is empty",
                            ", ".join(sorted(self.sources)) or "the splits of eval.path")
        for name in self.benchmarks:
            if name not in self.sources and not self.path:
                raise bad_value("eval.benchmarks", f"{name!r} is not one of eval.sources and eval.path is null",
                                ", ".join(sorted(self.sources)))
