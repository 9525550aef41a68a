"""The run config's own sections: ``sampling`` (rollouts), ``train`` (the update loop), ``reward`` (the grader)."""

from dataclasses import dataclass, field
from typing import Optional

from ._check import above, at_least, between
from .errors import bad_value


@dataclass
class SamplingParams:
    group_size: int = 8                      # G responses sampled per question
    temperature: float = 1.0                 # rollout sampling temperature (also divides the learner's logits)
    top_p: float = 1.0                       # nucleus mass; 1 disables it
    top_k: int = 0                           # 0 disables top-k
    max_new_tokens: int = 3000               # response budget in tokens; also Dr. GRPO's constant loss normaliser

    def __post_init__(self) -> None:
        # G = 1: every response is its group's mean, so every advantage is 0 and nothing is learned.
        at_least("sampling.group_size", self.group_size, 2)
        above("sampling.temperature", self.temperature, 0.0)
        between("sampling.top_p", self.top_p, 0.0, 1.0)
        at_least("sampling.top_k", self.top_k, 0)
        at_least("sampling.max_new_tokens", self.max_new_tokens, 1)


@dataclass
class TrainConfig:
    # rollout -> update iterations (one policy update per rollout batch); with prompt_epochs, a cap (null: none)
    total_steps: Optional[int] = 200
    # passes over the question set, as oat's --num_prompt_epoch (the paper's scripts: 20): the run is
    # prompt_epochs x floor(questions kept / prompts_per_rollout) steps, each pass a fresh shuffle whose last
    # partial rollout is skipped (oat's drop_last); null: train.total_steps steps, rollouts running on across passes
    prompt_epochs: Optional[int] = None
    prompts_per_rollout: int = 128           # questions per rollout; x group_size responses
    mini_batch_size: Optional[int] = 128     # responses per optimizer step (all ranks), rows shuffled per epoch; null: the whole rollout
    prompt_max_length: Optional[int] = 1024  # questions whose templated prompt has more tokens are dropped; null: keep all
    micro_batch_size: int = 8                # responses per forward/backward; never changes the gradient, only memory
    group_by_length: bool = True             # micro-batches of similar-length responses (prompt groups kept whole), run padding-free where the model allows (r1zero.model.packing), else each trimmed to its longest: same gradient
    ppo_epochs: int = 1                      # passes over each rollout batch
    lr: float = 1.0e-6                       # AdamW learning rate (constant after warmup)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])  # AdamW betas
    weight_decay: float = 0.0                # AdamW weight decay
    max_grad_norm: float = 1.0               # global grad-norm clip
    warmup_steps: int = 0                    # linear warmup in optimizer steps
    save_every: int = 50                     # checkpoint every N steps (0: only at the end)
    save_final: bool = True                  # save the model + tokenizer in HF format to <run_dir>/final
    keep_checkpoints: Optional[int] = 2      # newest checkpoints kept on disk (null: all)
    # An optimizer step whose loss or gradient norm is not finite (bf16 overflow, a bad batch) is skipped: no weight,
    # AdamW or lr-schedule change (train/nonfinite_skipped). This many in a row stop the run; its checkpoints stay
    max_nonfinite_steps: int = 3

    def __post_init__(self) -> None:
        for key in ("prompts_per_rollout", "micro_batch_size", "ppo_epochs", "max_nonfinite_steps"):
            at_least(f"train.{key}", getattr(self, key), 1)
        for key in ("total_steps", "prompt_epochs", "mini_batch_size", "prompt_max_length", "keep_checkpoints"):
            at_least(f"train.{key}", getattr(self, key), 1, none_ok=True)
        if self.total_steps is None and self.prompt_epochs is None:
            raise bad_value("train.total_steps", "is null and so is train.prompt_epochs: the run has no length",
                            "a number of steps, or train.prompt_epochs=N (passes over the question set)")
        above("train.lr", self.lr, 0.0)
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise bad_value("train.betas", f"{list(self.betas)} is not two numbers in [0, 1)", "e.g. [0.9, 0.95]")
        at_least("train.weight_decay", self.weight_decay, 0.0, what="a number")
        above("train.max_grad_norm", self.max_grad_norm, 0.0)
        at_least("train.warmup_steps", self.warmup_steps, 0)
        at_least("train.save_every", self.save_every, 0)

    def run_steps(self, questions: int) -> int:
        """The run's length in steps over a question set of ``questions`` (after long prompts are dropped).

        Without ``prompt_epochs``: ``total_steps``. With it, as oat counts (``learners/base.py``
        ``LearnerBase.learn``: ``num_prompt_epoch`` passes over a ``DataLoader`` of ``rollout_batch_size_per_device``
        prompts on each of the ``world_size`` ranks, ``DistributedSampler`` and loader both ``drop_last``, one policy
        update per rollout): ``prompt_epochs x floor(questions / prompts_per_rollout)``, at most ``total_steps``.
        E.g. the paper's 20 passes over MATH-12k's 12,000 questions in rollouts of 128: 20 x 93 = 1,860 steps.

        Raises:
            ConfigError: ``prompt_epochs`` is set and the question set is smaller than one rollout.
        """
        if self.prompt_epochs is None:
            return int(self.total_steps)
        per_pass = int(questions) // self.prompts_per_rollout
        if per_pass == 0:
            raise bad_value("train.prompt_epochs", f"a pass over the {questions} questions holds no rollout of "
                            f"train.prompts_per_rollout={self.prompts_per_rollout}",
                            f"train.prompts_per_rollout <= {questions}, or train.prompt_epochs=null with "
                            "train.total_steps=N")
        steps = self.prompt_epochs * per_pass
        return steps if self.total_steps is None else min(steps, int(self.total_steps))


@dataclass
class RewardConfig:
    name: str = "math"                       # conf/reward: math (the paper's grader) | fn (your function)
    fn: Optional[str] = None                 # reward=fn: package.module:function (docs/rewards.md)
    answers_per_call: int = 1                # reward=fn: responses per call (a failure zeroes the whole call)
    num_workers: int = 2                     # grader subprocesses (math-verify needs SIGALRM: a main thread of its own)
    timeout_s: float = 1.0                   # per-answer grading budget (the paper's 1 s); a timeout scores 0
    # Wall-time budget of one batch's checks in the workers, seconds: once spent, the answers not yet checked score 0
    # and count as timeouts, so N answers that all run into timeout_s cost 1-2 timeouts, not N / num_workers.
    # null: timeout_s + max(1, timeout_s / 2) (one answer's kill deadline) + 0.02 s per answer checked
    # (r1zero.reward.pool._default_batch_s): never binding for a batch checked at >= 50 answers/s
    batch_timeout_s: Optional[float] = None
    # The equivalence check, for the rewards and the in-training evals (as the paper's oracle does both):
    #   fast        the paper's default (train_zero_math.py --verifier_version fast; its 1.5B / 3B scripts): Hendrycks
    #               MATH normalisation + the PRM800K sympy equality, no math-verify (r1zero.reward.fast)
    #   math_verify fast, else HF math-verify (the paper's 7B scripts and evaluate_model.py)
    #   r1zero      r1zero's earlier checker: math-verify behind a string / number shortcut
    verifier: str = "fast"                   # r1zero.reward.VERIFIERS
    # Extracted answers longer than this many characters score 0 unchecked; null: every answer is checked, as the
    # paper's grader does (1000 was r1zero's earlier cut: the longest reference of the paper's benchmarks has 204)
    max_answer_chars: Optional[int] = None

    def __post_init__(self) -> None:
        at_least("reward.num_workers", self.num_workers, 1)
        above("reward.timeout_s", self.timeout_s, 0.0, what="seconds")
        if self.batch_timeout_s is not None:
            above("reward.batch_timeout_s", self.batch_timeout_s, 0.0, what="seconds")
        # verifier names one of the grader's checkers: r1zero.reward.names.check_names
        at_least("reward.answers_per_call", self.answers_per_call, 1)
        at_least("reward.max_answer_chars", self.max_answer_chars, 1, none_ok=True)
